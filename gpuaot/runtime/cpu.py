"""The CPU launch path: a kernel's blocks split over helper threads, and host-function calls.

    run_kernel(bundle, "pkg.k.saxpy", spec, (9766, 1, 1), (1024, 1, 1), args)
    call_host_function(bundle, "pkg.k.dot", entry, (x, y))   # -> np.float32(...)

Each kernel exports one C function that runs a range of blocks, so the grid is split over a
thread pool; ctypes releases the GIL for the duration of each call. Per bundle and
specialisation a plan (:class:`_CpuPlan`) holds what does not depend on the argument values.
"""

from __future__ import annotations

import _thread
import ctypes
import os
import queue
import threading
import time

import numpy as np

from ..lang.types import BY_NAME, parse_type
from .args import _CTYPES, _scalar, marshal, pointer_array, select_specialization
from .bundle import Bundle
from .exceptions import EXC_WORDS, raise_device_exception

_cores: int | None = None


def _workers() -> int:
    env = os.environ.get("GPUAOT_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    global _cores
    if _cores is None:  # a system call: once per process (reset after fork)
        try:
            _cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover
            _cores = os.cpu_count() or 1
    return _cores


class _Helpers:
    """Daemon threads that run chunks of a launch; the launching thread runs one itself.

    One shared queue, so launches from several Python threads share the helpers; a job is
    ``(fn, args, done)``, and ``done`` (a lock held by the launcher) is released when it ends.
    Lighter than ``ThreadPoolExecutor`` + futures: a launch costs one lock hand-off per helper.

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
        tids = list(self.tids)  # (a helper just started may not be in it yet: next time)
        if cpu < 0 or (cpu, len(tids)) == self.avoid:
            return
        self.avoid = (cpu, len(tids))
        try:
            allowed = os.sched_getaffinity(0) - {cpu}
            if allowed:
                for tid in tids:
                    os.sched_setaffinity(tid, allowed)
        except (AttributeError, OSError):  # not Linux, or a thread that is gone
            pass

    @staticmethod
    def _work(jobs: queue.SimpleQueue, tids: list) -> None:
        tids.append(threading.get_native_id())
        while True:
            fn, args, done = jobs.get()
            try:
                fn(*args)
            finally:
                done.release()


def _current_cpu_fn():
    try:
        fn = ctypes.CDLL(None).sched_getcpu
    except (AttributeError, OSError):  # pragma: no cover - not glibc
        return lambda: -1
    fn.restype = ctypes.c_int
    fn.argtypes = []
    return fn


_current_cpu = _current_cpu_fn()
_helpers = _Helpers()


def _after_fork() -> None:
    global _helpers, _cores
    _helpers = _Helpers()  # the parent's threads do not exist in the child
    _cores = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def run_kernel(bundle: Bundle, name: str, spec: dict, grid, block, args) -> None:
    """Launch a selected specialisation on the CPU (the hot path: see the plan notes below)."""
    if spec["cpu"] is None:
        reason = spec.get("gpu_only") or "it was built with --no-cpu"
        raise TypeError(f"kernel '{name}' has no CPU implementation: {reason}")
    plan = _plans.get(id(spec))
    if plan is None or plan.spec is not spec:
        plan = _cpu_plan(bundle, spec)
    flat = plan.flatten(name, args)
    if flat is None:  # anything unusual: the general path checks it and raises
        launch_cpu(bundle, name, spec["cpu"], marshal(name, spec["params"], args), grid, block)
        return
    try:
        values, argv = plan.free.pop()  # reused: argv already points into values
    except IndexError:
        values = plan.Args()
        base = ctypes.addressof(values)
        argv = plan.Argv(*[base + o for o in plan.offsets])
    values.__init__(*flat)
    exc = _run_cpu(plan.fn, argv, grid, block, plan)
    plan.free.append((values, argv))
    if exc[0]:
        raise_device_exception("kernel", name, plan.sites, exc)


def launch_cpu(bundle: Bundle, name: str, cpu: dict, values: list, grid, block) -> None:
    exc = _run_cpu(bundle.cpu_symbol(cpu), pointer_array(values), grid, block)
    if exc[0]:
        raise_device_exception("kernel", name, cpu["sites"], exc)


# ---------------------------------------------------------------------- CPU launch path
#
# Per launch, the work that does not depend on the argument values is done once per bundle
# and specialisation (:class:`_CpuPlan`): the parameter checks, and a ctypes Structure laid
# out like the flattened parameters, so marshalling is one constructor call and the pointer
# array is its base address plus fixed offsets. Whether a launch is split over threads
# depends on the work it holds: each launch times the blocks the calling thread runs, and
# the next launch of the same kernel is split only if its estimated single-thread time
# pays for waking the helpers (``_PARALLEL_NS``); a kernel's first launch uses its thread
# count instead.

_PARALLEL_NS = 40_000  # ≈ 3x the hand-off to a helper thread and back (measured: 10-15 µs)
_PARALLEL_THREADS = 4096  # before a kernel has been timed


class _CpuPlan:
    __slots__ = (
        "spec",
        "fn",
        "sites",
        "params",
        "Args",
        "Argv",
        "offsets",
        "free",
        "ns_per_thread",
    )

    def __init__(self, bundle: Bundle, spec: dict):
        self.spec = spec
        self.free: list = []  # (Args, argv) pairs of finished launches, for the next ones
        self.fn = bundle.cpu_symbol(spec["cpu"])
        self.sites = spec["cpu"]["sites"]
        fields: list = []
        self.params = []
        for p in spec["params"]:
            if "ndim" in p:
                strided = p["layout"] == "A"
                self.params.append((p, BY_NAME[p["dtype"]].np_dtype, p["ndim"], strided, None))
                fields.append(ctypes.c_void_p)
                fields.extend([ctypes.c_int64] * (p["ndim"] * (2 if strided else 1)))
            else:
                self.params.append((p, None, 0, False, BY_NAME[p["type"]].np_dtype.type))
                fields.append(_CTYPES[p["type"]])
        names = [(f"f{k}", t) for k, t in enumerate(fields)]
        self.Args = type("Args", (ctypes.Structure,), {"_fields_": names})
        self.offsets = [getattr(self.Args, f).offset for f, _ in names]
        self.Argv = ctypes.c_void_p * max(1, len(fields))
        self.ns_per_thread: float | None = None

    def flatten(self, name: str, args) -> list | None:
        """The flat parameter values; None where :func:`marshal` must decide (and raise)."""
        if len(args) != len(self.params):
            return None
        flat: list = []
        for (p, dtype, ndim, strided, ntype), a in zip(self.params, args):
            if dtype is None:
                # A scalar of exactly the parameter's numpy type needs no conversion.
                flat.append(a.item() if type(a) is ntype else _scalar(name, p, a).value)
            elif type(a) is np.ndarray and a.dtype == dtype and a.ndim == ndim:
                if not (strided or a.flags.c_contiguous):
                    return None
                flat.append(_data_pointer(a))
                flat.extend(a.shape)
                if strided:
                    flat.extend(a.strides)
            else:
                return None
        return flat


def _data_pointer(a: np.ndarray) -> int:
    # 4x cheaper than a.ctypes.data; needs a writable, contiguous, non-empty buffer.
    try:
        return ctypes.addressof(_c_char.from_buffer(a))
    except (TypeError, ValueError, BufferError):
        return a.ctypes.data


_c_char = ctypes.c_char
# id(spec) -> plan; a plan holds its spec, so an id reused after a bundle is dropped misses.
_plans: dict[int, _CpuPlan] = {}


def _cpu_plan(bundle: Bundle, spec: dict) -> _CpuPlan:
    if len(_plans) > 4096:  # bundles rebuilt and reloaded in one process (tests)
        _plans.clear()
    plan = _plans[id(spec)] = _CpuPlan(bundle, spec)
    return plan


def _run_cpu(fn, argv, grid, block, plan: _CpuPlan | None = None):
    """Run every block, split over threads where that pays; returns the exception record."""
    rec = _Record(*grid, *block)  # dims (6 words), then the exception record (EXC_WORDS)
    exc = ctypes.byref(rec, _EXC_OFFSET)
    nblocks = grid[0] * grid[1] * grid[2]
    per_block = block[0] * block[1] * block[2]
    threads = nblocks * per_block
    est = plan.ns_per_thread if plan is not None else None
    if est is None:
        split = threads >= _PARALLEL_THREADS
    else:
        split = threads * est >= _PARALLEL_NS
    workers = min(_workers(), nblocks) if split and nblocks > 1 else 1
    i64 = ctypes.c_int64
    if workers > 1:
        chunks = _split(nblocks, workers)
        _helpers.ensure(len(chunks) - 1)
        _helpers.keep_off(_current_cpu())
        waits = []
        try:
            for a, b in chunks[1:]:
                done = _thread.allocate_lock()
                done.acquire()
                _helpers.jobs.put((fn, (argv, rec, i64(a), i64(b), exc), done))
                waits.append(done)
            a, b = chunks[0]  # the calling thread takes the first chunk
            t0 = time.perf_counter_ns()
            fn(argv, rec, i64(a), i64(b), exc)
            elapsed = time.perf_counter_ns() - t0
        finally:
            for done in waits:  # the helpers read argv and rec: wait, whatever happens
                done.acquire()
        mine = (b - a) * per_block
    else:
        t0 = time.perf_counter_ns()
        fn(argv, rec, i64(0), i64(nblocks), exc)
        elapsed = time.perf_counter_ns() - t0
        mine = threads
    raised = rec[6]
    if plan is not None and not raised and mine:
        ns = elapsed / mine
        plan.ns_per_thread = ns if est is None else (est + ns) / 2
    return rec[6:] if raised else _NO_EXCEPTION


_Record = ctypes.c_int64 * (6 + EXC_WORDS)
_EXC_OFFSET = 6 * ctypes.sizeof(ctypes.c_int64)
_NO_EXCEPTION = (0,) * EXC_WORDS


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    step, extra = divmod(n, parts)
    out, start = [], 0
    for k in range(parts):
        end = start + step + (1 if k < extra else 0)
        if end > start:
            out.append((start, end))
        start = end
    return out


def call_host_function(bundle: Bundle, name: str, entry: dict, args):
    """Call a ``@host`` function's exported symbol; its return value as numpy scalars."""
    params = entry["params"]
    select_specialization(name, {"specializations": [{"params": params}]}, args)
    values = marshal(name, params, args)
    ret_t = parse_type(entry["returns"])
    ret = _ret_buffer(ret_t)
    exc = (ctypes.c_int64 * EXC_WORDS)()
    bundle.cpu_symbol(entry)(
        pointer_array(values), ctypes.byref(ret) if ret is not None else None, exc
    )
    if exc[0]:
        raise_device_exception("host function", name, entry["sites"], exc)
    return _from_ctypes(ret, ret_t)


def _ret_ctype(t):
    """The C layout of a return type: a scalar, or a struct of them (tuples nest)."""
    if hasattr(t, "items"):
        fields = [(f"f{k}", _ret_ctype(i)) for k, i in enumerate(t.items)]
        return type("Ret", (ctypes.Structure,), {"_fields_": fields})
    return _CTYPES[t.name]


def _ret_buffer(t):
    if t.name == "None":
        return None
    return _ret_ctype(t)()


def _from_ctypes(ret, t):
    if ret is None:
        return None
    if hasattr(t, "items"):
        return tuple(_from_ctypes(getattr(ret, f"f{k}"), i) for k, i in enumerate(t.items))
    # a top-level scalar is a ctypes object; a struct's field reads as a Python value
    return t.np_dtype.type(getattr(ret, "value", ret))
