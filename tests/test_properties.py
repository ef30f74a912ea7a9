"""Differential properties: compiled (CPU backend) against ``simulate`` (CPython), with random
sizes (0, 1, non-multiples of the block size, more than one launch chunk) and random values
(extremes for floor division, modulo and wrap-around; NaN, infinities and signed zeros).

Where an oracle needs no numpy promotion rule, Python's own integers are checked too.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_conformance import (
    GUARD_ORACLES,
    assert_fma_close,
    fma_atol,
    guard_2d_expected,
    guard_expected,
)

i8, i32, i64, u8 = np.int8, np.int32, np.int64, np.uint8
f32, f64 = np.float32, np.float64

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def pkg(built):
    return built("conformance").module


def ints(dtype):
    info = np.iinfo(dtype)
    edges = [
        e
        for e in (info.min, info.min + 1, -1, 0, 1, info.max - 1, info.max)
        if info.min <= e <= info.max
    ]
    return st.one_of(st.sampled_from(edges), st.integers(info.min, info.max))


def arrays(dtype, n, elements):
    return st.lists(elements, min_size=n, max_size=n).map(lambda v: np.array(v, dtype=dtype))


@st.composite
def launch(draw, n):
    """A 1-D launch covering n threads: any block size, sometimes more blocks than needed."""
    block = draw(st.sampled_from([1, 3, 32, 64, 128]))
    grid = max(1, -(-n // block)) + draw(st.integers(0, 2))
    return grid, block


def wrap(v: int, bits: int, signed: bool = True) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if signed and v >= 1 << (bits - 1) else v


def differential(kernel, config, args, fused: dict | None = None) -> list:
    """Run compiled and simulated on copies; every array argument must end up identical.

    ``fused``: ``{argument index: (index, atol)}``, the elements of that argument where the
    kernel has an ``a*b+c`` shape, which FMA contraction (the default; simulate never fuses)
    may move by up to ``atol`` (:func:`test_conformance.fma_atol`); the rest stay identical.
    """
    compiled = copy.deepcopy(args)
    simulated = copy.deepcopy(args)
    with np.errstate(all="ignore"):
        kernel[config](*compiled)
        kernel.simulate[config](*simulated)
    rest = list(compiled)
    for k, (where, atol) in (fused or {}).items():
        assert_fma_close(compiled[k][where], simulated[k][where], atol, err_msg=f"argument {k}")
        rest[k] = compiled[k].copy()
        rest[k][where] = simulated[k][where]  # checked: the identity below covers the rest
    for k, (c, s) in enumerate(zip(rest, simulated)):
        if isinstance(c, np.ndarray):
            np.testing.assert_array_equal(c, s, err_msg=f"argument {k}", strict=True)
            if c.dtype.kind == "f":  # exact: -0.0 is not 0.0 (a NaN's sign means nothing)
                num = ~np.isnan(c)
                np.testing.assert_array_equal(
                    np.signbit(c[num]), np.signbit(s[num]), err_msg=f"sign {k}"
                )
    return compiled


sizes = st.integers(0, 150)


@SETTINGS
@given(data=st.data(), n=sizes)
@example(data=None, n=0)
@example(data=None, n=1)
def test_int64_arithmetic(pkg, data, n):
    if data is None:  # the explicit examples: fixed small inputs
        a, b, config = np.full(n, -7, i64), np.full(n, 2, i64), (1, 32)
    else:
        a = data.draw(arrays(i64, n, ints(i64)))
        b = data.draw(arrays(i64, n, ints(i64).filter(bool)))
        config = data.draw(launch(n))
    out = differential(pkg.int_ops, config, [a, b, np.zeros((10, n), i64)])[2]
    for k, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
        assert out[3, k] == wrap(x // y, 64) and out[4, k] == wrap(x % y, 64)
        assert out[2, k] == wrap(x * y, 64) and out[0, k] == wrap(x + y, 64)
        assert out[7, k] == wrap(x**3, 64)


@SETTINGS
@given(data=st.data(), n=sizes)
def test_int32_arithmetic(pkg, data, n):
    a = data.draw(arrays(i32, n, ints(i32)))
    b = data.draw(arrays(i32, n, ints(i32).filter(bool)))
    out = differential(pkg.i32_ops, data.draw(launch(n)), [a, b, np.zeros((9, n), i32)])[2]
    for k, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
        assert out[3, k] == wrap(x // y, 32) and out[4, k] == wrap(x % y, 32)
        assert out[6, k] == wrap(x * 65537, 32) and out[7, k] == wrap(x + 2**31 - 1, 32)


@SETTINGS
@given(data=st.data(), n=sizes)
def test_small_int_wrap(pkg, data, n):
    a = data.draw(arrays(u8, n, ints(u8)))
    b = data.draw(arrays(u8, n, ints(u8).filter(bool)))
    c = data.draw(arrays(i8, n, ints(i8)))
    out = differential(
        pkg.small_int_wrap,
        data.draw(launch(n)),
        [a, b, c, np.zeros((7, n), u8), np.zeros((6, n), i8)],
    )
    for k, (x, y, z) in enumerate(zip(a.tolist(), b.tolist(), c.tolist())):
        assert out[3][2, k] == wrap(x * y, 8, False)
        assert out[4][3, k] == wrap(z // 3, 8) and out[4][4, k] == wrap(z % -3, 8)


def floats(dtype):
    width = 32 if dtype is f32 else 64
    return st.one_of(
        st.sampled_from([0.0, -0.0, 1.0, -1.0, math.inf, -math.inf, math.nan]),
        st.floats(width=width, allow_subnormal=True),
    )


@pytest.mark.parametrize("dtype", [f32, f64], ids=["f32", "f64"])
@SETTINGS
@given(data=st.data(), n=sizes)
def test_float_arithmetic(pkg, dtype, data, n):
    a = data.draw(arrays(dtype, n, floats(dtype)))
    b = data.draw(arrays(dtype, n, floats(dtype)))
    kernel = pkg.f32_ops if dtype is f32 else pkg.f64_ops
    with np.errstate(all="ignore"):
        row7 = fma_atol([a * b], a * b + a if dtype is f32 else a * b - b)  # x*y+x, x*y-y
    fused = {2: (7, row7)}
    out = differential(kernel, data.draw(launch(n)), [a, b, np.zeros((8, n), dtype)], fused)[2]
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(out[:4], np.stack([a + b, a - b, a * b, a / b]))


@SETTINGS
@given(data=st.data(), n=sizes)
def test_bitwise_and_shifts(pkg, data, n):
    a = data.draw(arrays(i64, n, ints(i64)))
    b = data.draw(arrays(i64, n, ints(i64)))
    s = data.draw(arrays(i64, n, st.integers(0, 130)))
    out = differential(pkg.bitwise, data.draw(launch(n)), [a, b, s, np.zeros((8, n), i64)])[3]
    for k, (x, y) in enumerate(zip(a.tolist(), s.tolist())):
        assert out[4, k] == wrap(x << y, 64) and out[5, k] == x >> y


@SETTINGS
@given(data=st.data(), n=sizes)
def test_narrow_shifts(pkg, data, n):
    args = [
        data.draw(arrays(np.uint32, n, ints(np.uint32))),
        data.draw(arrays(np.uint32, n, st.integers(0, 40))),
        data.draw(arrays(i32, n, ints(i32))),
        data.draw(arrays(i32, n, st.integers(0, 40))),
        np.zeros((3, n), np.uint32),
        np.zeros((3, n), i32),
        np.zeros((3, n), bool),
    ]
    differential(pkg.shifts_narrow, data.draw(launch(n)), args)


@SETTINGS
@given(data=st.data(), n=sizes)
def test_casts(pkg, data, n):
    x = data.draw(arrays(f64, n, st.floats(-(2.0**60), 2.0**60, allow_nan=False)))
    m = data.draw(arrays(i64, n, ints(i64)))
    out = differential(
        pkg.casts,
        data.draw(launch(n)),
        [x, m, np.zeros(n, f32), np.zeros((12, n), i64), np.zeros((3, n), bool)],
    )
    for k, (v, w) in enumerate(zip(x.tolist(), m.tolist())):
        assert out[3][0, k] == int(v)
        assert out[3][9, k] == wrap(int(v), 8, False) and out[3][10, k] == wrap(int(v), 8)
        assert out[3][1, k] == wrap(w, 8) and out[3][5, k] == wrap(w, 32)


@SETTINGS
@given(data=st.data(), n=sizes)
def test_comparisons_and_logic(pkg, data, n):
    small = st.integers(-12, 12)
    a = data.draw(arrays(i64, n, small))
    b = data.draw(arrays(i64, n, small))
    c = data.draw(arrays(f64, n, st.one_of(st.just(math.nan), st.floats(-12, 12))))
    config = data.draw(launch(n))
    differential(pkg.compare_chain, config, [a, b, c, np.zeros((8, n), bool)])
    w = data.draw(arrays(i64, n, st.integers(-300, 300)))
    out = differential(pkg.logic, config, [w, np.zeros(1, i64), np.zeros((7, n), bool)])
    assert out[1][0] == np.sum(w > 100) + np.sum(w <= -100)


@SETTINGS
@given(start=st.integers(-100, 100), stop=st.integers(-100, 100), step=st.integers(-25, 25))
def test_dynamic_range(pkg, start, stop, step):
    out, count = np.full(64, -999, i64), np.zeros(1, i64)
    if step == 0:  # Python's ValueError, compiled and simulated alike
        for launcher in (pkg.dynamic_range, pkg.dynamic_range.simulate):
            with pytest.raises(ValueError, match=r"range\(\) arg 3 must not be zero"):
                launcher[1, 1](start, stop, step, out, count)
        return
    out, count = differential(pkg.dynamic_range, (1, 1), [start, stop, step, out, count])[3:]
    want = list(range(start, stop, step))
    assert count[0] == len(want)
    assert out[: min(64, len(want))].tolist() == want[:64]


@SETTINGS
@given(data=st.data(), n=st.integers(1, 40))
def test_loops_and_tuples(pkg, data, n):
    x = data.draw(arrays(i64, n, st.integers(-1000, 1000)))
    config = data.draw(launch(n))
    differential(pkg.reverse_ranges, config, [x, np.zeros((5, n), i64)])
    b = data.draw(arrays(i64, n, st.integers(-50, 50).filter(bool)))
    differential(pkg.tuples, config, [x, b, np.zeros((9, n), i64)])
    rows = data.draw(arrays(i64, n * 9, st.sampled_from([-3, 0, 4, 999, 7]))).reshape(n, 9)
    differential(pkg.sum_skip, config, [rows, np.zeros(n, i64)])


@SETTINGS
@given(data=st.data(), n=st.integers(0, 3000))
def test_grid_stride_any_launch(pkg, data, n):
    """Any grid covers any size with a grid-stride loop."""
    x = np.linspace(-1, 1, n)
    grid = data.draw(st.integers(1, 5))
    block = data.draw(st.sampled_from([1, 7, 32, 100]))
    fused = {1: (slice(None), fma_atol([x * 3], x * 3 + 1))}  # x * 3 + 1 may contract
    out = differential(pkg.grid_stride, (grid, block), [x, np.zeros(n)], fused)[1]
    assert_fma_close(out, x * 3 + 1, fma_atol([x * 3], x * 3 + 1), "grid_stride")


@st.composite
def view2d(draw):
    rows, cols = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    base = np.arange(rows * cols, dtype=f32).reshape(rows, cols) * f32(0.5)
    r0, c0 = draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1))
    rs, cs = draw(st.sampled_from([1, 2, 3, -1, -2])), draw(st.sampled_from([1, 2, -1, -3]))
    view = base[r0::rs, c0::cs]
    if draw(st.booleans()):
        view = view.T
    return base, view


@SETTINGS
@given(src=view2d(), block=st.sampled_from([(1, 1), (4, 4), (8, 2)]))
def test_strided_views(pkg, src, block):
    base, view = src
    out_base = np.zeros((view.shape[1], view.shape[0]), f32)
    out = out_base.T  # a transposed (non-contiguous) output of the view's shape
    grid = (-(-view.shape[0] // block[0]), -(-view.shape[1] // block[1]))
    differential(pkg.strided_2d, (grid, block), [view, out])
    compiled = np.zeros_like(out_base)
    pkg.strided_2d[grid, block](view, compiled.T)
    np.testing.assert_array_equal(compiled.T, view * f32(2) + np.arange(view.shape[1]))


@settings(max_examples=15, deadline=None)
@given(data=st.data(), n=st.integers(0, 9000), nbins=st.integers(1, 40))
def test_atomic_histogram_any_size(pkg, data, n, nbins):
    """Compiled only, against numpy: up to 9000 threads spread over the launcher's pool."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(0, 10**6, n).astype(i64)
    bins = np.zeros(nbins, i64)
    block = data.draw(st.sampled_from([32, 128, 256]))
    pkg.histogram[max(1, -(-n // block)), block](x, bins)
    np.testing.assert_array_equal(bins, np.bincount(x % nbins, minlength=nbins))


@SETTINGS
@given(a=ints(i64), b=ints(i64).filter(bool), v=st.lists(ints(u8), max_size=300))
def test_host_functions(pkg, a, b, v):
    assert pkg.h_divmod(a, b) == (wrap(a // b, 64), wrap(a % b, 64))
    x = np.array(v, u8)
    assert pkg.h_u8_sum(x) == sum(v) % 256
    if v:
        lo, hi = min(v) - 10, max(v)
        assert pkg.h_count_between(x.astype(i32), lo, hi) == sum(lo <= e < hi for e in v)


# ---------------------------------------------------------------------- range guards

I64_EDGES = [np.iinfo(i64).min, np.iinfo(i64).min + 1, -1, 0, 1, np.iinfo(i64).max]
bounds = st.one_of(
    st.integers(-300, 1300), st.sampled_from(I64_EDGES), st.integers(-(2**40), 2**40)
)


@pytest.mark.parametrize("name", sorted(GUARD_ORACLES))
@settings(max_examples=30, deadline=None)
@given(
    lo=bounds,
    hi=bounds,
    block=st.sampled_from([1, 3, 8, 32, 100, 256]),
    grid=st.integers(1, 5),
    extra=st.integers(0, 40),
)
def test_range_guards(pkg, name, lo, hi, block, grid, extra):
    """Guards the CPU entry splits the x loop at: any bounds (i64 extremes too), any launch.
    The array is longer than the grid, so writes outside the guard's range would show."""
    threads = grid * block
    out = np.arange(threads + extra, dtype=i64) * 7 - 50
    compiled = differential(getattr(pkg, name), (grid, block), [lo, hi, out])[2]
    np.testing.assert_array_equal(compiled, guard_expected(name, lo, hi, out, threads, block))


@settings(max_examples=30, deadline=None)
@given(
    lo=bounds,
    hi=bounds,
    block=st.sampled_from([(1, 1), (4, 8), (16, 2), (3, 5)]),
    grid=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    shape=st.tuples(st.integers(1, 20), st.integers(1, 20)),
)
def test_range_guards_2d(pkg, lo, hi, block, grid, shape):
    out = np.full(shape, -5, i64)
    compiled = differential(pkg.guard_2d, (grid, block), [lo, hi, out])[2]
    rows, cols = grid[0] * block[0], grid[1] * block[1]
    np.testing.assert_array_equal(compiled, guard_2d_expected(lo, hi, out, rows, cols))
