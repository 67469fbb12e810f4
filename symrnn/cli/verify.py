"""``symrnn verify``: check generated gradients against autograd, torch.nn and finite
differences, for every cell (``--cell elman|lstm|gru|gru_v1``, ``--layout notes|torch``),
stack (``--num-layers``) and architecture (``--bidirectional``, ``--topology one_to_many``
with ``--feed zeros|repeat``, ``--topology encoder_decoder`` with ``--T-out``)."""

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

BACKEND_NAMES = ("numba", "numpy", "torch")
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
@click.option("--T-out", "T_out", type=click.IntRange(min=1),
              help="encoder_decoder: the decoder's steps (default max(1, T // 2)).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--max-gflop", type=click.IntRange(min=1), default=MAX_GFLOP, show_default=True,
              help="Refuse a run whose estimated work exceeds this many GFLOP.")
def verify_command(spec, backend, T, batch, max_batch, dtype, seed, tbptt, clip, clip_value,
                   T_out, as_json, max_gflop) -> None:  # noqa: N803
    """Largest relative errors per parameter; exit 1 on a mismatch."""
    cap("batch", batch, max_batch, "--max-batch")
    window = parse_tbptt(tbptt)
    from symrnn.codegen.lower import check_supported

    check_supported(spec)  # the code generator's own rule, before any work
    from symrnn.checks.verify import composed, verify

    if T_out is not None and spec.topology != "encoder_decoder":
        raise click.UsageError("--T-out applies to --topology encoder_decoder only")
    if composed(spec) and (window is not None or clip is not None or clip_value is not None):
        raise click.UsageError("--tbptt, --clip and --clip-value are not available for "
                               "bidirectional, one_to_many or encoder_decoder networks")
    if spec.topology == "encoder_decoder" and T_out is None:
        T_out = max(1, T // 2)  # noqa: N806
    _check_cost(spec, T, batch, max_gflop, T_out)
    report = verify(spec, backend, T=T, batch=batch, dtype=dtype, seed=seed, tbptt=window,
                    clip=clip, clip_value=clip_value, raise_exception=False, T_out=T_out)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report, T)
    if not report.ok:
        raise SystemExit(1)


def _check_cost(spec, T: int, batch: int, max_gflop: int, T_out: int | None = None) -> None:  # noqa: N803
    """Refuse a run over the memory or work caps; a gated cell costs its gate count times
    the Elman estimate (nG stacked H-row blocks per product, nG stored gates per step),
    summed over the layers (layer 0 reads x, D wide; the layers above read h, H wide, 2H
    when bidirectional) and directions, and an encoder_decoder's decoder layers (T_out
    steps, layer 0 reading O wide)."""
    if not spec.is_concrete:
        return
    from symrnn.engine.cells import cell_for

    gates = len(cell_for(spec).stacks(False)["weight_hh"])
    H, O = spec.hidden_size, spec.output_size  # noqa: E741,N806
    dirs = 2 if spec.bidirectional else 1
    layers = [(H, spec.input_size if k == 0 else dirs * H, O, T)
              for k in range(spec.num_layers) for _ in range(dirs)]
    if spec.topology == "encoder_decoder":
        layers += [(H, O if k == 0 else H, O, T_out or T) for k in range(spec.num_layers)]
    layered = "" if spec.num_layers == 1 else f", {spec.num_layers} layers"
    what = f"verify {spec.cell} at T={T}, batch={batch}, H={H}{layered}"
    check_memory(gates * sum(verify_bytes(*sizes, batch) for sizes in layers), what)
    check_work(gates * sum(verify_flops(*sizes, batch) for sizes in layers), max_gflop, what)


def _print_report(report, T: int) -> None:
    """Per oracle (autograd, torch.nn, finite_differences): each gradient's largest error."""
    from symrnn.checks.verify import TOLERANCES

    steps = f"T={T}" if report.T_out is None else f"T={T}, T_out={report.T_out}"
    click.echo(f"verify {describe_spec(report.spec)}; backend {report.backend}, {steps}, "
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
