"""CUDA's bit intrinsics on 32- and 64-bit integers, with numba-cuda's result types.

    ga.popc(x)  -> intr.popc: x's type; llvm.ctpop
    ga.brev(x)  -> intr.brev: the unsigned type of x's width; llvm.bitreverse
    ga.clz(x)   -> intr.clz: x's type; llvm.ctlz (clz(0) is the width)
    ga.ffs(x)   -> intr.ffs: u32; 1 + llvm.cttz, 0 for 0

The ``is_zero_poison`` flag of ctlz/cttz is false, so the zero case is defined.
"""

from __future__ import annotations

from llvmlite import ir

from ...lang.types import u32
from ..frontend import rules
from ..frontend.rules import Reject
from .registry import BASE, Op, declare


def _typing(result):
    def typing(tc, node, name):
        if len(node.args) != 1:
            raise Reject(f"{name}() takes one integer")
        return result(rules.int_operand(name, tc.expr(node.args[0])))

    return typing


def _lowering(build):
    def lower(fl, node, call, rt):
        b, em = fl.b, fl.em
        out = build(em, b, fl.expr(node.args[0]))
        want = em.lltype(rt)
        if out.type.width > want.width:
            return b.trunc(out, want)
        return out

    return lower


_NO_POISON = ir.Constant(ir.IntType(1), 0)


def _ffs(em, b, v):
    tz = em.intrinsic(b, "llvm.cttz", [v, _NO_POISON])
    one = ir.Constant(v.type, 1)
    zero = ir.Constant(v.type, 0)
    return b.select(b.icmp_unsigned("==", v, zero), zero, b.add(tz, one))


_BITS = {
    "popc": (lambda t: t, lambda em, b, v: em.intrinsic(b, "llvm.ctpop", [v])),
    "brev": (rules.unsigned_of, lambda em, b, v: em.intrinsic(b, "llvm.bitreverse", [v])),
    "clz": (lambda t: t, lambda em, b, v: em.intrinsic(b, "llvm.ctlz", [v, _NO_POISON])),
    "ffs": (lambda t: u32, _ffs),
}
for _name, (_result, _build) in _BITS.items():
    declare(
        Op(
            f"intr.{_name}",
            "gpuaot",
            (_name,),
            _typing(_result),
            {BASE: _lowering(_build)},
            f"intrinsics.{_name}",
        )
    )
