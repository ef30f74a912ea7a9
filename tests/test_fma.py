"""FMA contraction (SPEC §1 ``--no-fma``, §2 ``fma=``): one switch for both targets.

By default ``+ - *`` on floats carry LLVM's ``contract`` flag (and no other fast-math flag),
so ``a*b+c`` becomes an FMA where the target has one (NVPTX: ``fma.rn``; x86-64-v3/v4:
``vfmadd``), as nvcc's ``-fmad=true`` and numba-cuda do. ``@kernel(fma=False)``,
``@host(fma=False)``, ``gpuaot build --no-fma`` and ``no-fma = true`` keep every product
rounded. x86-64-v2 has no FMA: its results stay bitwise equal to numpy's either way.
"""

from __future__ import annotations

import importlib
import re

import numpy as np
import pytest

SRC = '''
import gpuaot as ga
from gpuaot import Array, f32, f64


@ga.kernel
def axpy(a: f32, x: Array[f32], y: Array[f32], out: Array[f32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        out[i] = a * x[i] + y[i]


@ga.kernel(fma=False)
def axpy_strict(a: f32, x: Array[f32], y: Array[f32], out: Array[f32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        out[i] = a * x[i] + y[i]


@ga.kernel
def residue(x: Array[f64], y: Array[f64], out: Array[f64]):
    """0 unless one product stays unrounded (then its rounding error); ``+ 0.0`` keeps the
    two products apart (LLVM would share one, and a shared product is never fused)."""
    i = ga.grid(1)
    if i < x.shape[0]:
        out[i] = x[i] * y[i] - (x[i] + 0.0) * y[i]


@ga.kernel(fastmath=True, fma=False)
def fast_strict(x: Array[f32], out: Array[f32]):
    i = ga.grid(1)
    if i < x.shape[0]:
        out[i] = x[i] * 3.0 + 1.0


@ga.host
def dot(x: Array[f64], y: Array[f64]) -> f64:
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * y[i]
    return s
'''

FLOAT_OPS = re.compile(r"= (fmul|fadd|fsub)((?: \w+)*) (float|double)")


@pytest.fixture
def pkg(kit, tmp_path, monkeypatch):
    root = kit.write_package(tmp_path / "fmapkg", {"k.py": SRC})
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(kit.FIXTURES))
    return root


def emit(name: str, stage: str, target: str = "cpu", level=None, package=None) -> str:
    """One function of the test package (or ``package``, a fixtures one: the @host(fma=False)
    of fixtures/conformance) at one stage."""
    from gpuaot.compiler.driver import emit_function

    return emit_function(package or f"fmapkg.k:{name}", stage=stage, target=target, cpu_level=level)


def ir_flags(ir_text: str) -> set[str]:
    """The flags on every fmul/fadd/fsub of an IR text (one set of words per instruction)."""
    found = FLOAT_OPS.findall(ir_text)
    assert found, "no float arithmetic in the IR"
    return {flags.strip() for _, flags, _ in found}


def test_ir_has_only_contract_by_default(pkg):
    assert ir_flags(emit("axpy", "ir")) == {"contract"}
    assert ir_flags(emit("dot", "ir")) == {"contract"}
    assert ir_flags(emit("axpy", "ir", "sm_80")) == {"contract"}


def test_ir_without_contract_with_fma_false(pkg):
    assert ir_flags(emit("axpy_strict", "ir")) == {""}
    assert ir_flags(emit("dot_strict", "ir", package="conformance.options:h_strict_dot")) == {""}
    assert ir_flags(emit("axpy_strict", "ir", "sm_80")) == {""}
    # fastmath without fma: every fast-math flag but contract
    (flags,) = ir_flags(emit("fast_strict", "ir"))
    assert "contract" not in flags and "fast" not in flags and "reassoc" in flags.split()


