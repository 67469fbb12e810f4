"""The rule table: one vector-Jacobian product (VJP) per operation.

Reverse mode needs, for every node ``out = op(children)`` and the adjoint
Ḡ = ∂L/∂out (same shape as ``out``, column-vector convention), the
adjoint of each child.  Each rule is data: an operation key, the formula a
reader sees in a derivation, and a function that builds the children's
adjoints as matrix expressions.

================  =============================================
operation         rule
================  =============================================
MatAdd            Ā_i = Ḡ
MatMul            Ā_i = (A_1⋯A_{i-1})ᵀ Ḡ (A_{i+1}⋯A_n)ᵀ
ScalarMultiple    Ā = c Ḡ
Transpose         Ā = Ḡᵀ
HadamardProduct   Ā_i = Ḡ ⊙ ∏_{j≠i} A_j
f (elementwise)   Ā = Ḡ ⊙ f'(out), f' written from the output
Softmax           z̄ = s ⊙ Ḡ − s (sᵀ Ḡ), s = softmax(z)
MSELoss           ŷ̄ = Ḡ (ŷ − y)
SoftmaxCE         z̄ = Ḡ (softmax(z) − y)
================  =============================================

Targets y are data: no adjoint flows into them.  A node with no rule raises
:class:`~symrnn.errors.MissingRuleError`; add one with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sympy import MatAdd, MatMul
from sympy.matrices.expressions.hadamard import HadamardProduct
from sympy.matrices.expressions.special import Identity, OneMatrix, ZeroMatrix
from sympy.matrices.expressions.transpose import Transpose

from symrnn.engine.expr import (
    Apply,
    MSELoss,
    Softmax,
    SoftmaxCrossEntropy,
    derivative_from_output,
    hadamard,
    matmul,
    sub,
    transpose,
)
from symrnn.errors import MissingRuleError
from symrnn.ops import ELEMENTWISE, derivative_text

__all__ = ["Rule", "RULES", "register", "op_key", "rule_for"]

VJP = Callable[[object, object, object], list[tuple[object, object]]]


@dataclass(frozen=True)
class Rule:
    op: str
    formula: str
    """The VJP as a reader sees it (plain text)."""
    latex: str
    vjp: VJP
    """(node, adjoint of node, expression for the node's value) → [(child, adjoint)]."""


RULES: dict[str, Rule] = {}


def register(op: str, formula: str, latex: str) -> Callable[[VJP], VJP]:
    """Decorator: register the VJP of ``op`` in the rule table."""

    def deco(fn: VJP) -> VJP:
        RULES[op] = Rule(op, formula, latex, fn)
        return fn

    return deco


def op_key(node) -> str:
    """The rule-table key of a node: the class name, or the function name."""
    if isinstance(node, Apply):
        return node.op
    if isinstance(node, MatMul):
        coeff, mats = node.as_coeff_matrices()
        if len(mats) == 1 and coeff != 1:
            return "ScalarMultiple"
    if isinstance(node, (OneMatrix, ZeroMatrix, Identity)):
        return "Constant"
    return type(node).__name__


def rule_for(node) -> Rule:
    key = op_key(node)
    try:
        return RULES[key]
    except KeyError:
        raise MissingRuleError(
            f"no derivative rule for operation {key!r} (in {node}); register one with "
            f"symrnn.rules.register({key!r}, formula, latex)(vjp)"
        ) from None


@register("Constant", "no adjoint", r"\text{constant}")
def _constant(node, g, out):
    return []


@register("MatAdd", "A_i_bar = G", r"\bar A_i = \bar G")
def _matadd(node: MatAdd, g, out):
    return [(arg, g) for arg in node.args]


@register("MatMul", "A_i_bar = (A_1...A_{i-1}).T @ G @ (A_{i+1}...A_n).T",
          r"\bar A_i = (A_1\cdots A_{i-1})^{\top}\,\bar G\,(A_{i+1}\cdots A_n)^{\top}")
def _matmul(node: MatMul, g, out):
    coeff, mats = node.as_coeff_matrices()
    result = []
    for i, child in enumerate(mats):
        left = transpose(matmul(*mats[:i])) if i else None
        right = transpose(matmul(*mats[i + 1:])) if i + 1 < len(mats) else None
        factors = [f for f in (left, g, right) if f is not None]
        result.append((child, matmul(coeff, *factors)))
    return result


@register("ScalarMultiple", "A_bar = c G", r"\bar A = c\,\bar G")
def _scalar_multiple(node: MatMul, g, out):
    coeff, (child,) = node.as_coeff_matrices()
    return [(child, matmul(coeff, g))]


@register("Transpose", "A_bar = G.T", r"\bar A = \bar G^{\top}")
def _transpose(node: Transpose, g, out):
    return [(node.arg, transpose(g))]


@register("HadamardProduct", "A_i_bar = G * prod_{j!=i} A_j",
          r"\bar A_i = \bar G \odot \textstyle\prod_{j\ne i} A_j")
def _hadamard(node: HadamardProduct, g, out):
    result = []
    for i, child in enumerate(node.args):
        adj = g
        for j, other in enumerate(node.args):
            if j != i:
                adj = hadamard(adj, other)
        result.append((child, adj))
    return result


def _elementwise_rule(name: str) -> VJP:
    def vjp(node: Apply, g, out):
        slope = derivative_from_output(name, out)
        return [] if slope is None else [(node.arg, hadamard(g, slope))]

    return vjp


for _name in ELEMENTWISE:
    register(
        _name,
        f"A_bar = G * f'(A), f'(A) = {derivative_text(_name)} from the output h = f(A)",
        rf"\bar A = \bar G \odot {_name}'",
    )(_elementwise_rule(_name))


@register("Softmax", "z_bar = s * G - s @ (s.T @ G), s = softmax(z)",
          r"\bar z = s \odot \bar G - s\,(s^{\top}\bar G)")
def _softmax(node: Softmax, g, out):
    s = out
    return [(node.arg, sub(hadamard(s, g), matmul(s, transpose(s), g)))]


@register("MSELoss", "yhat_bar = G (yhat - y)", r"\bar{\hat y} = \bar G\,(\hat y - y)")
def _mse(node: MSELoss, g, out):
    return [(node.prediction, matmul(g, sub(node.prediction, node.target)))]


@register("SoftmaxCrossEntropy", "z_bar = G (softmax(z) - y)",
          r"\bar z = \bar G\,(\operatorname{softmax}(z) - y)")
def _softmax_ce(node: SoftmaxCrossEntropy, g, out):
    return [(node.prediction, matmul(g, sub(Softmax(node.prediction), node.target)))]
