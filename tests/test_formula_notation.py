"""Issue 13's notation: every spelling parses, is judged correct when right and wrong when a
factor is broken; plus a checker fuzz over the new tokens."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symrnn.errors import FormulaError, ShapeError, SymrnnError
from symrnn.formula import check_formula, parse_formula
from symrnn.formula import nodes as N
from symrnn.spec import Spec

ELMAN, LINEAR, LSTM = Spec(), Spec(activation="identity"), Spec(cell="lstm")
D2L_NOTE = "d2l's names read as symrnn's: W_hx is W_xh, W_qh is W_hy, b_q is b_y"


def body(text):
    return parse_formula("dL/dV = " + text).body


# ------------------------------------------------------------------ readings


@pytest.mark.parametrize("written, plain", [
    (r"\mathbf{W}_\textrm{hh}", "W_hh"),
    (r"\mathbf{W}_{\text{hh}}", "W_hh"),
    (r"\mathbf{W}_\mathrm{hh}", "W_hh"),
    (r"\mathbf W_{hh}", "W_hh"),
    (r"\boldsymbol{h}_t", "h_t"),
    (r"\bm{h}_{t-1}", "h_{t-1}"),
    (r"\vec{h}_t", "h_t"),
    (r"\hat{\mathbf{y}}_t", "yhat_t"),
    (r"\boldsymbol{\delta}_t", "delta_t"),
    (r"\delta^{f}_t", r"\delta^f_t"),
    (r"\delta^{(f)}_t", r"\delta^f_t"),
    (r"\delta_t^{f}", r"\delta^f_t"),
])
def test_spellings_read_as_their_plain_twin(written, plain):
    assert body(written) == body(plain)


def test_gate_superscripts_powers_and_derivatives_are_nodes():
    t = N.Time("t")
    assert body(r"\delta^{f}_t") == N.Sym("delta^{f}", t)
    assert body("W^k") == N.Power(N.Sym("W"), N.Exponent((("k", 1),)))
    assert body("(W^T)^{t-k}") == N.Power(N.Transpose(N.Sym("W")),
                                          N.Exponent((("t", 1), ("k", -1))))
    assert body("W^3") == N.Power(N.Sym("W"), N.Exponent((), 3))
    assert body("W^t") == N.Power(N.Sym("W"), N.Exponent((("t", 1),)))  # a power, not ᵀ
    adjoint = N.Derivative(N.Sym("L"), N.Sym("h", t))
    assert body(r"\frac{\partial L}{\partial h_t}") == adjoint
    assert body(r"\partial L / \partial h_t") == adjoint
    assert body("dL/dh_t") == adjoint
    assert body(r"W^T \partial L / \partial h_t") == N.Prod("matmul", N.Transpose(N.Sym("W")),
                                                            adjoint)


@pytest.mark.parametrize("lhs, claim", [
    (r"\nabla_W L", N.Claim(None, "W")),
    (r"\nabla_{W_{hh}} L", N.Claim(None, "W_hh")),
    (r"\nabla_{\mathbf{W}_\textrm{hh}} \mathcal{L}", N.Claim(None, "W_hh")),
    (r"\nabla_{V} L_3", N.Claim(3, "V")),
    (r"\frac{\partial \mathcal{L}}{\partial \mathbf{W}_{hx}}", N.Claim(None, "W_hx")),
])
def test_gradient_left_hand_sides(lhs, claim):
    assert parse_formula(lhs + " = h_3").claim == claim


def test_loss_declaration_let_and_their_errors():
    assert parse_formula(r"L = \frac{1}{T} \sum_{t=1}^{T} L_t; dL/dV = h_1").loss_time == "mean"
    assert parse_formula(r"L = \sum_{t=1}^{T} L_t / T; dL/dV = h_1").loss_time == "mean"
    assert parse_formula(r"L = \sum_t L_t; dL/dV = h_1").loss_time == "sum"
    f = parse_formula("let gate_t = W h_t; let M = W_hh; dL/dV = gate_t + M h_1")
    assert [(d.base, d.time) for d in f.definitions] == [("gate", N.Time("t")), ("M", None)]
    for bad in (r"L = \sum_t L_t^2; dL/dV = h_1", "let 2 = h_1; dL/dV = h_1",
                "let sum_t = h_t; dL/dV = h_1", "dL/dV = h_t^x", "let g = W; let g_t = W"):
        with pytest.raises(FormulaError):
            parse_formula(bad)
    with pytest.raises(FormulaError):  # without let, gate_t is g a t e_t: a has no index
        check_formula("dL/dV = gate_t", ELMAN)
    with pytest.raises(FormulaError, match="defined without a time index"):
        check_formula("let M = W_hy; dL/dW_hy = sum_t M_t", ELMAN)


# ------------------------------------------------------------------ verdicts

CASES = [
    # (spec, right formula, the same with one factor broken, keywords)
    (ELMAN, r"\frac{\partial L}{\partial \mathbf{W}_\textrm{hh}} = \sum_{t=1}^{T} "
            r"(\boldsymbol{\delta}_t \odot (1 - \mathbf{h}_t^2)) \mathbf{h}_{t-1}^\top",
     r"\frac{\partial L}{\partial \mathbf{W}_\textrm{hh}} = \sum_{t=1}^{T} "
     r"\boldsymbol{\delta}_t \mathbf{h}_{t-1}^\top", {}),
    (ELMAN, r"\frac{\partial L}{\partial \bm{W}_{\text{xh}}} = \sum_t (\vec{\delta}_t \odot "
            r"(1 - \vec{h}_t^2)) \vec{x}_t^\top",
     r"\frac{\partial L}{\partial \bm{W}_{\text{xh}}} = \sum_t \vec{\delta}_t \vec{x}_t^\top", {}),
    # d2l (linear BPTT section): W_hx, W_qh, b_q, and ∂L/∂h_t on the right-hand side
    (LINEAR, r"\frac{\partial L}{\partial \mathbf{W}_{hx}} = \sum_{t=1}^{T} "
             r"\frac{\partial L}{\partial \mathbf{h}_t} \mathbf{x}_t^\top",
     r"\frac{\partial L}{\partial \mathbf{W}_{hx}} = \sum_{t=1}^{T} "
     r"\frac{\partial L}{\partial \mathbf{h}_{t-1}} \mathbf{x}_t^\top", {}),
    (ELMAN, r"\frac{\partial L}{\partial W_{hx}} = \sum_t (\frac{\partial L}{\partial h_t} "
            r"\odot (1 - h_t^2)) x_t^\top",
     r"\frac{\partial L}{\partial W_{hx}} = \sum_t \frac{\partial L}{\partial h_t} x_t^\top", {}),
    (ELMAN, r"\frac{\partial L}{\partial W_{qh}} = \sum_t (\hat{y}_t - y_t) h_t^\top",
     r"\frac{\partial L}{\partial W_{qh}} = \sum_t (\hat{y}_t - y_t) h_{t-1}^\top", {}),
    (ELMAN, r"\frac{\partial L}{\partial b_q} = \sum_t (\hat{y}_t - y_t)",
     r"\frac{\partial L}{\partial b_q} = \sum_t \hat{y}_t", {}),
    (ELMAN, r"dL/dW_hh = \sum_t (dL/dh_t \odot (1 - h_t^2)) h_{t-1}^T",
     r"dL/dW_hh = \sum_t (dL/dh_t \odot (1 - h_t^2)) h_t^T", {}),
    # matrix powers, symbolic exponents inside sums over k
    (LINEAR, r"\frac{\partial L_3}{\partial W_{hh}} = \sum_{k=1}^{3} (W_{hh}^T)^{3-k} "
             r"W_{hy}^T (\hat{y}_3 - y_3) h_{k-1}^T",
     r"\frac{\partial L_3}{\partial W_{hh}} = \sum_{k=1}^{3} (W_{hh}^T)^{4-k} "
     r"W_{hy}^T (\hat{y}_3 - y_3) h_{k-1}^T", {}),
    (LINEAR, r"\frac{\partial L_3}{\partial W_{xh}} = \sum_{k=1}^{3} (W^{3-k})^T V^T "
             r"(\hat{y}_3 - y_3) x_k^T",
     r"\frac{\partial L_3}{\partial W_{xh}} = \sum_{k=1}^{3} W^{3-k} V^T (\hat{y}_3 - y_3) x_k^T",
     {}),
    (LINEAR, r"\frac{\partial L_2}{\partial h_0} = (W_{hh}^T)^2 W_{hy}^T (\hat{y}_2 - y_2)",
     r"\frac{\partial L_2}{\partial h_0} = W_{hh}^T W_{hy}^T (\hat{y}_2 - y_2)", {}),
    # a mean over time, declared in the formula or as time="mean"
    (ELMAN, r"L = \frac{1}{T} \sum_{t=1}^{T} L_t; \frac{\partial L}{\partial W_{hy}} = "
            r"\frac{1}{T} \sum_{t=1}^{T} (\hat{y}_t - y_t) h_t^\top",
     r"L = \frac{1}{T} \sum_{t=1}^{T} L_t; \frac{\partial L}{\partial W_{hy}} = "
     r"\sum_{t=1}^{T} (\hat{y}_t - y_t) h_t^\top", {}),
    (ELMAN, r"\frac{\partial L}{\partial W_{hy}} = \frac{1}{T} \sum_t (\hat{y}_t - y_t) h_t^\top",
     r"\frac{\partial L}{\partial W_{hy}} = \frac{1}{T} \sum_t (\hat{y}_t - y_t) h_{t-1}^\top",
     {"time": "mean"}),
    (LINEAR, r"L = \frac{1}{T}\sum_{t=1}^{T} L_t; \frac{\partial L}{\partial W_{hx}} = "
             r"\sum_t \frac{\partial L}{\partial h_t} x_t^\top",
     r"L = \frac{1}{T}\sum_{t=1}^{T} L_t; \frac{\partial L}{\partial W_{hx}} = "
     r"\frac{1}{T} \sum_t \frac{\partial L}{\partial h_t} x_t^\top", {}),
    # \nabla
    (ELMAN, r"\nabla_W L = \sum_t (\delta_t \odot (1 - h_t^2)) h_{t-1}^\top",
     r"\nabla_W L = \sum_t (\delta_t \odot (1 - h_t^2)) h_t^\top", {}),
    (ELMAN, r"\nabla_{W_{hh}} L = \sum_t (\delta^{h}_t \odot (1 - h_t^2)) h_{t-1}^\top",
     r"\nabla_{W_{hh}} L = -\sum_t (\delta_t \odot (1 - h_t^2)) h_{t-1}^\top", {}),
    # gate superscripts (LSTM)
    (LSTM, r"\delta^{f}_t = \frac{\partial L}{\partial c_t} \odot c_{t-1} \odot f_t \odot "
           r"(1 - f_t); \frac{\partial L}{\partial W_{hf}} = \sum_t \delta^{f}_t h_{t-1}^\top",
     r"\delta^{f}_t = \frac{\partial L}{\partial c_t} \odot c_{t-1} \odot f_t; "
     r"\frac{\partial L}{\partial W_{hf}} = \sum_t \delta^{f}_t h_{t-1}^\top", {}),
    (LSTM, r"\delta^o_t = \delta^{h}_t \odot \tanh(c_t) \odot o_t \odot (1 - o_t); "
           r"dL/db_o = \sum_t \delta^o_t",
     r"\delta^o_t = \delta^{h}_t \odot \tanh(c_t) \odot o_t; dL/db_o = \sum_t \delta^o_t", {}),
    (LSTM, r"\delta^{(i)}_t = \frac{\partial L}{\partial c_t} \odot g_t \odot i_t \odot (1 - i_t);"
           r" \nabla_{W_{xi}} L = \sum_t \delta^{(i)}_t x_t^\top",
     r"\delta^{(i)}_t = \frac{\partial L}{\partial c_t} \odot i_t \odot (1 - i_t);"
     r" \nabla_{W_{xi}} L = \sum_t \delta^{(i)}_t x_t^\top", {}),
    # let: a definition the grammar does not know
    (ELMAN, r"let dz_t = \delta_t \odot (1 - h_t^2); dL/dW_hh = \sum_t dz_t h_{t-1}^T",
     r"let dz_t = \delta_t; dL/dW_hh = \sum_t dz_t h_{t-1}^T", {}),
    (ELMAN, r"let gate_t = (1 - h_t^2); let M = W_{hy}^T; dL/db_h = \sum_t (M e_t + W^T "
            r"(\delta_{t+1} \odot gate_{t+1})) \odot gate_t",
     r"let gate_t = (1 - h_t^2); let M = W_{hy}^T; dL/db_h = \sum_t M e_t \odot gate_t", {}),
]


@pytest.mark.parametrize("spec, right, broken, kwargs", CASES)
def test_spelling_is_right_when_right_and_wrong_when_broken(spec, right, broken, kwargs):
    good = check_formula(right, spec, scalar_case=False, **kwargs)
    assert good.ok, good.to_text()
    bad = check_formula(broken, spec, scalar_case=False, **kwargs)
    assert not bad.ok, bad.to_text()


def test_d2l_mapping_is_noted():
    verdict = check_formula(r"\frac{\partial L}{\partial W_{qh}} = \sum_t (\hat{y}_t - y_t) "
                            r"h_t^\top", ELMAN)
    assert verdict.ok and D2L_NOTE in verdict.notes
    assert D2L_NOTE not in check_formula("dL/dW_hy = sum_t e_t h_t^T", ELMAN).notes


def test_mean_over_time_names_the_missing_factor_and_hints_the_declaration():
    forgot = check_formula(r"\frac{\partial L}{\partial W_{hy}} = \sum_t (\hat{y}_t - y_t) "
                           r"h_t^\top", ELMAN, time="mean")
    assert not forgot.ok and forgot.diagnosis_classes == ("constant_factor",)
    assert "T times" in forgot.diagnosis[0][1]
    undeclared = check_formula(r"\frac{\partial L}{\partial W_{hy}} = \frac{1}{T} \sum_t "
                               r"(\hat{y}_t - y_t) h_t^\top", ELMAN)
    assert not undeclared.ok and any("leading 1/T" in n for n in undeclared.notes)
    with pytest.raises(FormulaError, match="declares L as the mean"):
        check_formula(r"L = \frac{1}{T}\sum_{t=1}^{T} L_t; dL/dV = sum_t e_t h_t^T", ELMAN,
                      time="sum")
    with pytest.raises(FormulaError, match="unknown time convention"):
        check_formula("dL/dV = sum_t e_t h_t^T", ELMAN, time="avg")
    with pytest.raises(FormulaError, match="not one term"):
        check_formula("dL_2/dV = e_2 h_2^T", ELMAN, time="mean")


def test_power_errors_are_clear():
    vector = check_formula("dL/dV = sum_t e_t h_t^3", ELMAN, scalar_case=False)
    assert not vector.ok and "not a square matrix" in vector.shape_error
    with pytest.raises(FormulaError, match="negative exponent"):
        check_formula(r"dL/dW = sum_{k=1}^{T} W^{k-3} delta_k h_{k-1}^T", ELMAN)
    with pytest.raises(FormulaError, match="free index k in the exponent"):
        check_formula("dL/dW = W^k", ELMAN)


# ------------------------------------------------------------------ checker fuzz

ATOMS = ["h_t", r"\mathbf{h}_t", r"\boldsymbol{h}_{t-1}", "x_t", r"\hat{y}_t", "y_t", "e_t",
         r"\delta_t", r"\delta^{f}_t", r"\delta^{(h)}_{t+1}", r"\mathbf{W}_\textrm{hh}",
         "W_hx", "W_qh", "b_q", "V", "W", "^T", "^2", "^k", "^{t-k}", "^{T-t}", r"\odot", "@",
         "+", "-", "(", ")", r"\sum_t", r"\sum_{k=1}^{t}", r"\prod_{k=j+1}^{t}", "h_k", "1",
         r"\frac{1}{T}", r"\frac{\partial L}{\partial h_t}", r"dL/dh_{t+1}",
         r"\frac{\partial h_t}{\partial h_{t-1}}", r"\frac{\partial h_k}{\partial h_{k-1}}",
         r"\operatorname{diag}(", "dz_t", r"\partial L", r"\partial", r"\nabla_{h_t}", "/",
         r"\mathcal{L}", ";", "="]


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([r"\nabla_W L = ", r"\frac{\partial L}{\partial \mathbf{W}_{hx}} = ",
                        r"L = \frac{1}{T}\sum_{t=1}^{T} L_t; dL/dW_qh = ",
                        r"let dz_t = \delta_t \odot h_t; dL/dW_hh = ",
                        r"\frac{\partial h_t}{\partial h_{t-1}} = ",
                        r"\prod_{k=j+1}^{t} \frac{\partial h_k}{\partial h_{k-1}} = ",
                        r"\frac{\partial L}{\partial h_t} = "]),
       st.lists(st.sampled_from(ATOMS), min_size=1, max_size=8).map(" ".join))
def test_checker_fuzz_new_notation_gives_verdict_or_symrnn_error(lhs, rhs):
    try:
        verdict = check_formula(lhs + rhs, instances=2, scalar_case=False, budget_s=1.0)
    except (FormulaError, ShapeError, SymrnnError):
        return
    assert verdict.status in ("correct", "wrong")
