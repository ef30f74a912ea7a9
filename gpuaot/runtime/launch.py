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

import builtins
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..lang.types import BY_NAME, parse_type
from .bundle import Bundle, load_bundle

_CTYPES = {
    "bool": ctypes.c_bool, "i8": ctypes.c_int8, "i16": ctypes.c_int16, "i32": ctypes.c_int32,
    "i64": ctypes.c_int64, "u8": ctypes.c_uint8, "u16": ctypes.c_uint16,
    "u32": ctypes.c_uint32, "u64": ctypes.c_uint64, "f32": ctypes.c_float,
    "f64": ctypes.c_double,
}
EXC_WORDS = 8

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _workers() -> int:
    env = os.environ.get("GPUAOT_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="gpuaot")
        return _pool


def _dim3(v, what: str) -> tuple[int, int, int]:
    if isinstance(v, (int, np.integer)):
        v = (v,)
    # Only integers: int("x") would raise ValueError, int(1.5) and int("3") would pass.
    if not isinstance(v, (tuple, list)) or not all(
            isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in v):
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


def _is_cuda_array(a) -> bool:
    if hasattr(a, "__cuda_array_interface__"):
        return True
    dev = getattr(a, "__dlpack_device__", None)
    if dev is not None and not isinstance(a, np.ndarray):
        try:
            return dev()[0] in (2, 3, 13)  # kDLCUDA, kDLCUDAHost, kDLCUDAManaged
        except Exception:  # noqa: BLE001 - a foreign object's method
            return False
    return False


def device_of(name: str, args) -> str:
    cuda = [a for a in args if _is_cuda_array(a)]
    host = [a for a in args if isinstance(a, np.ndarray)]
    if cuda and host:
        raise TypeError(f"{name}: arguments mix CUDA and numpy arrays; move them to one device")
    return "gpu" if cuda else "cpu"


def _spec_matches(spec: dict, args) -> bool:
    if spec["params"] is None or len(spec["params"]) != len(args):
        return False
    for p, a in zip(spec["params"], args):
        if "ndim" in p:
            dt, nd = _array_dtype_ndim(a)
            if dt is None or dt != BY_NAME[p["dtype"]].np_dtype or nd != p["ndim"]:
                return False
    return True


def _array_dtype_ndim(a):
    if isinstance(a, np.ndarray):
        return a.dtype, a.ndim
    cai = getattr(a, "__cuda_array_interface__", None)
    if cai is not None:
        return np.dtype(cai["typestr"]), len(cai["shape"])
    return None, None


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
                dt, nd = _array_dtype_ndim(a)
                if dt is None:
                    raise TypeError(f"{name}(): argument '{p['name']}' must be an array "
                                    f"({p['type']}), got {type(a).__name__}")
                want = BY_NAME[p["dtype"]].np_dtype
                if dt != want:
                    raise TypeError(f"{name}(): argument '{p['name']}' has dtype {dt}, "
                                    f"expected {want} ({p['type']})")
                if nd != p["ndim"]:
                    raise TypeError(f"{name}(): argument '{p['name']}' has {nd} dimensions, "
                                    f"expected {p['ndim']} ({p['type']})")
    sigs = "; ".join("(" + ", ".join(p["type"] for p in s["params"] or []) + ")" for s in specs)
    got = ", ".join(_describe(a) for a in args)
    raise TypeError(f"{name}(): no specialisation matches ({got}); compiled: {sigs}")


def _describe(a) -> str:
    dt, nd = _array_dtype_ndim(a)
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
    if isinstance(a, (np.ndarray,)) or _is_cuda_array(a):
        raise TypeError(f"{name}(): argument '{p['name']}' must be a {p['type']} scalar, "
                        "got an array")
    t = BY_NAME[p["type"]]
    if not isinstance(a, (bool, int, float, np.number, np.bool_)):
        raise TypeError(f"{name}(): argument '{p['name']}' must be a number ({p['type']}), "
                        f"got {type(a).__name__}")
    if t.is_int and isinstance(a, (float, np.floating)):
        raise TypeError(f"{name}(): argument '{p['name']}' is {p['type']}; got a float")
    return _CTYPES[p["type"]](t(a).item())


def _array_parts(name: str, p: dict, a, device: str) -> list:
    if device == "cpu":
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name}(): argument '{p['name']}' must be a numpy array")
        ptr, shape, strides = a.ctypes.data, a.shape, a.strides
        contiguous = a.flags.c_contiguous
        itemsize = a.itemsize
    else:
        cai = a.__cuda_array_interface__
        ptr, shape = cai["data"][0], tuple(cai["shape"])
        itemsize = np.dtype(cai["typestr"]).itemsize
        strides = cai.get("strides")
        c_strides = _c_strides(shape, itemsize)
        contiguous = strides is None or tuple(strides) == c_strides
        strides = tuple(strides) if strides is not None else c_strides
    if p["layout"] == "C" and not contiguous and any(s > 1 for s in shape):
        raise TypeError(f"{name}(): argument '{p['name']}' is not C-contiguous; pass a "
                        f"contiguous copy or declare it Array[{p['dtype']}, {p['ndim']}, \"A\"]")
    parts = [ctypes.c_void_p(ptr)] + [ctypes.c_int64(s) for s in shape]
    if p["layout"] == "A":
        parts += [ctypes.c_int64(s) for s in strides]
    return parts


