"""Helpers for the device toolchain tests: NVIDIA's tools as oracles, small kernels.

The kernels are built with ``llvmlite.ir`` the way gpuaot's lowering builds them (typed
llvmlite values, ``ptx_kernel`` calling convention), not written as IR text. The module has a
name no other test folder uses, because pytest puts this folder itself on ``sys.path``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from llvmlite import ir

from gpuaot.compiler.targets.nvptx import NVPTX_DATA_LAYOUT, NVPTX_TRIPLE

ARCHS = ("sm_75", "sm_80", "sm_90")

I32 = ir.IntType(32)
I64 = ir.IntType(64)
F32 = ir.FloatType()
PTR = ir.PointerType()
VOID = ir.VoidType()


def cuobjdump_list(cuobjdump: Path, path: Path) -> list[tuple[str, str]]:
    """``cuobjdump -lptx -lelf`` → [("PTX", "gpuaot.sm_75.ptx"), ("ELF", ...), ...]."""
    out = subprocess.run(
        [str(cuobjdump), "-lptx", "-lelf", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return re.findall(r"^(PTX|ELF) file\s+\d+: (\S+)$", out, re.MULTILINE)


def new_module() -> ir.Module:
    mod = ir.Module(name="test")
    mod.triple = NVPTX_TRIPLE
    mod.data_layout = NVPTX_DATA_LAYOUT
    return mod


def declare(mod: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    existing = mod.globals.get(name)
    if existing is not None:
        return existing
    return ir.Function(mod, ir.FunctionType(ret, args), name)


def kernel(mod: ir.Module, name: str, args: list[ir.Type]) -> tuple[ir.Function, ir.IRBuilder]:
    fn = ir.Function(mod, ir.FunctionType(VOID, args), name)
    fn.calling_convention = "ptx_kernel"
    return fn, ir.IRBuilder(fn.append_basic_block("entry"))


def sreg(builder: ir.IRBuilder, name: str) -> ir.Value:
    """Read ``%tid.x`` and friends: ``sreg(b, "tid.x")``."""
    fn = declare(builder.module, f"llvm.nvvm.read.ptx.sreg.{name}", I32, [])
    return builder.call(fn, [])


def global_index(builder: ir.IRBuilder) -> ir.Value:
    """``ctaid.x * ntid.x + tid.x``"""
    block, size, thread = (sreg(builder, r) for r in ("ctaid.x", "ntid.x", "tid.x"))
    return builder.add(builder.mul(block, size), thread)


def saxpy_module(*, with_expf: bool = True) -> ir.Module:
    """``saxpy(a, x, y, n)``: ``y[i] = a*x[i] + y[i]``; with ``expf_kernel(x, n)``:
    ``x[i] = __nv_expf(x[i])`` (libdevice)."""
    mod = new_module()
    fn, b = kernel(mod, "saxpy", [F32, PTR, PTR, I32])
    a, x, y, n = fn.args
    i = global_index(b)
    with b.if_then(b.icmp_signed("<", i, n)):
        px, py = b.gep(x, [i], source_etype=F32), b.gep(y, [i], source_etype=F32)
        b.store(b.fadd(b.fmul(a, b.load(px, typ=F32)), b.load(py, typ=F32)), py)
    b.ret_void()
    if with_expf:
        fn, b = kernel(mod, "expf_kernel", [PTR, I32])
        x, n = fn.args
        i = global_index(b)
        with b.if_then(b.icmp_signed("<", i, n)):
            px = b.gep(x, [i], source_etype=F32)
            expf = declare(mod, "__nv_expf", F32, [F32])
            b.store(b.call(expf, [b.load(px, typ=F32)]), px)
        b.ret_void()
    return mod
