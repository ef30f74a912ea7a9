"""The GPU target's emitter: NVVM special registers, libdevice math, shuffles, shared memory,
and the device runtime library (``gpu_report_exception`` / ``gpu_signal_exception``), which
exists only inside device modules.

Device exception record (per module, found with ``cuModuleGetGlobal``): ``abi.EXC_RECORD``,
``[abi.EXC_RECORD_WORDS x i64]`` in the order of ``abi.EXC_RECORD_FIELDS``::

    gpuaot_exception_record: [8 x i64] = {status, site, tid.x, tid.y, tid.z, ctaid.x, .y, .z}
"""

from __future__ import annotations

from types import MappingProxyType

from llvmlite import ir

from ....bundle.abi import EXC_RECORD, EXC_RECORD_FIELDS, EXC_RECORD_WORDS
from ....errors import BuildError
from ....lang.types import Scalar, array_of
from ...lower.emitter import F16, F32, F64, I1, I8, I32, I64, PTR, VOID, ArrayValue, Emitter
from ...ops.mathfns import LIBDEVICE

REPORT = "gpu_report_exception"
SIGNAL = "gpu_signal_exception"
_RECORDED = {"tid": "thread_idx", "bid": "block_idx"}  # the exception record's ids
_SREG = {"thread_idx": "tid", "block_idx": "ctaid", "block_dim": "ntid", "grid_dim": "nctaid"}
GLOBAL_AS = 1
SHARED_AS = 3
DYNAMIC_SHARED = "gpuaot_dynamic_shared"
GRID_BARRIER = "gpuaot_grid_barrier"
INLINE_REPORTS = 2  # raise sites up to which the exception reporter is inlined into each
_U32_FN = ir.FunctionType(I32, [])
# [0, 2**63): an i64 that is never negative (LLVM writes the bound 2**63 as its i64 bits).
NONNEGATIVE = "range(i64 0, -9223372036854775808)"


class _ShapeAttributes(ir.values.ArgumentAttributes):
    """llvmlite's parameter attributes, and ``range`` (which it does not know)."""

    _known = MappingProxyType({**ir.values.ArgumentAttributes._known, NONNEGATIVE: False})


