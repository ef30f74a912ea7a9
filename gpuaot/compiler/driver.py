"""The build: discover → type → lower → compile (cached) → bundle → leak check.

    opts = BuildOptions.resolve("fixtures/example")
    result = build_package(opts)
    result.bundle      # PKG/_gpuaot/example.linux_x86_64.gpuaot.so
    result.compiled, result.cached

The driver loops over the targets the options select (``targets.select``: a ``Target`` per
kind of code, host first) and knows none of them by name: each types the package with its
method table, lowers and compiles its units through the cache, and hands back host objects
to link or a device image to embed. ``gpuaot emit --stage ir|opt|asm|ptx`` prints one unit
at any printable stage of a target's stage table (:func:`emit_function`).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..bundle import cpus
from ..bundle import manifest as mf
from ..errors import BuildError, CompileError, CompileErrors, Diagnostics, UsageError
from .cache import Cache
from .discover import FuncInfo, Package, discover, find_package
from .manifest_writer import make_manifest
from .settings import check_writable_package, project_settings

if TYPE_CHECKING:
    from ..lang.types import Type
    from .targets.base import Target, Unit

# The typer, the lowering, the targets and llvmlite are imported where they are used, not
# here: a no-op build (answered by the build record, ``record.py``) loads none of them.

DEFAULT_ARCHS = ("sm_75", "sm_80", "sm_90")


@dataclass
class BuildOptions:
    package: str
    name: str
    root: Path
    archs: list[str]
    out_dir: Path
    cache_dir: str | None
    jobs: int
    debug: bool
    cpu: bool
    gpu: bool
    cpu_levels: list = field(default_factory=list)  # cpus.Level (or "native"), lowest first
    fma: bool = True  # contract a*b+c into FMAs (off: --no-fma, no-fma = true, IEEE results)

    @classmethod
    def resolve(
        cls,
        package: str,
        *,
        arch=None,
        out_dir=None,
        cache_dir=None,
        jobs=None,
        debug=None,
        no_cpu=None,
        no_gpu=None,
        cpu_levels=None,
        no_fma=None,
    ) -> BuildOptions:
        name, root = find_package(package)
        cfg = project_settings(root)

        def pick(cli, key, default):
            return cli if cli is not None else cfg.get(key, default)

        arch_name = cpus.machine()
        levels = pick(cpu_levels, "cpu", None)
        if levels is None:
            levels = cpus.DEFAULTS.get(arch_name) or [cpus.NATIVE]
        try:
            levels = cpus.parse_levels(levels, arch_name)
        except ValueError as e:
            raise UsageError(str(e)) from None

        arch = pick(arch, "arch", ",".join(DEFAULT_ARCHS))
        archs = [
            a.strip() for a in (arch.split(",") if isinstance(arch, str) else arch) if a.strip()
        ]
        for a in archs:
            if not (a.startswith("sm_") and a[3:].isdigit()):
                raise UsageError(f"--arch: '{a}' is not an architecture like sm_80")
        archs = sorted(set(archs), key=lambda a: int(a[3:]))
        build_cpu = not pick(no_cpu, "no-cpu", False)
        build_gpu = not pick(no_gpu, "no-gpu", False)
        if not build_cpu and not build_gpu:
            raise UsageError("--no-cpu and --no-gpu together build nothing: leave one of them out")
        if build_gpu and not archs:
            raise UsageError("--arch needs one or more architectures, like sm_80,sm_90")
        jobs = pick(jobs, "jobs", 0) or os.cpu_count() or 1
        if jobs < 1:
            raise UsageError("--jobs must be at least 1")
        out = pick(out_dir, "out", None)
        if out is None:
            check_writable_package(name, root)
            out = root / "_gpuaot"
        out = Path(out)
        return cls(
            package=package,
            name=name,
            root=root,
            archs=archs,
            out_dir=out,
            cache_dir=pick(cache_dir, "cache-dir", None),
            jobs=jobs,
            debug=bool(pick(debug, "debug", False)),
            cpu=build_cpu,
            gpu=build_gpu,
            cpu_levels=levels,
            fma=not pick(no_fma, "no-fma", False),
        )


@dataclass
class BuildResult:
    bundle: Path
    manifest: dict
    compiled: int = 0
    cached: int = 0
    leaks: object = None
    up_to_date: bool = False  # the build record answered: nothing typed, lowered or linked
    size: int = 0  # of the bundle as linked
    sha256: str = ""


# ---------------------------------------------------------------------- typing


def kernel_signatures(pkg: Package, func: FuncInfo, diag: Diagnostics) -> list[tuple[Type, ...]]:
    from .frontend.nesting import expr_too_deep, python_parser_depth
    from .frontend.rules import Reject
    from .frontend.typer import annotated_params, parse_annotation

    node = func.options.get("signatures")
    if node is None:
        types, errors = annotated_params(pkg, func)
        for e in errors:
            diag.error(e)
        return [types] if not errors else []
    if not isinstance(node, (ast.List, ast.Tuple)) or not node.elts:
        diag.error(
            CompileError(
                "signatures must be a list of tuples of types",
                func.loc(node),
                hint="signatures=[(f32, Array[f32]), (f64, Array[f64])]",
            )
        )
        return []
    out = []
    for sig in node.elts:
        elts = sig.elts if isinstance(sig, (ast.Tuple, ast.List)) else [sig]
        if isinstance(sig, ast.Constant) and isinstance(sig.value, str):
            # A whole signature as one string: "(Array[f32], f32)" or "Array[f32], f32"; a
            # string that reads as one type is that type (a one-parameter kernel).
            text = sig.value
            try:
                with python_parser_depth():
                    parsed = ast.parse(text.strip(), mode="eval").body
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                parsed = None
            if parsed is None or expr_too_deep(parsed):
                shown = text if len(text) <= 60 else text[:57] + "..."
                diag.error(
                    CompileError(
                        f"cannot read the signature {shown!r}",
                        func.loc(sig),
                        hint='signatures=["(f32, Array[f32])"] or [(f32, Array[f32])]',
                    )
                )
                continue
            elts = parsed.elts if isinstance(parsed, ast.Tuple) else [parsed]
        if len(elts) != len(func.params):
            diag.error(
                CompileError(
                    f"this signature has {len(elts)} types; '{func.name}' takes "
                    f"{len(func.params)} parameters",
                    func.loc(sig),
                )
            )
            continue
        try:
            out.append(tuple(parse_annotation(pkg, func, e) for e in elts))
        except Reject as r:
            diag.error(CompileError(r.message, func.loc(sig), hint=r.hint))
    return out


def type_units(pkg: Package, opts: BuildOptions, target: str | Target, diag: Diagnostics):
    """Typed kernels (and, on a host target, host functions) for one target, or for the
    first registered target of a method table (``"cpu"``, ``"gpu"``).

    On a host target a kernel that uses GPU-only features is not an error: it is recorded as
    GPU-only, with the reason, and launching it on the CPU raises that reason.
    """
    from .frontend.typer import TargetUnavailable, TypingContext, annotated_params
    from .targets import for_table
    from .targets.base import Unit

    cls = for_table(target) if isinstance(target, str) else target
    ctx = TypingContext(pkg, cls.table, opts.debug)
    units: list[Unit] = []
    gpu_only: dict[tuple[str, int], CompileError] = {}
    for func in pkg.functions():
        if func.kind not in ("kernel", "host") or (func.kind == "host" and cls.kind != "host"):
            continue
        sigs = kernel_signatures(pkg, func, diag) if func.kind == "kernel" else None
        for k, sig in enumerate(sigs if sigs is not None else [None]):
            debug = opts.debug or func.options.get("debug", False)
            tf, errors = ctx.specialize(func, sig, debug)
            unavailable = [e for e in errors if isinstance(e, TargetUnavailable)]
            if errors and len(unavailable) == len(errors) and func.kind == "kernel":
                types = sig if sig is not None else annotated_params(pkg, func)[0]
                gpu_only[(func.qualname, k)] = (unavailable[0], types)
                continue
            if func.kind == "kernel":
                # A kernel may be GPU-only: its real errors are the mistakes, not the CPU's
                # lack of an implementation (the GPU target reports those same errors).
                errors = [e for e in errors if not isinstance(e, TargetUnavailable)]
            for e in errors:
                diag.error(e)
            if tf is not None:
                units.append(Unit(func, k, tf, **_unit_options(func, opts.fma)))
    check_symbols(units, diag)
    return units, gpu_only


def _unit_options(func: FuncInfo, fma: bool) -> dict:
    """A unit's float options: its decorator's, with the build's ``--no-fma`` winning."""
    return {
        "fastmath": func.options.get("fastmath", False),
        "fma": fma and func.options.get("fma", True),
    }


