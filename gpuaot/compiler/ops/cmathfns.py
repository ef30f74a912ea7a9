"""Complex numbers' operations: ``z.real``, ``z.imag``, ``z.conjugate()`` and ``cmath.*``.

    z.real, z.imag         -> complex.real / complex.imag: the part type (f32 for c64)
    z.conjugate()          -> complex.conjugate: (re, -im)
    cmath.exp(z)           -> cmath.exp: exp(re) * (cos(im), sin(im)), the real math as math.*
                              lowers it (libm / LLVM intrinsics on the CPU, libdevice on the GPU)
    cmath.phase(z)         -> cmath.phase: atan2(im, re), a real
    cmath.polar(z)         -> (abs(z), phase(z)); cmath.rect(r, phi) -> (r cos phi, r sin phi)

A real argument is a complex with a zero imaginary part (an f32 gives c64, as Python and the
f32 math functions); a real's ``.real`` is itself, its ``.imag`` zero, its ``conjugate()``
itself (Python's meanings). One declaration per function (:data:`CMATH`); the operators are
the emitter's (:mod:`..lower.complexes`).
"""

from __future__ import annotations

import ast

from llvmlite import ir

from ...lang.types import boolean, c128, f64, materialize, promote, tuple_of
from ..frontend import complex_rules, rules
from ..frontend.rules import Reject
from ..lower.complexes import complex_of, part_type
from .registry import BASE, Op, declare

CONJUGATE = "complex.conjugate"


# ---------------------------------------------------------------------- .real .imag .conjugate()


def _type_part(tc, node, name):
    return complex_rules.part_type(tc.tf.expr_types[node.value])


def _lower_part(fl, node, call, rt):
    b, em = fl.b, fl.em
    t = materialize(fl.type(node.value))
    v = fl.expr(node.value)
    if t.is_complex:
        part = em.complex_parts(b, v)[0 if node.attr == "real" else 1]
        return em.cast(b, part, part_type(t), rt)
    if node.attr == "imag":
        return em.zero(rt)
    return em.cast(b, v, t, rt)


def is_conjugate(tc, node: ast.Call) -> bool:
    """``x.conjugate()`` where ``x`` is a value (not a module's function of that name)."""
    f = node.func
    if not (isinstance(f, ast.Attribute) and f.attr == "conjugate"):
        return False
    v = f.value
    return not isinstance(v, ast.Name) or v.id in tc.var_types or v.id in tc.assigned


def _type_conjugate(tc, node, name):
    if node.args or node.keywords:
        raise Reject("conjugate() takes no arguments")
    t = rules.numeric(tc.expr(node.func.value), "conjugate()'s number", complex_ok=True)
    return t


def _lower_conjugate(fl, node, call, rt):
    b, em = fl.b, fl.em
    base = node.func.value
    v = em.cast(b, fl.expr(base), materialize(fl.type(base)), rt)
    return em.complex_conjugate(b, v, rt) if rt.is_complex else v


for _attr in complex_rules.PARTS:
    declare(Op(f"complex.{_attr}", None, (), _type_part, {BASE: _lower_part}))
declare(Op(CONJUGATE, None, (), _type_conjugate, {BASE: _lower_conjugate}))


# ---------------------------------------------------------------------- cmath


def _exp(em, b, re, im, pt):
    r = em.math(b, "exp", [re], pt)
    out_re = b.fmul(r, em.math(b, "cos", [im], pt), flags=em.flags)
    out_im = b.fmul(r, em.math(b, "sin", [im], pt), flags=em.flags)
    # exp(x + 0j) is (exp(x), 0) even where exp(x) overflows (inf * 0 would be NaN)
    zero = b.fcmp_ordered("==", im, ir.Constant(im.type, 0.0))
    return out_re, b.select(zero, im, out_im)


def _log(em, b, re, im, pt):
    return em.math(b, "log", [em.math(b, "hypot", [re, im], pt)], pt), _phase(em, b, re, im, pt)


def _sqrt(em, b, re, im, pt):
    """CPython's ``cmath.sqrt``: s = 2 sqrt(|x|/8 + hypot(|x|/8, |y|/8)), d = |y| / 2s; the
    root is (s, ±d) for x >= 0, else (d, ±s), the sign of y's; sqrt(±0 + yj) for y = ±0 is
    (0, y). (CPython scales subnormal parts first; here they lose their low bits.)"""
    f = em.flags
    ax = em.intrinsic(b, "llvm.fabs", [re])
    ay = em.intrinsic(b, "llvm.fabs", [im])
    eighth = ir.Constant(re.type, 0.125)
    ax8 = b.fmul(ax, eighth, flags=f)
    h = em.math(b, "hypot", [ax8, b.fmul(ay, eighth, flags=f)], pt)
    s = b.fmul(
        ir.Constant(re.type, 2.0), em.math(b, "sqrt", [b.fadd(ax8, h, flags=f)], pt), flags=f
    )
    d = b.fdiv(ay, b.fmul(ir.Constant(re.type, 2.0), s, flags=f), flags=f)
    zero = ir.Constant(re.type, 0.0)
    right = b.fcmp_ordered(">=", re, zero)
    out_re = b.select(right, s, d)
    out_im = em.intrinsic(b, "llvm.copysign", [b.select(right, d, s), im])
    both_zero = b.and_(b.fcmp_ordered("==", re, zero), b.fcmp_ordered("==", im, zero))
    return b.select(both_zero, zero, out_re), b.select(both_zero, im, out_im)


