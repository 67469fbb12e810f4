"""Measure how gradients change with the lag, using the generated backward code.

For one sequence of length T with the loss at t = T only (many_to_one):

* ‖∂L/∂h_k‖ for k = T, …, 0 comes from the generated kernel
  (``backward(...)["delta"]`` holds ∂L/∂h_t for t = 1..T and ``["h_0"]``
  holds ∂L/∂h_0), so lag n = T - k runs from 0 to T;
* ‖∂h_T/∂h_k‖₂ = ‖J_T ⋯ J_{k+1}‖₂ is accumulated here from the forward
  trajectory, renormalised at every step so it never overflows;
* the measured rate is the least-squares slope of log‖∂L/∂h_k‖ against the
  lag, over lags from ``fit_start`` up to the last finite, nonzero value.

Overflow is not an error: the first lag whose ∂L/∂h_k is inf or NaN is
reported as ``exploded_at`` (and the first step whose hidden state is
non-finite as ``forward_overflow_at``); floating-point warnings are silenced
with ``numpy.errstate`` and the fit uses the lags before it.  A gradient that
becomes exactly 0 (every ReLU unit off at some step, ``dead_at``) before two
lags could be fitted has rate −inf, not NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from symrnn.regimes.network import trajectory
from symrnn.regimes.spectrum import lyapunov_exponent
from symrnn.spec import Spec

__all__ = ["Measurement", "measure", "fit_rate", "grad_norm", "log_norms", "LYAPUNOV_SKIP"]

LYAPUNOV_SKIP = 0.1
"""Fraction of the trajectory spent aligning the QR basis before averaging."""


@dataclass(frozen=True)
class Measurement:
    """Gradient norms against the lag n = T - k for one sequence."""

    T: int
    log_grad_norms: tuple[float, ...]
    """log‖∂L/∂h_{T-n}‖ for n = 0..T (generated backward code); ±inf/NaN kept as is."""
    log_jacobian_norms: tuple[float, ...]
    """log‖∂h_T/∂h_{T-n}‖₂ for n = 0..T."""
    rate: float
    """Fitted slope of log‖∂L/∂h_k‖ per step of lag (NaN with fewer than 2 points)."""
    jacobian_rate: float
    """Fitted slope of log‖∂h_T/∂h_k‖₂ over the same lags."""
    intercept: float
    fit_start: int
    fit_stop: int
    """The fit uses lags fit_start ≤ n < fit_stop."""
    exploded_at: int | None
    """First lag with inf/NaN in ∂L/∂h_k (None: no overflow)."""
    underflow_at: int | None
    """First lag where ∂L/∂h_k is exactly zero (None: never)."""
    forward_overflow: bool
    """Some hidden state h_t is inf/NaN: the forward pass itself overflowed."""
    forward_overflow_at: int | None
    """First step t whose hidden state h_t is inf/NaN (None: none)."""
    dead_at: int | None
    """Last step t with f'(a_t) = 0 in every unit (all ReLU units off, or every tanh unit
    saturated in float64): ∂L/∂h_k = 0 for every k < t (None: no such step)."""
    lyapunov: float
    """Largest Lyapunov exponent of the Jacobian product on this trajectory."""
    loss: float
    grads: dict
    """The generated backward's parameter gradients (for clipping)."""

    @property
    def peak_lag(self) -> int:
        """argmax_n ‖∂L/∂h_{T-n}‖ over the finite values."""
        logs = np.array(self.log_grad_norms)
        logs[~np.isfinite(logs)] = -np.inf
        return int(np.argmax(logs))

    @property
    def transient_gain(self) -> float:
        """max_n ‖∂L/∂h_{T-n}‖ / ‖∂L/∂h_T‖ (> 1 means transient growth; NaN if no finite lag 0)."""
        logs = np.array(self.log_grad_norms)
        if not np.isfinite(logs[0]):
            return math.nan
        with np.errstate(over="ignore"):
            return float(np.exp(logs[self.peak_lag] - logs[0]))


