"""compile_ptx, and one test per NVPTX fact the module docstring of nvptx.py relies on.

Every PTX text here is also assembled by ptxas (the oracle) for each architecture it targets.
"""

from __future__ import annotations

import re

import llvmlite.binding as llvm
import pytest
from gpu_toolchain_kit import (
    ARCHS,
    F32,
    I32,
    PTR,
    VOID,
    declare,
    global_index,
    kernel,
    new_module,
    saxpy_module,
    sreg,
)
from llvmlite import ir

from gpuaot.compiler.targets import nvtools
from gpuaot.compiler.targets.nvptx import (
    NVPTX_DATA_LAYOUT,
    NVPTX_TRIPLE,
    compile_ptx,
    init_llvm,
    nvptx_target_machine,
)
from gpuaot.errors import BuildError, InternalError

pytestmark = pytest.mark.usefixtures("ptxas", "libdevice")


def assemble_everywhere(ptx: str, lowest: str = "sm_75") -> None:
    """ptxas accepts ``ptx`` for its own architecture and every newer one we ship."""
    for arch in ARCHS[ARCHS.index(lowest) :]:
        assert nvtools.ptx_to_cubin(ptx, arch)[:4] == b"\x7fELF"


def body(ptx: str) -> str:
    """PTX without comments, so checks see only instructions and directives."""
    return re.sub(r"//[^\n]*", "", ptx)


def one_kernel(build, *, arch: str = "sm_75", **options) -> str:
    """Compile a module with a single kernel ``k(ptr, ptr, i32)`` whose body ``build`` writes."""
    mod = new_module()
    fn, b = kernel(mod, "k", [PTR, PTR, I32])
    build(mod, fn, b)
    if not b.block.is_terminated:
        b.ret_void()
    ptx = compile_ptx(str(mod), ["k"], arch, **options)
    assemble_everywhere(ptx, arch)
    return ptx


# --- compile_ptx on the saxpy + libdevice module ---------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_saxpy_and_libdevice_assemble(saxpy_ptx, arch: str) -> None:
    ptx = saxpy_ptx(arch)
    assert f".target {arch}" in ptx
    assert nvtools.ptx_to_cubin(ptx, arch)[:4] == b"\x7fELF"


def test_sm75_ptx_has_entries_and_no_libdevice_left(saxpy_ptx) -> None:
    ptx = body(saxpy_ptx("sm_75"))
    assert re.search(r"^\.visible \.entry saxpy\(", ptx, re.MULTILINE)
    assert re.search(r"^\.visible \.entry expf_kernel\(", ptx, re.MULTILINE)
    # __nv_expf was linked, reflected and inlined: no definition, no extern, no call left.
    assert "__nv_" not in ptx
    assert "__nvvm_reflect" not in ptx
    assert ".extern" not in ptx
    assert ".func" not in ptx
    assert "ex2.approx" in ptx  # what __nv_expf is made of
    assemble_everywhere(saxpy_ptx("sm_75"))


def test_compile_is_deterministic() -> None:
    text = str(saxpy_module())
    first = compile_ptx(text, ["saxpy", "expf_kernel"], "sm_80")
    for arch in ARCHS:  # other compilations in between must not leak state into this one
        compile_ptx(str(saxpy_module(with_expf=False)), ["saxpy"], arch, fastmath=True)
        assert compile_ptx(text, ["saxpy", "expf_kernel"], "sm_80") == first


@pytest.mark.parametrize("opt_level", [0, 1, 2])
def test_lower_opt_levels_still_drop_libdevice(opt_level: int) -> None:
    ptx = compile_ptx(str(saxpy_module()), ["saxpy", "expf_kernel"], "sm_75", opt_level=opt_level)
    assert "__nv_" not in body(ptx)
    assemble_everywhere(ptx)


def test_device_helper_is_internalised_and_inlined() -> None:
    mod = new_module()
    helper = ir.Function(mod, ir.FunctionType(F32, [F32]), "twice")
    hb = ir.IRBuilder(helper.append_basic_block())
    hb.ret(hb.fadd(helper.args[0], helper.args[0]))
    fn, b = kernel(mod, "k", [PTR])
    p = b.gep(fn.args[0], [global_index(b)], source_etype=F32)
    b.store(b.call(helper, [b.load(p, typ=F32)]), p)
    b.ret_void()
    ptx = body(compile_ptx(str(mod), ["k"], "sm_75"))
    assert "twice" not in ptx and ".func" not in ptx
    assert "add.rn.f32" in ptx
    assemble_everywhere(ptx)


