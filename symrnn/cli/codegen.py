"""``symrnn codegen``: write the generated NumPy or torch BPTT module for a spec."""

from __future__ import annotations

import click

from symrnn.cli.common import parse_tbptt, spec_options
from symrnn.cli.io import POSITIVE_FINITE, OutputFile
from symrnn.codegen import BACKENDS, generate
from symrnn.render.files import atomic_write_text

__all__ = ["codegen_command", "parse_tbptt"]


@click.command("codegen")
@spec_options
@click.option("--backend", type=click.Choice(sorted(BACKENDS)), default="numpy",
              show_default=True)
@click.option("--tbptt", help="Truncated BPTT k1,k2: forward k1 steps, backpropagate k2.")
@click.option("--clip", type=POSITIVE_FINITE,
              help="Rescale gradients to global norm G when above it (finite, > 0).")
@click.option("--clip-value", type=POSITIVE_FINITE,
              help="Clamp every gradient entry to [-c, c] (finite, > 0).")
@click.option("-o", "--output", type=OutputFile(),
              help="Write to FILE (folders are created; written atomically).")
def codegen_command(spec, backend, tbptt, clip, clip_value, output) -> None:
    """Generate a BPTT module (forward, backward, loss_and_grad) from the derivation."""
    window = parse_tbptt(tbptt)
    source = generate(spec, backend, window, clip, clip_value=clip_value)
    if output is not None:
        atomic_write_text(output, source)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(source, nl=False)
