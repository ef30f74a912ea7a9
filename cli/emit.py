"""``gpuaot emit PKG.MOD:FUNC``: print one stage of one function's compilation.

    $ gpuaot emit example.kernels:saxpy --stage opt            # optimised host IR
    $ gpuaot emit example.kernels:saxpy --stage ptx --target sm_80

Stages: ``ir`` (as lowered), ``opt`` (optimised), ``ptx`` (a GPU target), ``asm`` (host
assembly of one CPU level).
"""

from __future__ import annotations

import click

from gpuaot.textsafe import printable

from .common import Ctx, common_options, run_guarded


@click.command()
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
    from gpuaot.compiler.driver import emit_function

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
