"""Type a function for one target and one set of argument types.

    ctx = TypingContext(pkg, target="cpu", debug=False)
    tf = ctx.specialize(pkg.function("example.kernels.saxpy"), arg_types=None)  # annotations

The visitor is thin (one ``visit_X`` per node kind, dispatching); rules live in
:mod:`.rules`. Variables get one type per function: typing repeats over the body until no
variable's type changes (a variable first bound to ``0.0`` and later to an f32 is f32), then
the last pass's errors are reported, all of them. Calls to ``@device`` helpers specialise the
helper for the call's argument types; a name with no meaning on the target is an error naming
the call chain.
"""

from __future__ import annotations

import ast
import builtins

from ...errors import CompileError, Location
from ...lang.types import (
    BY_NAME,
    FLOAT_LIT,
    INT_LIT,
    ArrayType,
    Scalar,
    TupleType,
    Type,
    array_of,
    boolean,
    f64,
    i64,
    materialize,
    none,
    tuple_of,
    unify,
)
from ..discover import UNFOLDABLE, FuncInfo, Package
from ..methods import DIM3, MATH_FUNCS, MethodTable, table_for
from . import rules
from .definite import unassigned_reads
from .nesting import expr_too_deep, python_parser_depth, with_recursion_room
from .rules import Reject
from .typed import Builtin, RaiseSite, TypedFunction

MAX_PASSES = 16
EXCEPTIONS = {
    n
    for n in dir(builtins)
    if isinstance(getattr(builtins, n), type) and issubclass(getattr(builtins, n), Exception)
}


class TargetUnavailable(CompileError):
    """A name with no meaning on the target (e.g. ``syncthreads`` on the CPU)."""


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


@with_recursion_room
def annotated_params(pkg: Package, func: FuncInfo) -> tuple[tuple[Type, ...], list[CompileError]]:
    types, errors = [], []
    for a in func.params:
        if a.annotation is None:
            errors.append(
                CompileError(
                    f"parameter '{a.arg}' of {func.kind} '{func.name}' needs a type annotation",
                    func.loc(a),
                    hint=f"e.g. '{a.arg}: f32' or '{a.arg}: Array[f32]'",
                )
            )
            continue
        try:
            types.append(parse_annotation(pkg, func, a.annotation))
        except Reject as r:
            errors.append(CompileError(r.message, func.loc(a.annotation), hint=r.hint))
    args = func.node.args
    if args.vararg or args.kwarg or args.kwonlyargs or args.defaults or args.posonlyargs:
        errors.append(
            CompileError(
                "kernels take plain positional parameters only",
                func.loc(),
                hint="remove *args, **kwargs and defaults",
            )
        )
    return tuple(types), errors


@with_recursion_room
def parse_annotation(pkg: Package, func: FuncInfo, node: ast.expr) -> Type:
    mod = func.module
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
        try:
            with python_parser_depth():
                node = ast.parse(text, mode="eval").body
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            node = None
        if node is None or expr_too_deep(node):
            shown = text if len(text) <= 60 else text[:57] + "..."
            raise Reject(f"cannot read the annotation {shown!r}")
    if isinstance(node, ast.Name) and node.id in ("int", "float", "bool"):
        if pkg.resolve(mod, node.id) is not None and pkg.resolve(mod, node.id).kind != "builtin":
            pass
        else:
            return {"int": i64, "float": f64, "bool": boolean}[node.id]
    if isinstance(node, ast.Subscript):
        base = pkg.resolve_expr(mod, node.value)
        if base is None or base.kind != "gpuaot" or base.value != "Array":
            raise Reject("only Array[...] can be subscripted in an annotation")
        params = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        dtype = parse_annotation(pkg, func, params[0])
        if not isinstance(dtype, Scalar):
            raise Reject("an Array's element type must be a scalar type")
        ndim, layout = 1, "C"
        if len(params) > 1:
            ndim = pkg.fold(mod, params[1])
            if not isinstance(ndim, int) or isinstance(ndim, bool) or not 1 <= ndim <= 3:
                raise Reject("an Array's rank must be 1, 2 or 3")
        if len(params) > 2:
            layout = params[2].value if isinstance(params[2], ast.Constant) else None
            if layout not in ("C", "A"):
                raise Reject('an Array\'s layout must be "C" or "A"')
        if len(params) > 3:
            raise Reject("Array[dtype, ndim, layout] takes at most three parameters")
        return array_of(dtype, ndim, layout)
    sym = pkg.resolve_expr(mod, node)
    if sym is not None and sym.kind == "gpuaot" and sym.value in BY_NAME:
        return BY_NAME[sym.value]
    raise Reject(
        f"'{ast.unparse(node)}' is not a gpuaot type", hint="use f32, i64, bool, Array[f32, 2], ..."
    )