def test_keep_leaves_a_global_visible() -> None:
    mod = new_module()
    info = ir.GlobalVariable(mod, ir.ArrayType(I32, 4), "gpuaot_exc_info", addrspace=1)
    info.initializer = ir.Constant(ir.ArrayType(I32, 4), None)
    hidden = ir.GlobalVariable(mod, I32, "scratch", addrspace=1)
    hidden.initializer = I32(0)
    fn, b = kernel(mod, "k", [I32])
    b.store(fn.args[0], b.gep(info, [I32(0), I32(0)]))
    b.store(fn.args[0], hidden)
    b.ret_void()
    ptx = body(compile_ptx(str(mod), ["k"], "sm_75", keep=["gpuaot_exc_info"]))
    # cuModuleGetGlobal finds only .visible globals; the other one is internal (or gone).
    assert re.search(r"^\.visible \.global .*gpuaot_exc_info", ptx, re.MULTILINE)
    assert not re.search(r"^\.visible .*scratch", ptx, re.MULTILINE)
    assemble_everywhere(ptx)


def test_invalid_ir_is_an_internal_error() -> None:
    with pytest.raises(InternalError, match="invalid NVPTX IR"):
        compile_ptx("define void @k( {", ["k"], "sm_75")


def test_missing_kernel_is_an_internal_error() -> None:
    with pytest.raises(InternalError, match="nope"):
        compile_ptx(str(saxpy_module()), ["saxpy", "nope"], "sm_75")


def test_bad_arch_is_a_build_error() -> None:
    with pytest.raises(BuildError, match="architecture"):
        compile_ptx(str(saxpy_module()), ["saxpy"], "compute_75")


# --- facts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_fact_data_layout_is_the_target_machines(arch: str) -> None:
    assert str(nvptx_target_machine(arch).target_data) == NVPTX_DATA_LAYOUT


def test_fact_ptx_kernel_calling_convention_round_trips() -> None:
    mod = saxpy_module(with_expf=False)
    init_llvm()
    parsed = llvm.parse_assembly(str(mod))
    assert "define ptx_kernel void @saxpy(" in str(parsed)


def test_fact_ptx_kernel_is_an_entry_and_a_plain_function_is_not() -> None:
    mod = new_module()
    _, b = kernel(mod, "k", [])
    b.ret_void()
    plain = ir.Function(mod, ir.FunctionType(VOID, []), "plain")
    ir.IRBuilder(plain.append_basic_block()).ret_void()
    ptx = compile_ptx(str(mod), ["k"], "sm_75", keep=["plain"])
    assert re.search(r"^\.visible \.entry k\(", ptx, re.MULTILINE)
    assert re.search(r"^\.visible \.func plain\(", ptx, re.MULTILINE)
    with pytest.raises(InternalError, match="ptx_kernel"):
        compile_ptx(str(mod), ["k", "plain"], "sm_75")


@pytest.mark.parametrize(("arch", "isa"), [("sm_75", "6.3"), ("sm_80", "7.0"), ("sm_90", "7.8")])
def test_fact_header_triple_address_size_and_isa(arch: str, isa: str) -> None:
    ptx = compile_ptx(str(saxpy_module(with_expf=False)), ["saxpy"], arch)
    header = [line for line in body(ptx).splitlines() if line.strip()][:3]
    assert header == [f".version {isa}", f".target {arch}", ".address_size 64"]
    assert nvtools.ptx_to_cubin(ptx, arch)[:4] == b"\x7fELF"
    assert NVPTX_TRIPLE == "nvptx64-nvidia-cuda"


def test_fact_lowest_ptx_assembles_for_newer_archs(saxpy_ptx) -> None:
    for arch in ARCHS:
        assert nvtools.ptx_to_cubin(saxpy_ptx("sm_75"), arch)[:4] == b"\x7fELF"


def test_fact_special_registers() -> None:
    names = [f"{r}.{d}" for r in ("tid", "ctaid", "ntid", "nctaid") for d in "xyz"]
    names.append("laneid")

    def build(mod, fn, b):
        # Sum every register into out[0] so none is optimised away.
        total = I32(0)
        for name in names:
            total = b.xor(b.mul(total, I32(31)), sreg(b, name))
        b.store(total, fn.args[0])

    ptx = body(one_kernel(build))
    for name in names:
        assert f"%{name}" in ptx, name


