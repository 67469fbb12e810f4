"""Families of recurrent matrices W_hh parametrised by a radius.

Each family is a function ``(H, radius, rng) -> W`` in :data:`FAMILIES`:

* ``orthogonal``: W = radius · Q with Q Haar-orthogonal, so every singular
  value and every |eigenvalue| equals ``radius`` (ρ = σ_max = radius);
* ``gaussian``: entries N(0, 1/H), rescaled so that ρ(W) = radius
  (σ_max is then about 2·radius);
* ``nonnormal``: W = Q · blockdiag(B, …, B) · Qᵀ with Jordan-like 2×2 blocks
  B = [[r, s], [0, r]], r = radius, shear s = :data:`NONNORMAL_SHEAR`
  (one 1×1 block [r] when H is odd).  Every eigenvalue is r, so ρ = radius,
  while σ_max ≈ s + r > 1: for radius < 1 a linear RNN's ‖W^k‖ grows like
  k·s·r^(k-1) before it decays, peaking near lag -1/log r.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from symrnn.errors import SpecError, suggest

__all__ = ["FAMILIES", "NONNORMAL_SHEAR", "make_recurrent", "haar_orthogonal"]

NONNORMAL_SHEAR = 2.0

Family = Callable[[int, float, np.random.Generator], np.ndarray]


def haar_orthogonal(H: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed orthogonal matrix (QR of a Gaussian, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((H, H)))
    return q * np.sign(np.diag(r))


def _orthogonal(H: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    return radius * haar_orthogonal(H, rng)


def _gaussian(H: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    W = rng.standard_normal((H, H)) / np.sqrt(H)
    return W * (radius / np.max(np.abs(np.linalg.eigvals(W))))


def _nonnormal(H: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    B = radius * np.eye(H)
    for i in range(0, H - 1, 2):
        B[i, i + 1] = NONNORMAL_SHEAR
    Q = haar_orthogonal(H, rng)
    return Q @ B @ Q.T


FAMILIES: dict[str, Family] = {
    "orthogonal": _orthogonal,
    "gaussian": _gaussian,
    "nonnormal": _nonnormal,
}


def make_recurrent(family: str, H: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    """W_hh of size (H, H) from ``family`` with spectral radius ``radius``."""
    if family not in FAMILIES:
        raise SpecError(
            f"unknown family {family!r}{suggest(family, FAMILIES)} "
            f"(allowed: {', '.join(FAMILIES)})"
        )
    if not (isinstance(H, int) and H >= 1):
        raise SpecError(f"hidden size must be a positive integer, got {H!r}")
    if not (np.isfinite(radius) and radius > 0):
        raise SpecError(f"radius must be a positive number, got {radius!r}")
    return FAMILIES[family](H, float(radius), rng)
