"""Method tables: one per target, stacked explicitly (DESIGN invariant 2).

    >>> cpu = table_for("cpu")
    >>> cpu.lookup("math.sqrt").table, cpu.lookup("intr.syncthreads")
    ('cpu', None)

A call resolves ``target overlay → base table``. The tables are derived from the op
declarations (:mod:`.ops`): the base table holds what means the same on every target (casts,
``len``/``abs``/``min``/``max``, atomics, local arrays), an overlay what a target lowers its own way. The GPU overlay
holds the device runtime (``gpu_*``), NVVM intrinsics, libdevice math and user
``@overlay(target="gpu")``; the CPU overlay holds the host runtime, the CPU meanings of thread
indices, libm and user ``@overlay(target="cpu")``. A name no table of the target holds has no
meaning there: typing turns that into a compile error naming the call chain, never an
undefined symbol left for the linker.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import ops
from .discover import FuncInfo, Package

# Derived from the op declarations (:mod:`.ops`): an op lowered the same on every target is
# in the base table, one with a target's own lowering in that target's overlay.
MATH_FUNCS = list(ops.mathfns.MATH_FUNCS)
DIM3 = ops.indexing.DIM3
BASE = ops.table_keys(ops.BASE)
CPU_OVERLAY = ops.table_keys("cpu")
GPU_OVERLAY = ops.table_keys("gpu")


@dataclass(frozen=True)
class Found:
    key: str
    table: str  # "base" or the target whose overlay held it


class MethodTable:
    def __init__(self, target: str, overlay: set[str], base: set[str] = BASE):
        self.target = target
        self.overlay = frozenset(overlay)
        self.base = frozenset(base)

    def lookup(self, key: str) -> Found | None:
        if key in self.overlay:
            return Found(key, self.target)
        if key in self.base:
            return Found(key, "base")
        return None

    def user_function(self, pkg: Package, func: FuncInfo) -> FuncInfo | None:
        """The body a call to ``func`` compiles on this target, or None if it has none."""
        replaced = pkg.overlays.get(self.target, {}).get(func.qualname)
        if replaced is not None:
            return replaced
        if func.kind == "device_only" and self.target == "cpu":
            return None
        return func


_TABLES = {"cpu": MethodTable("cpu", CPU_OVERLAY), "gpu": MethodTable("gpu", GPU_OVERLAY)}


def table_for(target: str) -> MethodTable:
    """``"cpu"``, or any GPU architecture (``"gpu"``, ``"sm_90"``)."""
    return _TABLES["cpu" if target == "cpu" else "gpu"]
