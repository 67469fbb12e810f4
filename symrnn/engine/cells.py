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

Gated cells name their parameters per gate g: W_h{g} (H×H), W_x{g} (H×D) and b_{g}
(one bias) or b_x{g} and b_h{g} (two biases, ``layout = "torch"``).  Their stacked
torch names (:attr:`CellDef.stacks`), the one table that maps the two namings:

===========  =====================================  ==============================
torch        LSTM (i, f, g, o)                      GRU, GRU v1 (r, z=u, n)
===========  =====================================  ==============================
weight_ih    [W_xi; W_xf; W_xg; W_xo]  (4H×D)       [W_xr; W_xu; W_xn]  (3H×D)
weight_hh    [W_hi; W_hf; W_hg; W_ho]  (4H×H)       [W_hr; W_hu; W_hn]  (3H×H)
bias_ih      [b_xi; b_xf; b_xg; b_xo]  (b_i, ...)   [b_xr; b_xu; b_xn]  (b_r, b_u, b_n)
bias_hh      [b_hi; b_hf; b_hg; b_ho]  (zeros)      [b_hr; b_hu; b_hn]  (0; 0; b_hn)
===========  =====================================  ==============================

(in parentheses: the one-bias names).  Elman: weight_ih = W_xh, weight_hh = W_hh,
bias_ih = b_xh (b_h), bias_hh = b_hh.
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
    x: MatrixSymbol | None
    """The step's input (None: a zero input, as one_to_many's x_t after t = 1)."""
    params: dict[str, MatrixSymbol]
    activation: str
    equations: list[tuple[MatrixSymbol, MatrixExpr]] = field(default_factory=list)
    suffix: str = ""
    """Appended to every name the step defines (``_l1`` for the second layer of a stack)."""
    more_inputs: tuple[tuple[MatrixSymbol, str], ...] = ()
    """Further column blocks of a concatenated input [x; v]: (v, tag), read by the input
    weights named with ``tag`` (W_xi_rev for a bidirectional layer below's h_reverse)."""

    def let(self, name: str, rhs: MatrixExpr) -> MatrixSymbol:
        lhs = timed(name + self.suffix, self.time, *rhs.shape)
        self.equations.append((lhs, rhs))
        return lhs

    def p(self, name: str):
        """A parameter symbol; None for a bias when the spec has no biases."""
        return self.params.get(name)

    def affine(self, gate: str, h_in):
        """W_h{gate} h + W_x{gate} x + the gate's bias(es) (the usual pre-activation)."""
        return add(
            matmul(self.p(f"W_h{gate}"), h_in),
            self.input_product(f"W_x{gate}"),
            self.input_bias(gate),
            self.p(f"b_h{gate}") if f"b_x{gate}" in self.params else None,
        )

    def input_product(self, weight: str):
        """W x for an input weight W: Σ over the input's column blocks (W x + W_rev v)."""
        return add(matmul(self.p(weight), self.x),
                   *(matmul(self.p(weight + tag), v) for v, tag in self.more_inputs))

    def input_bias(self, gate: str):
        """b_{gate} (one bias per gate) or b_x{gate} (two); None without biases."""
        return self.params.get(f"b_{gate}", self.params.get(f"b_x{gate}"))

    @staticmethod
    def f(op: str, arg: MatrixExpr) -> MatrixExpr:
        return apply(op, arg)


@dataclass(frozen=True)
class CellDef:
    name: str
    states: tuple[str, ...]
    """State names; the first one (h) is what the output head reads."""
    param_defs: Callable[[bool], tuple[ParamDef, ...]]
    """two_biases → the cell's parameters (one bias per gate, or an input and a recurrent one)."""
    step: Callable[[StepBuilder], None]
    stacks: Callable[[bool], dict[str, tuple[str | None, ...]]]
    """two_biases → torch's stacked tensors and the per-gate parameters in them (None: a
    zero block, e.g. bias_hh of the one-bias GRU, whose only recurrent bias is b_hn)."""

    def params(self, two_biases: bool = False) -> tuple[ParamDef, ...]:
        return self.param_defs(two_biases)


def _gate_params(gates: str, recurrent_bias: str = "") -> Callable[[bool], tuple[ParamDef, ...]]:
    """W_h{g}, W_x{g} and the bias(es) of each gate, in ``gates`` order.

    One bias per gate (``two_biases=False``): b_{g}, plus b_h{g} for the gates in
    ``recurrent_bias`` (the GRU's b_hn, which cannot merge); two biases: b_x{g}, b_h{g}.
    """

    def params(two_biases: bool) -> tuple[ParamDef, ...]:
        out: list[ParamDef] = []
        for g in gates:
            out += [ParamDef(f"W_h{g}", ("H", "H")), ParamDef(f"W_x{g}", ("H", "D"))]
            if two_biases:
                out += [ParamDef(f"b_x{g}", ("H", "1"), True),
                        ParamDef(f"b_h{g}", ("H", "1"), True)]
            else:
                out.append(ParamDef(f"b_{g}", ("H", "1"), True))
                if g in recurrent_bias:
                    out.append(ParamDef(f"b_h{g}", ("H", "1"), True))
        return tuple(out)

    return params


