"""Gated formulas: the first wrong definition is located; checks answer in bounded time.

Each quantity a formula defines (δ_t, δ^{c}_t, δ^{f}_t …) is compared step by
step with the engine's own adjoint of that quantity (its total ∂L/∂q_t, or of
the gate's pre-activation), so one broken gate definition is named instead of
every gate gradient coming out wrong.
"""

from __future__ import annotations

import pytest

from symrnn.formula import check_formula
from symrnn.formula.diagnose import WRONG_DEFINITION
from symrnn.formula.lower import lower
from symrnn.formula.parse import parse_formula
from symrnn.formula.problem import Problem, resolve_quantity
from symrnn.formula.symbolic import compare_symbolically, expansion_bound
from symrnn.spec import Spec
from symrnn.testing.textbook import (
    GRU_DEFS,
    GRU_GRAD,
    GRU_V1_DEFS,
    GRU_V1_GRAD,
    LSTM_DEFS,
    LSTM_GRAD,
)

LSTM = Spec(cell="lstm")
GRU = Spec(cell="gru")
GRU_V1 = Spec(cell="gru_v1")


def formula(defs, grad, broken: int | None = None, replace=("", "")):
    lines = list(defs)
    if broken is not None:
        assert replace[0] in lines[broken]
        lines[broken] = lines[broken].replace(*replace)
    return "; ".join(lines + [grad])


@pytest.mark.parametrize(("defs", "grad", "spec"), [
    (LSTM_DEFS, LSTM_GRAD, LSTM), (GRU_DEFS, GRU_GRAD, GRU), (GRU_V1_DEFS, GRU_V1_GRAD, GRU_V1)])
def test_correct_gated_definition_sets_are_accepted(defs, grad, spec):
    verdict = check_formula(formula(defs, grad), spec, scalar_case=False)
    assert verdict.ok, verdict.to_text()


@pytest.mark.parametrize(("broken", "replace", "label"), [
    (3, ("c_{t-1}", "c_t"), "delta^{f}_{t} (definition 4)"),
    (1, ("tanh(c_t)", "c_t"), "delta^{o}_{t} (definition 2)"),
    (2, (r"\delta^{c}_{t+1} * f_{t+1}", r"\delta^{c}_{t+1}"), "delta^{c}_{t} (definition 3)"),
    (0, (r" + W_hf^T \delta^{f}_{t+1}", ""), "delta_{t} (definition 1)"),
])
def test_the_broken_lstm_definition_is_named(broken, replace, label):
    text = formula(LSTM_DEFS, LSTM_GRAD, broken, replace)
    verdict = check_formula(text, LSTM, scalar_case=False)
    assert not verdict.ok
    kind, message = verdict.diagnosis[0]
    assert kind == WRONG_DEFINITION
    assert message.startswith(label), message
    assert "the other definitions are right" in message
    assert f"    - {message}" in verdict.to_text()  # printed as a diagnosis line


def test_the_forget_gate_is_wrong_at_every_step_and_the_others_only_through_it():
    text = formula(LSTM_DEFS, LSTM_GRAD, 3, ("c_{t-1}", "c_t"))
    message = check_formula(text, LSTM, T=3, scalar_case=False).diagnosis[0][1]
    assert "is wrong at t = 3, 2, 1" in message
    # δ_t, δ^o_t, δ^c_t read δ^f_{t+1}: with the engine's value there, they are right
    assert message.endswith("the other definitions are right (checked with delta^{f}_{t} "
                            "taken as dL/d(the argument of f_t's activation))"), message


def test_two_broken_definitions_are_not_called_the_only_one():
    text = formula(LSTM_DEFS, LSTM_GRAD, 3, ("c_{t-1}", "c_t")).replace(
        r"\delta^{c}_t * g_t * i_t", r"\delta^{c}_t * g_t")
    message = check_formula(text, LSTM, scalar_case=False).diagnosis[0][1]
    assert message.startswith("delta^{f}_{t} (definition 4)"), message
    assert "5" in message.split(";")[1] and "other definitions are right" not in message


