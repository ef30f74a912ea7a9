"""The CI recipe the README shows, and the pre-commit hook the repository ships, are valid:
the workflow against GitHub's workflow schema (SchemaStore's, vendored by check-jsonschema),
the hook manifest through pre-commit's own loader, and the hook's entry run for real."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _workflow() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    (block,) = [b for b in blocks if "cibuildwheel" in b]
    return block


def test_readme_workflow_is_a_valid_github_workflow(tmp_path):
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("check-jsonschema is not installed (a dev dependency)")
    wf = tmp_path / "wheels.yml"
    wf.write_text(_workflow())
    r = subprocess.run(
        [exe, "--builtin-schema", "vendor.github-workflows", str(wf)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    # a control: the schema does reject a broken workflow
    wf.write_text(_workflow().replace("runs-on:", "runs_on:"))
    bad = subprocess.run(
        [exe, "--builtin-schema", "vendor.github-workflows", str(wf)], capture_output=True
    )
    assert bad.returncode != 0


def test_readme_workflow_builds_checks_and_uploads_sarif():
    import yaml

    wf = yaml.safe_load(_workflow())
    (job,) = wf["jobs"].values()
    steps = job["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("pypa/cibuildwheel@") for u in uses)
    check = next(s for s in steps if "gpuaot check-wheel" in s.get("run", ""))
    cmd = next(ln for ln in check["run"].splitlines() if "check-wheel" in ln)
    argv = shlex.split(cmd)
    assert argv[argv.index("--format") + 1] == "sarif"
    sarif = argv[argv.index("-o") + 1]
    upload = next(
        s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload-sarif@")
    )
    assert upload["with"]["sarif_file"] == sarif and upload.get("if") == "always()"
    assert job["permissions"]["security-events"] == "write"
    # the wheels the check reads are the ones cibuildwheel wrote
    cibw = next(s for s in steps if s.get("uses", "").startswith("pypa/cibuildwheel@"))
    assert any(a.startswith(cibw["with"]["output-dir"] + "/") for a in argv)


def test_pre_commit_hook_manifest_loads_and_its_entry_runs(tmp_path):
    clientlib = pytest.importorskip("pre_commit.clientlib")
    (hook,) = clientlib.load_manifest(str(REPO / ".pre-commit-hooks.yaml"))
    assert hook["id"] == "gpuaot-check-leaks" and hook["language"] == "python"
    files = re.compile(hook["files"])
    for name in ("libk.so", "libk.so.1", "libk.a", "k.o", "pkg-1.0-py3-none-any.whl"):
        assert files.search(name), name
    assert not files.search("kernels.py")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    clean, leaky = tmp_path / "libclean.so", tmp_path / "libleaky.so"
    for out, src in (
        (clean, "int add(int a, int b) { return a + b; }\n"),
        (leaky, "void gpu_report_exception(int);\nvoid f(void) { gpu_report_exception(1); }\n"),
    ):
        c = out.with_suffix(".c")
        c.write_text(src)
        subprocess.run([cc, "-shared", "-fPIC", "-o", str(out), str(c)], check=True)
    entry = shlex.split(hook["entry"])
    exe = shutil.which(entry[0], path=str(Path(sys.executable).parent))
    assert exe is not None
    ok = subprocess.run([exe, *entry[1:], *hook["args"], str(clean)], capture_output=True)
    assert ok.returncode == 0, ok.stderr
    found = subprocess.run(
        [exe, *entry[1:], *hook["args"], str(clean), str(leaky)], capture_output=True, text=True
    )
    assert found.returncode == 1 and "gpu_report_exception" in found.stdout + found.stderr
