"""Code generation targets, and the registry the driver loops over.

    for t in select(opts):                 # the targets the options select, host first
        out = t.build(units_of[t], ctx)    # base.Target: table, stages, fingerprint, build
    emit_target("sm_80")                   # the class behind ``gpuaot emit --target sm_80``

Each target is a folder (:mod:`.cpu`, :mod:`.gpu`) with a :class:`~.base.Target` subclass and
one line in :data:`REGISTRY` below; nothing else names it. The driver types the package once
per selected target with the target's method table, lets the target lower and compile its
units (the cache through ``jobs.cached_stage``), links the host targets' objects and embeds
the device targets' image and the manifest. ``gpuaot emit --stage`` lists and runs the same
stage tables (:func:`stage_names`), and the build record keys on what is registered where it is not
the default (:func:`describe`). Registration is by ``"module:Class"`` string so that a no-op build,
which reads the registry, loads no target (and no llvmlite).

**A new target** — AMD's HSACO through LLVM's AMDGPU back end, say — is new files plus one
line here:

- ``targets/amdgpu/`` with an emitter (the hooks in :mod:`.base`: workitem ids from
  ``llvm.amdgcn.workitem.id.*``, ``__ocml_*`` math, its exception record in the global
  address space, LDS for ``shared_array``), its build (IR → code object through
  ``ld.lld`` → one image per kernel) and a ``Target`` subclass: ``name = "amdgpu"``,
  ``kind = "device"``, ``table = "gpu"`` (the GPU method table: same intrinsics), stages
  ``ir``, ``opt``, ``isa``, ``hsaco`` with their cache namespaces (``device/gfx90a``), a
  fingerprint of the ROCm device library and linker versions, ``from_options`` reading
  its architectures, ``for_emit`` accepting ``gfx*``;
- ``"amdgpu": "gpuaot.compiler.targets.amdgpu.target:AMDGPUTarget",`` in :data:`REGISTRY`.

What that does not reach, and a real AMD port would also change: the build options and the
CLI have ``--arch sm_XX`` for NVIDIA only, the manifest writer has one ``gpu`` slot per
specialisation and the bundle one ``.nv_fatbin`` section, and the run time loads images with
the CUDA driver. tests/test_targets.py registers a toy target the driver then builds with.
"""

from __future__ import annotations

import importlib

from ...errors import UsageError
from .base import Target

# name -> "module:Class" (or, in tests, the class itself). The order is the order of
# ``--target`` in emit's errors; builds run host targets first (:func:`select`).
REGISTRY: dict[str, str | type[Target]] = {
    "cpu": "gpuaot.compiler.targets.cpu.target:CPUTarget",
    "nvptx": "gpuaot.compiler.targets.gpu.build:NVPTXTarget",
}


def _load(entry: str | type[Target]) -> type[Target]:
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        return getattr(importlib.import_module(module), attr)
    return entry


def classes() -> list[type[Target]]:
    return [_load(e) for e in REGISTRY.values()]


def select(opts) -> list[Target]:
    """The targets the build options select, host targets first: their typing finds the
    GPU-only kernels, and their objects come first in the link."""
    chosen = [t for t in (cls.from_options(opts) for cls in classes()) if t is not None]
    return sorted(chosen, key=lambda t: t.kind != "host")


_DEFAULT = dict(REGISTRY)


def describe() -> dict[str, str] | None:
    """What is registered, by name, where it is not the default (None): the build record
    keys on it, so a target a test swaps in is another build. The record asks only where
    this package is loaded: where it is not, the registry is the default."""
    if REGISTRY == _DEFAULT:
        return None
    return {
        name: e if isinstance(e, str) else f"{e.__module__}:{e.__qualname__}"
        for name, e in REGISTRY.items()
    }


def for_table(table: str) -> type[Target]:
    """The first registered target that types with ``table`` (``"cpu"``, ``"gpu"``)."""
    for cls in classes():
        if cls.table == table:
            return cls
    raise KeyError(table)


def linker():
    """``link(objects, out_path)`` of the first registered host target: the bundle is a host
    shared object whatever else is in it (a ``--no-cpu`` bundle too)."""
    return next(cls for cls in classes() if cls.kind == "host").link


def stage_names() -> list[str]:
    """Every printable stage of every target, for ``emit --stage``: by position in the
    pipeline, a device target's before a host target's at one position."""
    ranked = []
    for k, cls in enumerate(classes()):
        for pos, s in enumerate(cls.stages):
            if s.printable:
                ranked.append((pos, cls.kind == "host", k, s.name))
    out: list[str] = []
    for *_, name in sorted(ranked):
        if name not in out:
            out.append(name)
    return out


def emit_options(cpu_level: str | None) -> list:
    """Each target's check of ``gpuaot emit``'s options, before anything else is read."""
    return [cls.emit_options(cpu_level) for cls in classes()]


def emit_target(target: str, stage: str, options: list) -> Target:
    """The target ``gpuaot emit --target TARGET --stage STAGE`` runs (``options`` from
    :func:`emit_options`); a ``UsageError`` where TARGET names none or has no such stage."""
    found = classes()
    for cls, opt in zip(found, options):
        t = cls.for_emit(target, opt)
        if t is not None:
            break
    else:
        words = " nor ".join(cls.emit_words for cls in found)
        raise UsageError(f"--target: '{target}' is neither {words}")
    have = t.stage(stage)
    if have is None or not have.printable:
        owner = next((c for c in found if (s := c.stage(stage)) and s.printable), None)
        if owner is None:
            raise UsageError(f"--stage {stage}: no target prints this stage")
        raise UsageError(f"--stage {stage} needs --target {owner.emit_example}")
    return t


__all__ = [
    "REGISTRY",
    "Target",
    "classes",
    "describe",
    "emit_options",
    "emit_target",
    "for_table",
    "linker",
    "select",
    "stage_names",
]
