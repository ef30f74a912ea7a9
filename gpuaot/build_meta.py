"""A PEP 517 build backend: setuptools' own, with the package's gpuaot bundles in the wheel.

    [build-system]
    requires = ["gpuaot", "setuptools>=68"]
    build-backend = "gpuaot.build_meta"

Every hook is setuptools' (so ``[tool.setuptools]``, ``setup.cfg`` and ``setup.py`` keep
working), and then:

* ``build_wheel``: every top-level package of the wheel that has gpuaot functions (or those in
  ``[tool.gpuaot] packages``) is built from its source directory with the project's
  ``[tool.gpuaot]`` settings, as ``gpuaot build`` would; the bundles go into the wheel under
  ``PKG/_gpuaot/``, and the wheel is tagged ``py3-none-<platform>``. A compile error or a leak
  fails the build with ``gpuaot build``'s diagnostics and exit code (no traceback).
* ``build_editable``: the bundles are built into the source tree (``PKG/_gpuaot/``), where
  the editable install imports them from.
* ``build_sdist``: no built bundle goes into a source distribution.
* ``get_requires_for_build_*``: the compiler (``gpuaot[compiler]``), so a build environment
  gets llvmlite and the CUDA toolchain wheels while the users of the wheel get neither.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from setuptools import build_meta as _setuptools

get_requires_for_build_sdist = _setuptools.get_requires_for_build_sdist
prepare_metadata_for_build_wheel = _setuptools.prepare_metadata_for_build_wheel
prepare_metadata_for_build_editable = _setuptools.prepare_metadata_for_build_editable


def _compiler_requires() -> list[str]:
    """The ``[compiler]`` extra's requirements, spelled out from this gpuaot's own metadata.

    Not ``gpuaot[compiler]``: pip counts an already installed ``gpuaot`` as satisfying it and
    installs none of the extra (the build environment has gpuaot from ``requires`` already).
    """
    from importlib.metadata import PackageNotFoundError, requires

    try:
        reqs = requires("gpuaot") or []
    except PackageNotFoundError:  # run from a source tree: its environment has the compiler
        return []
    out = []
    for r in reqs:
        spec, _, marker = r.partition(";")
        if not re.search(r"""extra\s*==\s*["']compiler["']""", marker):
            continue
        rest = re.sub(r"""\s*(and\s+)?extra\s*==\s*["']compiler["'](\s+and)?""", "", marker)
        out.append(f"{spec.strip()}; {rest.strip()}" if rest.strip() else spec.strip())
    return out


def get_requires_for_build_wheel(config_settings=None) -> list[str]:
    return [*_setuptools.get_requires_for_build_wheel(config_settings), *_compiler_requires()]


def get_requires_for_build_editable(config_settings=None) -> list[str]:
    return [*_setuptools.get_requires_for_build_editable(config_settings), *_compiler_requires()]


def build_sdist(sdist_directory, config_settings=None) -> str:
    from .bundle.wheel import strip_sdist

    name = _setuptools.build_sdist(sdist_directory, config_settings)
    dropped = strip_sdist(Path(sdist_directory) / name)
    if dropped:
        _say(f"left {len(dropped)} built file(s) under _gpuaot/ out of the sdist")
    return name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None) -> str:
    name = _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
    return _guarded(_bundle_wheel, Path(wheel_directory) / name)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None) -> str:
    name = _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
    _guarded(_bundle_in_place, Path(wheel_directory) / name)
    return name


# ---------------------------------------------------------------------- the work


def _say(msg: str) -> None:
    print(f"gpuaot: {msg}", file=sys.stderr, flush=True)


def _guarded(fn, *args):
    """User errors end the hook with their message and exit code: no traceback in pip's log."""
    from .errors import GpuaotError

    try:
        return fn(*args)
    except GpuaotError as e:
        print(e.format(), file=sys.stderr, flush=True)
        raise SystemExit(e.exit_code) from None


