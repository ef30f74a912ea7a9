"""Bulk symbol-table work: find forbidden names without decoding every symbol.

The hot path of the gate.  A clean 170,000-symbol library costs one ``find`` per forbid glob over
its string table and nothing else::

    >>> elf = ElfFile(buf, "libk.so")                                  # doctest: +SKIP
    >>> table = elf.section_by_name(".dynsym")                          # doctest: +SKIP
    >>> [(s.name, glob) for s, glob in forbidden_symbols(elf, table, Rules.default())]  # doctest: +SKIP
    [('gpu_report_exception', 'gpu_*')]

How: a symbol's name starts at ``st_name`` in the string table, so a name starting with the
literal ``gpu_`` has ``st_name`` equal to an offset where ``gpu_`` occurs (linkers merge string
tails, so that need not follow a NUL).  Few such offsets: search the symbol table's bytes for each
offset packed as an ``st_name`` word, keeping hits on an entry boundary.  Many: decode the
``st_name`` column with a numpy structured view and ``isin``.  A glob whose literal is not its
prefix (``*cuda*``) gives ranges of possible starts instead; a glob with no literal decodes all.
Candidates are then decoded one by one and matched against the full glob, so the filter only
narrows.  numpy is imported only on those slower paths.  The tables are found by pyelftools
(:class:`~gpuaot.leaks.elf.ElfFile` gives their offsets and sizes); their entries are never
decoded by it, which would cost a Python object per symbol.
"""

from __future__ import annotations

import struct
from typing import Any

from .elf import STT_FILE, STT_SECTION, ElfError, ElfFile, Section, Symbol
from .rules import Rules

# Past this many candidate offsets, one vectorised pass beats a ``find`` per offset.
PACKED_SEARCH_LIMIT = 16
# Past this many literal occurrences the table is decoded whole.
OCCURRENCE_LIMIT = 1 << 20


def find_all(buf: Any, needle: bytes, start: int, end: int, limit: int) -> list[int] | None:
    """Every offset of ``needle`` in ``buf[start:end]`` (absolute), or None past ``limit``."""
    out: list[int] = []
    i = buf.find(needle, start, end)
    while i >= 0:
        out.append(i)
        if len(out) > limit:
            return None
        i = buf.find(needle, i + 1, end)
    return out


def candidate_offsets(
    elf: ElfFile, strtab: Section, literals: list[tuple[bytes, bool]]
) -> tuple[set[int], list[tuple[int, int]]] | None:
    """String-table offsets where a forbidden name may start: exact points and (lo, hi) ranges.

    None means "every symbol is a candidate" (a glob without a literal, or a flood of hits).
    """
    buf, so = elf.buf, elf.base + strtab.offset
    se = so + strtab.size
    points: set[int] = set()
    ranges: list[tuple[int, int]] = []
    if any(not lit for lit, _ in literals):
        return None
    for stem, group in _share_passes([lit for lit, anchored in literals if anchored]):
        hits = find_all(buf, stem, so, se, OCCURRENCE_LIMIT)
        if hits is None:
            return None
        if len(group) > 1:  # one pass for literals with a common stem, then compare each
            hits = [h for h in hits if any(buf[h : h + len(g)] == g for g in group)]
        points.update(h - so for h in hits)
    for lit, anchored in literals:
        if anchored:
            continue
        hits = find_all(buf, lit, so, se, OCCURRENCE_LIMIT)
        if hits is None:
            return None
        for h in hits:
            # The name holding this occurrence starts after the previous NUL, at the earliest.
            ranges.append((buf.rfind(b"\0", so, h) + 1 - so if h > so else 0, h - so))
    return points, ranges


def _share_passes(literals: list[bytes]) -> list[tuple[bytes, list[bytes]]]:
    """Group literals by a common stem of 4+ bytes, so ``__nv_`` and ``__nvvm_`` cost one pass.

    >>> _share_passes([b"gpu_", b"__nv_", b"__nvvm_"])
    [(b'gpu_', [b'gpu_']), (b'__nv', [b'__nv_', b'__nvvm_'])]
    """
    groups: dict[bytes, list[bytes]] = {}
    for lit in dict.fromkeys(literals):
        groups.setdefault(lit[:4] if len(lit) >= 4 else lit, []).append(lit)
    out = []
    for group in groups.values():
        stem = group[0]
        for g in group[1:]:
            n = 0
            while n < min(len(stem), len(g)) and stem[n] == g[n]:
                n += 1
            stem = stem[:n]
        out.append((stem if len(group) > 1 else group[0], group))
    return out


