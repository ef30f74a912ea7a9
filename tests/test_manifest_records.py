"""The manifest as dataclasses: one writer (``compiler/manifest_writer.py``), one reader
(``bundle/manifest.py``). What a real build embeds reads back into records that serialise to
the very same bytes; the records answer subscripts as their JSON does (the transition for
``runtime/cpu.py``)."""

from __future__ import annotations

import json

import pytest

from gpuaot.bundle import manifest as mf
from gpuaot.bundle.elfcheck import check_elf


def _section(path) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
        f.seek(0)
        elf = check_elf(f, len(data))
        return elf.read(f, elf.sections[mf.MANIFEST_SECTION]).rstrip(b"\0")


@pytest.fixture(scope="module")
def gpu_built(kit, tmp_path_factory):
    """fixtures/gpu_features built for the CPU and sm_80: kernels with CPU and GPU code,
    GPU-only ones, raise sites, images."""
    from gpuaot.compiler.driver import BuildOptions, build_package

    tmp = tmp_path_factory.mktemp("records")
    root = kit.copy_package(kit.FIXTURES / "gpu_features", tmp)
    opts = BuildOptions.resolve(str(root), arch="sm_80", cache_dir=str(tmp / "cache"))
    return build_package(opts)


@pytest.mark.parametrize("name", ["example", "gpu_features"])
def test_read_back_records_serialise_to_the_embedded_bytes(built, gpu_built, name):
    b = built(name).result if name == "example" else gpu_built
    raw = _section(b.bundle)
    bf = mf.read_bundle(b.bundle)
    assert isinstance(bf.contents, mf.Manifest)
    assert mf.dumps(bf.contents) == raw  # records → the same bytes
    assert bf.contents.to_json() == json.loads(raw) == bf.manifest == b.manifest
    assert mf.read_manifest(raw, bf.fatbin.size if bf.fatbin else None) == bf.contents


def test_records_hold_what_the_json_says(gpu_built):
    m = mf.read_bundle(gpu_built.bundle).contents
    (k,) = [k for k in m.kernels if k.name == "local_prefix"]
    (spec,) = k.specializations
    x = spec.params[0]
    assert (x.name, x.type, x.abi, x.dtype, x.ndim, x.layout) == (
        "x",
        "Array[f32, 2]",
        ("ptr", "i64", "i64"),
        "f32",
        2,
        "C",
    )
    assert isinstance(spec.gpu, mf.GpuCode) and m.images[spec.gpu.image].kind == "fatbin"
    assert [e.arch for e in m.images[spec.gpu.image].entries][-1] == m.architectures[-1]
    assert isinstance(m.cpu_variants[0], mf.Variant) and isinstance(
        m.cpu_variants[0].requires, tuple
    )
    assert m.options.fma is True and m.ptx_arch == m.architectures[0] == "sm_80"
    only = [s for k in m.kernels for s in k.specializations if s.gpu_only]
    assert only and all(s.cpu is None and s.gpu is not None for s in only)
    sites = [site for k in m.kernels for s in k.specializations for site in s.gpu.sites]
    assert sites and all(
        isinstance(x, mf.Site) and x.file.startswith("gpu_features/") for x in sites
    )


def test_attributes_read_like_the_json(built):
    """Each field is its JSON key; an optional field the JSON leaves out is None."""
    m = mf.read_bundle(built("example").bundle)
    for k, kj in zip(m.contents.kernels, m.manifest["kernels"], strict=True):
        for s, sj in zip(k.specializations, kj["specializations"], strict=True):
            assert s.gpu_only == sj["gpu_only"]
            assert s.cpu.symbols == sj["cpu"]["symbols"]
            assert [x.to_json() for x in s.cpu.sites] == sj["cpu"]["sites"]
            for p, pj in zip(s.params, sj["params"], strict=True):
                assert (p.name, p.type, list(p.abi)) == (pj["name"], pj["type"], pj["abi"])
                for key in ("dtype", "ndim", "layout"):
                    assert getattr(p, key) == pj.get(key), key
                assert p.is_array == ("ndim" in pj)
    assert any(p.ndim is None for k in m.contents.kernels for p in k.specializations[0].params)
    assert not hasattr(m.contents.kernels[0], "__getitem__")  # records are read by attribute


def test_the_reader_ignores_keys_it_does_not_know(built):
    """The schema allows extra keys (a newer writer's); the records drop them."""
    raw = json.loads(_section(built("example").bundle))
    raw["future"] = 1
    raw["kernels"][0]["specializations"][0]["params"][0]["future"] = 2
    m = mf.read_manifest(json.dumps(raw).encode(), None)
    assert "future" not in m.to_json()
