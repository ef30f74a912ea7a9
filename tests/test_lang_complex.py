"""c64 / c128 (complex64 / complex128): every operation on every CPU level, under ``simulate``,
against numpy and CPython oracles; ptxas for every default arch; the ABI; misuse.

The kernels are fixtures/conformance/lang_complex.py. Exact (bitwise) where the operation is
exact arithmetic: ``+ - *``, conjugate, the parts, ``==``, the c128 quotient (CPython's
algorithm, what CPython computes). Where a math library rounds (``abs``, ``cmath``, the c64
quotient under simulate, which is numpy's algorithm), a tolerance stated per output.
"""

from __future__ import annotations

import cmath
import importlib
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from test_conformance import compiled, conformance  # noqa: F401 - fixtures

c64, c128, f32, f64, i32, i64 = (np.complex64, np.complex128, np.float32, np.float64, np.int32,
                                 np.int64)  # fmt: skip
N = 64
F32_ULP = float(np.finfo(f32).eps)  # 1.19e-7
F64_ULP = float(np.finfo(f64).eps)  # 2.2e-16


@dataclass
class CCase:
    fn: str
    order: tuple[str, ...]
    inputs: object  # rng -> state
    oracle: object  # state -> {key: expected}
    # key -> (relative tolerance compiled, relative tolerance simulate); absent: exact
    tol: dict = field(default_factory=dict)
    config: tuple = (2, 32)
    # key -> relative tolerance on a GPU (libdevice's math), for the device check
    # (bench/gpu_bundles.py records these cases); absent: exact
    gpu: dict = field(default_factory=dict)


def _z(rng, dtype, n=N, scale=2.0):
    return (rng.normal(0, scale, n) + 1j * rng.normal(0, scale, n)).astype(dtype)


def _f32_mul(x, y):
    """The textbook product in f32, each operation rounded (what c64 ``*`` computes)."""
    xr, xi, yr, yi = (np.asarray(v, f32) for v in (x.real, x.imag, y.real, y.imag))
    return _pack(xr * yr - xi * yi, xr * yi + xi * yr)


def _pack(re, im):
    """A complex array of these parts (``re + 1j * im`` would turn a -0.0 real part to 0.0)."""
    out = np.empty(np.broadcast(re, im).shape, np.result_type(re, im, np.complex64))
    out.real, out.imag = re, im
    return out


def _quotient(ar, ai, br, bi):
    """CPython's _Py_c_quot, in the parts' own precision (numpy arrays of f32 or f64)."""
    big_r = np.abs(br) >= np.abs(bi)
    with np.errstate(all="ignore"):
        r1 = bi / br
        d1 = br + bi * r1
        r2 = br / bi
        d2 = br * r2 + bi
        re = np.where(big_r, (ar + ai * r1) / d1, (ar * r2 + ai) / d2)
        im = np.where(big_r, (ai - ar * r1) / d1, (ai * r2 - ar) / d2)
    return re, im


CASES: list[CCase] = []


def _arith64_in(r):
    return {"a": _z(r, c64), "b": _z(r, c64), "out": np.zeros((9, N), c64)}


def _arith64(s):
    a, b = s["a"], s["b"]
    one = np.ones(N, c64)
    return {
        "out": np.stack([
            a + b, a - b, _f32_mul(a, b), -a, a.conjugate(), _f32_mul(a, 2 * one),
            _f32_mul(a, 1.5 * one) + 1j, _f32_mul(a, b) - 0.5j, _f32_mul(a, 2j * one),
        ]).astype(c64)
    }  # fmt: skip


CASES.append(CCase("c_arith64", ("a", "b", "out"), _arith64_in, _arith64))


def _arith128(s):
    a, b = [complex(v) for v in s["a"]], [complex(v) for v in s["b"]]  # CPython's complex
    rows = [
        [x + y for x, y in zip(a, b)], [x - y for x, y in zip(a, b)],
        [x * y for x, y in zip(a, b)], [-x for x in a],
        [(x * y).conjugate() for x, y in zip(a, b)], [x * 2 - 3 for x in a],
        [x * 1.5 + 1j for x in a],
    ]  # fmt: skip
    return {"out": np.array(rows, c128)}


