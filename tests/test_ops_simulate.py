"""The simulate meanings of the added ops against oracles nobody here wrote: C's fma/fmaf
(glibc, correctly rounded) through ctypes for ``ga.fma``, numpy for ``cbrt`` and ``selp``,
and CUDA's documented formulas for the wrapping atomics.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math

import numpy as np
import pytest

from gpuaot.lang import intrinsics

LIBM = ctypes.CDLL(ctypes.util.find_library("m"))
LIBM.fmaf.restype = ctypes.c_float
LIBM.fmaf.argtypes = [ctypes.c_float] * 3
LIBM.fma.restype = ctypes.c_double
LIBM.fma.argtypes = [ctypes.c_double] * 3


def _same(got, want) -> bool:
    return (math.isnan(got) and math.isnan(want)) or (
        got == want and math.copysign(1, got) == math.copysign(1, want)
    )


def _f32_cases():
    rng = np.random.default_rng(7)
    x = rng.uniform(-8, 8, 4000).astype(np.float32)
    y = rng.uniform(-8, 8, 4000).astype(np.float32)
    z = np.where(rng.random(4000) < 0.5, -(x * y), rng.uniform(-1, 1, 4000)).astype(np.float32)
    cases = list(zip(x, y, z))
    f = np.float32
    cases += [
        (f(1 + 2**-12), f(1 + 2**-12), f(2.0**-80)),  # double rounding would round down
        (f(1 + 2**-12), f(1 + 2**-12), f(-(2.0**-80))),
        (f(2.0**-70), f(2.0**-70), f(0.0)),  # underflows to a subnormal
        (f(2.0**-75), f(2.0**-76), f(0.0)),  # to zero
        (f(3e38), f(10.0), f(-1e38)),  # overflows
        (f(-0.0), f(1.0), f(0.0)),  # exact zeros: IEEE signs
        (f(-0.0), f(1.0), f(-0.0)),
        (f(2.0), f(3.0), f(-6.0)),  # an exact zero from non-zero terms is +0
        (f(np.inf), f(0.0), f(1.0)),  # NaN
        (f(np.inf), f(1.0), f(-np.inf)),
    ]
    return cases


def test_fma_f32_rounds_once_like_fmaf():
    bad = []
    with np.errstate(all="ignore"):
        for a, b, c in _f32_cases():
            got = intrinsics.fma(a, b, c)
            want = LIBM.fmaf(float(a), float(b), float(c))
            assert type(got) is np.float32
            if not _same(float(got), want):
                bad.append((a, b, c, got, want))
    assert not bad, bad[:5]


def test_fma_f64_rounds_once_like_fma():
    rng = np.random.default_rng(8)
    a = rng.uniform(-1e3, 1e3, 3000)
    cases = [(v, v, -(v * v)) for v in a] + [
        (1e308, 10.0, -1e308),
        (2.0**-600, 2.0**-500, 0.0),
        (-0.0, 5.0, 0.0),
        (1.5, 2.0, 3),  # an int literal: f64
    ]
    for x, y, z in cases:
        got = intrinsics.fma(x, y, z)
        assert type(got) is np.float64
        assert _same(float(got), LIBM.fma(x, y, z)), (x, y, z)
    # f32 mixed with an f64 computes in f64, as the kernel's typing says.
    assert type(intrinsics.fma(np.float32(1.5), 2.0, np.float64(1.0))) is np.float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cbrt_keeps_f32_and_matches_numpy(dtype):
    x = np.linspace(-30, 30, 101).astype(dtype)
    got = [intrinsics.cbrt(v) for v in x]
    assert all(type(g) is dtype for g in got)
    np.testing.assert_array_equal(np.array(got), np.cbrt(x))
    assert type(intrinsics.cbrt(8)) is np.float64


def test_selp_picks_without_converting():
    assert intrinsics.selp(True, np.int32(3), 2.5) == 3
    assert intrinsics.selp(0, np.int32(3), 2.5) == 2.5


class _Ctx:
    """Enough of a simulated thread for the atomics: a block with the atomic lock."""

    class block:  # noqa: N801
        import threading

        atomic_lock = threading.Lock()


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_inc_dec_wrap_as_cuda_documents(dtype):
    intrinsics.set_context(_Ctx())
    try:
        a = np.zeros(1, dtype)
        seen = []
        for _ in range(12):
            seen.append(int(intrinsics.atomic_inc(a, 0, dtype(4))))
        assert seen == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1] and a[0] == 2
        a[0] = 7  # above the limit: dec resets to it
        seen = [int(intrinsics.atomic_dec(a, 0, dtype(4))) for _ in range(7)]
        assert seen == [7, 4, 3, 2, 1, 0, 4] and a[0] == 3
        top = np.iinfo(dtype).max
        a[0] = top
        assert intrinsics.atomic_inc(a, 0, dtype(top)) == top and a[0] == 0
    finally:
        intrinsics.set_context(None)


def test_nanmin_nanmax_skip_nan():
    intrinsics.set_context(_Ctx())
    try:
        a = np.array([np.nan, 1.0], np.float32)
        intrinsics.atomic_nanmin(a, 0, np.float32(3.0))
        intrinsics.atomic_nanmin(a, 0, np.float32(np.nan))
        intrinsics.atomic_nanmax(a, 1, np.float32(np.nan))
        intrinsics.atomic_nanmax(a, 1, np.float32(-2.0))
        assert a.tolist() == [3.0, 1.0]
    finally:
        intrinsics.set_context(None)
