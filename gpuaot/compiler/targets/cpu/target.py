"""The CPU target: one instance per CPU level, the same lowered IR for all of them.

    t = CPUTarget(cpu_variant.resolve(levels))
    out = t.build(units, ctx)   # an object per (level, unit), then the shared runtime's
    t.emit(unit, "asm")         # the first level's assembly

Stages: ``ir`` (as lowered, once), ``opt`` and ``asm`` (per level), ``obj`` (per level,
cached in ``host-<tag>``: levels never share entries, and adding a level to ``--cpu``
compiles only that level). The worker pool's C object (:mod:`.link`) is one more job, cached
in ``host-pool``: a bundle without CPU code (``--no-cpu``) has no pool.
"""

from __future__ import annotations

from ....bundle import cpus
from ....errors import UsageError
from ..base import BuildContext, Stage, Target, TargetOutput, Unit, plural


def compile_variant(job: tuple) -> bytes:
    """``(ir_text, variant[, rename])`` → an ELF object for that CPU level (a worker's job).

    The unit's IR is optimised with the level's target machine, then every function it
    defines gets the level's suffix (``rename`` False: the shared runtime keeps its names).
    """
    from .. import cpu_variant
    from .pipeline import jam_wide, optimize

    ir_text, v, *rest = job
    tm = cpu_variant.variant_machine(v)
    ref = optimize(ir_text, tm=tm, wide=jam_wide(v.requires))
    if not rest or rest[0]:
        cpu_variant.rename_defined(ref, v)
    return tm.emit_object(ref)


class CPUTarget(Target):
    name = "cpu"
    kind = "host"
    table = "cpu"
    stages = (
        Stage("ir", "the unit's LLVM IR as lowered (one for every level)"),
        Stage("opt", "optimised for one level (O3 + unroll-and-jam)"),
        Stage("asm", "one level's assembly"),
        Stage("obj", "one level's object", printable=False, namespace="host-{tag}"),
    )
    emit_words = "cpu"
    emit_example = "cpu"

    @staticmethod
    def link(objects: list[bytes], out_path: str) -> None:
        from .link import link_shared

        link_shared(objects, out_path)

    def __init__(self, variants: list[cpus.Variant]):
        self.variants = variants  # the instances: one per CPU level, lowest first

    @classmethod
    def from_options(cls, opts) -> CPUTarget | None:
        if not opts.cpu:
            return None
        from .. import cpu_variant

        return cls(cpu_variant.resolve(opts.cpu_levels))

    @classmethod
    def emit_options(cls, cpu_level: str | None) -> list:
        """``emit --cpu LEVEL``: by default the highest of the build's default levels (what
        most machines run)."""
        arch_name = cpus.machine()
        if cpu_level is None:
            cpu_level = (cpus.DEFAULTS.get(arch_name) or [cpus.NATIVE])[-1]
        try:
            levels = cpus.parse_levels(cpu_level, arch_name)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if len(levels) != 1:
            raise UsageError("emit --cpu takes one level")
        return levels

    @classmethod
    def for_emit(cls, target: str, options: list) -> CPUTarget | None:
        if target != "cpu":
            return None
        from .. import cpu_variant

        return cls(cpu_variant.resolve(options))

    def emitter(self, module, *, fastmath: bool, fma: bool):
        from .emitter import CPUEmitter

        return CPUEmitter(module, fastmath=fastmath, fma=fma)

    def lower(self, unit: Unit) -> None:
        from ...lower.lowering import ModuleBuilder
        from .entry import host_entry, kernel_entry
        from .pipeline import new_module

        mod = new_module(unit.tf.func.qualname)
        mb = ModuleBuilder(self.emitter(mod, fastmath=unit.fastmath, fma=unit.fma))
        entry = kernel_entry if unit.func.kind == "kernel" else host_entry
        unit.symbol = entry(mb, unit.tf)
        unit.sites = mb.sites
        unit.ir = str(mod)

    def fingerprint(self, instance: cpus.Variant = None) -> dict:
        import llvmlite.binding as llvm

        from .pipeline import PIPELINE

        v = instance or self.variants[0]
        return {
            "target": "cpu",
            "triple": llvm.get_process_triple(),
            "level": v.level,
            "cpu": v.cpu,
            "features": v.features,
            "opt": 3,
            "pipeline": PIPELINE,
        }

    def build(self, units: list[Unit], ctx: BuildContext) -> TargetOutput:
        return self.start(units, ctx)()

    def start(self, units: list[Unit], ctx: BuildContext):
        """One object per level and unit, then the shared runtime (for the baseline): queued
        now, collected by the function returned."""
        from ...jobs import Job, start_stage
        from .. import cpu_variant
        from .half_rt import half_runtime_module, uses_half
        from .link import compile_pool, pool_fingerprint
        from .pool import pool_source
        from .runtime import runtime_module

        self.lower_units(units, ctx)
        ns = self.stage("obj").namespace
        work = [
            Job(ns.format(tag=v.tag), u.ir, self.fingerprint(v), (u.ir, v))
            for v in self.variants
            for u in units
        ]
        base = cpu_variant.baseline()
        rt = str(runtime_module())
        work.append(Job(ns.format(tag=base.tag), rt, self.fingerprint(base), (rt, base, False)))
        if any(uses_half(u.ir) for u in units):  # the f16 conversions LLVM calls (half_rt)
            hrt = str(half_runtime_module())
            work.append(
                Job(ns.format(tag=base.tag), hrt, self.fingerprint(base), (hrt, base, False))
            )
        pending = start_stage(
            ctx, compile_variant, work, lambda n: f"compiling {plural(n, 'CPU object')}"
        )
        pool = start_stage(  # on the workers the objects started, where they compile
            ctx, compile_pool, [Job("host-pool", pool_source(), pool_fingerprint(), None)]
        )
        n_units = len(self.variants) * len(units)  # (level, unit) objects, then the runtimes

        def finish() -> TargetOutput:
            done = pending.wait()
            fresh = sum(1 for k in done.fresh if k < n_units)
            return TargetOutput(
                objects=done.outputs + pool.wait().outputs,
                variants=self.variants,
                compiled=fresh,
                cached=n_units - fresh,
            )

        return finish

    def emit(self, unit: Unit, stage: str) -> str:
        from .. import cpu_variant
        from .pipeline import jam_wide, optimize

        self.lower(unit)
        if stage == "ir":
            return unit.ir
        v = self.variants[0]
        tm = cpu_variant.variant_machine(v)
        ref = optimize(unit.ir, tm=tm, wide=jam_wide(v.requires))
        return str(ref) if stage == "opt" else tm.emit_assembly(ref)


__all__ = ["CPUTarget", "compile_variant"]
