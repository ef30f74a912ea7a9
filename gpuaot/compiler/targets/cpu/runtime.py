"""The CPU runtime library: one module, compiled for the baseline, linked into every bundle.

    rt = runtime_module()   # gpuaot_rt_report_exception (+ the CPUID probe on x86-64)

Every CPU level's objects call into it; only the probe is exported.
"""

from __future__ import annotations

from llvmlite import ir

from ....bundle import cpus
from ....bundle.abi import EXC_RECORD_FIELDS
from ...lower.emitter import I64, PTR, VOID
from .. import cpu_variant
from .emitter import RAISER, REPORT
from .pipeline import new_module


def runtime_module() -> ir.Module:
    """The CPU runtime library, shared by every variant and compiled for the baseline:
    first-writer-wins exception reporting (hidden symbol) and, on x86-64, the CPUID probe
    the run time picks a variant with (exported)."""
    mod = new_module("gpuaot_cpu_runtime")
    if cpus.machine() == "x86_64":
        cpu_variant.probe_function(mod)
    fn = ir.Function(mod, ir.FunctionType(VOID, [PTR, I64] + [I64] * len(RAISER)), REPORT)
    exc, site, *idx = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def word(field: str):  # the record's words: abi.EXC_RECORD_FIELDS
        return b.gep(exc, [ir.Constant(I64, EXC_RECORD_FIELDS.index(field))], source_etype=I64)

    assert EXC_RECORD_FIELDS.index("status") == 0  # the cmpxchg's: at the record's address
    won = b.extract_value(
        b.cmpxchg(exc, ir.Constant(I64, 0), ir.Constant(I64, 1), "acq_rel", "monotonic"), 1
    )
    with b.if_then(won):
        b.store(site, word("site"))
        for field, v in zip(RAISER, idx):
            b.store(v, word(field))
    b.ret_void()
    return mod
