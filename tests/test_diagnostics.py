"""Invalid programs: each a tiny package; the build reports ``file:line:col``, the source line
with a caret, the message, exits 2 and never prints a traceback (SPEC §1).

Expected positions are found in the test's own source text (the first occurrence of a marker
substring), not taken from the compiler.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gpuaot.cli import main

HEADER = """\
import gpuaot as ga
from gpuaot import Array, f32, f64, i64
"""


@dataclass
class Expect:
    marker: str  # where the caret must point: first occurrence in the module
    message: str
    nth: int = 0  # which occurrence of the marker
    module: str = "mod.py"


@dataclass
class Invalid:
    name: str
    source: str  # mod.py, after HEADER
    errors: list[Expect]
    extra: dict | None = None  # more modules: {"other.py": source}
    notes: tuple[str, ...] = ()  # lines that must also appear (call chains)


def src(text: str) -> str:
    return HEADER + textwrap.dedent(text)


def position(text: str, marker: str, nth: int = 0) -> tuple[int, int, str]:
    """1-based line and column of the nth occurrence of marker, and that source line."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(marker, at + 1)
    line = text.count("\n", 0, at) + 1
    col = at - (text.rfind("\n", 0, at) + 1) + 1
    return line, col, text.splitlines()[line - 1]


INVALID = [
    Invalid(
        "unknown_name",
        src("""
        @ga.kernel
        def k(x: Array[f32]):
            i = ga.grid(1)
            x[i] = y + 1
        """),
        [Expect("y + 1", "unknown name 'y'")],
    ),
    Invalid(
        "conflicting_types",
        src("""
        @ga.kernel
        def k(x: Array[f32], n: Array[i64]):
            i = ga.grid(1)
            v = x[i]
            v = n[i]
        """),
        [Expect("v = n[i]", "'v' is f32 here but i64 is assigned")],
    ),
    Invalid(
        "with_statement",
        src("""
        @ga.kernel
        def k(x: Array[f32]):
            with open("f") as fh:
                pass
        """),
        [Expect("with", "'with' statements are not supported in kernels")],
    ),
    Invalid(
        "try_statement",
        src("""
        @ga.kernel
        def k(x: Array[f32]):
            try:
                x[0] = 1
            except ValueError:
                pass
        """),
        [Expect("try:", "'try' statements are not supported in kernels")],
    ),
    Invalid(
        "other_statements",
        src("""
        @ga.kernel
        def k(x: Array[f32]):
            def inner():
                pass
            import math
            del x
            global G
        """),
        [
            Expect("def inner", "nested function definitions are not supported in kernels"),
            Expect("import math", "imports are not supported in kernels"),
            Expect("del x", "'del' statements are not supported in kernels"),
            Expect("global G", "'global' statements are not supported in kernels"),
        ],
        notes=(
            "hint: make it a @device function of the module",
            "hint: import at module level",
        ),
    ),
    Invalid(
        "list_literal",
        src("""
        @ga.kernel
        def k(x: Array[f32]):
            v = [1, 2]
            w = 1 + [3]
        """),
        [
            Expect("[1, 2]", "a list is not supported in kernels"),
            Expect("[3]", "a list is not supported in kernels"),
        ],
    ),
    Invalid(
        "keyword_args",
        src("""
        @ga.device
        def h(a, b):
            return a + b

        @ga.kernel
        def k(x: Array[f32]):
            x[0] = h(x[0], b=2)
        """),
        [Expect("h(x[0], b=2)", "keyword arguments are not supported in kernel calls")],
    ),
    Invalid(
        "kernel_from_kernel",
        src("""
        @ga.kernel
        def other(x: Array[f32]):
            x[0] = 1

        @ga.kernel
        def k(x: Array[f32]):
            other(x)
        """),
        [Expect("other(x)", "kernel 'other' cannot be called from device code")],
    ),
    Invalid(
        "kernel_returns_value",
        src("""
        @ga.kernel
        def k(x: Array[f32]):
            return x[0]
        """),
        [Expect("x[0]\n", "kernels cannot return a value")],
    ),
    Invalid(
        "non_constant_global",
        src("""
        import os

        N = len(os.environ)

        @ga.kernel
        def k(x: Array[f32]):
            x[0] = N
        """),
        [Expect("N\n", "'N' is not a compile-time constant", nth=0)],
    ),
    Invalid(
        "bad_annotation",
        src("""
        @ga.kernel
        def k(x: list, y: Array[f32, 5], z: Array[f32, 2, "B"]):
            pass
        """),
        [
            Expect("list", "'list' is not a gpuaot type"),
            Expect("Array[f32, 5]", "an Array's rank must be 1 to 4"),
            Expect('Array[f32, 2, "B"]', 'an Array\'s layout must be "C" or "A"'),
        ],
    ),
    Invalid(
        "wrong_rank_index",
        src("""
        @ga.kernel
        def k(x: Array[f32], m: Array[f64, 3]):
            i, j = ga.grid(2)
            x[i, j] = 0
            x[0] = m[i, j]
        """),
        [
            Expect("x[i, j]", "a 1-D array takes 1 index, got 2"),
            Expect("m[i, j]", "a 3-D array takes 3 indices, got 2"),
        ],
    ),
    Invalid(
        "recursion",
        src("""
        @ga.device
        def fact(n):
            return 1 if n <= 1 else n * fact(n - 1)

        @ga.kernel
        def k(x: Array[i64]):
            x[0] = fact(x[0])
        """),
        [Expect("fact(n - 1)", "recursive call to 'fact' is not supported")],
    ),
    Invalid(
        "range_misuse",
        src("""
        @ga.kernel
        def k(x: Array[f32]):
            for i in range(0, 10, 0):
                x[i] = 0
            r = range(3)
            for v in x.shape:
                pass
            for i in range(1.5):
                pass
        """),
        [
            Expect("0):", "range() step must not be zero"),
            Expect("range(3)", "range() is only allowed as a for-loop's iterable"),
            Expect(
                "x.shape:", "kernels loop over range(...), a 1-D array or enumerate(...) of one"
            ),
            Expect("1.5", "range() needs integers, not float literal"),
        ],
    ),
    Invalid(
        "string_value",
        src("""
        @ga.kernel
        def k(x: Array[f32]):
            s = "hello"
        """),
        [Expect('"hello"', "strings are only allowed as exception messages")],
    ),
    Invalid(
        "missing_annotation",
        src("""
        @ga.kernel
        def k(x: Array[f32], n):
            pass
        """),
        [Expect("n)", "parameter 'n' of kernel 'k' needs a type annotation")],
    ),
    Invalid(
        "device_only_from_host",
        src("""
        @ga.device_only
        def fast(x):
            return x

        @ga.device
        def mid(x):
            return fast(x) + 1

        @ga.host
        def h(x: Array[f64]) -> f64:
            return mid(x[0])
        """),
        [Expect("fast(x) + 1", "'device_only_from_host.mod.fast' has no CPU implementation")],
        notes=(
            "note: in device 'device_only_from_host.mod.mid'",
            "note: called from host 'device_only_from_host.mod.h' at "
            "device_only_from_host/mod.py:{mid(x[0])}",
            'hint: give it a CPU version with @overlay(fast, target="cpu"); '
            "host functions run on the CPU only",
        ),
    ),
    Invalid(
        "syncthreads_in_host",
        src("""
        @ga.host
        def h(x: Array[f64]) -> f64:
            ga.syncthreads()
            return x[0]
        """),
        [Expect("ga.syncthreads()", "'syncthreads' has no CPU implementation")],
        notes=(
            "note: in host 'syncthreads_in_host.mod.h'",
            "hint: host functions run on the CPU only",
        ),
    ),
    Invalid(
        "syntax_error",
        src("""
        @ga.kernel
        def k(x: Array[f32]:
            pass
        """),
        [Expect(":\n", "syntax error: invalid syntax")],
    ),
    Invalid(
        "kernel_default_args",
        src("""
        @ga.kernel
        def k(x: Array[f32], n: i64 = 3):
            pass
        """),
        [Expect("def k", "kernels take plain positional parameters only")],
    ),
    Invalid(
        "bad_raise",
        src("""
        @ga.kernel
        def k(x: Array[f32]):
            raise ValueError("n=" + x)
            raise MyError("x")
        """),
        [
            Expect('ValueError("n=" + x', "exceptions take one constant string message in kernels"),
            Expect("MyError", "raise a built-in exception type (ValueError, IndexError, ...)"),
        ],
    ),
    Invalid(
        "maybe_unassigned",
        src("""
        @ga.kernel
        def k(x: Array[f64], out: Array[f64]):
            i = ga.grid(1)
            if x[i] > 0:
                v = 1.5
            out[i] = v
            for j in range(3):
                last = j
            out[i] = last
            while x[i] > 0:
                w = 2.0
                break
            out[i] = w
            total += 1.0
            total = 0.0
        """),
        [
            Expect("v\n", "'v' may be used before it is assigned"),
            Expect("last\n", "'last' may be used before it is assigned"),
            Expect("w\n", "'w' may be used before it is assigned"),
            Expect("total +=", "'total' may be used before it is assigned"),
        ],
    ),
    Invalid(
        "two_functions",
        src("""
        @ga.kernel
        def a(x: Array[f32]):
            x[0] = undefined_a

        @ga.device
        def helper(v):
            return v.size

        @ga.kernel
        def b(x: Array[f32]):
            x[0] = helper(x[1])
        """),
        [
            Expect("undefined_a", "unknown name 'undefined_a'"),
            Expect("v.size", "a f32 has no attribute 'size' in kernels"),
        ],
    ),
    Invalid(
        "two_modules",
        src("""
        from .other import helper

        @ga.kernel
        def k(x: Array[f32]):
            x[0] = helper(x[0])
            x[1] = nothing
        """),
        [
            Expect("nothing", "unknown name 'nothing'"),
            Expect("missing", "unknown name 'missing'", module="other.py"),
        ],
        extra={
            "other.py": src("""
            @ga.device
            def helper(v):
                while v > 0:
                    v -= 1
                else:
                    v = missing
                return v
            """)
        },
    ),
    Invalid(
        "bit_intrinsics",
        src("""
        from gpuaot import i32, u8

        @ga.kernel
        def k(x: Array[f32], n: Array[i32], b: Array[u8]):
            x[0] = ga.popc(x[1])
            n[0] = ga.clz(b[0])
            n[1] = ga.ffs(n[0] > 0)
            n[2] = ga.brev()
        """),
        [
            Expect("ga.popc(x[1])", "popc() takes a 32- or 64-bit integer, not f32"),
            Expect("ga.clz(b[0])", "clz() takes a 32- or 64-bit integer, not u8"),
            Expect("ga.ffs(n[0] > 0)", "ffs() takes a 32- or 64-bit integer, not bool"),
            Expect("ga.brev()", "brev() takes one integer"),
        ],
    ),
    Invalid(
        "signature_strings",
        src("""
        @ga.kernel(signatures=["(f32, Array[f32]", "f32", "f32, Array[f33]", "f32, Array[f32]"])
        def k(a, x):
            x[0] = a
        """),
        [
            Expect('"(f32, Array[f32]"', "cannot read the signature '(f32, Array[f32]'"),
            Expect('"f32"', "this signature has 1 types; 'k' takes 2 parameters"),
            Expect('"f32, Array[f33]"', "'f33' is not a gpuaot type"),
        ],
    ),
]

