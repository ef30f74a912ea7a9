"""SPEC §2 conformance: every function of fixtures/conformance, compiled and simulated.

One session build of the package. Each :class:`Case` makes its inputs, launches the kernel
on each backend of one axis (``backends.BACKENDS``: ``simulate``, ``cpu-<level>`` for every
default CPU level, ``gpu`` where there is a device; ``backends.check_kernel``) and compares
the result with a numpy / CPython oracle written here from the SPEC's rules; host functions
run on every CPU level against CPython. Integer results and ``+ - * /`` float results must
match exactly; f32 transcendentals to ``rtol=1e-6``.

FMA contraction (SPEC §2, ``fma=True`` by default) is the one exception to exactness: a case
whose expression has an ``a*b+c`` shape states ``fma_rtol``, and where contraction can apply
(a CPU variant with FMA, i.e. x86-64-v3/v4 or any aarch64, and the GPU) its float outputs
(only the ``fma_rows`` of them, where given) are compared to ``rtol=fma_rtol`` and
``atol=fma_rtol * max|expected|`` (a fused product skips one rounding: half an ulp of the
product, which in these cases is no larger than the output's scale). Everywhere else, on
x86-64-v2 (no FMA), for integers and single operations, results stay bitwise; the
``fma=False`` kernels (``strict_*``) stay bitwise on every level.
"""

from __future__ import annotations

import ast
import copy
import ctypes
import ctypes.util
import functools
import math
import operator
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from backends import (
    LEVELS,
    Backend,
    backend_params,
    check_kernel,
    fused_now,
    open_backend,
    pin_level,
    quiet,
)

from gpuaot.lang.decorators import Host

i8, i16, i32, i64 = np.int8, np.int16, np.int32, np.int64
u8, u16, u32, u64 = np.uint8, np.uint16, np.uint32, np.uint64
f32, f64 = np.float32, np.float64
I64_MIN, I64_MAX = np.iinfo(i64).min, np.iinfo(i64).max
I32_MIN, I32_MAX = np.iinfo(i32).min, np.iinfo(i32).max


@dataclass
class Case:
    fn: str  # the function's name in the package
    inputs: Callable[[np.random.Generator], dict]  # the state: named arrays and scalars
    args: Callable[[dict], tuple]  # the call's arguments, built from a state (views too)
    oracle: Callable[[dict], dict] | None = None  # expected state entries (or {"return": v})
    config: tuple = (4, 32)
    rtol: float | None = None  # None: exact
    atol: float = 0.0
    variant: str = ""
    sim_oracle: Callable[[dict], dict] | None = None  # where simulate's answer differs (overlay)
    check: Callable[[dict], None] | None = None  # order-free results (atomics)
    raises: type[BaseException] | None = None
    sim_xfail: str | None = None  # a known simulate limitation (strict xfail)
    ret_type: type | tuple | None = None  # host functions: numpy type(s) of the result
    fma_rtol: float | None = None  # an a*b+c shape: the tolerance where contraction applies
    fma_rows: tuple[int, ...] | None = None  # only these rows may contract (None: all)

    @property
    def id(self) -> str:
        return f"{self.fn}-{self.variant}" if self.variant else self.fn


def names(*keys: str) -> Callable[[dict], tuple]:
    return lambda s: tuple(s[k] for k in keys)


def nonzero(rng, lo, hi, n, dtype):
    v = rng.integers(lo, hi, n).astype(dtype)
    v[v == 0] = 1
    return v


def wrap(value: int, bits: int, signed: bool) -> int:
    """Python's int wrapped to a fixed width: the SPEC's integer overflow rule."""
    value &= (1 << bits) - 1
    if signed and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


def py_trunc(x: np.ndarray) -> np.ndarray:
    return np.array([int(v) for v in x], dtype=object)


N = 100  # elements per 1-D case; the launches cover 128 threads (a non-multiple)
CASES: list[Case] = []


def case(*args, **kwargs) -> None:
    CASES.append(Case(*args, **kwargs))


F32_FMA, F64_FMA = 4 * float(np.finfo(f32).eps), 4 * float(np.finfo(f64).eps)
FMA_ROW_7_F32 = {"fma_rtol": F32_FMA, "fma_rows": (7,)}  # out[7] = x * y + x
FMA_ROW_7_F64 = {"fma_rtol": F64_FMA, "fma_rows": (7,)}  # out[7] = x * y - y


# ---------------------------------------------------------------------- arithmetic


def _int_ops_inputs(rng):
    a = rng.integers(-1000, 1000, N).astype(i64)
    b = nonzero(rng, -50, 50, N, i64)
    a[:4] = [I64_MIN, I64_MAX, I64_MIN, -7]
    b[:4] = [-1, 2, 3, 2]
    return {"a": a, "b": b, "out": np.zeros((10, N), i64)}


def _int_ops_oracle(s):
    a, b = s["a"], s["b"]
    with quiet():
        return {
            "out": np.stack(
                [
                    a + b,
                    a - b,
                    a * b,
                    np.floor_divide(a, b),
                    np.mod(a, b),
                    -a,
                    a,
                    a**3,
                    np.floor_divide(17, b),
                    np.mod(a, 7),
                ]
            )
        }


case("int_ops", _int_ops_inputs, names("a", "b", "out"), _int_ops_oracle)


def _i32_ops_inputs(rng):
    a = rng.integers(I32_MIN, I32_MAX, N, endpoint=True).astype(i32)
    b = nonzero(rng, -40000, 40000, N, i32)
    a[:5] = [I32_MIN, I32_MAX, -7, 7, I32_MIN]
    b[:5] = [-1, 1, 2, -2, 3]
    return {"a": a, "b": b, "out": np.zeros((9, N), i32)}


def _i32_ops_oracle(s):
    a, b = s["a"], s["b"]
    with quiet():
        return {
            "out": np.stack(
                [
                    a + b,
                    a - b,
                    a * b,
                    np.floor_divide(a, b),
                    np.mod(a, b),
                    -a,
                    a * i32(65537),
                    a + i32(I32_MAX),
                    np.floor_divide(a, i32(-1)),
                ]
            )
        }


case("i32_ops", _i32_ops_inputs, names("a", "b", "out"), _i32_ops_oracle)


def _small_inputs(rng):
    return {
        "a": rng.integers(0, 256, N).astype(u8),
        "b": nonzero(rng, 0, 256, N, u8),
        "c": rng.integers(-128, 128, N).astype(i8),
        "ou": np.zeros((7, N), u8),
        "oi": np.zeros((6, N), i8),
    }


