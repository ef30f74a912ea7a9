"""The CPU thread loop order follows memory, and changes nothing a kernel computes.

``targets.cpu.order`` picks, per kernel, the thread axis whose loop runs innermost (the one
along which most accesses are unit-stride) and whether a run of blocks along it runs as one
loop. Kernels whose threads work independently are run here in both index orders
(``i, j = ga.grid(2)`` and ``j, i``), on 2-D and 3-D grids, at odd sizes and block shapes that
put block and guard edges everywhere, on every CPU level, against numpy and ``simulate``.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

from gpuaot.bundle import cpus

SRC = """
import gpuaot as ga
from gpuaot import Array, f32, i64


@ga.kernel
def stencil_ij(u: Array[f32, 2], out: Array[f32, 2]):
    i, j = ga.grid(2)
    n, m = u.shape
    if 0 < i < n - 1 and 0 < j < m - 1:
        out[i, j] = 0.25 * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1]) - u[i, j]


@ga.kernel
def stencil_ji(u: Array[f32, 2], out: Array[f32, 2]):
    j, i = ga.grid(2)
    n, m = u.shape
    if 0 < i < n - 1 and 0 < j < m - 1:
        out[i, j] = 0.25 * (u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1]) - u[i, j]


@ga.kernel
def coords_ij(out: Array[i64, 2]):
    i, j = ga.grid(2)
    if i < out.shape[0] and j < out.shape[1]:
        out[i, j] = i * 1000 + j


@ga.kernel
def threads_ij(out: Array[i64, 2]):
    # reads the thread and block indices on their own: no runs of blocks, y still innermost
    i, j = ga.grid(2)
    if i < out.shape[0] and j < out.shape[1]:
        out[i, j] = ga.thread_idx.y * 100 + ga.block_idx.y * 10 + ga.thread_idx.x


@ga.kernel
def cube_ijk(x: Array[f32, 3], out: Array[f32, 3]):
    i, j, k = ga.grid(3)
    if i < x.shape[0] and j < x.shape[1] and k < x.shape[2]:
        out[i, j, k] = x[i, j, k] * 2.0 + f32(i * 10000 + j * 100 + k)


@ga.kernel
def cube_kji(x: Array[f32, 3], out: Array[f32, 3]):
    k, j, i = ga.grid(3)
    if i < x.shape[0] and j < x.shape[1] and k < x.shape[2]:
        out[i, j, k] = x[i, j, k] * 2.0 + f32(i * 10000 + j * 100 + k)


@ga.kernel
def transpose_ij(a: Array[f32, 2], out: Array[f32, 2]):
    # one access unit-stride along x, one along y: x wins the tie
    i, j = ga.grid(2)
    if i < a.shape[0] and j < a.shape[1]:
        out[j, i] = a[i, j]


@ga.kernel
def matmul_ij(A: Array[f32, 2], B: Array[f32, 2], C: Array[f32, 2]):
    # threads with loops of their own, y innermost: the y loop is unrolled and jammed
    i, j = ga.grid(2)
    if i < C.shape[0] and j < C.shape[1]:
        acc = f32(0)
        for k in range(A.shape[1]):
            acc += A[i, k] * B[k, j]
        C[i, j] = acc


@ga.kernel
def strided_ij(a: Array[f32, 2, "A"], out: Array[f32, 2, "A"]):
    i, j = ga.grid(2)
    if i < a.shape[0] and j < a.shape[1]:
        out[i, j] = a[i, j] + 1.0
