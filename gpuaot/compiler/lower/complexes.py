"""Complex numbers in generated code: ``c64``/``c128`` as ``{float, float}``/``{double, double}``.

    em.lltype(c64)                        # {float, float}: numpy's layout (real, imaginary)
    z = em.cast(b, x, f32, c64)           # (x, 0.0)
    q = em.arith(b, "/", z, w, c64)       # CPython's quotient (numba's too)
    r = em.complex_abs(b, z, c64)         # hypot(re, im): no overflow for big parts

A mixin of :class:`.emitter.Emitter`: the emitter's casts, arithmetic and comparisons hand
complex operands here, so the AST lowering treats a complex like any other scalar. The real
math (``hypot``, ``atan2``, ``exp``, ...) goes through the target's ``math`` (libm / LLVM
intrinsics on the CPU, libdevice on the GPU), as ``math.*`` does. The ``cmath`` functions
are :mod:`..ops.cmathfns`.

Semantics (docs/language.md, "Complex numbers"): ``+ - *`` and ``conjugate`` are the
textbook formulas, each part rounded once, no FMA contraction (bitwise numpy's and CPython's
results); ``/`` is CPython's ``_Py_c_quot`` (numba's ``complex_div``), a zero divisor raising
``ZeroDivisionError`` (checked by the lowering, :meth:`complex_is_zero`); ``==`` compares both
parts (NaN unequal).
"""

from __future__ import annotations

from llvmlite import ir

from ...lang.types import Scalar, c64, c128, f32, f64

_F32 = ir.FloatType()
_F64 = ir.DoubleType()
C64_TYPE = ir.LiteralStructType([_F32, _F32])
C128_TYPE = ir.LiteralStructType([_F64, _F64])


def part_type(t: Scalar) -> Scalar:
    """The type of a complex type's real and imaginary parts (a real type is its own)."""
    if not t.is_complex:
        return t
    return f32 if t.bits == 64 else f64


def complex_of(part: Scalar) -> Scalar:
    return c64 if part is f32 else c128