def _small_oracle(s):
    a, b, c = s["a"], s["b"], s["c"]
    with quiet():
        ou = np.stack([a + b, a - b, a * b, a // b, a % b, a * u8(3), u8(44) + a])
        oi = np.stack([c + c, c * c, -c, np.floor_divide(c, i8(3)), np.mod(c, i8(-3)), c - i8(100)])
    return {"ou": ou, "oi": oi}


case("small_int_wrap", _small_inputs, names("a", "b", "c", "ou", "oi"), _small_oracle)


def _float_inputs(dtype):
    def make(rng):
        a = (rng.standard_normal(N) * 10).astype(dtype)
        b = (rng.standard_normal(N) * 3).astype(dtype)
        b[np.abs(b) < 0.1] = dtype(0.75)
        # floor division and modulo corners: signs, signed zeros, a zero divisor
        a[:11] = [7.0, -7.0, 7.0, -7.0, 0.0, -0.0, 0.0, -0.0, 1.0, -1.0, 0.0]
        b[:11] = [2.0, 2.0, -2.0, -2.0, 3.0, 3.0, -3.0, -3.0, 0.0, 0.0, 0.0]
        return {"a": a, "b": b, "out": np.zeros((8, N), dtype)}

    return make


def _f32_oracle(s):
    a, b = s["a"], s["b"]
    with quiet():
        return {
            "out": np.stack(
                [a + b, a - b, a * b, a / b, np.floor_divide(a, b), np.mod(a, b), -a, a * b + a]
            )
        }


def _f64_oracle(s):
    a, b = s["a"], s["b"]
    with quiet():
        return {
            "out": np.stack(
                [a + b, a - b, a * b, a / b, np.floor_divide(a, b), np.mod(a, b), -a, a * b - b]
            )
        }


case("f32_ops", _float_inputs(f32), names("a", "b", "out"), _f32_oracle, **FMA_ROW_7_F32)
case("f64_ops", _float_inputs(f64), names("a", "b", "out"), _f64_oracle, **FMA_ROW_7_F64)


def _true_div_inputs(rng):
    return {
        "a": nonzero(rng, -1000, 1000, N, i32),
        "b": nonzero(rng, -30, 30, N, i64),
        "out": np.zeros((5, N), f64),
    }


def _true_div_oracle(s):
    a, b = s["a"].astype(f64), s["b"].astype(f64)
    return {"out": np.stack([a / b, a / 2, np.full(N, 3.5), a * 0.5, b / a])}


case("int_true_div", _true_div_inputs, names("a", "b", "out"), _true_div_oracle)


def _literal_inputs(rng):
    n = rng.integers(-(2**30), 2**30, N).astype(i32)
    n[:2] = [2**30 - 1, I32_MAX]
    return {
        "x": (rng.standard_normal(N) * 100).astype(f32),
        "n": n,
        "of": np.zeros((6, N), f64),
        "oi": np.zeros((5, N), i64),
    }


def _literal_oracle(s):
    x, n = s["x"], s["n"]
    with quiet():
        of = np.stack(
            [
                (x * f32(0.1)).astype(f64),  # x * 2.0 stays f32: the literal takes x's type
                (x + f32(1e-8)).astype(f64),
                ((x * f32(2.0)) / f32(3.0)).astype(f64),
                np.full(N, 0.1 * 3),  # literals alone are f64
                np.full(N, 0.1 * 3),
                n.astype(f64) * 0.1,  # int with a float literal: f64
            ]
        )
        oi = np.stack(
            [
                (n * i32(3)).astype(i64),  # wraps in i32
                n.astype(i64) * 3,
                np.full(N, (1 << 40) // 3),
                np.full(N, 9000000000),
                (n + i32(255)).astype(i64),
            ]
        )
    return {"of": of, "oi": oi}


case("literal_types", _literal_inputs, names("x", "n", "of", "oi"), _literal_oracle)


def _mixed_inputs(rng):
    return {
        "a": rng.integers(-(2**15), 2**15, N).astype(i16),
        "b": rng.integers(-(2**40), 2**40, N).astype(i64),
        "c": rng.integers(0, 256, N).astype(u8),
        "d": (rng.standard_normal(N) * 7).astype(f32),
        "out": np.zeros((5, N), f64),
    }


def _mixed_oracle(s):
    a, b, c, d = s["a"], s["b"], s["c"], s["d"]
    with quiet():
        return {
            "out": np.stack(
                [
                    (a.astype(i64) * b).astype(f64),  # narrower with wider: the wider
                    (a * c.astype(i16)).astype(f64),  # i16 with u8: i16, wrapping
                    (a.astype(f32) * d).astype(f64),  # int with float: the float
                    (c + c).astype(f64),  # u8 wraps
                    (a * a).astype(f64),
                ]
            )
        }


case("mixed_width", _mixed_inputs, names("a", "b", "c", "d", "out"), _mixed_oracle)


def _int_float_inputs(rng):
    a = rng.integers(2**25, 2**40, N).astype(i64)  # not exact in f32
    n = rng.integers(2**25, 2**30, N).astype(i32)
    return {"a": a, "n": n, "d": (rng.random(N) + 0.5).astype(f32), "out": np.zeros((3, N), f64)}


def _int_float_oracle(s):
    a32, n32, d = s["a"].astype(f32), s["n"].astype(f32), s["d"]
    return {"out": np.stack([(a32 * d).astype(f64), (n32 / d).astype(f64), (d + a32).astype(f64)])}


case(
    "int_float_promotion",
    _int_float_inputs,
    names("a", "n", "d", "out"),
    _int_float_oracle,
    sim_xfail="simulate computes with numpy's promotion (i64 * f32 -> f64); SPEC §2 says "
    "int ⊕ float gives the float type (f32)",
)


def _bitwise_inputs(rng):
    a = rng.integers(I64_MIN, I64_MAX, N, endpoint=True).astype(i64)
    b = rng.integers(I64_MIN, I64_MAX, N, endpoint=True).astype(i64)
    s = rng.integers(0, 70, N).astype(i64)
    a[:4] = [-1, 1, I64_MIN, 12345]
    s[:4] = [63, 63, 64, 100]
    return {"a": a, "b": b, "s": s, "out": np.zeros((8, N), i64)}


def _bitwise_oracle(s):
    a, b, sh = s["a"], s["b"], s["s"]
    # Python shifts of a 64-bit value: bits shifted out are lost (wrap), >= 64 gives 0 / -1.
    left = np.array([wrap(int(x) << int(k), 64, True) for x, k in zip(a, sh)], dtype=i64)
    right = np.array([int(x) >> int(k) for x, k in zip(a, sh)], dtype=i64)
    return {"out": np.stack([a & b, a | b, a ^ b, ~a, left, right, a & 255, (a ^ -1) >> 3])}


case("bitwise", _bitwise_inputs, names("a", "b", "s", "out"), _bitwise_oracle)


def _shift_inputs(rng):
    return {
        "a": rng.integers(0, 2**32, N).astype(u32),
        "s": rng.integers(0, 40, N).astype(u32),
        "b": rng.integers(I32_MIN, I32_MAX, N).astype(i32),
        "t": rng.integers(0, 40, N).astype(i32),
        "ou": np.zeros((3, N), u32),
        "oi": np.zeros((3, N), i32),
        "ob": np.zeros((3, N), bool),
    }


def _shift_oracle(s):
    a, sh, b, t = s["a"], s["s"], s["b"], s["t"]
    ou = np.stack(
        [
            np.array([int(x) >> int(k) for x, k in zip(a, sh)], dtype=u32),
            np.array([wrap(int(x) << int(k), 32, False) for x, k in zip(a, sh)], dtype=u32),
            ~a,
        ]
    )
    oi = np.stack(
        [
            np.array([int(x) >> int(k) for x, k in zip(b, t)], dtype=i32),
            np.array([wrap(int(x) << int(k), 32, True) for x, k in zip(b, t)], dtype=i32),
            ~b,
        ]
    )
    p, q = a > sh, b > t
    return {"ou": ou, "oi": oi, "ob": np.stack([p & q, p | q, p ^ q])}


case("shifts_narrow", _shift_inputs, names("a", "s", "b", "t", "ou", "oi", "ob"), _shift_oracle)


def _unsigned_inputs(rng):
    a = rng.integers(0, 2**64, N, dtype=u64)
    b = rng.integers(1, 2**64, N, dtype=u64)
    a[:3], b[:3] = [0, 2**64 - 1, 5], [1, 1, 2**64 - 1]
    return {
        "a": a,
        "b": b,
        "c": rng.integers(0, 2**16, N).astype(u16),
        "o64": np.zeros((8, N), u64),
        "o16": np.zeros((4, N), u16),
    }


def _unsigned_oracle(s):
    a, b, c = [int(v) for v in s["a"]], [int(v) for v in s["b"]], [int(v) for v in s["c"]]
    m64, m16 = 2**64 - 1, 2**16 - 1
    o64 = [
        [(x + y) & m64 for x, y in zip(a, b)],
        [(x - y) & m64 for x, y in zip(a, b)],
        [(x * y) & m64 for x, y in zip(a, b)],
        [x // y for x, y in zip(a, b)],
        [x % y for x, y in zip(a, b)],
        [x >> 3 for x in a],
        [(x << 60) & m64 for x in a],
        [~x & m64 for x in a],
    ]
    o16 = [
        [(z * z) & m16 for z in c],
        [(z - 1000) & m16 for z in c],
        [z // 7 for z in c],
        [int(float(f32(z) * f32(1.5))) & m16 for z in c],
    ]
    return {"o64": np.array(o64, u64), "o16": np.array(o16, u16)}


case("unsigned_ops", _unsigned_inputs, names("a", "b", "c", "o64", "o16"), _unsigned_oracle)


def _cmp_inputs(rng):
    c = rng.integers(-12, 12, N).astype(f64) + rng.choice([0.0, 0.5], N)
    c[::7] = np.nan
    return {
        "a": rng.integers(-12, 12, N).astype(i64),
        "b": rng.integers(-12, 12, N).astype(i64),
        "c": c,
        "out": np.zeros((8, N), bool),
    }


def _cmp_oracle(s):
    a, b, c = s["a"], s["b"], s["c"]
    with quiet():
        return {
            "out": np.stack(
                [
                    (a < b) & (b <= c),
                    (a == b) & (b != 0),
                    (0 <= a) & (a < 10),
                    ~(a > b),
                    c != c,
                    c < 1.5,
                    (a >= b) & (b > -5),
                    c == a,
                ]
            )
        }


case("compare_chain", _cmp_inputs, names("a", "b", "c", "out"), _cmp_oracle)


def _logic_inputs(rng):
    return {
        "a": rng.integers(-200, 200, N).astype(i64),
        "counter": np.zeros(1, i64),
        "out": np.zeros((7, N), bool),
    }


def _logic_oracle(s):
    x = s["a"]
    return {
        "out": np.stack(
            [
                (x > 0) & (x < 10),
                (x < 0) | (x > 5),
                x % 2 != 0,
                ((x > 0) & (x < 10)) | (x == -3),
                (x > 100) & (x % 3 == 0),
                np.ones(N, bool),
                x != 0,
            ]
        ),
        # the helper runs only where the left operand does not decide: proves short-circuit
        "counter": np.array([np.sum(x > 100) + np.sum(x <= -100)], i64),
    }


case("logic", _logic_inputs, names("a", "counter", "out"), _logic_oracle)


def _ifexp_inputs(rng):
    return {
        "a": rng.standard_normal(N) * 2,
        "b": rng.integers(-50, 50, N).astype(i32),
        "out": np.zeros((4, N), f64),
    }


def _ifexp_oracle(s):
    a, b = s["a"], s["b"]
    return {
        "out": np.stack(
            [
                np.abs(a),
                np.where(b > 0, b, 0.5),
                np.where(a > 1, 1.0, np.where(a > -1, 2.0, 3.0)),
                np.where(b % 2 == 0, b * 2, b),
            ]
        )
    }


case("ifexp", _ifexp_inputs, names("a", "b", "out"), _ifexp_oracle)


# ---------------------------------------------------------------------- control flow


def _collatz_py(n: int) -> int:
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


case(
    "collatz",
    lambda rng: {"n": rng.integers(1, 2000, N).astype(i64), "out": np.zeros(N, i64)},
    names("n", "out"),
    lambda s: {"out": np.array([_collatz_py(int(v)) for v in s["n"]])},
)


def _find_first_oracle(s):
    x, thr = s["x"], s["thr"]
    out = []
    for row in x:
        hits = np.nonzero(row > thr)[0]
        out.append(hits[0] if len(hits) else -1)
    return {"out": np.array(out, i64)}


case(
    "find_first",
    lambda rng: {"x": rng.random((N, 7)), "thr": 0.8, "out": np.zeros(N, i64)},
    names("x", "thr", "out"),
    _find_first_oracle,
)


def _sum_skip_inputs(rng):
    x = rng.integers(-5, 10, (N, 9)).astype(i64)
    x[rng.random((N, 9)) < 0.1] = 999
    return {"x": x, "out": np.zeros(N, i64)}


def _sum_skip_oracle(s):
    out = []
    for row in s["x"]:
        acc = 0
        for v in row:
            if v < 0:
                continue
            if v == 999:
                break
            acc += int(v)
        out.append(acc)
    return {"out": np.array(out, i64)}


case("sum_skip", _sum_skip_inputs, names("x", "out"), _sum_skip_oracle)


def _reverse_oracle(s):
    x = [int(v) for v in s["x"]]
    n = len(x)
    rows = [
        [sum(x[j] for j in range(n - 1, i - 1, -1)) for i in range(n)],
        [sum(x[j] for j in range(i, -1, -2)) for i in range(n)],
        [sum(range(10, i, -3)) for i in range(n)],
        [list(range(i, i + 7, 3))[-1] for i in range(n)],
        [0] * n,
    ]
    return {"out": np.array(rows, i64)}


case(
    "reverse_ranges",
    lambda rng: {"x": rng.integers(-100, 100, 37).astype(i64), "out": np.zeros((5, 37), i64)},
    names("x", "out"),
    _reverse_oracle,
    config=(2, 32),
)


def _dyn_range(start, stop, step):
    def make(rng):
        return {
            "start": start,
            "stop": stop,
            "step": step,
            "out": np.full(64, -999, i64),
            "count": np.zeros(1, i64),
        }

    def oracle(s):
        r = list(range(start, stop, step))
        out = np.full(64, -999, i64)
        out[: min(64, len(r))] = r[:64]
        return {"out": out, "count": np.array([len(r)], i64)}

    case(
        "dynamic_range",
        make,
        names("start", "stop", "step", "out", "count"),
        oracle,
        config=(1, 1),
        variant=f"{start}_{stop}_{step}",
    )


for _args in [
    (0, 10, 1),
    (10, 0, -1),
    (10, -11, -3),
    (-5, 5, 4),
    (5, 5, 1),
    (5, 6, -1),
    (3, -3, 2),
]:
    _dyn_range(*_args)

case(
    "dynamic_range",
    lambda rng: {
        "start": 5,
        "stop": 0,
        "step": 0,
        "out": np.zeros(64, i64),
        "count": np.zeros(1, i64),
    },
    names("start", "stop", "step", "out", "count"),
    raises=ValueError,  # range(5, 0, 0): Python's error, not an endless loop
    config=(1, 1),
    variant="zero_step",
)


def _tuples_oracle(s):
    rows = [[] for _ in range(9)]
    for a, b in zip(map(int, s["a"]), map(int, s["b"])):
        lo, hi = (a, b) if a <= b else (b, a)
        vals = [
            a // b,
            a % b,
            lo,
            hi,
            (a + b) + 1000 * (a - b) + 1000000 * (a * b),
            min(lo, 5),
            max(hi, 5),
            b - a,
            a // 4 + (a % 4) * 100,
        ]
        for r, v in zip(rows, vals):
            r.append(v)
    return {"out": np.array(rows, i64)}


case(
    "tuples",
    lambda rng: {
        "a": rng.integers(-100, 100, N).astype(i64),
        "b": nonzero(rng, -20, 20, N, i64),
        "out": np.zeros((9, N), i64),
    },
    names("a", "b", "out"),
    _tuples_oracle,
)


def _generic_inputs(rng):
    return {
        "xf": (rng.standard_normal(N) * 5).astype(f32),
        "xd": rng.standard_normal(N) * 5,
        "xi": rng.integers(-(2**20), 2**20, N).astype(i32),
        "xl": rng.integers(-1000, 1000, N).astype(i64),
        "of": np.zeros(N, f32),
        "od": np.zeros(N, f64),
        "oi": np.zeros(N, i32),
        "ol": np.zeros(N, i64),
    }


def _generic_oracle(s):
    xf, xd, xi, xl = s["xf"], s["xd"], s["xi"], s["xl"]
    with quiet():
        return {
            "of": f32(2) * xf + xf,
            "od": (2.5 * xd + 1.0) + (np.clip(xd, -0.5, 0.5) + 0.5),
            "oi": xi * xi + i32(3),
            "ol": (2 * xl + 1) + (xl * 2 + 1) + np.clip(xl, -5, 5),
        }


case(
    "generic",
    _generic_inputs,
    names("xf", "xd", "xi", "xl", "of", "od", "oi", "ol"),
    _generic_oracle,
    fma_rtol=F32_FMA,  # axpy on f32 and f64 (the integer outputs stay exact)
)


def _constants_oracle(s):
    x = s["x"]
    return {
        "out": np.stack(
            [
                x * 1.5,
                x + -7,
                np.full(N, 255.0),
                np.full(N, 0.75 * (2 * math.pi)),
                np.full(N, 321.0),
                np.full(N, 79.0),
                np.full(N, 32.0),
                1.5 * x + -7,
                np.ones(N),
                (x > 0.25).astype(f64),
            ]
        )
    }


case(
    "constants",
    lambda rng: {"x": rng.standard_normal(N), "out": np.zeros((10, N))},
    names("x", "out"),
    _constants_oracle,
    fma_rtol=F64_FMA,
    fma_rows=(7,),  # util.affine: SCALE * x + OFFSET
)


def _statements_inputs(rng):
    x = rng.standard_normal(N) * 2
    x[::5] = 0.0
    return {"x": x, "out": rng.standard_normal((3, N)), "flags": np.zeros(N, i32)}


def _statements_oracle(s):
    x, out = s["x"], s["out"].copy()
    out[0] = (x * 2 - 1) / 4
    out[1] = np.where(x < -1, -1.0, np.where(x < 0, -0.5, np.where(x == 0, out[1], 1.0)))
    out[2] = (out[2] + x) * 3
    return {"out": out, "flags": np.full(N, 9, i32)}


case("statements", _statements_inputs, names("x", "out", "flags"), _statements_oracle)


def _for_else_inputs(rng):
    return {"x": rng.integers(0, 10, (N, 6)).astype(i64), "key": 7, "out": np.zeros((3, N), i64)}


def _for_else_py(row, key):
    for j, v in enumerate(row):
        if v == key:
            pos = j
            break
    else:
        pos = -1
    hits = 0
    for r in range(4):
        for j in range(r, 0, -1):
            if row[j] == key:
                break
        else:
            hits += 1
            continue
        hits += 100
    n = len(row)
    if row[0] % 5 not in range(3):
        n = -n
    return pos, hits, n


case(
    "for_else",
    _for_else_inputs,
    names("x", "key", "out"),
    lambda s: {"out": np.array([_for_else_py(list(r), 7) for r in s["x"]], i64).T},
)


def _while_else_py(n: int) -> tuple[int, int]:
    d = next((d for d in range(2, math.isqrt(n) + 1) if n % d == 0), 0) if n >= 4 else 0
    return d, n.bit_length() + 1000


case(
    "while_else",
    lambda rng: {"n": rng.integers(0, 200, N).astype(i64), "out": np.zeros((2, N), i64)},
    names("n", "out"),
    lambda s: {"out": np.array([_while_else_py(int(v)) for v in s["n"]], i64).T},
)


# ---------------------------------------------------------------------- math, casts


UNARY = [
    "sqrt",
    "exp",
    "log",
    "log2",
    "log10",
    "sin",
    "cos",
    "tan",
    "asin3",
    "acos3",
    "atan",
    "sinh",
    "cosh",
    "tanh",
    "fabs",
    "erf",
    "erfc",
]


def _unary_ref(name: str, v: float, dtype) -> float:
    if name.endswith("3"):
        v = float(dtype(v) / dtype(3.0))
        name = name[:-1]
    return dtype(getattr(math, name)(v))


def _math_unary(dtype, rtol):
    def make(rng):
        x = rng.uniform(0.2, 2.5, N).astype(dtype)
        x[:3] = [1.0, 0.5, 2.0]
        return {"x": x, "out": np.zeros((len(UNARY), N), dtype)}

    def oracle(s):
        return {
            "out": np.array(
                [[_unary_ref(nm, float(v), dtype) for v in s["x"]] for nm in UNARY], dtype
            )
        }

    name = "math_unary_f32" if dtype is f32 else "math_unary_f64"
    case(name, make, names("x", "out"), oracle, rtol=rtol)


_math_unary(f32, 1e-6)
_math_unary(f64, 1e-14)


def _binary_inputs(rng):
    x = rng.uniform(0.5, 2.0, N)
    y = rng.uniform(0.5, 2.0, N)
    return {
        "x": x.astype(f32),
        "y": y.astype(f32),
        "xd": x,
        "yd": y,
        "out": np.zeros((6, N), f32),
        "outd": np.zeros((6, N)),
    }


def _binary_oracle(s):
    x, y = s["x"].astype(f64), s["y"].astype(f64)
    ym1 = (s["y"] - f32(1)).astype(f64)
    out = np.array(
        [
            [math.atan2(b, a) for a, b in zip(x, y)],
            [a**b for a, b in zip(x, y)],
            [math.fmod(b, a) for a, b in zip(x, y)],
            np.hypot(x, y),
            np.copysign(x, ym1),
            [a**b for a, b in zip(x, y)],
        ]
    ).astype(f32)
    xd, yd = s["xd"], s["yd"]
    outd = np.array(
        [
            [math.atan2(b, a) for a, b in zip(xd, yd)],
            [math.pow(a, b) for a, b in zip(xd, yd)],
            [math.fmod(b, a) for a, b in zip(xd, yd)],
            [math.hypot(a, b) for a, b in zip(xd, yd)],
            np.copysign(xd, yd - 1),
            xd**2.5,
        ]
    )
    return {"out": out, "outd": outd}


case(
    "math_binary",
    _binary_inputs,
    names("x", "y", "xd", "yd", "out", "outd"),
    _binary_oracle,
    rtol=1e-6,
)


def _rounding_inputs(rng):
    x = rng.uniform(-100, 100, N)
    x[:8] = [-2.5, -2.0, -0.5, -0.0, 0.5, 2.0, 2.5, 99.999]
    return {
        "x": x,
        "y": x.astype(f32),
        "n": rng.integers(-1000, 1000, N).astype(i32),
        "out": np.zeros((8, N), i64),
    }


def _rounding_oracle(s):
    x, y, n = s["x"], s["y"], s["n"]
    return {
        "out": np.stack(
            [
                np.floor(x),
                np.ceil(x),
                np.trunc(x),
                np.floor(y),
                np.ceil(y),
                np.trunc(y),
                n,
                np.floor(x / 2) + np.ceil(x * 2),
            ]
        ).astype(i64)
    }


case("math_rounding", _rounding_inputs, names("x", "y", "n", "out"), _rounding_oracle)


def _pred_inputs(rng):
    x = rng.standard_normal(N)
    x[::4] = np.nan
    x[1::9] = np.inf
    x[2::9] = -np.inf
    return {"x": x, "y": x[::-1].astype(f32), "out": np.zeros((9, N), bool)}


def _pred_oracle(s):
    x, y = s["x"], s["y"]
    z = np.zeros(N, bool)
    with quiet():
        return {
            "out": np.stack(
                [
                    np.isnan(x),
                    np.isinf(x),
                    np.isfinite(x),
                    np.isnan(y),
                    np.isinf(y),
                    np.isfinite(y),
                    x == np.inf,
                    z,
                    z,
                ]
            )
        }


case("math_predicates", _pred_inputs, names("x", "y", "out"), _pred_oracle)


def _consts_ints_oracle(s):
    n = s["n"]
    return {
        "out": np.array(
            [
                [math.sqrt(v) for v in n],
                [math.exp(v / 10) for v in n],
                math.pi * n.astype(f64),
                np.full(N, math.e),
                [math.hypot(v, 3) for v in n],
                np.abs(n).astype(f64),
            ]
        )
    }


case(
    "math_consts_ints",
    lambda rng: {"n": rng.integers(0, 100, N).astype(i64), "out": np.zeros((6, N))},
    names("n", "out"),
    _consts_ints_oracle,
    rtol=1e-14,
)


def _casts_inputs(rng):
    x = rng.uniform(-300, 300, N)
    x[:6] = [-1.5, -0.5, 0.0, 255.9, -128.7, 299.0]
    n = rng.integers(-(2**50), 2**50, N).astype(i64)
    n[:4] = [-1, 255, -129, 2**31]
    return {
        "x": x,
        "n": n,
        "of": np.zeros(N, f32),
        "oi": np.zeros((12, N), i64),
        "ob": np.zeros((3, N), bool),
    }


def _casts_oracle(s):
    x, n = s["x"], s["n"]
    ints = [int(v) for v in n]
    tr = [int(v) for v in x]  # int(x): toward zero
    oi = [
        tr,
        [wrap(v, 8, True) for v in ints],
        [wrap(v, 8, False) for v in ints],
        [wrap(v, 16, True) for v in ints],
        [wrap(v, 16, False) for v in ints],
        [wrap(v, 32, True) for v in ints],
        [int(float(v) * 0.5) for v in ints],
        [int(float(f32(v) * f32(4))) for v in x],
        [1 + int(v > 0) for v in x],
        [wrap(v, 8, False) for v in tr],
        [wrap(v, 8, True) for v in tr],
        [wrap(v, 64, False) >> 1 for v in ints],
    ]
    return {
        "of": x.astype(f32),
        "oi": np.array(oi, i64),
        "ob": np.stack([x != 0, n != 0, (n & 1) != 0]),
    }


case("casts", _casts_inputs, names("x", "n", "of", "oi", "ob"), _casts_oracle)

case(
    "cast_constants",
    lambda rng: {"oi": np.zeros(7, i64)},
    names("oi"),
    lambda s: {
        "oi": np.array(
            [
                wrap(int(-1.5), 8, False),
                wrap(int(300.7), 8, False),
                wrap(int(200.0), 8, True),
                wrap(-129, 8, True),
                wrap(-1, 16, False),
                int(-2.9),
                wrap(int(2.0**31 + 5), 32, True),
            ],
            i64,
        )
    },
    config=(1, 1),
)


def _minmax_inputs(rng):
    x = rng.standard_normal(N)
    x[::11] = np.nan
    y = rng.standard_normal(N).astype(f32)
    y[3::13] = np.nan
    a = rng.integers(-10, 10, N).astype(i64)
    a[0] = I64_MIN
    return {
        "a": a,
        "b": rng.integers(-10, 10, N).astype(i64),
        "x": x,
        "y": y,
        "oi": np.zeros((4, N), i64),
        "of": np.zeros((6, N)),
    }


def _py_min(*vals):
    return min(*vals)


def _minmax_oracle(s):
    a, b, x, y = s["a"], s["b"], s["x"], s["y"]
    with quiet():
        oi = np.stack(
            [
                np.abs(a),
                np.minimum(a, b),
                np.maximum(np.maximum(a, b), 0),
                np.minimum(np.minimum(a, 3), b + 1),
            ]
        )
    # Python's min/max: the first argument unless a later one compares smaller/greater,
    # so a NaN first stays, a NaN later is skipped.
    yd = y.astype(f64)
    of = [
        np.abs(x),
        [min(p, q) for p, q in zip(x, yd)],
        [max(float(p), q) for p, q in zip(a, x)],
        [min(p, 0.5) for p in x],
        [f64(max(q, f32(-0.25))) for q in y],
        np.abs(y - f32(1)).astype(f64),
    ]
    return {"oi": oi, "of": np.array(of, f64)}


case("abs_min_max", _minmax_inputs, names("a", "b", "x", "y", "oi", "of"), _minmax_oracle)


# ---------------------------------------------------------------------- arrays, intrinsics


case(
    "shapes",
    lambda rng: {
        "x": np.zeros((3, 4, 5), f32),
        "y": np.zeros((6, 7), i64),
        "out": np.full(8, -1, i64),
    },
    names("x", "y", "out"),
    lambda s: {"out": np.array([3, 3, 4, 5, 5, 6007, 8, -1])},
    config=(1, 1),
)


def _transpose_oracle(s):
    x = s["x"]
    i, j = np.indices(x.shape)
    return {"out": (x + i - j).T}


case(
    "transpose2d",
    lambda rng: {"x": rng.standard_normal((13, 7)), "out": np.zeros((7, 13))},
    names("x", "out"),
    _transpose_oracle,
    config=((2, 1), (8, 8)),
)


def _volume_oracle(s):
    x = s["x"]
    i, j, k = np.indices(x.shape)
    return {"out": x * (i + 10 * j + 100 * k)}


case(
    "volume",
    lambda rng: {"x": rng.standard_normal((5, 6, 7)), "out": np.zeros((5, 6, 7))},
    names("x", "out"),
    _volume_oracle,
    config=((2, 2, 2), (4, 4, 4)),
)


def _strided2d_inputs(rng):
    return {"xb": rng.standard_normal((20, 30)).astype(f32), "ob": np.zeros((12, 40), f32)}


def _strided2d_oracle(s):
    x = s["xb"][::2, 1::3]
    ob = s["ob"].copy()
    j = np.arange(x.shape[1])[None, :]
    ob[1:11, ::-4] = x * f32(2) + j
    return {"ob": ob}


case(
    "strided_2d",
    _strided2d_inputs,
    lambda s: (s["xb"][::2, 1::3], s["ob"][1:11, ::-4]),
    _strided2d_oracle,
    config=((2, 2), (8, 8)),
    variant="views",
)


def _strided2d_t_oracle(s):
    x = s["xb"].T
    ob = s["ob"].copy()
    j = np.arange(x.shape[1])[None, :]
    ob[:, :] = x * f32(2) + j
    return {"ob": ob}


case(
    "strided_2d",
    lambda rng: {"xb": rng.standard_normal((9, 11)).astype(f32), "ob": np.zeros((11, 9), f32)},
    lambda s: (s["xb"].T, s["ob"]),
    _strided2d_t_oracle,
    config=((2, 2), (8, 8)),
    variant="transposed_and_contiguous",
)


def _strided1d_oracle(s):
    x = s["xb"][::-3]
    return {"out": x - x[::-1]}


case(
    "strided_1d",
    lambda rng: {"xb": rng.standard_normal(301), "out": np.zeros(101)},
    lambda s: (s["xb"][::-3], s["out"]),
    _strided1d_oracle,
)


case(
    "strided_3d",
    lambda rng: {
        "xb": rng.integers(-1000, 1000, (6, 5, 8)).astype(i32),
        "out": np.zeros((8, 3, 5), i32),
    },
    lambda s: (s["xb"].transpose(2, 0, 1)[:, ::2, :], s["out"]),
    lambda s: {"out": s["xb"].transpose(2, 0, 1)[:, ::2, :] + 1},
    config=((2, 1, 1), (4, 4, 8)),
)


_TID_GRID, _TID_BLOCK = (2, 3, 2), (4, 2, 3)


def _thread_ids_oracle(s):
    (gx, gy, gz), (bx_, by_, bz_) = _TID_GRID, _TID_BLOCK
    sx, sy, sz = gx * bx_, gy * by_, gz * bz_
    out = np.zeros((sx * sy * sz, 11), i64)
    for bz in range(gz):
        for by in range(gy):
            for bx in range(gx):
                for tz in range(bz_):
                    for ty in range(by_):
                        for tx in range(bx_):
                            x, y, z = bx * bx_ + tx, by * by_ + ty, bz * bz_ + tz
                            row = x + sx * (y + sy * z)
                            out[row] = [
                                tx,
                                ty,
                                tz,
                                bx,
                                by,
                                bz,
                                bx_ * 100 + by_ * 10 + bz_,
                                gx * 100 + gy * 10 + gz,
                                x,
                                x * 1000 + y,
                                sx,
                            ]
    return {"out": out}


case(
    "thread_ids",
    lambda rng: {"out": np.full((288, 11), -1, i64)},
    names("out"),
    _thread_ids_oracle,
    config=(_TID_GRID, _TID_BLOCK),
)

case(
    "grid_stride",
    lambda rng: {"x": rng.standard_normal(1000), "out": np.zeros(1000)},
    names("x", "out"),
    lambda s: {"out": s["x"] * 3 + 1},
    config=(3, 32),
    fma_rtol=F64_FMA,
)

case(
    "grid_stride_2d",
    lambda rng: {"x": rng.standard_normal((37, 29)).astype(f32), "out": np.zeros((37, 29), f32)},
    names("x", "out"),
    lambda s: {"out": s["x"] + f32(0.5)},
    config=((2, 2), (4, 4)),
)

_BIG_N = 5000  # > 4096 threads: the CPU launcher spreads blocks over its thread pool

case(
    "histogram",
    lambda rng: {"x": rng.integers(0, 1000, _BIG_N).astype(i64), "bins": np.zeros(13, i64)},
    names("x", "bins"),
    lambda s: {"bins": np.bincount(s["x"] % 13, minlength=13)},
    config=(20, 256),
)


def _tickets_check(s):
    # Threads run concurrently: any order, but every ticket exactly once.
    assert s["counter"][0] == _BIG_N
    np.testing.assert_array_equal(np.sort(s["order"]), np.arange(_BIG_N))


case(
    "tickets",
    lambda rng: {"order": np.full(_BIG_N, -1, i64), "counter": np.zeros(1, i64)},
    names("order", "counter"),
    check=_tickets_check,
    config=(20, 256),
)


def _atomics_inputs(rng):
    return {
        "x": rng.integers(-8, 8, 4500).astype(f32),
        "y": rng.integers(-1000, 1000, (4500, 2)).astype(i32),
        "acc": np.array([0.5], f32),
        "ext": np.array([[7, 0], [0, 100]], i32),
    }


def _atomics_oracle(s):
    x, y = s["x"], s["y"]
    return {
        "acc": np.array([0.5 + x.astype(f64).sum()], f32),
        "ext": np.array(
            [[7 + y[:, 0].sum(), max(0, y[:, 1].max())], [min(0, y[:, 1].min()), 100 - len(x)]], i32
        ),
    }


case(
    "atomics_mixed",
    _atomics_inputs,
    names("x", "y", "acc", "ext"),
    _atomics_oracle,
    config=(18, 256),
)


def _local_sort(width):
    case(
        "local_sort",
        lambda rng: {"x": rng.standard_normal((50, width)), "out": np.zeros((50, width))},
        names("x", "out"),
        lambda s: {"out": np.sort(s["x"], axis=1)},
        config=(2, 32),
        variant=f"w{width}",
    )


_local_sort(8)
_local_sort(5)

case(
    "local_2d",
    lambda rng: {"out": np.full((40, 3), -1, i64)},
    names("out"),
    lambda s: {"out": np.array([[12 * i + 18, 0, 34] for i in range(40)], i64)},
    config=(2, 32),
)

case(
    "overlays",
    lambda rng: {"x": rng.uniform(0.1, 10, N), "backend": np.full(N, -1, i64), "out": np.zeros(N)},
    names("x", "backend", "out"),
    # compiled for the CPU, the CPU overlay replaces the original: which_backend() == 1
    lambda s: {"backend": np.ones(N, i64), "out": 1.0 / np.sqrt(s["x"])},
    # simulate runs the Python source of the original: which_backend() == 0
    sim_oracle=lambda s: {"backend": np.zeros(N, i64), "out": 1.0 / np.sqrt(s["x"])},
)


def _bit_inputs(dtype):
    def inputs(rng):
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, N, dtype=dtype, endpoint=True)
        x[:8] = [0, 1, -1 if info.min else info.max, info.min, info.max, 2, 3, 1 << 20]
        x[8:20] = np.array([1 << k for k in range(12)], dtype) << dtype(info.bits - 12)
        out = {k: np.zeros(N, dtype) for k in ("pc", "lz")}
        out["br"] = np.zeros(N, np.dtype(f"u{info.bits // 8}"))
        out["fs"] = np.zeros(N, u32)
        return {"x": x, **out}

    return inputs


def _bit_oracle(dtype):
    bits = np.iinfo(dtype).bits

    def oracle(s):
        u = [int(v) & ((1 << bits) - 1) for v in s["x"]]
        return {
            "pc": np.array([wrap(bin(v).count("1"), bits, False) for v in u], dtype),
            "br": np.array([int(format(v, f"0{bits}b")[::-1], 2) for v in u], f"u{bits // 8}"),
            "lz": np.array([bits - v.bit_length() for v in u], dtype),
            "fs": np.array([(v & -v).bit_length() for v in u], u32),
        }

    return oracle


for _dt in (i32, u32, i64, u64):
    case(
        "bit_ops",
        _bit_inputs(_dt),
        names("x", "pc", "br", "lz", "fs"),
        _bit_oracle(_dt),
        variant=_dt.__name__,
    )

case(
    "bit_types",
    lambda rng: {"x": np.array([0, -1], i32), "out": np.zeros(8, i64)},
    names("x", "out"),
    lambda s: {"out": np.array([2**32 - 1, 2**32 - 1, -1, 8, 63, 32, 41, 31], i64)},
    config=(1, 1),
)


# ---------------------------------------------------------------------- added ops (newops.py)

# C's fma/fmaf (glibc: correctly rounded) as the oracle of ga.fma.
_LIBM = ctypes.CDLL(ctypes.util.find_library("m"))
_LIBM.fmaf.restype = ctypes.c_float
_LIBM.fmaf.argtypes = [ctypes.c_float] * 3
_LIBM.fma.restype = ctypes.c_double
_LIBM.fma.argtypes = [ctypes.c_double] * 3


def _fma_inputs(rng):
    x = rng.uniform(-4, 4, N).astype(f32)
    y = rng.uniform(-4, 4, N).astype(f32)
    z = -(x * y)  # the rounded product: an unfused x*y+z is exactly 0
    z[:10] = rng.uniform(-1e-3, 1e-3, 10).astype(f32)  # and ordinary sums
    # Exact: 1 + 2**-11 + 2**-24 + 2**-80, above the f32 halfway point; rounding through f64
    # first lands on the tie and rounds to even, down: only one rounding gets it right.
    x[10] = y[10] = 1 + 2.0**-12
    z[10] = 2.0**-80
    a = rng.uniform(-1e3, 1e3, N)
    return {"x": x, "y": y, "z": z, "o32": np.zeros(N, f32), "a": a, "o64": np.zeros(N, f64)}


def _fma_oracle(s):
    x, y, z, a = s["x"], s["y"], s["z"], s["a"]
    o32 = np.array([_LIBM.fmaf(*map(float, t)) for t in zip(x, y, z)], f32)
    o64 = np.array([_LIBM.fma(v, v, -(v * v)) for v in a], f64)
    # The oracle itself shows the fused shape: most products leave a non-zero tail.
    assert np.count_nonzero(o32[11:]) > N // 2 and np.count_nonzero(o64) > N // 2
    return {"o32": o32, "o64": o64}


case("fma_ops", _fma_inputs, names("x", "y", "z", "o32", "a", "o64"), _fma_oracle)

MORE_MATH = [
    ("acosh", 1.5),
    ("asinh", -0.5),
    ("atanh", -0.5),
    ("exp2", "*3"),
    ("expm1", -0.5),
    ("log1p", 0.0),
    ("gamma", 0.25),
    ("lgamma", 2.5),
    ("cbrt", -0.5),
]


def _more_math(dtype, rtol):
    def make(rng):
        x = rng.uniform(0.05, 0.95, N).astype(dtype)
        x[:3] = [0.5, 0.25, 0.75]
        return {"x": x, "out": np.zeros((len(MORE_MATH), N), dtype)}

    def ref(name, shift, v):
        arg = dtype(v) * dtype(3.0) if shift == "*3" else dtype(v) + dtype(shift)
        fn = np.cbrt if name == "cbrt" else getattr(math, name)
        return dtype(fn(float(arg)))

    def oracle(s):
        return {"out": np.array([[ref(n, d, v) for v in s["x"]] for n, d in MORE_MATH], dtype)}

    case("more_math", make, names("x", "out"), oracle, rtol=rtol, variant=dtype.__name__)


_more_math(f32, 1e-6)
_more_math(f64, 1e-14)


def _exact_math_inputs(rng):
    x = rng.uniform(-10, 10, N).astype(f32)
    y = rng.uniform(-10, 10, N)
    y[y == 0] = 1.0
    return {
        "x": x,
        "y": y,
        "n": rng.integers(-1000, 1000, N).astype(i32),
        "o32": np.zeros((3, N), f32),
        "o64": np.zeros((4, N), f64),
    }


def _exact_math_oracle(s):
    x, y, n = s["x"], s["y"], s["n"]
    nxt = np.roll(y, -1)
    return {
        "o32": np.array(
            [
                [f32(math.degrees(float(v))) for v in x],
                [f32(math.radians(float(v))) for v in x],
                [f32(math.remainder(float(v), 0.75)) for v in x],
            ]
        ),
        "o64": np.array(
            [
                [math.degrees(v) for v in y],
                [math.radians(v) for v in y],
                [math.remainder(v, w) for v, w in zip(y, nxt)],
                [math.degrees(int(v)) for v in n],
            ]
        ),
    }


case("exact_math", _exact_math_inputs, names("x", "y", "n", "o32", "o64"), _exact_math_oracle)


def _selp_inputs(rng):
    n = rng.integers(-5, 5, N).astype(i32)
    return {
        "x": rng.uniform(-3, 3, N),
        "n": n,
        "out": np.zeros((2, N), f64),
        "k": np.zeros(N, i64),
    }


def _selp_oracle(s):
    x, n = s["x"], s["n"]
    return {
        "out": np.array([np.abs(x), np.where(n != 0, n.astype(f64), 0.5)]),
        "k": np.where(n % 3 == 0, n.astype(i64), -1),
    }


case("selp_ops", _selp_inputs, names("x", "n", "out", "k"), _selp_oracle)

_ATOMIC_N = 1000


def _atomics_more_inputs(rng):
    x = rng.uniform(-100, 100, _ATOMIC_N).astype(f32)
    x[::7] = np.nan
    return {
        "x": x,
        "bits": np.array([0, -1, 12345], i64),
        "cnt": np.zeros(1, u32),
        "dec": np.array([3], u64),
        "lo": np.array([np.nan], f32),
        "hi": np.array([-np.inf], f64),
        "olds": np.zeros(_ATOMIC_N, u32),
    }


def _atomics_more_check(s):
    n = _ATOMIC_N
    i = np.arange(n)
    want_or = functools.reduce(operator.or_, [1 << (k % 64) for k in range(n)])
    want_and = functools.reduce(operator.and_, [~(1 << (k % 61)) for k in range(n)], -1)
    want_xor = functools.reduce(
        operator.xor, [wrap(k * 2654435761, 64, True) for k in range(n)], 12345
    )
    assert s["bits"].tolist() == [wrap(want_or, 64, True), want_and, want_xor]
    # inc wraps at 9 (0..9, then 0): the olds are ten each of 0..9, in any order.
    assert s["cnt"][0] == n % 10
    np.testing.assert_array_equal(np.sort(s["olds"]), np.sort(i % 10).astype(u32))
    # dec from 3 with limit 5: 3, 2, 1, 0, 5, 4, 3, ... (period 6).
    assert s["dec"][0] == (3 - n) % 6
    x = s["x"]
    assert s["lo"][0] == np.nanmin(x) and s["hi"][0] == np.float64(np.nanmax(x))


case(
    "atomics_more",
    _atomics_more_inputs,
    names("x", "bits", "cnt", "dec", "lo", "hi", "olds"),
    check=_atomics_more_check,
    config=(4, 256),
)


# ---------------------------------------------------------------------- range guards

# What out[i] becomes for thread i, given lo, hi, the old out[i] and the launch's block size;
# None: not written. Plain Python integers (tests/test_properties.py uses these too).
GUARD_ORACLES = {
    "guard_lt": lambda i, lo, hi, old, b: i + 1 if i < hi else None,
    "guard_range": lambda i, lo, hi, old, b: 2 * i if lo <= i < hi else None,
    "guard_offsets": lambda i, lo, hi, old, b: (
        3 * i if i + 3 < hi and i - 2 >= lo else (-1 if hi > i else -2)
    ),
    "guard_return": lambda i, lo, hi, old, b: i * i if lo < i < hi else None,
    "guard_scaled": lambda i, lo, hi, old, b: 7 if i * 2 < hi and lo < i - 5 else None,
    "guard_narrow": lambda i, lo, hi, old, b: (
        wrap(i, 32, True)
        if wrap(i, 32, True) < wrap(hi, 32, True) and i % 2**64 >= lo % 2**64
        else None
    ),
    "guard_data": lambda i, lo, hi, old, b: old + 1000 if i < hi and old % 3 != lo % 3 else None,
    "guard_threads": lambda i, lo, hi, old, b: i % b - b if i % b < hi and i // b >= lo else None,
}


def guard_expected(name: str, lo: int, hi: int, out: np.ndarray, threads: int, block: int):
    want = out.copy()
    for i in range(min(threads, len(out))):
        v = GUARD_ORACLES[name](i, lo, hi, int(out[i]), block)
        if v is not None:
            want[i] = v
    return want


def guard_2d_expected(lo: int, hi: int, out: np.ndarray, rows: int, cols: int):
    want = out.copy()
    for r in range(min(rows, out.shape[0])):
        for c in range(min(cols, out.shape[1])):
            if c < hi and r >= lo:
                want[r, c] = r * 1000 + c
    return want


def _guard_case(name, lo, hi):
    def make(rng):
        return {"lo": lo, "hi": hi, "out": np.arange(133, dtype=i64) * 7}

    case(
        name,
        make,
        names("lo", "hi", "out"),
        lambda s: {"out": guard_expected(name, lo, hi, s["out"], 128, 32)},
        variant=f"{lo}_{hi}",
    )


for _name in GUARD_ORACLES:
    for _lo, _hi in [(5, 70), (-3, 200), (40, 10), (I64_MIN, I64_MAX)]:
        _guard_case(_name, _lo, _hi)


def _guard_2d_case(lo, hi):
    case(
        "guard_2d",
        lambda rng: {"lo": lo, "hi": hi, "out": np.full((13, 11), -5, i64)},
        names("lo", "hi", "out"),
        lambda s: {"out": guard_2d_expected(lo, hi, s["out"], 16, 16)},
        config=((2, 2), (8, 8)),
        variant=f"{lo}_{hi}",
    )


for _lo, _hi in [(2, 9), (0, 100), (I64_MIN, -1)]:
    _guard_2d_case(_lo, _hi)


# ---------------------------------------------------------------------- kernel options


def _scale_any(dtype):
    case(
        "scale_any",
        lambda rng: {
            "a": dtype(3),
            "x": rng.integers(-1000, 1000, N).astype(dtype),
            "out": np.zeros(N, dtype),
        },
        names("a", "x", "out"),
        lambda s: {"out": s["a"] * s["x"] + dtype(1)},
        variant=dtype.__name__,
    )


for _dt in (f32, f64, i32):
    _scale_any(_dt)


case(
    "fast_poly",
    lambda rng: {"x": rng.uniform(-2, 2, N).astype(f32), "out": np.zeros(N, f32)},
    names("x", "out"),
    # fastmath may contract and reassociate: close to the unfused f32 result, not equal
    lambda s: {"out": ((s["x"] * f32(0.5) + f32(1.25)) * s["x"] - f32(3)) * s["x"] + f32(0.125)},
    rtol=1e-5,
    atol=1e-5,
)


# fma=False: never contracted, so bitwise against numpy (which never fuses) on every level.
def _strict_axpy(dtype):
    case(
        "strict_axpy",
        lambda rng: {
            "a": dtype(1.0 / 3.0),
            "x": rng.standard_normal(N).astype(dtype),
            "y": rng.standard_normal(N).astype(dtype),
            "out": np.zeros(N, dtype),
        },
        names("a", "x", "y", "out"),
        lambda s: {"out": s["a"] * s["x"] + s["y"]},
        variant=dtype.__name__,
    )


for _dt in (f32, f64):
    _strict_axpy(_dt)


case(
    "strict_terms",
    lambda rng: {
        "x": rng.standard_normal(N) * 7,
        "y": rng.standard_normal(N),
        "out": np.zeros((3, N)),
    },
    names("x", "y", "out"),
    lambda s: {
        "out": np.stack(
            [
                s["x"] * s["y"] - (s["x"] + 0.0) * s["y"],
                s["x"] * s["x"] - 1.0,
                (s["x"] * 0.1 + s["y"]) * 3.0 - s["x"],
            ]
        )
    },
)


def _strict_dot_rows_oracle(s):
    out = np.zeros(s["a"].shape[0], f32)
    for k in range(s["a"].shape[1]):
        out += s["a"][:, k] * s["b"][:, k]  # the kernel's order: acc += a*b per k
    return {"out": out}


case(
    "strict_dot_rows",
    lambda rng: {
        "a": rng.standard_normal((N, 37)).astype(f32),
        "b": rng.standard_normal((N, 37)).astype(f32),
        "out": np.zeros(N, f32),
    },
    names("a", "b", "out"),
    _strict_dot_rows_oracle,
)


def _claim_check(s):
    n = len(s["seen"])
    assert s["wins"][0] == 1  # exactly one compare-and-swap succeeded
    assert 0 <= s["owner"][0] < n
    # each exchange returned the value the previous one stored: together with the final
    # value, every thread index once, and the initial -1
    values = np.sort(np.concatenate([s["seen"], s["last"]]))
    np.testing.assert_array_equal(values, np.arange(-1, n))


case(
    "claim",
    lambda rng: {
        "owner": np.array([-1], i64),
        "wins": np.zeros(1, i64),
        "last": np.array([-1], i64),
        "seen": np.full(_BIG_N, -7, i64),
    },
    names("owner", "wins", "last", "seen"),
    check=_claim_check,
    config=(20, 256),
)


# ---------------------------------------------------------------------- raise / assert


case(
    "checked_div",
    lambda rng: {
        "a": rng.integers(-100, 100, N).astype(i64),
        "b": nonzero(rng, -9, 9, N, i64),
        "out": np.zeros(N, i64),
    },
    names("a", "b", "out"),
    lambda s: {"out": np.floor_divide(s["a"], s["b"])},
)
case(
    "checked_div",
    lambda rng: {
        "a": np.arange(N, dtype=i64),
        "b": np.arange(N, dtype=i64) - 50,
        "out": np.zeros(N, i64),
    },
    names("a", "b", "out"),
    raises=ZeroDivisionError,
    variant="raises",
)
case(
    "raise_at",
    lambda rng: {"t": -1, "out": np.zeros(N, i64)},
    names("t", "out"),
    lambda s: {"out": np.arange(N, dtype=i64) * 2},
)
case(
    "raise_at",
    lambda rng: {"t": 77, "out": np.zeros(N, i64)},
    names("t", "out"),
    raises=ValueError,
    variant="raises",
)
case(
    "implicit_div",
    lambda rng: {
        "a": rng.integers(-100, 100, N).astype(i64),
        "b": nonzero(rng, -9, 9, N, i64),
        "out": np.zeros((2, N), i64),
    },
    names("a", "b", "out"),
    lambda s: {"out": np.stack([np.floor_divide(s["a"], s["b"]), np.mod(s["a"], s["b"])])},
)
case(
    "implicit_div",
    lambda rng: {
        "a": np.ones(N, i64),
        "b": np.arange(N, dtype=i64) % 7,
        "out": np.zeros((2, N), i64),
    },
    names("a", "b", "out"),
    raises=ZeroDivisionError,
    variant="raises",
    sim_xfail="simulate divides numpy scalars: 1 // 0 is 0 with a warning, not Python's "
    "ZeroDivisionError",
)
case(
    "assert_positive",
    lambda rng: {"x": rng.uniform(0.1, 5, N), "out": np.zeros(N)},
    names("x", "out"),
    lambda s: {"out": s["x"] * 2},
)
case(
    "assert_positive",
    lambda rng: {"x": np.linspace(5, -5, N), "out": np.zeros(N)},
    names("x", "out"),
    raises=AssertionError,
    variant="raises",
)
case(
    "deep_raise",
    lambda rng: {"x": rng.integers(0, 100, N).astype(i64), "out": np.zeros(N, i64)},
    names("x", "out"),
    lambda s: {"out": s["x"] * 10 + 1},
)
case(
    "deep_raise",
    lambda rng: {"x": np.arange(N, dtype=i64) - 90, "out": np.zeros(N, i64)},
    names("x", "out"),
    raises=OverflowError,
    variant="raises",
)


# ---------------------------------------------------------------------- host functions


def host_case(fn, inputs, args, ret_type, **kw):
    case(fn, inputs, args, ret_type=ret_type, config=None, **kw)


host_case("h_sum", lambda rng: {"x": rng.standard_normal(1001)}, names("x"), f64)
# Sums of products contract once per term: n terms, n half-ulps of a product at most.
host_case(
    "h_dot",
    lambda rng: {"x": rng.standard_normal(333), "y": rng.standard_normal(333)},
    names("x", "y"),
    f64,
    fma_rtol=333 * F64_FMA,
)
host_case("h_norm", lambda rng: {"x": rng.standard_normal(77)}, names("x"), f64)
host_case(
    "h_stats",
    lambda rng: {"x": rng.standard_normal(500) * 3 + 1},
    names("x"),
    (f64, f64),
    fma_rtol=500 * F64_FMA,
)
host_case("h_argmax", lambda rng: {"x": rng.standard_normal(999).astype(f32)}, names("x"), i64)
host_case(
    "h_count_between",
    lambda rng: {"x": rng.integers(-50, 50, 400).astype(i32), "lo": -10, "hi": 20},
    names("x", "lo", "hi"),
    i64,
)
host_case(
    "h_is_sorted",
    lambda rng: {"x": np.sort(rng.standard_normal(50))},
    names("x"),
    np.bool_,
    variant="sorted",
)
host_case(
    "h_is_sorted",
    lambda rng: {"x": rng.standard_normal(50)},
    names("x"),
    np.bool_,
    variant="unsorted",
)
host_case(
    "h_frobenius",
    lambda rng: {"x": rng.standard_normal((17, 9))},
    names("x"),
    f32,
    fma_rtol=F32_FMA,  # 153 f64 terms, then rounded to f32
)
host_case(
    "h_range_info",
    lambda rng: {"x": rng.integers(-(2**40), 2**40, 300).astype(i64)},
    names("x"),
    (i64, i64, i64),
)
host_case("h_fill", lambda rng: {"out": np.zeros((6, 7)), "v": 2.5}, names("out", "v"), type(None))
host_case("h_divmod", lambda rng: {"a": -17, "b": 5}, names("a", "b"), (i64, i64))
host_case(
    "h_divmod", lambda rng: {"a": 2**62 + 3, "b": -7}, names("a", "b"), (i64, i64), variant="big"
)
host_case("h_u8_sum", lambda rng: {"x": rng.integers(0, 256, 1000).astype(u8)}, names("x"), u8)
host_case(
    "h_scalar_mix",
    lambda rng: {"a": f32(1.25), "b": 3, "c": True},
    names("a", "b", "c"),
    f64,
    variant="true",
)
host_case(
    "h_scalar_mix",
    lambda rng: {"a": f32(1.25), "b": 3, "c": False},
    names("a", "b", "c"),
    f64,
    variant="false",
)
host_case(
    "h_nested",
    lambda rng: {"a": -7, "x": f32(1.25)},
    names("a", "x"),
    (i64, (f32, np.bool_), (np.bool_, f64)),
)
host_case(
    "h_nested",
    lambda rng: {"a": 9, "x": f32(-0.5)},
    names("a", "x"),
    (i64, (f32, np.bool_), (np.bool_, f64)),
    variant="positive",
)
host_case("h_checked_sqrt", lambda rng: {"x": 6.25}, names("x"), f64)
host_case(
    "h_checked_sqrt", lambda rng: {"x": -1.0}, names("x"), f64, raises=ValueError, variant="raises"
)
host_case(  # @host(fma=False): bitwise, as CPython adds
    "h_strict_dot",
    lambda rng: {"x": rng.standard_normal(333), "y": rng.standard_normal(333)},
    names("x", "y"),
    f64,
)


# ---------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def conformance(built):
    return built("conformance")


@pytest.fixture(scope="module", params=backend_params())
def backend(request, built):
    """Each backend of ``backends.BACKENDS`` in turn: simulate, every default CPU level this
    CPU runs, the GPU where there is one."""
    b = open_backend(request.param, built)
    yield b
    b.close()


@pytest.fixture(scope="module", params=LEVELS)
def compiled(request, conformance):
    """The conformance bundle with one CPU variant pinned (``GPUAOT_CPU``): every case runs
    on every variant of the default build that this CPU can run."""
    undo = pin_level(conformance, request.param)
    yield conformance
    undo()


def _function(pkg, c: Case):
    return getattr(pkg, c.fn)


def fma_atol(products, result) -> np.ndarray:
    """How far a contracted result may lie from the uncontracted one, per element: each fused
    product skips its rounding (at most an ulp of the product), the result's own rounding
    may then differ by an ulp of the result. ``products``: the magnitudes that may fuse."""
    with quiet():
        bound = np.spacing(np.abs(np.asarray(result)))
        for p in products:
            bound = bound + np.spacing(np.abs(np.asarray(p)))
    return bound


def assert_fma_close(actual, expected, atol, err_msg: str = "") -> None:
    """``actual`` within ``atol`` (per element) of ``expected``; equal infinities and NaNs
    pass where they meet (there is no distance between them to measure)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    with quiet():
        ok = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
        ok |= np.abs(actual.astype(f64) - expected) <= atol
    bad = np.flatnonzero(~ok)
    assert not bad.size, (
        f"{err_msg}: {bad.size} elements beyond the FMA bound, first at {bad[0]}: "
        f"{actual.flat[bad[0]]!r} vs {expected.flat[bad[0]]!r} (atol {np.ravel(atol)[0]!r})"
    )


KERNEL_CASES = [c for c in CASES if c.config is not None]
HOST_CASES = [c for c in CASES if c.config is None]


@pytest.mark.parametrize("c", KERNEL_CASES, ids=lambda c: c.id)
def test_kernel(backend, c: Case, request):
    """Every kernel case on every backend (``backends.check_kernel``), against its oracle."""
    if backend.kind == "simulate" and c.sim_xfail:  # a known simulate limitation: must fail
        request.applymarker(pytest.mark.xfail(strict=True, reason=c.sim_xfail))
    check_kernel(backend, c)


@pytest.mark.parametrize(
    "c",
    [c for c in KERNEL_CASES if not c.raises],
    ids=lambda c: c.id,
)
def test_kernel_compiled_debug(built, c: Case):
    """The same kernels built with --debug: bounds checks and asserts on, results unchanged.

    A bounds check that fired here would be a false positive (or an operand evaluated that
    short-circuiting should have skipped, as ``k >= 0 and buf[k] > v`` in local_sort)."""
    debug = built("conformance", debug=True)
    assert debug.manifest["options"]["debug"] is True
    check_kernel(Backend("cpu-debug", debug, fused=None), c)  # the level this CPU picks


def python_host(fn, _memo=None):
    """A @host function as plain CPython: calls to other host functions stay in Python."""
    memo = {} if _memo is None else _memo
    if id(fn) in memo:
        return memo[id(fn)]
    py = fn.py_func
    g = dict(py.__globals__)
    memo[id(fn)] = plain = types.FunctionType(
        py.__code__, g, py.__name__, py.__defaults__, py.__closure__
    )
    for k, v in py.__globals__.items():
        if isinstance(v, Host):
            g[k] = python_host(v, memo)
    return plain


def _as_declared(fn, args):
    """Scalars converted to the annotated parameter types, as the compiled call does."""
    out = []
    for a, (name, ann) in zip(args, fn.py_func.__annotations__.items()):
        del name
        out.append(ann(a) if callable(ann) and not isinstance(a, np.ndarray) else a)
    return out


def _check_return(got, want, t, rtol: float | None = None) -> None:
    """Same value (to ``rtol`` where given: contraction), and the numpy scalar type the
    signature promises; tuples nest."""
    if isinstance(t, tuple):
        assert isinstance(got, tuple) and len(got) == len(t), (got, t)
        for g, w, ti in zip(got, want, t):
            _check_return(g, w, ti, rtol)
        return
    assert type(got) is t, (got, t)
    if t is not type(None):
        if rtol is not None and np.dtype(t).kind == "f":
            assert math.isclose(got, t(want), rel_tol=rtol), (got, want, rtol)
        else:
            assert got == t(want), (got, want)


@pytest.mark.parametrize("c", HOST_CASES, ids=lambda c: c.id)
def test_host(compiled, c: Case):
    fn = _function(compiled.module, c)
    state = c.inputs(np.random.default_rng(sum(map(ord, c.id))))
    py_state = copy.deepcopy(state)
    if c.raises is not None:
        with pytest.raises(c.raises):
            fn(*c.args(state))
        with pytest.raises(c.raises):
            python_host(fn)(*_as_declared(fn, c.args(py_state)))
        return
    got = fn(*c.args(state))
    with quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = python_host(fn)(*_as_declared(fn, c.args(py_state)))
    if fn.py_func.__name__ == "h_scalar_mix":
        # SPEC: f32 ⊕ i64 computes in f32; CPython with numpy scalars would use f64.
        a, b, cond = c.args(py_state)
        want = f64(f32(a) * f32(b)) if cond else f64(f32(a) - f32(b))
    _check_return(got, want, c.ret_type, c.fma_rtol if fused_now(compiled) else None)
    for key in state:
        np.testing.assert_array_equal(state[key], py_state[key], err_msg=key, strict=True)
    if fn.py_func.__name__ == "h_fill":
        i, j = np.indices((6, 7))
        np.testing.assert_array_equal(state["out"], 2.5 * i + j)


def _lang_module_functions() -> set[str]:
    names = set()
    for path in (Path(__file__).resolve().parents[1] / "fixtures/conformance").glob("lang_*.py"):
        tree = ast.parse(path.read_text())
        names |= {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.decorator_list}
    return names


def test_every_function_has_a_case(conformance):
    m = conformance.manifest
    kernels = {k["name"] for k in m["kernels"]}
    hosts = {h["name"] for h in m["host_functions"]}
    assert len(kernels) + len(hosts) >= 40
    # fixtures/conformance/lang_*.py hold the cases of one language feature each, run by
    # their own test files (tests/test_lang_*.py) against the same bundle.
    own = _lang_module_functions()
    assert own and {c.fn for c in KERNEL_CASES} == kernels - own
    assert {c.fn for c in HOST_CASES} == hosts - own
    # Every kernel runs on the CPU: the conformance package uses no GPU-only feature.
    assert all(s["cpu"] and not s["gpu_only"] for k in m["kernels"] for s in k["specializations"])
