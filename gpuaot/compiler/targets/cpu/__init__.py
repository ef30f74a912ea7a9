"""The CPU target: typed kernels → an optimised native object → (with the others) a host .so.

    mb = ModuleBuilder(CPUEmitter(new_module(qualname)))
    symbol = kernel_entry(mb, tf)        # LLVM IR: ``gpuaot_cpu_<mod>__<name>`` and the body
    ref = optimize(str(mb.module), tm=tm)  # O3 + unroll-and-jam; the driver emits the object
    link_shared([obj1, obj2, rt], out)   # the system C compiler links the bundle

One job per module, in the order a kernel goes through them: :mod:`.emitter` (the CPU's
hidden parameters and intrinsics), :mod:`.entry` (the exported entry points: the block and
thread loops around the body), :mod:`.xsplit` (the x-range split, an analysis of the body's
guards), :mod:`.pipeline` (the module and LLVM's passes), :mod:`.runtime` (the library every
variant shares), :mod:`.link` (the .so) and :mod:`.target` (the ``Target`` the driver
builds with). The CPU levels (:mod:`..cpu_variant`) are instances of it: one target machine
each, the same IR.

Python's integer semantics are kept: nothing here adds ``nsw``/``nuw`` or fast-math flags.
"""

from __future__ import annotations

from ...lower.emitter import I1
from .emitter import HIDDEN, REPORT, CPUEmitter, return_undef
from .entry import host_entry, kernel_entry
from .link import EXPORTS, find_cc, link_shared
from .pipeline import JAM_COUNT, JAM_MARK, PIPELINE, new_module, optimize
from .runtime import runtime_module
from .target import CPUTarget, compile_variant
from .xsplit import XSplit

# What the rest of gpuaot and the tests import from here.
__all__ = [
    "CPUEmitter",
    "CPUTarget",
    "compile_variant",
    "kernel_entry",
    "host_entry",
    "runtime_module",
    "optimize",
    "link_shared",
    "new_module",
    "I1",
    "HIDDEN",
    "REPORT",
    "EXPORTS",
    "find_cc",
    "JAM_COUNT",
    "JAM_MARK",
    "PIPELINE",
    "XSplit",
    "return_undef",
]
