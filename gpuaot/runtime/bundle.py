"""Find and load a package's bundle; check it is whole and still matches the sources.

    b = load_bundle("example")      # cached per package
    b.contents.kernels[0].name      # the manifest (bundle.manifest's dataclasses)
    b.manifest["kernels"][0]["name"]   # the same, as its JSON
    b.lib                            # ctypes.CDLL of the host code
    b.image(0)                       # an embedded GPU image, sha256-checked

Before ``ctypes.CDLL`` maps the file, its ELF structure is checked from the file
(``bundle.elfcheck``: a segment past the end of the file would be a SIGBUS at the first
call) and the manifest is read from those bytes and checked against its schema
(``bundle.schema.validate``). A damaged bundle raises :class:`BundleError`, never a signal.
The GPU images are hashed lazily, once per image per process, when the GPU path first needs
one: CPU users do not pay for hashing the fatbin.

Imports ctypes, json, struct and hashlib only: the run-time path never imports a compiler.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from pathlib import Path

from ..bundle.elfcheck import DamagedBundle, host_machine
from ..bundle.manifest import (
    BundleFile,
    CpuCode,
    HostFunction,
    Manifest,
    bundle_filename,
    image_matches,
    read_bundle,
    source_sha256,
)
from .errors import BundleError, BundleNotFoundError, StaleBundleError

_loaded: dict[str, Bundle] = {}
_lock = threading.Lock()


class Bundle:
    def __init__(self, package: str, file: BundleFile, lib: ctypes.CDLL):
        self.package = package
        self.path = Path(file.path)
        self.file = file
        self.lib = lib
        self.manifest = file.manifest  # its JSON
        self.contents = contents = file.contents
        self.kernels = {k.qualname: k for k in contents.kernels}
        self.hosts = {h.qualname: h for h in contents.host_functions}
        self.functions: dict[str, object] = {}
        self.cpu_level: str | None = None  # the CPU variant bound, at the first CPU call
        self.gpu_modules: dict = {}  # CUDA context -> module, filled by runtime.cuda
        self._images: dict[int, bytes] = {}  # images whose sha256 matched, by index

    def symbol(self, name: str):
        fn = self.functions.get(name)
        if fn is None:
            try:
                fn = getattr(self.lib, name)
            except AttributeError:
                raise _damaged(
                    self.package,
                    self.path,
                    f"the manifest names symbol {name}, which the bundle does not define",
                ) from None
            fn.restype = None
            self.functions[name] = fn
        return fn

    def cpu_symbol(self, entry: CpuCode | HostFunction):
        """The function of ``entry`` (a specialisation's CPU code or a host function) in the
        variant this CPU runs, picked at the first call (raises ``UnsupportedCPUError``)."""
        level = self.cpu_level
        if level is None:
            from .cpu_variant import choose

            level = self.cpu_level = choose(self.package, self.contents.cpu_variants, self.lib)
        return self.symbol(entry.symbols[level])

    def image(self, index: int) -> bytes:
        """Image ``index`` of the fatbin, read from the file and checked against its sha256
        (once per process); what ``runtime.cuda`` hands to ``cuModuleLoadData``."""
        blob = self._images.get(index)
        if blob is not None:
            return blob
        image = self.contents.images[index]
        try:
            blob = self.file.image(index)
        except (DamagedBundle, OSError) as e:
            raise _damaged(self.package, self.path, f"cannot read image {index}: {e}") from None
        if not image_matches(image, blob):
            raise _damaged(
                self.package,
                self.path,
                f"image {index} ({image.size:,} bytes) does not match its recorded sha256 "
                f"{image.sha256[:16]}...",
            )
        self._images[index] = blob
        return blob


def _damaged(package: str, path, what: str) -> BundleError:
    return BundleError(
        f"damaged gpuaot bundle {path}: {what}; rebuild it with: gpuaot build {package}",
        name=package,
        path=str(path),
    )


def _package_dir(package: str) -> Path:
    mod = sys.modules.get(package)
    if mod is None or not getattr(mod, "__file__", None):
        raise BundleNotFoundError(f"package '{package}' is not imported; cannot locate its bundle")
    return Path(mod.__file__).resolve().parent


def bundle_path(package: str) -> Path:
    name = bundle_filename(package)
    env = os.environ.get("GPUAOT_BUNDLE_PATH")
    if env:
        p = Path(env)
        return p / name if p.is_dir() else p
    return _package_dir(package) / "_gpuaot" / name


def check_fresh(package: str, manifest: Manifest) -> None:
    root = _package_dir(package).parent
    for info in sorted(manifest.modules.values(), key=lambda i: i.file):
        path = root / info.file
        try:
            data = path.read_bytes()
        except OSError:
            raise StaleBundleError(
                f"the {package} bundle was built with {info.file}, which is gone; "
                f"rebuild with: gpuaot build {package}"
            ) from None
        try:
            fresh = source_sha256(data) == info.sha256
        except UnicodeDecodeError:
            fresh = False
        if not fresh:
            raise StaleBundleError(
                f"the {package} bundle is stale: {info.file} changed since it was built; "
                f"rebuild with: gpuaot build {package}"
            )


def load_bundle(package: str) -> Bundle:
    b = _loaded.get(package)
    if b is not None:
        return b
    with _lock:
        if package in _loaded:
            return _loaded[package]
        path = bundle_path(package)
        if not path.is_file():
            raise BundleNotFoundError(
                f"no gpuaot bundle for '{package}' on this platform (looked for {path}); "
                f"build it with: gpuaot build {package}"
            )
        try:
            file = read_bundle(path, machine=host_machine())
        except DamagedBundle as e:
            raise _damaged(package, path, str(e)) from None
        except OSError as e:
            raise _damaged(package, path, f"cannot read it ({e.strerror or e})") from None
        manifest = file.contents
        if manifest.package != package:
            raise BundleNotFoundError(
                f"{path} is the bundle of '{manifest.package}', not '{package}'"
            )
        check_fresh(package, manifest)
        try:
            lib = ctypes.CDLL(str(path), mode=os.RTLD_NOW | os.RTLD_LOCAL)
        except OSError as e:
            raise _damaged(package, path, f"the dynamic loader refused it ({e})") from None
        b = _loaded[package] = Bundle(package, file, lib)
        return b


def forget(package: str | None = None) -> None:
    """Drop loaded bundles (tests rebuild bundles in one process)."""
    if package is None:
        _loaded.clear()
    else:
        _loaded.pop(package, None)
