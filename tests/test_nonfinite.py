"""Non-finite numbers are findings: regimes, generated modules and verify report them as such."""

from __future__ import annotations

import re
import types

import numpy as np
import pytest
import torch

import symrnn
from symrnn.checks.verify import verify
from symrnn.regimes.format import sweep_table
from symrnn.regimes.network import random_params, random_sequence, regime_spec
from symrnn.regimes.sweep import run_one, sweep
from symrnn.spec import Spec

pytestmark = pytest.mark.filterwarnings("error")  # no RuntimeWarning may leak


# ------------------------------------------------------------------ regimes


def test_a_forward_overflow_confirms_a_predicted_explosion():
    spec = regime_spec(Spec(activation="identity"), hidden_size=8)
    run = sweep(spec, "gaussian", [10.0], 1, 400)[0]  # h_t ~ 10^t overflows near t = 310
    row = run.row
    assert run.measurement.forward_overflow and row.exploded_at == 0
    assert row.predicted_regime == "exploding"
    assert row.measured_regime == "exploding" and row.verdict == "confirmed"
    assert row.detail.startswith("overflow at lag 0: the forward pass overflowed at step t=")
    table = sweep_table([run])
    assert "1/1 confirmed" in table and "overflow at lag 0" in table


def test_dead_relu_units_are_reported_with_the_reason_never_marginal():
    spec = regime_spec(Spec(activation="relu"), hidden_size=1)
    runs = sweep(spec, "orthogonal", [0.5], 5, 200)
    dead = [r for r in runs if "all units dead" in r.row.detail]
    assert dead, [r.row.detail for r in runs]
    for run in runs:
        assert run.row.measured_regime == "vanishing"
        assert run.row.verdict == "confirmed"
    assert any(r.row.predicted_rate == -np.inf for r in dead)
    assert all("gradient exactly 0 from lag" in r.row.detail for r in dead)
    table = sweep_table(runs)
    assert "marginal" not in table and "± nan" not in table
    assert "relu: all units dead at step t=" in table


def test_a_huge_radius_gives_bounded_numbers_and_a_reason():
    spec = regime_spec(Spec(), hidden_size=8)
    runs = sweep(spec, "orthogonal", [1e308], 2, 50)
    table = sweep_table(runs)
    assert max(len(tok) for tok in re.split(r"\s+", table)) < 40  # no 300-digit numbers
    assert "1e+308" in table and "marginal" not in table
    for run in runs:
        assert run.row.measured_regime != "marginal"
        assert run.row.detail  # the reason: saturated units, exact zero, or overflow
    lin = sweep(regime_spec(Spec(activation="identity"), hidden_size=8), "orthogonal",
                [1e308], 1, 50)[0]
    assert lin.row.verdict == "confirmed" and "overflow" in lin.row.detail


def test_transient_growth_beyond_the_window_is_reported_as_such():
    """ρ = 0.99 but ‖W^k‖ grows ~10^25 over 200 lags: not 'marginal', not 'exploding'."""
    H = 32
    spec = regime_spec(Spec(activation="identity"), hidden_size=H)
    rng = np.random.default_rng(0)
    W = 0.99 * np.eye(H) + 0.5 * np.eye(H, k=1)
    params = random_params(spec, W, rng)
    x, y = random_sequence(spec, 200, rng)
    run = run_one(spec, params, x, y, family="jordan", radius=0.99, seed=0)
    row = run.row
    assert run.analysis.peak_lag > 200 and row.transient_gain > 1e16
    assert row.measured_regime == "transient growth" and row.verdict == "confirmed"
    assert "beyond the fitted window" in row.detail


# ------------------------------------------------------------------ generated modules


def _exploding(backend):
    spec = Spec(activation="identity", hidden_size=4, input_size=2, output_size=2)
    module = symrnn.compile(spec, backend)
    rng = np.random.default_rng(0)
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in module.PARAM_SHAPES.items()}
    params["W_hh"] = (3.0 * np.eye(4)).astype(np.float32)  # 3^t overflows float32 near t = 81
    x = rng.normal(size=(2, 100, 2)).astype(np.float32)
    y = rng.normal(size=(2, 100, 2)).astype(np.float32)
    conv = torch.tensor if backend == "torch" else (lambda a: a)
    return module, {k: conv(v) for k, v in params.items()}, conv(x), conv(y)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_check_finite_names_the_first_non_finite_step(backend):
    module, params, x, y = _exploding(backend)
    loss, grads = module.loss_and_grad(params, x, y)  # default: no check, no warning
    assert not np.isfinite(float(loss))
    with pytest.raises(FloatingPointError,
                       match=r"non-finite hidden state at step t=\d+ \(overflow in float32\?\)"):
        module.loss_and_grad(params, x, y, check_finite=True)
    try:
        module.loss_and_grad(params, x, y, check_finite=True)
    except FloatingPointError as err:
        t = int(re.search(r"t=(\d+)", str(err))[1])
    with np.errstate(over="ignore", invalid="ignore"):  # forward() itself may warn
        HS = module.forward(params, x, y)[1]["HS"]
    finite = [bool(np.isfinite(np.asarray(h)).all()) for h in HS]
    assert finite.index(False) == t and all(finite[:t])


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_check_finite_passes_finite_results_through(backend):
    module, params, x, y = _exploding(backend)
    params["W_hh"] = params["W_hh"] * 0.1
    loss, grads = module.loss_and_grad(params, x, y, check_finite=True)
    ref_loss, ref = module.loss_and_grad(params, x, y)
    assert float(loss) == float(ref_loss)
    assert all(np.array_equal(np.asarray(grads[k]), np.asarray(ref[k])) for k in ref)


def test_check_finite_names_a_non_finite_initial_state():
    module, params, x, y = _exploding("numpy")
    h0 = np.full((2, 4), np.nan, dtype=np.float32)
    with pytest.raises(FloatingPointError, match="initial hidden state"):
        module.loss_and_grad(params, x, y, h0, check_finite=True)


# ------------------------------------------------------------------ verify


def test_verify_reports_a_non_finite_gradient_as_such():
    spec = Spec()
    real = symrnn.compile(spec, "numpy")

    def backward(params, cache, input_grad=False):
        grads = real.backward(params, cache, input_grad=input_grad)
        grads["W_hh"] = grads["W_hh"].copy()
        grads["W_hh"][0, 1] = np.nan
        return grads

    fake = types.SimpleNamespace(PARAM_SHAPES=real.PARAM_SHAPES, forward=real.forward,
                                 backward=backward)
    report = verify(spec, module=fake, raise_exception=False)
    assert not report.ok
    bad = report.nonfinite[0]
    assert (bad.name, bad.index, bad.nonfinite) == ("W_hh", (0, 1), "generated")
    assert bad.message(report.T).startswith("non-finite gradient dL/dW_hh[0, 1]")
    assert "relative error" not in bad.message(report.T)
    assert report.to_dict()["max_relative_error"]["autograd"]["W_hh"] == "non-finite"
    with pytest.raises(symrnn.checks.verify.VerificationError, match="non-finite gradient"):
        verify(spec, module=fake)
