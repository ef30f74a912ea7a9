"""What every command shares: its output channel, its common options, its error handling.

    ctx = Ctx(json_out, verbose, quiet, traceback)
    run_guarded(ctx, body)                  # build, inspect, emit: a bug exits 2
    code = run_report_guarded("check-leaks", traceback, body)   # the gates: a bug exits 3

The exit codes, in one place: a user error exits with its own ``GpuaotError.exit_code`` (1 a
finding, 2 a usage or build error, 3 an unreadable input); a bug says it is one in a line and
exits :data:`EXIT_BUG` (``build``, ``inspect``, ``emit``) or :data:`EXIT_BUG_GATE` (the gates,
where 3 means "the scan is incomplete"); ^C exits 130. ``--traceback`` lets errors and bugs
raise. A closed stdout or stderr never changes the exit code
(:func:`gpuaot.textsafe.pipe_safe_stdio`). click's own usage errors pass through (exit 2).
"""

from __future__ import annotations

import json
import sys

import click

from gpuaot.errors import GpuaotError
from gpuaot.extras import compiler_hint, missing_compiler
from gpuaot.textsafe import internal_error_line, json_safe, pipe_safe_stdio, printable

EXIT_BUG = 2
EXIT_BUG_GATE = 3
EXIT_INTERRUPTED = 130


class Ctx:
    """What a command body prints through: human text on stderr, JSON on stdout, both safe.

    Text from the inputs (file, kernel and symbol names, messages) is escaped
    (:func:`gpuaot.textsafe.printable`, keeping line breaks and tabs); JSON is valid UTF-8 with
    exact names (:func:`gpuaot.textsafe.json_safe`).
    """

    def __init__(self, json_out: bool, verbose: int, quiet: bool, traceback: bool):
        self.json = json_out
        self.verbose = verbose
        self.quiet = quiet
        self.traceback = traceback

    def info(self, msg: str) -> None:
        """Human text: stderr, so stdout stays machine-readable under --json."""
        if not self.quiet:
            self.error(msg)

    def error(self, msg: str) -> None:
        """Human text shown under --quiet too."""
        click.echo(printable(msg, keep="\n\t"), err=True)

    def emit_json(self, obj) -> None:
        click.echo(json.dumps(json_safe(obj), indent=2, sort_keys=True))


def common_options(f):
    f = click.option("--json", "json_out", is_flag=True, help="Machine output on stdout.")(f)
    f = click.option("-v", "--verbose", count=True, help="More detail.")(f)
    f = click.option("-q", "--quiet", is_flag=True, help="Only errors.")(f)
    f = click.option("--traceback", is_flag=True, help="Show Python tracebacks (for bug reports).")(
        f
    )
    return f


def run_guarded(ctx: Ctx, fn, /, *args, **kwargs):
    """Run a command body; turn user errors into their exit code and message.

    A user error prints its message (exit code of the error); a bug prints one line that says
    it is one (exit 2) -- with ``--json`` also one JSON object on stdout; ``--traceback`` lets
    both raise.  A closed stdout or stderr never changes the exit code: writes to it are
    dropped (:func:`gpuaot.textsafe.pipe_safe_stdio`) and the body runs to its own verdict.
    """
    with pipe_safe_stdio():
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException):
            raise  # click's own: a usage error, or a body's ctx.exit()
        except GpuaotError as e:
            if ctx.traceback:
                raise
            ctx.error(e.format())
            _fail_json(ctx, e.exit_code, str(e), e)
            sys.exit(e.exit_code)
        except ModuleNotFoundError as e:
            if ctx.traceback or not missing_compiler(e):
                raise
            ctx.error(compiler_hint(e))
            sys.exit(EXIT_BUG)
        except KeyboardInterrupt:
            ctx.error("interrupted")
            sys.exit(EXIT_INTERRUPTED)
        except Exception as e:  # a bug in gpuaot, not the user's mistake: say so
            if ctx.traceback:
                raise
            command = click.get_current_context(silent=True)
            line = _bug_line(command.info_name if command else "", e)
            _fail_json(ctx, EXIT_BUG, line.removeprefix("error: "), None)
            sys.exit(EXIT_BUG)


def run_report_guarded(name: str, traceback: bool, fn, /, *args, **kwargs) -> int:
    """Run a gate's body (``check-leaks``, ``check-wheel``), which returns its exit code.

    No traceback for a user error (its own code, its message) or a bug (3, one line that says
    so); ``--traceback`` lets either raise. A gate reports no JSON failure object: its report
    formats are its own.
    """
    with pipe_safe_stdio():
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException):
            raise
        except Exception as e:
            if traceback:
                raise
            if isinstance(e, GpuaotError):
                click.echo(printable(e.format(), keep="\n"), err=True)
                return e.exit_code
            _bug_line(name, e)
            return EXIT_BUG_GATE


def _bug_line(command: str, e: Exception) -> str:
    """Say on stderr, in one line, that ``e`` is a bug in gpuaot; the line said."""
    line = internal_error_line(command, e)
    click.echo(line, err=True)
    return line


def _fail_json(ctx: Ctx, code: int, error: str, e: GpuaotError | None) -> None:
    """Under --json a failure is one JSON object on stdout too."""
    if ctx.json:
        from gpuaot.errors import diagnostics_json

        diagnostics = diagnostics_json(e) if e is not None else []
        ctx.emit_json({"ok": False, "exit_code": code, "error": error, "diagnostics": diagnostics})
