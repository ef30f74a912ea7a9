"""The two-phase GPU check (bench/gpu_bundles.py here, bench/gpu_check.py on a GPU machine).

Here: phase 1 builds everything into a folder; phase 2 exits 77 with one line where there is no
GPU (and runs for real, all cases passing, where there is one); its ``--dry-run-cpu`` self-test
replays every recorded conformance case through the harness on the CPU backend — all pass,
and a corrupted expected value fails — so a device run is not spent on a harness bug.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpuaot.runtime.devicearray import cuda_unavailable

REPO = Path(__file__).resolve().parents[1]


def _run(*args, cwd=REPO, timeout=600):
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def gpu_check(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    r = _run(REPO / "bench" / "gpu_bundles.py", out)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_phase_one_builds_every_package_and_records_the_cases(gpu_check):
    for pkg in ("conformance", "gpu_features", "example", "kernels_pkg"):
        (bundle,) = (gpu_check / "pkgs" / pkg / "_gpuaot").glob("*.gpuaot.so")
        assert bundle.stat().st_size > 0
    (jit,) = (gpu_check / "jit" / "example_jit" / "_gpuaot").glob("*.so")
    from gpuaot.bundle.inspect import read_bundle_manifest

    m = read_bundle_manifest(str(jit))
    assert m["architectures"] == ["sm_75"] and m["ptx_arch"] == "sm_75"
    cases = json.loads((gpu_check / "cases.json").read_text())
    assert len([c for c in cases if "skip" not in c]) >= 100
    assert not (gpu_check / "cache").exists()  # only what the GPU side needs
    text = (gpu_check / "cases.json").read_text()
    assert str(REPO) not in text and "/tmp/" not in text


def test_phase_two_without_a_gpu_exits_77_at_once(gpu_check):
    r = _run(REPO / "bench" / "gpu_check.py", gpu_check, timeout=900)
    if cuda_unavailable() is None:  # a GPU machine: the real run
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
        m = re.search(r"^gpu-check: (\d+)/(\d+) passed$", r.stdout, re.M)
        assert m and m.group(1) == m.group(2), r.stdout[-2000:]
        return
    assert r.returncode == 77, r.stdout + r.stderr
    assert r.stdout.startswith("gpu-check: skipped: ") and r.stdout.count("\n") == 1


def test_dry_run_replays_every_case_and_a_wrong_expectation_fails(gpu_check, tmp_path):
    r = _run(REPO / "bench" / "gpu_check.py", gpu_check, "--dry-run-cpu")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    m = re.search(r"dry run \(CPU backend, not a GPU result\): (\d+)/(\d+) passed", r.stdout)
    assert m and m.group(1) == m.group(2) and int(m.group(2)) >= 100
    # Corrupt one expected array: the harness must notice.
    data = dict(np.load(gpu_check / "cases.npz"))
    key = next(k for k in data if "/expected/" in k and data[k].dtype.kind == "f")
    data[key] = data[key] + 1
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("cases.json", "features.json", "pkgs", "jit"):
        (bad / name).symlink_to(gpu_check / name)
    np.savez_compressed(bad / "cases.npz", **data)
    r = _run(REPO / "bench" / "gpu_check.py", bad, "--dry-run-cpu")
    assert r.returncode == 1
    assert len(re.findall(r"^FAIL dry-run/", r.stdout, re.M)) == 1, r.stdout[-2000:]


# Where the language suites of fixtures/conformance/lang_*.py not in cases.json are recorded.
RECORDED_ELSEWHERE = {"lang_complex": "complex.json"}


def _kernels_of(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text())
    return {
        n.name
        for n in tree.body
        if isinstance(n, ast.FunctionDef)
        and any("kernel" in ast.unparse(d) for d in n.decorator_list)
    }


def test_every_language_kernel_is_recorded_with_its_expectations(gpu_check):
    """Every kernel of fixtures/conformance/lang_*.py is a recorded case (with the suites'
    case ids), found where the GPU side looks for it, with its state and expected arrays in
    cases.npz (dtypes kept: f16 stays float16) and a raise's class, module and message."""
    import test_lang_arrays
    import test_lang_f16
    import test_lang_helpers

    cases = json.loads((gpu_check / "cases.json").read_text())
    data = np.load(gpu_check / "cases.npz")
    by_id = {c["id"]: c for c in cases}
    assert len(by_id) == len(cases)  # ids are unique
    suites = {
        "lang_arrays": "",
        "lang_f16": "",
        "lang_helpers": "lang_helpers",
        "lang_exc": "lang_exc",
    }
    for path in sorted((REPO / "fixtures" / "conformance").glob("lang_*.py")):
        if path.stem in RECORDED_ELSEWHERE:
            assert (gpu_check / RECORDED_ELSEWHERE[path.stem]).is_file(), path.stem
            continue
        assert path.stem in suites, f"{path.name}: a language suite the device check lacks"
        module = suites[path.stem]
        recorded = {c["fn"] for c in cases if c.get("module", "") == module}
        assert _kernels_of(path) <= recorded, path.stem
    ids = {c.id for c in test_lang_arrays.CASES + test_lang_f16.CASES}
    ids |= {f"lang_helpers/{c.fn}" for c in test_lang_helpers.CASES}
    ids |= {f"lang_exc/raise_own-mode{m}" for m in range(6)} | {"lang_exc/assert_const"}
    assert ids <= set(by_id)
    for c in cases:
        if c["id"] not in ids and not c["id"].startswith("round_raises"):
            continue
        n = c["index"]
        for key in c["state"]:
            assert f"c{n}/state/{key}" in data, (c["id"], key)
        for key in c["expected"]:
            want = data[f"c{n}/expected/{key}"]
            assert want.shape == data[f"c{n}/state/{key}"].shape, (c["id"], key)
        if c["raises"]:
            assert c["raises_module"] in ("builtins", "conformance.lang_exc") and "message" in c
        else:
            assert c["expected"], c["id"]
    f16_arrays = [k for k in data if k.startswith(f"c{by_id['f16_arith']['index']}/")]
    assert f16_arrays and all(data[k].dtype == np.float16 for k in f16_arrays)
    own = by_id["lang_exc/raise_own-mode1"]
    assert (own["raises"], own["raises_module"], own["message"]) == (
        "RangeProblem",
        "conformance.lang_exc",
        "bad input",
    )
    assert by_id["round_raises-nan"]["raises"] == "ValueError"
    assert by_id["round_raises-inf"]["raises"] == "OverflowError"
