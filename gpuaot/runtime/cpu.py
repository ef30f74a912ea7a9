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
import time

import numpy as np

from ..bundle.abi import (
    CPU_DIMS,
    DATA_POINTER,
    EXC_RECORD_FIELDS,
    EXC_RECORD_WORDS,
    EXTENT,
    STRIDED_LAYOUT,
    array_abi,
)
from ..bundle.manifest import CpuCode, HostFunction, Specialization
from ..lang.types import BY_NAME, parse_type
from . import pool as _pool
from .args import _CTYPES, _scalar, check_arguments, marshal, pointer_array
from .bundle import Bundle
from .exceptions import raise_device_exception
from .half import CHalf, from_bits
from .pool import current_cpu, native_pool

_cores: int | None = None


def _workers() -> int:
    env = os.environ.get("GPUAOT_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return _usable_cores()


def _usable_cores() -> int:
    global _cores
    if _cores is None:  # a system call: once per process (reset after fork)
        try:
            _cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover
            _cores = os.cpu_count() or 1
    return _cores


def _after_fork() -> None:
    global _cores
    _cores = None  # (the helper threads: runtime.pool)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def run_kernel(bundle: Bundle, name: str, spec: Specialization, grid, block, args) -> None:
    """Launch a selected specialisation on the CPU (the hot path: see the plan notes below)."""
    if spec.cpu is None:
        reason = spec.gpu_only or "it was built with --no-cpu"
        raise TypeError(f"kernel '{name}' has no CPU implementation: {reason}")
    plan = _plans.get(id(spec))
    if plan is None or plan.spec is not spec:
        plan = _cpu_plan(bundle, spec)
    flat = plan.flatten(name, args)
    if flat is None:  # anything unusual: the general path checks it and raises
        launch_cpu(bundle, name, spec.cpu, marshal(name, spec.params, args), grid, block)
        return
    try:
        values, argv = plan.free.pop()  # reused: argv already points into values
    except IndexError:
        values = plan.Args()
        base = ctypes.addressof(values)
        argv = plan.Argv(*[base + o for o in plan.offsets])
    values.__init__(*flat)
    private = plan.private and grid[0] * grid[1] * grid[2] and _privatised(plan, args)
    if private:
        exc = _run_private(plan, argv, grid, block, private)
    else:
        exc = _run_cpu(plan.fn, argv, grid, block, plan)
    plan.free.append((values, argv))
    if exc[_STATUS]:
        raise_device_exception("kernel", name, plan.sites, exc)


def launch_cpu(bundle: Bundle, name: str, cpu: CpuCode, values: list, grid, block) -> None:
    exc = _run_cpu(bundle.cpu_symbol(cpu), pointer_array(values), grid, block)
    if exc[_STATUS]:
        raise_device_exception("kernel", name, cpu.sites, exc)


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

_ABI_CTYPES = {DATA_POINTER: ctypes.c_void_p, EXTENT: ctypes.c_int64}  # an array's values
_PARALLEL_NS = 40_000  # ≈ 3x the hand-off to a helper thread and back (measured: 10-15 µs)
_PARALLEL_THREADS = 4096  # before a kernel has been timed


class _CpuPlan:
    __slots__ = tuple(
        "spec fn sites params Args Argv offsets free ns_per_thread lead_ns helper_ns private"
        " lib addr".split()
    )

    def __init__(self, bundle: Bundle, spec: Specialization):
        assert spec.cpu is not None  # run_kernel checked
        self.spec = spec
        self.free: list = []  # (Args, argv) pairs of finished launches, for the next ones
        self.fn = bundle.cpu_symbol(spec.cpu)
        self.lib = bundle.lib  # (whose worker pool: see _pool_run)
        self.addr = ctypes.cast(self.fn, ctypes.c_void_p).value
        self.sites = spec.cpu.sites
        fields: list = []
        self.params = []
        slots = []  # each parameter's first slot in the flat values
        for p in spec.params:
            slots.append(len(fields))
            if p.is_array:
                strided = p.layout == STRIDED_LAYOUT
                self.params.append((p, BY_NAME[p.dtype].np_dtype, p.ndim, strided, None))
                fields.extend(_ABI_CTYPES[v] for v in array_abi(p.ndim, p.layout))
            else:
                t = BY_NAME[p.type]  # a complex or an f16 always goes through _scalar (a struct)
                struct = issubclass(_CTYPES[p.type], ctypes.Structure)
                self.params.append((p, None, 0, False, None if struct else t.np_dtype.type))
                fields.append(_CTYPES[p.type])
        names = [(f"f{k}", t) for k, t in enumerate(fields)]
        self.Args = type("Args", (ctypes.Structure,), {"_fields_": names})
        self.offsets = [getattr(self.Args, f).offset for f, _ in names]
        self.Argv = ctypes.c_void_p * max(1, len(fields))
        self.ns_per_thread: float | None = None
        self.lead_ns: float = _LEAD_START_NS  # when the helpers start, after the launcher
        self.helper_ns: float = 0.0  # their ns per thread (0: not measured yet)
        self.private = _private_table(bundle, spec, slots)

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


def _cpu_plan(bundle: Bundle, spec: Specialization) -> _CpuPlan:
    if len(_plans) > 4096:  # bundles rebuilt and reloaded in one process (tests)
        _plans.clear()
    plan = _plans[id(spec)] = _CpuPlan(bundle, spec)
    return plan


def _run_cpu(fn, argv, grid, block, plan: _CpuPlan | None = None):
    """Run every block, split over threads where that pays; returns the exception record."""
    rec = _Record(*grid, *block)  # abi.CPU_DIMS, then the exception record
    exc = ctypes.byref(rec, _EXC_OFFSET)
    nblocks = grid[0] * grid[1] * grid[2]
    per_block = block[0] * block[1] * block[2]
    workers = _parallel(plan, grid, block)
    if workers > 1 and plan is not None:
        elapsed = _pool_run(plan, workers, plan.addr, ctypes.addressof(argv), 0, None, rec)
        if elapsed is not None:
            return _learned(plan, rec, elapsed, nblocks * per_block // workers)
    chunks = _shares(plan, nblocks, workers, per_block)
    i64 = ctypes.c_int64
    jobs = [(fn, (argv, rec, i64(a), i64(b), exc), (b - a) * per_block) for a, b in chunks]
    elapsed = _dispatch(jobs, plan)
    a, b = chunks[0]
    return _learned(plan, rec, elapsed, (b - a) * per_block)


# With the native worker pool (``runtime.pool``: every bundle has one, older ones do not) a
# launch is cut into ever shorter runs of blocks ("guided": each 1 / (2 * threads) of what is
# left, at least 1 / (_POOL_GRAIN * threads) of the launch) that whoever is free takes: a late
# worker costs the launch one run at most, and the threads finish within one short run of
# each other. Workers that have just run a job spin ``_SPIN_NS`` for the next launch, unless
# there are more threads than usable cores. The pool runs one launch at a time: a launch
# while another Python thread's runs takes the queued helpers below.

_POOL_GRAIN = 32
_SPIN_NS = 100_000


def _pool_run(plan: _CpuPlan, workers: int, fn: int, argv: int, stride: int, parts, rec):
    """The launch's blocks on the pool: guided where ``parts`` is None, else in ``parts``
    jobs, ``_split``'s runs, job k with the argument vector at ``argv + k * stride``. The ns
    it took; None where there is no pool or it is busy (nothing has run)."""
    pool = native_pool(plan.lib)
    nblocks = rec[0] * rec[1] * rec[2]
    if parts is None:  # (n: the fewest blocks a job holds)
        n, guided = -(-nblocks // (_POOL_GRAIN * workers)), True
    else:
        n, guided = parts, False
    if pool is None or (not guided and n > pool.max_jobs):
        return None
    at = ctypes.addressof(rec)
    spin = _SPIN_NS if workers <= _usable_cores() else 0
    clock = time.perf_counter_ns
    t0 = clock()
    cpu = current_cpu()
    if not pool.run(fn, argv, stride, at, at + _EXC_OFFSET, nblocks, n, guided, workers, spin, cpu):
        return None
    return clock() - t0


def _parallel(plan: _CpuPlan | None, grid, block, parts: int | None = None) -> int:
    """How many threads to split a launch over (``parts``: at most so many pieces)."""
    nblocks = grid[0] * grid[1] * grid[2]
    threads = nblocks * block[0] * block[1] * block[2]
    est = plan.ns_per_thread if plan is not None else None
    if est is None:
        split = threads >= _PARALLEL_THREADS
    else:
        split = threads * est >= _PARALLEL_NS
    pieces = nblocks if parts is None else parts
    return min(_workers(), pieces) if split and pieces > 1 else 1


# A helper woken through the queue starts its chunk 20-100 µs after the launcher queued it,
# and a launcher that then sleeps on its lock wakes 50-110 µs after the release (idle vCPUs
# come back slowly). So the launcher takes more: the helpers' start delay (learned per plan
# from their clock stamps, rising fast, falling slowly, capped) plus ``_MARGIN_NS``, to
# finish just after them, never sleeping. Only who runs which blocks changes, never what a
# block computes.

_MARGIN_NS = 15_000  # a helper's own return path (GIL, clock, lock release): a few µs
_LEAD_CAP_NS = 300_000
_LEAD_START_NS = 30_000  # before a plan has seen its helpers


def _shares(plan: _CpuPlan | None, n: int, workers: int, per_unit: int) -> list:
    """[0, n) split over ``workers``, the launcher's (first) share larger by the helpers'
    expected delay; ``per_unit``: threads per unit (block or chunk)."""
    if workers <= 1 or n <= 1:
        return [(0, n)]
    est = plan.ns_per_thread if plan is not None else None
    if not est:
        return _split(n, workers)
    helpers = workers - 1
    lead = plan.lead_ns + _MARGIN_NS
    unit_ns = est * per_unit
    # launcher: mine * unit_ns = lead + theirs * helper_ns, mine + helpers * theirs = n
    helper_ns = plan.helper_ns * per_unit or unit_ns
    theirs = (n * unit_ns - lead) / (unit_ns + helpers * helper_ns)
    theirs = max(n // (4 * workers), min(n // workers, int(theirs)))
    if theirs <= 0:
        return [(0, n)]
    mine = n - helpers * theirs
    return [(0, mine)] + [(mine + k * theirs, mine + (k + 1) * theirs) for k in range(helpers)]


def _dispatch(jobs: list, plan: _CpuPlan | None = None) -> int:
    """Run ``fn(*args)`` per job ``(fn, args, threads)``: the first on this thread (timed:
    its ns), the rest on helpers; returns once all have finished, having taught ``plan``
    the helpers' delay and speed (``threads``: how many GPU threads the job runs)."""
    clock = time.perf_counter_ns
    if len(jobs) == 1:
        fn, args, _n = jobs[0]
        t0 = clock()
        fn(*args)
        return clock() - t0
    helpers = _pool.helpers  # (replaced in a forked child)
    helpers.ensure(len(jobs) - 1)
    helpers.keep_off(current_cpu())
    waits = []
    try:
        for fn, args, n in jobs[1:]:
            done = _thread.allocate_lock()
            done.acquire()
            stamps = [0, 0]
            helpers.jobs.put((fn, args, done, stamps))
            waits.append((done, stamps, n))
        fn, args, _n = jobs[0]  # the calling thread takes the first job
        t1 = clock()
        fn(*args)
        t2 = clock()
    finally:  # the helpers read argv and rec: wait, whatever happens
        for done, _stamps, _n in waits:
            done.acquire()
    if plan is not None and waits:
        _learn_helpers(plan, t1, waits)
    return t2 - t1


def _learn_helpers(plan: _CpuPlan, t1: int, waits: list) -> None:
    """The queued helpers' start after the launcher's own (``t1``), their ns per thread."""
    lead = min(_LEAD_CAP_NS, max(0, max(s[0] for _d, s, _n in waits) - t1))
    old = plan.lead_ns
    plan.lead_ns = old + (lead - old) * (0.5 if lead > old else 0.125)
    ns = max([(s[1] - s[0]) / n for _d, s, n in waits if n], default=0.0)
    if ns:
        plan.helper_ns = (plan.helper_ns + ns) / 2 if plan.helper_ns else ns


def _learned(plan: _CpuPlan | None, rec, elapsed: int, mine: int):
    """The exception record; and the plan's time per thread, from this thread's share."""
    raised = rec[_DIMS + _STATUS]
    if plan is not None and not raised and mine:
        ns = elapsed / mine
        est = plan.ns_per_thread
        plan.ns_per_thread = ns if est is None else (est + ns) / 2
    return rec[_DIMS:] if raised else _NO_EXCEPTION


# One int64 buffer per launch: the entry's ``dims`` (abi.CPU_DIMS), then its ``exc``.
_DIMS = len(CPU_DIMS)
_STATUS = EXC_RECORD_FIELDS.index("status")  # nonzero once a thread has raised
_Record = ctypes.c_int64 * (_DIMS + EXC_RECORD_WORDS)
_EXC_OFFSET = _DIMS * ctypes.sizeof(ctypes.c_int64)
_NO_EXCEPTION = (0,) * EXC_RECORD_WORDS


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    step, extra = divmod(n, parts)
    out, start = [], 0
    for k in range(parts):
        end = start + step + (1 if k < extra else 0)
        if end > start:
            out.append((start, end))
        start = end
    return out


# ---------------------------------------------------------------------- privatised atomics
#
# A kernel whose atomics into an array only combine (``atomic_add(bins, k, 1)``, the old value
# unused; the compiler decides, ``compiler.targets.cpu.privatize``) exports a second entry,
# ``<entry>$p``, which updates that array with plain loads and stores, and ``<entry>$pinfo``,
# which names the arrays, their operations and the lanes of a copy. A launch on the fast path
# whose privatised arrays are small (``_PRIVATE_MAX_BYTES`` together), C-contiguous and share
# no memory with any other array argument runs that entry instead, in a fixed number of chunks:
#
#   chunks  P = min(64, blocks, threads // 4096, 8 MiB // (bytes * lanes)), at least 1: a
#           function of the launch configuration, the arrays' sizes and the kernel only, never
#           of the thread count
#   chunk c = the blocks of ``_split(blocks, P)[c]``, run in the entry's own order
#   copies  per chunk and array, ``lanes`` interleaved copies (element e of lane l at
#           e * lanes + l), set to the operation's identity (0, -0.0 for a float add, all
#           ones for and, the type's extreme for min/max); the thread at inner-loop position
#           t updates lane t % lanes
#   combine after every chunk has run: array = op(array, copy of chunk 0 lane 0), then lane
#           1, ..., then chunk 1 lane 0, ..., chunk P-1 lane lanes-1
#
# Worker threads take contiguous runs of chunks (``_split(P, workers)``), which changes who
# runs a chunk, never what it computes. Integer operations are exact in any order; a float
# sum comes out the same, bit for bit, whatever ``GPUAOT_NUM_THREADS`` says: each copy holds
# its threads' values summed in thread order, and the copies are added in a fixed order.
# (docs/performance.md states the order for users.) Launches that do not qualify run the
# ordinary entry, with exact atomics.

# The compiler's codes, in order (``compiler.targets.cpu.privatize.OPS``).
_PRIVATE_OPS = ("add", "fadd", "min", "max", "umin", "umax", "and", "or", "xor")
_PRIVATE_MAX_BYTES = 256 << 10  # the privatised arrays of one launch, together
_PRIVATE_COPY_BYTES = 8 << 20  # all their copies
_PRIVATE_CHUNKS = 64
_PRIVATE_CHUNK_THREADS = 4096  # the fewest threads worth a chunk of their own


def _private_table(bundle: Bundle, spec: Specialization, slots: list[int]):
    """``(entry, lanes, [(param, op, slot)])`` where the kernel exports a private entry."""
    assert spec.cpu is not None
    name = spec.cpu.symbols.get(bundle.cpu_level or "")
    if name is None or "." not in name:
        return None
    base, _, tag = name.rpartition(".")
    lib = bundle.lib
    info = getattr(lib, f"{base}$pinfo.{tag}", None)
    entry = getattr(lib, f"{base}$p.{tag}", None)
    if info is None or entry is None:
        return None  # a bundle from before privatisation
    info.restype = entry.restype = None
    words = (ctypes.c_int64 * (2 + 2 * len(slots)))()
    info(words)
    table = []
    for k in range(words[0]):
        param, op = words[2 + 2 * k], words[3 + 2 * k]
        table.append((param, _PRIVATE_OPS[op], slots[param]))
    return entry, words[1], table


def _privatised(plan: _CpuPlan, args) -> list | None:
    """The privatised arrays of this launch, ``(array, op, slot)``; None where it must not."""
    _entry, lanes, table = plan.private
    out, total = [], 0
    mine = set()
    for param, op, slot in table:
        a = args[param]
        if not a.flags.c_contiguous or not a.flags.writeable or a.size == 0:
            return None
        total += a.nbytes
        out.append((a, op, slot))
        mine.add(param)
    if total > _PRIVATE_MAX_BYTES:
        return None
    others = [a for k, a in enumerate(args) if k not in mine and type(a) is np.ndarray]
    arrays = [a for a, _op, _slot in out]
    for i, a in enumerate(arrays):  # the same memory seen through another argument
        if any(np.may_share_memory(a, o) for o in others + arrays[i + 1 :]):
            return None
    return out


def _private_chunks(nblocks: int, threads: int, nbytes: int) -> int:
    per_bytes = _PRIVATE_COPY_BYTES // max(1, nbytes)
    return max(1, min(_PRIVATE_CHUNKS, nblocks, threads // _PRIVATE_CHUNK_THREADS, per_bytes))


def _identity(op: str, dtype: np.dtype):
    if op == "fadd":
        return -0.0  # -0.0 + x is x for every x, +0.0 and -0.0 included
    if op in ("add", "or", "xor", "umax"):
        return 0
    info = np.iinfo(dtype)
    if op == "and":
        return info.max if dtype.kind == "u" else -1
    return info.max if op in ("min", "umin") else info.min


_REDUCE = {  # (umin/umax: on unsigned elements, so unsigned)
    **{op: np.minimum for op in ("min", "umin")},
    **{op: np.maximum for op in ("max", "umax")},
    **{"add": np.add, "and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor},
}


def _run_private(plan: _CpuPlan, argv, grid, block, arrays: list):
    """The launch in ``_private_chunks`` chunks, each with private copies, then combined."""
    entry, lanes, _table = plan.private
    nblocks = grid[0] * grid[1] * grid[2]
    per_block = block[0] * block[1] * block[2]
    nbytes = sum(a.nbytes for a, _op, _slot in arrays) * lanes
    parts = _private_chunks(nblocks, nblocks * per_block, nbytes)
    # a chunk's copy: element e of lane l at e * lanes + l
    copies = [
        np.full((parts, a.size * lanes), _identity(op, a.dtype), a.dtype) for a, op, _s in arrays
    ]
    # One argument vector per chunk: the entry's, with each privatised data pointer's slot
    # pointing at a cell that holds the chunk's copy.
    rows = np.tile(np.frombuffer(argv, dtype=np.uintp), (parts, 1))
    cells = np.empty((parts, len(arrays)), dtype=np.uintp)
    chunk = np.arange(parts, dtype=np.uintp)
    for j, (c, (_a, _op, slot)) in enumerate(zip(copies, arrays)):
        cells[:, j] = c.ctypes.data + chunk * np.uintp(c.strides[0])
        rows[:, slot] = cells.ctypes.data + (chunk * len(arrays) + j) * np.uintp(cells.itemsize)
    rec = _Record(*grid, *block)
    exc = ctypes.byref(rec, _EXC_OFFSET)
    bounds = _split(nblocks, parts)
    base, stride = rows.ctypes.data, rows.strides[0]
    i64, vp = ctypes.c_int64, ctypes.c_void_p

    def run(first: int, last: int) -> None:
        for k in range(first, last):
            a, b = bounds[k]
            entry(vp(base + k * stride), rec, i64(a), i64(b), exc)

    workers = _parallel(plan, grid, block, parts)
    elapsed = None
    if workers > 1:  # each chunk a job of the pool's
        at = ctypes.cast(entry, vp).value
        elapsed = _pool_run(plan, workers, at, base, stride, parts, rec)
        mine = nblocks * per_block // workers
    if elapsed is None:
        groups = _shares(plan, parts, workers, max(1, nblocks * per_block // parts))
        jobs = [(run, (f, e), (bounds[e - 1][1] - bounds[f][0]) * per_block) for f, e in groups]
        elapsed = _dispatch(jobs, plan)
        mine = jobs[0][2]
    for (a, op, _slot), c in zip(arrays, copies):
        flat = a.reshape(-1)
        # (chunk, lane) pairs in order, each a copy of the array
        pieces = c.reshape(parts, a.size, lanes).transpose(0, 2, 1).reshape(-1, a.size)
        if op == "fadd":  # array + copy 0 lane 0 + ... in order: the documented order
            stack = np.concatenate([flat[None], pieces])
            flat[...] = np.add.accumulate(stack, axis=0, dtype=c.dtype)[-1]
        else:  # exact in any order
            fn = _REDUCE[op]
            fn(flat, fn.reduce(pieces, axis=0, dtype=c.dtype), out=flat)
    return _learned(plan, rec, elapsed, mine)


def call_host_function(bundle: Bundle, name: str, entry: HostFunction, args):
    """Call a ``@host`` function's exported symbol; its return value as numpy scalars."""
    check_arguments(name, entry.params, args)  # as a kernel's specialisation is matched
    values = marshal(name, entry.params, args)
    ret_t = parse_type(entry.returns)
    ret = _ret_buffer(ret_t)
    exc = (ctypes.c_int64 * EXC_RECORD_WORDS)()
    bundle.cpu_symbol(entry)(
        pointer_array(values), ctypes.byref(ret) if ret is not None else None, exc
    )
    if exc[_STATUS]:
        raise_device_exception("host function", name, entry.sites, exc)
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
    if t.is_complex:
        return t.np_dtype.type(complex(ret.real, ret.imag))
    if isinstance(ret, CHalf):
        return from_bits(ret.bits)
    return t.np_dtype.type(getattr(ret, "value", ret))