class ComplexEmitter:
    """What :class:`.emitter.Emitter` does with complex values (``self`` is the emitter)."""

    flags: tuple
    fastmath: bool

    def complex_type(self, t: Scalar) -> ir.Type:
        return C64_TYPE if t.bits == 64 else C128_TYPE

    def complex_const(self, t: Scalar, value) -> ir.Constant:
        z = complex(value)
        ft = _F32 if t.bits == 64 else _F64
        return ir.Constant(self.complex_type(t), [ir.Constant(ft, z.real), ir.Constant(ft, z.imag)])

    def complex_parts(self, b: ir.IRBuilder, z) -> tuple:
        return b.extract_value(z, 0), b.extract_value(z, 1)

    def complex_pack(self, b: ir.IRBuilder, t: Scalar, re, im):
        out = ir.Constant(self.complex_type(t), ir.Undefined)
        return b.insert_value(b.insert_value(out, re, 0), im, 1)

    def complex_cast(self, b: ir.IRBuilder, v, src: Scalar, dst: Scalar):
        """complex ↔ complex part by part; a real becomes (x, 0.0); bool is ``z != 0``; a
        complex to a real type (only ever the compiler's own, the typer refuses users') keeps
        the real part, as numpy's ``astype``."""
        if src.is_complex and dst.is_complex:
            ps, pd = part_type(src), part_type(dst)
            re, im = self.complex_parts(b, v)
            return self.complex_pack(b, dst, self.cast(b, re, ps, pd), self.cast(b, im, ps, pd))
        if dst.is_complex:
            pd = part_type(dst)
            re = self.cast(b, v, src, pd)
            return self.complex_pack(b, dst, re, ir.Constant(re.type, 0.0))
        if dst.kind == "b":
            return self.complex_truth(b, v)
        return self.cast(b, self.complex_parts(b, v)[0], part_type(src), dst)

    def complex_truth(self, b: ir.IRBuilder, z):
        re, im = self.complex_parts(b, z)
        zero = ir.Constant(re.type, 0.0)
        return b.or_(b.fcmp_unordered("!=", re, zero), b.fcmp_unordered("!=", im, zero))

    def complex_is_zero(self, b: ir.IRBuilder, z):
        """Both parts zero (±0.0): CPython's test for a ZeroDivisionError divisor."""
        re, im = self.complex_parts(b, z)
        zero = ir.Constant(re.type, 0.0)
        return b.and_(b.fcmp_ordered("==", re, zero), b.fcmp_ordered("==", im, zero))

    def complex_arith(self, b: ir.IRBuilder, op: str, x, y, t: Scalar):
        f = self.flags  # never "contract": a*c - b*d stays two roundings, as numpy
        a, c = self.complex_parts(b, x)
        bb, d = self.complex_parts(b, y)
        if op == "+":
            return self.complex_pack(b, t, b.fadd(a, bb, flags=f), b.fadd(c, d, flags=f))
        if op == "-":
            return self.complex_pack(b, t, b.fsub(a, bb, flags=f), b.fsub(c, d, flags=f))
        if op == "*":
            re = b.fsub(b.fmul(a, bb, flags=f), b.fmul(c, d, flags=f), flags=f)
            im = b.fadd(b.fmul(a, d, flags=f), b.fmul(c, bb, flags=f), flags=f)
            return self.complex_pack(b, t, re, im)
        if op == "/":
            return self._complex_quotient(b, a, c, bb, d, t)
        raise ValueError(f"complex operator {op}")  # pragma: no cover - the typer refuses

    def _complex_quotient(self, b: ir.IRBuilder, ar, ai, br, bi, t: Scalar):
        """CPython's ``_Py_c_quot``: divide through by the divisor's larger part. A zero
        divisor is caught before (ZeroDivisionError); a NaN part gives NaN + NaNj."""
        f = self.flags
        abs_r = self.intrinsic(b, "llvm.fabs", [br])
        abs_i = self.intrinsic(b, "llvm.fabs", [bi])
        # |br| >= |bi|: ratio = bi / br, denom = br + bi * ratio
        ratio1 = b.fdiv(bi, br, flags=f)
        denom1 = b.fadd(br, b.fmul(bi, ratio1, flags=f), flags=f)
        re1 = b.fdiv(b.fadd(ar, b.fmul(ai, ratio1, flags=f), flags=f), denom1, flags=f)
        im1 = b.fdiv(b.fsub(ai, b.fmul(ar, ratio1, flags=f), flags=f), denom1, flags=f)
        # |bi| >= |br|: ratio = br / bi, denom = br * ratio + bi
        ratio2 = b.fdiv(br, bi, flags=f)
        denom2 = b.fadd(b.fmul(br, ratio2, flags=f), bi, flags=f)
        re2 = b.fdiv(b.fadd(b.fmul(ar, ratio2, flags=f), ai, flags=f), denom2, flags=f)
        im2 = b.fdiv(b.fsub(b.fmul(ai, ratio2, flags=f), ar, flags=f), denom2, flags=f)
        nan = ir.Constant(ar.type, float("nan"))
        first = b.fcmp_ordered(">=", abs_r, abs_i)
        second = b.fcmp_ordered(">=", abs_i, abs_r)
        re = b.select(first, re1, b.select(second, re2, nan))
        im = b.select(first, im1, b.select(second, im2, nan))
        return self.complex_pack(b, t, re, im)

    def complex_compare(self, b: ir.IRBuilder, op: str, x, y):
        a, c = self.complex_parts(b, x)
        bb, d = self.complex_parts(b, y)
        if op == "==":
            return b.and_(b.fcmp_ordered("==", a, bb), b.fcmp_ordered("==", c, d))
        return b.or_(b.fcmp_unordered("!=", a, bb), b.fcmp_unordered("!=", c, d))

    def complex_neg(self, b: ir.IRBuilder, z, t: Scalar):
        re, im = self.complex_parts(b, z)
        return self.complex_pack(b, t, b.fneg(re, flags=self.flags), b.fneg(im, flags=self.flags))

    def complex_conjugate(self, b: ir.IRBuilder, z, t: Scalar):
        re, im = self.complex_parts(b, z)
        return self.complex_pack(b, t, re, b.fneg(im, flags=self.flags))

    def complex_abs(self, b: ir.IRBuilder, z, t: Scalar):
        """``abs(z)``: the target's ``hypot`` (no overflow or underflow in between)."""
        re, im = self.complex_parts(b, z)
        return self.math(b, "hypot", [re, im], part_type(t))
