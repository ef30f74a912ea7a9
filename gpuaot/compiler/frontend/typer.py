"""Type a function for one target and one set of argument types.

    ctx = TypingContext(pkg, target="cpu", debug=False)
    tf = ctx.specialize(pkg.function("example.kernels.saxpy"), arg_types=None)  # annotations

The visitor is thin (one ``visit_X`` per node kind, dispatching); this module holds the
driver and the expressions, :mod:`.statements` the statements, :mod:`.calls` the calls
(an operation's typing rule is its declaration's, :mod:`..ops`), :mod:`.annotations` the
signatures, and :mod:`.rules` the rules that need no AST. Variables get one type per function: typing repeats over the body until no
variable's type changes (a variable first bound to ``0.0`` and later to an f32 is f32), then
the last pass's errors are reported, all of them. Calls to ``@device`` helpers specialise the
helper for the call's argument types; a name with no meaning on the target is an error naming
the call chain.
"""

from __future__ import annotations

import ast

from ...errors import CompileError, Location
from ...lang.types import (
    COMPLEX_LIT,
    FLOAT_LIT,
    INT_LIT,
    ArrayType,
    Scalar,
    TupleType,
    Type,
    boolean,
    i64,
    materialize,
    none,
    tuple_of,
    unify,
)
from .. import ops
from ..discover import UNFOLDABLE, FuncInfo, Package
from ..methods import DIM3, MethodTable, table_for
from . import complex_rules, rules
from .annotations import annotated_params, castable, parse_annotation
from .calls import CallTyping, TargetUnavailable
from .definite import unassigned_reads
from .nesting import with_recursion_room
from .rules import Reject, Stop
from .statements import StatementTyping
from .typed import TypedFunction, declared_params, plain_value

__all__ = ["TargetUnavailable", "TypingContext", "Typer", "annotated_params", "parse_annotation"]
MAX_PASSES = 16


class TypingContext:
    """Specialisations of one target, shared by every function of a build."""

    def __init__(self, pkg: Package, target: str, debug: bool = False):
        self.pkg = pkg
        self.target = target
        self.table: MethodTable = table_for(target)
        self.debug = debug
        self.done: dict[tuple, tuple[TypedFunction | None, list[CompileError]]] = {}
        self.chain: list[tuple[FuncInfo, Location | None]] = []

    @with_recursion_room
    def specialize(
        self, func: FuncInfo, arg_types: tuple[Type, ...] | None = None, debug: bool | None = None
    ) -> tuple[TypedFunction | None, list[CompileError]]:
        if arg_types is None:
            arg_types, errors = annotated_params(self.pkg, func)
            if errors:
                return None, errors
        debug = self.debug if debug is None else debug
        key = (func, arg_types, debug)
        if key in self.done:
            return self.done[key]
        if any(f is func for f, _ in self.chain):
            loc = self.chain[-1][1]
            err = CompileError(
                f"recursive call to '{func.name}' is not supported",
                loc,
                hint="rewrite the recursion as a loop",
            )
            return None, [err]
        self.chain.append((func, None))
        try:
            result = Typer(self, func, arg_types, debug).run()
        finally:
            self.chain.pop()
        self.done[key] = result
        return result

    def call_chain(self) -> list[str]:
        return [
            f"called from {f.kind} '{f.qualname}'" + (f" at {loc}" if loc else "")
            for f, loc in reversed(self.chain)
        ]


