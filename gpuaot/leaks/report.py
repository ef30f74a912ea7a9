"""Render a :class:`ScanResult` as text, JSON, SARIF 2.1.0 or GitHub workflow annotations.

::

    >>> print(format_text(result))                                   # doctest: +SKIP
    build/libk.so
      gpu_report_exception  undefined GLOBAL NOTYPE .dynsym  [gpu_*]
          referenced by launch (k.c:7)
    <BLANKLINE>
    1 leak in 1 of 3 ELF images.

``format_json`` carries ``"version": JSON_VERSION``; bump it when a field changes meaning or goes
away (adding fields does not bump it).  ``format_sarif`` gives each result its own
``partialFingerprints`` (rule, file, member, symbol, table: stable across rebuilds, independent
of addresses), so code scanning tracks a leak from run to run.
"""

from __future__ import annotations

import os
from typing import Any

from .scan import (
    RULE_DEVICE,
    RULE_FORBIDDEN,
    RULE_MISSING_LIB,
    RULE_UNRESOLVED,
    Finding,
    InputError,
    ScanResult,
)

JSON_VERSION = 1
SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
TOOL_NAME = "gpuaot check-leaks"

RULES = {
    RULE_FORBIDDEN: (
        "ForbiddenSymbol",
        "A device-only symbol is present in host code.",
        "A symbol whose name matches a forbidden glob (gpu_*, __nv_*, llvm.nvvm.*, __nvvm_*, "
        "__assertfail, julia.gpu.*, or --forbid) is defined or referenced in a host ELF file. "
        "Device runtime functions leaking into host code make the object fail to load or link.",
    ),
    RULE_DEVICE: (
        "DeviceMachine",
        "A device (EM_CUDA) ELF image is present where host code is expected.",
        "The file's ELF machine is EM_CUDA (190): it is a cubin, device code, not host code.",
    ),
    RULE_UNRESOLVED: (
        "UnresolvedSymbol",
        "An undefined symbol that no NEEDED library defines.",
        "With --undefined: an undefined, non-weak dynamic symbol that no library in the "
        "DT_NEEDED closure defines, so loading the object fails.",
    ),
    RULE_MISSING_LIB: (
        "MissingLibrary",
        "A DT_NEEDED library cannot be found.",
        "With --undefined: a DT_NEEDED library is found neither through RPATH/RUNPATH, "
        "LD_LIBRARY_PATH, the ld.so cache, the default directories, nor the wheel's .libs.",
    ),
}


def _tool_version() -> str:
    try:
        from importlib.metadata import version

        return version("gpuaot")
    except Exception:  # not installed (a source checkout)
        return "0.1.0"


def _group(result: ScanResult) -> dict[str, tuple[list[Finding], list[InputError]]]:
    groups: dict[str, tuple[list[Finding], list[InputError]]] = {}
    for f in result.findings:
        groups.setdefault(f.file, ([], []))[0].append(f)
    for e in result.errors:
        groups.setdefault(e.file, ([], []))[1].append(e)
    order = {name: i for i, name in enumerate(result.scanned)}
    return dict(sorted(groups.items(), key=lambda kv: order.get(kv[0], len(order))))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def error_line(e: InputError) -> str:
    where = []
    if e.section:
        where.append(f"section {e.section}")
    if e.offset is not None:
        where.append(f"offset {e.offset:#x}")
    return e.reason + (f" ({', '.join(where)})" if where else "")


def summary(result: ScanResult) -> str:
    images = len(result.scanned)
    leaky = len({f.file for f in result.findings})
    parts = []
    if result.findings:
        parts.append(
            f"{_plural(len(result.findings), 'leak')} in {leaky} of {_plural(images, 'ELF image')}"
        )
    else:
        parts.append(f"No leaks in {_plural(images, 'ELF image')}")
    if result.errors:
        parts.append(f"{_plural(len(result.errors), 'input')} could not be read")
    return "; ".join(parts) + "."


