"""``symrnn check "<formula>"``: is a hand-derived gradient right, and if not, why.

Exit status: 0 correct, 1 wrong, 2 unparsable formula or invalid options.
"""

from __future__ import annotations

import json

import click

from symrnn.cli.common import T_option, spec_options
from symrnn.cli.io import SEED
from symrnn.formula.check import MAX_T


@click.command("check")
@click.argument("formula")
@spec_options
@click.option("--wrt", help="Parameter the formula differentiates (W_hh, W, V, h_0, ...); "
              "overrides the left-hand side.")
@T_option(help="Sequence length for a claim about the total L (default 3).",
          max_T=MAX_T, pass_max=True)
@click.option("--seed", type=SEED, default=0, show_default=True, help="First instance seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.option("--latex", "as_latex", is_flag=True, help="Print a LaTeX snippet of the verdict.")
def check_command(formula, spec, wrt, T, max_T, seed, as_json, as_latex) -> None:  # noqa: N803
    """Check FORMULA (LaTeX or plain text) against the derivation engine."""
    from symrnn.formula import check_formula

    verdict = check_formula(formula, spec, wrt=wrt, T=T, seed=seed, max_T=max_T)
    if as_json:
        click.echo(json.dumps(verdict.to_dict(), indent=2))
    elif as_latex:
        click.echo(verdict.to_latex())
    else:
        click.echo(verdict.to_text())
    raise SystemExit(0 if verdict.ok else 1)
