"""Which symbol names are leaks: forbid/allow globs, and the ``[tool.gpuaot.check-leaks]`` table.

Globs are :mod:`fnmatch` globs, case-sensitive, matched against the whole stored name (not
demangled), so they are anchored at the start: nvcc's ``_Z...__nv_...`` host stubs pass::

    >>> r = Rules.default()
    >>> r.match("gpu_report_exception"), r.match("_Z19__nv_cudaEntry_fooPv"), r.match("printf")
    ('gpu_*', None, None)
    >>> Rules.default(allow=["gpu_ok_*"]).match("gpu_ok_1")       # allow wins over forbid
    >>> glob_literal("*cuda*Launch"), glob_literal("gpu_*")       # what the fast filter searches
    (('Launch', False), ('gpu_', True))

The fast filter in :mod:`gpuaot.leaks.symbols` searches string tables for each glob's literal; a
glob's full regex then decides, so the filter can only narrow, never change, the answer.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError

DEFAULT_FORBID: tuple[str, ...] = (
    "gpu_*",  # gpuaot / GPUCompiler device runtime (gpu_report_exception, gpu_malloc, ...)
    "__nv_*",  # libdevice
    "llvm.nvvm.*",  # NVVM intrinsics
    "__nvvm_*",  # NVVM intrinsics as clang spells them
    "__assertfail",  # CUDA's device-side assert
    "julia.gpu.*",  # GPUCompiler.jl intrinsics
)

CONFIG_TABLE = "tool.gpuaot.check-leaks"
CONFIG_KEYS = {"forbid": list, "allow": list, "undefined": bool}


def glob_tokens(glob: str) -> list[tuple[str, str]]:
    """Split a glob into ('lit', text) and ('wild', text) tokens, as fnmatch reads it."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c in "*?":
            out.append(("wild", c))
            i += 1
        elif c == "[":
            j = i + 1
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: fnmatch treats '[' as itself
                out.append(("lit", c))
                i += 1
            else:
                out.append(("wild", glob[i : j + 1]))
                i = j + 1
        else:
            out.append(("lit", c))
            i += 1
    merged: list[tuple[str, str]] = []
    for kind, text in out:
        if merged and kind == "lit" and merged[-1][0] == "lit":
            merged[-1] = ("lit", merged[-1][1] + text)
        else:
            merged.append((kind, text))
    return merged


def glob_literal(glob: str) -> tuple[str, bool]:
    """The literal every match must contain, and whether matches must start with it.

    The leading literal when there is one (an exact point in the string table), else the longest
    literal run (a range of possible name starts); ``("", False)`` when there is none.
    """
    tokens = glob_tokens(glob)
    if tokens and tokens[0][0] == "lit":
        return tokens[0][1], True
    lits = [t for k, t in tokens if k == "lit"]
    return (max(lits, key=len), False) if lits else ("", False)


@dataclass(frozen=True)
class Rules:
    forbid: tuple[str, ...] = DEFAULT_FORBID
    allow: tuple[str, ...] = ()
    undefined: bool = False
    _forbid_rx: tuple[tuple[str, re.Pattern[str]], ...] = field(init=False, repr=False)
    _allow_rx: re.Pattern[str] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        compiled = tuple((g, re.compile(fnmatch.translate(g), re.DOTALL)) for g in self.forbid)
        allow = "|".join(f"(?:{fnmatch.translate(g)})" for g in self.allow)
        object.__setattr__(self, "_forbid_rx", compiled)
        object.__setattr__(self, "_allow_rx", re.compile(allow, re.DOTALL) if allow else None)

    @classmethod
    def default(
        cls, forbid: Iterable[str] = (), allow: Iterable[str] = (), undefined: bool = False
    ) -> Rules:
        """The default forbidden set plus ``forbid``; ``allow`` exempts names."""
        extra = tuple(g for g in forbid if g not in DEFAULT_FORBID)
        return cls(DEFAULT_FORBID + extra, tuple(allow), undefined)

    def allowed(self, name: str) -> bool:
        return self._allow_rx is not None and self._allow_rx.match(name) is not None

    def match(self, name: str) -> str | None:
        """The forbid glob ``name`` matches, or None (also when an allow glob exempts it)."""
        for glob, rx in self._forbid_rx:
            if rx.match(name):
                return None if self.allowed(name) else glob
        return None

    def literals(self) -> list[tuple[bytes, bool]]:
        """Distinct (literal, anchored) pairs for the string-table search."""
        seen: dict[tuple[bytes, bool], None] = {}
        for glob in self.forbid:
            lit, anchored = glob_literal(glob)
            seen[(lit.encode("utf-8", "surrogateescape"), anchored)] = None
        return list(seen)


# -- pyproject.toml ------------------------------------------------------------------------------


class ConfigError(UsageError):
    """A bad ``[tool.gpuaot.check-leaks]`` table: a usage error (exit 2)."""


def find_pyproject(start: str | os.PathLike[str] | None = None) -> str | None:
    """The nearest ``pyproject.toml`` in ``start`` (default: the current directory) or above."""
    here = os.path.realpath(start or os.getcwd())
    while True:
        candidate = os.path.join(here, "pyproject.toml")
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def load_config(path: str) -> dict[str, Any]:
    """The ``[tool.gpuaot.check-leaks]`` table of ``path`` (empty if absent), type-checked."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: cannot read configuration: {e}") from None
    table: Any = doc
    for key in ("tool", "gpuaot", "check-leaks"):
        table = table.get(key, {}) if isinstance(table, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{CONFIG_TABLE}] must be a table")
    for key, value in table.items():
        want = CONFIG_KEYS.get(key)
        if want is None:
            known = ", ".join(sorted(CONFIG_KEYS))
            raise ConfigError(f"{path}: [{CONFIG_TABLE}] has unknown key {key!r} (known: {known})")
        if not isinstance(value, want) or (
            want is list and not all(isinstance(v, str) for v in value)
        ):
            kind = "a list of strings" if want is list else "true or false"
            raise ConfigError(f"{path}: [{CONFIG_TABLE}] {key} must be {kind}")
    return table
