"""The CPU worker pool: native workers that take a launch's jobs without the GIL.

    pool = native_pool(bundle.lib)          # None: a bundle from before the pool
    pool.run(fn, argv, 0, dims, exc, nblocks, 16, True, workers, spin_ns, cpu)   # False: busy

The C half is compiled into every bundle (``compiler.targets.cpu.pool``). The workers are
daemon Python threads that each call the bundle's ``gpuaot_rt_pool_work`` once and stay in
it, without the GIL, until the pool stops: a launch reaches them through shared memory, in
about a microsecond while they spin (``spin_ns`` after their last job), through a futex once
they sleep. The launcher runs jobs too and takes over those nobody has started, so a worker
that is late delays nothing but the job it is running. One pool per process (the first
bundle's code runs every bundle's kernels: the jobs are plain function pointers); a child
after ``fork`` starts its own; at exit the workers are told to return.

:class:`Helpers` are the other kind: Python threads fed through a queue, which take a launch
while another Python thread's holds the pool, or that of a bundle built before it.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import queue
import threading
import time

from ..bundle.abi import POOL_PREFIX

_vp, _i64 = ctypes.c_void_p, ctypes.c_int64


def keep_off(tids: list, cpu: int, avoid: tuple) -> tuple:
    """Move the threads ``tids`` off ``cpu`` unless ``avoid`` says they already are; the new
    ``avoid``. (Linux wakes a thread on its waker's CPU when it can: the launcher's, busy.)"""
    tids = list(tids)  # (a thread just started may not be in it yet: next time)
    if cpu < 0 or (cpu, len(tids)) == avoid:
        return avoid
    try:
        allowed = os.sched_getaffinity(0) - {cpu}
        if allowed:
            for tid in tids:
                os.sched_setaffinity(tid, allowed)
    except (AttributeError, OSError):  # not Linux, or a thread that is gone
        pass
    return (cpu, len(tids))


class NativePool:
    def __init__(self, lib) -> None:
        self.lib = lib  # (its code runs in the workers: kept loaded)
        size = getattr(lib, POOL_PREFIX + "size")
        size.restype = ctypes.c_size_t
        init = getattr(lib, POOL_PREFIX + "init")
        init.restype, init.argtypes = _vp, [_vp]
        self._run = getattr(lib, POOL_PREFIX + "run")
        self._run.restype = None
        self._run.argtypes = [_vp, _vp, _vp, _i64, _vp, _vp, _i64, _i64, _i64, _i64, _i64]
        self._work = getattr(lib, POOL_PREFIX + "work")
        self._work.restype, self._work.argtypes = _i64, [_vp, _i64]
        self._stop = getattr(lib, POOL_PREFIX + "stop")
        self._stop.restype, self._stop.argtypes = None, [_vp]
        max_jobs = getattr(lib, POOL_PREFIX + "max_jobs")
        max_jobs.restype = _i64
        self.max_jobs = int(max_jobs())
        self.mem = ctypes.create_string_buffer(int(size()))  # zeroed
        self.ptr = init(self.mem)
        self.busy = threading.Lock()  # one launch at a time
        self.grow = threading.Lock()
        self.count = 0
        self.tids: list[int] = []
        self.avoid = (-1, 0)
        self.stopped = False

    def ensure(self, n: int) -> None:
        if self.count >= n:
            return
        with self.grow:
            while self.count < n and not self.stopped:
                threading.Thread(
                    target=self._worker, args=(self.count,), daemon=True,
                    name=f"gpuaot-pool-{self.count}",
                ).start()  # fmt: skip
                self.count += 1

    def _worker(self, index: int) -> None:
        self.tids.append(threading.get_native_id())
        self._work(self.ptr, index)  # (returns once stopped)

    def run(self, fn, argv, stride, dims, exc, nblocks, n, guided, workers, spin_ns, cpu):
        """Blocks ``[0, nblocks)`` on this thread and ``workers - 1`` workers: in ``n`` jobs,
        ``_split``'s runs, job k with the argument vector ``argv + k * stride``; or, where
        ``guided``, in ever shorter jobs of at least ``n`` blocks. False, having run nothing,
        while another thread's launch holds the pool."""
        if not self.busy.acquire(blocking=False):
            return False
        try:
            self.ensure(workers - 1)
            self.avoid = keep_off(self.tids, cpu, self.avoid)
            self._run(self.ptr, fn, argv, stride, dims, exc, nblocks, n, workers, guided, spin_ns)
        finally:
            self.busy.release()
        return True

    def stop(self) -> None:
        """The workers return (a launch after this runs every job on its own thread)."""
        self.stopped = True
        self._stop(self.ptr)


class Helpers:
    """Daemon threads that run chunks of a launch; the launching thread runs one itself.

    One shared queue, so launches from several Python threads share the helpers; a job is
    ``(fn, args, done, stamps)``: ``done``, a lock the launcher holds, is released when it
    ends; ``stamps`` gets the clock (``perf_counter_ns``) when it started and ended.

    Linux wakes a thread on the CPU of the thread that woke it when it can ("wake affine"),
    and the launcher keeps that CPU busy with its own chunk: in about half of all processes
    the helper then waited for it, every launch, while the other cores idled (measured: a
    2048² stencil took 1.15 ms instead of 0.6 ms on 2 cores). So the helpers are kept off
    the launcher's CPU (:meth:`keep_off`), which costs one affinity call when it moves.
    """

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.count = 0
        self.lock = threading.Lock()
        self.tids: list[int] = []  # the helpers' native thread ids, as they start
        self.avoid = (-1, 0)  # the CPU the helpers are kept off, and how many were moved

    def ensure(self, n: int) -> None:
        if self.count >= n:
            return
        with self.lock:
            while self.count < n:
                threading.Thread(
                    target=self._work,
                    args=(self.jobs, self.tids),
                    daemon=True,
                    name=f"gpuaot-{self.count}",
                ).start()
                self.count += 1

    def keep_off(self, cpu: int) -> None:
        self.avoid = keep_off(self.tids, cpu, self.avoid)

    @staticmethod
    def _work(jobs: queue.SimpleQueue, tids: list) -> None:
        tids.append(threading.get_native_id())
        clock = time.perf_counter_ns
        while True:
            fn, args, done, stamps = jobs.get()
            try:
                stamps[0] = clock()
                fn(*args)
            finally:
                stamps[1] = clock()
                done.release()


def _current_cpu_fn():  # the CPU this thread runs on (-1: unknown)
    try:
        fn = ctypes.CDLL(None).sched_getcpu
    except (AttributeError, OSError):  # pragma: no cover - not glibc
        return lambda: -1
    fn.restype = ctypes.c_int
    fn.argtypes = []
    return fn


current_cpu = _current_cpu_fn()
helpers = Helpers()  # (the queued ones: runtime.cpu's fallback)


_pool: NativePool | None = None
_lock = threading.Lock()


def native_pool(lib) -> NativePool | None:
    """The process's pool, its code from ``lib`` if there is none yet; None where ``lib``
    is a bundle from before the pool and no other has given one."""
    global _pool
    pool = _pool
    if pool is not None:
        return pool
    if not hasattr(lib, POOL_PREFIX + "run"):
        return None
    with _lock:
        if _pool is None:
            _pool = NativePool(lib)
        return _pool


def _after_fork() -> None:
    global _pool, _lock, helpers
    _pool = None  # the parent's workers do not exist here (its memory is left alone)
    _lock = threading.Lock()
    helpers = Helpers()


def _at_exit() -> None:
    if _pool is not None:
        _pool.stop()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
atexit.register(_at_exit)
