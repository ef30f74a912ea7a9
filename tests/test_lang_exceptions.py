"""The package's own exception classes (issue 12, item 8): compiled on the CPU backend they
raise what ``simulate`` raises (the same class object, the message, and the raising line,
thread and block that simulate's own traceback shows); ptxas assembles the GPU build of a
raise; a stale class falls back to its built-in base with a note; mistakes are located.
"""

from __future__ import annotations

import importlib
import shutil
import textwrap

import numpy as np
import pytest

from gpuaot.bundle.manifest import Site
from gpuaot.runtime.exceptions import raise_device_exception

i64 = np.int64
ARCHS = ["sm_75", "sm_80", "sm_90"]


def _simulated(fn, config, *args):
    """What ``simulate`` raises, with the kernel line it raised at and the simulated thread
    and block, read from the frames of simulate's own traceback."""
    with pytest.raises(Exception) as info:
        fn.simulate[config](*args)
    code = fn.py_func.__code__
    line = tid = bid = None
    tb = info.value.__traceback__
    while tb is not None:
        f = tb.tb_frame
        if f.f_code.co_name == "_run_block":  # the thread-by-thread loop: its tid and bid
            tid = tuple(int(v) for v in f.f_locals["tid"])
            bid = tuple(int(v) for v in f.f_locals["bid"])
        if (f.f_code.co_name, f.f_code.co_filename) == (code.co_name, code.co_filename):
            line = tb.tb_lineno
        tb = tb.tb_next
    return info.value, line, tid, bid


def _compiled(fn, config, *args):
    with pytest.raises(Exception) as info:
        fn[config](*args)
    return info.value


def _expected(sim, qualname: str, file: str, line: int, tid, bid) -> str:
    where = f"(in kernel '{qualname}' at {file}:{line}, thread {tid}, block {bid})"
    return f"{sim} {where}" if str(sim) else where


# ---------------------------------------------------------------------- the conformance kernels


@pytest.fixture(scope="module")
def lang_exc(built):
    return built("conformance").module.lang_exc


