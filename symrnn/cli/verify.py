"""``symrnn verify``: check generated gradients against autograd and finite differences."""

from __future__ import annotations

import json

import click

from symrnn.checks.verify import TOLERANCES, verify
from symrnn.cli.app import cli
from symrnn.cli.codegen import parse_tbptt
from symrnn.cli.common import T_option, describe_spec, spec_options
from symrnn.codegen import BACKENDS


@cli.command("verify")
@spec_options
@click.option("--backend", type=click.Choice(sorted(BACKENDS)), default="numpy",
              show_default=True)
@T_option(default=20)
@click.option("--batch", type=int, default=5, show_default=True)
@click.option("--dtype", type=click.Choice(sorted(TOLERANCES)), default="float64",
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--tbptt", help="Check truncated BPTT k1,k2 against the detach pattern.")
@click.option("--clip", type=float)
@click.option("--clip-value", type=float)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_command(spec, backend, T, batch, dtype, seed, tbptt, clip, clip_value,
                   as_json) -> None:
    """Largest relative errors per parameter; exit 1 on a mismatch."""
    report = verify(spec, backend, T=T, batch=batch, dtype=dtype, seed=seed,
                    tbptt=parse_tbptt(tbptt), clip=clip, clip_value=clip_value,
                    raise_exception=False)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(f"verify {describe_spec(spec)}; backend {backend}, T={T}, batch={batch}, "
                   f"{dtype}")
        for oracle, errors in report.worst().items():
            tol = TOLERANCES[dtype][oracle]
            click.echo(f"  {oracle} (tolerance {tol:g}):")
            for name, err in errors.items():
                mark = "ok" if err <= tol else "MISMATCH"
                click.echo(f"    dL/d{name:<6} max relative error {err:.3e}  {mark}")
        for failure in report.failures:
            click.echo(failure.message(T), err=True)
        click.echo("ok" if report.ok else "FAILED")
    if not report.ok:
        raise SystemExit(1)
