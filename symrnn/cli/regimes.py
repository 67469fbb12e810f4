"""``symrnn regimes``: predicted against measured gradient regimes (thin shell)."""

from __future__ import annotations

import json
import math
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
from symrnn.cli.regimes_claim import claim_command
from symrnn.errors import suggest
from symrnn.regimes.families import FAMILIES
from symrnn.regimes.format import (
    activation_table,
    analysis_text,
    cells_header,
    cells_summary,
    cells_table,
    clip_table,
    sweep_header,
    sweep_table,
)
from symrnn.regimes.gated import (
    CARRY_BIASES,
    COMPARE_CELLS,
    COMPARE_SCALE,
    COMPARE_SEEDS,
    COMPARE_T,
    MAX_T,
    cell_spec,
    cell_sweep,
    cells_json,
    compare_cells,
    memory,
    work,
)
from symrnn.regimes.network import INPUT_SCALE, default_hidden, regime_spec, spectral
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
from symrnn.spec import CELLS


def _numbers(text: str, option: str, *, positive: bool) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    ok = all(math.isfinite(v) and (v > 0 or not positive) for v in values)
    if not values or not ok:
        kind = "positive numbers (finite, > 0)" if positive else "finite numbers"
        raise UserError(f"{option} expects comma-separated {kind}, got {text!r}")
    return values


def _radii(text: str) -> tuple[float, ...]:
    return _numbers(text, "--radii", positive=True)