class Typer(StatementTyping, CallTyping):
    def __init__(self, ctx: TypingContext, func: FuncInfo, arg_types, debug: bool):
        self.ctx = ctx
        self.pkg = ctx.pkg
        self.func = func
        self.mod = func.module
        self.arg_types = arg_types
        self.debug = debug
        self.var_types: dict[str, Type] = {}
        self.array_binding: dict[str, ast.AST] = {}

    # ------------------------------------------------------------------ driver

    def run(self) -> tuple[TypedFunction | None, list[CompileError]]:
        params = [a.arg for a in self.func.params]
        if len(params) != len(self.arg_types):
            return None, [
                CompileError(
                    f"'{self.func.name}' takes {len(params)} arguments, got {len(self.arg_types)}",
                    self.ctx.chain[-2][1] if len(self.ctx.chain) > 1 else self.func.loc(),
                )
            ]
        self.var_types = dict(zip(params, self.arg_types))
        self.array_binding = {p: self.func.node for p in params}
        self.assigned = {
            n.id
            for n in ast.walk(self.func.node)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        }
        self.declared: dict[str, Type] = declared_params(params, self.arg_types)
        for _ in range(MAX_PASSES):
            self.tf = TypedFunction(self.func, self.ctx.target, self.arg_types)
            self.errors: list[CompileError] = []
            self.poisoned: set[str] = set()  # targets of assignments that had an error
            self.changed = False
            self.returns: list[tuple[ast.AST, Type]] = []
            self.loop_depth = 0
            for stmt in self.func.node.body:
                self.stmt(stmt)
            if not self.changed:
                break
        self.tf.var_types = dict(self.var_types)
        self._finish_return_type()
        # A GPU-only function (its only errors: no CPU meaning) is still checked here, so a
        # CPU-only build reports its real mistakes too.
        if all(isinstance(e, TargetUnavailable) for e in self.errors):
            for name in unassigned_reads(self.func.node, self.assigned):
                self.error(
                    f"'{name.id}' may be used before it is assigned",
                    name,
                    f"assign '{name.id}' on every path that reaches this use, e.g. "
                    "before the 'if' or the loop that assigns it",
                )
        if self.errors:
            return None, self.errors
        return self.tf, []

    def _finish_return_type(self) -> None:
        node = self.func.node
        if self.func.kind == "kernel":
            self.tf.return_type = none
            return
        declared = None
        if node.returns is not None:
            try:
                declared = parse_annotation(self.pkg, self.func, node.returns)
            except Reject as r:
                self.error(r.message, node.returns, r.hint)
                return
        rt = None
        for ret_node, t in self.returns:
            if rt is None:
                rt = t
                continue
            u = unify(rt, t)
            if u is None and isinstance(rt, Scalar) and isinstance(t, Scalar) and declared:
                u = declared
            if u is None:
                self.error(
                    f"'{self.func.name}' returns {rt.name} here and {t.name} elsewhere",
                    ret_node,
                    "return one type from every 'return'",
                )
                return
            rt = u
        if declared is not None:
            if rt is not None and rt is not none and not castable(rt, declared):
                self.error(f"returns {rt.name}, declared {declared.name}", node.returns)
            rt = declared
        self.tf.return_type = rt if rt is not None else none
        if self.func.kind == "host":
            self.tf.return_type = materialize(self.tf.return_type)

    # ------------------------------------------------------------------ errors

    def error(self, message: str, node: ast.AST, hint: str | None = None, cls=CompileError):
        self.errors.append(cls(message, self.func.loc(node), hint=hint))

    def reject(self, r: Reject, node: ast.AST) -> None:
        self.error(r.message, node, r.hint)

    # ------------------------------------------------------------------ expressions

    def expr(self, node: ast.expr) -> Type:
        handler = _EXPRS.get(type(node))
        if handler is None:
            # Located here, at the unsupported node: a Reject raised outside the try below
            # would be located at the enclosing expression or statement instead.
            what = type(node).__name__
            self.error(f"{_EXPR_NAMES.get(what, what)} is not supported in kernels", node)
            raise Stop()
        try:
            t = handler(self, node)
        except Reject as r:
            self.reject(r, node)
            raise Stop() from None
        self.tf.expr_types[node] = t
        return t

    def e_constant(self, node: ast.Constant) -> Type:
        v = node.value
        if isinstance(v, bool):
            return boolean
        if isinstance(v, int):
            if not -(2**63) <= v < 2**64:
                raise Reject(f"integer literal {v} does not fit in 64 bits")
            return INT_LIT
        if isinstance(v, float):
            return FLOAT_LIT
        if isinstance(v, complex):
            return COMPLEX_LIT
        if isinstance(v, str):
            raise Reject("strings are only allowed as exception messages")
        raise Reject(f"{type(v).__name__} constants are not supported in kernels")

    def e_name(self, node: ast.Name) -> Type:
        name = node.id
        if name in self.var_types:
            return plain_value(name, self.var_types[name])  # not a function or type held
        if name in self.poisoned:
            raise Stop()  # its assignment's error was reported: one error per mistake
        if name in self.assigned:
            self.error(f"'{name}' is used before it is assigned", node)
            raise Stop()
        sym = self.pkg.resolve(self.mod, name)
        return self.global_symbol(sym, node, name)

    def global_symbol(self, sym, node: ast.expr, name: str) -> Type:
        if sym is None:
            raise Reject(
                f"unknown name '{name}'",
                "define it in the kernel, or as a constant or @device function of the package",
            )
        if sym.kind == "const":
            if sym.value is UNFOLDABLE:
                raise Reject(
                    f"'{name}' is not a compile-time constant",
                    "module-level names used in kernels must be numbers, bools or tuples of them",
                )
            return self.constant(node, sym.value)
        if sym.kind in ("math", "cmath") and sym.value in ("pi", "e", "inf", "nan", "tau"):
            from ..folding import MATH_CONSTANTS

            return self.constant(node, MATH_CONSTANTS[sym.value])
        if sym.kind == "gpuaot" and sym.value == "WARP_SIZE":
            return self.constant(node, 32)
        if sym.kind == "func":
            raise Reject(f"'{name}' is a function; kernels can call it but not use it as a value")
        raise Reject(f"'{name}' cannot be used as a value in kernels")

    def constant(self, node: ast.AST, value) -> Type:
        self.tf.consts[node] = value
        return _const_type(value)

    def e_attribute(self, node: ast.Attribute) -> Type:
        if isinstance(node.value, ast.Name) and node.value.id in self.var_types:
            base_t = self.var_types[node.value.id]
            self.tf.expr_types[node.value] = base_t
            if isinstance(base_t, ArrayType) and node.attr == "shape":
                return tuple_of([i64] * base_t.ndim)
            if isinstance(base_t, ArrayType) and node.attr in ("size", "ndim"):
                return self.call_op(node, ops.get(f"array.{node.attr}"), node.attr)
            if complex_rules.is_part(base_t, node.attr):  # z.real, z.imag
                return self.call_op(node, ops.get(f"complex.{node.attr}"), node.attr)
            raise Reject(
                f"a {base_t.name} has no attribute '{node.attr}' in kernels",
                "arrays have .shape, .size and .ndim" if isinstance(base_t, ArrayType) else None,
            )
        if isinstance(node.value, (ast.Call, ast.Subscript, ast.BinOp, ast.UnaryOp)):
            base_t = self.expr(node.value)
            if isinstance(base_t, ArrayType) and node.attr == "shape":
                return tuple_of([i64] * base_t.ndim)
            if isinstance(base_t, ArrayType) and node.attr in ("size", "ndim"):
                return self.call_op(node, ops.get(f"array.{node.attr}"), node.attr)
            if complex_rules.is_part(base_t, node.attr):
                return self.call_op(node, ops.get(f"complex.{node.attr}"), node.attr)
            raise Reject(f"a {base_t.name} has no attribute '{node.attr}'")
        # thread_idx.x and friends
        base = self.pkg.resolve_expr(self.mod, node.value)
        if base is not None and base.kind == "gpuaot" and base.value in DIM3:
            if node.attr not in ("x", "y", "z"):
                raise Reject(f"{base.value} has .x, .y and .z, not .{node.attr}")
            name = f"{base.value}.{node.attr}"
            return self.call_op(node, ops.lookup("attribute", name), name)
        sym = self.pkg.resolve_expr(self.mod, node)
        return self.global_symbol(sym, node, ast.unparse(node))

    def e_subscript(self, node: ast.Subscript) -> Type:
        base_t = self.expr(node.value)
        if isinstance(base_t, ArrayType):
            self.array_index(node, base_t)
            return base_t.dtype
        if isinstance(base_t, TupleType):
            k = self.static_int(node.slice)
            if k is None:
                raise Reject("tuples are indexed with a constant", "e.g. x.shape[0]")
            n = len(base_t.items)
            if not -n <= k < n:
                raise Reject(f"index {k} is out of range for a tuple of {n}")
            self.tf.consts[node.slice] = k % n
            self.expr(node.slice)
            return base_t.items[k % n]
        raise Reject(f"a {base_t.name} cannot be indexed")

    def array_index(self, node: ast.Subscript, array: ArrayType) -> None:
        idx = node.slice
        if isinstance(idx, ast.Slice) or (
            isinstance(idx, ast.Tuple) and any(isinstance(e, ast.Slice) for e in idx.elts)
        ):
            raise Reject("slices are not supported in kernels", "index one element at a time")
        elts = idx.elts if isinstance(idx, ast.Tuple) else [idx]
        types = [self.expr(e) for e in elts]
        if isinstance(idx, ast.Tuple):
            self.tf.expr_types[idx] = tuple_of(types)
        elif isinstance(types[0], TupleType):  # a[idx], idx = ga.grid(2): its items index
            types = list(types[0].items)
        rules.index_types(array, types)
        if self.debug:
            self.add_site(node, "IndexError", "index out of bounds")

    def static_int(self, node: ast.expr):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            v = self.static_int(node.operand)
            return -v if v is not None else None
        if isinstance(node, (ast.Name, ast.Attribute)) and not (
            isinstance(node, ast.Name) and node.id in self.var_types
        ):
            v = self.pkg.fold(self.mod, node)
            return v if type(v) is int else None
        return None

    def e_binop(self, node: ast.BinOp) -> Type:
        t = rules.binop_type(node.op, self.expr(node.left), self.expr(node.right))
        self.division_site(node, node.op, node.right, t)
        return t

    def division_site(self, node: ast.AST, op: ast.operator, divisor: ast.expr, t: Type) -> None:
        """Integer // and % by zero raise ZeroDivisionError, as in Python."""
        if isinstance(op, (ast.FloorDiv, ast.Mod)) and isinstance(t, Scalar) and t.is_int:
            if self.static_int(divisor) in (None, 0):
                self.add_site(node, "ZeroDivisionError", "integer division or modulo by zero")
        if isinstance(op, ast.Div) and isinstance(t, Scalar) and t.is_complex:
            if not complex_rules.nonzero_constant(divisor):  # as CPython (and numba)
                self.add_site(node, "ZeroDivisionError", "complex division by zero")

    def e_unaryop(self, node: ast.UnaryOp) -> Type:
        return rules.unary_type(node.op, self.expr(node.operand))

    def e_compare(self, node: ast.Compare) -> Type:
        left = self.expr(node.left)
        for op, comp in zip(node.ops, node.comparators):
            right = self.expr(comp)
            rules.compare_type(op, left, right)
            left = right
        return boolean

    def e_boolop(self, node: ast.BoolOp) -> Type:
        for v in node.values:
            rules.truth(self.expr(v))
        return boolean

    def e_ifexp(self, node: ast.IfExp) -> Type:
        rules.truth(self.expr(node.test))
        return rules.ifexp_type(self.expr(node.body), self.expr(node.orelse))

    def e_tuple(self, node: ast.Tuple) -> Type:
        items = [self.expr(e) for e in node.elts]
        if any(isinstance(t, ArrayType) for t in items):
            raise Reject("tuples of arrays are not supported")
        return tuple_of(items)


