"""The ``Target`` interface: what the driver asks of every code generation target.

    t = CPUTarget.from_options(opts)       # None where the build does not select it
    units, gpu_only = type_units(pkg, opts, t, diag)   # through t.method_table()
    out = t.build(units, ctx)              # lowers, compiles (cached), returns its part
    finish = t.start(units, ctx); out = finish()   # the same in two halves (the driver's)
    out.objects, out.image, out.images     # host objects to link / a device image + records
    t.emit(unit, "opt")                    # one stage of one unit, as ``gpuaot emit`` prints it

A target is configured from the build options and holds its *instances*: the CPU target one
per CPU level (:mod:`.cpu_variant`: a target machine, a symbol suffix, a cache namespace
each), NVPTX one per architecture (a cubin each). What the instances share — one lowering,
the CPU runtime compiled for the baseline, the PTX of the lowest architecture and one
fatbinary container per kernel — is the target's business, so the driver sees one ``Target``
per kind of code. (Triton's ``BaseBackend``: ``hash`` is :meth:`Target.fingerprint`,
``add_stages`` is :attr:`Target.stages`.)

What a target adds to the lowering is its emitter (:meth:`Target.emitter`), a subclass of
``lower.emitter.Emitter`` with these hooks, called by ``lower.lowering``:

- ``hidden_param_types()``: the ABI's hidden state, the parameters every body gets after its
  own (CPU: the exception record pointer and the 12 thread/block indices and sizes, in
  ``cpu.emitter.HIDDEN`` order; NVPTX: none, the hardware holds them);
- ``thread_index(b, hidden, which, axis)``: ``thread_idx``/``block_idx``/``block_dim``/
  ``grid_dim`` along ``x``/``y``/``z``, as an i64;
- ``math(b, name, args, t)``: a ``math.*`` function (CPU: LLVM intrinsics and libm; NVPTX:
  libdevice ``__nv_*``);
- ``raise_exception(b, hidden, site, ret_type)``: record the first raise and leave the body;
- ``after_call(b, hidden, ret_type)``: after a call that may raise (CPU: stop this thread
  when the record is set; NVPTX: nothing, the raising thread has exited);
- the primitives the operations' GPU lowerings (:mod:`..ops`) call: ``sreg(b, name)``,
  ``barrier(b)``, ``barrier_reduce(b, kind, pred)``, ``membar(b, scope)``, ``shuffle(...)``;
  which operations a target has is its method table, derived from the ops registry;
- ``shared_array(b, dtype, shape)``: block-shared memory (NVPTX only: the method table
  refuses ``shared_array`` elsewhere).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..cache import Cache
    from ..discover import FuncInfo
    from ..frontend.typed import RaiseSite, TypedFunction
    from ..methods import MethodTable


@dataclass
class Unit:
    """One compiled entry point: a kernel specialisation or a host function, on one target."""

    func: FuncInfo
    spec: int
    tf: TypedFunction
    symbol: str = ""
    ir: str = ""
    sites: list[RaiseSite] = field(default_factory=list)
    fastmath: bool = False
    fma: bool = True
    image: int = -1  # device units: index of this unit's image in the manifest


@dataclass(frozen=True)
class Stage:
    """One step of a target's pipeline: ``emit --stage NAME`` prints it where ``printable``;
    ``namespace`` (formatted with the instance's fields) is its cache directory where the
    cache keeps its output."""

    name: str
    doc: str
    printable: bool = True
    namespace: str | None = None


@dataclass
class BuildContext:
    """What a target's build may use of the driver's: the cache, the parallelism, progress,
    and the build's one pool of worker processes (``jobs.Workers``; None: each stage starts
    its own)."""

    cache: Cache
    jobs: int
    progress: Any = None  # callable(str) or None
    workers: Any = None  # jobs.Workers or None
    # A hash of everything but the sources that decides the build's output (the build
    # record's inputs: options, compiler sources, tools): where set, lowered units are cached
    # under it (:meth:`Target.lower_units`); None lowers every unit.
    inputs: str | None = None


@dataclass
class TargetOutput:
    """A target's part of the bundle; the driver links and embeds it, and writes the manifest.

    ``unit_images[k]`` is the index in ``images`` of ``units[k]``'s image (device targets).
    """

    objects: list[bytes] = field(default_factory=list)  # host objects, in link order
    image: bytes | None = None  # the device image section's contents
    images: list = field(default_factory=list)  # the manifest's records (manifest.Image)
    unit_images: list[int] = field(default_factory=list)
    variants: list = field(default_factory=list)  # host: the CPU variants the objects hold
    compiled: int = 0
    cached: int = 0


class Target(ABC):
    """A code generation target (module docstring). Subclasses set the class attributes."""

    name: ClassVar[str]  # the registry's name
    kind: ClassVar[str]  # "host" (objects linked into the .so) or "device" (an image)
    table: ClassVar[str]  # the method table it types and lowers with (``methods.table_for``)
    stages: ClassVar[tuple[Stage, ...]]
    emit_words: ClassVar[str]  # what ``--target`` takes, for errors: "an architecture like sm_90"
    emit_example: ClassVar[str]  # a ``--target`` value, for errors: "sm_XX"

    # ---------------------------------------------------------------- configuration

    @classmethod
    @abstractmethod
    def from_options(cls, opts) -> Target | None:
        """This target as the build options configure it; None where they leave it out."""

    @classmethod
    def emit_options(cls, cpu_level: str | None) -> Any:
        """Check ``gpuaot emit``'s options that are this target's (before anything else)."""
        return None

    @classmethod
    @abstractmethod
    def for_emit(cls, target: str, options: Any) -> Target | None:
        """This target for ``emit --target TARGET``; None where TARGET names another."""

    @classmethod
    def stage(cls, name: str) -> Stage | None:
        return next((s for s in cls.stages if s.name == name), None)

    # ---------------------------------------------------------------- lowering

    def method_table(self) -> MethodTable:
        from ..methods import table_for

        return table_for(self.table)

    @abstractmethod
    def emitter(self, module, *, fastmath: bool, fma: bool):
        """A fresh emitter over ``module`` (the hooks of the module docstring)."""

    @abstractmethod
    def lower(self, unit: Unit) -> None:
        """Lower one typed unit: sets its ``symbol``, ``ir`` and raise ``sites``."""

    # ---------------------------------------------------------------- compiling

    @abstractmethod
    def fingerprint(self, instance: Any = None) -> dict:
        """Tool and library versions and options that key this target's cache entries
        (with the cache's own compiler version and the stage's namespace)."""

    @abstractmethod
    def build(self, units: list[Unit], ctx: BuildContext) -> TargetOutput:
        """Lower and compile every unit, through the cache (``jobs.cached_stage``)."""

    def start(self, units: list[Unit], ctx: BuildContext) -> Callable[[], TargetOutput]:
        """:meth:`build` in two halves: lower and queue the compiles on ``ctx.workers``
        (``jobs.start_stage``), then return what waits for them and assembles the output.
        The driver starts every target before it waits for any, so the workers compile one
        target's units while this process lowers the next one's. By default: the whole
        build now."""
        out = self.build(units, ctx)
        return lambda: out

    @abstractmethod
    def emit(self, unit: Unit, stage: str) -> str:
        """One printable stage of one unit (``gpuaot emit``)."""

    def lower_units(self, units: list[Unit], ctx: BuildContext) -> None:
        """:meth:`lower` each unit, or take what a build with the same inputs lowered from a
        typed function with the same fingerprint (:mod:`..frontend.fingerprint`): a rebuild
        after an edit lowers only the units whose typed tree changed."""
        import dataclasses
        import json

        from ..frontend.fingerprint import typed_fingerprint
        from ..frontend.typed import RaiseSite

        ns = f"lowered-{self.name}"
        for u in units:
            fp = typed_fingerprint(u.tf) if ctx.inputs is not None else None
            if fp is None:
                self.lower(u)
                continue
            opts = {"inputs": ctx.inputs, "spec": u.spec, "fastmath": u.fastmath, "fma": u.fma}
            key = ctx.cache.key(ns, fp, opts)
            hit = ctx.cache.get(ns, key)
            if hit is not None:
                try:
                    rec = json.loads(hit)
                    symbol, ir, sites = rec["symbol"], rec["ir"], rec["sites"]
                    sites = [RaiseSite(*site) for site in sites]
                except (ValueError, KeyError, TypeError):
                    pass  # not a record this code wrote: lowered again, and rewritten
                else:
                    u.symbol, u.ir, u.sites = symbol, ir, sites
                    continue
            self.lower(u)
            sites = [dataclasses.astuple(s) for s in u.sites]
            rec = {"symbol": u.symbol, "ir": u.ir, "sites": sites}
            ctx.cache.put(ns, key, json.dumps(rec).encode())

    @staticmethod
    def link(objects: list[bytes], out_path: str) -> None:
        """Host targets: link objects (theirs, and the embedded data's) into the bundle."""
        raise NotImplementedError("only a host target links the bundle")

    def __repr__(self) -> str:
        return f"{type(self).__module__}.{type(self).__qualname__}"


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


__all__ = ["BuildContext", "Stage", "Target", "TargetOutput", "Unit", "plural"]
