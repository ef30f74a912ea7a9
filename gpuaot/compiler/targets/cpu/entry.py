"""The entry points: the loops that run a kernel body for each thread of a range of blocks.

A kernel becomes one exported C function that runs a range of blocks::

    void gpuaot_cpu_<mod>__<name>(void **args, int64_t *dims, int64_t begin, int64_t end,
                                  int64_t *exc)

``args`` points at each flattened parameter (the GPU's kernelParams layout), ``dims`` is
(grid x, y, z, block x, y, z); the launcher splits [0, blocks) over threads. Inside, the thread
loops call the kernel body, inlined, so the x loop is what the vectoriser sees. A host function
becomes ``void gpuaot_host_<mod>__<name>(void **args, void *ret, int64_t *exc)``.

What the entry does so that the x loop vectorises well (each part explained where it is built):

* **x-range split** (:class:`.xsplit.XSplit`): the body's range guards (``if i < n``) are moved
  out of the x loop: per row, the threads they let through run in a loop that states them with
  ``llvm.assume``, so the vectoriser sees straight-line code, not masked loads and stores;
  the threads at the edges call the body out of line.
* **restrict copy + unroll-and-jam**: a body with loops of its own (a row sum, a dot product)
  cannot be vectorised along x, whose loop is not innermost. If the arrays do not overlap
  (checked once per launch), a ``noalias`` copy of the body runs, and ``optimize``
  (:mod:`.pipeline`) unrolls and jams its x loop: ``JAM_COUNT`` threads advance in lock step,
  each adding in its own order (no reassociation), and SLP packs them into vectors.
"""

from __future__ import annotations

from llvmlite import ir

from ....lang.types import ArrayType, materialize, none
from ...frontend.typed import TypedFunction
from ...lower.emitter import I1, I64, PTR, VOID
from ...lower.lowering import FunctionLowering, ModuleBuilder
from .pipeline import JAM_MARK
from .xsplit import XSplit, _smax, _smin


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
