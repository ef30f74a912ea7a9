"""Three rewrites of emitted PTX that LLVM's NVPTX back end misses.

    ptx = peephole(ptx)           # = index_addresses(merge_scaled_adds(widen_shifts(ptx)))

**widen_shifts.** ``shl.b64 d, a, k`` where ``a`` is ``cvt.u64.u32 a, b`` (a 32-bit value
zero-extended, as an index from ``thread_idx`` is) becomes ``mul.wide.u32 d, b, 2**k``: one
SASS instruction (``IMAD.WIDE.U32``) instead of two (a shift of each half). LLVM selects
``mul.wide`` itself where the extension is in the same basic block as the shift, but
selection sees one block at a time: an index computed in the entry block (for a bounds test)
and scaled in the branch taken is shifted in 64 bits. ptxas does not fuse the two either.

When ``a`` still equals ``zext(b)`` at the shift (the rewrite's one condition): ``a`` and
``b`` are each written by one instruction only (``cvt`` and ``D``), ``D`` comes before the
``cvt`` in the text, and neither lies inside a loop, i.e. between a backward branch and its
target. Then each runs at most once and ``D`` never after the ``cvt`` (getting back to ``D``
takes a backward branch around it), so ``b`` has not changed since ``a`` was made from it.

**merge_scaled_adds.** An address ``base + (row << k) + (col << k)`` (LLVM splits a GEP's
index so that ``col << k`` is shared by the addresses of several arrays) becomes
``base + ((row + col) << k)``, the same value modulo 2**64: the shifted column, a 64-bit
pair, then dies at its last other use instead of living on to the store, which is what
costs numba-cuda's 2D kernels none of ptxas's registers and gpuaot's two (``stencil5``: 22
registers to 20). The three instructions ``s = row << k``, ``t = base + s``,
``d = t + (col << k)`` become ``s = row + col``, ``t = s << k``, ``d = base + t``, where
``s`` and ``t`` are each written once and read once (by the next of the three), ``col``'s
shift is ``shl.b64 c2, col, k``, ``col``, ``c2`` and ``base`` are each written once outside
every loop (so each has one value, ever), and ``col``'s write comes before the first of the
three with no label between (so every path to it has written ``col``).

**index_addresses.** A loop that steps an index ``i += c`` and, beside it, a pointer
``p += c << k`` that started as ``base + (i << k)`` (loop strength reduction's second
induction variable: a grid-stride loop's ``x[i]``, a tiled loop's ``A[row, t + tx]``) keeps
two 64-bit pairs alive around the loop where one suffices, because the index is kept anyway
(the loop's test reads it). Each read of ``p`` in the loop becomes a read of ``base + (i <<
k)``, computed just before it into ``p``; the pointer's step, its start and what only they
read go. The histogram's grid-stride loop: 19 registers to 16 (numba-cuda's PTX: 18).

It applies where ``p == base + (i << k)`` holds at every read: ``p`` is written twice, by
its start ``base + t`` (``t = i << k``, written once) before the loop and by its step in the
loop; ``i`` is written once in the loop (its step) and otherwise only before ``t``; the two
steps lie in one block (no label, branch or read of ``p`` between them), so outside that
window either both or neither have run, and their strides are ``c`` and ``c << k``
(immediates, or registers written once outside every loop, the second ``shl.b64`` of the
first); ``base`` is written once, before the start; every read of ``p`` is in the loop;
from the start to the loop there is no label; and no branch from before the start or after
the loop enters the loop. A loop is the span of backward branches that overlap.

What is read, conservatively: a function body is a ``{`` line to a ``}`` line; a register
written is an instruction's first operand, or any register inside ``{...}`` or inline
assembly (counted as written, so that such a register is never used); a backward branch is
``bra`` to a label above it. A body with an indirect branch (``brx.idx``) is left alone.
"""

from __future__ import annotations

import re

