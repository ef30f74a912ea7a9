"""Who references a leaked symbol: the function(s), and ``file:line`` when DWARF is there.

Runs only on findings, never on a clean file.  Two routes::

    k.o      .rela.text: R_X86_64_PLT32 gpu_report_exception at .text+0x1b
             -> the function whose [value, value+size) holds 0x1b        -> "launch" (k.c:7)
    libk.so  .rela.plt: JUMP_SLOT gpu_report_exception -> GOT slot 0x4018
             .plt stub "jmp *0x4018(%rip)" at 0x1030; "call 0x1030" in .text at 0x1139
             -> the function holding 0x1139                              -> "launch" (k.c:7)

Relocatable objects work for every machine.  Linked objects need a look at the code: on x86-64
the scan decodes ``call/jmp rel32`` (into a PLT stub or straight at a leaked definition),
``call/jmp *disp32(%rip)`` (``-fno-plt``) and ``mov/lea disp32(%rip)`` (a GOT load, an address
taken) with numpy over the executable sections; elsewhere only data relocations are attributed.
A site outside any sized function symbol is named by its address (``0x1139``).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .elf import (
    EM_X86_64,
    ET_REL,
    SHF_ALLOC,
    SHF_EXECINSTR,
    SHT_DYNSYM,
    SHT_NOBITS,
    SHT_REL,
    SHT_RELA,
    SHT_SYMTAB,
    STT_FUNC,
    STT_OBJECT,
    ElfFile,
    Section,
    Symbol,
)
from .symbols import SymbolArray


@dataclass
class Target:
    """One leaked symbol to attribute; the finding's lists are filled in place."""

    table: Section
    symbol: Symbol
    referenced_by: list[str]
    locations: list[str]
    sites: list[tuple[int, int | None]] = field(default_factory=list)  # (address, section)


def attribute(elf: ElfFile, targets: list[Target], with_lines: bool = True) -> None:
    if not targets:
        return
    if elf.elf_type == ET_REL:
        _relocatable(elf, targets)
    else:
        _linked(elf, targets)
    names = _Namer(elf)
    for t in targets:
        refs = dict.fromkeys(names.name(addr, shndx) for addr, shndx in sorted(set(t.sites)))
        t.referenced_by.extend(r for r in refs if r != t.symbol.name)
    if with_lines:
        _lines(elf, targets)


# -- relocation tables ----------------------------------------------------------------------------


def relocations(elf: ElfFile, sec: Section) -> Any:
    """(offset, symbol index, type) columns of a REL/RELA section, decoded in bulk.

    pyelftools' ``RelocationSection`` says what the entries are (REL or RELA, and that the
    section's entry size is theirs); numpy reads them all at once where pyelftools would make a
    Python object of each.
    """
    import numpy as np

    table = elf.relocation_section(sec)  # checks sh_entsize against Elf_Rel / Elf_Rela
    e = elf.endian
    w = "u8" if elf.bits == 64 else "u4"
    fields = [("offset", e + w), ("info", e + w)]
    if table.is_RELA():
        fields.append(("addend", e + ("i8" if elf.bits == 64 else "i4")))
    dtype = np.dtype(fields)  # the layout of pyelftools' Elf_Rel / Elf_Rela, as numpy reads it
    elf.check_range(sec.offset, sec.size, "relocation table", sec.name)
    rows = np.frombuffer(
        elf.buf, dtype=dtype, count=sec.size // dtype.itemsize, offset=elf.base + sec.offset
    )
    info = rows["info"].astype(np.uint64)
    shift, mask = (32, 0xFFFFFFFF) if elf.bits == 64 else (8, 0xFF)
    out = np.empty(len(rows), dtype=[("offset", "u8"), ("sym", "u8"), ("type", "u8")])
    out["offset"] = rows["offset"]
    out["sym"] = info >> np.uint64(shift)
    out["type"] = info & np.uint64(mask)
    return out


def _reloc_sections(elf: ElfFile, table: Section) -> list[Section]:
    return [s for s in elf.sections if s.type in (SHT_REL, SHT_RELA) and s.link == table.index]


