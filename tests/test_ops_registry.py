"""The ops registry (gpuaot/compiler/ops): every declared op against the method tables, the
simulate run time, and its typing rule on good and bad arguments.

Oracles: the method tables the driver reads (``methods.table_for``), the names ``gpuaot`` and
``gpuaot.lang.intrinsics`` really export (``getattr``), and the typer run on tiny packages
written here (its located errors, message by message).
"""

from __future__ import annotations

import builtins
import cmath
import math
import textwrap

import pytest

import gpuaot
from gpuaot.compiler import ops
from gpuaot.compiler.discover import discover
from gpuaot.compiler.frontend.typer import TargetUnavailable, TypingContext
from gpuaot.compiler.methods import BASE, CPU_OVERLAY, GPU_OVERLAY, MATH_FUNCS, table_for
from gpuaot.lang import intrinsics
from gpuaot.lang import types as lang_types
from gpuaot.lang.types import BY_NAME, f32, f64, i32, i64, none, u32, u64

OPS = ops.all_ops()


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.key)
def test_method_tables_hold_what_the_op_lowers(op):
    """An op is in the base table iff one lowering serves every target, else in exactly the
    overlays of the targets it lowers for; a target it has no lowering for finds nothing."""
    for target in ("cpu", "gpu", "sm_90"):
        found = table_for(target).lookup(op.key)
        short = "cpu" if target == "cpu" else "gpu"
        if ops.BASE in op.lower:
            assert found is not None and found.table == "base"
        elif short in op.lower:
            assert found is not None and found.table == short
        else:
            assert found is None
    for fn in op.lower.values():
        assert callable(fn) or (fn == ops.IN_PLACE and op.namespace is None)


def test_the_tables_are_the_declarations():
    keys = {op.key for op in OPS}
    assert BASE | CPU_OVERLAY | GPU_OVERLAY == keys
    assert not BASE & (CPU_OVERLAY | GPU_OVERLAY)
    assert set(MATH_FUNCS) == {op.names[0] for op in OPS if op.key.startswith("math.")}
    # What the CPU has no meaning for (a kernel using one runs on the GPU only).
    assert GPU_OVERLAY - CPU_OVERLAY == {
        "intr.syncthreads",
        "intr.syncthreads_count",
        "intr.syncthreads_and",
        "intr.syncthreads_or",
        "intr.shared_array",
        "intr.shfl_down",
        "intr.shfl_xor",
        "intr.lane_id",
        *(f"intr.{n}" for n in ("syncwarp", "activemask", "lanemask_lt", "ballot_sync")),
        "intr.grid_sync",
        "intr.this_grid",
        *(f"intr.{n}_sync" for n in ("shfl", "shfl_up", "shfl_down", "shfl_xor")),
        *(f"intr.{n}_sync" for n in ("all", "any", "eq", "match_any", "match_all")),
    }
    assert CPU_OVERLAY - GPU_OVERLAY == set()


def test_spellings_are_unique_and_found():
    for op in OPS:
        for name in op.names:
            assert ops.lookup(op.namespace, name) is op
    assert ops.lookup("gpuaot", "no_such_thing") is None
    assert ops.lookup("math", "fma") is None  # Python 3.11 has no math.fma: it is ga.fma
    spelled = {k: ops.get(k).spelling for k in ("intr.popc", "math.sqrt", "builtin.abs")}
    assert spelled == {"intr.popc": "ga.popc", "math.sqrt": "math.sqrt", "builtin.abs": "abs"}
    assert ops.get("intr.thread_idx.x").spelling == "thread_idx.x"
    assert ops.get("math.hypot").info == {"kind": "float", "arity": 2}


def _simulate_meaning(op, name: str):
    where, _, attr = op.simulate.format(name=name).partition(".")
    if where == "types":
        return lang_types.BY_NAME[attr]
    spaces = {"intrinsics": intrinsics, "math": math, "cmath": cmath, "builtins": builtins}
    return getattr(spaces[where], attr)


@pytest.mark.parametrize("op", [op for op in OPS if op.namespace], ids=lambda op: op.key)
def test_every_simulate_meaning_exists_and_is_exported(op):
    """What simulate runs for the op is a real object of gpuaot.lang (or Python's math and
    builtins), and what kernels spell ``ga.NAME`` is that same object on ``gpuaot``."""
    assert op.simulate is not None
    for name in op.names:
        meaning = _simulate_meaning(op, name)
        assert meaning is not None
        if op.namespace == "gpuaot" and name != "bool":  # ga.bool is not exported (ga.bool_)
            assert getattr(gpuaot, name) is meaning, name
        if op.namespace == "attribute":
            assert getattr(gpuaot, name.split(".")[0]) is meaning
        if op.namespace in ("math", "cmath"):
            assert callable(meaning)


