"""embed_object → cc -shared → a .so that cuobjdump, readelf, nm and ctypes all understand."""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from gpu_toolchain_kit import ARCHS, cuobjdump_list

from gpuaot.bundle.embed import (
    FATBIN_SIZE_SYMBOL,
    FATBIN_SYMBOL,
    FATBINC_MAGIC,
    MANIFEST_SIZE_SYMBOL,
    MANIFEST_SYMBOL,
    embed_object,
)
from gpuaot.bundle.fatbin import list_fatbin, make_fatbin

CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler to link a shared object")

MANIFEST = json.dumps(
    {"format": "gpuaot", "version": 1, "kernels": {"saxpy": ["f32", "ptr", "ptr", "i32"]}},
    sort_keys=True,
).encode()
SECTIONS = (".nv_fatbin", ".nvFatBinSegment", ".gpuaot.manifest")


def link(obj: bytes, out: Path, *flags: str) -> Path:
    src = out.with_suffix(".o")
    src.write_bytes(obj)
    subprocess.run([CC, "-shared", *flags, "-o", str(out), str(src)], check=True)
    return out


def section_table(path: Path) -> dict[str, tuple[str, int]]:
    """``readelf -SW`` → {name: (flags, alignment)}."""
    out = subprocess.run(["readelf", "-SW", str(path)], capture_output=True, text=True).stdout
    table = {}
    for m in re.finditer(
        r"\]\s+(\S+)\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+([A-Za-z]*)\s+\d+\s+\d+\s+(\d+)", out
    ):
        table[m.group(1)] = (m.group(2), int(m.group(3)))
    return table


def dynamic_symbols(path: Path) -> list[tuple[str, str]]:
    """``nm -D --defined-only``-free listing: [(type letter, name)] of every dynamic symbol."""
    out = subprocess.run(["nm", "-D", str(path)], capture_output=True, text=True, check=True)
    return re.findall(r"^(?:[0-9a-f]+)?\s+(\w)\s+(\S+)$", out.stdout, re.MULTILINE)


@pytest.fixture(scope="module")
def fatbin(device_images) -> bytes:
    ptx, cubins = device_images
    return make_fatbin(ptx, cubins)


@pytest.fixture(scope="module")
def bundle(fatbin: bytes, tmp_path_factory) -> Path:
    return link(embed_object(MANIFEST, fatbin), tmp_path_factory.mktemp("b") / "bundle.so")


def test_cuobjdump_lists_every_image_in_the_so(bundle: Path, cuobjdump: Path) -> None:
    expected = [("PTX", "gpuaot.sm_75.ptx")] + [("ELF", f"gpuaot.{a}.cubin") for a in ARCHS]
    assert cuobjdump_list(cuobjdump, bundle) == expected


def test_readelf_shows_the_sections(bundle: Path) -> None:
    table = section_table(bundle)
    for name in SECTIONS:
        assert name in table, name
    assert table[".nv_fatbin"][1] == 8
    assert table[".nvFatBinSegment"][1] == 8
    assert "W" not in table[".nv_fatbin"][0]  # read-only data, as nvcc's "a" section


def test_ctypes_reads_manifest_and_fatbin_back(bundle: Path, fatbin: bytes) -> None:
    lib = ctypes.CDLL(str(bundle))
    size = ctypes.c_uint64.in_dll(lib, MANIFEST_SIZE_SYMBOL).value
    addr = ctypes.addressof(ctypes.c_char.in_dll(lib, MANIFEST_SYMBOL))
    assert ctypes.string_at(addr, size) == MANIFEST
    fsize = ctypes.c_uint64.in_dll(lib, FATBIN_SIZE_SYMBOL).value
    faddr = ctypes.addressof(ctypes.c_char.in_dll(lib, FATBIN_SYMBOL))
    assert ctypes.string_at(faddr, fsize) == fatbin
    assert faddr % 8 == 0


def test_wrapper_points_at_the_fatbin_once_loaded(bundle: Path) -> None:
    # __fatBinC_Wrapper_t {i32 magic, i32 version, ptr data, ptr null}, after relocation.
    lib = ctypes.CDLL(str(bundle))
    faddr = ctypes.addressof(ctypes.c_char.in_dll(lib, FATBIN_SYMBOL))
    with bundle.open("rb") as f:
        elf = ELFFile(f)
        segment = elf.get_section_by_name(".nvFatBinSegment")
        fatbin_sym = elf.get_section_by_name(".dynsym").get_symbol_by_name(FATBIN_SYMBOL)[0]
        load_bias = faddr - fatbin_sym["st_value"]
        wrapper_addr = load_bias + segment["sh_addr"]
        assert segment["sh_size"] == 24
    magic, version, data, spare = struct.unpack("<IIQQ", ctypes.string_at(wrapper_addr, 24))
    assert (magic, version, data, spare) == (FATBINC_MAGIC, 1, faddr, 0)


