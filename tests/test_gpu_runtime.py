"""GPU launches on a real device: results against the CPU backend and numpy.

Marked ``gpu``; skipped cleanly where no CUDA GPU and driver are present (CI never has one).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gpu_support import DeviceArray, requires_gpu

from gpuaot.runtime import bundle as rt_bundle

pytestmark = [pytest.mark.gpu, requires_gpu]
FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture(scope="module")
def pkgs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpurt")
    for name in ("example", "gpu_features"):
        shutil.copytree(FIXTURES / name, root / name, ignore=shutil.ignore_patterns("_gpuaot"))
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "gpuaot.cli",
                "build",
                str(root / name),
                "--cache-dir",
                str(root / "cache"),
                "--json",
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        json.loads(proc.stdout)
    sys.path.insert(0, str(root))
    rt_bundle.forget()
    import example
    import gpu_features

    yield example, gpu_features
    sys.path.remove(str(root))
    rt_bundle.forget()


def test_saxpy_gpu_matches_cpu_and_numpy(pkgs):
    example, _ = pkgs
    rng = np.random.default_rng(0)
    n = 100_003
    x, y = rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32)
    dx, dy, dout = DeviceArray(x), DeviceArray(y), DeviceArray(np.zeros(n, np.float32))
    example.saxpy[(n + 255) // 256, 256](np.float32(2.5), dx, dy, dout)
    cpu = np.zeros(n, np.float32)
    example.saxpy[(n + 255) // 256, 256](np.float32(2.5), x, y, cpu)
    np.testing.assert_array_equal(dout.get(), cpu)
    np.testing.assert_array_equal(cpu, np.float32(2.5) * x + y)


def test_matmul_and_stencil_gpu_match_cpu(pkgs):
    example, _ = pkgs
    rng = np.random.default_rng(1)
    a, b = rng.random((130, 70), dtype=np.float32), rng.random((70, 90), dtype=np.float32)
    dc = DeviceArray(np.zeros((130, 90), np.float32))
    example.matmul[(9, 6), (16, 16)](DeviceArray(a), DeviceArray(b), dc)
    c = np.zeros((130, 90), np.float32)
    example.matmul[(9, 6), (16, 16)](a, b, c)
    np.testing.assert_array_equal(dc.get(), c)
    u = rng.random((200, 300), dtype=np.float32)
    ds = DeviceArray(np.zeros_like(u))
    example.stencil5[(19, 13), (16, 16)](DeviceArray(u), ds)
    s = np.zeros_like(u)
    example.stencil5[(19, 13), (16, 16)](u, s)
    np.testing.assert_array_equal(ds.get(), s)


def test_transcendentals_within_tolerance(pkgs):
    example, _ = pkgs
    rng = np.random.default_rng(2)
    w, s = rng.standard_normal((64, 48), dtype=np.float32), rng.random(64, dtype=np.float32)
    d = DeviceArray(np.zeros_like(w))
    example.scale_rows[(4, 3), (16, 16)](DeviceArray(w), DeviceArray(s), d)
    np.testing.assert_allclose(d.get(), np.log1p(np.exp(w * s[:, None])), rtol=2e-6, atol=1e-6)


def test_block_reduction_with_shared_memory(pkgs):
    _, g = pkgs
    x = np.random.default_rng(3).random(128 * 40, dtype=np.float32)
    out = DeviceArray(np.zeros(40, np.float32))
    g.block_sum[40, 128](DeviceArray(x), out)
    np.testing.assert_allclose(out.get(), x.reshape(40, 128).sum(axis=1), rtol=1e-5)


def test_warp_shuffle_sum(pkgs):
    _, g = pkgs
    x = np.random.default_rng(4).random(32 * 16, dtype=np.float32)
    out = DeviceArray(np.zeros(16, np.float32))
    g.warp_sum[4, 128](DeviceArray(x), out)
    np.testing.assert_allclose(out.get(), x.reshape(16, 32).sum(axis=1), rtol=1e-5)


def test_histogram_with_atomics(pkgs):
    _, g = pkgs
    data = np.random.default_rng(5).integers(0, 10_000, 200_000).astype(np.int32)
    bins = DeviceArray(np.zeros(64, np.int64))
    g.histogram[32, 256](DeviceArray(data), bins)
    np.testing.assert_array_equal(bins.get(), np.bincount(data % 64, minlength=64))


def test_device_exception_names_site_thread_and_block(pkgs):
    _, g = pkgs
    x = np.ones(1000, np.float32)
    x[777] = -1.0  # block 6 (of 128 threads), thread 9
    with pytest.raises(ValueError) as info:
        g.check_positive[8, 128](DeviceArray(x), DeviceArray(np.zeros_like(x)))
    msg = str(info.value)
    assert "x must be non-negative" in msg
    assert "gpu_features.kernels.check_positive" in msg and "gpu_features/kernels.py:" in msg
    assert "thread (9, 0, 0)" in msg and "block (6, 0, 0)" in msg
    # The record is cleared per launch: a clean launch after a failing one raises nothing.
    x[777] = 1.0
    out = DeviceArray(np.zeros_like(x))
    g.check_positive[8, 128](DeviceArray(x), out)
    np.testing.assert_allclose(out.get(), np.sqrt(x), rtol=1e-7)


def test_launch_on_a_stream(pkgs):
    from cuda.bindings import driver

    example, _ = pkgs
    err, stream = driver.cuStreamCreate(0)
    assert int(err) == 0
    n = 4096
    x = np.arange(n, dtype=np.float32)
    d = DeviceArray(np.zeros(n, np.float32))
    example.saxpy[n // 256, 256, stream](np.float32(1), DeviceArray(x), DeviceArray(x), d)
    driver.cuStreamSynchronize(stream)
    np.testing.assert_array_equal(d.get(), 2 * x)
    driver.cuStreamDestroy(stream)
