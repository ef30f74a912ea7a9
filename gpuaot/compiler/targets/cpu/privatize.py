"""Privatised atomics: arrays a kernel only combines into, given a private copy per chunk.

    found = privatizable(body, params)   # [(param index, flat index, op)], read from the IR
    lanes = lane_count(body, found, tid) # LANES for a small body updating fixed cells, else 1
    rewrite_private(copy, found, lanes)  # a copy of the body: those atomics as plain updates
    info_function(module, name, found, lanes)   # void <name>(int64_t *out): the table

A kernel whose atomics only combine (``ga.atomic_add(bins, k, 1)``, the old value unused)
pays, executed literally, one read-modify-write per thread, contended where the threads
meet on one address. On the CPU such an array can be privatised instead: each chunk of
blocks gets a private copy initialised to the operation's identity, updates it with plain
loads and stores, and the copies are combined into the array once, at the end.

**Which arrays.** An array parameter qualifies when every use of its data pointer in the
body is an address ``data[index]`` used only by ``atomicrmw`` instructions of one operation,
whose results are unused: ``add``, ``and``, ``or``, ``xor``, signed ``min``/``max`` on signed
elements, unsigned ``umin``/``umax`` on unsigned ones, and ``fadd`` on floats. Anything else
(a load or store of the array, an atomic whose old value is used, a compare-and-swap, an
exchange, the pointer passed to a call or stored) keeps the kernel's atomics exact. The IR is
read rather than the source, so this holds whatever the lowering's form of an atomic.

**Lanes.** A chunk runs its threads one after another, so a float sum into one cell is one
chain of dependent additions: a few cycles each. A small body (no loops, no calls) whose
privatised atomics update fixed cells (the same for every thread of the inner loop) gets
``LANES`` copies per chunk instead, interleaved (element ``e`` of lane ``l`` at ``e * LANES +
l``): the thread whose inner-loop index is ``t`` updates lane ``t % LANES``, and the entry
runs ``LANES`` consecutive threads, lanes 0 to ``LANES - 1``, as straight-line code in a
function whose private pointers are ``noalias`` (:func:`.entry._private_entry`), so their
chains are independent and SLP packs them into vector additions. Each lane still adds in
thread order; no addition is reassociated, so every CPU level computes the same.

**The order.** The run time (``gpuaot.runtime.cpu``) decides per launch whether to use the
private entry, and documents the order in which the copies combine (``docs/performance.md``).
"""

from __future__ import annotations

from llvmlite import ir

from ....lang.types import ArrayType
from ...lower.emitter import I64, PTR, VOID
from .order import has_loop, users_of
from .xsplit import _Resolver

# The operations that privatise, by their code in the table; the run time reads the same
# tuple (``gpuaot.runtime.cpu._PRIVATE_OPS``): the two must not drift apart.
OPS = ("add", "fadd", "min", "max", "umin", "umax", "and", "or", "xor")
PRIVATE_SUFFIX = "$p"  # the private entry: gpuaot_cpu_<name>$p (same signature)
INFO_SUFFIX = "$pinfo"  # void gpuaot_cpu_<name>$pinfo(int64_t *out): count, lanes, (param, op)...
LANES = 16  # copies per chunk for a small body: a vector of f32 on AVX-512, two on AVX2
_SMALL = 96  # instructions: a body at most this long runs LANES threads as straight-line code


def _signed_ok(op: str, dtype) -> bool:
    kind = dtype.np_dtype.kind
    if op == "fadd":
        return kind == "f"
    if kind not in "iu":
        return False
    if op in ("min", "max"):
        return kind == "i"
    if op in ("umin", "umax"):
        return kind == "u"
    return True


def privatizable(body: ir.Function, arrays: list[tuple]) -> list[tuple[int, int, str]]:
    """``arrays``: (param index, flat index, array type) of each array parameter."""
    users = users_of(body)
    found = []
    for param, k, t in arrays:
        assert isinstance(t, ArrayType)
        op = _combine_only(body.args[k], users)
        if op is not None and _signed_ok(op, t.dtype):
            found.append((param, k, op))
    return found


def _combine_only(data: ir.Argument, users: dict) -> str | None:
    """The one operation every use of ``data`` combines with, or None."""
    ops = set()
    geps = users.get(id(data), [])
    if not geps:
        return None
    for gep in geps:
        if not isinstance(gep, ir.GEPInstr) or gep.pointer is not data:
            return None
        if len(gep.indices) != 1 or gep.indices[0] is data:
            return None
        uses = users.get(id(gep), [])
        if not uses:
            return None
        for rmw in uses:
            if not isinstance(rmw, ir.instructions.AtomicRMW) or rmw.operands[0] is not gep:
                return None
            if rmw.operands[1] is gep or users.get(id(rmw)):
                return None  # the old value is used: it stays an exact atomic
            ops.add(rmw.operation)
    if len(ops) != 1 or not ops <= set(OPS):
        return None
    return ops.pop()


