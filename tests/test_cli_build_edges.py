"""``gpuaot build`` edge cases (SPEC §1): usage errors that touch no bundle, installed
packages need ``--out``, and ``--json`` failures are one JSON object on stdout."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gpuaot.cli import main


@pytest.fixture
def built_example(kit, tmp_path):
    root = kit.copy_package(kit.FIXTURES / "example", tmp_path / "src")
    r = CliRunner().invoke(
        main, ["build", str(root), "--no-gpu", "--cache-dir", str(tmp_path / "cache")]
    )
    assert r.exit_code == 0, r.output
    (bundle,) = (root / "_gpuaot").glob("*.so")
    return root, bundle


@pytest.mark.parametrize(
    "args, why",
    [
        (["--no-cpu", "--no-gpu"], "--no-cpu and --no-gpu together build nothing"),
        (["--arch", ""], "--arch needs one or more architectures"),
        (["--arch", " , "], "--arch needs one or more architectures"),
        (["--arch", "sm_"], "'sm_' is not an architecture like sm_80"),
        (["--jobs", "0", "--no-gpu"], None),  # 0 means "the cores": fine
    ],
)
def test_usage_errors_touch_no_bundle(built_example, args, why):
    root, bundle = built_example
    before = bundle.read_bytes(), bundle.stat().st_mtime_ns
    r = CliRunner().invoke(main, ["build", str(root), *args])
    if why is None:
        assert r.exit_code == 0, r.output
        return
    assert r.exit_code == 2, r.output
    (line,) = r.output.strip().splitlines()  # one line, no traceback
    assert line.startswith("error: ") and why in line
    assert (bundle.read_bytes(), bundle.stat().st_mtime_ns) == before
    assert [p.name for p in bundle.parent.iterdir()] == [bundle.name]


def test_an_installed_package_needs_out(kit, tmp_path):
    """A package that belongs to an installed distribution (its RECORD lists it) is not
    built in place; with --out it is."""
    site = tmp_path / "site"
    root = kit.copy_package(kit.FIXTURES / "example", site)
    info = site / "example-1.0.dist-info"
    info.mkdir()
    (info / "RECORD").write_text("example/__init__.py,sha256=x,1\nexample/kernels.py,,\n")
    r = CliRunner().invoke(main, ["build", str(root), "--no-gpu"])
    assert r.exit_code == 2
    assert "belongs to the installed distribution example-1.0.dist-info" in r.output
    assert "--out DIR" in r.output and not (root / "_gpuaot").exists()
    out = tmp_path / "out"
    r = CliRunner().invoke(
        main,
        ["build", str(root), "--no-gpu", "--out", str(out), "--cache-dir", str(tmp_path / "c")],
    )
    assert r.exit_code == 0, r.output
    assert list(out.glob("*.gpuaot.so")) and not (root / "_gpuaot").exists()


def test_a_package_in_site_packages_needs_out():
    from pathlib import Path

    import click as installed  # any package of this venv's site-packages

    r = CliRunner().invoke(main, ["build", str(Path(installed.__file__).parent), "--no-gpu"])
    assert r.exit_code == 2 and "is not a source tree (it is in " in r.output


def test_json_failure_is_one_object_with_the_diagnostics(kit, tmp_path):
    root = kit.write_package(
        tmp_path / "bad",
        {
            "k.py": "import gpuaot as ga\nfrom gpuaot import f32, Array\n\n\n@ga.kernel\n"
            "def k(x: Array[f32]):\n    x[0] = nope\n"
        },
    )
    r = CliRunner().invoke(main, ["build", str(root), "--no-gpu", "--json"])
    assert r.exit_code == 2
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["exit_code"] == 2
    (d,) = doc["diagnostics"]
    assert d["file"].endswith("k.py") and (d["line"], d["col"]) == (7, 12)
    assert d["message"] == "unknown name 'nope'" and d["hint"]
    r = CliRunner().invoke(main, ["build", str(root), "--no-gpu", "--cpu", "nope", "--json"])
    assert r.exit_code == 2
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == 2 and "not a known CPU level" in doc["diagnostics"][0]["message"]
