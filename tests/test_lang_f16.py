"""f16: numpy's float16 and CUDA's __half, on the CPU backend, under simulate, and for ptxas.

The kernels are fixtures/conformance/lang_f16.py. Each case runs on every CPU level of the
default build (x86-64-v2 has no F16C: the bundle's own conversions, half_rt, run there), on the
x86-64 baseline of a build of its own, and under ``simulate``, against numpy's float16, bit for
bit: + - * / are exactly defined (each result rounded once to f16), and so are the conversions,
with ties, overflow to inf, subnormals and NaN among the inputs. The math functions that are
not exactly rounded are within one f16 ulp. ptxas assembles every kernel for every default arch.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
from fractions import Fraction

import numpy as np
import pytest
from cpu_levels_kit import OPENBLAS_CORE
from test_conformance import Case, compiled, conformance, names  # noqa: F401 - fixtures

f16, f32, f64, i8, i16, i32, i64 = (np.float16, np.float32, np.float64, np.int8, np.int16,
                                    np.int32, np.int64)  # fmt: skip
N = 256


def _bits(*words) -> np.ndarray:
    return np.array(words, np.uint16).view(f16)


# Zeros, the subnormal extremes, the normal extremes, inf, NaN, ones, and values whose sums and
# products are ties.
SPECIAL = _bits(0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00,
                0x7E00, 0x3C00, 0xBC00, 0x3C01, 0x4000, 0x6800, 0x1400, 0x3555, 0x0200)  # fmt: skip


def _halves(rng, n=N, finite=False, nonzero=False) -> np.ndarray:
    """The special values, then random bit patterns (every exponent, subnormals too)."""
    words = rng.integers(0, 1 << 16, n, dtype=np.uint16)
    x = np.concatenate([SPECIAL, words.view(f16)])[:n].copy()
    if finite:
        x[~np.isfinite(x)] = f16(1.5)
    if nonzero:
        x[x == 0] = f16(-0.75)
    return x


def _pair(rng):
    """x and y: special values against each other, random values, and a third of the pairs
    near each other (sums and differences that cancel, quotients near 1)."""
    x = _halves(rng)
    y = np.concatenate([SPECIAL[::-1], _halves(rng)])[:N].copy()
    near = slice(N // 3, 2 * N // 3)
    y[near] = (x[near].view(np.uint16) + rng.integers(-3, 4, N // 3).astype(np.uint16)).view(f16)
    return x, y


CASES = []


def case(fn, order, inputs, oracle, config=(4, 64), **kw):
    """test_conformance's Case (its runners and the device check's recorder take these too)."""
    CASES.append(Case(fn, inputs, names(*order), oracle, config, **kw))


def _arith_inputs(r):
    x, y = _pair(r)
    return {"x": x, "y": y, "out": np.zeros((14, N), f16)}


def _arith_oracle(s):
    x, y = s["x"], s["y"]
    with np.errstate(all="ignore"):
        t = (x + y) * y
        return {"out": np.stack([x + y, x - y, x * y, x / y, -x, np.abs(x), np.where(y < x, y, x),
                                 np.where(y > x, y, x), x * y + x, x + f16(1), x * f16(0.1),
                                 np.floor_divide(x, y), np.mod(x, y), t])}  # fmt: skip


case("f16_arith", ("x", "y", "out"), _arith_inputs, _arith_oracle)


def _atomics_inputs(r):
    return {"x": r.integers(0, 100, N), "hist": np.zeros(8, f16), "total": np.zeros(1, f16),
            "seen": np.zeros(N, i32)}  # fmt: skip


def _atomics_oracle(s):
    return {"hist": np.bincount(s["x"] % 8, minlength=8) * f16(0.5),
            "total": np.array([N * 0.25], f16), "seen": np.ones(N, i32)}  # fmt: skip


case("f16_atomics", ("x", "hist", "total", "seen"), _atomics_inputs, _atomics_oracle)


def _compare_inputs(r):
    x, y = _pair(r)
    y[::5] = x[::5]
    return {"x": x, "y": y, "out": np.zeros((8, N), bool)}


def _compare_oracle(s):
    x, y = s["x"], s["y"]
    return {"out": np.stack([x < y, x <= y, x == y, x != y, x > y, (f16(0.5) <= x) & (x < y),
                             x != 0, x == 0])}  # fmt: skip


case("f16_compare", ("x", "y", "out"), _compare_inputs, _compare_oracle)


def _f64_edges() -> np.ndarray:
    """f64 values at and around f16's ties (one f64 ulp off a tie rounds away from it: through
    f32 it would round twice and land on the tie), overflow and the subnormal range."""
    h = _halves(np.random.default_rng(5), 64, finite=True).astype(f64)
    h = h[h != 0]
    ulp16 = np.spacing(h.astype(f16)).astype(f64)
    ties = h + ulp16 / 2
    return np.concatenate([ties, np.nextafter(ties, np.inf), np.nextafter(ties, -np.inf),
                           [65504.0, 65519.99, 65520.0, -65520.0, 1e10, 2.0**-25, 2.0**-25 * 1.0001,
                            3 * 2.0**-25, 2.0**-26, 1 - 2.0**-12, math.nan, math.inf, -0.0,
                            1 + 2.0**-11 + 2.0**-40]])  # fmt: skip


def _convert_inputs(r):
    d = np.resize(_f64_edges(), N)
    d[-40:] = r.normal(0, 1000, 40)
    n = np.resize(np.array([2049, 2051, -2049, 65519, 65520, 65504, -70000, 2**40, 2**63 - 1,
                            -(2**63), 0, 1, 4097, 4099, 8195, 2**24 + 1]), N)  # fmt: skip
    n[-64:] = r.integers(-100000, 100000, 64)
    h = _halves(r, finite=True)
    return {"d": d, "f": d.astype(f32), "n": n.astype(i64), "h": h,
            "o16": np.zeros((5, N), f16), "o32": np.zeros(N, f32), "o64": np.zeros(N),
            "oi": np.zeros((2, N), i64)}  # fmt: skip


def _convert_oracle(s):
    d, f, n, h = s["d"], s["f"], s["n"], s["h"]
    with np.errstate(all="ignore"):
        return {
            "o16": np.stack([d.astype(f16), f.astype(f16), n.astype(f16), d.astype(f16),
                             (f.astype(f16) > 1).astype(f16)]),
            "o32": h.astype(f32),
            "o64": h.astype(f64),
            "oi": np.stack([np.trunc(h).astype(i64), np.trunc(h).astype(i64).astype(i8)]),
        }  # fmt: skip


case("f16_convert", ("d", "f", "n", "h", "o16", "o32", "o64", "oi"), _convert_inputs,
     _convert_oracle)  # fmt: skip


def _promote_inputs(r):
    h = _halves(r, finite=True)
    return {"h": h, "f": r.normal(0, 100, N).astype(f32), "b": r.integers(-128, 128, N, i8),
            "s": r.integers(-30000, 30000, N, i16), "w": r.integers(-2**31, 2**31, N, i32),
            "oh": np.zeros(N, f16), "of": np.zeros((2, N), f32), "od": np.zeros((2, N))}  # fmt: skip


def _promote_oracle(s):
    h = s["h"]
    with np.errstate(all="ignore"):
        prods = [h * s["b"], h * s["f"], h * s["s"], h * s["w"]]
        assert [p.dtype for p in prods] == [f16, f32, f32, f64]  # numpy's result types
        od1 = (h * 1e-3).astype(f64) + (h * 3).astype(f64)
        return {"oh": prods[0], "of": np.stack(prods[1:3]), "od": np.stack([prods[3], od1])}


case("f16_promote", ("h", "f", "b", "s", "w", "oh", "of", "od"), _promote_inputs,
     _promote_oracle)  # fmt: skip


def _fma16(x, y, z) -> f16:
    """The f32 fma (one rounding of the exact value, to f32), then f16: f16 math's meaning."""
    from gpuaot.lang.intrinsics import fma

    return f16(fma(*(f32(v) for v in (x, y, z))))


