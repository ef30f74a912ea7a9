"""Fixtures for the device toolchain tests: the wheels' tools, compiled sample kernels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from gpu_toolchain_kit import ARCHS, saxpy_module

from gpuaot.compiler.targets import nvtools
from gpuaot.compiler.targets.nvptx import compile_ptx
from gpuaot.errors import BuildError


@pytest.fixture(scope="session")
def ptxas() -> Path:
    try:
        return nvtools.find_ptxas()
    except BuildError as exc:  # only where the wheel is absent; it is present in dev envs
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def libdevice() -> Path:
    try:
        return nvtools.find_libdevice()
    except BuildError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def cuobjdump() -> Path:
    path = nvtools.find_cuobjdump()
    if path is None:
        pytest.skip("cuobjdump not installed: pip install nvidia-cuda-cuobjdump")
    return path


@pytest.fixture(scope="session")
def saxpy_ptx(ptxas: Path, libdevice: Path) -> Callable[[str], str]:
    cache: dict[str, str] = {}

    def get(arch: str) -> str:
        if arch not in cache:
            cache[arch] = compile_ptx(str(saxpy_module()), ["saxpy", "expf_kernel"], arch)
        return cache[arch]

    return get


@pytest.fixture(scope="session")
def device_images(
    saxpy_ptx: Callable[[str], str],
) -> tuple[tuple[str, str], list[tuple[str, bytes]]]:
    """PTX for sm_75 and a cubin for each of ARCHS, as ``make_fatbin`` takes them."""
    ptx = saxpy_ptx("sm_75")
    return ("sm_75", ptx), [(arch, nvtools.ptx_to_cubin(ptx, arch)) for arch in ARCHS]
