"""The CPU target: typed kernels → an optimised native object → (with the others) a host .so.

    obj = compile_kernel_cpu(tf)         # bytes of an ELF relocatable object + its raise sites
    link_shared([obj1, obj2, rt], out)   # the system C compiler links the bundle

A kernel becomes one exported C function that runs a range of blocks::

    void gpuaot_cpu_<mod>__<name>(void **args, int64_t *dims, int64_t begin, int64_t end,
                                  int64_t *exc)

``args`` points at each flattened parameter (the GPU's kernelParams layout), ``dims`` is
(grid x, y, z, block x, y, z); the launcher splits [0, blocks) over threads. Inside, the thread
loops call the kernel body, inlined, so the x loop is what the vectoriser sees. A host function
becomes ``void gpuaot_host_<mod>__<name>(void **args, void *ret, int64_t *exc)``.

What the entry does so that the x loop vectorises well (each part explained where it is built):

* **x-range split** (:class:`XSplit`): the body's range guards (``if i < n``) are moved out of
  the x loop: per row, the threads they let through run in a loop that states them with
  ``llvm.assume``, so the vectoriser sees straight-line code, not masked loads and stores;
  the threads at the edges call the body out of line.
* **restrict copy + unroll-and-jam**: a body with loops of its own (a row sum, a dot product)
  cannot be vectorised along x, whose loop is not innermost. If the arrays do not overlap
  (checked once per launch), a ``noalias`` copy of the body runs, and ``optimize`` unrolls
  and jams its x loop: ``JAM_COUNT`` threads advance in lock step, each adding in its own
  order (no reassociation), and SLP packs them into vectors.

Python's integer semantics are kept: nothing here adds ``nsw``/``nuw`` or fast-math flags.

The exception record (8 x i64: status, site, thread xyz, block xyz) is written first-writer-wins
by the CPU runtime, ``gpuaot_rt_report_exception``. A version script exports only the entry
points and the embedded data (``gpuaot_cpu_*``, ``gpuaot_host_*``, ``gpuaot_manifest*``,
``gpuaot_fatbin*``); everything else stays local to the bundle.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

import llvmlite.binding as llvm
from llvmlite import ir

from ...bundle import cpus
from ...errors import BuildError
from ...lang.types import ArrayType, materialize, none
from ..frontend.typed import TypedFunction
from ..lower.emitter import F32, F64, I1, I64, PTR, VOID, Emitter
from ..lower.lowering import FunctionLowering, ModuleBuilder
from . import cpu_variant

HIDDEN = tuple(
    "exc tid.x tid.y tid.z bid.x bid.y bid.z bdim.x bdim.y bdim.z gdim.x gdim.y gdim.z".split()
)
# Where each intrinsic's x lives among the hidden parameters above.
_INDEX_BASE = {
    name: HIDDEN.index(f"{short}.x")
    for name, short in (
        ("thread_idx", "tid"),
        ("block_idx", "bid"),
        ("block_dim", "bdim"),
        ("grid_dim", "gdim"),
    )
}
REPORT = "gpuaot_rt_report_exception"

EXPORTS = (
    "{\n  global: gpuaot_cpu_*; gpuaot_host_*; gpuaot_manifest*; gpuaot_fatbin*; "
    f"{cpus.PROBE_SYMBOL};\n  local: *;\n}};\n"
)

# LLVM intrinsics the vectoriser understands; the rest are libm calls.
_LLVM_MATH = set("sqrt fabs floor ceil trunc copysign exp log log2 log10 sin cos pow".split())
_LIBM = set("tan asin acos atan atan2 sinh cosh tanh hypot erf erfc fmod".split())


class CPUEmitter(Emitter):
    target = "cpu"

    def hidden_param_types(self) -> list[ir.Type]:
        return [PTR] + [I64] * 12

    def thread_index(self, b, hidden, which: str, axis: str):
        return hidden[_INDEX_BASE[which] + "xyz".index(axis)]

    def math(self, b: ir.IRBuilder, name: str, args: list, t):
        if name in _LLVM_MATH:
            return self.intrinsic(b, f"llvm.{name}", args)
        suffix = "f" if args[0].type == F32 else ""
        ty = F32 if suffix else F64
        fn = self.declare(f"{name}{suffix}", ty, [ty] * len(args))
        return b.call(fn, args)

    def raise_exception(self, b: ir.IRBuilder, hidden, site: int, ret_type: ir.Type) -> None:
        fn = self.declare(REPORT, VOID, [PTR, I64] + [I64] * 6)
        b.call(fn, [hidden[0], ir.Constant(I64, site), *hidden[1:7]])
        _return_undef(b, ret_type)

    def after_call(self, b: ir.IRBuilder, hidden, ret_type: ir.Type) -> None:
        """A callee raised (or another thread did): stop this thread too."""
        status = b.load_atomic(hidden[0], "monotonic", 8, typ=I64)
        with b.if_then(b.icmp_unsigned("!=", status, ir.Constant(I64, 0)), likely=False):
            _return_undef(b, ret_type)

    def call_intrinsic(self, b, key, data, args, types, rt, hidden):  # pragma: no cover
        raise BuildError(f"'{key}' has no CPU meaning")


def _return_undef(b: ir.IRBuilder, ret_type: ir.Type) -> None:
    if ret_type == VOID:
        b.ret_void()
    else:
        b.ret(ir.Constant(ret_type, ir.Undefined))


# ---------------------------------------------------------------------- entry points


def _load_args(b: ir.IRBuilder, args_ptr, types: list[ir.Type]) -> list[ir.Value]:
    out = []
    for k, ty in enumerate(types):
        slot = b.load(b.gep(args_ptr, [ir.Constant(I64, k)], source_etype=PTR), typ=PTR)
        out.append(b.load(slot, typ=ty))
    return out


def _counted_loop(
    b: ir.IRBuilder,
    fn: ir.Function,
    start,
    stop,
    name: str,
    body,
    plain: bool = False,
    jam: bool = False,
) -> None:
    """``for i in range(start, stop): body(i)`` with a phi induction variable.

    ``plain`` asks LLVM to neither vectorise nor unroll it (the few threads at a range's edge).
    """
    pre = b.block
    head = fn.append_basic_block(f"{name}.head")
    loop = fn.append_basic_block(f"{name}.body")
    done = fn.append_basic_block(f"{name}.done")
    b.cbranch(b.icmp_signed("<", start, stop), head, done)
    b.position_at_end(head)
    i = b.phi(I64, name=name)
    i.add_incoming(start, pre)
    b.branch(loop)
    b.position_at_end(loop)
    body(i)
    nxt = b.add(i, ir.Constant(I64, 1))
    i.add_incoming(nxt, b.block)
    latch = b.cbranch(b.icmp_signed("<", nxt, stop), head, done)
    if plain:
        latch.set_metadata("llvm.loop", _loop_id(b.module, _NO_VECTORIZE, _NO_UNROLL))
    elif jam:
        latch.set_metadata("llvm.loop", _loop_id(b.module, (JAM_MARK,)))
    b.position_at_end(done)


_NO_VECTORIZE = ("llvm.loop.vectorize.enable", False)
# A loop property LLVM ignores, kept through its loop passes; ``optimize`` turns it into
# ``llvm.loop.unroll_and_jam.count`` once the assumptions that block unroll-and-jam are gone.
JAM_MARK = "gpuaot.unroll_and_jam"
_NO_UNROLL = ("llvm.loop.unroll.disable",)


def _loop_id(module: ir.Module, *props: tuple) -> ir.MDValue:
    """A distinct, self-referential loop ID (``!0 = !{!0, !{"…"}, …}``) holding ``props``."""
    nodes = [
        module.add_metadata([ir.MetaDataString(module, p[0]), *(ir.Constant(I1, v) for v in p[1:])])
        for p in props
    ]
    # llvmlite uniques metadata by operands; a loop ID must be distinct and refer to itself.
    md = ir.values.MDValue(module, [], name=str(len(module.metadata)))
    md.operands = (md, *nodes)
    return md


def kernel_entry(mb: ModuleBuilder, tf: TypedFunction) -> str:
    body = mb.function(tf, name=f"{tf.symbol}.body")
    body.attributes.add("alwaysinline")
    name = f"gpuaot_cpu_{tf.symbol}"
    fn = ir.Function(mb.module, ir.FunctionType(VOID, [PTR, PTR, I64, I64, PTR]), name)
    args_ptr, dims_ptr, begin, end, exc = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    types = [materialize(t) for t in tf.arg_types]
    vals = _load_args(b, args_ptr, [p for t in types for p in mb.em.param_types(t)])
    dims = [
        b.load(b.gep(dims_ptr, [ir.Constant(I64, k)], source_etype=I64), typ=I64) for k in range(6)
    ]
    nest = _Nest(fn, exc, vals, dims, begin, end, body, XSplit.analyse(body, len(vals) + 1))
    arrays = _arrays(types, vals)
    done = fn.append_basic_block("blk.done")
    if not arrays or not _has_loop(body):
        nest.emit(b, body, done, split=True)
    else:
        # A body with loops of its own gets its x loop unrolled and jammed (see ``optimize``),
        # which needs to know the arrays do not overlap: checked here, once per launch, to
        # run a copy of the body whose array pointers are ``noalias``; arrays that do
        # overlap run the plain body, threads strictly one after another.
        restrict = _restrict_copy(mb, tf, body, [k for k, *_ in arrays])
        if len(arrays) == 1:
            nest.emit(b, restrict, done, split=True, jam=True)
        else:
            fast = fn.append_basic_block("restrict")
            general = fn.append_basic_block("general")
            b.cbranch(_disjoint(b, arrays), fast, general)
            b.position_at_end(fast)
            nest.emit(b, restrict, done, split=True, jam=True)
            b.position_at_end(general)
            nest.emit(b, body, done)
    b.position_at_end(done)
    b.ret_void()
    return name


class _Nest:
    """The loops of an entry point: blocks [begin, end), then z, y and x threads."""

    def __init__(self, fn, exc, vals, dims, begin, end, body, split):
        self.fn, self.exc, self.vals, self.dims = fn, exc, vals, dims
        self.begin, self.end, self.body, self.split = begin, end, body, split

    def emit(
        self,
        b: ir.IRBuilder,
        body: ir.Function,
        done: ir.Block,
        split: bool = False,
        jam: bool = False,
    ) -> None:
        """The nest calling ``body`` (inlined) for each thread; ``split``: at the guards.

        The edge loops of a split call the plain body without inlining it: they run a few
        threads, and a third inlined copy of the body would only cost compile time.
        """
        fn, exc, vals = self.fn, self.exc, self.vals
        split = self.split if split else None
        gx, gy, gz, bdx, bdy, bdz = self.dims
        zero = ir.Constant(I64, 0)

        def per_block(blk):
            bx = b.urem(blk, gx)
            rest = b.udiv(blk, gx)
            by = b.urem(rest, gy)
            bz = b.udiv(rest, gy)

            def per_z(tz):
                def per_y(ty):
                    def args(tx):
                        return [*vals, exc, tx, ty, tz, bx, by, bz, bdx, bdy, bdz, gx, gy, gz]

                    def per_x(tx):
                        b.call(body, args(tx))

                    def edge_x(tx):
                        b.call(self.body, args(tx), attrs=("noinline",))

                    if split is None:
                        end = bdx if jam else _opaque(b, bdx)
                        _counted_loop(b, fn, zero, end, "tx", per_x, jam=jam)
                        return
                    env = {id(p): v for p, v in zip(split.body.args, args(zero))}
                    rows = not jam  # unroll-and-jam wants the row guards unswitched instead
                    lo, hi = split.bounds(b, env, bdx, rows=rows)
                    end = bdx
                    if not jam:  # (an asm call in the loop around stops unroll-and-jam)
                        lo, hi, end = _opaque(b, lo), _opaque(b, hi), _opaque(b, bdx)

                    def fast_x(tx):
                        split.assume(b, env, tx, rows=rows)
                        per_x(tx)

                    # The edges hold the few threads a guard turns away.
                    _counted_loop(b, fn, zero, lo, "tx.pre", edge_x, plain=True)
                    _counted_loop(b, fn, lo, hi, "tx", fast_x, jam=jam)
                    _counted_loop(b, fn, hi, end, "tx.post", edge_x, plain=True)

                _counted_loop(b, fn, zero, _opaque(b, bdy), "ty", per_y)

            _counted_loop(b, fn, zero, _opaque(b, bdz), "tz", per_z)

        # Blocks one after another; stop early once any thread has raised.
        pre = b.block
        head = fn.append_basic_block("blk.head")
        b.cbranch(b.icmp_signed("<", self.begin, self.end), head, done)
        b.position_at_end(head)
        blk = b.phi(I64, name="blk")
        blk.add_incoming(self.begin, pre)
        per_block(blk)
        nxt = b.add(blk, ir.Constant(I64, 1))
        status = b.load_atomic(exc, "monotonic", 8, typ=I64)
        go = b.and_(b.icmp_signed("<", nxt, self.end), b.icmp_unsigned("==", status, zero))
        blk.add_incoming(nxt, b.block)
        b.cbranch(go, head, done)


def _opaque(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    """``v``, through an empty ``asm sideeffect``: LLVM can no longer see it is loop-invariant.

    The bounds of the x loops are invariant in the y, z and block loops around them, so
    LLVM's non-trivial loop unswitching clones those outer loops, with every x loop in
    them, once per combination of empty/non-empty x loops: four to eight copies of the
    vectorised body, for nothing (``llvm.loop.unswitch.nontrivial.disable`` is not
    honoured there). An opaque copy of each bound, taken inside the loop, costs no
    instruction and keeps one copy. (Compile time of fixtures/conformance: x2.6 without.)
    """
    return b.asm(ir.FunctionType(v.type, [v.type]), "", "=r,0", [v], True)


def _arrays(types: list, vals: list) -> list[tuple]:
    """``(index of the data pointer in vals, type, data, shape, strides)`` per array param."""
    out, k = [], 0
    for t in types:
        if isinstance(t, ArrayType):
            n = t.ndim
            strides = vals[k + 1 + n : k + 1 + 2 * n] if t.layout == "A" else None
            out.append((k, t, vals[k], vals[k + 1 : k + 1 + n], strides))
            k += 1 + n * (2 if t.layout == "A" else 1)
        else:
            k += 1
    return out


def _restrict_copy(mb: ModuleBuilder, tf: TypedFunction, body: ir.Function, ptrs) -> ir.Function:
    """The body lowered again, its array data pointers ``noalias`` (the callees are shared)."""
    copy = ir.Function(mb.module, body.function_type, f"{body.name}.restrict")
    copy.linkage = "internal"
    copy.attributes.add("alwaysinline")
    FunctionLowering(mb, tf, copy).lower()
    for k in ptrs:
        copy.args[k].add_attribute("noalias")
    return copy


def _disjoint(b: ir.IRBuilder, arrays: list) -> ir.Value:
    """True when no two arrays share a byte: each one's [lo, hi) extent, compared pairwise."""
    zero, one = ir.Constant(I64, 0), ir.Constant(I64, 1)
    extents = []
    for _k, t, data, shape, strides in arrays:
        p = b.ptrtoint(data, I64)
        size = ir.Constant(I64, t.dtype.itemsize)
        empty = ir.Constant(I1, 0)
        for d in shape:
            empty = b.or_(empty, b.icmp_signed("<=", d, zero))
        if strides is None:
            count = one
            for d in shape:
                count = b.mul(count, d)
            lo, hi = p, b.add(p, b.mul(count, size))
        else:
            lo, hi = p, b.add(p, size)
            for d, st in zip(shape, strides):
                span = b.mul(b.sub(d, one), st)
                lo = b.add(lo, _smin(b, span, zero))
                hi = b.add(hi, _smax(b, span, zero))
        extents.append((empty, lo, hi))
    ok = ir.Constant(I1, 1)
    for i, (e1, lo1, hi1) in enumerate(extents):
        for e2, lo2, hi2 in extents[i + 1 :]:
            apart = b.or_(b.icmp_unsigned("<=", hi1, lo2), b.icmp_unsigned("<=", hi2, lo1))
            ok = b.and_(ok, b.or_(b.or_(e1, e2), apart))
    return ok


def _has_loop(fn: ir.Function, seen: set | None = None) -> bool:
    """Whether a function (or one it calls) has a cycle in its control flow: a loop."""
    seen = set() if seen is None else seen
    if id(fn) in seen or not fn.blocks:
        return False
    seen.add(id(fn))
    for blk in fn.blocks:
        for ins in blk.instructions:
            if isinstance(ins, ir.CallInstr) and isinstance(ins.callee, ir.Function):
                if _has_loop(ins.callee, seen):
                    return True

    def successors(blk):
        term = blk.terminator
        return [o for o in (term.operands if term is not None else ()) if isinstance(o, ir.Block)]

    state: dict[int, int] = {}  # 1: on the DFS stack, 2: done
    stack = [(fn.blocks[0], iter(successors(fn.blocks[0])))]
    state[id(fn.blocks[0])] = 1
    while stack:
        blk, it = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            state[id(blk)] = 2
            stack.pop()
        elif state.get(id(nxt)) == 1:
            return True
        elif id(nxt) not in state:
            state[id(nxt)] = 1
            stack.append((nxt, iter(successors(nxt))))
    return False


# ---------------------------------------------------------------------- x-loop splitting
#
# A kernel body almost always starts with a range guard on its grid index (``if i < n:``,
# ``if 0 < j < m - 1``). Inlined into the x loop, that guard varies per thread, so the loop
# vectoriser if-converts it: every load and store becomes a masked one, which runs at half
# the speed of a plain vector loop even when memory-bound. LLVM would split such a loop at the
# guard's bound (IRCE, LoopBoundSplit), but neither runs in the O3 pipeline.
#
# So the entry splits the x range itself: it finds the integer comparisons the body branches
# on whose one side is ``tx + c`` (c invariant in the x loop) and the other invariant,
# computes, per block and row, the sub-range [lo, hi) of threads for which every such
# comparison takes the value that leads into the body's work, and runs three loops:
# [0, lo) and [hi, bdx) calling the body out of line, and [lo, hi) with ``llvm.assume`` of
# each comparison, rebuilt from the same operands so that, after inlining, GVN folds the
# body's own guard away and the vectoriser sees straight-line code. Comparisons that do not
# depend on tx at all (the row test of a stencil) are assumed the same way, the range being
# empty for rows where they fail. Only branches whose work side is clear count: the likely
# side, or the side that does not return (``if i < n: ...``, ``if i >= n: return``); an
# ``if``/``else`` with work on both sides is left to LLVM.
#
# Soundness does not rest on the analysis: each assumed comparison is rebuilt in the entry
# from wrap-free operations (add, sub, mul, casts) on the body's arguments, and [lo, hi) is
# computed exactly, in 128-bit arithmetic, from the same operands, with a no-wrap check on
# ``c + tx``; when that check fails the range is empty. The analysis only decides which
# comparisons are worth assuming and in which direction; choosing badly costs speed, never
# correctness.

_PREDICATES = ("slt", "sle", "sgt", "sge", "ult", "ule", "ugt", "uge")
# a < b  <=>  b > a;  not (a < b)  <=>  a >= b
_MIRROR = dict(zip(_PREDICATES, ("sgt", "sge", "slt", "sle", "ugt", "uge", "ult", "ule")))
_INVERT = dict(zip(_PREDICATES, ("sge", "sgt", "sle", "slt", "uge", "ugt", "ule", "ult")))
_I128 = ir.IntType(128)
_MAX_CONSTRAINTS = 8


class XSplit:
    """The guards of one kernel body: ``(icmp, wanted truth value, side)`` each.

    ``side`` is the operand that is ``tx + c`` (0 or 1), or None for a comparison that does
    not depend on tx at all (``0 < i < n - 1`` on the row index of a stencil): that one
    takes its wanted value for the whole row or not at all.
    """

    def __init__(self, body: ir.Function, tx: ir.Argument, constraints: list):
        self.body = body
        self.tx = tx
        self.constraints = constraints
        self.resolve = _Resolver(body).resolve

    @classmethod
    def analyse(cls, body: ir.Function, tx_index: int) -> XSplit | None:
        tx = body.args[tx_index]
        res = _Resolver(body)
        wanted: dict[int, tuple[ir.Instruction, set[bool]]] = {}

        def want(v, truth: bool, depth: int = 0) -> None:
            v = res.resolve(v)
            if depth > 16 or not isinstance(v, ir.Instruction):
                return
            op = v.opname
            if op == "icmp":
                wanted.setdefault(id(v), (v, set()))[1].add(truth)
            elif v.type == I1 and (op == "and" and truth or op == "or" and not truth):
                for o in v.operands:
                    want(o, truth, depth + 1)
            elif op == "xor" and v.type == I1:
                a, c = v.operands
                if isinstance(a, ir.Constant):
                    a, c = c, a
                if isinstance(c, ir.Constant) and c.constant in (1, -1, True):
                    want(a, not truth, depth + 1)
            elif op == "phi" and v.type == I1:
                # Sufficient: if every incoming value has the wanted truth, so has the phi.
                for val, _blk in v.incomings:
                    want(val, truth, depth + 1)

        for blk in body.blocks:
            br = blk.terminator
            if isinstance(br, ir.instructions.ConditionalBranch):
                side = _work_side(br)
                if side is not None:
                    want(br.operands[0], side)
        lin = _Linear(res, tx)
        constraints = []
        for cmp, truths in wanted.values():
            if len(truths) != 1 or cmp.op not in _CMP_PRED:
                continue
            kl, kr = (lin.coef(o) for o in cmp.operands)
            if (kl, kr) == (0, 0):
                constraints.append((cmp, truths.pop(), None))
            elif cmp.op not in _MIRROR or cmp.operands[0].type != I64:
                continue
            elif (kl, kr) == (1, 0):
                constraints.append((cmp, truths.pop(), 0))
            elif (kl, kr) == (0, 1):
                constraints.append((cmp, truths.pop(), 1))
        if not any(side is not None for _c, _t, side in constraints):
            return None  # nothing varies along x: LLVM unswitches the rest
        return cls(body, tx, constraints[:_MAX_CONSTRAINTS])

    def _emit(self, b: ir.IRBuilder, v, env: dict, cache: dict):
        v = self.resolve(v)
        key = id(v)
        if key in cache:
            return cache[key]
        if isinstance(v, ir.Argument):
            out = env[id(v)]
        elif isinstance(v, ir.Constant):
            out = v
        elif v.opname in ("add", "sub", "mul"):
            x, y = (self._emit(b, o, env, cache) for o in v.operands)
            out = getattr(b, v.opname)(x, y)
        else:  # sext, zext, trunc: _Linear admits nothing else
            out = getattr(b, v.opname)(self._emit(b, v.operands[0], env, cache), v.type)
        cache[key] = out
        return out

    def _compare(self, b: ir.IRBuilder, cmp, truth: bool, env: dict, cache: dict):
        """The comparison rebuilt as the body builds it, with its wanted truth value."""
        x, y = (self._emit(b, o, env, cache) for o in cmp.operands)
        icmp = b.icmp_unsigned if cmp.op[0] == "u" else b.icmp_signed
        c = icmp(_CMP_PRED[cmp.op], x, y)
        return c if truth else b.not_(c)

    def bounds(self, b: ir.IRBuilder, env: dict, bdx, rows: bool) -> tuple[ir.Value, ir.Value]:
        """[lo, hi) within [0, bdx) where every guard has its wanted value (may be empty).

        ``rows``: include the guards that hold for a whole row or not at all. Left out, LLVM
        unswitches them instead, at the cost of more code; unroll-and-jam needs that form.
        """
        cache: dict = {}
        zero = ir.Constant(_I128, 0)
        n = b.zext(_smax(b, bdx, ir.Constant(I64, 0)), _I128)
        lo, hi, ok = zero, n, ir.Constant(I1, 1)
        for cmp, truth, side in self.constraints:
            if side is None:  # the whole row, or nothing
                if rows:
                    ok = b.and_(ok, self._compare(b, cmp, truth, env, cache))
                continue
            pred = cmp.op if side == 0 else _MIRROR[cmp.op]
            pred = pred if truth else _INVERT[pred]
            ext = b.sext if pred[0] == "s" else b.zext
            c = ext(self._emit(b, cmp.operands[side], env, cache), _I128)  # tx + c at tx = 0
            bound = ext(self._emit(b, cmp.operands[1 - side], env, cache), _I128)
            top = (1 << 63) - 1 if pred[0] == "s" else (1 << 64) - 1
            # No wrap: c + (bdx - 1) stays in range, so tx + c is exact for every tx < bdx.
            last = b.sub(b.add(c, n), ir.Constant(_I128, 1))
            ok = b.and_(ok, b.icmp_signed("<=", last, ir.Constant(_I128, top)))
            edge = b.sub(bound, c)
            if pred[1:] == "lt":
                hi = _smin(b, hi, edge)
            elif pred[1:] == "le":
                hi = _smin(b, hi, b.add(edge, ir.Constant(_I128, 1)))
            elif pred[1:] == "gt":
                lo = _smax(b, lo, b.add(edge, ir.Constant(_I128, 1)))
            else:
                lo = _smax(b, lo, edge)
        lo = _smin(b, lo, n)
        hi = _smax(b, hi, lo)
        lo = b.select(ok, lo, zero)
        hi = b.select(ok, hi, zero)
        return b.trunc(lo, I64), b.trunc(hi, I64)

    def assume(self, b: ir.IRBuilder, env: dict, tx, rows: bool) -> None:
        """Inside [lo, hi): state each guard, built as the body builds it, for GVN to fold."""
        env = {**env, id(self.tx): tx}
        cache: dict = {}
        fn = b.module.globals.get("llvm.assume")
        if fn is None:
            fn = ir.Function(b.module, ir.FunctionType(VOID, [I1]), "llvm.assume")
        for cmp, truth, side in self.constraints:
            if side is not None or rows:
                b.call(fn, [self._compare(b, cmp, truth, env, cache)])


_CMP_PRED = {
    "eq": "==",
    "ne": "!=",
    "slt": "<",
    "sle": "<=",
    "sgt": ">",
    "sge": ">=",
    "ult": "<",
    "ule": "<=",
    "ugt": ">",
    "uge": ">=",
}


def _smin(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def _smax(b, x, y):
    return b.select(b.icmp_signed(">", x, y), x, y)


def _work_side(br) -> bool | None:
    """Which way a branch goes into the body's work, where that is clear: its likely side,
    or the side that does not leave the body (``if i < n: ...`` / ``if i >= n: return``).
    None for an ``if``/``else`` with work on both sides: assuming either would send every
    thread of the other to the slow edge loops.
    """
    prof = br.metadata.get("prof")
    if prof is not None and len(prof.operands) == 3:
        t, f = (o.constant for o in prof.operands[1:])
        return t >= f
    t, f = (_exits(x) for x in br.operands[1:3])
    if t == f:
        return None
    return f


def _exits(block: ir.Block, depth: int = 0) -> bool:
    """A block that only returns, raises and returns, or jumps to such a block."""
    term = block.terminator
    if isinstance(term, ir.instructions.Branch) and depth < 8 and len(block.instructions) == 1:
        return _exits(term.operands[0], depth + 1)
    if not isinstance(term, ir.instructions.Ret):
        return False
    return all(
        isinstance(i, ir.CallInstr) and getattr(i.callee, "name", None) == REPORT
        for i in block.instructions[:-1]
    )


class _Resolver:
    """See through the lowering's memory form: a variable stored once, a tuple element."""

    def __init__(self, fn: ir.Function):
        stores: dict[int, list] = {}
        escaped: set[int] = set()
        for blk in fn.blocks:
            for ins in blk.instructions:
                if isinstance(ins, ir.StoreInstr):
                    stores.setdefault(id(ins.operands[1]), []).append(ins.operands[0])
                    escaped.add(id(ins.operands[0]))
                elif isinstance(ins, ir.PhiInstr):
                    escaped.update(id(val) for val, _blk in ins.incomings)
                elif not isinstance(ins, ir.LoadInstr):
                    escaped.update(id(o) for o in ins.operands)
        self.single = {k: v[0] for k, v in stores.items() if len(v) == 1 and k not in escaped}

    def resolve(self, v):
        for _ in range(64):
            if isinstance(v, ir.LoadInstr) and isinstance(v.operands[0], ir.AllocaInstr):
                nxt = self.single.get(id(v.operands[0]))
                if nxt is None or nxt.type != v.type:
                    return v
                v = nxt
            elif isinstance(v, ir.ExtractValue):
                agg = self.resolve(v.aggregate)
                while isinstance(agg, ir.InsertValue) and list(agg.indices) != list(v.indices):
                    agg = self.resolve(agg.aggregate)
                if not isinstance(agg, ir.InsertValue):
                    return v
                v = agg.value
            else:
                return v
        return v


class _Linear:
    """The coefficient of tx in a value, modulo 2**64: 0, 1, … or None (not linear, unknown)."""

    _CASTS = ("sext", "zext", "trunc")

    def __init__(self, res: _Resolver, tx: ir.Argument):
        self.res = res
        self.tx = tx
        self.memo: dict[int, int | None] = {}

    def coef(self, v) -> int | None:
        v = self.res.resolve(v)
        key = id(v)
        if key not in self.memo:
            self.memo[key] = None  # cycles (phis) are not linear
            self.memo[key] = self._coef(v)
        return self.memo[key]

    def _coef(self, v) -> int | None:
        if not isinstance(v.type, ir.IntType):
            return None
        if isinstance(v, ir.Argument):
            return 1 if v is self.tx else 0
        if isinstance(v, ir.Constant):
            return 0 if isinstance(v.constant, int) else None
        if not isinstance(v, ir.Instruction) or v.flags:
            return None
        op = v.opname
        if op in self._CASTS:
            return 0 if self.coef(v.operands[0]) == 0 else None
        if op not in ("add", "sub", "mul"):
            return None
        a, c = (self.coef(o) for o in v.operands)
        if a is None or c is None:
            return None
        mod = 1 << v.type.width
        if op == "add":
            return (a + c) % mod
        if op == "sub":
            return (a - c) % mod
        if a and c:
            return None
        if a == c == 0:
            return 0
        k = v.operands[1] if a else v.operands[0]
        k = self.res.resolve(k)
        if not isinstance(k, ir.Constant):
            return None
        return (max(a, c) * k.constant) % mod


def host_entry(mb: ModuleBuilder, tf: TypedFunction) -> str:
    body = mb.function(tf, name=f"{tf.symbol}.body")
    name = f"gpuaot_host_{tf.symbol}"
    fn = ir.Function(mb.module, ir.FunctionType(VOID, [PTR, PTR, PTR]), name)
    args_ptr, ret_ptr, exc = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    params = [p for t in tf.arg_types for p in mb.em.param_types(materialize(t))]
    vals = _load_args(b, args_ptr, params)
    zero = ir.Constant(I64, 0)
    one = ir.Constant(I64, 1)
    hidden = [exc, zero, zero, zero, zero, zero, zero, one, one, one, one, one, one]
    result = b.call(body, [*vals, *hidden])
    if materialize(tf.return_type) is not none:
        b.store(result, ret_ptr)
    b.ret_void()
    return name


def runtime_module() -> ir.Module:
    """The CPU runtime library, shared by every variant and compiled for the baseline:
    first-writer-wins exception reporting (hidden symbol) and, on x86-64, the CPUID probe
    the run time picks a variant with (exported)."""
    mod = new_module("gpuaot_cpu_runtime")
    if cpus.machine() == "x86_64":
        cpu_variant.probe_function(mod)
    fn = ir.Function(mod, ir.FunctionType(VOID, [PTR, I64] + [I64] * 6), REPORT)
    exc, site, *idx = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    won = b.extract_value(
        b.cmpxchg(exc, ir.Constant(I64, 0), ir.Constant(I64, 1), "acq_rel", "monotonic"), 1
    )
    with b.if_then(won):
        b.store(site, b.gep(exc, [ir.Constant(I64, 1)], source_etype=I64))
        for k, v in enumerate(idx):
            b.store(v, b.gep(exc, [ir.Constant(I64, 2 + k)], source_etype=I64))
    b.ret_void()
    return mod


# ---------------------------------------------------------------------- codegen


# Bump when ``optimize`` changes: the compilation cache keys on the IR text, which records it.
PIPELINE = "cpu-o3-jam8/1"
JAM_COUNT = 8  # threads per jammed x-loop iteration: 8 lanes (f32 on AVX2, f64 on AVX-512); one
# count for every CPU level, so that all variants compute in the same order


def new_module(name: str) -> ir.Module:
    """A module for host code; every CPU level of the platform shares its data layout."""
    mod = ir.Module(name=name)
    tm = cpu_variant.variant_machine(cpu_variant.baseline())
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    mod.add_named_metadata("gpuaot.cpu.pipeline", [PIPELINE])
    return mod


def _parse(text: str, tm):
    ref = llvm.parse_assembly(text)
    ref.triple = tm.triple
    ref.data_layout = str(tm.target_data)
    ref.verify()
    return ref


def _default_pipeline(ref, tm, opt: int, unroll: bool = True) -> None:
    pto = llvm.create_pipeline_tuning_options(speed_level=opt)
    pto.loop_vectorization = opt >= 2
    pto.slp_vectorization = opt >= 2
    pto.loop_unrolling = unroll
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(ref, pb)


_ASSUMPTIONS = re.compile(
    r"^[ \t]*(?:tail )?call void @llvm\.(?:assume|experimental\.noalias\.scope\.decl)\(.*\n",
    re.MULTILINE,
)
_JAM_NODE = f'!{{!"{JAM_MARK}"}}'
_JAM_COUNT_NODE = f'!{{!"llvm.loop.unroll_and_jam.count", i32 {JAM_COUNT}}}'
_JAM_DONE_NODE = '!{!"llvm.loop.unroll_and_jam.disable"}'


def optimize(ir_text: str, opt: int = 3, *, tm):
    """Parse, verify and run LLVM's O3 pipeline with both vectorisers; returns the ModuleRef.

    A kernel whose threads loop (a row sum, a dot product per output) cannot be vectorised
    along its x loop, which is not innermost, nor along the thread's own loop, a sequential
    floating-point reduction. Unroll-and-jam of the x loop runs ``JAM_COUNT`` threads in
    lock step instead, each still adding in its own order, and SLP then packs them into
    vectors. It needs the x loop the entry marked (``JAM_MARK``, only where the arrays are
    known not to overlap) and no calls in it, so a second round runs on the first one's
    output without its ``llvm.assume`` calls (they did their work: the guards they stated
    are folded; dropping an assumption only removes a fact) and without the ``noalias``
    scope declarations of the inlined restrict body: its scopes then hold for the whole
    function, across iterations and copies, which is true: the entry runs that body only
    when no two arrays share a byte.
    """
    ref = _parse(ir_text, tm)
    jam = opt >= 2 and JAM_MARK in ir_text
    # Unroll-and-jam needs each thread's loop whole: no unrolling in the first round.
    _default_pipeline(ref, tm, opt, unroll=not jam)
    if not jam:
        return ref
    text = str(ref)
    text = _ASSUMPTIONS.sub("", text).replace(_JAM_NODE, _JAM_COUNT_NODE)
    ref = _parse(text, tm)
    pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=opt))
    mpm = llvm.create_new_module_pass_manager()
    mpm.add_loop_simplify_pass()
    mpm.add_lcssa_pass()
    mpm.add_loop_unroll_and_jam_pass()
    mpm.run(ref, pb)
    # Loops it could not jam keep the request; retire it so LLVM does not warn about them.
    ref = _parse(str(ref).replace(_JAM_COUNT_NODE, _JAM_DONE_NODE), tm)
    _default_pipeline(ref, tm, opt)
    return ref