def _const_type(value) -> Type:
    if isinstance(value, bool):
        return boolean
    if isinstance(value, int):
        return INT_LIT
    if isinstance(value, float):
        return FLOAT_LIT
    if isinstance(value, complex):
        return COMPLEX_LIT
    if isinstance(value, tuple):
        return tuple_of(_const_type(v) for v in value)
    raise Reject(f"constant {value!r} has no kernel type")


_EXPRS = {
    ast.Constant: Typer.e_constant,
    ast.Name: Typer.e_name,
    ast.Attribute: Typer.e_attribute,
    ast.Subscript: Typer.e_subscript,
    ast.BinOp: Typer.e_binop,
    ast.UnaryOp: Typer.e_unaryop,
    ast.Compare: Typer.e_compare,
    ast.BoolOp: Typer.e_boolop,
    ast.IfExp: Typer.e_ifexp,
    ast.Tuple: Typer.e_tuple,
    ast.Call: Typer.e_call,
}
_EXPR_NAMES = {
    "List": "a list",
    "Dict": "a dict",
    "Set": "a set",
    "ListComp": "a list comprehension",
    "Lambda": "lambda",
    "JoinedStr": "an f-string",
    "GeneratorExp": "a generator expression",
    "DictComp": "a dict comprehension",
    "SetComp": "a set comprehension",
    "Await": "await",
    "Yield": "yield",
    "NamedExpr": "':='",
    "Starred": "'*'",
    "Slice": "a slice",
}
