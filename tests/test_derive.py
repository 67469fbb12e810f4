"""The derivation engine: textbook forms, rolled = unrolled, gated cells, missing rules."""

from __future__ import annotations

import pytest
from sympy import MatAdd, MatrixSymbol
from sympy.matrices.expressions.inverse import Inverse

from symrnn import derive, derive_unrolled
from symrnn.engine.derive import Backprop, Block
from symrnn.engine.expr import at_time
from symrnn.engine.graph import Equation
from symrnn.errors import MissingRuleError
from symrnn.render.printing import Notation, text
from symrnn.spec import Spec


def test_elman_recurrence_is_the_textbook_one():
    rec = derive(Spec()).recurrence
    error_symbol, error = rec.output_error
    assert (str(error_symbol), text(error)) == ("e_{t}", "yhat_{t} - y_{t}")
    (delta, expr), = rec.deltas.values()
    assert str(delta) == "delta_{t}"
    assert text(expr) == "W_hy.T @ e_{t} + W_hh.T @ (delta_{t+1} * (1 - h_{t+1} * h_{t+1}))"
    grads = {k: text(v) for k, v in rec.gradients.items()}
    assert grads == {
        "W_hh": "(delta_{t} * (1 - h_{t} * h_{t})) @ h_{t-1}.T",
        "W_xh": "(delta_{t} * (1 - h_{t} * h_{t})) @ x_{t}.T",
        "b_h": "delta_{t} * (1 - h_{t} * h_{t})",
        "W_hy": "e_{t} @ h_{t}.T",
        "b_y": "e_{t}",
    }
    assert text(rec.initial_state["h"]) == "W_hh.T @ (delta_{1} * (1 - h_{1} * h_{1}))"


@pytest.mark.parametrize(
    "activation, summand",
    [("tanh", "delta_{t} * (1 - h_{t} * h_{t})"), ("sigmoid", "delta_{t} * h_{t} * (1 - h_{t})"),
     ("relu", "delta_{t} * step(h_{t})"), ("identity", "delta_{t}")],
)
def test_activation_derivatives_read_the_stored_output(activation, summand):
    assert text(derive(Spec(activation=activation)).recurrence.gradients["b_h"]) == summand


@pytest.mark.parametrize(
    "head, loss, error",
    [
        ("identity", "mse", "yhat_{t} - y_{t}"),
        ("sigmoid", "mse", "(yhat_{t} - y_{t}) * yhat_{t} * (1 - yhat_{t})"),
        ("softmax", "cross_entropy", "yhat_{t} - y_{t}"),
        ("softmax", "mse",
         "yhat_{t} * (yhat_{t} - y_{t}) - yhat_{t} @ yhat_{t}.T @ (yhat_{t} - y_{t})"),
    ],
)
def test_output_error_per_head_and_loss(head, loss, error):
    assert text(derive(Spec(head=head, loss=loss)).recurrence.output_error[1]) == error


def test_aliases_print_the_notes_names():
    rec = derive(Spec()).recurrence
    (_, expr), = rec.deltas.values()
    assert text(expr, Notation(aliases=True)) == (
        "V.T @ e_{t} + W.T @ (delta_{t+1} * (1 - h_{t+1} * h_{t+1}))")


@pytest.mark.parametrize("topology", ["many_to_many", "many_to_one"])
@pytest.mark.parametrize("T", [1, 2, 5])
def test_unrolled_gradients_are_the_rolled_sum(topology, T):
    spec = Spec(topology=topology)
    rec = derive(spec).recurrence
    unrolled = derive_unrolled(spec, T)
    for name, summand in rec.gradients.items():
        if rec.summand_range(name) == "t=T":
            expected = {at_time(summand, T)}
        else:
            expected = {at_time(summand, t) for t in range(1, T + 1)}
        got = unrolled.gradients[name]
        assert set(got.args if isinstance(got, MatAdd) else [got]) == expected, name
    (delta, _), = rec.deltas.values()
    definitions = dict(unrolled.definitions)
    rolled = rec.deltas["h"][1] if topology == "many_to_many" else rec.carry["h"]
    for t in range(1, T):
        assert set(definitions[at_time(delta, t)].args) == set(at_time(rolled, t).args)


def test_unrolled_L3_dW_is_the_three_term_bptt_sum():
    unrolled = derive_unrolled(Spec(topology="many_to_one"), 3)
    terms = unrolled.gradients["W_hh"].args
    assert len(terms) == 3
    inlined = unrolled.inline(unrolled.gradients["W_hh"])
    assert "delta" not in text(inlined)
    assert {str(s) for s in inlined.atoms(MatrixSymbol)} >= {"h_{0}", "h_{1}", "h_{2}", "h_{3}"}


def test_inline_skips_zero_adjoints():
    """delta^c_T is zero (nothing reads c_T); inlining still resolves every other name."""
    unrolled = derive_unrolled(Spec(cell="lstm", hidden_size=2), 2)
    assert dict(unrolled.definitions)[MatrixSymbol("delta^{c}_{2}", 2, 1)] is None
    inlined = text(unrolled.inline(unrolled.gradients["W_hf"]))
    assert "delta" not in inlined and "e_{" not in inlined


def test_lstm_one_step_adjoint_has_both_states():
    rec = derive(Spec(cell="lstm")).recurrence
    assert set(rec.deltas) == {"h", "c"}
    carry_c = text(rec.carry["c"])
    assert "f_{t+1}" in carry_c and "delta^{c}_{t+1}" in carry_c
    assert set(rec.gradients) >= {"W_hi", "W_xf", "b_o", "W_hg", "W_hy"}


def test_missing_rule_names_the_operation():
    A = MatrixSymbol("A", 2, 2)
    x = MatrixSymbol("x", 2, 1)
    y = MatrixSymbol("y_{1}", 2, 1)
    program = [Equation(y, Inverse(A) * x, "cell", 1)]
    with pytest.raises(MissingRuleError, match="no derivative rule for operation 'Inverse'"):
        Backprop({y: MatrixSymbol("g", 2, 1)}).run([Block(program)])


def test_derivation_records_every_rule_with_its_rationale():
    steps = derive(Spec()).steps
    ops = {s.op for s in steps}
    assert {"MatAdd", "MatMul", "tanh", "MSELoss"} <= ops
    tanh = next(s for s in steps if s.op == "tanh")
    assert "1 - h*h" in tanh.rule and str(tanh.target).startswith("h_")
