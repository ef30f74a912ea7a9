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
def shared_array(*args, **kw):
    """The n-th ``shared_array`` call of every thread in a block returns the same array."""
    dtype, shape = _alloc_order(*args, **kw)
    if shape == 0 or shape == (0,):
        return _dynamic_shared(dtype)
    c = _ctx()
    n = c.shared_calls
    c.shared_calls += 1
    with c.block.lock:
        arrays = c.block.shared
        if n == len(arrays):
            arrays.append(np.zeros(shape, dtype=dtype.np_dtype))
        return arrays[n]


def local_array(*args, **kw):
    dtype, shape = _alloc_order(*args, **kw)
    return np.zeros(shape, dtype=dtype.np_dtype)


def _alloc_order(*args, dtype=None, shape=None):
    """``(dtype, shape)`` from gpuaot's order, numba's ``(shape, dtype)`` or the keywords."""
    if len(args) == 2:
        dtype, shape = args
        return (shape, dtype) if hasattr(shape, "np_dtype") else (dtype, shape)
    if len(args) == 1:
        dtype, shape = (args[0], shape) if dtype is None else (dtype, args[0])
    if dtype is None or shape is None or len(args) > 2:
        raise TypeError("shared_array()/local_array() take (dtype, shape) or shape=, dtype=")
    return dtype, shape


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