@pytest.mark.parametrize("mode", range(6))
@pytest.mark.parametrize("target", [5, 37])
def test_cpu_raises_what_simulate_raises(lang_exc, mode, target):
    fn = lang_exc.raise_own
    out = np.zeros(64, i64)
    sim, line, tid, bid = _simulated(fn, (2, 32), target, mode, out)
    assert (tid, bid) == ((target % 32, 0, 0), (target // 32, 0, 0))
    got = _compiled(fn, (2, 32), target, mode, out)
    assert type(got) is type(sim)
    assert str(got) == _expected(
        sim, "conformance.lang_exc.raise_own", "conformance/lang_exc.py", line, tid, bid
    )


def test_the_classes_are_the_users(lang_exc):
    out = np.zeros(64, i64)
    got = _compiled(lang_exc.raise_own, (2, 32), 3, 1, out)
    assert isinstance(got, lang_exc.LangError) and isinstance(got, ValueError)
    assert type(got) is lang_exc.RangeProblem
    assert str(got).startswith("bad input (in kernel ")
    got = _compiled(lang_exc.raise_own, (2, 32), 3, 5, out)
    assert str(got).startswith("limit is 007: bad input (")  # f"limit is {LIMIT:03d}: " + ...
    lang_exc.raise_own[2, 32](-1, 0, out)  # no thread raises
    np.testing.assert_array_equal(out, np.arange(1, 65))


def test_host_function_raises_the_users_class(lang_exc):
    with pytest.raises(Exception) as sim:
        lang_exc.h_raise_own.py_func(-1)
    with pytest.raises(Exception) as got:
        lang_exc.h_raise_own(-1)
    assert type(got.value) is type(sim.value) is lang_exc.LangError
    assert str(got.value).startswith(f"{sim.value} (in host function ")
    assert lang_exc.h_raise_own(4) == 8


def test_assert_message_from_a_constant(lang_exc):
    mod = lang_exc
    x = np.arange(10, dtype=i64)
    sim, line, tid, bid = _simulated(mod.assert_const, (1, 10), x.copy())
    got = _compiled(mod.assert_const, (1, 10), x.copy())
    assert type(got) is type(sim) is AssertionError
    assert str(got) == _expected(
        sim, "conformance.lang_exc.assert_const", "conformance/lang_exc.py", line, tid, bid
    )
    assert tid == (7, 0, 0) and str(sim) == "bad input"


# ---------------------------------------------------------------------- the launcher's fallback


def _site(**kw) -> Site:
    return Site(**{"type": "ValueError", "message": "m", "file": "p/k.py", "line": 3, **kw})


RECORD = [1, 0, 2, 0, 0, 1, 0, 0]


def test_a_builtin_site_raises_the_builtin():
    with pytest.raises(KeyError) as info:
        raise_device_exception("kernel", "p.k.f", [_site(type="KeyError")], RECORD)
    assert (
        info.value.args[0] == "m (in kernel 'p.k.f' at p/k.py:3, thread (2, 0, 0), block (1, 0, 0))"
    )


def test_an_unimportable_class_falls_back_to_its_base():
    site = _site(type="no_such_pkg_gpuaot.errors.Bad", base="LookupError")
    with pytest.raises(LookupError) as info:
        raise_device_exception("kernel", "p.k.f", [site], RECORD)
    assert type(info.value) is LookupError
    msg = str(info.value)
    assert msg.startswith("m (in kernel 'p.k.f' at p/k.py:3, thread (2, 0, 0), block (1, 0, 0); ")
    assert "note: raised as LookupError: no_such_pkg_gpuaot.errors.Bad cannot be imported" in msg
    assert "ModuleNotFoundError" in msg


def test_a_class_that_is_no_longer_one_falls_back(lang_exc, monkeypatch):
    monkeypatch.setattr(lang_exc, "LangError", 42)
    out = np.zeros(64, i64)
    got = _compiled(lang_exc.raise_own, (2, 32), 3, 0, out)
    assert type(got) is ValueError
    assert "note: raised as ValueError: conformance" in str(got)
    assert str(got).endswith(".lang_exc.LangError is no longer an exception class)")
    monkeypatch.undo()
    assert type(_compiled(lang_exc.raise_own, (2, 32), 3, 0, out)) is lang_exc.LangError


def test_a_changed_constructor_falls_back(monkeypatch):
    mod = type(importlib)("gpuaot_test_excmod")

    class Strict(ValueError):
        def __init__(self):
            super().__init__("no message")

    mod.Strict = Strict
    monkeypatch.setitem(__import__("sys").modules, "gpuaot_test_excmod", mod)
    site = _site(type="gpuaot_test_excmod.Strict", base="ValueError")
    with pytest.raises(ValueError) as info:
        raise_device_exception("host function", "p.k.h", [site], RECORD)
    assert type(info.value) is ValueError
    assert "note: raised as ValueError: gpuaot_test_excmod.Strict('m') fails: TypeError" in str(
        info.value
    )


# ---------------------------------------------------------------------- across modules, and ptxas

ERRORS = """\
class PkgError(ValueError):
    \"\"\"The package's base error.\"\"\"


class DeepError(PkgError):
    pass


MSG = "from errors.py"
"""

MOD = """\
import gpuaot as ga
from gpuaot import Array, i64

from . import errors as E
from .errors import MSG, PkgError

HERE = "here: " + MSG


class Local(E.DeepError): ...


@ga.kernel
def check(target: i64, mode: i64, out: Array[i64]):
    i = ga.grid(1)
    if i == target:
        if mode == 0:
            raise PkgError(MSG)
        if mode == 1:
            raise E.DeepError(E.MSG)
        if mode == 2:
            raise Local(HERE)
        raise Local(f"{E.MSG} / {HERE!r}")
    if i < out.shape[0]:
        out[i] = i


@ga.kernel
def gpu_only(target: i64, out: Array[i64]):
    i = ga.grid(1)
    ga.syncthreads()
    if i == target:
        raise Local(MSG)
    if i < out.shape[0]:
        out[i] = i
"""


@pytest.fixture(scope="module")
def excpkg(tmp_path_factory, kit):
    """The package built for the CPU and for every default GPU architecture (ptxas)."""
    from gpuaot.compiler.driver import BuildOptions, build_package

    if shutil.which("ptxas") is None:
        pytest.skip("ptxas not found")
    root = tmp_path_factory.mktemp("exc")
    pkg = kit.write_package(root / "excpkg", {"errors.py": ERRORS, "mod.py": MOD})
    opts = BuildOptions.resolve(str(pkg), cache_dir=str(root / "cache"))
    return root, pkg, build_package(opts)


def test_ptxas_assembles_raises_of_package_classes(excpkg):
    _, _, result = excpkg
    m = result.manifest
    assert len(m["images"]) >= 1
    for img in m["images"]:
        assert sorted((e["kind"], e["arch"]) for e in img["entries"]) == sorted(
            [("elf", a) for a in ARCHS] + [("ptx", "sm_75")]
        )
    specs = {k["name"]: k["specializations"][0] for k in m["kernels"]}
    want = [
        ("excpkg.errors.PkgError", "from errors.py", "ValueError"),
        ("excpkg.errors.DeepError", "from errors.py", "ValueError"),
        ("excpkg.mod.Local", "here: from errors.py", "ValueError"),
        ("excpkg.mod.Local", "from errors.py / 'here: from errors.py'", "ValueError"),
    ]
    for code in ("cpu", "gpu"):
        sites = [(s["type"], s["message"], s["base"]) for s in specs["check"][code]["sites"]]
        assert sites == want, code
    gpu_sites = specs["gpu_only"]["gpu"]["sites"]
    assert [(s["type"], s["base"]) for s in gpu_sites] == [("excpkg.mod.Local", "ValueError")]
    assert specs["gpu_only"]["gpu_only"].endswith("in kernel 'excpkg.mod.gpu_only'")


def test_classes_across_modules_cpu_vs_simulate(excpkg, kit, monkeypatch):
    root, pkg, _ = excpkg
    kit.import_package(pkg, monkeypatch)
    mod = importlib.import_module("excpkg.mod")
    try:
        for mode in range(4):
            out = np.zeros(16, i64)
            sim, line, tid, bid = _simulated(mod.check, (2, 8), 11, mode, out)
            got = _compiled(mod.check, (2, 8), 11, mode, out)
            assert type(got) is type(sim) and isinstance(got, ValueError)
            assert str(got) == _expected(sim, "excpkg.mod.check", "excpkg/mod.py", line, tid, bid)
        assert type(got) is mod.Local and issubclass(mod.Local, mod.E.PkgError)
        sim = _simulated(mod.gpu_only, (1, 4), 2, np.zeros(4, i64))[0]
        assert type(sim) is mod.Local and str(sim) == "from errors.py"
    finally:
        kit.unload("excpkg")


# ---------------------------------------------------------------------- mistakes


def _errors(kit, tmp_path, monkeypatch, files: dict[str, str]) -> list[tuple]:
    from gpuaot.compiler.driver import BuildOptions, build_package
    from gpuaot.errors import CompileErrors

    root = kit.write_package(tmp_path / "badexc", files)
    monkeypatch.chdir(tmp_path)
    opts = BuildOptions.resolve(
        root.name, no_gpu=True, out_dir=tmp_path / "out", cache_dir=str(tmp_path / "cache")
    )
    with pytest.raises(CompileErrors) as info:
        build_package(opts)
    return [(e.loc.line, e.loc.col + 1, e.message) for e in info.value.errors]


HEADER = "import gpuaot as ga\nfrom gpuaot import Array, i64\n"


@pytest.mark.parametrize(
    "body,line,message",
    [
        (
            "class NotExc:\n    pass\n",
            "raise NotExc",
            "'badexc.mod.NotExc' is not an exception class",
        ),
        (
            "class WithInit(ValueError):\n    def __init__(self, n):\n        self.n = n\n",
            "raise WithInit",
            "exception class 'badexc.mod.WithInit' defines __init__",
        ),
        (
            "class FromInt(int):\n    pass\n",
            "raise FromInt",
            "'badexc.mod.FromInt' is not an exception class: its base 'int' is not one",
        ),
        ("", 'raise ValueError(f"n={n}")', "'n' is not a compile-time constant"),
        (
            "M = 3\n",
            "raise ValueError(M)",
            "exceptions take one constant string message in kernels",
        ),
        ("", "raise len", "raise a built-in exception type (ValueError, IndexError, ...)"),
        (
            "class A(B):\n    pass\n\n\nclass B(A):\n    pass\n",
            "raise A",
            "'badexc.mod.A' derives from itself",
        ),
    ],
)
def test_raise_mistakes_are_located(kit, tmp_path, monkeypatch, body, line, message):
    src = (
        HEADER
        + body
        + textwrap.dedent(f"""

        @ga.kernel
        def k(n: i64, out: Array[i64]):
            i = ga.grid(1)
            if i == n:
                {line}
            out[i] = i
        """)
    )
    errors = _errors(kit, tmp_path, monkeypatch, {"mod.py": src})
    lines = src.splitlines()
    at = next(k for k, t in enumerate(lines) if t.strip() == line) + 1
    want_col = lines[at - 1].index(line) + len("raise ") + 1
    assert errors == [(at, want_col, message)]
