"""PNG plots of log‖∂L/∂h_k‖ against the lag T - k (matplotlib, Agg backend).

* :func:`plot_sweep`: one solid line per radius (the first seed, as the
  legend says), the predicted slope drawn dashed from the first fitted lag;
  an overflow is marked with an ×, a gradient that becomes exactly 0 with a
  ▼ at the last nonzero lag; a run with no finite value says so in its label.
* :func:`plot_runs`: one line per labelled run (e.g. one per activation at
  matched scale), with its predicted slope dashed.
* :func:`plot_cells`: one line per row of a cell comparison
  (:mod:`symrnn.regimes.gated`), the median over seeds of log‖∂L/∂h_k‖ relative to lag
  0, a colour map per cell and a shade per carry bias, the predicted slope dashed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from symrnn.regimes.gated import CellResult
from symrnn.regimes.sweep import Run

__all__ = ["plot_sweep", "plot_runs", "plot_cells"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw(ax, run: Run, label: str, color) -> None:
    logs = np.array(run.measurement.log_grad_norms)
    lags = np.arange(len(logs))
    finite = np.isfinite(logs)
    if not finite.any():
        label += " (no finite value: " + (run.row.detail or "non-finite") + ")"
    ax.plot(lags[finite], logs[finite], color=color, lw=1.6, label=label,
            marker="o" if finite.sum() == 1 else None)
    start = run.measurement.fit_start
    stop = run.measurement.fit_stop
    if stop - start >= 2 and np.isfinite(run.row.predicted_rate):
        span = np.arange(start, stop)
        ax.plot(span, logs[start] + run.row.predicted_rate * (span - start),
                color=color, lw=1.0, ls="--")
    if run.measurement.exploded_at is not None:
        k = run.measurement.exploded_at
        last = logs[finite][-1] if finite.any() else 0.0
        ax.plot([k], [last], marker="x", color=color, ms=9)
    zero = run.measurement.underflow_at
    if zero is not None and zero > 0 and np.isfinite(logs[zero - 1]):
        ax.plot([zero - 1], [logs[zero - 1]], marker="v", color=color, ms=8)


def _finish(fig, ax, title: str, path: Path,
            legend: str = "solid: measured, dashed: predicted",
            ylabel: str = "log ‖∂L/∂h_k‖") -> Path:
    ax.set_xlabel("lag T - k")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=legend, title_fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def plot_sweep(runs: Sequence[Run], path: str | Path, title: str) -> Path:
    """One line per radius (first seed of each); returns the PNG path."""
    plt = _pyplot()
    first: dict[float, Run] = {}
    for run in runs:
        first.setdefault(run.row.radius, run)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(first), 1)))
    seeds = len(runs) // max(len(first), 1)
    for (radius, run), color in zip(first.items(), colors, strict=True):
        label = (f"radius {radius:g}, seed {run.row.seed}: "
                 f"measured {run.row.measured_rate:+.3f}/step")
        _draw(ax, run, label, color)
    shown = ("one seed per radius (the first)" if seeds <= 1 else
             f"one seed per radius (the first of {seeds}; the table gives the mean)")
    try:
        return _finish(fig, ax, title, path,
                       f"{shown}\nsolid: measured, dashed: predicted")
    finally:
        plt.close(fig)


def plot_runs(runs: Sequence[Run], labels: Sequence[str], path: str | Path, title: str) -> Path:
    """One line per run with the given labels; returns the PNG path."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = plt.cm.tab10(np.arange(len(runs)) % 10)
    for run, label, color in zip(runs, labels, colors, strict=True):
        _draw(ax, run, f"{label}: {run.row.measured_rate:+.3f}/step", color)
    try:
        return _finish(fig, ax, title, path)
    finally:
        plt.close(fig)


_CELL_MAPS = ("Greys", "Blues", "Greens", "Oranges", "Purples", "Reds")


def _cell_colors(results: Sequence[CellResult]) -> list:
    """One colour map per cell (in order of appearance), a shade per row of that cell."""
    plt = _pyplot()
    cells = list(dict.fromkeys(r.row.cell for r in results))
    counts = {c: sum(r.row.cell == c for r in results) for c in cells}
    seen: dict[str, int] = {}
    colors = []
    for res in results:
        cell = res.row.cell
        k, n = seen.get(cell, 0), counts[cell]
        seen[cell] = k + 1
        cmap = plt.get_cmap(_CELL_MAPS[cells.index(cell) % len(_CELL_MAPS)])
        colors.append(cmap(0.55 + 0.4 * (k + 1) / n if n > 1 else 0.8))
    return colors


def plot_cells(results: Sequence[CellResult], path: str | Path, title: str) -> Path:
    """Every row's median curve (solid) and predicted slope (dashed); returns the path."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    for res, color in zip(results, _cell_colors(results), strict=True):
        curve = res.curve()
        lags = np.arange(len(curve))
        finite = np.isfinite(curve)
        ax.plot(lags[finite], curve[finite], color=color, lw=1.6,
                label=f"{res.row.label}: {res.row.measured_rate:+.3f}/step")
        start = res.samples[0].fit_start
        if np.isfinite(res.row.predicted_rate) and np.isfinite(curve[start]):
            span = lags[start:]
            ax.plot(span, curve[start] + res.row.predicted_rate * (span - start), color=color,
                    lw=0.9, ls="--")
    try:
        return _finish(fig, ax, title, path, "solid: measured, dashed: predicted (Jacobian)",
                       "log ‖∂L/∂h_k‖ - log ‖∂L/∂h_T‖ (median over seeds)")
    finally:
        plt.close(fig)
