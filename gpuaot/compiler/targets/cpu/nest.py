"""The loop nest of an entry point: a range of blocks, then each block's threads, around a body.

    nest = Nest(fn, exc, vals, dims, begin, end, body, order, split)
    nest.emit(b, body, done, split=True, jam=0)   # the loops, calling ``body`` (inlined)

Blocks are numbered with the order's inner axis fastest (:class:`.order.Order`), so a chunk
[begin, end) of the launcher holds runs of neighbours along it. The thread loops are the two
other axes (z outermost), then the inner axis; where the order ``merge``\\ s, one loop walks
the grid index along the inner axis over a whole run of blocks instead of each block's own
threads. The inner loop is split at the body's guards (:class:`.xsplit.XSplit`).
"""

from __future__ import annotations

from llvmlite import ir

from ...lower.emitter import I1, I8, I32, I64
from .order import Order
from .pipeline import JAM_MARK
from .xsplit import _smax, _smin


def counted_loop(
    b: ir.IRBuilder,
    fn: ir.Function,
    start,
    stop,
    name: str,
    body,
    plain: bool = False,
    jam: int = 0,
    step: int = 1,
) -> None:
    """``for i in range(start, stop, step): body(i)`` with a phi induction variable (``step``
    > 1: ``stop - start`` a multiple of it).

    ``plain`` asks LLVM to neither vectorise nor unroll it (the few threads at a range's edge);
    ``jam`` marks it for unroll-and-jam by that many threads (:mod:`.pipeline`).
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
    nxt = b.add(i, ir.Constant(I64, step))
    i.add_incoming(nxt, b.block)
    latch = b.cbranch(b.icmp_signed("<", nxt, stop), head, done)
    if plain:
        latch.set_metadata("llvm.loop", _loop_id(b.module, _NO_VECTORIZE, _NO_UNROLL))
    elif jam:
        latch.set_metadata("llvm.loop", _loop_id(b.module, (JAM_MARK, jam)))
    b.position_at_end(done)


_NO_VECTORIZE = ("llvm.loop.vectorize.enable", False)
_NO_UNROLL = ("llvm.loop.unroll.disable",)


def _loop_id(module: ir.Module, *props: tuple) -> ir.MDValue:
    """A distinct, self-referential loop ID (``!0 = !{!0, !{"…"}, …}``) holding ``props``."""

    def value(v):  # a flag, or a count
        return ir.Constant(I1 if isinstance(v, bool) else I32, v)

    nodes = [
        module.add_metadata([ir.MetaDataString(module, p[0]), *map(value, p[1:])]) for p in props
    ]
    # llvmlite uniques metadata by operands; a loop ID must be distinct and refer to itself.
    md = ir.values.MDValue(module, [], name=str(len(module.metadata)))
    md.operands = (md, *nodes)
    return md


def opaque(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    """``v``, through an empty ``asm sideeffect``: LLVM can no longer see it is loop-invariant.

    The bounds of the inner loops are invariant in the loops around them, so LLVM's
    non-trivial loop unswitching clones those outer loops, with every inner loop in them,
    once per combination of empty/non-empty inner loops: four to eight copies of the
    vectorised body, for nothing (``llvm.loop.unswitch.nontrivial.disable`` is not
    honoured there). An opaque copy of each bound, taken inside the loop, costs no
    instruction and keeps one copy. (Compile time of fixtures/conformance: x2.6 without.)
    """
    return b.asm(ir.FunctionType(v.type, [v.type]), "", "=r,0", [v], True)


class Nest:
    """The loops of an entry point: blocks [begin, end), then the threads of each."""

    def __init__(self, fn, exc, vals, dims, begin, end, body, order: Order, split):
        self.fn, self.exc, self.vals, self.dims = fn, exc, vals, dims
        self.begin, self.end, self.body, self.split = begin, end, body, split
        self.order = order
        a = order.inner
        self.inner = a
        self.others = [k for k in (0, 1, 2) if k != a]  # block numbering after the inner axis
        self.outer = [k for k in (2, 1, 0) if k != a]  # thread loops, outermost first

    def emit(
        self,
        b: ir.IRBuilder,
        body: ir.Function,
        done: ir.Block,
        split: bool = False,
        jam: int = 0,
        lanes: tuple[int, list] | None = None,
    ) -> None:
        """The nest calling ``body`` (inlined) for each thread; ``split``: at the guards.

        The edge loops of a split call the plain body without inlining it: they run a few
        threads, and a third inlined copy of the body would only cost compile time.
        ``lanes``: ``(count, [(flat index, element size)])`` of the private copies of
        :mod:`.privatize`: each thread's pointer moves to its lane's copy (``t % count``), the
        fast loop runs ``count`` threads at a time as straight-line code, one per lane, and
        the edges call ``body`` too (inlined: it is small), which indexes the lanes' layout.
        """
        fn = self.fn
        split = self.split if split else None
        grid, bdim = self.dims[:3], self.dims[3:]
        a, (o1, o2) = self.inner, self.others
        zero = ir.Constant(I64, 0)
        vals = self.vals

        # Blocks one after another (a run of them at a time); stop once any thread raised.
        pre = b.block
        head = fn.append_basic_block("blk.head")
        b.cbranch(b.icmp_signed("<", self.begin, self.end), head, done)
        b.position_at_end(head)
        blk = b.phi(I64, name="blk")
        blk.add_incoming(self.begin, pre)
        ca = b.urem(blk, grid[a])
        rest = b.udiv(blk, grid[a])
        bids = [zero] * 3
        bids[o1] = b.urem(rest, grid[o1])
        bids[o2] = b.udiv(rest, grid[o1])
        bids[a] = ca
        if self.order.merge:
            # The rest of this row of blocks along the inner axis that the chunk holds, run as
            # one block of ``bdim * blocks`` threads: the body sees ``ca * bdim + t``.
            nxt = _smin(b, self.end, b.add(b.sub(blk, ca), grid[a]))
            hi = b.mul(b.sub(nxt, blk), bdim[a])
        else:
            nxt = b.add(blk, ir.Constant(I64, 1))
            hi = bdim[a]
        lo = zero

        def args(t: list, lane=None) -> list:
            own = vals
            if lanes is not None:
                count, ptrs = lanes
                own = list(vals)
                for k, size in ptrs:
                    if lane is None:  # t % count, count a power of two
                        idx = b.and_(t[a], ir.Constant(I64, count - 1))
                        off = b.mul(idx, ir.Constant(I64, size))
                    else:
                        off = ir.Constant(I64, lane * size)
                    own[k] = b.gep(vals[k], [off], source_etype=I8)
            return [*own, self.exc, *t, *bids, *bdim, *grid]

        def inner(t: list) -> None:
            def thread(ti):
                return [ti if k == a else t[k] for k in range(3)]

            def per_t(ti, lane=None):
                b.call(body, args(thread(ti), lane))

            def edge_t(ti):
                if lanes is not None:
                    per_t(ti)
                else:
                    b.call(self.body, args(thread(ti)), attrs=("noinline",))

            if split is None:
                end = hi if jam else opaque(b, hi)
                if lanes is not None:
                    self._lanes(b, lo, end, lanes[0], per_t)
                else:
                    counted_loop(b, fn, lo, end, "t", per_t, jam=jam)
                return
            env = {id(p): v for p, v in zip(split.body.args, args(thread(zero)))}
            rows = not jam  # unroll-and-jam wants the row guards unswitched instead
            s_lo, s_hi = split.bounds(b, env, hi, rows=rows)
            end = hi
            if not jam:  # (an asm call in the loop around stops unroll-and-jam)
                s_lo, s_hi, end = opaque(b, s_lo), opaque(b, s_hi), opaque(b, hi)

            def fast_t(ti, lane=None):
                split.assume(b, env, ti, rows=rows)
                per_t(ti, lane)

            # The edges hold the few threads a guard turns away.
            counted_loop(b, fn, lo, s_lo, "t.pre", edge_t, plain=True)
            if lanes is not None:
                self._lanes(b, s_lo, s_hi, lanes[0], fast_t)
            else:
                counted_loop(b, fn, s_lo, s_hi, "t", fast_t, jam=jam)
            counted_loop(b, fn, s_hi, end, "t.post", edge_t, plain=True)

        def outer2(t2):
            def outer1(t1):
                t = [zero] * 3
                t[self.outer[0]], t[self.outer[1]] = t2, t1
                inner(t)

            counted_loop(b, fn, zero, opaque(b, bdim[self.outer[1]]), "t1", outer1)

        counted_loop(b, fn, zero, opaque(b, bdim[self.outer[0]]), "t2", outer2)

        status = b.load_atomic(self.exc, "monotonic", 8, typ=I64)
        go = b.and_(b.icmp_signed("<", nxt, self.end), b.icmp_unsigned("==", status, zero))
        blk.add_incoming(nxt, b.block)
        b.cbranch(go, head, done)

    def _lanes(self, b: ir.IRBuilder, lo, hi, count: int, per_t) -> None:
        """[lo, hi) with every thread ``t`` at lane ``t % count``: the few threads before the
        first multiple of ``count`` and after the last, and between them groups of ``count``
        threads, lanes 0 to count - 1, as straight-line code."""
        mask = ir.Constant(I64, -count)
        a_lo = _smin(b, hi, b.and_(b.add(lo, ir.Constant(I64, count - 1)), mask))
        a_hi = _smax(b, a_lo, b.and_(hi, mask))

        def group(t0):
            for lane in range(count):
                per_t(b.add(t0, ir.Constant(I64, lane)) if lane else t0, lane)

        counted_loop(b, self.fn, lo, a_lo, "t.peel", per_t, plain=True)
        counted_loop(b, self.fn, a_lo, a_hi, "t", group, step=count)
        counted_loop(b, self.fn, a_hi, hi, "t.tail", per_t, plain=True)