def test_gpuaot_exports_no_intrinsic_the_compiler_does_not_know():
    known = {n for op in OPS if op.namespace == "gpuaot" for n in op.names}
    known |= {op.names[0].split(".")[0] for op in OPS if op.namespace == "attribute"}
    exported = {n for n in gpuaot.__all__ if callable(getattr(gpuaot, n, None))}
    exported = {n for n in exported if getattr(gpuaot, n).__module__ == "gpuaot.lang.intrinsics"}
    assert exported <= known, exported - known


# ---------------------------------------------------------------------- typing rules

HEADER = """\
import math
import gpuaot as ga
from gpuaot import Array, f32, f64, i32, i64, u32, u64
"""


def type_body(tmp_path, body: str, target: str = "cpu"):
    """Type kernel ``k`` of a one-module package; (its TypedFunction or None, its errors)."""
    pkg_dir = tmp_path / "pkg"
    pkg_dir.mkdir(exist_ok=True)
    (pkg_dir / "__init__.py").write_text("")
    (pkg_dir / "mod.py").write_text(HEADER + textwrap.dedent(body))
    pkg = discover(str(pkg_dir))
    return TypingContext(pkg, target).specialize(pkg.function("pkg.mod.k"))


def result_type(tmp_path, params: str, expr: str, target: str = "cpu"):
    """The type of ``expr`` assigned to ``r`` in a kernel with ``params``."""
    tf, errors = type_body(
        tmp_path, f"@ga.kernel\ndef k({params}):\n    r = {expr}\n    use(r)\n", target
    )
    assert tf is None  # 'use' is unknown: the body stops there, after r is typed
    assert [e.message for e in errors] == ["unknown function 'use'"]
    tf, errors = type_body(tmp_path, f"@ga.kernel\ndef k({params}):\n    r = {expr}\n", target)
    assert not errors, [e.message for e in errors]
    return tf.var_types["r"]


GOOD = [
    ("x: f32", "ga.popc(i32(x))", i32),
    ("x: i64", "ga.brev(x)", u64),
    ("x: u32", "ga.ffs(x)", u32),
    ("x: f32", "math.sqrt(x)", f32),
    ("x: i32", "math.sqrt(x)", f64),
    ("x: f32", "math.floor(x)", i64),
    ("x: f32", "math.isnan(x)", lang_types.boolean),
    ("x: f32, y: f64", "math.atan2(x, y)", f64),
    ("x: f32", "ga.fma(x, x, x)", f32),
    ("x: f32, y: f64", "ga.fma(x, y, 1)", f64),
    ("x: i32", "ga.fma(x, 2, 3)", f64),
    ("x: f32", "ga.cbrt(x)", f32),
    ("x: f32", "math.gamma(x)", f32),
    ("x: i64", "math.lgamma(x)", f64),
    ("x: f32", "math.degrees(x)", f32),
    ("x: f32, y: f32", "math.remainder(x, y)", f32),
    ("x: f32", "ga.selp(x > 0, x, 0)", f32),
    ("x: i32, y: i64", "ga.selp(x > 0, x, y)", i64),
    ("x: f32", "abs(x)", f32),
    ("x: f32, y: i64", "min(x, y, 2)", f32),
    ("x: f32", "ga.u8(x)", lang_types.u8),
    ("x: Array[u32]", "ga.atomic_inc(x, 0, 5)", u32),
    ("x: Array[i64, 2]", "ga.atomic_xor(x, (0, 1), 5)", i64),
    ("x: Array[f32]", "ga.atomic_nanmax(x, 0, 1.5)", f32),
    ("x: Array[f32]", "ga.atomic_add(x, 0, 1)", f32),
    ("", "ga.grid(2)", lang_types.tuple_of([i64, i64])),
    ("", "ga.thread_idx.y", i64),
]


@pytest.mark.parametrize("params,expr,want", GOOD, ids=[g[1] for g in GOOD])
def test_typing_rule_result_types(tmp_path, params, expr, want):
    assert result_type(tmp_path, params, expr) is want


