"""One libdevice ``sincosf`` for ``sin(x)`` and ``cos(x)`` of the same ``x``, as NVVM does.

    text = merge_sincos(str(mod))      # None: nothing to merge

``__nv_sinf`` and ``__nv_cosf`` each reduce their argument to a quadrant and a remainder (the
slow Payne-Hanek path keeps a 7-word table in local memory) before one polynomial;
``__nv_sincosf`` reduces once and evaluates both polynomials. They share the reduction and the
polynomials instruction for instruction (libdevice 10); they differ only in how a result is
negated: ``fma(r, -1, 0)`` in sinf/cosf, ``-r`` in sincosf, which differ for ``r = ±0``
alone, the sign of a zero that needs an exactly zero reduced argument in quadrant 1, 2 or 3
(no such float is known). Results are otherwise bit for bit the same.

Runs on the kernel's module before libdevice is linked, after SROA (so that both calls take
the same SSA value, not two loads of one variable): a ``sin``/``cos`` call that dominates a
call of the other on the same operand becomes ``gpuaot.sincosf`` (an always-inline wrapper:
``__nv_sincosf`` into two stack slots, read back) and both results are taken from it. A call
without a partner it dominates, or is dominated by, is left alone: merging there would run
both polynomials where one is needed.
"""

from __future__ import annotations

import re

from .ir_text import NAME, blocks, dominates, dominators, function_bodies

# name: (LLVM type, libdevice sin, cos, sincos, the wrapper gpuaot defines)
SINCOS_KINDS = {"float": ("__nv_sinf", "__nv_cosf", "__nv_sincosf", "gpuaot.sincosf")}
_CALL = re.compile(
    rf"^(\s*)(%{NAME}) = (?:tail |notail )?call (?:[a-z]+ )*(float) "
    rf"@(__nv_sinf|__nv_cosf)\((float [^()]+)\)(?: #\d+)?$"
)


def _wrapper(ty: str, sincos: str, name: str) -> list[str]:
    return [
        f"define internal {{ {ty}, {ty} }} @{name}({ty} %x) alwaysinline {{",
        f"  %s = alloca {ty}, align 8",
        f"  %c = alloca {ty}, align 8",
        f"  call void @{sincos}({ty} %x, ptr %s, ptr %c)",
        f"  %sv = load {ty}, ptr %s, align 8",
        f"  %cv = load {ty}, ptr %c, align 8",
        f"  %r0 = insertvalue {{ {ty}, {ty} }} undef, {ty} %sv, 0",
        f"  %r = insertvalue {{ {ty}, {ty} }} %r0, {ty} %cv, 1",
        f"  ret {{ {ty}, {ty} }} %r",
        "}",
    ]


def merge_sincos(text: str) -> str | None:
    """The module with every dominated sin/cos pair on one operand merged, or None."""
    lines = text.split("\n")
    used: set[str] = set()
    for body in function_bodies(lines):
        used |= _merge_function(lines, body, "%gpuaot.sincos.")
    if not used:
        return None
    added: list[str] = []
    for ty in sorted(used):
        _, _, sincos, name = SINCOS_KINDS[ty]
        if not re.search(rf"^(declare|define) .*@{re.escape(sincos)}\(", text, re.MULTILINE):
            added.append(f"declare void @{sincos}({ty}, ptr, ptr)")
        added.extend(_wrapper(ty, sincos, name))
    return "\n".join([*lines, *added, ""])


def _merge_function(lines: list[str], body: range, prefix: str) -> set[str]:
    """Merge one function's pairs in ``lines``; the types merged. New values are named
    ``prefix`` + a number, unique in the function (Python names have no dots)."""
    calls: dict[tuple[str, str], list[int]] = {}  # (type, operand) -> call lines, in order
    fn: dict[int, str] = {}  # call line -> the function called
    for k in body:
        m = _CALL.match(lines[k])
        if m:
            calls.setdefault((m.group(3), m.group(5)), []).append(k)
            fn[k] = m.group(4)
    pending = {key: ks for key, ks in calls.items() if len({fn[k] for k in ks}) == 2}
    if not pending:
        return set()
    blk = blocks(body, lines)
    block_of = {k: b for b, ks in blk.items() for k in ks}
    idom = dominators(blk, lines)

    def before(a: int, b: int) -> bool:  # the call on line a dominates the one on line b
        ba, bb = block_of[a], block_of[b]
        if ba not in idom or bb not in idom:
            return False  # unreachable
        return a < b if ba == bb else dominates(idom, ba, bb)

    used: set[str] = set()
    fresh = 0
    for (ty, _), ks in pending.items():
        leaders: list[tuple[int, str]] = []  # (line, the merged value)
        for k in ks:
            leader = next((name for at, name in leaders if before(at, k)), None)
            if leader is not None:
                lines[k] = _as_extract(lines[k], ty, leader, define=False)
            elif any(fn[j] != fn[k] and before(k, j) for j in ks):
                leader = f"{prefix}{fresh}"
                fresh += 1
                leaders.append((k, leader))
                lines[k] = _as_extract(lines[k], ty, leader, define=True)
                used.add(ty)
    return used


def _as_extract(line: str, ty: str, merged: str, *, define: bool) -> str:
    """The call on ``line`` as a read of ``merged``'s sin (0) or cos (1) half; ``define``
    also computes ``merged`` there, from the call's operand."""
    m = _CALL.match(line)
    indent, result, fn, arg = m.group(1), m.group(2), m.group(4), m.group(5)
    sin, _, _, wrapper = SINCOS_KINDS[ty]
    pair = f"{{ {ty}, {ty} }}"
    read = f"{indent}{result} = extractvalue {pair} {merged}, {0 if fn == sin else 1}"
    if not define:
        return read
    return f"{indent}{merged} = call {pair} @{wrapper}({arg})\n{read}"
