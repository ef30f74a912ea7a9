"""Reading a module's source as CPython does: its bytes decoded per PEP 263 (cookie or BOM,
universal newlines), parsed by ``ast``, every refusal a located error.

    text = decode_source(path.read_bytes(), "pkg/mod.py")   # CompileError on undecodable bytes
    tree = parse_source(text, "pkg/mod.py")                  # syntax errors and nesting too deep

The text is what the manifest's module hash is of (``bundle.manifest.source_sha256``).
"""

from __future__ import annotations

import ast
import importlib.util
import io
import linecache
import tokenize
from pathlib import Path

from ..errors import CompileError, Location
from .frontend.nesting import python_parser_depth

ENCODING_HINT = (
    "save the file as UTF-8, or declare its encoding on its first or second line (PEP 263), "
    "e.g. '# -*- coding: latin-1 -*-'"
)
TOO_DEEP_HINT = (
    "split it up: intermediate variables for a long expression, a @device helper for a long "
    "if/elif chain"
)


def source_lines(text: str) -> list[str]:
    """Lines as ast numbers them, ends kept: split at "\\n" only (``str.splitlines`` also
    splits at form feeds and U+2028, which Python's tokenizer does not)."""
    *full, last = text.split("\n")
    return [line + "\n" for line in full] + ([last] if last else [])


def decode_source(data: bytes, display: str) -> str:
    """The text of a source file as CPython reads it (``importlib.util.decode_source``: the
    PEP 263 cookie or a UTF-8 BOM decides the encoding, UTF-8 without either; newlines become
    "\\n"), the text the manifest's hash is of. Raises a located :class:`CompileError`
    where CPython would refuse the file."""
    encoding = "utf-8"
    try:
        encoding = tokenize.detect_encoding(io.BytesIO(data).readline)[0]
        return importlib.util.decode_source(data)
    except UnicodeDecodeError as e:
        # Offsets count from the codec's input (after a BOM the codec skipped).
        offset = e.start + (len(data) - len(e.object) if data.endswith(e.object) else 0)
        bad = f"byte 0x{data[offset]:02x}" if offset < len(data) else "the end of the file"
        message = f"this file is not valid {encoding} ({e.reason}: {bad})"
        loc = _location_at(display, data, offset)
    except SyntaxError as e:  # from detect_encoding: a bad cookie, or a bad first line
        message, loc = f"cannot read this file: {e.msg}", _cookie_location(display, data)
    except (UnicodeError, LookupError) as e:  # "coding: utf-16" without a BOM; "coding: hex"
        message = f"cannot read this file as {encoding}: {e}"
        loc = _cookie_location(display, data)
    raise CompileError(message, loc, hint=ENCODING_HINT)


def _location_at(display: str, text: str | bytes, offset: int) -> Location:
    """Line and column of ``offset`` in a text (columns in characters) or bytes (in bytes)."""
    nl = b"\n" if isinstance(text, bytes) else "\n"
    return Location(display, text.count(nl, 0, offset) + 1, offset - text.rfind(nl, 0, offset) - 1)


def _cookie_location(display: str, data: bytes) -> Location:
    """The line of the first two that has the coding cookie, or else is not UTF-8."""
    head = data.split(b"\n", 2)[:2]
    cookie = [
        n for n, text in enumerate(head, 1) if tokenize.cookie_re.match(text.decode("latin-1"))
    ]
    not_utf8 = [n for n, text in enumerate(head, 1) if not _is_utf8(text)]
    return Location(display, (cookie + not_utf8 + [1])[0], 0)


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def show_lines(display: str, path: Path, lines: list[str]) -> None:
    """Diagnostics quote source lines through ``linecache``, which rereads the file with
    ``tokenize.open``: give it the lines this build read instead. (For a file that cannot
    be decoded, ``tokenize.open`` raises errors linecache does not catch, e.g. LookupError
    for ``coding: hex``.) Size and mtime are the file's, so ``linecache.checkcache`` still
    drops the entry when the file changes."""
    try:
        st = path.stat()
    except OSError:
        return
    linecache.cache[display] = (st.st_size, st.st_mtime, lines, str(path))


def parse_source(source: str, display: str) -> ast.Module:
    """``ast.parse``, with every way it refuses a file as a located :class:`CompileError`."""
    if "\0" in source:  # refused without a line number (a ValueError before Python 3.12)
        where = _location_at(display, source, source.index("\0"))
        raise CompileError("syntax error: source code cannot contain null bytes", where)
    try:
        with python_parser_depth():
            return ast.parse(source, filename=display)
    except SyntaxError as e:
        raise CompileError(
            f"syntax error: {e.msg}",
            Location(display, e.lineno or 1, max(0, (e.offset or 1) - 1)),
        ) from None
    except (RecursionError, MemoryError):  # the parser's own depth limits
        raise CompileError(
            "nested too deeply for Python's parser",
            Location(display, _longest_line(source), 0),
            hint=TOO_DEEP_HINT,
        ) from None


def _longest_line(source: str) -> int:
    """The line whose logical line has the most tokens: where deep nesting most likely is."""
    counts: dict[int, int] = {}
    start = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if start is None:
                start = tok.start[0]
            counts[start] = counts.get(start, 0) + 1
            if tok.type in (tokenize.NEWLINE, tokenize.NL):
                start = None
    except (tokenize.TokenError, SyntaxError):
        pass
    return max(counts, key=counts.get, default=1)