# One error per mistake (issue 12, item 11): a variable whose assignment had an error is not
# reported again where it is read ("'y' is used before it is assigned" after the real error),
# and a GPU-only kernel with a real error reports that error, not the CPU's lack of
# syncthreads. Each case is one typical mistake whose value is used twice afterwards.
ONE_ERROR_PER_MISTAKE = [
    (
        "once_unknown_name_then_used",
        "y = x[i] + undefined",
        "undefined",
        "unknown name 'undefined'",
    ),
    ("once_helper_arity", "y = helper(x[i])", "helper(x[i])", "'helper' takes 2 arguments, got 1"),
    ("once_no_value", "y = nothing(x)", "nothing(x)", "this call returns no value"),
    (
        "once_bad_attribute",
        "y = x.sizee",
        "x.sizee",
        "a Array[f32, 1] has no attribute 'sizee' in kernels",
    ),
    ("once_bad_annotation", "y: list = 3", "list", "'list' is not a gpuaot type"),
    (
        "once_bad_unpack",
        "y, z = x[i], 2, 3",
        "x[i], 2, 3",
        "cannot unpack (f32, int literal, int literal) into 2 names",
    ),
    ("once_unknown_intrinsic", "y = ga.nosuchthing(x[i])", "ga.nosuchthing", None),
    (
        "once_matmul_operator",
        "y = x[i] @ x[i]",
        "x[i] @",
        "operator '@' is not supported in kernels",
    ),
    (
        "once_grid_arguments",
        "y = ga.grid(1, 2)",
        "ga.grid(1, 2)",
        "grid() takes a constant 1, 2 or 3",
    ),
    ("once_math_not_imported", "y = math.sqrt(x[i])", "math.sqrt", "unknown function 'math.sqrt'"),
    ("once_list_literal", "y = [x[i], 1.0]", "[x[i]", "a list is not supported in kernels"),
    ("once_string_value", 'y = "text"', '"text"', "strings are only allowed as exception messages"),
    (
        "once_chained",
        "w = x[i] + undefined\n    y = w * 2",
        "undefined",
        "unknown name 'undefined'",
    ),
    (
        "once_gpu_only_maybe_unassigned",
        "ga.syncthreads()\n    if x[i] > 0:\n        y = 1.0",
        "y * 2",
        "'y' may be used before it is assigned",
    ),
    (
        "once_gpu_only_with_error",
        "ga.syncthreads()\n    y = x + 1",
        "x + 1",
        "left operand of '+' must be a number or bool, not Array[f32, 1]",
    ),
]
CASCADE_HELPERS = """
@ga.device
def helper(a, b):
    return a + b


@ga.device
def nothing(x: Array[f32]):
    x[0] = 1.0


@ga.kernel
def k(x: Array[f32]):
    i = ga.grid(1)
    {mistake}
    x[i] = y * 2
    x[i] = y + x[i]
"""
for _name, _mistake, _marker, _message in ONE_ERROR_PER_MISTAKE:
    INVALID.append(
        Invalid(
            _name,
            HEADER + CASCADE_HELPERS.format(mistake=_mistake),
            [Expect(_marker, _message or "'gpuaot.nosuchthing' is not a kernel intrinsic")],
        )
    )

