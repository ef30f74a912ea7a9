"""Wheels that carry the bundle (SPEC §6), built by the real tools: ``pip wheel``, ``python -m
build``, ``pip install -e``, ``auditwheel``; installed into a fresh venv that has no compiler.

The project is fixtures/example renamed ``shipkern`` (setuptools' flat-layout discovery skips
a package called ``example``), with ``build-backend = "gpuaot.build_meta"``, in a flat and a
src layout. Builds run without isolation (``--no-build-isolation``): the backend and the
compiler come from this test venv, nothing is fetched. The fresh venv gets numpy from a
wheelhouse downloaded once (PyPI) and gpuaot as a wheel built from this tree.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from gpuaot.bundle.manifest import platform_tag

PLATFORM = platform_tag()
BUNDLE = f"shipkern/_gpuaot/shipkern.{PLATFORM}.gpuaot.so"
CHECK = Path(__file__).with_name("example_check.py")

PYPROJECT = """\
[build-system]
requires = ["gpuaot", "setuptools>=68"]
build-backend = "gpuaot.build_meta"

[project]
name = "shipkern"
version = "1.2.0"
dependencies = ["gpuaot"]
{extra}
[tool.gpuaot]
no-gpu = true
{settings}"""


def make_project(kit, parent: Path, layout: str = "flat", extra: str = "", settings: str = ""):
    root = parent / f"proj-{layout}"
    pkg_parent = root / "src" if layout == "src" else root
    pkg_parent.mkdir(parents=True)
    kit.copy_package(kit.FIXTURES / "example", pkg_parent, name="shipkern")
    (pkg_parent / "shipkern" / "plain.py").write_text("def hello():\n    return 'hi'\n")
    (root / "pyproject.toml").write_text(PYPROJECT.format(extra=extra, settings=settings))
    return root


def run(cmd: list, cwd=None, env=None, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


def pip_wheel(project: Path, out: Path, check=True) -> subprocess.CompletedProcess:
    return run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-build-isolation",
            "--no-deps",
            "-w",
            out,
            project,
        ],
        check=check,
    )


def only(pattern: str, d: Path) -> Path:
    found = list(d.glob(pattern))
    assert len(found) == 1, (pattern, found)
    return found[0]


def members(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


@pytest.fixture(scope="module")
def wheels(kit, tmp_path_factory):
    """{layout: wheel} built with ``pip wheel``."""
    out = {}
    for layout in ("flat", "src"):
        base = tmp_path_factory.mktemp(f"wheel-{layout}")
        proj = make_project(kit, base, layout)
        pip_wheel(proj, base / "dist")
        out[layout] = only("*.whl", base / "dist")
    return out


@pytest.mark.parametrize("layout", ["flat", "src"])
def test_wheel_is_tagged_for_its_platform_and_carries_the_bundle(wheels, layout):
    wheel = wheels[layout]
    assert wheel.name == f"shipkern-1.2.0-py3-none-{PLATFORM}.whl"
    m = members(wheel)
    assert BUNDLE in m and m[BUNDLE][:4] == b"\x7fELF"
    assert {"shipkern/kernels.py", "shipkern/plain.py", "shipkern/__init__.py"} <= set(m)
    text = m["shipkern-1.2.0.dist-info/WHEEL"].decode()
    assert "Root-Is-Purelib: false" in text
    assert re.findall(r"^Tag: (.+)$", text, re.M) == [f"py3-none-{PLATFORM}"]
    # RECORD lists every member with its real hash and size (pip checks it on install)
    record = m["shipkern-1.2.0.dist-info/RECORD"].decode().splitlines()
    import base64

    listed = {}
    for line in record:
        path, digest, size = line.rsplit(",", 2)
        listed[path] = (digest, size)
    for name, data in m.items():
        if name.endswith("/RECORD"):
            continue
        want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert listed[name] == (f"sha256={want}", str(len(data))), name
    # no build path inside
    for name, data in m.items():
        assert b"/tmp/" not in data and str(Path.home()).encode() not in data, name


def test_wheels_of_both_layouts_carry_the_same_bundle(wheels):
    assert members(wheels["flat"])[BUNDLE] == members(wheels["src"])[BUNDLE]


def test_auditwheel_accepts_it_as_manylinux(wheels):
    exe = shutil.which("auditwheel", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("auditwheel is not installed (a dev dependency)")
    r = run([exe, "show", wheels["flat"]])
    m = re.search(
        r'consistent with the\s+following platform tag:\s+"(manylinux_2_(\d+)_\w+)"', r.stdout
    )
    assert m, r.stdout
    assert int(m.group(2)) <= 28, r.stdout  # needs glibc 2.27 at most (libm's expf) here
    assert "libm.so.6" in r.stdout or "system-provided" in r.stdout


def test_a_stale_bundle_in_the_source_tree_stays_out(kit, tmp_path):
    """A bundle a developer built into the tree earlier, even listed as package data."""
    proj = make_project(
        kit,
        tmp_path,
        extra='\n[tool.setuptools.package-data]\nshipkern = ["_gpuaot/*"]\n',
    )
    stale = proj / "shipkern" / "_gpuaot"
    stale.mkdir()
    (stale / "shipkern.linux_x86_64.gpuaot.so").write_bytes(b"\x7fELF stale")
    (stale / "old.gpuaot.so.rejected").write_bytes(b"stale")
    pip_wheel(proj, tmp_path / "dist")
    m = members(only("*.whl", tmp_path / "dist"))
    assert [n for n in m if "_gpuaot" in n] == [BUNDLE]
    assert m[BUNDLE] != b"\x7fELF stale"


def test_sdist_has_no_built_file_and_its_wheels_are_reproducible(kit, tmp_path):
    proj = make_project(
        kit, tmp_path, extra='\n[tool.setuptools.package-data]\nshipkern = ["_gpuaot/*"]\n'
    )
    (proj / "shipkern" / "_gpuaot").mkdir()
    (proj / "shipkern" / "_gpuaot" / "shipkern.linux_x86_64.gpuaot.so").write_bytes(b"old")
    run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", tmp_path / "sd", proj])
    sdist = only("*.tar.gz", tmp_path / "sd")
    with tarfile.open(sdist) as tf:
        names = tf.getnames()
    assert any(n.endswith("shipkern/kernels.py") for n in names)
    assert not [n for n in names if "_gpuaot" in n or n.endswith(".so")], names
    bundles = []
    for side in ("a", "b"):
        d = tmp_path / side
        d.mkdir()
        with tarfile.open(sdist) as tf:
            tf.extractall(d, filter="data")
        src = only("shipkern-*", d)
        env = {**os.environ, "GPUAOT_CACHE_DIR": str(tmp_path / f"cache-{side}")}
        run(
            [sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", d / "dist", src],
            env=env,
        )
        bundles.append(members(only("*.whl", d / "dist"))[BUNDLE])
    assert bundles[0] == bundles[1]


# ---------------------------------------------------------------------- installed


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    """numpy's wheel (downloaded once, kept beside the venv) and a wheel of this gpuaot."""
    import numpy

    cache = Path(sys.prefix) / "gpuaot-test-wheelhouse"
    if not list(cache.glob(f"numpy-{numpy.__version__}-*.whl")):
        r = run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--only-binary=:all:",
                "--no-deps",
                "-d",
                cache,
                f"numpy=={numpy.__version__}",
            ],
            check=False,
        )
        if r.returncode != 0:
            pytest.skip(f"cannot download numpy's wheel: {r.stderr[-300:]}")
    house = tmp_path_factory.mktemp("wheelhouse")
    for w in cache.glob(f"numpy-{numpy.__version__}-*.whl"):
        shutil.copy(w, house)
    repo = Path(__file__).resolve().parents[1]
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            house,
            repo,
        ]
    )
    return house


