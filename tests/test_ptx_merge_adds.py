"""``ptx_peephole.merge_scaled_adds``: ``base + (row << k) + (col << k)`` as
``base + ((row + col) << k)``, only where that reads the values the original read.

The oracle for what an address is: the PTX's integer instructions evaluated here with
Python's integers modulo 2**64, before and after the rewrite, on random register values.
ptxas takes every rewritten text, and on the 2D stencil the rewrite gives ptxas's register
count of numba-cuda's PTX for the same kernel (20, from 22).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from test_gpu_codegen import _ptxas_v

from gpuaot.bundle.abi import EXC_RECORD
from gpuaot.compiler.targets.ptx_peephole import merge_scaled_adds
from gpuaot.errors import BuildError

REPO = Path(__file__).resolve().parents[1]

MASK = (1 << 64) - 1

# @COL@ @LOOP@ @LABEL@ vary where col is written; @S_USE@ @T_USE@ read s and t again;
# @SHIFT@ is the row's shift; @BASE2@ writes base a second time; @ORDER@ swaps operands.
_PTX = """\
.version 7.0
.target sm_80
.address_size 64

.visible .entry k(
\t.param .u64 k_param_0,
\t.param .u64 k_param_1,
\t.param .u64 k_param_2
)
{
\t.reg .pred \t%p<3>;
\t.reg .b32 \t%r<4>;
\t.reg .b64 \t%rd<16>;

\tld.param.b64 \t%rd1, [k_param_0];
\tld.param.b64 \t%rd2, [k_param_1];
\tmov.b64 \t%rd12, 0;
@BASE2@@LOOP@\tld.param.b64 \t%rd3, [k_param_2];
@LOOP_END@\tshl.b64 \t%rd4, %rd3, 2;
\tadd.s64 \t%rd5, %rd1, %rd4;
\tld.global.b32 \t%r1, [%rd5];
@LABEL@\tshl.b64 \t%rd6, %rd2, @SHIFT@;
@S_USE@\tadd.s64 \t%rd7, @T_OPS@;
@T_USE@\tadd.s64 \t%rd8, @D_OPS@;
\tst.global.b32 \t[%rd8], %r1;
\tret;

}
"""
_LOOP_HEAD = "$L__BB0_1:\n"
_LOOP_END = (
    "\tadd.s64 \t%rd12, %rd12, 1;\n\tsetp.lt.u64 \t%p2, %rd12, 4;\n\t@%p2 bra \t$L__BB0_1;\n"
)


def variant(
    shift: int = 2,
    loop: bool = False,
    label: bool = False,
    s_use: bool = False,
    t_use: bool = False,
    base2: bool = False,
    swap: bool = False,
) -> str:
    ptx = _PTX.replace("@SHIFT@", str(shift))
    ptx = ptx.replace("@LOOP@", _LOOP_HEAD if loop else "")
    ptx = ptx.replace("@LOOP_END@", _LOOP_END if loop else "")
    ptx = ptx.replace("@LABEL@", "$L__BB0_9:\n" if label else "")
    ptx = ptx.replace("@S_USE@", "\tadd.s64 \t%rd9, %rd6, 1;\n" if s_use else "")
    ptx = ptx.replace("@T_USE@", "\tadd.s64 \t%rd10, %rd7, 1;\n" if t_use else "")
    ptx = ptx.replace("@BASE2@", "\tadd.s64 \t%rd1, %rd1, 8;\n" if base2 else "")
    ptx = ptx.replace("@T_OPS@", "%rd6, %rd1" if swap else "%rd1, %rd6")
    ptx = ptx.replace("@D_OPS@", "%rd4, %rd7" if swap else "%rd7, %rd4")
    return ptx


def store_address(ptx: str, params: list[int]) -> int:
    """The address ``st.global`` writes to, the integer instructions run in text order (the
    variants' loops compute the same address on every trip)."""
    regs: dict[str, int] = {}

    def val(x: str) -> int:
        return regs[x] if x.startswith("%") else int(x)

    for line in ptx.splitlines():
        line = line.strip().rstrip(";")
        if m := re.fullmatch(r"ld\.param\.b64\s+(%rd\d+), \[k_param_(\d)\]", line):
            regs[m[1]] = params[int(m[2])]
        elif m := re.fullmatch(
            r"(add\.s64|shl\.b64|mov\.b64)\s+(%rd\d+), (\S+?)(?:, (\S+))?", line
        ):
            op, dst, a, b = m.groups()
            if op == "mov.b64":
                regs[dst] = val(a)
            elif op == "add.s64":
                regs[dst] = (val(a) + val(b)) & MASK
            else:
                regs[dst] = (val(a) << int(b)) & MASK
        elif m := re.fullmatch(r"st\.global\.b32\s+\[(%rd\d+)\], %r1", line):
            return regs[m[1]]
    raise AssertionError("no store")


def changed(a: str, b: str) -> list[tuple[str, str]]:
    return [(x, y) for x, y in zip(a.splitlines(), b.splitlines()) if x != y]


def assert_same_addresses(before: str, after: str) -> None:
    rng = random.Random(0)
    for _ in range(200):
        params = [rng.getrandbits(64) for _ in range(3)]
        assert store_address(before, params) == store_address(after, params)


@pytest.mark.parametrize("swap", [False, True])
def test_rewritten_with_the_same_address(swap):
    ptx = variant(swap=swap)
    out = merge_scaled_adds(ptx)
    assert changed(ptx, out) == [
        ("\tshl.b64 \t%rd6, %rd2, 2;", "\tadd.s64 \t%rd6, %rd2, %rd3;"),
        (
            f"\tadd.s64 \t%rd7, {'%rd6, %rd1' if swap else '%rd1, %rd6'};",
            "\tshl.b64 \t%rd7, %rd6, 2;",
        ),
        (
            f"\tadd.s64 \t%rd8, {'%rd4, %rd7' if swap else '%rd7, %rd4'};",
            "\tadd.s64 \t%rd8, %rd1, %rd7;",
        ),
    ]
    assert_same_addresses(ptx, out)
    _assembles(out)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shift": 3},  # row << 3 + col << 2: no common shift
        {"s_use": True},  # row << k read again: it must keep its value
        {"t_use": True},  # base + (row << k) read again
        {"loop": True},  # col written in a loop: maybe another trip's value
        {"label": True},  # a label between col's write and the row's shift
        {"base2": True},  # base written twice: which value at the store?
    ],
)
def test_left_alone(kwargs):
    ptx = variant(**kwargs)
    assert merge_scaled_adds(ptx) == ptx