def test_fact_warpsize_folds_to_32() -> None:
    def build(mod, fn, b):
        b.store(sreg(b, "warpsize"), fn.args[0])

    ptx = body(one_kernel(build))
    assert "%warpsize" not in ptx
    assert re.search(r"st\.global\.b32\s+\[%rd\d+\], 32;", ptx)


@pytest.mark.parametrize("name", ["llvm.nvvm.barrier0", "llvm.nvvm.barrier.cta.sync.aligned.all"])
def test_fact_barrier(name: str) -> None:
    def build(mod, fn, b):
        args = [] if name.endswith("barrier0") else [I32(0)]
        b.store(I32(1), fn.args[0])
        b.call(declare(mod, name, VOID, [a.type for a in args]), args)
        b.store(b.load(fn.args[1], typ=I32), fn.args[0])

    ptx = body(one_kernel(build))
    assert re.search(r"\bbar\.sync\s+0;", ptx)


def test_fact_barrier0_is_upgraded_on_parse() -> None:
    mod = new_module()
    _, b = kernel(mod, "k", [])
    b.call(declare(mod, "llvm.nvvm.barrier0", VOID, []), [])
    b.ret_void()
    init_llvm()
    names = {f.name for f in llvm.parse_assembly(str(mod)).functions}
    assert "llvm.nvvm.barrier.cta.sync.aligned.all" in names
    assert "llvm.nvvm.barrier0" not in names


@pytest.mark.parametrize("mode", ["down", "up", "bfly", "idx"])
def test_fact_shuffles(mode: str) -> None:
    def build(mod, fn, b):
        lane = sreg(b, "laneid")
        clamp = I32(0 if mode == "up" else 0x1F)
        shfl_i = declare(mod, f"llvm.nvvm.shfl.sync.{mode}.i32", I32, [I32, I32, I32, I32])
        shfl_f = declare(mod, f"llvm.nvvm.shfl.sync.{mode}.f32", F32, [I32, F32, I32, I32])
        got_i = b.call(shfl_i, [I32(-1), lane, I32(1), clamp])
        got_f = b.call(shfl_f, [I32(-1), b.sitofp(lane, F32), I32(1), clamp])
        b.store(got_i, fn.args[0])
        b.store(got_f, fn.args[1])

    ptx = body(one_kernel(build))
    assert len(re.findall(rf"\bshfl\.sync\.{mode}\.b32\b", ptx)) == 2


def test_fact_atomics() -> None:
    def build(mod, fn, b):
        ints, floats, v = fn.args
        results = [
            b.atomic_rmw("add", ints, v, "monotonic"),
            b.atomic_rmw("sub", ints, v, "monotonic"),
            b.atomic_rmw("max", ints, v, "monotonic"),
            b.atomic_rmw("min", ints, v, "monotonic"),
            b.atomic_rmw("xchg", ints, v, "monotonic"),
            b.extract_value(b.cmpxchg(ints, I32(0), v, "monotonic", "monotonic"), 0),
            b.fptosi(b.atomic_rmw("fadd", floats, b.sitofp(v, F32), "monotonic"), I32),
        ]
        total = I32(0)
        for r in results:  # use every old value, as the atomics return them
            total = b.add(total, r)
        b.store(total, b.gep(ints, [I32(1)], source_etype=I32))

    ptx = body(one_kernel(build))
    for op in ("add.u32", "max.s32", "min.s32", "exch.b32", "cas.b32", "add.f32"):
        assert re.search(rf"\batom\.(?:\w+\.)*global\.{re.escape(op)}\b", ptx), op


def test_fact_shared_memory_is_addrspace_3() -> None:
    def build(mod, fn, b):
        arr = ir.ArrayType(F32, 128)
        smem = ir.GlobalVariable(mod, arr, "tile", addrspace=3)
        smem.linkage = "internal"
        smem.initializer = ir.Constant(arr, ir.Undefined)
        smem.align = 4
        tid = sreg(b, "tid.x")
        slot = b.gep(smem, [I32(0), tid])
        b.store(b.load(b.gep(fn.args[1], [tid], source_etype=F32), typ=F32), slot)
        b.call(declare(mod, "llvm.nvvm.barrier.cta.sync.aligned.all", VOID, [I32]), [I32(0)])
        other = b.gep(smem, [I32(0), b.xor(tid, I32(1))])
        b.store(b.load(other, typ=F32), b.gep(fn.args[0], [tid], source_etype=F32))

    ptx = body(one_kernel(build))
    assert re.search(r"\.shared \.align 4 \.b8 tile\[512\];", ptx)
    assert "st.shared" in ptx and "ld.shared" in ptx


