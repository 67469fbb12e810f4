"""``symrnn verify``: check generated gradients against autograd, torch.nn and finite
differences, for every cell (``--cell elman|lstm|gru|gru_v1``, ``--layout notes|torch``)
and stack (``--num-layers``)."""

from __future__ import annotations

import json

import click

from symrnn.cli.common import (
    T_option,
    describe_spec,
    parse_tbptt,
    spec_options,
)
from symrnn.cli.io import (
    MAX_BATCH,
    MAX_GFLOP,
    POSITIVE_FINITE,
    SEED,
    cap,
    check_memory,
    check_work,
    verify_bytes,
    verify_flops,
)

BACKEND_NAMES = ("numpy", "torch")
DTYPES = ("float32", "float64")


@click.command("verify")
@spec_options
@click.option("--backend", type=click.Choice(BACKEND_NAMES), default="numpy",
              show_default=True)
@T_option(default=20)
@click.option("--batch", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--max-batch", type=click.IntRange(min=1), default=MAX_BATCH, show_default=True,
              help="Refuse --batch above this.")
@click.option("--dtype", type=click.Choice(DTYPES), default="float64", show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--tbptt", help="Check truncated BPTT k1,k2 against the detach pattern.")
@click.option("--clip", type=POSITIVE_FINITE, help="Global-norm clipping threshold (> 0).")
@click.option("--clip-value", type=POSITIVE_FINITE, help="Elementwise clipping value (> 0).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--max-gflop", type=click.IntRange(min=1), default=MAX_GFLOP, show_default=True,
              help="Refuse a run whose estimated work exceeds this many GFLOP.")
def verify_command(spec, backend, T, batch, max_batch, dtype, seed, tbptt, clip, clip_value,
                   as_json, max_gflop) -> None:
    """Largest relative errors per parameter; exit 1 on a mismatch."""
    cap("batch", batch, max_batch, "--max-batch")
    window = parse_tbptt(tbptt)
    from symrnn.codegen.lower import check_supported

    check_supported(spec)  # the code generator's own rule, before any work
    _check_cost(spec, T, batch, max_gflop)
    from symrnn.checks.verify import verify

    report = verify(spec, backend, T=T, batch=batch, dtype=dtype, seed=seed, tbptt=window,
                    clip=clip, clip_value=clip_value, raise_exception=False)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report, T)
    if not report.ok:
        raise SystemExit(1)


def _check_cost(spec, T: int, batch: int, max_gflop: int) -> None:
    """Refuse a run over the memory or work caps; a gated cell costs its gate count times
    the Elman estimate (nG stacked H-row blocks per product, nG stored gates per step),
    summed over the layers (layer 0 reads x, D wide; the layers above read h, H wide)."""
    if not spec.is_concrete:
        return
    from symrnn.engine.cells import cell_for

    gates = len(cell_for(spec).stacks(False)["weight_hh"])
    H, O = spec.hidden_size, spec.output_size  # noqa: E741,N806
    layers = [(H, spec.input_size if k == 0 else H, O) for k in range(spec.num_layers)]
    layered = "" if spec.num_layers == 1 else f", {spec.num_layers} layers"
    what = f"verify {spec.cell} at T={T}, batch={batch}, H={H}{layered}"
    check_memory(gates * sum(verify_bytes(*sizes, T, batch) for sizes in layers), what)
    check_work(gates * sum(verify_flops(*sizes, T, batch) for sizes in layers), max_gflop, what)


def _print_report(report, T: int) -> None:
    """Per oracle (autograd, torch.nn, finite_differences): each gradient's largest error."""
    from symrnn.checks.verify import TOLERANCES

    click.echo(f"verify {describe_spec(report.spec)}; backend {report.backend}, T={T}, "
               f"batch={report.batch}, {report.dtype}")
    worst = report.worst()
    def label(name: str) -> str:  # delta, delta_c, ... are adjoints already
        return name if name.startswith("delta") else f"dL/d{name}"

    width = max((len(label(n)) for errors in worst.values() for n in errors), default=6)
    for oracle, errors in worst.items():
        tol = TOLERANCES[report.dtype][oracle]
        click.echo(f"  {oracle} (tolerance {tol:g}):")
        for name, err in errors.items():
            mark = "ok" if err <= tol else "MISMATCH"
            click.echo(f"    {label(name):<{width}} max relative error {err:.3e}  {mark}")
    for failure in report.failures:
        click.echo(failure.message(T), err=True)
    click.echo("ok" if report.ok else "FAILED")
