"""Find and load a package's bundle; check it still matches the sources.

    b = load_bundle("example")      # cached per package
    b.manifest["kernels"][0]["name"]
    b.lib                            # ctypes.CDLL of the host code

Imports ctypes, json and hashlib only: the run-time path never imports a compiler.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from pathlib import Path

from ..bundle.manifest import bundle_filename, loads, source_sha256
from .errors import BundleNotFoundError, StaleBundleError

_loaded: dict[str, Bundle] = {}
_lock = threading.Lock()


class Bundle:
    def __init__(self, package: str, path: Path, lib: ctypes.CDLL, manifest: dict):
        self.package = package
        self.path = path
        self.lib = lib
        self.manifest = manifest
        self.kernels = {k["qualname"]: k for k in manifest["kernels"]}
        self.hosts = {h["qualname"]: h for h in manifest["host_functions"]}
        self.functions: dict[str, object] = {}
        self.cpu_level: str | None = None  # the CPU variant bound, at the first CPU call
        self.gpu_modules: dict = {}  # CUDA context -> module, filled by runtime.cuda

    def symbol(self, name: str):
        fn = self.functions.get(name)
        if fn is None:
            fn = getattr(self.lib, name)
            fn.restype = None
            self.functions[name] = fn
        return fn

    def cpu_symbol(self, entry: dict):
        """The function of ``entry`` (a manifest ``cpu`` or host entry) in the variant this
        CPU runs, picked at the first call (raises ``UnsupportedCPUError``)."""
        level = self.cpu_level
        if level is None:
            from .cpu_variant import choose

            level = self.cpu_level = choose(self.package, self.manifest, self.lib)
        return self.symbol(entry["symbols"][level])

    def fatbin(self) -> bytes:
        try:
            size = ctypes.c_uint64.in_dll(self.lib, "gpuaot_fatbin_size").value
            addr = ctypes.addressof(ctypes.c_char.in_dll(self.lib, "gpuaot_fatbin"))
        except ValueError:
            return b""
        return ctypes.string_at(addr, size)


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


def read_manifest(lib: ctypes.CDLL) -> dict:
    size = ctypes.c_uint64.in_dll(lib, "gpuaot_manifest_size").value
    addr = ctypes.addressof(ctypes.c_char.in_dll(lib, "gpuaot_manifest"))
    return loads(ctypes.string_at(addr, size))


def check_fresh(package: str, manifest: dict) -> None:
    root = _package_dir(package).parent
    for info in sorted(manifest["modules"].values(), key=lambda i: i["file"]):
        path = root / info["file"]
        try:
            data = path.read_bytes()
        except OSError:
            raise StaleBundleError(
                f"the {package} bundle was built with {info['file']}, which is gone; "
                f"rebuild with: gpuaot build {package}"
            ) from None
        try:
            fresh = source_sha256(data) == info["sha256"]
        except UnicodeDecodeError:
            fresh = False
        if not fresh:
            raise StaleBundleError(
                f"the {package} bundle is stale: {info['file']} changed since it was built; "
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
            lib = ctypes.CDLL(str(path), mode=os.RTLD_NOW | os.RTLD_LOCAL)
            manifest = read_manifest(lib)
        except (OSError, ValueError) as e:
            raise BundleNotFoundError(
                f"cannot load the gpuaot bundle {path}: {e}; rebuild with: gpuaot build {package}"
            ) from None
        if manifest["package"] != package:
            raise BundleNotFoundError(
                f"{path} is the bundle of '{manifest['package']}', not '{package}'"
            )
        check_fresh(package, manifest)
        b = _loaded[package] = Bundle(package, path, lib, manifest)
        return b


def forget(package: str | None = None) -> None:
    """Drop loaded bundles (tests rebuild bundles in one process)."""
    if package is None:
        _loaded.clear()
    else:
        _loaded.pop(package, None)
