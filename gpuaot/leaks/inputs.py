"""Turn command-line paths into ELF images: files, directories, ``ar`` archives, wheels and zips.

Everything is recognised by its magic bytes, never by its name.  Each image comes out as a
:class:`Blob` naming where it lives, or a :class:`Problem` saying why it could not be read::

    dist/pkg-1.0-cp311-linux_x86_64.whl   ->  Blob("dist/pkg-1.0-...whl!pkg/_k.so", ...)
    build/libk.a                          ->  Blob("build/libk.a!k.o", ...), Blob(...!util.o)
    build/                                ->  every ELF/archive/zip below it, sorted, no symlinks
    README.md (named explicitly)          ->  Problem("README.md", "not an ELF file, ...")

Files are memory-mapped and archive members read in place, so a 180 MB library costs only the
pages the scan touches.  Wheel members are decompressed into memory (``wheel!member``).
Directory walks never follow symbolic links: a link inside the tree points at something the walk
reaches anyway, and one leading out of the tree is not part of it.
"""

from __future__ import annotations

import mmap
import os
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .elf import ELF_MAGIC

AR_MAGIC = b"!<arch>\n"
THIN_MAGIC = b"!<thin>\n"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
# Small files are read; large ones mapped (only the symbol and string tables get paged in).
MMAP_THRESHOLD = 1 << 20
# A zip member larger than this is reported, not inflated (zip bombs, absurd headers).
MAX_MEMBER = 4 << 30


def sniff(head: bytes) -> str | None:
    if head.startswith(ELF_MAGIC):
        return "elf"
    if head.startswith(AR_MAGIC):
        return "ar"
    if head.startswith(THIN_MAGIC):
        return "thin"
    if head.startswith(ZIP_MAGICS):
        return "zip"
    return None


class ZipNamespace:
    """A wheel's member names, for resolving ``$ORIGIN`` and ``<pkg>.libs/`` inside it."""

    def __init__(self, zf: Any, path: str) -> None:
        self.zf, self.path = zf, path
        self.members = {i.filename for i in zf.infolist() if not i.is_dir()}
        self._cache: dict[str, bytes | None] = {}

    def libs_members(self, soname: str) -> list[str]:
        """Members ``<anything>.libs/<soname>`` (auditwheel's grafted libraries)."""
        return sorted(
            m
            for m in self.members
            if posixpath.basename(m) == soname and posixpath.dirname(m).endswith(".libs")
        )

    def read(self, member: str) -> bytes | None:
        if member not in self._cache:
            try:
                info = self.zf.getinfo(member)
                self._cache[member] = None if info.file_size > MAX_MEMBER else self.zf.read(info)
            except Exception:  # any zip damage: the library is simply not found
                self._cache[member] = None
        return self._cache[member]


@dataclass(frozen=True)
class Origin:
    """Where an image's ``$ORIGIN`` is: a real directory, or a directory inside a wheel."""

    directory: str
    zip: ZipNamespace | None = None


@dataclass
class Blob:
    """One ELF image to scan."""

    display: str  # how findings name it: "path", "wheel!member", "lib.a!obj.o"
    path: str  # the file on disk that holds it
    member: str | None  # the member inside ``path`` (wheels and archives)
    buf: Any  # bytes or mmap
    base: int
    size: int
    origin: Origin


@dataclass
class Problem:
    """An input that could not be read, with a one-line reason."""

    display: str
    reason: str
    path: str = ""
    member: str | None = None
    offset: int | None = None
    section: str | None = None


@dataclass
class Skipped:
    """Something deliberately not scanned (a non-ELF archive member), for ``--verbose``."""

    display: str
    reason: str


Item = Blob | Problem | Skipped


