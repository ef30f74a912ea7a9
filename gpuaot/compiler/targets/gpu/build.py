"""The GPU target's build: typed kernels → NVPTX IR → PTX (lowest arch) + a cubin per arch →
one fatbinary container per kernel specialisation, concatenated for the bundle.

    t = NVPTXTarget(["sm_75", "sm_80"])
    out = t.build(units, ctx)      # out.image: the containers; out.images: their records
    t.emit(unit, "ptx")            # PTX for the first architecture
"""

from __future__ import annotations

import hashlib

from ....bundle.abi import EXC_RECORD
from ...frontend.names import gpu_entry_symbol
from ...lower.lowering import ModuleBuilder
from ..base import BuildContext, Stage, Target, TargetOutput, plural
from .emitter import GPUEmitter, new_module, runtime_functions


def lower_gpu(unit, emitter=GPUEmitter) -> None:
    mod = new_module(unit.tf.func.qualname)
    em = emitter(mod, fastmath=unit.fastmath, fma=unit.fma)
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


class NVPTXTarget(Target):
    """NVPTX, one instance per architecture: PTX for the lowest (cached per architecture,
    ``device/ptx-<arch>``) and a cubin for each (``device/<arch>``), one fatbinary container
    per kernel specialisation holding them all."""

    name = "nvptx"
    kind = "device"
    table = "gpu"
    stages = (
        Stage("ir", "the kernel's NVPTX IR as lowered"),
        Stage("opt", "linked with libdevice, internalised, optimised"),
        Stage("ptx", "PTX for the architecture", namespace="device/ptx-{arch}"),
        Stage("cubin", "ptxas's cubin", printable=False, namespace="device/{arch}"),
    )
    emit_words = "an architecture like sm_90"
    emit_example = "sm_XX"

    def __init__(self, archs: list[str], debug: bool = False):
        self.archs = archs  # the instances, lowest first: PTX is for archs[0]
        self.debug = debug

    @classmethod
    def from_options(cls, opts) -> NVPTXTarget | None:
        return cls(opts.archs, opts.debug) if opts.gpu else None

    @classmethod
    def for_emit(cls, target: str, options) -> NVPTXTarget | None:
        return cls([target]) if target.startswith("sm_") and target[3:].isdigit() else None

    def emitter(self, module, *, fastmath: bool, fma: bool):
        return GPUEmitter(module, fastmath=fastmath, fma=fma)

    def lower(self, unit) -> None:
        lower_gpu(unit, self.emitter)

    def fingerprint(self, instance: str | None = None) -> dict:
        """What keys a cubin besides its PTX: the architecture, ``--debug`` and ptxas."""
        from ..nvtools import ptxas_version

        return {"arch": instance or self.archs[0], "debug": self.debug, "ptxas": ptxas_version()}

    def ptx_fingerprint(self, arch: str) -> dict:
        """What keys a kernel's PTX besides its IR and ``fastmath``: the architecture, the
        libdevice linked in, and the revision of the NVPTX pipeline's own steps."""
        from ..nvptx import PIPELINE_REVISION
        from ..nvtools import libdevice_sha256

        return {"arch": arch, "libdevice": libdevice_sha256(), "pipeline": PIPELINE_REVISION}

    def build(self, units, ctx: BuildContext) -> TargetOutput:
        return self.start(units, ctx)()

    def start(self, units, ctx: BuildContext):
        """PTX and cubins for every unit (cached per architecture), then one fatbin each: the
        PTX is queued now; the function returned waits for it, then assembles the cubins."""
        if not units:
            return lambda: TargetOutput()
        from ...jobs import Job, start_stage

        self.lower_units(units, ctx)
        keyed = {a: self.fingerprint(a) for a in self.archs}  # no ptxas: said before compiling
        low = self.archs[0]
        ptx_keyed = self.ptx_fingerprint(low)
        ns = self.stage("ptx").namespace.format(arch=low)
        pending = start_stage(
            ctx,
            _ptx_job,
            [
                Job(
                    ns,
                    u.ir,
                    {**ptx_keyed, "fastmath": u.fastmath},
                    (u.ir, u.symbol, low, u.fastmath),
                )
                for u in units
            ],
            lambda n: f"compiling {plural(n, 'kernel')} to PTX ({low})",
        )
        try:  # imported now (about 40 ms), while the workers compile, not after them
            import cuda.bindings.nvfatbin  # noqa: F401
        except ImportError:
            pass  # make_fatbin says which wheels to install
        return lambda: self._assemble(units, ctx, pending.wait(), keyed)

    def _assemble(self, units, ctx: BuildContext, ptx, keyed: dict) -> TargetOutput:
        """The PTX's cubins for every architecture (cached), then one fatbin per unit."""
        from ....bundle.fatbin import make_fatbin
        from ...jobs import Job, cached_stage

        low = self.archs[0]
        texts = [p.decode() for p in ptx.outputs]
        ns = self.stage("cubin").namespace
        pairs = [(k, arch) for k in range(len(units)) for arch in self.archs]
        cubin = cached_stage(
            ctx,
            _cubin_job,
            [
                Job(ns.format(arch=a), texts[k], keyed[a], (texts[k], a, self.debug))
                for k, a in pairs
            ],
            lambda n: f"assembling {plural(n, 'cubin')}",
        )
        cubins = dict(zip(pairs, cubin.outputs))
        recompiled = ptx.fresh | {pairs[j][0] for j in cubin.fresh}
        blob = bytearray()
        images = []
        for k, u in enumerate(units):
            fat = make_fatbin(
                (low, texts[k]), [(a, cubins[(k, a)]) for a in self.archs], identifier=u.symbol
            )
            images.append(_image_record(u, len(blob), fat))
            blob += fat
            blob += b"\0" * (-len(blob) % 8)
        return TargetOutput(
            image=bytes(blob),
            images=images,
            unit_images=list(range(len(units))),
            compiled=len(recompiled),
            cached=len(units) - len(recompiled),
        )

    def emit(self, unit, stage: str) -> str:
        return emit_stage(unit, stage, self.archs[0])


def _image_record(u, offset: int, fat: bytes):
    """The manifest's record of one kernel's fatbinary container."""
    from ....bundle.fatbin import list_fatbin
    from ....bundle.manifest import Image, ImageEntry

    return Image(
        kind="fatbin",
        offset=offset,
        size=len(fat),
        sha256=hashlib.sha256(fat).hexdigest(),
        entries=tuple(ImageEntry(e.kind, e.arch, e.size) for e in list_fatbin(fat)),
        kernel=u.func.qualname,
        specialization=u.spec,
    )


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
