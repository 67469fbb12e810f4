"""``symrnn regimes --compare-cells`` and ``--cell lstm|gru|gru_v1``: table, plot, exit codes.

Needs generated code for the gated cells; skipped, on exactly code generation's
"supports cell 'elman' only" error, until it exists.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from symrnn.cli import cli

PNG = b"\x89PNG"
SMALL = ["--hidden-size", "8", "--T", "40", "--seeds", "1"]


def _run(*args):
    result = CliRunner().invoke(cli, ["regimes", *args])
    if result.exit_code == 2 and "supports cell 'elman' only" in result.output:
        pytest.skip("generated code for gated cells not available yet")
    return result


def test_help_lists_the_cell_options():
    result = CliRunner().invoke(cli, ["regimes", "--help"])
    assert result.exit_code == 0
    for option in ("--compare-cells", "--cells", "--carry-biases", "--scale", "--output"):
        assert option in result.output


def test_compare_cells_writes_one_table_one_plot_and_json(tmp_path):
    png, md, rows = tmp_path / "cells.png", tmp_path / "cells.md", tmp_path / "rows.json"
    result = _run("--compare-cells", *SMALL, "--plot", str(png), "--output", str(md),
                  "--json", str(rows))
    assert result.exit_code == 0, result.output
    assert png.read_bytes().startswith(PNG)
    table = md.read_text()
    labels = ["elman tanh", "lstm b_f=0", "lstm b_f=1", "lstm b_f=3", "gru b_u=0", "gru b_u=3",
              "gru_v1 b_u=0", "gru_v1 b_u=3"]
    for label in labels:
        assert f"| {label} |" in table and f"\n{label} " in result.output
    assert "claim 'gating fixes vanishing' against elman tanh" in result.output
    assert "lstm: bias of gate f 0 -> 1 -> 3" in result.output
    data = json.loads(rows.read_text())
    assert data["T"] == 40 and data["spec"]["hidden_size"] == 8 and len(data["rows"]) == 10
    row = data["rows"][3]
    assert (row["cell"], row["gate"], row["carry_bias"]) == ("lstm", "f", 3.0)
    assert row["verdict"] in {"confirmed", "refuted", "inconclusive"}
    assert data["rows"][0]["claim"] == "reference" and data["rows"][0]["gate_rate"] is None


def test_compare_cells_options_choose_rows():
    result = _run("--compare-cells", *SMALL, "--cells", "elman,gru", "--carry-biases", "2",
                  "--scale", "0.5")
    assert result.exit_code == 0, result.output
    assert "\nelman tanh " in result.output and "\ngru b_u=2 " in result.output
    assert "lstm" not in result.output.split("\n", 2)[2]
    assert "spectral radius 0.5" in result.output


def test_a_gated_cell_is_swept_over_radii_and_biases(tmp_path):
    png = tmp_path / "lstm.png"
    result = _run("--cell", "lstm", *SMALL, "--radii", "0.5,1", "--carry-biases", "0,3",
                  "--plot", str(png))
    assert result.exit_code == 0, result.output
    for label in ("lstm b_f=0 scale 0.5", "lstm b_f=3 scale 0.5", "lstm b_f=3 scale 1"):
        assert f"\n{label} " in result.output
    assert "claim" not in result.output and "at scale 0.5: bias of gate f 0 -> 3" in result.output
    assert png.read_bytes().startswith(PNG)


def test_cells_mode_errors_exit_2(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, W=0.5 * np.eye(4))
    for args, message in [
        (["--cell", "gru", "--weights", str(path)], "--weights reads an Elman network"),
        (["--compare-cells", "--compare-activations"], "--compare-activations works on"),
        (["--compare-cells", "--hidden-size", "128", "--T", "1000", "--max-gflop", "1"],
         "GFLOP, above --max-gflop 1"),
    ]:
        result = CliRunner().invoke(cli, ["regimes", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
