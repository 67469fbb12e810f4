"""Claims about state Jacobians and adjoints (issue 13, deliverable 7): every claim form is
checkable like a gradient, for Elman and the gated cells, with a counterexample and a
diagnosis when wrong; a break in the engine makes a right claim wrong."""

from __future__ import annotations

import numpy as np
import pytest
from mutations import by_id
from sympy.core.cache import clear_cache

from symrnn.engine.graph import network
from symrnn.errors import FormulaError
from symrnn.formula import check_formula, parse_formula
from symrnn.formula import lower as lower_module
from symrnn.formula.lower import lower
from symrnn.formula.problem import Problem, resolve_quantity
from symrnn.spec import Spec

ELMAN, LSTM, GRU = Spec(), Spec(cell="lstm"), Spec(cell="gru")
STEP = r"\frac{\partial h_t}{\partial h_{t-1}} = "
ACROSS = r"\frac{\partial h_t}{\partial h_j} = "
CHAIN = r"\prod_{k=j+1}^{t} \frac{\partial h_k}{\partial h_{k-1}} = "
D = r"\operatorname{diag}"


def check(text, spec=ELMAN, **kwargs):
    return check_formula(text, spec, scalar_case=False, **kwargs)


@pytest.mark.parametrize("spec, text", [
    (ELMAN, STEP + D + r"(1 - h_t^2) W_{hh}"),
    (ELMAN, STEP + D + r"(1 - \mathbf{h}_t \odot \mathbf{h}_t) \mathbf{W}_\textrm{hh}"),
    (ELMAN, "dh_t/dh_{t-1} = diag(1 - h_t^2) @ W_hh"),
    (ELMAN, ACROSS + r"\prod_{k=j+1}^{t} " + D + r"(1 - h_k^2) W_{hh}"),
    (ELMAN, CHAIN + r"\prod_{k=j+1}^{t} " + D + r"(1 - h_k^2) W_{hh}"),
    (ELMAN, r"\frac{\partial h_3}{\partial h_1} = " + D + r"(1 - h_3^2) W " + D +
     r"(1 - h_2^2) W"),
    (ELMAN, ACROSS + r"\prod_{k=j+1}^{t} \frac{\partial h_k}{\partial h_{k-1}}"),
    (Spec(activation="relu"), STEP + D + r"(\mathrm{ReLU}'(a_t)) W_{hh}"),
    (Spec(activation="identity"), ACROSS + "W_{hh}^{t-j}"),
    (LSTM, r"\frac{\partial c_t}{\partial c_{t-1}} = " + D + "(f_t)"),
    (LSTM, r"\prod_{k=j+1}^{t} \frac{\partial c_k}{\partial c_{k-1}} = \prod_{k=j+1}^{t} " +
     D + "(f_k)"),
    (LSTM, r"\frac{\partial h_t}{\partial c_t} = " + D + r"(o_t \odot (1 - \tanh^2(c_t)))"),
    (LSTM, r"\frac{\partial h_t}{\partial c_{t-1}} = " + D + r"(o_t \odot (1 - \tanh^2(c_t)) "
     r"\odot f_t)"),
    (GRU, STEP + D + r"(u_t) + " + D + r"((1 - u_t) \odot (1 - n_t^2) \odot r_t) W_{hn} + " + D +
     r"((h_{t-1} - n_t) \odot u_t \odot (1 - u_t)) W_{hu} + " + D + r"((1 - u_t) \odot "
     r"(1 - n_t^2) \odot (W_{hn} h_{t-1} + b_{hn}) \odot r_t \odot (1 - r_t)) W_{hr}"),
])
def test_right_jacobian_claims_are_correct(spec, text):
    verdict = check(text, spec)
    assert verdict.ok, verdict.to_text()
    assert verdict.symbolic == "identical"
    assert any(n.startswith("checked at") for n in verdict.notes)


