"""``gpuaot`` / ``python -m gpuaot``: the command line, where the compiler is installed.

The ``gpuaot`` distribution alone is the run time (numpy only): what users of a package with
kernels get. The command line (``cli/``, installed as ``gpuaot.cli``) and the compiler come
with ``pip install 'gpuaot[compiler]'``; without them this says so instead of failing with an
ImportError.
"""

from __future__ import annotations

import sys

from gpuaot.extras import compiler_hint, missing_compiler


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
