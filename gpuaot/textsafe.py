r"""Text that is safe to print, JSON that keeps exact names, and output that survives ``| head``.

Names and messages printed by gpuaot come from its inputs (symbol, section, member and file
names, manifests), so a hostile library could carry terminal escapes in them.  Everything
printed as text goes through :func:`printable`, which escapes what a terminal would act on or
reorder, as ``readelf`` and ``ls -b`` do::

    >>> printable("gpu_\x1b]0;pwned\x07\r\u202eexe")
    'gpu_\\x1b]0;pwned\\x07\\r\\u202eexe'
    >>> printable("lib\udcff\udcfe.so")            # undecodable bytes, as os.fsdecode keeps them
    'lib\\xff\\xfe.so'

JSON keeps exact values instead (:func:`json_safe`); :func:`pipe_safe_stdio` makes a closed
stdout or stderr (``gpuaot check-leaks -v . | head -1``) silence the stream, not change the exit
code.  This module imports neither click nor llvmlite, so the leak gate and the bundle reader
can both use it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

# C0, DEL, C1; Unicode line/paragraph separators; the bidi marks, embeddings, overrides and
# isolates (U+061C, U+200E/F, U+202A-E, U+2066-9: "Trojan Source"); lone surrogates (bytes that
# were not UTF-8, or "\udXXX" escapes in a JSON manifest).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(c: str) -> str:
    n = ord(c)
    if c in _NAMED:
        return _NAMED[c]
    if n < 0x80:
        return f"\\x{n:02x}"
    if 0xDC80 <= n <= 0xDCFF:  # surrogateescape: the byte that was not UTF-8
        return f"\\x{n - 0xDC00:02x}"
    return f"\\u{n:04x}"


def printable(text: str, keep: str = "") -> str:
    r"""``text`` with control, line-separator and bidi characters and undecodable bytes escaped.

    Rules: ``\n \r \t`` by name; other C0 controls and DEL as ``\xNN``; each byte that was not
    valid UTF-8 (a surrogateescape ``\udcNN``) as ``\xNN``, so ``\xNN`` always stands for one byte
    of the input; C1 controls (U+0080-U+009F), U+2028/U+2029, the bidi controls U+061C,
    U+200E/U+200F, U+202A-U+202E, U+2066-U+2069 and other lone surrogates as ``\uXXXX``.
    Everything else (printable Unicode, a backslash) is left as it is.  Characters in ``keep``
    (say ``"\n"`` for a multi-line message) are left alone.  The result encodes as UTF-8.

    >>> printable("a\tb\nc", keep="\n")
    'a\\tb\nc'
    """
    if text.isascii() and text.isprintable():  # the common case, fast
        return text
    return _UNSAFE.sub(lambda m: m[0] if m[0] in keep else _escape(m[0]), text)


def to_bytes(text: str) -> bytes:
    r"""The exact bytes a decoded name stood for (surrogateescape undone).

    >>> to_bytes("gpu_bad\udcff")
    b'gpu_bad\xff'
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte: keep it as CESU-8
        return b"".join(
            c.encode("utf-8", "surrogateescape" if "\udc80" <= c <= "\udcff" else "surrogatepass")
            for c in text
        )


def is_utf8(text: str) -> bool:
    """True when ``text`` encodes as UTF-8 (it holds no lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def utf8_text(text: str) -> str:
    """``text`` as valid Unicode: each byte that was not UTF-8 becomes U+FFFD."""
    return text if is_utf8(text) else to_bytes(text).decode("utf-8", "replace")


def json_safe(obj: Any, *, exact: bool = True) -> Any:
    r"""A copy of ``obj`` that ``json.dumps`` writes as valid UTF-8 JSON, with exact names kept.

    Names read from ELF files and file systems are not always UTF-8; Python holds each
    undecodable byte as a lone surrogate (surrogateescape), which ``json.dumps`` would write as
    ``"\udcff"`` -- text no strict JSON reader accepts.  So a string that is not valid UTF-8 is
    written as its text with U+FFFD for each undecodable byte, and, with ``exact``, beside it
    ``"<key>_bytes"`` holds the exact bytes in base64; for a list of strings ``"<key>_bytes"`` is
    a list of the same length with null where the text is exact.  Valid strings (almost all)
    get no ``_bytes`` field: their UTF-8 encoding is their bytes.  To recover a name::

        raw = base64.b64decode(d["symbol_bytes"]) if "symbol_bytes" in d else d["symbol"].encode()

    >>> import json
    >>> json.dumps(json_safe({"symbol": "gpu_\udcff", "referenced_by": ["ok", "f\udcfe"]}))
    '{"symbol": "gpu_\\ufffd", "symbol_bytes": "Z3B1X/8=", "referenced_by": ["ok", "f\\ufffd"], "referenced_by_bytes": [null, "Zv4="]}'

    ``exact=False`` only replaces (for documents whose schema allows no extra keys: SARIF).
    """
    if isinstance(obj, str):
        return utf8_text(obj)
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, exact=exact) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out: dict[Any, Any] = {}
    for key, value in obj.items():
        name = utf8_text(key) if isinstance(key, str) else key
        out[name] = json_safe(value, exact=exact)
        if not exact or not isinstance(name, str):
            continue
        if isinstance(value, str) and not is_utf8(value):
            out[f"{name}_bytes"] = _b64(value)
        elif isinstance(value, (list, tuple)) and any(
            isinstance(v, str) and not is_utf8(v) for v in value
        ):
            out[f"{name}_bytes"] = [
                _b64(v) if isinstance(v, str) and not is_utf8(v) else None for v in value
            ]
    return out


def _b64(text: str) -> str:
    return base64.b64encode(to_bytes(text)).decode("ascii")


# -- closed pipes -----------------------------------------------------------------------------------


def discard(stream: Any) -> None:
    """Point ``stream``'s file descriptor at /dev/null: what is still buffered, and every later
    write (the interpreter's flush at exit too), goes nowhere instead of raising
    BrokenPipeError -- which at exit would print "Exception ignored" and turn the exit status
    into 120."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # CliRunner's streams: nothing to redirect
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    except OSError:
        pass
    finally:
        os.close(devnull)


class _PipeSafe:
    """A text stream whose writes and flushes survive a closed pipe (the reader went away)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: Any) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            discard(self._stream)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            discard(self._stream)
            with contextlib.suppress(OSError, ValueError):
                self._stream.flush()  # the buffered rest, now into /dev/null

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def pipe_safe_stdio() -> Iterator[None]:
    """While active, a closed stdout or stderr swallows output instead of raising.

    Python ignores SIGPIPE (and gpuaot never restores its default, which would kill the process
    with status 141), so a write to a closed pipe raises BrokenPipeError wherever it happens:
    in a report, a progress line, or the flush at exit.  Caught at the write, the command goes
    on and exits with its own code (0/1/3 for check-leaks, the build's verdict), whether the
    reader closed the pipe before, during or after the output.
    """
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _PipeSafe(sys.stdout), _PipeSafe(sys.stderr)
    try:
        yield
    finally:
        for proxy in (sys.stdout, sys.stderr):
            if isinstance(proxy, _PipeSafe):
                proxy.flush()
        sys.stdout, sys.stderr = saved


def internal_error_line(command: str, e: BaseException) -> str:
    """The one line an internal error (a bug in gpuaot, not the user's mistake) prints."""
    where = f"gpuaot {command}" if command else "gpuaot"
    return printable(
        f"error: internal error in {where}: {type(e).__name__}: {e} "
        "(a bug in gpuaot: rerun with --traceback and report it)"
    )
