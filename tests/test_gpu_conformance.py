"""The conformance suite on the GPU target.

Offline (CI): every conformance kernel goes through NVPTX, and ptxas assembles it for sm_75,
sm_80 and sm_90 — a failure there fails the build; cuobjdump then lists every image.
With a GPU, every conformance kernel runs on the device and must meet the same numpy oracle
as the CPU backend: that is the ``gpu`` leg of test_conformance's backend axis
(``backends.BACKENDS``; marked ``gpu``, skipped without a device or driver).
"""

from __future__ import annotations

import subprocess

import pytest

from gpuaot.compiler.targets.nvtools import find_cuobjdump

ARCHS = ["sm_75", "sm_80", "sm_90"]


@pytest.fixture(scope="module")
def gpu_conformance(built):
    """fixtures/conformance built with the GPU target (the build the ``gpu`` leg runs)."""
    b = built("conformance", gpu=True)
    assert b.result.leaks is None
    return b.root, b.result


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
