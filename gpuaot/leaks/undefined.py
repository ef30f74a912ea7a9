"""``--undefined``: undefined, non-weak dynamic symbols that no ``DT_NEEDED`` library defines.

Libraries are found the way ``ld.so`` finds them (``man ld.so``): ``DT_RPATH`` (when there is no
``DT_RUNPATH``), ``LD_LIBRARY_PATH``, ``DT_RUNPATH``, ``/etc/ld.so.cache``, then the default
directories; ``$ORIGIN`` expands to the object's directory, inside a wheel too, where
auditwheel's ``<pkg>.libs/`` members are also searched.  A candidate of the wrong class or
machine is passed over, as the loader does.  The symbol scope is the breadth-first closure of
``DT_NEEDED`` (what the loader's global scope holds); a Python extension module (one that
defines ``PyInit_*``) also sees the running interpreter's symbols, since it is loaded into it::

    libk.so  NEEDED libc.so.6     printf@GLIBC_2.2.5  -> defined by libc.so.6      (fine)
                                  gpu_malloc          -> defined by nothing         (finding)
    libk.so  NEEDED libgone.so    libgone.so          -> not found                 (finding)

Versions are honoured where cheap: a reference ``foo@V`` is satisfied by a definition of ``foo``
at version ``V`` or by an unversioned one.
"""

from __future__ import annotations

import os
import posixpath
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from .elf import (
    EM_386,
    EM_AARCH64,
    EM_X86_64,
    ET_DYN,
    ET_EXEC,
    SHN_UNDEF,
    SHT_DYNSYM,
    STB_GLOBAL,
    ElfError,
    ElfFile,
    Section,
    Symbol,
    Version,
)
from .inputs import Origin
from .symbols import SymbolArray, is_real_symbol

MULTIARCH = {
    EM_X86_64: "x86_64-linux-gnu",
    EM_386: "i386-linux-gnu",
    EM_AARCH64: "aarch64-linux-gnu",
}
LD_CACHE = "/etc/ld.so.cache"


@dataclass
class Library:
    soname: str
    where: str  # a path, or "wheel!member"
    needed: list[str]
    exports: dict[str, set[str | None]]
    elf: ElfFile
    origin: Origin


def default_dirs(elf: ElfFile) -> list[str]:
    out = []
    arch = MULTIARCH.get(elf.machine)
    if arch:
        out += [f"/lib/{arch}", f"/usr/lib/{arch}"]
    if elf.bits == 64:
        out += ["/lib64", "/usr/lib64"]
    return out + ["/lib", "/usr/lib"]


def exports_of(elf: ElfFile) -> dict[str, set[str | None]]:
    """Defined, non-local dynamic symbols: name -> versions (None: unversioned)."""
    import numpy as np

    out: dict[str, set[str | None]] = {}
    for sec in elf.sections:
        if sec.type != SHT_DYNSYM:
            continue
        arr = SymbolArray(elf, sec)
        rows = arr.rows
        keep = (rows["shndx"] != SHN_UNDEF) & ((rows["info"] >> 4) != 0)
        keep[:1] = False
        idx = np.flatnonzero(keep)
        versym = _versym(elf, sec, arr.count)
        versions = elf.versions if versym is not None else {}
        for i in idx.tolist():
            name = arr.name(i)
            ver = None
            if versym is not None:
                v = versions.get(versym[i] & 0x7FFF)
                ver = v.name if v is not None and versym[i] & 0x7FFF >= 2 else None
            out.setdefault(name, set()).add(ver)
    return out


