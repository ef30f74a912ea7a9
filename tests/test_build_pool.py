"""One pool of worker processes per build (``jobs.Workers``), and what it must not change.

Every target queues its compiles on the build's one pool (``Target.start``) before any of
them is waited for; the cache is read and written in the main process, one entry per job.
The oracles: the bytes of a ``--jobs 1`` build (no pool at all), the process ids that ran
the jobs, the cache's own entries, and a CPU object compiled in a fresh interpreter.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from gpuaot.bundle import cpus
from gpuaot.compiler.cache import Cache
from gpuaot.compiler.driver import BuildOptions, build_package
from gpuaot.compiler.jobs import Job, Workers, cached_stage, start_stage
from gpuaot.compiler.targets.base import BuildContext
from gpuaot.errors import BuildError

X86 = cpus.machine() == "x86_64"


def _pid_after(delay: float) -> int:
    time.sleep(delay)
    return os.getpid()


def _fail(x: int) -> int:
    raise BuildError(f"job {x} failed")


def _text(x: int) -> str:
    return f"out {x}"


def test_one_job_runs_here_and_jobs_1_never_starts_a_pool():
    with Workers(4) as w:
        assert [f.result() for f in w.submit(_pid_after, [0])] == [os.getpid()]
        assert w.size == 0
    with Workers(1) as w:
        assert {f.result() for f in w.submit(_pid_after, [0, 0, 0])} == {os.getpid()}
        assert w.size == 0


FORK = multiprocessing.get_start_method() == "fork"
_MEET: dict = {}  # parties -> a barrier, made before the workers fork (they inherit it)


def _meet(parties: int) -> int:
    """Return this process's id once ``parties`` processes are in here at once."""
    _MEET[parties].wait(timeout=120)
    return os.getpid()


@pytest.mark.skipif(not FORK, reason="the workers inherit the barriers where they fork")
def test_two_workers_run_at_once_and_later_batches_reuse_them():
    """``--jobs 2``: two processes, neither this one, run jobs at the same time (a job
    returns only when both are in it); a second batch (the next stage or target) runs on the
    same two processes, not on new ones."""
    _MEET[2] = multiprocessing.Barrier(2)
    with Workers(2) as w:
        first = [f.result() for f in w.submit(_meet, [2] * 4)]
        second = [f.result() for f in w.submit(_meet, [2] * 2)]
        assert w.size == 2
    assert os.getpid() not in first and len(set(first)) == 2
    assert set(second) == set(first)


@pytest.mark.skipif(not FORK, reason="the workers inherit the barriers where they fork")
def test_workers_are_as_many_as_the_largest_batch_can_use():
    """A small first batch (a warm build) forks few workers on a machine with many cores;
    a larger one later adds workers, up to ``jobs``, and all of them run it at once."""
    _MEET[2], _MEET[4] = multiprocessing.Barrier(2), multiprocessing.Barrier(4)
    with Workers(4) as w:
        first = {f.result() for f in w.submit(_meet, [2] * 2)}
        assert w.size == 2 and len(first) == 2
        later = {f.result() for f in w.submit(_meet, [4] * 4)}
        assert w.size == 4 and len(later) == 4 and first < later
        assert {f.result() for f in w.submit(_pid_after, [0] * 8)} <= later  # no more


def test_a_failing_job_raises_its_error_when_waited_for(tmp_path):
    ctx = BuildContext(Cache(tmp_path), jobs=2)
    with Workers(2) as ctx.workers:
        pending = start_stage(ctx, _fail, [Job("ns", f"p{k}", {}, k) for k in range(3)])
        with pytest.raises(BuildError, match="job 0 failed"):
            pending.wait()
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing cached


def test_a_stage_caches_one_entry_per_job_with_or_without_the_pool(tmp_path):
    work = [Job("ns", f"payload {k}", {"o": 1}, k) for k in range(5)]
    for jobs, workers in ((1, None), (2, None), (2, Workers(2))):
        cache = Cache(tmp_path / f"c{jobs}{workers is not None}")
        ctx = BuildContext(cache, jobs, workers=workers)
        done = cached_stage(ctx, _text, work)
        assert done.outputs == [f"out {k}".encode() for k in range(5)] and done.compiled == 5
        assert len([p for p in cache.root.rglob("*") if p.is_file()]) == 5
        again = cached_stage(ctx, _text, [*work, Job("ns", "payload 5", {"o": 1}, 5)])
        assert again.fresh == {5} and again.outputs[5] == b"out 5"  # only the new job runs
        if workers is not None:
            workers.close()


@pytest.fixture
def example(kit, tmp_path):
    return kit.copy_package(kit.FIXTURES / "example", tmp_path / "src")


