"""The x-range split: which of a kernel body's guards to lift out of the entry's x loop.

    split = XSplit.analyse(body, tx_index)   # None: no guard varies along x
    lo, hi = split.bounds(b, env, bdx, rows=True)  # per row: [lo, hi) passes every guard
    split.assume(b, env, tx, rows=True)       # inside [lo, hi): llvm.assume of each guard

An analysis of the body's IR, and a transform of its own: :mod:`.entry` builds the three x
loops around it.
"""

from __future__ import annotations

from llvmlite import ir

from ...lower.emitter import I1, I64, VOID
from .emitter import REPORT

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