def format_text(
    result: ScanResult, *, color: bool = False, verbose: int = 0, quiet: bool = False
) -> str:
    """Findings grouped per file, then a one-line summary (left out under ``quiet`` if clean)."""

    def style(text: str, **kw: Any) -> str:
        if not color:
            return text
        import click

        return click.style(text, **kw)

    lines: list[str] = []
    groups = _group(result)
    if verbose:
        for name in result.scanned:
            if name not in groups:
                lines.append(f"{name}: ok")
        for s in result.skipped:
            lines.append(f"{s.display}: skipped: {s.reason}")
    for name, (findings, errors) in groups.items():
        lines.append(style(name, bold=True))
        width = max((len(f.symbol + (f.version or "")) for f in findings), default=0)
        for f in findings:
            lines.append("  " + _text_finding(f, width, style))
            if f.referenced_by or f.locations:
                refs = ", ".join(f.referenced_by) or "?"
                locs = f" ({', '.join(f.locations)})" if f.locations else ""
                lines.append(f"      referenced by {refs}{locs}")
        for e in errors:
            lines.append("  " + style("error:", fg="red", bold=True) + " " + error_line(e))
    if lines:
        lines.append("")
    if not (quiet and not result.findings and not result.errors):
        lines.append(summary(result))
    return "\n".join(lines)


def _text_finding(f: Finding, width: int, style: Any) -> str:
    if f.rule == RULE_DEVICE:
        return style("ELF machine is EM_CUDA (190)", fg="red", bold=True) + (
            ": device code where host code is expected"
        )
    if f.rule == RULE_MISSING_LIB:
        return style(f"NEEDED {f.symbol}", fg="red", bold=True) + ": library not found"
    name = (f.symbol + (f.version or "")).ljust(width)
    state = "defined  " if f.defined else "undefined"
    tail = f"[{f.pattern}]" if f.rule == RULE_FORBIDDEN else "no NEEDED library defines it"
    return (
        f"{style(name, fg='red', bold=True)}  {state} {f.binding:<6} {f.type:<6} "
        f"{f.section:<8} {tail}"
    )


# -- JSON -------------------------------------------------------------------------------------------


def finding_dict(f: Finding) -> dict[str, Any]:
    return {
        "file": f.file,
        "path": f.path,
        "member": f.member,
        "rule": f.rule,
        "symbol": f.symbol,
        "version": f.version,
        "defined": f.defined,
        "binding": f.binding,
        "type": f.type,
        "section": f.section,
        "pattern": f.pattern,
        "value": f.value,
        "index": f.index,
        "referenced_by": list(f.referenced_by),
        "locations": list(f.locations),
        "message": f.message,
    }


def format_json(result: ScanResult) -> str:
    import json

    doc = {
        "version": JSON_VERSION,
        "tool": {"name": TOOL_NAME, "version": _tool_version()},
        "rules": {
            "forbid": list(result.rules.forbid),
            "allow": list(result.rules.allow),
            "undefined": result.rules.undefined,
        },
        "summary": {
            "scanned": len(result.scanned),
            "findings": len(result.findings),
            "errors": len(result.errors),
            "exit_code": result.exit_code,
        },
        "findings": [finding_dict(f) for f in result.findings],
        "errors": [
            {
                "file": e.file,
                "path": e.path,
                "member": e.member,
                "reason": e.reason,
                "offset": e.offset,
                "section": e.section,
                "message": error_line(e),
            }
            for e in result.errors
        ],
        "skipped": [{"file": s.display, "reason": s.reason} for s in result.skipped],
        "scanned": list(result.scanned),
    }
    return json.dumps(doc, indent=2)


# -- SARIF ------------------------------------------------------------------------------------------


def artifact_uri(path: str) -> str:
    """A relative URI for paths under the current directory (what code scanning wants)."""
    from urllib.parse import quote

    full = os.path.abspath(path)
    try:
        rel = os.path.relpath(full)
    except ValueError:
        rel = full
    if rel.startswith(".."):
        return "file://" + quote(full.replace(os.sep, "/"))
    return quote(rel.replace(os.sep, "/"))


