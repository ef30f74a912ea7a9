"""The f16 conversions LLVM's CPU code calls, defined in the bundle itself.

    if uses_half(unit.ir): objects += [compiled(half_runtime_module())]   # baseline, once

A CPU without F16C (x86-64 up to v2) has no instruction that converts f16; LLVM computes f16
in f32 and calls ``__extendhfsf2`` (f16 → f32) and ``__truncsfhf2`` (f32 → f16, round to
nearest even) around each operation, ``__truncdfhf2`` (f64 → f16, one rounding) on every level
(F16C has no f64 form) and, where it folds two extensions, ``__extendhfdf2``. Those are libgcc's
or compiler-rt's, which not every C toolchain has (GCC before 12 has none); so the bundle
carries its own, compiled for the baseline, in integer arithmetic (no f16 operation of their
own to call back into), local to the bundle (the version script exports none of them). They
give what F16C's ``vcvtph2ps``/``vcvtps2ph`` give, NaNs included (quieted, payload kept), so
every CPU level computes the same bits. Only a bundle whose code uses f16 links them.
"""

from __future__ import annotations

import re

from llvmlite import ir

from ...lower.emitter import F16, F32, F64
from .pipeline import new_module

I16 = ir.IntType(16)
I32 = ir.IntType(32)
EXTEND = "__extendhfsf2"
TRUNC = "__truncsfhf2"
TRUNC_D = "__truncdfhf2"
EXTEND_D = "__extendhfdf2"
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_HALF = re.compile(r"\bhalf\b")


def uses_half(ir_text: str) -> bool:
    """Whether LLVM IR text has an f16 value (llvmlite quotes every name, so ``half`` outside
    quotes is the type)."""
    return "half" in ir_text and bool(_HALF.search(_QUOTED.sub("", ir_text)))


def _c(ty, v):
    return ir.Constant(ty, v)


def _extend(mod: ir.Module) -> ir.Function:
    """f16 → f32, exact. A subnormal f16 is its 10-bit significand times 2**-24 (exact in f32)."""
    fn = ir.Function(mod, ir.FunctionType(F32, [F16]), EXTEND)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    h = b.zext(b.bitcast(fn.args[0], I16), I32)
    sign = b.shl(b.and_(h, _c(I32, 0x8000)), _c(I32, 16))
    exp = b.and_(b.lshr(h, _c(I32, 10)), _c(I32, 0x1F))
    mant = b.and_(h, _c(I32, 0x3FF))
    normal = b.or_(b.shl(b.add(exp, _c(I32, 112)), _c(I32, 23)), b.shl(mant, _c(I32, 13)))
    special = b.or_(_c(I32, 0x7F800000), b.shl(mant, _c(I32, 13)))  # inf; NaN: keep payload
    quiet = b.or_(special, _c(I32, 1 << 22))
    special = b.select(b.icmp_unsigned("!=", mant, _c(I32, 0)), quiet, special)
    tiny = b.bitcast(b.fmul(b.uitofp(mant, F32), _c(F32, 2.0**-24)), I32)
    mag = b.select(
        b.icmp_unsigned("==", exp, _c(I32, 0)),
        tiny,
        b.select(b.icmp_unsigned("==", exp, _c(I32, 0x1F)), special, normal),
    )
    b.ret(b.bitcast(b.or_(mag, sign), F32))
    return fn


def _trunc(mod: ir.Module, name: str, src: ir.Type) -> ir.Function:
    """f32 or f64 → f16, rounded once to nearest even (overflow to inf, subnormals included):
    the integer form of F. Giesen's ``float_to_half_fast3_rtne``, for either source width.

    A result below 2**-14 (an f16 subnormal or zero) is the sum with a power of two whose ulp
    is 2**-24, f16's subnormal step: the adder rounds it to nearest even, and the low bits of
    the sum are the f16. Above, the exponent is rebiased and the dropped bits rounded by adding
    half an ulp less one, plus the kept significand's lowest bit (ties to even); a carry out of
    the significand steps the exponent, up to inf.
    """
    width = 32 if src == F32 else 64
    it = ir.IntType(width)
    man = 23 if width == 32 else 52  # significand bits
    bias = 127 if width == 32 else 1023
    drop = man - 10
    fn = ir.Function(mod, ir.FunctionType(F16, [src]), name)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    bits = b.bitcast(fn.args[0], it)
    sign_bit = 1 << (width - 1)
    sign = b.trunc(b.lshr(b.and_(bits, _c(it, sign_bit)), _c(it, width - 16)), I16)
    a = b.and_(bits, _c(it, sign_bit - 1))
    inf = (2 * bias + 1) << man
    # inf and NaN (quieted, its top payload bits kept, as vcvtps2ph), or >= 2**16: inf.
    payload = b.trunc(b.lshr(b.and_(a, _c(it, (1 << man) - 1)), _c(it, drop)), I16)
    nan = b.or_(_c(I16, 0x7E00), payload)
    big = b.select(b.icmp_unsigned(">", a, _c(it, inf)), nan, _c(I16, 0x7C00))
    # Subnormal or zero: the magic sum (bias - 15 + drop + 1: an exponent whose ulp is 2**-24).
    magic_bits = (bias - 15 + drop + 1) << man
    magic = _c(src, 2.0 ** ((magic_bits >> man) - bias))
    summed = b.fadd(b.bitcast(a, src), magic)
    small = b.trunc(b.sub(b.bitcast(summed, it), _c(it, magic_bits)), I16)
    # Normal: rebias, round, take the top bits.
    odd = b.and_(b.lshr(a, _c(it, drop)), _c(it, 1))
    rebias = ((15 - bias) << man) + (1 << (drop - 1)) - 1  # negative: the sum wraps, as in C
    r = b.add(b.add(a, _c(it, rebias)), odd)
    normal = b.trunc(b.lshr(r, _c(it, drop)), I16)
    out = b.select(
        b.icmp_unsigned(">=", a, _c(it, (bias + 16) << man)),
        big,
        b.select(b.icmp_unsigned("<", a, _c(it, (bias - 14) << man)), small, normal),
    )
    b.ret(b.bitcast(b.or_(out, sign), F16))
    return fn


def half_runtime_module() -> ir.Module:
    """The four conversions, for the baseline CPU level (the caller compiles it so)."""
    mod = new_module("gpuaot_cpu_half")
    extend = _extend(mod)
    _trunc(mod, TRUNC, F32)
    _trunc(mod, TRUNC_D, F64)
    fn = ir.Function(mod, ir.FunctionType(F64, [F16]), EXTEND_D)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.ret(b.fpext(b.call(extend, [fn.args[0]]), F64))
    for f in mod.functions:
        f.visibility = "hidden"
    return mod