INVALID.append(
    Invalid(
        "two_mistakes_two_errors",  # a mistake in a condition does not hide one in its body
        src("""
        @ga.kernel
        def k(x: Array[f32]):
            i = ga.grid(1)
            if x[i] > limit:
                y = x[i] @ 2.0
                x[i] = y
            while x[i] < undefined_bound:
                x[i] += "s"
            assert x[i] > lo, "positive"
            x[i] = z
        """),
        [
            Expect("limit", "unknown name 'limit'"),
            Expect("x[i] @", "operator '@' is not supported in kernels"),
            Expect("undefined_bound", "unknown name 'undefined_bound'"),
            Expect('"s"', "strings are only allowed as exception messages"),
            Expect("lo,", "unknown name 'lo'"),
            Expect("z\n", "unknown name 'z'"),
        ],
    )
)


def _expected_block(pkg: str, text: str, e: Expect) -> str:
    # The caret points at the marker; for "x:\n"-style markers, at its first character.
    line, col, code = position(text, e.marker, e.nth)
    return f"{pkg}/{e.module}:{line}:{col}: error: {e.message}\n    {code}\n    {' ' * (col - 1)}^"


def _write(kit, tmp_path: Path, case: Invalid) -> Path:
    files = {"mod.py": case.source, **(case.extra or {})}
    return kit.write_package(tmp_path / case.name, files)