@pytest.mark.parametrize("spec, text, slip", [
    (ELMAN, STEP + "W_{hh}", "activation_derivative"),
    (ELMAN, STEP + "W_{hh}^T " + D + "(1 - h_t^2)", "transpose"),
    (ELMAN, STEP + "-" + D + "(1 - h_t^2) W_{hh}", "sign"),
    (ELMAN, STEP + "2 " + D + "(1 - h_t^2) W_{hh}", "constant_factor"),
    (ELMAN, ACROSS + r"\prod_{k=j+1}^{t} " + D + r"(1 - h_{k-1}^2) W_{hh}", "off_by_one"),
    (ELMAN, CHAIN + r"\prod_{k=j+1}^{t} W_{hh}", "activation_derivative"),
    (LSTM, r"\frac{\partial c_t}{\partial c_{t-1}} = " + D + "(f_{t-1})", "off_by_one"),
])
def test_wrong_jacobian_claims_are_wrong_and_diagnosed(spec, text, slip):
    verdict = check(text, spec)
    assert not verdict.ok
    assert slip in verdict.diagnosis_classes, verdict.to_text()


def test_backward_pass_factors_are_named_as_transposed():
    """∏ Wᵀ diag(f'_k) multiplies the backward pass's factors J_kᵀ: each should be J_k."""
    verdict = check(ACROSS + r"\prod_{k=j+1}^{t} W_{hh}^T " + D + "(1 - h_k^2)")
    assert not verdict.ok and verdict.diagnosis_classes == ("transpose",)
    assert "should be transposed" in verdict.diagnosis[0][1]
    assert any("chain-rule order" in n for n in verdict.notes)


def test_products_run_in_chain_rule_order():
    """J_t J_{t-1} ≠ J_{t-1} J_t: the claim holds only with the latest step first."""
    written = r"\frac{\partial h_3}{\partial h_1} = "
    assert check(written + D + r"(1 - h_3^2) W " + D + r"(1 - h_2^2) W").ok
    assert not check(written + D + r"(1 - h_2^2) W " + D + r"(1 - h_3^2) W").ok


def test_gated_claims_that_miss_a_path_are_wrong():
    # ∂c_t/∂c_j also runs through h (c_{k-1} → h_{k-1} → gates of step k): not ∏ diag(f_k)
    assert not check(r"\frac{\partial c_t}{\partial c_j} = \prod_{k=j+1}^{t} " + D + "(f_k)",
                     LSTM).ok
    assert not check(STEP + D + "(u_t)", GRU).ok
    assert not check(r"\frac{\partial L}{\partial c_t} = \delta^{c}_t", LSTM).ok


def test_counterexample_names_binding_instance_entry_and_both_values():
    verdict = check(STEP + "W_{hh}")
    ce = verdict.counterexample
    assert ce is not None and ce.seed in verdict.seeds and abs(ce.claimed - ce.true) > 1e-3
    assert any(n.startswith("the counterexample is at t = ") for n in verdict.notes)
    t = int(next(n for n in verdict.notes if n.startswith("the counterexample"))[-1])
    # re-evaluate both values from the instance: J_t = diag(1 - h_t²) W_hh, the formula W_hh
    problem = Problem(ELMAN, resolve_quantity(ELMAN, "W_hh", None), verdict.T)
    env = problem.envs[verdict.seeds.index(ce.seed)]
    named = {s.name: v for s, v in env.items()}
    h, w = named[f"h_{{{t}}}"], named["W_hh"]
    i, j = ce.entry
    assert np.isclose(((1 - h * h) * w)[i, j], ce.true) and np.isclose(w[i, j], ce.claimed)
    assert "dh_{t}/dh_{t-1}" in verdict.to_text() and verdict.to_dict()["status"] == "wrong"


@pytest.mark.parametrize("spec, text", [
    (ELMAN, r"\frac{\partial L}{\partial h_t} = \delta_t"),
    (ELMAN, r"\frac{\partial L}{\partial \mathbf{h}_t} = W_{hy}^T (\hat{y}_t - y_t) + W_{hh}^T "
            r"(" + D + r"(1 - h_{t+1}^2) \frac{\partial L}{\partial h_{t+1}})"),
    (ELMAN, r"\frac{\partial L}{\partial h_t} = \sum_{k=t}^{T} (\frac{\partial h_k}"
            r"{\partial h_t})^T W_{hy}^T e_k"),
    (Spec(activation="identity"), r"dL/dh_t = \sum_{i=t}^{T} (W_{hh}^T)^{i-t} W_{qh}^T "
                                  r"(\hat{y}_i - y_i)"),
    (LSTM, r"\frac{\partial L}{\partial c_t} = \delta^{c}_t + \delta^{h}_t \odot o_t \odot "
           r"(1 - \tanh^2(c_t))"),
    (LSTM, r"\frac{\partial L}{\partial h_t} = \delta^{h}_t"),
])
def test_adjoint_claims(spec, text):
    verdict = check(text, spec)
    assert verdict.ok, verdict.to_text()