def _math_inputs(r):
    return {"x": _halves(r, finite=True), "y": _halves(r, finite=True, nonzero=True),
            "out": np.zeros((5, N), f16), "whole": np.zeros((2, N), i64)}  # fmt: skip


def _math_oracle(s):
    x, y = s["x"], s["y"]
    a = np.abs(x)
    fma = [_fma16(p, q, c) for p, q, c in zip(x, y, a)]
    return {"out": np.stack([np.sqrt(a), np.fabs(x), np.copysign(x, y), np.fmod(x, y), fma]),
            "whole": np.stack([np.floor(x), np.trunc(x)]).astype(i64)}  # fmt: skip


case("f16_math", ("x", "y", "out", "whole"), _math_inputs, _math_oracle)


def _approx_oracle(s):
    h = s["x"]
    x, a1 = h.astype(f32), (np.abs(h) + f16(1)).astype(f32)  # abs(a) + 1: an f16 sum
    with np.errstate(all="ignore"):
        return {"out": np.stack([np.exp(x), np.log(a1), np.sin(x), np.tanh(x),
                                 np.abs(x) ** f32(0.5)]).astype(f16)}  # fmt: skip


case("f16_math_approx", ("x", "out"), lambda r: {"x": r.uniform(-10, 10, N).astype(f16),
     "out": np.zeros((5, N), f16)}, _approx_oracle, rtol=2.0**-10, atol=2.0**-24)  # fmt: skip


