"""CUDA-style relaxed atomics on an array element; each returns the old value.

    ga.atomic_add(a, i, v)          -> atomic.add: a's element type; atomicrmw add/fadd (f16 too)
    ga.atomic_cas(a, i, expected, v) -> atomic.cas: cmpxchg (floats through their bits)
    ga.atomic_inc(a, (i, j), v)     -> atomic.inc: u32/u64, CUDA's ``old >= v ? 0 : old + 1``

Both targets lower ``atomicrmw`` natively or by a compare-and-swap loop (LLVM's expansion).
Each declaration names its ``atomicrmw`` operation per element class (float, signed,
unsigned); None: the op does not take that class.
"""

from __future__ import annotations

import ast

from llvmlite import ir

from ...lang.types import ArrayType, boolean, materialize, tuple_of
from ..frontend import rules
from ..frontend.rules import Reject
from .registry import BASE, Op, declare

# name -> its atomicrmw operation per element class (float, signed, unsigned); None where the
# class is refused, and _TAKES[name] says which classes it takes (for the message).
RMW: dict[str, tuple] = {}
_TAKES: dict[str, str] = {}


def _element_class(t) -> int:
    return 0 if t.is_float else 1 if t.is_signed else 2


def _type_atomic(nargs: int, usage: str):
    def typing(tc, node, name):
        if len(node.args) != nargs:
            raise Reject(usage.format(name=name))
        arr = tc.expr(node.args[0])
        if not isinstance(arr, ArrayType):
            raise Reject(f"the first argument of {name}() must be an array")
        idx = node.args[1]
        elts = idx.elts if isinstance(idx, ast.Tuple) else [idx]
        rules.index_types(arr, [tc.expr(e) for e in elts])
        if isinstance(idx, ast.Tuple):
            tc.tf.expr_types[idx] = tuple_of([tc.tf.expr_types[e] for e in elts])
        for v in node.args[2:]:
            if rules.scalar(tc.expr(v), f"value of {name}()").is_complex or arr.dtype.is_complex:
                raise Reject(f"{name}() does not take complex numbers")
        half = arr.dtype.is_float and arr.dtype.bits == 16
        if half and name != "atomic_add":  # CUDA's one atomic on __half: atomicAdd
            raise Reject(
                f"{name}() does not take f16 elements (atomic_add does)",
                "accumulate in an f32 array (atomics work on 32- and 64-bit elements)",
            )
        if not half and (arr.dtype is boolean or arr.dtype.bits < 32):
            raise Reject(f"atomics work on 32- and 64-bit elements, not {arr.dtype.name}")
        op = name[len("atomic_") :]
        if op in RMW and RMW[op][_element_class(arr.dtype)] is None:
            raise Reject(f"{name}() works on {_TAKES[op]} elements, not {arr.dtype.name}")
        return arr.dtype

    return typing


def _operands(fl, node):
    """The element pointer (bounds-checked in debug builds) and the values, as its type."""
    arr = fl.array(node.args[0])
    idx = node.args[1]
    elts = idx.elts if isinstance(idx, ast.Tuple) else [idx]
    ptr = fl.index_ptr(node, arr, elts)
    dt = arr.type.dtype
    vals = [fl.em.cast(fl.b, fl.expr(a), materialize(fl.type(a)), dt) for a in node.args[2:]]
    return ptr, vals, dt


def _lower_rmw(name: str):
    def lower(fl, node, call, rt):
        ptr, vals, dt = _operands(fl, node)
        return fl.b.atomic_rmw(RMW[name][_element_class(dt)], ptr, vals[0], "monotonic")

    return lower


def _lower_cas(fl, node, call, rt):
    ptr, (expected, new), t = _operands(fl, node)
    b = fl.b
    if t.is_float:
        it = ir.IntType(t.bits)
        expected, new = b.bitcast(expected, it), b.bitcast(new, it)
        old = b.extract_value(b.cmpxchg(ptr, expected, new, "monotonic", "monotonic"), 0)
        return b.bitcast(old, fl.em.lltype(t))
    return b.extract_value(b.cmpxchg(ptr, expected, new, "monotonic", "monotonic"), 0)


def atomic(name: str, rmw: tuple, takes: str = "") -> None:
    """Declare ``ga.atomic_NAME(array, index, value)`` as an ``atomicrmw``."""
    RMW[name] = rmw
    _TAKES[name] = takes
    usage = "{name}() takes (array, index, value)"
    declare(
        Op(
            f"atomic.{name}",
            "gpuaot",
            (f"atomic_{name}",),
            _type_atomic(3, usage),
            {BASE: _lower_rmw(name)},
            f"intrinsics.atomic_{name}",
        )
    )


atomic("add", ("fadd", "add", "add"))
atomic("sub", ("fsub", "sub", "sub"))
atomic("min", ("fmin", "min", "umin"))
atomic("max", ("fmax", "max", "umax"))
atomic("exch", ("xchg", "xchg", "xchg"))
declare(
    Op(
        "atomic.cas",
        "gpuaot",
        ("atomic_cas",),
        _type_atomic(4, "atomic_cas() takes (array, index, expected, value)"),
        {BASE: _lower_cas},
        "intrinsics.atomic_cas",
    )
)
atomic("and", (None, "and", "and"), "integer")
atomic("or", (None, "or", "or"), "integer")
atomic("xor", (None, "xor", "xor"), "integer")
# CUDA's wrapping counters: inc gives ``old >= v ? 0 : old + 1``, dec gives
# ``(old == 0 or old > v) ? v : old - 1``; LLVM's uinc_wrap/udec_wrap are exactly these.
atomic("inc", (None, None, "uinc_wrap"), "u32 and u64")
atomic("dec", (None, None, "udec_wrap"), "u32 and u64")
# NaN is a missing value: LLVM's fmin/fmax are minnum/maxnum, which return the other operand.
atomic("nanmin", ("fmin", None, None), "float")
atomic("nanmax", ("fmax", None, None), "float")