def _cells(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    for name in names or ("",):
        if name not in CELLS:
            raise UserError(f"--cells: unknown cell {name!r}{suggest(name, CELLS)} "
                            f"(allowed: {', '.join(CELLS)})")
    return tuple(dict.fromkeys(names))


def _hidden_size(spec) -> int:
    ctx = click.get_current_context()
    chosen = (ctx.get_parameter_source("hidden_size") == ParameterSource.COMMANDLINE
              or ctx.params.get("spec_file"))
    return spec.hidden_size if chosen and isinstance(spec.hidden_size, int) \
        else default_hidden(spec)


def _given(name: str) -> bool:
    return click.get_current_context().get_parameter_source(name) == ParameterSource.COMMANDLINE


def _bar(jobs: Iterator, label: str = "sweep") -> Iterator:
    with click.progressbar(list(jobs), label=label, file=sys.stderr) as items:
        yield from items


@click.group("regimes", invoke_without_command=True)
@spec_options
@T_option(default=DEFAULT_T, help=f"Sequence length T (cell tables: default {COMPARE_T}, "
          f"at most {MAX_T}).")
@click.option("--family", type=click.Choice(list(FAMILIES)), default=DEFAULT_FAMILY,
              show_default=True, help="How each recurrent matrix is drawn for a radius.")
@click.option("--radii", default=",".join(f"{r:g}" for r in DEFAULT_RADII), show_default=True,
              help="Spectral radii, comma-separated (finite, > 0).")
@click.option("--seeds", type=click.IntRange(min=1), default=DEFAULT_SEEDS, show_default=True,
              help=f"Seeds per radius (cell tables: default {COMPARE_SEEDS}).")
@click.option("--max-seeds", type=click.IntRange(min=1), default=MAX_SEEDS, show_default=True,
              help="Refuse --seeds above this.")
@click.option("--json", "json_file", type=OutputFile(),
              help="Write the rows as JSON to FILE.")
@click.option("--plot", "plot_file", type=OutputFile(PLOT_FORMATS),
              help="Write log‖∂L/∂h_k‖ against lag to FILE.png (or .pdf, .svg, ...).")
@click.option("--output", "table_file", type=OutputFile(),
              help="Write the table to FILE as Markdown.")
@click.option("--clip", type=POSITIVE_FINITE,
              help="Show gradient-norm clipping at threshold G (finite, > 0; Elman).")
@click.option("--weights", "weights_file", type=InputFile("weights file"),
              help="Analyse a saved Elman network (.npz or torch state_dict) instead of a "
              "family.")
@click.option("--input-scale", type=POSITIVE_FINITE,
              default=INPUT_SCALE, show_default=True,
              help="Inputs x_t ~ N(0, scale²) (finite, > 0).")
@click.option("--compare-activations", "compare", is_flag=True,
              help="Elman's four activations on the same W_hh (first radius) and inputs.")
@click.option("--compare-cells", "compare_cells_flag", is_flag=True,
              help="Cells side by side at the same H, inputs and weight scale (--scale): "
              "predicted and measured decay, one table, one plot.")
@click.option("--cells", "cell_names", default=",".join(COMPARE_CELLS), show_default=True,
              help="Cells for --compare-cells, comma-separated; the first is the reference.")
@click.option("--carry-biases", default=",".join(f"{b:g}" for b in CARRY_BIASES),
              show_default=True, help="Bias of the carry gate (LSTM forget gate b_f, GRU "
              "update gate b_u), comma-separated; one row each.")
@click.option("--scale", type=POSITIVE_FINITE, default=COMPARE_SCALE, show_default=True,
              help="--compare-cells: spectral radius of every recurrent matrix.")
@click.option("--max-gflop", type=click.IntRange(min=1), default=MAX_GFLOP, show_default=True,
              help="Refuse a sweep whose estimated work exceeds this many GFLOP.")
def regimes_command(spec, T, family, radii, seeds, max_seeds, json_file, plot_file, table_file,
                    clip, weights_file, input_scale, compare, compare_cells_flag, cell_names,
                    carry_biases, scale, max_gflop) -> None:
    """Predict vanishing/exploding gradients from the recurrent Jacobian; measure; compare.

    Every cell.  Elman: Pascanu's prediction from W_hh's spectrum against the generated
    code, per radius.  A gated cell (--cell lstm, gru, gru_v1): every recurrent matrix at
    each radius and the carry gate's bias at each of --carry-biases, predicted from the
    state Jacobians along the trajectory and from the carry gate.  --compare-cells: all
    cells at one scale, with the claim that gating fixes vanishing checked row by row
    against the first cell.  ``symrnn regimes claim STATEMENT`` proves or refutes a
    regime statement (see its --help).
    """
    if click.get_current_context().invoked_subcommand is not None:
        return  # the subcommand (claim) does the work
    radii = _radii(radii)
    cap("seeds", seeds, max_seeds, "--max-seeds")
    rspec = None if weights_file else regime_spec(spec, hidden_size=_hidden_size(spec))
    if compare_cells_flag or (rspec is not None and not spectral(rspec)):
        _refuse_for_cells(spec, compare_cells_flag, weights_file, clip, compare)
        options = {"json_file": json_file, "plot_file": plot_file, "table_file": table_file}
        _cells_mode(rspec, compare_cells_flag, T, seeds, radii, family, input_scale,
                    _cells(cell_names), _numbers(carry_biases, "--carry-biases", positive=False),
                    scale, max_gflop, options)
        return
    _spectral_mode(spec, rspec, T, family, radii, seeds, json_file, plot_file, table_file,
                   clip, weights_file, input_scale, compare, max_gflop)


regimes_command.add_command(claim_command)


def _refuse_for_cells(spec, compare_cells_flag, weights_file, clip, compare) -> None:
    what = "--compare-cells" if compare_cells_flag else f"cell {spec.cell!r}"
    for flag, value in (("--weights", weights_file), ("--clip", clip),
                        ("--compare-activations", compare)):
        if value:
            raise UserError(f"{flag} works on Elman's spectral sweep, not with {what}")


def _cells_mode(rspec, compare, T, seeds, radii, family, input_scale, cells, biases, scale,
                max_gflop, files) -> None:
    T = T if _given("T") else COMPARE_T  # noqa: N806
    seeds = seeds if _given("seeds") else COMPARE_SEEDS
    if T > MAX_T:
        raise UserError(f"cell tables measure T ≤ {MAX_T} (every step's Jacobian is kept), "
                        f"got T={T}")
    names = cells if compare else (rspec.cell,)
    specs = [cell_spec(rspec, c, rspec.hidden_size) for c in names]
    per_spec = seeds * len(biases) * (1 if compare else len(radii))
    what = f"cell regimes at T={T}, H={rspec.hidden_size}, {len(names)} cell(s)"
    check_memory(memory(specs, T), what)
    check_work(work(specs, T, per_spec), max_gflop, what)
    common = {"carry_biases": biases, "seeds": seeds, "T": T, "family": family,
              "input_scale": input_scale}
    if compare:
        results = compare_cells(rspec, cells=names, scale=scale,
                                progress=lambda jobs: _bar(jobs, "cells"), **common)
        title = (f"cells at the same scale: {family}, radius {scale:g}, H={rspec.hidden_size}, "
                 f"T={T}, {seeds} seeds")
    else:
        results = cell_sweep(rspec, radii, progress=_bar, **common)
        title = f"{rspec.cell}, {family}, H={rspec.hidden_size}, T={T}, {seeds} seeds"
    click.echo(cells_header(results, family, input_scale))
    click.echo(cells_table(results))
    click.echo("\n" + cells_summary(results))
    meta = {"family": family, "T": T, "seeds": seeds, "input_scale": input_scale,
            "spec": rspec.to_dict()}
    _write_cells(results, title, meta, **files)


def _write_cells(results, title, meta, *, json_file, plot_file, table_file) -> None:
    if json_file:
        atomic_write_text(json_file, json.dumps(cells_json(results, **meta), indent=1) + "\n")
        click.echo(f"rows written to {json_file}")
    if table_file:
        text = (f"{cells_header(results, meta['family'], meta['input_scale'])}\n\n"
                f"{cells_table(results, markdown=True)}\n\n{cells_summary(results)}\n")
        atomic_write_text(table_file, text)
        click.echo(f"table written to {table_file}")
    if plot_file:
        from symrnn.regimes.plot import plot_cells

        with atomic_path(plot_file) as part:
            plot_cells(results, part, title)
        click.echo(f"plot written to {plot_file}")


def _spectral_mode(spec, rspec, T, family, radii, seeds, json_file, plot_file, table_file,
                   clip, weights_file, input_scale, compare, max_gflop) -> None:
    """Elman: the spectrum of W_hh per radius (or of a saved network) against measurements."""
    if compare and weights_file:
        raise UserError("--compare-activations works on a --family, not on --weights")
    if weights_file and not spectral(spec):
        raise UserError(f"--weights reads an Elman network, got cell {spec.cell!r}")
    if not weights_file:
        H = rspec.hidden_size  # noqa: N806
        D, O = rspec.input_size, rspec.output_size  # noqa: E741,N806
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
        runs = sweep(rspec, family, radii, seeds, T, clip=clip, input_scale=input_scale,
                     progress=_bar)
    header = sweep_header(rspec, family, T, seeds, input_scale)
    click.echo(header)
    click.echo(sweep_table(runs))
    if table_file:
        atomic_write_text(table_file, f"{header}\n\n```\n{sweep_table(runs)}\n```\n")
        click.echo(f"table written to {table_file}")
    if clip is not None:
        click.echo("\n" + clip_table(runs, clip))
    _spectral_outputs(rspec, runs, T, family, radii, seeds, input_scale, compare, json_file,
                      plot_file)


def _spectral_outputs(rspec, runs, T, family, radii, seeds, input_scale, compare, json_file,
                      plot_file) -> None:
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