def _relocatable(elf: ElfFile, targets: list[Target]) -> None:
    """In a ``.o``: each relocation against the symbol, at an offset in an allocated section."""
    import numpy as np

    by_table: dict[int, list[Target]] = {}
    for t in targets:
        by_table.setdefault(t.table.index, []).append(t)
    for table_index, group in by_table.items():
        table = elf.sections[table_index]
        for rs in _reloc_sections(elf, table):
            if not 0 < rs.info < len(elf.sections):
                continue
            dest = elf.sections[rs.info]
            if not dest.flags & SHF_ALLOC:  # debug info refers to everything; not a use
                continue
            rel = relocations(elf, rs)
            for t in group:
                hit = rel["offset"][rel["sym"] == t.symbol.index]
                t.sites.extend((int(o), dest.index) for o in np.unique(hit))


# -- linked objects -------------------------------------------------------------------------------


def _linked(elf: ElfFile, targets: list[Target]) -> None:
    """In a ``.so`` or executable: GOT slots from dynamic relocations, then the code using them."""
    import numpy as np

    want: dict[int, list[Target]] = {}  # address referenced -> targets
    data_slots: dict[int, list[Target]] = {}
    dynsym = next((s for s in elf.sections if s.type == SHT_DYNSYM), None)
    by_dyn_index: dict[int, list[Target]] = {}
    if dynsym is not None:
        names: dict[str, int] | None = None
        for t in targets:
            if t.table.type == SHT_DYNSYM:
                by_dyn_index.setdefault(t.symbol.index, []).append(t)
                continue
            # A .symtab entry of a linked object shares the GOT/PLT of its .dynsym twin.
            if names is None:
                arr = SymbolArray(elf, dynsym)
                names = {arr.name(i): i for i in range(1, arr.count)}
            twin = names.get(t.symbol.name.split("@", 1)[0])
            if twin is not None:
                by_dyn_index.setdefault(twin, []).append(t)
        if by_dyn_index:
            keys = np.fromiter(by_dyn_index, dtype=np.uint64, count=len(by_dyn_index))
            for rs in _reloc_sections(elf, dynsym):
                rel = relocations(elf, rs)
                sel = np.isin(rel["sym"], keys)
                for off, sym in zip(rel["offset"][sel].tolist(), rel["sym"][sel].tolist()):
                    for t in by_dyn_index[int(sym)]:
                        want.setdefault(int(off), []).append(t)
                        data_slots.setdefault(int(off), []).append(t)
    for t in targets:
        sym = t.symbol
        if sym.defined and sym.type == STT_FUNC and sym.value:
            want.setdefault(sym.value, []).append(t)
    if not want:
        return
    if elf.machine == EM_X86_64:
        execs = [
            s for s in elf.sections if s.flags & SHF_EXECINSTR and s.type != SHT_NOBITS and s.size
        ]
        plts = [s for s in execs if s.name.startswith(".plt")]
        # A PLT stub is "jmp *slot(%rip)"; callers call the stub, so the stub is a target too.
        for sec in plts:
            for site, dest in _x86_refs(elf, sec, set(want)):
                stub = _stub_start(elf, sec, site)
                for t in want[dest]:
                    want.setdefault(stub, [])
                    if t not in want[stub]:
                        want[stub].append(t)
        for sec in execs:
            if sec in plts:
                continue
            for site, dest in _x86_refs(elf, sec, set(want)):
                for t in want[dest]:
                    t.sites.append((site, None))
    # Data relocations (function-pointer tables, vtables) outside the GOT: the holding object.
    got = [s for s in elf.sections if s.name.startswith(".got")]
    for off, ts in data_slots.items():
        if any(g.addr <= off < g.addr + g.size for g in got):
            continue
        for t in ts:
            t.sites.append((off, None))