def _packed_search(elf: ElfFile, sec: Section, count: int, points: set[int]) -> list[int]:
    """Indices of symbols whose ``st_name`` is in ``points``, by searching the packed words."""
    buf, start = elf.buf, elf.base + sec.offset
    end, size = start + count * elf.sym_size, elf.sym_size
    found: set[int] = set()
    for p in points:
        if p > 0xFFFFFFFF:
            continue
        word = struct.pack(elf.endian + "I", p)
        i = buf.find(word, start, end)
        while i >= 0:
            # st_name is the first word of an entry in both ELF classes.
            if (i - start) % size == 0:
                found.add((i - start) // size)
            i = buf.find(word, i + 1, end)
    found.discard(0)
    return sorted(found)


def name_column(elf: ElfFile, sec: Section, count: int) -> Any:
    """The ``st_name`` words of a symbol table as a numpy array (a strided view, no copy)."""
    import numpy as np

    words = np.frombuffer(
        elf.buf,
        dtype=elf.endian + "u4",
        count=count * elf.sym_size // 4,
        offset=elf.base + sec.offset,
    )
    return words[:: elf.sym_size // 4]


def _vector_search(
    elf: ElfFile, sec: Section, count: int, points: set[int], ranges: list[tuple[int, int]]
) -> list[int]:
    import numpy as np

    names = name_column(elf, sec, count)
    mask = np.isin(names, np.fromiter(points, dtype=np.int64, count=len(points)))
    if ranges:
        ranges.sort()
        merged: list[list[int]] = []
        for lo, hi in ranges:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        starts = np.array([m[0] for m in merged], dtype=np.int64)
        ends = np.array([m[1] for m in merged], dtype=np.int64)
        k = np.searchsorted(starts, names, side="right") - 1
        mask |= (k >= 0) & (names <= ends[np.clip(k, 0, None)])
    mask[:1] = False
    return np.flatnonzero(mask).tolist()


def candidate_indices(elf: ElfFile, sec: Section, strtab: Section, rules: Rules) -> list[int]:
    """Indices of the symbols in ``sec`` whose names may be forbidden (a superset, never less)."""
    count = sec.size // elf.sym_size
    found = candidate_offsets(elf, strtab, rules.literals())
    if found is None:
        return list(range(1, count))
    points, ranges = found
    if not points and not ranges:
        return []
    if not ranges and len(points) <= PACKED_SEARCH_LIMIT:
        return _packed_search(elf, sec, count, points)
    return _vector_search(elf, sec, count, points, ranges)


def is_real_symbol(sym: Symbol) -> bool:
    """Section and file symbols are bookkeeping, not names a linker binds (nm hides them too)."""
    return sym.index != 0 and sym.type not in (STT_SECTION, STT_FILE)


def forbidden_symbols(
    elf: ElfFile, sec: Section, rules: Rules, errors: list[ElfError] | None = None
) -> list[tuple[Symbol, str]]:
    """(symbol, matching glob) for every forbidden, non-allowed symbol of table ``sec``.

    A symbol that cannot be decoded (a name offset past its string table) goes to ``errors``
    (the first one only) and the rest of the table is still read.
    """
    strtab = elf.check_symbol_table(sec)
    out = []
    for i in candidate_indices(elf, sec, strtab, rules):
        try:
            sym = elf.symbol(sec, i, strtab)
        except ElfError as e:
            if errors is not None and not errors:
                errors.append(e)
            continue
        if is_real_symbol(sym):
            glob = rules.match(sym.name)
            if glob is not None:
                out.append((sym, glob))
    return out


class SymbolArray:
    """A whole symbol table as a numpy structured array, for the slower passes.

    Used by ``--undefined`` and by attribution, never on a clean file's hot path.
    """

    def __init__(self, elf: ElfFile, sec: Section) -> None:
        import numpy as np

        self.elf, self.sec = elf, sec
        self.strtab = elf.check_symbol_table(sec)
        e = elf.endian
        if elf.bits == 64:
            fields = [
                ("name", e + "u4"),
                ("info", "u1"),
                ("other", "u1"),
                ("shndx", e + "u2"),
                ("value", e + "u8"),
                ("size", e + "u8"),
            ]
        else:
            fields = [
                ("name", e + "u4"),
                ("value", e + "u4"),
                ("size", e + "u4"),
                ("info", "u1"),
                ("other", "u1"),
                ("shndx", e + "u2"),
            ]
        self.count = sec.size // elf.sym_size
        self.rows = np.frombuffer(
            elf.buf, dtype=np.dtype(fields), count=self.count, offset=elf.base + sec.offset
        )
        self._strings = elf.read(
            self.strtab.offset, self.strtab.size, "string table", self.strtab.name
        )

    def name(self, index: int) -> str:
        off = int(self.rows["name"][index])
        if off >= len(self._strings):
            return ""
        end = self._strings.find(b"\0", off)
        return self._strings[off : end if end >= 0 else None].decode("utf-8", "surrogateescape")

    def names(self, indices: Any) -> list[str]:
        return [self.name(int(i)) for i in indices]