_WRITE = re.compile(r"^\s*(?:@!?%\w+\s+)?[a-z][\w.]*\s+(%\w+)")
_BRACED = re.compile(r"\{([^}]*)\}")
_REG = re.compile(r"%\w+")
_LABEL = re.compile(r"^(\$?[\w$]+):")
_BRANCH = re.compile(r"^\s*(?:@!?%\w+\s+)?bra(?:\.uni)?\s+(\$?[\w$]+);")
_ZEXT = re.compile(r"^\tcvt\.u64\.u32\s+(%rd\d+), (%r\d+);$")
_SHL = re.compile(r"^\tshl\.b64\s+(%rd\d+), (%rd\d+), (\d+);$")
_ADD = re.compile(r"^\tadd\.s64\s+(%rd\d+), (%rd\d+), (%rd\d+);$")
_STEP = re.compile(r"^\tadd\.s64\s+(%rd\d+), (%rd\d+), (%rd\d+|-?\d+);$")
_JUMP = re.compile(r"^\s*(?:@!?%\w+\s+)?(?:bra|brx|ret|exit|call|trap)\b")
_RD_DECL = re.compile(r"^\t\.reg \.b64 \t%rd<(\d+)>;$")
_DELETED = "\0"  # a line index_addresses removed (dropped once the body is rewritten)
_ASM_BEGIN = "// begin inline asm"
_ASM_END = "// end inline asm"


def peephole(ptx: str) -> str:
    """The three rewrites, in order."""
    return index_addresses(merge_scaled_adds(widen_shifts(ptx)))


def widen_shifts(ptx: str) -> str:
    """``ptx`` with each 64-bit shift of a zero-extended 32-bit value a ``mul.wide.u32``."""
    return _each_body(ptx, _widen_body)


def merge_scaled_adds(ptx: str) -> str:
    """``ptx`` with each ``base + (a << k) + (c << k)`` as ``base + ((a + c) << k)``."""
    return _each_body(ptx, _merge_body)


def index_addresses(ptx: str) -> str:
    """``ptx`` with a loop's pointer that moves with its index computed from the index."""
    for _ in range(64):  # one rewrite per body per pass: each pass reads the bodies again
        out = _each_body(ptx, _index_body)
        if out == ptx:
            break
        ptx = "\n".join(line for line in out.split("\n") if line != _DELETED)
    return ptx


def _each_body(ptx: str, rewrite) -> str:
    lines = ptx.split("\n")
    start = None
    for k, line in enumerate(lines):
        if line == "{":
            start = k + 1
        elif line == "}" and start is not None:
            body = _Body.read(lines, range(start, k))
            if body is not None:
                rewrite(lines, body)
            start = None
    return "\n".join(lines)


class _Body:
    """Who writes and reads each register of one function body, and where its loops are."""

    def __init__(self, lines, body, writes, reads, loops):
        self.lines, self.range = lines, body
        self.writes: dict[str, list[int]] = writes
        self.reads: dict[str, list[int]] = reads
        self.loops: list[tuple[int, int]] = loops  # (target, branch) of each backward branch

    @classmethod
    def read(cls, lines: list[str], body: range) -> _Body | None:
        writes: dict[str, list[int]] = {}
        reads: dict[str, list[int]] = {}
        labels: dict[str, int] = {}
        in_asm = False
        for k in body:
            line = lines[k]
            if "brx.idx" in line:
                return None
            if _ASM_BEGIN in line or _ASM_END in line:
                in_asm = _ASM_BEGIN in line
                continue
            code = line.split("//", 1)[0]
            used = _REG.findall(code)
            regs = list(used) if in_asm else []
            first = _WRITE.match(code)
            if first:
                regs.append(first.group(1))
                used.remove(first.group(1))
            for braced in _BRACED.findall(code):
                regs += _REG.findall(braced)
            for reg in regs:
                writes.setdefault(reg, []).append(k)
            for reg in used:
                reads.setdefault(reg, []).append(k)
            label = _LABEL.match(line)
            if label:
                labels[label.group(1)] = k
        loops = []
        for k in body:
            branch = _BRANCH.match(lines[k])
            if branch and labels.get(branch.group(1), k + 1) <= k:
                loops.append((labels[branch.group(1)], k))
        return cls(lines, body, writes, reads, loops)

    def once(self, k: int) -> bool:
        """Line ``k`` is outside every loop: it runs at most once."""
        return not any(target <= k <= back for target, back in self.loops)

    def straight(self, a: int, b: int) -> bool:
        """Line ``a`` comes before line ``b`` with no label between them: every path to
        ``b`` runs ``a`` first (none can jump in between)."""
        return a < b and not any(_LABEL.match(self.lines[k]) for k in range(a + 1, b + 1))

    def def_line(self, reg: str) -> int | None:
        """The one line that writes ``reg``, or None."""
        at = self.writes.get(reg, [])
        return at[0] if len(at) == 1 else None

    def read_only_at(self, reg: str, k: int) -> bool:
        """``reg`` is written once and read by line ``k`` alone."""
        return self.def_line(reg) is not None and self.reads.get(reg) == [k]