def _stub_start(elf: ElfFile, sec: Section, site: int) -> int:
    """The entry address of the PLT stub whose jump is at ``site`` (skip bnd and endbr64)."""
    pos = site - sec.addr
    raw = elf.read(sec.offset + max(0, pos - 5), min(pos, 5), "PLT entry", sec.name)
    if raw.endswith(b"\xf2"):  # bnd prefix
        raw, site = raw[:-1], site - 1
    if raw.endswith(b"\xf3\x0f\x1e\xfa"):  # endbr64
        site -= 4
    return site


def _x86_refs(elf: ElfFile, sec: Section, dests: set[int]) -> list[tuple[int, int]]:
    """(instruction address, referenced address) for x86-64 references into ``dests``."""
    import numpy as np

    elf.check_range(sec.offset, sec.size, "code", sec.name)
    code = np.frombuffer(elf.buf, dtype=np.uint8, count=sec.size, offset=elf.base + sec.offset)
    n = len(code)
    # Addresses are unsigned 64-bit and wrap, as the CPU computes them; never overflow here.
    wanted = np.fromiter((d % 2**64 for d in dests), dtype=np.uint64, count=len(dests))
    base = np.uint64(sec.addr % 2**64)

    def disp(pos: Any, at: int) -> Any:
        b = [code[pos + at + k].astype(np.uint32) << np.uint32(8 * k) for k in range(4)]
        return (b[0] | b[1] | b[2] | b[3]).view(np.int32).astype(np.int64).astype(np.uint64)

    found: list[tuple[int, int]] = []

    def collect(pos: Any, at: int, length: int) -> None:
        pos = pos[pos + length <= n]
        if len(pos):
            with np.errstate(over="ignore"):
                site = base + pos.astype(np.uint64)
                dest = site + np.uint64(length) + disp(pos, at)
            hit = np.isin(dest, wanted)
            found.extend(zip(site[hit].tolist(), dest[hit].tolist()))

    # call rel32 / jmp rel32
    collect(np.flatnonzero((code == 0xE8) | (code == 0xE9)), 1, 5)
    if n >= 2:
        # call/jmp *disp32(%rip): ff 15 / ff 25
        ff = np.flatnonzero((code[:-1] == 0xFF) & ((code[1:] == 0x15) | (code[1:] == 0x25)))
        collect(ff, 2, 6)
    if n >= 3:
        # mov/lea r64, disp32(%rip): REX.W (48/4c) 8b|8d modrm(mod=00, rm=101)
        rex = (code[:-2] & 0xFB) == 0x48
        op = (code[1:-1] == 0x8B) | (code[1:-1] == 0x8D)
        modrm = (code[2:] & 0xC7) == 0x05
        collect(np.flatnonzero(rex & op & modrm), 3, 7)
    return found


# -- naming sites ---------------------------------------------------------------------------------


class _Namer:
    """Address (or section offset, in a .o) -> the function or object that holds it."""

    def __init__(self, elf: ElfFile) -> None:
        import numpy as np

        self.elf = elf
        self.relocatable = elf.elf_type == ET_REL
        self.index: dict[int | None, tuple[Any, Any, Any, Callable[[int], str]]] = {}
        tabs = [s for s in elf.sections if s.type == SHT_SYMTAB] or [
            s for s in elf.sections if s.type == SHT_DYNSYM
        ]
        if not tabs:
            return
        arr = SymbolArray(elf, tabs[0])
        rows = arr.rows
        kind = rows["info"] & 0xF
        keep = (
            ((kind == STT_FUNC) | (kind == STT_OBJECT)) & (rows["size"] > 0) & (rows["shndx"] != 0)
        )
        keep[:1] = False
        idx = np.flatnonzero(keep)
        keys = rows["shndx"][idx] if self.relocatable else np.zeros(len(idx), dtype=np.uint16)
        for key in np.unique(keys).tolist():
            sel = idx[keys == key]
            order = np.argsort(rows["value"][sel], kind="stable")
            sel = sel[order]
            starts = rows["value"][sel].astype(np.int64)
            ends = starts + rows["size"][sel].astype(np.int64)
            self.index[key if self.relocatable else None] = (starts, ends, sel, arr.name)
        self.kinds = kind

    def name(self, addr: int, shndx: int | None) -> str:
        import numpy as np

        entry = self.index.get(shndx if self.relocatable else None)
        if entry is not None and 0 <= addr < 2**63:
            starts, ends, sel, namer = entry
            top = int(np.searchsorted(starts, addr, side="right")) - 1
            # The nearest start at or below addr usually holds it; a few more back cover
            # overlapping symbols (aliases, nested labels).
            for k in range(top, max(top - 8, -1), -1):
                if starts[k] <= addr < ends[k]:
                    i = int(sel[k])
                    label = namer(i)
                    return label if self.kinds[i] == STT_FUNC else f"{label} (data)"
        if self.relocatable and shndx is not None and shndx < len(self.elf.sections):
            return f"{self.elf.sections[shndx].name}+{addr:#x}"
        return f"{addr:#x}"


