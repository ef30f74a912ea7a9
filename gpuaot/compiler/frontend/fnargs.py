"""Functions and scalar types as values: arguments of ``@device`` helpers, and variables.

    @ga.device
    def apply(op, dt, a, i, v):
        op(a, i, dt(v))               # op: ga.atomic_add, dt: u32 (one specialisation each)
        t = ga.local_array(dt, 4)

    apply(ga.atomic_add, u32, out, 0, 1)

A name that resolves to an intrinsic, a ``math`` function, a ``@device`` function or a scalar
type is typed as a :class:`.typed.ValueArg` where it is passed to a helper or bound to a
variable; the helper is specialised per value (numba-cuda does the same with its function and
type arguments). A variable bound to one such value cannot be re-bound to another.
"""

from __future__ import annotations

import ast

from ...lang.types import BY_NAME, Type
from .. import ops
from ..discover import Symbol
from .rules import Reject
from .typed import ValueArg

_NOT_VALUES = {"Array", "WARP_SIZE", "kernel", "device", "host", "device_only", "overlay"}


def named_value(tc, node: ast.expr) -> Symbol | None:
    """The function or type ``node`` names, if it names one (a variable holding one too)."""
    if isinstance(node, ast.Name):
        t = tc.var_types.get(node.id)
        if t is not None or node.id in tc.assigned:
            return t.symbol if isinstance(t, ValueArg) else None
    elif not isinstance(node, ast.Attribute):
        return None
    sym = tc.pkg.resolve_expr(tc.mod, node)
    if sym is None:
        return None
    if sym.kind == "func":
        return sym if sym.value.kind in ("device", "device_only") else None
    if sym.kind == "math":
        return sym if ops.lookup("math", sym.value) is not None else None
    if sym.kind == "gpuaot" and sym.value not in _NOT_VALUES:
        known = sym.value in BY_NAME or ops.lookup("gpuaot", sym.value) is not None
        return sym if known else None
    return None


def arg_type(tc, node: ast.expr) -> Type:
    """A call argument's type: a :class:`ValueArg` for a function or a type, else its type."""
    sym = named_value(tc, node)
    if sym is None:
        return tc.expr(node)
    t = tc.tf.expr_types[node] = ValueArg(sym)
    return t


def callee(tc, func: ast.expr) -> Symbol | None:
    """What a call's function names: a variable holding a function calls that function."""
    if isinstance(func, ast.Name) and func.id in tc.var_types:
        t = tc.var_types[func.id]
        if not isinstance(t, ValueArg):
            raise Reject(f"'{func.id}' is a variable, not a function")
        return t.symbol
    return tc.pkg.resolve_expr(tc.mod, func)


def bind_value(tc, node: ast.Assign) -> bool:
    """``f = ga.atomic_add``: bind a function or type to a plain name; False if not one."""
    sym = named_value(tc, node.value)
    if sym is None:
        return False
    t = tc.tf.expr_types[node.value] = ValueArg(sym)
    for target in node.targets:
        if not isinstance(target, ast.Name):
            raise Reject(f"the {t.name} can only be bound to a plain name")
        old = tc.var_types.get(target.id)
        if old is None:
            tc.var_types[target.id] = t
            tc.changed = True
        elif old is not t:
            was = old.name if isinstance(old, ValueArg) else f"a {old.name}"
            raise Reject(
                f"'{target.id}' holds {was} here but the {t.name} is assigned",
                "a variable holding a function or a type keeps that one: use a new name",
            )
        tc.tf.expr_types[target] = t
    return True


def check_kernel_args(types) -> None:
    """``@host`` parameters are run-time values: a function or a type cannot pass."""
    for t in types:
        if isinstance(t, ValueArg):
            raise Reject(
                f"the {t.name} cannot be passed here",
                "only @device helpers take functions and types as arguments",
            )
