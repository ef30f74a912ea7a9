"""Where a build's settings come from: ``[tool.gpuaot]`` of the nearest pyproject.toml, and
whether the package may be written into.

    project_settings(Path("src/mypkg"))   # {"arch": ["sm_80"], ...}; an unknown key is an error
    read_pyproject(Path("pyproject.toml"))

Plain Python (tomllib): read by the driver, the build record and the build backend alike.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from ..errors import UsageError


def _installed_in(root: Path) -> str | None:
    """Why ``root`` is an installed package, not a source tree (or None)."""
    import site
    import sysconfig

    dirs = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    try:
        dirs |= set(site.getsitepackages()) | {site.getusersitepackages()}
    except AttributeError:  # pragma: no cover - virtualenv's old site.py
        pass
    for d in dirs:
        if d and root.is_relative_to(Path(d).resolve()):
            return f"it is in {d}"
    for info in root.parent.glob("*.dist-info"):
        try:
            record = (info / "RECORD").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if f"{root.name}/__init__.py," in record:
            return f"it belongs to the installed distribution {info.name}"
    if not os.access(root, os.W_OK):
        return "it is not writable"
    return None


def check_writable_package(name: str, root: Path) -> None:
    why = _installed_in(root)
    if why is not None:
        raise UsageError(
            f"{name}: gpuaot writes the bundle into the package, and {root} is not a source "
            f"tree ({why}); build the source checkout, or give --out DIR (then run with "
            "GPUAOT_BUNDLE_PATH=DIR)"
        )


SETTINGS = (
    "arch",
    "cpu",
    "debug",
    "no-gpu",
    "no-cpu",
    "no-fma",
    "jobs",
    "out",
    "cache-dir",
    "packages",
)
SUBTABLES = ("check-leaks",)


def read_pyproject(path: Path) -> dict:
    """A pyproject.toml as a dict ({} where there is none); a broken one is a usage error."""
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: cannot read it: {e}") from None


def project_settings(root: Path) -> dict:
    """``[tool.gpuaot]`` from the nearest pyproject.toml at or above ``root``.

    An unknown key is an error naming it and the file: a typo (``ach = ...``) must not
    silently build with the defaults.
    """
    for d in [root, *root.parents]:
        p = d / "pyproject.toml"
        if p.is_file():
            cfg = read_pyproject(p).get("tool", {}).get("gpuaot", {})
            if not isinstance(cfg, dict):
                raise UsageError(f"{p}: [tool.gpuaot] must be a table")
            for key in cfg:
                if key not in SETTINGS and key not in SUBTABLES:
                    near = difflib.get_close_matches(key, SETTINGS + SUBTABLES, n=1)
                    hint = f" (did you mean '{near[0]}'?)" if near else ""
                    raise UsageError(
                        f"{p}: [tool.gpuaot] has no setting '{key}'{hint}; known: "
                        f"{', '.join(SETTINGS + SUBTABLES)}"
                    )
            return cfg
    return {}