def test_section_holds_the_same_container(bundle: Path, fatbin: bytes) -> None:
    with bundle.open("rb") as f:
        section = ELFFile(f).get_section_by_name(".nv_fatbin").data()
    assert list_fatbin(section) == list_fatbin(fatbin)


def test_no_gpu_symbols_and_ours_exported(bundle: Path) -> None:
    symbols = dynamic_symbols(bundle)
    names = {name for _, name in symbols}
    assert not [n for n in names if n.startswith("gpu_")]
    for name in (MANIFEST_SYMBOL, MANIFEST_SIZE_SYMBOL, FATBIN_SYMBOL, FATBIN_SIZE_SYMBOL):
        assert ("R", name) in symbols, name


def test_object_and_so_are_byte_identical_across_runs(fatbin: bytes, tmp_path: Path) -> None:
    first, second = embed_object(MANIFEST, fatbin), embed_object(MANIFEST, fatbin)
    assert first == second
    # Same file name in two directories: the linker records no path, so the .so match too.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = link(first, tmp_path / "a" / "bundle.so")
    b = link(second, tmp_path / "b" / "bundle.so")
    assert a.read_bytes() == b.read_bytes()


def test_object_is_identical_across_many_interleaved_calls(fatbin: bytes) -> None:
    # Other modules in between free and reuse LLVM objects; with a cached target machine
    # about one output in three differed (stale @llvm.used set, see embed.py).
    first = embed_object(MANIFEST, fatbin)
    for i in range(40):
        embed_object(MANIFEST + bytes([i]), fatbin if i % 2 else None)
        assert embed_object(MANIFEST, fatbin) == first, f"call {i}"


def test_object_is_pic_relocatable_elf(fatbin: bytes, tmp_path: Path) -> None:
    path = tmp_path / "embed.o"
    path.write_bytes(embed_object(MANIFEST, fatbin))
    header = subprocess.run(["readelf", "-h", str(path)], capture_output=True, text=True).stdout
    assert re.search(r"Type:\s+REL ", header)
    relocs = subprocess.run(["readelf", "-rW", str(path)], capture_output=True, text=True).stdout
    # The wrapper's data pointer (offset 8) is the only relocation, against gpuaot_fatbin.
    match = re.search(
        r"'\.rela\.nvFatBinSegment'.*?\n.*?\n(0+8)\s+\S+\s+(\S+)\s+\S+\s+(\S+)", relocs, re.S
    )
    assert match is not None, relocs
    assert match.group(3) == FATBIN_SYMBOL
    assert "R_X86_64_64" in match.group(2) or "ABS64" in match.group(2)


def test_gc_sections_keeps_everything(fatbin: bytes, tmp_path: Path, cuobjdump: Path) -> None:
    so = link(embed_object(MANIFEST, fatbin), tmp_path / "gc.so", "-Wl,--gc-sections")
    assert all(name in section_table(so) for name in SECTIONS)
    assert len(cuobjdump_list(cuobjdump, so)) == 1 + len(ARCHS)


def test_manifest_only_bundle(tmp_path: Path) -> None:
    # A CPU-only build (--no-gpu or no kernels): no fatbin sections, no fatbin symbols.
    so = link(embed_object(MANIFEST, None), tmp_path / "cpu_only.so")
    table = section_table(so)
    assert ".gpuaot.manifest" in table
    assert ".nv_fatbin" not in table and ".nvFatBinSegment" not in table
    names = {name for _, name in dynamic_symbols(so)}
    assert MANIFEST_SYMBOL in names and FATBIN_SYMBOL not in names
    lib = ctypes.CDLL(str(so))
    size = ctypes.c_uint64.in_dll(lib, MANIFEST_SIZE_SYMBOL).value
    assert ctypes.string_at(ctypes.addressof(ctypes.c_char.in_dll(lib, MANIFEST_SYMBOL)), size) == (
        MANIFEST
    )


def test_empty_manifest(tmp_path: Path) -> None:
    lib = ctypes.CDLL(str(link(embed_object(b"", None), tmp_path / "empty.so")))
    assert ctypes.c_uint64.in_dll(lib, MANIFEST_SIZE_SYMBOL).value == 0
