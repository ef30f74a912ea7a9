"""CPU variants: the same lowered host IR, compiled once per CPU level into its own symbols.

    variants = resolve(parse_levels("x86-64-v2,x86-64-v4", "x86_64"))
    obj = cpu.compile_variant((unit_ir, variants[0]))  # every function gets ".x86_64_v2"
    probe = probe_function(module)                   # gpuaot_rt_cpuid, for the run time

A unit is lowered once (its IR does not depend on the level: the data layout of every level
of a platform is the same), then optimised and code-generated per level with that level's
target machine, so the vectorisers' cost models and the instruction selection see only the
features of the level. After optimisation every function the unit defines is renamed with
the level's suffix (``gpuaot_cpu_m__k.x86_64_v3``, as GCC names ``target_clones``), so no
two variants share a symbol: no code of a higher level can be reached from a lower one, and
``objdump`` shows which level each instruction belongs to. What all variants share — the
exception reporter and the CPUID probe — is compiled for the platform's baseline.
"""

from __future__ import annotations

from functools import lru_cache

import llvmlite.binding as llvm
from llvmlite import ir

from ...bundle import cpus
from ..lower.emitter import I32, PTR, VOID


def resolve(levels: list) -> list[cpus.Variant]:
    """Levels as parsed from ``--cpu`` → variants; ``native`` is this machine's CPU."""
    out = []
    for lv in levels:
        if lv == cpus.NATIVE:
            _init()
            name = llvm.get_host_cpu_name()
            features = llvm.get_host_cpu_features().flatten()
            requires = cpus.native_requires(cpus.machine(), features)
            out.append(cpus.Variant(cpus.NATIVE, cpus.NATIVE, name, features, requires, False))
        else:
            out.append(cpus.named_variant(lv))
    return out


def baseline() -> cpus.Variant:
    arch = cpus.machine()
    lv = cpus.level(cpus.BASELINE.get(arch, ""), arch)
    if lv is None:  # a platform without named levels: its generic CPU
        return cpus.Variant("generic", "generic", "generic", "", (), True)
    return cpus.named_variant(lv)


@lru_cache(maxsize=1)
def _init() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    llvm.initialize_native_asmparser()  # the probe's inline asm (cpuid, xgetbv)


@lru_cache(maxsize=16)
def machine(cpu: str, features: str) -> llvm.TargetMachine:
    _init()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(
        cpu=cpu, features=features, opt=3, reloc="pic", codemodel="small"
    )


def variant_machine(v: cpus.Variant) -> llvm.TargetMachine:
    return machine(v.cpu, v.features)


def rename_defined(ref, v: cpus.Variant) -> None:
    """Give every function the module defines the variant's suffix (declarations stay)."""
    for fn in ref.functions:
        if not fn.is_declaration:
            fn.name = v.symbol(fn.name)


# ---------------------------------------------------------------------- the CPUID probe

_CPUID = "cpuid"
_CPUID_CONSTRAINTS = "={ax},={bx},={cx},={dx},{ax},{cx},~{dirflag},~{fpsr},~{flags}"
_XGETBV_CONSTRAINTS = "={ax},={dx},{cx},~{dirflag},~{fpsr},~{flags}"


def probe_function(mod: ir.Module) -> ir.Function:
    """``void gpuaot_rt_cpuid(uint32_t out[12])``: the words of :data:`cpus.PROBE_WORDS`.

    Runs on every x86-64 CPU: CPUID exists on all of them, each leaf is read only where the
    CPU reports it, and XGETBV (an illegal instruction where the OS has not set CR4.OSXSAVE)
    only behind CPUID.1:ECX.OSXSAVE. Compiled with the baseline, so the probe itself needs
    nothing the oldest CPU lacks.
    """
    fn = ir.Function(mod, ir.FunctionType(VOID, [PTR]), cpus.PROBE_SYMBOL)
    out = fn.args[0]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    regs = ir.LiteralStructType([I32] * 4)
    cpuid_ty = ir.FunctionType(regs, [I32, I32])
    words = {name: k for k, name in enumerate(cpus.PROBE_WORDS)}

    def const(v: int) -> ir.Constant:
        return ir.Constant(I32, v)

    def store(name: str, value) -> None:
        b.store(value, b.gep(out, [ir.Constant(I32, words[name])], source_etype=I32))

    def cpuid(leaf: int, sub: int = 0) -> list:
        r = b.asm(cpuid_ty, _CPUID, _CPUID_CONSTRAINTS, [const(leaf), const(sub)], True)
        return [b.extract_value(r, k) for k in range(4)]  # eax, ebx, ecx, edx

    for name in cpus.PROBE_WORDS:
        store(name, const(0))
    eax0, *_ = cpuid(0)
    store("max_leaf", eax0)
    _, _, ecx1, edx1 = cpuid(1)
    store("1.ecx", ecx1)
    store("1.edx", edx1)
    with b.if_then(b.icmp_unsigned(">=", eax0, const(7))):
        eax7, ebx7, ecx7, edx7 = cpuid(7)
        store("7.ebx", ebx7)
        store("7.ecx", ecx7)
        store("7.edx", edx7)
        with b.if_then(b.icmp_unsigned(">=", eax7, const(1))):
            store("7.1.eax", cpuid(7, 1)[0])
    ext, *_ = cpuid(0x80000000)
    store("max_ext", ext)
    with b.if_then(b.icmp_unsigned(">=", ext, const(0x80000001))):
        _, _, ecx, edx = cpuid(0x80000001)
        store("ext1.ecx", ecx)
        store("ext1.edx", edx)
    osxsave = b.and_(ecx1, const(1 << 27))
    with b.if_then(b.icmp_unsigned("!=", osxsave, const(0))):
        xgetbv_ty = ir.FunctionType(ir.LiteralStructType([I32, I32]), [I32])
        r = b.asm(xgetbv_ty, "xgetbv", _XGETBV_CONSTRAINTS, [const(0)], True)
        store("xcr0.lo", b.extract_value(r, 0))
        store("xcr0.hi", b.extract_value(r, 1))
    b.ret_void()
    return fn