class GPUEmitter(Emitter):
    target = "gpu"

    def __init__(self, module: ir.Module, fastmath: bool = False, fma: bool = True):
        super().__init__(module, fastmath, fma)
        self._shared = 0

    def hidden_param_types(self) -> list[ir.Type]:
        return []

    def int_floordiv(self, b: ir.IRBuilder, x, y, t: Scalar):
        return self._narrow_divmod(b, x, y, t, super().int_floordiv, mod=False)

    def int_mod(self, b: ir.IRBuilder, x, y, t: Scalar):
        return self._narrow_divmod(b, x, y, t, super().int_mod, mod=True)

    def _narrow_divmod(self, b: ir.IRBuilder, x, y, t: Scalar, op, *, mod: bool):
        """Python's ``//`` or ``%`` (else ``op``) in 32 bits where ``x`` is a widened 32-bit
        (or narrower) value, as in ``a[i] % n`` with ``a`` of i32 and ``n`` a shape: PTX's
        64-bit division is a ~100-instruction subroutine, its 32-bit one ~20 instructions.
        A divisor outside i32 is at least |x| (equal only for -2**31 by 2**31): the floored
        quotient is 0, or -1 where x is non-zero with the divisor's opposite sign, and the
        remainder x, or x + y there. y is not 0 (the caller raised); the signs are the
        64-bit values' (which LLVM may know: a shape is never negative)."""
        if not t.is_signed or x.type.width <= 32 or not _widened_from_32_bits(x):
            return op(b, x, y, t)
        ty, zero = x.type, ir.Constant(x.type, 0)
        fits = b.icmp_signed("==", b.sext(b.trunc(y, I32), ty), y)
        is_m1 = b.icmp_signed("==", y, ir.Constant(ty, -1))
        # by 1 where y is -1 (MIN // -1 would overflow) or far
        y32 = b.trunc(b.select(b.and_(fits, b.not_(is_m1)), y, ir.Constant(ty, 1)), I32)
        x32 = b.trunc(x, I32)
        r32 = b.srem(x32, y32)
        y_neg = b.icmp_signed("<", y, zero)
        r_off = b.and_(
            b.icmp_signed("!=", r32, ir.Constant(I32, 0)),
            b.icmp_unsigned("!=", b.icmp_signed("<", r32, ir.Constant(I32, 0)), y_neg),
        )
        x_neg = b.icmp_signed("<", x, zero)
        x_off = b.and_(b.icmp_signed("!=", x, zero), b.icmp_unsigned("!=", x_neg, y_neg))
        # y > 0 (a shape's case, which LLVM may know): unsigned, on x's magnitude m = x ^ s
        # (x, or -x - 1 if x < 0; s = x >> 31, in [0, 2**31)): x // y = (m // y) ^ s and
        # x % y = (m % y) ^ s + (y & s); a far y is above m (m // y = 0, m % y = m).
        sign = b.ashr(x32, ir.Constant(I32, 31))
        mag = b.xor(x32, sign)
        if mod:
            near = b.sext(b.select(r_off, b.add(r32, y32), r32), ty)
            far = b.select(x_off, b.add(x, y), x)
            m = b.select(fits, b.urem(mag, y32), mag)
            positive = b.add(b.sext(b.xor(m, sign), ty), b.and_(y, b.sext(sign, ty)))
        else:
            q = b.sub(b.sdiv(x32, y32), b.zext(r_off, I32))
            near = b.select(is_m1, b.neg(x), b.sext(q, ty))
            far = b.sext(x_off, ty)
            m = b.select(fits, b.udiv(mag, y32), ir.Constant(I32, 0))
            positive = b.sext(b.xor(m, sign), ty)
        general = b.select(fits, near, far)
        return b.select(b.icmp_signed(">", y, zero), positive, general)

    def array_parameter(self, arr: ArrayValue) -> None:
        """A shape is never negative: LLVM told so (``range``) keeps index arithmetic
        unsigned, and drops what only a negative length needs (``x % a.shape[0]``'s -1
        guard and sign fix-up). Strides may be negative: they are left alone."""
        for dim in arr.shape:
            if isinstance(dim, ir.Argument):
                dim.attributes = _ShapeAttributes([*dim.attributes, NONNEGATIVE])

    def sreg(self, b: ir.IRBuilder, name: str):
        fn = self.declare(f"llvm.nvvm.read.ptx.sreg.{name}", I32, [])
        return b.call(fn, [])

    def thread_index(self, b, hidden, which: str, axis: str):
        return b.zext(self.sreg(b, f"{_SREG[which]}.{axis}"), I64)

    def math(self, b: ir.IRBuilder, name: str, args: list, t):
        """``name``'s libdevice function (its declaration names it, :mod:`...ops.mathfns`)."""
        if args[0].type == F16:  # f16: in f32, rounded once (Emitter.in_f32)
            return self.in_f32(b, lambda xs: self.math(b, name, xs, t), args)
        base = LIBDEVICE.get(name)
        if base is None:  # pragma: no cover - the method table lists them all
            raise BuildError(f"math.{name} has no libdevice implementation")
        suffix = "f" if args[0].type == F32 else ""
        ty = F32 if suffix else F64
        return b.call(self.declare(f"__nv_{base}{suffix}", ty, [ty] * len(args)), args)

    def raise_exception(self, b: ir.IRBuilder, hidden, site: int, ret_type: ir.Type) -> None:
        b.call(self.declare(REPORT, VOID, [I64]), [ir.Constant(I64, site)])
        b.call(self.declare(SIGNAL, VOID, []), [])
        b.unreachable()

    def after_call(self, b, hidden, ret_type) -> None:
        pass  # a raising callee ended the thread already

    def shared_array(self, b: ir.IRBuilder, dtype: Scalar, shape):
        n = 1
        for d in shape:
            n *= d
        ty = ir.ArrayType(self.memtype(dtype), n)
        gv = ir.GlobalVariable(self.module, ty, f"shared.{self._shared}", addrspace=SHARED_AS)
        self._shared += 1
        gv.linkage = "internal"
        gv.initializer = ir.Constant(ty, ir.Undefined)
        gv.align = 16
        ptr = b.addrspacecast(gv, PTR)
        return ArrayValue(
            array_of(dtype, len(shape), "C"), ptr, [ir.Constant(I64, d) for d in shape]
        )

    def dynamic_shared_array(self, b: ir.IRBuilder, dtype: Scalar):
        """``shared_array(dtype, 0)``: the launch's dynamic shared memory (its fourth item,
        ``nbytes``), one ``extern`` array every such call aliases, as CUDA's ``extern
        __shared__``; its length is ``%dynamic_smem_size`` over the element size."""
        gv = self.module.globals.get(DYNAMIC_SHARED)
        if gv is None:
            ty = ir.ArrayType(I8, 0)
            gv = ir.GlobalVariable(self.module, ty, DYNAMIC_SHARED, addrspace=SHARED_AS)
            gv.linkage = "external"
            gv.align = 16
        size = b.call(ir.InlineAsm(_U32_FN, "mov.u32 $0, %dynamic_smem_size;", "=r"), [])
        itemsize = ir.Constant(I64, max(dtype.bits // 8, 1))
        n = b.udiv(b.zext(size, I64), itemsize)
        return ArrayValue(array_of(dtype, 1, "C"), b.addrspacecast(gv, PTR), [n])

    def warp_sync(self, b: ir.IRBuilder, mask) -> None:
        """``bar.warp.sync mask``: CUDA's __syncwarp."""
        b.call(self.declare("llvm.nvvm.bar.warp.sync", VOID, [I32]), [mask])

    def vote(self, b: ir.IRBuilder, kind: str, mask, pred):
        """``vote.sync.{all,any,uni,ballot}``: an i1, or the ballot's i32."""
        ret = I32 if kind == "ballot" else I1
        fn = self.declare(f"llvm.nvvm.vote.{kind}.sync", ret, [I32, I1])
        return b.call(fn, [mask, pred])

    def match(self, b: ir.IRBuilder, kind: str, mask, value):
        """``match.{any,all}.sync.b32/b64`` on ``value``'s bits: any's i32 lane mask, or
        all's ``{i32 mask, i1 pred}``."""
        if not isinstance(value.type, ir.IntType):
            value = b.bitcast(value, I64 if value.type == F64 else I32)
        width = value.type.width
        ret = I32 if kind == "any" else ir.LiteralStructType([I32, I1])
        suffix = "" if kind == "any" else "p"  # LLVM names all's {mask, pred} form i32p/i64p
        fn = self.declare(f"llvm.nvvm.match.{kind}.sync.i{width}{suffix}", ret, [I32, value.type])
        return b.call(fn, [mask, value])

    def lane_mask(self, b: ir.IRBuilder, which: str):
        """``%lanemask_lt`` (and friends): the lanes below this one, as an i32."""
        return self.sreg(b, f"lanemask.{which}")

    def active_mask(self, b: ir.IRBuilder):
        """``activemask.b32``: the lanes executing this instruction (LLVM has no intrinsic)."""
        return b.call(ir.InlineAsm(_U32_FN, "activemask.b32 $0;", "=r", side_effect=True), [])

    def grid_barrier(self, b: ir.IRBuilder) -> None:
        """Cooperative groups' ``this_grid().sync()``, as CUDA's ``sync_grids`` builds it: a
        block barrier, then each block's thread 0 adds to a device counter (block 0 adds
        ``0x80000000 - (blocks - 1)``, the others 1, so the top bit flips once all arrived,
        whatever the counter held) and spins until it flips, then a block barrier. Needs every
        block resident at once: a cooperative launch (:mod:`gpuaot.runtime.cuda`)."""
        gv = self.module.globals.get(GRID_BARRIER)
        if gv is None:
            gv = ir.GlobalVariable(self.module, I32, GRID_BARRIER, addrspace=GLOBAL_AS)
            gv.initializer = ir.Constant(I32, 0)
            gv.align = 4
        self.barrier(b)
        ors = [
            b.or_(b.or_(self.sreg(b, f"{r}.x"), self.sreg(b, f"{r}.y")), self.sreg(b, f"{r}.z"))
            for r in ("tid", "ctaid")
        ]
        zero = ir.Constant(I32, 0)
        with b.if_then(b.icmp_unsigned("==", ors[0], zero)):
            blocks = b.mul(
                b.mul(self.sreg(b, "nctaid.x"), self.sreg(b, "nctaid.y")), self.sreg(b, "nctaid.z")
            )
            first = b.sub(ir.Constant(I32, 0x80000001), blocks)  # 0x80000000 - (blocks - 1)
            nb = b.select(b.icmp_unsigned("==", ors[1], zero), first, ir.Constant(I32, 1))
            counter = b.addrspacecast(gv, PTR)
            self.membar(b, "gl")
            old = b.atomic_rmw("add", counter, nb, "monotonic")
            spin = b.append_basic_block("grid.spin")
            done = b.append_basic_block("grid.done")
            b.branch(spin)
            b.position_at_end(spin)
            now = b.load_atomic(counter, "monotonic", 4, typ=I32)
            top = b.and_(b.xor(old, now), ir.Constant(I32, -0x80000000))
            b.cbranch(b.icmp_unsigned("!=", top, zero), done, spin)
            b.position_at_end(done)
            self.membar(b, "gl")
        self.barrier(b)

    def barrier(self, b: ir.IRBuilder) -> None:
        """``bar.sync 0``: every thread of the block waits here."""
        fn = self.declare("llvm.nvvm.barrier.cta.sync.aligned.all", VOID, [I32])
        b.call(fn, [ir.Constant(I32, 0)])

    def barrier_reduce(self, b: ir.IRBuilder, kind: str, pred):
        """``bar.red.{popc,and,or}``: a barrier that also combines every thread's ``pred``;
        the count, or the and/or widened to 0/1, as an i32."""
        i1 = ir.IntType(1)
        ret = I32 if kind == "popc" else i1
        fn = self.declare(f"llvm.nvvm.barrier.cta.red.{kind}.aligned.all", ret, [I32, i1])
        out = b.call(fn, [ir.Constant(I32, 0), pred])
        return out if kind == "popc" else b.zext(out, I32)

    def membar(self, b: ir.IRBuilder, scope: str) -> None:
        """``membar.{cta,gl,sys}``: CUDA's __threadfence_block/__threadfence/_system."""
        b.call(self.declare(f"llvm.nvvm.membar.{scope}", VOID, []), [])

    def shuffle(self, b: ir.IRBuilder, mode: str, value, delta, t: Scalar, mask=None):
        """Warp shuffle among ``mask``'s lanes (default: the whole warp); 64-bit values travel
        as two 32-bit halves. ``up`` clamps at lane 0 (c = 0), the others at 31 (c = 0x1f)."""
        clamp = ir.Constant(I32, 0 if mode == "up" else 0x1F)
        mask = ir.Constant(I32, -1) if mask is None else mask
        if t.bits == 64:
            raw = b.bitcast(value, I64) if t.is_float else value
            lo = b.trunc(raw, I32)
            hi = b.trunc(b.lshr(raw, ir.Constant(I64, 32)), I32)
            fn = self.declare(f"llvm.nvvm.shfl.sync.{mode}.i32", I32, [I32, I32, I32, I32])
            lo2 = b.call(fn, [mask, lo, delta, clamp])
            hi2 = b.call(fn, [mask, hi, delta, clamp])
            out = b.or_(b.zext(lo2, I64), b.shl(b.zext(hi2, I64), ir.Constant(I64, 32)))
            return b.bitcast(out, F64) if t.is_float else out
        kind = "f32" if t.is_float else "i32"
        ty = F32 if t.is_float else I32
        fn = self.declare(f"llvm.nvvm.shfl.sync.{mode}.{kind}", ty, [I32, ty, I32, I32])
        return b.call(fn, [mask, value, delta, clamp])


def _widened_from_32_bits(v) -> bool:
    """Whether ``v`` is a sign-extended value of at most 32 bits, or a zero-extended one of
    fewer (so that it fits in an i32)."""
    if not isinstance(v, ir.CastInstr) or v.opname not in ("sext", "zext"):
        return False
    width = v.operands[0].type.width
    return width <= 32 if v.opname == "sext" else width < 32


def _calls(module: ir.Module, name: str) -> int:
    return sum(
        isinstance(ins, ir.CallInstr) and getattr(ins.callee, "name", None) == name
        for fn in module.functions
        for block in fn.blocks
        for ins in block.instructions
    )


def runtime_functions(module: ir.Module) -> None:
    """The device runtime library (GPU overlay only): record the first raise, end the thread."""
    rec_ty = ir.ArrayType(I64, EXC_RECORD_WORDS)
    rec = ir.GlobalVariable(module, rec_ty, EXC_RECORD, addrspace=GLOBAL_AS)
    rec.initializer = ir.Constant(rec_ty, None)
    rec.align = 8
    em = GPUEmitter(module)
    # Raise sites declared them; giving the declarations bodies defines them.
    fn = em.declare(REPORT, VOID, [I64])
    # Inlined, its registers are taken where all else is dead (the thread ends there); out
    # of line (a call), they count for the whole kernel, but its code is there once.
    fn.attributes.add("alwaysinline" if _calls(module, REPORT) <= INLINE_REPORTS else "noinline")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    base = b.addrspacecast(rec, PTR)  # and the status word's: it is word 0

    def word(field: str):
        return b.gep(base, [ir.Constant(I64, EXC_RECORD_FIELDS.index(field))], source_etype=I64)

    # The launcher zeroes the record before each launch and reads it after the kernel has
    # finished (runtime.cuda): so only each word's low half is written (every value fits in
    # 32 bits), and no fence is needed (the kernel's end publishes the stores).
    assert EXC_RECORD_FIELDS.index("status") == 0
    zero, one = ir.Constant(I32, 0), ir.Constant(I32, 1)
    won = b.extract_value(b.cmpxchg(base, zero, one, "monotonic", "monotonic"), 1)
    with b.if_then(won):
        b.store(b.trunc(fn.args[0], I32), word("site"))
        for field in EXC_RECORD_FIELDS:  # the raising thread's index, then its block's
            which, _, axis = field.partition(".")
            if which in _RECORDED:
                index = em.sreg(b, f"{_SREG[_RECORDED[which]]}.{axis}")
                b.store(index, word(field))
    b.ret_void()
    sig = em.declare(SIGNAL, VOID, [])
    b = ir.IRBuilder(sig.append_basic_block("entry"))
    b.call(em.declare("llvm.nvvm.exit", VOID, []), [])
    b.unreachable()


def new_module(name: str) -> ir.Module:
    from ..nvptx import NVPTX_DATA_LAYOUT, NVPTX_TRIPLE

    mod = ir.Module(name=name)
    mod.triple = NVPTX_TRIPLE
    mod.data_layout = NVPTX_DATA_LAYOUT
    return mod