CASES.append(
    CCase(
        "c_arith128",
        ("a", "b", "out"),
        lambda r: {"a": _z(r, c128), "b": _z(r, c128), "out": np.zeros((7, N), c128)},
        _arith128,
    )
)


def _mixed_in(r):
    return {"z": _z(r, c64), "x": r.normal(0, 3, N).astype(f32), "d": r.normal(0, 3, N),
            "k": r.integers(-3, 9, N).astype(i32), "out": np.zeros((4, N), c128),
            "out64": np.zeros((4, N), c64)}  # fmt: skip


def _mixed(s):
    z, x, d, k = s["z"], s["x"], s["d"], s["k"]
    return {
        "out64": np.stack([_f32_mul(z, x.astype(c64)), x + z, _f32_mul(x.astype(c64), 1j),
                           _f32_mul(z, k.astype(c64))]).astype(c64),
        "out": np.stack([z.astype(c128) * d, d - z.astype(c128), k * 1j,
                         np.where(k > 0, x.astype(c64), z)]),
    }  # fmt: skip


CASES.append(CCase("c_mixed", ("z", "x", "d", "k", "out", "out64"), _mixed_in, _mixed))


def _parts_in(r):
    a = _z(r, c64)
    b = a.copy()
    b[::3] += np.complex64(0.5)  # a third differ in the real part, a third in the imaginary
    b[1::3] += np.complex64(0.5j)
    a[5] = b[5] = 0
    return {"a": a, "b": b, "re": np.zeros((6, N), f32), "eq": np.zeros((5, N), bool),
            "w": _z(r, c128, scale=1e200), "re128": np.zeros((3, N))}  # fmt: skip


def _parts(s):
    a, b, w = s["a"], s["b"], s["w"]
    return {
        "re": np.stack([a.real, a.imag, np.abs(a), _f32_mul(a, b).real, a.imag,
                        a.imag * 0 + a.imag]).astype(f32),  # .imag of a real is 0
        "eq": np.stack([a == b, a != b, a.imag == 0, a != 0, a == 0]),
        # abs(w) as CPython computes it (hypot: no overflow for parts of 1e200)
        "re128": np.stack([w.real, w.imag, [abs(complex(v)) for v in w]]),
    }  # fmt: skip


# abs: libm's hypotf on the CPU, numpy's npy_hypot(f) under simulate; c128's is CPython's
# hypot, bitwise on the CPU, within an ulp of numpy's.
CASES.append(
    CCase("c_parts", ("a", "b", "re", "eq", "w", "re128"), _parts_in, _parts,
          tol={"re": (F32_ULP, F32_ULP), "re128": (0.0, F64_ULP)},
          gpu={"re": 2 * F32_ULP, "re128": 2 * F64_ULP})
)  # fmt: skip


def _divide_in(r):
    a, b = _z(r, c128), _z(r, c128)
    b[0], b[1], b[2] = 1e-300j, 3.0, complex(2.0, -2.0)  # each branch, and a tie
    a64, b64 = _z(r, c64), _z(r, c64)
    return {"a": a, "b": b, "out": np.zeros(N, c128), "a64": a64, "b64": b64,
            "out64": np.zeros(N, c64)}  # fmt: skip


def _divide(s):
    a, b, a64, b64 = s["a"], s["b"], s["a64"], s["b64"]
    re, im = _quotient(a64.real, a64.imag, b64.real, b64.imag)
    return {
        "out": np.array([complex(x) / complex(y) for x, y in zip(a, b)]),  # CPython's
        "out64": _pack(re, im),
        "a64": (a64 / f32(2)).astype(c64),
    }


# simulate divides numpy scalars: numpy's Smith algorithm (a reciprocal), within 2 ulp.
CASES.append(
    CCase("c_divide", ("a", "b", "out", "a64", "b64", "out64"), _divide_in, _divide,
          tol={"out": (0.0, 4 * F64_ULP), "out64": (0.0, 4 * F32_ULP)})
)  # fmt: skip


