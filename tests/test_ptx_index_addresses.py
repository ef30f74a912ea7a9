"""``ptx_peephole.index_addresses``: a loop's pointer that moves with its index, computed
from the index where it is read, only where the two always agree.

The oracle: the PTX run here, both texts, by a small interpreter that knows the integer,
compare and branch instructions and treats every other instruction as a function of its
inputs it does not know (a hash): the two texts must make the same memory accesses, in the
same order, to the same addresses, with the same values, for random parameters and thread
indices. ptxas takes every rewritten text, and on the bench's histogram ptxas then needs
fewer registers than for numba-cuda's PTX of the same kernel.
"""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

import pytest
from test_gpu_codegen import _ptxas_v
from test_ptx_merge_adds import _assembles

from gpuaot.bundle.abi import EXC_RECORD
from gpuaot.compiler.targets.ptx_peephole import index_addresses, peephole

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------- the interpreter

_INSTR = re.compile(r"^(?:@(!?)(%\w+)\s+)?([a-z][\w.]*)\s*(.*?);$")
_SPECIAL = ("tid", "ntid", "ctaid", "nctaid")


def _hash(*parts) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little")


_BINARY = {
    "add": lambda a, b, _: a + b,
    "sub": lambda a, b, _: a - b,
    "and": lambda a, b, _: a & b,
    "or": lambda a, b, _: a | b,
    "xor": lambda a, b, _: a ^ b,
    "shl": lambda a, b, bits: a << min(b, bits),  # PTX clamps the shift to the width
}


def _trunc_div(a: int, b: int, bits: int) -> int:
    if b == 0:  # PTX leaves it unspecified: any fixed value serves both texts
        return -1
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


# Integer operations whose operands are read signed for .s types (PTX's div and rem
# truncate toward zero, as C).
_INTEGER = {
    "div": _trunc_div,
    "rem": lambda a, b, bits: a - b * _trunc_div(a, b, bits) if b else -1,
    "min": lambda a, b, _: min(a, b),
    "max": lambda a, b, _: max(a, b),
    "neg": lambda a, _: -a,
    "not": lambda a, _: ~a,
    "abs": lambda a, _: abs(a),
}


