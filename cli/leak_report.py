"""What ``check-leaks`` and ``check-wheel`` share: their options, settings and report output.

    run_report(ctx, "check-leaks", scan, **options)   # scan(rules, traceback) -> ScanResult

Exit codes: 0 clean, 1 findings, 2 usage (bad option, no such path, bad configuration), 3 some
input unreadable or malformed -- 3 also when there are findings besides, since the scan was not
complete; the findings are reported all the same.  No traceback unless ``--traceback``; a bug
says so in one line (exit 3).  ``-o`` into a missing or read-only directory is a usage error
(2), found before the scan.  A closed stdout (``| head -1``) never changes the exit code
(:func:`gpuaot.textsafe.pipe_safe_stdio`), and names from the inputs are printed escaped.

Settings also come from ``[tool.gpuaot.check-leaks]`` (``forbid``, ``allow``, ``undefined``) in the
nearest ``pyproject.toml`` at or above the current directory; the command line adds globs and its
``--undefined/--no-undefined`` wins.  The scan, the rules and the report formats are
``gpuaot.leaks``'s; this module imports only click until a command runs, so ``gpuaot --help``
does not pay for the scanner.
"""

from __future__ import annotations

import os
import sys
import time

import click

from gpuaot.textsafe import printable

from .common import run_report_guarded

FORMATS = ["text", "json", "sarif", "github"]


def report_options(f):
    """The options ``check-leaks`` and ``check-wheel`` share: format, output, rules, verbosity."""
    options = [
        click.option(
            "--format",
            "fmt",
            type=click.Choice(FORMATS),
            default=None,
            help="Report format [text].",
        ),
        click.option("--json", "json_out", is_flag=True, help="Shorthand for --format json."),
        click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False),
            default=None,
            help="Write the report to FILE instead of stdout.",
        ),
        click.option(
            "--forbid",
            multiple=True,
            metavar="GLOB",
            help="Also forbid names matching GLOB (repeatable).",
        ),
        click.option(
            "--allow",
            multiple=True,
            metavar="GLOB",
            help="Never report names matching GLOB; wins over --forbid (repeatable).",
        ),
        click.option(
            "--undefined/--no-undefined",
            default=None,
            help="Also report undefined symbols that no DT_NEEDED library defines.",
        ),
        click.option(
            "--no-config", is_flag=True, help="Ignore [tool.gpuaot.check-leaks] in pyproject.toml."
        ),
        click.option("-v", "--verbose", count=True, help="List clean and skipped files; timing."),
        click.option("-q", "--quiet", is_flag=True, help="Print nothing when clean."),
        click.option("--traceback", is_flag=True, help="Show Python tracebacks (for bug reports)."),
    ]
    for option in reversed(options):
        f = option(f)
    return click.pass_context(f)


def run_report(ctx: click.Context, name: str, check, *, fmt, json_out, traceback, **options):
    """Run ``check(rules, traceback)`` and report its result; exits with the result's code.

    Errors and bugs are handled by :func:`~gpuaot.cli.common.run_report_guarded` (a bug: 3).
    """
    if json_out and fmt not in (None, "json"):
        raise click.UsageError(f"--json conflicts with --format {fmt}")
    fmt = "json" if json_out else (fmt or "text")
    ctx.exit(run_report_guarded(name, traceback, _run, check, fmt, traceback=traceback, **options))


def _run(
    check,
    fmt: str,
    output: str | None,
    forbid: tuple[str, ...],
    allow: tuple[str, ...],
    undefined: bool | None,
    no_config: bool,
    verbose: int,
    quiet: bool,
    traceback: bool,
) -> int:
    from gpuaot.leaks.report import FORMATTERS, format_text, summary
    from gpuaot.leaks.rules import Rules, find_pyproject, load_config

    if output is not None:
        _check_writable(output)
    config: dict = {}
    if not no_config:
        pyproject = find_pyproject()
        if pyproject is not None:
            config = load_config(pyproject)
            if verbose and config:
                click.echo(f"config: {printable(str(pyproject))}", err=True)
    rules = Rules.default(
        forbid=tuple(config.get("forbid", ())) + forbid,
        allow=tuple(config.get("allow", ())) + allow,
        undefined=bool(config.get("undefined", False)) if undefined is None else undefined,
    )
    start = time.perf_counter()
    result = check(rules, traceback)
    elapsed = time.perf_counter() - start
    if fmt == "text":
        color = output is None and _stdout_is_terminal()
        text = format_text(result, color=color, verbose=verbose, quiet=quiet)
    else:
        text = FORMATTERS[fmt](result)
    if output is not None:
        try:
            # The report is valid UTF-8 already (names escaped, JSON made exact and safe);
            # backslashreplace only keeps it so should a lone surrogate slip through.
            with open(output, "w", encoding="utf-8", errors="backslashreplace") as f:
                f.write(text + "\n" if text else "")
        except OSError as e:
            raise _cannot_write(output, e.strerror or str(e)) from None
        if not quiet:
            click.echo(summary(result), err=True)
    elif text:
        _echo(text)
    if fmt in ("json", "sarif") and output is None and not quiet:
        click.echo(summary(result), err=True)  # human text on stderr, as --json promises
    if verbose:
        click.echo(f"scanned {len(result.scanned)} ELF images in {elapsed * 1e3:.1f} ms", err=True)
    return result.exit_code


def _stdout_is_terminal() -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _check_writable(output: str) -> None:
    """Fail before the scan, as a usage error, if the report cannot be written."""
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise _cannot_write(output, f"no such directory {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _cannot_write(output, f"directory {parent} is not writable")
    if os.path.exists(output) and not os.access(output, os.W_OK):
        raise _cannot_write(output, "the file is not writable")


def _cannot_write(output: str, why: str) -> Exception:
    from gpuaot.errors import UsageError

    return UsageError(printable(f"cannot write the report to {output}: {why}"))


def _echo(text: str) -> None:
    """Print the report (a closed pipe is handled by :func:`pipe_safe_stdio` around it)."""
    try:
        click.echo(text)
    except UnicodeEncodeError:
        # A terminal whose encoding cannot show a (valid, printable) name: show it as ASCII.
        click.echo(text.encode("ascii", "backslashreplace").decode("ascii"))
    sys.stdout.flush()
