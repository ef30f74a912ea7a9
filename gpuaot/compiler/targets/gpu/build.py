"""The GPU target's build: typed kernels → NVPTX IR → PTX (lowest arch) + a cubin per arch →
one fatbinary container per kernel specialisation, concatenated for the bundle."""

from __future__ import annotations

import hashlib

from ...frontend.names import gpu_entry_symbol
from ...lower.lowering import ModuleBuilder
from .emitter import EXC_RECORD, GPUEmitter, new_module, runtime_functions


def lower_gpu(unit) -> None:
    mod = new_module(unit.tf.func.qualname)
    em = GPUEmitter(mod, fastmath=unit.fastmath, fma=unit.fma)
    mb = ModuleBuilder(em)
    name = gpu_entry_symbol(unit.tf.symbol, unit.spec)
    fn = mb.function(unit.tf, name=name, linkage="external")
    fn.calling_convention = "ptx_kernel"
    if unit.tf.may_raise:
        runtime_functions(mod)
    unit.symbol = name
    unit.sites = mb.sites
    unit.ir = str(mod)


def _ptx_job(job: tuple) -> str:
    from ..nvptx import compile_ptx

    ir_text, symbol, arch, fastmath = job
    return compile_ptx(ir_text, [symbol], arch, fastmath=fastmath, keep=[EXC_RECORD])


def _cubin_job(job: tuple) -> bytes:
    from ..nvtools import ptx_to_cubin

    ptx, arch, debug = job
    return ptx_to_cubin(ptx, arch, debug=debug)


def build_gpu(units, opts, cache, result, progress):
    """PTX and cubins for every unit (cached per architecture), then one fatbin each."""
    from ....bundle.fatbin import list_fatbin, make_fatbin
    from ...jobs import compile_many
    from ..nvtools import ptxas_version

    for u in units:
        lower_gpu(u)
    low = opts.archs[0]
    tools = {"ptxas": ptxas_version()}
    ptx_keys = [
        cache.key(f"device/ptx-{low}", u.ir, {"arch": low, "fastmath": u.fastmath}) for u in units
    ]
    ptxs = [cache.get(f"device/ptx-{low}", k) for k in ptx_keys]
    todo = [k for k, p in enumerate(ptxs) if p is None]
    if progress and todo:
        progress(f"compiling {len(todo)} kernel{'s' if len(todo) != 1 else ''} to PTX ({low})")
    jobs = [(units[k].ir, units[k].symbol, low, units[k].fastmath) for k in todo]
    for k, ptx in zip(todo, compile_many(opts.jobs, _ptx_job, jobs)):
        ptxs[k] = ptx.encode()
        cache.put(f"device/ptx-{low}", ptx_keys[k], ptxs[k])
    cubin_jobs, cubin_keys, cubins = [], {}, {}
    for k in range(len(units)):
        for arch in opts.archs:
            ns = f"device/{arch}"
            key = cache.key(ns, ptxs[k].decode(), {"arch": arch, "debug": opts.debug, **tools})
            got = cache.get(ns, key)
            if got is None:
                cubin_keys[(k, arch)] = (ns, key)
                cubin_jobs.append((k, arch))
            else:
                cubins[(k, arch)] = got
    if progress and cubin_jobs:
        progress(f"assembling {len(cubin_jobs)} cubin{'s' if len(cubin_jobs) != 1 else ''}")
    out = compile_many(
        opts.jobs, _cubin_job, [(ptxs[k].decode(), arch, opts.debug) for k, arch in cubin_jobs]
    )
    for (k, arch), cubin in zip(cubin_jobs, out):
        cubins[(k, arch)] = cubin
        cache.put(*cubin_keys[(k, arch)], cubin)
    recompiled = {k for k in todo} | {k for k, _ in cubin_jobs}
    result.compiled += len(recompiled)
    result.cached += len(units) - len(recompiled)

    blob = bytearray()
    images = []
    for k, u in enumerate(units):
        fat = make_fatbin(
            (low, ptxs[k].decode()), [(a, cubins[(k, a)]) for a in opts.archs], identifier=u.symbol
        )
        offset = len(blob)
        blob += fat
        blob += b"\0" * (-len(blob) % 8)
        images.append(
            {
                "kind": "fatbin",
                "kernel": u.func.qualname,
                "specialization": u.spec,
                "offset": offset,
                "size": len(fat),
                "sha256": hashlib.sha256(fat).hexdigest(),
                "entries": [
                    {"kind": e.kind, "arch": e.arch, "size": e.size} for e in list_fatbin(fat)
                ],
            }
        )
        u.image = k
    return bytes(blob), images


def emit_stage(unit, stage: str, target: str) -> str:
    from ..nvptx import compile_ptx, optimized_module

    lower_gpu(unit)
    if stage == "ir":
        return unit.ir
    if stage == "ptx":
        return compile_ptx(
            unit.ir, [unit.symbol], target, fastmath=unit.fastmath, keep=[EXC_RECORD]
        )
    _, mod = optimized_module(
        unit.ir, [unit.symbol], target, fastmath=unit.fastmath, keep=[EXC_RECORD]
    )
    return str(mod)