def _width(op: str) -> int:
    m = re.search(r"\.[sub](8|16|32|64)\b", op)
    return int(m.group(1)) if m else 64


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def run_ptx(ptx: str, params: dict[str, int], special: dict[str, int], limit=200_000):
    """The memory accesses of one thread: ``[(opcode, address, values...)]``."""
    body = ptx[ptx.index("\n{") + 2 : ptx.rindex("}")]
    code, labels = [], {}
    for raw in body.split("\n"):
        line = raw.split("//", 1)[0].strip()
        if not line or line.startswith((".reg", ".shared", ".local", ".pragma", "{", "}")):
            continue
        if m := re.fullmatch(r"(\$?[\w$]+):", line):
            labels[m.group(1)] = len(code)
            continue
        m = _INSTR.match(line)
        assert m, line
        code.append(m.groups())
    regs: dict[str, int] = {}
    trace = []

    def val(x: str, bits: int) -> int:
        x = x.strip()
        if x.startswith("%"):
            if x in special:
                return special[x]
            return regs.get(x, 0) & ((1 << bits) - 1)
        if re.fullmatch(r"0[fFdD][0-9a-fA-F]+", x):
            return int(x[2:], 16)
        if re.fullmatch(r"-?\d+", x):
            return int(x) & ((1 << bits) - 1)
        return _hash("symbol", x) & ((1 << bits) - 1)

    def address(x: str) -> int:
        inner = x.strip()[1:-1]
        base, _, off = inner.partition("+")
        return (val(base, 64) + (int(off) if off else 0)) & ((1 << 64) - 1)

    pc, steps = 0, 0
    while pc < len(code):
        steps += 1
        assert steps < limit, "runaway loop"
        neg, pred, op, args = code[pc]
        pc += 1
        if pred and bool(regs.get(pred, 0)) == bool(neg):
            continue
        ops = [a.strip() for a in re.split(r",(?![^\[]*\])", args)] if args else []
        bits = _width(op)
        mask = (1 << bits) - 1
        name = op.split(".")[0]
        if name in ("ret", "exit"):
            return trace
        if name == "bra":
            pc = labels[ops[0]]
            continue
        if name in ("ld", "st", "atom", "red"):
            mem = [k for k, a in enumerate(ops) if a.startswith("[")][0]
            if name == "ld" and ".param" in op:
                regs[ops[0]] = params[ops[1][1:-1]]
                continue
            addr = address(ops[mem])
            rest = tuple(val(a, bits) for k, a in enumerate(ops) if k > mem)
            trace.append((op, addr, *rest))
            if mem == 1:
                regs[ops[0]] = _hash("load", op, addr, *rest)
            continue
        dst, srcs = ops[0], ops[1:]
        v = [
            val(a, 32 if op.startswith(("mul.wide", "cvt.u64.u32", "cvt.s64.s32")) else bits)
            for a in srcs
        ]
        signed = ".s" in op
        if name == "setp" and re.search(r"\.f(16|32|64)\b", op):  # a float compare
            regs[dst] = _hash(op, *v) & 1
        elif name == "setp":
            cmp = op.split(".")[1]
            a, b = (_signed(x, bits) for x in v) if signed else v
            regs[dst] = {
                "lt": a < b,
                "le": a <= b,
                "gt": a > b,
                "ge": a >= b,
                "eq": a == b,
                "ne": a != b,
                "lo": a < b,  # the unsigned spellings (operands already unsigned)
                "ls": a <= b,
                "hi": a > b,
                "hs": a >= b,
            }[cmp]
        elif op == "not.pred":
            regs[dst] = not v[0]
        elif op in ("and.pred", "or.pred"):
            regs[dst] = (bool(v[0]) and bool(v[1])) if name == "and" else (v[0] or v[1])
        elif name == "selp":
            regs[dst] = v[0] if regs.get(srcs[2], 0) else v[1]
        elif name in ("mov", "cvta"):
            regs[dst] = v[0] & mask
        elif name in _BINARY:
            regs[dst] = _BINARY[name](v[0], v[1], bits) & mask
        elif name == "shr":
            a = _signed(v[0], bits) if signed else v[0]
            regs[dst] = (a >> min(v[1], bits)) & mask
        elif op.startswith("mul.wide"):
            a, b = (_signed(x, 32) for x in v) if signed else v
            regs[dst] = (a * b) & ((1 << 64) - 1)
        elif op.startswith(("mul.lo", "mad.lo")):
            r = v[0] * v[1] + (v[2] if name == "mad" else 0)
            regs[dst] = r & mask
        elif name in _INTEGER and not re.search(r"\.f(16|32|64)\b", op):
            a = [_signed(x, bits) for x in v] if signed else v
            regs[dst] = _INTEGER[name](*a, bits) & mask
        elif op == "cvt.u64.u32":
            regs[dst] = v[0]
        elif op == "cvt.s64.s32":
            regs[dst] = _signed(v[0], 32) & ((1 << 64) - 1)
        elif op == "cvt.u32.u64":
            regs[dst] = v[0] & 0xFFFFFFFF
        else:  # a function of its inputs this interpreter does not know
            regs[dst] = _hash(op, *v) & mask
    return trace


def same_accesses(before: str, after: str, runs: int = 60, small=(1, 80)) -> None:
    rng = random.Random(1)
    names = re.findall(r"\.param \.u64(?: \.ptr \.align \d+)? (\w+)", before)
    pointers = set(re.findall(r"\.param \.u64 \.ptr \.align \d+ (\w+)", before))
    for _ in range(runs):
        params = {n: rng.getrandbits(64) if n in pointers else rng.randint(*small) for n in names}
        special = {}
        for s in _SPECIAL:
            for axis in "xyz":
                limit = 4 if s.startswith("n") else 3
                special[f"%{s}.{axis}"] = rng.randint(1 if s.startswith("n") else 0, limit)
        assert run_ptx(before, params, special) == run_ptx(after, params, special), params


# ---------------------------------------------------------------------- synthetic loops

# A grid-stride loop as LLVM emits it: i and p = x + (i << 2) step together. The markers
# place the variants' changes.
_PTX = """\
.version 7.0
.target sm_80
.address_size 64

.visible .entry k(
\t.param .u64 .ptr .align 1 k_param_0,
\t.param .u64 k_param_1,
\t.param .u64 k_param_2
)
{
\t.reg .pred \t%p<4>;
\t.reg .b32 \t%r<4>;
\t.reg .b64 \t%rd<12>;

\tld.param.b64 \t%rd1, [k_param_0];
\tld.param.b64 \t%rd2, [k_param_1];
\tld.param.b64 \t%rd3, [k_param_2];
\tmov.u32 \t%r1, %tid.x;
\tcvt.u64.u32 \t%rd4, %r1;
\tsetp.ge.u64 \t%p1, %rd4, %rd2;
\t@%p1 bra \t$L__BB0_3;
@BEFORE_START@\tshl.b64 \t%rd5, %rd4, 2;
\tadd.s64 \t%rd6, %rd1, %rd5;
\tshl.b64 \t%rd7, %rd3, @STRIDE_SHIFT@;
@AFTER_START@$L__BB0_2:
\tld.global.b32 \t%r2, [%rd6];
\tadd.s32 \t%r3, %r2, 1;
\tst.global.b32 \t[%rd6+4], %r3;
\tadd.s64 \t%rd6, %rd6, %rd7;
@BETWEEN@\tadd.s64 \t%rd4, %rd4, %rd3;
\tsetp.lt.s64 \t%p2, %rd4, %rd2;
\t@%p2 bra \t$L__BB0_2;
@AFTER_LOOP@$L__BB0_3:
\tret;

}
"""


