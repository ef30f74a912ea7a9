"""The typed ABI (``gpuaot/bundle/abi.py``) against what the compiler really emits and the
run time really passes: LLVM's parsed IR for the CPU entries' parameters, LLVM's PTX for the
exception record, the ELF dynamic symbol table of a built bundle for the entry points and
exports, numpy's arrays for the flat values, and a raise at a known 3-D thread for the record's
words. The compiler and the run time both read abi.py; these check it against what they make,
never a constant against itself."""

from __future__ import annotations

import fnmatch
import importlib
import re
import subprocess
import sys

import numpy as np
import pytest

from gpuaot.bundle import abi
from gpuaot.bundle.manifest import Param
from gpuaot.lang.types import SCALARS, array_of


def test_importing_the_abi_and_the_manifest_loads_no_llvmlite_and_no_numpy():
    code = (
        "import sys, gpuaot.bundle.abi, gpuaot.bundle.manifest\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('llvmlite', 'numpy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("layout", ["C", "A"])
@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
def test_array_abi_is_what_marshal_passes(ndim, layout):
    """numpy is the oracle: its data pointer, shape and byte strides, in abi's order."""
    from gpuaot.runtime.args import marshal

    t = array_of(SCALARS["f64"], ndim, layout)
    want = abi.array_abi(ndim, layout)
    a = np.zeros((2, 3, 4, 5)[:ndim])
    if layout == "A":
        a = a[..., ::2]
    p = Param("a", t.name, tuple(want), dtype="f64", ndim=ndim, layout=layout)
    values = marshal("k", [p], [a])
    assert len(values) == len(want)
    assert values[0].value == a.ctypes.data
    assert [v.value for v in values[1 : 1 + ndim]] == list(a.shape)
    assert [v.value for v in values[1 + ndim :]] == (list(a.strides) if layout == "A" else [])


# ---------------------------------------------------------------------- the CPU entries' IR

# LLVM's spelling of each value's type in the ABI lists the manifest writes
_LL = {"ptr": "ptr", "i64": "i64", "i32": "i32", "f32": "float", "f64": "double", "bool": "i1"}


def _ir(spec: str):
    """The unoptimised host IR ``gpuaot emit SPEC --stage ir`` prints, parsed by LLVM."""
    import llvmlite.binding as llvm

    from gpuaot.compiler.driver import emit_function

    return llvm.parse_assembly(emit_function(spec, "ir", "cpu"))


def _arg_types(fn) -> list[str]:
    return [str(a.type) for a in fn.arguments]


def _one_per_rank_and_layout(manifest: dict) -> dict:
    """``(ndim, layout) -> (kernel, its first specialisation)`` over the bundle's kernels."""
    out = {}
    for k in manifest["kernels"]:
        s = k["specializations"][0]
        for p in s["params"]:
            if "ndim" in p:
                out.setdefault((p["ndim"], p["layout"]), (k, s))
    return out


def test_cpu_entries_take_what_the_manifest_says(built):
    """For an array of every rank and layout: the kernel's body (parsed IR) takes each
    manifest parameter's ``abi`` values, then ``abi.CPU_HIDDEN_PARAMS`` (the record, then
    i64s); its entry is ``void(void **args, int64_t *dims, begin, end, int64_t *exc)``, named
    by ``abi.cpu_kernel_symbol``; the entry reads one ``args`` slot per value."""
    conf = built("conformance")
    conf.module  # noqa: B018 - imported: on sys.path for the compiler's discovery
    m = conf.manifest
    tags = {v["level"]: v["tag"] for v in m["cpu_variants"]}
    found = _one_per_rank_and_layout(m)
    assert set(found) == {(n, lay) for n in (1, 2, 3, 4) for lay in ("C", "A")}
    hidden = ["ptr"] + ["i64"] * (len(abi.CPU_HIDDEN_PARAMS) - 1)
    assert abi.CPU_HIDDEN_PARAMS[0] == "exc"
    for k, s in found.values():
        level, sym = next(iter(s["cpu"]["symbols"].items()))
        base = sym.removesuffix("." + tags[level])
        mod = _ir(f"{k['module']}:{k['name']}")
        entry = mod.get_function(base)
        name = base.removeprefix(abi.CPU_KERNEL_PREFIX)
        assert base == abi.cpu_kernel_symbol(name) != name
        assert _arg_types(entry) == ["ptr", "ptr", "i64", "i64", "ptr"], base
        flat = [v for p in s["params"] for v in p["abi"]]
        for p in s["params"]:
            if "ndim" in p:
                assert p["abi"] == abi.array_abi(p["ndim"], p["layout"])
        (body,) = [f for f in mod.functions if f.name.endswith(name + ".body")]
        assert _arg_types(body) == [_LL[v] for v in flat] + hidden, k["name"]
        # one load of a slot pointer per value, from ``args`` (the entry's first parameter)
        text = str(entry)
        slots = re.findall(r"getelementptr ptr, ptr %(\S+), i64 (\d+)", text)
        args_name, dims_name = [a.name for a in entry.arguments][:2]
        assert sorted(int(i) for a, i in slots if a.strip('"') == args_name) == list(
            range(len(flat))
        ), k["name"]
        # ``dims``: abi.CPU_DIMS words, read from the second parameter
        dims = re.findall(r"getelementptr i64, ptr %(\S+), i64 (\d+)", text)
        assert sorted({int(i) for a, i in dims if a.strip('"') == dims_name}) == list(
            range(len(abi.CPU_DIMS))
        )


def test_a_host_function_entry_is_the_abis(built):
    """``void gpuaot_host_<name>(void **args, void *ret, int64_t *exc)``; the body takes the
    parameters' values and the hidden state, as a kernel's does."""
    conf = built("conformance")
    conf.module  # noqa: B018
    m = conf.manifest
    tags = {v["level"]: v["tag"] for v in m["cpu_variants"]}
    h = next(h for h in m["host_functions"] if any("ndim" in p for p in h["params"]))
    level, sym = next(iter(h["symbols"].items()))
    base = sym.removesuffix("." + tags[level])
    mod = _ir(f"{h['module']}:{h['name']}")
    assert _arg_types(mod.get_function(base)) == ["ptr", "ptr", "ptr"]
    name = base.removeprefix(abi.HOST_FUNCTION_PREFIX)
    assert base == abi.host_function_symbol(name) != name
    (body,) = [f for f in mod.functions if f.name.endswith(name + ".body")]
    flat = [_LL[v] for p in h["params"] for v in p["abi"]]
    assert _arg_types(body) == flat + ["ptr"] + ["i64"] * (len(abi.CPU_HIDDEN_PARAMS) - 1)


RAISE_3D = """
import gpuaot as ga
from gpuaot import Array, i64


@ga.kernel
def raise_3d(at: Array[i64]):
    if ga.thread_idx.x == at[0] and ga.thread_idx.y == at[1] and ga.thread_idx.z == at[2]:
        if ga.block_idx.x == at[3] and ga.block_idx.y == at[4] and ga.block_idx.z == at[5]:
            raise ValueError("here")
"""


def test_the_exception_record_holds_the_raisers_ids(kit, tmp_path, monkeypatch):
    """A raise at one thread of a 3-D grid of 3-D blocks, every index distinct: the record's
    words (written by the CPU runtime, read by the launcher through ``abi.EXC_RECORD_FIELDS``)
    name that thread and that block, each axis in its place. Simulate, which needs no record,
    shows the raise is reached."""
    root = kit.write_package(tmp_path / "abi3d", {"k.py": RAISE_3D})
    kit.build(root, cache_dir=tmp_path / "cache")
    kit.import_package(root, monkeypatch)
    k = importlib.import_module("abi3d.k").raise_3d
    at = np.array([1, 2, 3, 2, 1, 3], np.int64)  # thread (1, 2, 3) of block (2, 1, 3)
    with pytest.raises(ValueError, match="here"):
        k.simulate[(3, 2, 4), (2, 3, 4)](at)
    with pytest.raises(ValueError, match=r"thread \(1, 2, 3\), block \(2, 1, 3\)\)$"):
        k[(3, 2, 4), (2, 3, 4)](at)
    kit.unload("abi3d")


def test_the_exception_record_in_ptx_is_the_abis(monkeypatch, kit):
    from click.testing import CliRunner

    from gpuaot.cli import main

    monkeypatch.syspath_prepend(str(kit.FIXTURES))
    result = CliRunner().invoke(
        main, ["emit", "gpu_features.kernels:check_positive", "--stage", "ptx", "--target", "sm_80"]
    )
    assert result.exit_code == 0, result.output
    decl = re.search(
        rf"^\.visible \.global \.align (\d+) \.b8 {abi.EXC_RECORD}\[(\d+)\]", result.output, re.M
    )
    assert decl is not None, result.output
    assert int(decl.group(2)) == abi.EXC_RECORD_BYTES == 8 * len(abi.EXC_RECORD_FIELDS)


def test_the_exception_record_in_each_cubin_is_the_abis(built, tmp_path):
    """``readelf -s`` of every cubin ptxas made for a kernel with raise sites: the record is a
    global object named ``abi.EXC_RECORD`` of ``abi.EXC_RECORD_BYTES`` bytes (what the run time
    finds with ``cuModuleGetGlobal``, clears and reads back)."""
    from gpuaot.bundle.fatbin import list_fatbin
    from gpuaot.bundle.manifest import read_bundle

    bf = read_bundle(built("gpu_features", gpu=True).bundle)
    cubins = 0
    for k in bf.contents.kernels:
        for s in k.specializations:
            if s.gpu is None or not s.gpu.sites:
                continue
            blob = bf.image(s.gpu.image)
            for e in list_fatbin(blob):
                if e.kind != "elf":
                    continue
                assert not e.compressed, (k.name, e.arch)
                path = tmp_path / f"{k.name}.{e.arch}.cubin"
                path.write_bytes(blob[e.payload_offset : e.payload_offset + e.size])
                syms = subprocess.run(
                    ["readelf", "-sW", str(path)], capture_output=True, text=True, check=True
                ).stdout
                rows = [ln.split() for ln in syms.splitlines() if ln.endswith(" " + abi.EXC_RECORD)]
                assert [(r[2], r[3], r[4]) for r in rows] == [
                    (str(abi.EXC_RECORD_BYTES), "OBJECT", "GLOBAL")
                ], (k.name, e.arch, syms)
                cubins += 1
    assert cubins >= 3  # every default arch of at least one kernel


def test_bundle_exports_are_the_abis_entry_points(built):
    """``nm -D``: every exported symbol matches an ``abi.EXPORTED`` pattern, and each kernel
    and host function's variant symbols are there, spelled by abi."""
    b = built("example")
    out = subprocess.run(
        ["nm", "-D", "--defined-only", str(b.bundle)], capture_output=True, text=True, check=True
    ).stdout
    exported = {line.split()[-1] for line in out.splitlines() if line.strip()}
    assert exported
    for sym in exported:
        assert any(fnmatch.fnmatchcase(sym, pat) for pat in abi.EXPORTED), sym
    m = b.manifest
    tags = {v["level"]: v["tag"] for v in m["cpu_variants"]}
    for k in m["kernels"]:
        for s in k["specializations"]:
            for level, sym in s["cpu"]["symbols"].items():
                base = sym.removesuffix("." + tags[level])
                assert base.startswith(abi.CPU_KERNEL_PREFIX)
                assert abi.variant_symbol(base, tags[level]) == sym and sym in exported
    for h in m["host_functions"]:
        for sym in h["symbols"].values():
            assert sym.startswith(abi.HOST_FUNCTION_PREFIX) and sym in exported
    assert {abi.MANIFEST_SYMBOL, abi.MANIFEST_SIZE_SYMBOL, abi.CPU_PROBE_SYMBOL} <= exported
