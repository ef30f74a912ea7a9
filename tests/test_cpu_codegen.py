"""CPU code generation: the x-thread loop stays vectorised, and fast code stays right.

* The optimised IR of the bench kernels (``bench/kernels_pkg``) holds a plain vector loop:
  a change that kills vectorisation, or brings back the masked loads and stores of an
  if-converted range guard, fails here rather than in a benchmark nobody reads.
* The bench kernels agree with numpy at small sizes and awkward launch shapes.
* The entry's x-range split (``targets.cpu.XSplit``) changes nothing a kernel computes or
  raises: guards of every shape it recognises (and some it must not be fooled by) are run
  over launch shapes that put the split points everywhere, against numpy oracles.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_conformance import assert_fma_close, fma_atol
from test_cpu_order import stencil_ref

I64_MAX = np.iinfo(np.int64).max
I64_MIN = np.iinfo(np.int64).min


def _vector_bodies(ir_text: str) -> list[str]:
    """The text of each ``vector.body*`` block of an optimised module."""
    blocks = re.split(r"\n(?=[\w.\"-]+:)", ir_text)
    return [blk for blk in blocks if re.match(r"vector\.body[\w.]*:", blk)]


@pytest.fixture(scope="module")
def bench_src(kit, monkeypatch_module):
    """bench/kernels_pkg found by name (``gpuaot emit`` style), without building it."""
    monkeypatch_module.syspath_prepend(str(kit.REPO / "bench"))
    return "kernels_pkg"


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def bench_pkg(kit, tmp_path_factory, monkeypatch_module):
    """bench/kernels_pkg copied, built on the CPU and imported."""
    parent = tmp_path_factory.mktemp("bench")
    root = kit.copy_package(kit.REPO / "bench" / "kernels_pkg", parent)
    kit.build(root, cache_dir=parent / "cache")
    monkeypatch_module.delenv("GPUAOT_BUNDLE_PATH", raising=False)
    yield kit.import_package(root, monkeypatch_module)
    kit.unload("kernels_pkg")


# ---------------------------------------------------------------------- vectorisation


@pytest.mark.parametrize("kernel", ["saxpy", "stencil5"])
def test_x_loop_is_a_plain_vector_loop(bench_src, kernel):
    from gpuaot.compiler.driver import emit_function

    ir_text = emit_function(f"{bench_src}.kernels:{kernel}", stage="opt", target="cpu")
    bodies = _vector_bodies(ir_text)
    assert bodies, f"{kernel}: the x-thread loop was not vectorised (no vector.body)"
    plain = [
        blk
        for blk in bodies
        if re.search(r"= load <(\d+) x float>", blk)
        and re.search(r"store <(\d+) x float>", blk)
        and "masked" not in blk
    ]
    assert plain, (
        f"{kernel}: no vector loop with plain <N x float> loads and stores; the range "
        "guard is if-converted into masked memory operations again"
    )
    widths = {int(w) for blk in plain for w in re.findall(r"<(\d+) x float>", blk)}
    assert max(widths) >= 4


def test_threads_that_loop_are_jammed_into_vectors(bench_src):
    """matmul's threads each run a k loop: the x loop is unrolled and jammed, then packed."""
    from gpuaot.compiler.driver import emit_function

    ir_text = emit_function(f"{bench_src}.kernels:matmul", stage="opt", target="cpu")
    # (``fmul contract``: FMA contraction is on by default)
    assert re.search(r"fmul (?:\w+ )*<(\d+) x float>", ir_text), "matmul's threads not vectorised"
    assert re.search(r"phi <(\d+) x float>", ir_text), "no vector accumulator in the k loop"


JAM_SRC = """
import gpuaot as ga
from gpuaot import Array, f32, i64


@ga.kernel
def column_sums(x: Array[f32, 2], out: Array[f32]):
    j = ga.grid(1)
    if j < x.shape[1]:
        acc = f32(0)
        for i in range(x.shape[0]):
            acc += x[i, j]
        out[j] = acc


@ga.kernel
def gathered(idx: Array[i64], x: Array[f32], out: Array[f32]):
    i = ga.grid(1)
    if i < out.shape[0]:
        acc = f32(0)
        for k in range(4):
            acc += x[idx[i] + k]
        out[i] = acc


@ga.kernel
def every_other(x: Array[f32], out: Array[f32]):
    i = ga.grid(1)
    if i < out.shape[0]:
        acc = f32(0)
        for k in range(3):
            acc += x[2 * i + k]
        out[i] = acc
"""


