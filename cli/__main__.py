"""``python -m gpuaot.cli``: the command line without the console script."""

from gpuaot.cli import main

if __name__ == "__main__":
    main()
