"""The GPU-only ops added as declarations (syncthreads_count/and/or) and the fences, end to end
without a GPU: ptxas assembles them for every default architecture, the PTX holds the PTX
instructions they promise (read from ptxas's input, not from our IR), the CPU build records
the kernel as GPU-only with the reason, and ``simulate`` gives numpy's answer.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from gpuaot.cli import main

ARCHS = ["sm_75", "sm_80", "sm_90"]
SOURCE = """\
import gpuaot as ga
from gpuaot import Array, f32, i32, u32


@ga.kernel
def votes(x: Array[f32], out: Array[i32]):
    i = ga.grid(1)
    v = x[i] if i < x.shape[0] else 0.0
    n = ga.syncthreads_count(v > 0.0)
    a = ga.syncthreads_and(v > -5.0)
    o = ga.syncthreads_or(v > 100.0)
    if i < x.shape[0]:
        out[3 * i] = n
        out[3 * i + 1] = a
        out[3 * i + 2] = o


@ga.kernel
def fenced(x: Array[u32], out: Array[u32]):
    i = ga.grid(1)
    if i < out.shape[0]:
        out[i] = ga.atomic_inc(x, 0, u32(7))
        ga.threadfence()
        ga.threadfence_block()
        ga.threadfence_system()
"""


@pytest.fixture(scope="module")
def gpu_pkg(tmp_path_factory):
    from gpuaot.compiler.driver import BuildOptions, build_package

    if shutil.which("ptxas") is None:
        pytest.skip("ptxas not found")
    root = tmp_path_factory.mktemp("gpuonly")
    pkg = root / "gpuonly"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .mod import fenced, votes\n")
    (pkg / "mod.py").write_text(SOURCE)
    result = build_package(BuildOptions.resolve(str(pkg), cache_dir=str(root / "cache")))
    return root, pkg, result


def test_ptxas_assembles_them_for_every_default_arch(gpu_pkg):
    _, _, result = gpu_pkg
    m = result.manifest
    specs = {k["name"]: k["specializations"] for k in m["kernels"]}
    assert set(specs) == {"votes", "fenced"}
    assert len(m["images"]) == 2
    for img in m["images"]:
        assert sorted((e["kind"], e["arch"]) for e in img["entries"]) == sorted(
            [("elf", a) for a in ARCHS] + [("ptx", "sm_75")]
        )
    # syncthreads_* have no CPU meaning: that kernel runs on the GPU only; fences have one.
    (votes,) = specs["votes"]
    assert votes["gpu_only"] == (
        "gpuonly/mod.py:9:9: 'syncthreads_count' has no CPU implementation; "
        "in kernel 'gpuonly.mod.votes'"
    )
    assert not votes["cpu"] and votes["gpu"] is not None
    assert [(bool(s["cpu"]), s["gpu_only"]) for s in specs["fenced"]] == [(True, None)]


@pytest.mark.parametrize(
    "fn,wanted",
    [
        ("votes", ["bar.red.popc.u32", "bar.red.and.pred", "bar.red.or.pred"]),
        ("fenced", ["membar.gl;", "membar.cta;", "membar.sys;", "atom.global.inc.u32"]),
    ],
)
def test_the_ptx_has_the_instructions(gpu_pkg, monkeypatch, fn, wanted):
    root, _, _ = gpu_pkg
    monkeypatch.chdir(root)
    result = CliRunner().invoke(
        main, ["emit", f"gpuonly.mod:{fn}", "--stage", "ptx", "--target", "sm_75"]
    )
    assert result.exit_code == 0, result.output
    for w in wanted:
        assert w in result.output, w


def test_a_cpu_build_says_why_votes_are_gpu_only(gpu_pkg, monkeypatch):
    root, _, _ = gpu_pkg
    monkeypatch.chdir(root)
    result = CliRunner().invoke(main, ["emit", "gpuonly.mod:votes", "--stage", "ir"])
    assert result.exit_code == 2
    assert "gpuonly/mod.py:9:9: error: 'syncthreads_count' has no CPU implementation" in (
        result.output
    )
    assert "Traceback" not in result.output


def test_simulate_votes_per_block(gpu_pkg, kit, monkeypatch):
    root, pkg, _ = gpu_pkg
    mod = kit.import_package(pkg, monkeypatch)
    try:
        x = np.array([1.0, -1.0, 2.0, 0.0, 3.0, -6.0, 200.0, 1.0, -1.0, 1.0], np.float32)
        out = np.full(30, -9, np.int32)
        mod.votes.simulate[3, 4](x, out)  # 12 threads; blocks of 4, the last half outside x
        got = out.reshape(10, 3)
        for b in range(3):
            v = np.concatenate([x, np.zeros(2, np.float32)])[4 * b : 4 * b + 4]
            want = [np.count_nonzero(v > 0), int(np.all(v > -5)), int(np.any(v > 100))]
            for i in range(4 * b, min(4 * b + 4, 10)):
                assert got[i].tolist() == want, (b, i)
        counter = np.zeros(1, np.uint32)
        olds = np.zeros(20, np.uint32)
        mod.fenced.simulate[5, 4](counter, olds)
        assert counter[0] == 20 % 8
        assert sorted(olds.tolist()) == sorted(k % 8 for k in range(20))
    finally:
        kit.unload("gpuonly")
