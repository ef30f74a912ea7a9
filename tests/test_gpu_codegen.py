"""The NVPTX code the GPU target makes, against its oracles: ptxas for spills, LLVM's JIT for
the meaning of the GPU's own integer lowerings, and the PTX for what was merged or moved.

- sin(x) and cos(x) of one x share one libdevice sincos (one argument reduction), only where
  one call dominates the other;
- ``//`` and ``%`` of a widened 32-bit value divide in 32 bits, with Python's results for
  every divisor (checked through LLVM's JIT on the host);
- shapes reach LLVM as never negative (``range``); strides do not;
- the exception reporter is inlined into cold blocks where a kernel raises in few places (out
  of line where it raises in many), writes the record's low words, and has no fence;
- none of the benchmark kernels spills (``ptxas -v``);
- a 32-bit index widened in one block and scaled in another is one ``mul.wide.u32``
  (``ptx_peephole``), only where the widened register still equals its source; shared
  memory is addressed with 32-bit registers (``-nvptx-short-ptr``).
"""

from __future__ import annotations

import ctypes
import re
import subprocess
import tempfile
from pathlib import Path

import llvmlite.binding as llvm
import pytest
from llvmlite import ir
from test_ops_registry import type_body

from gpuaot.bundle.abi import EXC_RECORD
from gpuaot.compiler.lower.lowering import ModuleBuilder
from gpuaot.compiler.targets.gpu import GPUEmitter, runtime_functions
from gpuaot.compiler.targets.gpu.emitter import NONNEGATIVE
from gpuaot.compiler.targets.gpu.emitter import new_module as gpu_module
from gpuaot.compiler.targets.nvptx import compile_ptx, init_llvm
from gpuaot.compiler.targets.nvptx_sincos import merge_sincos
from gpuaot.compiler.targets.nvtools import find_ptxas
from gpuaot.errors import BuildError
from gpuaot.lang.types import i64

REPO = Path(__file__).resolve().parents[1]
# The Payne-Hanek step of every libdevice sinf/cosf/sincosf: one per argument reduction.
REDUCTION = "mad.lo.cc.u32"


def kernel_ir(tmp_path, body: str) -> str:
    tf, errors = type_body(tmp_path, body, "gpu")
    assert not errors, [e.message for e in errors]
    mod = gpu_module("m")
    fn = ModuleBuilder(GPUEmitter(mod)).function(tf, name="k", linkage="external")
    fn.calling_convention = "ptx_kernel"
    if tf.may_raise:
        runtime_functions(mod)
    return str(mod)


def kernel_ptx(tmp_path, body: str) -> str:
    return compile_ptx(kernel_ir(tmp_path, body), ["k"], "sm_80", keep=[EXC_RECORD])


def k(params: str, *lines: str) -> str:
    return f"@ga.kernel\ndef k({params}):\n" + "".join(f"    {x}\n" for x in lines)


# ---------------------------------------------------------------------------- sincos


@pytest.mark.parametrize(
    "lines,reductions",
    [
        (["v = x[0]", "out[0] = math.sin(v) + math.cos(v)"], 1),
        (["v = x[0]", "s = math.sin(v)", "if v > 0:", "    s += math.cos(v)", "out[0] = s"], 1),
        # neither dominates the other: merging would run both polynomials on each path
        (
            [
                "v = x[0]",
                "if v > 0:",
                "    out[0] = math.sin(v)",
                "else:",
                "    out[0] = math.cos(v)",
            ],
            2,
        ),
        (["out[0] = math.sin(x[0]) + math.cos(x[1])"], 2),  # two values
        (["out[0] = math.sin(x[0])"], 1),
    ],
)
def test_sin_and_cos_of_one_value_share_one_reduction(tmp_path, lines, reductions):
    ptx = kernel_ptx(tmp_path, k("x: Array[f32], out: Array[f32]", *lines))
    assert ptx.count(REDUCTION) == reductions


def test_a_lone_sin_stays_sinf(tmp_path):
    ir_text = kernel_ir(tmp_path, k("x: Array[f32], out: Array[f32]", "out[0] = math.sin(x[0])"))
    assert merge_sincos(ir_text) is None


SINCOS_IR = """\
define float @f(float %x, i1 %c) {
entry:
  %s = call float @__nv_sinf(float %x)
  br i1 %c, label %then, label %join
then:
  %k = call float @__nv_cosf(float %x)
  br label %join
join:
  %r = phi float [ %s, %entry ], [ %k, %then ]
  ret float %r
}
declare float @__nv_sinf(float)
declare float @__nv_cosf(float)
"""


