"""``gpuaot inspect BUNDLE``: what a bundle holds, read from its ELF sections (no dlopen).

$ gpuaot inspect example/_gpuaot/example.linux_x86_64.gpuaot.so
example (linux_x86_64), gpuaot 0.1.0; llvmlite 0.50.0; LLVM 22.1.0
architectures: sm_75 sm_80 sm_90 (PTX for sm_75)
cpu variants: x86-64-v2 x86-64-v3 x86-64-v4
kernel example.kernels.saxpy(a: f32, x: Array[f32, 1], ...)   cpu gpu[0]
...
image 0: fatbin 12,345 bytes sha256 ab12…  PTX sm_75, ELF sm_75, ELF sm_80, ELF sm_90
"""

from __future__ import annotations

import hashlib

from ..errors import GpuaotError
from . import manifest as mf

MANIFEST_SECTION = ".gpuaot.manifest"
FATBIN_SECTION = ".nv_fatbin"


class BadBundle(GpuaotError):
    exit_code = 2


def _sections(path: str) -> dict[str, bytes]:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            out = {}
            for name in (MANIFEST_SECTION, FATBIN_SECTION):
                sec = elf.get_section_by_name(name)
                if sec is not None:
                    out[name] = sec.data()
            return out
    except FileNotFoundError:
        raise BadBundle(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadBundle(f"{path}: is a directory; give the bundle .so inside _gpuaot/") from None
    except (ELFError, OSError, ValueError) as e:
        raise BadBundle(f"{path}: not a readable ELF file ({e})") from None


def read_bundle_manifest(path: str) -> dict:
    sections = _sections(path)
    data = sections.get(MANIFEST_SECTION)
    if data is None:
        raise BadBundle(f"{path}: not a gpuaot bundle (no {MANIFEST_SECTION} section)")
    try:
        manifest = mf.loads(data.rstrip(b"\0"))
    except (ValueError, UnicodeDecodeError) as e:
        raise BadBundle(f"{path}: unreadable manifest: {e}") from None
    fatbin = sections.get(FATBIN_SECTION, b"")
    for image in manifest.get("images", []):
        blob = fatbin[image["offset"] : image["offset"] + image["size"]]
        image["verified"] = hashlib.sha256(blob).hexdigest() == image["sha256"]
    return manifest


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
    return "\n".join(lines)
