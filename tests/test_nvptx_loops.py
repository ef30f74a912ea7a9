"""After LLVM's loop passes every loop is marked already unrolled, as NVVM does, so ptxas keeps
LLVM's unrolling (``targets/nvptx.py``, ``mark_loops_unrolled``).

Oracles: LLVM's own parser and verifier for the marked module; dominators computed here from
the parsed module's blocks (a back edge's target dominates its source); LLVM's NVPTX printer,
which writes ``.pragma "nounroll"`` only in the header of a loop it finds with the disable on
its latch; ptxas, whose SASS has as many FFMA as the PTX has ``fma.rn`` once it stops
unrolling again.
"""

from __future__ import annotations

import re
import subprocess

import llvmlite.binding as llvm
import pytest
from click.testing import CliRunner

from gpuaot.cli import main
from gpuaot.compiler.targets.nvptx import init_llvm, mark_loops_unrolled
from gpuaot.compiler.targets.nvtools import find_cuobjdump, ptx_to_cubin

DISABLE = '!{!"llvm.loop.unroll.disable"}'
_BASIC_TYPE = '!DIBasicType(name: "int", size: 32, encoding: DW_ATE_signed)'


def _emit(monkeypatch, kit, spec: str, stage: str) -> str:
    monkeypatch.syspath_prepend(str(kit.FIXTURES))
    result = CliRunner().invoke(main, ["emit", spec, "--stage", stage, "--target", "sm_80"])
    assert result.exit_code == 0, result.output
    return result.output


def _back_edges(fn) -> list:
    """(source block, its terminator) for every edge whose target dominates its source."""
    blocks = list(fn.blocks)
    names = [b.name for b in blocks]
    assert all(names) and len(set(names)) == len(names), names  # gpuaot names every block
    succ = {
        b.name: [
            op.name
            for op in list(b.instructions)[-1].operands
            if op.value_kind == llvm.ValueKind.basic_block
        ]
        for b in blocks
    }
    preds = {n: [p for p in names if n in succ[p]] for n in names}
    dom = {n: set(names) for n in names}
    dom[names[0]] = {names[0]}
    changed = True
    while changed:
        changed = False
        for n in names[1:]:
            new = {n} | set.intersection(*(dom[p] for p in preds[n])) if preds[n] else {n}
            if new != dom[n]:
                dom[n], changed = new, True
    return [
        (b, list(b.instructions)[-1]) for b in blocks if any(s in dom[b.name] for s in succ[b.name])
    ]


def _disabled(text: str, terminator) -> bool:
    """Whether the terminator's loop ID lists a node that is exactly ``unroll.disable``."""
    loop = re.search(r"!llvm\.loop (!\d+)", str(terminator))
    if loop is None:
        return False
    node = re.search(rf"^{loop.group(1)} = distinct !\{{(.*)\}}$", text, re.M)
    return any(
        re.search(rf"^{re.escape(op)} = (.*)$", text, re.M).group(1) == DISABLE
        for op in node.group(1).split(", ")[1:]
    )


def test_every_loop_of_a_runtime_loop_kernel_is_marked(monkeypatch, kit):
    """matmul's k loop is runtime-unrolled by 4: a main loop and a remainder, both marked."""
    text = _emit(monkeypatch, kit, "example.kernels:matmul", "opt")
    init_llvm()
    mod = llvm.parse_assembly(text)
    mod.verify()
    (fn,) = [f for f in mod.functions if not f.is_declaration]
    edges = _back_edges(fn)
    assert len(edges) == 2, [b.name for b, _ in edges]
    assert all(_disabled(text, t) for _, t in edges), [str(t) for _, t in edges]
    # The unrolled main loop: four multiply-adds a trip (LLVM's choice, kept).
    assert sum(str(i).count("fmul contract") for i in edges[0][0].instructions) == 4


