"""The command line's exits: a closed pipe never changes the exit code, ``-o`` that cannot be
written is a usage error, a bug is one line saying so (``--traceback`` shows it).

    $ gpuaot check-leaks -v build/ | head -1; echo ${PIPESTATUS[0]}    # the verdict, always
    $ gpuaot check-leaks -o /nonexistent/dir/r.txt build/              # exit 2, one line

The pipe tests run the installed command with stdout a pipe the test closes: before anything
is written, after the first line, or after a few bytes, so the write meets the closed pipe at
every point (in the report, in its flush, at the interpreter's flush at exit).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpuaot.cli import main

RUNS = 20
MODES = ["first-line", "at-once", "some-bytes", "first-line-stderr-too"]


def gpuaot_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("gpuaot")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "gpuaot"]


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    """A clean tree of 1,500 ELF files (-v prints far more than a pipe buffers), and a leaky
    copy with one object that references gpu_report_exception."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    work = tmp_path_factory.mktemp("pipes")
    (work / "clean.c").write_text("int clean(int x) { return x + 1; }\n")
    (work / "leak.c").write_text(
        "void gpu_report_exception(int);\nvoid launch(int x) { gpu_report_exception(x); }\n"
    )
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", work / "clean.so", work / "clean.c"], check=True
    )
    subprocess.run(["gcc", "-c", "-o", work / "leak.o", work / "leak.c"], check=True)
    clean, leaky = work / "clean", work / "leaky"
    for d in (clean, leaky):
        d.mkdir()
        for i in range(1500):
            os.link(work / "clean.so", d / f"libclean_with_a_long_enough_name_{i:04}.so")
    shutil.copy(work / "leak.o", leaky / "leak.o")
    return {"clean": clean, "leaky": leaky}


def run_closing(args: list[str], mode: str) -> tuple[int, str]:
    """Run gpuaot with stdout a pipe closed early (per ``mode``); (exit code, stderr)."""
    stderr = subprocess.STDOUT if mode.endswith("stderr-too") else subprocess.PIPE
    proc = subprocess.Popen([*gpuaot_cmd(), *args], stdout=subprocess.PIPE, stderr=stderr)
    if mode.startswith("first-line"):
        proc.stdout.readline()
    elif mode == "some-bytes":
        proc.stdout.read(50)
    proc.stdout.close()
    err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    return proc.wait(timeout=120), err


@pytest.mark.parametrize("tree, code", [("clean", 0), ("leaky", 1)])
def test_closed_pipe_keeps_the_exit_code(trees, tree, code):
    seen = []
    for i in range(RUNS):
        mode = MODES[i % len(MODES)]
        rc, err = run_closing(["check-leaks", "--no-config", "-v", str(trees[tree])], mode)
        seen.append((mode, rc))
        assert "Exception ignored" not in err and "Traceback" not in err, (mode, err)
        assert "BrokenPipe" not in err and "internal error" not in err, (mode, err)
    assert all(rc == code for _, rc in seen), seen  # never 120, 141 (SIGPIPE) or click's 1


@pytest.mark.parametrize("fmt", ["json", "sarif", "github"])
def test_closed_pipe_other_formats(trees, fmt):
    for mode in MODES:
        rc, err = run_closing(
            ["check-leaks", "--no-config", "--format", fmt, str(trees["leaky"])], mode
        )
        assert rc == 1 and "Exception ignored" not in err and "Traceback" not in err, (mode, err)


def test_closed_pipe_inspect(built):
    bundle = str(built("example").bundle)
    for args in (["inspect", "-v", bundle], ["inspect", "--json", bundle]):
        for mode in MODES:
            rc, err = run_closing(args, mode)
            assert rc == 0 and "Exception ignored" not in err and "Traceback" not in err, (
                args,
                mode,
                err,
            )


# -- -o that cannot be written ----------------------------------------------------------------------