@pytest.fixture(scope="module")
def jam_pkg(kit, tmp_path_factory, monkeypatch_module):
    parent = tmp_path_factory.mktemp("jam")
    root = kit.write_package(parent / "jam_pkg", {"kernels.py": JAM_SRC})
    monkeypatch_module.syspath_prepend(str(parent))
    kit.build(root, cache_dir=parent / "cache")
    monkeypatch_module.delenv("GPUAOT_BUNDLE_PATH", raising=False)
    mod = kit.import_package(root, monkeypatch_module)
    import importlib

    yield importlib.import_module("jam_pkg.kernels")
    kit.unload(mod.__name__)


@pytest.mark.parametrize(
    "spec,count",
    [
        ("kernels_pkg.kernels:matmul", 32),  # B[k, col] contiguous along x, A[row, k] shared
        ("jam_pkg.kernels:column_sums", 32),  # x[i, j]: j follows x
        ("kernels_pkg.kernels:row_sums", 8),  # x[i, j]: each thread a row, a stream of its own
        ("jam_pkg.kernels:gathered", 8),  # x[idx[i] + k]: wherever the data says
        ("jam_pkg.kernels:every_other", 8),  # x[2 * i + k]: two elements per thread
    ],
)
def test_jam_count_follows_the_accesses(bench_src, jam_pkg, spec, count):
    """How many threads are jammed (``targets.cpu.order.jam_count``), as the entry marks it."""
    from gpuaot.compiler.driver import emit_function

    ir_text = emit_function(spec, stage="ir", target="cpu")
    assert re.findall(r'!"gpuaot\.unroll_and_jam", i32 (\d+)', ir_text) == [str(count)]


