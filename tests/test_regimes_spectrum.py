"""Spectral analysis, families and the Lyapunov exponent (no generated code needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from symrnn.errors import ShapeError, SpecError
from symrnn.regimes.families import NONNORMAL_SHEAR, haar_orthogonal, make_recurrent
from symrnn.regimes.spectrum import (
    MARGINAL_BAND,
    analyse,
    lyapunov_exponent,
    predicted_regime,
    spectral_radius,
    transient_peak,
)

finite = st.floats(-3, 3, allow_nan=False, allow_infinity=False)
square = st.integers(1, 6).flatmap(lambda n: arrays(np.float64, (n, n), elements=finite))


@settings(max_examples=60, deadline=None)
@given(W=square, c=st.floats(-5, 5, allow_nan=False).filter(lambda c: abs(c) > 1e-3))
def test_spectral_radius_is_absolutely_homogeneous(W, c):
    assert spectral_radius(c * W) == pytest.approx(abs(c) * spectral_radius(W),
                                                   rel=1e-6, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_orthogonal_matrix_has_unit_singular_values_and_radius(n, seed):
    Q = haar_orthogonal(n, np.random.default_rng(seed))
    a = analyse(Q, "identity")
    np.testing.assert_allclose(a.singular_values, 1.0, atol=1e-10)
    assert a.rho == pytest.approx(1.0, abs=1e-10)
    assert a.regime == "marginal"


@pytest.mark.parametrize("family", ["orthogonal", "gaussian", "nonnormal"])
@pytest.mark.parametrize("radius", [0.5, 1.0, 1.7])
def test_families_have_the_requested_spectral_radius(family, radius):
    W = make_recurrent(family, 16, radius, np.random.default_rng(3))
    assert spectral_radius(W) == pytest.approx(radius, rel=1e-6)


def test_orthogonal_family_has_sigma_equal_to_radius_and_nonnormal_exceeds_one():
    rng = np.random.default_rng(0)
    assert analyse(make_recurrent("orthogonal", 8, 0.7, rng)).sigma_max == pytest.approx(0.7)
    a = analyse(make_recurrent("nonnormal", 8, 0.7, rng), "identity")
    assert a.rho < 1 < a.sigma_max and a.nonnormal
    assert a.sigma_max > NONNORMAL_SHEAR


def test_unknown_family_suggests_a_name():
    with pytest.raises(SpecError, match="did you mean 'gaussian'"):
        make_recurrent("gausian", 4, 1.0, np.random.default_rng(0))


@pytest.mark.parametrize(
    ("activation", "rho", "sigma", "expected"),
    [
        ("tanh", 0.5, 0.9, "vanishing (guaranteed)"),
        ("sigmoid", 2.0, 3.9, "vanishing (guaranteed)"),  # γ = 1/4
        ("sigmoid", 2.0, 4.0 * (1 + MARGINAL_BAND / 2), "marginal"),
        ("tanh", 1.0, 1.5, "exploding possible"),
        ("relu", 1.2, 1.2, "exploding possible"),
        ("identity", 1.2, 1.3, "exploding"),
        ("identity", 0.9, 1.5, "vanishing"),
        ("identity", 1.0 + MARGINAL_BAND / 2, 1.1, "marginal"),
    ],
)
def test_predicted_regime_table(activation, rho, sigma, expected):
    gamma = {"tanh": 1.0, "relu": 1.0, "identity": 1.0, "sigmoid": 0.25}[activation]
    assert predicted_regime(activation, rho, sigma, gamma) == expected


def test_analysis_states_pascanu_conditions():
    a = analyse(0.5 * np.eye(3), "tanh")
    by_name = {c.name: c for c in a.conditions}
    assert by_name["vanishing sufficient"].holds
    assert not by_name["exploding necessary"].holds
    assert a.bound_rate == pytest.approx(math.log(0.5))
    b = analyse(2.0 * np.eye(3), "sigmoid")
    assert b.gamma == 0.25 and b.regime == "vanishing (guaranteed)"
    assert b.bound_rate == pytest.approx(math.log(0.5))


def test_analyse_rejects_bad_matrices():
    with pytest.raises(ShapeError, match=r"expected|got shape \(2, 3\)"):
        analyse(np.zeros((2, 3)))
    with pytest.raises(ShapeError, match="inf or NaN"):
        analyse(np.array([[np.inf]]))


@pytest.mark.parametrize("r", [0.5, 0.8, 0.9, 0.95])
def test_transient_peak_matches_brute_force_powers(r):
    W = make_recurrent("nonnormal", 6, r, np.random.default_rng(1))
    norms = [np.linalg.norm(np.linalg.matrix_power(W, k), 2) for k in range(200)]
    k, gain = transient_peak(W)
    assert k == int(np.argmax(norms))
    assert gain == pytest.approx(max(norms), rel=1e-9)


def test_lyapunov_of_scaled_orthogonal_linear_product_is_log_radius():
    W = 0.8 * haar_orthogonal(10, np.random.default_rng(2))
    assert lyapunov_exponent(W, np.ones((50, 10))) == pytest.approx(math.log(0.8), abs=1e-12)


def test_lyapunov_picks_the_largest_exponent_of_a_diagonal_product():
    W = np.diag([0.5, 1.3, 0.9])
    d = np.tile([1.0, 0.5, 1.0], (400, 1))  # effective diag(0.5, 0.65, 0.9)
    assert lyapunov_exponent(W, d, skip=40) == pytest.approx(math.log(0.9), abs=1e-3)


def test_lyapunov_shape_errors():
    with pytest.raises(ShapeError, match=r"expected|\(T, 3\)"):
        lyapunov_exponent(np.eye(3), np.ones((5, 2)))