def check_symbols(units: list[Unit], diag: Diagnostics) -> None:
    """Two units of one target with one symbol would meet at link time as a "multiple
    definition" with no source location. Mangling is injective (``frontend.names``), so
    only a repeated signature gets here; this makes that, or any future naming bug, a
    located error naming both places."""

    def where(u: Unit):
        sigs = u.func.options.get("signatures")
        return u.func.loc(sigs.elts[u.spec] if isinstance(sigs, (ast.List, ast.Tuple)) else None)

    first: dict[str, Unit] = {}
    for u in units:
        other = first.setdefault(u.tf.symbol, u)
        if other is not u:
            same = other.func is u.func
            diag.error(
                CompileError(
                    f"signature {u.spec + 1} of '{u.func.name}' repeats signature {other.spec + 1}"
                    if same
                    else f"'{u.func.qualname}' and '{other.func.qualname}' would get one "
                    f"symbol ({u.tf.symbol})",
                    where(u),
                    notes=[f"{'first' if same else other.func.qualname}: {where(other)}"],
                    hint="remove the repeated signature" if same else None,
                )
            )


# ---------------------------------------------------------------------- build


def build_package(opts: BuildOptions, progress=None) -> BuildResult:
    """Build, unless the build record shows the bundle on disk is what this build would write."""
    from .record import BuildRecord

    cache = Cache(opts.cache_dir)
    bundle = opts.out_dir / mf.bundle_filename(opts.name)
    record = BuildRecord(opts, bundle, cache)
    hit = record.lookup()
    if hit is not None:
        return BuildResult(bundle, hit.manifest, cached=hit.objects, up_to_date=True)
    result, pkg = _build(opts, cache, progress, _lowering_inputs(record.inputs))
    if result.leaks is None:
        sources = {m.path.relative_to(pkg.root).as_posix(): m.data for m in pkg.modules.values()}
        objects = result.compiled + result.cached
        record.save(sources, result.size, result.sha256, result.manifest, objects)
    return result


