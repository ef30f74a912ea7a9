"""The build record: "up to date" decided from bytes and options, before typing anything.

    rec = BuildRecord(opts, bundle_path)          # fingerprints the inputs: stat + read, no LLVM
    hit = rec.lookup()                            # the recorded build, or None
    if hit is None:
        ...full build...
        rec.save(module_bytes, bundle_path, manifest, objects)

A record lives in the cache (namespace ``records``, one entry per package root and bundle
path, written atomically and checked like every entry) and holds the **inputs** of the last
successful build and its **output**:

- inputs: every :class:`~gpuaot.compiler.driver.BuildOptions` field but ``jobs`` and
  ``cache_dir`` (by ``repr``, so a field added later counts without a change here), the
  package's ``[tool.gpuaot]`` table, the sha256 of every file of the compiler's own source
  tree (the version string alone would miss an edit of the compiler), ``$CC``, and a stamp
  (path, size, mtime) of each tool and library whose output lands in the bundle: llvmlite's
  ``libllvmlite`` (LLVM) and version file, the C compiler and ``ld``, pyelftools (the leak
  gate) and, building for the GPU, ptxas, libdevice and nvFatbin, and the targets registered
  (``targets.describe``: a target a test swaps in is another build). Stamps, not hashes, for
  the tools: ccache's default ``compiler_check = mtime`` makes the same bet; an upgrade
  rewrites the files. ``native`` asks LLVM for the host CPU (the one case that loads it);
- the sources: the sha256 of every file discovery reads (raw bytes: a CRLF checkout counts);
- the output: the bundle's path, size and sha256, the manifest and the object count.

:meth:`lookup` answers only when all of it matches and the bundle on disk hashes to the
recorded sha256, so it never skips a build that would write different bytes. Only a build
that passed the leak gate is recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, fields
from pathlib import Path

RECORD_VERSION = 1
NAMESPACE = "records"
# Options that change how a build runs, never what it writes.
NOT_INPUTS = ("jobs", "cache_dir")
_GPUAOT_DIR = Path(__file__).resolve().parents[1]


@dataclass
class Hit:
    manifest: dict
    objects: int  # compiled + cached of the build recorded


def _sha256_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def package_files(root: Path) -> dict[str, str]:
    """``{path relative to root: sha256}`` of every file discovery reads."""
    from .discover import _python_files

    out = {}
    for path in _python_files(root):
        out[path.relative_to(root).as_posix()] = _sha256_file(path)
    return out


def _compiler_sources() -> str:
    """One sha256 over the compiler's own source files (``gpuaot/**.py``)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(_GPUAOT_DIR):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for f in sorted(filenames):
            if f.endswith(".py"):
                p = Path(dirpath, f)
                h.update(p.relative_to(_GPUAOT_DIR).as_posix().encode() + b"\0")
                h.update((_sha256_file(p) or "missing").encode() + b"\0")
    return h.hexdigest()


def file_stamp(path: str | os.PathLike | None) -> list | None:
    """``[real path, size, mtime_ns]`` of a file, or None where there is none."""
    if path is None:
        return None
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    return [real, st.st_size, st.st_mtime_ns]


def _installed(*globs: str) -> list:
    """Stamps of the files each glob names under the first ``sys.path`` entry that has
    them: where an import would find them, without importing anything."""
    out = []
    for rel in globs:
        for d in sys.path:
            found = sorted(Path(d or ".").glob(rel))
            if found:
                out += [file_stamp(p) for p in found]
                break
    return out


def cc_stamps() -> dict:
    """Which C compiler builds: ``$CC`` as set, and a stamp of the program it runs."""
    cc = os.environ.get("CC") or "cc"
    return {"CC": os.environ.get("CC"), "cc": file_stamp(shutil.which(cc.split()[0]))}


def _tool_stamps(gpu: bool) -> dict:
    stamps = {
        **cc_stamps(),
        "ld": file_stamp(shutil.which("ld")),
        "llvmlite": _installed("llvmlite/_version.py", "llvmlite/binding/libllvmlite*"),
        "elftools": _installed("elftools/__init__.py"),
    }
    if gpu:
        stamps["nvcc"] = _installed(
            "nvidia/cuda_nvcc/bin/ptxas*", "nvidia/cuda_nvcc/nvvm/libdevice/*.bc"
        )
        stamps["nvfatbin"] = _installed(
            "nvidia/nvfatbin/lib/*", "cuda/bindings/_version.py", "cuda/bindings/nvfatbin*"
        )
    return stamps


def _native_cpu() -> list[str]:
    """LLVM's name and features of this CPU: what a ``native`` variant is compiled for."""
    import llvmlite.binding as llvm

    return [llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()]


def _registered_targets() -> dict | None:
    """The target registry where a caller changed it (a test's target), else None. Asked
    only where ``targets`` is loaded: where it is not, nothing changed it, and a no-op
    build must not load it."""
    targets = sys.modules.get("gpuaot.compiler.targets")
    return targets.describe() if targets is not None else None


def build_inputs(opts) -> dict:
    """Everything besides the package's sources that decides the bundle's bytes."""
    from .settings import project_settings

    options = {
        f.name: repr(getattr(opts, f.name)) for f in fields(opts) if f.name not in NOT_INPUTS
    }
    inputs = {
        "record": RECORD_VERSION,
        "options": options,
        "settings": json.dumps(project_settings(opts.root), sort_keys=True, default=repr),
        "compiler": _compiler_sources(),
        "python": sys.version,
        "tools": _tool_stamps(opts.gpu),
        "targets": _registered_targets(),
    }
    if any(lv == "native" for lv in opts.cpu_levels) and opts.cpu:
        inputs["native"] = _native_cpu()
    return inputs


class BuildRecord:
    def __init__(self, opts, bundle: Path, cache):
        self.opts = opts
        self.bundle = Path(bundle)
        self.cache = cache
        where = f"{opts.root}\0{os.path.abspath(self.bundle)}"
        self.key = hashlib.sha256(where.encode()).hexdigest()
        self.inputs = build_inputs(opts)  # before the build: what it was built from

    def lookup(self) -> Hit | None:
        blob = self.cache.get(NAMESPACE, self.key)
        if blob is None:
            return None
        try:
            rec = json.loads(blob)
        except ValueError:
            return None
        if rec.get("inputs") != json.loads(json.dumps(self.inputs)):
            return None
        out = rec["bundle"]
        try:
            if os.stat(self.bundle).st_size != out["size"]:
                return None
        except OSError:
            return None
        if rec["sources"] != package_files(self.opts.root):
            return None
        if _sha256_file(self.bundle) != out["sha256"]:
            return None
        return Hit(rec["manifest"], rec["objects"])

    def save(
        self, sources: dict[str, bytes], size: int, sha256: str, manifest: dict, objects: int
    ) -> None:
        """Record a build that passed its leak gate: ``sources`` are the bytes it compiled,
        ``size`` and ``sha256`` those of the bundle it linked (hashed before the rename into
        place, so a concurrent build's bundle is never recorded as this one's)."""
        rec = {
            "inputs": self.inputs,
            "sources": {rel: hashlib.sha256(b).hexdigest() for rel, b in sources.items()},
            "bundle": {"path": str(self.bundle), "size": size, "sha256": sha256},
            "manifest": manifest,
            "objects": objects,
        }
        self.cache.put(NAMESPACE, self.key, json.dumps(rec, sort_keys=True).encode())


__all__ = ["BuildRecord", "Hit", "build_inputs", "package_files"]