def _assembles(ptx: str) -> None:
    from gpuaot.compiler.targets.nvtools import ptx_to_cubin

    try:
        assert ptx_to_cubin(ptx, "sm_80")[:4] == b"\x7fELF"
    except BuildError as exc:
        pytest.skip(str(exc))


def _stencil_ptx(monkeypatch, merge: bool) -> str:
    from gpuaot.compiler.discover import discover
    from gpuaot.compiler.driver import BuildOptions, type_units
    from gpuaot.compiler.targets import gpu, nvptx
    from gpuaot.compiler.targets.ptx_peephole import widen_shifts
    from gpuaot.errors import Diagnostics

    if not merge:
        monkeypatch.setattr(nvptx, "peephole", widen_shifts)
    opts = BuildOptions.resolve(str(REPO / "bench/kernels_pkg"), no_cpu=True, arch="sm_80")
    diag = Diagnostics()
    units, _ = type_units(discover(str(opts.root), diag), opts, "gpu", diag)
    diag.raise_if_any()
    (unit,) = [u for u in units if u.func.qualname == "kernels_pkg.kernels.stencil5"]
    gpu.lower_gpu(unit)
    return nvptx.compile_ptx(unit.ir, [unit.symbol], "sm_80", keep=[EXC_RECORD])


def test_stencil_gets_numba_cudas_registers(monkeypatch):
    """The 2D stencil of the bench: 20 registers with the rewrite, as ptxas gives numba-cuda's
    PTX for the same kernel, against 22 without it."""
    before = _stencil_ptx(monkeypatch, merge=False)
    monkeypatch.undo()
    after = _stencil_ptx(monkeypatch, merge=True)
    regs = [int(re.search(r"Used (\d+) registers", _ptxas_v(p))[1]) for p in (before, after)]
    assert regs[1] <= 20 < regs[0], regs
    assert merge_scaled_adds(before) == after
