"""Python's builtins kernels call, the scalar casts, array attributes, ops built in place.

abs(x)       -> builtin.abs: the argument's type; llvm.fabs or a select
f32(x)       -> cast: any scalar to the named type, with the casting rules of SPEC §2
min(a, b)    -> builtin.min: the promoted type; the first argument wins ties
round(x, 2)  -> builtin.round: llvm.rint (ties to even); the constant ndigits is its data
divmod(a, b) -> builtin.divmod: (a // b, a % b) through the operators' lowering
a.size       -> array.size: i64, the product of the shape; a.ndim folds to a constant
"""

from __future__ import annotations

import ast

from llvmlite import ir

from ...lang.types import (
    BY_NAME,
    ArrayType,
    TupleType,
    boolean,
    f64,
    i64,
    materialize,
    tuple_of,
)
from ..frontend import complex_rules, rules
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
    result = {"int": i64, "float": f64, "bool": boolean}[name]
    complex_rules.check_cast(args[0], result, name)
    return result


def _type_cast(tc, node, name):
    """``f32(x)``, ``u8(x)``, ...: the spelling names the type."""
    args = _types(tc, node)
    if len(args) != 1:
        raise Reject(f"{name}() takes one value")
    rules.scalar(args[0], f"argument of {name}()")
    complex_rules.check_cast(args[0], BY_NAME[name], name)
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
    return complex_rules.part_type(rules.numeric(args[0], "argument of abs()", complex_ok=True))


def _lower_abs(fl, node, call, rt):
    b, em = fl.b, fl.em
    a = node.args[0]
    at = materialize(fl.type(a))
    if at.is_complex:  # the magnitude: hypot of the parts
        return em.cast(b, em.complex_abs(b, fl.expr(a), at), complex_rules.part_type(at), rt)
    return em.abs(b, em.cast(b, fl.expr(a), at, rt), rt)


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


# ---------------------------------------------------------------------- round, divmod, pow
#
# round(x)       -> i64 for a float (half to even; NaN raises ValueError, ±inf OverflowError,
#                   as CPython), the argument's type for an int
# round(x, n)    -> a constant n; floats as numpy's np.round (x * 10**n, rint, / 10**n: what
#                   simulate's numpy scalars compute), ints exactly as CPython (half to even)
# divmod(a, b)   -> (a // b, a % b), the operators' meaning (zero int divisor: ZeroDivisionError)
# pow(x, y)      -> x ** y


def _type_round(tc, node, name):
    args = _types(tc, node)
    if len(args) not in (1, 2):
        raise Reject("round() takes a number and an optional constant ndigits")
    t = rules.numeric(args[0], "argument of round()")
    if len(args) == 1:
        if t.is_float:
            tc.add_site(node, "ValueError", "cannot convert float NaN to integer")
            tc.add_site(node.func, "OverflowError", "cannot convert float infinity to integer")
            return i64
        return materialize(t)
    n = tc.static_int(node.args[1])
    if n is None:
        raise Reject(
            "round()'s ndigits must be a constant integer",
            "write a literal or a module-level constant, e.g. round(x, 2)",
        )
    if t.is_float and abs(n) > 308:
        raise Reject(f"round()'s ndigits {n} is out of range for a float (|ndigits| <= 308)")
    return Typed(materialize(t), n)


def _lower_round(fl, node, call, rt):
    b, em = fl.b, fl.em
    a = node.args[0]
    at = materialize(fl.type(a))
    x = em.cast(b, fl.expr(a), at, at)
    if at.is_float and call.data is None:
        with b.if_then(b.fcmp_unordered("uno", x, x), likely=False):
            fl.raise_site(node)
        inf = ir.Constant(x.type, float("inf"))
        with b.if_then(b.fcmp_ordered("==", em.abs(b, x, at), inf), likely=False):
            fl.raise_site(node.func)
        return em.float_to_int(b, em.intrinsic(b, "llvm.rint", [x]), rt)
    if call.data is None:
        return x
    n = call.data
    if at.is_float:
        scale = ir.Constant(x.type, 10.0 ** abs(n))
        if n >= 0:
            return em.arith(
                b, "/", em.intrinsic(b, "llvm.rint", [em.arith(b, "*", x, scale, at)]), scale, at
            )
        return em.arith(
            b, "*", em.intrinsic(b, "llvm.rint", [em.arith(b, "/", x, scale, at)]), scale, at
        )
    return _round_int(b, em, x, n, at)


