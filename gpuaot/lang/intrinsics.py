"""GPU intrinsics as Python objects, meaningful inside ``kernel.simulate``.

    i = ga.grid(1)                       # block_idx.x * block_dim.x + thread_idx.x
    row, col = ga.grid(2)                # (x, y), as numba: row follows x

The compiler never calls these: it recognises them by name and gives them each target's meaning
(NVVM special registers on the GPU, loop indices on the CPU). Under ``simulate`` they read the
simulated thread's state from a thread-local context.
"""

from __future__ import annotations

import math
import threading
from fractions import Fraction

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


def _block_wide(fn):
    """Marks an intrinsic every thread of a block takes part in: ``simulate`` runs a kernel
    that names one with a thread per simulated thread and a barrier."""
    fn.block_wide = True
    return fn


@_block_wide
def syncthreads() -> None:
    block = _ctx().block
    if block.barrier is not None:
        block.barrier.wait()


def lane_id():
    c = _ctx()
    linear = c.tid[0] + c.bdim[0] * (c.tid[1] + c.bdim[1] * c.tid[2])
    return np.int64(linear % WARP_SIZE)


@_block_wide
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


@_block_wide
def shfl_down(value, delta):
    lane = int(lane_id())
    src = lane + int(delta)
    return _shuffle(value, src if src < WARP_SIZE else lane)


@_block_wide
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


# ------------------------------------------------------------------ math-like and selection


def _f32_result(args) -> bool:
    """Kernels compute in f32 when every argument is f32 or a literal and one is f32."""
    # type(), not isinstance: np.float64 is a float subclass, and bool an int one.
    return any(isinstance(a, np.float32) for a in args) and all(
        isinstance(a, np.float32) or type(a) in (int, float) for a in args
    )


def _round_to_f32(q: Fraction) -> np.float32:
    """``q`` rounded once, to nearest even, to float32 (subnormals and overflow included)."""
    sign = -1 if q < 0 else 1
    q = abs(q)
    # The exponent e with 2**e <= q < 2**(e+1), then 24 significant bits (fewer below 2**-126).
    e = q.numerator.bit_length() - q.denominator.bit_length()
    if Fraction(2) ** e > q:
        e -= 1
    shift = 23 - max(e, -126)
    scaled = q * Fraction(2) ** shift
    n, rem = divmod(scaled.numerator, scaled.denominator)
    twice = 2 * rem
    if twice > scaled.denominator or (twice == scaled.denominator and n % 2):
        n += 1
    with np.errstate(over="ignore"):
        return np.float32(sign * math.ldexp(float(n), -shift) if n < 2**25 else sign * math.inf)


def fma(a, b, c):
    """``a * b + c`` with one rounding, as the GPU's ``fma.rn`` and C's ``fma`` compute it."""
    f32 = _f32_result((a, b, c))
    x, y, z = (float(v) for v in (a, b, c))
    if not all(math.isfinite(v) for v in (x, y, z)):
        r = x * y + z  # inf and NaN: no rounding to get wrong
        return np.float32(r) if f32 else np.float64(r)
    q = Fraction(x) * Fraction(y) + Fraction(z)
    if q == 0:  # an exact zero: its sign is the IEEE sum's of the (exact) product and c
        r = (x * y + z) if x == 0 or y == 0 else 0.0
        return np.float32(r) if f32 else np.float64(r)
    if f32:
        return _round_to_f32(q)
    try:
        return np.float64(float(q))  # int / int: correctly rounded
    except OverflowError:
        return np.float64(math.inf if q > 0 else -math.inf)


def cbrt(x):
    """The real cube root; f32 stays f32, everything else is f64."""
    return np.cbrt(x) if isinstance(x, np.float32) else np.cbrt(np.float64(x))


def selp(cond, a, b):
    """``a`` if ``cond`` else ``b``; both are evaluated (PTX's ``selp``)."""
    return a if cond else b


# ------------------------------------------------------------------ more atomics


atomic_and = _atomic("and", lambda old, v: old & v)
atomic_or = _atomic("or", lambda old, v: old | v)
atomic_xor = _atomic("xor", lambda old, v: old ^ v)
atomic_inc = _atomic("inc", lambda old, v: type(old)(0 if old >= v else old + 1))
atomic_dec = _atomic("dec", lambda old, v: type(old)(v if old == 0 or old > v else old - 1))
atomic_nanmin = _atomic(
    "nanmin", lambda old, v: v if np.isnan(old) else old if np.isnan(v) else min(old, v)
)
atomic_nanmax = _atomic(
    "nanmax", lambda old, v: v if np.isnan(old) else old if np.isnan(v) else max(old, v)
)


# ------------------------------------------------------------------ fences and block votes


def threadfence() -> None:
    """Order this thread's memory accesses for the device: the simulator's threads see each
    other's writes at once (one interpreter), so there is nothing left to order."""


threadfence_block = threadfence_system = threadfence


def _block_vote(name: str, combine):
    @_block_wide
    def fn(predicate):
        c = _ctx()
        block = c.block
        me = c.tid[0] + c.bdim[0] * (c.tid[1] + c.bdim[1] * c.tid[2])
        block.exchange[me] = bool(predicate)
        block.barrier.wait()
        out = np.int32(combine(block.exchange))
        block.barrier.wait()
        return out

    fn.__name__ = fn.__qualname__ = name
    return fn


syncthreads_count = _block_vote("syncthreads_count", sum)
syncthreads_and = _block_vote("syncthreads_and", all)
syncthreads_or = _block_vote("syncthreads_or", any)
