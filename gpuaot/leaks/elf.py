"""A small, strict ELF reader for the leak gate: headers, sections, one symbol at a time.

One entry object over a buffer (``bytes`` or an ``mmap``), sections parsed on first use, every
offset bounds-checked, every problem an :class:`ElfError` that names the offset and section::

    >>> elf = ElfFile(open("libk.so", "rb").read(), name="libk.so")   # doctest: +SKIP
    >>> elf.machine, elf.elf_type, [s.name for s in elf.symbol_tables()]  # doctest: +SKIP
    (62, 3, ['.dynsym', '.symtab'])
    >>> elf.symbol(elf.section_by_name(".dynsym"), 5)                    # doctest: +SKIP
    Symbol(index=5, name='gpu_report_exception', bind=1, type=0, other=0, shndx=0, ...)

The buffer may hold other things around the ELF image (an ``ar`` archive member is read in place,
never copied), so every offset is relative to ``base``.  Bulk work over whole symbol tables lives in
:mod:`gpuaot.leaks.symbols`; this module decodes single entries with :mod:`struct`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..errors import GpuaotError

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
# program header and dynamic tags
PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_NEEDED, DT_HASH, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_SYMENT = 0, 1, 4, 5, 6, 10, 11
DT_SONAME, DT_RPATH, DT_RUNPATH, DT_GNU_HASH = 14, 15, 29, 0x6FFFFEF5

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

# Per class (32/64): struct layouts without the byte-order character.
_EHDR = {32: "16sHHIIIIIHHHHHH", 64: "16sHHIQQQIHHHHHH"}
_SHDR = {32: "IIIIIIIIII", 64: "IIQQQQIIQQ"}
_PHDR = {32: "IIIIIIII", 64: "IIQQQQQQ"}
SYM_SIZE = {32: 16, 64: 24}
_DYN = {32: "iI", 64: "qQ"}


class ElfError(GpuaotError):
    """The input is not a readable ELF image; carries where the reader gave up.

    >>> str(ElfError("string table index out of range", offset=0x40, section=".symtab"))
    'string table index out of range (section .symtab, offset 0x40)'
    """

    exit_code = 3

    def __init__(
        self, reason: str, *, offset: int | None = None, section: str | None = None
    ) -> None:
        self.reason = reason
        self.offset = offset
        self.section = section
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.section:
            where.append(f"section {self.section}")
        if self.offset is not None:
            where.append(f"offset {self.offset:#x}")
        return f"{self.reason} ({', '.join(where)})" if where else self.reason

    def format(self) -> str:
        return f"error: {self}"


class NotElfError(ElfError):
    """No ELF magic, or an identification byte this reader does not know."""


class TruncatedError(ElfError):
    """A header, table or section runs past the end of the image."""


class MalformedError(ElfError):
    """Fields that contradict each other (wrong entry size, bad link, looping chains)."""


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
class Segment:
    type: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


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


class ElfFile:
    """One ELF image inside ``buf[base:base+size]``; nothing past the header is read eagerly."""

    def __init__(self, buf: Any, name: str = "", base: int = 0, size: int | None = None) -> None:
        self.buf = buf
        self.name = name
        self.base = base
        self.size = (len(buf) - base) if size is None else size
        ident = self.read(0, 16, "ELF identification")
        if ident[:4] != ELF_MAGIC:
            raise NotElfError("not an ELF file (no \\x7fELF magic)", offset=0)
        if ident[4] not in (1, 2):
            raise NotElfError(f"unknown ELF class {ident[4]}", offset=4)
        if ident[5] not in (1, 2):
            raise NotElfError(f"unknown ELF data encoding {ident[5]}", offset=5)
        self.bits = 32 if ident[4] == 1 else 64
        self.endian = "<" if ident[5] == 1 else ">"
        fields = self.unpack(_EHDR[self.bits], 0, "ELF header")
        (
            _,
            self.elf_type,
            self.machine,
            _,
            self.entry,
            self.phoff,
            self.shoff,
            _,
            _,
            self.phentsize,
            self.phnum,
            self.shentsize,
            self.shnum,
            self.shstrndx,
        ) = fields
        self.sym_size = SYM_SIZE[self.bits]

    # -- raw access ---------------------------------------------------------------------------
    def read(self, offset: int, length: int, what: str, section: str | None = None) -> bytes:
        """Bytes ``[offset, offset+length)`` of the image, or a TruncatedError saying what."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise TruncatedError(
                f"{what} ({length} bytes) runs past the end of the file (size {self.size:#x})",
                offset=offset,
                section=section,
            )
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
        want = struct.calcsize(_SHDR[self.bits])
        if self.shentsize != want:
            raise MalformedError(
                f"section header entry size is {self.shentsize}, expected {want}",
                offset=0x2E if self.bits == 32 else 0x3A,
            )
        if self.shnum:
            self.check_range(
                self.shoff, self.shnum * want, f"section header table of {self.shnum} entries", None
            )
        first = self.unpack(_SHDR[self.bits], self.shoff, "section header table")
        count = self.shnum or first[5]  # extended numbering keeps the count in sh_size of entry 0
        self.check_range(self.shoff, count * want, f"section header table ({count} entries)", None)
        raw = self.read(self.shoff, count * want, "section header table")
        rows = list(struct.iter_unpack(self.endian + _SHDR[self.bits], raw))
        strndx = first[6] if self.shstrndx == SHN_XINDEX else self.shstrndx
        names = b""
        if 0 < strndx < count and rows[strndx][1] != SHT_NOBITS:
            r = rows[strndx]
            if r[4] + r[5] <= self.size:
                names = self.read(r[4], r[5], "section name table")
        out = []
        for i, (nm, typ, flags, addr, off, size, link, info, _, entsize) in enumerate(rows):
            end = names.find(b"\0", nm)
            name = names[nm:end].decode("utf-8", "replace") if nm < len(names) and end >= 0 else ""
            out.append(
                Section(i, name or f"[{i}]", typ, flags, addr, off, size, link, info, entsize)
            )
        return out

    def section_by_name(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)

    def section_at(self, index: int, what: str, referrer: Section | None = None) -> Section:
        if not 0 < index < len(self.sections):
            raise MalformedError(
                f"{what} names section {index}, which does not exist",
                section=referrer.name if referrer else None,
            )
        return self.sections[index]

    def section_bytes(self, sec: Section) -> bytes:
        if sec.type == SHT_NOBITS:
            return b""
        return self.read(sec.offset, sec.size, "section contents", sec.name)

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

    # -- symbols --------------------------------------------------------------------------------
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

    # -- program headers and the dynamic section ------------------------------------------------
    @cached_property
    def segments(self) -> list[Segment]:
        if self.phoff == 0 or self.phnum == 0:
            return []
        want = struct.calcsize(_PHDR[self.bits])
        if self.phentsize != want:
            raise MalformedError(f"program header entry size is {self.phentsize}, expected {want}")
        raw = self.read(self.phoff, self.phnum * want, f"program header table ({self.phnum})")
        out = []
        for row in struct.iter_unpack(self.endian + _PHDR[self.bits], raw):
            if self.bits == 64:
                typ, _, off, vaddr, _, filesz, memsz, _ = row
            else:
                typ, off, vaddr, _, filesz, memsz, _, _ = row
            out.append(Segment(typ, off, vaddr, filesz, memsz))
        return out

    def vaddr_to_offset(self, vaddr: int) -> int | None:
        for seg in self.segments:
            if seg.type == PT_LOAD and seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
                return seg.offset + (vaddr - seg.vaddr)
        return None

    def _real_sections(self) -> list[Section]:
        return self.sections if self.shoff else []

    @cached_property
    def dynamic(self) -> list[tuple[int, int]]:
        """``(tag, value)`` pairs up to DT_NULL, from ``.dynamic`` or else PT_DYNAMIC."""
        sec = next((s for s in self._real_sections() if s.type == SHT_DYNAMIC), None)
        if sec is not None:
            return self._dynamic_entries(sec.offset, sec.size, sec.name)
        return self._segment_dynamic()

    def _segment_dynamic(self) -> list[tuple[int, int]]:
        seg = next((p for p in self.segments if p.type == PT_DYNAMIC), None)
        if seg is None:
            return []
        return self._dynamic_entries(seg.offset, seg.filesz, "PT_DYNAMIC")

    def _dynamic_entries(self, off: int, size: int, label: str) -> list[tuple[int, int]]:
        raw = self.read(off, size, "dynamic section", label)
        entry = struct.calcsize(_DYN[self.bits])
        raw = raw[: len(raw) - len(raw) % entry]  # a torn last entry is ignored, like DT_NULL
        out = []
        for tag, val in struct.iter_unpack(self.endian + _DYN[self.bits], raw):
            if tag == DT_NULL:
                break
            out.append((tag, val))
        return out

    def _sections_from_dynamic(self) -> list[Section]:
        tags: dict[int, int] = {}
        for tag, val in self._segment_dynamic():
            tags.setdefault(tag, val)
        if DT_SYMTAB not in tags or DT_STRTAB not in tags:
            return []
        sym_off = self.vaddr_to_offset(tags[DT_SYMTAB])
        str_off = self.vaddr_to_offset(tags[DT_STRTAB])
        if sym_off is None or str_off is None:
            raise MalformedError(
                "DT_SYMTAB or DT_STRTAB is outside every PT_LOAD segment", section="PT_DYNAMIC"
            )
        entsize = tags.get(DT_SYMENT, self.sym_size)
        strsz = tags.get(DT_STRSZ, self.size - str_off)
        count = self._dynsym_count(tags, sym_off, str_off, entsize)
        null = Section(0, "", SHT_NULL, 0, 0, 0, 0, 0, 0, 0)
        dynsym = Section(
            1,
            ".dynsym",
            SHT_DYNSYM,
            SHF_ALLOC,
            tags[DT_SYMTAB],
            sym_off,
            count * entsize,
            2,
            1,
            entsize,
        )
        dynstr = Section(
            2, ".dynstr", SHT_STRTAB, SHF_ALLOC, tags[DT_STRTAB], str_off, strsz, 0, 0, 0
        )
        return [null, dynsym, dynstr]

    def _dynsym_count(self, tags: dict[int, int], sym_off: int, str_off: int, entsize: int) -> int:
        """Number of dynamic symbols, from DT_HASH's nchain or by walking DT_GNU_HASH."""
        if DT_HASH in tags and (off := self.vaddr_to_offset(tags[DT_HASH])) is not None:
            return self.unpack("II", off, "DT_HASH header", "PT_DYNAMIC")[1]
        if DT_GNU_HASH in tags and (off := self.vaddr_to_offset(tags[DT_GNU_HASH])) is not None:
            nbuckets, symoffset, bloom, _ = self.unpack("IIII", off, "DT_GNU_HASH", "PT_DYNAMIC")
            buckets = off + 16 + bloom * (self.bits // 8)
            self.check_range(buckets, 4 * nbuckets, "DT_GNU_HASH buckets", "PT_DYNAMIC")
            raw = self.read(buckets, 4 * nbuckets, "DT_GNU_HASH buckets", "PT_DYNAMIC")
            last = max(struct.unpack(f"{self.endian}{nbuckets}I", raw), default=0)
            if last < symoffset:
                return symoffset
            chain = buckets + 4 * nbuckets
            for i in range(last, last + (self.size - chain) // 4 + 1):
                (h,) = self.unpack(
                    "I", chain + 4 * (i - symoffset), "DT_GNU_HASH chain", "PT_DYNAMIC"
                )
                if h & 1:
                    return i + 1
            raise MalformedError("DT_GNU_HASH chain never ends", section="PT_DYNAMIC")
        # No hash table: by convention .dynstr follows .dynsym.
        return max(0, (str_off - sym_off) // entsize) if str_off > sym_off else 0

    @cached_property
    def dynamic_strtab(self) -> tuple[int, int] | None:
        """(file offset, size) of the dynamic string table."""
        sec = next((s for s in self._real_sections() if s.type == SHT_DYNAMIC), None)
        if sec is not None and 0 < sec.link < len(self.sections):
            st = self.sections[sec.link]
            self.check_range(st.offset, st.size, "dynamic string table", st.name)
            return st.offset, st.size
        addr = next((v for t, v in self.dynamic if t == DT_STRTAB), None)
        off = self.vaddr_to_offset(addr) if addr is not None else None
        if off is None:
            return None
        size = next((v for t, v in self.dynamic if t == DT_STRSZ), self.size - off)
        return off, max(0, min(size, self.size - off))

    def dynamic_strings(self, tag: int) -> list[str]:
        strtab = self.dynamic_strtab
        if strtab is None:
            return []
        off, size = strtab
        fake = Section(0, ".dynstr", SHT_STRTAB, 0, 0, off, size, 0, 0, 0)
        return [self.string(fake, v) for t, v in self.dynamic if t == tag]

    @property
    def needed(self) -> list[str]:
        return self.dynamic_strings(DT_NEEDED)

    @property
    def search_paths(self) -> tuple[list[str], list[str]]:
        """(RPATH, RUNPATH) entries, ``:``-split, unexpanded."""

        def split(tag: int) -> list[str]:
            return [p for s in self.dynamic_strings(tag) for p in s.split(":") if p]

        return split(DT_RPATH), split(DT_RUNPATH)

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

    def _read_verdef(self, sec: Section, out: dict[int, Version]) -> None:
        strtab = self.section_at(sec.link, "version definition string table link", sec)
        off, guard = 0, 0
        while True:
            _, flags, ndx, cnt, _, aux, nxt = self.unpack(
                "HHHHIII", sec.offset + off, "version definition", sec.name
            )
            if cnt and aux:
                name_off = self.unpack("II", sec.offset + off + aux, "version aux", sec.name)[0]
                if not flags & 0x1:  # VER_FLG_BASE names the file itself, not a version
                    out[ndx] = Version(self.string(strtab, name_off), False, None)
            guard += 1
            if nxt == 0 or guard > sec.size // 20 + 1:
                break
            off += nxt
            if off >= sec.size:
                raise MalformedError(
                    "version definition chain leaves the section",
                    section=sec.name,
                    offset=sec.offset + off,
                )

    def _read_verneed(self, sec: Section, out: dict[int, Version]) -> None:
        strtab = self.section_at(sec.link, "version requirement string table link", sec)
        off, guard = 0, 0
        while True:
            _, cnt, file_off, aux, nxt = self.unpack(
                "HHIII", sec.offset + off, "version requirement", sec.name
            )
            lib = self.string(strtab, file_off)
            aoff = off + aux
            for _ in range(min(cnt, sec.size // 16 + 1)):
                _, _, other, name_off, anext = self.unpack(
                    "IHHII", sec.offset + aoff, "version requirement aux", sec.name
                )
                out[other & 0x7FFF] = Version(self.string(strtab, name_off), False, lib)
                if anext == 0:
                    break
                aoff += anext
            guard += 1
            if nxt == 0 or guard > sec.size // 16 + 1:
                break
            off += nxt
            if off >= sec.size:
                raise MalformedError(
                    "version requirement chain leaves the section",
                    section=sec.name,
                    offset=sec.offset + off,
                )

    def symbol_version(self, dynsym: Section, index: int) -> Version | None:
        """The version of dynamic symbol ``index`` (None: unversioned, local or base)."""
        versym = next(
            (s for s in self.sections if s.type == SHT_GNU_VERSYM and s.link == dynsym.index), None
        )
        if versym is None:
            return None
        (raw,) = self.unpack("H", versym.offset + 2 * index, "version index", versym.name)
        ver = self.versions.get(raw & 0x7FFF)
        if ver is None or raw & 0x7FFF < 2:
            return None
        return Version(ver.name, bool(raw & 0x8000), ver.needed_from)