def _versym(elf: ElfFile, dynsym: Section, count: int) -> list[int] | None:
    """Every dynamic symbol's version index, in one unpack (pyelftools reads one per call)."""
    sec = elf.versym(dynsym)
    if sec is None:
        return None
    raw = elf.read(sec.offset, min(sec.size, 2 * count) // 2 * 2, "version table", sec.name)
    vals = list(struct.unpack(f"{elf.endian}{len(raw) // 2}H", raw))
    return vals + [0] * (count - len(vals))


def undefined_refs(elf: ElfFile) -> list[tuple[Symbol, Version | None, str]]:
    """(symbol, version, table name) for each undefined GLOBAL dynamic symbol."""
    import numpy as np

    out = []
    for sec in elf.sections:
        if sec.type != SHT_DYNSYM:
            continue
        arr = SymbolArray(elf, sec)
        rows = arr.rows
        mask = (rows["shndx"] == SHN_UNDEF) & ((rows["info"] >> 4) == STB_GLOBAL)
        mask[:1] = False
        for i in np.flatnonzero(mask).tolist():
            sym = elf.symbol(sec, i, arr.strtab)
            if is_real_symbol(sym) and sym.name:
                out.append((sym, elf.symbol_version(sec, i), sec.name))
    return out


class Resolver:
    """Finds and caches libraries and their exported symbols across a whole run."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.ld_library_path = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
        self._libs: dict[str, Library | None] = {}
        self._ld_cache: dict[str, list[str]] | None = None
        self._interp: dict[str, set[str | None]] | None = None

    # -- where libraries are ------------------------------------------------------------------
    def ld_cache(self) -> dict[str, list[str]]:
        if self._ld_cache is None:
            self._ld_cache = parse_ld_cache(LD_CACHE) or ldconfig_p()
        return self._ld_cache

    def _load_path(self, path: str, soname: str, want: ElfFile) -> Library | None:
        key = os.path.realpath(path)
        if key not in self._libs:
            self._libs[key] = None
            try:
                with open(path, "rb") as f:
                    data = f.read()
                self._libs[key] = self._make(data, soname, path, Origin(os.path.dirname(key)))
            except (OSError, ElfError, ValueError, struct.error):
                pass
        lib = self._libs[key]
        return lib if lib is not None and _compatible(lib.elf, want) else None

    def _load_member(
        self, origin: Origin, member: str, soname: str, want: ElfFile
    ) -> Library | None:
        assert origin.zip is not None
        key = f"{origin.zip.path}!{member}"
        if key not in self._libs:
            self._libs[key] = None
            data = origin.zip.read(member)
            if data is not None:
                try:
                    lib_origin = Origin(posixpath.dirname(member), origin.zip)
                    self._libs[key] = self._make(data, soname, key, lib_origin)
                except (ElfError, ValueError, struct.error):
                    pass
        lib = self._libs[key]
        return lib if lib is not None and _compatible(lib.elf, want) else None

    @staticmethod
    def _make(data: bytes, soname: str, where: str, origin: Origin) -> Library:
        elf = ElfFile(data, where)
        return Library(soname, where, elf.needed, exports_of(elf), elf, origin)

    def _expand(self, entry: str, origin: Origin, elf: ElfFile) -> str:
        lib = "lib64" if elf.bits == 64 else "lib"
        for var, val in (
            ("$ORIGIN", origin.directory),
            ("${ORIGIN}", origin.directory),
            ("$LIB", lib),
            ("${LIB}", lib),
        ):
            entry = entry.replace(var, val)
        return entry

    def find(self, soname: str, elf: ElfFile, origin: Origin) -> Library | None:
        """The library ``soname`` as the loader would find it for ``elf``."""
        if "/" in soname:
            return self._in_dirs([""], soname, elf, origin, relative=True)
        rpath, runpath = elf.search_paths
        dirs: list[tuple[str, bool]] = []  # (directory, came from the object's own paths)
        if not runpath:
            dirs += [(self._expand(d, origin, elf), True) for d in rpath]
        dirs += [(d, False) for d in self.ld_library_path]
        dirs += [(self._expand(d, origin, elf), True) for d in runpath]
        for d, own in dirs:
            lib = self._in_dirs([d], soname, elf, origin, relative=own)
            if lib:
                return lib
        if origin.zip is not None:
            for member in origin.zip.libs_members(soname):
                lib = self._load_member(origin, member, soname, elf)
                if lib:
                    return lib
        for path in self.ld_cache().get(soname, []):
            lib = self._load_path(path, soname, elf)
            if lib:
                return lib
        return self._in_dirs(default_dirs(elf), soname, elf, Origin("/"), relative=False)

    def _in_dirs(
        self, dirs: list[str], soname: str, elf: ElfFile, origin: Origin, relative: bool
    ) -> Library | None:
        for d in dirs:
            if origin.zip is not None and relative and not os.path.isabs(d):
                member = posixpath.normpath(posixpath.join(d, soname))
                if not member.startswith("../") and member in origin.zip.members:
                    lib = self._load_member(origin, member, soname, elf)
                    if lib:
                        return lib
                continue
            path = os.path.join(d, soname)
            if os.path.isfile(path):
                lib = self._load_path(path, soname, elf)
                if lib:
                    return lib
        return None

    # -- scope and verdict ----------------------------------------------------------------------
    def scope(self, elf: ElfFile, origin: Origin) -> tuple[list[Library], list[str]]:
        """Breadth-first closure of DT_NEEDED: (libraries found, sonames not found)."""
        found: list[Library] = []
        missing: list[str] = []
        seen: set[str] = set()
        queue = deque((n, elf, origin) for n in elf.needed)
        while queue:
            soname, requester, req_origin = queue.popleft()
            if soname in seen:
                continue
            seen.add(soname)
            lib = self.find(soname, requester, req_origin)
            if lib is None:
                if requester is elf:
                    missing.append(soname)
                continue
            found.append(lib)
            queue.extend((n, lib.elf, lib.origin) for n in lib.needed)
        return found, missing

    def interpreter_exports(self) -> dict[str, set[str | None]]:
        """What the running Python (its executable and NEEDED closure) exports."""
        if self._interp is None:
            self._interp = {}
            try:
                exe = os.path.realpath(sys.executable)
                with open(exe, "rb") as f:
                    data = f.read()
                elf = ElfFile(data, exe)
                origin = Origin(os.path.dirname(exe))
                libs, _ = self.scope(elf, origin)
                for exports in [exports_of(elf)] + [lib.exports for lib in libs]:
                    for k, v in exports.items():
                        self._interp.setdefault(k, set()).update(v)
            except (OSError, ElfError, ValueError, struct.error):
                pass
        return self._interp

    def unresolved(
        self, elf: ElfFile, origin: Origin
    ) -> tuple[list[str], list[tuple[Symbol, Version | None, str]]]:
        """(missing sonames, [(symbol, version, table)] no library in scope defines)."""
        if not elf.dynamic:
            return [], []
        refs = undefined_refs(elf)
        libs, missing = self.scope(elf, origin)
        if not refs:
            return missing, []
        own = exports_of(elf)
        extra = self.interpreter_exports() if any(n.startswith("PyInit_") for n in own) else {}
        out = []
        for sym, ver, table in refs:
            if not any(
                _satisfies(x.get(sym.name), ver) for x in [*(li.exports for li in libs), extra]
            ):
                out.append((sym, ver, table))
        return missing, out


def _satisfies(versions: set[str | None] | None, wanted: Version | None) -> bool:
    if not versions:
        return False
    return wanted is None or None in versions or wanted.name in versions


def _compatible(lib: ElfFile, want: ElfFile) -> bool:
    return (lib.bits, lib.endian, lib.machine) == (want.bits, want.endian, want.machine) and (
        lib.elf_type in (ET_DYN, ET_EXEC)
    )


def parse_ld_cache(path: str) -> dict[str, list[str]]:
    """soname -> paths from glibc's ``ld.so.cache`` (the ``glibc-ld.so.cache1.1`` format)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return {}
    magic = b"glibc-ld.so.cache1.1"
    start = data.find(magic)
    if start < 0 or start + 48 > len(data):
        return {}
    nlibs, _ = struct.unpack_from("<II", data, start + 20)
    out: dict[str, list[str]] = {}
    for i in range(nlibs):
        off = start + 48 + 24 * i
        if off + 24 > len(data):
            break
        _, key, value, _, _ = struct.unpack_from("<iIIIQ", data, off)
        k, v = _cstr(data, start + key), _cstr(data, start + value)
        if k and v:
            out.setdefault(k, []).append(v)
    return out


def _cstr(data: bytes, off: int) -> str:
    if not 0 <= off < len(data):
        return ""
    end = data.find(b"\0", off)
    return data[off : end if end >= 0 else None].decode("utf-8", "replace")


def ldconfig_p() -> dict[str, list[str]]:
    """The same, from ``ldconfig -p`` (when the cache format is one we do not parse)."""
    for exe in ("ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"):
        try:
            text = subprocess.run([exe, "-p"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        out: dict[str, list[str]] = {}
        for line in text.splitlines()[1:]:
            name, _, rest = line.strip().partition(" ")
            head, arrow, path = rest.rpartition("=> ")
            if name and arrow and path:
                out.setdefault(name, []).append(path)
        return out
    return {}
