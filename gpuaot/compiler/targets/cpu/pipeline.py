"""The CPU pipeline: a module for host code, and LLVM's passes over it.

    mod = new_module("m")                 # triple and data layout of the baseline CPU level
    ref = optimize(str(mod), tm=tm)       # parsed, verified, O3 (+ unroll-and-jam): ModuleRef

Each CPU level (:mod:`..cpu_variant`) runs the same pipeline with its own target machine.
"""

from __future__ import annotations

import re

import llvmlite.binding as llvm
from llvmlite import ir

from .. import cpu_variant

# Bump when ``optimize`` changes: the compilation cache keys on the IR text, which records it.
PIPELINE = "cpu-o3-jam/3"
# Threads per jammed x-loop iteration (:func:`.order.jam_count` picks one per kernel). How many
# threads advance together never changes what each computes: each still adds in its own order.
JAM_COUNT = 8  # threads that each stream memory of their own (a row sum): 8 streams at a time
JAM_WIDE = 32  # threads whose accesses are contiguous across x or shared (a matmul's B[k, col],
# A[row, k]): enough independent chains to hide the FMA's latency (4 vectors of 8 on AVX2);
# ``jam_wide`` doubles it where the level has 512-bit vectors (4 vectors of 16)


def jam_wide(requires) -> int:
    """The wide count for a CPU level with these features (``cpus.Variant.requires``)."""
    return 2 * JAM_WIDE if "avx512f" in requires else JAM_WIDE


# A loop property LLVM ignores (with the count), kept through its loop passes; ``optimize``
# turns it into ``llvm.loop.unroll_and_jam.count`` once the assumptions that block
# unroll-and-jam are gone.
JAM_MARK = "gpuaot.unroll_and_jam"


def new_module(name: str) -> ir.Module:
    """A module for host code; every CPU level of the platform shares its data layout."""
    mod = ir.Module(name=name)
    tm = cpu_variant.variant_machine(cpu_variant.baseline())
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    mod.add_named_metadata("gpuaot.cpu.pipeline", [PIPELINE])
    return mod


def _parse(text: str, tm):
    ref = llvm.parse_assembly(text)
    ref.triple = tm.triple
    ref.data_layout = str(tm.target_data)
    ref.verify()
    return ref


def _default_pipeline(ref, tm, opt: int, unroll: bool = True) -> None:
    pto = llvm.create_pipeline_tuning_options(speed_level=opt)
    pto.loop_vectorization = opt >= 2
    pto.slp_vectorization = opt >= 2
    pto.loop_unrolling = unroll
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(ref, pb)


_ASSUMPTIONS = re.compile(
    r"^[ \t]*(?:tail )?call void @llvm\.(?:assume|experimental\.noalias\.scope\.decl)\(.*\n",
    re.MULTILINE,
)
_JAM_NODE = re.compile(rf'!{{!"{re.escape(JAM_MARK)}", i32 (\d+)}}')
_JAM_COUNT_NODE = re.compile(r'!\{!"llvm\.loop\.unroll_and_jam\.count", i32 \d+\}')
_JAM_DONE_NODE = '!{!"llvm.loop.unroll_and_jam.disable"}'


def optimize(ir_text: str, opt: int = 3, *, tm, wide: int = JAM_WIDE):
    """Parse, verify and run LLVM's O3 pipeline with both vectorisers; returns the ModuleRef.

    A kernel whose threads loop (a row sum, a dot product per output) cannot be vectorised
    along its x loop, which is not innermost, nor along the thread's own loop, a sequential
    floating-point reduction. Unroll-and-jam of the x loop runs a group of threads in lock
    step instead (the count the entry marked: ``JAM_COUNT``, or ``JAM_WIDE`` as ``wide``
    says for the level), each still adding in its own order, and SLP then packs them into
    vectors. It needs the x loop the entry marked (``JAM_MARK``, only where the arrays are
    known not to overlap) and no calls in it, so a second round runs on the first one's
    output without its ``llvm.assume`` calls (they did their work: the guards they stated
    are folded; dropping an assumption only removes a fact) and without the ``noalias``
    scope declarations of the inlined restrict body: its scopes then hold for the whole
    function, across iterations and copies, which is true: the entry runs that body only
    when no two arrays share a byte.
    """
    ref = _parse(ir_text, tm)
    jam = opt >= 2 and JAM_MARK in ir_text
    # Unroll-and-jam needs each thread's loop whole: no unrolling in the first round.
    _default_pipeline(ref, tm, opt, unroll=not jam)
    if not jam:
        return ref
    text = str(ref)

    def count(m: re.Match) -> str:
        n = int(m.group(1))
        return f'!{{!"llvm.loop.unroll_and_jam.count", i32 {wide if n == JAM_WIDE else n}}}'

    text = _JAM_NODE.sub(count, _ASSUMPTIONS.sub("", text))
    ref = _parse(text, tm)
    pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=opt))
    mpm = llvm.create_new_module_pass_manager()
    mpm.add_loop_simplify_pass()
    mpm.add_lcssa_pass()
    mpm.add_loop_unroll_and_jam_pass()
    mpm.run(ref, pb)
    # Loops it could not jam keep the request; retire it so LLVM does not warn about them.
    ref = _parse(_JAM_COUNT_NODE.sub(_JAM_DONE_NODE, str(ref)), tm)
    _default_pipeline(ref, tm, opt)
    return ref
