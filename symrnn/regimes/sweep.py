"""Predicted against measured gradient regimes over families × radii × seeds.

One :class:`Row` per (family, radius, seed): the spectrum's prediction
(:mod:`symrnn.regimes.spectrum`) next to the generated code's measurement
(:mod:`symrnn.regimes.measure`).  The predicted rate is log ρ for a linear
RNN and the largest Lyapunov exponent of the Jacobian product for a
nonlinear one.  The verdict is ``confirmed`` when

* the measured regime agrees with the predicted one (vanishing ⇒ measured
  rate < 0, exploding ⇒ > 0; 'exploding possible' and 'marginal' constrain
  nothing), and
* |measured - predicted| ≤ RTOL·|predicted| + ATOL, and
* the measured rate respects Pascanu's bound: measured ≤ log(γσ_max) + ATOL;

otherwise ``refuted``.  ATOL absorbs the finite-T fluctuation of one
trajectory (about 0.02 per step at T = 200, H = 32 for tanh networks near
the edge of chaos, where the rate crosses 0 and a relative error means
nothing).

Non-finite numbers are findings, each with its reason in ``Row.detail``:

* an overflow (∂L/∂h_k or h_t inf/NaN) where the prediction is exploding
  confirms it ("overflow at lag k"), also when nothing finite is left to
  fit; a bounded activation's forward pass can overflow only in W_hh h_{t-1}
  (weights near the float64 limit): measured ``non-finite``, verdict
  ``inconclusive``;
* a gradient that becomes exactly 0 (every ReLU unit off at some step) is
  vanishing with rate −inf, confirmed unless exploding was predicted;
* a linear RNN with ρ < 1 < σ_max whose ‖W^k‖ peaks beyond the fitted
  window is measured as ``transient growth``, confirmed when the measured
  gain stays within max_{n ≤ T} ‖W^n‖ (which bounds it);
* any other NaN rate is ``non-finite`` and ``inconclusive``, never
  ``marginal``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from types import ModuleType

import numpy as np

from symrnn.regimes.families import make_recurrent
from symrnn.regimes.measure import Measurement, grad_norm, measure
from symrnn.regimes.network import (
    INPUT_SCALE,
    PARAM_NAMES,
    kernel,
    random_params,
    random_sequence,
)
from symrnn.regimes.spectrum import Analysis, analyse, transient_peak
from symrnn.spec import Spec

__all__ = [
    "RTOL", "ATOL", "Row", "Run", "Assessment", "assess", "run_one", "sweep", "rows_json",
    "verdict", "BOUNDED",
    "compare_activations", "DEFAULT_FAMILY", "DEFAULT_RADII", "DEFAULT_T", "DEFAULT_SEEDS",
]

RTOL = 0.10
ATOL = 0.02
DEFAULT_FAMILY = "orthogonal"
DEFAULT_RADII = (0.5, 0.9, 1.0, 1.1, 1.5)
DEFAULT_T = 200
DEFAULT_SEEDS = 5

BOUNDED = ("tanh", "sigmoid")
"""Activations whose output is bounded: their forward pass cannot grow, only W_hh h overflow."""

Backend = Callable[[Spec], ModuleType]
"""spec -> generated module with forward/backward (default: ``symrnn.compile``)."""


@dataclass(frozen=True)
class Row:
    """One line of the sweep; the first nine fields are the JSON contract."""

    family: str
    radius: float
    seed: int
    rho: float
    sigma_max: float
    predicted_regime: str
    predicted_rate: float
    measured_rate: float
    verdict: str
    activation: str
    bound_rate: float
    measured_regime: str
    jacobian_rate: float
    """Slope of log‖∂h_T/∂h_k‖₂ against the lag (same lags as measured_rate)."""
    exploded_at: int | None
    predicted_peak_lag: int
    measured_peak_lag: int
    transient_gain: float
    grad_norm: float
    clipped_norm: float | None
    detail: str = ""
    """Why a row is what it is when numbers are non-finite or transient ('overflow at lag 0')."""


@dataclass(frozen=True)
class Run:
    """A row with the analysis and measurement it came from (for plots)."""

    row: Row
    analysis: Analysis
    measurement: Measurement


def measured_regime(m: Measurement) -> str:
    """The regime the measurement alone shows (see :func:`assess` for the full reading)."""
    if m.exploded_at is not None or m.rate > ATOL:
        return "exploding"
    if m.rate < -ATOL:
        return "vanishing"
    if math.isnan(m.rate):
        return "non-finite"
    return "marginal"


@dataclass(frozen=True)
class Assessment:
    regime: str
    """The measured regime."""
    verdict: str
    """confirmed, refuted or inconclusive (non-finite numbers that test nothing)."""
    detail: str = ""


def _rate_verdict(analysis: Analysis, predicted: float, rate: float) -> str:
    if math.isnan(rate) or math.isnan(predicted):
        return "refuted"
    regime = analysis.regime
    if regime.startswith("vanishing") and rate >= 0:
        return "refuted"
    if regime == "exploding" and rate <= 0:
        return "refuted"
    if abs(rate - predicted) > RTOL * abs(predicted) + ATOL:
        return "refuted"
    if rate > analysis.bound_rate + ATOL:
        return "refuted"
    return "confirmed"


def assess(analysis: Analysis, predicted: float, m: Measurement,
           window_gain: float | None = None) -> Assessment:
    """Measured regime, verdict and the reason, by the rules in the module docstring.

    ``window_gain`` is max_{n ≤ T} ‖W^n‖₂ (for a non-normal linear RNN).
    """
    exploding = analysis.regime.startswith("exploding")
    if m.forward_overflow_at is not None:
        where = (f"overflow at lag {m.exploded_at}: the forward pass overflowed at step "
                 f"t={m.forward_overflow_at}")
        if analysis.activation in BOUNDED:
            return Assessment("non-finite", "inconclusive",
                              f"{where} (W_hh h_(t-1) exceeds float64 although "
                              f"{analysis.activation} is bounded); nothing was measured")
        if exploding:
            return Assessment("exploding", "confirmed", where)
        return Assessment("non-finite", "inconclusive", f"{where}; nothing was measured")
    if m.exploded_at is not None:
        where = f"overflow at lag {m.exploded_at}"
        if math.isnan(m.rate):  # fewer than two finite lags to fit
            return Assessment("exploding", "confirmed" if exploding else "refuted", where)
        return Assessment("exploding", _rate_verdict(analysis, predicted, m.rate),
                          f"{where}; rate fitted over lags {m.fit_start}..{m.fit_stop - 1}")
    zero = _zero_reason(analysis, m)
    if m.underflow_at is not None and (m.rate == -math.inf or predicted == -math.inf):
        verdict = "refuted" if analysis.regime == "exploding" else "confirmed"
        return Assessment("vanishing", verdict, zero)
    if math.isnan(m.rate) or math.isnan(predicted):
        which = "measured" if math.isnan(m.rate) else "predicted"
        return Assessment(measured_regime(m), "inconclusive",
                          f"the {which} rate is NaN (fewer than two finite lags)")
    gain = m.transient_gain
    if analysis.nonnormal and analysis.linear and analysis.peak_lag > m.fit_start:
        detail = (f"transient growth x{gain:.3g} over lags 0..{m.T}: ‖W^k‖ peaks at lag "
                  f"{analysis.peak_lag} (x{analysis.peak_gain:.3g}), beyond the fitted window; "
                  f"rho = {analysis.rho:.3g} < 1, so it decays only later")
        within = window_gain is None or gain <= window_gain * (1 + 1e-6)
        return Assessment("transient growth", "confirmed" if gain > 1 and within else "refuted",
                          detail)
    detail = ""
    if analysis.nonnormal and math.isfinite(gain) and gain > 1:
        detail = f"transient growth x{gain:.3g} up to lag {m.peak_lag}, then decay"
    if zero:
        detail = ", ".join(filter(None, [detail, zero]))
    return Assessment(measured_regime(m), _rate_verdict(analysis, predicted, m.rate), detail)


def _zero_reason(analysis: Analysis, m: Measurement) -> str:
    """'relu: all units dead at step t=…, gradient exactly 0 from lag …' ('' if never 0)."""
    if m.underflow_at is None:
        return ""
    state = "saturated (f' = 0 in float64)" if analysis.activation in BOUNDED else "dead"
    cause = ("underflow" if m.dead_at is None else
             f"{analysis.activation}: all units {state} at step t={m.dead_at}")
    return f"{cause}, gradient exactly 0 from lag {m.underflow_at}"


def verdict(analysis: Analysis, predicted: float, m: Measurement) -> str:
    """``confirmed``, ``refuted`` or ``inconclusive`` by the rules in the module docstring."""
    return assess(analysis, predicted, m).verdict


def predicted_rate(analysis: Analysis, m: Measurement) -> float:
    return analysis.linear_rate if analysis.linear else m.lyapunov


def run_one(spec: Spec, params: dict, x: np.ndarray, y: np.ndarray, *, family: str,
            radius: float, seed: int, clip: float | None = None,
            backend: Backend = kernel) -> Run:
    """Analyse W_hh, measure with the generated code, compare; one :class:`Run`."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        analysis = analyse(params["W_hh"], spec.activation)
    start = min(analysis.peak_lag, x.shape[1] // 2)  # fit the decay after a transient peak
    m = measure(spec, params, x, y, kernel=backend(spec), fit_start=start)
    predicted = predicted_rate(analysis, m)
    window = None
    if analysis.nonnormal and analysis.linear and analysis.peak_lag > start:
        window = transient_peak(params["W_hh"], horizon=x.shape[1])[1]
    found = assess(analysis, predicted, m, window)
    names = tuple(n for n in PARAM_NAMES if n in params)
    norm = grad_norm(m.grads, names)
    row = Row(
        family=family, radius=float(radius), seed=int(seed), rho=analysis.rho,
        sigma_max=analysis.sigma_max, predicted_regime=analysis.regime,
        predicted_rate=predicted, measured_rate=m.rate, verdict=found.verdict,
        activation=spec.activation, bound_rate=analysis.bound_rate,
        measured_regime=found.regime, jacobian_rate=m.jacobian_rate,
        exploded_at=m.exploded_at,
        predicted_peak_lag=analysis.peak_lag, measured_peak_lag=m.peak_lag,
        transient_gain=m.transient_gain, grad_norm=norm,
        clipped_norm=None if clip is None else clipped_norm(spec, params, x, y, clip, names),
        detail=found.detail,
    )
    return Run(row, analysis, m)


def clipped_norm(spec: Spec, params: dict, x: np.ndarray, y: np.ndarray, clip: float,
                 names: tuple[str, ...]) -> float:
    """‖∇_θ L‖ after the generated code's global-norm clipping at ``clip``."""
    module = kernel(spec, clip=clip)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        grads = module.backward(params, module.forward(params, x, y)[1])
    return grad_norm(grads, names)


def sweep(spec: Spec, family: str, radii: Iterable[float], seeds: int, T: int, *,
          clip: float | None = None, input_scale: float = INPUT_SCALE, backend: Backend = kernel,
          progress: Callable[[Iterator], Iterator] | None = None) -> list[Run]:
    """Every (radius, seed) of ``family``; ``progress`` wraps the job iterator (a bar)."""
    jobs = [(float(r), s) for r in radii for s in range(seeds)]
    runs = []
    for radius, seed in (progress(iter(jobs)) if progress else jobs):
        rng = np.random.default_rng(seed)  # same base matrix and inputs at every radius
        W = make_recurrent(family, spec.hidden_size, radius, rng)
        params = random_params(spec, W, rng)
        x, y = random_sequence(spec, T, rng, input_scale=input_scale)
        runs.append(run_one(spec, params, x, y, family=family, radius=radius, seed=seed,
                            clip=clip, backend=backend))
    return runs


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def rows_json(runs: Iterable[Run], **meta) -> dict:
    """``{"rows": [...], **meta}`` with non-finite floats as null / "inf" / "-inf"."""
    return {**meta, "rows": [{k: _clean(v) for k, v in asdict(r.row).items()} for r in runs]}


def compare_activations(spec: Spec, family: str, radius: float, T: int, *, seed: int = 0,
                        activations: Iterable[str] = ("identity", "tanh", "relu", "sigmoid"),
                        input_scale: float = INPUT_SCALE, backend: Backend = kernel) -> list[Run]:
    """The same W_hh, inputs and head for each activation (matched scale), one run each."""
    runs = []
    for activation in activations:
        cell = spec.replace(activation=activation)
        rng = np.random.default_rng(seed)
        W = make_recurrent(family, cell.hidden_size, radius, rng)
        params = random_params(cell, W, rng)
        x, y = random_sequence(cell, T, rng, input_scale=input_scale)
        runs.append(run_one(cell, params, x, y, family=family, radius=radius, seed=seed,
                            backend=backend))
    return runs