def lane_count(body: ir.Function, found: list[tuple[int, int, str]], tid: int) -> int:
    """``LANES`` for a small body without loops or calls whose privatised atomics all update
    a fixed cell (:func:`_fixed_cells`), 1 for any other.

    Lanes pay where consecutive threads update the same cell: a one-cell sum is one chain of
    dependent additions without them. Where the cell follows the data or the thread (a
    histogram, ``out[i % 3]``), consecutive updates seldom meet, and 16 copies of every
    cell would only crowd the cache (256 bins of i64: 32 KiB a chunk, all of L1).
    """
    n = 0
    for blk in body.blocks:
        for ins in blk.instructions:
            n += 1
            if isinstance(ins, ir.CallInstr) and not ins.callee.name.startswith("llvm."):
                return 1
    if n > _SMALL or has_loop(body) or not _fixed_cells(body, found, tid):
        return 1
    return LANES


def _fixed_cells(body: ir.Function, found: list[tuple[int, int, str]], tid: int) -> bool:
    """Whether every privatised atomic's index is the same for all threads of the inner
    loop: computed from constants and arguments other than the inner thread index (argument
    ``tid``), through variables assigned once, without loading memory or calling anything."""
    ptrs = {id(body.args[k]) for _p, k, _op in found}
    varying = body.args[tid]
    res = _Resolver(body)  # (a variable assigned twice: which value depends on the path)
    seen: dict[int, bool] = {}

    def fixed(v) -> bool:
        v = res.resolve(v)
        if isinstance(v, ir.Constant):
            return True
        if isinstance(v, ir.Argument):
            return v is not varying
        if not isinstance(v, ir.Instruction) or isinstance(
            v, (ir.LoadInstr, ir.CallInstr, ir.PhiInstr, ir.instructions.AtomicRMW)
        ):
            return False  # memory, a call, or a value chosen by the path
        if id(v) not in seen:
            seen[id(v)] = False
            seen[id(v)] = all(fixed(op) for op in v.operands)
        return seen[id(v)]

    for blk in body.blocks:
        for ins in blk.instructions:
            if isinstance(ins, ir.instructions.AtomicRMW):
                gep = ins.operands[0]
                if isinstance(gep, ir.GEPInstr) and id(gep.pointer) in ptrs:
                    if not all(fixed(i) for i in gep.indices):
                        return False
    return True


def rewrite_private(copy: ir.Function, found: list[tuple[int, int, str]], lanes: int) -> None:
    """In a copy of the body, the privatised arrays' atomics become plain updates (of element
    ``index * lanes`` of the lane's copy: the entry points each thread at its lane)."""
    ptrs = {id(copy.args[k]) for _p, k, _op in found}
    for k in {k for _p, k, _op in found}:
        copy.args[k].add_attribute("noalias")  # a private copy: nothing else points into it
    for blk in copy.blocks:
        for ins in list(blk.instructions):
            if not isinstance(ins, ir.instructions.AtomicRMW):
                continue
            gep = ins.operands[0]
            if not isinstance(gep, ir.GEPInstr) or id(gep.pointer) not in ptrs:
                continue
            b = ir.IRBuilder(blk)
            b.position_before(ins)
            ptr, val = ins.operands
            if lanes > 1:
                (index,) = gep.indices
                scaled = b.mul(index, ir.Constant(index.type, lanes))
                ptr = b.gep(gep.pointer, [scaled], source_etype=gep.source_etype)
            old = b.load(ptr, typ=val.type)
            b.store(_combine(b, ins.operation, old, val), ptr)
            blk.instructions.remove(ins)


def _combine(b: ir.IRBuilder, op: str, old, val):
    if op == "add":
        return b.add(old, val)
    if op == "fadd":
        return b.fadd(old, val)  # no fast-math flags: each chunk adds in thread order
    if op in ("and", "or"):
        return getattr(b, f"{op}_")(old, val)
    if op == "xor":
        return b.xor(old, val)
    cmp = b.icmp_unsigned if op[0] == "u" else b.icmp_signed
    keep_old = cmp("<" if op.endswith("min") else ">", old, val)
    return b.select(keep_old, old, val)


def info_function(module: ir.Module, name: str, found: list, lanes: int) -> None:
    """``void name(int64_t *out)``: out[0] = count, out[1] = lanes, then (param index, op
    code) per array."""
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR]), name)
    out = fn.args[0]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    words = [len(found), lanes]
    for param, _k, op in found:
        words += [param, OPS.index(op)]
    for i, w in enumerate(words):
        b.store(ir.Constant(I64, w), b.gep(out, [ir.Constant(I64, i)], source_etype=I64))
    b.ret_void()
