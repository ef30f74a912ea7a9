"""Block barriers, lanes, warp shuffles, votes and matches: GPU-only, each through an NVVM
primitive (the ``*_sync`` family at the end, numba-cuda's warp API).

    ga.syncthreads()        -> intr.syncthreads: llvm.nvvm.barrier.cta.sync.aligned.all(0)
    ga.lane_id()            -> intr.lane_id: i64, %laneid
    ga.shfl_down(v, delta)  -> intr.shfl_down: v's type (32/64-bit), llvm.nvvm.shfl.sync.down

None of these has a CPU meaning: a kernel that uses one runs on the GPU only, and a host
function that does is a compile error naming the call chain.
"""

from __future__ import annotations

import ast

from llvmlite import ir

from ...lang.types import Scalar, boolean, i32, i64, materialize, none, tuple_of, u32
from ..frontend import rules
from ..frontend.rules import Reject
from ..lower.emitter import I32, I64
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


# ------------------------------------------------------------------ the *_sync warp family
#
# numba-cuda's warp API, each over the lanes of a member mask (any integer; its low 32 bits):
#
#     ga.syncwarp(mask=0xFFFFFFFF)              -> none, bar.warp.sync
#     ga.shfl_sync(mask, v, src_lane)           -> v's type, shfl.sync.idx (also _up/_down/_xor)
#     ga.ballot_sync(mask, pred)                -> u32, vote.sync.ballot
#     ga.all_sync/any_sync/eq_sync(mask, pred)  -> bool, vote.sync.all/any/uni
#     ga.match_any_sync(mask, v)                -> u32, match.any.sync (sm_70+)
#     ga.match_all_sync(mask, v)                -> (u32, bool), match.all.sync (sm_70+)
#     ga.activemask(), ga.lanemask_lt()         -> u32, activemask.b32 / %lanemask_lt
#
# All are GPU-only: a CPU block runs its threads one after another, not in lock-step, so lanes
# have nothing to exchange (the same error as syncthreads).


def _int_arg(tc, node, name: str, what: str):
    t = tc.expr(node)
    if not isinstance(t, Scalar) or not t.is_int:
        raise Reject(f"the {what} of {name}() must be an integer")
    return t


def _type_syncwarp(tc, node, name):
    if len(node.args) > 1:
        raise Reject(f"{name}() takes an optional member mask")
    if node.args:
        _int_arg(tc, node.args[0], name, "member mask")
    return none


def _type_shfl_sync(tc, node, name):
    if len(node.args) != 3:
        raise Reject(f"{name}() takes (mask, value, lane)")
    _int_arg(tc, node.args[0], name, "member mask")
    t = rules.shfl_type(tc.expr(node.args[1]))
    _int_arg(tc, node.args[2], name, "lane argument")
    return t


def _type_mask_and(second: str, check, result):
    """``name(mask, <second>)``: ``check`` is the second argument's rule (it raises)."""

    def typing(tc, node, name):
        if len(node.args) != 2:
            raise Reject(f"{name}() takes (mask, {second})")
        _int_arg(tc, node.args[0], name, "member mask")
        check(tc.expr(node.args[1]))
        return result

    return typing


def _type_vote_sync(result):
    return _type_mask_and("predicate", rules.truth, result)


def _type_match(result):
    return _type_mask_and("value", rules.shfl_type, result)


def _mask(fl, node):
    """The member mask argument as the i32 the instructions take (its low 32 bits)."""
    return fl.em.cast(fl.b, fl.expr(node), materialize(fl.type(node)), i32)


def _lower_syncwarp(fl, node, call, rt):
    mask = _mask(fl, node.args[0]) if node.args else ir.Constant(I32, -1)
    fl.em.warp_sync(fl.b, mask)
    return None


