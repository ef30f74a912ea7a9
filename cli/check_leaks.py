"""``gpuaot check-leaks PATH...``: the leak gate as a command, for any CI.

::

    $ gpuaot check-leaks dist/*.whl build/                 # exit 0 clean, 1 leaks
    $ gpuaot check-leaks --format sarif -o leaks.sarif dist/
    $ gpuaot check-leaks --forbid 'cuda*' --allow 'gpu_ok_*' --undefined lib/libk.so

Options, settings, exit codes and output: ``cli/leak_report.py``; the scan: ``gpuaot.leaks``.
"""

from __future__ import annotations

import os

import click

from gpuaot.textsafe import printable

from .leak_report import report_options, run_report


@click.command("check-leaks", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, required=True, type=click.Path(), metavar="PATH...")
@report_options
def check_leaks(ctx: click.Context, paths: tuple[str, ...], **options) -> None:
    """Scan ELF files, directories, ar archives and wheels for leaked device symbols.

    Forbidden by default, defined or undefined, in .dynsym and .symtab: gpu_*, __nv_*,
    llvm.nvvm.*, __nvvm_*, __assertfail, julia.gpu.*; and any EM_CUDA image.
    Settings may also live in [tool.gpuaot.check-leaks] of the nearest pyproject.toml.

    \b
    Exit status: 0 clean, 1 leaks found, 2 usage error,
                 3 some input unreadable or malformed (wins over 1).
    """
    for p in paths:
        if not os.path.lexists(p):
            raise click.BadParameter(
                f"no such file or directory: {printable(p)}", param_hint="PATH"
            )

    def scan(rules, traceback: bool):
        from gpuaot.leaks.scan import Scanner

        return Scanner(rules, debug=traceback).scan(list(paths))

    run_report(ctx, "check-leaks", scan, **options)
