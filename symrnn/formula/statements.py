"""From parsed statements to a :class:`~symrnn.formula.nodes.Formula`.

Statements are ``("eq", lhs, rhs)``, ``("let", lhs, rhs)`` or ``("bare", expr)``.
The last one is the claim: the gradient ``∂L/∂θ = …`` (any spelling of
:func:`claim_of`, ``\\nabla_W L`` too), a claim about state Jacobians or
adjoints (``∂h_t/∂h_{t-1} = …``, ``\\prod_{k=j+1}^{t} ∂h_k/∂h_{k-1} = …``,
``∂L/∂h_t = …``; kept as :attr:`Formula.lhs`) or a bare expression; the ones
before it are definitions ``base_{time} = …`` (δ_t, e_t, δ^{f}_t), ``let NAME_t =
…`` (any word NAME: the way to name a quantity the grammar does not know), and
an optional loss declaration ``L = \\sum_t L_t`` or ``L = \\frac{1}{T} \\sum_t L_t``
(:attr:`Formula.loss_time`, "sum" or "mean").

A quotient of differentials, ``\\frac{\\partial X}{\\partial Y}``, ``\\partial X /
\\partial Y`` or ``dX/dY``, becomes a :class:`Derivative` wherever it appears (also as
the last factor of a product: ``W^T \\partial L / \\partial h_t``); other leftovers of
``∂`` and ``d``-names are errors.
"""

from __future__ import annotations

import dataclasses

from symrnn.errors import FormulaError, suggest
from symrnn.formula.nodes import (
    Big,
    Claim,
    Definition,
    Derivative,
    Formula,
    Node,
    Num,
    Partial,
    Prod,
    Sym,
    Time,
)

__all__ = ["build_formula", "claim_of", "declare_time", "WORDS", "LOSS_TIMES"]

LOSS_TIMES = ("sum", "mean")
"""L = Σ_t L_t (the engine's) or L = (1/T) Σ_t L_t."""

WORDS = frozenset({"delta", "yhat", "L"})
"""Multi-letter names that are one symbol (other words are products of letters)."""


def claim_of(lhs) -> Claim | None:
    """∂L_k/∂θ in any of the accepted spellings, or None."""
    if isinstance(lhs, Prod) and lhs.op == "div":
        num, den = _strip_d(lhs.left), _strip_d(lhs.right)
    elif isinstance(lhs, Derivative):
        num, den = lhs.num, lhs.den
    else:
        return None
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


def _strip_d(node, words=frozenset()):
    """``\\partial X`` / ``dX`` / ``d X`` → X, else None."""
    if isinstance(node, Partial):
        return node.arg
    if isinstance(node, Sym) and len(node.base) > 1 and node.base.startswith("d") and \
            node.base not in WORDS | words and not node.base.startswith("delta"):
        return Sym(node.base[1:], node.index)
    if isinstance(node, Prod) and node.op == "matmul" and node.left == Sym("d"):
        return node.right
    return None


def _check_plain(node, words: frozenset) -> None:
    """Reject leftovers of ∂ and d-names that are not a quotient of differentials."""
    for sub in _every(node):
        if isinstance(sub, Partial):
            raise FormulaError("\\partial needs a quotient, as in \\frac{\\partial L}"
                               "{\\partial W} or \\frac{\\partial h_t}{\\partial h_{t-1}}")
        if isinstance(sub, Derivative) and not (isinstance(sub.num, Sym) and
                                                isinstance(sub.den, Sym)):
            raise FormulaError("cannot read a derivative of an expression: expected dL/dh_t, "
                               "dL/dW or dh_t/dh_j (a symbol over a symbol)")
        if isinstance(sub, Sym) and len(sub.base) > 1 and sub.base not in WORDS | words \
                and not sub.base.startswith("delta^"):
            raise FormulaError(f"unknown name {sub.base!r}{suggest(sub.base, WORDS)} "
                               "(derivatives are written dL/dW; new quantities are "
                               "defined with let NAME_t = ...)")


def _every(node):
    """``node`` and every node below it, ∂ leftovers (:class:`Partial`) included."""
    stack = [node]
    while stack:
        item = stack.pop()
        yield item
        stack.extend(v for f in dataclasses.fields(item)
                     if isinstance(v := getattr(item, f.name), (Node, Partial)))


def _as_derivative(node, words: frozenset):
    """``∂X/∂Y`` (also as the last factor of a product) → a Derivative, else None."""
    if not (isinstance(node, Prod) and node.op == "div"):
        return None
    den = _strip_d(node.right, words)
    if den is None:
        return None
    num = _strip_d(node.left, words)
    if num is not None:
        return Derivative(num, den)
    left = node.left
    if isinstance(left, Prod) and left.op in ("matmul", "hadamard"):
        inner = _as_derivative(Prod("div", left.right, node.right), words)
        if inner is not None:
            return Prod(left.op, left.left, inner)
    return None


def derivatives(node, words: frozenset = frozenset()):
    """``node`` with every quotient of differentials made a :class:`Derivative`."""
    if dataclasses.is_dataclass(node) and isinstance(node, (Node, Partial)):
        changes = {f.name: derivatives(v, words) for f in dataclasses.fields(node)
                   if isinstance(v := getattr(node, f.name), (Node, Partial))}
        if changes:
            node = dataclasses.replace(node, **changes)
    return _as_derivative(node, words) or node


