"""Launch kernels and call host functions from a bundle.

    saxpy[blocks, threads](np.float32(2), x, y, out)   # numpy arrays: CPU backend
    saxpy[blocks, threads](2.0, dx, dy, dout)           # CUDA arrays: GPU (runtime.cuda)
    dot(x, y)                                          # a @host function

The arrays decide the device. Arguments are checked against the manifest's parameter ABI
before anything runs (wrong dtype, rank, layout or arity is a ``TypeError``), then marshalled
into the flat kernelParams layout both backends share. On the CPU the blocks are split over a
thread pool; ctypes releases the GIL for the duration of each call.
"""

from __future__ import annotations

import _thread
import builtins
import ctypes
import os
import queue
import threading
import time

import numpy as np

from ..lang.types import BY_NAME, parse_type
from . import arrays
from .bundle import Bundle, load_bundle

_CTYPES = {
    "bool": ctypes.c_bool,
    "i8": ctypes.c_int8,
    "i16": ctypes.c_int16,
    "i32": ctypes.c_int32,
    "i64": ctypes.c_int64,
    "u8": ctypes.c_uint8,
    "u16": ctypes.c_uint16,
    "u32": ctypes.c_uint32,
    "u64": ctypes.c_uint64,
    "f32": ctypes.c_float,
    "f64": ctypes.c_double,
}
EXC_WORDS = 8

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


def _dim3(v, what: str) -> tuple[int, int, int]:
    if type(v) is int and v >= 1:  # the common cases, without the general checks below
        return (v, 1, 1)
    if type(v) is tuple and 1 <= len(v) <= 3 and all(type(x) is int and x >= 1 for x in v):
        return v + (1,) * (3 - len(v))
    if isinstance(v, (int, np.integer)):
        v = (v,)
    # Only integers: int("x") would raise ValueError, int(1.5) and int("3") would pass.
    if not isinstance(v, (tuple, list)) or not all(
        isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in v
    ):
        raise TypeError(f"{what} must be an int or a tuple of 1 to 3 ints, got {v!r}")
    v = tuple(int(x) for x in v)
    if not 1 <= len(v) <= 3 or any(x < 1 for x in v):
        raise TypeError(f"{what} must be 1 to 3 positive ints, got {v}")
    return v + (1,) * (3 - len(v))


def _qualname(fn) -> str:
    return f"{fn.__module__}.{fn.__name__}"


def _package(fn) -> str:
    return fn.__module__.split(".")[0]


# ---------------------------------------------------------------------- argument checks


_PLAIN_SCALARS = (bool, int, float)


def device_of(name: str, args) -> str:
    cuda = host = False
    for a in args:
        if type(a) is np.ndarray:  # the common cases first: no attribute probing
            host = True
        elif type(a) in _PLAIN_SCALARS or isinstance(a, np.generic):
            continue
        else:
            cuda = cuda or arrays.is_cuda_array(a)
            host = host or isinstance(a, np.ndarray)
    if cuda and host:
        raise TypeError(f"{name}: arguments mix CUDA and numpy arrays; move them to one device")
    return "gpu" if cuda else "cpu"


# id(spec) -> (spec, (arity, [(index, dtype, ndim) of each array parameter]) or None)
_matchers: dict[int, tuple[dict, tuple | None]] = {}


def _matcher(spec: dict):
    hit = _matchers.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    params = spec["params"]
    m = None
    if params is not None:
        arrays = [
            (k, BY_NAME[p["dtype"]].np_dtype, p["ndim"])
            for k, p in enumerate(params)
            if "ndim" in p
        ]
        m = (len(params), arrays)
    if len(_matchers) > 4096:  # bundles rebuilt and reloaded in one process (tests)
        _matchers.clear()
    _matchers[id(spec)] = (spec, m)
    return m


def _spec_matches(spec: dict, args) -> bool:
    m = _matcher(spec)
    if m is None or m[0] != len(args):
        return False
    for k, dtype, ndim in m[1]:
        a = args[k]
        if type(a) is np.ndarray:
            dt, nd = a.dtype, a.ndim
        else:
            dt, nd = arrays.dtype_ndim(a)
        if dt is None or dt != dtype or nd != ndim:
            return False
    return True


def select_specialization(name: str, entry: dict, args) -> dict:
    specs = entry["specializations"]
    for s in specs:
        if _spec_matches(s, args):
            return s
    params = next((s["params"] for s in specs if s["params"] is not None), [])
    if len(args) != len(params):
        raise TypeError(f"{name}() takes {len(params)} arguments, got {len(args)}")
    if len(specs) == 1:
        for p, a in zip(params, args):
            if "ndim" in p:
                dt, nd = arrays.dtype_ndim(a)
                if dt is None:
                    raise TypeError(
                        f"{name}(): argument '{p['name']}' must be an array "
                        f"({p['type']}), got {type(a).__name__}"
                    )
                want = BY_NAME[p["dtype"]].np_dtype
                if dt != want:
                    raise TypeError(
                        f"{name}(): argument '{p['name']}' has dtype {dt}, "
                        f"expected {want} ({p['type']})"
                    )
                if nd != p["ndim"]:
                    raise TypeError(
                        f"{name}(): argument '{p['name']}' has {nd} dimensions, "
                        f"expected {p['ndim']} ({p['type']})"
                    )
    sigs = "; ".join("(" + ", ".join(p["type"] for p in s["params"] or []) + ")" for s in specs)
    got = ", ".join(_describe(a) for a in args)
    raise TypeError(f"{name}(): no specialisation matches ({got}); compiled: {sigs}")


