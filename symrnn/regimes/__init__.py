"""Gradient regimes: predict vanishing or exploding from the spectrum, then measure.

Pipeline: :mod:`~symrnn.regimes.families` (W_hh by family and radius) →
:mod:`~symrnn.regimes.spectrum` (ρ, σ_max, γ, Pascanu's conditions, Lyapunov
exponent) → :mod:`~symrnn.regimes.network` (a concrete many_to_one Elman
network and its generated kernel) → :mod:`~symrnn.regimes.measure`
(‖∂L/∂h_k‖ from the generated backward code, fitted rate) →
:mod:`~symrnn.regimes.sweep` (rows and verdicts) → :mod:`~symrnn.regimes.format`,
:mod:`~symrnn.regimes.plot`, :mod:`~symrnn.regimes.section` (report).
Every cell (LSTM, GRU, GRU v1 and Elman alike): :mod:`~symrnn.regimes.stepper` (the
cell's step and its state Jacobian, evaluated from the cell's definition; carry gates)
→ :mod:`~symrnn.regimes.gated` (predicted against measured decay per cell and carry
bias, the claim that gating fixes vanishing).
Rates are log-norm change per step of lag n = T - k.
"""

from symrnn.regimes.families import FAMILIES, make_recurrent
from symrnn.regimes.gated import CellResult, CellRow, cell_sweep, cells_json, compare_cells
from symrnn.regimes.measure import Measurement, fit_rate, measure
from symrnn.regimes.network import DEFAULT_HIDDEN, kernel, regime_spec
from symrnn.regimes.spectrum import (
    MARGINAL_BAND,
    Analysis,
    analyse,
    lyapunov_exponent,
    spectral_radius,
    transient_peak,
)
from symrnn.regimes.sweep import ATOL, RTOL, Row, Run, compare_activations, rows_json, sweep
from symrnn.regimes.weights import load_weights, weights_runs

__all__ = [
    "ATOL",
    "DEFAULT_HIDDEN",
    "FAMILIES",
    "MARGINAL_BAND",
    "RTOL",
    "Analysis",
    "CellResult",
    "CellRow",
    "Measurement",
    "Row",
    "Run",
    "analyse",
    "cell_sweep",
    "cells_json",
    "compare_cells",
    "compare_activations",
    "fit_rate",
    "kernel",
    "load_weights",
    "lyapunov_exponent",
    "make_recurrent",
    "measure",
    "regime_spec",
    "rows_json",
    "spectral_radius",
    "sweep",
    "transient_peak",
    "weights_runs",
]