@pytest.mark.parametrize(("defs", "grad", "spec", "broken", "replace", "label"), [
    (GRU_DEFS, GRU_GRAD, GRU, 2, ("(h_{t-1} - n_t)", "(n_t - h_{t-1})"),
     "delta^{u}_{t} (definition 3)"),
    (GRU_DEFS, GRU_GRAD, GRU, 3, ("(W_hn h_{t-1} + b_hn)", "(W_hn h_{t-1})"),
     "delta^{r}_{t} (definition 4)"),
    (GRU_V1_DEFS, GRU_V1_GRAD, GRU_V1, 1, ("(1 - u_t)", "u_t"), "delta^{n}_{t} (definition 2)"),
])
def test_the_broken_gru_definition_is_named(defs, grad, spec, broken, replace, label):
    verdict = check_formula(formula(defs, grad, broken, replace), spec, scalar_case=False)
    assert not verdict.ok
    assert verdict.diagnosis[0][0] == WRONG_DEFINITION
    assert verdict.diagnosis[0][1].startswith(label), verdict.diagnosis[0][1]


def test_an_unbroken_set_with_a_wrong_gradient_blames_no_definition():
    text = formula(LSTM_DEFS, r"dL/dW_hf = \sum_t \delta^{f}_t h_t^T")
    verdict = check_formula(text, LSTM, scalar_case=False)
    assert not verdict.ok
    assert WRONG_DEFINITION not in verdict.diagnosis_classes


# ------------------------------------------------------------ bounded time


GRU_DELTA_ONLY = GRU_DEFS[0].replace(r"W_hn^T (r_{t+1} * \delta^{n}_{t+1})", (
    r"W_hn^T (\delta_{t+1} * (1 - u_{t+1}) * (1 - n_{t+1}^2) * r_{t+1})")).replace(
    r"W_hr^T \delta^{r}_{t+1}",
    r"W_hr^T (\delta_{t+1} * (1 - u_{t+1}) * (1 - n_{t+1}^2) * (W_hn h_t + b_hn) * r_{t+1}"
    r" * (1 - r_{t+1}))").replace(
    r"W_hu^T \delta^{u}_{t+1}",
    r"W_hu^T (\delta_{t+1} * (h_t - n_{t+1}) * u_{t+1} * (1 - u_{t+1}))")
GRU_DELTA_GRAD = r"dL/dW_hn = \sum_t (\delta_t * (1 - u_t) * (1 - n_t^2) * r_t) h_{t-1}^T"


def test_a_gru_recursion_is_proved_step_by_step():
    """The issue's GRU case (never finished at T = 2): each δ_t is compared with the
    engine's δ_t over the named adjoints, so the proof stays one step big."""
    verdict = check_formula(GRU_DELTA_ONLY + "; " + GRU_DELTA_GRAD, GRU, T=3,
                            scalar_case=False)
    assert verdict.ok and verdict.symbolic == "identical", verdict.to_text()


def test_the_step_by_step_proof_can_fail():
    """Mutation: a δ recursion with W_hn for W_hn^T is numerically wrong, and the exact
    comparison does not call it identical either."""
    spec = GRU.replace(hidden_size=2, input_size=2, output_size=2)
    wrong = GRU_DELTA_ONLY.replace(r"W_hn^T (\delta", r"W_hn (\delta") + "; " + GRU_DELTA_GRAD
    problem = Problem(spec, resolve_quantity(spec, "W_hn", None), 3)
    parsed = parse_formula(wrong)
    expr = lower(parsed, problem.scope).expr
    result = compare_symbolically(expr, problem.truth_expr, problem.unrolled,
                                  formula=parsed, scope=problem.scope)
    assert result != "identical"


def test_the_expansion_bound_sees_the_inlined_blow_up():
    problem = Problem(GRU, resolve_quantity(GRU, "W_hn", None), 3)
    one_step = Problem(GRU, resolve_quantity(GRU, "W_hn", None), 1)
    definitions = problem.unrolled.definitions
    assert expansion_bound(problem.truth_expr, definitions, 10**9) > \
        100 * expansion_bound(one_step.truth_expr, one_step.unrolled.definitions, 10**9)


def test_a_tiny_budget_reports_the_skipped_symbolic_step():
    verdict = check_formula(formula(LSTM_DEFS, LSTM_GRAD), LSTM, budget_s=0)
    assert verdict.ok  # the numeric verdict comes first and stands
    assert verdict.symbolic.startswith("skipped (budget 0 s")
    assert any(s.startswith("symbolic comparison skipped") for s in verdict.skipped)
    wrong = check_formula(formula(LSTM_DEFS, LSTM_GRAD, 3, ("c_{t-1}", "c_t")), LSTM,
                          budget_s=0, scalar_case=False)
    assert not wrong.ok and "locating the wrong definition stopped" in wrong.skipped[0]
