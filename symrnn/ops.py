"""The operation table: everything about each elementwise function, in one row.

One :class:`Elementwise` row per function f holds its SymPy scalar definition
(used by the engine's exact evaluator), its derivative written from the stored
output y = f(a) (tanh' = 1 − y⊙y, σ' = y⊙(1 − y), relu' = step(y)), γ = sup|f'|
(the constant of Pascanu et al.'s vanishing bound), its LaTeX operator, and its
NumPy and torch spellings (out of place, in place, and the helper the NumPy
spelling calls).  The spec's list of activations, the rule table, the
evaluators, both code printers, the LaTeX printer and the regimes read this
table; adding an activation is adding a row (see ``softplus``).

The derivative is written once, over an :class:`Algebra` (one, sub, mul,
apply): the engine passes matrix builders, the regimes NumPy, and
:func:`derivative_text` strings.  Writing it from the output lets
backpropagation reuse the activations stored by the forward pass.

This module imports no other symrnn module: it is the vocabulary every stage
shares, upstream of the spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import sympy
from sympy import Expr, Function, Heaviside, Max, Rational

from symrnn.errors import SpecError, suggest

__all__ = ["Algebra", "Elementwise", "ELEMENTWISE", "ACTIVATIONS", "Sigmoid", "Exp",
           "elementwise", "derivative_text",
           "NUMPY_ALGEBRA"]


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


class Algebra(Protocol):
    """What a derivative-from-output needs: 1, −, elementwise ×, negation, another row."""

    def one(self, like: Any) -> Any: ...
    def sub(self, a: Any, b: Any) -> Any: ...
    def mul(self, a: Any, b: Any) -> Any: ...
    def neg(self, a: Any) -> Any: ...
    def apply(self, name: str, a: Any) -> Any: ...


Derivative = Callable[[Any, Algebra], Any]


@dataclass(frozen=True)
class Elementwise:
    """One elementwise function and everything symrnn needs to know about it."""

    name: str
    scalar: Callable[[Expr], Expr]
    """f(a) as a SymPy scalar (the engine's exact evaluator; not the oracle's)."""
    derivative: Derivative | None
    """f'(a) from y = f(a), over an :class:`Algebra`; None: zero almost everywhere."""
    gamma: Rational | float
    latex: str
    numpy: str
    """NumPy template, ``{0}`` the argument."""
    torch: str
    numpy_impl: Callable[[np.ndarray], np.ndarray]
    torch_impl: Callable[[Any], Any]
    """On a tensor (methods only, so this module need not import torch)."""
    numpy_inplace: str | None = None
    torch_inplace: str | None = None
    numpy_helper: str = ""
    """Source of the helper function(s) the NumPy templates call, if any."""
    torch_helper: str = ""
    activation: bool = True
    """Selectable as a hidden activation (step and exp are only derivatives' parts)."""
    numpy_out: str | None = None
    """Writing f({0}) into the existing array {1}, where the library can."""
    torch_out: str | None = None


def _np_sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _np_softplus(a: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, a)


_SIGMOID_HELPER = '''
def _sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _sigmoid_(a):
    a *= 0.5
    np.tanh(a, out=a)
    a += 1.0
    a *= 0.5
    return a
'''