def _sin(em, b, re, im, pt):
    f = em.flags
    out_re = b.fmul(em.math(b, "sin", [re], pt), em.math(b, "cosh", [im], pt), flags=f)
    out_im = b.fmul(em.math(b, "cos", [re], pt), em.math(b, "sinh", [im], pt), flags=f)
    return out_re, out_im


def _cos(em, b, re, im, pt):
    f = em.flags
    out_re = b.fmul(em.math(b, "cos", [re], pt), em.math(b, "cosh", [im], pt), flags=f)
    out_im = b.fmul(em.math(b, "sin", [re], pt), em.math(b, "sinh", [im], pt), flags=f)
    return out_re, b.fneg(out_im, flags=f)


def _phase(em, b, re, im, pt):
    return em.math(b, "atan2", [im, re], pt)


def _polar(em, b, re, im, pt):
    return em.math(b, "hypot", [re, im], pt), _phase(em, b, re, im, pt)


def _predicate(name: str):
    def lower(em, b, re, im, pt):
        x, y = em.float_predicate(b, name, re), em.float_predicate(b, name, im)
        return b.and_(x, y) if name == "isfinite" else b.or_(x, y)

    return lower


_COMPLEX, _REAL, _PAIR, _BOOL = "complex", "real", "pair", "bool"
# name: (what it returns, its lowering from the argument's parts)
CMATH = {
    "exp": (_COMPLEX, _exp),
    "log": (_COMPLEX, _log),
    "sqrt": (_COMPLEX, _sqrt),
    "sin": (_COMPLEX, _sin),
    "cos": (_COMPLEX, _cos),
    "phase": (_REAL, _phase),
    "polar": (_PAIR, _polar),
    "isnan": (_BOOL, _predicate("isnan")),
    "isinf": (_BOOL, _predicate("isinf")),
    "isfinite": (_BOOL, _predicate("isfinite")),
}


def _type_cmath(tc, node, name):
    args = [tc.expr(a) for a in node.args]
    if len(args) != 1 or node.keywords:
        hint = "cmath.log(z) / math.log(base)" if name == "log" else None
        raise Reject(f"cmath.{name}() takes one number in kernels", hint)
    z = complex_rules.complex_result(complex_rules.cmath_arg(args[0], f"cmath.{name}"))
    returns = CMATH[name][0]
    if returns == _COMPLEX:
        return z
    if returns == _BOOL:
        return boolean
    part = complex_rules.part_type(z)
    return part if returns == _REAL else tuple_of([part, part])


def _lower_cmath(name: str):
    returns, fn = CMATH[name]

    def lower(fl, node, call, rt):
        b, em = fl.b, fl.em
        a = node.args[0]
        at = materialize(fl.type(a))
        zt = materialize(complex_rules.complex_result(at))
        pt = part_type(zt)
        re, im = em.complex_parts(b, em.cast(b, fl.expr(a), at, zt))
        out = fn(em, b, re, im, pt)
        if returns == _COMPLEX:
            return em.complex_pack(b, zt, *out)
        if returns == _PAIR:
            pair = tuple_of([pt, pt])
            v = ir.Constant(em.lltype(pair), ir.Undefined)
            v = b.insert_value(b.insert_value(v, out[0], 0), out[1], 1)
            return em.cast(b, v, pair, rt)
        return out if returns == _BOOL else em.cast(b, out, pt, rt)

    return lower


def _type_rect(tc, node, name):
    args = [tc.expr(a) for a in node.args]
    if len(args) != 2 or node.keywords:
        raise Reject("cmath.rect() takes (r, phi)")
    r, phi = (rules.numeric(t, "argument of cmath.rect()") for t in args)
    return complex_rules.complex_result(rules.float_result(promote(r, phi)))


def _lower_rect(fl, node, call, rt):
    b, em = fl.b, fl.em
    pt = part_type(rt)
    r, phi = (em.cast(b, fl.expr(a), materialize(fl.type(a)), pt) for a in node.args)
    out_re = b.fmul(r, em.math(b, "cos", [phi], pt), flags=em.flags)
    out_im = b.fmul(r, em.math(b, "sin", [phi], pt), flags=em.flags)
    return em.complex_pack(b, complex_of(pt), out_re, out_im)


for _name in CMATH:
    declare(
        Op(f"cmath.{_name}", "cmath", (_name,), _type_cmath, {BASE: _lower_cmath(_name)},
           f"cmath.{_name}")
    )  # fmt: skip
declare(Op("cmath.rect", "cmath", ("rect",), _type_rect, {BASE: _lower_rect}, "cmath.rect"))
CMATH_FUNCS = (*CMATH, "rect")


# ---------------------------------------------------------------------- complex(re, im)


def _type_complex(tc, node, name):
    args = [tc.expr(a) for a in node.args]
    if not 1 <= len(args) <= 2 or node.keywords:
        raise Reject("complex() takes (real) or (real, imag) in kernels")
    for t in args:
        rules.numeric(t, "argument of complex()", complex_ok=len(args) == 1)
    return c128  # Python's complex, as numba's


def _lower_complex(fl, node, call, rt):
    b, em = fl.b, fl.em
    re, im = ([*node.args, None])[:2]
    v = em.cast(b, fl.expr(re), materialize(fl.type(re)), rt)
    if im is None:
        return v
    part = em.cast(b, fl.expr(im), materialize(fl.type(im)), f64)
    return b.insert_value(v, part, 1)


declare(
    Op("builtin.complex", "builtin", ("complex",), _type_complex, {BASE: _lower_complex},
       "builtins.complex")
)  # fmt: skip
