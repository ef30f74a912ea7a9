"""NVIDIA fatbinaries: build one with nvFatbin, list what one holds.

    >>> blob = make_fatbin(("sm_75", ptx), [("sm_75", c75), ("sm_80", c80)])   # doctest: +SKIP
    >>> [(e.kind, e.arch) for e in list_fatbin(blob)]                           # doctest: +SKIP
    [('ptx', 'sm_75'), ('elf', 'sm_75'), ('elf', 'sm_80')]

Building goes through NVIDIA's own library (``cuda.bindings.nvfatbin`` over
``libnvfatbin.so.12`` from the ``nvidia-nvfatbin-cu12`` wheel), so the container is what the
driver and ``cuobjdump`` expect. nvFatbin's output is a pure function of its inputs: no
time, path or random bytes (checked across calls and processes). It does rewrite PTX:
comments and leading blanks go, so an embedded PTX image is not byte-equal to its input.

Reading (``list_fatbin``) is our own, read-only, for ``gpuaot inspect`` and tests. The
container layout (little-endian; NVIDIA does not document it beyond the wrapper struct in
``fatbinary_section.h``, so each field below was checked against nvFatbin's output and
``cuobjdump``):

    container header, 16 bytes:
      u32 magic 0xBA55ED50 · u16 version (1) · u16 header size (16) · u64 size of the entries
    entry header, ``header size`` bytes (72 for ELF, 88+ for PTX):
       0 u16 kind (1 PTX, 2 ELF)   2 u16 entry format (0x0101)   4 u32 header size
       8 u64 payload size (bytes after the header, padded to 8)
      16 u32 compressed size       20 u32 offset of the (offset, length) of ptxas options, 0 if none
      24 u16 minor · 26 u16 major  (PTX ISA version, or the cubin's format version)
      28 u32 SM number (75 → sm_75)
      32 u32 identifier offset · 36 u32 identifier length   (both within the header)
      40 u64 flags: 0x1 64-bit · 0x2 debug · 0x10 linux · 0x2000 LZ4 · 0x8000 zstd compressed
      48 u64 0 · 56 u64 uncompressed size (0 when stored uncompressed)
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from gpuaot.errors import BuildError

NVFATBIN_WHEEL = "nvidia-nvfatbin-cu12"

FATBIN_MAGIC = 0xBA55ED50
_CONTAINER = struct.Struct("<IHHQ")
_ENTRY = struct.Struct("<HHIQIIHHIIIQQQ")  # the fixed 64-byte part of an entry header

KIND_PTX = 1
KIND_ELF = 2
_KIND_NAMES = {KIND_PTX: "ptx", KIND_ELF: "elf"}

FLAG_64BIT = 0x1
FLAG_DEBUG = 0x2
FLAG_LINUX = 0x10
FLAG_COMPRESSED_LZ4 = 0x2000
FLAG_COMPRESSED_ZSTD = 0x8000

# Names the images in cuobjdump's listing ("gpuaot.sm_80.cubin"); fixed, so no build path
# can leak into the bundle.
DEFAULT_IDENTIFIER = "gpuaot"

_ARCH_RE = re.compile(r"(?:sm_|compute_)?(\d{2,3}[af]?)")
_PTX_TARGET_RE = re.compile(r"^\s*\.target\s+(sm_\w+)", re.MULTILINE)


class FatbinFormatError(ValueError):
    """A malformed or truncated fatbinary; ``offset`` is where reading failed."""

    def __init__(self, message: str, offset: int):
        super().__init__(f"{message} (at offset {offset:#x})")
        self.offset = offset


@dataclass(frozen=True)
class FatbinEntry:
    """One image in a fatbinary, as its entry header describes it."""

    kind: str  # "ptx", "elf", or "kind<N>" for kinds gpuaot does not produce
    arch: str  # "sm_75"
    code_version: tuple[int, int]  # PTX ISA (6, 3) for PTX; the cubin format for ELF
    offset: int  # of the entry header, from the start of the data given to list_fatbin
    header_size: int
    size: int  # payload bytes stored after the header (padded; compressed if compressed)
    compressed_size: int
    uncompressed_size: int
    flags: int
    identifier: str
    ptxas_options: str

    @property
    def payload_offset(self) -> int:
        return self.offset + self.header_size

    @property
    def compressed(self) -> bool:
        return bool(self.flags & (FLAG_COMPRESSED_LZ4 | FLAG_COMPRESSED_ZSTD))

    @property
    def is_64bit(self) -> bool:
        return bool(self.flags & FLAG_64BIT)

    @property
    def debug(self) -> bool:
        return bool(self.flags & FLAG_DEBUG)


# ---------------------------------------------------------------------------------------------
# Building


def _nvfatbin():
    """The nvFatbin binding, its shared library loaded; a ``BuildError`` naming the wheel."""
    try:
        from cuda.bindings import nvfatbin
    except ImportError as exc:
        raise BuildError(
            f"nvFatbin unavailable ({exc}): install the pip packages cuda-python and "
            f"{NVFATBIN_WHEEL}"
        ) from None
    try:
        # The binding opens libnvfatbin lazily, on the first call.
        nvfatbin.version()
    except Exception as exc:  # the loader's own error types vary across cuda-python versions
        raise BuildError(
            f"libnvfatbin not loadable ({exc}): install the pip package {NVFATBIN_WHEEL}"
        ) from None
    return nvfatbin


def _sm_number(arch: str) -> str:
    """``'sm_80'`` / ``'compute_80'`` / ``'80'`` → ``'80'``, as nvFatbin wants it."""
    match = _ARCH_RE.fullmatch(arch)
    if match is None:
        raise BuildError(f"unknown GPU architecture {arch!r}: expected sm_XX, e.g. sm_80")
    return match.group(1)


def make_fatbin(
    ptx: tuple[str, str] | None,
    cubins: list[tuple[str, bytes]],
    *,
    compress: bool = True,
    identifier: str = DEFAULT_IDENTIFIER,
) -> bytes:
    """A fatbinary holding ``ptx`` = (arch, text), if given, then each (arch, cubin).

    ``compress`` keeps nvFatbin's default (LZ4 where it pays, as nvcc does; every driver
    that knows the architectures reads it); ``compress=False`` stores images as given.
    """
    if ptx is None and not cubins:
        raise BuildError("nothing to put in the fatbinary: no PTX and no cubins")
    nvfatbin = _nvfatbin()
    options = ["-64", f"-compress={'true' if compress else 'false'}"]
    handle = nvfatbin.create(options, len(options))
    try:
        if ptx is not None:
            arch, text = ptx
            code = text.encode("utf-8") + b"\0"  # nvFatbin wants the NUL counted in the size
            number = _sm_number(arch)
            _check_ptx_target(text, arch, number)
            _call(nvfatbin.add_ptx, handle, code, len(code), number, identifier, "", what=arch)
        for arch, cubin in cubins:
            number = _sm_number(arch)
            _call(nvfatbin.add_cubin, handle, cubin, len(cubin), number, identifier, what=arch)
        size = nvfatbin.size(handle)
        buffer = bytearray(size)
        nvfatbin.get(handle, buffer)
        return bytes(buffer)
    finally:
        nvfatbin.destroy(handle)


def _check_ptx_target(text: str, arch: str, number: str) -> None:
    """nvFatbin stores PTX under whatever arch it is told; a wrong label breaks the JIT."""
    match = _PTX_TARGET_RE.search(text)
    if match is None:
        raise BuildError(f"PTX given for {arch} has no .target directive")
    if _sm_number(match.group(1)) != number:
        raise BuildError(f"PTX says .target {match.group(1)} but was given as {arch}")


def _call(fn, *args, what: str) -> None:
    """Call an nvFatbin ``add_*``; its error (e.g. PTX_ARCH_MISMATCH) becomes a BuildError."""
    from cuda.bindings.nvfatbin import nvFatbinError

    try:
        fn(*args)
    except nvFatbinError as exc:
        kind = "PTX" if fn.__name__ == "add_ptx" else "cubin"
        raise BuildError(f"nvFatbin refused the {kind} for {what}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Reading


def list_fatbin(data: bytes) -> list[FatbinEntry]:
    """Every image of every container in ``data`` (a fatbin file or a ``.nv_fatbin`` section).

    Containers may follow one another (a linked ``.nv_fatbin`` holds one per object); zero
    bytes between or after them are section padding. Raises ``FatbinFormatError`` (a
    ``ValueError``) with the offset of the first thing that does not fit.
    """
    view = memoryview(data)
    entries: list[FatbinEntry] = []
    offset = 0
    while True:
        offset = _skip_zeros(view, offset)
        if offset >= len(view):
            break
        offset = _read_container(view, offset, entries)
    if not entries and not any(view):
        raise FatbinFormatError("no fatbinary container", 0)
    return entries


def _skip_zeros(view: memoryview, offset: int) -> int:
    while offset < len(view) and view[offset] == 0:
        offset += 1
    return offset


def _read_container(view: memoryview, start: int, out: list[FatbinEntry]) -> int:
    if len(view) - start < _CONTAINER.size:
        raise FatbinFormatError("truncated fatbinary header", start)
    magic, _version, header_size, size = _CONTAINER.unpack_from(view, start)
    if magic != FATBIN_MAGIC:
        raise FatbinFormatError(f"bad fatbinary magic {magic:#010x}", start)
    if header_size < _CONTAINER.size:
        raise FatbinFormatError(f"fatbinary header size {header_size} < 16", start)
    body = start + header_size
    end = body + size
    if end > len(view):
        raise FatbinFormatError(
            f"fatbinary claims {size} bytes of entries, {len(view) - body} present", start
        )
    out.extend(_read_entries(view, body, end))
    return end


def _read_entries(view: memoryview, offset: int, end: int) -> Iterator[FatbinEntry]:
    while offset < end:
        if end - offset < _ENTRY.size:
            raise FatbinFormatError("truncated fatbinary entry header", offset)
        fields = _ENTRY.unpack_from(view, offset)
        kind, _format, header_size, size, compressed_size, options_at = fields[:6]
        minor, major, sm, name_off, name_len, flags, _zero, uncompressed_size = fields[6:]
        if header_size < _ENTRY.size or offset + header_size > end:
            raise FatbinFormatError(f"bad entry header size {header_size}", offset)
        if offset + header_size + size > end:
            raise FatbinFormatError(
                f"entry payload of {size} bytes runs past the container end", offset
            )
        header = view[offset : offset + header_size]
        yield FatbinEntry(
            kind=_KIND_NAMES.get(kind, f"kind{kind}"),
            arch=f"sm_{sm}",
            code_version=(major, minor),
            offset=offset,
            header_size=header_size,
            size=size,
            compressed_size=compressed_size,
            uncompressed_size=uncompressed_size,
            flags=flags,
            identifier=_header_string(header, name_off, name_len, offset),
            ptxas_options=_ptxas_options(header, options_at, offset),
        )
        offset += header_size + size


def _header_string(header: memoryview, at: int, length: int, entry: int) -> str:
    if length == 0:
        return ""
    if at + length > len(header):
        raise FatbinFormatError("entry string outside its header", entry + at)
    return bytes(header[at : at + length]).split(b"\0", 1)[0].decode("utf-8", "replace")


def _ptxas_options(header: memoryview, at: int, entry: int) -> str:
    if at == 0:
        return ""
    if at + 8 > len(header):
        raise FatbinFormatError("ptxas options descriptor outside its header", entry + at)
    opt_at, opt_len = struct.unpack_from("<II", header, at)
    return _header_string(header, opt_at, opt_len, entry)