_ROWS = (
    Elementwise(
        "tanh", sympy.tanh, lambda y, m: m.sub(m.one(y), m.mul(y, y)), Rational(1),
        r"\tanh", "np.tanh({0})", "torch.tanh({0})", np.tanh, lambda a: a.tanh(),
        "np.tanh({0}, out={0})", "{0}.tanh_()",
        numpy_out="np.tanh({0}, out={1})", torch_out="torch.tanh({0}, out={1})",
    ),
    Elementwise(
        "relu", lambda a: Max(0, a), lambda y, m: m.apply("step", y), Rational(1),
        r"\mathrm{ReLU}", "np.maximum({0}, 0)", "torch.relu({0})",
        lambda a: np.maximum(a, 0), lambda a: a.relu(),
        "np.maximum({0}, 0, out={0})", "{0}.relu_()",
    ),
    Elementwise(
        "sigmoid", Sigmoid, lambda y, m: m.mul(y, m.sub(m.one(y), y)), Rational(1, 4),
        r"\sigma", "_sigmoid({0})", "torch.sigmoid({0})", _np_sigmoid, lambda a: a.sigmoid(),
        "_sigmoid_({0})", "{0}.sigmoid_()", _SIGMOID_HELPER,
        torch_out="torch.sigmoid({0}, out={1})",
    ),
    Elementwise(
        "identity", lambda a: a, lambda y, m: m.one(y), Rational(1), "", "{0}", "{0}",
        lambda a: a, lambda a: a,
    ),
    Elementwise(
        # softplus(a) = log(1 + e^a); softplus' = σ(a) = 1 − e^{−y}
        "softplus", lambda a: sympy.log(1 + Exp(a)),
        lambda y, m: m.sub(m.one(y), m.apply("exp", m.neg(y))), Rational(1),
        r"\operatorname{softplus}", "np.logaddexp(0.0, {0})",
        "_softplus({0})", _np_softplus, lambda a: a.clamp(min=0) + (-a.abs()).exp().log1p(),
        torch_helper="\n\ndef _softplus(a):\n    return torch.nn.functional.softplus(a)\n",
    ),
    Elementwise(
        "step", lambda a: Heaviside(a, 0), None, Rational(0), r"\mathrm{step}",
        "({0} > 0).astype({0}.dtype)", "({0} > 0).to({0}.dtype)",
        lambda a: (a > 0).astype(np.result_type(a, 1.0)), lambda a: (a > 0).to(a.dtype),
        activation=False,
    ),
    Elementwise(
        "exp", Exp, lambda y, m: y, float("inf"), r"\exp", "np.exp({0})", "torch.exp({0})",
        np.exp, lambda a: a.exp(), activation=False,
        numpy_out="np.exp({0}, out={1})", torch_out="torch.exp({0}, out={1})",
    ),
)

ELEMENTWISE: dict[str, Elementwise] = {row.name: row for row in _ROWS}
ACTIVATIONS: tuple[str, ...] = tuple(r.name for r in _ROWS if r.activation)


def elementwise(name: str) -> Elementwise:
    """Look up an elementwise operation by name, with a close-match hint."""
    try:
        return ELEMENTWISE[name]
    except KeyError:
        raise SpecError(
            f"unknown elementwise function {name!r}{suggest(name, ELEMENTWISE)} "
            f"(known: {', '.join(ELEMENTWISE)})"
        ) from None


class _Text:
    """Strings: the derivative as a reader sees it ("1 - h*h")."""

    @staticmethod
    def one(like):
        return "1"

    @staticmethod
    def sub(a, b):
        return f"({a} - {b})"

    @staticmethod
    def mul(a, b):
        return f"{a}*{b}"

    @staticmethod
    def neg(a):
        return f"-{a}"

    @staticmethod
    def apply(name, a):
        return f"{name}({a})"


class _Numpy:
    """NumPy arrays: the derivative evaluated on stored outputs (regimes)."""

    one = staticmethod(np.ones_like)
    sub = staticmethod(np.subtract)
    mul = staticmethod(np.multiply)
    neg = staticmethod(np.negative)

    @staticmethod
    def apply(name, a):
        return ELEMENTWISE[name].numpy_impl(a)


NUMPY_ALGEBRA = _Numpy


def derivative_text(name: str, output: str = "h") -> str:
    """f'(a) written from the output, e.g. ``1 - h*h`` for tanh."""
    row = elementwise(name)
    if row.derivative is None:
        return "0"
    text = str(row.derivative(output, _Text))
    return text[1:-1] if text.startswith("(") and text.endswith(")") else text
