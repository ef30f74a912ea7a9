"""``gpuaot build PACKAGE``: compile a package's kernels into one bundle, then leak-check it.

    $ gpuaot build fixtures/example                    # -> fixtures/example/_gpuaot/
    $ gpuaot build mypkg --arch sm_80,sm_90 --no-cpu --out dist/bundle --json

Options left unset come from ``[tool.gpuaot]`` (``BuildOptions.resolve``). Exit 0 built and
clean, 1 the bundle leaks device symbols, 2 a compile or usage error (every diagnostic
located).
"""

from __future__ import annotations

import sys

import click

from .common import Ctx, common_options, run_guarded


@click.command()
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
@click.option(
    "--no-fma",
    is_flag=True,
    default=None,
    help="Never contract a*b+c into an FMA (uncontracted IEEE results).",
)
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
    no_fma,
    json_out,
    verbose,
    quiet,
    traceback,
):
    """Compile PACKAGE (a directory or an importable name) into one bundle."""
    from gpuaot.compiler.driver import BuildOptions, build_package, report_build

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
            no_fma=no_fma,
            cpu_levels=cpu_levels,
        )
        result = build_package(opts, progress=None if (quiet or json_out) else ctx.info)
        report_build(ctx, result)
        if result.leaks:
            sys.exit(1)

    run_guarded(ctx, body)
