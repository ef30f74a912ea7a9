"""The ``gpuaot`` command line.

    $ gpuaot build fixtures/example          # compile, bundle, leak-check
    $ gpuaot check-leaks dist/*.whl          # any ELF, archive, wheel or directory
    $ gpuaot inspect example/_gpuaot/*.so    # what a bundle holds
    $ gpuaot emit example.kernels:saxpy --stage opt

User errors carry their exit code (``GpuaotError.exit_code``) and print a one-line reason or a
located diagnostic, never a traceback; ``--traceback`` shows one for bug reports.
"""

from __future__ import annotations

import json
import sys

import click

from .errors import GpuaotError
from .textsafe import internal_error_line, json_safe, pipe_safe_stdio, printable


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


def run_guarded(ctx: Ctx, fn, *args, **kwargs):
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
            from .__main__ import compiler_hint, missing_compiler

            if ctx.traceback or not missing_compiler(e):
                raise
            ctx.error(compiler_hint(e))
            sys.exit(2)
        except KeyboardInterrupt:
            ctx.error("interrupted")
            sys.exit(130)
        except Exception as e:  # a bug in gpuaot, not the user's mistake: say so
            if ctx.traceback:
                raise
            command = click.get_current_context(silent=True)
            line = internal_error_line(command.info_name if command else "", e)
            click.echo(line, err=True)
            _fail_json(ctx, 2, line.removeprefix("error: "), None)
            sys.exit(2)


def _fail_json(ctx: Ctx, code: int, error: str, e: GpuaotError | None) -> None:
    """Under --json a failure is one JSON object on stdout too."""
    if ctx.json:
        from .errors import diagnostics_json

        diagnostics = diagnostics_json(e) if e is not None else []
        ctx.emit_json({"ok": False, "exit_code": code, "error": error, "diagnostics": diagnostics})


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gpuaot")
def main() -> None:
    """Ahead-of-time compiler for Python GPU kernels."""


@main.command()
@click.argument("package")
@click.option("--arch", default=None, help="Comma-separated GPU architectures [sm_75,sm_80,sm_90].")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory for the bundle [PKG/_gpuaot].",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Compilation cache [platform user cache dir].",
)
@click.option(
    "--cpu",
    "cpu_levels",
    default=None,
    metavar="LEVELS",
    help="Comma-separated CPU levels of the host code [x86-64-v2,x86-64-v3,x86-64-v4]; "
    "'native' for local work only.",
)
@click.option("--jobs", "-j", type=int, default=None, help="Parallel compile jobs [cores].")
@click.option("--debug", is_flag=True, default=None, help="Asserts and bounds checks on.")
@click.option("--no-cpu", is_flag=True, default=None, help="Skip the CPU backend.")
@click.option("--no-gpu", is_flag=True, default=None, help="Skip the GPU backend.")
@common_options
def build(
    package,
    arch,
    out_dir,
    cache_dir,
    cpu_levels,
    jobs,
    debug,
    no_cpu,
    no_gpu,
    json_out,
    verbose,
    quiet,
    traceback,
):
    """Compile PACKAGE (a directory or an importable name) into one bundle."""
    from .compiler.driver import BuildOptions, build_package, report_build

    ctx = Ctx(json_out, verbose, quiet, traceback)

    def body():
        opts = BuildOptions.resolve(
            package,
            arch=arch,
            out_dir=out_dir,
            cache_dir=cache_dir,
            jobs=jobs,
            debug=debug,
            no_cpu=no_cpu,
            no_gpu=no_gpu,
            cpu_levels=cpu_levels,
        )
        result = build_package(opts, progress=None if (quiet or json_out) else ctx.info)
        report_build(ctx, result)
        if result.leaks:
            sys.exit(1)

    run_guarded(ctx, body)


@main.command()
@click.argument("bundle", type=click.Path())
@common_options
def inspect(bundle, json_out, verbose, quiet, traceback):
    """List the kernels, signatures, architectures and images of a BUNDLE."""
    from .bundle.inspect import describe, hash_mismatches, read_bundle_manifest

    ctx = Ctx(json_out, verbose, quiet, traceback)

    def body():
        manifest = read_bundle_manifest(bundle)  # BadBundle: exit code 2
        if json_out:
            ctx.emit_json(manifest)
        else:
            click.echo(describe(manifest, verbose=verbose))
        mismatches = hash_mismatches(bundle, manifest)
        for line in mismatches:
            ctx.error(line)
        if mismatches:
            sys.exit(1)

    run_guarded(ctx, body)


@main.command()
@click.argument("target_fn", metavar="PKG.MOD:FUNC")
@click.option(
    "--stage", type=click.Choice(["ir", "opt", "ptx", "asm"]), default="opt", show_default=True
)
@click.option("--target", default="cpu", show_default=True, help="cpu or sm_XX.")
@click.option(
    "--cpu",
    "cpu_level",
    default=None,
    metavar="LEVEL",
    help="CPU level for --stage opt/asm on the CPU [the highest default level].",
)
@click.option("--debug", is_flag=True, help="Asserts and bounds checks on.")
@click.option(
    "--signature",
    "sig_index",
    type=int,
    default=0,
    help="Which specialisation of a multi-signature kernel.",
)
@common_options
def emit(
    target_fn, stage, target, cpu_level, debug, sig_index, json_out, verbose, quiet, traceback
):
    """Print one function's IR, optimised IR, PTX or host assembly."""
    from .compiler.driver import emit_function

    ctx = Ctx(json_out, verbose, quiet, traceback)

    def body():
        text = emit_function(
            target_fn,
            stage=stage,
            target=target,
            debug=debug,
            sig_index=sig_index,
            cpu_level=cpu_level,
        )
        if json_out:
            ctx.emit_json({"function": target_fn, "stage": stage, "target": target, "text": text})
        else:
            click.echo(printable(text, keep="\n\t"), nl=not text.endswith("\n"))

    run_guarded(ctx, body)


def _register_check_leaks() -> None:
    from .leaks.command import check_leaks, check_wheel

    main.add_command(check_leaks, name="check-leaks")
    main.add_command(check_wheel, name="check-wheel")


_register_check_leaks()


if __name__ == "__main__":  # pragma: no cover
    main()
