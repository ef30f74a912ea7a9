"""Scan paths for leaks: the one entry point shared by ``gpuaot check-leaks`` and the build.

::

    >>> result = scan_paths(["build/libk.so"])                      # doctest: +SKIP
    >>> [(f.symbol, f.defined, f.section, f.referenced_by) for f in result.findings]  # doctest: +SKIP
    [('gpu_report_exception', False, '.dynsym', ['launch'])]
    >>> result.errors, result.exit_code                             # doctest: +SKIP
    ([], 1)

Each ELF image yields findings (a forbidden symbol in ``.dynsym`` or ``.symtab``; a device
``EM_CUDA`` image where host code belongs; with ``--undefined``, unresolved references and
missing libraries) or a per-file error; one bad file never stops the others.  Attribution runs
only for images that have findings, so a clean build pays only for the symbol-table filter.

Exit codes: 0 clean, 1 findings, 3 when any input could not be read -- 3 wins over 1, because a
gate that could not read everything must not look like it did (the findings are still reported).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .elf import EM_CUDA, ET_REL, SHT_DYNSYM, ElfError, ElfFile, Section, Symbol, Version
from .inputs import Blob, Problem, Skipped, Walker
from .rules import Rules
from .symbols import forbidden_symbols

EXIT_CLEAN, EXIT_FINDINGS, EXIT_USAGE, EXIT_UNREADABLE = 0, 1, 2, 3

RULE_FORBIDDEN = "forbidden-symbol"
RULE_DEVICE = "device-machine"
RULE_UNRESOLVED = "unresolved-symbol"
RULE_MISSING_LIB = "missing-library"


@dataclass
class Finding:
    """One leak.  ``file`` is the display name (``wheel!member``, ``lib.a!obj.o``)."""

    file: str
    symbol: str
    defined: bool
    section: str
    referenced_by: list[str] = field(default_factory=list)
    binding: str = ""
    type: str = ""
    rule: str = RULE_FORBIDDEN
    pattern: str | None = None
    version: str | None = None  # "@@VERS_1" / "@GLIBC_2.2.5", as nm -D prints it
    value: int = 0
    index: int = 0
    locations: list[str] = field(default_factory=list)
    path: str = ""  # the file on disk
    member: str | None = None

    @property
    def message(self) -> str:
        if self.rule == RULE_DEVICE:
            return "device code (ELF machine EM_CUDA) where host code is expected"
        if self.rule == RULE_MISSING_LIB:
            return f"NEEDED library {self.symbol} is not found"
        state = "defined" if self.defined else "undefined"
        name = self.symbol + (self.version or "")
        if self.rule == RULE_UNRESOLVED:
            text = f"{name} is undefined and no NEEDED library defines it"
        else:
            text = f"forbidden symbol {name} ({state} {self.binding} {self.type} in {self.section}"
            text += f", matches '{self.pattern}')"
        if self.referenced_by:
            text += f"; referenced by {', '.join(self.referenced_by)}"
        return text


@dataclass
class InputError:
    """An input that could not be read; ``reason`` is one line with the offset and section."""

    file: str
    reason: str
    offset: int | None = None
    section: str | None = None
    path: str = ""
    member: str | None = None


@dataclass
class ScanResult:
    findings: list[Finding] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    scanned: list[str] = field(default_factory=list)
    rules: Rules = field(default_factory=Rules)

    @property
    def exit_code(self) -> int:
        if self.errors:
            return EXIT_UNREADABLE
        return EXIT_FINDINGS if self.findings else EXIT_CLEAN


class Scanner:
    """Scans inputs under one set of rules; ``debug`` lets internal errors raise (--traceback)."""

    def __init__(self, rules: Rules, *, attribute: bool = True, debug: bool = False) -> None:
        self.rules = rules
        self.attribute = attribute
        self.debug = debug
        self._resolver = None

    def scan(self, paths: list[str]) -> ScanResult:
        result = ScanResult(rules=self.rules)
        items = Walker().items(list(paths))
        try:
            for item in items:
                if isinstance(item, Problem):
                    result.errors.append(
                        InputError(
                            item.display,
                            item.reason,
                            item.offset,
                            item.section,
                            item.path,
                            item.member,
                        )
                    )
                elif isinstance(item, Skipped):
                    result.skipped.append(item)
                else:
                    result.scanned.append(item.display)
                    self._scan_blob(item, result)
        finally:
            items.close()  # a --traceback re-raise still closes an open wheel
        return result

    def _scan_blob(self, blob: Blob, result: ScanResult) -> None:
        try:
            self.scan_image(blob, result)
        except ElfError as e:
            result.errors.append(_error(blob, e))
        except Exception as e:
            # A bug of ours met by odd input: still one line and exit 3, never a traceback.
            if self.debug:
                raise
            reason = (
                f"internal error while reading ({type(e).__name__}: {e}); rerun with --traceback"
            )
            result.errors.append(
                InputError(blob.display, reason, None, None, blob.path, blob.member)
            )

    def scan_image(self, blob: Blob, result: ScanResult) -> None:
        elf = ElfFile(blob.buf, blob.display, blob.base, blob.size)
        base = dict(file=blob.display, path=blob.path, member=blob.member)
        if elf.machine == EM_CUDA:
            # A cubin is device code through and through; its symbols would only repeat that.
            result.findings.append(
                Finding(
                    symbol="",
                    defined=True,
                    section="e_machine",
                    rule=RULE_DEVICE,
                    pattern="EM_CUDA",
                    **base,
                )
            )
            return
        hits: list[tuple[Section, Symbol, Finding]] = []
        for table in elf.symbol_tables():
            problems: list[ElfError] = []
            try:
                for sym, glob in forbidden_symbols(elf, table, self.rules, problems):
                    ver = self._version(elf, table, sym, problems)
                    f = Finding(
                        symbol=sym.name,
                        defined=sym.defined,
                        section=table.name,
                        binding=sym.bind_name,
                        type=sym.type_name,
                        pattern=glob,
                        version=ver.suffix(sym.defined) if ver else None,
                        value=sym.value,
                        index=sym.index,
                        **base,
                    )
                    hits.append((table, sym, f))
            except ElfError as e:
                # One damaged table: report it, keep what the other table found.
                problems.append(e)
            result.errors.extend(_error(blob, e) for e in problems[:1])
        if self.rules.undefined and elf.elf_type != ET_REL:
            seen = {(t.index, s.index) for t, s, _ in hits}  # already reported as forbidden
            try:
                extra = self._unresolved(elf, blob, result, base)
            except ElfError as e:
                result.errors.append(_error(blob, e))
                extra = []
            hits += [h for h in extra if (h[0].index, h[1].index) not in seen]
        result.findings.extend(f for _, _, f in hits)
        if hits and self.attribute:
            self._attribute(elf, hits)

    @staticmethod
    def _version(
        elf: ElfFile, table: Section, sym: Symbol, problems: list[ElfError]
    ) -> Version | None:
        if table.type != SHT_DYNSYM:
            return None
        try:
            return elf.symbol_version(table, sym.index)
        except ElfError as e:
            # A damaged version table costs the version suffix, not the finding.
            problems.append(e)
            return None

    def _unresolved(
        self, elf: ElfFile, blob: Blob, result: ScanResult, base: dict[str, Any]
    ) -> list[tuple[Section, Symbol, Finding]]:
        from .undefined import Resolver

        if self._resolver is None:
            self._resolver = Resolver()
        missing, refs = self._resolver.unresolved(elf, blob.origin)
        for soname in missing:
            result.findings.append(
                Finding(
                    symbol=soname, defined=False, section=".dynamic", rule=RULE_MISSING_LIB, **base
                )
            )
        out = []
        for sym, ver, table in refs:
            if self.rules.allowed(sym.name):
                continue
            sec = next(s for s in elf.sections if s.name == table)
            f = Finding(
                symbol=sym.name,
                defined=False,
                section=table,
                binding=sym.bind_name,
                type=sym.type_name,
                rule=RULE_UNRESOLVED,
                version=ver.suffix(False) if ver else None,
                index=sym.index,
                **base,
            )
            out.append((sec, sym, f))
        return out

    def _attribute(self, elf: ElfFile, hits: list[tuple[Section, Symbol, Finding]]) -> None:
        from .attribute import Target, attribute

        # The same symbol may be both forbidden and unresolved: attribute it once, share lists.
        targets: dict[tuple[int, int], Target] = {}
        for table, sym, f in hits:
            key = (table.index, sym.index)
            if key not in targets:
                targets[key] = Target(table, sym, f.referenced_by, f.locations)
            else:
                f.referenced_by, f.locations = targets[key].referenced_by, targets[key].locations
        try:
            attribute(elf, list(targets.values()))
        except ElfError:
            # The code or relocations it needs are damaged: the file is malformed, and says so
            # (the caller records it); the findings stand.
            raise
        except Exception:
            # Attribution is a courtesy on top of an exact verdict; it never costs the verdict.
            if self.debug:
                raise


def _error(blob: Blob, e: ElfError) -> InputError:
    return InputError(blob.display, e.reason, e.offset, e.section, blob.path, blob.member)


def scan_paths(
    paths: list[str],
    *,
    forbid: Iterable[str] = (),
    allow: Iterable[str] = (),
    undefined: bool = False,
) -> ScanResult:
    """Scan files, directories, archives and wheels with the default rules plus ``forbid``.

    ``allow`` globs exempt names; ``undefined`` also reports unresolved dynamic references.
    """
    rules = Rules.default(forbid=tuple(forbid), allow=tuple(allow), undefined=bool(undefined))
    return Scanner(rules).scan(list(paths))
