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

__all__ = ["compare_symbolically", "inline", "inlined_size", "MAX_OPS", "MAX_NODES"]

MAX_OPS = 400
"""Skip the exact comparison when an inlined side has more operations than this."""
MAX_NODES = 20 * MAX_OPS
"""Skip before inlining when the inlined tree would have more nodes than this."""


def inlined_size(expr, definitions, limit: int = MAX_NODES) -> int:
    """Nodes of ``expr`` with the named adjoints inlined, counted on the shared DAG.

    Inlining δ_t into δ_{t-1} … shares subtrees, so the inlined *tree* can be
    exponentially large (a gated cell) or deeper than Python's recursion limit
    (long T); this counts it without building it.  Counts above ``limit`` are
    reported as ``limit + 1``.
    """
    named: dict = {}

    def size(e) -> int:
        if e in named:
            return named[e]
        if not e.args:
            return 1
        n = min(limit + 1, 1 + sum(size(a) for a in e.args))
        named[e] = n  # memo: a shared subtree (x ⊙ x) is counted once per use, visited once
        return n

    for name, value in definitions:
        named[name] = 0 if value is None else size(value)
    return 0 if expr is None else size(expr)


def inline(expr, definitions):
    """``expr`` with every named adjoint substituted (None if a zero one is used)."""
    resolved: dict = {}
    for name, value in definitions:
        resolved[name] = None if value is None else value.xreplace(resolved)
    zeros = {k for k, v in resolved.items() if v is None}
    if expr is None or zeros & expr.atoms(MatrixSymbol):
        return None
    return expr.xreplace({k: v for k, v in resolved.items() if v is not None})


def compare_symbolically(user, truth, unrolled, budget=None) -> str:
    """'identical', 'different' or 'skipped (…)' (also when ``budget`` runs out)."""
    if budget is not None and budget.exceeded:
        return f"skipped ({budget.reason})"
    reuse = {eq.rhs: eq.lhs for eq in unrolled.program.equations if eq.block != "loss"}
    sides = []
    for side in (user, truth):
        if inlined_size(side, unrolled.definitions) > MAX_NODES:
            return f"skipped (more than {MAX_OPS} operations)"
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
    if budget is not None and budget.exceeded:
        return f"skipped ({budget.reason})"
    try:
        a, b = (evaluate(side, env, "sympy") for side in sides)
    except Exception as err:  # noqa: BLE001 - an opaque node is a skip, not a crash
        return f"skipped ({type(err).__name__})"
    if a.shape != b.shape:
        return "different"
    for x, y in zip(a, b, strict=True):
        if budget is not None and budget.exceeded:
            return f"skipped ({budget.reason})"
        if sympy.expand(x - y) != 0:
            return "different"
    return "identical"
