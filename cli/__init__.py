"""The ``gpuaot`` command line, one module per command (installed as ``gpuaot.cli``).

    $ gpuaot build fixtures/example          # compile, bundle, leak-check     (cli/build.py)
    $ gpuaot check-leaks dist/*.whl          # any ELF, archive, wheel or dir  (cli/check_leaks.py)
    $ gpuaot check-wheel dist/*.whl          # bundles present and fresh       (cli/check_wheel.py)
    $ gpuaot inspect example/_gpuaot/*.so    # what a bundle holds             (cli/inspect.py)
    $ gpuaot emit example.kernels:saxpy --stage opt                          # (cli/emit.py)

User errors carry their exit code (``GpuaotError.exit_code``) and print a one-line reason or a
located diagnostic, never a traceback; ``--traceback`` shows one for bug reports. The error
handling and exit codes of every command are in ``cli/common.py``. Importing this package costs
click only: each command imports the compiler, the bundle reader or the scanner when it runs.
"""

from __future__ import annotations

import click

from . import build, check_leaks, check_wheel, emit, inspect


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gpuaot")
def main() -> None:
    """Ahead-of-time compiler for Python GPU kernels."""


main.add_command(build.build)
main.add_command(inspect.inspect)
main.add_command(emit.emit)
main.add_command(check_leaks.check_leaks, name="check-leaks")
main.add_command(check_wheel.check_wheel, name="check-wheel")