def _shfl_sync(mode: str):
    def lower(fl, node, call, rt):
        b, em = fl.b, fl.em
        value = em.cast(b, fl.expr(node.args[1]), materialize(fl.type(node.args[1])), rt)
        lane = em.cast(b, fl.expr(node.args[2]), materialize(fl.type(node.args[2])), i32)
        return em.shuffle(b, mode, value, lane, rt, _mask(fl, node.args[0]))

    return lower


def _vote_sync(kind: str):
    def lower(fl, node, call, rt):
        a = node.args[1]
        pred = fl.em.truth(fl.b, fl.expr(a), materialize(fl.type(a)))
        return fl.em.vote(fl.b, kind, _mask(fl, node.args[0]), pred)

    return lower


def _match(kind: str):
    def lower(fl, node, call, rt):
        a = node.args[1]
        t = rules.shfl_type(materialize(fl.type(a)))
        value = fl.em.cast(fl.b, fl.expr(a), materialize(fl.type(a)), t)
        return fl.em.match(fl.b, kind, _mask(fl, node.args[0]), value)

    return lower


def _lower_activemask(fl, node, call, rt):
    return fl.em.active_mask(fl.b)


def _lower_lanemask_lt(fl, node, call, rt):
    return fl.em.lane_mask(fl.b, "lt")


gpu_op("syncwarp", _type_syncwarp, _lower_syncwarp)
for _name, _mode in (
    ("shfl", "idx"),
    ("shfl_up", "up"),
    ("shfl_down", "down"),
    ("shfl_xor", "bfly"),
):
    gpu_op(f"{_name}_sync", _type_shfl_sync, _shfl_sync(_mode))
gpu_op("ballot_sync", _type_vote_sync(u32), _vote_sync("ballot"))
gpu_op("all_sync", _type_vote_sync(boolean), _vote_sync("all"))
gpu_op("any_sync", _type_vote_sync(boolean), _vote_sync("any"))
gpu_op("eq_sync", _type_vote_sync(boolean), _vote_sync("uni"))
gpu_op("match_any_sync", _type_match(u32), _match("any"))
gpu_op("match_all_sync", _type_match(tuple_of([u32, boolean])), _match("all"))
gpu_op("activemask", _no_args(u32), _lower_activemask)
gpu_op("lanemask_lt", _no_args(u32), _lower_lanemask_lt)


# ------------------------------------------------------------------ the grid barrier
#
#     ga.this_grid().sync()   (numba-cuda: cuda.cg.this_grid().sync()), also ga.grid_sync()
#
# Every thread of the grid waits here (cooperative groups' grid.sync()). GPU-only; the kernel is
# launched cooperatively (cuLaunchCooperativeKernel), which needs the whole grid resident.


def _lower_grid_sync(fl, node, call, rt):
    fl.em.grid_barrier(fl.b)
    return None


def _type_this_grid(tc, node, name):
    raise Reject(
        "this_grid() is only usable as this_grid().sync(), the grid barrier",
        "write ga.this_grid().sync() (or ga.grid_sync())",
    )


gpu_op("grid_sync", _no_args(none), _lower_grid_sync)
GRID_SYNC = "intr.grid_sync"
# ga.this_grid() alone is refused by its typing; ga.this_grid().sync() types as grid_sync (the
# typer asks is_this_grid_sync first), so this lowering is grid_sync's, for the table only.
gpu_op("this_grid", _type_this_grid, _lower_grid_sync)


def is_this_grid_sync(tc, node) -> bool:
    """``node`` is ``ga.this_grid().sync()`` (``this_grid`` as gpuaot names it)."""
    f = node.func
    if not (isinstance(f, ast.Attribute) and f.attr == "sync" and isinstance(f.value, ast.Call)):
        return False
    sym = tc.pkg.resolve_expr(tc.mod, f.value.func)
    if sym is None or sym.kind != "gpuaot" or sym.value != "this_grid":
        return False
    if f.value.args or f.value.keywords or node.args or node.keywords:
        raise Reject("this_grid().sync() takes no arguments")
    return True
