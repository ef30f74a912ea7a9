"""Leak checking: forbidden device-only symbols in host ELF objects (SPEC §5).

The build calls it after linking a bundle; ``gpuaot check-leaks`` wraps it for any CI::

    >>> from gpuaot.leaks import scan_paths, format_text
    >>> result = scan_paths(["build/libk.so"], forbid=["cuda*"], allow=["gpu_ok_*"])  # doctest: +SKIP
    >>> result.findings[0].symbol, result.findings[0].referenced_by                  # doctest: +SKIP
    ('gpu_report_exception', ['launch'])
    >>> print(format_text(result))                                                   # doctest: +SKIP

Modules, in pipeline order: ``inputs`` (paths -> ELF images: files, directories, archives,
wheels), ``elf`` (the reader and its exception tree), ``rules`` (globs, pyproject settings),
``symbols`` (the fast symbol-table filter), ``undefined`` (``--undefined``), ``attribute``
(who references a finding), ``scan`` (findings and errors), ``report`` (text, JSON, SARIF,
GitHub), ``command`` (the click command).  Names are imported lazily so that importing
``gpuaot.leaks.command`` for the CLI costs only click.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .report import format_text
    from .scan import Finding, InputError, ScanResult, scan_paths

__all__ = ["Finding", "InputError", "ScanResult", "format_text", "scan_paths"]


def __getattr__(name: str) -> Any:
    if name in ("Finding", "InputError", "ScanResult", "scan_paths"):
        from . import scan

        return getattr(scan, name)
    if name == "format_text":
        from .report import format_text

        return format_text
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