def _build_cli(tmp_path: Path, pkg: str, *extra: str):
    return CliRunner().invoke(
        main,
        [
            "build",
            pkg,
            "--no-gpu",
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "cache"),
            *extra,
        ],
    )


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.name)
def test_invalid_program(kit, tmp_path, monkeypatch, case: Invalid):
    root = _write(kit, tmp_path, case)
    monkeypatch.chdir(tmp_path)  # diagnostics print paths relative to the working directory
    result = _build_cli(tmp_path, case.name)
    out = result.output
    assert result.exit_code == 2, out
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in out
    for e in case.errors:
        text = (root / e.module).read_text()
        assert _expected_block(case.name, text, e) in out, out
    assert out.count(": error: ") == len(case.errors), out
    n = len(case.errors)
    assert out.rstrip().endswith(f"{n} error{'s' if n != 1 else ''}"), out
    for note in case.notes:
        if "{" in note:  # "{marker}" stands for that marker's line:col in mod.py
            marker = note[note.index("{") + 1 : note.index("}")]
            line, col, _ = position((root / "mod.py").read_text(), marker)
            note = note.replace("{" + marker + "}", f"{line}:{col}")
        assert note in out, out
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_json_build_error_is_text_on_stderr_and_one_object_on_stdout(kit, tmp_path, monkeypatch):
    case = INVALID[0]
    _write(kit, tmp_path, case)
    monkeypatch.chdir(tmp_path)
    result = _build_cli(tmp_path, case.name, "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)  # SPEC §1: a failure is also one JSON object on stdout
    assert doc["exit_code"] == 2 and doc["diagnostics"][0]["message"] == "unknown name 'y'"
    assert "unknown name 'y'" in result.stderr and "Traceback" not in result.stderr


def test_compile_errors_carry_locations(kit, tmp_path, monkeypatch):
    """The driver's exception holds every error, sorted, each with its Location."""
    from gpuaot.compiler.driver import BuildOptions, build_package
    from gpuaot.errors import CompileErrors

    case = next(c for c in INVALID if c.name == "two_functions")
    root = _write(kit, tmp_path, case)
    monkeypatch.chdir(tmp_path)
    opts = BuildOptions.resolve(
        case.name, no_gpu=True, out_dir=tmp_path / "out", cache_dir=str(tmp_path / "cache")
    )
    with pytest.raises(CompileErrors) as info:
        build_package(opts)
    text = (root / "mod.py").read_text()
    got = [(e.loc.file, e.loc.line, e.loc.col + 1, e.message) for e in info.value.errors]
    want = [(f"{case.name}/mod.py", *position(text, e.marker)[:2], e.message) for e in case.errors]
    assert got == want
    assert info.value.exit_code == 2


def test_subprocess_build_error(kit, tmp_path):
    """The installed command, as a user runs it: exit 2, located error, no traceback."""
    case = next(c for c in INVALID if c.name == "recursion")
    root = _write(kit, tmp_path, case)
    proc = subprocess.run(
        [
            str(kit.VENV_BIN / "gpuaot"),
            "build",
            case.name,
            "--no-gpu",
            "--out",
            "out",
            "--cache-dir",
            "cache",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    expected = _expected_block(case.name, (root / "mod.py").read_text(), case.errors[0])
    assert expected in proc.stderr
    assert "hint: rewrite the recursion as a loop" in proc.stderr


EMIT_PKG = src("""
    @ga.device_only
    def fast(x):
        return x

    @ga.device
    def mid(x):
        return fast(x) + 1

    @ga.kernel
    def k(x: Array[f64]):
        i = ga.grid(1)
        x[i] = mid(x[i])
    """)


def test_emit_device_only_chain(kit, tmp_path, monkeypatch):
    """``emit --target cpu`` of a kernel that reaches a @device_only helper fails with the
    chain; the build itself only records the kernel as GPU-only."""
    kit.write_package(tmp_path / "emitpkg", {"mod.py": EMIT_PKG})
    monkeypatch.chdir(tmp_path)  # `emitpkg` is found as an importable name from here
    result = CliRunner().invoke(main, ["emit", "emitpkg.mod:k", "--target", "cpu", "--stage", "ir"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    line, col, _ = position(EMIT_PKG, "fast(x) + 1")
    kline, kcol, _ = position(EMIT_PKG, "mid(x[i])")
    assert (
        f"emitpkg/mod.py:{line}:{col}: error: 'emitpkg.mod.fast' has no CPU implementation"
        in result.output
    )
    assert "note: in device 'emitpkg.mod.mid'" in result.output
    assert (
        'hint: give it a CPU version with @overlay(fast, target="cpu"), or launch this '
        "kernel on the GPU only" in result.output
    )
    assert (
        f"note: called from kernel 'emitpkg.mod.k' at emitpkg/mod.py:{kline}:{kcol}"
        in result.output
    )

    built = _build_cli(tmp_path, "emitpkg", "--json")
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout)["gpu_only"] == ["emitpkg.mod.k"]


DEFINITELY_ASSIGNED = src("""
    @ga.device
    def pick(c, a, b):
        if c:
            r = a
        else:
            r = b
        return r

    @ga.device
    def first_positive(x):
        for j in range(x.shape[0]):
            if x[j] > 0:
                return j
        return -1

    @ga.kernel
    def k(x: Array[f64], out: Array[f64]):
        i = ga.grid(1)
        if i >= x.shape[0]:
            return
        if x[i] > 1:
            v = 1.0
        elif x[i] > 0:
            v = 2.0
        else:
            raise ValueError("not positive")
        j = 0
        while True:
            j += 1
            if j > 3:
                w = v * j
                break
            if x[i] > 100:
                w = 0.0
                break
        acc = 0.0
        for t in range(4):
            acc += t
        out[i] = pick(x[i] > 2, v, w) + acc + first_positive(x)
    """)


def test_definitely_assigned_patterns_build(kit, tmp_path, monkeypatch):
    """Reads that every path reaches after an assignment compile, and compute as Python does."""
    root = kit.write_package(tmp_path / "defpkg", {"mod.py": DEFINITELY_ASSIGNED})
    kit.build(root, cache_dir=tmp_path / "cache")
    kit.import_package(root, monkeypatch)
    mod = importlib.import_module("defpkg.mod")
    x = np.array([0.5, 1.5, 3.0, 2.5])
    out, sim = np.zeros(4), np.zeros(4)
    mod.k[1, 4](x, out)
    mod.k.simulate[1, 4](x, sim)
    np.testing.assert_array_equal(out, sim)
    np.testing.assert_array_equal(out, [2.0 * 4 + 6, 1.0 * 4 + 6, 1.0 + 6, 1.0 + 6])
    kit.unload("defpkg")


def test_gpu_only_kernel_mistake_once_with_the_gpu_target(kit, tmp_path, monkeypatch):
    """Built for the CPU and the GPU: the GPU-only kernel's mistake is one error (both targets
    find it), and the CPU's lack of syncthreads is not reported."""
    import shutil

    from gpuaot.compiler.driver import BuildOptions, build_package
    from gpuaot.errors import CompileErrors

    if shutil.which("ptxas") is None:
        pytest.skip("ptxas not found")
    case = next(c for c in INVALID if c.name == "once_gpu_only_with_error")
    root = _write(kit, tmp_path, case)
    monkeypatch.chdir(tmp_path)
    opts = BuildOptions.resolve(case.name, out_dir=tmp_path / "out", cache_dir=str(tmp_path / "c"))
    assert opts.gpu
    with pytest.raises(CompileErrors) as info:
        build_package(opts)
    line, col, _ = position((root / "mod.py").read_text(), case.errors[0].marker)
    got = [(e.loc.line, e.loc.col + 1, e.message) for e in info.value.errors]
    assert got == [(line, col, case.errors[0].message)]
