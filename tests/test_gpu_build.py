"""The GPU half of the bundle, checked offline with NVIDIA's own tools and nm/readelf.

No GPU is needed: ptxas assembles every kernel for sm_75/sm_80/sm_90 during the build,
cuobjdump lists what is inside the bundle, nm and our leak checker see no device symbol.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gpuaot.cli import main
from gpuaot.compiler.targets.nvtools import find_cuobjdump
from gpuaot.runtime import bundle as rt_bundle

FIXTURES = Path(__file__).parent.parent / "fixtures"
ARCHS = ["sm_75", "sm_80", "sm_90"]


def _build(
    pkg_dir: Path, out: Path, cache: Path, *extra: str, env=None
) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "gpuaot.cli",
        "build",
        str(pkg_dir),
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--json",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def gpu_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu")
    pkg = root / "gpu_features"
    shutil.copytree(FIXTURES / "gpu_features", pkg, ignore=shutil.ignore_patterns("_gpuaot"))
    out = root / "out"
    proc = _build(pkg, out, root / "cache")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    return root, pkg, Path(report["bundle"]), report


def _cuobjdump(path: Path) -> str:
    tool = find_cuobjdump()
    if tool is None:
        pytest.skip("cuobjdump wheel (nvidia-cuda-cuobjdump) not installed")
    proc = subprocess.run([str(tool), "-lptx", "-lelf", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_cuobjdump_lists_ptx_and_every_cubin(gpu_bundle):
    _, _, path, report = gpu_bundle
    listing = _cuobjdump(path)
    n_kernels = len(report["kernels"])
    assert listing.count("PTX file") == n_kernels
    for arch in ARCHS:
        assert listing.count(f".{arch}.cubin") == n_kernels, listing
    assert listing.count(".sm_75.ptx") == n_kernels  # PTX for the lowest architecture only


def test_manifest_images_match_the_fatbin_section(gpu_bundle):
    from gpuaot.bundle.inspect import read_bundle_manifest

    _, _, path, _ = gpu_bundle
    m = read_bundle_manifest(str(path))
    assert m["architectures"] == ARCHS and m["ptx_arch"] == "sm_75"
    assert m["images"] and all(img["verified"] for img in m["images"])
    for img in m["images"]:
        kinds = sorted((e["kind"], e["arch"]) for e in img["entries"])
        assert kinds == sorted([("elf", a) for a in ARCHS] + [("ptx", "sm_75")])


def test_no_device_symbol_in_host_code(gpu_bundle):
    _, _, path, _ = gpu_bundle
    for flags in (["-D"], []):
        names = subprocess.run(
            ["nm", *flags, str(path)], capture_output=True, text=True, check=True
        ).stdout
        for bad in ("gpu_", "__nv_", "llvm.nvvm", "__nvvm"):
            assert not any(
                line.split()[-1].startswith(bad) for line in names.splitlines() if line.strip()
            ), (bad, names)
    from gpuaot.leaks import scan_paths

    result = scan_paths([str(path)])
    assert result.findings == [] and result.errors == []


def test_gpu_only_kernels_are_marked_and_refuse_cpu_launch(gpu_bundle, monkeypatch):
    root, pkg, path, report = gpu_bundle
    assert sorted(report["gpu_only"]) == [
        "gpu_features.kernels.block_sum",
        "gpu_features.kernels.warp_sum",
    ]
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("GPUAOT_BUNDLE_PATH", str(path.parent))
    rt_bundle.forget()
    for mod in [m for m in sys.modules if m.startswith("gpu_features")]:
        monkeypatch.delitem(sys.modules, mod)
    import gpu_features

    x = np.ones(256, np.float32)
    with pytest.raises(TypeError, match="no CPU implementation.*shared_array"):
        gpu_features.block_sum[2, 128](x, np.zeros(2, np.float32))
    # Kernels with CPU meanings for atomics and local arrays run on the CPU backend.
    data = np.random.default_rng(1).integers(0, 1000, 5000).astype(np.int32)
    bins = np.zeros(16, np.int64)
    gpu_features.histogram[4, 64](data, bins)
    np.testing.assert_array_equal(bins, np.bincount(data % 16, minlength=16))
    x2 = np.random.default_rng(2).random((50, 8), dtype=np.float32)
    out = np.zeros_like(x2)
    gpu_features.local_prefix[1, 64](x2, out)
    np.testing.assert_array_equal(out, np.cumsum(x2, axis=1, dtype=np.float32)[:, ::-1])
    rt_bundle.forget()


def test_two_builds_are_byte_identical(tmp_path):
    pkg = tmp_path / "gpu_features"
    shutil.copytree(FIXTURES / "gpu_features", pkg, ignore=shutil.ignore_patterns("_gpuaot"))
    outs = []
    for k in range(2):
        out = tmp_path / f"out{k}"
        proc = _build(pkg, out, tmp_path / f"cache{k}")  # cold caches: everything recompiled
        assert proc.returncode == 0, proc.stderr
        outs.append(Path(json.loads(proc.stdout)["bundle"]).read_bytes())
    assert outs[0] == outs[1]


def test_gate_refuses_host_code_compiled_with_the_gpu_table(tmp_path, monkeypatch):
    """A test-registered host target lowers through the GPU runtime: the gate must bite."""
    from host_leak import LeakyCPUTarget

    from gpuaot.compiler import targets

    pkg = tmp_path / "gpu_features"
    shutil.copytree(FIXTURES / "gpu_features", pkg, ignore=shutil.ignore_patterns("_gpuaot"))
    good = _build(pkg, tmp_path / "out", tmp_path / "cache", "--no-gpu")
    assert good.returncode == 0, good.stderr
    bundle = Path(json.loads(good.stdout)["bundle"])
    before = bundle.read_bytes()
    monkeypatch.setitem(targets.REGISTRY, "cpu", LeakyCPUTarget)
    args = ["build", str(pkg), "--out", str(tmp_path / "out"), "--cache-dir"]
    bad = CliRunner().invoke(main, [*args, str(tmp_path / "cache"), "--json", "--no-gpu"])
    assert bad.exit_code == 1 and isinstance(bad.exception, SystemExit), bad.output
    leaks = json.loads(bad.stdout)["leaks"]
    assert {"symbol": "gpu_report_exception", "defined": False, "section": ".dynsym"} in leaks
    assert "__nv_sqrtf" in {leak["symbol"] for leak in leaks}
    assert "Traceback" not in bad.stderr
    assert bundle.read_bytes() == before  # the last good bundle is kept
    assert bundle.with_name(bundle.name + ".rejected").is_file()


def test_device_cache_is_per_architecture_and_incremental(tmp_path):
    pkg = tmp_path / "gpu_features"
    shutil.copytree(FIXTURES / "gpu_features", pkg, ignore=shutil.ignore_patterns("_gpuaot"))
    cache = tmp_path / "cache"
    first = json.loads(_build(pkg, tmp_path / "o1", cache, "--no-cpu").stdout)
    assert first["compiled"] == 7 and first["cached"] == 0
    dirs = {p.name for p in (cache / "device").iterdir()}
    assert dirs == {"ptx-sm_75", *ARCHS}
    again = json.loads(_build(pkg, tmp_path / "o2", cache, "--no-cpu").stdout)
    assert again["compiled"] == 0 and again["cached"] == 7
    src = pkg / "kernels.py"
    src.write_text(
        src.read_text().replace(
            'raise ValueError("x must be non-negative")',
            'raise ValueError("x must not be negative")',
        )
    )
    edited = json.loads(_build(pkg, tmp_path / "o3", cache, "--no-cpu").stdout)
    # The message lives in the manifest, not the code: nothing to recompile.
    assert edited["compiled"] == 0
    src.write_text(src.read_text().replace("out[i] = math.sqrt(x[i])", "out[i] = math.exp(x[i])"))
    edited = json.loads(_build(pkg, tmp_path / "o4", cache, "--no-cpu").stdout)
    assert edited["compiled"] == 1 and edited["cached"] == 6
    # Dropping sm_75 makes sm_80 the PTX target: every kernel's PTX is new, so all recompile.
    fewer = json.loads(
        _build(pkg, tmp_path / "o5", cache, "--no-cpu", "--arch", "sm_80,sm_90").stdout
    )
    assert fewer["architectures"] == ["sm_80", "sm_90"] and fewer["compiled"] == 7


def test_emit_ptx_for_an_architecture(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    result = CliRunner().invoke(
        main, ["emit", "gpu_features.kernels:block_sum", "--stage", "ptx", "--target", "sm_90"]
    )
    assert result.exit_code == 0, result.output
    assert ".target sm_90" in result.output
    assert ".visible .entry gpu_features__kernels__block_sum_s0(" in result.output
    assert "bar.sync" in result.output and ".shared" in result.output
    cpu = CliRunner().invoke(main, ["emit", "gpu_features.kernels:block_sum", "--target", "cpu"])
    assert cpu.exit_code == 2
    assert "'shared_array' has no CPU implementation" in cpu.output


def test_shuffle_offsets_of_any_integer_width(tmp_path):
    """The lane offset reaches the shfl intrinsic as an i32 whatever its type (i8, i64, ...)."""
    pkg = tmp_path / "shuf"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "import gpuaot as ga\n"
        "from gpuaot import Array, f32, f64, i8, i64\n\n"
        "@ga.kernel\n"
        "def k(x: Array[f32], y: Array[f64], out: Array[f32]):\n"
        "    i = ga.grid(1)\n"
        "    a = ga.shfl_xor(x[i], i8(1)) + ga.shfl_down(x[i], i64(2))\n"
        "    b = ga.shfl_down(y[i], 1)\n"
        "    out[i] = a + f32(b)\n"
    )
    proc = _build(pkg, tmp_path / "out", tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    listing = _cuobjdump(Path(json.loads(proc.stdout)["bundle"]))
    assert listing.count(".cubin") == 3
