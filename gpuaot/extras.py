"""Which install extra a missing module belongs to, and the hint that says what to install.

    >>> compiler_hint(ModuleNotFoundError("No module named 'click'", name="click"))
    "error: this needs the gpuaot compiler (click is not installed): pip install 'gpuaot[compiler]'"

Imports nothing: ``gpuaot.__main__`` reads it before the command line (which needs click) can
be imported, and the command line reads it when a command body misses a compiler module. In
``__main__`` it made ``__main__`` and ``gpuaot.cli`` import each other.
"""

from __future__ import annotations

COMPILER_MODULES = {"click", "llvmlite", "elftools", "platformdirs"}


def missing_compiler(e: ModuleNotFoundError) -> bool:
    return (e.name or "").split(".")[0] in COMPILER_MODULES


def compiler_hint(e: ModuleNotFoundError) -> str:
    return (
        f"error: this needs the gpuaot compiler ({e.name} is not installed): "
        "pip install 'gpuaot[compiler]'"
    )
