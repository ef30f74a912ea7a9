"""The built bundle of fixtures/example, checked with tools gpuaot did not write (SPEC §4):
``nm``, ``readelf``, ``strings``, ``ctypes``, ``hashlib``; and the run time's bundle lookup
(SPEC §3): missing, stale, ``$GPUAOT_BUNDLE_PATH``, no compiler on the import path.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gpuaot.runtime.errors import BundleNotFoundError, StaleBundleError

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="ELF bundles: Linux only"),
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("nm", "readelf", "strings", "objcopy")),
        reason="needs binutils (nm, readelf, strings, objcopy) as the oracle",
    ),
]


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def example(built):
    return built("example")


def test_no_gpu_symbol_anywhere(example):
    for args in (["-D"], ["-D", "--defined-only"], ["-D", "-u"], ["-a"]):
        out = subprocess.run(
            ["nm", *args, str(example.bundle)], capture_output=True, text=True
        ).stdout
        names = [line.split()[-1] for line in out.splitlines() if line.strip()]
        assert names or args == ["-a"], args
        assert not [n for n in names if n.startswith("gpu_") or "@gpu_" in n], args
    # Every name in the symbol string tables too (readelf, not nm's view of the tables).
    names = run("readelf", "-W", "-p", ".dynstr", "-p", ".strtab", str(example.bundle))
    assert "gpuaot_cpu_" in names  # the dump is real
    assert not re.search(r"(?<![A-Za-z0-9_])gpu_", names)


def test_exports_only_entry_points_and_data(example):
    defined = [
        line.split()[-1]
        for line in run("nm", "-D", "--defined-only", str(example.bundle)).splitlines()
    ]
    m = example.manifest
    symbols = {
        sym
        for k in m["kernels"]
        for s in k["specializations"]
        for sym in s["cpu"]["symbols"].values()
    }
    symbols |= {sym for h in m["host_functions"] for sym in h["symbols"].values()}
    assert len(symbols) == 7 * len(m["cpu_variants"])  # every entry point, once per level
    assert symbols <= set(defined)
    assert all(
        re.match(r"gpuaot_(cpu|host|manifest|fatbin|rt_pool_)|gpuaot_rt_cpuid$", n) for n in defined
    ), defined


def test_needed_only_libc_libm_and_no_rpath(example):
    dyn = run("readelf", "-d", "-W", str(example.bundle))
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dyn)
    assert set(needed) <= {"libc.so.6", "libm.so.6"}, needed
    assert "(RPATH)" not in dyn and "(RUNPATH)" not in dyn
    assert "TEXTREL" not in dyn  # position independent
    header = run("readelf", "-h", "-W", str(example.bundle))
    assert re.search(r"Type:\s+DYN", header)


def test_loads_with_rtld_now(example):
    lib = ctypes.CDLL(str(example.bundle), os.RTLD_NOW)
    for k in example.manifest["kernels"]:
        for sym in k["specializations"][0]["cpu"]["symbols"].values():
            getattr(lib, sym)  # every entry point of every level resolves


def test_manifest_section_matches_the_sources(example):
    """The .gpuaot.manifest section is JSON whose module hashes are the sources' sha256."""
    out = example.bundle.parent / "manifest.bin"
    subprocess.run(
        [
            "objcopy",
            "-O",
            "binary",
            "--only-section=.gpuaot.manifest",
            str(example.bundle),
            str(out),
        ],
        check=True,
    )
    manifest = json.loads(out.read_bytes().rstrip(b"\0").decode("utf-8"))
    out.unlink()
    assert manifest["format"] == "gpuaot-bundle" and manifest["version"] == 2
    for name, info in manifest["modules"].items():
        path = example.root.parent / info["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == info["sha256"], name
    assert {k["name"] for k in manifest["kernels"]} == {
        "matmul",
        "saxpy",
        "scale_rows",
        "stencil5",
        "row_sums",
    }


def test_no_build_path_inside(example, tmp_path_factory):
    text = run("strings", "-a", "-n", "6", str(example.bundle))
    for path in {
        str(example.root),
        str(example.root.parent),
        str(tmp_path_factory.getbasetemp()),
        os.path.dirname(os.path.abspath(__file__)),
        os.path.expanduser("~"),
        os.getcwd(),
    }:
        if len(path) > 1:
            assert path not in text, path


def test_reproducible_from_cold_caches(kit, tmp_path):
    """Same sources, same options, two directories, two cold caches: identical bytes, whether
    the objects compile in a process pool or one after another (``--jobs``)."""
    bundles = []
    for side, jobs in (("a", 4), ("b", 1)):
        root = kit.copy_package(kit.FIXTURES / "example", tmp_path / side)
        res = kit.build(root, cache_dir=tmp_path / f"cache-{side}", jobs=jobs)
        units = len(res.manifest["kernels"]) + len(res.manifest["host_functions"])
        assert res.compiled == units * len(res.manifest["cpu_variants"])
        bundles.append(res.bundle.read_bytes())
    assert bundles[0] == bundles[1]
    # and a warm rebuild of the same tree gives the same bytes again
    res = kit.build(tmp_path / "a" / "example", cache_dir=tmp_path / "cache-a")
    assert res.compiled == 0 and res.bundle.read_bytes() == bundles[0]


def _saxpy_args(n=1000):
    x = np.linspace(-1, 1, n, dtype=np.float32)
    y = np.arange(n, dtype=np.float32)
    return np.float32(2.5), x, y, np.zeros(n, np.float32)


def assert_saxpy(out, a, x, y) -> None:
    """numpy's a*x+y up to FMA contraction (the default): one rounding of the product."""
    eps = np.finfo(np.float32).eps
    scale = float(np.abs(a * x).max(initial=0.0))
    np.testing.assert_allclose(out, a * x + y, rtol=eps, atol=eps * scale)


def test_stale_bundle_after_editing_a_module(kit, tmp_path, monkeypatch):
    root = kit.copy_package(kit.FIXTURES / "example", tmp_path)
    kit.build(root, cache_dir=tmp_path / "cache")
    pkg = kit.import_package(root, monkeypatch)
    a, x, y, out = _saxpy_args()
    pkg.saxpy[8, 128](a, x, y, out)
    assert_saxpy(out, a, x, y)

    with open(root / "util.py", "a") as f:
        f.write("\n# an edit after the build\n")
    kit.unload("example")
    pkg = kit.import_package(root, monkeypatch)
    with pytest.raises(StaleBundleError, match=r"example/util\.py changed.*gpuaot build example"):
        pkg.saxpy[8, 128](a, x, y, out)
    with pytest.raises(StaleBundleError):
        pkg.dot(np.ones(3), np.ones(3))
    kit.unload("example")


def test_missing_bundle_names_the_build_command(kit, tmp_path, monkeypatch):
    root = kit.copy_package(kit.FIXTURES / "example", tmp_path)
    pkg = kit.import_package(root, monkeypatch)
    with pytest.raises(BundleNotFoundError, match=r"build it with: gpuaot build example"):
        pkg.saxpy[8, 128](*_saxpy_args())
    with pytest.raises(ImportError):  # BundleNotFoundError is an ImportError
        pkg.dot(np.ones(3), np.ones(3))
    kit.unload("example")


def test_bundle_path_environment_variable(kit, tmp_path, monkeypatch):
    root = kit.copy_package(kit.FIXTURES / "example", tmp_path / "src")
    res = kit.build(root, out=tmp_path / "elsewhere", cache_dir=tmp_path / "cache")
    assert res.bundle.parent == tmp_path / "elsewhere" and not (root / "_gpuaot").exists()
    pkg = kit.import_package(root, monkeypatch)
    with pytest.raises(BundleNotFoundError):
        pkg.saxpy[8, 128](*_saxpy_args())
    kit.unload("example")
    for value in (tmp_path / "elsewhere", res.bundle):  # a directory, or the file itself
        monkeypatch.setenv("GPUAOT_BUNDLE_PATH", str(value))
        pkg = kit.import_package(root, monkeypatch)
        a, x, y, out = _saxpy_args()
        pkg.saxpy[8, 128](a, x, y, out)
        assert_saxpy(out, a, x, y)
        kit.unload("example")


def test_runtime_path_imports_no_compiler(example):
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import example
        x = np.linspace(-1, 1, 5000, dtype=np.float32)
        y = np.ones_like(x)
        out = np.zeros_like(x)
        example.saxpy[40, 128](np.float32(3), x, y, out)
        eps = np.finfo(np.float32).eps  # a fused multiply-add skips the product's rounding
        assert np.allclose(out, np.float32(3) * x + y, rtol=eps, atol=3 * eps)
        assert example.dot(np.arange(4.0), np.arange(4.0)) == 14.0
        bad = sorted(m for m in sys.modules
                     if m.split(".")[0] == "llvmlite" or m.startswith("gpuaot.compiler")
                     or m.startswith("gpuaot.leaks") or m == "elftools")
        print("BAD", bad)
        assert not bad, bad
    """)
    env = {k: v for k, v in os.environ.items() if k != "GPUAOT_BUNDLE_PATH"}
    env["PYTHONPATH"] = str(example.root.parent)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=example.root.parent,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "BAD []" in proc.stdout


GPU_ONLY_SOURCE = """\
import gpuaot as ga
from gpuaot import Array, f32


@ga.kernel
def barrier(x: Array[f32]):
    ga.syncthreads()
    x[ga.grid(1)] = 1
"""


def test_gpu_only_reason_holds_no_build_path(kit, tmp_path, monkeypatch):
    root = kit.write_package(tmp_path / "src" / "gonly", {"kern.py": GPU_ONLY_SOURCE})
    bundles = []
    for k, cwd in enumerate([root.parent, tmp_path.anchor]):  # beside the package, and /
        monkeypatch.chdir(cwd)
        res = kit.build(root, out=tmp_path / f"out{k}", cache_dir=tmp_path / "cache")
        reason = res.manifest["kernels"][0]["specializations"][0]["gpu_only"]
        assert reason.startswith("gonly/kern.py:"), reason
        text = run("strings", "-a", str(res.bundle))
        assert str(tmp_path).lstrip("/") not in text
        bundles.append(res.bundle.read_bytes())
    assert bundles[0] == bundles[1]


@pytest.mark.skipif(shutil.which("ar") is None, reason="needs binutils' ar as the oracle")
def test_the_links_archive_is_what_ar_reads(tmp_path):
    """The link hands its objects over as one archive: binutils' ``ar`` lists its members in
    order and gives each one back byte for byte, odd sizes (padded) and empty ones included."""
    from gpuaot.compiler.targets.cpu.link import write_archive

    objects = [b"\x7fELF" + bytes(range(k % 256)) * (k + 1) for k in (0, 1, 2, 7, 250)] + [b""]
    path = tmp_path / "objects.a"
    write_archive(str(path), objects)
    names = [f"m{k}.o" for k in range(len(objects))]
    assert run("ar", "t", str(path)).split() == names
    for name, obj in zip(names, objects):
        got = subprocess.run(["ar", "p", str(path), name], check=True, capture_output=True)
        assert got.stdout == obj
