"""round, divmod, pow; a.size/.ndim/.shape; tuple indices; rank 4; ``for v in a``, enumerate.

The kernels are fixtures/conformance/lang_arrays.py: each case runs on the CPU backend on
every CPU level of the default build and under ``simulate``, against numpy / CPython oracles
written here; ptxas assembles them for every default arch; misuse is a located error.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from test_conformance import Case, compiled, conformance, names  # noqa: F401 - fixtures

f32, f64, i8, i64 = np.float32, np.float64, np.int8, np.int64


def _floats(rng, n=128):
    """Ties (k/4, k/8), small values that round to -0.0, and wide random ones."""
    ties = np.arange(-24, 24) / 4.0
    eighths = np.concatenate([np.arange(-14, 14) / 8.0 + 0.0625, [-0.04, -0.004, 0.04, -0.0]])
    return np.concatenate([ties, eighths, rng.normal(0, 300, n - 80)])


def _cpython_round(x, n=None):
    return round(float(x)) if n is None else round(float(x), n)


CASES = []


def case(fn, order, inputs, oracle, config=(4, 32)):
    """test_conformance's Case (so its runners and the device check's recorder can take
    these too); the kernels live in the package's ``lang_arrays`` module."""
    CASES.append(Case(fn, inputs, names(*order), oracle, config))


# round(x) is CPython's (half to even, an int); round(x, n) numpy's np.round on floats.
case(
    "round_f64",
    ("x", "whole", "out"),
    lambda r: {"x": _floats(r), "whole": np.zeros(128, i64), "out": np.zeros((6, 128))},
    lambda s: {
        "whole": np.array([_cpython_round(v) for v in s["x"]], i64),
        "out": np.stack([np.round(s["x"], n) for n in (0, 1, 2, 3, -1, -2)]),
    },
)
case(
    "round_f32",
    ("x", "whole", "out"),
    lambda r: {
        "x": _floats(r).astype(f32),
        "whole": np.zeros(128, i64),
        "out": np.zeros((3, 128), f32),
    },
    lambda s: {
        "whole": np.array([_cpython_round(v) for v in s["x"]], i64),
        "out": np.stack([np.round(s["x"], n) for n in (1, 2, -1)]),
    },
)
case(
    "round_int",
    ("x", "out", "y", "out8"),
    lambda r: {
        "x": np.concatenate([np.arange(-64, 64) * 5 + 1000 * (np.arange(128) % 3)]).astype(i64),
        "out": np.zeros((5, 128), i64),
        "y": (np.arange(128) - 64).astype(i8) * 2,
        "out8": np.zeros(128, i8),
    },
    lambda s: {
        "out": np.array([[round(int(v), n) for v in s["x"]] for n in (None, 2, -1, -2, -3)]),
        "out8": np.array([round(int(v), -1) for v in s["y"]]).astype(i8),
    },
)


def _divmod_inputs(r):
    b = r.integers(1, 9, 128) * r.choice([-1, 1], 128)
    return {
        "a": r.integers(-60, 60, 128),
        "b": b,
        "qr": np.zeros((4, 128), i64),
        "x": _floats(r),
        "y": b * 0.75,
        "f": np.zeros((5, 128)),
    }