class _Stop(Exception):
    """An expression whose type is unknown in this pass (a later pass may know it)."""


class Typer:
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
        self.declared: dict[str, Type] = {}
        for _ in range(MAX_PASSES):
            self.tf = TypedFunction(self.func, self.ctx.target, self.arg_types)
            self.errors: list[CompileError] = []
            self.changed = False
            self.returns: list[tuple[ast.AST, Type]] = []
            self.loop_depth = 0
            for stmt in self.func.node.body:
                self.stmt(stmt)
            if not self.changed:
                break
        self.tf.var_types = dict(self.var_types)
        self._finish_return_type()
        if not self.errors:
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
            if rt is not None and rt is not none and not _castable(rt, declared):
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
        except _Stop:
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
            if not _castable(t, declared):
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
            if not _castable(t, old):
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

    # ------------------------------------------------------------------ expressions

    def expr(self, node: ast.expr) -> Type:
        handler = _EXPRS.get(type(node))
        if handler is None:
            # Located here, at the unsupported node: a Reject raised outside the try below
            # would be located at the enclosing expression or statement instead.
            what = type(node).__name__
            self.error(f"{_EXPR_NAMES.get(what, what)} is not supported in kernels", node)
            raise _Stop()
        try:
            t = handler(self, node)
        except Reject as r:
            self.reject(r, node)
            raise _Stop() from None
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
        if isinstance(v, str):
            raise Reject("strings are only allowed as exception messages")
        raise Reject(f"{type(v).__name__} constants are not supported in kernels")

    def e_name(self, node: ast.Name) -> Type:
        name = node.id
        if name in self.var_types:
            return self.var_types[name]
        if name in self.assigned:
            self.error(f"'{name}' is used before it is assigned", node)
            raise _Stop()
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
        if sym.kind == "math" and sym.value in ("pi", "e", "inf", "nan", "tau"):
            from ..discover import MATH_CONSTANTS

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
            raise Reject(
                f"a {base_t.name} has no attribute '{node.attr}' in kernels",
                "arrays have .shape" if isinstance(base_t, ArrayType) else None,
            )
        if isinstance(node.value, (ast.Call, ast.Subscript)):
            base_t = self.expr(node.value)
            if isinstance(base_t, ArrayType) and node.attr == "shape":
                return tuple_of([i64] * base_t.ndim)
            raise Reject(f"a {base_t.name} has no attribute '{node.attr}'")
        # thread_idx.x and friends
        base = self.pkg.resolve_expr(self.mod, node.value)
        if base is not None and base.kind == "gpuaot" and base.value in DIM3:
            if node.attr not in ("x", "y", "z"):
                raise Reject(f"{base.value} has .x, .y and .z, not .{node.attr}")
            self.use(f"intr.{base.value}.{node.attr}", node)
            self.tf.calls[node] = Builtin(f"intr.{base.value}.{node.attr}")
            return i64
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

    # ------------------------------------------------------------------ calls

    def use(self, key: str, node: ast.AST) -> None:
        """Record a method-table use; error if the target has no meaning for it."""
        self.tf.uses.add(key)
        if self.ctx.table.lookup(key) is None:
            shown = key.split(".", 1)[1]
            chain = [f"in {self.func.kind} '{self.func.qualname}'"] + self.ctx.call_chain()[1:]
            err = TargetUnavailable(
                f"'{shown}' has no {self.ctx.target.upper()} implementation",
                self.func.loc(node),
                hint=self._unavailable_hint(key),
                notes=chain,
            )
            self.errors.append(err)

    def _unavailable_hint(self, key: str) -> str:
        # Only a user function can be given an overlay; only a kernel can run on the GPU alone
        # (a host function always runs on the CPU).
        target = self.ctx.target
        root = self.ctx.chain[0][0] if self.ctx.chain else self.func
        fix = (
            f"give it a {target.upper()} version with "
            f'@overlay({key.rsplit(".", 1)[-1]}, target="{target}")'
            if key.startswith("user.")
            else None
        )
        if root.kind == "host":
            return (f"{fix}; " if fix else "") + "host functions run on the CPU only"
        return (f"{fix}, or " if fix else "") + "launch this kernel on the GPU only"

    def e_call(self, node: ast.Call) -> Type:
        if node.keywords:
            raise Reject("keyword arguments are not supported in kernel calls")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise Reject("*args is not supported in kernel calls")
        sym = self.pkg.resolve_expr(self.mod, node.func)
        if isinstance(node.func, ast.Name) and node.func.id in self.var_types:
            raise Reject(f"'{node.func.id}' is a variable, not a function")
        if sym is None:
            raise Reject(
                f"unknown function '{ast.unparse(node.func)}'",
                "kernels can call @device functions, math.*, casts and gpuaot intrinsics",
            )
        if sym.kind == "func":
            return self.call_user(node, sym.value)
        if sym.kind == "builtin":
            return self.call_builtin(node, sym.value)
        if sym.kind == "math":
            if sym.value not in MATH_FUNCS:
                raise Reject(f"math.{sym.value} is not supported in kernels")
            args = [self.expr(a) for a in node.args]
            t = rules.math_type(sym.value, args)
            self.use(f"math.{sym.value}", node)
            self.tf.calls[node] = Builtin(f"math.{sym.value}")
            return t
        if sym.kind == "gpuaot":
            return self.call_gpuaot(node, sym.value)
        raise Reject(f"'{ast.unparse(node.func)}' cannot be called in kernels")

    def call_user(self, node: ast.Call, callee: FuncInfo) -> Type:
        if callee.kind == "kernel":
            raise Reject(
                f"kernel '{callee.name}' cannot be called from device code",
                "launch kernels from Python; move shared code into a @device function",
            )
        if callee.kind == "overlay":
            raise Reject(f"'{callee.name}' is an overlay; call the function it replaces")
        if callee.kind == "host" and self.func.kind != "host":
            raise Reject(
                f"host function '{callee.name}' cannot be called from device code",
                "make it a @device function to call it from kernels",
            )
        args = tuple(self.expr(a) for a in node.args)
        body = self.ctx.table.user_function(self.pkg, callee)
        if body is None:
            self.use(f"user.{callee.qualname}", node)
            raise _Stop()
        if any(
            isinstance(a, TupleType) and any(isinstance(i, ArrayType) for i in a.items)
            for a in args
        ):
            raise Reject("tuples of arrays cannot be passed")
        self.ctx.chain[-1] = (self.func, self.func.loc(node))
        if callee.kind == "host":
            args_expected, errs = annotated_params(self.pkg, callee)
            if not errs:
                bad = [a for a, e in zip(args, args_expected) if not _castable(a, e)]
                if bad or len(args) != len(args_expected):
                    raise Reject(
                        f"'{callee.name}' takes ({', '.join(t.name for t in args_expected)})"
                    )
                args = args_expected
        tf, errors = self.ctx.specialize(body, args, self.debug)
        if errors:
            self.errors.extend(errors)
            raise _Stop()
        self.tf.calls[node] = tf
        if tf.may_raise:
            self.tf.may_raise = True
        self.tf.uses |= tf.uses
        if tf.return_type is none:
            return none
        return tf.return_type

    def call_builtin(self, node: ast.Call, name: str) -> Type:
        args = [self.expr(a) for a in node.args]
        self.tf.calls[node] = Builtin(f"builtin.{name}")
        if name == "range":
            raise Reject("range() is only allowed as a for-loop's iterable")
        if name == "len":
            if len(args) != 1 or not isinstance(args[0], (ArrayType, TupleType)):
                raise Reject("len() takes one array")
            if isinstance(args[0], TupleType):
                self.tf.calls[node] = None
                return self.constant(node, len(args[0].items))
            return i64
        if name == "abs":
            if len(args) != 1:
                raise Reject("abs() takes one number")
            return rules.numeric(args[0], "argument of abs()")
        if name in ("min", "max"):
            return rules.min_max_type(name, args)
        if len(args) != 1:
            raise Reject(f"{name}() takes one argument")
        rules.scalar(args[0], f"argument of {name}()")
        return {"int": i64, "float": f64, "bool": boolean}[name]

    def call_gpuaot(self, node: ast.Call, name: str) -> Type:
        if name in BY_NAME:
            args = [self.expr(a) for a in node.args]
            if len(args) != 1:
                raise Reject(f"{name}() takes one value")
            rules.scalar(args[0], f"argument of {name}()")
            self.tf.calls[node] = Builtin("cast", BY_NAME[name])
            return BY_NAME[name]
        if name in ("grid", "grid_size"):
            n = self.static_int(node.args[0]) if len(node.args) == 1 else None
            if n not in (1, 2, 3):
                raise Reject(f"{name}() takes a constant 1, 2 or 3")
            self.use(f"intr.{name}", node)
            self.tf.calls[node] = Builtin(f"intr.{name}", n)
            return i64 if n == 1 else tuple_of([i64] * n)
        if name in ("syncthreads", "lane_id"):
            if node.args:
                raise Reject(f"{name}() takes no arguments")
            self.use(f"intr.{name}", node)
            self.tf.calls[node] = Builtin(f"intr.{name}")
            return none if name == "syncthreads" else i64
        if name in rules.BIT_INTRINSICS:
            if len(node.args) != 1:
                raise Reject(f"{name}() takes one integer")
            t = rules.bit_type(name, self.expr(node.args[0]))
            self.use(f"intr.{name}", node)
            self.tf.calls[node] = Builtin(f"intr.{name}")
            return t
        if name in ("shared_array", "local_array"):
            return self.call_alloc(node, name)
        if name.startswith("atomic_"):
            op = name[len("atomic_") :]
            nargs = 4 if op == "cas" else 3
            if op not in ("add", "sub", "min", "max", "exch", "cas") or len(node.args) != nargs:
                raise Reject(
                    f"{name}() takes (array, index, value)"
                    if op != "cas"
                    else "atomic_cas() takes (array, index, expected, value)"
                )
            arr = self.expr(node.args[0])
            if not isinstance(arr, ArrayType):
                raise Reject(f"the first argument of {name}() must be an array")
            idx = node.args[1]
            elts = idx.elts if isinstance(idx, ast.Tuple) else [idx]
            rules.index_types(arr, [self.expr(e) for e in elts])
            if isinstance(idx, ast.Tuple):
                self.tf.expr_types[idx] = tuple_of([self.tf.expr_types[e] for e in elts])
            for v in node.args[2:]:
                rules.scalar(self.expr(v), f"value of {name}()")
            if arr.dtype is boolean or arr.dtype.bits < 32:
                raise Reject(f"atomics work on 32- and 64-bit elements, not {arr.dtype.name}")
            self.use(f"atomic.{op}", node)
            self.tf.calls[node] = Builtin(f"atomic.{op}")
            return arr.dtype
        if name in ("shfl_down", "shfl_xor"):
            if len(node.args) != 2:
                raise Reject(f"{name}() takes (value, delta)")
            t = rules.shfl_type(self.expr(node.args[0]))
            d = self.expr(node.args[1])
            if not isinstance(d, Scalar) or not d.is_int:
                raise Reject(f"the lane offset of {name}() must be an integer")
            self.use(f"intr.{name}", node)
            self.tf.calls[node] = Builtin(f"intr.{name}")
            return t
        if name in ("kernel", "device", "host", "device_only", "overlay"):
            raise Reject(f"'{name}' is a decorator")
        raise Reject(f"'gpuaot.{name}' is not a kernel intrinsic")

    def call_alloc(self, node: ast.Call, name: str) -> Type:
        if len(node.args) != 2:
            raise Reject(f"{name}() takes (dtype, shape)")
        dsym = self.pkg.resolve_expr(self.mod, node.args[0])
        if dsym is None or dsym.kind != "gpuaot" or dsym.value not in BY_NAME:
            raise Reject(f"the first argument of {name}() must be a gpuaot scalar type")
        shape_node = node.args[1]
        if isinstance(shape_node, ast.Tuple):
            shape = tuple(self.static_int(e) for e in shape_node.elts)
        else:
            shape = (self.static_int(shape_node),)
        if not 1 <= len(shape) <= 3 or any(s is None or s <= 0 for s in shape):
            raise Reject(
                f"{name}() needs a constant positive shape of 1 to 3 dimensions",
                "e.g. shared_array(f32, 256) or local_array(f32, (4, 4))",
            )
        dtype = BY_NAME[dsym.value]
        self.use(f"intr.{name}", node)
        self.tf.calls[node] = Builtin(f"intr.{name}", (dtype, shape))
        return array_of(dtype, len(shape), "C")


