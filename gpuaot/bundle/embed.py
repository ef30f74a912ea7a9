"""The host object that carries the manifest and the fatbinary into the bundle ``.so``.

    >>> obj = embed_object(b'{"format": "gpuaot"}', fatbin)      # doctest: +SKIP
    >>> Path("embed.o").write_bytes(obj)                         # doctest: +SKIP
    $ cc -shared -o bundle.so embed.o cpu_kernels.o
    $ readelf -SW bundle.so | grep -E 'nv_fatbin|nvFatBin|gpuaot'
      [..] .nv_fatbin        PROGBITS ...  A  ... 8
      [..] .nvFatBinSegment  PROGBITS ... WA  ... 8
      [..] .gpuaot.manifest  PROGBITS ...  A  ... 8
    $ cuobjdump -lptx -lelf bundle.so
    PTX file    1: gpuaot.sm_75.ptx
    ELF file    1: gpuaot.sm_75.cubin ...

The object is a relocatable ELF for the host triple (position independent, small code model),
built with ``llvmlite.ir`` and emitted by LLVM, and defines (all exported):

- ``gpuaot_manifest`` (the manifest bytes, section ``.gpuaot.manifest``) and
  ``gpuaot_manifest_size`` (u64);
- with a fatbin: ``gpuaot_fatbin`` (section ``.nv_fatbin``, aligned 8) and
  ``gpuaot_fatbin_size`` (u64), plus the internal wrapper in ``.nvFatBinSegment`` laid out
  as nvcc's ``fatbin.c`` and clang's ``CGCUDANV.cpp`` do (``__fatBinC_Wrapper_t`` of
  ``fatbinary_section.h``: i32 magic 0x466243B1, i32 version 1, pointer to the fatbin,
  null pointer), so that tools which look for the wrapper (``cuobjdump``) find the images.

No constructor registers anything with the CUDA runtime: gpuaot's loader reads
``gpuaot_fatbin`` and calls ``cuModuleLoadData`` itself. The three section globals are in
``@llvm.used``, which LLVM turns into ``SHF_GNU_RETAIN``, so ``--gc-sections`` keeps them;
the exported symbols keep their own sections anyway. No name starts with ``gpu_``: the leak
checker forbids that prefix in host code. Same input, same bytes.
"""

from __future__ import annotations

import functools

import llvmlite.binding as llvm
from llvmlite import ir

from .abi import (
    FATBIN_SECTION,
    FATBIN_SIZE_SYMBOL,
    FATBIN_SYMBOL,
    MANIFEST_SECTION,
    MANIFEST_SIZE_SYMBOL,
    MANIFEST_SYMBOL,
)
from .abi import FATBIN_WRAPPER_SECTION as WRAPPER_SECTION
from .abi import FATBIN_WRAPPER_SYMBOL as WRAPPER_SYMBOL

FATBINC_MAGIC = 0x466243B1
FATBINC_VERSION = 1


_I8 = ir.IntType(8)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_PTR = ir.PointerType()


@functools.cache
def _init_llvm() -> None:
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()


def _host_target_machine() -> llvm.TargetMachine:
    """A new host target machine: one per object, never cached.

    LLVM's ELF object-file lowering remembers the ``@llvm.used`` globals of every module
    it has emitted (a set of pointers, never cleared), so a reused target machine can mark
    an unrelated global of a later module "retained" when it happens to reuse a freed
    address: the output then changes from run to run (seen here: the size constants moved
    into ``.rodata.<name>`` sections with SHF_GNU_RETAIN, one call in three).
    """
    _init_llvm()
    # PIC + small: the default "jitdefault" code model is wrong for a shared object.
    return llvm.Target.from_default_triple().create_target_machine(reloc="pic", codemodel="small")


def _constant(
    mod: ir.Module,
    name: str,
    value: ir.Constant,
    *,
    section: str | None = None,
    align: int | None = None,
    linkage: str = "",
) -> ir.GlobalVariable:
    # linkage "" is an external definition; llvmlite's "external" would print a declaration.
    gv = ir.GlobalVariable(mod, value.type, name)
    gv.global_constant = True
    gv.initializer = value
    gv.linkage = linkage
    if section is not None:
        gv.section = section
    if align is not None:
        gv.align = align
    return gv


def _byte_array(data: bytes) -> ir.Constant:
    return ir.Constant(ir.ArrayType(_I8, len(data)), bytearray(data))


def build_module(manifest: bytes, fatbin: bytes | None) -> ir.Module:
    """The llvmlite module ``embed_object`` emits (exposed for ``gpuaot emit`` and tests)."""
    tm = _host_target_machine()  # only asked for its triple and layout
    mod = ir.Module(name="gpuaot_bundle")
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)

    used = [
        _constant(mod, MANIFEST_SYMBOL, _byte_array(manifest), section=MANIFEST_SECTION, align=8)
    ]
    _constant(mod, MANIFEST_SIZE_SYMBOL, _I64(len(manifest)), align=8)
    if fatbin is not None:
        # Alignment 8: the driver and cuobjdump read the container as 64-bit words.
        data = _constant(mod, FATBIN_SYMBOL, _byte_array(fatbin), section=FATBIN_SECTION, align=8)
        _constant(mod, FATBIN_SIZE_SYMBOL, _I64(len(fatbin)), align=8)
        wrapper_type = ir.LiteralStructType([_I32, _I32, _PTR, _PTR])
        wrapper = ir.Constant(
            wrapper_type,
            [_I32(FATBINC_MAGIC), _I32(FATBINC_VERSION), data, ir.Constant(_PTR, None)],
        )
        wrapper_gv = _constant(
            mod, WRAPPER_SYMBOL, wrapper, section=WRAPPER_SECTION, align=8, linkage="internal"
        )
        used += [data, wrapper_gv]

    used_type = ir.ArrayType(_PTR, len(used))
    keep = ir.GlobalVariable(mod, used_type, "llvm.used")
    keep.linkage = "appending"
    keep.section = "llvm.metadata"
    keep.initializer = ir.Constant(used_type, used)
    return mod


def embed_object(manifest: bytes, fatbin: bytes | None) -> bytes:
    """A relocatable host ELF object holding ``manifest`` and, if given, ``fatbin``."""
    tm = _host_target_machine()
    mod = llvm.parse_assembly(str(build_module(manifest, fatbin)))
    mod.verify()
    return tm.emit_object(mod)
