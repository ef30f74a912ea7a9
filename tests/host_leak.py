"""Test-only lowering: host code with the GPU table's runtime, as GPUCompiler.jl once did.

    monkeypatch.setitem(targets.REGISTRY, "cpu", LeakyCPUTarget)   # the driver builds with it

The build's leak gate must refuse the bundle it makes (``gpu_report_exception`` and
``__nv_*`` left undefined in host code). It reaches the driver through the target registry,
the seam every target uses, so nothing test-only lives in the compiler.
"""

from __future__ import annotations

from llvmlite import ir

from gpuaot.compiler.lower.emitter import I64, VOID
from gpuaot.compiler.targets.cpu import CPUEmitter, CPUTarget, return_undef
from gpuaot.compiler.targets.gpu import REPORT, GPUEmitter


class HostLeakEmitter(CPUEmitter):
    """The CPU emitter with the GPU runtime's raise and libdevice math."""

    def raise_exception(self, b, hidden, site, ret_type) -> None:
        b.call(self.declare(REPORT, VOID, [I64]), [ir.Constant(I64, site)])
        return_undef(b, ret_type)

    math = GPUEmitter.math


class LeakyCPUTarget(CPUTarget):
    """The CPU target, lowering with :class:`HostLeakEmitter`."""

    def emitter(self, module, *, fastmath: bool, fma: bool):
        return HostLeakEmitter(module, fastmath=fastmath, fma=fma)
