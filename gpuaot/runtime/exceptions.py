"""The device-exception record, read after a launch, as the Python exception it stands for.

    record = [1, site, tx, ty, tz, bx, by, bz]    # abi.EXC_RECORD_FIELDS; word 0: raised?
    raise_device_exception("kernel", "pkg.k.saxpy", sites, record)
    # IndexError: index out of range (in kernel 'pkg.k.saxpy' at k.py:12, thread (3, 0, 0), ...)

The CPU and GPU launchers and host-function calls fill the same record (first writer wins);
``sites`` is the manifest's id -> exception type, message, file and line table
(``manifest.Site``).

A site of one of the package's own exception classes (``base`` set: ``pkg.errors.BadInput``,
base ``ValueError``) raises that class: its module is imported when the exception is raised,
never when the bundle loads (the launcher runs in the package's process, so it is normally
imported already). If that fails, or the name is no longer an exception class that takes a
message (a bundle older than the source), the site's built-in base is raised instead, with a
note saying why.
"""

from __future__ import annotations

import builtins
import importlib

from ..bundle.abi import EXC_RECORD_FIELDS

_SITE = EXC_RECORD_FIELDS.index("site")
_TID = EXC_RECORD_FIELDS.index("tid.x")
_BID = EXC_RECORD_FIELDS.index("bid.x")


def raise_device_exception(kind: str, name: str, sites, record) -> None:
    """``sites``: the entry's ``manifest.Site`` records; ``record``: the words it filled."""
    site = int(record[_SITE])
    tid = tuple(int(x) for x in record[_TID : _TID + 3])
    bid = tuple(int(x) for x in record[_BID : _BID + 3])
    if not 0 <= site < len(sites):
        raise RuntimeError(f"{kind} '{name}' reported an unknown exception site {site}")
    s = sites[site]
    where = f"in {kind} '{name}' at {s.file}:{s.line}"
    if kind == "kernel":
        where += f", thread {tid}, block {bid}"
    base = getattr(s, "base", None)
    cls = _builtin(base or s.type)
    if base is None:
        raise cls(_message(s.message, where))
    user, why = _package_class(s.type)
    if user is not None:
        try:
            exc = user(_message(s.message, where))
        except Exception as e:  # its constructor changed since the build
            why = f"{s.type}({s.message!r}) fails: {type(e).__name__}: {e}"
        else:
            raise exc
    raise cls(_message(s.message, f"{where}; note: raised as {base}: {why}"))


def _message(message: str, where: str) -> str:
    return f"{message} ({where})" if message else f"({where})"


def _builtin(name: str) -> type:
    cls = getattr(builtins, name, RuntimeError)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        cls = RuntimeError
    return cls


def _package_class(qualname: str):
    """The package's exception class ``qualname`` (``pkg.errors.BadInput``), imported now:
    ``(cls, None)``, or ``(None, why not)``."""
    module, _, attr = qualname.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except Exception as e:  # whatever importing the user's module raises
        return None, f"{qualname} cannot be imported ({type(e).__name__}: {e})"
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        return None, f"{qualname} is no longer an exception class"
    return cls, None
