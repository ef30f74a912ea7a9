"""Typing statements: assignments and bindings, control flow, raise and assert.

    for stmt in func.node.body:
        typer.stmt(stmt)       # dispatches through _STMTS; an unsupported kind is a located error

A mixin of :class:`.typer.Typer`: it uses the typer's ``expr``, ``error`` and ``static_int``.
Variables get one type per function: ``bind_name`` widens a variable's type (``unify``) and
flags the change, which makes the typer run another pass.
"""

from __future__ import annotations

import ast
import builtins

from ...lang.types import ArrayType, Scalar, TupleType, Type, materialize, none, unify
from . import rules
from .annotations import castable, parse_annotation
from .rules import Reject, Stop
from .typed import RaiseSite

EXCEPTIONS = {
    n
    for n in dir(builtins)
    if isinstance(getattr(builtins, n), type) and issubclass(getattr(builtins, n), Exception)
}


class StatementTyping:
    # ------------------------------------------------------------------ statements

    def stmt(self, node: ast.stmt) -> None:
        handler = _STMTS.get(type(node))
        if handler is None:
            kind = type(node).__name__
            what, hint = _STMT_NAMES.get(kind, (f"'{kind.lower()}' statements", None))
            self.error(f"{what} are not supported in kernels", node, hint)
            return
        try:
            handler(self, node)
        except Stop:
            pass
        except Reject as r:
            self.reject(r, node)

    def body(self, stmts: list[ast.stmt]) -> None:
        for s in stmts:
            self.stmt(s)

    def s_expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return  # docstring
        self.expr(node.value)

    def s_pass(self, node) -> None:
        pass

    def s_assign(self, node: ast.Assign) -> None:
        t = self.expr(node.value)
        for target in node.targets:
            self.bind(target, t, node.value)

    def s_annassign(self, node: ast.AnnAssign) -> None:
        if not isinstance(node.target, ast.Name):
            self.error("annotated assignment needs a plain name", node.target)
            return
        try:
            declared = parse_annotation(self.pkg, self.func, node.annotation)
        except Reject as r:
            self.reject(r, node.annotation)
            return
        name = node.target.id
        old = self.declared.get(name)
        if old is not None and old is not declared:
            self.error(f"'{name}' was declared {old.name}", node.target)
            return
        self.declared[name] = declared
        if self.var_types.get(name) is not declared:
            self.var_types[name] = declared
            self.changed = True
        if node.value is not None:
            t = self.expr(node.value)
            if not castable(t, declared):
                self.error(f"cannot assign {t.name} to '{name}: {declared.name}'", node.value)

    def s_augassign(self, node: ast.AugAssign) -> None:
        lt = self.expr(node.target)
        rt = self.expr(node.value)
        t = rules.binop_type(node.op, lt, rt)
        self.tf.expr_types[node] = t
        self.division_site(node, node.op, node.value, t)
        self.bind(node.target, t, node)

    def s_if(self, node: ast.If) -> None:
        self.condition(node.test)
        self.body(node.body)
        self.body(node.orelse)

    def s_while(self, node: ast.While) -> None:
        self.condition(node.test)
        self.loop_depth += 1
        self.body(node.body)
        self.loop_depth -= 1
        self.body(node.orelse)  # runs when the loop ends without 'break'

    def s_for(self, node: ast.For) -> None:
        it = node.iter
        sym = (
            self.pkg.resolve(self.mod, it.func.id)
            if isinstance(it, ast.Call) and isinstance(it.func, ast.Name)
            else None
        )
        if sym is None or sym.kind != "builtin" or sym.value != "range":
            self.error(
                "kernels loop over range(...) only", it, "write 'for i in range(start, stop, step)'"
            )
            return
        if it.keywords or not 1 <= len(it.args) <= 3:
            self.error("range() takes 1 to 3 positional arguments", it)
            return
        t = None
        for a in it.args:
            at = self.expr(a)
            if not isinstance(at, Scalar) or not at.is_int:
                self.error(f"range() needs integers, not {at.name}", a, "cast with int(...)")
                return
            t = at if t is None else rules.promote(t, at)
        self.tf.expr_types[it] = materialize(t)
        if isinstance(node.target, ast.Name):
            self.bind(node.target, materialize(t), it)
        else:
            self.error("the loop variable must be a plain name", node.target)
        if len(it.args) == 3:
            step = self.static_int(it.args[2])
            if step == 0:
                self.error("range() step must not be zero", it.args[2])
            elif step is None:
                # A step known only at run time: zero raises as in Python (it would otherwise
                # loop forever), checked once before the loop.
                self.add_site(it, "ValueError", "range() arg 3 must not be zero")
        self.loop_depth += 1
        self.body(node.body)
        self.loop_depth -= 1
        self.body(node.orelse)  # runs when the loop ends without 'break'

    def s_break(self, node) -> None:
        if self.loop_depth == 0:
            self.error("'break' outside a loop", node)

    s_continue = s_break

    def s_return(self, node: ast.Return) -> None:
        if node.value is None:
            self.returns.append((node, none))
            return
        t = self.expr(node.value)
        if self.func.kind == "kernel":
            self.error(
                "kernels cannot return a value", node.value, "write the result into an output array"
            )
            return
        if isinstance(t, ArrayType) or (
            isinstance(t, TupleType) and any(isinstance(i, ArrayType) for i in t.items)
        ):
            self.error("functions cannot return arrays", node.value)
            return
        self.returns.append((node, t))

    def s_raise(self, node: ast.Raise) -> None:
        exc = node.exc
        msg = ""
        if exc is None:
            self.error("bare 'raise' is not supported", node, 'raise ValueError("message")')
            return
        if isinstance(exc, ast.Call):
            if (
                exc.keywords
                or len(exc.args) > 1
                or (
                    exc.args
                    and not (
                        isinstance(exc.args[0], ast.Constant) and isinstance(exc.args[0].value, str)
                    )
                )
            ):
                self.error(
                    "exceptions take one constant string message in kernels",
                    exc,
                    'raise ValueError("x must be positive")',
                )
                return
            msg = exc.args[0].value if exc.args else ""
            exc = exc.func
        name = exc.id if isinstance(exc, ast.Name) else None
        if name not in EXCEPTIONS or (self.pkg.resolve(self.mod, name) is not None):
            self.error("raise a built-in exception type (ValueError, IndexError, ...)", exc)
            return
        self.add_site(node, name, msg)

    def s_assert(self, node: ast.Assert) -> None:
        self.condition(node.test)
        msg = ""
        if node.msg is not None:
            if not (isinstance(node.msg, ast.Constant) and isinstance(node.msg.value, str)):
                self.error("an assert message must be a constant string", node.msg)
                return
            msg = node.msg.value
        if self.debug:
            self.add_site(node, "AssertionError", msg)

    def add_site(self, node: ast.AST, exc_type: str, message: str) -> None:
        loc = self.func.loc(node)
        self.tf.sites[node] = RaiseSite(exc_type, message, loc.file, loc.line, loc.col)
        self.tf.may_raise = True
        self.use("runtime.exception", node)

    def condition(self, node: ast.expr) -> None:
        t = self.expr(node)
        try:
            rules.truth(t)
        except Reject as r:
            self.reject(r, node)

    # ------------------------------------------------------------------ binding

    def bind(self, target: ast.expr, t: Type, value: ast.AST) -> None:
        if isinstance(target, ast.Name):
            self.bind_name(target, t, value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            if not isinstance(t, TupleType) or len(t.items) != len(target.elts):
                n = len(target.elts)
                self.error(
                    f"cannot unpack {t.name} into {n} names",
                    value,
                    "the right side must be a tuple of the same length",
                )
                return
            for elt, it in zip(target.elts, t.items):
                self.bind(elt, it, value)
        elif isinstance(target, ast.Subscript):
            self.store_subscript(target, t, value)
        else:
            self.error("cannot assign to this expression", target)

    def bind_name(self, target: ast.Name, t: Type, value: ast.AST) -> None:
        name = target.id
        if t is none:
            self.error("this call returns no value", value)
            return
        if isinstance(t, ArrayType) or isinstance(self.var_types.get(name), ArrayType):
            # Arrays are bound once: lowering keeps them as (pointer, shape) values.
            if self.array_binding.setdefault(name, value) is not value:
                self.error(
                    f"array variable '{name}' is assigned twice",
                    target,
                    "use a new name for the second array",
                )
                return
        old = self.var_types.get(name)
        if old is None:
            self.var_types[name] = t
            self.changed = True
        elif name in self.declared:
            if not castable(t, old):
                self.error(f"cannot assign {t.name} to '{name}: {old.name}'", value)
        else:
            u = unify(old, t)
            if u is None:
                self.error(
                    f"'{name}' is {materialize(old).name} here but {t.name} is assigned",
                    target,
                    f"cast explicitly, e.g. {name} = {_cast_name(old)}(...)",
                )
            elif u is not old:
                self.var_types[name] = u
                self.changed = True
        self.tf.expr_types[target] = self.var_types.get(name, t)

    def store_subscript(self, target: ast.Subscript, t: Type, value: ast.AST) -> None:
        base_t = self.expr(target.value)
        if not isinstance(base_t, ArrayType):
            self.error(
                f"cannot assign into a {base_t.name}", target, "only array elements can be assigned"
            )
            return
        self.array_index(target, base_t)
        if not isinstance(t, Scalar):
            self.error(f"cannot store a {t.name} in an array of {base_t.dtype.name}", value)
        self.tf.expr_types[target] = base_t.dtype


def _cast_name(t: Type) -> str:
    t = materialize(t)
    return {"i64": "int", "f64": "float"}.get(t.name, t.name)


_STMTS = {
    ast.Expr: StatementTyping.s_expr,
    ast.Pass: StatementTyping.s_pass,
    ast.Assign: StatementTyping.s_assign,
    ast.AnnAssign: StatementTyping.s_annassign,
    ast.AugAssign: StatementTyping.s_augassign,
    ast.If: StatementTyping.s_if,
    ast.While: StatementTyping.s_while,
    ast.For: StatementTyping.s_for,
    ast.Break: StatementTyping.s_break,
    ast.Continue: StatementTyping.s_continue,
    ast.Return: StatementTyping.s_return,
    ast.Raise: StatementTyping.s_raise,
    ast.Assert: StatementTyping.s_assert,
}
# Statements whose class name does not read as Python: (what to call them, what to do).
_STMT_NAMES = {
    "FunctionDef": ("nested function definitions", "make it a @device function of the module"),
    "AsyncFunctionDef": ("nested function definitions", None),
    "ClassDef": ("class definitions", None),
    "Delete": ("'del' statements", None),
    "Import": ("imports", "import at module level"),
    "ImportFrom": ("imports", "import at module level"),
    "AsyncWith": ("'async with' statements", None),
    "AsyncFor": ("'async for' loops", None),
    "TryStar": ("'try' statements", None),
}
