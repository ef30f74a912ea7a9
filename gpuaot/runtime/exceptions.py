"""The device-exception record, read after a launch, as the Python exception it stands for.

    record = [1, site, tx, ty, tz, bx, by, bz]    # abi.EXC_RECORD_FIELDS; word 0: raised?
    raise_device_exception("kernel", "pkg.k.saxpy", sites, record)
    # IndexError: index out of range (in kernel 'pkg.k.saxpy' at k.py:12, thread (3, 0, 0), ...)

The CPU and GPU launchers and host-function calls fill the same record (first writer wins);
``sites`` is the manifest's id -> exception type, message, file and line table
(``manifest.Site``).
"""

from __future__ import annotations

import builtins

from ..bundle.abi import EXC_RECORD_FIELDS, EXC_RECORD_WORDS

EXC_WORDS = EXC_RECORD_WORDS  # the name runtime.cpu imports
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
    cls = getattr(builtins, s.type, RuntimeError)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        cls = RuntimeError
    where = f"in {kind} '{name}' at {s.file}:{s.line}"
    if kind == "kernel":
        where += f", thread {tid}, block {bid}"
    msg = f"{s.message} ({where})" if s.message else f"({where})"
    raise cls(msg)