def test_merged_module_is_valid_and_reads_both_halves():
    merged = merge_sincos(SINCOS_IR)
    assert merged is not None
    init_llvm()
    mod = llvm.parse_assembly(merged)
    mod.verify()
    text = str(mod)
    assert "@__nv_sinf(" not in text.split("define internal")[0].split("declare")[0]
    assert re.search(r"%s = extractvalue \{ float, float \} %\S+, 0", text)
    assert re.search(r"%k = extractvalue \{ float, float \} %\S+, 1", text)
    assert text.count("call { float, float } @gpuaot.sincosf") == 1


def test_sincos_results_equal_sinf_and_cosf_ptx_semantics(tmp_path):
    """Merged or not, the kernel's PTX computes the same polynomials: the merged one has
    every FMA constant of the separate ones (libdevice's sin and cos kernels)."""
    sep = kernel_ptx(tmp_path, k("x: Array[f32], out: Array[f32]", "out[0] = math.sin(x[0])"))
    sep += kernel_ptx(tmp_path, k("x: Array[f32], out: Array[f32]", "out[0] = math.cos(x[0])"))
    both = kernel_ptx(
        tmp_path,
        k("x: Array[f32], out: Array[f32]", "v = x[0]", "out[0] = math.sin(v) - math.cos(v)"),
    )
    consts = set(re.findall(r"0f[0-9A-F]{8}", sep))
    assert consts - {"0fBF800000"} <= set(re.findall(r"0f[0-9A-F]{8}", both))


# ---------------------------------------------------------------------------- narrow // and %

EDGES_Y = [
    -(2**63), -(2**32), -(2**31) - 1, -(2**31), -(2**31) + 1, -7, -2, -1, 1, 2, 3, 7, 256,
    2**31 - 1, 2**31, 2**31 + 1, 2**32, 2**63 - 1,
]  # fmt: skip
EDGES_X = [-(2**31), -(2**31) + 1, -7, -1, 0, 1, 6, 7, 2**31 - 1]


def _jit_divmod(op: str, src_bits: int, signed: bool):
    """``f(x, y)``: ``widen(x: i<src_bits>) op y`` as the GPU emitter lowers it, JIT-compiled
    for the host (the lowering is target-independent IR)."""
    init_llvm()
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    mod = ir.Module("divmod")
    src = ir.IntType(src_bits)
    fn = ir.Function(mod, ir.FunctionType(ir.IntType(64), [src, ir.IntType(64)]), "f")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    x = (b.sext if signed else b.zext)(fn.args[0], ir.IntType(64))
    em = GPUEmitter(gpu_module("unused"))
    out = (em.int_mod if op == "%" else em.int_floordiv)(b, x, fn.args[1], i64)
    b.ret(out)
    parsed = llvm.parse_assembly(str(mod))
    parsed.verify()
    tm = llvm.Target.from_default_triple().create_target_machine()
    engine = llvm.create_mcjit_compiler(parsed, tm)
    engine.finalize_object()
    cty = getattr(ctypes, f"c_{'' if signed else 'u'}int{src_bits}")
    proto = ctypes.CFUNCTYPE(ctypes.c_int64, cty, ctypes.c_int64)
    return engine, proto(engine.get_function_address("f")), str(mod)


@pytest.mark.parametrize("op", ["%", "//"])
@pytest.mark.parametrize("src_bits,signed", [(32, True), (16, True), (16, False)])
def test_narrowed_divmod_gives_pythons_results(op, src_bits, signed):
    engine, f, text = _jit_divmod(op, src_bits, signed)
    assert " srem i32 " in text or " sdiv i32 " in text  # narrowed
    lo, hi = (-(2 ** (src_bits - 1)), 2 ** (src_bits - 1)) if signed else (0, 2**src_bits)
    xs = sorted({min(max(x, lo), hi - 1) for x in EDGES_X} | {lo, hi - 1})
    for x in xs:
        for y in EDGES_Y:
            want = x % y if op == "%" else x // y
            assert f(x, y) == want, (x, op, y)


def test_a_64_bit_dividend_is_not_narrowed(tmp_path):
    ir_text = kernel_ir(tmp_path, k("x: Array[i64], out: Array[i64]", "out[0] = x[0] % x.shape[0]"))
    assert "srem i64" in ir_text and "srem i32" not in ir_text


def test_histogram_divides_in_32_bits(tmp_path):
    body = k(
        "x: Array[i32], bins: Array[i64]",
        "i = ga.grid(1)",
        "while i < x.shape[0]:",
        "    ga.atomic_add(bins, x[i] % bins.shape[0], 1)",
        "    i += ga.grid_size(1)",
    )
    ptx = kernel_ptx(tmp_path, body)
    assert re.search(r"rem\.[su]32", ptx) and not re.search(r"(rem|div)\.[su]64", ptx)


# ---------------------------------------------------------------------------- shapes, exceptions