def _divmod_oracle(s):
    a, b, x, y, i = s["a"], s["b"], s["x"], s["y"], np.arange(128)
    return {
        "qr": np.stack([a // b, a % b, a**3, (b % 7) ** (i % 4)]),
        "f": np.stack([[divmod(p, q)[0] for p, q in zip(x, y)], np.mod(x, y), x**2.0,
                       np.abs(x) ** 0.5, [math.pow(p, k) for p, k in zip(x, i % 5)]]),
    }  # fmt: skip


case("divmod_pow", ("a", "b", "qr", "x", "y", "f"), _divmod_inputs, _divmod_oracle)


def _rank4_inputs(r):
    a = r.random((3, 5, 4, 6)).astype(f32)
    return {"a": a, "out": np.zeros_like(a), "info": np.zeros(8, i64)}


def _rank4_oracle(s):
    a = s["a"]
    k, m = np.indices(a.shape[2:])
    return {"out": a * f32(2) + (k * 10 + m).astype(f32), "info": [360, 4, 3, 5, 4, 6, 3, 364]}


case("rank4", ("a", "out", "info"), _rank4_inputs, _rank4_oracle, ((1, 1), (4, 8)))
case(
    "rank4_strided",
    ("a", "out"),
    lambda r: {"a": r.random((4, 5, 6, 7)).transpose(3, 1, 0, 2), "out": np.zeros((7, 5, 4, 6))},
    lambda s: {"out": s["a"]},
    (1, 32),
)
case(
    "tuple_index",
    ("a", "out", "again"),
    lambda r: {"a": r.random((20, 30)).astype(f32), "out": np.zeros((20, 30), f32),
               "again": np.zeros((20, 30), f32)},
    lambda s: {"out": s["a"] + f32(1.5), "again": s["a"] * f32(2)},
    ((2, 2), (16, 16)),
)  # fmt: skip


def _iterate_oracle(s):
    a = [f32(v) for v in s["a"]]
    n = len(a)
    out, counts = np.zeros((2, n), f32), np.zeros((5, n), i64)
    for i in range(n):
        total = f32(0)
        for v in a:
            total = f32(total + v)
        weighted = f32(0)
        for k, v in enumerate(a):
            weighted = f32(weighted + v * f32(k % 3))
        seen, stopped = 0, 1
        for v in a:
            if v < 0:
                continue
            if v > a[i]:
                break
            seen += 1
        else:
            stopped = 0
        first = next((k for k, v in enumerate(a) if v > a[i]), -1)
        pairs = list(enumerate(range(i, 3 * i + 7, 3)))
        last = pairs[-1][0] * 1000 + pairs[-1][1]
        out[:, i] = total, weighted
        counts[:, i] = seen, stopped, first, last, len(pairs) + 100
    return {"out": out, "counts": counts}


case(
    "iterate",
    ("a", "out", "counts"),
    lambda r: {"a": r.normal(0, 10, 40).astype(f32), "out": np.zeros((2, 40), f32),
               "counts": np.zeros((5, 40), i64)},
    _iterate_oracle,
    (2, 32),
)  # fmt: skip


def _run(kern, c: Case):
    state = c.inputs(np.random.default_rng(sum(map(ord, c.fn))))
    expected = c.oracle({k: np.copy(v) for k, v in state.items()})
    with np.errstate(all="ignore"):
        kern[c.config](*c.args(state))
    for key, want in expected.items():
        got, want = state[key], np.asarray(want).astype(state[key].dtype)
        np.testing.assert_array_equal(got, want, err_msg=f"{c.fn}: {key}", strict=True)
        if got.dtype.kind == "f":  # exact means -0.0 is not 0.0 (round(-0.04, 1) is -0.0)
            np.testing.assert_array_equal(np.signbit(got), np.signbit(want), err_msg=key)


# Every kernel of fixtures/conformance/lang_arrays.py (test_conformance's "every function has
# a case" can take these: round_raises is tested by the functions below).
KERNELS = {c.fn for c in CASES} | {"round_raises"}


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.fn)
def test_compiled_on_every_level(compiled, c):  # noqa: F811 - the fixture
    _run(getattr(compiled.module.lang_arrays, c.fn), c)


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.fn)
def test_simulate(conformance, c):  # noqa: F811 - the fixture
    _run(getattr(conformance.module.lang_arrays, c.fn).simulate, c)


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.fn)
def test_compiled_debug(built, c):
    """--debug: bounds checks on (tuple indices and array loops included), results unchanged."""
    _run(getattr(built("conformance", debug=True).module.lang_arrays, c.fn), c)


@pytest.mark.parametrize("bad,exc", [(math.nan, ValueError), (math.inf, OverflowError),
                                     (-math.inf, OverflowError)])  # fmt: skip
def test_round_of_nan_and_inf_raises_as_cpython(compiled, kit, bad, exc):  # noqa: F811
    x = np.array([1.5, bad])
    with pytest.raises(exc) as compiled_err:
        compiled.module.lang_arrays.round_raises[1, 2](x, np.zeros(2, i64))
    with pytest.raises(exc) as cpython_err:
        round(bad)
    assert str(cpython_err.value) in str(compiled_err.value)
    lines = (kit.FIXTURES / "conformance" / "lang_arrays.py").read_text().splitlines()
    line = lines.index("        out[i] = round(x[i])") + 1  # round_raises's call
    assert f"lang_arrays.py:{line}," in str(compiled_err.value)
    with pytest.raises(exc):
        compiled.module.lang_arrays.round_raises.simulate[1, 2](x, np.zeros(2, i64))


def test_divmod_by_zero_raises(compiled):  # noqa: F811
    s = _divmod_inputs(np.random.default_rng(1))
    s["b"][7] = 0
    with pytest.raises(ZeroDivisionError):
        compiled.module.lang_arrays.divmod_pow[4, 32](
            *(s[k] for k in ("a", "b", "qr", "x", "y", "f"))
        )


def test_round_ndigits_against_cpython():
    """numpy's scheme (what the kernels compute) against CPython's correctly rounded one:
    on random doubles they agree; they differ only at decimal ties (2.675, a number written
    with one digit more than kept), where x * 10**n lands on the other side of .5."""
    rng = np.random.default_rng(7)
    uniform = rng.uniform(-1000, 1000, 20000)
    for n in (1, 2, 3):
        assert np.array_equal(np.round(uniform, n), [round(float(v), n) for v in uniform])
    for n in (1, 2):
        xs = np.round(rng.uniform(-10, 10, 20000), n + 1)
        ours = np.round(xs, n)
        ref = np.array([round(float(v), n) for v in xs])
        differ = ours != ref
        assert 0 < differ.mean() < 0.05, (n, differ.mean())
        # Where they differ, the two are neighbours 10**-n apart and x is their tie.
        np.testing.assert_allclose(np.abs(ours - ref)[differ], 10.0**-n, rtol=1e-9)
        tie = (ours[differ] + ref[differ]) / 2
        np.testing.assert_allclose(xs[differ], tie, rtol=1e-12)


