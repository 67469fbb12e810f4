"""Cells and output heads, written in a small cell language.

A cell is a definition, not machinery: a list of parameters with their
shapes and a ``step`` function that states one time step as SymPy matrix
expressions through a :class:`StepBuilder`.  ``b.let(name, rhs)`` adds the
equation ``name_τ = rhs`` and returns the symbol ``name_τ``; the engine in
:mod:`symrnn.engine.derive` differentiates whatever a step says, so adding LSTM or
GRU needs no change there.

Sizes: H hidden, D input, O output.  Parameter names (and the seed notes'
aliases for the Elman cell, accepted when reading and printing):

=========  =====  ==========================================
name       alias  role
=========  =====  ==========================================
``W_hh``   W      recurrent weights, H×H
``W_xh``   U      input weights, H×D
``b_h``    b      hidden bias, H×1
``W_hy``   V      output weights, O×H
``b_y``    c      output bias, O×1
``h_0``           initial state, H×1
=========  =====  ==========================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sympy import MatrixExpr, MatrixSymbol, Symbol

from symrnn.engine.expr import (
    MSELoss,
    Softmax,
    SoftmaxCrossEntropy,
    add,
    apply,
    hadamard,
    matmul,
    ones_like,
    sub,
    timed,
)
from symrnn.errors import SpecError, suggest
from symrnn.spec import Spec

__all__ = [
    "ALIASES",
    "CELLS",
    "CellDef",
    "ParamDef",
    "StepBuilder",
    "Sizes",
    "cell_for",
    "head_params",
]

ALIASES = {"W": "W_hh", "U": "W_xh", "b": "b_h", "V": "W_hy", "c": "b_y"}
"""The seed notes' single-letter names for the Elman parameters."""


@dataclass(frozen=True)
class Sizes:
    """Concrete (int) or symbolic sizes keyed by 'H', 'D', 'O'."""

    H: object
    D: object
    O: object  # noqa: E741

    @classmethod
    def of(cls, spec: Spec) -> Sizes:
        def size(value):
            return value if isinstance(value, int) else Symbol(value, integer=True, positive=True)

        return cls(size(spec.hidden_size), size(spec.input_size), size(spec.output_size))

    def dims(self, keys: tuple[str, str]) -> tuple:
        return tuple(1 if k == "1" else getattr(self, k) for k in keys)


@dataclass(frozen=True)
class ParamDef:
    name: str
    shape: tuple[str, str]
    is_bias: bool = False

    def symbol(self, sizes: Sizes) -> MatrixSymbol:
        return MatrixSymbol(self.name, *sizes.dims(self.shape))


@dataclass
class StepBuilder:
    """Collects the equations of one time step τ."""

    time: object
    prev: dict[str, MatrixSymbol]
    x: MatrixSymbol
    params: dict[str, MatrixSymbol]
    activation: str
    equations: list[tuple[MatrixSymbol, MatrixExpr]] = field(default_factory=list)

    def let(self, name: str, rhs: MatrixExpr) -> MatrixSymbol:
        lhs = timed(name, self.time, *rhs.shape)
        self.equations.append((lhs, rhs))
        return lhs

    def p(self, name: str):
        """A parameter symbol; None for a bias when the spec has no biases."""
        return self.params.get(name)

    def affine(self, gate: str, h_in, x_in=None):
        """W_h{gate} h + W_x{gate} x + b_{gate} (the usual pre-activation)."""
        return add(
            matmul(self.p(f"W_h{gate}"), h_in),
            matmul(self.p(f"W_x{gate}"), self.x if x_in is None else x_in),
            self.p(f"b_{gate}"),
        )

    @staticmethod
    def f(op: str, arg: MatrixExpr) -> MatrixExpr:
        return apply(op, arg)


@dataclass(frozen=True)
class CellDef:
    name: str
    states: tuple[str, ...]
    """State names; the first one (h) is what the output head reads."""
    params: tuple[ParamDef, ...]
    step: Callable[[StepBuilder], None]


def _gate_params(gates: str) -> tuple[ParamDef, ...]:
    out: list[ParamDef] = []
    for g in gates:
        out += [ParamDef(f"W_h{g}", ("H", "H")), ParamDef(f"W_x{g}", ("H", "D")),
                ParamDef(f"b_{g}", ("H", "1"), is_bias=True)]
    return tuple(out)


def _elman_step(b: StepBuilder) -> None:
    a = b.let("a", b.affine("h", b.prev["h"]))
    b.let("h", b.f(b.activation, a))


def _lstm_step(b: StepBuilder) -> None:
    h, c = b.prev["h"], b.prev["c"]
    i = b.let("i", b.f("sigmoid", b.affine("i", h)))
    f = b.let("f", b.f("sigmoid", b.affine("f", h)))
    o = b.let("o", b.f("sigmoid", b.affine("o", h)))
    g = b.let("g", b.f("tanh", b.affine("g", h)))
    c_new = b.let("c", add(hadamard(f, c), hadamard(i, g)))
    b.let("h", hadamard(o, b.f("tanh", c_new)))


def _gru_step(b: StepBuilder) -> None:
    h = b.prev["h"]
    r = b.let("r", b.f("sigmoid", b.affine("r", h)))
    u = b.let("u", b.f("sigmoid", b.affine("u", h)))
    recurrent = add(matmul(b.p("W_hn"), h), b.p("b_hn"))
    n = b.let("n", b.f("tanh", add(matmul(b.p("W_xn"), b.x), b.p("b_n"), hadamard(r, recurrent))))
    b.let("h", add(hadamard(sub(ones_like(u), u), n), hadamard(u, h)))


CELLS: dict[str, CellDef] = {
    "elman": CellDef(
        "elman", ("h",),
        (ParamDef("W_hh", ("H", "H")), ParamDef("W_xh", ("H", "D")),
         ParamDef("b_h", ("H", "1"), is_bias=True)),
        _elman_step,
    ),
    "lstm": CellDef(
        "lstm", ("h", "c"), _gate_params("ifog"), _lstm_step,
    ),
    "gru": CellDef(
        "gru", ("h",),
        _gate_params("ru") + (ParamDef("W_hn", ("H", "H")), ParamDef("W_xn", ("H", "D")),
                              ParamDef("b_n", ("H", "1"), is_bias=True),
                              ParamDef("b_hn", ("H", "1"), is_bias=True)),
        _gru_step,
    ),
}

HEAD_PARAMS = (ParamDef("W_hy", ("O", "H")), ParamDef("b_y", ("O", "1"), is_bias=True))


def cell_for(spec: Spec) -> CellDef:
    try:
        return CELLS[spec.cell]
    except KeyError:
        raise SpecError(f"unknown cell {spec.cell!r}{suggest(spec.cell, CELLS)}") from None


def head_params() -> tuple[ParamDef, ...]:
    return HEAD_PARAMS


def head_step(spec: Spec, b: StepBuilder, h: MatrixSymbol, y: MatrixSymbol) -> MatrixSymbol:
    """z_τ = W_hy h_τ + b_y;  ŷ_τ = g(z_τ);  L_τ = loss.  Returns L_τ."""
    z = b.let("z", add(matmul(b.p("W_hy"), h), b.p("b_y")))
    if spec.head == "softmax":
        yhat = b.let("yhat", Softmax(z))
    else:
        yhat = b.let("yhat", b.f(spec.head, z))
    if spec.loss == "cross_entropy":
        return b.let("L", SoftmaxCrossEntropy(z, y))
    return b.let("L", MSELoss(yhat, y))
