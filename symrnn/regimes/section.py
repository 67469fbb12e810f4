"""The report's "Gradient regimes" section: the default sweep, its plot, activations.

Elman: writes ``regimes.json`` (the sweep rows), ``regimes.png`` (log‖∂L/∂h_k‖
against lag, a line per radius, predicted slopes dashed) and
``regimes_activations.png`` (Elman's four activations on the same W_hh and
inputs) into the report folder, and returns the tables as Markdown.  A gated cell:
the cell comparison of :mod:`symrnn.regimes.gated` at its defaults (every cell at
the same H and weight scale, the carry gate's bias 0, 1, 3), as ``regimes_cells.json``
and ``regimes_cells.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

from symrnn.errors import SymrnnError
from symrnn.regimes.format import (
    cells_header,
    cells_summary,
    cells_table,
    sweep_header,
    sweep_table,
)
from symrnn.regimes.gated import COMPARE_SCALE, cells_json, compare_cells
from symrnn.regimes.network import INPUT_SCALE, default_hidden, regime_spec, spectral
from symrnn.regimes.plot import plot_cells, plot_runs, plot_sweep
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
        if not spectral(rspec):
            return _cells_section(rspec, out)
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


def _cells_section(rspec: Spec, out: Path) -> str:
    """Every cell side by side at the spec's H (the gated cells' section)."""
    results = compare_cells(rspec)
    (out / "regimes_cells.json").write_text(json.dumps(cells_json(results), indent=1) + "\n")
    plot_cells(results, out / "regimes_cells.png",
               f"cells at the same scale: {DEFAULT_FAMILY}, radius {COMPARE_SCALE:g}, "
               f"H={rspec.hidden_size}")
    return "\n".join([
        "## Gradient regimes", "", cells_header(results, DEFAULT_FAMILY, INPUT_SCALE), "",
        cells_table(results, markdown=True), "", cells_summary(results), "",
        "![gradient norm against lag, per cell](regimes_cells.png)", "",
        "Rows: regimes_cells.json",
    ])
