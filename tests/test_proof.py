"""Symbolic proof: the engine's matrix-form gradients equal SymPy's scalar derivative.

For every activation × head × loss × topology, and every hidden ∈ {1,2,3},
input ∈ {1,2}, output ∈ {1,2}, T ∈ {1,2,3,4}, every entry of every parameter
gradient (and of ∂L/∂h_0) is compared with the derivative SymPy computes from
the scalar-expanded loss; the difference must be exactly 0.
"""

from __future__ import annotations

import itertools

import pytest
from conftest import SPEC_COMBOS, combo_id, combo_spec

from symrnn.engine import rules
from symrnn.engine.expr import hadamard, matmul
from symrnn.ops import ELEMENTWISE
from symrnn.checks.oracle import prove_unrolled
from symrnn.spec import Spec

SIZES = list(itertools.product((1, 2, 3), (1, 2), (1, 2)))
LENGTHS = (1, 2, 3, 4)


@pytest.mark.slow
@pytest.mark.parametrize("combo", SPEC_COMBOS, ids=combo_id)
def test_matrix_form_equals_scalar_sympy_diff(combo):
    checked = 0
    for (hidden, inputs, outputs), T in itertools.product(SIZES, LENGTHS):
        spec = combo_spec(combo, hidden_size=hidden, input_size=inputs, output_size=outputs)
        result = prove_unrolled(spec, T)
        result.raise_if_failed()
        checked += result.entries_checked
    # every entry of W_hh, W_xh, b_h, W_hy, b_y, h_0 over the 48 size/length cases
    expected = sum(
        (h * h + h * d + h + o * h + o + h) * len(LENGTHS) for h, d, o in SIZES
    )
    assert checked == expected


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_cells_proved_by_the_same_engine(cell):
    """LSTM and GRU are cell definitions only; the engine and the oracle are unchanged."""
    result = prove_unrolled(Spec(cell=cell, hidden_size=2, input_size=1, output_size=1), 2)
    result.raise_if_failed()
    assert result.entries_checked > 20


def test_no_bias_spec_is_proved():
    prove_unrolled(Spec(bias=False, hidden_size=2), 3).raise_if_failed()


def test_a_wrong_rule_fails_the_proof_naming_parameter_and_entry(monkeypatch):
    """Test the tester: tanh' scaled by 1.001 must be caught."""
    right = rules.RULES["tanh"]

    def scaled(node, g, out):
        slope = ELEMENTWISE["tanh"].derivative_from_output(out)
        return [(node.arg, matmul(1.001, hadamard(g, slope)))]

    monkeypatch.setitem(rules.RULES, "tanh", rules.Rule("tanh", "wrong", right.latex, scaled))
    result = prove_unrolled(Spec(hidden_size=2, input_size=1, output_size=1), 2)
    assert not result.ok
    names = {m.parameter for m in result.mismatches}
    assert {"W_hh", "W_xh", "b_h", "h_0"} <= names
    assert "W_hy" not in names  # the head does not pass through tanh'
    with pytest.raises(AssertionError, match=r"gradient mismatch for dL/dW_hh\[0, 0\]"):
        result.raise_if_failed()


def test_a_wrong_loss_rule_fails_the_proof(monkeypatch):
    def doubled(node, g, out):
        return [(child, matmul(2, adj)) for child, adj in right(node, g, out)]

    right = rules.RULES["MSELoss"].vjp
    monkeypatch.setitem(rules.RULES, "MSELoss", rules.Rule("MSELoss", "x", "x", doubled))
    result = prove_unrolled(Spec(hidden_size=1, input_size=1, output_size=1), 1)
    assert {m.parameter for m in result.mismatches} >= {"W_hy", "b_y", "W_hh"}
