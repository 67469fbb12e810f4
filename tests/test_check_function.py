"""Checking hand-written NumPy BPTT functions (Karpathy-style lossFun, our own code)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from symrnn.errors import SymrnnError
from symrnn.formula.function import Conventions, check_function
from symrnn.spec import Spec
from symrnn.testing import assert_gradient_matches
from symrnn.testing import strategies as st_rnn

CE = Spec(head="softmax", loss="cross_entropy", hidden_size=3, input_size=2, output_size=4)


def make_loss_fun(*, derivative=True, recursion=True, mean=False, row=False):
    """A hand-written char-RNN style BPTT (column vectors, class-index targets)."""

    def loss_fun(inputs, targets, hprev, Wxh, Whh, Why, bh, by):  # noqa: N803
        if row:  # the function works in row layout; convert to columns inside
            Wxh, Whh, Why, bh, by, hprev = Wxh.T, Whh.T, Why.T, bh.T, by.T, hprev.T  # noqa: N806
            inputs = [x.T for x in inputs]
        hs, ps, loss = {-1: hprev}, {}, 0.0
        for t, x in enumerate(inputs):
            hs[t] = np.tanh(Wxh @ x + Whh @ hs[t - 1] + bh)
            z = Why @ hs[t] + by
            e = np.exp(z - z.max())
            ps[t] = e / e.sum()
            loss -= np.log(ps[t][targets[t], 0])
        grads = [np.zeros_like(w) for w in (Wxh, Whh, Why, bh, by)]
        dWxh, dWhh, dWhy, dbh, dby = grads  # noqa: N806
        dhnext = np.zeros_like(hprev)
        for t in reversed(range(len(inputs))):
            dy = ps[t].copy()
            dy[targets[t]] -= 1
            dWhy += dy @ hs[t].T
            dby += dy
            dh = Why.T @ dy + (dhnext if recursion else 0)
            dhraw = (1 - hs[t] * hs[t]) * dh if derivative else dh
            dbh += dhraw
            dWxh += dhraw @ inputs[t].T
            dWhh += dhraw @ hs[t - 1].T
            dhnext = Whh.T @ dhraw
        n = len(inputs) if mean else 1
        out = [g / n for g in grads]
        if row:
            out = [g.T for g in out]
        return (loss / n, *out, hs[len(inputs) - 1])

    return loss_fun


INDEX = Conventions(target_kind="index")


@pytest.mark.parametrize("wrt", ["W_hh", "W_xh", "W_hy", "b_h", "b_y"])
def test_correct_function_accepted(wrt):
    verdict = check_function(make_loss_fun(), CE, wrt=wrt, conventions=INDEX)
    assert verdict.ok, verdict.to_text()


def test_row_layout_with_batch_axis():
    conv = Conventions(target_kind="index", vectors="row", batch_axis=0)
    assert check_function(make_loss_fun(row=True), CE, wrt="W_xh", conventions=conv).ok
    # the same function declared as column layout is caught (shape or value)
    with pytest.raises((AssertionError, SymrnnError, ValueError)):
        assert_gradient_matches(make_loss_fun(row=True), CE, wrt="W_xh", conventions=INDEX)


def test_mean_over_time_needs_declaring():
    fn = make_loss_fun(mean=True)
    declared = Conventions(target_kind="index", time="mean")
    assert check_function(fn, CE, wrt="W_hh", conventions=declared).ok
    verdict = check_function(fn, CE, wrt="W_hh", conventions=INDEX)
    assert verdict.diagnosis_classes == ("constant_factor",)
    assert "1/T" in verdict.diagnosis[0][1]


def test_missing_derivative_in_function_diagnosed():
    verdict = check_function(make_loss_fun(derivative=False), CE, wrt="W_hh", conventions=INDEX)
    assert not verdict.ok
    assert verdict.diagnosis_classes == ("activation_derivative",)
    assert verdict.counterexample is not None


def test_missing_recursion_in_function_diagnosed():
    verdict = check_function(make_loss_fun(recursion=False), CE, wrt="W_xh", conventions=INDEX)
    assert verdict.diagnosis_classes == ("local_only",)


def test_assert_gradient_matches_message_carries_counterexample_and_diagnosis():
    with pytest.raises(AssertionError) as info:
        assert_gradient_matches(make_loss_fun(recursion=False), CE, wrt="W_hh",
                                conventions=INDEX)
    message = str(info.value)
    assert "counterexample: instance seed" in message
    assert "recursion through h_2 and h_1 is missing" in message


def test_assert_gradient_matches_with_formula():
    assert_gradient_matches("dL/dW_hy = sum_t (yhat_t - y_t) @ h_t.T", CE)
    with pytest.raises(AssertionError, match="sign flip"):
        assert_gradient_matches("dL/dW_hy = sum_t (y_t - yhat_t) @ h_t.T", CE)


def test_bad_conventions_rejected():
    with pytest.raises(SymrnnError, match="expected one of"):
        Conventions(vectors="diagonal")
    with pytest.raises(SymrnnError, match="h_0 is a constant"):
        check_function(make_loss_fun(), CE, wrt="h_0", conventions=INDEX)


@settings(max_examples=15, deadline=None)
@given(spec=st_rnn.specs(cells=("elman",)), T=st_rnn.sequence_lengths(3))
def test_strategies_give_checkable_specs(spec, T):
    """The exported strategies draw specs the checker accepts; dL/db_y is Σ_t e_t."""
    if not spec.bias:
        return
    steps = "sum_t e_t" if spec.topology == "many_to_many" else "e_T"
    assert_gradient_matches(f"dL/db_y = {steps}", spec, T=T)
