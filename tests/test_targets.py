"""The ``Target`` interface: a target is new files plus one registry line.

    monkeypatch.setitem(targets.REGISTRY, "toy", ToyTarget)   # the one line
    build_package(opts)                                        # the driver builds with it

:class:`ToyTarget` lives only here: a device target whose image is LLVM bitcode of the GPU
lowering (``llvm.parse_bitcode`` is the oracle), cached in a namespace of its own. The driver,
the cache helper, the manifest and the bundle reader take it without a change to any file.
"""

from __future__ import annotations

import hashlib

import llvmlite.binding as llvm
import pytest
from test_architecture import import_graph

from gpuaot.bundle.manifest import Image, image_matches, read_bundle
from gpuaot.compiler import targets
from gpuaot.compiler.driver import BuildOptions, build_package, emit_function
from gpuaot.compiler.jobs import Job, cached_stage
from gpuaot.compiler.targets.base import Stage, Target, TargetOutput
from gpuaot.errors import UsageError


def _bitcode(job: tuple) -> bytes:
    (ir_text,) = job
    return llvm.parse_assembly(ir_text).as_bitcode()


class ToyTarget(Target):
    name = "toy"
    kind = "device"
    table = "gpu"
    stages = (
        Stage("ir", "as lowered"),
        Stage("bc", "LLVM bitcode", printable=False, namespace="device/toy-bc"),
    )
    emit_words = "toy"
    emit_example = "toy"

    @classmethod
    def from_options(cls, opts):
        return cls()

    @classmethod
    def for_emit(cls, target, options):
        return cls() if target == "toy" else None

    def emitter(self, module, *, fastmath, fma):
        from gpuaot.compiler.targets.gpu import GPUEmitter

        return GPUEmitter(module, fastmath=fastmath, fma=fma)

    def lower(self, unit):
        from gpuaot.compiler.targets.gpu import lower_gpu

        lower_gpu(unit, self.emitter)

    def fingerprint(self, instance=None):
        return {"toy": 1}

    def build(self, units, ctx):
        for u in units:
            self.lower(u)
        ns = self.stage("bc").namespace
        work = [Job(ns, u.ir, self.fingerprint(), (u.ir,)) for u in units]
        done = cached_stage(ctx, _bitcode, work)
        blob, images = b"", []
        for bc in done.outputs:
            sha = hashlib.sha256(bc).hexdigest()
            images.append(Image("llvm-bc", len(blob), len(bc), sha, entries=()))
            blob += bc
        return TargetOutput(
            image=blob,
            images=images,
            unit_images=list(range(len(units))),
            compiled=done.compiled,
            cached=done.cached,
        )

    def emit(self, unit, stage):
        self.lower(unit)
        return unit.ir


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(targets.REGISTRY, "toy", ToyTarget)


def test_the_driver_builds_with_a_registered_target(kit, tmp_path, toy):
    root = kit.copy_package(kit.FIXTURES / "example", tmp_path)
    opts = BuildOptions.resolve(
        str(root), no_gpu=True, cpu_levels="x86-64-v2", cache_dir=str(tmp_path / "cache")
    )
    first = build_package(opts)
    assert first.leaks is None
    gpu = [s["gpu"] for k in first.manifest["kernels"] for s in k["specializations"]]
    assert gpu and all(g is not None for g in gpu)
    assert [i["kind"] for i in first.manifest["images"]] == ["llvm-bc"] * len(gpu)
    bundle = read_bundle(first.bundle)
    for g in gpu:
        blob = bundle.image(g["image"])
        assert image_matches(bundle.contents.images[g["image"]], blob)
        mod = llvm.parse_bitcode(blob)  # LLVM reads back what the toy made
        assert g["symbol"] in {f.name for f in mod.functions if not f.is_declaration}
    entries = list((tmp_path / "cache" / "device" / "toy-bc").rglob("*"))
    assert sum(p.is_file() for p in entries) == len(gpu)

    src = root / "kernels.py"  # one kernel edited: one bitcode and its CPU object rebuilt
    src.write_text(src.read_text().replace("out[i] = axpy(a, x[i], y[i])", "out[i] = y[i]"))
    again = build_package(opts)
    assert not again.up_to_date and again.compiled == 2
    assert again.cached == first.compiled - 2
    assert build_package(opts).up_to_date


def test_a_registered_target_is_emitted_by_name(kit, toy, monkeypatch):
    monkeypatch.syspath_prepend(str(kit.FIXTURES))
    text = emit_function("example.kernels:saxpy", "ir", "toy")
    assert "nvptx64" in text and llvm.parse_assembly(text) is not None
    with pytest.raises(UsageError, match="neither cpu nor an architecture like sm_90 nor toy"):
        emit_function("example.kernels:saxpy", "ir", "amd")
    with pytest.raises(UsageError, match="--stage ptx needs --target sm_XX"):
        emit_function("example.kernels:saxpy", "ptx", "toy")


def test_emit_lists_the_stage_tables():
    from gpuaot.cli.emit import emit

    (stage,) = [p for p in emit.params if p.name == "stage"]
    assert list(stage.type.choices) == targets.stage_names() == ["ir", "opt", "ptx", "asm"]


def test_no_target_imports_the_driver():
    graph = import_graph()
    for name in graph:
        if name.startswith("gpuaot.compiler.targets"):
            seen, todo = set(), [name]
            while todo:
                m = todo.pop()
                if m not in seen:
                    seen.add(m)
                    todo.extend(graph[m])
            assert "gpuaot.compiler.driver" not in seen, name


def test_the_default_registry_is_not_a_record_input(monkeypatch):
    assert targets.describe() is None
    monkeypatch.setitem(targets.REGISTRY, "toy", ToyTarget)
    assert targets.describe()["toy"] == f"{__name__}:ToyTarget"
