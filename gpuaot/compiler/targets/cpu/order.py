"""The thread loop order: which thread axis the entry's innermost loop walks, read from the body.

    order = Order.analyse(body, hidden)   # hidden: the index of the body's first hidden param
    has_loop(body)                        # a cycle in its control flow (or a callee's)
    order.inner                           # 0, 1, 2: x, y or z innermost
    order.merge                           # the body sees that axis only as its grid index
    jam_count(body, hidden, order.inner)  # threads to unroll and jam (a body with loops)

On the CPU a block's threads run in any order the compiler likes: there is no barrier there
(kernels that synchronise are GPU-only), so the entry may walk them in whichever order makes
the innermost accesses unit-stride. Most kernels follow the x axis along the contiguous
dimension (``j, i = ga.grid(2)``, ``out[i, j]``), but much numba-cuda code is written
``i, j = ga.grid(2)``: there y follows the row, and an x-innermost loop strides through memory.

**Which axis.** Each load, store and atomic of the body whose address is ``base[index]``
(``base`` a parameter, an array's data) votes for the thread axes in which ``index`` moves by
exactly one element per thread (its coefficient in that axis' thread index is ±1, read with
:class:`.xsplit._Linear`). The axis with the most votes is walked innermost; x wins ties, so
a kernel that does not say otherwise keeps the order it always had.

**Whole rows of blocks.** A block's extent along the chosen axis can be short (16 threads of
a 16×16 block): too short a loop to vectorise well. When the body uses that axis' thread and
block indices only as ``block * block_dim + thread`` (its grid index, ``ga.grid``), the entry
runs a run of consecutive blocks along the axis (those of one chunk of the launcher) as one
loop, as if they were one block: the body is called with the run's first block ``b0`` and
``thread = g - b0 * block_dim`` for each grid index ``g`` of the run, so it computes
``b0 * block_dim + thread = g``, exactly the index it would have seen. A body that reads
either index on its own (or passes them on: a call, an exception report) keeps the per-block
loops.

Both choices change only the order in which independent threads run, never what a thread
computes (``tests/test_cpu_order.py``).
"""

from __future__ import annotations

from llvmlite import ir

from .xsplit import _Linear, _Resolver

_MEMORY = (ir.LoadInstr, ir.StoreInstr, ir.instructions.AtomicRMW, ir.instructions.CmpXchg)


class Order:
    """The loop order of one kernel body: ``inner`` axis (0 x, 1 y, 2 z), ``merge`` runs."""

    def __init__(self, inner: int = 0, merge: bool = False, votes: tuple = (0, 0, 0)):
        self.inner, self.merge, self.votes = inner, merge, votes

    def __repr__(self) -> str:
        return f"Order(inner={'xyz'[self.inner]}, merge={self.merge}, votes={self.votes})"

    @classmethod
    def analyse(cls, body: ir.Function, hidden: int) -> Order:
        """``hidden``: the index of ``exc`` among the body's parameters (tid.x follows it)."""
        tids = body.args[hidden + 1 : hidden + 4]
        res = _Resolver(body)
        lins = [_Linear(res, t) for t in tids]
        votes = [0, 0, 0]
        for blk in body.blocks:
            for ins in blk.instructions:
                index = _array_index(ins, res)
                if index is None:
                    continue
                for k, lin in enumerate(lins):
                    c = lin.coef(index)
                    if c is not None and c in (1, (1 << index.type.width) - 1):
                        votes[k] += 1
        inner = max(range(3), key=lambda k: (votes[k], -k))
        return cls(inner, _grid_only(body, hidden, inner), tuple(votes))


def jam_count(body: ir.Function, hidden: int, inner: int) -> int:
    """Threads to unroll and jam along the inner axis (a body with loops, :mod:`.pipeline`).

    ``JAM_WIDE`` where every access ``base[index]`` of the body moves by 0 or ±1 element per
    thread of that axis: the jammed threads then read one contiguous run, or one shared
    value, per step of their loops (a matmul's ``B[k, col]`` and ``A[row, k]``), and the
    more of them, the more independent chains hide the additions' latency. ``JAM_COUNT``
    where any access moves further or unknowably (a row sum's ``x[row, k]``): each jammed
    thread streams memory of its own, and a few streams at a time is what the caches and
    prefetchers keep up with. Neither changes what any thread computes.
    """
    from .pipeline import JAM_COUNT, JAM_WIDE

    res = _Resolver(body)
    tid = body.args[hidden + 1 + inner]
    lin = _Moves(res, tid, _thread_dependent(body, tid, res))
    for blk in body.blocks:
        for ins in blk.instructions:
            if not isinstance(ins, _MEMORY) or _is_local(ins, res):
                continue
            index = _array_index(ins, res)
            if index is None:
                return JAM_COUNT  # an access the analysis cannot read
            if lin.coef(index) not in (0, 1, (1 << index.type.width) - 1):
                return JAM_COUNT
    return JAM_WIDE


