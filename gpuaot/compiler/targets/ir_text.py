"""Reading a printed LLVM module's structure, for the NVPTX pipeline's own steps (llvmlite can
neither set metadata nor walk a dominator tree): functions, their blocks, successors and
dominance.

    lines = str(mod).split("\\n")
    for body in function_bodies(lines):
        blk = blocks(body, lines)              # label -> its line numbers, entry first
        idom = dominators(blk, lines)          # label -> its immediate dominator

What is read: a ``define ... {`` line opens a body and a lone ``}`` closes it; a block label
sits at the start of a line; a successor is ``label %name`` (only terminators say "label").
"""

from __future__ import annotations

import re

NAME = r'(?:"(?:[^"\\]|\\.)*"|[-\w$.]+)'
BLOCK_LABEL = re.compile(rf"^({NAME}):")
SUCCESSOR = re.compile(rf"label %({NAME})")


def function_bodies(lines: list[str]):
    """The line numbers of each function definition's body."""
    start = None
    for k, line in enumerate(lines):
        if line.startswith("define ") and line.endswith("{"):
            start = k + 1
        elif line == "}" and start is not None:
            yield range(start, k)
            start = None


def blocks(body: range, lines: list[str]) -> dict[str, list[int]]:
    """One function's blocks in order: label → its line numbers (the entry block may have
    no label: its key is "")."""
    out: dict[str, list[int]] = {"": []}
    current = ""
    for k in body:
        label = BLOCK_LABEL.match(lines[k])
        if label:
            current = label.group(1)
            out[current] = []
        elif lines[k].strip():
            out[current].append(k)
    if not out[""]:
        del out[""]
    return out


def successors(blk: dict[str, list[int]], lines: list[str]) -> dict[str, list[str]]:
    """Each block's successors (a terminator may span lines, as a switch does)."""
    return {b: [s for k in ks for s in SUCCESSOR.findall(lines[k])] for b, ks in blk.items()}


def depth_first(succ: dict[str, list[str]], entry: str) -> tuple[list[str], set[str]]:
    """One depth-first walk from ``entry``: the reachable blocks in postorder, and the blocks
    with a retreating edge (an edge to a block still on the walk's path)."""
    order: list[str] = []
    on_path, done, retreating = {entry}, set(), set()
    stack = [(entry, iter(succ[entry]))]
    while stack:
        block, todo = stack[-1]
        nxt = next(todo, None)
        if nxt is None:
            stack.pop()
            on_path.discard(block)
            done.add(block)
            order.append(block)
        elif nxt in on_path:
            retreating.add(block)
        elif nxt not in done:
            on_path.add(nxt)
            stack.append((nxt, iter(succ[nxt])))
    return order, retreating


def dominators(blk: dict[str, list[int]], lines: list[str]) -> dict[str, str]:
    """Each reachable block's immediate dominator (the entry's is itself), by Cooper, Harvey
    and Kennedy's iteration over reverse postorder; unreachable blocks are left out."""
    succ = successors(blk, lines)
    entry = next(iter(blk))
    order, _ = depth_first(succ, entry)
    rank = {b: k for k, b in enumerate(order)}
    preds: dict[str, list[str]] = {b: [] for b in order}
    for b in order:
        for s in succ[b]:
            preds[s].append(b)
    idom = {entry: entry}

    def meet(a: str, b: str) -> str:
        while a != b:
            while rank[a] < rank[b]:
                a = idom[a]
            while rank[b] < rank[a]:
                b = idom[b]
        return a

    changed = True
    while changed:
        changed = False
        for b in reversed(order[:-1]):  # reverse postorder, the entry (last) left out
            done = [p for p in preds[b] if p in idom]
            new = done[0]
            for p in done[1:]:
                new = meet(p, new)
            if idom.get(b) != new:
                idom[b] = new
                changed = True
    return idom


def dominates(idom: dict[str, str], a: str, b: str) -> bool:
    """Whether block ``a`` dominates block ``b`` (every block dominates itself)."""
    while True:
        if a == b:
            return True
        up = idom.get(b, b)
        if up == b:
            return False
        b = up
