"""Random numbers in kernels: xoroshiro128+, one generator per thread, as numba-cuda's.

    from gpuaot.random import create_xoroshiro128p_states, xoroshiro128p_uniform_float32

    @ga.kernel
    def draw(states: Array[u64, 2], out: Array[f32]):
        i = ga.grid(1)
        if i < out.shape[0]:
            out[i] = xoroshiro128p_uniform_float32(states, i)

    states = create_xoroshiro128p_states(n, seed=1)     # numpy only: (n, 2) uint64
    draw[blocks, threads](states, out)                  # CPU backend, simulate or GPU

A state is one row of a ``uint64`` array of shape ``(n, 2)``: ``states[i, 0]`` is numba-cuda's
``s0``, ``states[i, 1]`` its ``s1`` (the same bytes as numba's aligned structured array, so
``numba_states.view(np.uint64).reshape(-1, 2)`` converts). The device functions below are
written in the kernel language: the build parses this file (it is one of the library modules
discovery knows) and compiles them into the calling package like any ``@device`` helper, and
under ``simulate`` or from plain Python they run as they read. Every step is integer
arithmetic, or one conversion rounded once, so the raw stream and the uniform draws are the
same bits on every target; the normal draws go through ``log``/``cos``/``sqrt`` and agree to
the last bits the targets' math libraries agree to.

The host side (:func:`create_xoroshiro128p_states`) gives the states numba-cuda's
``init_xoroshiro128p_states`` gives: splitmix64 of the seed in both words, then each thread
2**64 steps after the one before. A jump is linear over GF(2), so thread i's state is J**i of
thread 0's; the powers J**(2**k) are kept as byte tables and applied to whole blocks of states
with numpy (state ``[m:2m]`` is J**m of ``[0:m]``), so a million states take a few tenths of a
second and need no compiler.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from .lang.decorators import device
from .lang.types import f32, f64, u64

# The jump polynomial of xoroshiro128+ (Blackman and Vigna): 2**64 steps of next().
_JUMP_LO = 0xBEAC0467EBA5FACB
_JUMP_HI = 0xD86B048B86AA9922
_TWO_POW_M53 = 1.0 / 9007199254740992.0
_TWO_PI = 2 * math.pi
_MASK64 = (1 << 64) - 1

# ---------------------------------------------------------------------- device functions


@device
def _add64(a, b):
    # A wrapping u64 add. Through int (i64 in kernels, a Python int in plain Python), so
    # simulate's numpy scalars never warn about the wrap; the casts cost nothing compiled.
    return u64(int(a) + int(b))


@device
def _rotl(x, k):
    return (x << k) | (x >> (64 - k))


@device
def xoroshiro128p_next(states, index):
    """The next u64 of ``states[index]``'s stream; advances that state one step."""
    s0 = states[index, 0]
    s1 = states[index, 1]
    result = _add64(s0, s1)
    s1 ^= s0
    states[index, 0] = _rotl(s0, 55) ^ s1 ^ (s1 << 14)
    states[index, 1] = _rotl(s1, 36)
    return result


@device
def xoroshiro128p_jump(states, index):
    """Advance ``states[index]`` by 2**64 steps (what separates two threads' states)."""
    s0 = u64(0)
    s1 = u64(0)
    for w in range(2):
        word = u64(_JUMP_LO) if w == 0 else u64(_JUMP_HI)
        for b in range(64):
            if (word >> b) & 1:
                s0 ^= states[index, 0]
                s1 ^= states[index, 1]
            xoroshiro128p_next(states, index)
    states[index, 0] = s0
    states[index, 1] = s1


@device
def xoroshiro128p_uniform_float64(states, index):
    """An f64 in [0, 1): the top 53 bits of the next u64, times 2**-53 (exact)."""
    return f64(xoroshiro128p_next(states, index) >> 11) * _TWO_POW_M53


@device
def xoroshiro128p_uniform_float32(states, index):
    """The f64 draw rounded to f32, as numba-cuda: [0, 1], 1.0 with probability 2**-25."""
    return f32(xoroshiro128p_uniform_float64(states, index))


@device
def _box_muller(u1, angle):
    # In f64 whatever the result type, so the CPU backend and simulate (both the C library's
    # log and cos on doubles) agree to the bit, and the GPU's libdevice almost always does.
    return math.sqrt(-2.0 * math.log(f64(u1))) * math.cos(angle)


@device
def xoroshiro128p_normal_float32(states, index):
    """A standard normal f32 by Box-Muller over two f32 uniforms (two steps; sin discarded)."""
    u1 = xoroshiro128p_uniform_float32(states, index)
    u2 = xoroshiro128p_uniform_float32(states, index)
    return f32(_box_muller(u1, f64(f32(_TWO_PI) * u2)))


@device
def xoroshiro128p_normal_float64(states, index):
    """A standard normal f64, from two f32 uniforms as numba-cuda's (two steps)."""
    u1 = xoroshiro128p_uniform_float32(states, index)
    u2 = xoroshiro128p_uniform_float32(states, index)
    return _box_muller(u1, _TWO_PI * f64(u2))


# ---------------------------------------------------------------------- host: seeding


