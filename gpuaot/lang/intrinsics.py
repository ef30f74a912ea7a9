"""GPU intrinsics as Python objects, meaningful inside ``kernel.simulate``.

    i = ga.grid(1)                       # block_idx.x * block_dim.x + thread_idx.x
    row, col = ga.grid(2)                # (x, y), as numba: row follows x

The compiler never calls these: it recognises them by name and gives them each target's meaning
(NVVM special registers on the GPU, loop indices on the CPU). Under ``simulate`` they read the
simulated thread's state from a thread-local context.
"""

from __future__ import annotations

import threading

import numpy as np

WARP_SIZE = 32

_state = threading.local()


class SimContext:
    """One simulated thread: its indices, and the block it shares memory and barriers with."""

    __slots__ = ("tid", "bid", "bdim", "gdim", "block", "shared_calls")

    def __init__(self, tid, bid, bdim, gdim, block):
        self.tid = tid
        self.bid = bid
        self.bdim = bdim
        self.gdim = gdim
        self.block = block
        self.shared_calls = 0


def _ctx() -> SimContext:
    ctx = getattr(_state, "ctx", None)
    if ctx is None:
        raise RuntimeError(
            "GPU intrinsics only have a meaning inside a kernel launch "
            "(kernel[grid, block](...) or kernel.simulate[grid, block](...))"
        )
    return ctx


def set_context(ctx: SimContext | None) -> None:
    _state.ctx = ctx


class _Dim3:
    __slots__ = ("_field",)

    def __init__(self, field: str):
        self._field = field

    @property
    def x(self):
        return np.int64(getattr(_ctx(), self._field)[0])

    @property
    def y(self):
        return np.int64(getattr(_ctx(), self._field)[1])

    @property
    def z(self):
        return np.int64(getattr(_ctx(), self._field)[2])


thread_idx = _Dim3("tid")
block_idx = _Dim3("bid")
block_dim = _Dim3("bdim")
grid_dim = _Dim3("gdim")


def grid(ndim: int):
    """The absolute thread index: an int for 1-D, a tuple (x, y[, z]) for 2-D and 3-D."""
    c = _ctx()
    idx = [np.int64(c.bid[k] * c.bdim[k] + c.tid[k]) for k in range(ndim)]
    return idx[0] if ndim == 1 else tuple(idx)


def grid_size(ndim: int):
    c = _ctx()
    size = [np.int64(c.gdim[k] * c.bdim[k]) for k in range(ndim)]
    return size[0] if ndim == 1 else tuple(size)


def syncthreads() -> None:
    block = _ctx().block
    if block.barrier is not None:
        block.barrier.wait()


def lane_id():
    c = _ctx()
    linear = c.tid[0] + c.bdim[0] * (c.tid[1] + c.bdim[1] * c.tid[2])
    return np.int64(linear % WARP_SIZE)


def shared_array(dtype, shape):
    """The n-th ``shared_array`` call of every thread in a block returns the same array."""
    c = _ctx()
    n = c.shared_calls
    c.shared_calls += 1
    with c.block.lock:
        arrays = c.block.shared
        if n == len(arrays):
            arrays.append(np.zeros(shape, dtype=dtype.np_dtype))
        return arrays[n]


def local_array(dtype, shape):
    return np.zeros(shape, dtype=dtype.np_dtype)


def _atomic(name: str, op):
    """A read-modify-write under the simulator's lock; returns the old value, as CUDA does."""

    def fn(array, index, value):
        with _ctx().block.atomic_lock:
            old = array[index]
            array[index] = op(old, value)
            return old

    fn.__name__ = fn.__qualname__ = f"atomic_{name}"
    return fn


atomic_add = _atomic("add", lambda old, v: old + v)
atomic_sub = _atomic("sub", lambda old, v: old - v)
atomic_min = _atomic("min", min)
atomic_max = _atomic("max", max)
atomic_exch = _atomic("exch", lambda old, v: v)


def atomic_cas(array, index, expected, value):
    with _ctx().block.atomic_lock:
        old = array[index]
        if old == expected:
            array[index] = value
        return old


def _shuffle(value, source_lane):
    """Warp exchange under simulate: every thread of the block posts, then reads a peer."""
    c = _ctx()
    block = c.block
    if block.barrier is None:
        raise RuntimeError("shuffles need the threaded simulator (the kernel must name them)")
    me = c.tid[0] + c.bdim[0] * (c.tid[1] + c.bdim[1] * c.tid[2])
    block.exchange[me] = value
    block.barrier.wait()
    warp_base = me - me % WARP_SIZE
    peer = warp_base + source_lane
    out = block.exchange[peer] if 0 <= source_lane < WARP_SIZE and peer < block.size else value
    block.barrier.wait()
    return out


def shfl_down(value, delta):
    lane = int(lane_id())
    src = lane + int(delta)
    return _shuffle(value, src if src < WARP_SIZE else lane)


def shfl_xor(value, mask):
    return _shuffle(value, int(lane_id()) ^ int(mask))


def _int_bits(name: str, x):
    """``x`` as (unsigned value, width, numpy type); a Python int is 64-bit, as in kernels."""
    t = np.asarray(x).dtype
    if t.kind not in "iu" or t.itemsize not in (4, 8):
        raise TypeError(f"{name}() takes a 32- or 64-bit integer, not {t}")
    width = t.itemsize * 8
    return int(x) & ((1 << width) - 1), width, t.type


def popc(x):
    """The number of set bits (numba-cuda's ``popc``); same type as ``x``."""
    u, _, t = _int_bits("popc", x)
    return t(bin(u).count("1"))


def brev(x):
    """``x``'s bits reversed, as the unsigned type of its width."""
    u, width, _ = _int_bits("brev", x)
    return (np.uint32 if width == 32 else np.uint64)(int(format(u, f"0{width}b")[::-1], 2))


def clz(x):
    """The number of leading zero bits; ``clz(0)`` is the width. Same type as ``x``."""
    u, width, t = _int_bits("clz", x)
    return t(width - u.bit_length())


def ffs(x):
    """The 1-based position of the least significant set bit, 0 for 0; a u32."""
    u, _, _ = _int_bits("ffs", x)
    return np.uint32((u & -u).bit_length())
