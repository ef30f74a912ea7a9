"""``gpuaot inspect BUNDLE``: what a bundle holds, read from its ELF sections (no dlopen).

$ gpuaot inspect example/_gpuaot/example.linux_x86_64.gpuaot.so
example (linux_x86_64), gpuaot 0.1.0; llvmlite 0.50.0; LLVM 22.1.0
architectures: sm_75 sm_80 sm_90 (PTX for sm_75)
cpu variants: x86-64-v2 x86-64-v3 x86-64-v4
kernel example.kernels.saxpy(a: f32, x: Array[f32, 1], ...)   cpu gpu[0]
...
image 0: fatbin 12,345 bytes sha256 ab12…  PTX sm_75, ELF sm_75, ELF sm_80, ELF sm_90

The bundle is checked as the run time checks it (``elfcheck``, ``manifest.validate``): a
damaged one is one line and exit code 2, an image whose sha256 does not match is listed with
HASH MISMATCH and makes the exit code 1.

$ gpuaot inspect cut/example.linux_x86_64.gpuaot.so; echo $?
error: cut/example.linux_x86_64.gpuaot.so: truncated: segment 1 (PT_LOAD) holds bytes
4,096..48,209 but the file has 40,000; rebuild it with: gpuaot build example
2
"""

from __future__ import annotations

import os

from ..errors import GpuaotError
from ..runtime.errors import BundleError
from ..textsafe import printable
from . import manifest as mf
from .elfcheck import DamagedBundle


class BadBundle(GpuaotError, BundleError):
    """An unreadable or damaged bundle: exit code 2, one line naming the file.

    A ``BundleError`` too, so that code reading bundles catches one class for both the
    run time and this reader."""

    exit_code = 2


def read_bundle_manifest(path: str) -> dict:
    """The bundle's manifest as the JSON that ``inspect --json`` prints (and ``check-wheel``
    reads), read from its ELF sections without loading it and checked as the run time checks
    it; each image gets ``verified``: whether its sha256 matches."""
    try:
        bundle = mf.read_bundle(path)
        for n, image in enumerate(bundle.contents.images):
            bundle.manifest["images"][n]["verified"] = mf.image_matches(image, bundle.image(n))
    except FileNotFoundError:
        raise BadBundle(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadBundle(f"{path}: is a directory; give the bundle .so inside _gpuaot/") from None
    except DamagedBundle as e:
        raise BadBundle(f"{path}: {e}; rebuild it with: gpuaot build {_package(path)}") from None
    except OSError as e:
        raise BadBundle(f"{path}: cannot read it ({e.strerror or e})") from None
    return bundle.manifest


def _package(path: str) -> str:
    """The package a bundle file is named for (``PKG.<platform>.gpuaot.so``)."""
    name = os.path.basename(path)
    return name.split(".")[0] if name.endswith(".gpuaot.so") else "PKG"


def hash_mismatches(path: str, m: dict) -> list[str]:
    """One line per image of ``m`` whose sha256 does not match (exit code 1 of inspect)."""
    return [
        f"error: {path}: image {n} ({image['size']:,} bytes) does not match its recorded "
        f"sha256; the bundle was altered after it was built; rebuild it with: "
        f"gpuaot build {m['package']}"
        for n, image in enumerate(m["images"])
        if not image.get("verified", True)
    ]


def _signature(params) -> str:
    return ", ".join(f"{p['name']}: {p['type']}" for p in params or [])


def _cpu_lines(variants: list[dict], verbose: int) -> list[str]:
    if not variants:
        return ["cpu variants: none (GPU only)"]
    names = " ".join(v["level"] for v in variants)
    lines = [f"cpu variants: {names}"]
    for v in variants:
        if not v["portable"]:
            lines.append(
                f"  NON-PORTABLE: the {v['level']} variant is for this build machine's CPU "
                f"({v['cpu']}); do not ship it"
            )
        if verbose:
            feats = f" features {v['features']}" if v["features"] else ""
            lines.append(
                f"  {v['level']}: cpu {v['cpu']}{feats}; symbols *.{v['tag']}; "
                f"requires {' '.join(v['requires']) or 'nothing'}"
            )
    return lines


def describe(m: dict, verbose: int = 0) -> str:
    """The text ``gpuaot inspect`` prints: one line per kernel, host function, image, ...

    Every string in it comes from the manifest (names, files, messages), so each line is
    escaped (:func:`gpuaot.textsafe.printable`): a hostile manifest cannot reach the terminal.
    """
    lines = [f"{m['package']} ({m['platform']}), {m['compiler']}"]
    if m["architectures"]:
        lines.append(f"architectures: {' '.join(m['architectures'])} (PTX for {m['ptx_arch']})")
    else:
        lines.append("architectures: none (CPU only)")
    lines.extend(_cpu_lines(m.get("cpu_variants") or [], verbose))
    for k in m["kernels"]:
        for s in k["specializations"]:
            where = []
            if s["cpu"]:
                where.append("cpu")
            if s["gpu"]:
                where.append(f"gpu[image {s['gpu']['image']}]")
            if s["gpu_only"]:
                where.append("gpu-only")
            lines.append(f"kernel {k['qualname']}({_signature(s['params'])})  {' '.join(where)}")
            if verbose and s["gpu_only"]:
                lines.append(f"    gpu-only: {s['gpu_only']}")
            if verbose:
                for site in (s["cpu"] or s["gpu"] or {}).get("sites", []):
                    lines.append(f"    raises {site['type']} at {site['file']}:{site['line']}")
    for h in m["host_functions"]:
        lines.append(f"host {h['qualname']}({_signature(h['params'])}) -> {h['returns']}")
    for n, image in enumerate(m["images"]):
        entries = ", ".join(f"{e['kind']} {e['arch']}" for e in image["entries"])
        ok = "" if image.get("verified", True) else "  HASH MISMATCH"
        lines.append(
            f"image {n}: {image['kind']} {image['size']:,} bytes sha256 "
            f"{image['sha256'][:16]}…  {entries}{ok}"
        )
    if verbose:
        for name, mod in sorted(m["modules"].items()):
            lines.append(f"module {name}: {mod['file']} sha256 {mod['sha256'][:16]}…")
    return "\n".join(printable(line) for line in lines)
