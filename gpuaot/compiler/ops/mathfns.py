"""``math.*`` in kernels (and gpuaot's ``fma``, ``cbrt``): one declaration per function.

    math.sqrt(x)   -> math.sqrt: f32 stays f32, else f64; llvm.sqrt on the CPU, __nv_sqrt(f)
    math.floor(x)  -> math.floor: i64 (an integer argument keeps its type)
    math.isnan(x)  -> math.isnan: bool, an fcmp (no library call)

Each declaration names the function's kind (its typing rule in :func:`rules.math_type`), its
arity, and its symbol per target: ``("llvm", "sqrt")`` is the intrinsic ``llvm.sqrt.f64``
(the vectoriser understands those), ``("libm", "tan")`` the C library's ``tan``/``tanf``, and
``gpu`` the libdevice function's base name (``__nv_tan``/``__nv_tanf``). :data:`CPU_MATH` and
:data:`LIBDEVICE`, the emitters' maps, are derived from these declarations.
"""

from __future__ import annotations

import math as pymath

from llvmlite import ir

from ...lang.types import f64, materialize
from ..frontend import rules
from .registry import Op, declare

# name: (kind, arity, CPU symbol, libdevice base name); None: no library call on any target.
_FLOAT, _ROUND, _PRED, _SCALE = "float", "rounding", "predicate", "scale"
MATH = {
    "sqrt": (_FLOAT, 1, ("llvm", "sqrt"), "sqrt"),
    "exp": (_FLOAT, 1, ("llvm", "exp"), "exp"),
    "log": (_FLOAT, 1, ("llvm", "log"), "log"),
    "log2": (_FLOAT, 1, ("llvm", "log2"), "log2"),
    "log10": (_FLOAT, 1, ("llvm", "log10"), "log10"),
    "sin": (_FLOAT, 1, ("llvm", "sin"), "sin"),
    "cos": (_FLOAT, 1, ("llvm", "cos"), "cos"),
    "tan": (_FLOAT, 1, ("libm", "tan"), "tan"),
    "asin": (_FLOAT, 1, ("libm", "asin"), "asin"),
    "acos": (_FLOAT, 1, ("libm", "acos"), "acos"),
    "atan": (_FLOAT, 1, ("libm", "atan"), "atan"),
    "atan2": (_FLOAT, 2, ("libm", "atan2"), "atan2"),
    "sinh": (_FLOAT, 1, ("libm", "sinh"), "sinh"),
    "cosh": (_FLOAT, 1, ("libm", "cosh"), "cosh"),
    "tanh": (_FLOAT, 1, ("libm", "tanh"), "tanh"),
    "pow": (_FLOAT, 2, ("llvm", "pow"), "pow"),
    "fabs": (_FLOAT, 1, ("llvm", "fabs"), "fabs"),
    "floor": (_ROUND, 1, ("llvm", "floor"), "floor"),
    "ceil": (_ROUND, 1, ("llvm", "ceil"), "ceil"),
    "trunc": (_ROUND, 1, ("llvm", "trunc"), "trunc"),
    "fmod": (_FLOAT, 2, ("libm", "fmod"), "fmod"),
    "hypot": (_FLOAT, 2, ("libm", "hypot"), "hypot"),
    "erf": (_FLOAT, 1, ("libm", "erf"), "erf"),
    "erfc": (_FLOAT, 1, ("libm", "erfc"), "erfc"),
    "copysign": (_FLOAT, 2, ("llvm", "copysign"), "copysign"),
    "acosh": (_FLOAT, 1, ("libm", "acosh"), "acosh"),
    "asinh": (_FLOAT, 1, ("libm", "asinh"), "asinh"),
    "atanh": (_FLOAT, 1, ("libm", "atanh"), "atanh"),
    "exp2": (_FLOAT, 1, ("llvm", "exp2"), "exp2"),
    "expm1": (_FLOAT, 1, ("libm", "expm1"), "expm1"),
    "log1p": (_FLOAT, 1, ("libm", "log1p"), "log1p"),
    "gamma": (_FLOAT, 1, ("libm", "tgamma"), "tgamma"),
    "lgamma": (_FLOAT, 1, ("libm", "lgamma"), "lgamma"),
    "remainder": (_FLOAT, 2, ("libm", "remainder"), "remainder"),
    "degrees": (_SCALE, 1, None, None),
    "radians": (_SCALE, 1, None, None),
    "isnan": (_PRED, 1, None, None),
    "isinf": (_PRED, 1, None, None),
    "isfinite": (_PRED, 1, None, None),
}
# gpuaot's own math-like functions (``ga.fma``), typed and lowered like math.*.
GPUAOT_MATH: dict = {}