def test_ptx_has_nounroll_per_loop_and_ptxas_keeps_llvms_unrolling(monkeypatch, kit, tmp_path):
    ptx = _emit(monkeypatch, kit, "example.kernels:matmul", "ptx")
    lines = ptx.splitlines()
    labels = {ln[:-1]: k for k, ln in enumerate(lines) if re.match(r"^\$L__BB\d+_\d+:$", ln)}
    headers = {
        m.group(1)
        for k, ln in enumerate(lines)
        if (m := re.search(r"\bbra(?:\.uni)?\s+(\$L__BB\d+_\d+);", ln)) and labels[m.group(1)] < k
    }
    assert len(headers) == 2
    assert ptx.count('.pragma "nounroll";') == 2
    assert all(lines[labels[h] + 1].strip() == '.pragma "nounroll";' for h in headers)

    tool = find_cuobjdump()
    if tool is None:
        pytest.skip("cuobjdump wheel (nvidia-cuda-cuobjdump) not installed")
    path = tmp_path / "k.cubin"
    path.write_bytes(ptx_to_cubin(ptx, "sm_80"))
    sass = subprocess.run(
        [str(tool), "-sass", str(path)], capture_output=True, text=True, check=True
    ).stdout
    ffma = len(re.findall(r"\bFFMA\b", sass))
    assert ptx.count("fma.rn.f32") == 5  # 4 in the unrolled loop, 1 in the remainder
    assert ffma == 5, sass  # ptxas unrolling again made it 33


LOOP_AFTER_EXIT = """
define void @f(i64 %n, ptr %p) {
entry:
  %go = icmp sgt i64 %n, 0
  br i1 %go, label %body, label %exit

exit:
  ret void

body:
  %i = phi i64 [ 0, %entry ], [ %j, %latch ]
  %j = add i64 %i, 1
  switch i64 %j, label %latch [
    i64 7, label %seven
  ]

seven:
  store i64 %j, ptr %p
  br label %latch

latch:
  %more = icmp slt i64 %j, %n
  br i1 %more, label %body, label %done, !llvm.loop !1

done:
  br label %exit
}

define void @g(i64 %n) {
  br label %spin

spin:
  %i = phi i64 [ 0, %0 ], [ %j, %spin ]
  %j = add i64 %i, 1
  %c = icmp eq i64 %j, %n
  switch i1 %c, label %spin [
    i1 true, label %out
  ]

out:
  ret void
}

!1 = distinct !{!1, !2, !9}
!2 = !{!"llvm.loop.mustprogress"}
!9 = !DIBasicType(name: "int", size: 32, encoding: DW_ATE_signed)
"""


def test_marks_latches_not_earlier_blocks_and_keeps_loop_ids():
    """``done → exit`` jumps to a block printed earlier but is no loop: unmarked. An existing
    loop ID keeps its properties and gains the disable; a switch latch and an unnamed entry
    block are handled; new nodes are numbered after every node, not only after the tuples
    (the basic type, standing in for a loop's DILocation, prints last); the result parses and
    verifies."""
    init_llvm()
    marked = str(mark_loops_unrolled(llvm.parse_assembly(LOOP_AFTER_EXIT)))
    (latch,) = [ln for ln in marked.splitlines() if "label %body, label %done" in ln]
    loop = re.search(r"!llvm\.loop (!\d+)", latch).group(1)
    ops = re.search(rf"^{loop} = distinct !\{{(.*)\}}$", marked, re.M).group(1).split(", ")
    bodies = {re.search(rf"^{o} = (.*)$", marked, re.M).group(1) for o in ops[1:]}
    assert bodies == {'!{!"llvm.loop.mustprogress"}', DISABLE, _BASIC_TYPE}
    done = marked[marked.index("done:") :].splitlines()[1]
    assert done.strip() == "br label %exit"
    assert "label %seven\n  ]\n" in marked  # the body's switch is not a latch
    spin_end = re.search(r"i1 true, label %out\n  \](.*)\n", marked).group(1)
    assert re.fullmatch(r", !llvm\.loop !\d+", spin_end)
    assert marked.count("!llvm.loop !") == 2


def test_a_module_without_loops_is_returned_as_is():
    init_llvm()
    mod = llvm.parse_assembly("define void @f() {\n  ret void\n}\n")
    assert mark_loops_unrolled(mod) is mod
