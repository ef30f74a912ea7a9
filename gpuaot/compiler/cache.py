"""Content-addressed compilation cache, one namespace per target and architecture.

    cache = Cache(root)
    key = cache.key("host", ir_text, options)          # sha256 of everything that matters
    obj = cache.get("host", key)                       # bytes, or None on a miss / corruption
    cache.put("host", key, obj)                        # atomic: temp file + rename

The key hashes the lowered IR itself (which already reflects every callee, overlay, constant
and specialisation type), the target, architecture, options and the compiler's version, so an
edit recompiles exactly the units whose IR changed (DESIGN invariant 3). Host and device
entries never share a directory. Each entry carries its own sha256; a corrupt or truncated
entry is rebuilt, not trusted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path

from .. import __version__


def compiler_version() -> str:
    import llvmlite
    import llvmlite.binding as llvm

    v = ".".join(str(x) for x in llvm.llvm_version_info)
    return f"gpuaot {__version__}; llvmlite {llvmlite.__version__}; LLVM {v}"


def default_cache_dir() -> Path:
    env = os.environ.get("GPUAOT_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("gpuaot"))


class Cache:
    def __init__(self, root: str | os.PathLike | None):
        self.root = Path(root) if root is not None else default_cache_dir()

    @functools.cached_property
    def version(self) -> str:
        """On first use: reading LLVM's version loads it, which a no-op build never needs."""
        return compiler_version()

    def key(self, namespace: str, payload: str, options: dict) -> str:
        h = hashlib.sha256()
        h.update(
            json.dumps(
                {"ns": namespace, "v": self.version, "opts": options}, sort_keys=True
            ).encode()
        )
        h.update(b"\0")
        h.update(payload.encode())
        return h.hexdigest()

    def _path(self, namespace: str, key: str) -> Path:
        return self.root / namespace / key[:2] / key

    def get(self, namespace: str, key: str) -> bytes | None:
        path = self._path(namespace, key)
        try:
            blob = path.read_bytes()
        except OSError:
            return None
        digest, sep, data = blob.partition(b"\n")
        if not sep or hashlib.sha256(data).hexdigest().encode() != digest:
            try:
                path.unlink()  # corrupt: rebuild
            except OSError:
                pass
            return None
        return data

    def put(self, namespace: str, key: str, data: bytes) -> None:
        path = self._path(namespace, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(hashlib.sha256(data).hexdigest().encode() + b"\n" + data)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only or full cache slows builds down; it never fails them