def _bundle_wheel(wheel: Path) -> str:
    from .bundle.manifest import platform_tag
    from .bundle.wheel import add_bundles, wheel_platform

    found = _packages(wheel)
    if not found:
        _say("no package with gpuaot functions in this project: built a plain wheel")
        return wheel.name
    bundles: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="gpuaot-wheel-") as tmp:
        for name, src in found:
            result = _build(src, Path(tmp) / name)
            _check_sources_match(wheel, result.manifest)
            rel = f"{name}/_gpuaot/{result.bundle.name}"
            bundles[rel] = result.bundle.read_bytes()
    new = add_bundles(wheel, bundles, wheel_platform(platform_tag()))
    _say(f"{new.name}: {', '.join(sorted(bundles))}")
    return new.name


def _bundle_in_place(wheel: Path) -> None:
    found = _packages(wheel, editable=True)
    if not found:
        _say("no package with gpuaot functions in this project: nothing to build")
    for _name, src in found:
        _build(src, None)


def _build(src: Path, out: Path | None):
    """``gpuaot build SRC [--out OUT]`` in-process, with its diagnostics and exit codes."""
    from .compiler.driver import BuildOptions, build_package, report_build

    opts = BuildOptions.resolve(str(src), out_dir=str(out) if out is not None else None)
    result = build_package(opts)
    report_build(_Report(), result)
    if result.leaks:
        raise SystemExit(1)
    return result


class _Report:
    """What :func:`report_build` writes to: stderr, as the CLI does."""

    json = False

    def info(self, msg: str) -> None:
        _say(msg)


def _project_settings() -> dict:
    from .compiler.settings import project_settings

    return project_settings(Path.cwd())


def _packages(wheel: Path, editable: bool = False) -> list[tuple[str, Path]]:
    """(name, source directory) of each package to bundle, from the project's layout."""
    from .errors import UsageError

    settings = _project_settings()
    listed = settings.get("packages")
    names = list(listed) if listed is not None else _top_level_packages(wheel, editable)
    out = []
    for name in names:
        src = _source_dir(name)
        if src is None:
            if listed is not None:
                raise UsageError(
                    f"pyproject.toml: [tool.gpuaot] packages names '{name}', which is neither "
                    f"src/{name}/ nor {name}/ (a directory with __init__.py)"
                )
            continue
        if listed is not None or _has_gpuaot_functions(src):
            out.append((name, src))
    return out


def _top_level_packages(wheel: Path, editable: bool) -> list[str]:
    """The wheel's top-level packages; for an editable wheel, the project's candidates."""
    if editable:
        root = Path.cwd()
        dirs = [*(root / "src").glob("*/__init__.py"), *root.glob("*/__init__.py")]
        return sorted({p.parent.name for p in dirs})
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    return sorted(
        {n.split("/")[0] for n in names if n.count("/") == 1 and n.endswith("/__init__.py")}
    )


def _source_dir(name: str) -> Path | None:
    """Where setuptools took package ``name`` from: ``[tool.setuptools] package-dir``, src/ or
    the project root (the layouts setuptools discovers on its own)."""
    root = Path.cwd()
    package_dir = _setuptools_package_dir(root)
    candidates = []
    if name in package_dir:
        candidates.append(root / package_dir[name])
    if "" in package_dir:
        candidates.append(root / package_dir[""] / name)
    candidates += [root / "src" / name, root / name]
    return next((c.resolve() for c in candidates if (c / "__init__.py").is_file()), None)


def _setuptools_package_dir(root: Path) -> dict:
    from .compiler.settings import read_pyproject

    data = read_pyproject(root / "pyproject.toml")
    return data.get("tool", {}).get("setuptools", {}).get("package-dir", {}) or {}


def _has_gpuaot_functions(src: Path) -> bool:
    from .compiler.discover import discover
    from .errors import Diagnostics

    pkg = discover(str(src), Diagnostics())
    return any(True for _ in pkg.functions())


def _check_sources_match(wheel: Path, manifest: dict) -> None:
    """The bundle was built from the files the wheel ships (else it would load as stale)."""
    import zipfile

    from .bundle.manifest import source_sha256
    from .errors import BuildError

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for mod, info in sorted(manifest["modules"].items()):
            if info["file"] not in names:
                raise BuildError(f"the wheel lacks {info['file']} ({mod}), which the bundle needs")
            if source_sha256(zf.read(info["file"])) != info["sha256"]:
                raise BuildError(
                    f"the wheel's {info['file']} differs from the source the bundle was built "
                    "from (a build step rewrote it?)"
                )
