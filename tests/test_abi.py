"""The typed ABI (``gpuaot/bundle/abi.py``) against what the compiler really emits and the
run time really passes: LLVM's PTX for the exception record, the ELF dynamic symbol table
of a built bundle for the entry points and exports, numpy's arrays for the flat values, and
the emitters that still spell some of it themselves."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys

import numpy as np
import pytest

from gpuaot.bundle import abi, cpus
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
def test_array_abi_is_what_marshal_passes_and_the_emitters_take(ndim, layout):
    from llvmlite import ir

    from gpuaot.compiler.lower.emitter import Emitter, flat_types
    from gpuaot.runtime.args import marshal

    t = array_of(SCALARS["f64"], ndim, layout)
    want = abi.array_abi(ndim, layout)
    assert flat_types(t) == want  # lower/emitter.py still says it itself
    assert len(Emitter(ir.Module()).param_types(t)) == len(want)
    a = np.zeros((2, 3, 4, 5)[:ndim])
    if layout == "A":
        a = a[..., ::2]
    p = Param("a", t.name, tuple(want), dtype="f64", ndim=ndim, layout=layout)
    values = marshal("k", [p], [a])
    assert len(values) == len(want)
    assert values[0].value == a.ctypes.data
    assert [v.value for v in values[1 : 1 + ndim]] == list(a.shape)
    assert [v.value for v in values[1 + ndim :]] == (list(a.strides) if layout == "A" else [])


def test_scalar_abi_is_the_emitters():
    from gpuaot.compiler.lower.emitter import flat_types

    for name, t in SCALARS.items():
        assert flat_types(t) == abi.scalar_abi(name) == [name]


def test_constants_the_compiler_still_spells_itself_agree():
    """Duplicates in files of other owners: kept equal here until they import abi."""
    from gpuaot.compiler.targets.cpu import emitter as cpu_emitter
    from gpuaot.compiler.targets.gpu import emitter as gpu_emitter

    assert gpu_emitter.EXC_RECORD == abi.EXC_RECORD
    assert cpu_emitter.HIDDEN == abi.CPU_HIDDEN_PARAMS
    assert abi.CPU_HIDDEN_PARAMS[1:7] == abi.EXC_RECORD_FIELDS[2:]  # the raiser's ids
    assert cpus.PROBE_SYMBOL == abi.CPU_PROBE_SYMBOL


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