def _fresh_venv(path: Path) -> Path:
    run([sys.executable, "-m", "venv", path])
    return path / "bin" / "python"


def _site_packages_bytes(venv: Path) -> int:
    sp = next(venv.glob("lib/python*/site-packages"))
    return sum(p.stat().st_size for p in sp.rglob("*") if p.is_file())


def test_installed_wheel_runs_with_no_compiler(wheels, wheelhouse, tmp_path):
    venv = tmp_path / "user-venv"
    py = _fresh_venv(venv)
    empty = _site_packages_bytes(venv)
    shutil.copy(wheels["src"], wheelhouse)
    run([py, "-m", "pip", "install", "--no-index", "--find-links", wheelhouse, "shipkern"])
    size = _site_packages_bytes(venv) - empty
    print(f"\ninstalled shipkern + gpuaot + numpy: {size / 1e6:.1f} MB")  # (-s shows it)
    # none of the compiler is there
    probe = run(
        [
            py,
            "-c",
            "import importlib.util as u; print([m for m in ('llvmlite', 'click', "
            "'elftools', 'platformdirs', 'cuda', 'nvidia') if u.find_spec(m)])",
        ],
        cwd=tmp_path,
    )
    assert probe.stdout.strip() == "[]", probe.stdout
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GPUAOT_CPU")}
    r = run([py, CHECK, "shipkern"], cwd=tmp_path, env=env, check=False)
    assert r.returncode == 0 and "ok 7/7" in r.stdout, r.stdout + r.stderr
    # The run time imported no compiler module; the CLI says what to install.
    r = run(
        [
            py,
            "-c",
            "import sys, shipkern, numpy as np; x = np.ones(4, np.float32); "
            "shipkern.saxpy[1, 4](np.float32(1), x, x, x); "
            "print(sorted(m for m in sys.modules if m.startswith(('llvmlite', 'gpuaot.compiler'))))",
        ],
        cwd=tmp_path,
        env=env,
    )
    assert r.stdout.strip() == "[]", r.stdout
    cli = run([venv / "bin" / "gpuaot", "build", "x"], cwd=tmp_path, env=env, check=False)
    assert cli.returncode == 2 and "pip install 'gpuaot[compiler]'" in cli.stderr, cli.stderr
    assert "Traceback" not in cli.stderr


