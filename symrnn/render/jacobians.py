"""Jacobian forms of the engine's BPTT gradients: step Jacobians of every cell, and the
Jacobian-product expansion of ∂L_T/∂W_hh for one-state cells whose carry is one product.

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

For any cell, :func:`step_jacobians` reads the blocks ∂s_t/∂s'_{t-1} (s, s' the states:
h, and c for LSTM, each block holding the other states of step t−1 fixed) off the engine's
carry: the carry of s' is Σ_s (∂s_{t+1}/∂s'_t)ᵀ δ^s_{t+1}, linear in the adjoints, and
:func:`coefficient` takes the matrix in front of each δ^s.  :func:`within_step_jacobians`
does the same for a state read by another state of the same step (∂h_t/∂c_t for LSTM),
and :func:`direct_part` keeps the weight-free terms of a block (diag(f_t) for the LSTM
cell state, diag(u_t) for GRU): the path along which the gradient is a product of
gate values only.
"""

from __future__ import annotations

from dataclasses import dataclass

from sympy import MatAdd, MatMul, MatrixSymbol
from sympy.matrices.expressions.diagonal import DiagMatrix
from sympy.matrices.expressions.hadamard import HadamardProduct
from sympy.matrices.expressions.special import Identity
from sympy.matrices.expressions.transpose import Transpose

from symrnn.engine.derive import (
    Backprop,
    Block,
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
    "expandable", "coefficient", "jacobian_transpose", "step_jacobians", "within_step_jacobians",
    "direct_part",
]

_ADJOINT_BASES = ("delta", "e", r"\tilde{\delta}")
"""Bases of the named adjoints (δ_t, δ^{s}_t, e_t; δ̃ in the truncated-BPTT section)."""


class Diag(DiagMatrix):
    """diag(v) of a column vector v, printed as in the textbooks."""

    def _latex(self, printer) -> str:
        return rf"\operatorname{{diag}}\left({printer._print(self.args[0])}\right)"

    def _sympystr(self, printer) -> str:
        return f"diag({printer._print(self.args[0])})"


def _is_adjoint(symbol: MatrixSymbol) -> bool:
    parts = split_timed(symbol)
    return parts is not None and parts[0].split("^")[0] in _ADJOINT_BASES


def _reads_adjoint(expr) -> bool:
    return any(_is_adjoint(a) for a in expr.atoms(MatrixSymbol))


def _is_local(expr) -> bool:
    """True when ``expr`` reads forward per-step values only (f'_j, a gate): no adjoint and
    no parameter."""
    atoms = expr.atoms(MatrixSymbol)
    return bool(atoms) and all(split_timed(a) is not None and not _is_adjoint(a) for a in atoms)


def _split_hadamard(args) -> tuple[list, list]:
    """(factors to put in diag(·), the rest): the rest is the one factor that reads an
    adjoint, or else (fully inlined) every factor that reads a parameter."""
    with_adjoint = [a for a in args if _reads_adjoint(a)]
    if len(with_adjoint) == 1:
        return [a for a in args if a is not with_adjoint[0]], with_adjoint
    return [a for a in args if _is_local(a)], [a for a in args if not _is_local(a)]


def to_diag_form(expr):
    """Rewrite ``v ⊙ f'`` as ``diag(f') v`` wherever f' reads no adjoint; flatten products."""
    if expr is None:
        return None
    if isinstance(expr, HadamardProduct):
        local, other = _split_hadamard(expr.args)
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


def _expansion_pieces(spec: Spec, param: str):
    """(summand split at δ_t, carry split at δ_{t+1}) when the expansion applies, else None."""
    net = network(spec)
    if len(net.states) != 1 or param not in net.params:
        return None
    rec = derive_recurrence(spec.replace(topology="many_to_one"))
    t = T_SYMBOL
    summand = _split_at(to_diag_form(rec.gradients[param]), net.adjoint_symbol("h", t))
    carry = _split_at(to_diag_form(rec.carry["h"]), net.adjoint_symbol("h", t + 1))
    return None if summand is None or carry is None else (summand, carry)


def expandable(spec: Spec, param: str = "W_hh") -> bool:
    """Whether ∂L_T/∂param expands as Σ_k D_k ∏ J_jᵀ …: one state, and its carry and the
    summand of ``param`` are single products through the adjoint (Elman; not gated cells,
    whose carry is a sum over gates)."""
    return _expansion_pieces(spec, param) is not None


def expand_last_loss(spec: Spec, T: int = 3, param: str = "W_hh") -> Expansion:
    """Expand ∂L_T/∂θ (loss at step T only) as a sum over k of Jacobian products."""
    pieces = _expansion_pieces(spec, param)
    if pieces is None:
        raise SpecError(f"the Jacobian expansion of dL/d{param} needs a one-state cell whose "
                        f"carry is one product through the adjoint (elman), got cell "
                        f"{spec.cell!r}")
    summand, carry = pieces
    last = spec.replace(topology="many_to_one")
    rec = derive_recurrence(last)
    u = derive_unrolled(last, T)
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


