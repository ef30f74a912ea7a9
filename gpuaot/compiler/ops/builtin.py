"""Python's builtins kernels call, the scalar casts, and the two ops built in place.

abs(x)      -> builtin.abs: the argument's type; llvm.fabs or a select
f32(x)      -> cast: any scalar to the named type, with the casting rules of SPEC §2
min(a, b)   -> builtin.min: the promoted type; the first argument wins ties
"""

from __future__ import annotations

from ...lang.types import BY_NAME, ArrayType, TupleType, boolean, f64, i64, materialize
from ..frontend import rules
from ..frontend.rules import Reject
from .registry import BASE, IN_PLACE, Op, Typed, declare


def _cast(fl, node, call, rt):
    a = node.args[0]
    return fl.em.cast(fl.b, fl.expr(a), materialize(fl.type(a)), rt)


def _types(tc, node) -> list:
    return [tc.expr(a) for a in node.args]


def _type_scalar_cast(tc, node, name):
    """``int(x)``, ``float(x)``, ``bool(x)``: one scalar argument."""
    args = _types(tc, node)
    if len(args) != 1:
        raise Reject(f"{name}() takes one argument")
    rules.scalar(args[0], f"argument of {name}()")
    return {"int": i64, "float": f64, "bool": boolean}[name]


def _type_cast(tc, node, name):
    """``f32(x)``, ``u8(x)``, ...: the spelling names the type."""
    args = _types(tc, node)
    if len(args) != 1:
        raise Reject(f"{name}() takes one value")
    rules.scalar(args[0], f"argument of {name}()")
    return Typed(BY_NAME[name], BY_NAME[name])


def _type_len(tc, node, name):
    args = _types(tc, node)
    if len(args) != 1 or not isinstance(args[0], (ArrayType, TupleType)):
        raise Reject("len() takes one array")
    if isinstance(args[0], TupleType):
        return Typed(tc.constant(node, len(args[0].items)), folded=True)
    return i64


def _lower_len(fl, node, call, rt):
    return fl.array(node.args[0]).shape[0]


def _type_abs(tc, node, name):
    args = _types(tc, node)
    if len(args) != 1:
        raise Reject("abs() takes one number")
    return rules.numeric(args[0], "argument of abs()")


def _lower_abs(fl, node, call, rt):
    b, em = fl.b, fl.em
    a = node.args[0]
    return em.abs(b, em.cast(b, fl.expr(a), materialize(fl.type(a)), rt), rt)


def _type_min_max(tc, node, name):
    return rules.min_max_type(name, _types(tc, node))


def _min_max(which: str):
    def lower(fl, node, call, rt):
        b, em = fl.b, fl.em
        vals = [em.cast(b, fl.expr(a), materialize(fl.type(a)), rt) for a in node.args]
        out = vals[0]
        for v in vals[1:]:
            out = em.minmax(b, which, out, v, rt)
        return out

    return lower


declare(Op("builtin.len", "builtin", ("len",), _type_len, {BASE: _lower_len}, "builtins.len"))
declare(Op("builtin.abs", "builtin", ("abs",), _type_abs, {BASE: _lower_abs}, "builtins.abs"))
for _name in ("min", "max"):
    declare(
        Op(
            f"builtin.{_name}",
            "builtin",
            (_name,),
            _type_min_max,
            {BASE: _min_max(_name)},
            f"builtins.{_name}",
        )
    )
for _name in ("int", "float", "bool"):
    declare(
        Op(
            f"builtin.{_name}",
            "builtin",
            (_name,),
            _type_scalar_cast,
            {BASE: _cast},
            f"builtins.{_name}",
        )
    )
# One op for every scalar type's spelling; its simulate meaning is the type itself.
declare(Op("cast", "gpuaot", tuple(BY_NAME), _type_cast, {BASE: _cast}, "types.{name}"))
# Built in place: ``a.shape`` by the attribute's lowering, a raise site by the statement's.
declare(Op("array.shape", None, (), None, {BASE: IN_PLACE}))
declare(Op("runtime.exception", None, (), None, {"cpu": IN_PLACE, "gpu": IN_PLACE}))
