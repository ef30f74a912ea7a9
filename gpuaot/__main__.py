"""``gpuaot`` / ``python -m gpuaot``: the command line, where the compiler is installed.

The ``gpuaot`` distribution alone is the run time (numpy only): what users of a package with
kernels get. The command line and the compiler come with ``pip install 'gpuaot[compiler]'``;
without them this says so instead of failing with an ImportError.
"""

from __future__ import annotations

import sys

COMPILER_MODULES = {"click", "llvmlite", "elftools", "platformdirs"}


def missing_compiler(e: ModuleNotFoundError) -> bool:
    return (e.name or "").split(".")[0] in COMPILER_MODULES


def compiler_hint(e: ModuleNotFoundError) -> str:
    return (
        f"error: this needs the gpuaot compiler ({e.name} is not installed): "
        "pip install 'gpuaot[compiler]'"
    )


def main() -> None:
    try:
        from gpuaot.cli import main as cli
    except ModuleNotFoundError as e:
        if not missing_compiler(e):
            raise
        print(compiler_hint(e), file=sys.stderr)
        sys.exit(2)
    cli()


if __name__ == "__main__":
    main()
