"""The entry points: the loops that run a kernel body for each thread of a range of blocks.

A kernel becomes one exported C function that runs a range of blocks::

    void gpuaot_cpu_<mod>__<name>(void **args, int64_t *dims, int64_t begin, int64_t end,
                                  int64_t *exc)

``args`` points at each flattened parameter (the GPU's kernelParams layout), ``dims`` is
(grid x, y, z, block x, y, z); the launcher splits [0, blocks) over threads. Inside, the thread
loops call the kernel body, inlined, so the x loop is what the vectoriser sees. A host function
becomes ``void gpuaot_host_<mod>__<name>(void **args, void *ret, int64_t *exc)``.

What the entry does so that its inner loop vectorises well (each part explained where it is
built):

* **loop order** (:class:`.order.Order`, :class:`.nest.Nest`): the thread axis along which the
  body's accesses are unit-stride runs innermost (x, unless another axis wins), and where the
  body sees that axis only as its grid index, a chunk's run of blocks along it is one loop.
  (Below, "x" is that inner axis.)
* **x-range split** (:class:`.xsplit.XSplit`): the body's range guards (``if i < n``) are moved
  out of the x loop: per row, the threads they let through run in a loop that states them with
  ``llvm.assume``, so the vectoriser sees straight-line code, not masked loads and stores;
  the threads at the edges call the body out of line.
* **restrict copy + unroll-and-jam**: a body with loops of its own (a row sum, a dot product)
  cannot be vectorised along x, whose loop is not innermost. If the arrays do not overlap
  (checked once per launch), a ``noalias`` copy of the body runs, and ``optimize``
  (:mod:`.pipeline`) unrolls and jams its x loop: 8 or 32 threads (:func:`.order.jam_count`)
  advance in lock step, each adding in its own order (no reassociation), and SLP packs them
  into vectors.
* **privatised atomics** (:mod:`.privatize`): a kernel whose atomics into an array only
  combine also exports ``<entry>$p`` (same signature; those atomics become plain updates of
  the private copies the run time passes in its ``args``) and ``<entry>$pinfo``
  (``void (int64_t *out)``: the count, then (parameter index, operation code) per array).
"""

from __future__ import annotations

from llvmlite import ir

from ....bundle.abi import (
    CPU_DIMS,
    STRIDED_LAYOUT,
    array_abi,
    cpu_kernel_symbol,
    host_function_symbol,
)
from ....lang.types import ArrayType, materialize, none
from ...frontend.typed import TypedFunction
from ...lower.emitter import I1, I64, PTR, VOID
from ...lower.lowering import FunctionLowering, ModuleBuilder
from . import privatize
from .emitter import HIDDEN
from .nest import Nest
from .order import Order, has_loop, jam_count
from .xsplit import XSplit, _smax, _smin


def _load_args(b: ir.IRBuilder, args_ptr, types: list[ir.Type]) -> list[ir.Value]:
    out = []
    for k, ty in enumerate(types):
        slot = b.load(b.gep(args_ptr, [ir.Constant(I64, k)], source_etype=PTR), typ=PTR)
        out.append(b.load(slot, typ=ty))
    return out


def kernel_entry(mb: ModuleBuilder, tf: TypedFunction) -> str:
    body = mb.function(tf, name=f"{tf.symbol}.body")
    body.attributes.add("alwaysinline")
    name = cpu_kernel_symbol(tf.symbol)
    types = [materialize(t) for t in tf.arg_types]
    fn, b, nest = _entry(mb, name, types, body)
    arrays = _arrays(types, nest.vals)
    done = fn.append_basic_block("blk.done")
    if not arrays or not has_loop(body):
        nest.emit(b, body, done, split=True)
    else:
        # A body with loops of its own gets its x loop unrolled and jammed (see ``optimize``),
        # which needs to know the arrays do not overlap: checked here, once per launch, to
        # run a copy of the body whose array pointers are ``noalias``; arrays that do
        # overlap run the plain body, threads strictly one after another.
        restrict = _copy(mb, tf, body, "restrict")
        for k, *_ in arrays:
            restrict.args[k].add_attribute("noalias")
        jam = jam_count(body, len(nest.vals), nest.inner)
        if len(arrays) == 1:
            nest.emit(b, restrict, done, split=True, jam=jam)
        else:
            fast = fn.append_basic_block("restrict")
            general = fn.append_basic_block("general")
            b.cbranch(_disjoint(b, arrays), fast, general)
            b.position_at_end(fast)
            nest.emit(b, restrict, done, split=True, jam=jam)
            b.position_at_end(general)
            nest.emit(b, body, done)
    b.position_at_end(done)
    b.ret_void()
    params = [(p, k, t) for p, (k, t, *_) in zip(_array_params(types), arrays)]
    found = privatize.privatizable(body, params)
    if found:
        _private_entry(mb, tf, name, types, body, found)
    return name