def create_xoroshiro128p_states(n, seed, subsequence_start=0) -> np.ndarray:
    """A new ``(n, 2)`` uint64 array of ``n`` generators' states (numba-cuda's states).

    Thread i's generator starts ``(subsequence_start + i) * 2**64`` steps into the stream of
    ``seed``; copy the array to the GPU (``cupy.asarray(states)``) to launch there.
    """
    n = _count(n)
    states = np.empty((n, 2), dtype=np.uint64)
    init_xoroshiro128p_states(states, seed, subsequence_start)
    return states


def init_xoroshiro128p_states(states, seed, subsequence_start=0) -> None:
    """Fill an existing ``(n, 2)`` uint64 numpy array as :func:`create_xoroshiro128p_states`."""
    if not isinstance(states, np.ndarray):
        raise TypeError(
            f"states must be a numpy array, not {type(states).__name__}: fill one on the host "
            "and copy it to the device"
        )
    if states.dtype != np.uint64 or states.ndim != 2 or states.shape[1] != 2:
        raise TypeError(
            f"states must be a uint64 array of shape (n, 2), not {states.dtype} {states.shape}"
        )
    seed = _as_u64(seed, "seed")
    start = _as_u64(subsequence_start, "subsequence_start")
    n = states.shape[0]
    if n == 0:
        return
    out = np.empty((n, 2), dtype=np.uint64)
    out[0] = splitmix64(seed)
    for k in range(start.bit_length()):
        if start >> k & 1:
            out[:1] = _Jumps.power(k).apply(out[:1])
    done, k = 1, 0
    while done < n:
        m = min(done, n - done)
        out[done : done + m] = _Jumps.power(k).apply(out[:m])
        done += m
        k += 1
    states[...] = out


def splitmix64(seed: int) -> tuple[int, int]:
    """The first state of ``seed``: one splitmix64 output in both words (numba-cuda's)."""
    z = (seed + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    return z, z


def _count(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an integer, not {type(n).__name__}")
    if n < 0:
        raise ValueError(f"n must be 0 or more, not {n}")
    return int(n)


def _as_u64(value, name: str) -> int:
    """An integer as numba's ``uint64(value)`` takes it: a negative one wraps."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}")
    value = int(value)
    if not -(1 << 63) <= value <= _MASK64 or (name != "seed" and value < 0):
        low = "-2**63" if name == "seed" else "0"
        raise ValueError(f"{name} must be in [{low}, 2**64), not {value}")
    return value & _MASK64


# ---------------------------------------------------------------------- host: GF(2) jumps


def _next_int(s0: int, s1: int) -> tuple[int, int]:
    """One step of the state, on Python ints (the host's own copy of next(), for J)."""
    s1 ^= s0
    s0 = ((s0 << 55 | s0 >> 9) & _MASK64) ^ s1 ^ ((s1 << 14) & _MASK64)
    return s0, (s1 << 36 | s1 >> 28) & _MASK64


def _jump_int(s0: int, s1: int) -> tuple[int, int]:
    j0 = j1 = 0
    for word in (_JUMP_LO, _JUMP_HI):
        for b in range(64):
            if word >> b & 1:
                j0 ^= s0
                j1 ^= s1
            s0, s1 = _next_int(s0, s1)
    return j0, j1


class BitMatrix:
    """A linear map of 128-bit states over GF(2): ``columns[g]`` is the image of bit g.

    Bit g is bit g of ``s0`` for g < 64, bit g - 64 of ``s1`` above. ``apply`` looks up each
    of a state's 16 bytes in a 256-entry table of the XORs of that byte's 8 columns.
    """

    def __init__(self, columns: np.ndarray):
        self.columns = columns  # (128, 2) uint64
        tables = np.zeros((16, 256, 2), dtype=np.uint64)
        by_byte = columns.reshape(16, 8, 2)
        for j in range(8):
            tables[:, 1 << j : 2 << j] = tables[:, : 1 << j] ^ by_byte[:, j, None, :]
        self.tables = tables

    def apply(self, states: np.ndarray) -> np.ndarray:
        """The map applied to each row of an ``(m, 2)`` uint64 array."""
        states = np.ascontiguousarray(states, dtype="<u8")
        # Byte p of every state in one contiguous row: np.take then gathers at full speed.
        octets = np.ascontiguousarray(states.view(np.uint8).reshape(len(states), 16).T)
        out = np.take(self.tables[0], octets[0], axis=0)
        for p in range(1, 16):
            out ^= np.take(self.tables[p], octets[p], axis=0)
        return out.astype(np.uint64, copy=False)

    def squared(self) -> BitMatrix:
        return BitMatrix(self.apply(self.columns))


class _Jumps:
    """J**(2**k) for k = 0, 1, …, made on first use (J from 128 jumps of unit states)."""

    _powers: list[BitMatrix] = []
    _lock = threading.Lock()

    @classmethod
    def power(cls, k: int) -> BitMatrix:
        with cls._lock:
            if not cls._powers:
                units = [(1 << g, 0) if g < 64 else (0, 1 << (g - 64)) for g in range(128)]
                cols = np.array([_jump_int(*u) for u in units], dtype=np.uint64)
                cls._powers.append(BitMatrix(cols))
            while len(cls._powers) <= k:
                cls._powers.append(cls._powers[-1].squared())
            return cls._powers[k]


def jump_matrix(k: int = 0) -> BitMatrix:
    """J**(2**k) as a :class:`BitMatrix` (J: 2**64 steps of next())."""
    return _Jumps.power(k)