@pytest.mark.parametrize("how", ["inline_asm", "intrinsic"])
def test_fact_exit_ends_the_thread(how: str) -> None:
    def build(mod, fn, b):
        with b.if_then(b.icmp_unsigned("==", sreg(b, "tid.x"), fn.args[2])):
            if how == "inline_asm":
                b.asm(ir.FunctionType(VOID, []), "exit;", "", [], side_effect=True)
            else:
                b.call(declare(mod, "llvm.nvvm.exit", VOID, []), [])
                b.unreachable()
        b.store(I32(1), fn.args[0])

    ptx = body(one_kernel(build))
    assert re.search(r"^\s*exit;", ptx, re.MULTILINE)


@pytest.mark.parametrize(("fastmath", "op"), [(False, "sqrt.rn.f32"), (True, "sqrt.rn.ftz.f32")])
def test_fact_nvvm_reflect_ftz_reaches_libdevice(fastmath: bool, op: str) -> None:
    def build(mod, fn, b):
        p = b.gep(fn.args[1], [global_index(b)], source_etype=F32)
        b.store(b.call(declare(mod, "__nv_sqrtf", F32, [F32]), [b.load(p, typ=F32)]), p)

    ptx = body(one_kernel(build, fastmath=fastmath))
    assert re.search(rf"\b{re.escape(op)}\b", ptx)
    assert "__nv" not in ptx


@pytest.mark.parametrize(("flags", "fused"), [((), False), (("contract",), True)])
def test_fact_fusion_follows_the_ir_flags(flags: tuple[str, ...], fused: bool) -> None:
    def build(mod, fn, b):
        p = b.gep(fn.args[1], [global_index(b)], source_etype=F32)
        x = b.load(p, typ=F32)
        b.store(b.fadd(b.fmul(x, x, flags=flags), F32(1.0), flags=flags), p)

    ptx = body(one_kernel(build))
    assert bool(re.search(r"\bfma\.rn\.f32\b", ptx)) is fused
    assert bool(re.search(r"\bmul\.rn\.f32\b", ptx)) is not fused


def test_fact_legacy_kernel_annotation_is_upgraded_to_ptx_kernel() -> None:
    mod = new_module()
    fn = ir.Function(mod, ir.FunctionType(VOID, []), "k")
    ir.IRBuilder(fn.append_basic_block()).ret_void()
    mod.add_named_metadata("nvvm.annotations", [fn, ir.MetaDataString(mod, "kernel"), I32(1)])
    init_llvm()
    assert "define ptx_kernel void @k()" in str(llvm.parse_assembly(str(mod)))


@pytest.mark.parametrize("arch", ARCHS)
def test_fact_cuda_arch_reflect_is_folded(arch: str) -> None:
    # __nv_tgammaf branches on __nvvm_reflect("__CUDA_ARCH"); NVVMReflect answers from -mcpu.
    def build(mod, fn, b):
        p = b.gep(fn.args[1], [global_index(b)], source_etype=F32)
        b.store(b.call(declare(mod, "__nv_tgammaf", F32, [F32]), [b.load(p, typ=F32)]), p)

    ptx = body(one_kernel(build, arch=arch))
    assert "__nvvm_reflect" not in ptx and "__nv_" not in ptx


@pytest.mark.parametrize(
    ("scope", "cas"),
    [("", "atom.relaxed.sys.global.cas.b32"), ('syncscope("device") ', "atom.relaxed.gpu.global.cas.b32"),
     ('syncscope("block") ', "atom.relaxed.cta.global.cas.b32")],
)  # fmt: skip
def test_fact_atomic_scopes(scope: str, cas: str) -> None:
    # IR text only because llvmlite's builder has no syncscope argument.
    text = (
        f"define ptx_kernel void @k(ptr %p, i32 %v) {{\n"
        f"  %o = cmpxchg ptr %p, i32 0, i32 %v {scope}monotonic monotonic\n"
        f"  %a = atomicrmw add ptr %p, i32 %v {scope}monotonic\n"
        f"  ret void\n}}\n"
    )
    ptx = body(compile_ptx(text, ["k"], "sm_75"))
    assert re.search(rf"\b{re.escape(cas)}\b", ptx)
    assert re.search(r"\batom\.global\.add\.u32\b", ptx)
    assemble_everywhere(ptx)