def test_no_fma_build_option_reaches_the_ir(pkg):
    from gpuaot.compiler.discover import discover
    from gpuaot.compiler.driver import BuildOptions, type_units
    from gpuaot.compiler.targets import for_table
    from gpuaot.errors import Diagnostics

    for no_fma, want in ((None, {"contract"}), (True, {""})):
        opts = BuildOptions.resolve(str(pkg), no_gpu=True, no_fma=no_fma)
        assert opts.fma is (no_fma is None)
        diag = Diagnostics()
        units, _ = type_units(discover(str(pkg), diag), opts, "cpu", diag)
        diag.raise_if_any()
        by = {u.func.name: u for u in units}
        for_table("cpu")([]).lower(by["axpy"])  # the host table's target, as a build does
        assert ir_flags(by["axpy"].ir) == want


def test_ptx_fuses_by_default_and_not_with_fma_false(pkg):
    ptx = emit("axpy", "ptx", "sm_80")
    assert "fma.rn.f32" in ptx
    strict = emit("axpy_strict", "ptx", "sm_80")
    assert "fma.rn" not in strict
    assert "mul.rn.f32" in strict and "add.rn.f32" in strict  # .rn: ptxas may not fuse them


def test_x86_64_v3_asm_fuses_by_default_and_not_with_fma_false(pkg):
    from gpuaot.bundle import cpus

    if cpus.machine() != "x86_64":
        pytest.skip("x86-64 levels only")
    assert re.search(r"\bvfn?madd\w+", emit("axpy", "asm", level="x86-64-v3"))
    assert re.search(r"\bvfn?madd\w+", emit("dot", "asm", level="x86-64-v3"))
    assert not re.search(r"\bvfn?m(add|sub)", emit("axpy_strict", "asm", level="x86-64-v3"))
    strict_dot = emit("", "asm", level="x86-64-v3", package="conformance.options:h_strict_dot")
    assert not re.search(r"\bvfn?m(add|sub)", strict_dot)
    assert not re.search(r"\bvfn?m(add|sub)", emit("axpy", "asm", level="x86-64-v2"))


def _build(kit, pkg, cache, levels: str, **kw):
    from gpuaot.compiler.driver import BuildOptions, build_package

    opts = BuildOptions.resolve(
        str(pkg), no_gpu=True, cpu_levels=levels, cache_dir=str(cache), **kw
    )
    return build_package(opts)


def _run(kit, pkg, level: str, monkeypatch):
    from gpuaot.runtime import bundle as rb
    from gpuaot.runtime.cpu_variant import cpu_features

    monkeypatch.setenv("GPUAOT_CPU", level)
    kit.import_package(pkg, monkeypatch)
    mod = importlib.import_module("fmapkg.k")
    if level == "x86-64-v3" and "fma" not in cpu_features(rb.load_bundle("fmapkg").lib):
        pytest.skip("this CPU has no FMA")
    rng = np.random.default_rng(7)
    x = rng.standard_normal(1000) * 7
    y = rng.standard_normal(1000)
    xf, yf = x.astype(np.float32), y.astype(np.float32)
    out = {k: np.zeros(1000, np.float32) for k in ("axpy", "axpy_strict")}
    for k, o in out.items():
        getattr(mod, k)[8, 128](np.float32(1 / 3), xf, yf, o)
    res = np.zeros(1000)
    mod.residue[8, 128](x, y, res)
    dots = mod.dot(x, y)
    kit.unload("fmapkg")
    return xf, yf, x, y, out, res, dots


def _python_dot(x, y) -> float:
    s = 0.0
    for a, b in zip(x.tolist(), y.tolist()):
        s += a * b
    return s