def _cmath_in(r, dtype):
    z = _z(r, dtype)
    z[0], z[1], z[2] = 1, -4 + 0j, 1j  # sqrt of a negative real; the imaginary axis
    s = np.array([complex(math.nan, 0), complex(0, math.inf), complex(-math.inf, math.nan),
                  1 + 2j] * (N // 4), dtype)  # fmt: skip
    return z, s


def _cmath128_in(r):
    z, s = _cmath_in(r, c128)
    return {"z": z, "out": np.zeros((7, N), c128), "r": np.zeros((3, N)), "s": s,
            "flags": np.zeros((3, N), bool)}  # fmt: skip


def _cmath128(s):
    z = [complex(v) for v in s["z"]]
    sp = [complex(v) for v in s["s"]]
    pol = [cmath.polar(v) for v in z]
    return {
        "out": np.array([[f(v) for v in z] for f in (cmath.exp, cmath.log, cmath.sqrt, cmath.sin,
                                                      cmath.cos)]
                        + [[cmath.rect(m, p) for m, p in pol], [cmath.sqrt(v.real) for v in z]]),
        "r": np.array([[cmath.phase(v) for v in z], [m for m, _ in pol], [p for _, p in pol]]),
        "flags": np.array([[f(v) for v in sp] for f in (cmath.isnan, cmath.isinf,
                                                         cmath.isfinite)]),
    }  # fmt: skip


# The compiled code computes with libm's real functions (CPython's cmath has its own
# formulas near |z| = 1 and the axes); simulate runs CPython's cmath itself.
CASES.append(
    CCase("c_cmath128", ("z", "out", "r", "s", "flags"), _cmath128_in, _cmath128,
          tol={"out": (8 * F64_ULP, 0.0), "r": (2 * F64_ULP, 0.0)},
          gpu={"out": 16 * F64_ULP, "r": 4 * F64_ULP})
)  # fmt: skip


def _cmath64(s):
    z = [complex(v) for v in s["z"]]
    pol = [cmath.polar(complex(v)) for v in s["z"]]
    absz = [float(abs(v)) for v in s["z"]]  # abs(v) of a c64 scalar: an f32
    return {
        "out": np.array([[cmath.exp(v) for v in z], [cmath.log(v) for v in z],
                         [cmath.sqrt(v) for v in z], [cmath.rect(m, 0.5) for m in absz]], c64),
        "r": np.array([[cmath.phase(v) for v in z], [m for m, _ in pol], [p for _, p in pol]],
                      f32),
    }  # fmt: skip


# c64: single-precision libm (expf, logf, ...) against CPython's double rounded to c64 (which
# is what simulate's cmath shim returns).
CASES.append(
    CCase("c_cmath64", ("z", "out", "r"), lambda r: {"z": _cmath_in(r, c64)[0],
          "out": np.zeros((4, N), c64), "r": np.zeros((3, N), f32)}, _cmath64,
          tol={"out": (8 * F32_ULP, 0.0), "r": (4 * F32_ULP, 0.0)},
          gpu={"out": 16 * F32_ULP, "r": 8 * F32_ULP})
)  # fmt: skip


def _scalars_in(r):
    return {"z": c64(1.5 - 0.25j), "w": complex(-2, 3), "x": f32(0.75), "out": np.zeros(N, c128),
            "out64": np.zeros(N, c64), "n": np.zeros(N, i64)}  # fmt: skip


def _scalars(s):
    z, w, x = s["z"], complex(s["w"]), s["x"]
    out, out64 = [], []
    for i in range(N):
        acc = c64(0)
        for k in range(i % 4):
            acc = c64(acc + c64(_f32_mul(np.array([z]), np.array([c64(k)]))[0]))
        out.append(w + complex(acc) + complex(float(x), i))
        t1, t2 = c64(x), c64(w * i)
        out64.append(z + _f32_mul(np.array([t1]), np.array([t2]))[0])
    return {"out": np.array(out), "out64": np.array(out64, c64), "n": np.full(N, 5)}


CASES.append(
    CCase("c_scalars", ("z", "w", "x", "out", "out64", "n"), _scalars_in, _scalars)
)  # fmt: skip


def _check(c: CCase, state: dict, expected: dict, which: int) -> None:
    for key, want in expected.items():
        got = state[key]
        want = np.asarray(want).astype(got.dtype)
        rtol = c.tol.get(key, (0.0, 0.0))[which]
        if rtol == 0.0:
            np.testing.assert_array_equal(got, want, err_msg=f"{c.fn}: {key}", strict=True)
            if got.dtype.kind in "fc":  # exact includes the signs of zeros
                for part in ("real", "imag"):
                    g, w = getattr(got, part), getattr(want, part)
                    np.testing.assert_array_equal(np.signbit(g), np.signbit(w), err_msg=key)
        else:
            np.testing.assert_allclose(got, want, rtol=rtol, atol=0, err_msg=f"{c.fn}: {key}")


def _run(kern, c: CCase, which: int):
    state = c.inputs(np.random.default_rng(sum(map(ord, c.fn))))
    expected = c.oracle({k: np.copy(v) for k, v in state.items()})
    kern[c.config](*(state[k] for k in c.order))
    _check(c, state, expected, which)


KERNELS = {c.fn for c in CASES}


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.fn)
def test_compiled_on_every_level(compiled, c):  # noqa: F811 - the fixture
    _run(getattr(compiled.module.lang_complex, c.fn), c, 0)


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.fn)
def test_simulate(conformance, c):  # noqa: F811 - the fixture
    _run(getattr(conformance.module.lang_complex, c.fn).simulate, c, 1)