def _options(root, tmp_path, name: str, **kw) -> BuildOptions:
    return BuildOptions.resolve(
        str(root), out_dir=str(tmp_path / f"out-{name}"), cache_dir=str(tmp_path / name), **kw
    )


def test_one_pool_per_build_and_the_same_bytes_as_jobs_1(example, tmp_path, monkeypatch):
    """A cold CPU + GPU build (three CPU levels, three architectures) starts one pool for
    every stage of both targets, and writes the bundle a build without a pool writes."""
    pools = []
    real = concurrent.futures.ProcessPoolExecutor

    class Counted(real):
        def __init__(self, *a, **kw):
            pools.append(self)
            super().__init__(*a, **kw)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Counted)
    serial = build_package(_options(example, tmp_path, "serial", jobs=1))
    assert pools == []
    pooled = build_package(_options(example, tmp_path, "pooled", jobs=2))
    assert len(pools) == 1
    assert serial.compiled == pooled.compiled > 0 and pooled.cached == 0
    assert pooled.bundle.read_bytes() == serial.bundle.read_bytes()


def test_a_worker_error_fails_the_build_cleanly(example, tmp_path, monkeypatch):
    """ptxas failing in a worker is the build's BuildError (workers are forked: they see the
    patched function), and the pool is gone afterwards."""
    from gpuaot.compiler.targets import nvtools

    def broken(ptx, arch, **kw):
        raise BuildError(f"ptxas failed for {arch}: simulated")

    monkeypatch.setattr(nvtools, "ptx_to_cubin", broken)
    if multiprocessing.get_start_method() != "fork":
        pytest.skip("workers see the patched function only where they are forked")
    with pytest.raises(BuildError, match="simulated"):
        build_package(_options(example, tmp_path, "broken", jobs=2))
    assert multiprocessing.active_children() == []  # the pool's workers are joined


_FRESH_OBJECT = """
import sys
from gpuaot.compiler.targets import cpu_variant
from gpuaot.compiler.targets.cpu.target import compile_variant
from gpuaot.bundle import cpus
ir = open(sys.argv[1]).read()
v = cpu_variant.resolve([cpus.level(sys.argv[2], cpus.machine())])[0]
sys.stdout.buffer.write(compile_variant((ir, v)))
"""


@pytest.mark.skipif(not X86, reason="the default x86-64 levels")
def test_a_reused_target_machine_gives_a_fresh_processes_object(kit, tmp_path):
    """A worker compiles many units with one target machine per level (``cpu_variant``'s
    cache), after NVPTX jobs too (LLVM options set process-wide): each object is the one a
    fresh interpreter compiles from that unit alone."""
    from gpuaot.compiler.discover import discover
    from gpuaot.compiler.driver import type_units
    from gpuaot.compiler.targets import cpu_variant, nvtools
    from gpuaot.compiler.targets.cpu.target import CPUTarget, compile_variant
    from gpuaot.compiler.targets.gpu.build import _ptx_job
    from gpuaot.errors import Diagnostics

    try:
        nvtools.find_libdevice()
    except BuildError:
        pytest.skip("no nvcc wheel: no NVPTX job to run first")
    root = kit.copy_package(kit.FIXTURES / "example", tmp_path / "src")
    opts = BuildOptions.resolve(str(root), no_gpu=True, cache_dir=str(tmp_path / "c"))
    target = CPUTarget.from_options(opts)
    diag = Diagnostics()
    units, _ = type_units(discover(str(root), diag), opts, target, diag)
    for u in units:
        target.lower(u)
    level = target.variants[-1]
    last = units[-1]
    path = tmp_path / "unit.ll"
    path.write_text(last.ir)
    fresh = subprocess.run(
        [sys.executable, "-c", _FRESH_OBJECT, str(path), level.level],
        capture_output=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    for u in units:  # the worker's history: every other unit, every level, some PTX
        for v in target.variants:
            compile_variant((u.ir, v))
    gpu = _gpu_unit(root, opts)
    _ptx_job((gpu.ir, gpu.symbol, "sm_75", False))
    assert cpu_variant.variant_machine(level) is cpu_variant.variant_machine(level)  # reused
    assert compile_variant((last.ir, level)) == fresh


def _gpu_unit(root, opts):
    from gpuaot.compiler.discover import discover
    from gpuaot.compiler.driver import type_units
    from gpuaot.compiler.targets.gpu.build import NVPTXTarget
    from gpuaot.errors import Diagnostics

    diag = Diagnostics()
    units, _ = type_units(discover(str(root), diag), opts, NVPTXTarget, diag)
    NVPTXTarget(["sm_75"]).lower(units[0])
    return units[0]
