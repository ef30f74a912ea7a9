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

A :class:`~gpuaot.leaks.wheelcheck.WheelResult` (``check-wheel``) renders the same way, its
bundle findings beside the leaks, each with what to do (``hint``).

Names from the inputs (symbols, files, members, sections, messages) may be hostile: text and
GitHub output print them through :func:`gpuaot.textsafe.printable` (``\x1b``, ``\r``, ``\xff``
for a byte that is not UTF-8, ``\u202e``), and GitHub's workflow-command escaping (``%25``,
``%0D``, ``%0A``; ``%3A``, ``%2C`` in properties) comes on top.  JSON keeps exact values: a name
that is not valid UTF-8 is its text with U+FFFD plus ``"<key>_bytes"``, its bytes in base64
(:func:`gpuaot.textsafe.json_safe`); SARIF, whose objects allow no extra keys, does so in each
result's ``properties``.  Every format is valid UTF-8.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ..textsafe import json_safe, printable, to_bytes
from .scan import (
    RULE_DEVICE,
    RULE_FORBIDDEN,
    RULE_MISSING_LIB,
    RULE_UNRESOLVED,
    Finding,
    InputError,
    ScanResult,
)
from .wheelcheck import WHEEL_RULES, BundleFinding, WheelResult, hint

JSON_VERSION = 1
SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
TOOL_NAME = "gpuaot check-leaks"
WHEEL_TOOL_NAME = "gpuaot check-wheel"

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


# Past this width a symbol name is not padded: one 64 KiB name must not pad every line to it.
ALIGN_MAX = 60


def _tool_version() -> str:
    try:
        from importlib.metadata import version

        return version("gpuaot")
    except Exception:  # not installed (a source checkout)
        return "0.1.0"


def _tool_name(result: ScanResult) -> str:
    return WHEEL_TOOL_NAME if isinstance(result, WheelResult) else TOOL_NAME


def _group(result: ScanResult) -> dict[str, tuple[list[Any], list[InputError]]]:
    """Findings and errors per file: in scan order, and for wheels in the order given."""
    groups: dict[str, tuple[list[Any], list[InputError]]] = {}
    for f in result.findings:
        groups.setdefault(f.file, ([], []))[0].append(f)
    for e in result.errors:
        groups.setdefault(e.file, ([], []))[1].append(e)
    order = {name: i for i, name in enumerate(result.scanned)}
    wheels = {w: i for i, w in enumerate(result.wheels)} if isinstance(result, WheelResult) else {}

    def key(kv: tuple[str, tuple[list, list]]) -> tuple[int, int]:
        first = (kv[1][0] or kv[1][1])[0]
        return wheels.get(first.path, 0), order.get(kv[0], len(order))

    return dict(sorted(groups.items(), key=key))


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
    images = _plural(len(result.scanned), "ELF image")
    parts = []
    if isinstance(result, WheelResult):
        wheels = _plural(len(result.wheels), "wheel")
        leaks = _plural(sum(isinstance(f, Finding) for f in result.findings), "leak")
        if result.findings:
            bad = len({f.path for f in result.findings})
            n = _plural(len(result.findings), "problem")
            parts.append(f"{n} in {bad} of {wheels} ({leaks} in {images})")
        else:
            found = " found" if result.errors else ""
            parts.append(f"No problems{found} in {wheels} ({images} scanned)")
    elif result.findings:
        leaky = len({f.file for f in result.findings})
        parts.append(f"{_plural(len(result.findings), 'leak')} in {leaky} of {images}")
    else:
        parts.append(f"No leaks in {images}")
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
    wheel = isinstance(result, WheelResult)
    if verbose:
        for name in result.scanned:
            if name not in groups:
                lines.append(f"{printable(name)}: ok")
        for s in result.skipped:
            lines.append(f"{printable(s.display)}: skipped: {printable(s.reason)}")
    for name, (findings, errors) in groups.items():
        lines.append(style(printable(name), bold=True))
        width = max((len(_symbol(f)) for f in findings if isinstance(f, Finding)), default=0)
        width = min(width, ALIGN_MAX)
        for f in findings:
            if isinstance(f, BundleFinding):
                lines.append(f"  {style(f.rule, fg='red', bold=True)}: {printable(f.message)}")
            else:
                lines.append("  " + _text_finding(f, width, style))
            if getattr(f, "referenced_by", None) or getattr(f, "locations", None):
                refs = printable(", ".join(f.referenced_by)) or "?"
                locs = f" ({printable(', '.join(f.locations))})" if f.locations else ""
                lines.append(f"      referenced by {refs}{locs}")
            if wheel:
                lines.append(f"      fix: {printable(hint(f))}")
        for e in errors:
            error = printable(error_line(e))
            lines.append("  " + style("error:", fg="red", bold=True) + " " + error)
    if lines:
        lines.append("")
    if not (quiet and not result.findings and not result.errors):
        lines.append(summary(result))
    return "\n".join(lines)


def _symbol(f: Finding) -> str:
    return printable(f.symbol + (f.version or ""))


