"""Pure-Python reference execution: ``kernel.simulate[grid, block](*args)``.

Runs the kernel's Python source once per thread, block by block, with the intrinsics reading
the simulated thread's indices. It is the oracle the compiled code is tested against, so it
stays plain CPython: numpy scalars carry the element types, ``math`` keeps f32 as f32 (as the
compiled code does), nothing else is rewritten.

Kernels that name ``syncthreads``, ``shared_array``, a shuffle or another block-wide intrinsic
(``intrinsics._block_wide``) run each block's threads as Python threads with a barrier; all
others run thread after thread.
"""

from __future__ import annotations

import cmath
import math
import threading
import types

import numpy as np

from . import intrinsics, simcmath
from .types import ArrayType, Scalar

_BARRIER_NAMES = {n for n, v in vars(intrinsics).items() if getattr(v, "block_wide", False)}
_COOPERATIVE = {"grid_sync", "this_grid"}  # a grid barrier: every block runs at once
_active = threading.local()


class _Block:
    def __init__(self, size: int, threaded: bool, nbytes: int = 0):
        self.size = size
        self.shared: list = []
        self.dynamic_shared = bytearray(nbytes)
        self.lock = threading.Lock()
        self.atomic_lock = _GLOBAL_ATOMIC_LOCK
        self.barrier = threading.Barrier(size) if threaded else None
        self.exchange = [None] * size if threaded else None
        self.warp_exchange = [None] * size if threaded else None
        self._warp_barriers: dict[tuple[int, int], threading.Barrier] = {}
        self.grid_barrier: threading.Barrier | None = None  # cooperative launches only

    def warp_barrier(self, base: int, mask: int) -> threading.Barrier:
        """The barrier of the lanes ``mask`` names in the warp starting at thread ``base``."""
        with self.lock:
            barrier = self._warp_barriers.get((base, mask))
            if barrier is None:
                barrier = threading.Barrier(bin(mask).count("1"))
                self._warp_barriers[(base, mask)] = barrier
            return barrier

    def abort(self) -> None:
        """A thread failed: release every thread waiting at one of the block's barriers."""
        self.barrier.abort()
        if self.grid_barrier is not None:
            self.grid_barrier.abort()
        with self.lock:
            for barrier in self._warp_barriers.values():
                barrier.abort()


_GLOBAL_ATOMIC_LOCK = threading.Lock()


def _dim3(v) -> tuple[int, int, int]:
    if isinstance(v, (int, np.integer)):
        return (int(v), 1, 1)
    v = tuple(int(x) for x in v)
    if not 1 <= len(v) <= 3:
        raise TypeError("grid and block take 1 to 3 dimensions")
    return v + (1,) * (3 - len(v))


# ------------------------------------------------------------------ f32-preserving math


def _narrow(args):
    """np.float32 or np.float16 where kernels compute ``args`` so: every argument is of that
    type, a narrower one, or a literal, and one is (f16 math computes in f32, rounded once
    to f16); else None."""
    if not args or not all(
        isinstance(a, (np.float32, np.float16))
        or (isinstance(a, (int, float)) and not isinstance(a, bool))
        for a in args
    ):
        return None
    if any(isinstance(a, np.float32) for a in args):
        return np.float32
    return np.float16 if any(isinstance(a, np.float16) for a in args) else None


def _keep_f32(fn):
    def wrapped(*args):
        narrow = _narrow(args)
        if narrow is np.float16:  # a float literal is an f16 constant there
            args = tuple(np.float16(a) if type(a) is float else a for a in args)
        result = fn(*(float(a) if isinstance(a, np.floating) else a for a in args))
        if isinstance(result, float) and narrow is not None:
            return np.float32(result) if narrow is np.float32 else np.float16(np.float32(result))
        return result

    wrapped.__name__ = fn.__name__
    return wrapped


# ``math`` as kernels see it: an f32 (f16) argument gives an f32 (f16) result.
_MATH, _MATH_FUNCS = simcmath.shim(math, _keep_f32, unwrapped=("isnan", "isinf", "isfinite"))
_shimmed: dict[int, types.FunctionType] = {}