def test_jammed_kernels_compute_each_thread_in_order(jam_pkg, bench_pkg):
    """However many threads are jammed, each adds its terms in its own order: the sums of a
    column (32 jammed) and of a row (8) equal a float32 loop over the terms, bit for bit."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((37, 45)) * 10.0 ** rng.integers(-3, 4, (37, 45))).astype(np.float32)
    cols = np.full(45, np.nan, dtype=np.float32)
    jam_pkg.column_sums[_cdiv(45, 8), 8](x, cols)
    rows = np.full(37, np.nan, dtype=np.float32)
    bench_pkg.row_sums[_cdiv(37, 16), 16](x, rows)
    ref_cols = np.add.accumulate(np.vstack([np.zeros((1, 45), np.float32), x]), axis=0)[-1]
    ref_rows = np.add.accumulate(np.hstack([np.zeros((37, 1), np.float32), x]), axis=1)[:, -1]
    assert cols.tobytes() == ref_cols.tobytes()
    assert rows.tobytes() == ref_rows.tobytes()
    idx = rng.integers(0, 40, 50)
    v = rng.standard_normal(44).astype(np.float32)
    out = np.zeros(50, dtype=np.float32)
    jam_pkg.gathered[4, 16](idx, v, out)
    ref = np.zeros(50, dtype=np.float32)
    for k in range(4):
        ref = ref + v[idx + k]
    assert out.tobytes() == ref.tobytes()


def test_saxpy_asm_uses_vector_registers(bench_src):
    from gpuaot.compiler.driver import emit_function

    asm = emit_function(f"{bench_src}.kernels:saxpy", stage="asm", target="cpu")
    assert re.search(r"\bv?(mul|fmadd\w*)ps\b.*%[xyz]mm", asm), "no packed float multiply"


# ---------------------------------------------------------------------- bench kernels


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def assert_saxpy(out, a, x, y) -> None:
    """``a * x + y``, which FMA contraction (on by default; x86-64-v3 and up have FMA) may
    compute with the product unrounded: within :func:`test_conformance.fma_atol`, not equal."""
    assert_fma_close(out, a * x + y, fma_atol([a * x], a * x + y), "saxpy")


@pytest.mark.parametrize("n,threads", [(1, 1), (1000, 64), (1023, 1024), (4099, 256), (77, 7)])
def test_bench_saxpy(bench_pkg, n, threads):
    rng = np.random.default_rng(n)
    a = np.float32(-1.75)
    x = rng.standard_normal(n, dtype=np.float32)
    y = rng.standard_normal(n, dtype=np.float32)
    out = np.full(n, np.nan, dtype=np.float32)
    bench_pkg.saxpy[_cdiv(n, threads), threads](a, x, y, out)
    assert_saxpy(out, a, x, y)


@pytest.mark.parametrize(
    "shape,block",
    [((3, 3), (4, 4)), ((17, 33), (8, 4)), ((64, 130), (32, 8)), ((40, 70), (256, 1))],
)
def test_bench_stencil(bench_pkg, shape, block):
    rng = np.random.default_rng(shape[1])
    u = rng.standard_normal(shape, dtype=np.float32)
    out = np.full(shape, -7.0, dtype=np.float32)
    grid = (_cdiv(shape[1], block[0]), _cdiv(shape[0], block[1]))
    bench_pkg.stencil5[grid, block](u, out)
    ref = np.full(shape, -7.0, dtype=np.float32)
    ref[1:-1, 1:-1] = (
        0.25 * (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) - u[1:-1, 1:-1]
    )
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("shape,threads", [((1, 1), 1), ((37, 129), 16), ((256, 64), 64)])
def test_bench_row_sums(bench_pkg, shape, threads):
    rng = np.random.default_rng(shape[0])
    x = rng.standard_normal(shape, dtype=np.float32)
    out = np.zeros(shape[0], dtype=np.float32)
    bench_pkg.row_sums[_cdiv(shape[0], threads), threads](x, out)
    # Sequential f32 sums, as the kernel adds; numpy's pairwise sum differs in the last bits.
    ref = np.zeros(shape[0], dtype=np.float32)
    for j in range(shape[1]):
        ref += x[:, j]
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_allclose(out, x.sum(axis=1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n,block", [(1, (1, 1)), (33, (8, 4)), (70, (64, 4))])
def test_bench_matmul(bench_pkg, n, block):
    rng = np.random.default_rng(n)
    A = rng.standard_normal((n, n + 3), dtype=np.float32)
    B = rng.standard_normal((n + 3, n), dtype=np.float32)
    C = np.zeros((n, n), dtype=np.float32)
    bench_pkg.matmul[(_cdiv(n, block[0]), _cdiv(n, block[1])), block](A, B, C)
    ref = np.zeros((n, n), dtype=np.float32)
    bound = np.zeros((n, n))
    for k in range(n + 3):
        prod = A[:, k : k + 1] * B[k : k + 1, :]
        ref += prod  # the kernel's order: acc += a*b per k
        bound += fma_atol([prod], ref)  # each step may fuse (default fma=True)
    assert_fma_close(C, ref, bound, "matmul")
    np.testing.assert_allclose(C, A @ B, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------- x-range split

GUARDS = """
import gpuaot as ga
from gpuaot import Array, f32, i64


