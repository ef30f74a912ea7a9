"""NVPTX code generation: LLVM IR text → optimised PTX for one architecture, via llvmlite.

    >>> ptx = compile_ptx(ir_text, ["saxpy"], "sm_75")          # doctest: +SKIP
    >>> print(ptx)                                              # doctest: +SKIP
    .version 6.3
    .target sm_75
    .address_size 64
    .visible .entry saxpy(
    ...

What ``compile_ptx`` does, in order: parse; force the NVPTX triple and data layout; give
``sin(x)`` and ``cos(x)`` of one ``x`` one ``__nv_sincosf`` (:mod:`.nvptx_sincos`); link
libdevice only if the module calls an ``__nv_*`` function; add the ``nvvm-reflect-ftz``
module flag; give every definition that is neither a kernel nor in ``keep`` internal
linkage (so unused libdevice goes and device helpers inline); run LLVM's default O1-O3
module pipeline; mark every loop as already unrolled (:func:`mark_loops_unrolled`); emit
PTX with a target machine for ``arch``; scale by ``mul.wide`` what LLVM shifts in 64 bits
(:mod:`.ptx_peephole`).

Facts verified with llvmlite 0.50 / LLVM 22.1 and ptxas 12.9 (each has a test in
``tests/gpu_toolchain/test_nvptx.py``):

- **Kernels** are functions with the ``ptx_kernel`` calling convention; llvmlite's
  ``ir.Function.calling_convention = "ptx_kernel"`` round-trips through
  ``parse_assembly``, and such a function becomes ``.visible .entry``. A plain function
  becomes ``.func``. (``!nvvm.annotations`` ``"kernel"`` is the pre-LLVM-20 spelling; LLVM 22
  upgrades it on parse, but gpuaot emits the calling convention.)
- **Triple and layout**: ``nvptx64-nvidia-cuda`` emits ``.address_size 64``; the target
  machine's layout is ``NVPTX_DATA_LAYOUT`` (LLVM 22 adds ``p6:32:32`` for tensor memory).
  With ``-nvptx-short-ptr`` (set by ``init_llvm``) shared, constant and local pointers
  (``p3``, ``p4``, ``p5``) are 32 bits, as NVVM makes them: each space is far below 4 GiB,
  and a 64-bit one costs two registers and wide arithmetic for every shared index (a
  generic pointer stays 64 bits). It is an NVPTX option: the CPU target ignores it.
- **PTX ISA version**: with no ``+ptxNN`` feature LLVM picks the lowest ISA the SM allows:
  sm_75 → ``.version 6.3``, sm_80 → 7.0, sm_90 → 7.8. The cu12 ptxas accepts all three, and
  assembles sm_75 PTX for sm_80 and sm_90 too (the reverse is refused: ".target is higher").
- **Special registers**: ``llvm.nvvm.read.ptx.sreg.{tid,ctaid,ntid,nctaid}.{x,y,z}`` → i32,
  ``llvm.nvvm.read.ptx.sreg.laneid`` → i32; they read ``%tid.x`` etc.
  ``llvm.nvvm.read.ptx.sreg.warpsize`` is folded to the constant 32.
- **Barrier**: ``llvm.nvvm.barrier0()`` still parses but is auto-upgraded to LLVM 22's
  ``llvm.nvvm.barrier.cta.sync.aligned.all(i32 0)``; both emit ``bar.sync 0``. Emit the
  new name.
- **Shuffles**: ``llvm.nvvm.shfl.sync.{down,up,bfly,idx}.{i32,f32}(i32 mask, T value,
  i32 lane_or_delta, i32 clamp)`` → ``shfl.sync.down.b32 ...``. For a whole warp CUDA's
  headers pass mask -1 and clamp 0x1f (0 for ``up``); that part is semantics, which only
  a GPU can check.
- **Atomics**: ``atomicrmw`` (add, sub, fadd, xchg, min, max, ...) and ``cmpxchg`` on a
  generic ``ptr`` to global memory become ``atom.global.*``; ops with no PTX instruction
  (e.g. ``fmax`` on f32) become a CAS loop. A ``monotonic`` ``atomicrmw`` is a plain
  ``atom.global.add.u32`` (PTX's default: relaxed, GPU scope, like CUDA's ``atomicAdd``)
  whatever its syncscope; a ``cmpxchg`` is ``atom.relaxed.sys.global.cas`` by default,
  ``.gpu`` with ``syncscope("device")``, ``.cta`` with ``syncscope("block")``. llvmlite's
  builder cannot write a syncscope, so its ``cmpxchg`` is system scope (correct, and
  stronger than CUDA's ``atomicCAS``).
- **Shared memory**: an ``addrspace(3)`` global (internal, undef initialiser) becomes a
  ``.shared`` array (LLVM demotes it into the kernel that uses it).
- **Ending a thread**: inline asm ``exit;`` (side effect) or the ``llvm.nvvm.exit()``
  intrinsic (``noreturn``, follow with ``unreachable``) both emit ``exit;``.
- **libdevice**: ``libdevice.10.bc`` (triple ``nvptx64-nvidia-gpulibs``) links with
  ``parse_bitcode`` + ``link_in``; the NVPTX target's NVVMReflect pass, which llvmlite's pass
  builder runs because it is built with the target machine, folds ``__nvvm_reflect``:
  ``__CUDA_FTZ`` from the ``nvvm-reflect-ftz`` module flag, ``__CUDA_ARCH`` from ``arch``,
  anything else from the ``-nvvm-reflect-add=NAME=VALUE`` LLVM option, and an unknown name
  is 0. libdevice 10 asks for exactly ``__CUDA_FTZ``, ``__CUDA_ARCH`` and
  ``__CUDA_PREC_SQRT``; without ``__CUDA_PREC_SQRT=1`` (see ``init_llvm``) ``__nv_sqrtf``
  emits ``sqrt.approx.f32``. With it, ``__nv_sqrtf`` emits ``sqrt.rn.f32`` (ftz 0) or
  ``sqrt.rn.ftz.f32`` (ftz 1).
- **Loop unrolling**: ptxas unrolls again any loop PTX does not mark ``.pragma "nounroll"``
  (LLVM's runtime-unrolled matmul loop, 4 FMAs a trip, became 32 FFMAs a trip in SASS).
  LLVM's NVPTX printer writes that pragma in the header of a loop whose latch's
  ``!llvm.loop`` holds ``llvm.loop.unroll.disable``, which LLVM itself only adds to the
  remainder loops it makes; NVVM marks every loop it has unrolled, so gpuaot marks them all.
- **Fusion**: ``a*b+c`` stays ``mul.rn``/``add.rn`` unless the IR's instructions carry
  ``contract``/``fast``; the lowering writes those flags (DESIGN.md, "one switch").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

import llvmlite.binding as llvm
from llvmlite import ir

from gpuaot.compiler.targets.ir_text import blocks as ir_blocks
from gpuaot.compiler.targets.ir_text import depth_first, function_bodies, successors
from gpuaot.compiler.targets.nvptx_sincos import SINCOS_KINDS, merge_sincos
from gpuaot.compiler.targets.nvtools import check_arch, find_libdevice
from gpuaot.compiler.targets.ptx_peephole import peephole
from gpuaot.errors import BuildError, InternalError

NVPTX_TRIPLE = "nvptx64-nvidia-cuda"
# What LLVM 22's NVPTX target machine reports for 64-bit CUDA (checked by a test, so an
# llvmlite upgrade that changes it fails loudly instead of mis-sizing types).
NVPTX_DATA_LAYOUT = (
    "e-p3:32:32-p4:32:32-p5:32:32-p6:32:32-p7:32:32"  # -nvptx-short-ptr
    "-i64:64-i128:128-i256:256-v16:16-v32:32-n16:32:64"
)

# Module-flag behaviour 4 ("Override") so that the flag module wins over libdevice, which has
# none; NVVMReflect reads the value for __nvvm_reflect("__CUDA_FTZ").
_MODULE_FLAG_OVERRIDE = 4
_LIBDEVICE_PREFIX = "__nv_"
# Part of every PTX cache key: bump it when these steps change the PTX made from the same IR
# (the compiler's version stays the same between releases). 2: mark_loops_unrolled; 3: one
# sincos for sin and cos of one value; 4: 32-bit shared/local pointers, ptx_peephole;
# 5: ptx_peephole.merge_scaled_adds; 6: ptx_peephole.index_addresses.
PIPELINE_REVISION = 6


@functools.cache
def init_llvm() -> None:
    """Register every target and asm printer once (``llvm.initialize()`` is deprecated).

    Also tells NVVMReflect that ``__CUDA_PREC_SQRT`` is 1, as nvcc does by default: LLVM has
    no module flag for it and folds unknown names to 0, which would turn libdevice's
    ``sqrtf``, ``hypotf``, ``normf``, ``acoshf``, ``asinhf``, ``jnf`` into approximations.
    It is a process-wide LLVM option, so it is set once and never changed (an approximate
    square root is the lowering's choice: ``llvm.sqrt.f32`` with ``afn``).
    And makes shared, constant and local pointers 32 bits (``-nvptx-short-ptr``, read when an
    NVPTX target machine is made: set before the first one).
    """
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    llvm.set_option("gpuaot", "-nvvm-reflect-add=__CUDA_PREC_SQRT=1")
    llvm.set_option("gpuaot", "-nvptx-short-ptr")


def nvptx_target_machine(arch: str, opt_level: int = 3) -> llvm.TargetMachine:
    """A target machine for ``arch`` whose PTX ISA version LLVM picks (the lowest allowed)."""
    init_llvm()
    target = llvm.Target.from_triple(NVPTX_TRIPLE)
    return target.create_target_machine(
        cpu=check_arch(arch), features="", opt=opt_level, codemodel="default"
    )


@functools.cache
def _libdevice_bytes() -> bytes:
    return find_libdevice().read_bytes()


def _reflect_flags_module(ftz: bool) -> llvm.ModuleRef:
    """An empty module carrying ``!{i32 4, !"nvvm-reflect-ftz", i32 ftz}``, to link in."""
    mod = ir.Module(name="gpuaot.nvvm_reflect")
    mod.triple = NVPTX_TRIPLE
    mod.data_layout = NVPTX_DATA_LAYOUT
    i32 = ir.IntType(32)
    flag = mod.add_metadata(
        [i32(_MODULE_FLAG_OVERRIDE), ir.MetaDataString(mod, "nvvm-reflect-ftz"), i32(int(ftz))]
    )
    mod.add_named_metadata("llvm.module.flags", flag)
    return llvm.parse_assembly(str(mod))


def _parse(ir_text: str) -> llvm.ModuleRef:
    try:
        mod = llvm.parse_assembly(ir_text)
        mod.verify()
    except RuntimeError as exc:
        # The IR comes from gpuaot's own lowering: invalid IR is our bug, not the user's.
        raise InternalError(f"invalid NVPTX IR: {exc}") from exc
    if mod.triple not in ("", NVPTX_TRIPLE):
        raise InternalError(f"module triple is {mod.triple!r}, expected {NVPTX_TRIPLE!r}")
    return mod


def _link_libdevice(mod: llvm.ModuleRef) -> None:
    lib = llvm.parse_bitcode(_libdevice_bytes())
    # libdevice says "nvptx64-nvidia-gpulibs" and an older layout; match ours so the linker
    # has nothing to warn about.
    lib.triple = NVPTX_TRIPLE
    lib.data_layout = mod.data_layout
    mod.link_in(lib)


def _internalize(mod: llvm.ModuleRef, keep: set[str]) -> None:
    for value in (*mod.functions, *mod.global_variables):
        if value.is_declaration or value.name in keep or value.name.startswith("llvm."):
            continue
        value.linkage = llvm.Linkage.internal


def _merge_sincos(mod: llvm.ModuleRef, ir_text: str, tm: llvm.TargetMachine) -> llvm.ModuleRef:
    """``mod`` with sin and cos of one value computed by one sincos (:mod:`.nvptx_sincos`):
    looked for after SROA on a copy, so that a module with nothing to merge is untouched."""
    declared = {f.name for f in mod.functions if f.is_declaration}
    if not any({sin, cos} <= declared for sin, cos, *_ in SINCOS_KINDS.values()):
        return mod
    probe = _parse(ir_text)
    probe.triple, probe.data_layout = mod.triple, mod.data_layout
    pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=1))
    fpm = llvm.create_new_function_pass_manager()
    fpm.add_sroa_pass()
    for f in probe.functions:
        if not f.is_declaration:
            fpm.run(f, pb)
    merged = merge_sincos(str(probe))
    return mod if merged is None else _parse(merged)


def _optimize(mod: llvm.ModuleRef, tm: llvm.TargetMachine, opt_level: int) -> None:
    pto = llvm.create_pipeline_tuning_options(speed_level=opt_level)
    pb = llvm.create_pass_builder(tm, pto)
    mpm = pb.getModulePassManager()
    # At O0 the default pipeline keeps dead internal functions: drop unused libdevice anyway.
    mpm.add_global_dead_code_eliminate_pass()
    mpm.run(mod, pb)


def optimized_module(
    ir_text: str,
    kernel_names: list[str],
    arch: str,
    *,
    fastmath: bool = False,
    opt_level: int = 3,
    keep: Iterable[str] = (),
) -> tuple[llvm.TargetMachine, llvm.ModuleRef]:
    """Everything :func:`compile_ptx` does before emitting: what ``emit --stage opt`` shows."""
    if not 0 <= opt_level <= 3:
        raise BuildError(f"opt_level must be 0..3, not {opt_level}")
    tm = nvptx_target_machine(arch, opt_level)
    mod = _parse(ir_text)
    mod.triple = NVPTX_TRIPLE
    mod.data_layout = str(tm.target_data)

    defined = {f.name for f in mod.functions if not f.is_declaration}
    missing = [k for k in kernel_names if k not in defined]
    if missing:
        raise InternalError(f"kernels not defined in the module: {', '.join(missing)}")

    mod = _merge_sincos(mod, ir_text, tm)
    if any(f.is_declaration and f.name.startswith(_LIBDEVICE_PREFIX) for f in mod.functions):
        _link_libdevice(mod)
    mod.link_in(_reflect_flags_module(ftz=fastmath))
    _internalize(mod, set(kernel_names) | set(keep))
    _optimize(mod, tm, opt_level)
    return tm, mark_loops_unrolled(mod)


# The printed IR that mark_loops_unrolled reads besides the blocks (:mod:`.ir_text`): a loop ID
# attached to a terminator, a numbered metadata node.
_LOOP_ID = re.compile(r"!llvm\.loop !(\d+)")
_NODE = re.compile(r"^!(\d+) = (?:distinct )?!\{(.*)\}$")
_NUMBERED = re.compile(r"^!(\d+) = ")
_UNROLL_DISABLE = '!{!"llvm.loop.unroll.disable"}'


def _latches(blocks: dict[str, list[int]], lines: list[str]) -> set[str]:
    """The blocks with a retreating edge in a depth-first walk from the entry: the latches.

    In a reducible CFG (all that structured Python lowers to) a retreating edge is exactly
    a back edge, one whose target dominates its source. In an irreducible one it may also be
    an edge into a cycle that is no natural loop; loop metadata there is ignored by LLVM and
    by the NVPTX printer (they read it only from the latches of loops they find), so an
    extra mark is harmless. Block order is not used: after O3 a loop exit can be printed
    before the loop.
    """
    return depth_first(successors(blocks, lines), next(iter(blocks)))[1]


def mark_loops_unrolled(mod: llvm.ModuleRef) -> llvm.ModuleRef:
    """Give every loop ``llvm.loop.unroll.disable``, as NVVM does, so that ptxas keeps the
    unrolling LLVM chose instead of unrolling again (it honours ``.pragma "nounroll"``).

    Run after LLVM's loop passes: a latch without ``!llvm.loop`` gets a new distinct loop ID
    holding the disable, and an existing loop ID gets the disable added. llvmlite cannot set
    metadata, so this edits the printed module (its structure: blocks, their successors,
    terminators, metadata nodes) and parses it again; a module with no loop comes back as is.
    """
    lines = str(mod).split("\n")
    nodes = {int(m.group(1)): (k, m.group(2)) for k, m in _numbered_nodes(lines)}
    disable = next((n for n, (_, ops) in nodes.items() if f"!{{{ops}}}" == _UNROLL_DISABLE), None)
    numbered = [int(m.group(1)) for m in map(_NUMBERED.match, lines) if m]
    fresh = max(numbered, default=-1) + 1  # after every node, !DILocation and the like too
    added: list[str] = []
    if disable is None:
        disable, fresh = fresh, fresh + 1
        added.append(f"!{disable} = {_UNROLL_DISABLE}")
    changed = False
    for body in function_bodies(lines):
        blocks = ir_blocks(body, lines)
        for latch in _latches(blocks, lines):
            end = blocks[latch][-1]  # the terminator's last line, where attachments go
            loop_id = _LOOP_ID.search(lines[end])
            if loop_id is None:
                lines[end] += f", !llvm.loop !{fresh}"
                added.append(f"!{fresh} = distinct !{{!{fresh}, !{disable}}}")
                fresh += 1
                changed = True
                continue
            k, ops = nodes[int(loop_id.group(1))]
            if f"!{disable}" not in ops.split(", "):
                lines[k] = lines[k][:-1] + f", !{disable}}}"
                nodes[int(loop_id.group(1))] = (k, f"{ops}, !{disable}")
                changed = True
    if not changed:
        return mod  # no loop, or every loop already marked
    return _parse("\n".join([*lines, *added, ""]))


def _numbered_nodes(lines: list[str]):
    for k, line in enumerate(lines):
        if line.startswith("!"):
            m = _NODE.match(line)
            if m:
                yield k, m


def compile_ptx(
    ir_text: str,
    kernel_names: list[str],
    arch: str,
    *,
    fastmath: bool = False,
    opt_level: int = 3,
    keep: Iterable[str] = (),
) -> str:
    """Optimise an NVPTX module and emit PTX for ``arch`` (``sm_75`` …).

    ``kernel_names`` are the ``ptx_kernel`` functions to export as ``.entry``; ``keep``
    names other globals that must stay visible (e.g. a ``__device__`` variable the host
    finds with ``cuModuleGetGlobal``). ``fastmath`` lets libdevice take its flush-to-zero
    paths (``nvvm-reflect-ftz`` = 1, as nvcc's ``--use_fast_math`` does); without it,
    denormals are kept, as on the CPU. Square roots stay correctly rounded either way.
    """
    tm, mod = optimized_module(
        ir_text, kernel_names, arch, fastmath=fastmath, opt_level=opt_level, keep=keep
    )
    ptx = peephole(tm.emit_assembly(mod))
    entries = set(re.findall(r"^\.visible \.entry (\S+?)\(", ptx, re.MULTILINE))
    lost = [k for k in kernel_names if k not in entries]
    if lost:
        # A kernel without the ptx_kernel calling convention compiles to a .func.
        raise InternalError(f"not emitted as .entry (missing ptx_kernel?): {', '.join(lost)}")
    return ptx
