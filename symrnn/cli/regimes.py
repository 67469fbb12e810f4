"""``symrnn regimes``: predicted against measured gradient regimes (thin shell)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import click
from click.core import ParameterSource

from symrnn.cli.common import T_option, UserError, spec_options
from symrnn.cli.io import (
    MAX_GFLOP,
    MAX_SEEDS,
    PLOT_FORMATS,
    POSITIVE_FINITE,
    InputFile,
    OutputFile,
    cap,
    check_memory,
    check_work,
    regimes_bytes,
    regimes_flops,
)
from symrnn.regimes.families import FAMILIES
from symrnn.regimes.format import (
    activation_table,
    analysis_text,
    clip_table,
    sweep_header,
    sweep_table,
)
from symrnn.regimes.network import INPUT_SCALE, default_hidden, regime_spec
from symrnn.regimes.sweep import (
    DEFAULT_FAMILY,
    DEFAULT_RADII,
    DEFAULT_SEEDS,
    DEFAULT_T,
    compare_activations,
    rows_json,
    sweep,
)
from symrnn.regimes.weights import weights_runs
from symrnn.render.files import atomic_path, atomic_write_text


def _radii(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or any(not (v > 0 and v < float("inf")) for v in values):
        raise UserError("--radii expects comma-separated positive numbers (finite, > 0), "
                        f"got {text!r}")
    return values


def _hidden_size(spec) -> int:
    ctx = click.get_current_context()
    chosen = (ctx.get_parameter_source("hidden_size") == ParameterSource.COMMANDLINE
              or ctx.params.get("spec_file"))
    return spec.hidden_size if chosen and isinstance(spec.hidden_size, int) \
        else default_hidden(spec)


def _bar(jobs: Iterator) -> Iterator:
    with click.progressbar(list(jobs), label="sweep", file=sys.stderr) as items:
        yield from items


@click.command("regimes")
@spec_options
@T_option(default=DEFAULT_T)
@click.option("--family", type=click.Choice(list(FAMILIES)), default=DEFAULT_FAMILY,
              show_default=True, help="How W_hh is drawn for each radius.")
@click.option("--radii", default=",".join(f"{r:g}" for r in DEFAULT_RADII), show_default=True,
              help="Spectral radii, comma-separated (finite, > 0).")
@click.option("--seeds", type=click.IntRange(min=1), default=DEFAULT_SEEDS, show_default=True)
@click.option("--max-seeds", type=click.IntRange(min=1), default=MAX_SEEDS, show_default=True,
              help="Refuse --seeds above this.")
@click.option("--json", "json_file", type=OutputFile(),
              help="Write the rows as JSON to FILE.")
@click.option("--plot", "plot_file", type=OutputFile(PLOT_FORMATS),
              help="Write log‖∂L/∂h_k‖ against lag to FILE.png (or .pdf, .svg, ...).")
@click.option("--clip", type=POSITIVE_FINITE,
              help="Show gradient-norm clipping at threshold G (finite, > 0).")
@click.option("--weights", "weights_file", type=InputFile("weights file"),
              help="Analyse a saved network (.npz or torch state_dict) instead of a family.")
@click.option("--input-scale", type=POSITIVE_FINITE,
              default=INPUT_SCALE, show_default=True,
              help="Inputs x_t ~ N(0, scale²) (finite, > 0).")
@click.option("--compare-activations", "compare", is_flag=True,
              help="Elman's four activations on the same W_hh (first radius) and inputs.")
@click.option("--max-gflop", type=click.IntRange(min=1), default=MAX_GFLOP, show_default=True,
              help="Refuse a sweep whose estimated work exceeds this many GFLOP.")
def regimes_command(spec, T, family, radii, seeds, max_seeds, json_file, plot_file, clip,
                    weights_file, input_scale, compare, max_gflop) -> None:
    """Predict vanishing/exploding gradients from W_hh's spectrum; measure; compare."""
    radii = _radii(radii)
    cap("seeds", seeds, max_seeds, "--max-seeds")
    if compare and weights_file:
        raise UserError("--compare-activations works on a --family, not on --weights")
    if not weights_file:
        H = _hidden_size(spec)  # noqa: N806
        D, O = (v if isinstance(v, int) else 1 for v in (spec.input_size, spec.output_size))  # noqa: E741,N806
        runs = len(radii) * seeds + (4 if compare else 0)
        what = f"regimes at T={T}, H={H}, {len(radii)} radii x {seeds} seeds"
        check_memory(regimes_bytes(H, D, O, T, runs), what)
        check_work(regimes_flops(H, T, runs) * (2 if clip is not None else 1), max_gflop, what)
    if weights_file:
        rspec, notes, runs = weights_runs(weights_file, spec, T, seeds, clip=clip,
                                          input_scale=input_scale)
        family = f"weights from {weights_file}"
        click.echo(analysis_text(runs[0].analysis))
        click.echo("\n".join(notes))
    else:
        rspec = regime_spec(spec, hidden_size=_hidden_size(spec))
        runs = sweep(rspec, family, radii, seeds, T, clip=clip, input_scale=input_scale,
                     progress=_bar)
    click.echo(sweep_header(rspec, family, T, seeds, input_scale))
    click.echo(sweep_table(runs))
    if clip is not None:
        click.echo("\n" + clip_table(runs, clip))
    title = f"{family}, {rspec.activation}, H={rspec.hidden_size}, T={T}"
    if compare:
        runs = compare_activations(rspec, family, radii[0], T, input_scale=input_scale)
        title = f"Elman activations, {family} W_hh, radius {radii[0]:g}, H={rspec.hidden_size}"
        click.echo(f"\nactivations at matched scale ({family}, radius {radii[0]:g}, "
                   "same W_hh and inputs):")
        click.echo(activation_table(runs))
    if json_file:
        meta = {"family": family, "T": T, "seeds": seeds, "input_scale": input_scale,
                "spec": rspec.to_dict()}
        atomic_write_text(json_file, json.dumps(rows_json(runs, **meta), indent=1) + "\n")
        click.echo(f"rows written to {json_file}")
    if plot_file:
        from symrnn.regimes.plot import plot_runs, plot_sweep

        with atomic_path(plot_file) as part:
            if compare:
                plot_runs(runs, [r.row.activation for r in runs], part, title)
            else:
                plot_sweep(runs, part, title)
        click.echo(f"plot written to {plot_file}")