def test_a_zero_divisor_raises_as_cpython(compiled, kit):  # noqa: F811
    s = _divide_in(np.random.default_rng(3))
    s["b"][9] = complex(-0.0, 0.0)
    with pytest.raises(ZeroDivisionError) as err:
        compiled.module.lang_complex.c_divide[2, 32](*(s[k] for k in _DIVIDE_ORDER))
    with pytest.raises(ZeroDivisionError) as cpython:
        complex(1, 2) / complex(-0.0, 0.0)
    assert str(cpython.value) in str(err.value)
    lines = (kit.FIXTURES / "conformance" / "lang_complex.py").read_text().splitlines()
    line = lines.index("        out[i] = a[i] / b[i]") + 1
    assert f"lang_complex.py:{line}," in str(err.value), err.value
    assert "thread (9, 0, 0)" in str(err.value)


_DIVIDE_ORDER = ("a", "b", "out", "a64", "b64", "out64")


def test_host_functions_take_and_return_complex(compiled):  # noqa: F811
    m = compiled.module.lang_complex
    got = m.h_cmul(complex(1.5, -2), np.complex128(0.25 + 4j))
    assert type(got) is np.complex128
    assert got == complex(1.5, -2) * (0.25 + 4j) + complex(0.5, -1.0)
    mag, phase = m.h_polar(np.complex64(3 + 4j))
    assert type(mag) is np.float32 and type(phase) is np.float32
    assert mag == f32(5) and abs(phase - math.atan2(4, 3)) <= 2 * F32_ULP


def test_complex_scalars_marshal_as_their_parts():
    """runtime.args: a c64 / c128 parameter is one value of 8 / 16 bytes: (real, imag)."""
    import ctypes

    from gpuaot.bundle.manifest import Param
    from gpuaot.runtime.args import marshal

    p64, p128 = Param("z", "c64", ("c64",)), Param("w", "c128", ("c128",))
    v64, v128 = marshal("k", [p64, p128], [1.5 - 2j, np.complex64(0.25j)])
    assert ctypes.sizeof(v64) == 8 and ctypes.sizeof(v128) == 16
    assert bytes(v64) == np.complex64(1.5 - 2j).tobytes()
    assert bytes(v128) == np.complex128(0.25j).tobytes()
    assert bytes(marshal("k", [p64], [3])[0]) == np.complex64(3).tobytes()  # a real converts
    with pytest.raises(TypeError, match="argument 'x' is f32; got a complex"):
        marshal("k", [Param("x", "f32", ("f32",))], [1j])
    with pytest.raises(TypeError, match="argument 'n' is i64; got a complex"):
        marshal("k", [Param("n", "i64", ("i64",))], [np.complex64(1)])