def _stacks(gates: str, recurrent_bias: str = "") -> Callable[[bool], dict]:
    """torch's stacked parameters → the per-gate names they hold, top to bottom."""

    def stacks(two_biases: bool) -> dict[str, tuple[str | None, ...]]:
        return {
            "weight_ih": tuple(f"W_x{g}" for g in gates),
            "weight_hh": tuple(f"W_h{g}" for g in gates),
            "bias_ih": tuple(f"b_x{g}" if two_biases else f"b_{g}" for g in gates),
            "bias_hh": tuple(f"b_h{g}" if two_biases or g in recurrent_bias else None
                             for g in gates),
        }

    return stacks


def _elman_step(b: StepBuilder) -> None:
    a = b.let("a", b.affine("h", b.prev["h"]))
    b.let("h", b.f(b.activation, a))


def _lstm_step(b: StepBuilder) -> None:
    h, c = b.prev["h"], b.prev["c"]
    i = b.let("i", b.f("sigmoid", b.affine("i", h)))
    f = b.let("f", b.f("sigmoid", b.affine("f", h)))
    g = b.let("g", b.f("tanh", b.affine("g", h)))
    o = b.let("o", b.f("sigmoid", b.affine("o", h)))
    c_new = b.let("c", add(hadamard(f, c), hadamard(i, g)))
    b.let("h", hadamard(o, b.f("tanh", c_new)))


def _gru_update(b: StepBuilder, u, n) -> None:
    b.let("h", add(hadamard(sub(ones_like(u), u), n), hadamard(u, b.prev["h"])))


def _gru_step(b: StepBuilder) -> None:
    """Reset after the recurrent product (torch.nn.GRU, cuDNN)."""
    h = b.prev["h"]
    r = b.let("r", b.f("sigmoid", b.affine("r", h)))
    u = b.let("u", b.f("sigmoid", b.affine("u", h)))
    recurrent = add(matmul(b.p("W_hn"), h), b.p("b_hn"))
    n = b.let("n", b.f("tanh", add(b.input_product("W_xn"), b.input_bias("n"),
                                   hadamard(r, recurrent))))
    _gru_update(b, u, n)


def _gru_v1_step(b: StepBuilder) -> None:
    """Reset before the recurrent product (Cho et al. 2014, TensorFlow's GRUBlockCell)."""
    h = b.prev["h"]
    r = b.let("r", b.f("sigmoid", b.affine("r", h)))
    u = b.let("u", b.f("sigmoid", b.affine("u", h)))
    n = b.let("n", b.f("tanh", b.affine("n", hadamard(r, h))))
    _gru_update(b, u, n)


def _cell(name: str, states: tuple[str, ...], gates: str, step, recurrent_bias: str = "",
          ) -> CellDef:
    return CellDef(name, states, _gate_params(gates, recurrent_bias), step,
                   _stacks(gates, recurrent_bias))


CELLS: dict[str, CellDef] = {
    "elman": _cell("elman", ("h",), "h", _elman_step),
    "lstm": _cell("lstm", ("h", "c"), "ifgo", _lstm_step),
    "gru": _cell("gru", ("h",), "run", _gru_step, recurrent_bias="n"),
    "gru_v1": _cell("gru_v1", ("h",), "run", _gru_v1_step),
}
"""Gates in torch's order (LSTM i, f, g, o; GRU r, z, n with z named u here)."""

HEAD_PARAMS = (ParamDef("W_hy", ("O", "H")), ParamDef("b_y", ("O", "1"), is_bias=True))


def cell_for(spec: Spec) -> CellDef:
    try:
        return CELLS[spec.cell]
    except KeyError:
        raise SpecError(f"unknown cell {spec.cell!r}{suggest(spec.cell, CELLS)}") from None


def head_params() -> tuple[ParamDef, ...]:
    return HEAD_PARAMS


def head_step(spec: Spec, b: StepBuilder, y: MatrixSymbol) -> MatrixSymbol:
    """z_τ = W_hy h_τ + b_y (h_τ: the builder's input, with W_hy_rev h_reverse_τ when
    bidirectional);  ŷ_τ = g(z_τ);  L_τ = loss.  Returns L_τ."""
    z = b.let("z", add(b.input_product("W_hy"), b.p("b_y")))
    if spec.head == "softmax":
        yhat = b.let("yhat", Softmax(z))
    else:
        yhat = b.let("yhat", b.f(spec.head, z))
    if spec.loss == "cross_entropy":
        return b.let("L", SoftmaxCrossEntropy(z, y))
    return b.let("L", MSELoss(yhat, y))
