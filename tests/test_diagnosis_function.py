"""Function-mode diagnosis: each classic slip injected into a hand-written NumPy BPTT is named.

A Python function's output is only numbers (no AST to mutate), so every slip
must be recognised as a relation to a truth variant of the engine's gradient
(:mod:`symrnn.formula.problem`): transposed weight in the recursion, an outer
product one step off, a sign, a constant factor, a truncated recursion.
"""

from __future__ import annotations

import numpy as np
import pytest

from symrnn.formula.diagnose import SLIPS, diagnose
from symrnn.formula.function import Conventions, check_function
from symrnn.formula.problem import Problem, resolve_quantity
from symrnn.spec import Spec

SPEC = Spec(head="softmax", loss="cross_entropy", hidden_size=3, input_size=2, output_size=4)
INDEX = Conventions(target_kind="index")


def make_bptt(slip: str | None = None, truncate: int = 2):
    """A char-RNN style BPTT (column vectors, class-index targets) with one slip injected."""

    def loss_fun(inputs, targets, hprev, Wxh, Whh, Why, bh, by):  # noqa: N803
        T = len(inputs)  # noqa: N806
        hs, ps, loss = {-1: hprev}, {}, 0.0
        for t, x in enumerate(inputs):
            hs[t] = np.tanh(Wxh @ x + Whh @ hs[t - 1] + bh)
            z = Why @ hs[t] + by
            ps[t] = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            loss -= np.log(ps[t][targets[t], 0])
        dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)  # noqa: N806
        dbh, dby, dhnext = np.zeros_like(bh), np.zeros_like(by), np.zeros_like(hprev)
        first = T - truncate if slip == "stop_early" else 0
        for t in reversed(range(first, T)):
            dy = ps[t].copy()
            dy[targets[t]] -= 1
            if slip == "sign":
                dy = -dy  # targets - probabilities: the descent direction, not the gradient
            if slip == "factor":
                dy = 2 * dy  # the squared-error habit 2 (p - y)
            dWhy += dy @ hs[t].T
            dby += dy
            dh = Why.T @ dy + dhnext
            dhraw = (1 - hs[t] * hs[t]) * dh
            dbh += dhraw
            dWxh += dhraw @ inputs[t].T
            dWhh += (hs[t - 1] @ dhraw.T if slip == "outer_transposed" else
                     dhraw @ (hs[t] if slip == "off_by_one" else hs[t - 1]).T)
            dhnext = (Whh if slip == "transpose" else Whh.T) @ dhraw
        if slip == "truncated":
            dWxh, dWhh, dbh = tbptt(inputs, hs, ps, targets, Whh, Why, truncate)  # noqa: N806
        return loss, dWxh, dWhh, dWhy, dbh, dby, hs[T - 1]

    return loss_fun


def tbptt(inputs, hs, ps, targets, Whh, Why, truncate):  # noqa: N803
    """The WildML tutorial's loop: each loss term backpropagates ``truncate`` steps only."""
    dWxh = np.zeros((Whh.shape[0], inputs[0].shape[0]))  # noqa: N806
    dWhh, dbh = np.zeros_like(Whh), np.zeros((Whh.shape[0], 1))  # noqa: N806
    for t in range(len(inputs)):
        dy = ps[t].copy()
        dy[targets[t]] -= 1
        delta = (Why.T @ dy) * (1 - hs[t] ** 2)
        for step in range(t, max(-1, t - truncate), -1):
            dWhh += delta @ hs[step - 1].T
            dWxh += delta @ inputs[step].T
            dbh += delta
            delta = (Whh.T @ delta) * (1 - hs[step - 1] ** 2)
    return dWxh, dWhh, dbh


def classes(slip, wrt="W_hh", T=4, **kw):
    verdict = check_function(make_bptt(slip, **kw), SPEC, wrt=wrt, conventions=INDEX, T=T)
    assert not verdict.ok, verdict.to_text()
    assert verdict.counterexample is not None
    return verdict


def test_the_unbroken_function_is_correct():
    for wrt in ("W_hh", "W_xh", "W_hy", "b_h", "b_y"):
        verdict = check_function(make_bptt(), SPEC, wrt=wrt, conventions=INDEX, T=4)
        assert verdict.ok, verdict.to_text()


def test_transposed_weight_in_the_recursion_is_named():
    verdict = classes("transpose")
    assert verdict.diagnosis_classes == ("transpose",)
    assert "W_hh where W_hh^T belongs" in verdict.diagnosis[0][1]


def test_transposed_outer_product_is_named():
    verdict = classes("outer_transposed")
    assert verdict.diagnosis_classes == ("transpose",)
    assert "whole result is transposed" in verdict.diagnosis[0][1]


@pytest.mark.parametrize("wrt", ["W_hh", "W_xh"])
def test_off_by_one_state_in_the_outer_product_is_named(wrt):
    if wrt == "W_xh":  # the slip only touches dWhh: dWxh stays right
        assert check_function(make_bptt("off_by_one"), SPEC, wrt=wrt, conventions=INDEX,
                              T=4).ok
        return
    verdict = classes("off_by_one", wrt=wrt)
    assert verdict.diagnosis_classes == ("off_by_one",)
    assert "h_t where h_{t-1} belongs" in verdict.diagnosis[0][1]


@pytest.mark.parametrize("wrt", ["W_hh", "W_hy", "b_h"])
def test_sign_flip_is_named(wrt):
    verdict = classes("sign", wrt=wrt)
    assert verdict.diagnosis_classes == ("sign",)


def test_constant_factor_is_named_with_its_value():
    verdict = classes("factor")
    assert verdict.diagnosis_classes == ("constant_factor",)
    assert "2 times the gradient" in verdict.diagnosis[0][1]


@pytest.mark.parametrize("truncate", [2, 3])
def test_truncated_recursion_is_named_with_k(truncate):
    verdict = classes("truncated", T=5, truncate=truncate)
    assert verdict.diagnosis_classes == ("sum_range",)
    assert f"cut after {truncate} steps" in verdict.diagnosis[0][1]


def test_backward_pass_over_the_last_steps_only_is_named():
    verdict = classes("stop_early", wrt="W_xh", T=4, truncate=2)
    assert verdict.diagnosis_classes == ("sum_range",)
    assert "only the last 2 of 4 steps" in verdict.diagnosis[0][1]


def test_every_classic_slip_is_named_in_function_mode():
    named = {c for slip in ("transpose", "off_by_one", "sign", "factor", "truncated")
             for c in classes(slip).diagnosis_classes}
    assert {"transpose", "off_by_one", "sign", "constant_factor", "sum_range"} <= named
    assert named <= set(SLIPS)


def test_the_variants_are_not_vacuous():
    """Mutation: the truth itself is not explained by a slip, and random numbers are not
    explained by any (the relations must be able to fail)."""
    problem = Problem(SPEC, resolve_quantity(SPEC, "W_hh", None), 4)
    assert diagnose(None, problem, problem.truth) == ()
    rng = np.random.default_rng(7)
    noise = [rng.normal(size=problem.shape) for _ in problem.envs]
    assert diagnose(None, problem, noise) == ()
    variants = problem.variants()
    assert {"recursion_transposed:W_hh", "shifted:+1", "truncated:2", "last:1"} <= set(variants)
    exact = variants.pop("exact")
    for kind, values in variants.items():  # every variant differs from the truth
        assert not all(np.allclose(a, b) for a, b in zip(values, exact, strict=True)), kind