def _const_type(value) -> Type:
    if isinstance(value, bool):
        return boolean
    if isinstance(value, int):
        return INT_LIT
    if isinstance(value, float):
        return FLOAT_LIT
    if isinstance(value, tuple):
        return tuple_of(_const_type(v) for v in value)
    raise Reject(f"constant {value!r} has no kernel type")


def _castable(src: Type, dst: Type) -> bool:
    if src is dst:
        return True
    if isinstance(src, Scalar) and isinstance(dst, Scalar):
        return True
    if isinstance(src, TupleType) and isinstance(dst, TupleType):
        return len(src.items) == len(dst.items) and all(
            _castable(a, b) for a, b in zip(src.items, dst.items)
        )
    return False


def _cast_name(t: Type) -> str:
    t = materialize(t)
    return {"i64": "int", "f64": "float"}.get(t.name, t.name)


_STMTS = {
    ast.Expr: Typer.s_expr,
    ast.Pass: Typer.s_pass,
    ast.Assign: Typer.s_assign,
    ast.AnnAssign: Typer.s_annassign,
    ast.AugAssign: Typer.s_augassign,
    ast.If: Typer.s_if,
    ast.While: Typer.s_while,
    ast.For: Typer.s_for,
    ast.Break: Typer.s_break,
    ast.Continue: Typer.s_continue,
    ast.Return: Typer.s_return,
    ast.Raise: Typer.s_raise,
    ast.Assert: Typer.s_assert,
}
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
