"""Compile jobs in worker processes, and the one cached stage every target runs them through.

    done = cached_stage(ctx, compile_fn, [Job(ns, ir_text, options, job_input), ...],
                        lambda n: f"compiling {n} objects")
    done.outputs       # bytes per job, in order: from the cache or compiled now
    done.fresh         # the indices compiled now (and put in the cache)

LLVM holds the GIL while it optimises and emits, so parallel compiles need processes. This
lives apart from ``driver`` because the targets call it, and the driver imports the targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def compile_many(jobs: int, fn, inputs: list) -> list:
    """Run ``fn`` over ``inputs`` in worker processes (LLVM holds the GIL)."""
    if jobs <= 1 or len(inputs) <= 1:
        return [fn(x) for x in inputs]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(jobs, len(inputs))) as pool:
        return list(pool.map(fn, inputs))


@dataclass(frozen=True)
class Job:
    """One stage's work for one unit (and instance): the cache keys ``payload`` (the text
    compiled) with ``options`` in ``namespace``; ``fn`` gets ``input``."""

    namespace: str
    payload: str
    options: dict
    input: Any


@dataclass
class Done:
    outputs: list[bytes]
    fresh: set[int]  # indices compiled by this call

    @property
    def compiled(self) -> int:
        return len(self.fresh)

    @property
    def cached(self) -> int:
        return len(self.outputs) - len(self.fresh)


def cached_stage(ctx, fn, work: list[Job], describe=None) -> Done:
    """Keys → get → compile the misses with :func:`compile_many` (``ctx.jobs`` processes) →
    put. ``fn`` returns bytes or text (stored as UTF-8); ``describe(n)`` is the progress line
    for ``n`` misses (``ctx.progress``, when there is one)."""
    cache = ctx.cache
    keys = [cache.key(j.namespace, j.payload, j.options) for j in work]
    outputs: list = [cache.get(j.namespace, k) for j, k in zip(work, keys)]
    todo = [k for k, out in enumerate(outputs) if out is None]
    if ctx.progress and todo and describe is not None:
        ctx.progress(describe(len(todo)))
    for k, out in zip(todo, compile_many(ctx.jobs, fn, [work[k].input for k in todo])):
        outputs[k] = out.encode() if isinstance(out, str) else out
        cache.put(work[k].namespace, keys[k], outputs[k])
    return Done(outputs, set(todo))


__all__ = ["Done", "Job", "cached_stage", "compile_many"]
