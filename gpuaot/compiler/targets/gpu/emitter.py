"""The GPU target's emitter: NVVM special registers, libdevice math, shuffles, shared memory,
and the device runtime library (``gpu_report_exception`` / ``gpu_signal_exception``), which
exists only inside device modules.

Device exception record (per module, found with ``cuModuleGetGlobal``)::

    gpuaot_exception_record: [8 x i64] = {status, site, tid.x, tid.y, tid.z, ctaid.x, .y, .z}
"""

from __future__ import annotations

from llvmlite import ir

from ....errors import BuildError
from ....lang.types import Scalar, array_of
from ...lower.emitter import F32, F64, I1, I8, I32, I64, PTR, VOID, ArrayValue, Emitter
from ...ops.mathfns import LIBDEVICE

EXC_RECORD = "gpuaot_exception_record"
REPORT = "gpu_report_exception"
SIGNAL = "gpu_signal_exception"
_SREG = {"thread_idx": "tid", "block_idx": "ctaid", "block_dim": "ntid", "grid_dim": "nctaid"}
GLOBAL_AS = 1
SHARED_AS = 3
DYNAMIC_SHARED = "gpuaot_dynamic_shared"
GRID_BARRIER = "gpuaot_grid_barrier"
_U32_FN = ir.FunctionType(I32, [])


class GPUEmitter(Emitter):
    target = "gpu"

    def __init__(self, module: ir.Module, fastmath: bool = False, fma: bool = True):
        super().__init__(module, fastmath, fma)
        self._shared = 0

    def hidden_param_types(self) -> list[ir.Type]:
        return []

    def sreg(self, b: ir.IRBuilder, name: str):
        fn = self.declare(f"llvm.nvvm.read.ptx.sreg.{name}", I32, [])
        return b.call(fn, [])

    def thread_index(self, b, hidden, which: str, axis: str):
        return b.zext(self.sreg(b, f"{_SREG[which]}.{axis}"), I64)

    def math(self, b: ir.IRBuilder, name: str, args: list, t):
        """``name``'s libdevice function (its declaration names it, :mod:`...ops.mathfns`)."""
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


def runtime_functions(module: ir.Module) -> None:
    """The device runtime library (GPU overlay only): record the first raise, end the thread."""
    rec_ty = ir.ArrayType(I64, 8)
    rec = ir.GlobalVariable(module, rec_ty, EXC_RECORD, addrspace=GLOBAL_AS)
    rec.initializer = ir.Constant(rec_ty, None)
    rec.align = 8
    em = GPUEmitter(module)
    # Raise sites declared them; giving the declarations bodies defines them.
    fn = em.declare(REPORT, VOID, [I64])
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    base = b.addrspacecast(rec, PTR)
    won = b.extract_value(
        b.cmpxchg(base, ir.Constant(I64, 0), ir.Constant(I64, 1), "monotonic", "monotonic"), 1
    )
    with b.if_then(won):
        b.store(fn.args[0], b.gep(base, [ir.Constant(I64, 1)], source_etype=I64))
        fields = [("thread_idx", a) for a in "xyz"] + [("block_idx", a) for a in "xyz"]
        for k, (which, axis) in enumerate(fields):
            b.store(
                em.thread_index(b, [], which, axis),
                b.gep(base, [ir.Constant(I64, 2 + k)], source_etype=I64),
            )
        b.fence("release")
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