def _misc_oracle(s):
    x = s["x"]
    return {"out": np.stack([np.floor_divide(x, f16(0.75)), np.mod(x, f16(0.75)), x**2,
                             np.round(x, 1), np.where(x > 0, x, -x), np.where(x < 1, x, f16(1))]),
            "whole": np.rint(x).astype(i64), "flags": np.stack([np.isnan(x), np.isinf(x * x)])}  # fmt: skip


case("f16_misc", ("x", "out", "whole", "flags"), lambda r: {"x": _halves(r, finite=True),
     "out": np.zeros((6, N), f16), "whole": np.zeros(N, i64), "flags": np.zeros((2, N), bool)},
     _misc_oracle)  # fmt: skip


def _scalar_oracle(s):
    return {"out": f16(s["a"]) * s["x"]}


for _variant, _a in (("np", f16(1.5)), ("float", 0.1), ("int", 3), ("f32", f32(65519.9))):
    case("f16_scalar", ("a", "x", "out"),
         lambda r, a=_a: {"a": a, "x": _halves(r), "out": np.zeros(N, f16)},
         _scalar_oracle, variant=_variant)  # fmt: skip


def _sum_oracle(s):
    x = s["x"]
    acc = np.zeros(x.shape[0], f16)
    for k in range(x.shape[1]):
        acc = acc + x[:, k]  # float16 + float16: rounded each step
    return {"out": acc}


