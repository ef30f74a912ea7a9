"""The default bundle on other x86-64 CPUs, for real: ``qemu-x86_64 -cpu MODEL`` runs this
venv's Python with the CPUID of an older CPU, and traps any instruction that CPU lacks.

* Nehalem (x86-64-v2) and Haswell (x86-64-v3): every kernel and host function of
  fixtures/example matches numpy, and the variant bound is that CPU's level.
* core2duo (below v2): the first launch and the first host call raise the clear error and
  the process exits normally. numpy >= 2 itself needs x86-64-v2 (it dies with SIGILL before
  gpuaot runs there), so that run uses numpy 1.26, installed beside the venv for it.
* The control: the v3 variant forced past the check under Nehalem dies with SIGILL, so the
  qemu models do enforce their instruction sets and the runs above mean something.

``.ci/run`` installs qemu-user; without it these tests skip.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cpu_levels_kit import run_check, run_script

from gpuaot.bundle import cpus

QEMU = shutil.which("qemu-x86_64")
pytestmark = [
    pytest.mark.skipif(cpus.machine() != "x86_64", reason="x86-64 CPU models"),
    pytest.mark.skipif(QEMU is None, reason="qemu-user is not installed (.ci/run installs it)"),
]


@pytest.fixture(scope="module")
def example(built):
    return built("example")


def qemu(model: str) -> list[str]:
    return [QEMU, "-cpu", model]


@pytest.mark.parametrize("model, level", [("Nehalem", "x86-64-v2"), ("Haswell", "x86-64-v3")])
def test_an_older_cpu_runs_its_level_and_matches_numpy(example, model, level):
    r = run_check(example.root.parent, prefix=qemu(model))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"level {level}\n" in r.stdout and "ok 7/7" in r.stdout, r.stdout


def test_pinning_a_level_this_cpu_lacks_is_a_clear_error(example):
    r = run_check(example.root.parent, {"GPUAOT_CPU": "x86-64-v4"}, prefix=qemu("Haswell"))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "GPUAOT_CPU=x86-64-v4: this CPU cannot run that variant of the example bundle" in (
        r.stdout
    )
    assert "this CPU is x86-64-v3; it lacks avx512bw, avx512cd, avx512dq, avx512f, avx512vl" in (
        r.stdout
    )


def test_a_native_bundle_on_an_older_cpu_is_a_clear_error(kit, tmp_path):
    root = kit.copy_package(kit.FIXTURES / "example", tmp_path / "src")
    from gpuaot.compiler.driver import BuildOptions, build_package

    build_package(
        BuildOptions.resolve(
            str(root), no_gpu=True, cpu_levels="native", cache_dir=str(tmp_path / "cache")
        )
    )
    r = run_check(root.parent, prefix=qemu("Nehalem"))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "has no CPU variant this CPU can run: it holds native; this CPU is x86-64-v2" in (
        r.stdout
    )


@pytest.fixture(scope="module")
def numpy_1_26() -> Path:
    """numpy 1.26 (baseline SSE3) in a directory of its own beside the venv."""
    target = Path(sys.prefix) / "gpuaot-test-numpy-1.26"
    if not (target / "numpy" / "__init__.py").is_file():
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--target",
                str(target),
                "numpy==1.26.4",
            ],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            pytest.skip(f"cannot install numpy 1.26 for the core2duo run: {r.stderr[-300:]}")
    return target


def test_below_every_level_raises_and_exits_normally(example, numpy_1_26):
    r = run_check(example.root.parent, prefix=qemu("core2duo"), pythonpath=[numpy_1_26])
    assert r.returncode == 3, (r.returncode, r.stdout + r.stderr)  # not a signal
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("unsupported: ")]
    assert len(lines) == 2, r.stdout  # the launch, then the host call
    for ln in lines:
        assert (
            "the example bundle has no CPU variant this CPU can run: it holds x86-64-v2, "
            "x86-64-v3, x86-64-v4; this CPU is x86-64 (it lacks popcnt, sse4.1, sse4.2)" in ln
        )
        assert "gpuaot build example --cpu x86-64," in ln


_FORCE_V3 = """
import numpy as np, example
import gpuaot.runtime.cpu_variant as cv
cv.choose = lambda *a: "x86-64-v3"   # past the check: what every bundle did before
x = np.ones(64, np.float32)
example.saxpy[1, 64](np.float32(2), x, x, x)
print("ran")
"""


def test_control_the_v3_code_really_traps_on_nehalem(example):
    script = example.root.parent / "force_v3.py"
    script.write_text(_FORCE_V3)
    r = run_script(example.root.parent, script, prefix=qemu("Nehalem"))
    assert r.returncode == -signal.SIGILL, (r.returncode, r.stdout, r.stderr[-500:])
