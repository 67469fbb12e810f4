"""The report's "Gradient regimes" section: the default sweep, its plot, activations.

Writes ``regimes.json`` (the sweep rows), ``regimes.png`` (log‖∂L/∂h_k‖
against lag, a line per radius, predicted slopes dashed) and
``regimes_activations.png`` (Elman's four activations on the same W_hh and
inputs) into the report folder, and returns the tables as Markdown.
"""

from __future__ import annotations

import json
from pathlib import Path

from symrnn.errors import SymrnnError
from symrnn.regimes.format import sweep_header, sweep_table
from symrnn.regimes.network import INPUT_SCALE, default_hidden, regime_spec
from symrnn.regimes.plot import plot_runs, plot_sweep
from symrnn.regimes.sweep import (
    DEFAULT_FAMILY,
    DEFAULT_RADII,
    DEFAULT_SEEDS,
    DEFAULT_T,
    compare_activations,
    rows_json,
    sweep,
)
from symrnn.spec import Spec

__all__ = ["regimes_section"]

COMPARE_RADIUS = 1.0


def regimes_section(spec: Spec, out: Path) -> str:
    """Run the default sweep for ``spec``'s activation; write JSON and PNGs to ``out``."""
    try:
        rspec = regime_spec(spec, hidden_size=default_hidden(spec))
        runs = sweep(rspec, DEFAULT_FAMILY, DEFAULT_RADII, DEFAULT_SEEDS, DEFAULT_T)
        compare = compare_activations(rspec, DEFAULT_FAMILY, COMPARE_RADIUS, DEFAULT_T)
    except SymrnnError as err:
        return f"## Gradient regimes\n\nskipped: {err}"
    header = sweep_header(rspec, DEFAULT_FAMILY, DEFAULT_T, DEFAULT_SEEDS, INPUT_SCALE)
    (out / "regimes.json").write_text(json.dumps(rows_json(runs), indent=1) + "\n")
    plot_sweep(runs, out / "regimes.png", f"{DEFAULT_FAMILY} W_hh, {rspec.activation}, "
               f"H={rspec.hidden_size}, T={DEFAULT_T}")
    labels = [r.row.activation for r in compare]
    plot_runs(compare, labels, out / "regimes_activations.png",
              f"Elman activations, same {DEFAULT_FAMILY} W_hh (radius {COMPARE_RADIUS:g}) "
              "and inputs")
    lines = [f"- {r.row.activation}: measured {r.row.measured_rate:+.4f}/step, predicted "
             f"{r.row.predicted_rate:+.4f} ({r.row.verdict})" for r in compare]
    return "\n".join([
        "## Gradient regimes", "", header, "", "```", sweep_table(runs), "```", "",
        "![gradient norm against lag](regimes.png)", "",
        f"Activations side by side ({DEFAULT_FAMILY}, radius {COMPARE_RADIUS:g}, same inputs):",
        *lines, "", "![activations](regimes_activations.png)",
        "", "Rows: regimes.json",
    ])
