"""The bundle manifest: UTF-8 JSON in the ``.gpuaot.manifest`` section (SPEC §4).

    {"format": "gpuaot-bundle", "version": 1, "compiler": "gpuaot 0.1.0; ...",
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
     "images": [{"kind": "fatbin", "size": …, "sha256": "…", "entries": […]}]}

Serialised with sorted keys and no timestamps so that two builds give identical bytes. The
run time reads it with :func:`loads` (json only: no compiler imports).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys

FORMAT = "gpuaot-bundle"
VERSION = 2  # 2: CPU variants (cpu_variants; per-level symbols)


def platform_tag() -> str:
    machine = platform.machine().lower() or "unknown"
    return f"{sys.platform}_{machine}"


def bundle_filename(package: str) -> str:
    return f"{package}.{platform_tag()}.gpuaot.so"


def source_sha256(data: bytes) -> str:
    """A module's hash as the manifest records it: of its text, read as Python reads source
    files (UTF-8, universal newlines), so a checkout with CRLF line ends is not stale."""
    text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dumps(manifest: dict) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("utf-8")


def loads(data: bytes) -> dict:
    m = json.loads(data.decode("utf-8"))
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ValueError("not a gpuaot manifest")
    if m.get("version") != VERSION:
        raise ValueError(f"manifest version {m.get('version')} (this gpuaot reads {VERSION})")
    return m
