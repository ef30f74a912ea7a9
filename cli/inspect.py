"""``gpuaot inspect BUNDLE``: what a bundle holds, validated as the run time validates it.

    $ gpuaot inspect fixtures/example/_gpuaot/libexample_gpuaot.so
    $ gpuaot inspect --json BUNDLE | jq .kernels

Exit 0 when every image matches its sha256, 1 on a mismatch (each named on stderr), 2 when
the bundle or its manifest cannot be read.
"""

from __future__ import annotations

import sys

import click

from .common import Ctx, common_options, run_guarded


@click.command()
@click.argument("bundle", type=click.Path())
@common_options
def inspect(bundle, json_out, verbose, quiet, traceback):
    """List the kernels, signatures, architectures and images of a BUNDLE."""
    from gpuaot.bundle.inspect import describe, hash_mismatches, read_bundle_manifest

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
