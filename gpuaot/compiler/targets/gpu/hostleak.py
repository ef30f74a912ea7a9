"""Test-only lowering that lives here until tests/ takes it: host code with the GPU runtime."""

from __future__ import annotations

from llvmlite import ir

from ...lower.emitter import I64, VOID
from .. import cpu
from .emitter import REPORT, GPUEmitter


class HostLeakEmitter(cpu.CPUEmitter):
    """Test-only: host code lowered with the GPU table's runtime, as GPUCompiler.jl once did.

    Used by ``GPUAOT_TEST_HOST_TABLE=gpu`` to prove the build's leak gate refuses the result.
    """

    def raise_exception(self, b, hidden, site, ret_type) -> None:
        b.call(self.declare(REPORT, VOID, [I64]), [ir.Constant(I64, site)])
        cpu._return_undef(b, ret_type)

    math = GPUEmitter.math
