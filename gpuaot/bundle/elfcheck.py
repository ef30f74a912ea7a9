"""Check a bundle's ELF structure from the file, before anything maps it (SPEC §3, §4).

    >>> with open(path, "rb") as f:                                   # doctest: +SKIP
    ...     elf = check_elf(f, os.fstat(f.fileno()).st_size, machine=host_machine())
    ...     elf.read(f, elf.sections[".gpuaot.manifest"])
    b'{"architectures":[],...}'
    >>> check_elf(io.BytesIO(data[:40_000]), 40_000)                  # doctest: +SKIP
    ElfError: truncated: segment 1 (PT_LOAD) holds bytes 4,096..48,209 but the file has 40,000

``ctypes.CDLL`` maps every ``PT_LOAD`` segment; a page of one that lies past the end of the
file faults with SIGBUS at its first touch, which kills the process (a truncated download
does exactly that). So the run time checks, with reads of the file and nothing else: the
header (magic, 64-bit, byte order, machine, ``ET_DYN``), that every segment's bytes and the
section header table lie in the file, and that every section's bytes do. Only the headers
and the name table are read: a few kilobytes, whatever the size of the bundle.

Plain ``struct``: the run-time import path uses this module (no pyelftools there).
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from typing import BinaryIO

from . import cpus

ET_DYN = 3
PT_LOAD, PT_DYNAMIC = 1, 2
SHT_NOBITS = 8
EM_NAMES = {3: "i386", 40: "ARM", 62: "x86-64", 183: "AArch64", 190: "CUDA", 243: "RISC-V"}
_EM_BY_MACHINE = {"x86_64": 62, "aarch64": 183}
_PT_NAMES = {PT_LOAD: "PT_LOAD", PT_DYNAMIC: "PT_DYNAMIC", 3: "PT_INTERP", 4: "PT_NOTE"}

_EHDR = "16sHHIQQQIHHHHHH"  # Elf64_Ehdr after e_ident's byte order is known
_PHDR = "IIQQQQQQ"  # p_type p_flags p_offset p_vaddr p_paddr p_filesz p_memsz p_align
_SHDR = "IIQQQQIIQQ"  # sh_name sh_type sh_flags sh_addr sh_offset sh_size ... sh_entsize
EHDR_SIZE, PHDR_SIZE, SHDR_SIZE = 64, 56, 64


class DamagedBundle(ValueError):
    """What is wrong with a bundle file, without its name: the caller adds the file and
    what to do (``runtime.errors.BundleError``, ``gpuaot inspect``'s ``BadBundle``)."""


class ElfError(DamagedBundle):
    """The ELF structure is damaged; the message names the offset, segment or section."""


@dataclass(frozen=True)
class Section:
    name: str
    offset: int  # in the file
    size: int


@dataclass(frozen=True)
class Elf:
    size: int  # of the file, in bytes
    machine: int
    sections: dict[str, Section]  # by name, the first of each name

    def read(self, f: BinaryIO, section: Section, start: int = 0, size: int | None = None):
        """Bytes ``start..start+size`` of ``section`` (all of it by default)."""
        size = section.size - start if size is None else size
        return _read(f, self.size, section.offset + start, size, f"section {section.name}")


def host_machine() -> int | None:
    """This platform's ``e_machine``; None where gpuaot knows no number for it."""
    return _EM_BY_MACHINE.get(cpus.machine())


def platform_machine(tag: str) -> int | None:
    """The ``e_machine`` of a platform tag (``linux_x86_64``), where gpuaot knows it."""
    return _EM_BY_MACHINE.get(tag.partition("_")[2])


def machine_name(em: int) -> str:
    return f"{EM_NAMES.get(em, 'unknown')} (e_machine {em})"


def check_elf(f: BinaryIO, size: int, *, machine: int | None = None) -> Elf:
    """Check the header, segments and sections of the ELF file ``f`` of ``size`` bytes.

    ``machine`` (an ``e_machine``) is the one it must be built for: the run time passes
    :func:`host_machine`; ``gpuaot inspect`` passes None and reads a bundle of any machine.
    Raises :class:`ElfError`.
    """
    if size == 0:
        raise ElfError("the file is empty")
    ident = _read(f, size, 0, min(size, EHDR_SIZE), "the ELF header")
    if ident[:4] != b"\x7fELF":
        raise ElfError(f"not an ELF file (it starts with {ident[:4]!r})")
    if size < EHDR_SIZE:
        raise ElfError(f"truncated: {size:,} bytes, shorter than an ELF header ({EHDR_SIZE})")
    if ident[4] != 2:
        raise ElfError(f"not a 64-bit ELF file (EI_CLASS {ident[4]})")
    order = {1: "<", 2: ">"}.get(ident[5])
    if order is None:
        raise ElfError(f"unknown byte order (EI_DATA {ident[5]})")
    if machine is not None and order != ("<" if sys.byteorder == "little" else ">"):
        raise ElfError(
            f"the file is {'little' if order == '<' else 'big'}-endian; this "
            f"platform is {sys.byteorder}-endian"
        )
    (_, e_type, e_machine, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum,
     shstrndx) = struct.unpack(order + _EHDR, ident)  # fmt: skip
    if e_type != ET_DYN:
        raise ElfError(f"not a shared object (ELF type {e_type}, expected ET_DYN {ET_DYN})")
    if machine is not None and e_machine != machine:
        raise ElfError(
            f"built for {machine_name(e_machine)}, but this platform is {machine_name(machine)}"
        )
    _check_segments(f, size, order, phoff, phentsize, phnum)
    sections = _sections(f, size, order, shoff, shentsize, shnum, shstrndx)
    return Elf(size, e_machine, sections)


def _check_segments(f, size: int, order: str, phoff: int, entsize: int, count: int) -> None:
    if count == 0:
        raise ElfError("no program headers: the dynamic loader has nothing to map")
    if entsize != PHDR_SIZE:
        raise ElfError(f"program header size {entsize} at byte 54 (expected {PHDR_SIZE})")
    table = _read(f, size, phoff, count * PHDR_SIZE, "the program header table")
    kinds = set()
    for n, (p_type, _, p_offset, _, _, p_filesz, _, _) in enumerate(
        struct.iter_unpack(order + _PHDR, table)
    ):
        kinds.add(p_type)
        if p_offset + p_filesz > size:
            what = _PT_NAMES.get(p_type, f"type {p_type:#x}")
            raise ElfError(
                f"truncated: segment {n} ({what}) holds bytes {p_offset:,}..{p_offset + p_filesz:,}"
                f" but the file has {size:,}"
            )
    for p_type in (PT_LOAD, PT_DYNAMIC):
        if p_type not in kinds:
            raise ElfError(f"no {_PT_NAMES[p_type]} segment: not a loadable shared object")


def _sections(f, size: int, order: str, shoff: int, entsize: int, count: int, strndx: int):
    if count == 0 or shoff == 0:
        raise ElfError("no section header table")
    if entsize != SHDR_SIZE:
        raise ElfError(f"section header size {entsize} at byte 58 (expected {SHDR_SIZE})")
    table = _read(f, size, shoff, count * SHDR_SIZE, "the section header table")
    headers = list(struct.iter_unpack(order + _SHDR, table))
    if strndx >= count:
        raise ElfError(f"the section name table is section {strndx}, but there are {count}")
    _, _, _, _, str_offset, str_size, *_ = headers[strndx]
    names = _read(f, size, str_offset, str_size, "the section name table")
    out: dict[str, Section] = {}
    for n, (sh_name, sh_type, _, _, sh_offset, sh_size, *_) in enumerate(headers):
        end = names.find(b"\0", sh_name)
        if sh_name >= len(names) or end < 0:
            raise ElfError(f"section {n}: its name lies outside the section name table")
        name = names[sh_name:end].decode("ascii", "backslashreplace")
        if sh_type == SHT_NOBITS:
            continue  # no bytes in the file
        if sh_offset + sh_size > size:
            raise ElfError(
                f"truncated: section {n} ({name}) holds bytes {sh_offset:,}..{sh_offset + sh_size:,}"
                f" but the file has {size:,}"
            )
        out.setdefault(name, Section(name, sh_offset, sh_size))
    return out


def _read(f: BinaryIO, size: int, offset: int, n: int, what: str) -> bytes:
    if offset + n > size:
        raise ElfError(
            f"truncated: {what} holds bytes {offset:,}..{offset + n:,} but the file has {size:,}"
        )
    f.seek(offset)
    data = f.read(n)
    if len(data) != n:  # shrank since it was measured
        raise ElfError(f"{what}: the file ended at byte {offset + len(data):,}, expected {size:,}")
    return data
