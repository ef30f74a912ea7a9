"""Golden IR of the ops' lowerings, per target: each kernel is typed, lowered through the
target's emitter, parsed and verified by LLVM (``llvm.parse_assembly``, as llvmlite's own
tests check IR), and its instructions and callees are checked, not its text.
"""

from __future__ import annotations

import math
import struct

import llvmlite.binding as llvm
import pytest
from test_ops_registry import type_body

from gpuaot.compiler.lower.lowering import ModuleBuilder
from gpuaot.compiler.targets import cpu
from gpuaot.compiler.targets.gpu import GPUEmitter
from gpuaot.compiler.targets.gpu.emitter import new_module as gpu_module


def lowered(tmp_path, body: str, target: str):
    """The verified LLVM function of kernel ``k`` lowered for ``target``."""
    tf, errors = type_body(tmp_path, body, target)
    assert not errors, [e.message for e in errors]
    if target == "cpu":
        em = cpu.CPUEmitter(cpu.new_module("m"))
    else:
        em = GPUEmitter(gpu_module("m"))
    ModuleBuilder(em).function(tf, name="k", linkage="external")
    mod = llvm.parse_assembly(str(em.module))
    mod.verify()
    return mod.get_function("k")


def instructions(fn):
    return [ins for bb in fn.blocks for ins in bb.instructions]


def callees(fn) -> list[str]:
    return [list(i.operands)[-1].name for i in instructions(fn) if i.opcode == "call"]


def opcodes(fn) -> list[str]:
    return [i.opcode for i in instructions(fn)]


def kernel(params: str, *lines: str) -> str:
    return f"@ga.kernel\ndef k({params}):\n" + "".join(f"    {x}\n" for x in lines)


@pytest.mark.parametrize(
    "target,want",
    [("cpu", "llvm.fma.f32"), ("gpu", "__nv_fmaf")],
)
def test_fma_is_one_fused_call(tmp_path, target, want):
    fn = lowered(tmp_path, kernel("x: f32, out: Array[f32]", "out[0] = ga.fma(x, x, x)"), target)
    assert callees(fn).count(want) == 1
    assert "fmul" not in opcodes(fn) and "fadd" not in opcodes(fn)


@pytest.mark.parametrize(
    "expr,target,want",
    [
        ("math.sqrt(x)", "cpu", "llvm.sqrt.f32"),
        ("math.tan(x)", "cpu", "tanf"),
        ("math.gamma(x)", "cpu", "tgammaf"),
        ("math.gamma(x)", "gpu", "__nv_tgammaf"),
        ("math.exp2(x)", "cpu", "llvm.exp2.f32"),
        ("math.log1p(x)", "gpu", "__nv_log1pf"),
        ("ga.cbrt(x)", "cpu", "cbrtf"),
        ("ga.cbrt(f64(x))", "gpu", "__nv_cbrt"),
        ("math.remainder(x, 2.0)", "cpu", "remainderf"),
    ],
)
def test_math_calls_the_declared_symbol(tmp_path, expr, target, want):
    fn = lowered(tmp_path, kernel("x: f32, out: Array[f64]", f"out[0] = {expr}"), target)
    assert want in callees(fn)


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_degrees_is_one_f64_product(tmp_path, target):
    fn = lowered(tmp_path, kernel("x: f32, out: Array[f32]", "out[0] = math.degrees(x)"), target)
    ops = opcodes(fn)
    assert ops.count("fpext") == 1 and ops.count("fmul") == 1 and ops.count("fptrunc") == 1
    (mul,) = [i for i in instructions(fn) if i.opcode == "fmul"]
    assert str(mul).strip().startswith("%") and " double " in str(mul)
    assert _double_constant(str(mul)) == math.degrees(1.0)  # CPython's factor, exactly
    assert not callees(fn)


def _double_constant(text: str) -> float:
    """The one double constant operand of an instruction (LLVM prints its bits in hex)."""
    (tok,) = [t.strip(",") for t in text.split() if t.startswith("0x")]
    return struct.unpack("<d", int(tok, 16).to_bytes(8, "little"))[0]