"""

LEVELS = [lv.name for lv in cpus.default_levels(cpus.machine())] or [cpus.NATIVE]


def built_package(kit, tmp_path_factory, package: str, src: str):
    """A generator for a fixture: ``package`` (``kernels.py`` = ``src``) built and imported;
    ``package.kernels`` yielded, the package forgotten after."""
    parent = tmp_path_factory.mktemp(package)
    root = kit.write_package(parent / package, {"kernels.py": src})
    kit.build(root, cache_dir=parent / "cache")
    mp = pytest.MonkeyPatch()
    mp.delenv("GPUAOT_BUNDLE_PATH", raising=False)
    kit.import_package(root, mp)
    yield importlib.import_module(f"{package}.kernels")
    mp.undo()
    kit.unload(package)


@pytest.fixture(scope="module")
def built(kit, tmp_path_factory):
    yield from built_package(kit, tmp_path_factory, "order_pkg", SRC)


def pinned(package: str, level: str):
    """A generator for a fixture: ``package`` with its ``level`` CPU variant bound (skips
    where this CPU cannot run it), ``package.kernels`` yielded; the binding undone after."""
    from gpuaot.runtime import bundle as rb
    from gpuaot.runtime.cpu_variant import cpu_features

    b = rb.load_bundle(package)
    (v,) = [v for v in b.manifest["cpu_variants"] if v["level"] == level]
    if not set(v["requires"]) <= cpu_features(b.lib):
        pytest.skip(f"this CPU cannot run the {level} variant")
    old = os.environ.get("GPUAOT_CPU")
    os.environ["GPUAOT_CPU"] = level
    rb.forget(package)
    yield importlib.import_module(f"{package}.kernels")
    if old is None:
        os.environ.pop("GPUAOT_CPU", None)
    else:
        os.environ["GPUAOT_CPU"] = old
    rb.forget(package)


@pytest.fixture(scope="module", params=LEVELS)
def pkg(request, built):
    """The package with one CPU variant pinned, for each default level this CPU runs."""
    yield from pinned("order_pkg", request.param)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def stencil_ref(u: np.ndarray, fill: float) -> np.ndarray:
    ref = np.full(u.shape, fill, dtype=np.float32)
    ref[1:-1, 1:-1] = (
        0.25 * (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]) - u[1:-1, 1:-1]
    )
    return ref


# ---------------------------------------------------------------------- the analysis


@pytest.mark.parametrize(
    "kernel,inner,merge",
    [
        ("stencil_ij", 1, True),
        ("stencil_ji", 0, True),
        ("coords_ij", 1, True),
        ("threads_ij", 1, False),
        ("cube_ijk", 2, True),
        ("cube_kji", 0, True),
        ("transpose_ij", 0, True),
        ("matmul_ij", 1, True),
        ("strided_ij", 0, True),  # byte strides: nothing is known unit-stride, x stays
    ],
)
def test_order_follows_memory(kit, tmp_path, kernel, inner, merge):
    """What the analysis picks, read from the lowered body (the entry is built from it)."""
    from llvmlite import ir

    from gpuaot.compiler.targets.cpu import entry
    from gpuaot.compiler.targets.cpu.order import Order

    picked = []
    real = Order.analyse

    def spy(body: ir.Function, hidden: int):
        o = real(body, hidden)
        picked.append((body.name, o))
        return o

    kit.write_package(tmp_path / "order_one", {"kernels.py": SRC})
    mp = pytest.MonkeyPatch()
    mp.setattr(entry.Order, "analyse", staticmethod(spy))
    try:
        from gpuaot.compiler.driver import emit_function

        mp.syspath_prepend(str(tmp_path))
        emit_function(f"order_one.kernels:{kernel}", stage="ir", target="cpu")
    finally:
        mp.undo()
        kit.unload("order_one")
    (o,) = [o for name, o in picked if name.endswith(f"{kernel}.body")]
    assert (o.inner, o.merge) == (inner, merge), o


# ---------------------------------------------------------------------- results


STENCIL_CASES = [
    ((3, 3), (4, 4)),
    ((37, 53), (16, 16)),
    ((64, 130), (5, 3)),
    ((41, 70), (1, 32)),
    ((70, 41), (32, 1)),
    ((129, 33), (256, 1)),
]


@pytest.mark.parametrize("shape,block", STENCIL_CASES)
def test_stencil_both_orders(pkg, shape, block):
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    u = rng.standard_normal(shape, dtype=np.float32)
    ref = stencil_ref(u, -7.0)
    out_ij = np.full(shape, -7.0, dtype=np.float32)
    out_ji = np.full(shape, -7.0, dtype=np.float32)
    # i, j: x follows the rows (shape[0]); j, i: x follows the columns
    pkg.stencil_ij[(_cdiv(shape[0], block[0]), _cdiv(shape[1], block[1])), block](u, out_ij)
    pkg.stencil_ji[(_cdiv(shape[1], block[0]), _cdiv(shape[0], block[1])), block](u, out_ji)
    np.testing.assert_array_equal(out_ij, ref)
    np.testing.assert_array_equal(out_ji, ref)


@pytest.mark.parametrize("shape,block", [((5, 7), (2, 3)), ((17, 9), (4, 4)), ((1, 33), (1, 8))])
def test_stencil_against_simulate(pkg, shape, block):
    rng = np.random.default_rng(shape[1])
    u = rng.standard_normal(shape, dtype=np.float32)
    grid = (_cdiv(shape[0], block[0]), _cdiv(shape[1], block[1]))
    out, sim = (np.full(shape, 3.0, dtype=np.float32) for _ in range(2))
    pkg.stencil_ij[grid, block](u, out)
    pkg.stencil_ij.simulate[grid, block](u, sim)
    np.testing.assert_array_equal(out, sim)


@pytest.mark.parametrize(
    "shape,block,grid_extra",
    [((7, 11), (4, 4), (0, 0)), ((33, 5), (8, 2), (1, 2)), ((1, 1), (3, 5), (2, 0))],
)
def test_coordinates_every_thread(pkg, shape, block, grid_extra):
    """Each element gets its own coordinates, also from grids larger than the array."""
    grid = tuple(_cdiv(s, b) + e for s, b, e in zip(shape, block, grid_extra))
    out = np.full(shape, -1, dtype=np.int64)
    pkg.coords_ij[grid, block](out)
    i, j = np.indices(shape)
    np.testing.assert_array_equal(out, i * 1000 + j)


@pytest.mark.parametrize("shape,block", [((9, 14), (3, 4)), ((16, 16), (16, 16))])
def test_thread_indices_seen_as_they_are(pkg, shape, block):
    grid = (_cdiv(shape[0], block[0]), _cdiv(shape[1], block[1]))
    out, sim = (np.full(shape, -1, dtype=np.int64) for _ in range(2))
    pkg.threads_ij[grid, block](out)
    pkg.threads_ij.simulate[grid, block](sim)
    i, j = np.indices(shape)
    ref = (j % block[1]) * 100 + (j // block[1]) * 10 + (i % block[0])
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(out, sim)


@pytest.mark.parametrize("kernel", ["cube_ijk", "cube_kji"])
@pytest.mark.parametrize("shape,block", [((7, 9, 11), (2, 3, 4)), ((3, 2, 40), (1, 1, 16))])
def test_3d_both_orders(pkg, kernel, shape, block):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape, dtype=np.float32)
    dims = shape if kernel == "cube_ijk" else shape[::-1]
    grid = tuple(_cdiv(s, b) for s, b in zip(dims, block))
    out = np.zeros(shape, dtype=np.float32)
    getattr(pkg, kernel)[grid, block](x, out)
    i, j, k = np.indices(shape)
    ref = x * np.float32(2.0) + (i * 10000 + j * 100 + k).astype(np.float32)
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("shape,block", [((13, 31), (4, 8)), ((64, 3), (16, 16))])
def test_transpose_and_strided(pkg, shape, block):
    rng = np.random.default_rng(shape[0])
    a = rng.standard_normal(shape, dtype=np.float32)
    grid = (_cdiv(shape[0], block[0]), _cdiv(shape[1], block[1]))
    out = np.zeros(shape[::-1], dtype=np.float32)
    pkg.transpose_ij[grid, block](a, out)
    np.testing.assert_array_equal(out, a.T)
    big = rng.standard_normal((shape[0] * 2, shape[1] * 3), dtype=np.float32)
    view = big[::2, ::3]
    res = np.zeros((shape[0] * 2, shape[1]), dtype=np.float32)[::2]
    pkg.strided_ij[grid, block](view, res)
    np.testing.assert_array_equal(res, view + np.float32(1.0))


@pytest.mark.parametrize(
    "n,m,k,block", [(5, 7, 3, (4, 4)), (33, 70, 9, (16, 16)), (64, 17, 40, (1, 64))]
)
def test_matmul_threads_that_loop(pkg, n, m, k, block):
    """Small integers: every product and sum exact in f32, in any order, fused or not."""
    rng = np.random.default_rng(n + m + k)
    A = rng.integers(-8, 8, (n, k)).astype(np.float32)
    B = rng.integers(-8, 8, (k, m)).astype(np.float32)
    C = np.full((n, m), np.nan, dtype=np.float32)
    pkg.matmul_ij[(_cdiv(n, block[0]), _cdiv(m, block[1])), block](A, B, C)
    np.testing.assert_array_equal(C, A @ B)