def test_v2_results_are_bitwise_numpy(kit, pkg, tmp_path, monkeypatch):
    from gpuaot.bundle import cpus

    if cpus.machine() != "x86_64":
        pytest.skip("x86-64 levels only")
    _build(kit, pkg, tmp_path / "cache", "x86-64-v2")
    xf, yf, x, y, out, res, dots = _run(kit, pkg, "x86-64-v2", monkeypatch)
    for o in out.values():
        np.testing.assert_array_equal(o, np.float32(1 / 3) * xf + yf, strict=True)
    np.testing.assert_array_equal(res, np.zeros(1000))
    assert dots == _python_dot(x, y)


def test_v3_contracts_and_fma_false_does_not(kit, pkg, tmp_path, monkeypatch):
    from gpuaot.bundle import cpus

    if cpus.machine() != "x86_64":
        pytest.skip("x86-64 levels only")
    _build(kit, pkg, tmp_path / "cache", "x86-64-v2,x86-64-v3")
    xf, yf, x, y, out, res, dots = _run(kit, pkg, "x86-64-v3", monkeypatch)
    unfused = np.float32(1 / 3) * xf + yf
    np.testing.assert_array_equal(out["axpy_strict"], unfused, strict=True)
    assert np.any(out["axpy"] != unfused), "nothing was contracted on x86-64-v3"
    assert np.any(res != 0.0), "x*y - (x+0)*y stayed 0: no product was left unrounded"
    assert dots == pytest.approx(_python_dot(x, y), rel=1e-12)


def test_toggling_no_fma_rebuilds_and_is_recorded(kit, pkg, tmp_path):
    cache = tmp_path / "cache"
    first = _build(kit, pkg, cache, "x86-64-v2")
    assert first.compiled > 0 and first.manifest["options"]["fma"] is True
    again = _build(kit, pkg, cache, "x86-64-v2")
    assert again.compiled == 0
    off = _build(kit, pkg, cache, "x86-64-v2", no_fma=True)
    assert off.manifest["options"]["fma"] is False
    # the fma=True units rebuild (their IR loses ``contract``); fma=False ones are cached
    assert 0 < off.compiled < off.compiled + off.cached
    assert _build(kit, pkg, cache, "x86-64-v2", no_fma=True).compiled == 0


def test_pyproject_no_fma_setting(kit, pkg):
    from gpuaot.compiler.driver import BuildOptions

    (pkg / "pyproject.toml").write_text("[tool.gpuaot]\nno-fma = true\n")
    assert BuildOptions.resolve(str(pkg), no_gpu=True).fma is False
    assert BuildOptions.resolve(str(pkg), no_gpu=True, no_fma=False).fma is True  # CLI wins


def test_cli_build_no_fma(kit, pkg, tmp_path):
    from click.testing import CliRunner

    from gpuaot.bundle.manifest import read_bundle

    try:
        from gpuaot.cli import main
    except ImportError:  # pragma: no cover - the CLI moved to cli/
        from cli import main
    args = ["build", str(pkg), "--no-gpu", "--cpu", "x86-64-v2", "--cache-dir", str(tmp_path / "c")]
    r = CliRunner().invoke(main, [*args, "--no-fma"])
    assert r.exit_code == 0, r.output
    (bundle,) = (pkg / "_gpuaot").glob("*.so")
    assert read_bundle(bundle).manifest["options"]["fma"] is False
    assert CliRunner().invoke(main, args).exit_code == 0
    assert read_bundle(bundle).manifest["options"]["fma"] is True


def test_decorator_option_and_its_checks(kit, tmp_path):
    import gpuaot as ga
    from gpuaot.errors import CompileErrors

    def f(x):
        pass

    assert ga.kernel(fma=False)(f).fma is False and ga.kernel(f).fma is True
    assert ga.host(fma=False)(f).fma is False and ga.host(f).fma is True
    bad = kit.write_package(
        tmp_path / "badfma",
        {"k.py": "import gpuaot as ga\n\n@ga.kernel(fma=1)\ndef k():\n    pass\n"},
    )
    with pytest.raises(CompileErrors, match="'fma' must be True or False"):
        kit.build(bad)
