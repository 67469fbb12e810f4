"""From parsed statements to a :class:`~symrnn.formula.nodes.Formula`.

Statements are ``("eq", lhs, rhs)`` or ``("bare", expr)``.  The last one is the
gradient: ``∂L/∂θ = …`` (any spelling of :func:`claim_of`) or a bare
expression; the ones before it are definitions ``base_{time} = …`` (δ_t, e_t).
``∂`` and ``d``-names may appear only on the left-hand side.
"""

from __future__ import annotations

from symrnn.errors import FormulaError, suggest
from symrnn.formula.nodes import Claim, Definition, Formula, Node, Partial, Prod, Sym, Time

__all__ = ["build_formula", "claim_of", "WORDS"]

WORDS = frozenset({"delta", "yhat", "L"})
"""Multi-letter names that are one symbol (other words are products of letters)."""


def claim_of(lhs) -> Claim | None:
    """∂L_k/∂θ in any of the accepted spellings, or None."""
    if not (isinstance(lhs, Prod) and lhs.op == "div"):
        return None
    num, den = _strip_d(lhs.left), _strip_d(lhs.right)
    if num is None or den is None:
        return None
    if not (isinstance(num, Sym) and num.base == "L"):
        raise FormulaError(f"the left-hand side must differentiate the loss L or L_k, got {num}")
    step = None
    if num.index is not None:
        if not isinstance(num.index, Time) or num.index.var is not None:
            raise FormulaError("the loss term must be L (total) or L_k with a number k, "
                               f"got L_{num.index}")
        step = num.index.offset
    if not isinstance(den, Sym):
        raise FormulaError("the left-hand side must differentiate with respect to a parameter "
                           "such as W, W_hh or h_0")
    index = den.index
    suffix = "" if index is None else f"_{index}"
    return Claim(step, f"{den.base}{suffix}")


def _strip_d(node):
    """``\\partial X`` / ``dX`` / ``d X`` → X, else None."""
    if isinstance(node, Partial):
        return node.arg
    if isinstance(node, Sym) and len(node.base) > 1 and node.base.startswith("d"):
        return Sym(node.base[1:], node.index)
    if isinstance(node, Prod) and node.op == "matmul" and node.left == Sym("d"):
        return node.right
    return None


def _check_plain(node, source: str) -> None:
    """Reject leftovers only meaningful on a left-hand side (∂, d-names)."""
    if isinstance(node, Partial):
        raise FormulaError("\\partial may appear only on the left-hand side, as in "
                           "\\frac{\\partial L}{\\partial W} = ...")
    if isinstance(node, Sym) and len(node.base) > 1 and node.base not in WORDS:
        raise FormulaError(f"unknown name {node.base!r}{suggest(node.base, WORDS)} "
                           "(derivatives are written dL/dW on the left-hand side)")
    for value in getattr(node, "__dict__", {}).values():
        if isinstance(value, (Node, Partial)):
            _check_plain(value, source)


def build_formula(items: list, source: str) -> Formula:
    definitions: list[Definition] = []
    claim, body = None, None
    for n, item in enumerate(items):
        last = n == len(items) - 1
        if item[0] == "bare":
            if not last:
                raise FormulaError("only the last statement may be a bare expression; "
                                   "earlier ones must be definitions such as delta_t = ...")
            body = item[1]
            continue
        _, lhs, rhs = item
        found = claim_of(lhs)
        if found is not None:
            if not last:
                raise FormulaError("the gradient dL/d... must be the last statement; "
                                   "definitions come first")
            claim, body = found, rhs
        elif isinstance(lhs, Sym) and isinstance(lhs.index, Time):
            definitions.append(Definition(lhs.base, lhs.index, rhs))
            if last:
                raise FormulaError("the formula ends with a definition; add the gradient, "
                                   "e.g. dL/dW_hh = sum_t ...")
        else:
            raise FormulaError("a left-hand side must be dL/dθ (\\frac{\\partial L}{\\partial "
                               "W}) or a definition such as \\delta_t")
    for node in [d.rhs for d in definitions] + [body]:
        _check_plain(node, source)
    return Formula(tuple(definitions), claim, body, source)
