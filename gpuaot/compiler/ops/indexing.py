"""Thread indices and sizes: ``thread_idx.x`` and friends, ``grid(n)``, ``grid_size(n)``.

    ga.thread_idx.x  -> intr.thread_idx.x: i64; %tid.x on the GPU, a hidden parameter on the CPU
    ga.grid(2)       -> intr.grid: (i64, i64), block_idx * block_dim + thread_idx per axis

They mean the same on both targets, through each emitter's ``thread_index``; they sit in each
target's overlay because what they read differs (NVVM special registers, loop counters).
"""

from __future__ import annotations

from llvmlite import ir

from ...lang.types import i64, tuple_of
from ..frontend.rules import Reject
from ..lower.emitter import I64
from .registry import Op, Typed, declare

DIM3 = ("thread_idx", "block_idx", "block_dim", "grid_dim")


def _type_index(tc, node, name):
    return i64


def _index(which: str, axis: str):
    def lower(fl, node, call, rt):
        return fl.em.thread_index(fl.b, fl.hidden, which, axis)

    return lower


for _which in DIM3:
    for _axis in "xyz":
        _lower = _index(_which, _axis)
        declare(
            Op(
                f"intr.{_which}.{_axis}",
                "attribute",
                (f"{_which}.{_axis}",),
                _type_index,
                {"cpu": _lower, "gpu": _lower},
                f"intrinsics.{_which}",
            )
        )


def _type_grid(tc, node, name):
    n = tc.static_int(node.args[0]) if len(node.args) == 1 else None
    if n not in (1, 2, 3):
        raise Reject(f"{name}() takes a constant 1, 2 or 3")
    return Typed(i64 if n == 1 else tuple_of([i64] * n), n)


def _grid(absolute: bool):
    def lower(fl, node, call, rt):
        b, em, n = fl.b, fl.em, call.data
        parts = []
        for axis in "xyz"[:n]:
            bd = em.thread_index(b, fl.hidden, "block_dim", axis)
            if absolute:
                bi = em.thread_index(b, fl.hidden, "block_idx", axis)
                ti = em.thread_index(b, fl.hidden, "thread_idx", axis)
                parts.append(b.add(b.mul(bi, bd), ti))
            else:
                gd = em.thread_index(b, fl.hidden, "grid_dim", axis)
                parts.append(b.mul(gd, bd))
        if n == 1:
            return parts[0]
        v = ir.Constant(ir.LiteralStructType([I64] * n), ir.Undefined)
        for k, p in enumerate(parts):
            v = b.insert_value(v, p, k)
        return v

    return lower


for _name, _absolute in (("grid", True), ("grid_size", False)):
    _lower = _grid(_absolute)
    declare(
        Op(
            f"intr.{_name}",
            "gpuaot",
            (_name,),
            _type_grid,
            {"cpu": _lower, "gpu": _lower},
            f"intrinsics.{_name}",
        )
    )