def test_shapes_are_nonnegative_strides_are_not(tmp_path):
    ir_text = kernel_ir(
        tmp_path, k("a: Array[f32, 2], s: Array[f32, 1, 'A'], n: i64", "a[0, 0] = s[0] + f32(n)")
    )
    define = next(line for line in ir_text.splitlines() if line.startswith("define"))
    params = re.findall(r"(?:ptr|i\d+|float|double)( range\([^)]*\))? %", define)
    marked = [p == f" {NONNEGATIVE}" for p in params]
    # a: ptr, 2 shapes; s: ptr, 1 shape, 1 stride; n
    assert marked == [False, True, True, False, True, False, False]


def _reporter(ptx: str) -> str:
    """The reporter's code: its .func, or (inlined) the kernel's part after its first ret."""
    if ".func gpu_report_exception()\n{" in ptx:
        return ptx[ptx.index(".func gpu_report_exception()\n{") :]
    body = ptx[ptx.index(".visible .entry k(") :]
    return body[body.index("ret;") :]


@pytest.mark.parametrize("sites,inlined", [(1, True), (2, True), (3, False)])
def test_exception_reporter_cold_low_words_no_fence(tmp_path, sites, inlined):
    lines = ["i = ga.grid(1)"] + [f"out[{n}] = x[i] // x[{n}]" for n in range(sites)]
    ptx = kernel_ptx(tmp_path, k("x: Array[i32], out: Array[i32]", *lines))
    assert ("call.uni gpu_report_exception" not in ptx) == inlined
    kernel = ptx[ptx.index(".visible .entry k(") :]
    if inlined:  # in the cold blocks LLVM places after the kernel's return
        assert "cas" not in kernel[: kernel.index("ret;")]
    report = _reporter(ptx)
    assert report.count("atom.relaxed.sys.global.cas.b32") == (sites if inlined else 1)
    assert report.count("st.global.b32") == 7 * (sites if inlined else 1)
    assert "st.global.b64" not in report
    assert "fence" not in report and "membar" not in report


# ---------------------------------------------------------------------------- spills

BENCH = [
    ("bench/kernels_pkg", ["saxpy", "stencil5", "matmul"]),
    ("fixtures/gpu_features", ["block_sum", "warp_sum", "histogram"]),
    ("bench/sass_pkg", ["stencil5_ij", "matmul_tiled", "atomic_sum", "transcendental"]),
]


def _ptxas_v(ptx: str) -> str:
    try:
        ptxas = find_ptxas()
    except BuildError as exc:
        pytest.skip(str(exc))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "k.ptx").write_text(ptx)
        out = subprocess.run(
            [str(ptxas), "-arch=sm_80", "-v", "k.ptx", "-o", "k.cubin"],
            cwd=tmp, capture_output=True, text=True, check=True,
        )  # fmt: skip
    return out.stdout + out.stderr


@pytest.mark.parametrize("pkg,names", BENCH)
def test_bench_kernels_do_not_spill(pkg, names):
    from gpuaot.compiler.discover import discover
    from gpuaot.compiler.driver import BuildOptions, type_units
    from gpuaot.compiler.targets import gpu
    from gpuaot.errors import Diagnostics

    opts = BuildOptions.resolve(str(REPO / pkg), no_cpu=True, arch="sm_80")
    diag = Diagnostics()
    units, _ = type_units(discover(str(opts.root), diag), opts, "gpu", diag)
    diag.raise_if_any()
    wanted = {f"{opts.name}.kernels.{n}" for n in names}
    seen = 0
    for unit in units:
        if unit.func.qualname not in wanted:
            continue
        gpu.lower_gpu(unit)
        ptx = compile_ptx(unit.ir, [unit.symbol], "sm_80", keep=[EXC_RECORD])
        report = _ptxas_v(ptx)
        spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
        assert spills and all(s == ("0", "0") for s in spills), report
        seen += 1
    assert seen >= len(names)


# ---------------------------------------------------------------------------- PTX peephole, pointers

# A kernel in LLVM's PTX shape: tid.y widened in the entry block (for a test), scaled in the
# block taken. @LOOP_END@ / @ASM@ / @TWICE@ / @SHIFT@ vary it for each rule of widen_shifts.
_PTX = """\
.version 7.0
.target sm_80
.address_size 64

.visible .entry k(
\t.param .u64 k_param_0,
\t.param .u64 k_param_1
)
{
\t.reg .pred \t%p<3>;
\t.reg .b32 \t%r<4>;
\t.reg .b64 \t%rd<8>;

\tld.param.b64 \t%rd3, [k_param_0];
\tld.param.b64 \t%rd4, [k_param_1];
\tmov.b64 \t%rd7, 0;
$L__BB0_1:
\tmov.u32 \t%r1, %tid.y;
@TWICE@\tcvt.u64.u32 \t%rd1, %r1;
@LOOP_END@\tsetp.le.u64 \t%p1, %rd4, %rd1;
\t@%p1 bra \t$L__BB0_2;
@ASM@\tshl.b64 \t%rd2, %rd1, @SHIFT@;
\tadd.s64 \t%rd5, %rd3, %rd2;
\tst.global.b32 \t[%rd5], %r1;
$L__BB0_2:
\tret;

}
"""
_LOOP = "\tadd.s64 \t%rd7, %rd7, 1;\n\tsetp.lt.u64 \t%p2, %rd7, 4;\n\t@%p2 bra \t$L__BB0_1;\n"