# ------------------------------------------------------------ step Jacobians, every cell


def _reads(expr, var) -> bool:
    return var in expr.atoms(MatrixSymbol)


def _merge_diags(terms: list):
    """c_1 diag(a) + c_2 diag(b) → diag(c_1 a + c_2 b) when every term is a (scaled) Diag."""
    if len(terms) < 2:
        return add(*terms)
    scaled = [term.as_coeff_matrices() if isinstance(term, MatMul) else (1, [term])
              for term in terms]
    if not all(len(mats) == 1 and isinstance(mats[0], Diag) for _, mats in scaled):
        return add(*terms)
    return Diag(add(*(matmul(coeff, mats[0].args[0]) for coeff, mats in scaled)))


def _linear_error(expr, var) -> SpecError:
    return SpecError(f"cannot read a Jacobian off {expr}: it is not a product ending in, or "
                     f"an elementwise product with, {var}")


def coefficient(expr, var):
    """The matrix M with expr = M var + (terms without var), for expr linear in var.

    ``a ⊙ v`` gives diag(a); ``A v`` gives A; None when ``expr`` does not read var.
    """
    if expr is None or not _reads(expr, var):
        return None
    if expr == var:
        return Identity(var.shape[0])
    if isinstance(expr, MatAdd):
        terms = [m for m in (coefficient(a, var) for a in expr.args) if m is not None]
        return _merge_diags(terms)
    if isinstance(expr, HadamardProduct):
        inner = [i for i, a in enumerate(expr.args) if _reads(a, var)]
        if len(inner) != 1:
            raise _linear_error(expr, var)
        others = [a for i, a in enumerate(expr.args) if i != inner[0]]
        diag = others[0]
        for other in others[1:]:
            diag = hadamard(diag, other)
        return matmul(Diag(diag), coefficient(expr.args[inner[0]], var))
    if isinstance(expr, MatMul):
        coeff, mats = expr.as_coeff_matrices()
        if any(_reads(m, var) for m in mats[:-1]):
            raise _linear_error(expr, var)
        return matmul(coeff, *mats[:-1], coefficient(mats[-1], var))
    raise _linear_error(expr, var)


def jacobian_transpose(expr):
    """Mᵀ for a sum of products of matrices and diag(·) factors (diag(v)ᵀ = diag(v))."""
    if expr is None or isinstance(expr, (Diag, Identity)):
        return expr
    if isinstance(expr, MatAdd):
        return add(*(jacobian_transpose(a) for a in expr.args))
    if isinstance(expr, MatMul):
        coeff, mats = expr.as_coeff_matrices()
        return matmul(coeff, *(jacobian_transpose(m) for m in reversed(mats)))
    return transpose(expr)


def step_jacobians(spec: Spec) -> dict[tuple[str, str], object]:
    """(s, s') → ∂s_t/∂s'_{t-1} at the generic step t (None where s_t does not read s'_{t-1}).

    Read off the engine's carry: carry[s'] = Σ_s (∂s_{t+1}/∂s'_t)ᵀ δ^s_{t+1}.
    """
    net = network(spec)
    rec = derive_recurrence(spec)
    out = {}
    for s in net.states:
        delta = net.adjoint_symbol(s, T_SYMBOL + 1)
        for prev in net.states:
            block = jacobian_transpose(coefficient(rec.carry[prev], delta))
            out[(s, prev)] = at_time(block, T_SYMBOL - 1)
    return out


def within_step_jacobians(spec: Spec) -> dict[tuple[str, str], object]:
    """(s, s') → ∂s_t/∂s'_t for states of the same step that read each other (h_t reads c_t
    in LSTM), from a reverse pass over one step seeded at s_t alone; empty for one state."""
    net = network(spec)
    now = net.state_symbols(T_SYMBOL)
    step = net.step_equations(T_SYMBOL, net.state_symbols(T_SYMBOL - 1), head=False)
    out = {}
    for s in net.states:
        delta = net.adjoint_symbol(s, T_SYMBOL)
        engine = Backprop({now[s]: delta}).run([Block(step)])
        for other in net.states:
            block = coefficient(engine.adjoint(now[other]), delta) if other != s else None
            if block is not None:
                out[(s, other)] = jacobian_transpose(block)
    return out


def direct_part(block, params) -> object:
    """The terms of a Jacobian block that read no parameter (diag(f_t), diag(u_t)), or None."""
    if block is None:
        return None
    terms = block.args if isinstance(block, MatAdd) else (block,)
    names = set(params)
    return add(*(t for t in terms
                 if not any(a.name in names for a in t.atoms(MatrixSymbol))))
