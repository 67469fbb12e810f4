"""Matrix expression nodes and builders, on top of SymPy's matrix expressions.

SymPy supplies ``MatrixSymbol``, ``MatMul``, ``MatAdd``, ``Transpose`` and
``HadamardProduct``.  symrnn adds the nodes an RNN needs and SymPy lacks or
cannot differentiate: :class:`Apply` (an elementwise function of a matrix),
:class:`Softmax` (of a column vector), and the per-step losses
:class:`MSELoss` (½‖ŷ − y‖²) and :class:`SoftmaxCrossEntropy` (−yᵀ log
softmax(z), fused so that its adjoint is softmax(z) − y).

Convention: vectors are columns; a per-step quantity at time τ is a
``MatrixSymbol`` named ``base_{τ}`` (``h_{t-1}``, ``x_{3}``, ``delta_{t+1}``),
see :func:`timed` and :func:`split_timed`.

The builders :func:`add`, :func:`matmul`, :func:`hadamard`, :func:`transpose`
and :func:`sub` do the light canonicalisation the derivation needs (drop
zeros and ones, fold double transposes, push transposes into products) and
turn SymPy's shape errors into :class:`~symrnn.errors.ShapeError`.  ``None``
stands for an exact zero whose shape does not matter.
"""

from __future__ import annotations

import re

import sympy
from sympy import Basic, Expr, Integer, MatAdd, MatMul, MatrixExpr, MatrixSymbol, S
from sympy.core.symbol import Str
from sympy.matrices.expressions.hadamard import HadamardProduct
from sympy.matrices.expressions.special import Identity, OneMatrix, ZeroMatrix
from sympy.matrices.expressions.transpose import Transpose

from symrnn.errors import ShapeError
from symrnn.ops import ELEMENTWISE, elementwise

__all__ = [
    "Apply",
    "Softmax",
    "MSELoss",
    "SoftmaxCrossEntropy",
    "timed",
    "at_time",
    "split_timed",
    "format_time",
    "add",
    "sub",
    "matmul",
    "hadamard",
    "transpose",
    "ones_like",
    "apply",
    "derivative_from_output",
    "shape_str",
    "T_SYMBOL",
]

T_SYMBOL = sympy.Symbol("t", integer=True)
_TIMED = re.compile(r"^(?P<base>.+)_\{(?P<time>[^{}]+)\}$")
_TIME = re.compile(r"^(?P<var>[A-Za-z])(?P<offset>[+-]\d+)?$")
"""A symbolic time: a letter with an integer offset (t, t+1, T-1); parsed, never evaluated."""


def format_time(time) -> str:
    """``t+1`` → 't+1', ``3`` → '3' (no spaces, stable)."""
    text = str(time).replace(" ", "")
    if isinstance(time, str) and not (_TIME.match(text) or text.lstrip("-").isdigit()):
        raise ValueError(f"not a time index: {time!r} (expected t, t+1, T-1 or an integer)")
    return text


def timed(base: str, time, rows, cols=1) -> MatrixSymbol:
    """The per-step symbol ``base_{time}`` of the given shape."""
    return MatrixSymbol(f"{base}_{{{format_time(time)}}}", rows, cols)


def split_timed(symbol: MatrixSymbol) -> tuple[str, str] | None:
    """(base, time text) of a per-step symbol, or None for a parameter."""
    match = _TIMED.match(symbol.name)
    return (match["base"], match["time"]) if match else None


def at_time(expr, time):
    """Rename per-step symbols at the generic step t to step ``time`` (t−1 → time−1)."""
    if expr is None:
        return None
    mapping = {}
    for sym in expr.atoms(MatrixSymbol):
        parts = split_timed(sym)
        match = _TIME.match(parts[1]) if parts is not None else None
        if match and match["var"] == "t":
            shifted = sympy.sympify(time) + int(match["offset"] or 0)
            mapping[sym] = timed(parts[0], shifted, *sym.shape)
    return expr.xreplace(mapping)


class Apply(MatrixExpr):
    """An elementwise function of a matrix: ``Apply('tanh', a)`` is tanh∘a."""

    def __new__(cls, op: str | Str, arg: MatrixExpr):
        op = op.name if isinstance(op, Str) else op  # rebuilt by xreplace/func(*args)
        elementwise(op)  # validate the name early
        return Basic.__new__(cls, Str(op), arg)

    @property
    def op(self) -> str:
        return self.args[0].name

    @property
    def arg(self) -> MatrixExpr:
        return self.args[1]

    @property
    def shape(self):
        return self.arg.shape

    def _entry(self, i, j, **kwargs):
        return elementwise(self.op).scalar(self.arg._entry(i, j, **kwargs))

    def _sympystr(self, printer) -> str:
        return f"{self.op}({printer._print(self.arg)})"

    def _latex(self, printer) -> str:
        symbol = elementwise(self.op).latex
        inner = printer._print(self.arg)
        return rf"{symbol}\left({inner}\right)" if symbol else inner


class Softmax(MatrixExpr):
    """softmax(z)_i = e^{z_i} / Σ_j e^{z_j} of a column vector z."""

    def __new__(cls, arg: MatrixExpr):
        if arg.shape[1] != 1:
            raise ShapeError(f"softmax needs a column vector, got shape {shape_str(arg)}")
        return Basic.__new__(cls, arg)

    @property
    def arg(self) -> MatrixExpr:
        return self.args[0]

    @property
    def shape(self):
        return self.arg.shape

    def _sympystr(self, printer) -> str:
        return f"softmax({printer._print(self.arg)})"

    def _latex(self, printer) -> str:
        return rf"\operatorname{{softmax}}\left({printer._print(self.arg)}\right)"


