"""``symrnn codegen``: write the generated NumPy or torch BPTT module for a spec."""

from __future__ import annotations

from pathlib import Path

import click

from symrnn.cli.app import cli
from symrnn.cli.common import UserError, spec_options
from symrnn.codegen import BACKENDS, generate


def parse_tbptt(value: str | None) -> tuple[int, int] | None:
    """'k1,k2' → (k1, k2); a single 'k' means k1 = k2 = k."""
    if value is None:
        return None
    parts = value.split(",")
    try:
        numbers = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"--tbptt expected k1,k2 (two integers), got {value!r}") from None
    if len(numbers) == 1:
        return numbers[0], numbers[0]
    if len(numbers) != 2:
        raise UserError(f"--tbptt expected k1,k2 (two integers), got {value!r}")
    return numbers


@cli.command("codegen")
@spec_options
@click.option("--backend", type=click.Choice(sorted(BACKENDS)), default="numpy",
              show_default=True)
@click.option("--tbptt", help="Truncated BPTT k1,k2: forward k1 steps, backpropagate k2.")
@click.option("--clip", type=float, help="Rescale gradients to global norm G when above it.")
@click.option("--clip-value", type=float, help="Clamp every gradient entry to [-c, c].")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE.")
def codegen_command(spec, backend, tbptt, clip, clip_value, output) -> None:
    """Generate a BPTT module (forward, backward, loss_and_grad) from the derivation."""
    source = generate(spec, backend, parse_tbptt(tbptt), clip, clip_value=clip_value)
    if output:
        Path(output).write_text(source)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(source, nl=False)
