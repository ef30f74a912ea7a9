"""The GPU target (a folder: :mod:`.emitter`, :mod:`.build`): typed kernels → NVPTX IR → PTX (lowest arch) + a cubin per arch → fatbin.

    out = NVPTXTarget(archs, debug).build(units, ctx)   # out.image, out.images

Device code is compiled through the GPU method table only (DESIGN invariant 2): thread indices
are NVVM special registers, math is libdevice (``__nv_*``), and exceptions go through the
device runtime library defined here, ``gpu_report_exception`` / ``gpu_signal_exception``,
which exists only inside device modules. Each kernel specialisation is its own module and its
own fatbinary container (so an edit rebuilds only what changed, in a cache namespace per
architecture); the containers are concatenated into the bundle's ``.nv_fatbin`` section and
the manifest records each one's offset, size, sha256 and entries.

Device exception record (per module, found with ``cuModuleGetGlobal``)::

    gpuaot_exception_record: [8 x i64] = {status, site, tid.x, tid.y, tid.z, ctaid.x, .y, .z}
"""

from __future__ import annotations

from ....bundle.abi import EXC_RECORD
from .build import NVPTXTarget, emit_stage, lower_gpu
from .emitter import GLOBAL_AS, REPORT, SHARED_AS, SIGNAL, GPUEmitter, runtime_functions

__all__ = [
    "GPUEmitter",
    "NVPTXTarget",
    "emit_stage",
    "lower_gpu",
    "EXC_RECORD",
    "GLOBAL_AS",
    "REPORT",
    "SHARED_AS",
    "SIGNAL",
    "runtime_functions",
]
