"""The one writer of a bundle's manifest (its reader and schema are ``bundle/manifest.py``).

    manifest = make_manifest(pkg, opts, cpu_units, gpu_units, gpu_only, images, variants)

File names are recorded relative to the package's parent (never absolute, never the build's
working directory), so a bundle describes itself the same wherever it was built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..bundle import cpus
from ..bundle import manifest as mf
from .cache import compiler_version

if TYPE_CHECKING:
    from .discover import FuncInfo, Package
    from .driver import BuildOptions, Unit
    from .frontend.typed import RaiseSite


def _package_file(pkg: Package, m) -> str:
    """A module's path as the bundle records it: from the package's parent, never absolute."""
    return f"{pkg.name}/{m.path.relative_to(pkg.root).as_posix()}"


def _portable(pkg: Package, text: str) -> str:
    """Diagnostics name files as the build's working directory sees them; bundles must not."""
    for m in sorted(pkg.modules.values(), key=lambda m: -len(m.relpath)):
        text = text.replace(m.relpath + ":", _package_file(pkg, m) + ":")
    return text


def _site_json(pkg: Package, sites: list[RaiseSite]) -> list[dict]:
    by_display = {m.relpath: m for m in pkg.modules.values()}
    out = []
    for s in sites:
        m = by_display.get(s.file)
        file = _package_file(pkg, m) if m else s.file
        out.append({"type": s.exc_type, "message": s.message, "file": file, "line": s.line})
    return out


def _params_json(func: FuncInfo, types) -> list[dict]:
    from ..lang.types import ArrayType
    from .lower.emitter import flat_types

    out = []
    for a, t in zip(func.params, types):
        entry = {"name": a.arg, "type": t.name, "abi": flat_types(t)}
        if isinstance(t, ArrayType):
            entry.update(dtype=t.dtype.name, ndim=t.ndim, layout=t.layout)
        out.append(entry)
    return out


def _variant_symbols(base: str, variants: list[cpus.Variant]) -> dict[str, str]:
    return {v.level: v.symbol(base) for v in variants}


def make_manifest(
    pkg: Package,
    opts: BuildOptions,
    cpu_units: list[Unit],
    gpu_units: list[Unit],
    gpu_only: dict,
    images: list[dict],
    variants: list[cpus.Variant],
) -> dict:
    kernels: dict[str, dict] = {}
    hosts = []
    cpu_by = {(u.func.qualname, u.spec): u for u in cpu_units}
    gpu_by = {(u.func.qualname, u.spec): u for u in gpu_units}
    keys = sorted(set(cpu_by) | set(gpu_by) | set(gpu_only))
    for qualname, spec in keys:
        u = cpu_by.get((qualname, spec)) or gpu_by.get((qualname, spec))
        func = u.func if u else pkg.function(qualname)
        if func.kind == "host":
            hosts.append(
                {
                    "name": func.name,
                    "module": func.module.name,
                    "qualname": qualname,
                    "params": _params_json(func, u.tf.arg_types),
                    "returns": u.tf.return_type.name,
                    "symbols": _variant_symbols(u.symbol, variants),
                    "sites": _site_json(pkg, u.sites),
                }
            )
            continue
        entry = kernels.setdefault(
            qualname,
            {
                "name": func.name,
                "module": func.module.name,
                "qualname": qualname,
                "specializations": [],
            },
        )
        types = u.tf.arg_types if u else None
        spec_json = {
            "params": _params_json(func, types) if types else None,
            "cpu": None,
            "gpu": None,
            "gpu_only": None,
        }
        if (qualname, spec) in cpu_by:
            c = cpu_by[(qualname, spec)]
            spec_json["cpu"] = {
                "symbols": _variant_symbols(c.symbol, variants),
                "sites": _site_json(pkg, c.sites),
            }
        if (qualname, spec) in gpu_only:
            err, types = gpu_only[(qualname, spec)]
            spec_json["gpu_only"] = _portable(
                pkg, f"{err.loc}: {err.message}" + "".join(f"; {n}" for n in err.notes)
            )
            if spec_json["params"] is None:
                spec_json["params"] = _params_json(func, types)
        if (qualname, spec) in gpu_by:
            g = gpu_by[(qualname, spec)]
            spec_json["gpu"] = {
                "symbol": g.symbol,
                "image": g.image,
                "sites": _site_json(pkg, g.sites),
            }
            if spec_json["params"] is None:
                spec_json["params"] = _params_json(func, g.tf.arg_types)
        entry["specializations"].append(spec_json)
    return {
        "format": mf.FORMAT,
        "version": mf.VERSION,
        "compiler": compiler_version(),
        "package": pkg.name,
        "platform": mf.platform_tag(),
        "modules": {
            m.name: {"file": _package_file(pkg, m), "sha256": m.sha256}
            for m in pkg.modules.values()
        },
        "options": {"debug": opts.debug, "cpu": opts.cpu, "gpu": opts.gpu, "fma": opts.fma},
        "cpu_variants": [v.to_json() for v in variants] if cpu_units else [],
        "kernels": [kernels[k] for k in sorted(kernels)],
        "host_functions": sorted(hosts, key=lambda h: h["qualname"]),
        "architectures": opts.archs if gpu_units else [],
        "ptx_arch": opts.archs[0] if gpu_units else None,
        "images": images,
    }
