"""``symrnn regimes claim "STATEMENT"``: prove or refute a regime statement (thin shell).

Exit status: 0 proved or supported, 1 refuted (a counterexample is printed) or
untested (no searched network met the premise) or inconsistent, 2 unparsable
statement (the message names the column) or invalid options.
"""

from __future__ import annotations

import json

import click
from click.core import ParameterSource

from symrnn.cli.common import T_option, spec_options
from symrnn.cli.io import (
    MAX_GFLOP,
    MAX_SEEDS,
    cap,
    check_memory,
    check_work,
    regimes_bytes,
    regimes_flops,
)
from symrnn.regimes.claim_search import (
    CLAIM_SEEDS,
    CLAIM_T,
    RADIUS_FACTORS,
    SEARCH_FAMILIES,
    search_families,
)
from symrnn.regimes.claims import CLAIM_HIDDEN
from symrnn.regimes.gated import MAX_T, cell_spec, memory, work
from symrnn.regimes.network import regime_spec, spectral

__all__ = ["claim_command"]


def _hidden_size(spec) -> int:
    ctx = click.get_current_context()
    chosen = (ctx.get_parameter_source("hidden_size") == ParameterSource.COMMANDLINE
              or ctx.params.get("spec_file"))
    return spec.hidden_size if chosen and isinstance(spec.hidden_size, int) else CLAIM_HIDDEN


def _check_work(rspec, T: int, seeds: int, max_gflop: int) -> None:  # noqa: N803
    runs = len(SEARCH_FAMILIES) * len(RADIUS_FACTORS) * seeds
    H = rspec.hidden_size  # noqa: N806
    what = f"a claim search at T={T}, H={H}, up to {runs} networks"
    if spectral(rspec):
        check_memory(regimes_bytes(H, rspec.input_size, rspec.output_size, T, runs), what)
        check_work(regimes_flops(H, T, runs), max_gflop, what)
    else:
        cell = cell_spec(rspec, rspec.cell, H)
        check_memory(memory([cell], T), what)
        check_work(work([cell], T, runs), max_gflop, what)


@click.command("claim")
@click.argument("statement")
@spec_options
@T_option(default=CLAIM_T, help="Sequence length of every searched network.", max_T=MAX_T)
@click.option("--seeds", type=click.IntRange(min=1), default=CLAIM_SEEDS, show_default=True,
              help="Seeds per family and radius in the search.")
@click.option("--max-seeds", type=click.IntRange(min=1), default=MAX_SEEDS, show_default=True,
              help="Refuse --seeds above this.")
@click.option("--max-gflop", type=click.IntRange(min=1), default=MAX_GFLOP, show_default=True,
              help="Refuse a search whose estimated work exceeds this many GFLOP.")
@click.option("--families", default=",".join(f.name for f in SEARCH_FAMILIES),
              show_default=True,
              help="Search families, comma-separated (searched in the order shown).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def claim_command(statement, spec, T, seeds, max_seeds, max_gflop, families,  # noqa: N803
                  as_json) -> None:
    """Prove a regime statement, or search weight families for a counterexample.

    STATEMENT: for example 'sigma_max(W) < 1/gamma -> vanishing'.  Searched families:
    orthogonal, gaussian, nonnormal, saturating.

    The language: rho(W), sigma_max(W), gamma (sup |f'| of the activation), numbers,
    * and /, a comparison (<, <=, >, >=), the regimes vanishing and exploding, and ->.
    H defaults to 16 here (--hidden-size to change it).
    """
    from symrnn.regimes.claims import check_claim
    from symrnn.regimes.statement import parse_statement

    parsed = parse_statement(statement)  # unparsable text fails before any work
    cap("seeds", seeds, max_seeds, "--max-seeds")
    rspec = regime_spec(spec, hidden_size=_hidden_size(spec))
    _check_work(rspec, T, seeds, max_gflop)
    names = search_families([n.strip() for n in families.split(",") if n.strip()] or [""])
    verdict = check_claim(parsed, spec, T=T, seeds=seeds, hidden_size=rspec.hidden_size,
                          families=[f.name for f in names])
    click.echo(json.dumps(verdict.to_dict(), indent=2) if as_json else verdict.to_text())
    raise SystemExit(0 if verdict.ok else 1)
