"""The AST-free layer: llvmlite types, casts and Python-exact arithmetic.

    em = Emitter(module)
    em.lltype(f32)                         # ir.FloatType()
    v = em.cast(builder, x, i64, f32)      # sitofp
    q = em.floordiv(builder, a, b, i64)    # Python's floor division (with guards)

It knows nothing of ``ast``; :mod:`.lowering` decides *what* to build and calls it. A target
subclass (:mod:`..targets.cpu`, :mod:`..targets.gpu`) adds what differs per target: thread
indices, math, the exception runtime, entry points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from ...bundle.abi import DATA_POINTER, EXTENT, STRIDED_LAYOUT, array_abi
from ...lang.types import ArrayType, Scalar, TupleType, Type, array_of, boolean, f32, none
from .complexes import ComplexEmitter

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F32 = ir.FloatType()
F64 = ir.DoubleType()
F16 = ir.HalfType()
_FLOATS = {16: F16, 32: F32, 64: F64}
PTR = ir.PointerType()
VOID = ir.VoidType()
_ABI_TYPES = {DATA_POINTER: PTR, EXTENT: I64}  # an array parameter's values (bundle.abi)


@dataclass
class ArrayValue:
    """An array inside generated code: data pointer, shape and (layout "A") byte strides."""

    type: ArrayType
    data: ir.Value
    shape: list[ir.Value]
    strides: list[ir.Value] | None = None

    def parts(self) -> list[ir.Value]:
        return [self.data, *self.shape, *(self.strides or [])]


FAST_NO_CONTRACT = ("nnan", "ninf", "nsz", "arcp", "afn", "reassoc")


def fast_math_flags(fastmath: bool, fma: bool) -> tuple[str, ...]:
    """The flags of every float instruction: ``fast``, minus ``contract`` where ``fma=False``."""
    if not fastmath:
        return ()
    return ("fast",) if fma else FAST_NO_CONTRACT


class Emitter(ComplexEmitter):
    """Types, constants, casts and arithmetic shared by every target (complex numbers:
    :mod:`.complexes`)."""

    def __init__(self, module: ir.Module, fastmath: bool = False, fma: bool = True):
        self.module = module
        self.fastmath = fastmath
        self.fma = fma
        self.flags = fast_math_flags(fastmath, fma)
        # fmul/fadd/fsub of ``+ - *`` may also fuse into an FMA (nvcc's -fmad=true, numba's
        # default): ``contract`` and nothing else unless ``fastmath`` (DESIGN.md, "one switch").
        self.arith_flags = self.flags if fastmath or not fma else ("contract",)

    # ------------------------------------------------------------------ types

    def lltype(self, t: Type) -> ir.Type:
        if isinstance(t, Scalar):
            if t is boolean:
                return I1
            if t.is_float:
                return _FLOATS[t.bits]
            if t.is_complex:
                return self.complex_type(t)
            return ir.IntType(t.bits)
        if isinstance(t, TupleType):
            return ir.LiteralStructType([self.lltype(i) for i in t.items])
        if t is none:
            return VOID
        raise TypeError(f"no single LLVM type for {t}")

    def memtype(self, t: Scalar) -> ir.Type:
        """How an element is stored: numpy keeps bool in a byte."""
        return I8 if t is boolean else self.lltype(t)

    def param_types(self, t: Type) -> list[ir.Type]:
        """How a parameter travels: ``abi.array_abi``'s values for an array, else itself."""
        if isinstance(t, ArrayType):
            return [_ABI_TYPES[v] for v in array_abi(t.ndim, t.layout)]
        return [self.lltype(t)]

    def const(self, t: Type, value) -> ir.Constant:
        lt = self.lltype(t)
        if isinstance(t, TupleType):
            return ir.Constant(lt, [self.const(i, v) for i, v in zip(t.items, value)])
        if t is boolean:
            return ir.Constant(I1, int(bool(value)))
        if t.is_complex:
            return self.complex_const(t, value)
        if isinstance(lt, ir.IntType):
            v = int(value) & ((1 << lt.width) - 1)
            if v >= 1 << (lt.width - 1):
                v -= 1 << lt.width
            return ir.Constant(lt, v)
        if lt == F16:  # llvmlite packs it with struct's 'e', which refuses what overflows
            with np.errstate(over="ignore"):
                value = float(np.float16(value))
        return ir.Constant(lt, float(value))

    def zero(self, t: Type) -> ir.Constant:
        lt = self.lltype(t)
        return ir.Constant(lt, None)

    # ------------------------------------------------------------------ casts

    def cast(self, b: ir.IRBuilder, v: ir.Value, src: Type, dst: Type) -> ir.Value:
        if src is dst:
            return v
        if isinstance(src, TupleType) and isinstance(dst, TupleType):
            out = ir.Constant(self.lltype(dst), ir.Undefined)
            for k, (s, d) in enumerate(zip(src.items, dst.items)):
                out = b.insert_value(out, self.cast(b, b.extract_value(v, k), s, d), k)
            return out
        assert isinstance(src, Scalar) and isinstance(dst, Scalar), (src, dst)
        if src.is_complex or dst.is_complex:
            return self.complex_cast(b, v, src, dst)
        st, dt = self.lltype(src), self.lltype(dst)
        if dst is boolean:
            return self.truth(b, v, src)
        if F16 in (st, dt):
            return self.half_cast(b, v, src, dst)
        if src is boolean:
            return b.uitofp(v, dt) if dst.is_float else b.zext(v, dt)
        if src.is_float and dst.is_float:
            if src.bits == dst.bits:
                return v
            return b.fpext(v, dt) if dst.bits > src.bits else b.fptrunc(v, dt)
        if src.is_float:
            return self.float_to_int(b, v, dst)
        if dst.is_float:
            return b.sitofp(v, dt) if src.is_signed else b.uitofp(v, dt)
        if st.width == dt.width:
            return v
        if dt.width < st.width:
            return b.trunc(v, dt)
        return b.sext(v, dt) if src.is_signed else b.zext(v, dt)

    def float_to_int(self, b: ir.IRBuilder, v: ir.Value, dst: Scalar) -> ir.Value:
        """``int(x)`` wrapped to ``dst``'s width, as Python's casts and numpy's ``astype`` do.

        ``fptosi``/``fptoui`` straight to ``dst`` are poison outside its range (``u8(-1.5)``,
        ``i8(200.0)``), which LLVM folds to anything. So: convert to 64 bits with the
        saturating intrinsics (defined for every input, NaN gives 0), then truncate. Exact
        for |x| < 2**63 (and up to 2**64 for u64); larger magnitudes saturate.
        """
        if v.type == F16:
            v = b.fpext(v, F32)  # exact
        sfx = "f32" if v.type == F32 else "f64"
        r = b.call(self.declare(f"llvm.fptosi.sat.i64.{sfx}", I64, [v.type]), [v])
        if dst.bits == 64 and not dst.is_signed:
            big = b.fcmp_ordered(">=", v, ir.Constant(v.type, 2.0**63))
            r = b.select(
                big, b.call(self.declare(f"llvm.fptoui.sat.i64.{sfx}", I64, [v.type]), [v]), r
            )
        lt = self.lltype(dst)
        return r if lt.width == 64 else b.trunc(r, lt)

    def half_cast(self, b: ir.IRBuilder, v: ir.Value, src: Scalar, dst: Scalar) -> ir.Value:
        """To or from f16 as CUDA's ``__half`` conversions (and numpy's casts): from f16, exact
        to f32, then on; to f16, one rounding to nearest even from f32 or f64 (``fptrunc``,
        never through f32 from f64, which would round twice). An int or bool goes through f32:
        exact below 2**24, and from there on the f32 and the f16 are both beyond f16's range.
        """
        if src.bits == 16 and src.is_float:
            return self.cast(b, b.fpext(v, F32), f32, dst)
        if src.is_float:
            return b.fptrunc(v, F16)
        return b.fptrunc(self.cast(b, v, src, f32), F16)

    def in_f32(self, b: ir.IRBuilder, fn, args: list) -> ir.Value:
        """``fn`` (of a list of f32 values) on f16 ``args``, computed in f32 and rounded to f16
        once: how f16 math, ``//``, ``%`` and ``**`` compute, as numpy's float16 loops do."""
        return b.fptrunc(fn([b.fpext(a, F32) for a in args]), F16)

    def truth(self, b: ir.IRBuilder, v: ir.Value, t: Scalar) -> ir.Value:
        if t is boolean:
            return v
        if t.is_complex:
            return self.complex_truth(b, v)
        if t.is_float:
            return b.fcmp_unordered("!=", v, ir.Constant(v.type, 0.0))
        return b.icmp_unsigned("!=", v, ir.Constant(v.type, 0))

    # ------------------------------------------------------------------ arithmetic

    def arith(self, b: ir.IRBuilder, op: str, x, y, t: Scalar):
        if t.is_complex:
            return self.complex_arith(b, op, x, y, t)
        if t.is_float:
            if op == "/":
                return b.fdiv(x, y, flags=self.flags)
            fn = {"+": b.fadd, "-": b.fsub, "*": b.fmul}[op]
            # f16 never contracts: each result rounds to f16, as numpy's (and __hadd_rn).
            return fn(x, y, flags=self.flags if x.type == F16 else self.arith_flags)
        fn = {"+": b.add, "-": b.sub, "*": b.mul}[op]
        return fn(x, y)

    def bitwise(self, b: ir.IRBuilder, op: str, x, y, t: Scalar):
        if op == "&":
            return b.and_(x, y)
        if op == "|":
            return b.or_(x, y)
        if op == "^":
            return b.xor(x, y)
        # Python shifts by >= width give 0 (or -1 for negative >>); LLVM gives poison.
        width = ir.Constant(x.type, x.type.width)
        big = b.icmp_unsigned(">=", y, width)
        safe = b.select(big, ir.Constant(x.type, 0), y)
        if op == "<<":
            return b.select(big, ir.Constant(x.type, 0), b.shl(x, safe))
        if t.is_signed:
            sign = b.ashr(x, ir.Constant(x.type, x.type.width - 1))
            return b.select(big, sign, b.ashr(x, safe))
        return b.select(big, ir.Constant(x.type, 0), b.lshr(x, safe))

    def _floor_divmod(self, b: ir.IRBuilder, x, y):
        """Signed truncating divmod turned toward floor; the divisor is known non-zero.

        Returns (q, r, off, is_m1): q and r truncate, ``off`` says floor differs (remainder
        non-zero with the divisor's opposite sign), ``is_m1`` flags y == -1, divided by 1
        instead so MIN // -1 cannot trap (x86 faults on it; Python wraps here).
        """
        zero = ir.Constant(x.type, 0)
        is_m1 = b.icmp_signed("==", y, ir.Constant(x.type, -1))
        safe_y = b.select(is_m1, ir.Constant(x.type, 1), y)
        q = b.sdiv(x, safe_y)
        r = b.srem(x, safe_y)
        off = b.and_(
            b.icmp_signed("!=", r, zero),
            b.icmp_unsigned("!=", b.icmp_signed("<", r, zero), b.icmp_signed("<", y, zero)),
        )
        return q, r, off, is_m1

    def int_floordiv(self, b: ir.IRBuilder, x, y, t: Scalar):
        """Python ``//`` on ints. MIN // -1 wraps to MIN."""
        if not t.is_signed:
            return b.udiv(x, y)
        q, _, off, is_m1 = self._floor_divmod(b, x, y)
        return b.select(is_m1, b.neg(x), b.sub(q, b.zext(off, x.type)))

    def int_mod(self, b: ir.IRBuilder, x, y, t: Scalar):
        """Python ``%`` on ints: the result has the divisor's sign."""
        if not t.is_signed:
            return b.urem(x, y)
        _, r, off, _ = self._floor_divmod(b, x, y)
        return b.select(off, b.add(r, y), r)

    def _float_divmod(self, b: ir.IRBuilder, x, y):
        """Python's float divmod for y != 0, step by step as CPython and numpy's npy_divmod
        compute it: the remainder takes the divisor's sign (``0.0 % -1.0`` is ``-0.0``), the
        quotient is ``floor`` of the exact-ish division, snapped to the nearest integer.
        """
        f = self.flags
        zero = ir.Constant(x.type, 0.0)
        mod = b.frem(x, y, flags=f)
        div = b.fdiv(b.fsub(x, mod, flags=f), y, flags=f)
        nonzero = b.fcmp_unordered("!=", mod, zero)  # C's `if (mod)`: NaN counts as true
        adjust = b.and_(
            nonzero,
            b.icmp_unsigned("!=", b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", mod, zero)),
        )
        signed_zero = self.intrinsic(b, "llvm.copysign", [zero, y])
        mod = b.select(adjust, b.fadd(mod, y, flags=f), b.select(nonzero, mod, signed_zero))
        div = b.select(adjust, b.fsub(div, ir.Constant(x.type, 1.0), flags=f), div)
        return div, mod

    def float_mod(self, b: ir.IRBuilder, x, y):
        """Python's ``x % y`` on floats; ``x % 0.0`` is NaN (numpy's answer; Python raises)."""
        if x.type == F16:
            return self.in_f32(b, lambda v: self.float_mod(b, *v), [x, y])
        return self._float_divmod(b, x, y)[1]

    def float_floordiv(self, b: ir.IRBuilder, x, y):
        """Python's ``x // y`` on floats; ``x // 0.0`` is ``x / 0.0`` (numpy's answer)."""
        if x.type == F16:
            return self.in_f32(b, lambda v: self.float_floordiv(b, *v), [x, y])
        f = self.flags
        zero = ir.Constant(x.type, 0.0)
        div, _ = self._float_divmod(b, x, y)
        floor = self.intrinsic(b, "llvm.floor", [div])
        snap = b.fcmp_ordered(">", b.fsub(div, floor, flags=f), ir.Constant(x.type, 0.5))
        floor = b.select(snap, b.fadd(floor, ir.Constant(x.type, 1.0), flags=f), floor)
        quotient = b.fdiv(x, y, flags=f)
        q = b.select(
            b.fcmp_unordered("!=", div, zero),
            floor,
            self.intrinsic(b, "llvm.copysign", [zero, quotient]),
        )
        return b.select(b.fcmp_ordered("==", y, zero), quotient, q)

    def int_pow(self, b: ir.IRBuilder, x, y, t: Scalar):
        """``x ** y`` for ints by squaring; a negative exponent gives 0 (as integer code)."""
        fn = b.function
        pre = b.block
        loop = fn.append_basic_block("pow.loop")
        done = fn.append_basic_block("pow.done")
        one = ir.Constant(x.type, 1)
        zero = ir.Constant(x.type, 0)
        start_ok = b.icmp_signed(">", y, zero) if t.is_signed else b.icmp_unsigned(">", y, zero)
        b.cbranch(start_ok, loop, done)
        b.position_at_end(loop)
        acc = b.phi(x.type)
        base = b.phi(x.type)
        exp = b.phi(x.type)
        acc.add_incoming(one, pre)
        base.add_incoming(x, pre)
        exp.add_incoming(y, pre)
        odd = b.trunc(exp, I1)
        acc2 = b.select(odd, b.mul(acc, base), acc)
        base2 = b.mul(base, base)
        exp2 = b.lshr(exp, one)
        acc.add_incoming(acc2, loop)
        base.add_incoming(base2, loop)
        exp.add_incoming(exp2, loop)
        b.cbranch(b.icmp_unsigned("!=", exp2, zero), loop, done)
        b.position_at_end(done)
        result = b.phi(x.type)
        result.add_incoming(one, pre)
        result.add_incoming(acc2, loop)
        if not t.is_signed:
            return result
        # A negative exponent truncates to 0 (Python would give a float; this is integer code).
        return b.select(b.icmp_signed("<", y, zero), zero, result)

    def compare(self, b: ir.IRBuilder, op: str, x, y, t: Scalar):
        if t.is_complex:
            return self.complex_compare(b, op, x, y)
        if t.is_float:
            if op == "!=":
                return b.fcmp_unordered("!=", x, y)
            return b.fcmp_ordered(op, x, y)
        if t.is_signed:
            return b.icmp_signed(op, x, y)
        return b.icmp_unsigned(op, x, y)

    def intrinsic(self, b: ir.IRBuilder, name: str, args: list, ret=None):
        """Call an overloaded LLVM intrinsic (``llvm.fabs`` → ``llvm.fabs.f32``)."""
        ty = args[0].type
        suffix = {F16: "f16", F32: "f32", F64: "f64"}.get(ty) or f"i{ty.width}"
        full = f"{name}.{suffix}"
        fn = self.module.globals.get(full)
        if fn is None:
            fnty = ir.FunctionType(ret or ty, [a.type for a in args])
            fn = ir.Function(self.module, fnty, full)
        return b.call(fn, args)

    def declare(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args), name)
        return fn

    def abs(self, b: ir.IRBuilder, v, t: Scalar):
        if t.is_float:
            return self.intrinsic(b, "llvm.fabs", [v])
        if not t.is_signed:
            return v
        return b.select(b.icmp_signed("<", v, ir.Constant(v.type, 0)), b.neg(v), v)

    def minmax(self, b: ir.IRBuilder, which: str, x, y, t: Scalar):
        """Python's min/max: the first argument wins ties; NaN propagates as CPython's does."""
        if t.is_float:
            take_y = b.fcmp_ordered("<" if which == "min" else ">", y, x)
        else:
            op = "<" if which == "min" else ">"
            take_y = (b.icmp_signed if t.is_signed else b.icmp_unsigned)(op, y, x)
        return b.select(take_y, y, x)

    # ------------------------------------------------------------------ memory

    def array_parameter(self, arr: ArrayValue) -> None:
        """An array parameter's parts are in hand (a target may annotate them)."""

    def element_pointer(self, b: ir.IRBuilder, arr: ArrayValue, indices: list):
        t = arr.type
        mt = self.memtype(t.dtype)
        if t.layout == STRIDED_LAYOUT:
            offset = ir.Constant(I64, 0)
            for idx, stride in zip(indices, arr.strides):
                offset = b.add(offset, b.mul(idx, stride))
            return b.gep(arr.data, [offset], source_etype=I8)
        linear = indices[0]
        for idx, dim in zip(indices[1:], arr.shape[1:]):
            linear = b.add(b.mul(linear, dim), idx)
        return b.gep(arr.data, [linear], source_etype=mt)

    def load_element(self, b: ir.IRBuilder, ptr, t: Scalar):
        v = b.load(ptr, typ=self.memtype(t))
        if t is boolean:
            return b.icmp_unsigned("!=", v, ir.Constant(I8, 0))
        return v

    def store_element(self, b: ir.IRBuilder, ptr, v, t: Scalar) -> None:
        if t is boolean:
            v = b.zext(v, I8)
        b.store(v, ptr)

    # ------------------------------------------------------------------ shared by targets

    def float_predicate(self, b: ir.IRBuilder, name: str, v):
        if name == "isnan":
            return b.fcmp_unordered("uno", v, v)
        mag = self.intrinsic(b, "llvm.fabs", [v])
        inf = ir.Constant(v.type, float("inf"))
        if name == "isinf":
            return b.fcmp_ordered("==", mag, inf)
        return b.fcmp_ordered("<", mag, inf)

    def local_array(self, b: ir.IRBuilder, alloca_b: ir.IRBuilder, dtype: Scalar, shape):
        """A per-thread array: stack memory, zeroed where the call stands (as numpy.zeros)."""
        n = 1
        for d in shape:
            n *= d
        slot = alloca_b.alloca(self.memtype(dtype), size=ir.Constant(I64, n), name="local")
        size = n * max(1, dtype.bits // 8)
        memset = self.declare("llvm.memset.p0.i64", VOID, [PTR, I8, I64, I1])
        b.call(memset, [slot, ir.Constant(I8, 0), ir.Constant(I64, size), ir.Constant(I1, 0)])
        return ArrayValue(
            array_of(dtype, len(shape), "C"), slot, [ir.Constant(I64, d) for d in shape]
        )