@ga.kernel
def row_total(x: Array[f32, 2], out: Array[f32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        acc = f32(0)
        for j in range(x.shape[1]):
            acc += x[i, j]
        out[i] = acc


@ga.kernel
def row_total_any(x: Array[f32, 2, "A"], out: Array[f32, 1, "A"]):
    i = ga.grid(1)
    if i < x.shape[0]:
        acc = f32(0)
        for j in range(x.shape[1]):
            acc += x[i, j]
        out[i] = acc


@ga.kernel
def lt(n: i64, out: Array[i64]):
    i = ga.grid(1)
    if i < n:
        out[i] = i + 1


@ga.kernel
def early_return(n: i64, out: Array[i64]):
    i = ga.grid(1)
    if i >= n:
        return
    out[i] = 2 * i


@ga.kernel
def window(lo: i64, hi: i64, out: Array[i64]):
    i = ga.grid(1)
    if lo <= i and i < hi and i < out.shape[0]:
        out[i] = 7


@ga.kernel
def offset(off: i64, n: i64, out: Array[i64]):
    i = ga.grid(1)
    k = i + off
    if k < n and i < out.shape[0]:
        out[i] = k


@ga.kernel
def offset_ge(off: i64, n: i64, out: Array[i64]):
    i = ga.grid(1)
    k = i + off
    if k >= n and i < out.shape[0]:
        out[i] = k


@ga.kernel
def backwards(n: i64, out: Array[i64]):
    i = ga.grid(1)
    if n > i - 3 and 2 < i + 1:
        if i < out.shape[0]:
            out[i] = 5


@ga.kernel
def chained(out: Array[i64, 2]):
    j, i = ga.grid(2)
    n, m = out.shape
    if 0 < i < n - 1 and 0 < j <= m - 2:
        out[i, j] = i * 1000 + j


@ga.kernel
def negated(n: i64, out: Array[i64]):
    i = ga.grid(1)
    if not (i >= n):
        out[i] = 3


@ga.kernel
def either(n: i64, out: Array[i64]):
    i = ga.grid(1)
    if i < out.shape[0]:
        if i < n or i > 3 * n:
            out[i] = 1
        else:
            out[i] = 2


@ga.kernel
def scaled(n: i64, out: Array[i64]):
    i = ga.grid(1)
    if 2 * i < n:
        out[2 * i] = 9


@ga.kernel
def reassigned(n: i64, out: Array[i64]):
    i = ga.grid(1)
    k = i
    if k < n:
        k = k + 1
    if k < n:
        out[i] = k


@ga.kernel
def flat(n: i64, out: Array[i64]):
    t = ga.thread_idx.y * ga.block_dim.x + ga.thread_idx.x
    g = ga.block_idx.x * (ga.block_dim.x * ga.block_dim.y) + t
    if g < n:
        out[g] = ga.thread_idx.x + 100 * ga.thread_idx.y


@ga.kernel
def raises(n: i64, out: Array[i64]):
    i = ga.grid(1)
    if i >= n:
        raise IndexError("past the end")
    out[i] = i


@ga.kernel(debug=True)
def checked(off: i64, n: i64, out: Array[i64]):
    i = ga.grid(1)
    if i < n:
        out[i + off] = i
"""


@pytest.fixture(scope="module")
def guards(kit, tmp_path_factory, monkeypatch_module):
    parent = tmp_path_factory.mktemp("guards")
    root = kit.write_package(parent / "xsplit_guards", {"kernels.py": GUARDS})
    kit.build(root, cache_dir=parent / "cache")
    monkeypatch_module.delenv("GPUAOT_BUNDLE_PATH", raising=False)
    mod = kit.import_package(root, monkeypatch_module)
    import importlib

    yield importlib.import_module("xsplit_guards.kernels")
    kit.unload(mod.__name__)


SHAPES = [(1, 1), (1, 5), (3, 4), (2, 16), (5, 7), (4, 33)]  # (blocks, threads)


def _run(kernel, shape, *args):
    kernel[shape](*args)
    return args[-1]


def _wrap(v: int) -> int:
    return (v + 2**63) % 2**64 - 2**63


@pytest.mark.parametrize("blocks,threads", SHAPES)
@pytest.mark.parametrize("n", [-5, 0, 1, 3, 4, 16, 17, 40, 10**6])
def test_split_lt_early_return_negated(guards, blocks, threads, n):
    total = blocks * threads
    for name, value in (
        ("lt", lambda i: i + 1),
        ("early_return", lambda i: 2 * i),
        ("negated", lambda i: 3),
    ):
        out = np.full(max(total, 1), -1, dtype=np.int64)
        getattr(guards, name)[blocks, threads](n, out)
        ref = np.full_like(out, -1)
        for i in range(min(max(n, 0), total)):
            ref[i] = value(i)
        np.testing.assert_array_equal(out, ref, err_msg=f"{name} n={n}")


@pytest.mark.parametrize("blocks,threads", SHAPES)
@pytest.mark.parametrize("lo,hi", [(0, 0), (-3, 2), (2, 9), (9, 2), (5, 6), (I64_MIN, I64_MAX)])
def test_split_window(guards, blocks, threads, lo, hi):
    total = blocks * threads
    out = np.zeros(total, dtype=np.int64)
    guards.window[blocks, threads](lo, hi, out)
    ref = np.array([7 if lo <= i < hi else 0 for i in range(total)], dtype=np.int64)
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("blocks,threads", SHAPES)
@pytest.mark.parametrize(
    "off,n",
    [
        (0, 5),
        (-7, 0),
        (3, 3),
        (I64_MAX - 5, 0),
        (I64_MAX - 5, I64_MAX),
        (I64_MIN, -3),
        (I64_MAX, I64_MIN + 4),
        (-(2**62), 2**62),
    ],
)
def test_split_offset_wraps(guards, blocks, threads, off, n):
    """``i + off`` wraps inside one block: the split must see it and fall back."""
    total = blocks * threads
    for name, test in (("offset", lambda k: k < n), ("offset_ge", lambda k: k >= n)):
        out = np.zeros(total, dtype=np.int64)
        getattr(guards, name)[blocks, threads](off, n, out)
        ref = np.zeros(total, dtype=np.int64)
        for i in range(total):
            k = _wrap(i + off)
            if test(k):
                ref[i] = k
        np.testing.assert_array_equal(out, ref, err_msg=name)


@pytest.mark.parametrize("blocks,threads", SHAPES)
@pytest.mark.parametrize("n", [-4, 0, 2, 3, 6, 30])
def test_split_mixed_shapes(guards, blocks, threads, n):
    total = blocks * threads
    out = np.zeros(total, dtype=np.int64)
    guards.backwards[blocks, threads](n, out)
    ref = np.array([5 if (n > i - 3 and 2 < i + 1) else 0 for i in range(total)])
    np.testing.assert_array_equal(out, ref, err_msg="backwards")

    out = np.zeros(total, dtype=np.int64)
    guards.either[blocks, threads](n, out)
    ref = np.array([1 if (i < n or i > 3 * n) else 2 for i in range(total)])
    np.testing.assert_array_equal(out, ref, err_msg="either")

    out = np.zeros(2 * total + 2, dtype=np.int64)
    guards.scaled[blocks, threads](n, out)
    ref = np.zeros_like(out)
    ref[[2 * i for i in range(total) if 2 * i < n]] = 9
    np.testing.assert_array_equal(out, ref, err_msg="scaled")

    out = np.zeros(total, dtype=np.int64)
    guards.reassigned[blocks, threads](n, out)
    ref = np.array([i + 1 if i + 1 < n else 0 for i in range(total)])
    np.testing.assert_array_equal(out, ref, err_msg="reassigned")


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (3, 5), (7, 9), (16, 40)])
@pytest.mark.parametrize("block", [(1, 1), (4, 2), (8, 8), (3, 5), (64, 1)])
def test_split_2d_chained(guards, shape, block):
    out = np.zeros(shape, dtype=np.int64)
    grid = (_cdiv(shape[1], block[0]), _cdiv(shape[0], block[1]))
    guards.chained[grid, block](out)
    ref = np.zeros(shape, dtype=np.int64)
    n, m = shape
    for i in range(1, n - 1):
        for j in range(1, m - 1):
            ref[i, j] = i * 1000 + j
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("block", [(1, 1, 1), (4, 3, 1), (5, 2, 3), (16, 1, 2)])
@pytest.mark.parametrize("n", [0, 7, 20, 1000])
def test_split_thread_index_and_3d_blocks(guards, block, n):
    bx, by, bz = block
    blocks = 3
    per = bx * by
    out = np.full(blocks * per + 1, -1, dtype=np.int64)
    guards.flat[blocks, block](n, out)
    ref = np.full_like(out, -1)
    for b in range(blocks):
        for ty in range(by):
            for tx in range(bx):
                g = b * per + ty * bx + tx
                if g < n:
                    ref[g] = tx + 100 * ty
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("blocks,threads,n", [(3, 8, 13), (2, 16, 0), (5, 7, 34)])
def test_split_keeps_the_first_raise(guards, monkeypatch, blocks, threads, n):
    # One worker: whether a launch is split otherwise depends on how long the kernel's
    # earlier launches took, and split blocks may stop before they run.
    monkeypatch.setenv("GPUAOT_NUM_THREADS", "1")
    out = np.zeros(blocks * threads, dtype=np.int64)
    with pytest.raises(IndexError, match="past the end") as info:
        guards.raises[blocks, threads](n, out)
    # One thread runs the blocks in order: the first to raise is i = n.
    assert f"thread ({n % threads}, 0, 0), block ({n // threads}, 0, 0)" in str(info.value)
    np.testing.assert_array_equal(out[:n], np.arange(n))


@pytest.mark.parametrize("blocks,threads", SHAPES)
@pytest.mark.parametrize("off", [0, -1, 1, 5, I64_MIN, I64_MAX])
def test_split_debug_bounds_checks(guards, monkeypatch, blocks, threads, off):
    monkeypatch.setenv("GPUAOT_NUM_THREADS", "1")  # threads in order (see above)
    total = blocks * threads
    length = total + 2
    n = total
    out = np.full(length, -1, dtype=np.int64)
    bad = [i for i in range(min(n, total)) if not 0 <= _wrap(i + off) < length]
    if bad:
        with pytest.raises(IndexError):
            guards.checked[blocks, threads](off, n, out)
    else:
        guards.checked[blocks, threads](off, n, out)
    ref = np.full(length, -1, dtype=np.int64)
    for i in range(min(n, total)):
        if bad and i >= bad[0]:
            break  # threads stop at the first raise (one calling thread, in order)
        ref[_wrap(i + off)] = i
    if not bad:
        np.testing.assert_array_equal(out, ref)
    else:
        np.testing.assert_array_equal(out[ref != -1], ref[ref != -1])


# ---------------------------------------------------------------------- launch path


@pytest.mark.parametrize("workers", ["2", "3"])
def test_split_raise_keeps_what_ran(guards, monkeypatch, workers):
    """Split over threads, a raise stops blocks that have not started; those that ran wrote
    their own values and nothing else (the order of blocks is not promised)."""
    monkeypatch.setenv("GPUAOT_NUM_THREADS", workers)
    blocks, threads, off = 64, 128, 5
    total = blocks * threads
    length = total + 2
    for _ in range(3):  # the first launch splits by thread count, later ones by time
        out = np.full(length, -1, dtype=np.int64)
        with pytest.raises(IndexError, match="thread"):
            guards.checked[blocks, threads](off, total, out)
        ran = np.flatnonzero(out != -1)
        np.testing.assert_array_equal(out[ran], ran - off)


@pytest.mark.parametrize("workers", ["1", "2", "3", "8"])
def test_split_over_threads(bench_pkg, guards, monkeypatch, workers):
    """Big launches go to the helper threads (the caller runs the first chunk)."""
    monkeypatch.setenv("GPUAOT_NUM_THREADS", workers)
    n = 300_001
    rng = np.random.default_rng(5)
    x = rng.standard_normal(n, dtype=np.float32)
    y = rng.standard_normal(n, dtype=np.float32)
    for _ in range(3):  # the first launch decides by thread count, later ones by time
        out = np.zeros(n, dtype=np.float32)
        bench_pkg.saxpy[_cdiv(n, 128), 128](np.float32(3), x, y, out)
        assert_saxpy(out, np.float32(3), x, y)
    out = np.zeros(5000, dtype=np.int64)
    with pytest.raises(IndexError, match="past the end"):
        guards.raises[50, 100](4321, out)  # (other chunks stop early: no more to check)
    out = np.zeros(n, dtype=np.float32)  # the helpers are still there after a raise
    bench_pkg.saxpy[_cdiv(n, 128), 128](np.float32(3), x, y, out)
    assert_saxpy(out, np.float32(3), x, y)


def test_concurrent_launches(bench_pkg, monkeypatch):
    """Python threads launching at once share the helpers and never see each other's args."""
    import threading

    monkeypatch.setenv("GPUAOT_NUM_THREADS", "2")
    errors = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(20):
                n = int(rng.integers(1, 20_000))
                a = np.float32(rng.standard_normal())
                x = rng.standard_normal(n, dtype=np.float32)
                y = rng.standard_normal(n, dtype=np.float32)
                out = np.zeros(n, dtype=np.float32)
                bench_pkg.saxpy[_cdiv(n, 64), 64](a, x, y, out)
                assert_saxpy(out, a, x, y)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_launch_argument_errors_survive_the_fast_path(bench_pkg):
    x = np.zeros(8, dtype=np.float32)
    with pytest.raises(TypeError, match="dtype"):
        bench_pkg.saxpy[1, 8](np.float32(1), x.astype(np.float64), x, x)
    with pytest.raises(TypeError, match="not C-contiguous"):
        bench_pkg.saxpy[1, 8](np.float32(1), np.zeros(16, np.float32)[::2], x, x)
    with pytest.raises(TypeError, match="scalar"):
        bench_pkg.saxpy[1, 8](x, x, x, x)
    with pytest.raises(TypeError, match="takes 4 arguments"):
        bench_pkg.saxpy[1, 8](np.float32(1), x, x)
    # A read-only input, a Python float for f32, an empty array: all fine.
    ro = np.arange(8, dtype=np.float32)
    ro.flags.writeable = False
    out = np.zeros(8, dtype=np.float32)
    bench_pkg.saxpy[1, 8](0.5, ro, ro, out)
    np.testing.assert_array_equal(out, np.float32(0.5) * ro + ro)
    e = np.zeros(0, dtype=np.float32)
    bench_pkg.saxpy[1, 8](np.float32(1), e, e, e)


# ---------------------------------------------------------------------- overlapping arrays


def _row_totals_in_order(x: np.ndarray, out: np.ndarray) -> None:
    """The CPU backend's meaning: threads one after another, each seeing earlier writes."""
    for i in range(x.shape[0]):
        acc = np.float32(0)
        for j in range(x.shape[1]):
            acc = np.float32(acc + x[i, j])
        out[i] = acc


@pytest.mark.parametrize("rows,cols", [(9, 5), (40, 33)])
@pytest.mark.parametrize("where", ["apart", "row1", "row1-3", "adjacent", "last", "first"])
def test_overlapping_arrays_keep_thread_order(guards, monkeypatch, rows, cols, where):
    """Arrays that share memory must not take the noalias (jammed) copy of a kernel."""
    monkeypatch.setenv("GPUAOT_NUM_THREADS", "1")
    size = rows * cols
    offsets = {
        "apart": None,
        "row1": cols,
        "row1-3": cols - 3,
        "adjacent": size,
        "last": size - 1,
        "first": 0,
    }
    off = offsets[where]
    rng = np.random.default_rng(rows + cols)
    for threads in (1, 4, 64):
        buf = rng.standard_normal(size + rows, dtype=np.float32)
        ref_buf = buf.copy()

        def views(b):
            x = b[:size].reshape(rows, cols)
            out = np.zeros(rows, np.float32) if off is None else b[off : off + rows]
            return x, out

        x, out = views(buf)
        guards.row_total[_cdiv(rows, threads), threads](x, out)
        rx, rout = views(ref_buf)
        _row_totals_in_order(rx, rout)
        np.testing.assert_array_equal(out, rout)
        np.testing.assert_array_equal(buf, ref_buf)


@pytest.mark.parametrize("case", ["reversed", "strided-overlap", "strided-apart", "empty"])
def test_overlapping_strided_arrays(guards, monkeypatch, case):
    monkeypatch.setenv("GPUAOT_NUM_THREADS", "1")
    rng = np.random.default_rng(7)
    buf = rng.standard_normal(400, dtype=np.float32)
    ref_buf = buf.copy()

    def views(b):
        if case == "reversed":  # rows walked backwards; out strides through the same memory
            return b[:300].reshape(20, 15)[::-1, ::2], b[100:300:10]
        if case == "strided-overlap":
            return b[:300].reshape(30, 10)[:, ::3], b[5:305:10]
        if case == "strided-apart":
            return b[:300].reshape(30, 10)[:, ::3], b[300:330][::-1]
        return b[:0].reshape(0, 4), b[:0]

    x, out = views(buf)
    guards.row_total_any[4, 8](x, out)
    rx, rout = views(ref_buf)
    _row_totals_in_order(rx, rout)
    np.testing.assert_array_equal(buf, ref_buf)


@pytest.mark.parametrize("off", [1, 2, 3, 7])
def test_overlap_chain_within_a_jammed_group(guards, monkeypatch, off):
    """Thread t writes what thread t + off reads: in thread order the value travels on."""
    monkeypatch.setenv("GPUAOT_NUM_THREADS", "1")
    rng = np.random.default_rng(off)
    buf = rng.standard_normal(64, dtype=np.float32)
    ref = buf.copy()
    guards.row_total[5, 8](buf[:40].reshape(40, 1), buf[off : off + 40])
    _row_totals_in_order(ref[:40].reshape(40, 1), ref[off : off + 40])
    np.testing.assert_array_equal(buf, ref)


def test_overlap_below_a_reversed_array(guards, monkeypatch):
    """x walks backwards from b[79]: its extent starts at b[40], below its data pointer."""
    monkeypatch.setenv("GPUAOT_NUM_THREADS", "1")
    rng = np.random.default_rng(11)
    buf = rng.standard_normal(96, dtype=np.float32)
    ref = buf.copy()
    guards.row_total_any[5, 8](buf[40:80][::-1].reshape(40, 1), buf[30:70])
    _row_totals_in_order(ref[40:80][::-1].reshape(40, 1), ref[30:70])
    np.testing.assert_array_equal(buf, ref)


# ---------------------------------------------------------------------- loop order


def test_row_following_stencil_is_a_plain_vector_loop(bench_src):
    """``i, j = ga.grid(2)`` (x follows the row): the y loop runs innermost and vectorises
    (``targets.cpu.order``), with plain loads and stores as the ``j, i`` form."""
    from gpuaot.compiler.driver import emit_function

    ir_text = emit_function(f"{bench_src}.kernels:stencil5_ij", stage="opt", target="cpu")
    plain = [
        blk
        for blk in _vector_bodies(ir_text)
        if re.search(r"= load <(\d+) x float>", blk)
        and re.search(r"store <(\d+) x float>", blk)
        and "masked" not in blk
        and "gather" not in blk
    ]
    assert plain, "stencil5_ij: no plain vector loop (the row-following order strides again)"


@pytest.mark.parametrize(
    "shape,block", [((3, 3), (4, 4)), ((17, 33), (8, 4)), ((64, 130), (16, 16))]
)
def test_bench_stencil_ij(bench_pkg, shape, block):
    rng = np.random.default_rng(shape[0])
    u = rng.standard_normal(shape, dtype=np.float32)
    out = np.full(shape, -7.0, dtype=np.float32)
    grid = (_cdiv(shape[0], block[0]), _cdiv(shape[1], block[1]))
    bench_pkg.stencil5_ij[grid, block](u, out)
    np.testing.assert_array_equal(out, stencil_ref(u, -7.0))


@pytest.mark.parametrize("n,threads", [(1, 1), (1000, 64), (70_001, 256)])
def test_bench_histogram_and_total(bench_pkg, n, threads):
    rng = np.random.default_rng(n)
    x = rng.random(n, dtype=np.float32)
    bins = np.zeros(256, dtype=np.int64)
    bench_pkg.histogram[_cdiv(n, threads), threads](x, bins)
    ref = np.bincount((x * np.float32(256)).astype(np.int64), minlength=256)
    np.testing.assert_array_equal(bins, ref)
    out = np.zeros(1, dtype=np.float32)
    bench_pkg.total[_cdiv(n, threads), threads](x, out)
    np.testing.assert_allclose(out[0], x.astype(np.float64).sum(), rtol=1e-5)


# ---------------------------------------------------------------------- privatised atomics


def test_privatised_sum_is_vectorised(bench_src):
    """``atomic_add(out, 0, x[i])``: the private entry (``targets.cpu.privatize``) has no
    atomics left, and its 16 lanes are added as vectors (each lane in thread order)."""
    from gpuaot.compiler.driver import emit_function

    ir_text = emit_function(f"{bench_src}.kernels:total", stage="opt", target="cpu")
    assert "atomicrmw fadd" in ir_text  # the ordinary entry: exact atomics
    loops = re.search(r'define internal [^\n]*\$p\.loops"?\(.*?\n}\n', ir_text, re.S)
    assert loops, "no private entry for a combine-only float sum"
    assert "atomicrmw" not in loops.group(0)
    assert re.search(r"fadd (?:\w+ )*<(\d+) x float>", loops.group(0)), "lanes not vectorised"
