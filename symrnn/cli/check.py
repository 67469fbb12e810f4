"""``symrnn check "<formula>"``: is a hand-derived gradient right, and if not, why.

``symrnn check --function FILE.py:NAME [convention flags]`` checks a hand-written BPTT
function instead (:mod:`symrnn.cli.conventions`).

Exit status: 0 correct, 1 wrong, 2 unparsable formula or invalid options.
"""

from __future__ import annotations

import json

import click

from symrnn.cli.common import T_option, UserError, spec_options
from symrnn.cli.conventions import function_options
from symrnn.cli.io import SEED, InputFile
from symrnn.formula.check import MAX_T


@click.command("check")
@click.argument("formula", required=False)
@spec_options
@click.option("--wrt", help="Parameter the formula differentiates (W_hh, W, V, h_0, ...); "
              "overrides the left-hand side.")
@T_option(help="Sequence length for a claim about the total L (default 3).",
          max_T=MAX_T, pass_max=True)
@click.option("--seed", type=SEED, default=0, show_default=True, help="First instance seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.option("--latex", "as_latex", is_flag=True, help="Print a LaTeX snippet of the verdict.")
@click.option("--replay", "replay_file", type=InputFile("replay file"),
              help="Re-check the counterexample in FILE (the --json of a verdict, or its "
              "counterexample alone) on its own instance; FORMULA and the spec come from FILE.")
@function_options
def check_command(formula, spec, wrt, T, max_T, seed, as_json, as_latex,  # noqa: N803
                  replay_file=None, function=None) -> None:
    """Check FORMULA (LaTeX or plain text) against the derivation engine."""
    from symrnn.formula import check_formula

    if function is not None:
        verdict = function.check(formula, spec, wrt=wrt, T=T, seed=seed)
    elif replay_file is not None or formula is None:
        verdict = _replayed(formula, replay_file)
    else:
        verdict = check_formula(formula, spec, wrt=wrt, T=T, seed=seed, max_T=max_T)
    if as_json:
        click.echo(json.dumps(verdict.to_dict(), indent=2))
    elif as_latex:
        click.echo(verdict.to_latex())
    else:
        click.echo(verdict.to_text())
    raise SystemExit(0 if verdict.ok else 1)


def _replayed(formula, replay_file):
    """The verdict of ``--replay FILE`` (FORMULA must then be absent)."""
    if replay_file is None:
        raise click.UsageError("Missing argument 'FORMULA' (or --replay FILE).")
    if formula is not None:
        raise UserError("--replay takes the formula from FILE; drop the FORMULA argument")
    from symrnn.formula.replay import replay

    return replay(replay_file)