class Walker:
    """Yields the scan items of each path, in order; nothing is read before it is asked for."""

    def items(self, paths: list[str]) -> Iterator[Item]:
        for p in paths:
            if os.path.isdir(p):
                yield from self._walk(p)
            else:
                yield from self._file(p, explicit=True)

    def _walk(self, directory: str) -> Iterator[Item]:
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            yield Problem(directory, f"cannot list directory: {e.strerror or e}", directory)
            return
        for entry in entries:
            try:
                if entry.is_symlink():
                    continue
                if entry.is_dir(follow_symlinks=False):
                    yield from self._walk(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    yield from self._file(entry.path, explicit=False)
            except OSError as e:
                yield Problem(entry.path, f"cannot read: {e.strerror or e}", entry.path)

    def _file(self, path: str, explicit: bool) -> Iterator[Item]:
        try:
            # stat before open: opening a FIFO or a device could block or never end.
            if not stat.S_ISREG(os.stat(path).st_mode):
                if explicit:
                    yield Problem(path, "not a regular file", path)
                return
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                head = f.read(8)
                kind = sniff(head)
                if kind is None:
                    if explicit:
                        what = "empty file" if not head else "not an ELF file, ar archive or zip"
                        yield Problem(path, what, path)
                    return
                if kind == "zip":
                    buf: Any = None
                elif st.st_size >= MMAP_THRESHOLD:
                    buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                else:
                    f.seek(0)
                    buf = f.read()
        except OSError as e:
            yield Problem(path, f"cannot read: {e.strerror or e}", path)
            return
        origin = Origin(os.path.dirname(os.path.abspath(path)))
        if kind == "elf":
            yield Blob(path, path, None, buf, 0, len(buf), origin)
        elif kind in ("ar", "thin"):
            yield from iter_archive(buf, 0, len(buf), path, path, None, origin)
        else:
            yield from self._zip(path)

    def _zip(self, path: str) -> Iterator[Item]:
        import zipfile

        try:
            zf = zipfile.ZipFile(path)
            infos = [i for i in zf.infolist() if not i.is_dir()]
        except Exception as e:  # BadZipFile, OSError, ValueError, ... on a damaged directory
            yield Problem(path, f"unreadable zip: {e}", path)
            return
        try:
            yield from self._zip_members(zf, infos, path)
        finally:
            zf.close()

    def _zip_members(self, zf: Any, infos: list[Any], path: str) -> Iterator[Item]:
        ns = ZipNamespace(zf, path)
        for info in infos:
            display = f"{path}!{info.filename}"
            try:
                with zf.open(info) as m:
                    kind = sniff(m.read(8))
                if kind not in ("elf", "ar"):
                    continue
                if info.file_size > MAX_MEMBER:
                    yield Problem(
                        display,
                        f"member of {info.file_size} bytes not inflated",
                        path,
                        info.filename,
                    )
                    continue
                data = zf.read(info)
            except Exception as e:  # CRC, zlib, encryption, truncation: one member's problem
                yield Problem(display, f"unreadable zip member: {e}", path, info.filename)
                continue
            origin = Origin(posixpath.dirname(info.filename), ns)
            if kind == "elf":
                yield Blob(display, path, info.filename, data, 0, len(data), origin)
            else:
                yield from iter_archive(data, 0, len(data), display, path, info.filename, origin)


def iter_archive(
    buf: Any, base: int, size: int, display: str, path: str, member: str | None, origin: Origin
) -> Iterator[Item]:
    """The ELF members of an ``ar`` archive (GNU, BSD and thin), read in place.

    GNU names end in ``/`` and long ones are ``/N`` into the ``//`` table; BSD long names are
    ``#1/N`` with the name in the first N bytes of the data; thin archives store only headers
    and name the member files relative to the archive.
    """
    end = base + size
    thin = bytes(buf[base : base + 8]) == THIN_MAGIC
    pos = base + 8
    longnames = b""
    seen: dict[str, int] = {}
    while pos < end:
        if pos + 60 > end:
            if bytes(buf[pos:end]).strip(b"\n") == b"":
                break  # trailing padding
            yield Problem(
                display,
                "archive member header runs past the end of the archive",
                path,
                member,
                offset=pos - base,
            )
            return
        hdr = bytes(buf[pos : pos + 60])
        if hdr[58:60] != b"`\n":
            yield Problem(
                display,
                "bad archive member header (no `\\n terminator)",
                path,
                member,
                offset=pos - base,
            )
            return
        raw_name = hdr[:16].decode("latin-1").rstrip(" ")
        try:
            msize = int(hdr[48:58].decode("latin-1").strip() or "0")
        except ValueError:
            msize = -1
        if msize < 0:
            yield Problem(
                display,
                f"bad archive member size {hdr[48:58]!r}",
                path,
                member,
                offset=pos - base + 48,
            )
            return
        data = pos + 60
        special = raw_name in ("/", "//", "/SYM64/")
        stored = (not thin) or special
        if stored and data + msize > end:
            yield Problem(
                display,
                f"archive member {raw_name!r} ({msize} bytes) runs past the end of the archive",
                path,
                member,
                offset=pos - base,
            )
            return
        next_pos = data + (msize if stored else 0)
        next_pos += (next_pos - base) % 2  # members start on even offsets
        name, body, body_size = raw_name, data, msize
        if raw_name == "//":
            longnames = bytes(buf[data : data + msize])
            pos = next_pos
            continue
        if raw_name.startswith("#1/") and raw_name[3:].isdigit():
            n = int(raw_name[3:])
            if n > msize:
                yield Problem(
                    display,
                    f"BSD member name length {n} exceeds member size {msize}",
                    path,
                    member,
                    offset=pos - base,
                )
                return
            name = bytes(buf[data : data + n]).rstrip(b"\0").decode("utf-8", "replace")
            body, body_size = data + n, msize - n
        elif raw_name.startswith("/") and raw_name[1:].isdigit():
            off = int(raw_name[1:])
            stop = longnames.find(b"/\n", off)
            if off >= len(longnames) or stop < 0:
                nl = longnames.find(b"\n", off) if off < len(longnames) else -1
                stop = nl
            if stop < 0:
                yield Problem(
                    display,
                    f"long member name {raw_name!r} is not in the // table",
                    path,
                    member,
                    offset=pos - base,
                )
                pos = next_pos
                continue
            name = longnames[off:stop].decode("utf-8", "replace")
        elif raw_name.endswith("/") and not special:
            name = raw_name[:-1]
        pos = next_pos
        if special or name.startswith("__.SYMDEF"):
            continue
        seen[name] = seen.get(name, 0) + 1
        shown = name if seen[name] == 1 else f"{name}#{seen[name]}"  # ar allows duplicates
        where = f"{display}!{shown}"
        if thin:
            yield from _thin_member(path, name, where, origin)
            continue
        if bytes(buf[body : body + 4]) == ELF_MAGIC:
            yield Blob(where, path, _join(member, shown), buf, body, body_size, origin)
        else:
            yield Skipped(where, "archive member is not an ELF object")


def _join(member: str | None, name: str) -> str:
    return f"{member}!{name}" if member else name


def _thin_member(archive: str, name: str, where: str, origin: Origin) -> Iterator[Item]:
    if origin.zip is not None:
        yield Skipped(where, "thin archive member inside a zip")
        return
    target = os.path.join(os.path.dirname(archive), name)
    try:
        with open(target, "rb") as f:
            data = f.read()
    except OSError as e:
        yield Problem(where, f"thin archive member {target}: {e.strerror or e}", archive, name)
        return
    if data[:4] == ELF_MAGIC:
        yield Blob(where, archive, name, data, 0, len(data), Origin(os.path.dirname(target)))
    else:
        yield Skipped(where, "archive member is not an ELF object")
