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


@ga.kernel
def bump(out: Array[i64]):
    i = ga.grid(1)
    if i < out.shape[0]:
        out[i] += 1


@ga.kernel
def checked(x: Array[i64], out: Array[i64]):
    i = ga.grid(1)
    if i < x.shape[0]:
        if x[i] < 0:
            raise ValueError("negative input")
        out[i] = x[i] * 2
"""


@pytest.fixture(scope="module")
def kernels(kit, tmp_path_factory):
    yield from built_package(kit, tmp_path_factory, "launch_pkg", SRC)


@pytest.fixture(params=["pool", "queue"])
def hand_off(monkeypatch, request):
    """Two workers: the launching thread and one helper, of the bundle's native pool or (as
    for a bundle from before it, or while another thread's launch holds it) the queued ones."""
    from gpuaot.runtime import cpu

    monkeypatch.setenv("GPUAOT_NUM_THREADS", "2")
    if request.param == "queue":
        monkeypatch.setattr(cpu, "native_pool", lambda lib: None)


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


@pytest.mark.parametrize("threads", ["2", "3", "7"])
def test_every_block_runs_exactly_once(kernels, hand_off, monkeypatch, threads):
    """However a launch is cut into jobs (the pool's guided runs, the queued shares), each
    block runs once: ``out[i] += 1`` leaves 1 everywhere, 0 or 2 where it did not."""
    from gpuaot.runtime import cpu

    monkeypatch.setenv("GPUAOT_NUM_THREADS", threads)
    monkeypatch.setattr(cpu, "_PARALLEL_NS", 0)  # split every launch of two blocks or more
    for blocks in [*range(1, 40), 63, 64, 65, 127, 255, 256, 257, 1000, 4097]:
        for per in (1, 32):
            out = np.zeros(blocks * per, np.int64)
            kernels.bump[blocks, per](out)
            assert (out == 1).all(), (blocks, per, np.flatnonzero(out != 1)[:10])


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


# ---------------------------------------------------------------------- the native pool
#
# Each stress test runs in a child process with a time limit: a hand-off that hangs fails
# the test instead of hanging the suite. In the child every launch of more than one block is
# split over the threads (``_PARALLEL_NS = 0``), however small.

STRESS = """
import os, sys, threading
import numpy as np
sys.path.insert(0, sys.argv[1])
import launch_pkg.kernels as K
from gpuaot.runtime import cpu, pool
cpu._PARALLEL_NS = cpu._PARALLEL_THREADS = 0

def affine(n, a):
    x = np.arange(n, dtype=np.int64) - 5
    out = np.full_like(x, -1)
    K.affine[-(-n // 32), 32](x, np.int64(a), out)
    assert np.array_equal(out, x * a + np.arange(n)), (n, a)

def checked(n, bad):
    x = np.arange(n, dtype=np.int64)
    if bad is not None:
        x[bad] = -1
    out = np.zeros_like(x)
    try:
        K.checked[-(-n // 32), 32](x, out)
    except ValueError as e:
        assert bad is not None and "negative input" in str(e), e
    else:
        assert bad is None and np.array_equal(out, x * 2), (n, bad)

def histogram(n):
    k = (np.arange(n, dtype=np.int32) * 7) % 61
    counts = np.zeros(61, np.int32)
    K.histogram[-(-n // 256), 256](k, counts)
    assert np.array_equal(counts, np.bincount(k, minlength=61)), n

def mixed(seed, launches):
    rng = np.random.default_rng(seed)
    for j in range(launches):
        n = int(rng.integers(1, 3000))
        kind = j % 4
        if kind == 0:
            affine(n, j)
        elif kind == 1:  # a block raises, mid-launch, on whichever thread runs it
            checked(n, int(rng.integers(0, n)))
        elif kind == 2:
            checked(n, None)
        else:
            histogram(n * 20)

mode, count = sys.argv[2], int(sys.argv[3])
errors = []
def run(seed):
    try:
        mixed(seed, count)
    except BaseException as e:
        errors.append(repr(e))
daemon = mode == "exit"  # the interpreter exits while they launch
threads = [threading.Thread(target=run, args=(s,), daemon=daemon)
           for s in range(1 if mode == "one" else 4)]
for t in threads:
    t.start()
if daemon:
    import time
    time.sleep(0.5)
else:
    for t in threads:
        t.join()
assert not errors, errors[0]
p = pool._pool
assert p is not None and p.count >= 1, "the launches did not reach the native pool"
print("ok", p.count, flush=True)
"""


def _stress(kernels, tmp_path, threads: str, mode: str, count: int, timeout: float = 120):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(kernels.__file__).resolve().parent.parent  # launch_pkg's parent
    script = tmp_path / "stress.py"
    script.write_text(STRESS)
    env = {**os.environ, "GPUAOT_NUM_THREADS": threads}
    env.pop("GPUAOT_BUNDLE_PATH", None)
    try:
        proc = subprocess.run(
            [sys.executable, str(script), str(root), mode, str(count)],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{count} launches ({threads} threads, {mode}) hung past {timeout} s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok"), proc.stdout


def test_thousands_of_tiny_launches_on_16_workers(kernels, tmp_path):
    _stress(kernels, tmp_path, "16", "one", 3000)


def test_tiny_launches_from_four_threads_with_raises(kernels, tmp_path):
    _stress(kernels, tmp_path, "2", "four", 800)


def test_four_threads_on_16_workers(kernels, tmp_path):
    _stress(kernels, tmp_path, "16", "four", 300)


@pytest.mark.parametrize("threads", ["2", "16"])
def test_exit_while_four_threads_launch(kernels, tmp_path, threads):
    _stress(kernels, tmp_path, threads, "exit", 10**6, timeout=60)