def find_cc() -> str:
    cc = os.environ.get("CC") or "cc"
    path = shutil.which(cc.split()[0])
    if path is None:
        raise BuildError(
            f"no C compiler found ({'$CC=' + cc if 'CC' in os.environ else 'cc'}): gpuaot links "
            "the host bundle with the system C compiler; install gcc or clang, or set CC"
        )
    return cc


def link_shared(objects: list[bytes], out_path: str) -> None:
    """Link objects into a position-independent .so: NEEDED ⊆ {libc, libm}, no RPATH.

    ``out_path`` is written in place: the caller gives a staging path of its own."""
    cc = find_cc()
    with tempfile.TemporaryDirectory(prefix="gpuaot-link-") as tmp:
        names = []
        for k, obj in enumerate(objects):
            p = os.path.join(tmp, f"m{k}.o")
            with open(p, "wb") as f:
                f.write(obj)
            names.append(p)
        tmp_out = os.path.join(tmp, "bundle.so")
        script = os.path.join(tmp, "exports.map")
        with open(script, "w") as f:
            f.write(EXPORTS)
        cmd = [
            *cc.split(),
            "-shared",
            "-fPIC",
            "-o",
            tmp_out,
            *names,
            "-Wl,--as-needed",
            f"-Wl,--version-script={script}",
            "-lm",
            "-Wl,-z,noexecstack",
            "-Wl,--hash-style=gnu",
            "-Wl,--build-id=none",
            "-Wl,-O1",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            raise BuildError(f"linking the host bundle failed ({cc}):\n{proc.stderr.strip()}")
        shutil.copyfile(tmp_out, out_path)


__all__ = [
    "CPUEmitter",
    "kernel_entry",
    "host_entry",
    "runtime_module",
    "optimize",
    "link_shared",
    "new_module",
    "I1",
]
