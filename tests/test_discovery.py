"""Discovery: the package walk reads sources with ``ast`` only (DESIGN invariant 1).

A package whose import writes a file and raises still builds, without the file; packages are
found by directory or by importable name; every import form a kernel module may use resolves;
module-level constants fold to what CPython computes for the same expressions.
"""

from __future__ import annotations

import ast
import importlib
import sys
import textwrap
import types

import numpy as np
import pytest
from click.testing import CliRunner

from gpuaot.cli import main
from gpuaot.compiler.discover import UNFOLDABLE, discover, find_package
from gpuaot.errors import BuildError, Diagnostics
from gpuaot.lang.decorators import Host, Kernel

# ---------------------------------------------------------------------- side effects


@pytest.fixture
def sideeffect(kit, tmp_path, monkeypatch):
    marker = tmp_path / "imported.txt"
    monkeypatch.setenv("GPUAOT_SIDEEFFECT_FILE", str(marker))
    root = kit.copy_package(kit.FIXTURES / "sideeffect", tmp_path / "src")
    return root, marker


def test_the_fixture_really_has_side_effects(sideeffect, monkeypatch):
    """Guard for the test below: importing the package does write the file and raise."""
    root, marker = sideeffect
    monkeypatch.syspath_prepend(str(root.parent))
    with pytest.raises(RuntimeError, match="never be imported"):
        __import__("sideeffect")
    assert marker.read_text() == "sideeffect/__init__.py was imported\n"
    sys.modules.pop("sideeffect", None)


def test_side_effect_package_builds_without_importing(kit, sideeffect, tmp_path, monkeypatch):
    root, marker = sideeffect
    before = set(sys.modules)
    result = kit.build(root, cache_dir=tmp_path / "cache")
    assert not marker.exists()
    assert not {m for m in set(sys.modules) - before if m.startswith("sideeffect")}
    m = result.manifest
    assert [k["qualname"] for k in m["kernels"]] == ["sideeffect.kernels.triple"]
    assert [h["qualname"] for h in m["host_functions"]] == ["sideeffect.kernels.total"]

    # The compiled code runs, still without importing the package: a stand-in module tells
    # the run time where the package lives.
    kit.unload("sideeffect")
    stub = types.ModuleType("sideeffect")
    stub.__file__ = str(root / "__init__.py")
    monkeypatch.setitem(sys.modules, "sideeffect", stub)

    def triple(x, out):
        pass

    def total(x):
        pass

    for f in (triple, total):
        f.__module__ = "sideeffect.kernels"
    x = np.linspace(-3, 7, 1001)
    out = np.zeros_like(x)
    Kernel(triple)[8, 128](x, out)
    np.testing.assert_array_equal(out, x * 3.0)
    acc = 0.0
    for v in x.tolist():
        acc += v
    assert Host(total)(x) == acc
    kit.unload("sideeffect")
    assert not marker.exists()