def _c_strides(shape, itemsize) -> tuple:
    out, acc = [], itemsize
    for s in reversed(shape):
        out.append(acc)
        acc *= s
    return tuple(reversed(out))


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
        raise TypeError(f"kernel '{name}' is not in the bundle; rebuild with: "
                        f"gpuaot build {bundle.package}")
    grid = _dim3(config[0], "grid")
    block = _dim3(config[1], "block")
    stream = config[2] if len(config) == 3 else None
    device = device_of(name, args)
    specs = entry["specializations"]
    if device == "cpu" and not any(s["cpu"] for s in specs):
        # Checked before the arguments: a GPU-only kernel of a --no-gpu build has no
        # parameter list in the manifest, and "takes 0 arguments" would hide the reason.
        reason = next((s["gpu_only"] for s in specs if s.get("gpu_only")), None)
        raise TypeError(f"kernel '{name}' has no CPU implementation: "
                        f"{reason or 'it was built with --no-cpu'}")
    spec = select_specialization(name, entry, args)
    if device == "gpu":
        from . import cuda

        return cuda.launch(bundle, name, spec, grid, block, stream, args)
    if spec["cpu"] is None:
        reason = spec.get("gpu_only") or "it was built with --no-cpu"
        raise TypeError(f"kernel '{name}' has no CPU implementation: {reason}")
    values = marshal(name, spec["params"], args)
    launch_cpu(bundle, name, spec["cpu"], values, grid, block)


def launch_cpu(bundle: Bundle, name: str, cpu: dict, values: list, grid, block) -> None:
    fn = bundle.symbol(cpu["symbol"])
    argv = pointer_array(values)
    dims = (ctypes.c_int64 * 6)(*grid, *block)
    exc = (ctypes.c_int64 * EXC_WORDS)()
    nblocks = grid[0] * grid[1] * grid[2]
    per_block = block[0] * block[1] * block[2]
    workers = min(_workers(), nblocks)
    # Small launches are cheaper on the calling thread than handed to the pool.
    if workers <= 1 or nblocks * per_block < 4096:
        fn(argv, dims, ctypes.c_int64(0), ctypes.c_int64(nblocks), exc)
    else:
        chunks = _split(nblocks, workers)
        pool = _thread_pool()
        futures = [pool.submit(fn, argv, dims, ctypes.c_int64(a), ctypes.c_int64(b), exc)
                   for a, b in chunks]
        for f in futures:
            f.result()
    if exc[0]:
        raise_device_exception("kernel", name, cpu["sites"], exc)


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
        raise TypeError(f"host function '{name}' is not in the bundle; rebuild with: "
                        f"gpuaot build {bundle.package}")
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
    bundle.symbol(entry["symbol"])(pointer_array(values), ctypes.byref(ret) if ret is not None
                                   else None, exc)
    if exc[0]:
        raise_device_exception("host function", name, entry["sites"], exc)
    return _from_ctypes(ret, ret_t)


def _ret_buffer(t):
    if t.name == "None":
        return None
    if hasattr(t, "items"):
        fields = [(f"f{k}", _CTYPES[i.name]) for k, i in enumerate(t.items)]
        return type("Ret", (ctypes.Structure,), {"_fields_": fields})()
    return _CTYPES[t.name]()


def _from_ctypes(ret, t):
    if ret is None:
        return None
    if hasattr(t, "items"):
        return tuple(i.np_dtype.type(getattr(ret, f"f{k}")) for k, i in enumerate(t.items))
    return t.np_dtype.type(ret.value)