def _lowering_inputs(inputs: dict) -> str:
    """The build record's inputs but where the bundle goes, hashed: what keys the lowered
    units a rebuild reuses (``Target.lower_units``)."""
    options = {k: v for k, v in inputs["options"].items() if k != "out_dir"}
    text = json.dumps({**inputs, "options": options}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _build(
    opts: BuildOptions, cache: Cache, progress, inputs: str | None = None
) -> tuple[BuildResult, Package]:
    from ..bundle.embed import embed_object
    from .jobs import Workers
    from .targets import select
    from .targets.base import BuildContext

    if progress is not None and not sys.stderr.isatty():
        progress = None  # quiet in CI and when piped
    targets = select(opts)
    diag = Diagnostics()
    pkg = discover(str(opts.root), diag)
    typed, gpu_only = [], {}
    for t in targets:
        units, only = type_units(pkg, opts, t, diag)
        typed.append(units)
        if t.kind == "host":
            gpu_only = only
    diag.raise_if_any()

    result = BuildResult(bundle=opts.out_dir / mf.bundle_filename(pkg.name), manifest={})
    host_units, device_units, objects, variants = [], [], [], []
    images: list = []  # bundle.manifest.Image
    image = None
    with Workers(opts.jobs) as workers:  # one pool: every target queues on it, then waits
        ctx = BuildContext(cache, opts.jobs, progress, workers, inputs)
        started = [t.start(units, ctx) for t, units in zip(targets, typed)]
        _preload_leak_gate()  # while the workers compile
        outs = [finish() for finish in started]
    for t, units, out in zip(targets, typed, outs):
        result.compiled += out.compiled
        result.cached += out.cached
        objects += out.objects
        variants += out.variants
        (host_units if t.kind == "host" else device_units).extend(units)
        if out.image is not None:
            if image is not None:  # pragma: no cover - one device target is registered
                raise BuildError("a bundle has one device image section: two targets made one")
            image, images = out.image, out.images
            for u, k in zip(units, out.unit_images):
                u.image = k
    manifest = make_manifest(pkg, opts, host_units, device_units, gpu_only, images, variants)
    objects.append(embed_object(mf.dumps(manifest), image))
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    result.manifest = manifest.to_json()
    _link_checked(objects, result)
    return result, pkg


def _link_checked(objects: list[bytes], result: BuildResult) -> None:
    """Link to a staging file of this process's own, check it, then rename it into place.

    Concurrent builds of one package (CI jobs sharing an output or a cache) each stage under
    a unique name, so none reads another's half-written file; the rename is atomic, and the
    bundles are byte-identical, so whichever lands last is the same. A refused build keeps
    the last good bundle and leaves the rejected one as ``*.rejected`` for inspection.
    """
    import tempfile

    from .targets import linker

    bundle = result.bundle
    fd, tmp = tempfile.mkstemp(dir=bundle.parent, prefix=f".{bundle.name}.", suffix=".staging")
    os.close(fd)
    staged = Path(tmp)
    rejected = bundle.with_name(bundle.name + ".rejected")
    try:
        linker()(objects, tmp)
        os.chmod(tmp, 0o755 & ~_umask())  # mkstemp made it 0600
        data = staged.read_bytes()
        result.size, result.sha256 = len(data), hashlib.sha256(data).hexdigest()
        result.leaks = leak_gate(staged)
        if result.leaks is None:
            os.replace(staged, bundle)
            rejected.unlink(missing_ok=True)  # from an earlier refused build: now stale
        else:
            os.replace(staged, rejected)
            result.bundle = rejected
    finally:
        staged.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _preload_leak_gate() -> None:
    """Import the leak checker and its ELF reader now (about 0.1 s), while worker processes
    compile, rather than after the link, when nothing else runs."""
    from ..leaks import scan_paths  # noqa: F401
    from ..leaks.elfio import pyelftools

    pyelftools()


def leak_gate(bundle: Path):
    """DESIGN invariant 4: the build checks its own output with the users' leak checker."""
    from ..leaks import scan_paths

    result = scan_paths([str(bundle)])
    return result if (result.findings or result.errors) else None


def report_build(ctx, result: BuildResult) -> None:
    m = result.manifest
    gpu_only = [k["qualname"] for k in m["kernels"] for s in k["specializations"] if s["gpu_only"]]
    if ctx.json:
        ctx.emit_json(
            {
                "bundle": str(result.bundle),
                "compiled": result.compiled,
                "cached": result.cached,
                "up_to_date": result.up_to_date,
                "kernels": [k["qualname"] for k in m["kernels"]],
                "host_functions": [h["qualname"] for h in m["host_functions"]],
                "gpu_only": gpu_only,
                "architectures": m["architectures"],
                "cpu_variants": [v["level"] for v in m["cpu_variants"]],
                "leaks": [
                    {"symbol": f.symbol, "defined": f.defined, "section": f.section}
                    for f in (result.leaks.findings if result.leaks else [])
                ],
            }
        )
    if result.leaks:
        from ..leaks import format_text  # only here: a no-op build never loads the checker
        from ..textsafe import printable

        # An error, so shown under --quiet too (format_text escapes what it prints).
        print(format_text(result.leaks), file=sys.stderr)
        print(
            "error: the bundle leaks device-only symbols into host code; refused and kept as "
            + printable(str(result.bundle)),
            file=sys.stderr,
        )
        return
    nk, nh = len(m["kernels"]), len(m["host_functions"])
    levels = [v["level"] for v in m["cpu_variants"]]
    ctx.info(
        f"{'up to date:' if result.up_to_date else 'built'} {result.bundle} ({nk} kernel{'s' if nk != 1 else ''}, {nh} host "
        f"function{'s' if nh != 1 else ''}; CPU levels {', '.join(levels) or 'none'}; "
        f"{result.compiled} compiled, {result.cached} cached)"
    )
    if any(not v["portable"] for v in m["cpu_variants"]):
        ctx.info(
            "note: this bundle's native variant runs only on CPUs like this one; "
            "do not ship it (build wheels with the default --cpu levels)"
        )
    for q in gpu_only:
        ctx.info(f"note: {q} uses GPU-only features: it runs on the GPU only")


# ---------------------------------------------------------------------- emit


def emit_function(
    spec: str,
    stage: str,
    target: str,
    debug: bool = False,
    sig_index: int = 0,
    cpu_level: str | None = None,
) -> str:
    """``gpuaot emit PKG.MOD:FUNC --stage ir|opt|asm|ptx --target cpu|sm_XX [--cpu LEVEL]``.

    ``--target`` picks a registered target (``targets.emit_target``), ``--stage`` one of its
    printable stages; on the CPU, ``opt`` and ``asm`` are for one level: by default the
    highest of the build's default levels (what most machines run).
    """
    from .targets import emit_options, emit_target
    from .targets.base import Unit

    options = emit_options(cpu_level)
    if ":" not in spec:
        raise UsageError(f"'{spec}': expected PKG.MOD:FUNC, e.g. example.kernels:saxpy")
    modname, _, fname = spec.partition(":")
    t = emit_target(target, stage, options)
    top = modname.split(".")[0]
    diag = Diagnostics()
    pkg = discover(top, diag)
    diag.raise_if_any()
    func = pkg.function(f"{modname}.{fname}")
    if func is None:
        raise UsageError(f"no gpuaot function '{fname}' in module '{modname}'")
    if func.kind not in ("kernel", "host", "device", "device_only"):
        raise UsageError(f"'{fname}' is an overlay; emit the function it replaces")
    opts_sig = kernel_signatures(pkg, func, diag) if func.kind == "kernel" else None
    diag.raise_if_any()
    from .frontend.typer import TypingContext

    ctx = TypingContext(pkg, t.table, debug)
    if func.kind in ("device", "device_only"):
        raise UsageError(
            f"'{fname}' is a generic @{func.kind} helper: emit a kernel or host "
            "function that calls it"
        )
    sig = opts_sig[sig_index] if opts_sig else None
    tf, errors = ctx.specialize(func, sig, debug or func.options.get("debug", False))
    if errors:
        raise CompileErrors(errors)
    unit = Unit(func, sig_index, tf, **_unit_options(func, fma=True))
    return t.emit(unit, stage)


__all__ = ["BuildOptions", "build_package", "report_build", "emit_function", "BuildError"]
