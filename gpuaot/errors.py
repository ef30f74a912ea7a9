"""User-facing errors and the one place that formats them.

A user error carries its exit code and, for source problems, a location::

    >>> loc = Location("pkg/k.py", 3, 4)
    >>> err = CompileError("unknown name 'y'", loc, hint="define 'y' before use")
    >>> print(err.format(source_line="    x = y + 1"))   # doctest: +SKIP
    pkg/k.py:3:5: error: unknown name 'y'
        x = y + 1
            ^
    hint: define 'y' before use

Columns are stored 0-based (as ``ast`` gives them) and printed 1-based, as compilers do.
"""

from __future__ import annotations

import linecache
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Location:
    file: str
    line: int
    col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col + 1}"


class GpuaotError(Exception):
    """Base of every error a user can cause; never printed with a traceback."""

    exit_code = 2

    def format(self) -> str:
        return f"error: {self}"


class UsageError(GpuaotError):
    exit_code = 2


class BuildError(GpuaotError):
    exit_code = 2


class InternalError(Exception):
    """A bug in gpuaot, not in the user's program: always shown with a traceback."""


@dataclass
class CompileError(GpuaotError):
    message: str
    loc: Location | None = None
    hint: str | None = None
    notes: list[str] = field(default_factory=list)
    severity: str = "error"

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        return self.message

    def format(self, source_line: str | None = None) -> str:
        head = f"{self.severity}: {self.message}"
        if self.loc is None:
            lines = [head]
        else:
            lines = [f"{self.loc}: {head}"]
            if source_line is None:
                source_line = linecache.getline(self.loc.file, self.loc.line).rstrip("\n")
            if source_line:
                lines.append(f"    {source_line}")
                lines.append("    " + " " * self.loc.col + "^")
        lines.extend(f"note: {n}" for n in self.notes)
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


def diagnostics_json(err: GpuaotError) -> list[dict]:
    """The diagnostics of a user error as ``--json`` prints them (one per located error)."""
    errors = getattr(err, "errors", None) or [err]
    out = []
    for e in errors:
        loc = getattr(e, "loc", None)
        out.append(
            {
                "file": loc.file if loc else None,
                "line": loc.line if loc else None,
                "col": loc.col + 1 if loc else None,
                "severity": getattr(e, "severity", "error"),
                "message": getattr(e, "message", str(e)),
                "hint": getattr(e, "hint", None),
                "notes": list(getattr(e, "notes", []) or []),
            }
        )
    return out


class CompileErrors(GpuaotError):
    """Every error of a build, reported together."""

    exit_code = 2

    def __init__(self, errors: list[CompileError]):
        self.errors = sorted(errors, key=_error_order)
        n = len(self.errors)
        super().__init__(f"{n} error{'s' if n != 1 else ''}")

    def format(self) -> str:
        body = "\n\n".join(e.format() for e in self.errors)
        return f"{body}\n\n{self}"


def _error_order(e: CompileError):
    if e.loc is None:
        return ("", 0, 0, e.message)
    return (e.loc.file, e.loc.line, e.loc.col, e.message)


class Diagnostics:
    """Collects errors so a build reports all of them, not the first."""

    def __init__(self) -> None:
        self.errors: list[CompileError] = []

    def error(self, err: CompileError) -> None:
        if err not in self.errors:
            self.errors.append(err)

    def raise_if_any(self) -> None:
        if self.errors:
            raise CompileErrors(self.errors)