def test_side_effect_package_builds_from_the_cli(kit, sideeffect, tmp_path):
    root, marker = sideeffect
    result = CliRunner().invoke(
        main,
        [
            "build",
            str(root),
            "--no-gpu",
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    assert len(list((tmp_path / "out").glob("sideeffect.*.gpuaot.so"))) == 1


# ---------------------------------------------------------------------- finding packages


def test_discovery_by_importable_name(kit, tmp_path, monkeypatch):
    site = tmp_path / "site"
    root = kit.copy_package(kit.FIXTURES / "example", site, name="namedpkg")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.chdir(tmp_path)  # not the package's parent: found through sys.path
    name, found = find_package("namedpkg")
    assert (name, found) == ("namedpkg", root.resolve())

    # The example package imports itself only relatively: the renamed copy is a package.
    result = CliRunner().invoke(
        main, ["build", "namedpkg", "--no-gpu", "--cache-dir", str(tmp_path / "cache"), "--json"]
    )
    assert result.exit_code == 0, result.output
    (bundle,) = (root / "_gpuaot").glob("namedpkg.*.gpuaot.so")
    assert sorted(m["file"] for m in _manifest(bundle)["modules"].values()) == [
        "namedpkg/__init__.py",
        "namedpkg/kernels.py",
        "namedpkg/reductions.py",
        "namedpkg/util.py",
    ]


def _manifest(bundle):
    from gpuaot.bundle.manifest import read_bundle

    return read_bundle(bundle).manifest


def test_missing_package_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plainmod.py").write_text("X = 1\n")
    (tmp_path / "nodir").mkdir()
    with pytest.raises(BuildError, match="no such package"):
        find_package("no_such_package_anywhere")
    with pytest.raises(BuildError, match="no such package"):
        find_package("plainmod")  # a module, not a package
    with pytest.raises(BuildError, match=r"not a Python package \(no __init__.py\)"):
        find_package("nodir")
    result = CliRunner().invoke(main, ["build", "no_such_package_anywhere", "--no-gpu"])
    assert result.exit_code == 2
    assert "no such package" in result.output and "Traceback" not in result.output


# ---------------------------------------------------------------------- import forms


IMPORT_FORMS = {
    "__init__.py": "",
    "util.py": """
        import gpuaot as ga

        BASE = 10

        @ga.device
        def helper(x):
            return x + 1

        @ga.device
        def other(x):
            return x * 2
        """,
    "sub/__init__.py": "",
    "sub/deep.py": """
        from gpuaot.lang.decorators import device

        from .. import util as parent_util
        from ..util import BASE

        @device
        def deep(x):
            return parent_util.helper(x) + BASE
        """,
    "kernels.py": """
        import math
        import math as m
        from math import sqrt as root

        import gpuaot
        import gpuaot as ga
        import formspkg.util as U
        import formspkg.sub.deep
        from gpuaot import Array, f64
        from gpuaot import kernel as k
        from formspkg.util import other as other_abs

        from . import util
        from .sub import deep as deep_mod
        from .sub.deep import deep
        from .util import helper

        @k
        def forms(x: Array[f64], out: Array[f64, 2]):
            i = ga.grid(1)
            if i < x.shape[0]:
                out[0, i] = helper(x[i])                  # from .util import helper
                out[1, i] = util.other(x[i])              # from . import util
                out[2, i] = U.helper(x[i]) + U.BASE       # import pkg.util as U
                out[3, i] = other_abs(x[i])               # from pkg.util import other as ...
                out[4, i] = deep(x[i])                    # from .sub.deep import deep
                out[5, i] = deep_mod.deep(x[i])           # from .sub import deep as deep_mod
                out[6, i] = formspkg.sub.deep.deep(x[i])  # import pkg.sub.deep
                out[7, i] = root(m.fabs(math.floor(x[i])))  # math in three forms

        @gpuaot.kernel
        def plain(x: Array[f64]):
            i = gpuaot.grid(1)
            if i < x.shape[0]:
                x[i] = x[i] + gpuaot.WARP_SIZE

        @ga.kernel(debug=False)
        def called_decorator(x: Array[f64]):
            i = gpuaot.grid(1)
            if i < x.shape[0]:
                x[i] = -x[i]
        """,
}


def _write(kit, root, files):
    return kit.write_package(root, {k: textwrap.dedent(v).lstrip() for k, v in files.items()})


def test_every_import_form_resolves(kit, tmp_path, monkeypatch):
    root = _write(kit, tmp_path / "formspkg", IMPORT_FORMS)
    diag = Diagnostics()
    pkg = discover(str(root), diag)
    assert diag.errors == []
    kinds = {f.qualname: f.kind for f in pkg.functions()}
    assert kinds == {
        "formspkg.util.helper": "device",
        "formspkg.util.other": "device",
        "formspkg.sub.deep.deep": "device",
        "formspkg.kernels.forms": "kernel",
        "formspkg.kernels.plain": "kernel",
        "formspkg.kernels.called_decorator": "kernel",
    }
    km = pkg.modules["formspkg.kernels"]
    for expr, qualname in [
        ("helper", "formspkg.util.helper"),
        ("util.other", "formspkg.util.other"),
        ("U.helper", "formspkg.util.helper"),
        ("other_abs", "formspkg.util.other"),
        ("deep", "formspkg.sub.deep.deep"),
        ("deep_mod.deep", "formspkg.sub.deep.deep"),
        ("formspkg.sub.deep.deep", "formspkg.sub.deep.deep"),
    ]:
        sym = pkg.resolve_expr(km, ast.parse(expr, mode="eval").body)
        assert sym is not None and sym.kind == "func" and sym.value.qualname == qualname, expr
    assert pkg.resolve_expr(km, ast.parse("U.BASE", mode="eval").body).value == 10
    assert pkg.resolve_expr(km, ast.parse("m.fabs", mode="eval").body).kind == "math"
    assert pkg.resolve(km, "root").value == "sqrt"
    assert pkg.resolve(km, "k").value == "kernel"

    # ... and the compiled functions compute what the same Python computes.
    kit.build(root, cache_dir=tmp_path / "cache")
    kit.import_package(root, monkeypatch)
    x = np.linspace(-20, 20, 77)
    out = np.zeros((8, 77))
    kernels = importlib.import_module("formspkg.kernels")
    kernels.forms[3, 32](x, out)
    sim = np.zeros((8, 77))
    kernels.forms.simulate[3, 32](x, sim)
    want = np.stack(
        [
            x + 1,
            x * 2,
            x + 1 + 10,
            x * 2,
            x + 1 + 10,
            x + 1 + 10,
            x + 1 + 10,
            np.sqrt(np.abs(np.floor(x))),
        ]
    )
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(sim, want)
    y = x.copy()
    kernels.plain[3, 32](y)
    np.testing.assert_array_equal(y, x + 32)
    kernels.called_decorator[3, 32](y)
    np.testing.assert_array_equal(y, -(x + 32))
    kit.unload("formspkg")


def test_skipped_directories_and_namespace_dirs(kit, tmp_path):
    """Build outputs, caches, hidden and non-package directories are not walked."""
    broken = "def (:\n"
    root = _write(
        kit,
        tmp_path / "skips",
        {
            "mod.py": "X = 1\n",
            "build/__init__.py": broken,
            "dist/__init__.py": broken,
            ".hidden/__init__.py": broken,
            "_gpuaot/__init__.py": broken,
            "notapkg/mod.py": broken,
        },
    )
    diag = Diagnostics()
    pkg = discover(str(root), diag)
    assert diag.errors == []
    assert sorted(pkg.modules) == ["skips", "skips.mod"]


# ---------------------------------------------------------------------- constants


CONSTANTS = {
    "__init__.py": "",
    "base.py": """
        import math

        A = 7
        B = -3
        F = 2.5
        T = True
        """,
    "consts.py": """
        import math
        import math as mm
        from math import e, pi

        import gpuaot
        import gpuaot as ga
        from gpuaot import WARP_SIZE

        from . import base
        from .base import A, F
        from .base import B as MINUS_THREE

        SUM = A + MINUS_THREE
        FLOORDIV = A // MINUS_THREE
        MOD = A % MINUS_THREE
        TRUEDIV = A / 2
        POW = 2 ** 10 + A ** 2
        SHIFT = (1 << 40) >> 3
        BITS = (0xF0 | 0x0F) & ~0x3 ^ 0x100
        FLOATY = F * base.F - 0.1
        NEG = -A + +F
        NOT = not base.T
        CMP = 0 < A <= 7 != MINUS_THREE
        BOOLOP = base.T and A > 5 or False
        COND = F if A > 10 else -F
        TUPLE = (A, F, (1, 2))
        CIRCLE = 2 * math.pi * mm.e + pi - e
        INF = math.inf
        WARPS = 1024 // WARP_SIZE + ga.WARP_SIZE + gpuaot.WARP_SIZE
        ANNOTATED: int = A * 3
        CHAIN = SUM * 2 + POW

        NOT_CONST = len("abc")
        FROM_CALL = math.sqrt(2.0)
        LOOP_A = LOOP_B
        LOOP_B = LOOP_A
        DIV_ZERO = A // 0
        STRING = "text"
        """,
}

FOLDED = [
    "SUM",
    "FLOORDIV",
    "MOD",
    "TRUEDIV",
    "POW",
    "SHIFT",
    "BITS",
    "FLOATY",
    "NEG",
    "NOT",
    "CMP",
    "BOOLOP",
    "COND",
    "TUPLE",
    "CIRCLE",
    "INF",
    "WARPS",
    "ANNOTATED",
    "CHAIN",
]
NOT_FOLDED = ["NOT_CONST", "FROM_CALL", "LOOP_A", "LOOP_B", "DIV_ZERO", "STRING"]


def test_constants_fold_like_cpython(kit, tmp_path, monkeypatch):
    root = _write(kit, tmp_path / "constpkg", CONSTANTS)
    diag = Diagnostics()
    pkg = discover(str(root), diag)
    assert diag.errors == []
    mod = pkg.modules["constpkg.consts"]

    # The oracle: CPython evaluating the same module (here, where it is safe to import).
    cpython = {}
    text = (root / "consts.py").read_text()
    safe = text.split("NOT_CONST")[0].replace("from . import base", "import constpkg.base as base")
    safe = safe.replace("from .base import", "from constpkg.base import")
    monkeypatch.syspath_prepend(str(tmp_path))
    exec(compile(safe, "consts.py", "exec"), cpython)
    for name in FOLDED:
        got = pkg.resolve(mod, name)
        assert got is not None and got.kind == "const", name
        assert got.value == cpython[name] and type(got.value) is type(cpython[name]), name
    for name in NOT_FOLDED:
        assert pkg.resolve(mod, name).value is UNFOLDABLE, name
    kit.unload("constpkg")


def test_folded_constants_reach_kernels(kit, tmp_path, monkeypatch):
    files = dict(CONSTANTS)
    files["consts.py"] = CONSTANTS["consts.py"].split("NOT_CONST")[0]  # importable part
    files["kern.py"] = """
        import gpuaot as ga
        from gpuaot import Array, f64

        from . import consts as C
        from .consts import CIRCLE, TUPLE

        @ga.kernel
        def use(out: Array[f64]):
            out[0] = C.SUM + C.FLOORDIV * 10 + C.MOD * 100
            out[1] = C.TRUEDIV + C.POW
            out[2] = C.SHIFT + C.BITS
            out[3] = C.FLOATY + C.NEG
            out[4] = int(C.CMP) + 2 * int(C.BOOLOP) + 4 * int(C.NOT)
            out[5] = C.COND + TUPLE[1] + TUPLE[2][1]
            out[6] = CIRCLE
            out[7] = C.WARPS + C.ANNOTATED + C.CHAIN
        """
    root = _write(kit, tmp_path / "constpkg2", files)
    kit.build(root, cache_dir=tmp_path / "cache")
    kit.import_package(root, monkeypatch)
    C = importlib.import_module("constpkg2.consts")
    kern = importlib.import_module("constpkg2.kern")
    want = np.array(
        [
            C.SUM + C.FLOORDIV * 10 + C.MOD * 100,
            C.TRUEDIV + C.POW,
            C.SHIFT + C.BITS,
            C.FLOATY + C.NEG,
            C.CMP + 2 * C.BOOLOP + 4 * C.NOT,
            C.COND + C.TUPLE[1] + C.TUPLE[2][1],
            C.CIRCLE,
            C.WARPS + C.ANNOTATED + C.CHAIN,
        ],
        dtype=np.float64,
    )
    out = np.zeros(8)
    kern.use[1, 1](out)
    np.testing.assert_array_equal(out, want)
    kit.unload("constpkg2")


# ---------------------------------------------------------------------- gpuaot's library modules

LIBRARY_FORMS = {
    "kernels.py": """
        import gpuaot
        import gpuaot as ga
        import gpuaot.random
        import gpuaot.random as rnd
        from gpuaot import Array, u64
        from gpuaot import random as grandom
        from gpuaot.random import xoroshiro128p_next as nxt

        @ga.kernel
        def forms(states: Array[u64, 2], out: Array[u64, 2]):
            i = ga.grid(1)
            if i < states.shape[0]:
                out[i, 0] = nxt(states, i)                               # from ... import
                out[i, 1] = rnd.xoroshiro128p_next(states, i)            # import ... as rnd
                out[i, 2] = grandom.xoroshiro128p_next(states, i)        # from gpuaot import
                out[i, 3] = gpuaot.random.xoroshiro128p_next(states, i)  # import gpuaot.random
                out[i, 4] = ga.random.xoroshiro128p_next(states, i)      # same, through ga
        """,
}


def test_library_module_imports_resolve_without_joining_the_package(kit, tmp_path, monkeypatch):
    """gpuaot.random is read from gpuaot's own source: its functions resolve in every import
    form, it stays out of the package's modules (and the bundle's), and the kernel computes
    what the same Python computes."""
    root = _write(kit, tmp_path / "libforms", LIBRARY_FORMS)
    diag = Diagnostics()
    pkg = discover(str(root), diag)
    assert diag.errors == []
    km = pkg.modules["libforms.kernels"]
    for expr in [
        "nxt",
        "rnd.xoroshiro128p_next",
        "grandom.xoroshiro128p_next",
        "gpuaot.random.xoroshiro128p_next",
        "ga.random.xoroshiro128p_next",
    ]:
        sym = pkg.resolve_expr(km, ast.parse(expr, mode="eval").body)
        assert sym is not None and sym.kind == "func", expr
        assert sym.value.qualname == "gpuaot.random.xoroshiro128p_next", expr
        assert sym.value.kind == "device"
    assert sorted(pkg.modules) == ["libforms", "libforms.kernels"]
    assert sorted(pkg.library) == ["gpuaot.random"]
    assert pkg.library["gpuaot.random"].relpath == "gpuaot/random.py"

    result = kit.build(root, cache_dir=tmp_path / "cache")
    assert sorted(m["file"] for m in result.manifest["modules"].values()) == [
        "libforms/__init__.py",
        "libforms/kernels.py",
    ]
    kit.import_package(root, monkeypatch)
    from gpuaot.random import create_xoroshiro128p_states

    kernels = importlib.import_module("libforms.kernels")
    got, sim = np.zeros((2, 8, 5), np.uint64)
    states = [create_xoroshiro128p_states(8, 3) for _ in range(2)]
    kernels.forms[1, 8](states[0], got)
    kernels.forms.simulate[1, 8](states[1], sim)
    np.testing.assert_array_equal(got, sim)
    np.testing.assert_array_equal(states[0], states[1])
    assert len(np.unique(got)) == got.size  # five successive draws, all different
    kit.unload("libforms")


def test_library_functions_misused_are_located_errors(kit, tmp_path):
    """``ga.random`` without importing gpuaot.random is unknown (as in Python, where the
    attribute does not exist); a wrong state array is an error in gpuaot/random.py."""
    root = _write(
        kit,
        tmp_path / "libbad",
        {
            "kernels.py": """
                import gpuaot as ga
                from gpuaot import Array, f32
                from gpuaot.random import xoroshiro128p_uniform_float32

                @ga.kernel
                def unimported(out: Array[f32]):
                    out[0] = ga.random.xoroshiro128p_uniform_float32(out, 0)

                @ga.kernel
                def wrong_states(states: Array[f32, 2], out: Array[f32]):
                    out[0] = xoroshiro128p_uniform_float32(states, 0)
                """,
        },
    )
    result = CliRunner().invoke(
        main, ["build", str(root), "--no-gpu", "--cache-dir", str(tmp_path / "cache")]
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "kernels.py:7:14: error: unknown function 'ga.random.xoroshiro128p_uniform_float32'" in (
        result.output
    )
    assert "gpuaot/random.py:" in result.output
    assert "needs integer operands, not f32" in result.output
