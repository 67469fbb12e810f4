"""Jacobian-product form of the engine's BPTT gradients (Elman cells).

The engine writes the backward pass with Hadamard products, e.g. the carry
δ_t = W_hhᵀ (δ_{t+1} ⊙ f'_{t+1}).  The textbook writes the same thing with
Jacobians: a ⊙ v = diag(a) v, so J_jᵀ = W_hhᵀ diag(f'_j) and

    ∂L_T/∂W_hh = Σ_{k=1}^{T} D_k (∏_{j=k+1}^{T} J_jᵀ) ∂L_T/∂h_T h_{k-1}ᵀ,
    D_j = diag(f'(a_j)),  J_j = ∂h_j/∂h_{j-1} = D_j W_hh.

:func:`to_diag_form` is that rewrite, applied to engine expressions only.
:func:`expand_last_loss` builds the sum above from the pieces of the rolled
recurrence (the summand's D_k, the carry's J_jᵀ, the head's ∂L_T/∂h_T) and
pairs each term k with the k-th term that the unrolled engine derives for
the loss at step T alone; ``Term.matches`` says whether they are the same
product, factor by factor.  Nothing here is typed in: a wrong rule in
:mod:`symrnn.engine.rules` changes both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

from sympy import MatAdd, MatMul, MatrixSymbol
from sympy.matrices.expressions.diagonal import DiagMatrix
from sympy.matrices.expressions.hadamard import HadamardProduct
from sympy.matrices.expressions.transpose import Transpose

from symrnn.engine.derive import (
    Recurrence,
    Unrolled,
    adjoint_symbol,
    derive_recurrence,
    derive_unrolled,
)
from symrnn.engine.expr import T_SYMBOL, add, at_time, hadamard, matmul, split_timed, transpose
from symrnn.engine.graph import network
from symrnn.errors import SpecError
from symrnn.spec import Spec

__all__ = [
    "Diag", "Term", "Expansion", "to_diag_form", "factors", "expand_last_loss", "jacobian_factors",
]

_STATE_BASES = ("h",)


class Diag(DiagMatrix):
    """diag(v) of a column vector v, printed as in the textbooks."""

    def _latex(self, printer) -> str:
        return rf"\operatorname{{diag}}\left({printer._print(self.args[0])}\right)"

    def _sympystr(self, printer) -> str:
        return f"diag({printer._print(self.args[0])})"


def _is_local(expr) -> bool:
    """True when ``expr`` reads forward states only (an activation derivative f'_j)."""
    atoms = expr.atoms(MatrixSymbol)
    return bool(atoms) and all(
        (parts := split_timed(a)) is not None and parts[0] in _STATE_BASES for a in atoms
    )


def to_diag_form(expr):
    """Rewrite ``v ⊙ f'`` as ``diag(f') v`` wherever f' reads states only; flatten products."""
    if expr is None:
        return None
    if isinstance(expr, HadamardProduct):
        local = [a for a in expr.args if _is_local(a)]
        other = [a for a in expr.args if not _is_local(a)]
        if len(other) == 1 and local:
            diag = local[0]
            for more in local[1:]:
                diag = hadamard(diag, more)
            return matmul(Diag(diag), to_diag_form(other[0]))
        out = to_diag_form(expr.args[0])
        for arg in expr.args[1:]:
            out = hadamard(out, to_diag_form(arg))
        return out
    if isinstance(expr, MatMul):
        return matmul(*(to_diag_form(a) for a in expr.args))
    if isinstance(expr, MatAdd):
        return add(*(to_diag_form(a) for a in expr.args))
    if isinstance(expr, Transpose):
        return transpose(to_diag_form(expr.arg))
    return expr


def factors(expr) -> tuple:
    """The matrix factors of a product (coefficient first when it is not 1)."""
    if isinstance(expr, MatMul):
        coeff, mats = expr.as_coeff_matrices()
        return ((coeff,) if coeff != 1 else ()) + tuple(mats)
    return (expr,)


def _split_at(expr, symbol) -> tuple[tuple, tuple] | None:
    """(factors left of ``symbol``, factors right of it) in a product, or None."""
    fs = factors(expr)
    if symbol not in fs or fs.count(symbol) != 1:
        return None
    i = fs.index(symbol)
    return fs[:i], fs[i + 1:]


@dataclass(frozen=True)
class Term:
    """Term k of ∂L_T/∂θ: the engine's term and the Jacobian-product form."""

    k: int
    engine: object
    """The unrolled engine's k-th term, with δ_k named."""
    engine_inline: object
    """The same term with every named adjoint substituted (diag form)."""
    left: tuple
    """D_k (the summand's factors left of δ_k)."""
    jacobians: tuple[tuple[int, tuple], ...]
    """(j, factors of J_jᵀ) for j = k+1..T, in product order."""
    seed: tuple
    """∂L_T/∂h_T factors, with the output error e_T named."""
    right: tuple
    """h_{k-1}ᵀ (the summand's factors right of δ_k)."""
    error: tuple
    """(e_T, its expression), substituted by :attr:`product`."""

    @property
    def named_product(self):
        """The Jacobian-product form as one flat product, e_T kept as a name."""
        jac = [f for _, fs in self.jacobians for f in fs]
        return matmul(*self.left, *jac, *self.seed, *self.right)

    @property
    def product(self):
        """The Jacobian-product form with nothing named (comparable to the engine's term)."""
        symbol, expr = self.error
        return to_diag_form(self.named_product.xreplace({symbol: expr}))

    @property
    def matches(self) -> bool:
        """True when the Jacobian form is, factor by factor, the engine's term."""
        return factors(self.product) == factors(self.engine_inline)


@dataclass(frozen=True)
class Expansion:
    """∂L_T/∂θ for the loss at step T alone, expanded through h_T → … → h_1."""

    spec: Spec
    T: int
    param: str
    recurrence: Recurrence
    unrolled: Unrolled
    terms: tuple[Term, ...]
    """k = T, T−1, …, 1 (the order the engine computes them)."""
    jacobian_t: tuple
    """Factors of J_{t+1}ᵀ at the generic step (from the carry)."""
    local_derivative: object
    """f'_t, the vector inside D_t (None when f' = 1)."""

    @property
    def matches(self) -> bool:
        return all(term.matches for term in self.terms)


def _engine_terms(u: Unrolled, spec: Spec, param: str, T: int) -> dict[int, object]:
    grad = u.gradients[param]
    terms = grad.args if isinstance(grad, MatAdd) else (grad,)
    out: dict[int, object] = {}
    for term in terms:
        atoms = term.atoms(MatrixSymbol)
        ks = [k for k in range(1, T + 1) if adjoint_symbol(spec, "h", k) in atoms]
        if len(ks) != 1 or ks[0] in out:
            raise SpecError(f"expected one δ_k in each term of dL/d{param}, got {term}")
        out[ks[0]] = term
    return out


def expand_last_loss(spec: Spec, T: int = 3, param: str = "W_hh") -> Expansion:
    """Expand ∂L_T/∂θ (loss at step T only) as a sum over k of Jacobian products."""
    if len(network(spec).states) != 1:
        raise SpecError(f"the Jacobian expansion needs a one-state cell (elman), got {spec.cell!r}")
    last = spec.replace(topology="many_to_one")
    rec = derive_recurrence(last)
    u = derive_unrolled(last, T)
    t = T_SYMBOL
    delta_t = adjoint_symbol(last, "h", t)
    delta_next = adjoint_symbol(last, "h", t + 1)
    summand = _split_at(to_diag_form(rec.gradients[param]), delta_t)
    carry = _split_at(to_diag_form(rec.carry["h"]), delta_next)
    if summand is None or carry is None:
        raise SpecError(f"expected dL/d{param} and the carry to be products through δ_t, got "
                        f"{rec.gradients[param]} and {rec.carry['h']}")
    error_sym, error = rec.output_error
    seed = factors(to_diag_form(at_time(rec.local["h"], T)))
    error_T = (at_time(error_sym, T), at_time(error, T))
    engine = _engine_terms(u, last, param, T)
    terms = []
    for k in range(T, 0, -1):
        jac = tuple((j, tuple(at_time(f, j - 1) for f in carry[0])) for j in range(k + 1, T + 1))
        terms.append(Term(
            k=k,
            engine=engine[k],
            engine_inline=to_diag_form(u.inline(engine[k])),
            left=tuple(at_time(f, k) for f in summand[0]),
            jacobians=jac,
            seed=seed,
            error=error_T,
            right=tuple(at_time(f, k) for f in summand[1]),
        ))
    diags = [f for f in summand[0] if isinstance(f, Diag)]
    return Expansion(
        spec=last, T=T, param=param, recurrence=rec, unrolled=u, terms=tuple(terms),
        jacobian_t=carry[0], local_derivative=diags[0].args[0] if diags else None,
    )


def jacobian_factors(expansion: Expansion, j) -> tuple:
    """Factors of J_j = ∂h_j/∂h_{j-1}: the carry's J_jᵀ transposed (diag(·) is symmetric)."""
    out = []
    for f in reversed(expansion.jacobian_t):
        f = at_time(f, j - 1)
        out.append(f if isinstance(f, Diag) else transpose(f))
    return tuple(out)
