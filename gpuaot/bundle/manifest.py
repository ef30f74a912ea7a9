"""The bundle manifest: UTF-8 JSON in the ``.gpuaot.manifest`` section (SPEC §4).

    {"format": "gpuaot-bundle", "version": 2, "compiler": "gpuaot 0.1.0; ...",
     "package": "example", "platform": "linux_x86_64",
     "modules": {"example.kernels": {"file": "example/kernels.py", "sha256": "…"}},
     "kernels": [{"name": "saxpy", "module": "example.kernels", "specializations": [
         {"params": [{"name": "a", "type": "f32", "abi": ["f32"]}, …],
          "cpu": {"symbols": {"x86-64-v2": "gpuaot_cpu_….x86_64_v2", …}, "sites": […]} | null,
          "gpu_only": "reason" | null,
          "gpu": {"symbol": "…", "image": 0, "sites": […]} | null}]}],
     "host_functions": [{"name": "dot", …, "returns": "f64", "symbols": {…}, "sites": […]}],
     "cpu_variants": [{"level": "x86-64-v2", "tag": "x86_64_v2", "cpu": "x86-64-v2",
                       "features": "", "requires": ["cmov", …], "portable": true}, …],
     "architectures": ["sm_75", "sm_80", "sm_90"], "ptx_arch": "sm_75",
     "images": [{"kind": "fatbin", "offset": 0, "size": …, "sha256": "…", "entries": […]}]}

The manifest is :class:`Manifest` and the dataclasses below: ``compiler.manifest_writer``
builds them and :func:`dumps` serialises them (sorted keys, no timestamps, so two builds give
identical bytes); :func:`read_bundle` is the one reader: it takes the file's bytes after
:mod:`.elfcheck` has checked the ELF structure, checks them against the schema
(:mod:`.schema`, ``validate``) and returns the dataclasses (``BundleFile.contents``) with the
checked JSON (``BundleFile.manifest``, what ``gpuaot inspect`` prints)::

    >>> bf = read_bundle("example/_gpuaot/example.linux_x86_64.gpuaot.so")  # doctest: +SKIP
    >>> bf.contents.kernels[0].specializations[0].params[0].abi             # doctest: +SKIP
    ('f32',)

json, struct and hashlib only: no compiler imports.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from dataclasses import dataclass, field

from .abi import FATBIN_SECTION, MANIFEST_SECTION
from .cpus import Variant
from .elfcheck import DamagedBundle, Elf, Section, check_elf, machine_name, platform_machine
from .records import Record, optional
from .schema import FORMAT, SCALAR_TYPES, SCHEMA, VERSION, ManifestError, validate

__all__ = [
    "FATBIN_SECTION",
    "FORMAT",
    "MANIFEST_SECTION",
    "SCALAR_TYPES",
    "SCHEMA",
    "VERSION",
    "BundleFile",
    "CpuCode",
    "GpuCode",
    "HostFunction",
    "Image",
    "ImageEntry",
    "Kernel",
    "Manifest",
    "ManifestError",
    "Module",
    "Options",
    "Param",
    "Site",
    "Specialization",
    "Variant",
    "bundle_filename",
    "dumps",
    "image_matches",
    "loads",
    "platform_tag",
    "read_bundle",
    "read_manifest",
    "source_sha256",
    "validate",
]


def platform_tag() -> str:
    machine = platform.machine().lower() or "unknown"
    return f"{sys.platform}_{machine}"


def bundle_filename(package: str) -> str:
    return f"{package}.{platform_tag()}.gpuaot.so"


def source_sha256(data: bytes) -> str:
    """A module's hash as the manifest records it: of its text, decoded as CPython decodes a
    source file (``importlib.util.decode_source``: a PEP 263 cookie or a UTF-8 BOM decides
    the encoding, UTF-8 otherwise; universal newlines), re-encoded as UTF-8. So a checkout
    with CRLF line ends is not stale, a latin-1 module hashes the same wherever it is read,
    and plain UTF-8 files hash as they always did. The compiler's ``ModuleInfo.sha256`` is
    this function. Never raises: a file CPython cannot decode hashes its raw bytes after a
    NUL, which no built module's text holds (Python refuses NUL in source), so it is stale."""
    import importlib.util  # stdlib; tokenize, which it uses, only on demand

    try:
        text = importlib.util.decode_source(data)
    except (SyntaxError, UnicodeError, LookupError):
        return hashlib.sha256(b"undecodable\0" + data).hexdigest()
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dumps(manifest: Manifest | dict) -> bytes:
    """The manifest's bytes: its JSON with sorted keys and no spaces."""
    m = manifest.to_json() if isinstance(manifest, Manifest) else manifest
    return json.dumps(m, sort_keys=True, separators=(",", ":")).encode("utf-8")


def read_manifest(data: bytes, fatbin_size: int | None) -> Manifest:
    """The manifest in ``data`` as dataclasses, after :func:`loads` has checked it."""
    return Manifest.from_json(loads(data, fatbin_size))


def loads(data: bytes, fatbin_size: int | None) -> dict:
    """The manifest in ``data`` as JSON, checked by :func:`validate`; raises
    :class:`ManifestError`."""
    try:
        m = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ManifestError(None, f"is not UTF-8 ({e.reason} at byte {e.start:,})") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, over-long ints, deep nesting
        raise ManifestError(None, f"is not valid JSON ({e})") from None
    return validate(m, fatbin_size)


# ---------------------------------------------------------------------- the bundle file


