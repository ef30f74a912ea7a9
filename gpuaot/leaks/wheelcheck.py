"""``gpuaot check-wheel WHEEL...``: the CI gate on built wheels (SPEC §1, §6).

::

    >>> wheels = ["dist/example-0.1-py3-none-linux_x86_64.whl"]
    >>> result = check_wheels(wheels, Rules.default())                    # doctest: +SKIP
    >>> [(f.member, f.rule) for f in result.findings]                     # doctest: +SKIP
    [('example/_gpuaot/example.linux_x86_64.gpuaot.so', 'stale-bundle')]

Per wheel, without importing anything from it: the ``.py`` files and the bundles are extracted
to a temporary directory (``*.data/purelib|platlib/`` mapped to where they install), every
top-level package is walked with :func:`gpuaot.compiler.discover.discover` (AST only), and

- a package with gpuaot functions needs ``<pkg>/_gpuaot/<pkg>.<platform>.gpuaot.so`` for each
  platform of the wheel's tags (``missing-bundle``);
- each bundle's recorded module sha256 must equal the wheel's ``.py`` file, hashed as the run
  time's ``check_fresh`` does, and every module with gpuaot functions must be recorded
  (``stale-bundle``); it must sit where the run time looks for it (``misplaced-bundle``);
- its platform must be one of the wheel's tags (``platform-mismatch``; ``pure-wheel`` for a
  bundle in a ``py3-none-any`` wheel);
- its CPU variants: one runnable at the baseline (the lowest default level of the platform's
  CPU, or ``baseline``; ``no-baseline-variant``), none ``native`` (``non-portable-variant``),
  and some at all where the manifest has CPU code (``no-cpu-variants``);
- its embedded images must match their recorded sha256 (``image-mismatch``);
- and every ELF member passes the leak rules (:class:`gpuaot.leaks.scan.Scanner`).

Findings exit 1.  An input that cannot be read exits 3, as in ``check-leaks``: a file that is
not a zip, a zip without ``*.dist-info/WHEEL``, a wheel whose tags name no platform, a damaged
member, and a bundle whose manifest cannot be read -- a truncated bundle is one (the gate
could not check it, so it must not pass as "findings only"); the message says to rebuild.
"""

from __future__ import annotations

import os
import posixpath
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..bundle import cpus
from .inputs import MAX_MEMBER
from .scan import Finding, InputError, Scanner, ScanResult

RULE_MISSING = "missing-bundle"
RULE_STALE = "stale-bundle"
RULE_MISPLACED = "misplaced-bundle"
RULE_PLATFORM = "platform-mismatch"
RULE_PURE = "pure-wheel"
RULE_BASELINE = "no-baseline-variant"
RULE_NATIVE = "non-portable-variant"
RULE_NO_VARIANTS = "no-cpu-variants"
RULE_IMAGE = "image-mismatch"