def _f16_result(args) -> bool:
    """Kernels compute in f16 when every argument is f16 or a literal and one is f16."""
    return any(isinstance(a, np.float16) for a in args) and all(
        isinstance(a, np.float16) or type(a) in (int, float) for a in args
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
    """``a * b + c`` with one rounding, as the GPU's ``fma.rn`` and C's ``fma`` compute it.
    On f16 (and literals) it is f16 math: the f32 fma, rounded to f16."""
    if _f16_result((a, b, c)):
        return np.float16(fma(*(np.float32(np.float16(v)) for v in (a, b, c))))
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
    return np.cbrt(x) if isinstance(x, (np.float32, np.float16)) else np.cbrt(np.float64(x))


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


# ------------------------------------------------------------------ dynamic shared memory


def _dynamic_shared(dtype):
    """``shared_array(dtype, 0)``: the launch's ``nbytes`` of dynamic shared memory, one
    buffer per block that every such array views (CUDA's ``extern __shared__``)."""
    buf = _ctx().block.dynamic_shared
    n = len(buf) // dtype.np_dtype.itemsize
    return np.frombuffer(buf, dtype=dtype.np_dtype, count=n)


# ------------------------------------------------------------------ the *_sync warp family
#
# Each call meets the other lanes of its member mask at a barrier of those lanes (the block
# keeps one per warp and mask), so the results are exact for any mask CUDA allows: every lane
# the mask names calls with that same mask. A lane the mask leaves out, or a shuffle reading
# one, is undefined in CUDA and an error here. Lanes past the end of a partial last warp are
# dropped from the mask, as the hardware has no such threads.

_FULL = 0xFFFFFFFF


def _warp_meet(name: str, mask, value):
    """Posts ``value``; returns (my lane, the effective mask, {lane: value} of its lanes)."""
    c = _ctx()
    block = c.block
    if block.barrier is None:  # pragma: no cover - simulate threads kernels that name these
        raise RuntimeError(f"{name}() needs the threaded simulator (the kernel must name it)")
    me = c.tid[0] + c.bdim[0] * (c.tid[1] + c.bdim[1] * c.tid[2])
    lane = me % WARP_SIZE
    base = me - lane
    present = (1 << min(WARP_SIZE, block.size - base)) - 1
    m = int(mask) & _FULL & present
    if not m >> lane & 1:
        raise RuntimeError(
            f"{name}(): lane {lane} calls it with member mask {int(mask) & _FULL:#010x}, "
            "which leaves that lane out (undefined in CUDA)"
        )
    barrier = block.warp_barrier(base, m)
    block.warp_exchange[me] = value
    barrier.wait()
    values = {k: block.warp_exchange[base + k] for k in range(WARP_SIZE) if m >> k & 1}
    barrier.wait()
    return lane, m, values


@_block_wide
def syncwarp(mask=_FULL) -> None:
    _warp_meet("syncwarp", mask, None)


def _shfl_sync(name: str, source):
    @_block_wide
    def fn(mask, value, arg):
        lane, m, values = _warp_meet(name, mask, value)
        src = source(lane, int(arg) & _FULL)
        if src is None or (src not in values and int(mask) >> src & 1):
            return value  # out of the warp (PTX's clamp), or a lane past the block's end
        if src not in values:
            raise RuntimeError(
                f"{name}(): lane {lane} reads lane {src}, which member mask "
                f"{int(mask) & _FULL:#010x} leaves out (undefined in CUDA)"
            )
        return values[src]

    fn.__name__ = fn.__qualname__ = name
    return fn


# The source lane as PTX's shfl.sync computes it (c = 0x1f, or 0 for up); None: keep my own.
shfl_sync = _shfl_sync("shfl_sync", lambda lane, b: b & 0x1F)
shfl_up_sync = _shfl_sync("shfl_up_sync", lambda lane, b: lane - b if lane >= b else None)
shfl_down_sync = _shfl_sync("shfl_down_sync", lambda lane, b: lane + b if lane + b < 32 else None)
shfl_xor_sync = _shfl_sync("shfl_xor_sync", lambda lane, b: lane ^ b if lane ^ b < 32 else None)


def _vote_sync(name: str, combine):
    @_block_wide
    def fn(mask, predicate):
        _, _, values = _warp_meet(name, mask, bool(predicate))
        return combine(values)

    fn.__name__ = fn.__qualname__ = name
    return fn


ballot_sync = _vote_sync("ballot_sync", lambda v: np.uint32(sum(1 << k for k, p in v.items() if p)))
all_sync = _vote_sync("all_sync", lambda v: all(v.values()))
any_sync = _vote_sync("any_sync", lambda v: any(v.values()))
eq_sync = _vote_sync("eq_sync", lambda v: len(set(v.values())) == 1)


def _bits(value):
    """``value``'s bit pattern (matches compare bits: -0.0 and 0.0 differ, a NaN is itself)."""
    a = np.asarray(value)
    if a.dtype.kind == "f":
        return a.view(np.uint32 if a.dtype.itemsize == 4 else np.uint64).item()
    return int(a)


@_block_wide
def match_any_sync(mask, value):
    """The lanes of the mask whose ``value`` has the same bits as mine, as a u32."""
    mine = _bits(value)
    _, _, values = _warp_meet("match_any_sync", mask, mine)
    return np.uint32(sum(1 << k for k, v in values.items() if v == mine))


@_block_wide
def match_all_sync(mask, value):
    """(the mask, True) when every lane of the mask has the same bits, else (0, False)."""
    _, m, values = _warp_meet("match_all_sync", mask, _bits(value))
    same = len(set(values.values())) == 1
    return (np.uint32(m if same else 0), same)


def lanemask_lt():
    """The lanes below mine, as a u32."""
    return np.uint32((1 << int(lane_id())) - 1)


def activemask():
    raise RuntimeError(
        "activemask() has no simulate meaning: simulate's threads do not run in lock-step, so "
        "which lanes are converged at a call is not known; launch the kernel on a GPU"
    )


# ------------------------------------------------------------------ the grid barrier


@_block_wide
def grid_sync() -> None:
    """Every thread of the grid waits here: simulate runs the blocks of a kernel that names
    it at once, with one barrier for all their threads."""
    _ctx().block.grid_barrier.wait()


class _GridGroup:
    """What ``this_grid()`` returns: cooperative groups' grid, of which ``sync()`` is known."""

    __slots__ = ()

    def sync(self) -> None:
        grid_sync()


@_block_wide
def this_grid() -> _GridGroup:
    return _GridGroup()