def test_adjoint_of_the_initial_state_is_the_engines_gradient():
    for spec, states in ((ELMAN, ["h"]), (LSTM, ["h", "c"]), (GRU, ["h"])):
        for state in states:
            problem = Problem(spec, resolve_quantity(spec, f"{state}_0", None), 3)
            formula = parse_formula(rf"dL/d{state}_0 = \frac{{\partial L}}{{\partial {state}_0}}")
            mine = problem.values(lower(formula, problem.scope).expr)
            for a, b in zip(mine, problem.truth, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_jacobians_in_a_gradient_formula():
    text = (r"\frac{\partial L}{\partial W_{hh}} = \sum_{t=1}^{T} \sum_{k=1}^{t} (\frac{\partial "
            r"h_t}{\partial h_k} " + D + r"(1 - h_k^2))^T W_{hy}^T e_t h_{k-1}^T")
    assert check(text).ok
    assert not check(text.replace("h_{k-1}^T", "h_k^T")).ok


def test_undefined_right_hand_side_is_wrong_not_an_error():
    verdict = check(r"\frac{\partial c_t}{\partial c_{t-1}} = " + D + "(f_{t-1})", LSTM)
    assert not verdict.ok and any("is not defined" in n and "f_0" in n for n in verdict.notes)


def test_bad_claims_raise_formula_errors():
    for text in (STEP + "W_{hh} h_k",  # k free on the right only
                 r"\frac{\partial h_9}{\partial h_1} = W",  # above max_T below
                 r"\frac{\partial q_t}{\partial q_{t-1}} = W",
                 r"\frac{\partial h_t}{\partial W} = W"):
        with pytest.raises(FormulaError):
            check_formula(text, ELMAN, max_T=4)


@pytest.fixture
def fresh_caches():
    def clear():
        network.cache_clear()
        lower_module._blocks.cache_clear()
        lower_module._block_at.cache_clear()
        clear_cache()

    clear()
    yield
    clear()


@pytest.mark.parametrize("mutation, spec, text", [
    ("tanh-derivative-replaced", ELMAN, STEP + D + r"(1 - h_t^2) W_{hh}"),
    ("lstm-forget-gate-tanh", LSTM, r"\frac{\partial c_t}{\partial h_{t-1}} = " + D +
     r"(c_{t-1} \odot f_t \odot (1 - f_t)) W_{hf} + " + D + r"(g_t \odot i_t \odot (1 - i_t)) "
     r"W_{hi} + " + D + r"(i_t \odot (1 - g_t^2)) W_{hg}"),
])
def test_a_break_in_the_engine_makes_a_right_claim_wrong(monkeypatch, fresh_caches, mutation,
                                                          spec, text):
    """The truth is the engine's: break its tanh' rule (or the LSTM's forget gate) and the
    textbook Jacobian no longer matches."""
    assert check(text, spec).ok
    network.cache_clear()
    lower_module._blocks.cache_clear()
    lower_module._block_at.cache_clear()
    by_id(mutation).apply(monkeypatch)
    assert not check(text, spec).ok


def test_mean_over_time_scales_adjoints_on_both_sides():
    mean = r"L = \frac{1}{T}\sum_{t=1}^{T} L_t; "
    assert check(mean + r"\frac{\partial L}{\partial h_t} = \frac{1}{T} \delta_t").ok
    assert not check(mean + r"\frac{\partial L}{\partial h_t} = \delta_t").ok
    assert check(r"\frac{\partial L}{\partial h_t} = \frac{1}{T} \delta_t", time="mean").ok


def test_many_bindings_are_spread_and_long_products_stay_numeric():
    verdict = check(ACROSS + r"\prod_{k=j+1}^{t} " + D + r"(1 - h_k^2) W_{hh}", T=8)
    assert verdict.ok
    assert "checked at 24 of the 44 bindings of j, t, evenly spread" in verdict.notes
    assert verdict.symbolic.startswith("identical at ") and "numeric only" in verdict.symbolic
    assert not check(ACROSS + r"\prod_{k=j+1}^{t} W_{hh}", T=8).ok
