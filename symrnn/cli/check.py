"""``symrnn check "<formula>"``: is a hand-derived gradient right, and if not, why.

Exit status: 0 correct, 1 wrong, 2 unparsable formula or invalid options.
"""

from __future__ import annotations

import json

import click

from symrnn.cli.app import cli
from symrnn.cli.common import spec_options
from symrnn.formula import check_formula


@cli.command("check")
@click.argument("formula")
@spec_options
@click.option("--wrt", help="Parameter the formula differentiates (W_hh, W, V, h_0, ...); "
              "overrides the left-hand side.")
@click.option("--T", "T", type=int, default=None,
              help="Sequence length for a claim about the total L (default 3).")
@click.option("--seed", type=int, default=0, show_default=True, help="First instance seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.option("--latex", "as_latex", is_flag=True, help="Print a LaTeX snippet of the verdict.")
def check_command(formula, spec, wrt, T, seed, as_json, as_latex) -> None:
    """Check FORMULA (LaTeX or plain text) against the derivation engine."""
    verdict = check_formula(formula, spec, wrt=wrt, T=T, seed=seed)
    if as_json:
        click.echo(json.dumps(verdict.to_dict(), indent=2))
    elif as_latex:
        click.echo(verdict.to_latex())
    else:
        click.echo(verdict.to_text())
    raise SystemExit(0 if verdict.ok else 1)
