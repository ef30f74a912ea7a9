"""The conformance suite on the GPU target.

Offline (CI): every conformance kernel goes through NVPTX, and ptxas assembles it for sm_75,
sm_80 and sm_90 — a failure there fails the build; cuobjdump then lists every image.
With a GPU (marked ``gpu``, skipped elsewhere): every conformance kernel runs on the device
and must meet the same numpy oracle as the CPU backend.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import test_conformance as tc
from gpu_support import DeviceArray, requires_gpu

from gpuaot.compiler.targets.nvtools import find_cuobjdump
from gpuaot.runtime import bundle as rt_bundle

FIXTURES = Path(__file__).parent.parent / "fixtures"
ARCHS = ["sm_75", "sm_80", "sm_90"]


@pytest.fixture(scope="module")
def gpu_conformance(tmp_path_factory):
    from gpuaot.compiler.driver import BuildOptions, build_package

    root = tmp_path_factory.mktemp("gpuconf")
    pkg = root / "conformance"
    shutil.copytree(FIXTURES / "conformance", pkg, ignore=shutil.ignore_patterns("_gpuaot"))
    opts = BuildOptions.resolve(str(pkg), cache_dir=str(root / "cache"))
    result = build_package(opts)
    assert result.leaks is None
    return root, result


def test_ptxas_assembles_every_conformance_kernel_for_each_arch(gpu_conformance):
    _, result = gpu_conformance
    m = result.manifest
    specs = [s for k in m["kernels"] for s in k["specializations"]]
    assert len(specs) >= 40
    assert all(s["gpu"] is not None for s in specs)
    images = m["images"]
    assert len(images) == len(specs)
    for img in images:
        assert sorted((e["kind"], e["arch"]) for e in img["entries"]) == sorted(
            [("elf", a) for a in ARCHS] + [("ptx", "sm_75")]
        )
    tool = find_cuobjdump()
    if tool is None:
        pytest.skip("nvidia-cuda-cuobjdump not installed")
    listing = subprocess.run(
        [str(tool), "-lelf", "-lptx", str(result.bundle)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for arch in ARCHS:
        assert listing.count(f".{arch}.cubin") == len(specs)
    assert listing.count("PTX file") == len(specs)


def _device_launcher(kernel):
    def launch(*args):
        if any(isinstance(a, np.ndarray) and not a.flags.c_contiguous for a in args):
            pytest.skip("strided views: the test's device arrays are contiguous copies")
        dev = [DeviceArray(a) if isinstance(a, np.ndarray) else a for a in args]
        try:
            kernel(*dev)
        finally:
            for a, d in zip(args, dev):
                if isinstance(a, np.ndarray):
                    np.copyto(a, d.get())

    return launch


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("c", tc.KERNEL_CASES, ids=lambda c: c.id)
def test_kernel_on_gpu(gpu_conformance, c):
    root, _ = gpu_conformance
    sys.path.insert(0, str(root))
    rt_bundle.forget("conformance")
    for mod in [m for m in sys.modules if m.split(".")[0] == "conformance"]:
        del sys.modules[mod]
    try:
        import conformance

        kern = getattr(conformance, c.fn)
        r = tc._run(c, _device_launcher(kern[c.config]))
        if not r:
            return
        if c.check is not None:
            c.check(r["state"])
            return
        # libdevice and libm transcendentals differ in the last bits (DESIGN.md).
        case = c if c.rtol is None else tc.Case(**{**c.__dict__, "rtol": max(c.rtol, 4e-6)})
        # The GPU always has FMA: contracted cases compare to their fma_rtol (fma=False stay exact).
        tc._compare(r["state"], c.oracle(r["expected_state"]), case, fused=True)
    finally:
        sys.path.remove(str(root))
