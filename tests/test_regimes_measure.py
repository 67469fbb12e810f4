"""Measurements through the generated code: torch cross-check, acceptance, overflow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from symrnn.engine import rules
from symrnn.engine.expr import hadamard
from symrnn.engine.rules import Rule
from symrnn.regimes import acceptance
from symrnn.regimes.families import make_recurrent
from symrnn.regimes.measure import fit_rate, measure
from symrnn.regimes.network import kernel, random_params, random_sequence, regime_spec
from symrnn.regimes.sweep import run_one, sweep
from symrnn.spec import Spec

ACTIVATIONS = ["tanh", "relu", "sigmoid", "identity"]
TORCH_F = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
           "identity": lambda a: a}


def _network(activation: str, H: int = 5, T: int = 7, radius: float = 1.2, seed: int = 0,
             family: str = "gaussian", bias: bool = True):
    spec = regime_spec(Spec(activation=activation, bias=bias), hidden_size=H, input_size=3,
                       output_size=2)
    rng = np.random.default_rng(seed)
    params = random_params(spec, make_recurrent(family, H, radius, rng), rng)
    if bias:
        params["b_h"] = 0.3 * rng.standard_normal(H)
        params["b_y"] = 0.3 * rng.standard_normal(2)
    x, y = random_sequence(spec, T, rng)
    return spec, params, x, y


def _torch_grads(activation, params, x, y):
    """∂L/∂h_t (t = 0..T) and ∂L/∂θ by torch.autograd on the same network."""
    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    f = TORCH_F[activation]
    h = torch.zeros(x.shape[0], p["W_hh"].shape[0], dtype=torch.float64, requires_grad=True)
    states = [h]
    for t in range(x.shape[1]):
        a = states[-1] @ p["W_hh"].T + torch.tensor(x[:, t]) @ p["W_xh"].T
        if "b_h" in p:
            a = a + p["b_h"]
        states.append(f(a))
        states[-1].retain_grad()
    z = states[-1] @ p["W_hy"].T + (p["b_y"] if "b_y" in p else 0)
    loss = 0.5 * ((z - torch.tensor(y)) ** 2).sum()
    loss.backward()
    hs = np.stack([s.grad.numpy() for s in states], axis=1)  # (B, T+1, H)
    return hs, {k: v.grad.numpy() for k, v in p.items()}


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_generated_backward_matches_torch_autograd(activation):
    spec, params, x, y = _network(activation)
    x2, y2 = np.concatenate([x, -x]), np.concatenate([y, 2 * y])  # a batch of two
    _loss, cache = kernel(spec).forward(params, x2, y2)
    grads = kernel(spec).backward(params, cache)
    hs, expected = _torch_grads(activation, params, x2, y2)
    np.testing.assert_allclose(grads["delta"], hs[:, 1:], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads["h_0"], hs[:, 0], rtol=1e-10, atol=1e-12)
    for name, value in expected.items():
        np.testing.assert_allclose(grads[name], value, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("activation", ["tanh", "identity"])
def test_measured_norms_are_ordered_by_lag_and_bounded_by_the_jacobian(activation):
    spec, params, x, y = _network(activation, H=6, T=12)
    m = measure(spec, params, x, y, kernel=kernel(spec))
    hs, _ = _torch_grads(activation, params, x, y)
    by_lag = np.log(np.linalg.norm(hs[0, ::-1], axis=1))  # lag n = T - k
    np.testing.assert_allclose(m.log_grad_norms, by_lag, rtol=1e-10)
    assert m.log_jacobian_norms[0] == 0.0
    slack = np.array(m.log_jacobian_norms) + m.log_grad_norms[0] - np.array(m.log_grad_norms)
    assert np.all(slack >= -1e-9)  # ‖∂L/∂h_k‖ ≤ ‖∂h_T/∂h_k‖ ‖∂L/∂h_T‖


def test_linear_orthogonal_jacobian_norms_are_powers_of_the_radius():
    spec, params, x, y = _network("identity", H=8, T=30, radius=0.7, family="orthogonal")
    m = measure(spec, params, x, y, kernel=kernel(spec))
    np.testing.assert_allclose(m.log_jacobian_norms, np.arange(31) * math.log(0.7), atol=1e-10)
    assert m.rate == pytest.approx(math.log(0.7), rel=1e-9)
    assert m.jacobian_rate == pytest.approx(math.log(0.7), rel=1e-9)


@pytest.mark.filterwarnings("error")
def test_overflow_is_reported_as_exploded_at_a_lag_not_raised():
    spec = regime_spec(Spec(activation="identity"), hidden_size=8)
    runs = sweep(spec, "orthogonal", [4.0], 1, 400)  # h_T ~ 4^400 ≈ 1e240 stays finite
    row, m = runs[0].row, runs[0].measurement
    assert not m.forward_overflow
    assert row.exploded_at is not None and 50 < row.exploded_at < 200
    assert math.isfinite(m.log_grad_norms[row.exploded_at - 1])
    assert m.fit_stop == row.exploded_at
    assert row.measured_rate == pytest.approx(math.log(4.0), rel=1e-6)
    assert row.measured_regime == "exploding" and row.verdict == "confirmed"
    longer = sweep(spec, "orthogonal", [4.0], 1, 700)[0]  # now the forward pass overflows
    assert longer.measurement.forward_overflow and longer.row.exploded_at == 0
    # predicted exploding, and the forward pass overflowed: a finding, not a refutation
    assert longer.row.verdict == "confirmed" and longer.row.detail.startswith("overflow at lag 0")


def test_fit_rate_stops_at_the_first_non_finite_value():
    logs = np.array([0.0, -1.0, -2.0, -3.0, -np.inf, -5.0])
    slope, intercept, stop = fit_rate(logs)
    assert (slope, intercept, stop) == (pytest.approx(-1.0), pytest.approx(0.0), 4)
    assert math.isnan(fit_rate(np.array([1.0, np.nan]))[0])


@settings(max_examples=15, deadline=None)
@given(c=st.integers(1, 4), seed=st.integers(0, 1000))
def test_scaling_the_loss_scales_every_gradient(c, seed):
    """c copies of a sequence: the loss (summed over the batch) and every gradient × c."""
    spec, params, x, y = _network("tanh", seed=seed)
    module = kernel(spec)
    one = module.backward(params, module.forward(params, x, y)[1])
    loss_c, cache = module.forward(params, np.repeat(x, c, axis=0), np.repeat(y, c, axis=0))
    many = module.backward(params, cache)
    for name in params:
        np.testing.assert_allclose(many[name], c * one[name], rtol=1e-10, atol=1e-13)
    # rounding is relative to the largest entry: a tiny entry may differ in its last digits
    scale = np.abs(one["delta"]).max()
    np.testing.assert_allclose(many["delta"], np.repeat(one["delta"], c, axis=0), rtol=1e-12,
                               atol=1e-12 * scale)


def test_acceptance_figures_hold():
    checks = acceptance.all_checks()
    assert [c.passed for c in checks] == [True] * 4, "\n\n".join(c.text() for c in checks)


def _wrong_tanh(node, g, out):
    return [(node.arg, hadamard(g, out))]  # tanh' taken as h instead of 1 - h*h


def test_a_wrong_derivative_rule_is_refuted(monkeypatch):
    right = rules.RULES["tanh"]
    monkeypatch.setitem(rules.RULES, "tanh", Rule("tanh", "wrong", right.latex, _wrong_tanh))
    from symrnn.codegen import compile as compile_spec

    spec, params, x, y = _network("tanh", H=16, T=100, radius=1.0, family="orthogonal")
    wrong = run_one(spec, params, x, y, family="orthogonal", radius=1.0, seed=0,
                    backend=lambda s: compile_spec(s, backend="numpy"))
    assert wrong.row.verdict == "refuted"
    monkeypatch.undo()
    right_run = run_one(spec, params, x, y, family="orthogonal", radius=1.0, seed=0,
                        backend=lambda s: compile_spec(s, backend="numpy"))
    assert right_run.row.verdict == "confirmed"