def _variant(
    loop: str = "", asm: bool = False, twice: bool = False, shift: int = 2, after: bool = False
) -> str:
    ptx = _PTX.replace("@SHIFT@", str(shift))
    ptx = ptx.replace("@LOOP_END@", _LOOP if loop == "zext" else "")
    asm_text = "\t// begin inline asm\n\tmov.u32 %r1, %r1;\n\t// end inline asm\n"
    ptx = ptx.replace("@ASM@", asm_text if asm else "")
    ptx = ptx.replace("@TWICE@", "\tadd.u32 \t%r1, %r1, 1;\n" if twice else "")
    if after:  # tid.y read after the cvt (the cvt reads an unset %r1): its value may differ
        ptx = ptx.replace("\tmov.u32 \t%r1, %tid.y;\n", "")
        branch = "@%p1 bra \t$L__BB0_2;\n"
        ptx = ptx.replace(branch, branch + "\tmov.u32 \t%r1, %tid.y;\n")
    return ptx


@pytest.mark.parametrize(
    "variant,widened",
    [
        ({}, True),
        ({"shift": 31}, True),
        ({"shift": 32}, False),  # beyond a 32-bit multiplier
        ({"loop": "zext"}, False),  # the cvt inside a loop: may be stale against %r1
        ({"asm": True}, False),  # inline assembly names %r1: counted as written
        ({"twice": True}, False),  # %r1 written twice
        ({"after": True}, False),  # %r1 written after the cvt
    ],
)
def test_widen_shifts_rewrites_only_where_the_zext_still_holds(variant, widened):
    from gpuaot.compiler.targets.nvtools import ptx_to_cubin
    from gpuaot.compiler.targets.ptx_peephole import widen_shifts

    ptx = _variant(**variant)
    out = widen_shifts(ptx)
    shift = variant.get("shift", 2)
    assert (f"mul.wide.u32 \t%rd2, %r1, {1 << shift};" in out) == widened
    assert out.count("\n") == ptx.count("\n")
    if widened:  # one line changed, and ptxas takes the result
        assert [a for a, b in zip(ptx.splitlines(), out.splitlines()) if a != b] == [
            f"\tshl.b64 \t%rd2, %rd1, {shift};"
        ]
        try:
            assert ptx_to_cubin(out, "sm_80")[:4] == b"\x7fELF"
        except BuildError as exc:
            pytest.skip(str(exc))
    else:
        assert out == ptx


def test_a_loop_after_the_zext_does_not_stop_the_rewrite():
    from gpuaot.compiler.targets.ptx_peephole import widen_shifts

    # The loop (back to $L__BB0_3) lies after the cvt: the cvt and tid.y's mov run once.
    ptx = _variant().replace(
        "$L__BB0_2:\n", "$L__BB0_3:\n" + _LOOP.replace("BB0_1", "BB0_3") + "$L__BB0_2:\n"
    )
    assert "mul.wide.u32 \t%rd2, %r1, 4;" in widen_shifts(ptx)


def test_a_y_index_scaled_in_the_branch_is_one_mul_wide(tmp_path):
    body = k(
        "u: Array[f32, 2], out: Array[f32, 2]",
        "i, j = ga.grid(2)",
        "if i < u.shape[0] and j < u.shape[1]:",
        "    out[i, j] = u[i, j]",
    )
    ptx = kernel_ptx(tmp_path, body)
    # j comes from tid.y / ctaid.y (32 bits, widened for the bounds test): scaled by mul.wide
    assert re.search(r"mul\.wide\.u32 \t%rd\d+, %r\d+, 4;", ptx), ptx


def test_shared_and_local_pointers_are_32_bits(tmp_path):
    body = k(
        "x: Array[f32], out: Array[f32]",
        "buf = ga.shared_array(f32, 128)",
        "t = ga.thread_idx.x",
        "buf[t] = x[t]",
        "ga.syncthreads()",
        "out[t] = buf[127 - t]",
    )
    ptx = kernel_ptx(tmp_path, body)
    shared = re.findall(r"(?:ld|st)\.shared\.b32 \t\[(%\w+)", ptx)
    assert shared and all(re.fullmatch(r"%r\d+", reg) for reg in shared), ptx