def pip_install(*args) -> None:
    run([sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", *args])


def test_pip_install_target_and_editable(kit, tmp_path):
    proj = make_project(kit, tmp_path)
    target = tmp_path / "target"
    pip_install("--target", target, proj)
    assert (target / BUNDLE).is_file()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *sys.path])}
    env.pop("GPUAOT_CPU", None)
    r = run([sys.executable, CHECK, "shipkern"], cwd=tmp_path, env=env, check=False)
    assert "ok 7/7" in r.stdout, r.stdout + r.stderr
    # editable: the bundle is built into the source tree, where the install imports from
    prefix = tmp_path / "prefix"
    pip_install("--prefix", prefix, "-e", proj)
    assert (proj / BUNDLE).is_file()
    site = next(prefix.glob("lib/python*/site-packages"))
    code = f"import site; site.addsitedir({str(site)!r}); import runpy, sys; sys.argv = ['c', 'shipkern']; runpy.run_path({str(CHECK)!r}, run_name='__main__')"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GPUAOT_CPU")}
    r = run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=False)
    assert "ok 7/7" in r.stdout, r.stdout + r.stderr


# ---------------------------------------------------------------------- bad input


def test_a_project_without_gpuaot_functions_builds_a_plain_wheel(tmp_path):
    proj = tmp_path / "plainproj"
    (proj / "plainpkg").mkdir(parents=True)
    (proj / "plainpkg" / "__init__.py").write_text("X = 1\n")
    (proj / "pyproject.toml").write_text(
        PYPROJECT.format(extra="", settings="").replace('"shipkern"', '"plainpkg"')
    )
    r = pip_wheel(proj, tmp_path / "dist")
    wheel = only("*.whl", tmp_path / "dist")
    assert wheel.name == "plainpkg-1.2.0-py3-none-any.whl"
    assert "no package with gpuaot functions in this project: built a plain wheel" in (
        r.stdout + r.stderr
    )


def test_a_typo_in_tool_gpuaot_fails_naming_the_key(kit, tmp_path):
    proj = make_project(kit, tmp_path, settings='ach = "sm_80"\n')
    r = pip_wheel(proj, tmp_path / "dist", check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "pyproject.toml: [tool.gpuaot] has no setting 'ach' (did you mean 'arch'?)" in out
    assert "Traceback" not in out
    assert not list(tmp_path.rglob("*.whl"))


def test_a_compile_error_fails_with_the_located_diagnostic(kit, tmp_path):
    proj = make_project(kit, tmp_path, layout="src")
    k = proj / "src" / "shipkern" / "kernels.py"
    k.write_text(
        k.read_text().replace("out[i] = axpy(a, x[i], y[i])", "out[i] = axpy(a, x[i], nope)")
    )
    r = pip_wheel(proj, tmp_path / "dist", check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert re.search(r"src/shipkern/kernels\.py:\d+:\d+: error: .*'nope'", out), out
    assert "Traceback" not in out


@pytest.mark.parametrize("layout", ["flat", "src"])
def test_check_wheel_passes_the_built_wheel_and_catches_a_bundle_left_out(wheels, layout, tmp_path):
    from click.testing import CliRunner

    from gpuaot.cli import main

    r = CliRunner().invoke(main, ["check-wheel", str(wheels[layout])])
    assert r.exit_code == 0, r.output
    # the same wheel without its bundle, as setuptools alone would have built it
    bare = tmp_path / wheels[layout].name
    with zipfile.ZipFile(wheels[layout]) as src, zipfile.ZipFile(bare, "w") as dst:
        for info in src.infolist():
            if info.filename != BUNDLE:
                dst.writestr(info, src.read(info))
    r = CliRunner().invoke(main, ["check-wheel", "--format", "json", str(bare)])
    assert r.exit_code == 1, r.output
    assert "missing-bundle" in r.output


def test_an_isolated_build_gets_the_compiler_by_itself(kit, wheelhouse, tmp_path):
    """The default build, as a user runs it: pip's isolated environment starts with only the
    project's ``requires`` (gpuaot, setuptools); the backend must ask for the compiler itself
    (``gpuaot[compiler]`` would not do: pip counts the installed gpuaot as satisfying it)."""
    proj = make_project(kit, tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GPUAOT_CPU")}
    env["GPUAOT_CACHE_DIR"] = str(tmp_path / "cache")
    r = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--find-links",
            wheelhouse,
            "-w",
            tmp_path / "dist",
            proj,
        ],
        env=env,
        check=False,
    )
    out = r.stdout + r.stderr
    if r.returncode != 0 and (
        "Failed to establish a new connection" in out or "No matching distribution" in out
    ):
        pytest.skip("the package index is not reachable for the build requirements")
    assert r.returncode == 0, out[-3000:]
    assert "Installing backend dependencies" in out and "llvmlite" in out
    wheel = only("*.whl", tmp_path / "dist")
    assert wheel.name == f"shipkern-1.2.0-py3-none-{PLATFORM}.whl" and BUNDLE in members(wheel)
