"""Fixtures for the leak gate: the gcc-built corpus (once per session) and ``nm`` as the oracle."""

from __future__ import annotations

import fnmatch
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
try:
    import gpuaot.leaks  # noqa: F401
except ImportError:  # a checkout that is not pip-installed
    sys.path.insert(0, str(ROOT))

DEFAULT_GLOBS = ["gpu_*", "__nv_*", "llvm.nvvm.*", "__nvvm_*", "__assertfail", "julia.gpu.*"]


def _load_builder():
    spec = importlib.util.spec_from_file_location(
        "gpuaot_elf_corpus", ROOT / "fixtures" / "elf" / "build_corpus.py"
    )
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> path of every corpus file (see fixtures/elf/build_corpus.py)."""
    for tool in ("gcc", "nm", "ar", "objcopy", "strip"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    return _load_builder().build(tmp_path_factory.mktemp("elf"))


def nm_symbols(path: Path | str, dynamic: bool = False) -> list[tuple[str, bool]]:
    """(name as nm prints it, defined) for every symbol nm lists; [] for "no symbols"."""
    args = ["nm", "--no-sort"] + (["-D"] if dynamic else []) + [str(path)]
    proc = subprocess.run(args, capture_output=True, text=True)
    out = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3:
            _, letter, name = parts
        elif len(parts) == 2:
            letter, name = parts
        else:
            continue
        out.append((name, letter not in ("U", "w", "v")))
    return out


def nm_leaks(path: Path | str, dynamic: bool, globs: list[str] = DEFAULT_GLOBS) -> list:
    """nm's view of the forbidden symbols: sorted (name incl. @version, defined)."""
    return sorted(
        (name, defined)
        for name, defined in nm_symbols(path, dynamic)
        if any(fnmatch.fnmatchcase(name.split("@", 1)[0] if dynamic else name, g) for g in globs)
    )


@pytest.fixture(scope="session")
def nm_oracle():
    return nm_leaks


@pytest.fixture
def has(corpus):
    """Skip a test whose corpus file this toolchain could not build (gcc -m32)."""

    def need(name: str) -> Path:
        if name not in corpus:
            pytest.skip(f"{name} was not built here (no gcc -m32?)")
        return corpus[name]

    return need
