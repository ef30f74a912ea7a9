"""Constant folding of module-level (and function-local) expressions, without importing.

    value = fold_expr(pkg, module, node)      # a bool, int, float or tuple, or UNFOLDABLE

Names resolve through the package (:meth:`..discover.Package.resolve`): a module-level
constant, ``math.pi`` and friends, ``gpuaot.WARP_SIZE``; ``local(name)`` (optional) gives a
function-local constant first (:data:`NOT_LOCAL` where the name is not local). Anything else
(a call, a subscript, a variable) is not a constant.
"""

from __future__ import annotations

import ast
import math
import operator


def fold_expr(pkg, module, node: ast.expr, local=None):
    """The value of ``node``, or :data:`UNFOLDABLE` (also for 1 // 0 and the like)."""
    try:
        return _Folder(pkg, module, local).visit(node)
    except _NotConstant:
        return _UNFOLDABLE
    except (ArithmeticError, ValueError, TypeError):
        return _UNFOLDABLE


class _NotConstant(Exception):
    pass


class _Unfoldable:
    def __repr__(self) -> str:
        return "<not a constant>"


_UNFOLDABLE = _Unfoldable()
UNFOLDABLE = _UNFOLDABLE
NOT_LOCAL = object()  # what a fold's ``local`` lookup returns for a module-level name

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
    ast.BitOr: operator.or_,
    ast.BitAnd: operator.and_,
    ast.BitXor: operator.xor,
}
_UNOPS = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
    ast.Not: operator.not_,
    ast.Invert: operator.invert,
}
_CMPOPS = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
MATH_CONSTANTS = {"pi": math.pi, "e": math.e, "inf": math.inf, "nan": math.nan, "tau": math.tau}


class _Folder(ast.NodeVisitor):
    def __init__(self, pkg, module, local=None):
        self.pkg = pkg
        self.module = module
        self.local = local

    def generic_visit(self, node):
        raise _NotConstant()

    def visit_Constant(self, node):
        if isinstance(node.value, (bool, int, float, complex)):
            return node.value
        raise _NotConstant()

    def visit_Name(self, node):
        if self.local is not None:
            v = self.local(node.id)
            if v is _UNFOLDABLE:
                raise _NotConstant()
            if v is not NOT_LOCAL:
                return v
        return self._symbol(self.pkg.resolve(self.module, node.id))

    def visit_Attribute(self, node):
        return self._symbol(self.pkg.resolve_expr(self.module, node))

    def _symbol(self, sym):
        if sym is None:
            raise _NotConstant()
        if sym.kind == "const" and sym.value is not _UNFOLDABLE:
            return sym.value
        if sym.kind in ("math", "cmath") and sym.value in MATH_CONSTANTS:
            return MATH_CONSTANTS[sym.value]
        if sym.kind == "gpuaot" and sym.value == "WARP_SIZE":
            return 32
        raise _NotConstant()

    def visit_Tuple(self, node):
        return tuple(self.visit(e) for e in node.elts)

    def visit_BinOp(self, node):
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise _NotConstant()
        return op(self.visit(node.left), self.visit(node.right))

    def visit_UnaryOp(self, node):
        return _UNOPS[type(node.op)](self.visit(node.operand))

    def visit_Compare(self, node):
        left = self.visit(node.left)
        for op, comp in zip(node.ops, node.comparators):
            fn = _CMPOPS.get(type(op))
            right = self.visit(comp)
            if fn is None or not fn(left, right):
                return False
            left = right
        return True

    def visit_BoolOp(self, node):
        values = [self.visit(v) for v in node.values]
        if isinstance(node.op, ast.And):
            return all(values)
        return any(values)

    def visit_IfExp(self, node):
        return self.visit(node.body) if self.visit(node.test) else self.visit(node.orelse)
