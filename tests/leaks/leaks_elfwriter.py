"""Write small ELF files from bytes with :mod:`struct`: the corpus gcc cannot make here.

Big-endian and foreign-machine images, EM_CUDA images, and seeds for the mutation tests::

    data = write_elf(bits=64, endian=">", machine=21, symbols=[
        Sym("gpu_leak", bind=1, type=2, defined=True, value=0, size=4),
        Sym("__nv_sinf", bind=1, type=0, defined=False),
    ], relocs=[(0, "__nv_sinf")])

The image has .text, .symtab/.strtab, .rela.text and .shstrtab (and .dynsym/.dynstr when
``dynamic=True``), laid out the way ``readelf`` and ``nm`` expect, so both serve as the oracle.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass
class Sym:
    name: str
    bind: int = 1  # STB_GLOBAL
    type: int = 2  # STT_FUNC
    defined: bool = True
    value: int = 0
    size: int = 0


def _strtab(names: list[str], merge_tails: bool = False) -> tuple[bytes, dict[str, int]]:
    """A string table; with ``merge_tails`` a name that ends another shares its bytes, as ld's
    string merging does (so a name need not start after a NUL)."""
    out, offsets = bytearray(b"\0"), {"": 0}
    order = sorted(set(names), key=len, reverse=True) if merge_tails else names
    for n in order:
        if n in offsets:
            continue
        if merge_tails:
            host = next((h for h in offsets if h and h.endswith(n)), None)
            if host is not None:
                offsets[n] = offsets[host] + len(host.encode()) - len(n.encode())
                continue
        offsets[n] = len(out)
        out += n.encode() + b"\0"
    return bytes(out), offsets


def write_elf(
    *,
    bits: int = 64,
    endian: str = "<",
    machine: int = 62,
    elf_type: int = 1,
    symbols: list[Sym] = (),
    relocs: list[tuple[int, str]] = (),
    dynamic: bool = False,
    text: bytes = b"\x90" * 16,
    merge_tails: bool = False,
) -> bytes:
    e = endian
    sym_fmt = e + ("IBBHQQ" if bits == 64 else "IIIBBH")
    rela_fmt = e + ("QQq" if bits == 64 else "IIi")
    shdr_fmt = e + ("IIQQQQIIQQ" if bits == 64 else "IIIIIIIIII")
    ehdr_fmt = e + ("16sHHIQQQIHHHHHH" if bits == 64 else "16sHHIIIIIHHHHHH")
    ehsize, shentsize = struct.calcsize(ehdr_fmt), struct.calcsize(shdr_fmt)
    # Locals first, as the ELF spec wants (sh_info = first global).
    ordered = sorted(symbols, key=lambda s: s.bind != 0)
    strtab, stroff = _strtab([s.name for s in ordered], merge_tails)
    text_index = 1

    def pack_sym(s: Sym | None, offs: dict[str, int]) -> bytes:
        if s is None:
            return struct.pack(sym_fmt, *([0] * 6))
        shndx = text_index if s.defined else 0
        info = (s.bind << 4) | s.type
        if bits == 64:
            return struct.pack(sym_fmt, offs[s.name], info, 0, shndx, s.value, s.size)
        return struct.pack(sym_fmt, offs[s.name], s.value, s.size, info, 0, shndx)

    symtab = pack_sym(None, stroff) + b"".join(pack_sym(s, stroff) for s in ordered)
    first_global = 1 + sum(1 for s in ordered if s.bind == 0)
    index_of = {s.name: i + 1 for i, s in enumerate(ordered)}
    rela = b""
    for off, name in relocs:
        sym = index_of[name]
        info = (sym << 32 | 4) if bits == 64 else (sym << 8 | 4)  # a PLT32-like type
        rela += struct.pack(rela_fmt, off, info, -4)

    sections: list[
        tuple[str, int, int, bytes, int, int, int]
    ] = []  # name,type,flags,data,link,info,entsize
    sym_size = 24 if bits == 64 else 16
    rela_size = 24 if bits == 64 else 12
    sections.append((".text", 1, 0x6, text, 0, 0, 0))
    sections.append((".symtab", 2, 0, symtab, 3, first_global, sym_size))
    sections.append((".strtab", 3, 0, strtab, 0, 0, 0))
    sections.append((".rela.text", 4, 0x40, rela, 2, 1, rela_size))
    if dynamic:
        dyn_syms = [s for s in ordered if s.bind != 0]
        dynstr, dynoff = _strtab([s.name for s in dyn_syms])
        dynsym = pack_sym(None, dynoff) + b"".join(pack_sym(s, dynoff) for s in dyn_syms)
        sections.append((".dynsym", 11, 0x2, dynsym, 6, 1, sym_size))
        sections.append((".dynstr", 3, 0x2, dynstr, 0, 0, 0))
    shstr, shoff_names = _strtab([s[0] for s in sections] + [".shstrtab"])
    sections.append((".shstrtab", 3, 0, shstr, 0, 0, 0))

    body = bytearray()
    offsets = []
    pos = ehsize
    for _, _, _, data, _, _, _ in sections:
        pad = (-pos) % 8
        body += b"\0" * pad
        pos += pad
        offsets.append(pos)
        body += data
        pos += len(data)
    pad = (-pos) % 8
    body += b"\0" * pad
    shoff = pos + pad
    shdrs = struct.pack(shdr_fmt, *([0] * 10))
    for (name, typ, flags, data, link, info, entsize), off in zip(sections, offsets):
        shdrs += struct.pack(
            shdr_fmt,
            shoff_names[name],
            typ,
            flags,
            0,
            off,
            len(data),
            link,
            info,
            8 if bits == 64 else 4,
            entsize,
        )
    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 1 if e == "<" else 2, 1]) + b"\0" * 9
    ehdr = struct.pack(
        ehdr_fmt,
        ident,
        elf_type,
        machine,
        1,
        0,
        0,
        shoff,
        0,
        ehsize,
        0,
        0,
        shentsize,
        len(sections) + 1,
        len(sections),
    )
    return ehdr + bytes(body) + shdrs
