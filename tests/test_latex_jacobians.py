"""∂L_3/∂W_hh as a sum over k of Jacobian products, against the engine and numbers.

Oracles: (1) the textbook factor list D_k (W_hhᵀ D_j)_{j>k} W_hyᵀ (ŷ_3 − y_3) h_{k-1}ᵀ
typed here from the definition of the Elman cell; (2) the engine's own three
terms; (3) central finite differences of L_3 with respect to W_hh (float64).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sympy import MatrixSymbol

from symrnn.checks.evaluate import evaluate, run_forward
from symrnn.engine.derive import derive_unrolled
from symrnn.engine.expr import Apply, at_time, hadamard, ones_like, sub, timed, transpose
from symrnn.render.jacobians import Diag, expand_last_loss, factors, to_diag_form
from symrnn.spec import DEFAULT_SPEC

H = DEFAULT_SPEC.hidden_size


def _h(t):
    return timed("h", t, H)


def _textbook_factors(spec, k, T=3):
    """D_k ∏_{j=k+1}^{T} (W_hhᵀ D_j) W_hyᵀ (ŷ_T − y_T) h_{k-1}ᵀ as a flat factor list."""
    W = MatrixSymbol("W_hh", H, H)
    V = MatrixSymbol("W_hy", spec.output_size, H)
    err = sub(timed("yhat", T, spec.output_size), timed("y", T, spec.output_size))

    def D(j):
        return [Diag(sub(ones_like(_h(j)), hadamard(_h(j), _h(j))))]

    out = D(k)
    for j in range(k + 1, T + 1):
        out += [transpose(W)] + D(j)
    return tuple(out + [transpose(V), err, transpose(_h(k - 1))])


def test_three_terms_in_engine_order_each_matching():
    e = expand_last_loss(DEFAULT_SPEC)
    assert [t.k for t in e.terms] == [3, 2, 1]
    assert e.matches
    for term in e.terms:
        assert factors(term.product) == factors(term.engine_inline)
        assert factors(term.product) == _textbook_factors(DEFAULT_SPEC, term.k)
        assert [j for j, _ in term.jacobians] == list(range(term.k + 1, 4))


def test_engine_sum_is_exactly_the_three_terms():
    e = expand_last_loss(DEFAULT_SPEC)
    grad = e.unrolled.gradients["W_hh"]
    assert set(grad.args) == {t.engine for t in e.terms}


def test_mismatch_is_detected():
    term = expand_last_loss(DEFAULT_SPEC).terms[1]
    broken = dataclasses.replace(term, engine_inline=term.engine_inline.T.T * 2)
    assert term.matches and not broken.matches


def _numeric_product(fs, env):
    out = None
    for f in fs:
        if isinstance(f, Diag):
            value = np.diag(evaluate(f.args[0], env, "numpy").ravel())
        else:
            value = evaluate(f, env, "numpy")
        out = value if out is None else out @ value
    return out


def _env(spec, seed, W=None):
    rng = np.random.default_rng(seed)
    program = derive_unrolled(spec, 3).program
    env = {}
    for sym in list(program.params.values()) + list(program.initial_states.values()):
        env[sym] = rng.normal(scale=0.8, size=tuple(int(d) for d in sym.shape))
    for eq in program.equations:
        for sym in eq.rhs.atoms(MatrixSymbol):
            if sym.name.startswith(("x_", "y_")) and sym not in env:
                env[sym] = rng.normal(size=tuple(int(d) for d in sym.shape))
    if W is not None:
        env[program.params["W_hh"]] = W
    return program, run_forward(program.equations, env, "numpy")


@pytest.mark.parametrize("activation", ["tanh", "identity", "relu", "sigmoid"])
def test_jacobian_sum_equals_finite_differences(activation):
    spec = DEFAULT_SPEC.replace(activation=activation, topology="many_to_one")
    e = expand_last_loss(spec)
    program, env = _env(spec, seed=1)
    analytic = sum(_numeric_product(factors(t.product), env) for t in e.terms)
    W_sym = program.params["W_hh"]
    W0 = env[W_sym]
    numeric = np.zeros_like(W0)
    eps = 1e-6
    for i in range(H):
        for j in range(H):
            vals = []
            for sign in (1, -1):
                W = W0.copy()
                W[i, j] += sign * eps
                _, env2 = _env(spec, seed=1, W=W)
                vals.append(float(env2[program.losses[-1]][0, 0]))
            numeric[i, j] = (vals[0] - vals[1]) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_to_diag_form_only_moves_state_factors():
    d = timed("delta", 3, H)
    f = sub(ones_like(_h(3)), hadamard(_h(3), _h(3)))
    assert factors(to_diag_form(hadamard(d, f))) == (Diag(f), d)
    both = hadamard(d, timed("e", 3, H))
    assert to_diag_form(both) == both


def test_apply_survives_rebuild_by_xreplace():
    # Apply(op, arg) stores op as a Str; rebuilding it (xreplace, at_time) must work.
    step = Apply("step", timed("h", "t", H))
    moved = at_time(step, 3)
    assert moved == Apply("step", _h(3))
    assert moved.op == "step"
