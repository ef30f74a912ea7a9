"""nvtools: tools come from the pip wheels; ptxas turns PTX into cubins or a BuildError."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from gpu_toolchain_kit import cuobjdump_list

from gpuaot.compiler.targets import nvtools
from gpuaot.errors import BuildError

BAD_PTX = """
.version 6.3
.target sm_75
.address_size 64
.visible .entry broken()
{
    frobnicate.b32 %r1;
    ret;
}
"""


def _site_dirs() -> list[Path]:
    import nvidia  # the namespace package the wheels install into

    return [Path(p).resolve() for p in nvidia.__path__]


def test_tools_come_from_the_nvidia_wheels(ptxas: Path, libdevice: Path) -> None:
    roots = _site_dirs()
    for tool in (ptxas, libdevice):
        assert any(root in tool.resolve().parents for root in roots), tool
    assert ptxas.name.startswith("ptxas")
    assert libdevice.name == "libdevice.10.bc"
    assert libdevice.read_bytes()[:2] == b"BC"  # LLVM bitcode magic


def test_cuobjdump_found_in_its_wheel(cuobjdump: Path) -> None:
    assert any(root in cuobjdump.resolve().parents for root in _site_dirs())
    out = subprocess.run([str(cuobjdump), "--version"], capture_output=True, text=True)
    assert "fat binary" in out.stdout


def test_ptxas_version_is_what_ptxas_says(ptxas: Path) -> None:
    out = subprocess.run([str(ptxas), "--version"], capture_output=True, text=True).stdout
    version = nvtools.ptxas_version()
    assert f"V{version}" in out
    assert version.startswith("12.")  # the cu12 wheel


def _run_without(module: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which ``module`` cannot be imported."""
    prog = f"import sys\nsys.modules[{module!r}] = None\n" + textwrap.dedent(code)
    repo = Path(__file__).resolve().parents[2]  # so the child imports this checkout's gpuaot
    return subprocess.run(
        [sys.executable, "-c", prog], capture_output=True, text=True, cwd=repo, check=False
    )


def test_missing_nvcc_wheel_is_a_build_error_naming_it() -> None:
    out = _run_without(
        "nvidia.cuda_nvcc",
        """
        from gpuaot.errors import BuildError
        from gpuaot.compiler.targets import nvtools
        for find in (nvtools.find_ptxas, nvtools.find_libdevice):
            try:
                find()
            except BuildError as exc:
                print(exc)
        """,
    )
    lines = out.stdout.splitlines()
    assert out.returncode == 0, out.stderr
    assert len(lines) == 2
    assert all("nvidia-cuda-nvcc-cu12" in line for line in lines)


def test_cubin_is_a_cuda_elf_for_the_arch(saxpy_ptx, cuobjdump: Path, tmp_path: Path) -> None:
    ptx = saxpy_ptx("sm_75")
    for arch in ("sm_75", "sm_80", "sm_90"):
        cubin = nvtools.ptx_to_cubin(ptx, arch)
        path = tmp_path / f"k_{arch}.cubin"
        path.write_bytes(cubin)
        header = subprocess.run(["readelf", "-h", str(path)], capture_output=True, text=True)
        assert "NVIDIA CUDA architecture" in header.stdout
        # cuobjdump names a bare cubin after its architecture.
        assert cuobjdump_list(cuobjdump, path) == [("ELF", f"k_{arch}.{arch}.cubin")]


def test_ptx_to_cubin_is_deterministic(saxpy_ptx) -> None:
    ptx = saxpy_ptx("sm_80")
    assert nvtools.ptx_to_cubin(ptx, "sm_80") == nvtools.ptx_to_cubin(ptx, "sm_80")
    lined = nvtools.ptx_to_cubin(ptx, "sm_80", debug=True)
    assert lined == nvtools.ptx_to_cubin(ptx, "sm_80", debug=True)


def test_bad_ptx_is_a_build_error_with_ptxas_message(ptxas: Path) -> None:
    with pytest.raises(BuildError) as info:
        nvtools.ptx_to_cubin(BAD_PTX, "sm_75")
    message = str(info.value)
    assert "frobnicate" in message  # ptxas's own words about the bad instruction
    assert "kernel.ptx, line 7" in message  # located, without the temp directory
    assert "gpuaot-ptxas-" not in message


def test_ptx_newer_than_arch_is_refused(saxpy_ptx) -> None:
    # Why the fatbin carries PTX for the lowest architecture only.
    with pytest.raises(BuildError, match="higher"):
        nvtools.ptx_to_cubin(saxpy_ptx("sm_90"), "sm_75")


@pytest.mark.parametrize("arch", ["sm75", "compute_80", "80", ""])
def test_bad_arch_is_refused(arch: str) -> None:
    with pytest.raises(BuildError, match="architecture"):
        nvtools.ptx_to_cubin(BAD_PTX, arch)


def test_bad_opt_level_is_refused() -> None:
    with pytest.raises(BuildError, match="opt_level"):
        nvtools.ptx_to_cubin(BAD_PTX, "sm_80", opt_level=4)
