"""Block barriers, lanes and warp shuffles: GPU-only, each through an NVVM primitive.

    ga.syncthreads()        -> intr.syncthreads: llvm.nvvm.barrier.cta.sync.aligned.all(0)
    ga.lane_id()            -> intr.lane_id: i64, %laneid
    ga.shfl_down(v, delta)  -> intr.shfl_down: v's type (32/64-bit), llvm.nvvm.shfl.sync.down

None of these has a CPU meaning: a kernel that uses one runs on the GPU only, and a host
function that does is a compile error naming the call chain.
"""

from __future__ import annotations

from ...lang.types import Scalar, i32, i64, materialize, none
from ..frontend import rules
from ..frontend.rules import Reject
from ..lower.emitter import I64
from .registry import Op, declare


def _no_args(result):
    def typing(tc, node, name):
        if node.args:
            raise Reject(f"{name}() takes no arguments")
        return result

    return typing


def _lower_syncthreads(fl, node, call, rt):
    fl.em.barrier(fl.b)
    return None


def _lower_lane_id(fl, node, call, rt):
    return fl.b.zext(fl.em.sreg(fl.b, "laneid"), I64)


def _type_shfl(tc, node, name):
    if len(node.args) != 2:
        raise Reject(f"{name}() takes (value, delta)")
    t = rules.shfl_type(tc.expr(node.args[0]))
    d = tc.expr(node.args[1])
    if not isinstance(d, Scalar) or not d.is_int:
        raise Reject(f"the lane offset of {name}() must be an integer")
    return t


def _shfl(mode: str):
    def lower(fl, node, call, rt):
        b, em = fl.b, fl.em
        args = [fl.expr(a) for a in node.args]
        types = [materialize(fl.type(a)) for a in node.args]
        value = em.cast(b, args[0], types[0], rt)
        delta = em.cast(b, args[1], types[1], i32)  # any int width: the lane is an i32
        return em.shuffle(b, mode, value, delta, rt)

    return lower


def gpu_op(name: str, typing, lower) -> None:
    """Declare ``ga.NAME`` with a GPU lowering only (key ``intr.NAME``)."""
    declare(Op(f"intr.{name}", "gpuaot", (name,), typing, {"gpu": lower}, f"intrinsics.{name}"))


gpu_op("syncthreads", _no_args(none), _lower_syncthreads)
gpu_op("lane_id", _no_args(i64), _lower_lane_id)
gpu_op("shfl_down", _type_shfl, _shfl("down"))
gpu_op("shfl_xor", _type_shfl, _shfl("bfly"))


def _type_vote(tc, node, name):
    if len(node.args) != 1:
        raise Reject(f"{name}() takes one condition")
    rules.truth(tc.expr(node.args[0]))
    return i32


def _vote(kind: str):
    def lower(fl, node, call, rt):
        a = node.args[0]
        pred = fl.em.truth(fl.b, fl.expr(a), materialize(fl.type(a)))
        return fl.em.barrier_reduce(fl.b, kind, pred)

    return lower


# A barrier that also counts the threads whose condition holds (i32, as numba-cuda types it).
gpu_op("syncthreads_count", _type_vote, _vote("popc"))
gpu_op("syncthreads_and", _type_vote, _vote("and"))
gpu_op("syncthreads_or", _type_vote, _vote("or"))


def _fence(scope: str):
    def gpu(fl, node, call, rt):
        fl.em.membar(fl.b, scope)
        return None

    return gpu


def _cpu_fence(fl, node, call, rt):
    fl.b.fence("seq_cst")  # the CPU's threads share one memory: one fence orders them all
    return None


# Memory fences for the device (membar.gl), the block (membar.cta), the system (membar.sys).
for _name, _scope in (
    ("threadfence", "gl"),
    ("threadfence_block", "cta"),
    ("threadfence_system", "sys"),
):
    declare(
        Op(
            f"intr.{_name}",
            "gpuaot",
            (_name,),
            _no_args(none),
            {"cpu": _cpu_fence, "gpu": _fence(_scope)},
            f"intrinsics.{_name}",
        )
    )