class _Moves(_Linear):
    """:class:`._Linear`, where a value it cannot read but that does not depend on the thread
    index (a loop's counter, a value computed from it) moves by 0 per thread."""

    def __init__(self, res: _Resolver, tx: ir.Argument, dependent: set[int]):
        super().__init__(res, tx)
        self.dependent = dependent

    def _coef(self, v) -> int | None:
        c = super()._coef(v)
        if c is None and isinstance(v.type, ir.IntType) and id(v) not in self.dependent:
            return 0
        return c


def _thread_dependent(body: ir.Function, tid: ir.Argument, res: _Resolver) -> set[int]:
    """The ids of the values computed from ``tid``, or from memory other than the thread's
    own variables, or by a call (data flow only: a heuristic's input, never a proof)."""
    users = users_of(body)
    loads: dict[int, list] = {}  # a local variable's loads
    todo: list = [tid]
    for blk in body.blocks:
        for ins in blk.instructions:
            if isinstance(ins, ir.LoadInstr) and _is_local(ins, res):
                loads.setdefault(id(_root(ins.operands[0], res)), []).append(ins)
            elif isinstance(ins, (ir.LoadInstr, ir.CallInstr, ir.instructions.AtomicRMW)):
                todo.append(ins)
    dependent: set[int] = set()
    while todo:
        v = todo.pop()
        if id(v) in dependent:
            continue
        dependent.add(id(v))
        for u in users.get(id(v), []):
            if isinstance(u, ir.StoreInstr):
                if u.operands[0] is v:  # stored into a variable: its loads
                    todo.extend(loads.get(id(_root(u.operands[1], res)), []))
            elif not isinstance(u, ir.LoadInstr):
                todo.append(u)
    return dependent


def _root(ptr, res: _Resolver):
    ptr = res.resolve(ptr)
    while isinstance(ptr, ir.GEPInstr):
        ptr = res.resolve(ptr.pointer)
    return ptr


def _address(ins, res: _Resolver):
    return res.resolve(ins.operands[1] if isinstance(ins, ir.StoreInstr) else ins.operands[0])


def _is_local(ins, res: _Resolver) -> bool:
    """Whether a memory access is to the thread's own variables (an alloca, or in one)."""
    return isinstance(_root(_address(ins, res), res), ir.AllocaInstr)


def _array_index(ins, res: _Resolver):
    """The element index of a memory access ``base[index]`` into a parameter, else None."""
    if not isinstance(ins, _MEMORY):
        return None
    ptr = _address(ins, res)
    if not isinstance(ptr, ir.GEPInstr) or len(ptr.indices) != 1:
        return None
    if not isinstance(res.resolve(ptr.pointer), ir.Argument):
        return None
    index = ptr.indices[0]
    return index if isinstance(index.type, ir.IntType) else None


def users_of(fn: ir.Function) -> dict[int, list]:
    """``id(value)`` -> the instructions of ``fn`` that use it (phi incomings included)."""
    users: dict[int, list] = {}
    for blk in fn.blocks:
        for ins in blk.instructions:
            ops = [v for v, _b in ins.incomings] if isinstance(ins, ir.PhiInstr) else ins.operands
            for o in ops:
                users.setdefault(id(o), []).append(ins)
    return users


def _grid_only(body: ir.Function, hidden: int, axis: int) -> bool:
    """Whether the body reads ``tid``/``bid`` of ``axis`` only as ``bid * bdim + tid``."""
    tid, bid, bdim = (body.args[hidden + 1 + 3 * k + axis] for k in range(3))
    muls: set[int] = set()
    users = users_of(body)
    for ins in users.get(id(bid), []):
        if not (
            ins.opname == "mul"
            and not ins.flags
            and {id(o) for o in ins.operands} == {id(bid), id(bdim)}
            and len(ins.operands) == 2
        ):
            return False
        muls.add(id(ins))
    for m in list(muls):
        for ins in users.get(m, []):
            if not _is_grid_add(ins, muls, tid):
                return False
    return all(_is_grid_add(ins, muls, tid) for ins in users.get(id(tid), []))


def _is_grid_add(ins, muls: set, tid) -> bool:
    if ins.opname != "add" or ins.flags or len(ins.operands) != 2:
        return False
    a, c = ins.operands
    return (id(a) in muls and c is tid) or (id(c) in muls and a is tid)


def has_loop(fn: ir.Function, seen: set | None = None) -> bool:
    """Whether a function (or one it calls) has a cycle in its control flow: a loop."""
    seen = set() if seen is None else seen
    if id(fn) in seen or not fn.blocks:
        return False
    seen.add(id(fn))
    for blk in fn.blocks:
        for ins in blk.instructions:
            if isinstance(ins, ir.CallInstr) and isinstance(ins.callee, ir.Function):
                if has_loop(ins.callee, seen):
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