def test_promotion_follows_the_float_rules():
    """complex ⊕ real: numpy's result type, except that ints keep the complex type (as
    int ⊕ float keeps the float in gpuaot); complex literals are weak like float literals."""
    from gpuaot.lang import types as t

    reals = [t.boolean, t.i8, t.i16, t.i32, t.i64, t.u8, t.u16, t.u32, t.u64, t.f32, t.f64]
    for z in (t.c64, t.c128):
        for other in [*reals, t.c64, t.c128]:
            got = t.promote(z, other)
            assert got is t.promote(other, z)
            want = np.result_type(z.np_dtype, other.np_dtype)
            if other.is_int or other is t.boolean:
                want = z.np_dtype
            assert got.np_dtype == want, (z, other)
    assert t.promote(t.COMPLEX_LIT, t.f32) is t.c64
    assert t.promote(t.COMPLEX_LIT, t.f64) is t.promote(t.COMPLEX_LIT, t.i32) is t.c128
    assert t.promote(t.FLOAT_LIT, t.c64) is t.promote(t.INT_LIT, t.c64) is t.c64
    assert t.materialize(t.COMPLEX_LIT) is t.c128
    assert t.unify(t.FLOAT_LIT, t.c64) is t.c64 and t.unify(t.f32, t.c64) is None
    assert t.parse_type("Array[c64, 2]") is t.Array[t.c64, 2]
    assert t.parse_type("complex literal") is t.COMPLEX_LIT


def test_python_complex_annotates_c128(kit, tmp_path, monkeypatch):
    """``complex`` in an annotation is c128 (as ``float`` is f64), in ``Array[...]`` too; a
    complex scalar argument marshals through the CPU's fast path and the general one;
    ``cmath``'s constants, ``from cmath import phase`` and an alias ``angle = cmath.phase``."""
    src = ("import cmath\nfrom cmath import phase\n\nimport gpuaot as ga\nfrom gpuaot import Array\n"
           "\nangle = cmath.phase\n\n\n@ga.kernel\ndef k(z: complex, out: Array[complex]):\n"
           "    out[ga.grid(1)] = z * 1j + (cmath.pi - cmath.pi) + (phase(z) - angle(z))\n")  # fmt: skip
    root = kit.write_package(tmp_path / "cpyann", {"k.py": src})
    kit.build(root, cache_dir=tmp_path / "cache")
    kit.import_package(root, monkeypatch)
    k = importlib.import_module("cpyann.k").k
    out = np.zeros(4, c128)
    k[1, 4](2 - 1j, out)  # a Python complex: the general path
    k[1, 2](np.complex128(3 + 0j), out)  # numpy's: no conversion
    assert list(out) == [3j, 3j, (2 - 1j) * 1j, (2 - 1j) * 1j]
    with pytest.raises(TypeError, match="argument 'z' must be a number"):
        k[1, 4]("1j", out)


# ---------------------------------------------------------------------- misuse

HEADER = "import cmath\nimport math\n\nimport gpuaot as ga\nfrom gpuaot import Array, c64, f32, i64\n\n\n@ga.kernel\n"  # noqa: E501
SIG = "def k(a: Array[c64], x: Array[f32], n: Array[i64]):\n"