BAD = [
    ("x: f32", "ga.popc(x)", "popc() takes a 32- or 64-bit integer, not f32"),
    ("x: i32", "ga.clz(x, x)", "clz() takes one integer"),
    ("x: f32", "math.sqrt(x, x)", "math.sqrt() takes 1 argument, got 2"),
    ("x: f32", "math.hypot(x)", "math.hypot() takes 2 arguments, got 1"),
    ("x: f32", "math.frexp(x)", "math.frexp is not supported in kernels"),
    ("x: f32", "ga.fma(x, x)", "fma() takes 3 arguments, got 2"),
    ("x: bool", "ga.fma(x, 1.0, 1.0)", "argument of fma() is a bool; arithmetic needs a number"),
    ("x: f32", "ga.selp(x, x)", "selp() takes (condition, a, b)"),
    ("x: Array[f32]", "ga.selp(x, 1, 2)", "a Array[f32, 1] has no truth value in kernels"),
    (
        "x: f32",
        "ga.selp(x > 0, x, (x, x))",
        "the two branches have different types: f32 and (f32, f32)",
    ),
    ("x: f32", "abs(x, x)", "abs() takes one number"),
    ("x: f32", "min(x)", "min() takes two or more numbers in kernels"),
    ("x: f32", "ga.f32(x, x)", "f32() takes one value"),
    ("x: f32", "int()", "int() takes one argument"),
    ("x: f32", "len(x)", "len() takes one array"),
    ("x: f32", "range(3)", "range() is only allowed as a for-loop's iterable"),
    ("x: Array[f32]", "ga.atomic_and(x, 0, 1)", "atomic_and() works on integer elements, not f32"),
    (
        "x: Array[i32]",
        "ga.atomic_inc(x, 0, 1)",
        "atomic_inc() works on u32 and u64 elements, not i32",
    ),
    (
        "x: Array[i64]",
        "ga.atomic_nanmin(x, 0, 1)",
        "atomic_nanmin() works on float elements, not i64",
    ),
    ("x: Array[i64]", "ga.atomic_add(x, 0)", "atomic_add() takes (array, index, value)"),
    ("x: Array[i64]", "ga.atomic_foo(x, 0, 1)", "atomic_foo() takes (array, index, value)"),
    (
        "x: Array[i64]",
        "ga.atomic_cas(x, 0, 1)",
        "atomic_cas() takes (array, index, expected, value)",
    ),
    ("x: Array[u8]", "ga.atomic_add(x, 0, 1)", "atomics work on 32- and 64-bit elements, not u8"),
    ("x: i64", "ga.atomic_add(x, 0, 1)", "the first argument of atomic_add() must be an array"),
    ("x: i64", "ga.threadfence(x)", "threadfence() takes no arguments"),
    ("x: i64", "ga.grid(x)", "grid() takes a constant 1, 2 or 3"),
    ("x: i64", "ga.thread_idx.w", "thread_idx has .x, .y and .z, not .w"),
    ("x: i64", "ga.shfl_down(x)", "shfl_down() takes (value, delta)"),
    (
        "x: i64",
        "ga.local_array(x, 4)",
        "the first argument of local_array() must be a gpuaot scalar type",
    ),
    ("x: i64", "ga.kernel(x)", "'kernel' is a decorator"),
    ("x: i64", "ga.nothing(x)", "'gpuaot.nothing' is not a kernel intrinsic"),
]


@pytest.mark.parametrize("params,expr,message", BAD, ids=[b[1] for b in BAD])
def test_typing_rule_rejections(tmp_path, params, expr, message):
    if "u8" in params:
        params = params.replace("u8", "ga.u8")
    tf, errors = type_body(tmp_path, f"@ga.kernel\ndef k({params}):\n    r = {expr}\n")
    assert tf is None
    assert [e.message for e in errors] == [message]
    line = errors[0].loc.line
    assert line == HEADER.count("\n") + 3  # located at the call's line, in the user's file


GPU_ONLY = [
    "ga.syncthreads()",
    "ga.syncthreads_count(x > 0)",
    "ga.syncthreads_or(x)",
    "ga.lane_id()",
]


@pytest.mark.parametrize("expr", GPU_ONLY)
def test_gpu_only_ops_are_target_errors_on_the_cpu(tmp_path, expr):
    body = f"@ga.kernel\ndef k(x: i64, out: Array[i64]):\n    out[0] = {expr}\n"
    if "syncthreads()" in expr:
        body = f"@ga.kernel\ndef k(x: i64, out: Array[i64]):\n    {expr}\n"
    tf, errors = type_body(tmp_path, body, "gpu")
    assert not errors, [e.message for e in errors]
    tf, errors = type_body(tmp_path, body, "cpu")
    name = expr[3 : expr.index("(")]
    assert [type(e) for e in errors] == [TargetUnavailable]
    assert errors[0].message == f"'{name}' has no CPU implementation"
    assert errors[0].hint == "launch this kernel on the GPU only"


def test_syncthreads_votes_are_i32_and_fences_are_statements(tmp_path):
    assert result_type(tmp_path, "x: f32", "ga.syncthreads_count(x > 0)", "gpu") is i32
    assert result_type(tmp_path, "x: f32", "ga.syncthreads_and(x)", "gpu") is i32
    for fence in ("threadfence", "threadfence_block", "threadfence_system"):
        tf, errors = type_body(tmp_path, f"@ga.kernel\ndef k():\n    ga.{fence}()\n")
        assert not errors
        (call,) = [v for v in tf.calls.values() if v is not None]
        assert call.key == f"intr.{fence}"
        assert tf.expr_types[next(iter(tf.calls))] is none


def test_cast_ops_name_every_scalar_type():
    cast = ops.get("cast")
    assert set(cast.names) == set(BY_NAME)
    assert all(ops.lookup("gpuaot", n) is cast for n in BY_NAME)