case("f16_sum", ("x", "out"), lambda r: {"x": r.normal(0, 30, (64, 100)).astype(f16),
     "out": np.zeros(64, f16)}, _sum_oracle, (2, 32))  # fmt: skip


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The distance of two f16 arrays in units in the last place (ordered bit patterns)."""

    def ordered(v):
        u = v.astype(f16).view(np.uint16).astype(np.int32)
        return np.where(u & 0x8000, 0x8000 - u, u)

    return np.abs(ordered(a) - ordered(b))


def _check(c: Case, got: np.ndarray, want: np.ndarray, key: str) -> None:
    want = np.asarray(want).astype(got.dtype)
    if c.rtol is not None:  # within one f16 ulp (the GPU check: rtol and atol, an ulp's worth)
        far = _ulps(got, want).max(axis=-1)
        assert (far <= 1).all(), (c.id, key, far)
        return
    np.testing.assert_array_equal(got, want, err_msg=f"{c.id}: {key}", strict=True)
    if got.dtype.kind == "f":  # exact: -0.0 is not 0.0
        fin = ~np.isnan(want)
        np.testing.assert_array_equal(np.signbit(got[fin]), np.signbit(want[fin]), err_msg=key)


def _run(kern, c: Case):
    with np.errstate(all="ignore"):  # overflow to inf and NaNs are among the cases
        state = c.inputs(np.random.default_rng(sum(map(ord, c.id))))
        expected = c.oracle({k: np.copy(v) for k, v in state.items()})
        kern[c.config](*c.args(state))
    for key, want in expected.items():
        _check(c, state[key], want, key)


KERNELS = {c.fn for c in CASES}


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_compiled_on_every_level(compiled, c):  # noqa: F811 - the fixture
    _run(getattr(compiled.module.lang_f16, c.fn), c)


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_simulate(conformance, c):  # noqa: F811 - the fixture
    _run(getattr(conformance.module.lang_f16, c.fn).simulate, c)


def test_every_f16_bit_pattern_converts_as_numpy(compiled):  # noqa: F811
    """All 65536 f16s to f32 and f64 and back (exact both ways), every level."""
    k = compiled.module.lang_f16.f16_convert
    h = np.arange(1 << 16, dtype=np.uint16).view(f16)
    d = h.astype(f64)
    o16, o32, o64 = np.zeros((5, h.size), f16), np.zeros(h.size, f32), np.zeros(h.size)
    oi = np.zeros((2, h.size), i64)
    with np.errstate(all="ignore"):
        k[h.size // 256, 256](d, d.astype(f32), np.zeros(h.size, i64), h, o16, o32, o64, oi)
    nan = np.isnan(h)
    assert np.array_equal(o32.view(np.uint32)[~nan], h.astype(f32).view(np.uint32)[~nan])
    assert np.array_equal(o64[~nan], d[~nan]) and np.isnan(o64[nan]).all()
    for row in (0, 1, 3):  # f64 -> f16, f32 -> f16, the store: the identity on f16 values
        assert np.array_equal(o16[row].view(np.uint16)[~nan], h.view(np.uint16)[~nan]), row
        assert np.isnan(o16[row][nan]).all()


def test_host_function_takes_and_returns_f16(compiled):  # noqa: F811
    fn = compiled.module.lang_f16.h_f16_pair
    x = np.array([1.5, -3.0, 2.25, 1000.0, 0.1], f16)
    best, total = fn(x, 0.5)
    assert type(best) is f16 and type(total) is f32
    assert best == max(v * f16(0.5) for v in x) == f16(500)
    want = f32(0)
    for v in x:
        want = f32(want + f32(v))
    assert total == want
    with np.errstate(over="ignore"):
        best, _ = fn(x, -70000.0)  # the scalar rounds to -inf: max of -inf * x
    assert best == np.inf
    assert fn.py_func(x, f16(0.5))[0] == f16(500)  # plain Python, numpy's float16


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs binutils' nm as the oracle")
def test_the_conversions_llvm_calls_are_the_bundles_own(compiled):  # noqa: F811
    """``__extendhfsf2`` and co.: defined in the bundle, local (``t``), none undefined."""
    so = str(compiled.bundle)
    local = subprocess.run(["nm", so], capture_output=True, text=True, check=True).stdout
    undefined = subprocess.run(
        ["nm", "-D", "--undefined-only", so], capture_output=True, text=True, check=True
    ).stdout
    for sym in ("__extendhfsf2", "__truncsfhf2", "__truncdfhf2"):
        assert f" t {sym}\n" in local, sym
        assert sym not in undefined, sym


# ---------------------------------------------------------------------- baseline and GPU


@pytest.fixture(scope="module")
def own_build(tmp_path_factory, kit):
    """The fixture module alone, for the x86-64 baseline and every default level, and (with
    ptxas) every default GPU arch."""
    return kit.build_alone(
        tmp_path_factory.mktemp("lang-f16"),
        "lang_f16",
        "lang_f16_own",
        cpu_levels="x86-64,x86-64-v2,x86-64-v3,x86-64-v4",
        no_gpu=shutil.which("ptxas") is None,
    )


QEMU = shutil.which("qemu-x86_64")


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param([], id="native"),
        # qemu's Nehalem (no AVX, no F16C) traps every instruction it lacks: the baseline's
        # code and the bundle's own conversions use none.
        pytest.param(
            [QEMU, "-cpu", "Nehalem"],
            id="qemu-Nehalem",
            marks=pytest.mark.skipif(QEMU is None, reason="qemu-user is not installed"),
        ),
    ],
)
def test_the_x86_64_baseline_level_computes_the_same(own_build, kit, prefix):
    """x86-64 (no SSE4, no F16C) pinned, in a process of its own: every case."""
    from gpuaot.bundle import cpus

    if cpus.machine() != "x86_64":
        pytest.skip("x86-64 CPU levels")
    pkg, _ = own_build
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(pkg.parent)!r}, {str(kit.REPO / "tests")!r}]
        import numpy as np
        import lang_f16_own.k as k
        import test_lang_f16 as t
        from gpuaot.runtime import bundle
        for c in t.CASES:
            t._run(getattr(k, c.fn), c)
        assert bundle.load_bundle("lang_f16_own").cpu_level == "x86-64"
        print("ok", len(t.CASES))
    """)
    env = {**os.environ, "GPUAOT_CPU": "x86-64"}
    if prefix:  # numpy's OpenBLAS pinned to the model (tests/cpu_levels_kit.py says why)
        env["OPENBLAS_CORETYPE"] = OPENBLAS_CORE[prefix[2]]
    r = subprocess.run([*prefix, sys.executable, "-c", script], env=env, capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0 and f"ok {len(CASES)}" in r.stdout, r.stdout + r.stderr


def test_ptxas_assembles_every_kernel_for_every_default_arch(own_build, kit):
    m = own_build[1].manifest
    if not m["images"]:
        pytest.skip("ptxas not found")
    kit.assert_assembled(m, KERNELS)


@pytest.mark.parametrize(
    "fn,wanted,unwanted",
    [
        # Native f16 adds and multiplies, each rounded (.rn: ptxas may not fuse them).
        ("f16_arith", ["add.rn.f16", "mul.rn.f16", "sub.rn.f16", "cvt.f32.f16"], ["fma.rn.f16"]),
        # f64 -> f16 in one rounding, not through f32.
        ("f16_convert", ["cvt.rn.f16.f64", "cvt.rn.f16.f32", "cvt.f64.f16"], []),
        ("f16_math", ["sqrt.rn.f32", "cvt.rn.f16.f32"], []),
        # CUDA's atomicAdd on __half (sm_70 and up): subnormals kept, rounded to nearest.
        ("f16_atomics", ["atom.global.add.noftz.f16"], ["atom.global.cas"]),
    ],
)
def test_the_ptx_has_the_instructions(own_build, monkeypatch, fn, wanted, unwanted):
    from click.testing import CliRunner

    from gpuaot.cli import main

    if shutil.which("ptxas") is None:
        pytest.skip("ptxas not found")
    pkg, _ = own_build
    monkeypatch.chdir(pkg.parent)
    result = CliRunner().invoke(
        main, ["emit", f"lang_f16_own.k:{fn}", "--stage", "ptx", "--target", "sm_75"]
    )
    assert result.exit_code == 0, result.output
    for w in wanted:
        assert w in result.output, w
    for w in unwanted:
        assert w not in result.output, w


# ---------------------------------------------------------------------- misuse


HEADER = "import gpuaot as ga\nfrom gpuaot import Array, f16, f32, i64\n\n\n@ga.kernel\n"


@pytest.mark.parametrize(
    "body,where,message",
    [
        ("def k(a: Array[f16]):\n    ga.atomic_max(a, 0, a[1])\n", "k.py:7:5",
         "atomic_max() does not take f16 elements (atomic_add does)"),
        ("def k(a: Array[f16]):\n    ga.atomic_cas(a, 0, a[1], a[2])\n", "k.py:7:5",
         "atomic_cas() does not take f16 elements (atomic_add does)"),
        ("def k(a: Array[f16]):\n    a[0] = ga.shfl_down_sync(-1, a[0], 1)\n", "k.py:7:12",
         "shuffles move 32- or 64-bit values, not f16"),
        ("def k(a: Array[f16]):\n    a[0] = a[1] & 1\n", "k.py:7:12",
         "'&' needs integer operands, not f16 and int literal"),
        ("def k(a: Array[f16]):\n    v = a[0]\n    v = i64(1)\n", "k.py:8:5",
         "'v' is f16 here but i64 is assigned"),
        ("def k(a: Array[f16]):\n    a[0] = f16(a)\n", "k.py:7:12",
         "argument of f16() must be a number or bool, not Array[f16, 1]"),
    ],
)  # fmt: skip
def test_misuse_is_a_located_error(kit, tmp_path, body, where, message):
    root = kit.write_package(tmp_path / "bad", {"k.py": HEADER + textwrap.dedent(body)})
    out = kit.build_errors(root, cache_dir=tmp_path / "cache")
    assert f"{where}: error: {message}" in out, out


def test_a_wrong_dtype_for_an_f16_array_is_a_type_error(compiled):  # noqa: F811
    k = compiled.module.lang_f16.f16_sum
    with pytest.raises(TypeError, match="has dtype float32, expected float16"):
        k[1, 32](np.zeros((4, 4), f32), np.zeros(4, f16))


def test_the_promotion_rule_is_numpys():
    from gpuaot.lang import types as t

    for other in (t.boolean, t.i8, t.u8, t.i16, t.u16, t.i32, t.u32, t.i64, t.u64, t.f32, t.f64):
        want = np.result_type(np.float16, other.np_dtype)
        assert t.promote(t.f16, other).np_dtype == want, other
        assert t.promote(other, t.f16).np_dtype == want, other
    assert t.promote(t.f16, t.INT_LIT) is t.f16 and t.promote(t.FLOAT_LIT, t.f16) is t.f16
    assert Fraction(float(t.f16(0.1))) == Fraction(float(np.float16(0.1)))
