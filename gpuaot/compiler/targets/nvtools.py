"""NVIDIA's offline tools, found in the pip wheels, and PTX → cubin through ptxas.

Only the wheels in the running interpreter's environment are searched, never a system CUDA
install: a build must not depend on what happens to sit in ``/usr/local/cuda`` on one machine.

    >>> find_ptxas()                                   # doctest: +SKIP
    PosixPath('.../site-packages/nvidia/cuda_nvcc/bin/ptxas')
    >>> ptxas_version()                                # doctest: +SKIP
    '12.9.86'
    >>> cubin = ptx_to_cubin(ptx_text, "sm_80")        # doctest: +SKIP
    >>> cubin[:4]                                      # doctest: +SKIP
    b'\\x7fELF'

Wheels and what they provide:

- ``nvidia-cuda-nvcc-cu12``: ``nvidia/cuda_nvcc/bin/ptxas`` and
  ``nvidia/cuda_nvcc/nvvm/libdevice/libdevice.10.bc``;
- ``nvidia-cuda-cuobjdump`` (13.x: ``nvidia/cu13/bin/cuobjdump``; 12.x:
  ``nvidia/cuda_cuobjdump/bin/cuobjdump``): only for tests and ``gpuaot inspect``.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from gpuaot.errors import BuildError

NVCC_WHEEL = "nvidia-cuda-nvcc-cu12"
CUOBJDUMP_WHEEL = "nvidia-cuda-cuobjdump"

_EXE = ".exe" if sys.platform == "win32" else ""
_ARCH_RE = re.compile(r"sm_\d{2,3}[af]?")

log = logging.getLogger(__name__)


def _wheel_dirs(subpackage: str) -> list[Path]:
    """Directories of ``nvidia.<subpackage>``: namespace packages, so no ``__file__``."""
    try:
        spec = importlib.util.find_spec(f"nvidia.{subpackage}")
    except (ImportError, ValueError):
        # No ``nvidia`` namespace at all, or a module shadowing it: the wheel is absent.
        return []
    if spec is None or spec.submodule_search_locations is None:
        return []
    return [Path(p) for p in spec.submodule_search_locations]


def _find_in_wheel(subpackage: str, relpath: str, *, executable: bool) -> Path | None:
    for root in _wheel_dirs(subpackage):
        candidate = root / relpath
        if candidate.is_file() and (not executable or os.access(candidate, os.X_OK)):
            return candidate
    return None


def find_ptxas() -> Path:
    """ptxas from the ``nvidia-cuda-nvcc-cu12`` wheel; a ``BuildError`` if it is missing."""
    path = _find_in_wheel("cuda_nvcc", f"bin/ptxas{_EXE}", executable=True)
    if path is None:
        raise BuildError(f"ptxas not found: install the pip package {NVCC_WHEEL}")
    return path


def find_libdevice() -> Path:
    """libdevice.10.bc from the ``nvidia-cuda-nvcc-cu12`` wheel; a ``BuildError`` if missing."""
    path = _find_in_wheel("cuda_nvcc", "nvvm/libdevice/libdevice.10.bc", executable=False)
    if path is None:
        raise BuildError(f"libdevice not found: install the pip package {NVCC_WHEEL}")
    return path


def find_cuobjdump() -> Path | None:
    """cuobjdump from the ``nvidia-cuda-cuobjdump`` wheel (13.x or 12.x layout), else None."""
    for subpackage in ("cu13", "cuda_cuobjdump"):
        path = _find_in_wheel(subpackage, f"bin/cuobjdump{_EXE}", executable=True)
        if path is not None:
            return path
    return None


def ptxas_version() -> str:
    """ptxas's release, e.g. ``'12.9.86'``: part of every device cache key."""
    return _ptxas_version(str(find_ptxas()))


def libdevice_sha256() -> str:
    """The sha256 of ``libdevice.10.bc``: part of every PTX cache key, since another nvcc
    wheel may ship another libdevice under the same name. Hashed once per process (per path)."""
    return _sha256_of(str(find_libdevice()))


@functools.lru_cache(maxsize=4)
def _sha256_of(path: str) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@functools.lru_cache(maxsize=4)
def _ptxas_version(ptxas: str) -> str:
    out = subprocess.run([ptxas, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"\bV(\d+\.\d+\.\d+)", out.stdout)
    if out.returncode != 0 or match is None:
        raise BuildError(f"{ptxas} --version gave no version: {out.stdout or out.stderr!r}")
    return match.group(1)


def check_arch(arch: str) -> str:
    """``'sm_80'`` → ``'sm_80'``; anything that is not ``sm_XX`` (or ``sm_XXa``) is refused."""
    if not _ARCH_RE.fullmatch(arch):
        raise BuildError(f"unknown GPU architecture {arch!r}: expected sm_XX, e.g. sm_80")
    return arch


def ptx_to_cubin(ptx: str, arch: str, *, debug: bool = False, opt_level: int = 3) -> bytes:
    """Assemble PTX into a cubin (an EM_CUDA ELF) for one architecture.

    ``debug`` adds line info (``-lineinfo``), not ``-g``: ptxas refuses ``-g`` with any
    optimisation ("Optimized debugging not supported"), and the SPEC's ``--debug`` asks for
    checks and line info, not an unoptimised kernel.

    The same PTX and options always give the same bytes: ptxas runs on a fixed file name in
    a fresh directory, and records neither that directory nor the time in the cubin.
    """
    check_arch(arch)
    if not 0 <= opt_level <= 3:
        raise BuildError(f"ptxas opt_level must be 0..3, not {opt_level}")
    cmd = [str(find_ptxas()), f"-arch={arch}", f"-O{opt_level}"]
    if debug:
        cmd.append("-lineinfo")
    with tempfile.TemporaryDirectory(prefix="gpuaot-ptxas-") as tmp:
        src, out = Path(tmp, "kernel.ptx"), Path(tmp, "kernel.cubin")
        src.write_text(ptx, encoding="utf-8")
        # Relative names and cwd=tmp keep the temp directory out of ptxas's messages.
        proc = subprocess.run(
            [*cmd, src.name, "-o", out.name],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        message = "\n".join(s.strip() for s in (proc.stderr, proc.stdout) if s.strip())
        if proc.returncode != 0 or not out.is_file():
            raise BuildError(f"ptxas failed for {arch}:\n{message or f'exit {proc.returncode}'}")
        if message:
            log.warning("ptxas (%s): %s", arch, message)
        return out.read_bytes()
