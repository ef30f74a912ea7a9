"""A differential program fuzzer: random kernels, compiled on the CPU backend against
``simulate`` (CPython running the source thread by thread), on every default CPU level.

``program_gen`` writes kernels of the shapes the CPU backend transforms (grids in every index
order, guards with lower and upper bounds, thread loops, atomics whose old value is unused or
used) with values that never overflow, so the two sides must agree exactly: integer results
and f32 results (``fma=False``) bit for bit, tickets from an atomic's old value as a multiset.
One module of ``GPUAOT_PROGRAM_FUZZ_COUNT`` kernels (default 24) is built per seed; a failure
names the seed, the kernel, its source and the launch. To rerun seed 5 (``0`` by default)::

    GPUAOT_PROGRAM_FUZZ_SEED=5 pytest tests/test_program_fuzz.py
"""

from __future__ import annotations

import copy
import os
import random

import numpy as np
import pytest
from program_gen import generate, module_source
from test_cpu_order import LEVELS, built_package, pinned
from test_ptx_index_addresses import same_accesses
from test_ptx_merge_adds import _assembles

from gpuaot.bundle.abi import EXC_RECORD

SEED = int(os.environ.get("GPUAOT_PROGRAM_FUZZ_SEED", "0"))
COUNT = int(os.environ.get("GPUAOT_PROGRAM_FUZZ_COUNT", "24"))
KERNELS = generate(random.Random(SEED), COUNT)
PACKAGE = "progfuzz_pkg"


@pytest.fixture(scope="module")
def built(kit, tmp_path_factory):
    yield from built_package(kit, tmp_path_factory, PACKAGE, module_source(KERNELS))


@pytest.fixture(scope="module")
def expected(built):
    """Per kernel: its runs and what ``simulate`` left in their outputs (computed once)."""
    out = {}
    for k, kernel in enumerate(KERNELS):
        runs = kernel.runs(random.Random(SEED * 1000 + k))
        sims = []
        for run in runs:
            args = copy.deepcopy(run.args)
            getattr(built, kernel.name).simulate[run.grid, run.block](*run.launch_args(args))
            sims.append(args)
        out[kernel.name] = (runs, sims)
    return out


@pytest.fixture(scope="module", params=LEVELS)
def pkg(request, built):
    yield from pinned(PACKAGE, request.param)


@pytest.mark.parametrize("kernel", KERNELS, ids=[k.name for k in KERNELS])
def test_compiled_matches_simulate(pkg, expected, kernel):
    runs, sims = expected[kernel.name]
    for run, sim in zip(runs, sims):
        args = copy.deepcopy(run.args)
        getattr(pkg, kernel.name)[run.grid, run.block](*run.launch_args(args))
        for k in run.outputs:
            got, want = args[k], sim[k]
            if k in run.sorted_:
                got, want = np.sort(got), np.sort(want)
            where = (
                f"seed {SEED}, {kernel.name}[{run.grid}, {run.block}], output {k}, "
                f"shapes {[a.shape for a in run.args]}:\n{kernel.source}"
            )
            np.testing.assert_array_equal(got, want, err_msg=where, strict=True)


# ---------------------------------------------------------------------- the PTX peephole


@pytest.fixture(scope="module")
def ptx_texts(tmp_path_factory):
    """Per kernel: LLVM's PTX for sm_80 as emitted, and after ``ptx_peephole``."""
    from gpuaot.compiler.discover import discover
    from gpuaot.compiler.driver import BuildOptions, type_units
    from gpuaot.compiler.targets import gpu, nvptx
    from gpuaot.compiler.targets.ptx_peephole import peephole
    from gpuaot.errors import Diagnostics

    root = tmp_path_factory.mktemp("ptxfuzz") / PACKAGE
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "kernels.py").write_text(module_source(KERNELS))
    opts = BuildOptions.resolve(str(root), no_cpu=True, arch="sm_80")
    diag = Diagnostics()
    units, _ = type_units(discover(str(opts.root), diag), opts, "gpu", diag)
    diag.raise_if_any()
    mp = pytest.MonkeyPatch()
    mp.setattr(nvptx, "peephole", lambda ptx: ptx)
    texts = {}
    try:
        for unit in units:
            gpu.lower_gpu(unit)
            raw = nvptx.compile_ptx(unit.ir, [unit.symbol], "sm_80", keep=[EXC_RECORD])
            texts[unit.func.qualname.rsplit(".", 1)[-1]] = (raw, peephole(raw))
    finally:
        mp.undo()
    return texts


@pytest.mark.parametrize("kernel", KERNELS, ids=[k.name for k in KERNELS])
def test_ptx_peephole_keeps_accesses(ptx_texts, kernel):
    """The rewritten PTX makes the same memory accesses as LLVM's, for random parameters
    and thread indices (the interpreter of tests/test_ptx_index_addresses.py), and ptxas
    takes it."""
    raw, after = ptx_texts[kernel.name]
    if after != raw:
        same_accesses(raw, after)
        _assembles(after)
