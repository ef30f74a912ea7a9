"""Privatised atomics on the CPU: exact for integers, a documented order for float sums.

Arrays a kernel only combines into (``ga.atomic_add(bins, k, 1)``, the old value unused) get a
private copy per chunk of blocks (``targets.cpu.privatize``, ``runtime.cpu``); atomics whose
old value is used stay exact. Checked against numpy, on every CPU level and thread count:

* integer histograms and one-cell sums equal numpy's exactly, and so do min and max (signed
  and unsigned), and, or and xor;
* a float sum equals, bit for bit, the order ``docs/performance.md`` states, computed here with
  numpy from that text, and is the same for ``GPUAOT_NUM_THREADS`` = 1, 2 and 3;
* a ticket counter (the old value used) hands out every ticket once;
* the same array passed as another argument is not privatised.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_cpu_order import LEVELS, built_package, pinned

SRC = """
import gpuaot as ga
from gpuaot import Array, f32, f64, i32, i64, u32


@ga.kernel
def histogram(x: Array[f32], counts: Array[i32]):
    i = ga.grid(1)
    nbins = counts.shape[0]
    if i < x.shape[0]:
        k = i64(x[i] * nbins)
        if k >= 0 and k < nbins:
            ga.atomic_add(counts, k, i32(1))