def variant(**marks: str) -> str:
    ptx = _PTX
    for name in ("STRIDE_SHIFT", "BEFORE_START", "AFTER_START", "BETWEEN", "AFTER_LOOP"):
        ptx = ptx.replace(
            f"@{name}@", marks.get(name.lower(), "2" if name == "STRIDE_SHIFT" else "")
        )
    return ptx


def test_grid_stride_pointer_from_the_index():
    ptx = variant()
    out = index_addresses(ptx)
    assert "add.s64 \t%rd6, %rd6, %rd7;" not in out  # the pointer's step is gone
    assert "shl.b64 \t%rd7, %rd3, 2;" not in out  # and its stride
    assert out.count("add.s64 \t%rd6, %rd1, %rd12;") == 2  # one per read, in the loop
    assert "\t.reg .b64 \t%rd<13>;" in out
    same_accesses(ptx, out)
    _assembles(out)


@pytest.mark.parametrize(
    "marks",
    [
        {"stride_shift": "3"},  # the pointer moves 8 bytes a step, the index 1 element
        {"between": "\tld.global.b32 \t%r2, [%rd6];\n"},  # p read between the two steps
        {"between": "\t@%p1 bra \t$L__BB0_3;\n"},  # a branch between the steps
        {"between": "$L__BB0_9:\n"},  # a label between the steps
        {"after_start": "\tadd.s64 \t%rd4, %rd4, 1;\n"},  # i moved after p's start
        {"after_start": "$L__BB0_8:\n"},  # a label between the start and the loop
        {"after_loop": "\tld.global.b32 \t%r2, [%rd6];\n"},  # p read after the loop
        {"before_start": "\t@%p1 bra \t$L__BB0_2;\n"},  # the loop entered before p starts
    ],
)
def test_left_alone(marks):
    ptx = variant(**marks)
    assert index_addresses(ptx) == ptx


def test_left_alone_p_written_again():
    ptx = variant(after_start="\tadd.s64 \t%rd6, %rd6, 4;\n")
    assert index_addresses(ptx) == ptx


# ---------------------------------------------------------------------- real kernels


def _kernel_ptx(monkeypatch, pkg: str, qualname: str, rewrite: bool) -> str:
    from gpuaot.compiler.discover import discover
    from gpuaot.compiler.driver import BuildOptions, type_units
    from gpuaot.compiler.targets import gpu, nvptx
    from gpuaot.compiler.targets.ptx_peephole import merge_scaled_adds, widen_shifts
    from gpuaot.errors import Diagnostics

    if not rewrite:
        monkeypatch.setattr(nvptx, "peephole", lambda p: merge_scaled_adds(widen_shifts(p)))
    opts = BuildOptions.resolve(str(REPO / pkg), no_cpu=True, arch="sm_80")
    diag = Diagnostics()
    units, _ = type_units(discover(str(opts.root), diag), opts, "gpu", diag)
    diag.raise_if_any()
    (unit,) = [u for u in units if u.func.qualname == qualname]
    gpu.lower_gpu(unit)
    ptx = nvptx.compile_ptx(unit.ir, [unit.symbol], "sm_80", keep=[EXC_RECORD])
    monkeypatch.undo()
    return ptx


KERNELS = [
    ("fixtures/gpu_features", "gpu_features.kernels.histogram"),
    ("bench/sass_pkg", "sass_pkg.kernels.matmul_tiled"),
]


@pytest.mark.parametrize("pkg,qualname", KERNELS)
def test_real_kernels_same_accesses(monkeypatch, pkg, qualname):
    before = _kernel_ptx(monkeypatch, pkg, qualname, rewrite=False)
    after = _kernel_ptx(monkeypatch, pkg, qualname, rewrite=True)
    assert after != before and index_addresses(before) == after == peephole(after)
    same_accesses(before, after)
    _assembles(after)


def test_histogram_registers(monkeypatch):
    """The grid-stride histogram: 16 registers with the rewrite (numba-cuda's PTX: 18),
    19 without it."""
    ptx = [
        _kernel_ptx(monkeypatch, "fixtures/gpu_features", KERNELS[0][1], rewrite=r)
        for r in (False, True)
    ]
    regs = [int(re.search(r"Used (\d+) registers", _ptxas_v(p))[1]) for p in ptx]
    assert regs[1] <= 16 < 18 < regs[0], regs