# ---------------------------------------------------------------------- misuse


HEADER = "import gpuaot as ga\nfrom gpuaot import Array, f32, i64\n\n\n@ga.kernel\n"


def _errors(kit, tmp_path, body: str) -> str:
    root = kit.write_package(tmp_path / "bad", {"k.py": HEADER + textwrap.dedent(body)})
    return kit.build_errors(root, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize(
    "body,where,message",
    [
        ("def k(a: Array[f32, 2]):\n    for v in a:\n        pass\n", "k.py:7:14",
         "a loop over an array needs a 1-D array, not Array[f32, 2]"),
        ("def k(a: Array[f32], n: i64):\n    a[0] = round(a[1], n)\n", "k.py:7:12",
         "round()'s ndigits must be a constant integer"),
        ("def k(a: Array[f32]):\n    a[0] = round(a[1], 1.5)\n", "k.py:7:12",
         "round()'s ndigits must be a constant integer"),
        ("def k(a: Array[f32]):\n    a[0] = round(a[1], 400)\n", "k.py:7:12",
         "round()'s ndigits 400 is out of range"),
        ("def k(a: Array[f32]):\n    a[0] = pow(a[1], 2, 3)\n", "k.py:7:12",
         "pow() takes two numbers in kernels"),
        ("def k(a: Array[f32]):\n    q = divmod(a[0])\n", "k.py:7:9", "divmod() takes two numbers"),
        ("def k(a: Array[f32]):\n    for k, v, w in enumerate(a):\n        pass\n", "k.py:7:9",
         "enumerate() binds two names"),
        ("def k(a: Array[f32]):\n    for v in enumerate(a, 1):\n        pass\n", "k.py:7:14",
         "enumerate() takes one range(...) or 1-D array"),
        ("def k(a: Array[f32]):\n    e = enumerate(a)\n", "k.py:7:9",
         "enumerate() is only allowed as a for-loop's iterable"),
        ("def k(a: Array[f32]):\n    for v in 3:\n        pass\n", "k.py:7:14",
         "kernels loop over range(...), a 1-D array or enumerate(...) of one"),
        ("def k(a: Array[f32]):\n    a[0] = a.strides\n", "k.py:7:12",
         "a Array[f32, 1] has no attribute 'strides' in kernels"),
        ("def k(a: Array[f32, 5]):\n    pass\n", "k.py:6:10", "an Array's rank must be 1 to 4"),
        ("def k(a: Array[f32, 2]):\n    t = (0, 1, 2)\n    a[t] = 1.0\n", "k.py:8:5",
         "a 2-D array takes 2 indices, got 3"),
    ],
)  # fmt: skip
def test_misuse_is_a_located_error(kit, tmp_path, body, where, message):
    out = _errors(kit, tmp_path, body)
    assert f"{where}: error: {message}" in out, out


# ---------------------------------------------------------------------- the GPU build


@pytest.fixture(scope="module")
def gpu_build(tmp_path_factory, kit):
    """The fixture module alone, built for the CPU and every default GPU arch (ptxas)."""
    root = tmp_path_factory.mktemp("langarrays-gpu")
    return root, kit.build_alone(root, "lang_arrays", "lang_arrays_gpu")[1]


def test_ptxas_assembles_every_kernel_for_every_default_arch(gpu_build, kit):
    kit.assert_assembled(gpu_build[1].manifest, KERNELS)


@pytest.mark.parametrize(
    "fn,wanted",
    [
        ("round_f64", ["cvt.rni.f64.f64", "cvt.rzi.s64.f64"]),  # rint, then the saturating cast
        ("rank4", ["mul.lo.s64"]),  # a.size: the product of the shape
    ],
)
def test_the_ptx_has_the_instructions(gpu_build, monkeypatch, fn, wanted):
    from click.testing import CliRunner

    from gpuaot.cli import main

    monkeypatch.chdir(gpu_build[0])
    result = CliRunner().invoke(
        main, ["emit", f"lang_arrays_gpu.k:{fn}", "--stage", "ptx", "--target", "sm_75"]
    )
    assert result.exit_code == 0, result.output
    for w in wanted:
        assert w in result.output, w


@pytest.mark.parametrize("layout", ["C", "A"])
def test_a_4d_array_marshals_as_its_abi_says(layout):
    """runtime.args: data pointer, 4 extents (and 4 strides, in bytes, where strided)."""
    from gpuaot.bundle.abi import array_abi
    from gpuaot.bundle.manifest import Param
    from gpuaot.runtime.args import marshal

    a = np.zeros((2, 3, 4, 5), f32)
    view = a if layout == "C" else a.transpose(3, 2, 1, 0)
    abi = tuple(array_abi(4, layout))
    name = 'Array[f32, 4, "A"]' if layout == "A" else "Array[f32, 4]"
    p = Param("a", name, abi, "f32", 4, layout)
    parts = marshal("k", [p], [view])
    assert len(parts) == len(abi)
    assert parts[0].value == view.ctypes.data
    want = list(view.shape) + (list(view.strides) if layout == "A" else [])
    assert [v.value for v in parts[1:]] == want