# rule -> (SARIF name, short description, full description)
WHEEL_RULES = {
    RULE_MISSING: (
        "MissingBundle",
        "A package with gpuaot functions has no bundle in the wheel.",
        "The package defines kernels, device or host functions, but the wheel lacks "
        "<pkg>/_gpuaot/<pkg>.<platform>.gpuaot.so for the wheel's platform: importing the "
        "installed package works, launching fails.",
    ),
    RULE_STALE: (
        "StaleBundle",
        "The bundle was built from other sources than the wheel's.",
        "A module's sha256 recorded in the bundle differs from the wheel's .py file, the file "
        "is not in the wheel, or a module with gpuaot functions is not in the bundle; the run "
        "time refuses a stale bundle.",
    ),
    RULE_MISPLACED: (
        "MisplacedBundle",
        "The bundle is not where the run time looks for it.",
        "The run time loads <pkg>/_gpuaot/<pkg>.<platform>.gpuaot.so for the top-level package "
        "<pkg>; a bundle of another package, or under another name, is never loaded.",
    ),
    RULE_PLATFORM: (
        "PlatformMismatch",
        "The bundle's platform is not the wheel's.",
        "The manifest platform (e.g. linux_x86_64) is none of the wheel's platform tags, or "
        "the wheel's file name and its WHEEL Tag lines disagree.",
    ),
    RULE_PURE: (
        "PureWheel",
        "A platform-specific bundle in a pure (py3-none-any) wheel.",
        "A wheel carrying a native bundle must be tagged py3-none-<platform>, so that pip never "
        "installs it on another platform.",
    ),
    RULE_BASELINE: (
        "NoBaselineVariant",
        "No CPU variant runs on the platform's baseline CPU.",
        "Every CPU variant of the bundle needs features beyond the baseline level (the lowest "
        "default level of the platform, or --baseline): such CPUs get UnsupportedCPUError.",
    ),
    RULE_NATIVE: (
        "NonPortableVariant",
        "A CPU variant built for the build machine's CPU (--cpu native).",
        "A native variant is for local work: it needs whatever the build machine had.",
    ),
    RULE_NO_VARIANTS: (
        "NoCpuVariants",
        "CPU code without CPU variants.",
        "The manifest has kernels or host functions with CPU code but lists no CPU variant: "
        "the run time cannot bind any of them.",
    ),
    RULE_IMAGE: (
        "ImageMismatch",
        "An embedded image does not match its recorded sha256.",
        "The bundle's fatbinary bytes differ from the sha256 its manifest recorded: the bundle "
        "was altered after it was built.",
    ),
}
REBUILD = "rebuild the wheel"
LEAK_HINT = (
    "do not ship it: rebuild it so that no device-only symbol reaches host code "
    "(gpuaot build refuses such a bundle)"
)

_DATA_PREFIX = re.compile(r"^[^/]+\.data/(?:purelib|platlib)/")
_BUNDLE = re.compile(r"(?:^|/)_gpuaot/[^/]+\.gpuaot\.so$")
_WHEEL_FILE = re.compile(r"^[^/]+\.dist-info/WHEEL$")
_LINUX_TAG = re.compile(r"^(?:manylinux_\d+_\d+|musllinux_\d+_\d+|manylinux\d*|linux)_(\w+)$")
_MACOS_TAG = re.compile(r"^macosx_\d+_\d+_(\w+)$")
_MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}  # as cpus.machine() names them


@dataclass
class BundleFinding:
    """One problem of a wheel's bundles; ``subject`` (a file, a level, an image) keys it."""

    file: str  # "wheel!member", as leak findings name it
    path: str  # the wheel
    member: str | None
    rule: str
    message: str  # what is wrong
    hint: str  # what to do
    subject: str = ""


@dataclass
class WheelResult(ScanResult):
    """A :class:`ScanResult` whose findings also hold :class:`BundleFinding` s."""

    wheels: list[str] = field(default_factory=list)
    baseline: str | None = None


def hint(f: Finding | BundleFinding) -> str:
    return f.hint if isinstance(f, BundleFinding) else LEAK_HINT