@pytest.mark.parametrize(
    "body,col,message",
    [
        ("    x[0] = a[0] < a[1]\n", 12, "complex numbers have no order: '<' between c64 and c64"),
        ("    x[0] = a[0] >= 1.0\n", 12, "complex numbers have no order: '>=' between c64 and float literal"),  # noqa: E501
        ("    n[0] = int(a[0])\n", 12, "int() cannot convert a complex number (c64)"),
        ("    x[0] = f32(a[0])\n", 12, "f32() cannot convert a complex number (c64)"),
        ("    x[0] = float(a[0])\n", 12, "float() cannot convert a complex number (c64)"),
        ("    x[0] = x[a[0]]\n", 12, "array indices must be integers, not c64"),
        ("    x[0] = a[0]\n", 12, "cannot store a c64 in an array of f32"),
        ("    y: f32 = a[0]\n", 14, "cannot assign c64 to 'y: f32'"),
        ("    x[0] = math.sqrt(a[0])\n", 12, "argument of math.sqrt() must be a real number, not c64"),  # noqa: E501
        ("    a[0] = a[0] // a[1]\n", 12, "'//' is not supported on complex numbers in kernels"),
        ("    a[0] = a[0] % 2\n", 12, "'%' is not supported on complex numbers in kernels"),
        ("    a[0] = a[0] ** 2\n", 12, "'**' is not supported on complex numbers in kernels"),
        ("    n[0] = n[0] & a[0]\n", 12, "'&' needs integer operands, not i64 and c64"),
        ("    a[0] = min(a[0], a[1])\n", 12, "argument of min() must be a real number, not c64"),
        ("    n[0] = round(a[0])\n", 12, "argument of round() must be a real number, not c64"),
        ("    ga.atomic_add(a, 0, a[1])\n", 5, "atomic_add() does not take complex numbers"),
        ("    a[0] = cmath.log(a[0], 2.0)\n", 12, "cmath.log() takes one number in kernels"),
        ("    a[0] = cmath.tan(a[0])\n", 12, "cmath.tan is not supported in kernels"),
        ("    a[0] = complex(a[0], a[1])\n", 12, "argument of complex() must be a real number, not c64"),  # noqa: E501
        ("    a[0] = cmath.rect(a[0], 1.0)\n", 12, "argument of cmath.rect() must be a real number, not c64"),  # noqa: E501
        ("    a[0] = a[0].conjugate(1)\n", 12, "conjugate() takes no arguments"),
        ("    y = a[0]\n    y = x[0]\n", 5, "'y' is c64 here but f32 is assigned"),
    ],
)  # fmt: skip
def test_misuse_is_a_located_error(kit, tmp_path, body, col, message):
    root = kit.write_package(tmp_path / "bad", {"k.py": HEADER + SIG + body})
    out = kit.build_errors(root, cache_dir=tmp_path / "cache")
    line = 10 + body.count("\n") - 1
    assert f"k.py:{line}:{col}: error: {message}" in out, out
    assert out.count(": error: ") == 1, out  # one error per mistake


# ---------------------------------------------------------------------- the GPU build


@pytest.fixture(scope="module")
def gpu_build(tmp_path_factory, kit):
    """The fixture module alone, built for the CPU and every default GPU arch (ptxas)."""
    root = tmp_path_factory.mktemp("langcomplex-gpu")
    return root, kit.build_alone(root, "lang_complex", "lang_complex_gpu")[1]


def test_ptxas_assembles_every_kernel_for_every_default_arch(gpu_build, kit):
    m = gpu_build[1].manifest
    kit.assert_assembled(m, KERNELS)
    (scalars,) = [k for k in m["kernels"] if k["name"] == "c_scalars"]
    params = {p["name"]: p for p in scalars["specializations"][0]["params"]}
    assert (params["z"]["type"], params["z"]["abi"]) == ("c64", ["c64"])
    assert (params["w"]["type"], params["w"]["abi"]) == ("c128", ["c128"])


def _ptx(gpu_build, monkeypatch, fn: str) -> str:
    from click.testing import CliRunner

    from gpuaot.cli import main

    monkeypatch.chdir(gpu_build[0])
    result = CliRunner().invoke(
        main, ["emit", f"lang_complex_gpu.k:{fn}", "--stage", "ptx", "--target", "sm_75"]
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_the_ptx_multiplies_without_contraction(gpu_build, monkeypatch):
    """``a*c - b*d`` stays two roundings on the GPU too (bitwise numpy's product); a complex
    parameter is one ``.param`` of 8 / 16 bytes."""
    ptx = _ptx(gpu_build, monkeypatch, "c_arith64")
    assert "mul.rn.f32" in ptx and "fma.rn.f32" not in ptx
    scalars = _ptx(gpu_build, monkeypatch, "c_scalars")
    assert ".param .align 4 .b8" in scalars and "[8]" in scalars
    assert ".param .align 8 .b8" in scalars and "[16]" in scalars
