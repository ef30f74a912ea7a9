"""The CPU emitter: what the lowering asks of the CPU target, and the hidden parameters.

    em = CPUEmitter(new_module("m"))
    # every body gets 13 hidden parameters after its own: (ptr %exc, i64 tid.x, tid.y, tid.z,
    #   bid.x, bid.y, bid.z, bdim.x, bdim.y, bdim.z, gdim.x, gdim.y, gdim.z)

The threads of a CPU launch are loop counters of the entry (:mod:`.entry`): a body reads its
indices and sizes from these parameters. The exception record ``%exc`` (8 x i64: status,
site, thread xyz, block xyz) is written first-writer-wins by the CPU runtime,
``gpuaot_rt_report_exception`` (:mod:`.runtime`).
"""

from __future__ import annotations

from llvmlite import ir

from ....bundle.abi import CPU_HIDDEN_PARAMS, EXC_RECORD_FIELDS
from ...lower.emitter import F16, F32, F64, I64, PTR, VOID, Emitter
from ...ops.mathfns import CPU_MATH

HIDDEN = CPU_HIDDEN_PARAMS  # the exception record (a pointer), then i64 indices and sizes
_EXC = HIDDEN.index("exc")
# What the report stores after the site: the raising thread's ids, in the record's order
# (each also a hidden parameter).
RAISER = EXC_RECORD_FIELDS[EXC_RECORD_FIELDS.index("site") + 1 :]
_RAISER_AT = [HIDDEN.index(f) for f in RAISER]
# Where each intrinsic's x lives among the hidden parameters above.
_INDEX_BASE = {
    name: HIDDEN.index(f"{short}.x")
    for name, short in (
        ("thread_idx", "tid"),
        ("block_idx", "bid"),
        ("block_dim", "bdim"),
        ("grid_dim", "gdim"),
    )
}
REPORT = "gpuaot_rt_report_exception"


class CPUEmitter(Emitter):
    target = "cpu"

    def hidden_param_types(self) -> list[ir.Type]:
        return [PTR if name == "exc" else I64 for name in HIDDEN]

    def thread_index(self, b, hidden, which: str, axis: str):
        return hidden[_INDEX_BASE[which] + "xyz".index(axis)]

    def math(self, b: ir.IRBuilder, name: str, args: list, t):
        """An LLVM intrinsic the vectoriser understands, or libm: as ``name``'s declaration
        says (:mod:`...ops.mathfns`)."""
        if args[0].type == F16:  # f16: in f32, rounded once (Emitter.in_f32)
            return self.in_f32(b, lambda xs: self.math(b, name, xs, t), args)
        kind, sym = CPU_MATH[name]
        if kind == "llvm":
            return self.intrinsic(b, f"llvm.{sym}", args)
        suffix = "f" if args[0].type == F32 else ""
        ty = F32 if suffix else F64
        fn = self.declare(f"{sym}{suffix}", ty, [ty] * len(args))
        return b.call(fn, args)

    def raise_exception(self, b: ir.IRBuilder, hidden, site: int, ret_type: ir.Type) -> None:
        fn = self.declare(REPORT, VOID, [PTR, I64] + [I64] * len(RAISER))
        b.call(fn, [hidden[_EXC], ir.Constant(I64, site), *(hidden[k] for k in _RAISER_AT)])
        return_undef(b, ret_type)

    def after_call(self, b: ir.IRBuilder, hidden, ret_type: ir.Type) -> None:
        """A callee raised (or another thread did): stop this thread too."""
        status = b.load_atomic(hidden[_EXC], "monotonic", 8, typ=I64)
        with b.if_then(b.icmp_unsigned("!=", status, ir.Constant(I64, 0)), likely=False):
            return_undef(b, ret_type)


def return_undef(b: ir.IRBuilder, ret_type: ir.Type) -> None:
    """End this thread's body: what a raise, and a call that saw one, return."""
    if ret_type == VOID:
        b.ret_void()
    else:
        b.ret(ir.Constant(ret_type, ir.Undefined))
