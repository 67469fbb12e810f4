"""What the spectrum of W_hh predicts about gradients through time.

Notation (column vectors, one sequence): a_t = W h_{t-1} + W_xh x_t + b_h,
h_t = f(a_t), W = W_hh of shape (H, H).  The step Jacobian is
J_t = ∂h_t/∂h_{t-1} = diag(f'(a_t)) W, and for a lag n = T - k

    ∂h_T/∂h_k = J_T J_{T-1} ⋯ J_{k+1},      ∂L/∂h_k = (∂h_T/∂h_k)ᵀ ∂L/∂h_T

(many_to_one loss, only at t = T).  ρ = max_i |λ_i(W)| is the spectral
radius, σ_max = ‖W‖₂ the largest singular value and γ = sup |f'| the
activation's constant from :data:`symrnn.ops.ELEMENTWISE`.

Pascanu, Mikolov & Bengio (2013): since ‖J_t‖₂ ≤ γ σ_max,

* γ σ_max < 1 is *sufficient* for vanishing: ‖∂h_T/∂h_k‖ ≤ (γ σ_max)^n;
* γ σ_max ≥ 1 is *necessary* (not sufficient) for exploding.

A rate is a log-norm change per step of lag, d log‖·‖ / dn: for a linear
RNN ‖∂h_T/∂h_k‖ ~ ρ^n (rate log ρ); for a nonlinear one log(γ σ_max) is an
upper bound and the actual rate is the largest Lyapunov exponent of the
Jacobian product along the trajectory, computed here by QR
re-orthonormalisation (the product itself is never formed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from symrnn.errors import ShapeError
from symrnn.ops import elementwise

__all__ = [
    "MARGINAL_BAND",
    "Condition",
    "Analysis",
    "analyse",
    "predicted_regime",
    "transient_peak",
    "lyapunov_exponent",
    "spectral_radius",
]

MARGINAL_BAND = 0.02
"""A quantity q (ρ for a linear RNN, γσ_max otherwise) with |q - 1| ≤ this is 'marginal'."""

ROUNDING = 1e-9
"""γσ_max must be below 1 - ROUNDING to call vanishing guaranteed (SVD round-off)."""

PEAK_HORIZON = 10_000
"""The largest lag searched for the transient peak of ‖W^k‖₂."""


@dataclass(frozen=True)
class Condition:
    """One of Pascanu et al.'s conditions, evaluated on a matrix."""

    name: str
    holds: bool
    text: str


@dataclass(frozen=True)
class Analysis:
    """The spectrum of W_hh and what it predicts for an activation."""

    activation: str
    eigenvalues: tuple[complex, ...]
    singular_values: tuple[float, ...]
    rho: float
    sigma_max: float
    gamma: float
    conditions: tuple[Condition, ...]
    regime: str
    bound_rate: float
    """log(γ σ_max): no lag can grow faster than this per step."""
    linear_rate: float
    """log ρ: the rate of a linear RNN (the predicted rate when f is the identity)."""
    nonnormal: bool
    """ρ < 1 < σ_max: a linear RNN grows for a while before it decays."""
    peak_lag: int
    """argmax_k ‖W^k‖₂ (0 unless ``nonnormal``)."""
    peak_gain: float
    """max_k ‖W^k‖₂ (1 unless ``nonnormal``)."""

    @property
    def linear(self) -> bool:
        return self.activation == "identity"


def _check_square(W: np.ndarray) -> np.ndarray:
    W = np.asarray(W, dtype=float)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] == 0:
        raise ShapeError(f"W_hh must be a square (H, H) matrix, got shape {W.shape}")
    if not np.all(np.isfinite(W)):
        raise ShapeError("W_hh must be finite, got inf or NaN entries")
    return W


def spectral_radius(W: np.ndarray) -> float:
    """ρ(W) = max |λ_i|."""
    return float(np.max(np.abs(np.linalg.eigvals(_check_square(W)))))


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


def predicted_regime(activation: str, rho: float, sigma_max: float, gamma: float) -> str:
    """The regime named in the module docstring; the band is :data:`MARGINAL_BAND`."""
    if gamma * sigma_max < 1 - ROUNDING:
        return "vanishing (guaranteed)"
    key = rho if activation == "identity" else gamma * sigma_max
    if abs(key - 1) <= MARGINAL_BAND:
        return "marginal"
    if activation == "identity":
        return "exploding" if rho > 1 else "vanishing"
    return "exploding possible"