def _widen_body(lines: list[str], body: _Body) -> None:
    for k in body.range:
        shl = _SHL.match(lines[k])
        if not shl or not 0 < int(shl.group(3)) < 32:
            continue
        dest, wide, shift = shl.groups()
        zext_at = body.def_line(wide)
        zext = _ZEXT.match(lines[zext_at]) if zext_at is not None else None
        if not zext:
            continue
        narrow = zext.group(2)
        d = body.def_line(narrow)
        if d is not None and d < zext_at and body.once(d) and body.once(zext_at):
            lines[k] = f"\tmul.wide.u32 \t{dest}, {narrow}, {1 << int(shift)};"


def _merge_body(lines: list[str], body: _Body) -> None:
    for k in body.range:
        if _merge_at(lines, body, k):
            body = _Body.read(lines, body.range)  # (the rewrite moved reads: who reads what)
            assert body is not None  # (read once already: it has no brx.idx)


def _merge_at(lines: list[str], body: _Body, k: int) -> bool:
    """Rewrite the three instructions ending at line ``k`` (``d = t + c2``) if they qualify."""
    last = _ADD.match(lines[k])
    if not last:
        return False
    dest, x, y = last.groups()
    for t, c2 in ((x, y), (y, x)):
        c2_at, t_at = body.def_line(c2), body.def_line(t)
        if c2_at is None or t_at is None or not body.read_only_at(t, k):
            continue
        col_shl, mid = _SHL.match(lines[c2_at]), _ADD.match(lines[t_at])  # t = base + s
        if not col_shl or not mid:
            continue
        col, shift = col_shl.group(2), col_shl.group(3)
        col_at = body.def_line(col)
        for base, s in (mid.group(2, 3), mid.group(3, 2)):
            s_at, base_at = body.def_line(s), body.def_line(base)
            row_shl = _SHL.match(lines[s_at]) if s_at is not None else None
            if (
                not row_shl
                or row_shl.group(3) != shift
                or not body.read_only_at(s, t_at)
                or col_at is None
                or base_at is None
                or not (body.once(col_at) and body.once(c2_at) and body.once(base_at))
                or not body.straight(col_at, s_at)
            ):
                continue
            lines[s_at] = f"\tadd.s64 \t{s}, {row_shl.group(2)}, {col};"
            lines[t_at] = f"\tshl.b64 \t{t}, {s}, {shift};"
            lines[k] = f"\tadd.s64 \t{dest}, {base}, {t};"
            return True
    return False


def _index_body(lines: list[str], body: _Body) -> None:
    """The first qualifying pointer of the body's loops, rewritten (at most one)."""
    spans: list[list[int]] = []
    for lo, hi in sorted(body.loops):
        if spans and lo <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], hi)
        else:
            spans.append([lo, hi])
    if not spans:
        return
    labels = {m.group(1): k for k in body.range if (m := _LABEL.match(lines[k]))}
    jumps = [(k, labels.get(m.group(1))) for k in body.range if (m := _BRANCH.match(lines[k]))]
    for lo, hi in spans:
        entered_from = [k for k, to in jumps if to is not None and lo <= to <= hi]
        for k in range(lo, hi + 1):
            step = _STEP.match(lines[k])
            if step and step.group(1) == step.group(2):
                if _index_at(lines, body, (lo, hi), entered_from, k):
                    return