def _entry(mb: ModuleBuilder, name: str, types: list, body: ir.Function):
    """``void name(void **args, int64_t *dims, int64_t begin, int64_t end, int64_t *exc)``:
    the function, a builder in its entry block, and the loop nest over its arguments."""
    fn = ir.Function(mb.module, ir.FunctionType(VOID, [PTR, PTR, I64, I64, PTR]), name)
    args_ptr, dims_ptr, begin, end, exc = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    vals = _load_args(b, args_ptr, [p for t in types for p in mb.em.param_types(t)])
    dims = [
        b.load(b.gep(dims_ptr, [ir.Constant(I64, k)], source_etype=I64), typ=I64)
        for k in range(len(CPU_DIMS))
    ]
    order = Order.analyse(body, len(vals))
    split = XSplit.analyse(body, len(vals) + 1 + order.inner)
    return fn, b, Nest(fn, exc, vals, dims, begin, end, body, order, split)


def _private_entry(mb, tf, name: str, types: list, body: ir.Function, found: list) -> None:
    """``<name>$p``, the entry the run time calls with private copies of the ``found`` arrays
    (:mod:`.privatize`), and ``<name>$pinfo``, which tells it which arrays those are.

    The loops live in a function of their own, not inlined, whose private pointers are
    ``noalias``: the run time's copies overlap nothing, and saying so for the whole nest (not
    per inlined body) lets the threads of a group of lanes be packed into vectors.
    """
    fn, b, outer = _entry(mb, name + privatize.PRIVATE_SUFFIX, types, body)
    vals, dims = outer.vals, outer.dims
    loops = ir.Function(
        mb.module,
        ir.FunctionType(VOID, [v.type for v in vals] + [I64] * (len(CPU_DIMS) + 2) + [PTR]),
        f"{name}{privatize.PRIVATE_SUFFIX}.loops",
    )
    loops.linkage = "internal"
    loops.attributes.add("noinline")
    for _p, k, _op in found:
        loops.args[k].add_attribute("noalias")
    b.call(loops, [*vals, *dims, outer.begin, outer.end, outer.exc])
    b.ret_void()
    n = len(vals)
    nd = len(CPU_DIMS)
    lv, ld, (lbegin, lend, lexc) = loops.args[:n], loops.args[n : n + nd], loops.args[n + nd :]
    nest = Nest(loops, lexc, list(lv), list(ld), lbegin, lend, body, outer.order, outer.split)
    b = ir.IRBuilder(loops.append_basic_block("entry"))
    lanes = privatize.lane_count(body, found, len(vals) + 1 + outer.order.inner)
    private = _copy(mb, tf, body, "private")
    privatize.rewrite_private(private, found, lanes)
    done = loops.append_basic_block("blk.done")
    ptrs = [(k, types[p].dtype.itemsize) for p, k, _op in found]
    nest.emit(b, private, done, split=True, lanes=(lanes, ptrs) if lanes > 1 else None)
    b.position_at_end(done)
    b.ret_void()
    privatize.info_function(mb.module, name + privatize.INFO_SUFFIX, found, lanes)


def _array_params(types: list) -> list[int]:
    return [p for p, t in enumerate(types) if isinstance(t, ArrayType)]


def _arrays(types: list, vals: list) -> list[tuple]:
    """``(index of the data pointer in vals, type, data, shape, strides)`` per array param."""
    out, k = [], 0
    for t in types:
        if isinstance(t, ArrayType):
            n = t.ndim
            strides = vals[k + 1 + n : k + 1 + 2 * n] if t.layout == STRIDED_LAYOUT else None
            out.append((k, t, vals[k], vals[k + 1 : k + 1 + n], strides))
            k += len(array_abi(n, t.layout))
        else:
            k += 1
    return out


def _copy(mb: ModuleBuilder, tf: TypedFunction, body: ir.Function, what: str) -> ir.Function:
    """The body lowered again, as ``<body>.<what>`` (the callees are shared)."""
    copy = ir.Function(mb.module, body.function_type, f"{body.name}.{what}")
    copy.linkage = "internal"
    copy.attributes.add("alwaysinline")
    FunctionLowering(mb, tf, copy).lower()
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


def host_entry(mb: ModuleBuilder, tf: TypedFunction) -> str:
    body = mb.function(tf, name=f"{tf.symbol}.body")
    name = host_function_symbol(tf.symbol)
    fn = ir.Function(mb.module, ir.FunctionType(VOID, [PTR, PTR, PTR]), name)
    args_ptr, ret_ptr, exc = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    params = [p for t in tf.arg_types for p in mb.em.param_types(materialize(t))]
    vals = _load_args(b, args_ptr, params)
    # one thread of one block: its indices 0, the block's and grid's sizes 1
    zero, one = ir.Constant(I64, 0), ir.Constant(I64, 1)
    hidden = [exc if h == "exc" else zero if h[:3] in ("tid", "bid") else one for h in HIDDEN]
    result = b.call(body, [*vals, *hidden])
    if materialize(tf.return_type) is not none:
        b.store(result, ret_ptr)
    b.ret_void()
    return name
