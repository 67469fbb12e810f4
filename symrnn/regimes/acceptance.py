"""The acceptance figures of the gradient-regime analysis, measured on demand.

Each check runs sweeps through the generated code and returns a
:class:`Check` (criterion, pass/fail, a small table).  ``bench/
regimes_acceptance.py`` prints them at full size; the tests call them at
reduced size.  Criteria:

* ``linear_orthogonal``: linear RNN, orthogonal W, ρ ∈ {0.5, 0.9, 1.1, 1.5}:
  every run's measured rate within 2 % of log ρ;
* ``tanh_guaranteed``: tanh RNN with γσ_max < 1 (orthogonal and gaussian
  W): every run measured vanishing (slope < 0 and ‖∂L/∂h_0‖ < ‖∂L/∂h_T‖);
* ``tanh_lyapunov``: tanh RNN, gaussian W, radii 0.5 … 3: per radius, the
  Lyapunov rate averaged over 30 seeds within 10 % of the averaged measured
  rate.  Single runs are reported too: at T = 200 their finite-time scatter
  is about ±0.02 per step, so a single run near the edge of chaos (the rate
  crosses 0 near radius 2.2 at input scale 1) has no meaningful relative
  error;
* ``nonnormal``: linear RNN, ρ < 1 < σ_max: transient growth measured
  (max_k ‖∂L/∂h_k‖ > ‖∂L/∂h_T‖) and the measured peak lag within
  max(1, 20 %) of the predicted argmax_k ‖W^k‖₂.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from symrnn.regimes.network import regime_spec
from symrnn.regimes.sweep import Run, sweep
from symrnn.spec import Spec

__all__ = ["Check", "linear_orthogonal", "tanh_guaranteed", "tanh_lyapunov", "nonnormal",
           "all_checks"]


@dataclass(frozen=True)
class Check:
    name: str
    criterion: str
    passed: bool
    table: tuple[tuple[str, ...], ...]
    """Header row, then one row per case."""

    def text(self) -> str:
        widths = [max(len(r[i]) for r in self.table) for i in range(len(self.table[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in self.table]
        mark = "PASS" if self.passed else "FAIL"
        return f"[{mark}] {self.name}: {self.criterion}\n" + "\n".join(lines)


def _spec(activation: str, H: int) -> Spec:
    return regime_spec(Spec(activation=activation), hidden_size=H)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def linear_orthogonal(radii: Sequence[float] = (0.5, 0.9, 1.1, 1.5), seeds: int = 5,
                      H: int = 32, T: int = 200) -> Check:
    runs = sweep(_spec("identity", H), "orthogonal", radii, seeds, T)
    table = [("radius", "log rho", "measured (worst seed)", "max rel. error")]
    ok = True
    for radius in radii:
        rows = [r.row for r in runs if r.row.radius == radius]
        errors = [_rel(r.measured_rate, r.predicted_rate) for r in rows]
        worst = rows[int(np.argmax(errors))]
        ok &= max(errors) <= 0.02
        table.append((f"{radius:g}", f"{worst.predicted_rate:+.6f}",
                      f"{worst.measured_rate:+.6f}", f"{max(errors):.2e}"))
    return Check("linear, orthogonal", f"measured within 2% of log ρ ({len(runs)} runs, "
                 f"H={H}, T={T})", ok, tuple(table))


def tanh_guaranteed(radii: Sequence[float] = (0.2, 0.3, 0.45, 0.7, 0.9, 0.99),
                    seeds: int = 5, H: int = 32, T: int = 200) -> Check:
    spec = _spec("tanh", H)
    table = [("family", "radius", "gamma*sigma_max", "cases", "vanishing", "max rate")]
    total = vanished = 0
    for family in ("orthogonal", "gaussian"):
        runs = [r for r in sweep(spec, family, radii, seeds, T) if r.analysis.sigma_max < 1]
        for radius in sorted({r.row.radius for r in runs}):
            group = [r for r in runs if r.row.radius == radius]
            hits = sum(_vanished(r) for r in group)
            total += len(group)
            vanished += hits
            table.append((family, f"{radius:g}",
                          f"{max(r.analysis.sigma_max for r in group):.3f}",
                          str(len(group)), str(hits),
                          f"{max(r.row.measured_rate for r in group):+.4f}"))
    return Check("tanh, γσ_max < 1", f"vanishing measured in {vanished}/{total} cases "
                 f"(H={H}, T={T})", total > 0 and vanished == total, tuple(table))


def _vanished(run: Run) -> bool:
    logs = run.measurement.log_grad_norms
    return run.row.measured_rate < 0 and logs[-1] < logs[0]


def tanh_lyapunov(radii: Sequence[float] = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0), seeds: int = 30,
                  H: int = 32, T: int = 200) -> Check:
    runs = sweep(_spec("tanh", H), "gaussian", radii, seeds, T)
    table = [("radius", "Lyapunov (mean)", "measured (mean)", "rel. error",
              "runs within 10%", "max abs. error")]
    ok = True
    for radius in radii:
        rows = [r.row for r in runs if r.row.radius == radius]
        pred = float(np.mean([r.predicted_rate for r in rows]))
        meas = float(np.mean([r.measured_rate for r in rows]))
        within = sum(_rel(r.predicted_rate, r.measured_rate) <= 0.10 for r in rows)
        worst = max(abs(r.predicted_rate - r.measured_rate) for r in rows)
        ok &= _rel(pred, meas) <= 0.10
        table.append((f"{radius:g}", f"{pred:+.4f}", f"{meas:+.4f}",
                      f"{_rel(pred, meas):.3f}", f"{within}/{len(rows)}", f"{worst:.4f}"))
    return Check("tanh, gaussian, Lyapunov", "seed-averaged Lyapunov rate within 10% of the "
                 f"measured rate for every radius ({seeds} seeds, H={H}, T={T})", ok,
                 tuple(table))


def nonnormal(radii: Sequence[float] = (0.5, 0.8, 0.9, 0.95), seeds: int = 5, H: int = 32,
              T: int = 200) -> Check:
    runs = sweep(_spec("identity", H), "nonnormal", radii, seeds, T)
    table = [("radius", "rho", "sigma_max", "peak lag predicted", "peak lags measured",
              "transient gain (min)")]
    ok = True
    for radius in radii:
        group = [r for r in runs if r.row.radius == radius]
        predicted = group[0].analysis.peak_lag
        measured = [r.measurement.peak_lag for r in group]
        gains = [r.measurement.transient_gain for r in group]
        ok &= all(g > 1 for g in gains) and group[0].analysis.nonnormal
        ok &= all(abs(m - predicted) <= max(1, 0.2 * predicted) for m in measured)
        table.append((f"{radius:g}", f"{group[0].row.rho:.3f}",
                      f"{group[0].row.sigma_max:.3f}", str(predicted),
                      ",".join(map(str, measured)), f"{min(gains):.3g}"))
    return Check("non-normal, linear", "transient growth measured and peak lag within "
                 f"max(1, 20%) of argmax_k ‖W^k‖ (H={H}, T={T})", ok, tuple(table))


def all_checks(seeds: int = 5, H: int = 32, T: int = 200,
               lyapunov_seeds: int = 30) -> list[Check]:
    kw = {"seeds": seeds, "H": H, "T": T}
    return [linear_orthogonal(**kw), tanh_guaranteed(**kw),
            tanh_lyapunov(H=H, T=T, seeds=lyapunov_seeds), nonnormal(**kw)]
