"""The CPU launch hand-off to helper threads, against numpy: many launches from two Python
threads at once, privatised atomics from two threads, a launch in a forked child, and helpers
that stop using CPU time once launches stop.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from test_cpu_order import built_package

SRC = """
import gpuaot as ga
from gpuaot import Array, i32, i64


@ga.kernel
def affine(x: Array[i64], a: i64, out: Array[i64]):
    i = ga.grid(1)
    if i < x.shape[0]:
        out[i] = x[i] * a + i


@ga.kernel
def histogram(k: Array[i32], counts: Array[i32]):
    i = ga.grid(1)
    if i < k.shape[0]:
        ga.atomic_add(counts, k[i], i32(1))
"""


@pytest.fixture(scope="module")
def kernels(kit, tmp_path_factory):
    yield from built_package(kit, tmp_path_factory, "launch_pkg", SRC)


@pytest.fixture
def hand_off(monkeypatch):
    """Two workers: the launching thread and one helper."""
    monkeypatch.setenv("GPUAOT_NUM_THREADS", "2")


def _affine(kernels, x, a):
    out = np.empty_like(x)
    kernels.affine[-(-x.size // 256), 256](x, np.int64(a), out)
    return out


def test_many_launches_from_two_threads_are_exact(kernels, hand_off):
    x = np.arange(1 << 18, dtype=np.int64) * 3 - 7
    idx = np.arange(x.size, dtype=np.int64)
    errors = []

    def launcher(seed: int) -> None:
        try:
            for k in range(150):
                a = seed * 1000 + k
                np.testing.assert_array_equal(_affine(kernels, x, a), x * a + idx)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=launcher, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[0]


def test_privatised_atomics_from_two_threads_are_exact(kernels, hand_off):
    rng = np.random.default_rng(3)
    k = rng.integers(0, 97, 1 << 17, dtype=np.int32)
    want = np.bincount(k, minlength=97).astype(np.int32)
    errors = []

    def launcher() -> None:
        try:
            for _ in range(40):
                counts = np.zeros(97, np.int32)
                kernels.histogram[-(-k.size // 256), 256](k, counts)
                np.testing.assert_array_equal(counts, want)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=launcher) for _ in range(2)]  # (queued, kicked)
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[0]


def test_a_launch_after_fork(kernels, hand_off):
    x = np.arange(1 << 18, dtype=np.int64)
    np.testing.assert_array_equal(_affine(kernels, x, 5), x * 6)  # helpers running
    pid = os.fork()
    if pid == 0:  # the child: the parent's helpers do not exist here
        ok = False
        try:
            ok = all(np.array_equal(_affine(kernels, x, a), x * (a + 1)) for a in range(20))
            ok = ok and threading.active_count() >= 2  # new helpers started
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    np.testing.assert_array_equal(_affine(kernels, x, 7), x * 8)


def _helper_cpu_ns() -> int:
    ids = [t.ident for t in threading.enumerate() if t.name.startswith("gpuaot-")]
    assert ids
    return sum(time.clock_gettime_ns(time.pthread_getcpuclockid(i)) for i in ids)


def test_helpers_go_idle(kernels, hand_off):
    x = np.arange(1 << 18, dtype=np.int64)
    outs = [np.empty_like(x) for _ in range(50)]
    launch = kernels.affine[x.size // 256, 256]
    for a, out in enumerate(outs):  # back to back (checking takes longer than a spin)
        launch(x, np.int64(a), out)
    for a, out in enumerate(outs):
        np.testing.assert_array_equal(out, x * (a + 1))
    time.sleep(0.05)
    before = _helper_cpu_ns()
    time.sleep(0.3)
    # a helper spinning would have used about 300 ms; blocked, none (a few µs of wake-ups)
    assert _helper_cpu_ns() - before < 20_000_000
