"""Arrays as numba writes them; functions and types as helper arguments; typed helpers.

The kernels are fixtures/conformance/lang_helpers.py: each case runs on the CPU backend on
every CPU level of the default build and (where simulate makes the same conversions) under
``simulate``, against numpy oracles written here; ptxas assembles them, and a shared-memory
kernel in numba's spellings, for every default arch; misuse is a located error.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np
import pytest
from test_conformance import compiled, conformance  # noqa: F401 - the fixtures

f32, f64, i32, i64, u32 = np.float32, np.float64, np.int32, np.int64, np.uint32


@dataclass
class Case:
    fn: str
    order: tuple
    inputs: object  # rng -> dict of arrays and scalars
    oracle: object  # state -> dict of expected arrays
    config: tuple = (2, 32)
    simulate: bool = True  # False: simulate does not convert (Python never does)


def _alloc_oracle(s):
    x = s["x"]
    two, three = f32(2), f32(3)
    out = np.zeros((5, x.size), f32)
    out[0] = (x * two + three) + x
    b30, b31 = x + three, x - three
    out[1] = ((b30 + b31) + b30 * two) + f32(0)
    out[2] = 321
    out[3] = 7 + 3 * 10 + 4 * 100 + 4 * 1000
    out[4] = 2 + 8 * 10 + 3 * 100
    return {"out": out}


def _fn_args_oracle(s):
    i = np.arange(s["out"].shape[1])
    out = np.stack([4 * i, 6 * i, 100 * i])
    return {
        "cnt": np.array([np.sum(i + 1), 0], u32),
        "mx": np.array([3 * i.max() + 1], u32),
        "fs": np.array([1.5 * i.size], f32),
        "out": out,
        "r": 2 * np.sqrt(i.astype(f64)),
    }


def _converting_inputs(r):
    a = np.concatenate([r.integers(-(2**40), 2**40, 60), [2**31 - 5, -(2**31), 2**32 + 7, -1]])
    return {
        "a": a.astype(i64),
        "b": r.normal(0, 1e3, 64),
        "n": i32(2**31 - 10),
        "x": f32(1.1),
        "out": np.zeros((3, 64)),
    }


def _converting_oracle(s):
    a, b = s["a"], s["b"]
    with np.errstate(all="ignore"):
        return {
            "out": np.stack(
                [
                    (a.astype(u32).astype(f32) + b.astype(f32)).astype(f64),  # u32 + f32 is f32
                    (i64(s["n"]) + a).astype(i32).astype(f64),
                    (f64(s["x"]) * b).astype(f32).astype(f64),
                ]
            )
        }


CASES = [
    Case(
        "alloc_forms",
        ("x", "out"),
        lambda r: {"x": r.normal(0, 10, 64).astype(f32), "out": np.zeros((5, 64), f32)},
        _alloc_oracle,
    ),
    Case(
        "fn_args",
        ("cnt", "mx", "fs", "out", "r"),
        lambda r: {
            "cnt": np.zeros(2, u32),
            "mx": np.zeros(1, u32),
            "fs": np.zeros(1, f32),
            "out": np.zeros((3, 64), i64),
            "r": np.zeros(64),
        },
        _fn_args_oracle,
    ),
    Case(
        "typed_helpers",
        ("x", "out"),
        lambda r: {"x": r.normal(0, 10, 64).astype(f32), "out": np.zeros(64, f32)},
        lambda s: {"out": (s["x"] * f32(2)) * f32(3)},
    ),
    Case(
        "converting_helpers",
        ("a", "b", "n", "x", "out"),
        _converting_inputs,
        _converting_oracle,
        simulate=False,
    ),
]


def _run(kern, c: Case):
    state = c.inputs(np.random.default_rng(sum(map(ord, c.fn))))
    expected = c.oracle({k: np.copy(v) for k, v in state.items()})
    kern[c.config](*(state[k] for k in c.order))
    for key, want in expected.items():
        got = state[key]
        np.testing.assert_array_equal(
            got, np.asarray(want).astype(got.dtype), err_msg=f"{c.fn}: {key}", strict=True
        )


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.fn)
def test_compiled_on_every_level(compiled, c):  # noqa: F811 - the fixture
    _run(getattr(compiled.module.lang_helpers, c.fn), c)


@pytest.mark.parametrize("c", [c for c in CASES if c.simulate], ids=lambda c: c.fn)
def test_simulate(conformance, c):  # noqa: F811 - the fixture
    _run(getattr(conformance.module.lang_helpers, c.fn).simulate, c)


def test_each_function_argument_is_its_own_specialisation(conformance):  # noqa: F811
    """bump is typed once per (function, type) pair; the pair is part of the symbol."""
    from gpuaot.compiler.discover import discover
    from gpuaot.compiler.frontend.typer import TypingContext

    pkg = discover(str(conformance.root))
    ctx = TypingContext(pkg, "cpu")
    tf, errors = ctx.specialize(pkg.function("conformance.lang_helpers.fn_args"))
    assert not errors, errors
    bumps = {t.symbol for (f, _, _), (t, _) in ctx.done.items() if f.name == "bump"}
    assert len(bumps) == 3, bumps
    assert all(s.startswith("conformance__lang_helpers__bump.K") for s in bumps), bumps
    assert any("atomic_max" in s and "u32" in s for s in bumps), bumps


# ---------------------------------------------------------------------- misuse

HEADER = (
    "import math\nimport gpuaot as ga\nfrom gpuaot import Array, f32, i64\n\n\n"
    "@ga.device\ndef h(op, x: f32):\n    return op + x\n\n\n"
    "@ga.device\ndef keep(op):\n    return op(1.0)\n\n\n@ga.kernel\n"
)


def _diagnostics(kit, tmp_path, src: str) -> str:
    root = kit.write_package(tmp_path / "bad", {"k.py": src})
    return kit.build_errors(root, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize(
    "body,where,message",
    [
        ("def k(a: Array[f32]):\n    t = ga.local_array(f32, shape=4, order=1)\n", "k.py:18:9",
         "local_array() takes no keyword 'order'"),
        ("def k(a: Array[f32]):\n    t = ga.local_array(4, 8)\n", "k.py:18:9",
         "the first argument of local_array() must be a gpuaot scalar type"),
        ("def k(a: Array[f32]):\n    t = ga.local_array(shape=4, dtype=a)\n", "k.py:18:9",
         "the dtype of local_array() must be a gpuaot scalar type"),
        ("def k(a: Array[f32]):\n    t = ga.local_array(f32)\n", "k.py:18:9",
         "local_array() takes (dtype, shape)"),
        ("def k(a: Array[f32]):\n    n = 4\n    n = 5\n    t = ga.local_array(f32, n)\n",
         "k.py:20:9", "local_array() needs a constant positive shape"),
        ("def k(a: Array[f32]):\n    a[0] = h(ga.atomic_add, 1.0)\n", "k.py:8:12",
         "'op' holds the function gpuaot.atomic_add; it can be called or passed on"),
        ("def k(a: Array[f32]):\n    f = math.sqrt\n    f = math.exp\n    a[0] = keep(f)\n",
         "k.py:19:5", "'f' holds function math.sqrt here but the function math.exp is assigned"),
        ("def k(a: Array[f32]):\n    a[0] = h(math.sqrt, a)\n", "k.py:18:12",
         "cannot pass Array[f32, 1] to parameter 'x: f32' of 'h'"),
        ("def k(a: Array[f32], n: i64):\n    n = (1, 2)\n", "k.py:18:9",
         "cannot assign (int literal, int literal) to 'n: i64'"),
        ("def k(a: Array[f32]):\n    a[0] = keep(ga.kernel)\n", "k.py:18:17",
         "'ga.kernel' cannot be used as a value in kernels"),
    ],
)  # fmt: skip
def test_misuse_is_a_located_error(kit, tmp_path, body, where, message):
    out = _diagnostics(kit, tmp_path, HEADER + textwrap.dedent(body))
    assert f"{where}: error: {message}" in out, out


def test_host_functions_take_no_function(kit, tmp_path):
    src = (
        "import math\nimport gpuaot as ga\nfrom gpuaot import f64\n\n\n"
        "@ga.host\ndef h(x: f64) -> f64:\n    return x\n\n\n"
        "@ga.host\ndef g(y: f64) -> f64:\n    return h(math.sqrt)\n"
    )
    out = _diagnostics(kit, tmp_path, src)
    assert "k.py:13:12: error: the function math.sqrt cannot be passed here" in out, out


# ---------------------------------------------------------------------- the GPU build

SHARED = '''
import gpuaot as ga
from gpuaot import Array, f32

TILE = 32
SHAPE = (2, TILE)
nbtype = f32


@ga.kernel
def reverse_block(x: Array[f32], out: Array[f32]):
    """numba's spellings: shared.array(shape=, dtype=) and shared.array(shape, dtype)."""
    s = ga.shared_array(shape=TILE, dtype=nbtype)
    t = ga.shared_array(SHAPE, f32)
    i = ga.thread_idx.x
    g = ga.grid(1)
    s[i] = x[g]
    t[1, i] = 2.0 * x[g]
    ga.syncthreads()
    out[g] = s[TILE - 1 - i] + t[1, TILE - 1 - i]
'''


@pytest.fixture(scope="module")
def gpu_build(kit, tmp_path_factory):
    """lang_helpers.py and the shared-memory kernel, built for the GPU too (ptxas)."""
    files = {
        "shared.py": SHARED,
        "__init__.py": "from .k import *  # noqa: F403\nfrom .shared import *  # noqa: F403\n",
    }
    root = tmp_path_factory.mktemp("langhelpers-gpu")
    return kit.build_alone(root, "lang_helpers", "lang_helpers_gpu", files)


def test_ptxas_assembles_every_kernel_for_every_default_arch(gpu_build, kit):
    kernels = {c.fn for c in CASES} | {"reverse_block"}
    kit.assert_assembled(gpu_build[1].manifest, kernels, gpu_only=frozenset({"reverse_block"}))


def test_shared_arrays_in_numba_spellings_simulate(gpu_build, kit, monkeypatch):
    pkg = kit.import_package(gpu_build[0], monkeypatch)
    x = np.arange(64, dtype=f32)
    out = np.zeros(64, f32)
    pkg.reverse_block.simulate[2, 32](x, out)
    rev = x.reshape(2, 32)[:, ::-1].reshape(64)
    np.testing.assert_array_equal(out, rev + 2 * rev)
