"""Property tests: the engine's gradient equals torch.autograd and finite differences.

Hypothesis draws a spec, concrete sizes, T and a seed; the engine's unrolled
gradient is evaluated in float64 NumPy and compared with torch.autograd
applied to the same forward equations, and (for one random direction) with
central finite differences of the loss.
"""

from __future__ import annotations

import numpy as np
import torch
from conftest import SPEC_COMBOS, combo_spec
from hypothesis import given, settings
from hypothesis import strategies as st

from symrnn import derive_unrolled
from symrnn.checks.evaluate import evaluate, run_adjoints, run_forward
from symrnn.engine.graph import unroll


def _instance(spec, T, seed):
    rng = np.random.default_rng(seed)
    program = unroll(spec, T)
    values = {}
    leaves = {**program.params, **{f"{s}_0": v for s, v in program.initial_states.items()}}
    for sym in leaves.values():
        values[sym] = rng.normal(scale=0.7, size=tuple(int(d) for d in sym.shape))
    for eq in program.equations:
        for sym in eq.rhs.free_symbols:
            if getattr(sym, "name", "")[:2] in ("x_", "y_") and sym not in values:
                shape = tuple(int(d) for d in sym.shape)
                if sym.name.startswith("y_") and spec.loss == "cross_entropy":
                    values[sym] = rng.dirichlet(np.ones(shape[0])).reshape(shape)
                else:
                    values[sym] = rng.normal(size=shape)
    return program, leaves, values


def _loss(program, values, backend):
    env = run_forward(program.equations, dict(values), backend)
    return sum(env[L][0, 0] for L in program.losses), env


@settings(max_examples=60, deadline=None)
@given(
    combo=st.sampled_from(SPEC_COMBOS),
    hidden=st.integers(1, 4),
    inputs=st.integers(1, 3),
    outputs=st.integers(1, 3),
    T=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_engine_gradient_matches_autograd_and_finite_differences(
    combo, hidden, inputs, outputs, T, seed
):
    spec = combo_spec(combo, hidden_size=hidden, input_size=inputs, output_size=outputs)
    program, leaves, values = _instance(spec, T, seed)
    _, env = _loss(program, values, "numpy")
    unrolled = derive_unrolled(spec, T)
    run_adjoints(unrolled.definitions, env, "numpy")
    engine = {name: evaluate(unrolled.gradients[name], env, "numpy") for name in leaves}

    tensors = {k: torch.tensor(v, requires_grad=k in leaves.values()) for k, v in values.items()}
    loss, _ = _loss(program, tensors, "torch")
    loss.backward()
    for name, sym in leaves.items():
        np.testing.assert_allclose(engine[name], tensors[sym].grad.numpy(), rtol=1e-10,
                                   atol=1e-12, err_msg=f"dL/d{name}")

    rng = np.random.default_rng(seed + 1)
    direction = {sym: rng.normal(size=values[sym].shape) for sym in leaves.values()}
    eps = 1e-6

    def shifted(sign):
        moved = dict(values)
        for sym, d in direction.items():
            moved[sym] = values[sym] + sign * eps * d
        return _loss(program, moved, "numpy")[0]

    numeric = (shifted(+1) - shifted(-1)) / (2 * eps)
    analytic = sum(float(np.sum(engine[n] * direction[s])) for n, s in leaves.items())
    assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic))
