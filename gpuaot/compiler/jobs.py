"""Compile jobs in worker processes: one helper both the driver and the targets call.

    objects = compile_many(opts.jobs, compile_variant, [(ir_text, variant), ...])

LLVM holds the GIL while it optimises and emits, so parallel compiles need processes. This
lives apart from ``driver`` because the targets call it too, and the driver imports the
targets: keeping it there made ``driver`` and ``targets.gpu`` import each other.
"""

from __future__ import annotations


def compile_many(jobs: int, fn, inputs: list) -> list:
    """Run ``fn`` over ``inputs`` in worker processes (LLVM holds the GIL)."""
    if jobs <= 1 or len(inputs) <= 1:
        return [fn(x) for x in inputs]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(jobs, len(inputs))) as pool:
        return list(pool.map(fn, inputs))


def compile_variant(job: tuple) -> bytes:
    """``(ir_text, variant[, rename])`` → an ELF object for that CPU level (a worker's job).

    The unit's IR is optimised with the level's target machine, then every function it
    defines gets the level's suffix (``rename`` False: the shared runtime keeps its names).
    """
    from .targets import cpu, cpu_variant

    ir_text, v, *rest = job
    tm = cpu_variant.variant_machine(v)
    ref = cpu.optimize(ir_text, tm=tm)
    if not rest or rest[0]:
        cpu_variant.rename_defined(ref, v)
    return tm.emit_object(ref)
