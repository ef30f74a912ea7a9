"""Typing statements: assignments and bindings, control flow, raise and assert.

    for stmt in func.node.body:
        typer.stmt(stmt)       # dispatches through _STMTS; an unsupported kind is a located error

A mixin of :class:`.typer.Typer`: it uses the typer's ``expr``, ``error`` and ``static_int``.
Variables get one type per function: ``bind_name`` widens a variable's type (``unify``) and
flags the change, which makes the typer run another pass.
"""

from __future__ import annotations

import ast

from ...lang.types import (
    ArrayType,
    Scalar,
    TupleType,
    Type,
    i64,
    materialize,
    none,
    tuple_of,
    unify,
)
from . import fnargs, raises, rules
from .annotations import castable, parse_annotation
from .rules import Reject, Stop
from .typed import RaiseSite


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
        if fnargs.bind_value(self, node):  # f = ga.atomic_add: a function or a type
            return
        try:
            t = self.expr(node.value)
        except Stop:
            for target in node.targets:
                self.poison(target)
            raise
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
            self.poison(node.target)
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
        it, target = node.iter, node.target
        if self.loop_builtin(it) == "enumerate":
            target = self.enumerate_target(node)
            if target is None:
                return
            it = it.args[0]
        t = self.range_loop(it) if self.loop_builtin(it) == "range" else self.array_loop(it)
        if t is None:
            return
        if isinstance(node.iter, ast.Call) and it is not node.iter:  # enumerate: (i64, t)
            self.tf.expr_types[node.iter] = tuple_of([i64, t])
        if isinstance(target, ast.Name):
            self.bind(target, t, it)
        else:
            self.error("the loop variable must be a plain name", target)
        self.loop_depth += 1
        self.body(node.body)
        self.loop_depth -= 1
        self.body(node.orelse)  # runs when the loop ends without 'break'

    def loop_builtin(self, it: ast.expr) -> str | None:
        """``range`` or ``enumerate`` when the loop's iterable calls that builtin."""
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name)):
            return None
        sym = self.pkg.resolve(self.mod, it.func.id)
        ok = sym is not None and sym.kind == "builtin" and sym.value in ("range", "enumerate")
        return sym.value if ok else None

    def enumerate_target(self, node: ast.For) -> ast.expr | None:
        """``for k, v in enumerate(x)``: binds ``k`` (i64) and returns ``v``'s target."""
        it, target = node.iter, node.target
        if it.keywords or len(it.args) != 1:
            self.error("enumerate() takes one range(...) or 1-D array in kernels", it)
            return None
        if not (isinstance(target, ast.Tuple) and len(target.elts) == 2):
            self.error("enumerate() binds two names: 'for k, v in enumerate(x)'", target)
            return None
        if not isinstance(target.elts[0], ast.Name):
            self.error("the loop variable must be a plain name", target.elts[0])
            return None
        self.bind(target.elts[0], i64, it)
        return target.elts[1]

    def array_loop(self, it: ast.expr):
        """``for v in a``: the element type of a 1-D array ``a``; None after an error."""
        if isinstance(it, (ast.Name, ast.Attribute, ast.Subscript, ast.Call)):
            t = self.expr(it)
            if isinstance(t, ArrayType) and t.ndim == 1:
                return t.dtype
            if isinstance(t, ArrayType):
                self.error(
                    f"a loop over an array needs a 1-D array, not {t.name}",
                    it,
                    "loop over the indices: 'for i in range(a.shape[0])'",
                )
                return None
        self.error(
            "kernels loop over range(...), a 1-D array or enumerate(...) of one",
            it,
            "write 'for i in range(start, stop, step)'",
        )
        return None

    def range_loop(self, it: ast.Call):
        """``range(...)``'s arguments typed and checked: the loop variable's type, or None."""
        if it.keywords or not 1 <= len(it.args) <= 3:
            self.error("range() takes 1 to 3 positional arguments", it)
            return None
        t = None
        for a in it.args:
            at = self.expr(a)
            if not isinstance(at, Scalar) or not at.is_int:
                self.error(f"range() needs integers, not {at.name}", a, "cast with int(...)")
                return None
            t = at if t is None else rules.promote(t, at)
        self.tf.expr_types[it] = materialize(t)
        if len(it.args) == 3:
            step = self.static_int(it.args[2])
            if step == 0:
                self.error("range() step must not be zero", it.args[2])
            elif step is None:
                # A step known only at run time: zero raises as in Python (it would otherwise
                # loop forever), checked once before the loop.
                self.add_site(it, "ValueError", "range() arg 3 must not be zero")
        return materialize(t)

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
            try:
                if exc.keywords or len(exc.args) > 1:
                    raise Reject(raises.NOT_CONSTANT, raises.NOT_CONSTANT_HINT)
                msg = raises.constant_message(self.pkg, self.mod, exc.args[0]) if exc.args else ""
            except Reject as r:
                self.reject(r, exc)
                return
            exc = exc.func
        try:
            cls = raises.exception_class(self.pkg, self.mod, exc)
        except Reject as r:
            self.reject(r, exc)
            return
        self.add_site(node, cls.name, msg, cls.base)

    def s_assert(self, node: ast.Assert) -> None:
        self.condition(node.test)
        msg = ""
        if node.msg is not None:
            try:
                msg = raises.constant_message(self.pkg, self.mod, node.msg)
            except Reject:
                self.error("an assert message must be a constant string", node.msg)
                return
        if self.debug:
            self.add_site(node, "AssertionError", msg)

    def add_site(self, node: ast.AST, exc_type: str, message: str, base=None) -> None:
        loc = self.func.loc(node)
        site = RaiseSite(exc_type, message, loc.file, loc.line, loc.col, base)
        self.tf.sites[node] = site
        self.tf.may_raise = True
        self.use("runtime.exception", node)

    def condition(self, node: ast.expr) -> None:
        try:
            t = self.expr(node)
        except Stop:
            return  # reported once; the statement's bodies are still typed for their mistakes
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
                self.poison(target)
                return
            for elt, it in zip(target.elts, t.items):
                self.bind(elt, it, value)
        elif isinstance(target, ast.Subscript):
            self.store_subscript(target, t, value)
        else:
            self.error("cannot assign to this expression", target)

    def poison(self, target: ast.expr) -> None:
        """After an error in an assignment its names count as bound, and reads of them stop
        their statement silently: the error was reported once, at the assignment."""
        if isinstance(target, ast.Name):
            self.poisoned.add(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self.poison(elt)

    def bind_name(self, target: ast.Name, t: Type, value: ast.AST) -> None:
        name = target.id
        if t is none:
            self.error("this call returns no value", value)
            self.poison(target)
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
        if not isinstance(t, Scalar) or not castable(t, base_t.dtype):
            hint = "store z.real, z.imag or abs(z)" if isinstance(t, Scalar) else None
            self.error(f"cannot store a {t.name} in an array of {base_t.dtype.name}", value, hint)
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
