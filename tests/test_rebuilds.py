"""The build record (``compiler/record.py``): a no-op build is answered before typing, and
never when anything that decides the bundle's bytes changed.

Each test builds a small package, changes one kind of input, and checks the next build ran
(``up_to_date`` false) — then that a skipped build's bundle is byte for byte what a full
build from an empty cache writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpuaot.compiler import record
from gpuaot.compiler.driver import BuildOptions, build_package

KERNELS = """\
import gpuaot as ga
from gpuaot import Array, f32

@ga.kernel
def axpb(a: f32, x: Array[f32], out: Array[f32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        out[i] = a * x[i] + 1.0
"""
HELPERS = """\
import gpuaot as ga

@ga.device
def twice(v):
    return v + v
"""

RAISING = """\
import gpuaot as ga
from gpuaot import Array, f32

@ga.kernel
def checked(x: Array[f32]):
    i = ga.grid(1)
    if x[i] < 0:
        raise ValueError("negative")
"""


@pytest.fixture
def pkg(kit, tmp_path):
    return kit.write_package(tmp_path / "rebuilt", {"kernels.py": KERNELS, "util.py": HELPERS})


def build(root: Path, **kw):
    """A CPU build at one level (fast), with the test's own cache."""
    kw.setdefault("cpu_levels", "x86-64-v2")
    kw.setdefault("no_gpu", True)
    kw.setdefault("cache_dir", str(root.parent / "cache"))
    return build_package(BuildOptions.resolve(str(root), **kw))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_noop_is_up_to_date_and_identical_to_a_full_build(kit, pkg, tmp_path):
    first = kit.build(pkg)  # the default CPU levels
    assert not first.up_to_date and first.compiled > 0
    again = kit.build(pkg)
    assert again.up_to_date and again.compiled == 0
    assert again.cached == first.compiled + first.cached
    assert again.bundle == first.bundle and again.manifest == first.manifest
    # The same sources and options built from nothing, elsewhere: the same bytes.
    fresh = kit.build(pkg, out=tmp_path / "fresh", cache_dir=tmp_path / "empty-cache")
    assert not fresh.up_to_date
    assert fresh.bundle.read_bytes() == again.bundle.read_bytes()


@pytest.mark.parametrize(
    "edit",
    [
        "kernel body",
        "comment only",
        "helper module",
        "new module",
        "removed module",
        "package init",
    ],
)
def test_any_source_edit_rebuilds(pkg, edit):
    assert not build(pkg).up_to_date
    assert build(pkg).up_to_date
    kernels, util = pkg / "kernels.py", pkg / "util.py"
    if edit == "kernel body":
        kernels.write_text(KERNELS.replace("+ 1.0", "+ 2.0"))
    elif edit == "comment only":
        kernels.write_text(KERNELS + "# a comment\n")
    elif edit == "helper module":
        util.write_text(HELPERS.replace("v + v", "v * 2"))
    elif edit == "new module":
        (pkg / "extra.py").write_text(HELPERS)
    elif edit == "removed module":
        util.unlink()
    else:
        (pkg / "__init__.py").write_text("# init\n")
    res = build(pkg)
    assert not res.up_to_date
    assert build(pkg).up_to_date


def test_pyproject_setting_rebuilds(pkg):
    assert not build(pkg).up_to_date
    (pkg / "pyproject.toml").write_text("[tool.gpuaot]\ndebug = true\n")
    res = build(pkg)
    assert not res.up_to_date and res.manifest["options"]["debug"] is True
    assert build(pkg).up_to_date
    (pkg / "pyproject.toml").write_text("[tool.gpuaot]\ndebug = true\njobs = 1\n")
    assert not build(pkg).up_to_date  # any change of the table: conservative


@pytest.mark.parametrize(
    "change",
    [
        {"debug": True},
        {"cpu_levels": "x86-64-v2,x86-64-v3"},
        {"cpu_levels": "x86-64-v3"},
        {"out_dir": "OUT"},
        {"no_fma": True},
    ],
    ids=lambda c: next(iter(c)),
)
def test_each_option_rebuilds(pkg, change):
    assert not build(pkg).up_to_date
    assert build(pkg).up_to_date
    if "no_fma" in change and "no_fma" not in BuildOptions.resolve.__code__.co_varnames:
        pytest.skip("this tree has no --no-fma yet")
    if change.get("out_dir") == "OUT":
        change = {"out_dir": str(pkg.parent / "out")}
    res = build(pkg, **change)
    assert not res.up_to_date
    assert build(pkg, **change).up_to_date
    # Back to the defaults: the bundle at the default place changed, unless --out moved it.
    assert build(pkg).up_to_date == ("out_dir" in change)


def test_jobs_and_cache_dir_do_not_rebuild(pkg):
    assert not build(pkg).up_to_date
    assert build(pkg, jobs=1).up_to_date


def test_every_build_option_is_an_input(pkg):
    """A field added to BuildOptions later is in the record without a change there."""
    opts = BuildOptions.resolve(str(pkg), no_gpu=True, cache_dir=str(pkg.parent / "c"))
    base = record.build_inputs(opts)
    for f in dataclasses.fields(opts):
        if f.name in record.NOT_INPUTS:
            continue
        value = getattr(opts, f.name)
        other = dataclasses.replace(opts, **{f.name: _other(value)})
        assert record.build_inputs(other) != base, f.name
    for name in record.NOT_INPUTS:
        assert record.build_inputs(dataclasses.replace(opts, **{name: 99})) == base


def _other(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, list):
        return [*value, "sm_100"] if all(isinstance(v, str) for v in value) else value[:1]
    if isinstance(value, Path):
        return value / "other"
    return f"{value}-other"


def test_gpu_options_are_inputs(pkg):
    opts = BuildOptions.resolve(str(pkg), cache_dir=str(pkg.parent / "c"))
    base = record.build_inputs(opts)
    assert record.build_inputs(dataclasses.replace(opts, archs=["sm_80"])) != base
    assert record.build_inputs(dataclasses.replace(opts, gpu=False)) != base
    assert record.build_inputs(dataclasses.replace(opts, cpu=False)) != base


def _shadow(tmp_path, monkeypatch, rel: str) -> None:
    """A file ``rel`` first on sys.path: what a changed installation looks like."""
    p = tmp_path / "shadow" / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("changed\n")
    monkeypatch.syspath_prepend(str(tmp_path / "shadow"))


@pytest.mark.parametrize(
    "rel",
    [
        "llvmlite/_version.py",
        "llvmlite/binding/libllvmlite.so",
        "nvidia/cuda_nvcc/bin/ptxas",
        "nvidia/nvfatbin/lib/libnvfatbin.so.12",
    ],
)
def test_tool_change_is_an_input(pkg, tmp_path, monkeypatch, rel):
    opts = BuildOptions.resolve(str(pkg), cache_dir=str(pkg.parent / "c"))
    base = record.build_inputs(opts)
    _shadow(tmp_path, monkeypatch, rel)
    assert record.build_inputs(opts) != base


def test_llvmlite_change_rebuilds(pkg, tmp_path, monkeypatch):
    assert not build(pkg).up_to_date
    _shadow(tmp_path, monkeypatch, "llvmlite/binding/libllvmlite.so")
    assert not build(pkg).up_to_date


def test_compiler_source_change_rebuilds(pkg, tmp_path, monkeypatch):
    """The compiler's own files, not only its version string (engineers edit it daily)."""
    assert not build(pkg).up_to_date
    copy = tmp_path / "gpuaot-copy"
    (copy / "compiler").mkdir(parents=True)
    (copy / "compiler" / "lowering.py").write_text("# another compiler\n")
    monkeypatch.setattr(record, "_GPUAOT_DIR", copy)
    assert not build(pkg).up_to_date
    assert build(pkg).up_to_date


def test_cc_change_rebuilds_same_bytes(pkg, tmp_path, monkeypatch):
    first = build(pkg)
    wrapper = tmp_path / "my-cc"
    wrapper.write_text('#!/bin/sh\nexec cc "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", str(wrapper))
    res = build(pkg)
    assert not res.up_to_date
    assert build(pkg).up_to_date
    assert sha(res.bundle) == sha(first.bundle)


def _logging_cc(tmp_path: Path, name: str) -> Path:
    """A C compiler that writes each command line it runs to ``<name>.log``, then runs cc."""
    log = tmp_path / f"{name}.log"
    wrapper = tmp_path / name
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec cc "$@"\n')
    wrapper.chmod(0o755)
    return log


def _runs(log: Path) -> tuple[int, int]:
    """(compiles, links) the logging C compiler ran."""
    lines = log.read_text().splitlines() if log.exists() else []
    return sum(" -c " in f" {x} " for x in lines), sum(" -shared " in f" {x} " for x in lines)


def test_the_worker_pool_is_compiled_once_per_c_compiler(pkg, tmp_path, monkeypatch):
    """The pool's C object is a cached job: a rebuild after an edit links, and compiles no C;
    another C compiler compiles it again (its stamp is in the key), to the same bundle."""
    log = _logging_cc(tmp_path, "cc-a")
    monkeypatch.setenv("CC", str(tmp_path / "cc-a"))
    first = build(pkg)
    assert _runs(log) == (1, 1)
    kernels = pkg / "kernels.py"
    kernels.write_text(kernels.read_text().replace("+ 1.0", "+ 2.0"))
    assert not build(pkg).up_to_date
    assert _runs(log) == (1, 2)  # the link only
    kernels.write_text(kernels.read_text().replace("+ 2.0", "+ 1.0"))
    log_b = _logging_cc(tmp_path, "cc-b")
    monkeypatch.setenv("CC", str(tmp_path / "cc-b"))
    again = build(pkg)
    assert _runs(log_b) == (1, 1)
    assert sha(again.bundle) == sha(first.bundle)


def test_a_bundle_without_cpu_code_has_no_worker_pool(kit, pkg, tmp_path):
    """The pool comes with the CPU target: ``nm`` sees it in a CPU bundle, not in a
    ``--no-cpu`` one (whose launcher never starts a pool)."""
    from gpuaot.bundle.abi import POOL_PREFIX

    def pool_symbols(res) -> set:
        out = subprocess.run(["nm", "-D", "--defined-only", str(res.bundle)], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
        return {line.split()[-1] for line in out.splitlines() if POOL_PREFIX in line}

    assert {POOL_PREFIX + "run", POOL_PREFIX + "work"} <= pool_symbols(build(pkg))
    gpu_only = build(pkg, no_gpu=False, no_cpu=True, arch="sm_80", out_dir=str(tmp_path / "g"))
    assert pool_symbols(gpu_only) == set()


@pytest.mark.parametrize("damage", ["missing", "same size", "longer", "record"])
def test_changed_bundle_or_record_rebuilds(pkg, damage):
    first = build(pkg)
    good = first.bundle.read_bytes()
    if damage == "missing":
        first.bundle.unlink()
    elif damage == "same size":
        data = bytearray(good)
        data[len(data) // 2] ^= 0xFF
        first.bundle.write_bytes(bytes(data))
        os.utime(first.bundle, ns=(first.bundle.stat().st_atime_ns, 0))
    elif damage == "longer":
        first.bundle.write_bytes(good + b"\0")
    else:
        opts = BuildOptions.resolve(str(pkg), cpu_levels="x86-64-v2", no_gpu=True)
        rec = record.BuildRecord(opts, first.bundle, _cache(pkg))
        (path,) = (rec.cache.root / record.NAMESPACE).rglob(rec.key)  # the record's file
        path.write_bytes(path.read_bytes()[:-10])
    res = build(pkg)
    assert not res.up_to_date
    assert res.bundle.read_bytes() == good
    assert build(pkg).up_to_date


def _cache(root: Path):
    from gpuaot.compiler.cache import Cache

    return Cache(root.parent / "cache")


def test_refused_build_is_not_recorded(pkg, monkeypatch):
    (pkg / "raising.py").write_text(RAISING)
    assert not build(pkg).up_to_date
    from host_leak import LeakyCPUTarget

    from gpuaot.compiler import targets

    with monkeypatch.context() as m:
        m.setitem(targets.REGISTRY, "cpu", LeakyCPUTarget)  # leaks gpu_*: the gate refuses it
        bad = build(pkg)
        assert bad.leaks is not None and not bad.up_to_date
        assert build(pkg).leaks is not None  # checked again, not answered from a record
    assert build(pkg).up_to_date  # the good bundle was kept, and is what was recorded


def test_cli_reports_up_to_date(pkg):
    from click.testing import CliRunner

    from gpuaot.cli import main

    args = ["build", str(pkg), "--no-gpu", "--cpu", "x86-64-v2"]
    args += ["--cache-dir", str(pkg.parent / "cache")]
    runner = CliRunner()
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "up to date" not in first.output
    again = runner.invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "up to date: " in again.output and "0 compiled" in again.output
    out = runner.invoke(main, [*args, "--json"])
    assert out.exit_code == 0
    doc = json.loads(out.stdout)
    assert doc["up_to_date"] is True and doc["compiled"] == 0
    assert doc["kernels"] == ["rebuilt.kernels.axpb"]


def test_noop_loads_no_llvmlite_nor_numpy(pkg):
    """The CLI's no-op path: start-up, options, record; no compiler, no LLVM, no numpy."""
    cache = str(pkg.parent / "cache")
    args = ["build", str(pkg), "--no-gpu", "--cpu", "x86-64-v2", "--cache-dir", cache, "-q"]
    build(pkg)
    code = (
        "import sys\nfrom gpuaot.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = ('llvmlite', 'numpy', 'gpuaot.compiler.frontend.typer', "
        "'gpuaot.compiler.lower', 'gpuaot.compiler.targets', 'gpuaot.leaks')\n"
        "bad = sorted(m for m in sys.modules if m.startswith(heavy))\n"
        "print(bad)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