def transient_peak(W: np.ndarray, horizon: int = PEAK_HORIZON) -> tuple[int, float]:
    """(argmax_k ‖W^k‖₂, the max) for a matrix with ρ < 1, searching k ≤ ``horizon``.

    Powers are renormalised as they are formed so nothing overflows; the
    search stops once ‖W^k‖₂ has fallen below half of the running maximum
    and keeps falling (ρ < 1 guarantees it eventually does).
    """
    W = _check_square(W)
    power, log_scale = np.eye(W.shape[0]), 0.0
    best_k, best = 0, 0.0
    for k in range(1, horizon + 1):
        power = W @ power
        size = np.linalg.norm(power, 2)
        if size == 0:
            break
        log_scale += math.log(size)
        power /= size
        if log_scale > best:
            best_k, best = k, log_scale
        elif log_scale < best - math.log(2):
            break
    return best_k, math.exp(best)


def _conditions(rho: float, sigma_max: float, gamma: float) -> tuple[Condition, ...]:
    g = gamma * sigma_max
    return (
        Condition("vanishing sufficient", g < 1 - ROUNDING,
                  f"γ·σ_max = {gamma:g}·{sigma_max:.4g} = {g:.4g} < 1 ⇒ vanishing guaranteed"),
        Condition("exploding necessary", g >= 1 - ROUNDING,
                  f"γ·σ_max = {g:.4g} ≥ 1 is necessary (not sufficient) for exploding"),
        Condition("non-normal transient", rho < 1 - ROUNDING and sigma_max > 1 + ROUNDING,
                  f"ρ = {rho:.4g} < 1 < σ_max = {sigma_max:.4g}: growth before decay"),
    )


def analyse(W: np.ndarray, activation: str = "tanh") -> Analysis:
    """Eigenvalues, singular values, γ, Pascanu's conditions and the predicted regime."""
    W = _check_square(W)
    gamma = float(elementwise(activation).gamma)
    eigenvalues = np.linalg.eigvals(W)
    singular = np.linalg.svd(W, compute_uv=False)
    rho, sigma_max = float(np.max(np.abs(eigenvalues))), float(singular[0])
    nonnormal = rho < 1 - ROUNDING and sigma_max > 1 + ROUNDING
    peak_lag, peak_gain = transient_peak(W) if nonnormal else (0, 1.0)
    return Analysis(
        activation=activation,
        eigenvalues=tuple(complex(v) for v in eigenvalues),
        singular_values=tuple(float(s) for s in singular),
        rho=rho,
        sigma_max=sigma_max,
        gamma=gamma,
        conditions=_conditions(rho, sigma_max, gamma),
        regime=predicted_regime(activation, rho, sigma_max, gamma),
        bound_rate=_log(gamma * sigma_max),
        linear_rate=_log(rho),
        nonnormal=nonnormal,
        peak_lag=peak_lag,
        peak_gain=peak_gain,
    )


def lyapunov_exponent(W: np.ndarray, derivatives: np.ndarray, *, skip: int = 0,
                      seed: int = 0) -> float:
    """The largest Lyapunov exponent of ∏_t diag(f'(a_t)) W along a trajectory.

    ``derivatives`` has shape (T, H): row t-1 holds f'(a_t).  The product
    J_T ⋯ J_1 is never formed: an orthonormal basis Q is pushed through each
    J_t and re-orthonormalised, Q_t R_t = J_t Q_{t-1}, and the exponent is the
    mean of log |R_t[0, 0]| over the steps after the first ``skip`` (which
    let Q align with the most expanding direction).  Q_0 is a random
    orthonormal basis (``seed``), so no invariant subspace traps it.  Returns -inf when the
    product becomes exactly zero (e.g. every ReLU unit off).
    """
    W = _check_square(W)
    derivatives = np.asarray(derivatives, dtype=float)
    if derivatives.ndim != 2 or derivatives.shape[1] != W.shape[0]:
        raise ShapeError(
            f"derivatives must have shape (T, {W.shape[0]}), got {derivatives.shape}"
        )
    if not 0 <= skip < derivatives.shape[0]:
        raise ShapeError(f"skip must be in [0, {derivatives.shape[0]}), got {skip}")
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal(W.shape))
    logs = []
    for d in derivatives:
        Q, R = np.linalg.qr(d[:, None] * (W @ Q))
        logs.append(_log(abs(float(R[0, 0]))))
    return float(np.mean(logs[skip:]))
