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
from ...lower.emitter import F32, F64, I32, I64, PTR, VOID, ArrayValue, Emitter
from ...ops.mathfns import LIBDEVICE

EXC_RECORD = "gpuaot_exception_record"
REPORT = "gpu_report_exception"
SIGNAL = "gpu_signal_exception"
_SREG = {"thread_idx": "tid", "block_idx": "ctaid", "block_dim": "ntid", "grid_dim": "nctaid"}
GLOBAL_AS = 1
SHARED_AS = 3


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

    def shuffle(self, b: ir.IRBuilder, mode: str, value, delta, t: Scalar):
        """Whole-warp shuffle; 64-bit values travel as two 32-bit halves."""
        clamp = ir.Constant(I32, 0x1F)
        mask = ir.Constant(I32, -1)
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