def _index_at(lines, body: _Body, loop, entered_from, pi: int) -> bool:
    lo, hi = loop
    p, _, c1 = _STEP.match(lines[pi]).groups()
    writes = body.writes.get(p, [])
    if len(writes) != 2 or writes[1] != pi or not writes[0] < lo:
        return False
    pa = writes[0]
    start = _ADD.match(lines[pa])
    if not start or _label_between(lines, pa, lo - 1):
        return False
    if any(not pa <= k <= hi for k in entered_from):
        return False
    reads = [r for r in body.reads.get(p, []) if r != pi]
    if any(not lo <= r <= hi for r in reads):
        return False
    for base, t in (start.group(2, 3), start.group(3, 2)):
        ta, ba = body.def_line(t), body.def_line(base)
        shl = _SHL.match(lines[ta]) if ta is not None else None
        if not shl or ba is None or not (ba < pa and body.once(ba)):
            continue
        i, k = shl.group(2), int(shl.group(3))
        if not (0 < k < 64 and p not in (i, base) and ta < pa and body.straight(ta, pa)):
            continue
        inside = [w for w in body.writes.get(i, []) if lo <= w <= hi]
        if len(inside) != 1 or any(w >= ta and not lo <= w <= hi for w in body.writes[i]):
            continue
        ii = inside[0]
        istep = _STEP.match(lines[ii])
        if not istep or istep.group(1) != i or istep.group(2) != i:
            continue
        c2 = istep.group(3)
        a, b = min(pi, ii), max(pi, ii)
        window = range(a + 1, b)
        if _label_between(lines, a, b) or any(_JUMP.match(lines[j]) for j in range(a, b)):
            continue
        if any(r in window for r in reads) or not _scaled(body, lines, c1, c2, k, (p, i)):
            continue
        _rewrite_index(lines, body, p, i, base, k, reads, (pa, pi, ta), c1)
        return True
    return False


def _label_between(lines: list[str], a: int, b: int) -> bool:
    """A label on a line in ``(a, b]``."""
    return any(_LABEL.match(lines[j]) for j in range(a + 1, b + 1))


def _scaled(body: _Body, lines, c1: str, c2: str, k: int, regs) -> bool:
    """``c1 == c2 << k`` at every step: immediates, or registers with one value each."""
    if not c1.startswith("%") and not c2.startswith("%"):
        return (int(c1) - (int(c2) << k)) % (1 << 64) == 0
    if not (c1.startswith("%") and c2.startswith("%")) or c1 in regs or c2 in regs:
        return False
    c1_at, c2_at = body.def_line(c1), body.def_line(c2)
    if c1_at is None or c2_at is None or not (body.once(c1_at) and body.once(c2_at)):
        return False
    shl = _SHL.match(lines[c1_at])
    return bool(shl) and shl.group(2) == c2 and int(shl.group(3)) == k


def _rewrite_index(lines, body: _Body, p, i, base, k, reads, dead, c1) -> None:
    decl = next(j for j in body.range if _RD_DECL.match(lines[j]))
    tmp = f"%rd{int(_RD_DECL.match(lines[decl]).group(1))}"
    lines[decl] = f"\t.reg .b64 \t%rd<{int(tmp[3:]) + 1}>;"
    for r in reads:
        lines[r] = f"\tshl.b64 \t{tmp}, {i}, {k};\n\tadd.s64 \t{p}, {base}, {tmp};\n{lines[r]}"
    pa, pi, ta = dead
    lines[pa] = lines[pi] = _DELETED
    t = _SHL.match(lines[ta]).group(1)
    if body.reads.get(t) == [pa]:
        lines[ta] = _DELETED
    c1_at = body.def_line(c1) if c1.startswith("%") else None
    if c1_at is not None and body.reads.get(c1) == [pi]:
        lines[c1_at] = _DELETED