def log_norms(vectors: np.ndarray) -> np.ndarray:
    """log‖v‖ per row, scaled so finite rows never overflow; inf/NaN rows give NaN."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        peak = np.max(np.abs(vectors), axis=-1, keepdims=True)
        unit = np.linalg.norm(np.where(peak > 0, vectors / peak, 0.0), axis=-1)
        logs = np.log(peak[:, 0]) + np.log(np.where(peak[:, 0] > 0, unit, 1.0))
    logs[~np.all(np.isfinite(vectors), axis=-1)] = np.nan
    return logs


def fit_rate(logs: np.ndarray, start: int = 0) -> tuple[float, float, int]:
    """(slope, intercept, stop): least squares of logs[n] on n for start ≤ n < stop.

    ``stop`` is the first lag ≥ start whose value is not finite (overflow,
    NaN, or log 0 after underflow), or len(logs).
    """
    logs = np.asarray(logs, dtype=float)
    bad = np.flatnonzero(~np.isfinite(logs[start:]))
    stop = start + int(bad[0]) if bad.size else len(logs)
    if stop - start < 2:
        return math.nan, math.nan, stop
    lags = np.arange(start, stop, dtype=float)
    slope, intercept = np.polyfit(lags, logs[start:stop], 1)
    return float(slope), float(intercept), stop


def _jacobian_log_norms(W: np.ndarray, d: np.ndarray) -> np.ndarray:
    """log‖J_T ⋯ J_{T-n+1}‖₂ for n = 0..T, J_t = diag(d[t-1]) W, renormalised."""
    T = d.shape[0]
    M, scale = np.eye(W.shape[0]), 0.0
    out = np.zeros(T + 1)
    for n, d_t in enumerate(d[::-1], start=1):
        M = (M * d_t[None, :]) @ W
        size = np.linalg.norm(M, 2)
        if size == 0 or not np.isfinite(size):
            out[n:] = -np.inf if size == 0 else np.nan
            break
        scale += math.log(size)
        M /= size
        out[n] = scale
    return out


def _last(mask: np.ndarray, offset: int = 0) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[-1]) + offset if hits.size else None


def _first(mask: np.ndarray, offset: int = 0) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) + offset if hits.size else None


def grad_norm(grads: dict, names: tuple[str, ...]) -> float:
    """‖(∂L/∂θ)_θ∈names‖₂, all parameters flattened together."""
    with np.errstate(over="ignore", invalid="ignore"):
        return float(math.sqrt(sum(float(np.sum(np.square(grads[n]))) for n in names)))


def measure(spec: Spec, params: dict, x: np.ndarray, y: np.ndarray, *, kernel: ModuleType,
            fit_start: int = 0) -> Measurement:
    """Run the generated forward/backward on one sequence and measure every lag."""
    T = x.shape[1]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        loss, cache = kernel.forward(params, x, y)
        grads = kernel.backward(params, cache)
    delta = np.asarray(grads["delta"])[0]  # (T, H): ∂L/∂h_t, t = 1..T
    h0 = np.asarray(grads["h_0"])[0]
    by_lag = np.vstack([delta[::-1], h0[None, :]])  # row n: ∂L/∂h_{T-n}
    logs = log_norms(by_lag)
    h, d = trajectory(spec, params, x)
    slope, intercept, stop = fit_rate(logs, fit_start)
    if math.isnan(slope) and stop < len(logs) and logs[stop] == -np.inf:
        slope = -math.inf  # the gradient is exactly 0 before two lags could be fitted
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        jacobian = _jacobian_log_norms(params["W_hh"], d)
    return Measurement(
        T=T,
        log_grad_norms=tuple(float(v) for v in logs),
        log_jacobian_norms=tuple(float(v) for v in jacobian),
        rate=slope,
        jacobian_rate=fit_rate(jacobian[:stop], fit_start)[0],
        intercept=intercept,
        fit_start=fit_start,
        fit_stop=stop,
        exploded_at=_first(~np.all(np.isfinite(by_lag), axis=1)),
        underflow_at=_first(np.all(by_lag == 0, axis=1)),
        forward_overflow=not bool(np.all(np.isfinite(h))),
        forward_overflow_at=_first(~np.all(np.isfinite(h[1:]), axis=1), offset=1),
        dead_at=_last(np.all(d == 0, axis=1), offset=1),
        lyapunov=_lyapunov(params["W_hh"], d),
        loss=float(np.asarray(loss).sum()),
        grads={k: np.asarray(v) for k, v in grads.items()},
    )


def _lyapunov(W: np.ndarray, d: np.ndarray) -> float:
    if not np.all(np.isfinite(d)):
        return math.nan
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return lyapunov_exponent(W, d, skip=int(LYAPUNOV_SKIP * d.shape[0]))
