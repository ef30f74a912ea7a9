"""``gpuaot check-wheel WHEEL...``: wheels carry a complete, fresh, leak-free bundle.

::

    $ gpuaot check-wheel dist/*.whl                        # bundles present, fresh, leak-free
    $ gpuaot check-wheel --baseline x86-64 --format github dist/

Options, settings, exit codes and output: ``cli/leak_report.py``; the checks:
``gpuaot.leaks.wheelcheck``.
"""

from __future__ import annotations

import os

import click

from gpuaot.textsafe import printable

from .leak_report import report_options, run_report


@click.command("check-wheel", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("wheels", nargs=-1, required=True, type=click.Path(), metavar="WHEEL...")
@click.option(
    "--baseline",
    metavar="LEVEL",
    default=None,
    help="The CPU level a variant must run on, for wheels of that level's platform "
    "[the lowest default level: x86-64-v2, armv8-a].",
)
@report_options
def check_wheel(
    ctx: click.Context, wheels: tuple[str, ...], baseline: str | None, **options
) -> None:
    """Check that wheels carry a complete, fresh, leak-free gpuaot bundle.

    For each package with gpuaot functions: its bundle is in the wheel, built from the wheel's
    .py files, for the wheel's platform tag, with a CPU variant for the baseline CPU and no
    native one, its images matching their sha256; and no ELF member leaks device symbols
    (the check-leaks rules; --forbid, --allow, [tool.gpuaot.check-leaks]).
    A directory stands for the *.whl files in it.

    \b
    Exit status: 0 clean, 1 findings, 2 usage error,
                 3 some input unreadable or malformed (wins over 1).
    """
    from gpuaot.bundle.cpus import LEVELS

    if baseline is not None and baseline not in {lv.name for lv in LEVELS}:
        known = ", ".join(lv.name for lv in LEVELS)
        raise click.BadParameter(
            f"'{printable(baseline)}' is not a CPU level ({known})", param_hint="LEVEL"
        )
    paths = []
    for p in wheels:
        if not os.path.lexists(p):
            raise click.BadParameter(
                f"no such file or directory: {printable(p)}", param_hint="WHEEL"
            )
        if os.path.isdir(p):
            found = sorted(e.path for e in os.scandir(p) if e.name.endswith(".whl"))
            if not found:
                raise click.BadParameter(f"no *.whl files in {printable(p)}", param_hint="WHEEL")
            paths += found
        else:
            paths.append(p)

    def check(rules, traceback: bool):
        from gpuaot.leaks.wheelcheck import check_wheels

        return check_wheels(paths, rules, baseline=baseline, debug=traceback)

    run_report(ctx, "check-wheel", check, **options)