@dataclass(frozen=True)
class BundleFile:
    """A bundle whose ELF structure and manifest have been checked, read from the file."""

    path: str
    elf: Elf
    manifest: dict  # the checked JSON, as the section holds it
    fatbin: Section | None  # the .nv_fatbin section, where there is GPU code
    contents: Manifest = field(init=False, compare=False)  # the same, as dataclasses

    def __post_init__(self):
        object.__setattr__(self, "contents", Manifest.from_json(self.manifest))

    def image(self, index: int) -> bytes:
        """Image ``index`` as the file holds it: not yet checked (see :func:`image_matches`)."""
        image = self.contents.images[index]
        assert self.fatbin is not None  # validate() refuses images without the section
        with open(self.path, "rb") as f:
            return self.elf.read(f, self.fatbin, image.offset, image.size)


def read_bundle(path, *, machine: int | None = None) -> BundleFile:
    """Check the bundle at ``path`` (ELF structure, then manifest) without loading it.

    Raises :class:`DamagedBundle` (its subclasses ``ElfError``, :class:`ManifestError`), or
    ``OSError`` when the file cannot be read at all.
    """
    with open(path, "rb") as f:
        elf = check_elf(f, os.fstat(f.fileno()).st_size, machine=machine)
        sec = elf.sections.get(MANIFEST_SECTION)
        if sec is None:
            raise DamagedBundle(f"no {MANIFEST_SECTION} section: not a gpuaot bundle")
        data = elf.read(f, sec)
    fatbin = elf.sections.get(FATBIN_SECTION)
    manifest = loads(data.rstrip(b"\0"), fatbin.size if fatbin else None)
    want = platform_machine(manifest["platform"])
    if want is not None and want != elf.machine:
        raise DamagedBundle(
            f"its ELF header says {machine_name(elf.machine)}, but its manifest says "
            f"{manifest['platform']}"
        )
    return BundleFile(str(path), elf, manifest, fatbin)


def image_matches(image: Image, blob: bytes) -> bool:
    return hashlib.sha256(blob).hexdigest() == image.sha256


# ---------------------------------------------------------------------- the dataclasses


@dataclass(frozen=True)
class Site(Record):
    """Where a device exception can be raised: its id is its index in ``sites``."""

    type: str  # the Python exception's name: IndexError, or a package's class: pkg.errors.Bad
    message: str
    file: str  # from the directory that holds the package
    line: int
    base: str | None = optional()  # a package's class only: its nearest built-in base


@dataclass(frozen=True)
class Param(Record):
    """A parameter; ``abi`` is how it travels (``abi.array_abi`` / ``abi.scalar_abi``)."""

    name: str
    type: str  # f32, Array[f32, 2], Array[f32, 2, "A"]
    abi: tuple[str, ...]
    dtype: str | None = optional()  # arrays only
    ndim: int | None = optional()
    layout: str | None = optional()  # "C" or "A"

    @property
    def is_array(self) -> bool:
        return self.ndim is not None


@dataclass(frozen=True)
class CpuCode(Record):
    """A specialisation's CPU entry: its symbol in each CPU variant, by level."""

    symbols: dict[str, str]
    sites: tuple[Site, ...]


@dataclass(frozen=True)
class GpuCode(Record):
    symbol: str  # the .entry in the image
    image: int  # index in Manifest.images
    sites: tuple[Site, ...]
    # True: it has a grid barrier (this_grid().sync()), so it is launched cooperatively
    # (cuLaunchCooperativeKernel); absent otherwise.
    cooperative: bool | None = optional()


@dataclass(frozen=True)
class Specialization(Record):
    params: tuple[Param, ...]
    cpu: CpuCode | None  # None: --no-cpu, or GPU-only (then gpu_only says why)
    gpu: GpuCode | None
    gpu_only: str | None  # why the kernel has no CPU code, as a diagnostic


@dataclass(frozen=True)
class Kernel(Record):
    name: str
    module: str
    qualname: str
    specializations: tuple[Specialization, ...]


@dataclass(frozen=True)
class HostFunction(Record):
    name: str
    module: str
    qualname: str
    params: tuple[Param, ...]
    returns: str  # a scalar type, a tuple of them, or None
    symbols: dict[str, str]
    sites: tuple[Site, ...]


@dataclass(frozen=True)
class Module(Record):
    file: str  # from the directory that holds the package
    sha256: str  # source_sha256 of its text


@dataclass(frozen=True)
class Options(Record):
    debug: bool
    cpu: bool
    gpu: bool
    fma: bool | None = optional()  # written since fma=; not part of the schema


@dataclass(frozen=True)
class ImageEntry(Record):
    kind: str  # ptx, cubin
    arch: str
    size: int


@dataclass(frozen=True)
class Image(Record):
    """A device image: bytes ``[offset, offset + size)`` of the fatbin section."""

    kind: str  # fatbin
    offset: int
    size: int
    sha256: str
    entries: tuple[ImageEntry, ...]
    kernel: str | None = optional()  # the kernel and specialisation it was built for
    specialization: int | None = optional()


@dataclass(frozen=True)
class Manifest(Record):
    format: str
    version: int
    compiler: str
    package: str
    platform: str
    modules: dict[str, Module]
    options: Options
    cpu_variants: tuple[Variant, ...]
    kernels: tuple[Kernel, ...]
    host_functions: tuple[HostFunction, ...]
    architectures: tuple[str, ...]
    ptx_arch: str | None
    images: tuple[Image, ...]
