"""Facts about each elementwise operation, kept together in one table.

For every elementwise function f used by a cell or a head this module holds:
its SymPy scalar definition, its local derivative written in terms of the
stored output (tanh' = 1 − h⊙h, sigmoid' = s⊙(1 − s), relu' = step(h)),
its NumPy and PyTorch spellings, its LaTeX symbol, and γ = sup |f'|, the
constant of Pascanu et al.'s vanishing bound.

Writing the derivative from the output lets backpropagation reuse the
activations stored by the forward pass instead of recomputing f'(a).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy
from sympy import Expr, Function, Heaviside, Max, Rational

from symrnn.errors import SpecError, suggest

__all__ = ["Elementwise", "ELEMENTWISE", "Sigmoid", "Exp", "elementwise"]


class Sigmoid(Function):
    """The logistic function σ(a) = 1/(1 + e^{−a}) as an opaque SymPy function."""

    def fdiff(self, argindex: int = 1) -> Expr:
        s = Sigmoid(self.args[0])
        return s * (1 - s)

    def _latex(self, printer) -> str:
        return rf"\sigma\left({printer._print(self.args[0])}\right)"


class Exp(Function):
    """e^a kept as an atom: SymPy's exp merges powers (exp(a)**2 → exp(2a))."""

    def fdiff(self, argindex: int = 1) -> Expr:
        return Exp(self.args[0])

    def _latex(self, printer) -> str:
        return rf"e^{{{printer._print(self.args[0])}}}"


@dataclass(frozen=True)
class Elementwise:
    """One elementwise function and everything symrnn needs to know about it."""

    name: str
    scalar: Callable[[Expr], Expr]
    derivative_from_output: Callable[[Expr], Expr] | None
    """f'(a) as an entrywise expression in ``out`` = f(a) (None: zero a.e.)."""
    latex: str
    numpy: str
    torch: str
    numpy_impl: Callable[[np.ndarray], np.ndarray]
    gamma: Rational
    derivative_text: str


def _one(out):
    from symrnn.expr import ones_like

    return ones_like(out)


def _tanh_grad(out):
    from symrnn.expr import hadamard, ones_like, sub

    return sub(ones_like(out), hadamard(out, out))


def _sigmoid_grad(out):
    from symrnn.expr import hadamard, ones_like, sub

    return hadamard(out, sub(ones_like(out), out))


def _relu_grad(out):
    from symrnn.expr import Apply

    return Apply("step", out)


def _np_sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * a))


ELEMENTWISE: dict[str, Elementwise] = {
    op.name: op
    for op in (
        Elementwise(
            "tanh", sympy.tanh, _tanh_grad, r"\tanh", "np.tanh({})", "torch.tanh({})",
            np.tanh, Rational(1), "1 - h*h",
        ),
        Elementwise(
            "sigmoid", Sigmoid, _sigmoid_grad, r"\sigma", "_sigmoid({})",
            "torch.sigmoid({})", _np_sigmoid, Rational(1, 4), "s*(1 - s)",
        ),
        Elementwise(
            "relu", lambda a: Max(0, a), _relu_grad, r"\mathrm{ReLU}",
            "np.maximum({}, 0)", "torch.relu({})", lambda a: np.maximum(a, 0),
            Rational(1), "step(h)",
        ),
        Elementwise(
            "identity", lambda a: a, _one, "", "{}", "{}", lambda a: a, Rational(1), "1",
        ),
        Elementwise(
            "step", lambda a: Heaviside(a, 0), None, r"\mathrm{step}",
            "({} > 0)", "({} > 0)", lambda a: (a > 0).astype(np.result_type(a, 1.0)),
            Rational(0), "0",
        ),
    )
}


def elementwise(name: str) -> Elementwise:
    """Look up an elementwise operation by name, with a close-match hint."""
    try:
        return ELEMENTWISE[name]
    except KeyError:
        raise SpecError(
            f"unknown elementwise function {name!r}{suggest(name, ELEMENTWISE)} "
            f"(known: {', '.join(ELEMENTWISE)})"
        ) from None