def _type_math(tc, node, name):
    kind, arity = _info(name)[:2]
    spelled = f"math.{name}" if name in MATH else name
    return rules.math_type(name, [tc.expr(a) for a in node.args], arity, kind, spelled)


def _info(name):
    return MATH.get(name) or GPUAOT_MATH[name]


def _lower_math(name: str):
    kind = _info(name)[0]

    def lower(fl, node, call, rt):
        b, em = fl.b, fl.em
        types = [materialize(fl.type(a)) for a in node.args]
        vals = [fl.expr(a) for a in node.args]
        if kind == _PRED:
            if not types[0].is_float:
                return ir.Constant(ir.IntType(1), int(name == "isfinite"))
            return em.float_predicate(b, name, vals[0])
        if kind == _ROUND:
            t = types[0]
            if not t.is_float:
                return em.cast(b, vals[0], t, rt)
            return em.cast(b, em.math(b, name, [vals[0]], t), t, rt)
        vals = [em.cast(b, v, t, rt) for v, t in zip(vals, types)]
        if kind == _SCALE:
            return _scale(em, b, vals[0], getattr(pymath, name)(1.0), rt)
        return em.math(b, name, vals, rt)

    return lower


CPU_MATH: dict[str, tuple[str, str]] = {}  # name -> ("llvm" | "libm", symbol)
LIBDEVICE: dict[str, str] = {}  # name -> libdevice base name


def _scale(em, b, v, factor: float, rt):
    """``v * factor`` in f64, as CPython's ``math.degrees``/``radians``; an f32 is widened,
    multiplied and rounded back, as ``simulate`` computes it."""
    wide = em.cast(b, v, rt, f64)
    out = b.fmul(wide, ir.Constant(wide.type, factor), flags=em.flags)
    return em.cast(b, out, f64, rt)


def _declare(namespace: str, name: str, key: str, simulate: str, info: tuple) -> None:
    kind, arity, cpu, gpu = info
    if cpu is not None:
        CPU_MATH[name] = cpu
    if gpu is not None:
        LIBDEVICE[name] = gpu
    lower = _lower_math(name)
    ops = {"cpu": lower, "gpu": lower}
    declare(Op(key, namespace, (name,), _type_math, ops, simulate, {"kind": kind, "arity": arity}))


for _name, _row in MATH.items():
    _declare("math", _name, f"math.{_name}", f"math.{_name}", _row)
MATH_FUNCS = tuple(MATH)


def gpuaot_math(name: str, kind: str, arity: int, cpu, gpu) -> None:
    """A gpuaot function typed and lowered as math.* is (``ga.fma``): key ``intr.NAME``."""
    GPUAOT_MATH[name] = (kind, arity, cpu, gpu)
    _declare("gpuaot", name, f"intr.{name}", f"intrinsics.{name}", GPUAOT_MATH[name])


# fma: one rounding (llvm.fma, libdevice's fma → fma.rn); cbrt: the real cube root.
gpuaot_math("fma", _FLOAT, 3, ("llvm", "fma"), "fma")
gpuaot_math("cbrt", _FLOAT, 1, ("libm", "cbrt"), "cbrt")
