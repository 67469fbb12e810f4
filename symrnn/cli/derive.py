"""``symrnn derive``: print the rolled BPTT recurrence and the gradients."""

from __future__ import annotations

import json

import click

from symrnn.cli.common import T_option, T_out_option, spec_options
from symrnn.cli.io import MAX_T_SYMBOLIC


@click.command("derive")
@spec_options
@T_option(help="Also derive the unrolled matrix-form gradients for this T.",
          max_T=MAX_T_SYMBOLIC)
@click.option("--format", "fmt", type=click.Choice(["text", "latex", "json"]), default="text",
              show_default=True)
@click.option("--aliases", is_flag=True, help="Print W, U, b, V, c instead of W_hh, W_xh, ...")
@T_out_option
def derive_command(spec, T, fmt, aliases, T_out) -> None:  # noqa: N803
    """Derive BPTT for a spec: the rolled recurrence, valid for every T."""
    from symrnn.engine.derive import derive as derive_spec
    from symrnn.render.describe import (
        derivation_dict,
        recurrence_latex,
        recurrence_text,
        unrolled_text,
    )
    from symrnn.render.printing import Notation

    notation = Notation(aliases=aliases)
    derivation = derive_spec(spec)
    if fmt == "json":
        click.echo(json.dumps(derivation_dict(derivation, T, notation), indent=2))
        return
    if fmt == "latex":
        click.echo(recurrence_latex(derivation.recurrence, notation))
        return
    click.echo(recurrence_text(derivation.recurrence, notation))
    if T is not None:
        click.echo("")
        click.echo(unrolled_text(derivation.unrolled(T, T_out), notation))
