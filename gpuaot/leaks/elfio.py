"""The ground the ELF reader stands on: its exception tree, the bounded stream pyelftools reads, and
the conversion of what pyelftools raises or names.

:mod:`gpuaot.leaks.elf` hands pyelftools a :class:`Window` (``buf[base:base+size]`` as a file,
so nothing past the image is ever read), runs it inside :func:`reading` (whatever it raises on a
damaged image becomes one :class:`ElfError` line naming the offset and section), and turns the
names it decodes back into the numbers the ELF specification writes (:func:`code`)::

    >>> with reading("the dynamic table", ".dynamic", 0x2E10):  # doctest: +ELLIPSIS
    ...     Window(b"\\x7fELF", 0, 4).read(8)[7]
    Traceback (most recent call last):
    gpuaot.leaks.elfio.MalformedError: cannot read the dynamic table (IndexError: ...)...
    >>> code("ENUM_E_MACHINE", "EM_X86_64"), code("ENUM_E_MACHINE", 62)
    (62, 62)

pyelftools is imported on the first call that needs it (:func:`pyelftools`), never by importing
this module.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from ..errors import GpuaotError


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
    """No ELF magic, or an identification byte pyelftools does not know."""


class TruncatedError(ElfError):
    """A header, table or section runs past the end of the image."""


class MalformedError(ElfError):
    """Fields that contradict each other (wrong entry size, bad link, looping chains)."""


@functools.cache
def pyelftools() -> SimpleNamespace:
    """The few pyelftools names the gate uses, imported on the first image (about 20 ms)."""
    from elftools.common.exceptions import DWARFError, ELFError
    from elftools.common.utils import struct_parse
    from elftools.construct import ConstructError
    from elftools.elf.dynamic import Dynamic, DynamicSegment
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection
    from elftools.elf.relocation import RelocationSection

    # What pyelftools raises on a damaged image: its own errors, construct's, and the plain
    # Python ones its parsing code meets (a short read unpacked, a bad UTF-8 name, an index
    # past a list, a count that overflows a seek, an ``assert``).
    errors = (ELFError, DWARFError, ConstructError, struct.error, ValueError, LookupError)
    errors += (ArithmeticError, RecursionError, AssertionError, EOFError)
    return SimpleNamespace(
        ELFFile=ELFFile,
        Dynamic=Dynamic,
        DynamicSegment=DynamicSegment,
        GNUVerDefSection=GNUVerDefSection,
        GNUVerNeedSection=GNUVerNeedSection,
        RelocationSection=RelocationSection,
        struct_parse=struct_parse,
        errors=errors,
    )


@contextmanager
def reading(
    what: str,
    section: str | None = None,
    offset: int | None = None,
    error: type[ElfError] = MalformedError,
) -> Iterator[None]:
    """Run pyelftools on a possibly damaged image: whatever it raises becomes one ElfError line.

    >>> with reading("version definitions", ".gnu.version_d", 0x3A0):  # doctest: +ELLIPSIS
    ...     raise struct.error("unpack requires a buffer of 4 bytes")
    Traceback (most recent call last):
    gpuaot.leaks.elfio.MalformedError: cannot read version definitions (struct.error: unpack ...)...
    """
    try:
        yield
    except ElfError:
        raise
    except pyelftools().errors as e:
        mod, kind = type(e).__module__, type(e).__name__
        if mod != "builtins" and not mod.startswith("elftools"):
            kind = f"{mod}.{kind}"  # struct.error
        detail = " ".join(str(e).split())[:160]  # one line, whatever the library put in it
        reason = (
            f"cannot read {what} ({kind}: {detail})" if detail else f"cannot read {what} ({kind})"
        )
        raise error(reason, offset=offset, section=section) from e


@functools.cache
def _codes(family: str) -> dict[str, int]:
    """Name -> number for one pyelftools enum family (``ENUM_SH_TYPE`` and its machine variants).

    >>> _codes("ENUM_SH_TYPE")["SHT_DYNSYM"], _codes("ENUM_E_MACHINE")["EM_CUDA"]
    (11, 190)
    """
    from elftools.elf import enums

    out: dict[str, int] = {}
    for attr in dir(enums):
        if attr == family or attr.startswith(family + "_"):
            table = getattr(enums, attr)
            if isinstance(table, dict):
                out.update((k, v) for k, v in table.items() if isinstance(v, int))
    return out


def code(family: str, value: int | str) -> int:
    """The number behind a value pyelftools decoded: it names the ones it knows, passes others.

    >>> hex(code("ENUM_SH_TYPE", "SHT_GNU_versym")), hex(code("ENUM_SH_TYPE", 0x60001234))
    ('0x6fffffff', '0x60001234')
    """
    return value if isinstance(value, int) else _codes(family)[value]


class Window:
    """``buf[base:base+size]`` as a read-only binary file: all of the image pyelftools can read.

    An archive member or a whole ``mmap`` is read in place (nothing is copied but what is read),
    and nothing past ``size`` ever comes back, so a count or an offset that a damaged file makes
    up ends in a short read, which pyelftools reports, instead of a walk through other data::

        >>> w = Window(b"ar..\\x7fELF..", 4, 4)
        >>> w.read(), w.seek(0, 2), w.read(1), w.seek(2), w.read(8)
        (b'\\x7fELF', 4, b'', 2, b'LF')
    """

    def __init__(self, buf: Any, base: int = 0, size: int | None = None) -> None:
        self.buf, self.base = buf, base
        self.size = (len(buf) - base) if size is None else size
        self.pos = 0

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self.pos
        elif whence == 2:
            pos += self.size
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self.pos = pos
        return pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int | None = -1) -> bytes:
        start = min(self.pos, self.size)
        end = self.size if n is None or n < 0 else min(self.size, start + n)
        self.pos = max(self.pos, end)
        return bytes(self.buf[self.base + start : self.base + end])

    def close(self) -> None:
        pass