# -- DWARF line info ------------------------------------------------------------------------------


def _lines(elf: ElfFile, targets: list[Target]) -> None:
    """``file:line`` of each site, from pyelftools' DWARF line programs (only for findings)."""
    if not any(s.name in (".debug_line", ".zdebug_line") for s in elf.sections):
        return
    if elf.elf_type == ET_REL:
        # Line addresses in a .o are offsets in their own section; only unambiguous with one.
        code = [s for s in elf.sections if s.flags & SHF_EXECINSTR and s.size]
        if len(code) != 1:
            return
        keep = {code[0].index}
        addrs = {a for t in targets for a, s in t.sites if s in keep}
    else:
        addrs = {a for t in targets for a, _ in t.sites}
    if not addrs:
        return
    try:
        table = line_table(elf.elffile, addrs)
    except Exception:  # pyelftools on damaged DWARF: attribution is best effort
        return
    for t in targets:
        locs = dict.fromkeys(table[a] for a, _ in sorted(set(t.sites)) if a in table)
        t.locations.extend(locs)


def line_table(ef: Any, addrs: set[int]) -> dict[int, str]:
    """address -> "file:line" for the addresses pyelftools' line programs place.

    ``ef`` is the image's own pyelftools ``ELFFile`` (:attr:`ElfFile.elffile`).
    """
    if not ef.has_dwarf_info():
        return {}
    dwarf = ef.get_dwarf_info()
    out: dict[int, str] = {}
    want = sorted(addrs)
    for cu in _units_for(dwarf, want):
        lp = dwarf.line_program_for_CU(cu)
        if lp is None:
            continue
        prev = None
        for entry in lp.get_entries():
            state = entry.state
            if state is None:
                continue
            if prev is not None and prev.address <= state.address:
                lo = bisect.bisect_left(want, prev.address)
                hi = bisect.bisect_left(want, state.address)
                for a in want[lo:hi]:
                    out.setdefault(a, f"{_file_name(lp, prev.file)}:{prev.line}")
            prev = None if state.end_sequence else state
        if len(out) == len(want):
            break
    return out


def _units_for(dwarf: Any, want: list[int]) -> Iterator[Any]:
    """The compile units holding ``want``: through .debug_aranges when it answers (a large
    library has thousands of units), else every unit."""
    aranges = dwarf.get_aranges()
    offsets = {aranges.cu_offset_at_addr(a) for a in want} if aranges is not None else {None}
    if None in offsets:
        yield from dwarf.iter_CUs()
        return
    for off in sorted(offsets):
        yield dwarf.get_CU_at(off)


def _file_name(lp: Any, index: int) -> str:
    entries = lp["file_entry"]
    i = index if lp["version"] >= 5 else index - 1
    if not 0 <= i < len(entries):
        return "?"
    entry = entries[i]
    name = entry.name.decode("utf-8", "replace")
    dirs = lp["include_directory"]
    d = entry.dir_index
    # Directory 0 is the compilation directory (DWARF 5) or implied (DWARF 4): leave it out.
    if d and 0 <= (d if lp["version"] >= 5 else d - 1) < len(dirs) and not os.path.isabs(name):
        sub = dirs[d if lp["version"] >= 5 else d - 1].decode("utf-8", "replace")
        if not os.path.isabs(sub):
            name = f"{sub}/{name}"
    return name