def _shim(fn: types.FunctionType) -> types.FunctionType:
    """The same function, with ``math`` (and names imported from it) swapped for the shim."""
    cached = _shimmed.get(id(fn))
    if cached is not None and cached.__wrapped_code__ is fn.__code__:
        return cached
    g = dict(fn.__globals__)
    for k, v in fn.__globals__.items():
        if v is math:
            g[k] = _MATH
        elif id(v) in _MATH_FUNCS:
            g[k] = _MATH_FUNCS[id(v)]
        elif v is cmath:
            g[k] = simcmath.CMATH
        elif id(v) in simcmath.CMATH_FUNCS:
            g[k] = simcmath.CMATH_FUNCS[id(v)]
    new = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__wrapped_code__ = fn.__code__
    _shimmed[id(fn)] = new
    return new


def current_function(fn):
    """What a call to device function ``fn`` runs: the shimmed source under simulate."""
    return _shim(fn) if getattr(_active, "on", False) else fn


# ------------------------------------------------------------------ the launch


def _convert_args(kernel, args):
    fn = kernel.py_func
    params = fn.__code__.co_varnames[: fn.__code__.co_argcount]
    if len(args) != len(params):
        raise TypeError(f"{fn.__name__}() takes {len(params)} arguments, got {len(args)}")
    out = []
    for name, value in zip(params, args):
        ann = fn.__annotations__.get(name)
        if isinstance(ann, Scalar):
            value = ann(value)
        elif isinstance(ann, ArrayType):
            if not isinstance(value, np.ndarray):
                raise TypeError(f"simulate needs numpy arrays; '{name}' is {type(value).__name__}")
            if value.dtype != ann.dtype.np_dtype or value.ndim != ann.ndim:
                raise TypeError(
                    f"argument '{name}': expected {ann.name}, got {value.dtype}[{value.ndim}-D]"
                )
        out.append(value)
    return out


def simulate(kernel, config, args) -> None:
    grid, block = _dim3(config[0]), _dim3(config[1])
    nbytes = _shared_bytes(config)
    fn = _shim(kernel.py_func)
    threaded = bool(_BARRIER_NAMES & set(kernel.py_func.__code__.co_names))
    args = _convert_args(kernel, args)
    nthreads = block[0] * block[1] * block[2]
    was_on = getattr(_active, "on", False)
    _active.on = True
    try:
        if _COOPERATIVE & set(kernel.py_func.__code__.co_names):
            _run_grid_at_once(fn, args, grid, block, nbytes)
            return
        for bz in range(grid[2]):
            for by in range(grid[1]):
                for bx in range(grid[0]):
                    blk = _Block(nthreads, threaded, nbytes)
                    bid = (bx, by, bz)
                    if threaded:
                        _run_block_threaded(fn, args, bid, block, grid, blk)
                    else:
                        _run_block(fn, args, bid, block, grid, blk)
    finally:
        _active.on = was_on
        intrinsics.set_context(None)


def _shared_bytes(config) -> int:
    """The launch's fourth item: the bytes of dynamic shared memory (``kernel[g, b, s, n]``)."""
    return config[3] if len(config) == 4 else 0  # checked by the decorator's launch config


def _thread_indices(block):
    for tz in range(block[2]):
        for ty in range(block[1]):
            for tx in range(block[0]):
                yield (tx, ty, tz)


def _run_block(fn, args, bid, block, grid, blk) -> None:
    for tid in _thread_indices(block):
        intrinsics.set_context(intrinsics.SimContext(tid, bid, block, grid, blk))
        fn(*args)


def _run_grid_at_once(fn, args, grid, block, nbytes) -> None:
    """A kernel with a grid barrier: every block's threads at once, one barrier for all."""
    nthreads = block[0] * block[1] * block[2]
    everyone = threading.Barrier(nthreads * grid[0] * grid[1] * grid[2])
    blocks = []
    for bid in _thread_indices(grid):  # the same x-fastest order
        blk = _Block(nthreads, True, nbytes)
        blk.grid_barrier = everyone
        blocks.append((bid, blk))
    _run_threads(fn, args, block, grid, blocks)


def _run_block_threaded(fn, args, bid, block, grid, blk) -> None:
    _run_threads(fn, args, block, grid, [(bid, blk)])


def _run_threads(fn, args, block, grid, blocks) -> None:
    errors: list[BaseException] = []

    def body(tid, bid, blk):
        intrinsics.set_context(intrinsics.SimContext(tid, bid, block, grid, blk))
        _active.on = True
        try:
            fn(*args)
        except BaseException as e:  # re-raised in the launching thread
            errors.append(e)
            for _, other in blocks:
                other.abort()

    threads = [
        threading.Thread(target=body, args=(t, bid, blk))
        for bid, blk in blocks
        for t in _thread_indices(block)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if real or errors:
        raise (real or errors)[0]
