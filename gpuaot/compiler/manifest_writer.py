"""The one writer of a bundle's manifest: ``bundle/manifest.py``'s dataclasses, built from
the build's units (their reader is ``read_bundle`` there, their schema ``bundle/schema.py``).

    manifest = make_manifest(pkg, opts, cpu_units, gpu_units, gpu_only, images, variants)
    data = mf.dumps(manifest)        # the section's bytes; manifest.to_json(): its JSON

File names are recorded relative to the package's parent (never absolute, never the build's
working directory), so a bundle describes itself the same wherever it was built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..bundle import abi, cpus
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


def _sites(pkg: Package, sites: list[RaiseSite]) -> tuple[mf.Site, ...]:
    by_display = {m.relpath: m for m in pkg.modules.values()}
    out = []
    for s in sites:
        m = by_display.get(s.file)
        file = _package_file(pkg, m) if m else s.file
        site = mf.Site(type=s.exc_type, message=s.message, file=file, line=s.line, base=s.base)
        out.append(site)
    return tuple(out)


def _params(func: FuncInfo, types) -> tuple[mf.Param, ...]:
    from ..lang.types import ArrayType

    out = []
    for a, t in zip(func.params, types):
        if isinstance(t, ArrayType):
            out.append(
                mf.Param(
                    a.arg,
                    t.name,
                    tuple(abi.array_abi(t.ndim, t.layout)),
                    dtype=t.dtype.name,
                    ndim=t.ndim,
                    layout=t.layout,
                )
            )
        else:
            out.append(mf.Param(a.arg, t.name, tuple(abi.scalar_abi(t.name))))
    return tuple(out)


def _variant_symbols(base: str, variants: list[cpus.Variant]) -> dict[str, str]:
    return {v.level: v.symbol(base) for v in variants}


def _cooperative(unit) -> bool | None:
    """True where the kernel (or a helper it calls) has a grid barrier; else None (absent)."""
    from .ops.warp import GRID_SYNC  # (lazily: a no-op build loads no operation)

    return True if GRID_SYNC in unit.tf.uses else None


def _specialization(pkg: Package, func, key, cpu_by, gpu_by, gpu_only, variants):
    """One kernel specialisation. Its parameters come from the first target that typed it:
    the CPU, the GPU, or the CPU typing that found it GPU-only."""
    c, g = cpu_by.get(key), gpu_by.get(key)
    typed = [u.tf.arg_types for u in (c, g) if u is not None]
    reason = None
    if key in gpu_only:
        err, types = gpu_only[key]
        reason = _portable(pkg, f"{err.loc}: {err.message}" + "".join(f"; {n}" for n in err.notes))
        typed.append(types)
    return mf.Specialization(
        params=_params(func, typed[0]),
        cpu=mf.CpuCode(_variant_symbols(c.symbol, variants), _sites(pkg, c.sites)) if c else None,
        gpu=mf.GpuCode(g.symbol, g.image, _sites(pkg, g.sites), _cooperative(g)) if g else None,
        gpu_only=reason,
    )


def make_manifest(
    pkg: Package,
    opts: BuildOptions,
    cpu_units: list[Unit],
    gpu_units: list[Unit],
    gpu_only: dict,
    images: list[mf.Image],
    variants: list[cpus.Variant],
) -> mf.Manifest:
    kernels: dict[str, tuple] = {}  # qualname -> (its FuncInfo, its specialisations)
    hosts = []
    cpu_by = {(u.func.qualname, u.spec): u for u in cpu_units}
    gpu_by = {(u.func.qualname, u.spec): u for u in gpu_units}
    for key in sorted(set(cpu_by) | set(gpu_by) | set(gpu_only)):
        u = cpu_by.get(key) or gpu_by.get(key)
        func = u.func if u else pkg.function(key[0])
        if func.kind == "host":
            hosts.append(
                mf.HostFunction(
                    name=func.name,
                    module=func.module.name,
                    qualname=key[0],
                    params=_params(func, u.tf.arg_types),
                    returns=u.tf.return_type.name,
                    symbols=_variant_symbols(u.symbol, variants),
                    sites=_sites(pkg, u.sites),
                )
            )
            continue
        first, specs = kernels.setdefault(key[0], (func, []))
        specs.append(_specialization(pkg, first, key, cpu_by, gpu_by, gpu_only, variants))
    return mf.Manifest(
        format=mf.FORMAT,
        version=mf.VERSION,
        compiler=compiler_version(),
        package=pkg.name,
        platform=mf.platform_tag(),
        modules={m.name: mf.Module(_package_file(pkg, m), m.sha256) for m in pkg.modules.values()},
        options=mf.Options(debug=opts.debug, cpu=opts.cpu, gpu=opts.gpu, fma=opts.fma),
        cpu_variants=tuple(variants) if cpu_units else (),
        kernels=tuple(
            mf.Kernel(f.name, f.module.name, q, tuple(specs))
            for q, (f, specs) in sorted(kernels.items())
        ),
        host_functions=tuple(sorted(hosts, key=lambda h: h.qualname)),
        architectures=tuple(opts.archs) if gpu_units else (),
        ptx_arch=opts.archs[0] if gpu_units else None,
        images=tuple(images),
    )
