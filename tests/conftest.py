"""Shared fixtures: build a fixture package on the CPU backend and import it fresh.

    def test_x(built):                       # session-scoped, one build per package
        pkg = built("conformance").module    # fixtures/conformance, copied, built, imported
        pkg.saxpy[4, 32](...)

    def test_y(kit, tmp_path, monkeypatch):  # a build of your own
        root = kit.copy_package(kit.FIXTURES / "example", tmp_path)
        res = kit.build(root, cache_dir=tmp_path / "cache")
        pkg = kit.import_package(root, monkeypatch)

The helpers come through the ``kit`` fixture rather than ``from conftest import ...``: more
than one ``conftest`` module lives under tests/.

Packages are always copied into a temporary directory first, so builds never write into the
repository, and each build gets its own bundle path: ``ctypes.CDLL`` of one path twice in a
process returns the library loaded first. The bundle goes to ``PKG/_gpuaot/`` (the default
place the run time looks), so ``$GPUAOT_BUNDLE_PATH`` is not needed; it is cleared here.
The GPU target is left out (``no_gpu=True``) unless a test asks for it (``gpu=True``).
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures"
VENV_BIN = Path(sys.executable).parent


def copy_package(src: Path | str, dest_parent: Path, name: str | None = None) -> Path:
    """Copy a package directory (without build outputs) to ``dest_parent/name``."""
    src = Path(src)
    dest = Path(dest_parent) / (name or src.name)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("_gpuaot", "__pycache__"))
    return dest


def write_package(root: Path, files: dict[str, str]) -> Path:
    """Write a package from ``{relative path: source}``; adds an empty ``__init__.py``."""
    root.mkdir(parents=True, exist_ok=True)
    if "__init__.py" not in files:
        (root / "__init__.py").write_text("")
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def build(
    root: Path | str,
    *,
    out: Path | None = None,
    cache_dir: Path | None = None,
    debug: bool | None = None,
    jobs: int | None = None,
    gpu: bool = False,
):
    """Build a package directory on the CPU backend (``gpu``: and the GPU's, every default
    arch); returns the driver's BuildResult."""
    from gpuaot.compiler.driver import BuildOptions, build_package
    from gpuaot.errors import CompileErrors

    root = Path(root)
    opts = BuildOptions.resolve(
        str(root),
        no_gpu=not gpu,
        out_dir=out,
        cache_dir=str(cache_dir or root.parent / ".gpuaot-cache"),
        debug=debug,
        jobs=jobs,
    )
    try:
        return build_package(opts)
    except CompileErrors as e:
        e.add_note(e.format())  # pytest then shows the diagnostics, not only "1 error"
        raise


def build_errors(root: Path | str, **kw) -> str:
    """Build a package that must not compile; its diagnostics as the CLI prints them."""
    from gpuaot.errors import CompileErrors

    with pytest.raises(CompileErrors) as e:
        build(root, **kw)
    return e.value.format()


def build_alone(parent: Path, fixture: str, name: str, files: dict | None = None, **kw):
    """fixtures/conformance/FIXTURE.py as module ``k`` of a package NAME of its own (plus
    ``files``), built with the GPU target (every default arch, ptxas) and ``kw``'s options:
    ``(package root, BuildResult)``. Skips without ptxas unless ``no_gpu`` is given."""
    from gpuaot.compiler.driver import BuildOptions, build_package

    if "no_gpu" not in kw and shutil.which("ptxas") is None:
        pytest.skip("ptxas not found")
    source = (FIXTURES / "conformance" / f"{fixture}.py").read_text()
    pkg = write_package(parent / name, {"k.py": source, **(files or {})})
    opts = BuildOptions.resolve(str(pkg), cache_dir=str(parent / "cache"), **kw)
    return pkg, build_package(opts)


def assert_assembled(manifest, kernels: set[str], gpu_only: frozenset = frozenset()) -> None:
    """Every kernel of ``manifest`` is one of ``kernels``, has a GPU image (and a CPU one
    unless named in ``gpu_only``), and the fatbin holds a cubin for every default arch."""
    from gpuaot.compiler.driver import DEFAULT_ARCHS

    assert {k["name"] for k in manifest["kernels"]} == kernels
    for k in manifest["kernels"]:
        for s in k["specializations"]:
            assert s["gpu"] is not None, k["name"]
            assert bool(s["gpu_only"]) == (k["name"] in gpu_only), k["name"]
            assert bool(s["cpu"]) != (k["name"] in gpu_only), k["name"]
    assert manifest["images"]
    for img in manifest["images"]:
        elfs = sorted(e["arch"] for e in img["entries"] if e["kind"] == "elf")
        assert elfs == sorted(DEFAULT_ARCHS)


def unload(name: str) -> None:
    """Forget a package: its modules, and its loaded bundle."""
    from gpuaot.runtime import bundle

    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]
    bundle.forget(name)


def import_package(root: Path, monkeypatch: pytest.MonkeyPatch | None = None):
    """Import the package at ``root`` afresh (its parent goes first on ``sys.path``)."""
    name = root.name
    unload(name)
    if monkeypatch is not None:
        monkeypatch.syspath_prepend(str(root.parent))
    else:
        sys.path.insert(0, str(root.parent))
    importlib.invalidate_caches()
    return importlib.import_module(name)


@dataclass
class Built:
    name: str
    root: Path
    result: object  # BuildResult

    @property
    def bundle(self) -> Path:
        return self.result.bundle

    @property
    def manifest(self) -> dict:
        return self.result.manifest

    @property
    def module(self):
        mod = sys.modules.get(self.name)
        if mod is None or Path(mod.__file__).resolve().parent != self.root.resolve():
            mod = import_package(self.root)
        return mod


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """The helpers of this module, for test files."""
    return SimpleNamespace(
        REPO=REPO,
        FIXTURES=FIXTURES,
        VENV_BIN=VENV_BIN,
        copy_package=copy_package,
        write_package=write_package,
        build=build,
        build_errors=build_errors,
        build_alone=build_alone,
        assert_assembled=assert_assembled,
        unload=unload,
        import_package=import_package,
    )


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """``built(name)``: fixtures/NAME copied, built (once per session) and importable;
    ``built(name, gpu=True)``: with the GPU target too (ptxas, every default arch)."""
    os.environ.pop("GPUAOT_BUNDLE_PATH", None)
    done: dict[tuple[str, bool, bool], Built] = {}
    added: list[str] = []

    def get(name: str, debug: bool = False, gpu: bool = False) -> Built:
        key = (name, debug, gpu)
        if key not in done:
            parent = tmp_path_factory.mktemp(f"{name}{'-debug' if debug else ''}{'-gpu' * gpu}")
            root = copy_package(FIXTURES / name, parent)
            cache = tmp_path_factory.getbasetemp() / "cache"
            result = build(root, cache_dir=cache, debug=debug, gpu=gpu)
            done[key] = Built(name, root, result)
            added.append(str(parent))
        return done[key]

    yield get
    for p in added:
        while p in sys.path:
            sys.path.remove(p)
