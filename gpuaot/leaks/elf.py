"""The gate's view of an ELF image: pyelftools for the structure, bulk reads for the symbol tables.

One entry object over a buffer (``bytes`` or an ``mmap``); pyelftools' ``ELFFile`` reads it
through a :class:`Window`, sections are read on first use, and every problem is an
:class:`ElfError` that names the offset and section::

    >>> elf = ElfFile(open("libk.so", "rb").read(), name="libk.so")   # doctest: +SKIP
    >>> elf.machine, elf.elf_type, [s.name for s in elf.symbol_tables()]  # doctest: +SKIP
    (62, 3, ['.dynsym', '.symtab'])
    >>> elf.symbol(elf.section_by_name(".dynsym"), 5)                    # doctest: +SKIP
    Symbol(index=5, name='gpu_report_exception', bind=1, type=0, other=0, shndx=0, ...)
    >>> elf.needed, elf.versions[2]                                      # doctest: +SKIP
    (['libc.so.6'], Version(name='GLIBC_2.2.5', hidden=False, needed_from='libc.so.6'))

pyelftools reads the ELF header, the section header table, the program headers, the dynamic
table (``.dynamic``, else ``PT_DYNAMIC`` with ``DynamicSegment`` counting the symbols of an image
without section headers from its GNU or SysV hash table), the GNU version sections and the shape
of relocation sections.  It names what it decodes ('SHT_DYNSYM'); the records here carry numbers,
so that the constants below compare as the ELF specification writes them.

What stays hand-written is what pyelftools would do one Python object at a time, or without
bounds: symbol and string tables are decoded in bulk at the offsets pyelftools gives (by
:mod:`gpuaot.leaks.symbols`; a 175,000-symbol library must cost milliseconds), names are sliced
out of their string table and never read past its end, and every loop pyelftools would run over
a count or chain that a damaged file makes up is bounded by the table it walks.  Whatever
pyelftools raises on a damaged image becomes an ElfError.  The exception tree, the bounded
:class:`Window`, :func:`reading` and :func:`code` live in :mod:`gpuaot.leaks.elfio`, which also
imports pyelftools on the first image, never on ``import gpuaot.leaks``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from itertools import islice
from typing import Any

# The exception tree is part of the reader's interface: ``from .elf import ElfError`` stays.
from .elfio import ElfError as ElfError
from .elfio import MalformedError, NotElfError, TruncatedError, Window, code, pyelftools, reading

ELF_MAGIC = b"\x7fELF"

# e_type
ET_REL, ET_EXEC, ET_DYN, ET_CORE = 1, 2, 3, 4
# e_machine values we name in messages or treat specially
EM_386, EM_X86_64, EM_AARCH64, EM_CUDA = 3, 62, 183, 190
# sh_type
SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA = 0, 1, 2, 3, 4
SHT_DYNAMIC, SHT_NOBITS, SHT_REL, SHT_DYNSYM = 6, 8, 9, 11
SHT_GNU_VERDEF, SHT_GNU_VERNEED, SHT_GNU_VERSYM = 0x6FFFFFFD, 0x6FFFFFFE, 0x6FFFFFFF
# sh_flags
SHF_ALLOC, SHF_EXECINSTR = 0x2, 0x4
# special section indices
SHN_UNDEF, SHN_LORESERVE, SHN_ABS, SHN_COMMON, SHN_XINDEX = 0, 0xFF00, 0xFFF1, 0xFFF2, 0xFFFF
# symbol binding and type
STB_LOCAL, STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE = 0, 1, 2, 10
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4
# dynamic tags
DT_NULL, DT_NEEDED, DT_HASH, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_SYMENT = 0, 1, 4, 5, 6, 10, 11
DT_SONAME, DT_RPATH, DT_RUNPATH, DT_GNU_HASH = 14, 15, 29, 0x6FFFFEF5
# version definition flags
VER_FLG_BASE = 0x1

BIND_NAMES = {STB_LOCAL: "LOCAL", STB_GLOBAL: "GLOBAL", STB_WEAK: "WEAK", STB_GNU_UNIQUE: "UNIQUE"}
TYPE_NAMES = {
    0: "NOTYPE",
    1: "OBJECT",
    2: "FUNC",
    3: "SECTION",
    4: "FILE",
    5: "COMMON",
    6: "TLS",
    10: "IFUNC",
}

# The pyelftools section header fields a Section keeps, after its index, name and type.
_SHDR = ("sh_flags", "sh_addr", "sh_offset", "sh_size", "sh_link", "sh_info", "sh_entsize")
# The smallest verdef / verneed entry: a chain longer than its section has this many at most.
_VERSION_ENTRY = 16


@dataclass(frozen=True, slots=True)
class Section:
    index: int
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int


@dataclass(frozen=True, slots=True)
class Symbol:
    index: int
    name: str
    bind: int
    type: int
    other: int
    shndx: int
    value: int
    size: int

    @property
    def defined(self) -> bool:
        return self.shndx != SHN_UNDEF

    @property
    def bind_name(self) -> str:
        return BIND_NAMES.get(self.bind, f"BIND{self.bind}")

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type, f"TYPE{self.type}")


@dataclass(frozen=True, slots=True)
class Version:
    """A symbol version: ``name`` as in ``gpu_foo@VERS_1``; ``hidden`` means ``@`` not ``@@``."""

    name: str
    hidden: bool
    needed_from: str | None  # the library a reference's version comes from (verneed)

    def suffix(self, defined: bool) -> str:
        return f"@@{self.name}" if defined and not self.hidden else f"@{self.name}"


class _Strings:
    """pyelftools' string-table protocol (``get_string``) over one of the string tables here.

    Given to the pyelftools objects that look names up (``Dynamic`` for DT_NEEDED and friends,
    the GNU version sections), so that those names are read like every other: never past their
    table's end, and byte for byte (``surrogateescape``).  ``table`` is asked for on first use:
    the dynamic string table may only be found through the dynamic table itself.
    """

    def __init__(self, elf: ElfFile, table: Callable[[], Section]) -> None:
        self.elf, self.table = elf, table

    def get_string(self, offset: int) -> str:
        return self.elf.string(self.table(), offset)


class ElfFile:
    """One ELF image inside ``buf[base:base+size]``; nothing past the header is read eagerly."""

    def __init__(self, buf: Any, name: str = "", base: int = 0, size: int | None = None) -> None:
        self.buf = buf
        self.name = name
        self.base = base
        self.size = (len(buf) - base) if size is None else size
        if bytes(buf[base : base + min(4, self.size)]) != ELF_MAGIC:
            raise NotElfError("not an ELF file (no \\x7fELF magic)", offset=0)
        lib = pyelftools()
        with reading("the ELF header", offset=0, error=NotElfError):
            self.elffile = lib.ELFFile(Window(buf, base, self.size))
        ef = self.elffile
        self.bits: int = ef.elfclass
        self.endian = "<" if ef.little_endian else ">"
        self.elf_type = code("ENUM_E_TYPE", ef["e_type"])
        self.machine = code("ENUM_E_MACHINE", ef["e_machine"])
        self.shoff: int = ef["e_shoff"]
        self.sym_size: int = ef.structs.Elf_Sym.sizeof()
        self._headers: list[Any] = []  # pyelftools' section header containers, by index

    # -- raw access ---------------------------------------------------------------------------
    def read(self, offset: int, length: int, what: str, section: str | None = None) -> bytes:
        """Bytes ``[offset, offset+length)`` of the image, or a TruncatedError saying what."""
        self.check_range(offset, length, what, section)
        start = self.base + offset
        return bytes(self.buf[start : start + length])

    def unpack(self, fmt: str, offset: int, what: str, section: str | None = None) -> tuple:
        fmt = self.endian + fmt
        return struct.unpack(fmt, self.read(offset, struct.calcsize(fmt), what, section))

    def check_range(self, offset: int, length: int, what: str, section: str | None) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise TruncatedError(
                f"{what} ({length:#x} bytes) runs past the end of the file (size {self.size:#x})",
                offset=offset,
                section=section,
            )

    # -- sections -----------------------------------------------------------------------------
    @cached_property
    def sections(self) -> list[Section]:
        if self.shoff == 0:
            # No section headers (sstrip, or a loader-only image).  The loader never needed them,
            # so rebuild .dynsym/.dynstr from the dynamic segment, which is what it reads.
            return self._sections_from_dynamic()
        ef, lib = self.elffile, pyelftools()
        want = ef.structs.Elf_Shdr.sizeof()
        if ef["e_shentsize"] != want:
            raise MalformedError(
                f"section header entry size is {ef['e_shentsize']}, expected {want}",
                offset=0x2E if self.bits == 32 else 0x3A,
            )
        with reading("the section header table", offset=self.shoff):
            count = ef.num_sections()  # extended numbering: the count is in entry 0's sh_size
        self.check_range(self.shoff, count * want, f"section header table ({count} entries)", None)
        with reading("the section header table", offset=self.shoff):
            headers = [
                lib.struct_parse(ef.structs.Elf_Shdr, ef.stream, self.shoff + i * want)
                for i in range(count)
            ]
            strndx = ef.get_shstrndx()  # SHN_XINDEX: entry 0's sh_link
        self._headers = headers
        names = self._section_names(headers, strndx)
        return [
            Section(
                i, names[i] or f"[{i}]", code("ENUM_SH_TYPE", h["sh_type"]), *(h[k] for k in _SHDR)
            )
            for i, h in enumerate(headers)
        ]

    def _section_names(self, headers: list[Any], strndx: int) -> list[str]:
        """Section names, sliced out of the name table (a damaged one costs names, not the file)."""
        if not 0 < strndx < len(headers):
            return [""] * len(headers)
        table = headers[strndx]
        off, size = table["sh_offset"], table["sh_size"]
        if table["sh_type"] == "SHT_NOBITS" or off + size > self.size:
            return [""] * len(headers)
        names = self.read(off, size, "section name table")
        out = []
        for h in headers:
            start = h["sh_name"]
            end = names.find(b"\0", start)
            out.append(names[start:end].decode("utf-8", "replace") if end >= 0 else "")
        return out

    def _real_sections(self) -> list[Section]:
        return self.sections if self.shoff else []

    def section_by_name(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)

    def section_at(self, index: int, what: str, referrer: Section | None = None) -> Section:
        if not 0 < index < len(self.sections):
            raise MalformedError(
                f"{what} names section {index}, which does not exist",
                section=referrer.name if referrer else None,
            )
        return self.sections[index]

    def _section_object(self, sec: Section, cls: type, *args: Any) -> Any:
        """pyelftools' section object of class ``cls`` for ``sec``, made from the header read
        here (``ELFFile.get_section`` would also need an intact section name table)."""
        with reading(f"section {sec.name}", sec.name, sec.offset):
            return cls(self._headers[sec.index], sec.name, self.elffile, *args)

    def relocation_section(self, sec: Section) -> Any:
        """pyelftools' ``RelocationSection`` for ``sec`` (which checks the entry size)."""
        return self._section_object(sec, pyelftools().RelocationSection)

    def symbol_tables(self) -> list[Section]:
        """``.dynsym`` first (what the loader sees), then ``.symtab``."""
        tabs = [s for s in self.sections if s.type in (SHT_DYNSYM, SHT_SYMTAB)]
        return sorted(tabs, key=lambda s: s.type != SHT_DYNSYM)

    def check_symbol_table(self, sec: Section) -> Section:
        """Validate a symbol table's shape; return its string table."""
        if sec.entsize != self.sym_size:
            raise MalformedError(
                f"symbol table entry size is {sec.entsize}, expected {self.sym_size}",
                offset=sec.offset,
                section=sec.name,
            )
        self.check_range(sec.offset, sec.size, "symbol table", sec.name)
        strtab = self.section_at(sec.link, "symbol table's string table link", sec)
        if strtab.type == SHT_NOBITS:
            raise MalformedError("string table has no contents", section=strtab.name)
        self.check_range(strtab.offset, strtab.size, "string table", strtab.name)
        return strtab

    # -- symbols (decoded here, never through pyelftools: see the module docstring) ------------
    def symbol(self, sec: Section, index: int, strtab: Section | None = None) -> Symbol:
        strtab = strtab or self.check_symbol_table(sec)
        off = sec.offset + index * self.sym_size
        if self.bits == 64:
            name, info, other, shndx, value, size = self.unpack("IBBHQQ", off, "symbol", sec.name)
        else:
            name, value, size, info, other, shndx = self.unpack("IIIBBH", off, "symbol", sec.name)
        return Symbol(
            index, self.string(strtab, name), info >> 4, info & 0xF, other, shndx, value, size
        )

    def string(self, strtab: Section, offset: int) -> str:
        """The NUL-terminated string at ``offset`` in ``strtab`` (ended by the section's end)."""
        if offset >= strtab.size:
            if offset == 0:
                return ""
            raise MalformedError(
                f"string offset {offset:#x} is past the end of the string table "
                f"(size {strtab.size:#x})",
                offset=strtab.offset,
                section=strtab.name,
            )
        start = self.base + strtab.offset + offset
        end = self.buf.find(b"\0", start, self.base + strtab.offset + strtab.size)
        if end < 0:
            end = self.base + strtab.offset + strtab.size
        return bytes(self.buf[start:end]).decode("utf-8", "surrogateescape")

    # -- the dynamic table (pyelftools' Dynamic, bounded by the table) -------------------------
    @cached_property
    def _pt_dynamic(self) -> Any:
        """The ``PT_DYNAMIC`` program header (a pyelftools container), or None."""
        ef = self.elffile
        if not ef["e_phoff"]:
            return None
        with reading("the program header table", offset=ef["e_phoff"]):
            count = ef.num_segments()
            self.check_range(
                ef["e_phoff"], count * ef["e_phentsize"], f"program header table ({count})", None
            )
            return next((seg.header for seg in ef.iter_segments(type="PT_DYNAMIC")), None)

    @cached_property
    def _dynamic(self) -> tuple[Any, int, int, str] | None:
        """(pyelftools ``Dynamic``, offset, size, label) of ``.dynamic``, else of PT_DYNAMIC.

        pyelftools walks a dynamic table until DT_NULL, wherever that is; its stream here ends
        where the table does, so a table without one ends in a short read, not in the next table.
        """
        sec = next((s for s in self._real_sections() if s.type == SHT_DYNAMIC), None)
        if sec is not None:
            off, size, label = sec.offset, sec.size, sec.name
        elif (header := self._pt_dynamic) is not None:
            off, size, label = header["p_offset"], header["p_filesz"], "PT_DYNAMIC"
        else:
            return None
        self.check_range(off, size, "dynamic table", label)
        lib = pyelftools()
        tag_size = self.elffile.structs.Elf_Dyn.sizeof()
        with reading("the dynamic table", label, off):
            dyn = lib.Dynamic(
                Window(self.buf, self.base, off + size),
                self.elffile,
                _Strings(self, lambda: self.dynamic_strtab),
                off,
                size < tag_size,
            )
        return dyn, off, size, label

    @cached_property
    def dynamic_tags(self) -> list[Any]:
        """pyelftools ``DynamicTag`` objects before DT_NULL (a DT_NEEDED one has ``.needed``)."""
        if self._dynamic is None:
            return []
        dyn, off, size, label = self._dynamic
        limit = size // self.elffile.structs.Elf_Dyn.sizeof()  # a torn last entry is not read
        with reading("the dynamic table", label, off):
            tags = list(islice(dyn.iter_tags(), limit))
        if not tags or tags[-1]["d_tag"] != "DT_NULL":
            # pyelftools looks a tag up by walking to DT_NULL: say so here, not as a short read.
            raise MalformedError("the dynamic table has no DT_NULL", offset=off, section=label)
        return tags[:-1]

    @property
    def dynamic(self) -> list[tuple[int, int]]:
        """``(tag, value)`` pairs up to DT_NULL, from ``.dynamic`` or else PT_DYNAMIC."""
        return [(code("ENUM_D_TAG", t["d_tag"]), t["d_val"]) for t in self.dynamic_tags]

    @cached_property
    def dynamic_strtab(self) -> Section:
        """The dynamic string table: ``.dynamic``'s linked section, else what DT_STRTAB names."""
        sec = next((s for s in self._real_sections() if s.type == SHT_DYNAMIC), None)
        if sec is not None and 0 < sec.link < len(self.sections):
            st = self.sections[sec.link]
            if st.type == SHT_STRTAB:
                self.check_range(st.offset, st.size, "dynamic string table", st.name)
                return st
        if self._dynamic is None:
            raise MalformedError("no dynamic table, so no dynamic string table")
        dyn, _, _, label = self._dynamic
        with reading("DT_STRTAB", label):
            addr, off = dyn.get_table_offset("DT_STRTAB")
        if addr is None:
            raise MalformedError("the dynamic table has no DT_STRTAB", section=label)
        if off is None:
            raise MalformedError("DT_STRTAB is outside every PT_LOAD segment", section=label)
        return Section(
            0, ".dynstr", SHT_STRTAB, SHF_ALLOC, addr, off, max(0, self.size - off), 0, 0, 0
        )

    @property
    def needed(self) -> list[str]:
        return [t.needed for t in self.dynamic_tags if t["d_tag"] == "DT_NEEDED"]

    @property
    def search_paths(self) -> tuple[list[str], list[str]]:
        """(RPATH, RUNPATH) entries, ``:``-split, unexpanded."""

        def split(tag: str, attr: str) -> list[str]:
            return [
                p
                for t in self.dynamic_tags
                if t["d_tag"] == tag
                for p in getattr(t, attr).split(":")
                if p
            ]

        return split("DT_RPATH", "rpath"), split("DT_RUNPATH", "runpath")

    def _sections_from_dynamic(self) -> list[Section]:
        """.dynsym/.dynstr of an image without section headers, as pyelftools' DynamicSegment
        finds them: DT_SYMTAB, DT_STRTAB, and the symbol count from DT_GNU_HASH or DT_HASH."""
        header = self._pt_dynamic
        if header is None:
            return []
        tags = dict(reversed(self.dynamic))  # the first of a repeated tag counts; has DT_NULL
        if DT_SYMTAB not in tags or DT_STRTAB not in tags:
            return []
        lib = pyelftools()
        end = min(self.size, header["p_offset"] + header["p_filesz"])
        with reading("the dynamic segment", "PT_DYNAMIC", header["p_offset"]):
            seg = lib.DynamicSegment(header, Window(self.buf, self.base, end), self.elffile)
            sym_addr, sym_off = seg.get_table_offset("DT_SYMTAB")
        if sym_off is None:
            raise MalformedError("DT_SYMTAB is outside every PT_LOAD segment", section="PT_DYNAMIC")
        strtab = self.dynamic_strtab
        entsize = tags.get(DT_SYMENT, self.sym_size)
        strsz = min(tags.get(DT_STRSZ, strtab.size), strtab.size)
        self._check_hash_table(seg)
        with reading("the dynamic symbol count (DT_GNU_HASH or DT_HASH)", "PT_DYNAMIC"):
            count = seg.num_symbols()
        null = Section(0, "", SHT_NULL, 0, 0, 0, 0, 0, 0, 0)
        dynsym = Section(
            1, ".dynsym", SHT_DYNSYM, SHF_ALLOC, sym_addr, sym_off, count * entsize, 2, 1, entsize
        )
        dynstr = Section(
            2, ".dynstr", SHT_STRTAB, SHF_ALLOC, strtab.addr, strtab.offset, strsz, 0, 0, 0
        )
        return [null, dynsym, dynstr]

    def _check_hash_table(self, seg: Any) -> None:
        """pyelftools reads a hash table's bloom words, buckets (and DT_HASH's chains) one word
        at a time, as many as its header says: check first that they lie inside the file."""
        for tag in ("DT_GNU_HASH", "DT_HASH"):  # the order DynamicSegment tries them in
            with reading(tag, "PT_DYNAMIC"):
                _, off = seg.get_table_offset(tag)
            if off is None:
                continue
            if tag == "DT_GNU_HASH":
                nbuckets, _, bloom, _ = self.unpack("IIII", off, "DT_GNU_HASH header", "PT_DYNAMIC")
                length = 16 + bloom * (self.bits // 8) + 4 * nbuckets
            else:
                nbuckets, nchains = self.unpack("II", off, "DT_HASH header", "PT_DYNAMIC")
                length = 8 + 4 * (nbuckets + nchains)
            self.check_range(off, length, f"{tag} table", "PT_DYNAMIC")
            return

    # -- symbol versions (GNU) ---------------------------------------------------------------
    @cached_property
    def versions(self) -> dict[int, Version]:
        """Version index -> version, from ``.gnu.version_d`` and ``.gnu.version_r``."""
        out: dict[int, Version] = {}
        for sec in self.sections:
            if sec.type == SHT_GNU_VERDEF:
                self._read_verdef(sec, out)
            elif sec.type == SHT_GNU_VERNEED:
                self._read_verneed(sec, out)
        return out

    def _version_section(self, sec: Section, cls: type) -> Any:
        strtab = self.section_at(sec.link, "version section's string table link", sec)
        self.check_range(strtab.offset, strtab.size, "string table", strtab.name)
        return self._section_object(sec, cls, _Strings(self, lambda: strtab))

    def _read_verdef(self, sec: Section, out: dict[int, Version]) -> None:
        table = self._version_section(sec, pyelftools().GNUVerDefSection)
        # pyelftools walks sh_info entries along vd_next; a damaged chain may loop or stand still.
        limit = sec.size // _VERSION_ENTRY + 1
        with reading("version definitions", sec.name, sec.offset):
            for verdef, auxes in islice(table.iter_versions(), limit):
                aux = next(auxes, None)  # the first names the version, the others its parents
                if aux is not None and not verdef["vd_flags"] & VER_FLG_BASE:  # BASE: the file
                    out[verdef["vd_ndx"]] = Version(aux.name, False, None)
                if verdef["vd_next"] == 0:
                    break

    def _read_verneed(self, sec: Section, out: dict[int, Version]) -> None:
        table = self._version_section(sec, pyelftools().GNUVerNeedSection)
        limit = sec.size // _VERSION_ENTRY + 1
        with reading("version requirements", sec.name, sec.offset):
            for verneed, auxes in islice(table.iter_versions(), limit):
                for aux in islice(auxes, limit):
                    out[aux["vna_other"] & 0x7FFF] = Version(aux.name, False, verneed.name)
                    if aux["vna_next"] == 0:
                        break
                if verneed["vn_next"] == 0:
                    break

    def versym(self, dynsym: Section) -> Section | None:
        """The ``.gnu.version`` table of ``dynsym``: one 16-bit version index per symbol."""
        return next(
            (s for s in self.sections if s.type == SHT_GNU_VERSYM and s.link == dynsym.index), None
        )

    def symbol_version(self, dynsym: Section, index: int) -> Version | None:
        """The version of dynamic symbol ``index`` (None: unversioned, local or base)."""
        versym = self.versym(dynsym)
        if versym is None:
            return None
        (raw,) = self.unpack("H", versym.offset + 2 * index, "version index", versym.name)
        ver = self.versions.get(raw & 0x7FFF)
        if ver is None or raw & 0x7FFF < 2:
            return None
        return Version(ver.name, bool(raw & 0x8000), ver.needed_from)
