"""Compile jobs in worker processes, and the one cached stage every target runs them through.

    with Workers(jobs) as workers:       # the worker processes of one build (the driver's)
        ctx = BuildContext(cache, jobs, progress, workers)
        pending = start_stage(ctx, compile_fn, [Job(ns, ir_text, options, job_input), ...],
                              lambda n: f"compiling {n} objects")
        ...                              # the main process goes on: lowering, other stages
        done = pending.wait()            # = cached_stage(ctx, compile_fn, work, describe)
    done.outputs       # bytes per job, in order: from the cache or compiled now
    done.fresh         # the indices compiled now (and put in the cache)

LLVM holds the GIL while it optimises and emits (llvmlite serialises its calls), so parallel
compiles need processes. One set of workers (:class:`Workers`) serves every stage and target
of a build: started by the first batch worth sharing out (more only for a larger batch), and
kept busy by a stage started before the last one finished while the main process lowers the
next target's units (``Target.start``). The cache is read when a
stage starts and written when it is waited for, in the main process only, one entry per job:
which jobs share a pool never changes what is cached. This lives apart from ``driver``
because the targets call it, and the driver imports the targets.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any


class Workers:
    """Up to ``jobs`` worker processes, as many as the largest batch so far can use.

    ``jobs <= 1``, or a first batch of one job, runs in this process (a build with one
    thing to compile starts no pool). The first batch worth sharing out starts
    ``min(jobs, len(batch))`` workers, and a later, larger batch adds workers up to that
    many (a pool of fork-started processes cannot grow, so that is a second pool): a warm
    build on a machine with many cores forks a few, not one per core. Each batch is dealt
    over all the workers, in order. :meth:`close` (or leaving the ``with``) cancels what has
    not started and waits for the workers to exit.
    """

    def __init__(self, jobs: int):
        self.jobs = jobs
        self._pools: list = []  # (ProcessPoolExecutor, its number of workers)

    @property
    def size(self) -> int:
        """The worker processes started so far."""
        return sum(n for _, n in self._pools)

    def submit(self, fn, inputs: list) -> list[Future]:
        """Futures of ``fn(x)`` for each ``x``, queued in order (first in, first started)."""
        if not self._pools and (self.jobs <= 1 or len(inputs) <= 1):
            return [_run_here(fn, x) for x in inputs]
        want = min(self.jobs, len(inputs))
        if want > self.size:
            from concurrent.futures import ProcessPoolExecutor

            more = want - self.size
            self._pools.append((ProcessPoolExecutor(max_workers=more), more))
        slots = [pool for pool, n in self._pools for _ in range(n)]
        return [slots[k % len(slots)].submit(fn, x) for k, x in enumerate(inputs)]

    def close(self) -> None:
        pools, self._pools = self._pools, []
        for pool, _ in pools:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _run_here(fn, x) -> Future:
    f: Future = Future()
    try:
        f.set_result(fn(x))
    except Exception as e:  # re-raised by result(), as a worker's would be
        f.set_exception(e)
    return f


def compile_many(jobs: int, fn, inputs: list) -> list:
    """Run ``fn`` over ``inputs`` in up to ``jobs`` worker processes of their own."""
    with Workers(min(jobs, len(inputs))) as workers:
        return [f.result() for f in workers.submit(fn, inputs)]


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


class Pending:
    """A started stage: the cache hits, and futures for the misses (:func:`start_stage`)."""

    def __init__(self, ctx, work, keys, outputs, futures: dict, own: Workers | None = None):
        self._ctx, self._work, self._keys = ctx, work, keys
        self._outputs, self._futures = outputs, futures  # index -> Future
        self._own = own  # a pool of this stage's own, closed once it is done
        self._done: Done | None = None

    def wait(self) -> Done:
        """The stage's outputs; each one compiled now is put in the cache (once)."""
        if self._done is None:
            cache = self._ctx.cache
            try:
                for k, future in self._futures.items():
                    out = future.result()
                    self._outputs[k] = out.encode() if isinstance(out, str) else out
                    cache.put(self._work[k].namespace, self._keys[k], self._outputs[k])
            finally:
                if self._own is not None:
                    self._own.close()
            self._done = Done(self._outputs, set(self._futures))
        return self._done


def start_stage(ctx, fn, work: list[Job], describe=None) -> Pending:
    """Keys → get → queue the misses on ``ctx.workers`` (a context without workers: a pool
    of this stage's own, closed by :meth:`Pending.wait`) → :meth:`Pending.wait` puts them.
    ``fn`` returns bytes or text (stored as UTF-8); ``describe(n)`` is the progress line for
    ``n`` misses (``ctx.progress``, when there is one)."""
    cache = ctx.cache
    keys = [cache.key(j.namespace, j.payload, j.options) for j in work]
    outputs: list = [cache.get(j.namespace, k) for j, k in zip(work, keys)]
    todo = [k for k, out in enumerate(outputs) if out is None]
    if ctx.progress and todo and describe is not None:
        ctx.progress(describe(len(todo)))
    workers = ctx.workers
    own = None if workers is not None else Workers(min(ctx.jobs, len(todo)))
    futures = (workers or own).submit(fn, [work[k].input for k in todo])
    return Pending(ctx, work, keys, outputs, dict(zip(todo, futures)), own)


def cached_stage(ctx, fn, work: list[Job], describe=None) -> Done:
    """:func:`start_stage` and wait for it."""
    return start_stage(ctx, fn, work, describe).wait()


__all__ = ["Done", "Job", "Pending", "Workers", "cached_stage", "compile_many", "start_stage"]
