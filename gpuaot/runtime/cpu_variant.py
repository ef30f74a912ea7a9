"""Pick the variant of a bundle's host code that this CPU and OS can run.

    level = choose("example", manifest.cpu_variants, lib)  # "x86-64-v4"; once per load

The CPU's features are read once per process: on x86-64 by the bundle's own CPUID/XGETBV
probe (``gpuaot_rt_cpuid``, compiled for the baseline, so it runs on any x86-64), on
aarch64 from ``getauxval(AT_HWCAP/AT_HWCAP2)``. The highest variant whose ``requires`` all
hold is used; ``GPUAOT_CPU=<level>`` pins one. Nothing here runs code of a variant before
it is known to be safe: a CPU below every variant gets :class:`UnsupportedCPUError`, never
an illegal instruction.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence

from ..bundle import cpus
from .errors import UnsupportedCPUError

_features: frozenset[str] | None = None


def cpu_features(lib: ctypes.CDLL) -> frozenset[str]:
    """What this CPU and OS support, in LLVM's feature names (cached per process)."""
    global _features
    if _features is None:
        _features = _read_features(lib)
    return _features


def _read_features(lib: ctypes.CDLL) -> frozenset[str]:
    arch = cpus.machine()
    if arch == "x86_64":
        try:
            probe = getattr(lib, cpus.PROBE_SYMBOL)
        except AttributeError:
            raise UnsupportedCPUError(
                "this bundle has no CPU probe (built by an older gpuaot); rebuild it"
            ) from None
        probe.restype = None
        probe.argtypes = [ctypes.c_void_p]
        words = (ctypes.c_uint32 * len(cpus.PROBE_WORDS))()
        probe(words)
        return cpus.x86_features(words)
    if arch == "aarch64":
        getauxval = ctypes.CDLL(None).getauxval
        getauxval.restype = ctypes.c_ulong
        getauxval.argtypes = [ctypes.c_ulong]
        return cpus.arm_features(getauxval(cpus.AT_HWCAP), getauxval(cpus.AT_HWCAP2))
    return frozenset()  # no named levels here: only variants that require nothing


def choose(package: str, variants: Sequence[cpus.Variant], lib: ctypes.CDLL) -> str:
    """The level of the bundle's variant to bind; raises :class:`UnsupportedCPUError`."""
    names = ", ".join(v.level for v in variants) or "none"
    have = cpu_features(lib)
    this = cpus.best_level_name(have, cpus.machine())

    def missing(v: cpus.Variant) -> list[str]:
        return sorted(set(v.requires) - have)

    forced = os.environ.get("GPUAOT_CPU", "").strip()
    if forced:
        v = next((v for v in variants if v.level == forced), None)
        if v is None:
            raise UnsupportedCPUError(
                f"GPUAOT_CPU={forced}: the {package} bundle has no such CPU variant "
                f"(it holds {names})"
            )
        if missing(v):
            raise UnsupportedCPUError(
                f"GPUAOT_CPU={forced}: this CPU cannot run that variant of the {package} "
                f"bundle (this CPU is {this}; it lacks {', '.join(missing(v))})"
            )
        return forced
    runnable = [v for v in variants if not missing(v)]
    if not runnable:
        lowest = cpus.BASELINE.get(cpus.machine(), "x86-64")
        need = ", ".join(missing(variants[0])) if variants else "?"
        levels = ",".join(dict.fromkeys([lowest] + [v.level for v in variants]))
        raise UnsupportedCPUError(
            f"the {package} bundle has no CPU variant this CPU can run: it holds {names}; "
            f"this CPU is {this} (it lacks {need}); rebuild with: "
            f"gpuaot build {package} --cpu {levels}"
        )
    return runnable[-1].level