@pytest.mark.parametrize(
    "params,expr,rmw",
    [
        ("a: Array[u32]", "ga.atomic_inc(a, 0, 5)", "uinc_wrap"),
        ("a: Array[u64]", "ga.atomic_dec(a, 0, 5)", "udec_wrap"),
        ("a: Array[i64]", "ga.atomic_and(a, 0, 5)", "and"),
        ("a: Array[u32]", "ga.atomic_or(a, 0, 5)", "or"),
        ("a: Array[i32]", "ga.atomic_xor(a, 0, 5)", "xor"),
        ("a: Array[f64]", "ga.atomic_nanmax(a, 0, 5)", "fmax"),
        ("a: Array[f32]", "ga.atomic_nanmin(a, 0, 5)", "fmin"),
        ("a: Array[u32]", "ga.atomic_min(a, 0, 5)", "umin"),
        ("a: Array[i32]", "ga.atomic_max(a, 0, 5)", "max"),
    ],
)
@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_atomics_are_one_monotonic_atomicrmw(tmp_path, params, expr, rmw, target):
    fn = lowered(tmp_path, kernel(params, expr), target)
    (ins,) = [i for i in instructions(fn) if i.opcode == "atomicrmw"]
    assert f"atomicrmw {rmw} ptr" in str(ins) and " monotonic" in str(ins)


def test_float_cas_goes_through_the_bits(tmp_path):
    fn = lowered(tmp_path, kernel("a: Array[f32]", "ga.atomic_cas(a, 0, 1.0, 2.0)"), "cpu")
    (cas,) = [i for i in instructions(fn) if i.opcode == "cmpxchg"]
    assert "i32" in str(cas)
    assert opcodes(fn).count("bitcast") == 3  # expected, new, and the old value back


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_selp_is_a_select_without_branches(tmp_path, target):
    body = kernel("x: f64, n: i32, out: Array[f64]", "out[0] = ga.selp(n, x, n)")
    fn = lowered(tmp_path, body, target)
    assert "select" in opcodes(fn)
    assert "phi" not in opcodes(fn) and [i.opcode for i in instructions(fn)].count("br") == 1


@pytest.mark.parametrize(
    "name,scope",
    [("threadfence", "gl"), ("threadfence_block", "cta"), ("threadfence_system", "sys")],
)
def test_fences(tmp_path, name, scope):
    fn = lowered(tmp_path, kernel("", f"ga.{name}()"), "gpu")
    assert callees(fn) == [f"llvm.nvvm.membar.{scope}"]
    fn = lowered(tmp_path, kernel("", f"ga.{name}()"), "cpu")
    (fence,) = [i for i in instructions(fn) if i.opcode == "fence"]
    assert "seq_cst" in str(fence) and not callees(fn)


@pytest.mark.parametrize("kind", ["count", "and", "or"])
def test_syncthreads_votes_are_barrier_reductions(tmp_path, kind):
    body = kernel("x: f32, out: Array[i32]", f"out[0] = ga.syncthreads_{kind}(x > 0)")
    fn = lowered(tmp_path, body, "gpu")
    red = {"count": "popc"}.get(kind, kind)
    assert callees(fn) == [f"llvm.nvvm.barrier.cta.red.{red}.aligned.all"]
    if kind != "count":
        assert "zext" in opcodes(fn)  # the i1 vote widened to the i32 result


@pytest.mark.parametrize(
    "expr,want",
    [
        ("ga.popc(x)", ["llvm.ctpop.i64"]),
        ("ga.brev(i32(x))", ["llvm.bitreverse.i32"]),
        ("ga.clz(x)", ["llvm.ctlz.i64"]),
        ("ga.ffs(x)", ["llvm.cttz.i64"]),
    ],
)
def test_bit_intrinsics(tmp_path, expr, want):
    fn = lowered(tmp_path, kernel("x: i64, out: Array[i64]", f"out[0] = {expr}"), "cpu")
    assert callees(fn) == want
    if "ffs" in expr:
        assert {"select", "add", "trunc"} <= set(opcodes(fn))  # 0 for 0, and a u32 result


def test_thread_indices_read_special_registers_on_the_gpu(tmp_path):
    body = kernel("out: Array[i64]", "out[0] = ga.thread_idx.y + ga.grid(1)")
    fn = lowered(tmp_path, body, "gpu")
    assert callees(fn) == [
        "llvm.nvvm.read.ptx.sreg.tid.y",
        "llvm.nvvm.read.ptx.sreg.ntid.x",
        "llvm.nvvm.read.ptx.sreg.ctaid.x",
        "llvm.nvvm.read.ptx.sreg.tid.x",
    ]
    fn = lowered(tmp_path, body, "cpu")
    assert not callees(fn)  # the CPU's indices are hidden parameters