def _unwritable_cases(tmp_path: Path) -> list[str]:
    cases = ["/nonexistent/dir/r.txt", str(tmp_path / "missing" / "r.txt")]
    afile = tmp_path / "a-file"
    afile.write_text("")
    cases.append(str(afile / "r.txt"))  # a "directory" that is a file
    if os.geteuid() != 0:  # root writes into read-only directories: permissions do not apply
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        cases.append(str(ro / "r.txt"))
    return cases


@pytest.mark.parametrize("command", ["check-leaks", "check-wheel"])
def test_unwritable_output_is_a_usage_error(trees, tmp_path, command):
    target = trees["clean"] / "libclean_with_a_long_enough_name_0000.so"
    if command == "check-wheel":
        target = tmp_path / "x-0.1-py3-none-any.whl"
        target.write_bytes(b"")
    for out in _unwritable_cases(tmp_path):
        args = [command, "--no-config", "-o", out, str(target)]
        proc = subprocess.run([*gpuaot_cmd(), *args], capture_output=True, text=True, timeout=60)
        r = CliRunner().invoke(main, args)
        for code, err in ((proc.returncode, proc.stderr), (r.exit_code, r.stderr)):
            assert code == 2, (out, err)
            (line,) = err.strip().splitlines()  # one line, no traceback
            assert line.startswith("error: cannot write the report to ") and out in line, line
            assert "internal error" not in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_is_a_usage_error(trees, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    r = CliRunner().invoke(main, ["check-leaks", "-o", str(ro / "r.txt"), str(trees["clean"])])
    assert r.exit_code == 2 and "is not writable" in r.stderr


# -- internal errors and --traceback ----------------------------------------------------------------


def _boom(*args, **kwargs):
    raise RuntimeError("simulated bug \x1b[2J")


BUGS = {
    "check-leaks": ("gpuaot.leaks.scan", "Scanner.scan", ["check-leaks", "--no-config", "."], 3),
    "check-wheel": (
        "gpuaot.leaks.wheelcheck",
        "check_wheels",
        ["check-wheel", "--no-config", "x.whl"],
        3,
    ),
    "build": ("gpuaot.compiler.driver", "BuildOptions.resolve", ["build", "pkg"], 2),
    "inspect": ("gpuaot.bundle.inspect", "read_bundle_manifest", ["inspect", "b.so"], 2),
    "emit": ("gpuaot.compiler.driver", "emit_function", ["emit", "pkg.mod:f"], 2),
}


@pytest.mark.parametrize("command", sorted(BUGS))
def test_internal_error_is_one_line_and_traceback_shows_it(command, monkeypatch, tmp_path):
    import importlib

    module, attr, args, code = BUGS[command]
    owner = importlib.import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    monkeypatch.setattr(owner, name, _boom)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.whl").write_bytes(b"")
    r = CliRunner().invoke(main, args)
    assert r.exit_code == code, r.output
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"error: internal error in gpuaot {command}: RuntimeError: ")
    assert "simulated bug \\x1b[2J" in line and "--traceback" in line  # escaped, one line
    assert "Traceback" not in r.output
    r = CliRunner().invoke(main, [*args, "--traceback"])
    assert isinstance(r.exception, RuntimeError)


def test_internal_error_under_json_is_one_json_object(monkeypatch):
    import json

    import gpuaot.bundle.inspect as inspect

    monkeypatch.setattr(inspect, "read_bundle_manifest", _boom)
    r = CliRunner().invoke(main, ["inspect", "--json", "b.so"])
    assert r.exit_code == 2
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["exit_code"] == 2 and "internal error" in doc["error"]


def test_every_command_has_traceback():
    assert {"build", "inspect", "emit", "check-leaks", "check-wheel"} <= set(main.commands)
    for name in main.commands:
        r = CliRunner().invoke(main, [name, "--help"])
        assert r.exit_code == 0 and "--traceback" in r.output, name