class _Loss(MatrixExpr):
    """A per-step scalar loss (shape 1×1) of a prediction and a target."""

    text_name = ""
    latex_name = ""

    def __new__(cls, prediction: MatrixExpr, target: MatrixExpr):
        if prediction.shape != target.shape:
            raise ShapeError(
                f"{cls.text_name} needs prediction and target of one shape, got "
                f"{shape_str(prediction)} and {shape_str(target)}"
            )
        return Basic.__new__(cls, prediction, target)

    @property
    def prediction(self) -> MatrixExpr:
        return self.args[0]

    @property
    def target(self) -> MatrixExpr:
        return self.args[1]

    @property
    def shape(self):
        return (Integer(1), Integer(1))

    def _sympystr(self, printer) -> str:
        p, y = (printer._print(a) for a in self.args)
        return f"{self.text_name}({p}, {y})"

    def _latex(self, printer) -> str:
        p, y = (printer._print(a) for a in self.args)
        return self.latex_name.format(p=p, y=y)


class MSELoss(_Loss):
    """½ (ŷ − y)ᵀ(ŷ − y)."""

    text_name = "mse"
    latex_name = r"\tfrac{{1}}{{2}}\left\lVert {p} - {y}\right\rVert^{{2}}"


class SoftmaxCrossEntropy(_Loss):
    """−yᵀ log softmax(z), with z the logits (the prediction argument)."""

    text_name = "softmax_cross_entropy"
    latex_name = r"-{y}^{{\top}} \log \operatorname{{softmax}}\left({p}\right)"


# ----------------------------------------------------------------- builders


def shape_str(expr) -> str:
    rows, cols = expr.shape
    return f"({rows}, {cols})"


def _is_zero(expr) -> bool:
    return expr is None or isinstance(expr, ZeroMatrix) or expr == S.Zero


def add(*terms):
    """Sum of matrix terms; zeros (None, ZeroMatrix) are dropped."""
    flat = []
    for term in terms:
        if _is_zero(term):
            continue
        flat.extend(term.args if isinstance(term, MatAdd) else (term,))
    if not flat:
        return None
    if len(flat) == 1:
        return flat[0]
    if len({tuple(t.shape) for t in flat}) > 1:
        shapes = ", ".join(f"{t}: {shape_str(t)}" for t in flat)
        raise ShapeError(f"cannot add terms of different shapes ({shapes})")
    return MatAdd(*flat)


def sub(a, b):
    """a − b."""
    return add(a, matmul(S.NegativeOne, b))


def matmul(*factors):
    """Matrix product; scalars become one coefficient, identities are dropped."""
    coeff = S.One
    mats = []
    for factor in factors:
        if _is_zero(factor):
            return None
        if isinstance(factor, MatMul):
            c, ms = factor.as_coeff_matrices()
            coeff *= c
            mats.extend(ms)
        elif isinstance(factor, MatrixExpr):
            if not isinstance(factor, Identity):
                mats.append(factor)
        else:
            coeff *= sympy.sympify(factor)
    if coeff == 0:
        return None
    if not mats:
        raise ShapeError("a product needs at least one matrix factor")
    for left, right in zip(mats, mats[1:], strict=False):
        if left.shape[1] != right.shape[0]:
            raise ShapeError(
                f"cannot multiply {left} of shape {shape_str(left)} by {right} "
                f"of shape {shape_str(right)}"
            )
    if coeff == 1 and len(mats) == 1:
        return mats[0]
    return MatMul(*([coeff] if coeff != 1 else []), *mats)


def hadamard(a, b):
    """Elementwise product a ⊙ b; a ones matrix is the identity."""
    if _is_zero(a) or _is_zero(b):
        return None
    if a.shape != b.shape:
        raise ShapeError(
            f"cannot take the elementwise product of {a} of shape {shape_str(a)} "
            f"and {b} of shape {shape_str(b)}"
        )
    if isinstance(a, OneMatrix):
        return b
    if isinstance(b, OneMatrix):
        return a
    return HadamardProduct(a, b)


def transpose(a):
    """aᵀ, pushed into sums and products and folded when doubled."""
    if _is_zero(a):
        return None
    if isinstance(a, Transpose):
        return a.arg
    if isinstance(a, MatMul):
        coeff, mats = a.as_coeff_matrices()
        return matmul(coeff, *(transpose(m) for m in reversed(mats)))
    if isinstance(a, MatAdd):
        return add(*(transpose(t) for t in a.args))
    if isinstance(a, HadamardProduct):
        out = transpose(a.args[0])
        for arg in a.args[1:]:
            out = hadamard(out, transpose(arg))
        return out
    if isinstance(a, OneMatrix):
        return OneMatrix(a.shape[1], a.shape[0])
    if isinstance(a, Expr) and not isinstance(a, MatrixExpr):
        return a
    return Transpose(a)


def ones_like(a) -> OneMatrix:
    return OneMatrix(*a.shape)


def apply(op: str, arg):
    """f(arg) entrywise; the identity is not a node."""
    elementwise(op)
    return arg if op == "identity" else Apply(op, arg)


class _MatrixAlgebra:
    """The operation table's derivatives, built as matrix expressions."""

    one = staticmethod(ones_like)
    sub = staticmethod(sub)
    mul = staticmethod(hadamard)
    neg = staticmethod(lambda a: matmul(S.NegativeOne, a))
    apply = staticmethod(apply)


def derivative_from_output(op: str, out):
    """f'(a) as a matrix expression in the stored output ``out`` = f(a); None if 0 a.e."""
    derivative = ELEMENTWISE[op].derivative
    return None if derivative is None else derivative(out, _MatrixAlgebra)