class Unreadable(Exception):
    """The wheel (or one member) cannot be read; ``member`` says which."""

    def __init__(self, reason: str, member: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.member = reason, member


class NotAZip(Unreadable):
    """Not even a zip: there is nothing to scan for leaks either."""


def check_wheels(
    paths: list[str], rules: Any, *, baseline: str | None = None, debug: bool = False
) -> WheelResult:
    """Check each wheel; ``baseline`` (a level name) replaces its arch's default baseline."""
    result = WheelResult(rules=rules, wheels=list(paths), baseline=baseline)
    scanner = Scanner(rules, debug=debug)
    for path in paths:
        try:
            with tempfile.TemporaryDirectory(prefix="gpuaot-check-wheel-") as tmp:
                # resolved: discover() resolves the package's path, and files are named from it
                Wheel.extract(path, Path(tmp).resolve()).check(result, baseline)
        except Unreadable as e:
            display = f"{path}!{e.member}" if e.member else path
            result.errors.append(InputError(display, e.reason, path=path, member=e.member))
            if isinstance(e, NotAZip):
                continue
        leaks = scanner.scan([path])
        result.findings += leaks.findings
        result.errors += leaks.errors
        result.skipped += leaks.skipped
        result.scanned += leaks.scanned
    return result


@dataclass
class Wheel:
    path: str
    root: Path  # the extracted .py files and bundles, laid out as installed
    members: dict[str, str]  # installed path -> member name
    platforms: list[str]  # "linux_x86_64", ...; empty for a pure wheel
    # Top-level names with a .py that says "gpuaot": only these can have gpuaot functions
    # (discover resolves decorators through imports of gpuaot), so only these are walked.
    candidates: set[str] = field(default_factory=set)
    problems: list[BundleFinding] = field(default_factory=list)

    @classmethod
    def extract(cls, path: str, root: Path) -> Wheel:
        if not os.path.isfile(path):  # a FIFO or a device: opening it could block
            raise NotAZip("not a regular file")
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise NotAZip(f"not a wheel: unreadable zip ({e})") from None
        with zf:
            wheel = cls(path, root, {}, [])
            wheel_meta = None
            for info in zf.infolist():
                name = info.filename
                if _WHEEL_FILE.match(name):
                    wheel_meta = (name, _read(zf, info).decode("utf-8", "replace"))
                installed = _installed(name)
                if installed and (installed.endswith(".py") or _BUNDLE.search(installed)):
                    data = _read(zf, info)
                    dest = root / installed
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(data)
                    wheel.members[installed] = name
                    if installed.endswith(".py") and b"gpuaot" in data:
                        wheel.candidates.add(installed.split("/")[0])
        if wheel_meta is None:
            raise Unreadable("not a wheel: no *.dist-info/WHEEL")
        wheel.platforms = wheel._platforms(*wheel_meta)
        return wheel

    def finding(self, member: str | None, rule: str, message: str, hint: str, subject="") -> None:
        member = self.members.get(member, member) if member else None
        file = f"{self.path}!{member}" if member else self.path
        self.problems.append(BundleFinding(file, self.path, member, rule, message, hint, subject))

    def _platforms(self, meta_member: str, wheel_meta: str) -> list[str]:
        """The platforms of the file name's tags (what pip reads), checked against WHEEL's."""
        parts = os.path.basename(self.path).removesuffix(".whl").split("-")
        by_name = parts[-1].split(".") if len(parts) in (5, 6) else []
        by_meta = [
            line.split(":", 1)[1].strip().rpartition("-")[2]
            for line in wheel_meta.splitlines()
            if line.startswith("Tag:")
        ]
        if by_name and by_meta and set(by_name) != set(by_meta):
            self.finding(
                meta_member,
                RULE_PLATFORM,
                f"the file name is tagged {', '.join(by_name)} but its WHEEL Tag lines say "
                f"{', '.join(sorted(set(by_meta)))}",
                f"{REBUILD}: pip installs by the file name, so both must name the same platforms",
                "tags",
            )
        tags = by_name or by_meta
        if not tags:
            raise Unreadable("cannot tell the wheel's platform: no tags in its name or WHEEL")
        if "any" in tags:
            return []
        return sorted({_platform(t) for t in tags})

    def check(self, result: WheelResult, baseline: str | None) -> None:
        from ..compiler.discover import discover
        from ..errors import Diagnostics

        packages = {}
        for name in sorted(self.candidates):
            d = self.root / name
            if name.isidentifier() and (d / "__init__.py").is_file():
                try:
                    packages[name] = discover(str(d), Diagnostics())
                except UnicodeDecodeError as e:
                    why = f"cannot read package {name}: a .py file is not UTF-8 ({e})"
                    result.errors.append(InputError(self.path, why, path=self.path))
        bundles = sorted(m for m in self.members if _BUNDLE.search(m))
        for name, pkg in packages.items():
            functions = [f.qualname for f in pkg.functions()]
            if functions:
                self._missing(name, functions, bundles)
        for member in bundles:
            self._check_bundle(member, packages, result, baseline)
        result.findings += self.problems

    def _missing(self, name: str, functions: list[str], bundles: list[str]) -> None:
        what = f"package {name} has gpuaot functions ({_some(functions, 3)})"
        what += " but the wheel has no bundle"
        if not self.platforms and not any(b.startswith(f"{name}/_gpuaot/") for b in bundles):
            self.finding(
                f"{name}/_gpuaot/",
                RULE_MISSING,
                what + " (and it is a pure py3-none-any wheel)",
                f'{REBUILD} with build-backend = "gpuaot.build_meta": it builds the bundle and '
                "tags the wheel for its platform",
            )
        for plat in self.platforms:
            if f"{name}/_gpuaot/{name}.{plat}.gpuaot.so" in bundles:
                continue
            self.finding(
                f"{name}/_gpuaot/{name}.{plat}.gpuaot.so",
                RULE_MISSING,
                what + f" for {plat}",
                f'{REBUILD} with build-backend = "gpuaot.build_meta" (or run gpuaot build {name} '
                "before packaging)",
                plat,
            )

    def _check_bundle(
        self, member: str, packages: dict, result: WheelResult, baseline: str | None
    ) -> None:
        from ..bundle.inspect import BadBundle, read_bundle_manifest

        path = self.root / member
        try:
            self._check_manifest(member, read_bundle_manifest(str(path)), packages, baseline)
            return
        except BadBundle as e:
            why = "unreadable gpuaot bundle: " + str(e).removeprefix(f"{path}: ")
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            why = f"malformed gpuaot manifest ({type(e).__name__}: {e})"
        name = self.members[member]
        result.errors.append(
            InputError(f"{self.path}!{name}", f"{why}; {REBUILD}", path=self.path, member=name)
        )

    def _check_manifest(self, member: str, m: dict, packages: dict, baseline: str | None) -> None:
        package, platform = m["package"], m["platform"]
        expected = f"{package}/_gpuaot/{package}.{platform}.gpuaot.so"
        if member != expected:
            self.finding(
                member,
                RULE_MISPLACED,
                f"this is the {platform} bundle of package {package}; the run time loads "
                f"{expected}",
                f"{REBUILD} with gpuaot build run on the package itself",
            )
        if not self.platforms:
            self.finding(
                member,
                RULE_PURE,
                f"a platform-specific .so ({platform}) in a pure py3-none-any wheel",
                f'{REBUILD} with build-backend = "gpuaot.build_meta", which tags it '
                f"py3-none-{platform}",
            )
        elif platform not in self.platforms:
            self.finding(
                member,
                RULE_PLATFORM,
                f"the bundle is for {platform} but the wheel is tagged for "
                f"{', '.join(self.platforms)}",
                f"{REBUILD} on (or for) {', '.join(self.platforms)}",
                platform,
            )
        top = member.split("/")[0]
        self._check_sources(member, m, packages.get(package) if package == top else None)
        arch = platform.partition("_")[2]
        self._check_cpu(member, m, _MACHINES.get(arch, arch), baseline)
        for n, image in enumerate(m["images"]):
            if not image.get("verified"):
                self.finding(
                    member,
                    RULE_IMAGE,
                    f"image {n} ({image['kind']}, {image['size']} bytes) does not match its "
                    f"recorded sha256 {image['sha256'][:16]}...",
                    f"{REBUILD}: the bundle was altered after it was built",
                    f"image {n}",
                )

    def _check_sources(self, member: str, m: dict, pkg: Any) -> None:
        """As ``check_fresh``: files relative to the directory that holds the package."""
        base = posixpath.dirname(posixpath.dirname(posixpath.dirname(member)))
        stale = f"{REBUILD}: gpuaot's bundle is stale"
        recorded = set()
        for info in sorted(m["modules"].values(), key=lambda i: i["file"]):
            file = info["file"]
            recorded.add(file)
            sha = _source_sha256(self.root / base / file) if _safe(file) else None
            if sha is None:
                self.finding(
                    member,
                    RULE_STALE,
                    f"the bundle was built with {file}, which is not in the wheel",
                    f"{stale}: {file} is gone",
                    file,
                )
            elif sha != info["sha256"]:
                self.finding(
                    member,
                    RULE_STALE,
                    f"{file} changed since the bundle was built",
                    f"{stale}: {file} changed",
                    file,
                )
        for mod in pkg.modules.values() if pkg is not None else ():
            file = mod.path.relative_to(self.root).as_posix()
            if mod.functions and file not in recorded:
                self.finding(
                    member,
                    RULE_STALE,
                    f"{file} has gpuaot functions ({', '.join(sorted(mod.functions))}) that "
                    "the bundle lacks",
                    f"{stale}: {file} is new",
                    file,
                )

    def _check_cpu(self, member: str, m: dict, arch: str, baseline: str | None) -> None:
        variants = m.get("cpu_variants") or []
        has_cpu = any(s["cpu"] for k in m["kernels"] for s in k["specializations"]) or any(
            h.get("symbols") for h in m["host_functions"]
        )
        if not variants:
            if has_cpu:
                self.finding(
                    member,
                    RULE_NO_VARIANTS,
                    "the manifest has CPU code for kernels or host functions but no CPU variant",
                    f"{REBUILD} with this gpuaot",
                )
            return
        for v in variants:
            if not v["portable"]:
                self.finding(
                    member,
                    RULE_NATIVE,
                    f"the {v['level']} CPU variant is for the build machine's CPU ({v['cpu']})",
                    f"do not ship it: {REBUILD} without --cpu native",
                    v["level"],
                )
        base = cpus.level(baseline, arch) if baseline else None
        if base is None and cpus.DEFAULTS.get(arch):
            base = cpus.level(cpus.DEFAULTS[arch][0], arch)
        if base is None:
            return  # a platform gpuaot has no CPU levels for: nothing to compare
        if not any(set(v["requires"]) <= set(base.requires) for v in variants):
            lowest = min(variants, key=lambda v: len(v["requires"]))
            extra = sorted(set(lowest["requires"]) - set(base.requires))
            levels = cpus.parse_levels([base.name, *cpus.DEFAULTS.get(arch, ())], arch)
            self.finding(
                member,
                RULE_BASELINE,
                f"no CPU variant runs on the {base.name} baseline: the lowest, "
                f"{lowest['level']}, also needs {_some(extra, 8)}",
                f"{REBUILD} with {base.name} among its CPU levels, e.g. gpuaot build --cpu "
                + ",".join(lv.name for lv in levels),
                base.name,
            )


def _some(items: list[str], n: int) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.file_size > MAX_MEMBER:
        raise Unreadable(f"member of {info.file_size} bytes not inflated", info.filename)
    try:
        return zf.read(info)
    except Exception as e:  # CRC, zlib, encryption, truncation
        raise Unreadable(f"unreadable zip member: {e}", info.filename) from None


def _installed(name: str) -> str | None:
    """Where member ``name`` installs, relative to site-packages; None if it is not safe."""
    name = _DATA_PREFIX.sub("", name)
    return name if _safe(name) else None


def _safe(name: str) -> bool:
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and ".." not in parts and "\\" not in name


def _platform(tag: str) -> str:
    """A wheel platform tag as the bundle names platforms: manylinux_2_17_x86_64 -> linux_x86_64."""
    m = _LINUX_TAG.match(tag)
    if m:
        return f"linux_{m[1]}"
    m = _MACOS_TAG.match(tag)
    if m:
        return f"darwin_{m[1]}"
    return tag


def _source_sha256(path: Path) -> str | None:
    """The sha256 of a module as the manifest records it (one definition, shared with the
    run time's freshness check); None if unreadable."""
    from ..bundle.manifest import source_sha256

    try:
        return source_sha256(path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError):
        return None


__all__ = ["WHEEL_RULES", "BundleFinding", "WheelResult", "check_wheels", "hint"]