def _is_gradient(lhs: Derivative) -> bool:
    """∂L/∂θ for a parameter θ or an initial state (h_0): not an adjoint or a Jacobian."""
    num, den = lhs.num, lhs.den
    if not (isinstance(num, Sym) and num.base == "L" and isinstance(den, Sym)):
        return False
    time = den.index
    return not isinstance(time, Time) or den.base == "b" or (time.var is None and
                                                            time.offset == 0)


def _is_jacobian_claim(lhs) -> bool:
    """A left-hand side made of derivatives of states (∂h_t/∂h_j, ∏_k ∂h_k/∂h_{k-1}, ∂L/∂h_t)."""
    if isinstance(lhs, Derivative):
        return not _is_gradient(lhs)
    return isinstance(lhs, Big) and lhs.kind == "prod" and isinstance(lhs.body, Derivative) \
        and not _is_gradient(lhs.body)


def declared_loss(rhs) -> str:
    """'sum' for Σ_t L_t, 'mean' for (1/T) Σ_t L_t (also Σ_t L_t / T); else FormulaError."""
    scaled = isinstance(rhs, Prod) and rhs.op == "matmul" and \
        rhs.left == Prod("div", Num(1), Sym("T"))
    total = rhs.right if scaled else rhs
    if isinstance(total, Big) and total.kind == "sum" and total.lo == Time(None, 1) and \
            total.hi == Time("T"):
        term = total.body
        if not scaled and isinstance(term, Prod) and term.op == "div" and term.right == Sym("T"):
            scaled, term = True, term.left
        if term == Sym("L", total.var):
            return "mean" if scaled else "sum"
    raise FormulaError("a loss declaration must read L = \\sum_{t=1}^{T} L_t or "
                       "L = \\frac{1}{T} \\sum_{t=1}^{T} L_t")


def declare_time(formula: Formula, time: str | None) -> tuple[Formula, list[str]]:
    """The formula with its loss over time settled: ``time`` (check_formula's keyword) or
    the declaration in the formula, default "sum"; notes saying which."""
    if time is not None and time not in LOSS_TIMES:
        raise FormulaError(f"unknown time convention {time!r}{suggest(time, LOSS_TIMES)} "
                           f"(allowed: {', '.join(LOSS_TIMES)})")
    written = formula.loss_time
    if time is not None and written is not None and time != written:
        raise FormulaError(f"the formula declares L as the {written} over time, but "
                           f"time={time!r} was asked")
    chosen = time or written or "sum"
    if chosen == "mean" and formula.claim is not None and formula.claim.loss_step is not None:
        raise FormulaError("a mean over time concerns the total loss L, not one term "
                           f"L_{formula.claim.loss_step}")
    notes = ["L = (1/T) sum_t L_t (mean over time): dL/d... and the formula are both the mean's; "
             "delta_t and e_t keep their meaning for sum_t L_t"] if chosen == "mean" else []
    return dataclasses.replace(formula, loss_time=chosen), notes


def _statement(item, words: frozenset, last: bool, out: dict) -> None:
    """Sort one statement into definitions, the loss declaration or the claim."""
    if item[0] == "bare":
        if not last:
            raise FormulaError("only the last statement may be a bare expression; "
                               "earlier ones must be definitions such as delta_t = ...")
        out["body"] = derivatives(item[1], words)
        return
    kind, lhs, rhs = item[0], derivatives(item[1], words), derivatives(item[2], words)
    found = claim_of(lhs) if kind == "eq" and isinstance(lhs, Derivative) and \
        _is_gradient(lhs) else None
    if kind == "eq" and (found is not None or _is_jacobian_claim(lhs)):
        if not last:
            raise FormulaError("the claim (dL/d... or dh_t/dh_{t-1} = ...) must be the last "
                               "statement; definitions come first")
        out["claim"], out["lhs"] = found, None if found is not None else lhs
        out["body"] = rhs
        return
    if kind == "eq" and lhs == Sym("L"):
        out["loss_time"] = declared_loss(rhs)
    elif isinstance(lhs, Sym) and (isinstance(lhs.index, Time) or kind == "let" and
                                   lhs.index is None):
        out["definitions"].append(Definition(lhs.base, lhs.index, rhs))
    elif kind == "let":
        raise FormulaError("let defines a name with an optional time index: let NAME_t = ... "
                           "or let NAME = ...")
    else:
        raise FormulaError("a left-hand side must be dL/dθ (\\frac{\\partial L}{\\partial "
                           "W}), a Jacobian dh_t/dh_{t-1} or a definition such as \\delta_t")
    if last:
        raise FormulaError("the formula ends with a definition; add the gradient, "
                           "e.g. dL/dW_hh = sum_t ...")


def build_formula(items: list, source: str) -> Formula:
    words = frozenset(item[1].base for item in items
                      if item[0] == "let" and isinstance(item[1], Sym))
    out: dict = {"definitions": [], "claim": None, "lhs": None, "body": None,
                 "loss_time": None}
    for n, item in enumerate(items):
        _statement(item, words, n == len(items) - 1, out)
    for node in [d.rhs for d in out["definitions"]] + [out["body"], out["lhs"]]:
        if node is not None:
            _check_plain(node, words)
    return Formula(tuple(out["definitions"]), out["claim"], out["body"], source,
                   lhs=out["lhs"], loss_time=out["loss_time"])