def fingerprint(f: Finding) -> str:
    import hashlib

    key = "\0".join(
        [
            f.rule,
            f.path.replace(os.sep, "/"),
            f.member or "",
            f.symbol,
            f.version or "",
            f.section,
            "D" if f.defined else "U",
        ]
    )
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def _related(f: Finding) -> list[dict[str, Any]]:
    from urllib.parse import quote

    out = []
    for i, loc in enumerate(f.locations):
        file, _, line = loc.rpartition(":")
        if not file or not line.isdigit() or int(line) < 1:
            continue
        out.append(
            {
                "id": i,
                "message": {"text": f"reference to {f.symbol}"},
                "physicalLocation": {
                    "artifactLocation": {"uri": quote(file)},
                    "region": {"startLine": int(line)},
                },
            }
        )
    return out


def format_sarif(result: ScanResult) -> str:
    import json

    rule_ids = list(RULES)
    rules = [
        {
            "id": rid,
            "name": name,
            "shortDescription": {"text": short},
            "fullDescription": {"text": full},
            "help": {"text": full},
            "defaultConfiguration": {"level": "error"},
            "properties": {"tags": ["gpu", "linking"]},
        }
        for rid, (name, short, full) in RULES.items()
    ]
    results = []
    for f in result.findings:
        logical = f"{f.member}!{f.symbol}" if f.member else f.symbol
        res: dict[str, Any] = {
            "ruleId": f.rule,
            "ruleIndex": rule_ids.index(f.rule),
            "level": "error",
            "message": {"text": f"{f.file}: {f.message}"},
            "locations": [
                {
                    # Binaries have no lines; line 1 stands for the file so code scanning shows it.
                    "physicalLocation": {
                        "artifactLocation": {"uri": artifact_uri(f.path)},
                        "region": {"startLine": 1},
                    },
                    "logicalLocations": [
                        {
                            "name": f.symbol or f.file,
                            "fullyQualifiedName": logical,
                            "kind": "member",
                        }
                    ],
                }
            ],
            "partialFingerprints": {"gpuaotLeak/v1": fingerprint(f)},
            "properties": {k: v for k, v in finding_dict(f).items() if v is not None},
        }
        related = _related(f)
        if related:
            res["relatedLocations"] = related
        results.append(res)
    notes = [
        {
            "level": "error",
            "message": {"text": f"{e.file}: {error_line(e)}"},
            "locations": [
                {"physicalLocation": {"artifactLocation": {"uri": artifact_uri(e.path or e.file)}}}
            ],
        }
        for e in result.errors
    ]
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": TOOL_NAME, "version": _tool_version(), "rules": rules}},
                "invocations": [
                    {
                        "executionSuccessful": not result.errors,
                        "exitCode": result.exit_code,
                        "toolExecutionNotifications": notes,
                    }
                ],
                "results": results,
                "columnKind": "unicodeCodePoints",
            }
        ],
    }
    return json.dumps(doc, indent=2)


# -- GitHub workflow commands -----------------------------------------------------------------------


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def _repo_path(path: str) -> str:
    """Annotations link to files by their path from the repository root (the cwd in CI)."""
    full = os.path.abspath(path)
    rel = os.path.relpath(full)
    return full if rel.startswith("..") else rel


def format_github(result: ScanResult) -> str:
    """``::error file=...::`` annotations, one per finding and per unreadable input."""
    lines = []
    for f in result.findings:
        where = f"{f.member}: " if f.member else ""
        msg = where + f.message + (f" at {', '.join(f.locations)}" if f.locations else "")
        title = f"gpuaot check-leaks: {RULES[f.rule][0]}"
        path = _gh_prop(_repo_path(f.path))
        lines.append(f"::error file={path},title={_gh_prop(title)}::{_gh_data(msg)}")
    for e in result.errors:
        title = "gpuaot check-leaks: unreadable input"
        msg = (f"{e.member}: " if e.member else "") + error_line(e)
        path = _gh_prop(_repo_path(e.path or e.file))
        lines.append(f"::error file={path},title={_gh_prop(title)}::{_gh_data(msg)}")
    lines.append(summary(result))
    return "\n".join(lines)


FORMATTERS = {
    "text": format_text,
    "json": format_json,
    "sarif": format_sarif,
    "github": format_github,
}
