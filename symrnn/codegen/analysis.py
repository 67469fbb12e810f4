"""Matrix-level passes: what the derivation says, arranged for batched code.

Everything the generated code computes comes from symrnn's derivation:
the forward step equations of :func:`symrnn.graph.step_equations` and the
rolled recurrence of :func:`symrnn.derive.derive` (output error e_t, the
adjoint recurrence δ_t = local_t + carry_t, the per-step parameter
summands, ∂L/∂h_0).  Four matrix-level passes shape it before any code is
built, each a named function here:

* :func:`split_recurrent` (hoisting) — a sum's terms that do not read the
  recurrence (W_xh x_t + b_h; W_hyᵀ e_t) are computed for every step in one
  product over the stacked time axis; only the rest stays in the time loop.
* :func:`share_across_time` (CSE over time) — the largest sub-expression
  shared by the carry (shifted to step t) and the parameter summands, e.g.
  g_t = δ_t ⊙ (1 − h_t ⊙ h_t), is named once and stored for every t; its
  factors free of δ (the activation derivative from the stored outputs)
  are hoisted out of the loop.
* :func:`stack_gradients` — Σ_t u_t v_tᵀ over steps and batch becomes one
  product of stacked arrays, R(u).T @ R(v).
* :func:`stored_outputs` — the cache keeps exactly the forward quantities the
  backward expressions read (outputs h_t, never pre-activations a_t).

Array conventions of the generated code: inputs are batch-first (B, T, ·);
internal buffers are time-major (T, B, ·) so that one step is a contiguous
(B, ·) slice; ``HS[t]`` holds h_t for t = 0..T; loop variables run over the
derivation's time t = 1..T.
"""

from __future__ import annotations

import sympy
from sympy import MatAdd, MatrixSymbol

from symrnn.codegen.translate import CodegenError, outer_sum, timed_bases, timed_symbols
from symrnn.engine.derive import Recurrence
from symrnn.engine.expr import T_SYMBOL, at_time, timed
from symrnn.engine.graph import network

__all__ = ["split_recurrent", "share_across_time", "substitute_shared", "stack_gradients",
           "input_adjoint",
           "stored_outputs", "CACHE_NAMES"]

t_ = T_SYMBOL

CACHE_NAMES = {"h": "HS", "x": "x_all", "y": "y_all", "z": "z", "yhat": "yhat"}
"""Forward quantities the backward may read, and their names in the cache."""


def idx(base: str, k: int) -> str:
    return base if k == 0 else f"{base} + {k}" if k > 0 else f"{base} - {-k}"


def has_delta(expr) -> bool:
    return any(b.startswith("delta") or b == "g" for b, _ in timed_symbols(expr))


def split_recurrent(expr, base: str, k: int) -> tuple[object, object]:
    """(terms of a sum reading ``base`` at offset k, the other terms) — hoisting."""
    terms = expr.args if isinstance(expr, MatAdd) else (expr,)
    inside = [a for a in terms if (base, k) in timed_symbols(a)]
    outside = [a for a in terms if (base, k) not in timed_symbols(a)]
    def join(ts):
        return (None if not ts else ts[0] if len(ts) == 1 else MatAdd(*ts))
    return join(inside), join(outside)


def _subexpressions(expr) -> set:
    return {e for e in sympy.preorder_traversal(expr) if not isinstance(e, MatrixSymbol)}


def share_across_time(rec: Recurrence, cell_params: list[str]):
    """The shared δ-expression g_t of the carry and the cell summands, or None."""
    shifted = at_time(rec.carry["h"], t_ - 1)
    common = _subexpressions(shifted)
    for name in cell_params:
        common &= _subexpressions(rec.gradients[name])
    common = [e for e in common if getattr(e, "shape", (0, 0))[1] == 1 and has_delta(e)]
    if not common:
        return None
    return max(common, key=lambda e: (sympy.count_ops(e), str(e)))


def substitute_shared(expr, shared, g_sym_at):
    """Replace shared (at step t) and its shifts t±1 by the symbol g at that step."""
    if expr is None or shared is None:
        return expr
    mapping = {at_time(shared, t_ + k): g_sym_at(k) for k in (-1, 0, 1)}
    mapping[at_time(shared, 1)] = timed("g", 1, shared.shape[0])
    return expr.xreplace(mapping)


def input_adjoint(spec, rows_h) -> object:
    """∂L/∂x_t in terms of δ_t: the engine's reverse pass over one cell step."""
    from symrnn.engine.derive import Backprop, Block

    step = network(spec).step_equations(t_, {"h": timed("h", t_ - 1, rows_h)}, head=False)
    engine = Backprop({timed("h", t_, rows_h): timed("delta", t_, rows_h)}).run([Block(step)])
    return engine.gradient(timed("x", t_, spec.input_size))


def stack_gradients(rec: Recurrence, names: list[str], env_all, env_loss, params):
    """∂L/∂θ = Σ_t summand as one product over the stacked steps, per parameter."""
    out = {}
    for name in names:
        env = env_loss if name in ("W_hy", "b_y") else env_all
        out[name] = outer_sum(rec.gradients[name], env, params)
    return out


def stored_outputs(exprs) -> list[str]:
    """Bases of the forward quantities that the backward expressions read."""
    bases = set()
    for expr in exprs:
        if expr is not None:
            bases |= timed_bases(expr)
    unknown = bases - set(CACHE_NAMES) - {"e", "delta", "g"}
    if unknown:
        raise CodegenError(f"the backward pass reads {sorted(unknown)}, which no buffer holds")
    return [b for b in CACHE_NAMES if b in bases]


