"""One rewrite of emitted PTX that LLVM's NVPTX instruction selection misses.

    ptx = widen_shifts(ptx)

``shl.b64 d, a, k`` where ``a`` is ``cvt.u64.u32 a, b`` (a 32-bit value zero-extended, as
an index from ``thread_idx`` is) becomes ``mul.wide.u32 d, b, 2**k``: one SASS instruction
(``IMAD.WIDE.U32``) instead of two (a shift of each half). LLVM selects ``mul.wide`` itself
where the extension is in the same basic block as the shift, but selection sees one block at
a time: an index computed in the entry block (for a bounds test) and scaled in the branch
taken is shifted in 64 bits. ptxas does not fuse the two either.

When ``a`` still equals ``zext(b)`` at the shift (the rewrite's one condition): ``a`` and
``b`` are each written by one instruction only (``cvt`` and ``D``), ``D`` comes before the
``cvt`` in the text, and neither lies inside a loop, i.e. between a backward branch and its
target. Then each runs at most once and ``D`` never after the ``cvt`` (getting back to ``D``
takes a backward branch around it), so ``b`` has not changed since ``a`` was made from it.

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
_ASM_BEGIN = "// begin inline asm"
_ASM_END = "// end inline asm"


def widen_shifts(ptx: str) -> str:
    """``ptx`` with each 64-bit shift of a zero-extended 32-bit value a ``mul.wide.u32``."""
    lines = ptx.split("\n")
    start = None
    for k, line in enumerate(lines):
        if line == "{":
            start = k + 1
        elif line == "}" and start is not None:
            _widen_body(lines, range(start, k))
            start = None
    return "\n".join(lines)


def _widen_body(lines: list[str], body: range) -> None:
    writes: dict[str, list[int]] = {}
    labels: dict[str, int] = {}
    loops: list[tuple[int, int]] = []  # (target, branch) of each backward branch
    in_asm = False
    for k in body:
        line = lines[k]
        if "brx.idx" in line:
            return
        if _ASM_BEGIN in line or _ASM_END in line:
            in_asm = _ASM_BEGIN in line
            continue
        code = line.split("//", 1)[0]
        regs = _REG.findall(code) if in_asm else []
        first = _WRITE.match(code)
        if first:
            regs.append(first.group(1))
        for braced in _BRACED.findall(code):
            regs += _REG.findall(braced)
        for reg in regs:
            writes.setdefault(reg, []).append(k)
        label = _LABEL.match(line)
        if label:
            labels[label.group(1)] = k
    for k in body:
        branch = _BRANCH.match(lines[k])
        if branch and labels.get(branch.group(1), k + 1) <= k:
            loops.append((labels[branch.group(1)], k))

    def once(k: int) -> bool:  # outside every loop: runs at most once
        return not any(target <= k <= back for target, back in loops)

    for k in body:
        shl = _SHL.match(lines[k])
        if not shl or not 0 < int(shl.group(3)) < 32:
            continue
        dest, wide, shift = shl.groups()
        at = writes.get(wide, [])
        zext = _ZEXT.match(lines[at[0]]) if len(at) == 1 else None
        if not zext:
            continue
        zext_at, narrow = at[0], zext.group(2)
        d = writes.get(narrow, [])
        if len(d) == 1 and d[0] < zext_at and once(d[0]) and once(zext_at):
            lines[k] = f"\tmul.wide.u32 \t{dest}, {narrow}, {1 << int(shift)};"