@ga.kernel
def total_f32(x: Array[f32], out: Array[f32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        ga.atomic_add(out, 0, x[i])


@ga.kernel
def total_f64(x: Array[f64], out: Array[f64]):
    i = ga.grid(1)
    if i < x.shape[0]:
        ga.atomic_add(out, 0, x[i])


@ga.kernel
def rows_total(x: Array[f64, 2], out: Array[f64]):
    # a loop in the body: privatised without lanes
    i = ga.grid(1)
    if i < x.shape[0]:
        acc = f64(0)
        for j in range(x.shape[1]):
            acc += x[i, j]
        ga.atomic_add(out, 0, acc)


@ga.kernel
def total_i32(x: Array[i32], out: Array[i32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        ga.atomic_add(out, 0, x[i])


@ga.kernel
def reduce_i64(x: Array[i64], out: Array[i64]):
    # one array per operation: out[0] min, out[1] max ... would mix operations on one array
    i = ga.grid(1)
    if i < x.shape[0]:
        ga.atomic_min(out, i % 3, x[i])


@ga.kernel
def maxes(x: Array[i64], out: Array[i64]):
    i = ga.grid(1)
    if i < x.shape[0]:
        ga.atomic_max(out, i % 5, x[i])


@ga.kernel
def bits(x: Array[u32], a: Array[u32], o: Array[u32], e: Array[u32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        ga.atomic_and(a, i % 2, x[i])
        ga.atomic_or(o, i % 2, x[i])
        ga.atomic_xor(e, i % 2, x[i])


@ga.kernel
def umin(x: Array[u32], out: Array[u32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        ga.atomic_min(out, 0, x[i])


@ga.kernel
def tickets(counter: Array[i64], got: Array[i64]):
    i = ga.grid(1)
    if i < got.shape[0]:
        got[i] = ga.atomic_add(counter, 0, 1)


@ga.kernel
def fmax(x: Array[f32], out: Array[f32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        ga.atomic_max(out, 0, x[i])


@ga.kernel
def checked_total(x: Array[f32], out: Array[f32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        if x[i] < 0.0:
            raise ValueError("negative value")
        ga.atomic_add(out, 0, x[i])


@ga.kernel
def weighted(x: Array[f32], w: Array[f64], bins: Array[f64]):
    # a float histogram: which cell follows the data
    i = ga.grid(1)
    if i < x.shape[0]:
        k = i64(x[i] * bins.shape[0])
        if k >= 0 and k < bins.shape[0]:
            ga.atomic_add(bins, k, w[i])


@ga.kernel
def per_block(x: Array[f32], out: Array[f32]):
    # the cell is the block's: the same for every thread of the inner loop
    i = ga.grid(1)
    if i < x.shape[0]:
        ga.atomic_add(out, ga.block_idx.x, x[i])


@ga.kernel
def per_block_local(x: Array[f32], out: Array[f32]):
    # the same, through a local variable
    i = ga.grid(1)
    b = ga.block_idx.x % 4
    if i < x.shape[0]:
        ga.atomic_add(out, b, x[i])


@ga.kernel
def sign_cells(x: Array[f32], out: Array[f32]):
    # a local assigned on two paths: which cell follows the data
    i = ga.grid(1)
    if i < x.shape[0]:
        c = 0
        if x[i] < 0.0:
            c = 1
        ga.atomic_add(out, c, x[i])


@ga.kernel
def count_then_copy(a: Array[i64], b: Array[i64]):
    i = ga.grid(1)
    if i < 4096:
        ga.atomic_add(a, 0, 1)
    if i == 0:
        b[1] = b[0]
"""


@pytest.fixture(scope="module")
def built(kit, tmp_path_factory):
    yield from built_package(kit, tmp_path_factory, "atomics_pkg", SRC)


@pytest.fixture(scope="module", params=LEVELS)
def pkg(request, built):
    yield from pinned("atomics_pkg", request.param)


@pytest.fixture(params=["1", "2", "3"])
def threads(request, monkeypatch):
    monkeypatch.setenv("GPUAOT_NUM_THREADS", request.param)
    return int(request.param)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _exports(name: str) -> set[str]:
    from gpuaot.runtime import bundle as rb

    b = rb.load_bundle("atomics_pkg")
    k = b.kernels[f"atomics_pkg.kernels.{name}"]
    sym = k.specializations[0].cpu.symbols[b.cpu_level or LEVELS[-1]]
    base, _, tag = sym.rpartition(".")
    return {s for s in (f"{base}$p.{tag}", f"{base}$pinfo.{tag}") if hasattr(b.lib, s)}


# ---------------------------------------------------------------------- which arrays


@pytest.mark.parametrize(
    "name,private",
    [
        ("histogram", True),
        ("total_f32", True),
        ("reduce_i64", True),
        ("umin", True),
        ("bits", True),
        ("rows_total", True),
        ("checked_total", True),
        ("tickets", False),  # the old value is used
        ("fmax", False),  # float min/max: not privatised
    ],
)
def test_which_kernels_privatise(pkg, name, private):
    getattr(pkg, name)  # (the bundle is loaded)
    x = np.zeros(8, dtype=np.float32)
    pkg.total_f32[1, 8](x, np.zeros(1, dtype=np.float32))  # binds the CPU variant
    assert bool(_exports(name)) == private


LANES = 16  # docs/performance.md: a small kernel updating fixed cells has 16 lanes


def _lanes(name: str) -> int:
    """The lanes of a kernel's private copies, as its ``$pinfo`` tells the run time."""
    import ctypes

    from gpuaot.runtime import bundle as rb

    (info,) = (s for s in _exports(name) if "$pinfo" in s)
    fn = getattr(rb.load_bundle("atomics_pkg").lib, info)
    fn.restype = None
    words = (ctypes.c_int64 * 16)()
    fn(words)
    return words[1]


@pytest.mark.parametrize(
    "name,lanes",
    [
        ("total_f32", LANES),  # one cell: one chain of additions without lanes
        ("umin", LANES),
        ("per_block", LANES),  # the block's cell: fixed along the inner loop
        ("per_block_local", LANES),
        ("sign_cells", 1),  # c is 0 or 1 by the data
        ("histogram", 1),  # the cell follows the data: 16 copies would crowd the cache
        ("weighted", 1),
        ("reduce_i64", 1),  # the cell follows the thread (i % 3)
        ("rows_total", 1),  # a loop in the body
    ],
)
def test_lanes_only_for_fixed_cells(pkg, name, lanes):
    getattr(pkg, name)
    x = np.zeros(8, dtype=np.float32)
    pkg.total_f32[1, 8](x, np.zeros(1, dtype=np.float32))  # binds the CPU variant
    assert _lanes(name) == lanes


# ---------------------------------------------------------------------- exact results


@pytest.mark.parametrize("n,block", [(1, 1), (1000, 64), (100_003, 128), (300_000, 256)])
def test_histogram_exact(pkg, threads, n, block):
    rng = np.random.default_rng(n)
    x = rng.random(n, dtype=np.float32)
    x[::97] = 1.5  # out of range: not counted
    bins = np.full(64, 5, dtype=np.int32)  # counts add to what is there
    pkg.histogram[_cdiv(n, block), block](x, bins)
    k = (x * np.float32(64)).astype(np.int64)
    ref = 5 + np.bincount(k[k < 64], minlength=64)
    np.testing.assert_array_equal(bins, ref)


@pytest.mark.parametrize("n", [5000, 200_001])
def test_integer_sums_exact(pkg, threads, n):
    rng = np.random.default_rng(n)
    x = rng.integers(-(2**31), 2**31 - 1, n, dtype=np.int32)
    out = np.array([123], dtype=np.int32)
    pkg.total_i32[_cdiv(n, 256), 256](x, out)
    ref = np.add.reduce(np.concatenate([[123], x]).astype(np.int32), dtype=np.int32)
    assert out[0] == ref  # wraps modulo 2**32, as the atomics do


def test_min_max_and_or_xor(pkg, threads):
    n = 150_000
    rng = np.random.default_rng(7)
    x = rng.integers(-(10**12), 10**12, n, dtype=np.int64)
    lo = np.full(3, 10**11, dtype=np.int64)
    pkg.reduce_i64[_cdiv(n, 128), 128](x, lo)
    ref = [min(10**11, x[r::3].min()) for r in range(3)]
    np.testing.assert_array_equal(lo, ref)
    hi = np.full(5, -(10**11), dtype=np.int64)
    pkg.maxes[_cdiv(n, 128), 128](x, hi)
    np.testing.assert_array_equal(hi, [max(-(10**11), x[r::5].max()) for r in range(5)])
    u = rng.integers(0, 2**32, n, dtype=np.uint32)
    a = np.full(2, 0xFFFF_FFF0, dtype=np.uint32)
    o = np.array([1, 2], dtype=np.uint32)
    e = np.array([3, 0], dtype=np.uint32)
    pkg.bits[_cdiv(n, 256), 256](u, a, o, e)
    for r in range(2):
        assert a[r] == np.bitwise_and.reduce(u[r::2]) & np.uint32(0xFFFF_FFF0)
        assert o[r] == np.bitwise_or.reduce(u[r::2]) | np.uint32(r + 1)
        assert e[r] == np.bitwise_xor.reduce(u[r::2]) ^ np.uint32(3 - 3 * r)
    m = np.array([2**32 - 2], dtype=np.uint32)
    pkg.umin[_cdiv(n, 256), 256](u, m)
    assert m[0] == min(2**32 - 2, int(u.min()))  # unsigned: large values stay large


# ---------------------------------------------------------------------- float order


def documented_sum(
    x: np.ndarray, start, blocks: int, block: int, lanes=LANES, cells: int = 1
) -> np.ndarray:
    """The order of docs/performance.md for a 1-D one-cell sum, written out with numpy
    (``cells``: the privatised array's size, which sets the number of chunks)."""
    threads = blocks * block
    nbytes = x.dtype.itemsize * lanes * cells
    parts = max(1, min(64, blocks, threads // 4096, (8 << 20) // nbytes))
    step, extra = divmod(blocks, parts)
    acc = np.array([start], dtype=x.dtype)
    first = 0
    for c in range(parts):
        last = first + step + (1 if c < extra else 0)
        vals = x[first * block : min(last * block, x.shape[0])]
        for lane in range(lanes):
            # the chunk's copy for this lane: -0.0, then every 16th value in thread order
            mine = np.concatenate([[-0.0], vals[lane::lanes]]).astype(x.dtype)
            copy = np.add.accumulate(mine, dtype=x.dtype)[-1]
            acc = np.add(acc, copy, dtype=x.dtype)  # the copies in (chunk, lane) order
        first = last
    return acc


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,block", [(10, 4), (5000, 64), (250_001, 256)])
def test_float_sum_in_the_documented_order(pkg, threads, dtype, n, block):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)).astype(dtype)
    out = np.array([0.5], dtype=dtype)
    blocks = _cdiv(n, block)
    getattr(pkg, f"total_{np.dtype(dtype).name.replace('float', 'f')}")[blocks, block](x, out)
    ref = documented_sum(x, 0.5, blocks, block)
    assert out.tobytes() == ref.tobytes(), (out, ref)


@pytest.mark.parametrize("n,block", [(3000, 32), (250_001, 256)])
def test_float_histogram_in_the_documented_order(pkg, threads, n, block):
    """Cells that follow the data: one lane, each chunk's copy in thread order, the copies
    in chunk order, cell by cell."""
    rng = np.random.default_rng(n)
    x = rng.random(n, dtype=np.float32)
    x[::89] = 2.0  # out of range: not counted
    w = rng.standard_normal(n) * 10.0 ** rng.integers(-4, 5, n)
    nbins = 37
    bins = np.linspace(-1.0, 1.0, nbins)
    start = bins.copy()
    blocks = _cdiv(n, block)
    pkg.weighted[blocks, block](x, w, bins)
    k = (x * np.float32(nbins)).astype(np.int64)
    ref = np.array(
        [
            documented_sum(np.where(k == c, w, -0.0), start[c], blocks, block, 1, nbins)[0]
            for c in range(nbins)
        ]
    )
    assert bins.tobytes() == ref.tobytes()


@pytest.mark.parametrize("n,block", [(1000, 32), (300_001, 128)])
def test_block_and_sign_cells(pkg, threads, n, block):
    """Whole numbers, so that every order of addition gives numpy's sums exactly."""
    x = np.random.default_rng(n).integers(-50, 50, n).astype(np.float32)
    blocks = _cdiv(n, block)
    out = np.zeros(4, dtype=np.float32)
    pkg.per_block_local[blocks, block](x, out)
    cell = (np.arange(n) // block) % 4
    np.testing.assert_array_equal(out, [x[cell == c].sum(dtype=np.float64) for c in range(4)])
    out = np.full(2, 0.5, dtype=np.float32)
    pkg.sign_cells[blocks, block](x, out)
    np.testing.assert_array_equal(out, [0.5 + x[x >= 0].sum(), 0.5 + x[x < 0].sum()])


@pytest.mark.parametrize("rows,block", [(300, 32), (20_000, 64)])
def test_float_sum_without_lanes(pkg, threads, rows, block):
    """A body with a loop: one copy per chunk, its threads added in order."""
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, 7)) * 10.0 ** rng.integers(-5, 6, (rows, 1))
    out = np.array([-1.25])
    blocks = _cdiv(rows, block)
    pkg.rows_total[blocks, block](x, out)
    per_row = np.add.accumulate(np.concatenate([np.zeros((rows, 1)), x], axis=1), axis=1)[:, -1]
    ref = documented_sum(per_row, -1.25, blocks, block, lanes=1)
    assert out.tobytes() == ref.tobytes(), (out, ref)


def test_float_sum_same_for_every_thread_count(pkg, monkeypatch):
    n = 400_000
    x = np.random.default_rng(1).standard_normal(n).astype(np.float32) * 1e3
    got = []
    for t in ("1", "2", "3"):
        monkeypatch.setenv("GPUAOT_NUM_THREADS", t)
        out = np.zeros(1, dtype=np.float32)
        pkg.total_f32[_cdiv(n, 128), 128](x, out)
        got.append(out.tobytes())
    assert got[0] == got[1] == got[2]


# ---------------------------------------------------------------------- stay exact


def test_tickets_old_value_used(pkg, threads):
    n = 20_000
    counter = np.zeros(1, dtype=np.int64)
    got = np.full(n, -1, dtype=np.int64)
    pkg.tickets[_cdiv(n, 128), 128](counter, got)
    assert counter[0] == n
    np.testing.assert_array_equal(np.sort(got), np.arange(n))


def test_float_max_exact(pkg, threads):
    x = np.random.default_rng(3).standard_normal(50_000).astype(np.float32)
    out = np.array([-np.inf], dtype=np.float32)
    pkg.fmax[_cdiv(x.size, 128), 128](x, out)
    assert out[0] == x.max()


def test_privatised_kernel_that_raises(pkg, threads):
    """A raise inside a privatised launch is reported with its thread and block; the threads
    that ran before it still count."""
    n = 50_000
    x = np.ones(n, dtype=np.float32)
    x[31_234] = -1.0
    out = np.zeros(1, dtype=np.float32)
    t, blk = 31_234 % 128, 31_234 // 128
    with pytest.raises(ValueError, match=rf"negative value .*thread \({t}, 0, 0\), block \({blk},"):
        pkg.checked_total[_cdiv(n, 128), 128](x, out)
    assert 0 < out[0] < n
    x[31_234] = 1.0
    out[:] = 0
    pkg.checked_total[_cdiv(n, 128), 128](x, out)
    assert out[0] == n  # (integers in f32: exact in any order)


def test_aliased_array_is_not_privatised(pkg, monkeypatch):
    """``a`` and ``b`` are one array: thread 0 must see its own add through ``b``."""
    monkeypatch.setenv("GPUAOT_NUM_THREADS", "1")  # thread 0 runs first
    arr = np.zeros(2, dtype=np.int64)
    pkg.count_then_copy[64, 64](arr, arr)
    assert arr[0] == 4096 and arr[1] == 1
    a, b = np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64)
    pkg.count_then_copy[64, 64](a, b)  # apart: privatised, the same counts
    assert a[0] == 4096 and b[1] == 0


def test_operation_codes_agree():
    """The compiler writes operation codes the run time reads: one tuple on each side."""
    from gpuaot.compiler.targets.cpu import privatize
    from gpuaot.runtime import cpu

    assert privatize.OPS == cpu._PRIVATE_OPS
