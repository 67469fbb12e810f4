"""Evaluate matrix expressions on concrete values: exact (SymPy) or numeric (NumPy).

``evaluate(expr, env)`` computes a matrix expression given values for its
symbols: ``env`` maps ``MatrixSymbol`` → value (a SymPy ``Matrix`` for the
``"sympy"`` backend, a 2-D ``ndarray`` for ``"numpy"``, a float64 tensor for
``"torch"``, whose autograd then gives an independent reference derivative).  One method per node
type, one scalar table per backend (from :mod:`symrnn.ops`).

``run_forward(program, env)`` fills ``env`` with every left-hand side of a
program in order; ``run_adjoints`` then evaluates named adjoints (δ_t, e_t),
so gradient expressions from :mod:`symrnn.engine.derive` can be evaluated.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sympy
from sympy import MatAdd, MatMul, MatrixSymbol
from sympy.matrices.expressions.hadamard import HadamardProduct
from sympy.matrices.expressions.special import Identity, OneMatrix, ZeroMatrix
from sympy.matrices.expressions.transpose import Transpose

from symrnn.engine.expr import Apply, MSELoss, Softmax, SoftmaxCrossEntropy
from symrnn.errors import MissingRuleError
from symrnn.ops import ELEMENTWISE, Exp

__all__ = ["evaluate", "run_forward", "run_adjoints"]


class _Sympy:
    @staticmethod
    def const(kind, shape):
        rows, cols = (int(d) for d in shape)
        if kind == "one":
            return sympy.ones(rows, cols)
        if kind == "zero":
            return sympy.zeros(rows, cols)
        return sympy.eye(rows)

    @staticmethod
    def scalar(value):
        return sympy.Matrix([[value]]) if not isinstance(value, sympy.MatrixBase) else value

    matmul = staticmethod(lambda a, b: a * b)
    hadamard = staticmethod(lambda a, b: a.multiply_elementwise(b))
    transpose = staticmethod(lambda a: a.T)

    @staticmethod
    def apply(op, a):
        return a.applyfunc(ELEMENTWISE[op].scalar)

    @staticmethod
    def softmax(z):
        e = z.applyfunc(Exp)
        return e / sum(e)

    @staticmethod
    def mse(p, y):
        d = p - y
        return sympy.Matrix([[sympy.Rational(1, 2) * (d.T * d)[0, 0]]])

    @staticmethod
    def softmax_ce(z, y):
        lse = sympy.log(sum(z.applyfunc(Exp)))
        return sympy.Matrix([[-sum(y[i] * (z[i] - lse) for i in range(z.rows))]])


class _Numpy:
    @staticmethod
    def const(kind, shape):
        rows, cols = (int(d) for d in shape)
        if kind == "one":
            return np.ones((rows, cols))
        if kind == "zero":
            return np.zeros((rows, cols))
        return np.eye(rows)

    @staticmethod
    def scalar(value):
        return np.asarray(value, dtype=float).reshape(1, 1) if np.ndim(value) < 2 else value

    matmul = staticmethod(lambda a, b: a @ b)
    hadamard = staticmethod(lambda a, b: a * b)
    transpose = staticmethod(lambda a: a.T)

    @staticmethod
    def apply(op, a):
        return ELEMENTWISE[op].numpy_impl(a)

    @staticmethod
    def softmax(z):
        e = np.exp(z - z.max(axis=0, keepdims=True))
        return e / e.sum(axis=0, keepdims=True)

    @staticmethod
    def mse(p, y):
        return np.array([[0.5 * float(np.sum((p - y) ** 2))]])

    @staticmethod
    def softmax_ce(z, y):
        m = z.max()
        lse = m + np.log(np.sum(np.exp(z - m)))
        return np.array([[-float(np.sum(y * (z - lse)))]])


class _Torch(_Numpy):
    """float64 tensors, for torch.autograd as a reference derivative."""

    @staticmethod
    def const(kind, shape):
        import torch

        rows, cols = (int(d) for d in shape)
        if kind == "one":
            return torch.ones((rows, cols), dtype=torch.float64)
        if kind == "zero":
            return torch.zeros((rows, cols), dtype=torch.float64)
        return torch.eye(rows, dtype=torch.float64)

    @staticmethod
    def apply(op, a):
        return ELEMENTWISE[op].torch_impl(a)

    @staticmethod
    def softmax(z):
        return z.softmax(dim=0)

    @staticmethod
    def mse(p, y):
        return (0.5 * ((p - y) ** 2).sum()).reshape(1, 1)

    @staticmethod
    def softmax_ce(z, y):
        return (-(y * z.log_softmax(dim=0)).sum()).reshape(1, 1)


_BACKENDS = {"sympy": _Sympy, "numpy": _Numpy, "torch": _Torch}


def evaluate(expr, env: dict, backend: str = "sympy", known: dict | None = None):
    """The value of ``expr`` with symbols looked up in ``env``.

    ``known`` maps sub-expressions to values to use instead of computing them
    (e.g. a chosen symbolic form of step(h_t)).
    """
    return _eval(expr, env, _BACKENDS[backend], dict(known or {}))


def _eval(expr, env, be, memo):
    if expr in memo:
        return memo[expr]
    if isinstance(expr, MatrixSymbol):
        try:
            value = env[expr]
        except KeyError:
            raise KeyError(f"no value for symbol {expr.name} of shape {expr.shape}") from None
    elif isinstance(expr, MatAdd):
        parts = [_eval(a, env, be, memo) for a in expr.args]
        value = parts[0]
        for part in parts[1:]:
            value = value + part
    elif isinstance(expr, MatMul):
        coeff, mats = expr.as_coeff_matrices()
        value = _eval(mats[0], env, be, memo)
        for m in mats[1:]:
            value = be.matmul(value, _eval(m, env, be, memo))
        if coeff != 1:
            value = value * (coeff if be is _Sympy else float(coeff))
    elif isinstance(expr, HadamardProduct):
        parts = [_eval(a, env, be, memo) for a in expr.args]
        value = parts[0]
        for part in parts[1:]:
            value = be.hadamard(value, part)
    elif isinstance(expr, Transpose):
        value = be.transpose(_eval(expr.arg, env, be, memo))
    elif isinstance(expr, Apply):
        value = be.apply(expr.op, _eval(expr.arg, env, be, memo))
    elif isinstance(expr, Softmax):
        value = be.softmax(_eval(expr.arg, env, be, memo))
    elif isinstance(expr, MSELoss):
        value = be.mse(*(_eval(a, env, be, memo) for a in expr.args))
    elif isinstance(expr, SoftmaxCrossEntropy):
        value = be.softmax_ce(*(_eval(a, env, be, memo) for a in expr.args))
    elif isinstance(expr, OneMatrix):
        value = be.const("one", expr.shape)
    elif isinstance(expr, ZeroMatrix):
        value = be.const("zero", expr.shape)
    elif isinstance(expr, Identity):
        value = be.const("eye", expr.shape)
    else:
        raise MissingRuleError(f"cannot evaluate operation {type(expr).__name__} ({expr})")
    memo[expr] = value
    return value


def run_forward(equations: Sequence, env: dict, backend: str = "sympy") -> dict:
    """Evaluate each equation in order, storing lhs values in ``env`` (returned)."""
    for eq in equations:
        env[eq.lhs] = evaluate(eq.rhs, env, backend)
    return env


def run_adjoints(
    definitions: Sequence, env: dict, backend: str = "sympy", known: dict | None = None
) -> dict:
    """Evaluate named adjoints (in definition order); a zero adjoint stays absent."""
    for name, value in definitions:
        if value is not None:
            env[name] = evaluate(value, env, backend, known)
    return env