def _describe(a) -> str:
    dt, nd = arrays.dtype_ndim(a)
    if dt is not None:
        return f"{dt}[{nd}-D]"
    return type(a).__name__


def marshal(name: str, params: list[dict], args, *, device: str = "cpu"):
    """Flat values for the kernel ABI: ctypes objects, kept alive by the returned list."""
    values: list = []
    for p, a in zip(params, args):
        if "ndim" in p:
            values.extend(_array_parts(name, p, a, device))
        else:
            values.append(_scalar(name, p, a))
    return values


def _scalar(name: str, p: dict, a):
    if isinstance(a, (np.ndarray,)) or arrays.is_cuda_array(a):
        raise TypeError(
            f"{name}(): argument '{p['name']}' must be a {p['type']} scalar, got an array"
        )
    t = BY_NAME[p["type"]]
    if not isinstance(a, (bool, int, float, np.number, np.bool_)):
        raise TypeError(
            f"{name}(): argument '{p['name']}' must be a number ({p['type']}), "
            f"got {type(a).__name__}"
        )
    if t.is_int and isinstance(a, (float, np.floating)):
        raise TypeError(f"{name}(): argument '{p['name']}' is {p['type']}; got a float")
    return _CTYPES[p["type"]](t(a).item())


def _array_parts(name: str, p: dict, a, device: str) -> list:
    if device == "cpu":
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name}(): argument '{p['name']}' must be a numpy array")
        ptr, shape, strides = a.ctypes.data, a.shape, a.strides
        contiguous = a.flags.c_contiguous
    else:
        v = arrays.device_view(a)
        ptr, shape, strides, contiguous = v.ptr, v.shape, v.strides, v.c_contiguous
    if p["layout"] == "C" and not contiguous and any(s > 1 for s in shape):
        raise TypeError(
            f"{name}(): argument '{p['name']}' is not C-contiguous; pass a "
            f'contiguous copy or declare it Array[{p["dtype"]}, {p["ndim"]}, "A"]'
        )
    parts = [ctypes.c_void_p(ptr)] + [ctypes.c_int64(s) for s in shape]
    if p["layout"] == "A":
        parts += [ctypes.c_int64(s) for s in strides]
    return parts


def pointer_array(values: list) -> ctypes.Array:
    arr = (ctypes.c_void_p * max(1, len(values)))()
    for k, v in enumerate(values):
        arr[k] = ctypes.cast(ctypes.byref(v), ctypes.c_void_p)
    return arr


# ---------------------------------------------------------------------- exceptions


def raise_device_exception(kind: str, name: str, sites: list[dict], record) -> None:
    site = int(record[1])
    tid = tuple(int(x) for x in record[2:5])
    bid = tuple(int(x) for x in record[5:8])
    if not 0 <= site < len(sites):
        raise RuntimeError(f"{kind} '{name}' reported an unknown exception site {site}")
    s = sites[site]
    cls = getattr(builtins, s["type"], RuntimeError)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        cls = RuntimeError
    where = f"in {kind} '{name}' at {s['file']}:{s['line']}"
    if kind == "kernel":
        where += f", thread {tid}, block {bid}"
    msg = f"{s['message']} ({where})" if s["message"] else f"({where})"
    raise cls(msg)


# ---------------------------------------------------------------------- CPU


def launch(kernel, config, args) -> None:
    name = _qualname(kernel)
    bundle = load_bundle(_package(kernel))
    entry = bundle.kernels.get(name)
    if entry is None:
        raise TypeError(
            f"kernel '{name}' is not in the bundle; rebuild with: gpuaot build {bundle.package}"
        )
    grid = _dim3(config[0], "grid")
    block = _dim3(config[1], "block")
    stream = config[2] if len(config) == 3 else None
    device = device_of(name, args)
    specs = entry["specializations"]
    if device == "cpu" and not any(s["cpu"] for s in specs):
        # Checked before the arguments: a GPU-only kernel of a --no-gpu build has no
        # parameter list in the manifest, and "takes 0 arguments" would hide the reason.
        reason = next((s["gpu_only"] for s in specs if s.get("gpu_only")), None)
        raise TypeError(
            f"kernel '{name}' has no CPU implementation: {reason or 'it was built with --no-cpu'}"
        )
    spec = select_specialization(name, entry, args)
    if device == "gpu":
        from . import cuda

        return cuda.launch(bundle, name, spec, grid, block, stream, args)
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


def call_host(host, args):
    name = _qualname(host)
    bundle = load_bundle(_package(host))
    entry = bundle.hosts.get(name)
    if entry is None:
        raise TypeError(
            f"host function '{name}' is not in the bundle; rebuild with: "
            f"gpuaot build {bundle.package}"
        )
    params = entry["params"]
    if len(args) != len(params):
        raise TypeError(f"{name}() takes {len(params)} arguments, got {len(args)}")
    if device_of(name, args) == "gpu":
        raise TypeError(f"{name}() is a host function: pass numpy arrays, not CUDA arrays")
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
