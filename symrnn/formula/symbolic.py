"""Exact comparison of a lowered formula with the engine's gradient.

Both sides are written over the stored forward values: every recomputed
forward quantity is replaced by its symbol (tanh(a_t) → h_t, softmax(z_t) →
ŷ_t, W_hh h_{t-1} + W_xh x_t + b_h → a_t, as the engine itself does), the
engine's named adjoints δ_t, e_t are inlined, and each remaining matrix
symbol becomes an explicit matrix of independent scalar symbols.  The two
sides are then expanded entry by entry with SymPy: identical polynomials
mean the formula equals the derivation for every value of the stored
quantities, not just on random instances.  Large problems are skipped.
"""

from __future__ import annotations

import sympy
from sympy import MatrixSymbol

from symrnn.checks.evaluate import evaluate

__all__ = ["compare_symbolically", "inline", "MAX_OPS"]

MAX_OPS = 400
"""Skip the exact comparison when an inlined side has more operations than this."""


def inline(expr, definitions):
    """``expr`` with every named adjoint substituted (None if a zero one is used)."""
    resolved: dict = {}
    for name, value in definitions:
        resolved[name] = None if value is None else value.xreplace(resolved)
    zeros = {k for k, v in resolved.items() if v is None}
    if expr is None or zeros & expr.atoms(MatrixSymbol):
        return None
    return expr.xreplace({k: v for k, v in resolved.items() if v is not None})


def compare_symbolically(user, truth, unrolled) -> str:
    """'identical', 'different' or 'skipped (…)'."""
    reuse = {eq.rhs: eq.lhs for eq in unrolled.program.equations if eq.block != "loss"}
    sides = []
    for side in (user, truth):
        inlined = inline(side, unrolled.definitions)
        if inlined is None:
            return "skipped (a side is exactly zero)"
        inlined = inlined.xreplace(reuse)
        if sympy.count_ops(inlined) > MAX_OPS:
            return f"skipped (more than {MAX_OPS} operations)"
        sides.append(inlined)
    env = {}
    for sym in sides[0].atoms(MatrixSymbol) | sides[1].atoms(MatrixSymbol):
        rows, cols = (int(d) for d in sym.shape)
        env[sym] = sympy.Matrix(rows, cols, lambda i, j, s=sym: sympy.Symbol(f"{s.name}[{i},{j}]"))
    try:
        a, b = (evaluate(side, env, "sympy") for side in sides)
    except Exception as err:  # noqa: BLE001 - an opaque node is a skip, not a crash
        return f"skipped ({type(err).__name__})"
    if a.shape != b.shape:
        return "different"
    for x, y in zip(a, b, strict=True):
        if sympy.expand(x - y) != 0:
            return "different"
    return "identical"