def _round_int(b, em, x, n: int, t):
    """CPython's ``round(int, n)``: to a multiple of 10**-n, ties to the even multiple."""
    if n >= 0:
        return x
    p = 10**-n
    if p >= 2 ** (t.bits - (1 if t.is_signed else 0)):
        return ir.Constant(x.type, 0)  # |x| < p / 2: CPython's answer (a tie at MIN aside)
    pc = ir.Constant(x.type, p)
    q = em.int_floordiv(b, x, pc, t)
    r = em.int_mod(b, x, pc, t)
    half = ir.Constant(x.type, p // 2)
    up = b.or_(
        b.icmp_unsigned(">", r, half),
        b.and_(b.icmp_unsigned("==", r, half), b.trunc(q, ir.IntType(1))),
    )
    return b.mul(b.add(q, b.zext(up, x.type)), pc)


def _type_divmod(tc, node, name):
    args = _types(tc, node)
    if len(args) != 2:
        raise Reject("divmod() takes two numbers")
    t = rules.binop_type(ast.FloorDiv(), args[0], args[1])
    tc.division_site(node, ast.FloorDiv(), node.args[1], t)
    return tuple_of([t, t])


def _lower_divmod(fl, node, call, rt):
    b = fl.b
    x, y = node.args
    t = rt.items[0]
    parts = [fl.expr(x), fl.type(x), fl.expr(y), fl.type(y), t]
    q = fl.binop(ast.FloorDiv(), *parts, node)  # the zero-divisor check, once
    r = fl.binop(ast.Mod(), *parts, None)
    v = ir.Constant(fl.em.lltype(rt), ir.Undefined)
    return b.insert_value(b.insert_value(v, q, 0), r, 1)


def _type_pow(tc, node, name):
    args = _types(tc, node)
    if len(args) != 2:
        raise Reject("pow() takes two numbers in kernels (no modulus)", "write pow(x, y) % m")
    return rules.binop_type(ast.Pow(), args[0], args[1])


def _lower_pow(fl, node, call, rt):
    x, y = node.args
    return fl.binop(ast.Pow(), fl.expr(x), fl.type(x), fl.expr(y), fl.type(y), rt, node)


for _name, _typing, _lower in (
    ("round", _type_round, _lower_round),
    ("divmod", _type_divmod, _lower_divmod),
    ("pow", _type_pow, _lower_pow),
):
    declare(
        Op(f"builtin.{_name}", "builtin", (_name,), _typing, {BASE: _lower}, f"builtins.{_name}")
    )


# ---------------------------------------------------------------------- a.size, a.ndim
#
# a.size -> i64, the product of the shape; a.ndim -> the rank, a constant


def _array_of(tc, node) -> ArrayType:
    return tc.tf.expr_types[node.value]


def _type_size(tc, node, name):
    return i64


def _lower_size(fl, node, call, rt):
    shape = fl.array(node.value).shape
    out = shape[0]
    for d in shape[1:]:
        out = fl.b.mul(out, d)
    return out


def _type_ndim(tc, node, name):
    return Typed(tc.constant(node, _array_of(tc, node).ndim), folded=True)


declare(Op("array.size", None, (), _type_size, {BASE: _lower_size}))
declare(Op("array.ndim", None, (), _type_ndim, {BASE: IN_PLACE}))