def _text_finding(f: Finding, width: int, style: Any) -> str:
    if f.rule == RULE_DEVICE:
        return style("ELF machine is EM_CUDA (190)", fg="red", bold=True) + (
            ": device code where host code is expected"
        )
    if f.rule == RULE_MISSING_LIB:
        return style(f"NEEDED {_symbol(f)}", fg="red", bold=True) + ": library not found"
    name = _symbol(f).ljust(width)
    state = "defined  " if f.defined else "undefined"
    if f.rule == RULE_FORBIDDEN:
        tail = f"[{printable(f.pattern or '')}]"
    else:
        tail = "no NEEDED library defines it"
    binding, kind, section = (printable(x) for x in (f.binding, f.type, f.section))
    return f"{style(name, fg='red', bold=True)}  {state} {binding:<6} {kind:<6} {section:<8} {tail}"


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


def _finding_json(f: Finding | BundleFinding, wheel: bool) -> dict[str, Any]:
    if isinstance(f, BundleFinding):
        return dataclasses.asdict(f)
    return finding_dict(f) | ({"hint": hint(f)} if wheel else {})


def format_json(result: ScanResult) -> str:
    import json

    wheel = isinstance(result, WheelResult)
    doc: dict[str, Any] = {
        "version": JSON_VERSION,
        "tool": {"name": _tool_name(result), "version": _tool_version()},
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
        "findings": [_finding_json(f, wheel) for f in result.findings],
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
    if wheel:
        doc["wheels"] = list(result.wheels)
        doc["baseline"] = result.baseline
    return json.dumps(json_safe(doc), indent=2)


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
        return "file://" + quote(to_bytes(full.replace(os.sep, "/")))
    return quote(to_bytes(rel.replace(os.sep, "/")))


def fingerprint(f: Finding | BundleFinding) -> str:
    import hashlib

    parts = [f.rule, f.path.replace(os.sep, "/"), f.member or ""]
    if isinstance(f, BundleFinding):
        parts.append(f.subject)
    else:
        parts += [f.symbol, f.version or "", f.section, "D" if f.defined else "U"]
    return hashlib.sha256(to_bytes("\0".join(parts))).hexdigest()


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
                    "artifactLocation": {"uri": quote(to_bytes(file))},
                    "region": {"startLine": int(line)},
                },
            }
        )
    return out


def _sarif_result(f: Finding | BundleFinding, rule_ids: list[str], wheel: bool) -> dict[str, Any]:
    if isinstance(f, BundleFinding):
        name = fqn = f.member or f.file
    else:
        name, fqn = f.symbol or f.file, f"{f.member}!{f.symbol}" if f.member else f.symbol
    text = f.message + (f"; {hint(f)}" if wheel else "")
    props = _finding_json(f, wheel)
    res: dict[str, Any] = {
        "ruleId": f.rule,
        "ruleIndex": rule_ids.index(f.rule),
        "level": "error",
        "message": {"text": f"{f.file}: {text}"},
        "locations": [
            {
                # Binaries have no lines; line 1 stands for the file so code scanning shows it.
                "physicalLocation": {
                    "artifactLocation": {"uri": artifact_uri(f.path)},
                    "region": {"startLine": 1},
                },
                "logicalLocations": [{"name": name, "fullyQualifiedName": fqn, "kind": "member"}],
            }
        ],
        "partialFingerprints": {"gpuaotLeak/v1": fingerprint(f)},
        "properties": json_safe({k: v for k, v in props.items() if v is not None}),
    }
    related = _related(f) if isinstance(f, Finding) else []
    if related:
        res["relatedLocations"] = related
    return res


def format_sarif(result: ScanResult) -> str:
    import json

    wheel = isinstance(result, WheelResult)
    table = RULES | WHEEL_RULES if wheel else RULES
    rule_ids = list(table)
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
        for rid, (name, short, full) in table.items()
    ]
    results = [_sarif_result(f, rule_ids, wheel) for f in result.findings]
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
                "tool": {
                    "driver": {
                        "name": _tool_name(result),
                        "version": _tool_version(),
                        "rules": rules,
                    }
                },
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
    return json.dumps(json_safe(doc, exact=False), indent=2)


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
    tool = _tool_name(result)
    table = RULES | WHEEL_RULES

    def annotate(path: str, title: str, msg: str) -> None:
        # printable() leaves no CR or LF; _gh_data still escapes '%' (and would CR/LF).
        path, title = _gh_prop(printable(_repo_path(path))), _gh_prop(printable(title))
        lines.append(f"::error file={path},title={title}::{_gh_data(printable(msg))}")

    wheel = isinstance(result, WheelResult)
    for f in result.findings:
        msg = (f"{f.member}: " if f.member else "") + f.message
        if getattr(f, "locations", None):
            msg += f" at {', '.join(f.locations)}"
        msg += f"; {hint(f)}" if wheel else ""
        annotate(f.path, f"{tool}: {table[f.rule][0]}", msg)
    for e in result.errors:
        msg = (f"{e.member}: " if e.member else "") + error_line(e)
        annotate(e.path or e.file, f"{tool}: unreadable input", msg)
    lines.append(summary(result))
    return "\n".join(lines)


FORMATTERS = {
    "text": format_text,
    "json": format_json,
    "sarif": format_sarif,
    "github": format_github,
}
