"""The scalar oracle: each cell's textbook equations in scalars, differentiated by SymPy.

This is the independent check of the matrix-form engine, and it shares
nothing with it: it imports only :mod:`symrnn.spec` and :mod:`symrnn.errors`.
For concrete sizes every parameter entry is a scalar symbol (``W_hh[0,1]``)
and the forward pass over t = 1..T is written here, from the equations of
each cell (column vectors; H hidden, D input, O output)::

    elman  a_t = W_hh h_{t-1} + W_xh x_t + b_h,   h_t = f(a_t)
    lstm   i, f, o = σ(W_h{g} h_{t-1} + W_x{g} x_t + b_{g}),
           g = tanh(W_hg h_{t-1} + W_xg x_t + b_g),
           c_t = f ⊙ c_{t-1} + i ⊙ g,   h_t = o ⊙ tanh(c_t)
    gru    r = σ(W_hr h + W_xr x + b_r),  u = σ(W_hu h + W_xu x + b_u),
           n = tanh(W_xn x + b_n + r ⊙ (W_hn h + b_hn)),
           h_t = (1 − u) ⊙ n + u ⊙ h_{t-1}                  (torch's form)
    gru_v1 r, u as for gru,
           n = tanh(W_hn (r ⊙ h) + W_xn x + b_n),
           h_t = (1 − u) ⊙ n + u ⊙ h_{t-1}          (Cho et al. 2014, TF's GRUBlockCell)
    head   z_t = W_hy h_t + b_y,  ŷ_t = g(z_t)       (h_t of the top layer)
    loss   mse: ½ ‖ŷ_t − y_t‖²;  cross_entropy: −Σ_i y_i (z_i − log Σ_j e^{z_j})

Stacks (``num_layers`` L): layer 0 is the cell above on x_t; layer l ≥ 1 is the same
cell with x_t replaced by layer l−1's h_t (so its W_x{g} is H×H), its own parameters and
states named with ``_l{l}`` appended (W_hh_l1, b_h_l1, h_l1, c_l1); the head reads layer
L−1's h_t.

Architectures (the oracle's own reading of the spec, :func:`layer_table`):

* ``bidirectional``: every layer has a reverse twin (names + ``_reverse``: W_hh_reverse,
  h_l1_reverse) over the same inputs that runs t = T..1, step t reading its own state at
  t+1, from a free initial state (gradient key ``h_reverse_0``, torch's h0 of that
  direction).  Layer l ≥ 1 (each direction) reads [h_t; h_reverse_t] of layer l−1,
  written as column blocks: W_x{g}{suffix} h_t + W_x{g}_rev{suffix} h_reverse_t; the
  head is z_t = W_hy h_top_t + W_hy_rev h_top_reverse_t + b_y.
* ``one_to_many``: a loss at every step; layer 0 reads x_1 at t = 1 and then, by
  ``feed``, nothing (zeros), x_1 again (repeat) or ŷ_{t−1} itself (feedback: the symbols
  of the previous head's output, so the chain rule runs back through them).
* ``encoder_decoder``: encoder layers over x_1..x_T (no head, no loss); decoder layers
  (names + ``_dec``, own parameters, layer 0's input weights H×O) over τ = 1..T_out
  reading y_{τ−1} (data: y_0 is the start vector), starting from the encoder's final
  states (the very entries of h_T, c_T, h_l1_T, …); the head and the loss, on y_1..y_T_out,
  are the decoder's.

Biases by layout.  ``notes``: one per gate, b_{g} (Elman b_h), and the GRU's b_hn
inside the reset.  ``torch``: two per gate, as torch stores bias_ih and bias_hh:
b_{g} above is b_x{g} + b_h{g} (Elman b_xh + b_hh), except the GRU's candidate,
where b_n is b_xn and b_hn stays inside r ⊙ (W_hn h + b_hn).

with σ(a) = 1/(1 + e^{−a}), ReLU(a) = Max(0, a), softmax = e^{z_i} / Σ_j e^{z_j},
a loss at every step (many_to_many, one_to_many, the decoder's) or at t = T only
(many_to_one).

The program is in common-subexpression form: one scalar symbol per entry of
every intermediate (``a_1[0]``, ``h_1[0]``, ...) with its defining
expression.  A reverse sweep from L = Σ_t L_t applies the scalar chain rule;
every local partial derivative is ``diff`` of a definition (SymPy's own
derivative of each activation, once per kind).  That gives ∂L/∂σ for every
symbol σ: the named state adjoints (below), ∂L/∂s_0 of every free initial state, and
for every parameter θ the summand of step t, ∂L/∂θ^{(t)} — the derivative with respect
to a copy of θ used by step t only (the definitions of step t) — whose sum over t is
∂L/∂θ.

Named adjoints (δ) are taken at the boundaries of the program's blocks, whose order
is the convention.  Without a reverse layer a block is one step t of every layer of a
stage (written bottom to top, then the head): δ^{s}_t holds every other state of step
t fixed (what steps t+1.. and the head of step t send back; layer l's use of layer
l−1's h_t stays inside step t).  With a reverse layer a block is one step of one layer;
the program runs layer by layer (each direction in its own time order, the heads
last), so δ^{s}_t is the whole ∂L/∂s_t, what the layer above sends at step t included —
but for an LSTM's c_t, which holds h_t of the same layer and step fixed.

Exactness.  Every transcendental value is folded into the symbol of its
output: tanh(a) → h, σ(a) → s (e^{−a} = (1 − s)/s, so σ' = s(1 − s)),
H(a) → step(h) for h = Max(0, a) (true for a ≠ 0), e^{z} → E, Σ_j E_j → S,
log S → its own symbol.  Every value and every derivative is then a Laurent
polynomial in these atoms and the primitive symbols, kept expanded
(SymEngine), so two of them are equal when their difference expands to
exactly 0.  For cross-entropy the targets are distributions: the last entry
is 1 − (the others).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
import symengine
import sympy
from sympy import Matrix, MatrixSymbol, Max, Symbol

from symrnn.errors import SpecError
from symrnn.spec import Spec

__all__ = [
    "Definition",
    "OracleLayer",
    "ScalarNetwork",
    "build_network",
    "explicit_symbols",
    "forward_values",
    "is_zero",
    "layer_suffixes",
    "layer_table",
    "parameter_shapes",
]

STATES = {"elman": ("h",), "lstm": ("h", "c"), "gru": ("h",), "gru_v1": ("h",)}
REVERSE = "_reverse"
"""Suffix of a reverse-direction layer's names (torch's)."""
DECODER = "_dec"
"""Suffix (stage) of a decoder's names."""
REV_BLOCK = "_rev"
"""Tag of the input weights' column block that multiplies the reverse h below."""


def explicit_symbols(symbol: MatrixSymbol) -> Matrix:
    """A matrix of scalar symbols named like ``W_hh[0,1]`` for a matrix symbol."""
    rows, cols = (int(d) for d in symbol.shape)
    return _entries(symbol.name.replace("{", "").replace("}", ""), rows, cols)


def _entries(name: str, rows: int, cols: int = 1) -> Matrix:
    if cols == 1:
        return Matrix(rows, 1, lambda i, j: Symbol(f"{name}[{i}]", real=True))
    return Matrix(rows, cols, lambda i, j: Symbol(f"{name}[{i},{j}]", real=True))


def _gates(gates: str, H: int, D: int, two_biases: bool, inside: str = "") -> dict:
    """W_h{g}, W_x{g} and the bias(es) of each gate g, in ``gates`` order.

    One bias (notes): b_{g}, and b_h{g} too for the gates in ``inside`` (the GRU's
    b_hn, inside the reset); two biases (torch): b_x{g} and b_h{g}.
    """
    out: dict[str, tuple[int, int]] = {}
    for g in gates:
        out |= {f"W_h{g}": (H, H), f"W_x{g}": (H, D)}
        if two_biases:
            out |= {f"b_x{g}": (H, 1), f"b_h{g}": (H, 1)}
        else:
            out[f"b_{g}"] = (H, 1)
            if g in inside:
                out[f"b_h{g}"] = (H, 1)
    return out


_CELL_PARAMETERS = {
    "elman": lambda H, D, two: _gates("h", H, D, two),  # W_hh, W_xh, b_h | b_xh, b_hh
    "lstm": lambda H, D, two: _gates("ifgo", H, D, two),
    "gru": lambda H, D, two: _gates("run", H, D, two, inside="n"),
    "gru_v1": lambda H, D, two: _gates("run", H, D, two),
}
"""Each textbook cell's parameters (the engine's names, which the spec shares): H, D,
two biases per gate (layout 'torch') → name → shape, gates in torch's order."""


@dataclass(frozen=True)
class OracleLayer:
    """One recurrence of the oracle's network: a stage's layer in one direction."""

    stage: str
    """'' (the network, or the encoder) or '_dec' (the decoder)."""
    index: int
    direction: int
    """+1: t = 1..T reading s_{t−1}; −1: t = T..1 reading s_{t+1}."""
    cell: str

    @property
    def suffix(self) -> str:
        """'' | '_l1' | '_reverse' | '_l1_reverse' | '_dec' | '_dec_l1' …"""
        layer = f"_l{self.index}" if self.index else ""
        return self.stage + layer + (REVERSE if self.direction < 0 else "")

    @property
    def states(self) -> tuple[str, ...]:
        return tuple(s + self.suffix for s in STATES[self.cell])


def layer_table(spec: Spec) -> tuple[OracleLayer, ...]:
    """Every layer: stage by stage, bottom to top, the forward direction before the reverse."""
    layers = spec.num_layers
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise SpecError(f"the scalar oracle needs num_layers >= 1, got {layers!r}")
    stages = ("", DECODER) if spec.topology == "encoder_decoder" else ("",)
    directions = (1, -1) if spec.bidirectional else (1,)
    return tuple(OracleLayer(stage, index, d, spec.cell) for stage in stages
                 for index in range(layers) for d in directions)


def layer_suffixes(spec: Spec) -> tuple[str, ...]:
    """The name suffix of each layer: '' for layer 0, then '_l1', '_reverse', '_dec', …"""
    return tuple(layer.suffix for layer in layer_table(spec))


def parameter_shapes(spec: Spec) -> dict[str, tuple[int, int]]:
    """Parameter name → (rows, cols), in the engine's naming (biases dropped if off).

    Every layer's cell parameters (names + the layer's suffix; input width D for the
    network's layer 0, O for the decoder's, H above), the reverse-h column blocks of a
    bidirectional layer l ≥ 1 (W_x{g}_rev{suffix}, H×H), then the head's.
    """
    H, D, O = spec.hidden_size, spec.input_size, spec.output_size  # noqa: E741
    if spec.cell not in _CELL_PARAMETERS:
        raise SpecError(f"the scalar oracle has no equations for cell {spec.cell!r}")
    if spec.layout not in ("notes", "torch"):
        raise SpecError(f"the scalar oracle has no layout {spec.layout!r}")
    shapes: dict[str, tuple[int, int]] = {}
    for layer in layer_table(spec):
        width = H if layer.index else (O if layer.stage else D)
        cell = _CELL_PARAMETERS[spec.cell](H, width, spec.layout == "torch")
        if layer.index and spec.bidirectional:
            cell |= {name + REV_BLOCK: (H, H) for name in list(cell) if name.startswith("W_x")}
        shapes |= {name + layer.suffix: shape for name, shape in cell.items()}
    shapes["W_hy"] = (O, H)
    if spec.bidirectional:
        shapes["W_hy" + REV_BLOCK] = (O, H)
    shapes["b_y"] = (O, 1)
    return {k: v for k, v in shapes.items() if spec.bias or not k.startswith("b_")}


# --------------------------------------------------------------------------- atoms

_U, _V, _STEP = sympy.symbols("u v step")


def _function(kind: str, u):
    """The textbook scalar function of each transcendental kind."""
    if kind == "tanh":
        return sympy.tanh(u)
    if kind == "sigmoid":
        return 1 / (1 + sympy.exp(-u))
    if kind == "relu":
        return Max(0, u)
    if kind == "exp":
        return sympy.exp(u)
    if kind == "1+exp":
        return 1 + sympy.exp(u)
    if kind == "log":
        return sympy.log(u)
    raise ValueError(kind)


_TEXTBOOK = ("tanh", "sigmoid", "relu", "identity", "softplus")
"""Activations the oracle writes itself; softplus(a) = log(1 + e^a) as N = 1 + e^a, log N."""


@cache
def _derivative_template(kind: str):
    """SymPy's f'(u), folded into the output v = f(u) (and step = H(u) for ReLU).

    tanh' = 1 − v², σ' = v(1 − v) (e^{−u} = (1 − v)/v, then ``cancel``),
    ReLU' = step, exp' = v, (1 + e^u)' = v − 1, log' = 1/u.
    """
    f = _function(kind, _U)
    fold = {f: _V, sympy.exp(-_U): (1 - _V) / _V, sympy.Heaviside(_U): _STEP}
    if kind == "1+exp":
        fold = {sympy.exp(_U): _V - 1}
    d = sympy.cancel(sympy.diff(f, _U).xreplace(fold))
    if not d.free_symbols <= {_U, _V, _STEP} or d.atoms(sympy.Function):
        raise AssertionError(f"{kind}: derivative {d} did not fold into its output")
    return symengine.sympify(d)


_SE_U, _SE_V, _SE_STEP = (symengine.Symbol(s.name) for s in (_U, _V, _STEP))


def is_zero(expr) -> bool:
    """Exact zero test of a Laurent polynomial in the atoms."""
    return symengine.expand(symengine.sympify(expr)) == 0


def _se(expr):
    return symengine.sympify(expr)


# --------------------------------------------------------------------------- program


@dataclass(frozen=True)
class Definition:
    """``symbol = expr`` in block ``block`` ('cell' or 'head') of step ``time``.

    ``kind`` is 'poly' (a polynomial of earlier symbols), 'sum' (Σ_j E_j), or
    a transcendental kind ('tanh', 'sigmoid', 'relu', 'exp', 'log') of the
    single symbol ``arg``.  ``atom``: kept as a symbol in canonical forms
    (transcendental outputs, S, and the states h_t, c_t); otherwise the symbol
    is replaced by its definition (pre-activations, z_t, ŷ_t = E/S, L_t).
    ``segment``: the block of a cell definition (the adjoints of its states are named
    when the reverse sweep enters it); None for the head's.
    """

    symbol: Symbol
    expr: sympy.Expr
    time: int
    block: str
    kind: str = "poly"
    arg: Symbol | None = None
    atom: bool = False
    segment: tuple | None = None


def _check(spec: Spec, T, T_out) -> None:
    """What the oracle can write: concrete sizes, its activations, T ≥ 1 (and T_out ≥ 1,
    an encoder–decoder's only)."""
    if not spec.is_concrete:
        raise SpecError("the scalar oracle needs concrete sizes")
    if spec.activation not in _TEXTBOOK:
        raise SpecError(f"the scalar oracle has no equation for activation "
                        f"{spec.activation!r} (it knows {', '.join(_TEXTBOOK)})")
    for name, value in (("T", T), ("T_out", T if T_out is None else T_out)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"{name} must be a positive integer, got {value!r}")
    if T_out is not None and spec.topology != "encoder_decoder" and T_out != T:
        raise SpecError(f"T_out applies to topology 'encoder_decoder' only, got "
                        f"T_out={T_out} for {spec.topology!r}")


class _Forward:
    """The scalar forward program of a spec: data, parameters, layers, definitions."""

    def __init__(self, spec: Spec, T: int, T_out: int | None):
        _check(spec, T, T_out)
        self.spec, self.T = spec, T
        decoder = spec.topology == "encoder_decoder"
        self.T_out = (T if T_out is None else T_out) if decoder else T
        self.layers = layer_table(spec)
        self.stages = tuple(dict.fromkeys(layer.stage for layer in self.layers))
        self.per_layer = any(layer.direction < 0 for layer in self.layers)
        self.params: dict[str, Matrix] = {
            name: _entries(name, *shape) for name, shape in parameter_shapes(spec).items()}
        self.state_names = tuple(s for layer in self.layers for s in layer.states)
        self.free_states = tuple(s for layer in self.layers if not layer.stage
                                 for s in layer.states)
        top = [layer for layer in self.layers if layer.stage == self.stages[-1]
               and layer.index == spec.num_layers - 1]
        self.readouts = tuple((layer.states[0], REV_BLOCK if layer.direction < 0 else "")
                              for layer in top)
        self.readout = self.readouts[0][0]
        self.loss_steps = (self.T,) if spec.topology == "many_to_one" else tuple(
            range(1, self.steps(self.stages[-1]) + 1))
        self._data(spec)
        self.initial = {s: _entries(f"{s}_0", spec.hidden_size) for s in self.free_states}
        self.states: dict[tuple[str, int], Matrix] = {}
        self.definitions: list[Definition] = []
        self.segments: dict[tuple, tuple[tuple[str, int], ...]] = {}
        self.losses: dict[int, Symbol] = {}
        self.outputs: dict[int, Matrix] = {}
        self._build()

    def steps(self, stage: str) -> int:
        """The number of steps of a stage: T, or T_out for a decoder."""
        return self.T_out if stage == DECODER else self.T

    def _data(self, spec: Spec) -> None:
        """x_t the network reads (x_1 only for one_to_many), y_t it reads or targets."""
        D, O = spec.input_size, spec.output_size  # noqa: E741
        xs = (1,) if spec.topology == "one_to_many" else range(1, self.T + 1)
        self.inputs = {t: _entries(f"x_{t}", D) for t in xs}
        ys = set(self.loss_steps) | (set(range(self.T_out)) if self.stages[-1] else set())
        self.targets = {}
        for t in sorted(ys):
            y = _entries(f"y_{t}", O)
            if spec.loss == "cross_entropy":  # targets are distributions
                y[O - 1] = 1 - sum(y[:O - 1], sympy.S.Zero)
            self.targets[t] = y

    def data(self, base: str, t: int) -> Matrix | None:
        """The data vector x_t or y_t (None: the network has no such data)."""
        if base not in ("x", "y"):
            return None
        return (self.inputs if base == "x" else self.targets).get(t)

    # ---- the program

    def _build(self) -> None:
        """Stage by stage: step by step (every layer, then the head), or, with a reverse
        layer, layer by layer (each in its own time order) and the heads last."""
        for stage in self.stages:
            layers = [layer for layer in self.layers if layer.stage == stage]
            steps, head = self.steps(stage), stage == self.stages[-1]
            if stage:
                self._start_from_encoder(layers)
            if self.per_layer:
                for layer in layers:
                    order = range(1, steps + 1) if layer.direction > 0 else range(steps, 0, -1)
                    for t in order:
                        self._segment((layer.suffix, t), layer.states, t)
                        self._step(layer, t)
            for t in range(1, steps + 1):
                if not self.per_layer:
                    self._segment((stage, t), [s for la in layers for s in la.states], t)
                    for layer in layers:
                        self._step(layer, t)
                if head and t in self.loss_steps:
                    self._block, self._seg, self._time = "head", None, t
                    self._head(t)

    def _start_from_encoder(self, layers) -> None:
        """The decoder's initial states are the encoder's final ones (same entries)."""
        encoder = [s for layer in self.layers if not layer.stage for s in layer.states]
        decoder = [s for layer in layers for s in layer.states]
        for dec, enc in zip(decoder, encoder, strict=True):
            self.initial[dec] = self.states[enc, self.T]

    def _segment(self, key: tuple, states, t: int) -> None:
        self._block, self._seg, self._time = "cell", key, t
        self.segments[key] = tuple((s, t) for s in states)

    def _step(self, layer: OracleLayer, t: int) -> None:
        self._layer, self._suffix, self._time = layer, layer.suffix, t
        self._inputs = self._layer_inputs(layer, t)
        getattr(self, f"_{self.spec.cell}_step")(t)

    def _layer_inputs(self, layer: OracleLayer, t: int) -> list[tuple[str, Matrix]]:
        """The column blocks (weight tag, vector) of the layer's input at step t."""
        spec = self.spec
        if layer.index:
            below = [low for low in self.layers if low.stage == layer.stage
                     and low.index == layer.index - 1]
            return [(REV_BLOCK if low.direction < 0 else "", self.states[low.states[0], t])
                    for low in below]
        if layer.stage:  # the decoder reads the previous target (teacher forcing)
            return [("", self.targets[t - 1])]
        if spec.topology != "one_to_many" or t == 1:
            return [("", self.inputs[t])]
        if spec.feed == "repeat":
            return [("", self.inputs[1])]
        if spec.feed == "feedback":  # x_t = ŷ_{t−1}: the head's own output symbols
            return [("", self.outputs[t - 1])]
        return []  # zeros: no input term

    # ---- building

    def _define(self, name: str, exprs, kind: str = "poly", args=None, atom=None) -> Matrix:
        syms = []
        for k, expr in enumerate(exprs):
            sym = Symbol(f"{name}[{k}]", real=True)
            arg = None if args is None else args[k]
            is_atom = kind != "poly" if atom is None else atom
            self.definitions.append(Definition(sym, expr, self._time, self._block, kind, arg,
                                               is_atom, self._seg))
            syms.append(sym)
        return Matrix(len(syms), 1, syms)

    def _define_scalar(self, name: str, expr, kind: str = "poly", arg=None) -> Symbol:
        sym = Symbol(name, real=True)
        self.definitions.append(Definition(sym, expr, self._time, self._block, kind, arg,
                                           kind != "poly", self._seg))
        return sym

    def _apply(self, name: str, kind: str, a: Matrix, atom=None) -> Matrix:
        if kind == "identity":
            return self._define(name, list(a), atom=atom)
        return self._define(name, [_function(kind, ai) for ai in a], kind, list(a))

    def _n(self, base: str, t: int) -> str:
        """The name of this layer's intermediate ``base`` at step t (a_1, a_l1_1, …)."""
        return f"{base}{self._suffix}_{t}"

    def _prev(self, s: str) -> Matrix:
        """This layer's state s as its step reads it: s_{t−1}, s_{t+1} reversed, or the
        initial state at the layer's first step."""
        name, t, d = s + self._suffix, self._time, self._layer.direction
        first = t == 1 if d > 0 else t == self.steps(self._layer.stage)
        return self.initial[name] if first else self.states[name, t - d]

    def _set_state(self, s: str, t: int, value: Matrix) -> None:
        self.states[s + self._suffix, t] = value

    def _p(self, name: str):
        """This layer's parameter ``name`` (W_hh → W_hh_l1 above layer 0); None if absent."""
        return self.params.get(name + self._suffix)

    def _bias(self, *names: str) -> Matrix | None:
        """The sum of those of this layer's biases ``names`` it has (None: none)."""
        present = [self.params[n + self._suffix] for n in names
                   if n + self._suffix in self.params]
        if not present:
            return None
        total = present[0]
        for b in present[1:]:
            total = total + b
        return total

    def _gate_bias(self, g: str) -> Matrix | None:
        """Gate g's bias: b_{g} (notes) or b_x{g} + b_h{g} (torch's bias_ih + bias_hh)."""
        return self._bias(f"b_{g}", f"b_x{g}", f"b_h{g}")

    def _input_product(self, weight: str) -> Matrix:
        """W x_t summed over the input's column blocks (W h + W_rev h_reverse; 0: none)."""
        total = None
        for tag, v in self._inputs:
            part = self._p(weight + tag) * v
            total = part if total is None else total + part
        return sympy.zeros(self.spec.hidden_size, 1) if total is None else total

    def _affine(self, t: int, g: str, h: Matrix) -> list:
        """W_h{g} h + W_x{g} x_t + gate g's bias (x_t: the layer's input at step t)."""
        out = self._p(f"W_h{g}") * h + self._input_product(f"W_x{g}")
        bias = self._gate_bias(g)
        return list(out if bias is None else out + bias)

    def _elman_step(self, t: int) -> None:
        a = self._define(self._n("a", t), self._affine(t, "h", self._prev("h")))
        activation = self.spec.activation
        if activation == "softplus":  # log(1 + e^a): N = 1 + e^a, h = log N
            N = self._apply(f"1+exp({self._n('a', t)})", "1+exp", a)
            self._set_state("h", t, self._apply(self._n("h", t), "log", N))
        else:
            self._set_state("h", t, self._apply(self._n("h", t), activation, a, atom=True))

    def _lstm_step(self, t: int) -> None:
        h, c = self._prev("h"), self._prev("c")
        H = len(h)
        gate = {}
        for g in "ifgo":
            a = self._define(self._n(f"a{g}", t), self._affine(t, g, h))
            gate[g] = self._apply(self._n(g, t), "tanh" if g == "g" else "sigmoid", a)
        i, f, g, o = (gate[k] for k in "ifgo")
        c_new = self._define(self._n("c", t), [f[k] * c[k] + i[k] * g[k] for k in range(H)],
                             atom=True)
        tc = self._apply(f"tanh({self._n('c', t)})", "tanh", c_new)
        self._set_state("c", t, c_new)
        self._set_state("h", t, self._define(self._n("h", t), [o[k] * tc[k] for k in range(H)],
                                             atom=True))

    def _gru_gates(self, t: int, h: Matrix) -> tuple[Matrix, Matrix]:
        """The reset r and update u of both GRUs."""
        r = self._apply(self._n("r", t), "sigmoid",
                        self._define(self._n("ar", t), self._affine(t, "r", h)))
        u = self._apply(self._n("u", t), "sigmoid",
                        self._define(self._n("au", t), self._affine(t, "u", h)))
        return r, u

    def _gru_new_state(self, t: int, h: Matrix, u: Matrix, n: Matrix) -> None:
        self._set_state("h", t, self._define(
            self._n("h", t), [(1 - u[k]) * n[k] + u[k] * h[k] for k in range(len(h))], atom=True
        ))

    def _gru_step(self, t: int) -> None:
        """torch's GRU: the reset scales the recurrent product, b_hn included."""
        h = self._prev("h")
        H = len(h)
        r, u = self._gru_gates(t, h)
        rec = self._p("W_hn") * h
        if self._bias("b_hn") is not None:
            rec = rec + self._bias("b_hn")
        m = self._define(self._n("hn", t), list(rec))
        xn = self._input_product("W_xn")
        input_bias = self._bias("b_n", "b_xn")
        if input_bias is not None:
            xn = xn + input_bias
        an = self._define(self._n("an", t), [xn[k] + r[k] * m[k] for k in range(H)])
        self._gru_new_state(t, h, u, self._apply(self._n("n", t), "tanh", an))

    def _gru_v1_step(self, t: int) -> None:
        """Cho et al.'s GRU: the reset scales h_{t-1} before W_hn multiplies it."""
        h = self._prev("h")
        H = len(h)
        r, u = self._gru_gates(t, h)
        rh = self._define(self._n("rh", t), [r[k] * h[k] for k in range(H)])
        an = self._define(self._n("an", t), self._affine(t, "n", rh))
        self._gru_new_state(t, h, u, self._apply(self._n("n", t), "tanh", an))

    def _head(self, t: int) -> None:
        spec = self.spec
        (s, _), *more = self.readouts  # the top layer's h (and its reverse's, W_hy_rev)
        zexpr = self.params["W_hy"] * self.states[s, t]
        for s, tag in more:
            zexpr = zexpr + self.params["W_hy" + tag] * self.states[s, t]
        if "b_y" in self.params:
            zexpr = zexpr + self.params["b_y"]
        z = self._define(f"z_{t}", list(zexpr))
        y = self.targets[t]
        if spec.head == "softmax":
            E = self._apply(f"E_{t}", "exp", z)
            if len(E) > 1:
                S = self._define_scalar(f"S_{t}", sum(E, sympy.S.Zero), "sum")
            else:  # one class: the normaliser is E itself
                S = E[0]
            yhat = self._define(f"yhat_{t}", [e / S for e in E])
        else:
            yhat = self._apply(f"yhat_{t}", spec.head, z)
        self.outputs[t] = yhat
        if spec.loss == "cross_entropy":
            log_s = self._define_scalar(f"log(S_{t})", sympy.log(S), "log", S)
            loss = -sum((y[k] * (z[k] - log_s) for k in range(len(z))), sympy.S.Zero)
        else:
            loss = sum(((yhat[k] - y[k]) ** 2 for k in range(len(z))), sympy.S.Zero) / 2
        self.losses[t] = self._define_scalar(f"L_{t}", loss)


class ScalarNetwork(_Forward):
    """The scalar forward program of a spec for a concrete T (T_out), and its reverse sweep.

    Adjoints are named at the program's block boundaries (see the module docstring):
    when the reverse sweep enters a block, the adjoints of the states it defines hold
    what the later blocks send back; each becomes a symbol ``delta_t[k]``
    (``delta^h_t[k]``, ``delta^c_t[k]``, ``delta^h_reverse_t[k]``, ``delta^h_dec_t[k]``)
    whose value, :meth:`adjoint`, is a polynomial in the atoms and the δ symbols named
    before it.  So δ^c_t = ∂L/∂c_t with h_t held fixed, and δ^h_t = ∂L/∂h_t with c_t held
    fixed; in a stack without a reverse layer, every state of step t is named at once
    (layer l's use of layer l−1's h_t stays inside step t); with one, each layer's step
    is its own block (δ^{h}_t of a lower layer includes what the layers above send at
    step t).  An encoder's δ_T is what the decoder sends back through its initial
    states.  By induction over the blocks, an expression that equals the oracle's in
    these symbols equals it in value.

    ``state_names``: every layer's states (h, c, h_reverse, h_l1, …, h_dec, …);
    ``free_states``: those with a free initial state (not the decoder's);
    ``readouts``: the states the head reads, with their weights' tags ('', '_rev').
    """

    def __init__(self, spec: Spec, T: int, T_out: int | None = None):
        super().__init__(spec, T, T_out)
        self._canonicalize()

    def layer_of(self, state: str) -> OracleLayer:
        return next(layer for layer in self.layers if state in layer.states)

    def times(self, state: str) -> range:
        """The steps t at which ``state`` has a value and a δ (1..T, 1..T_out decoded)."""
        return range(1, self.steps(self.layer_of(state).stage) + 1)

    def param_steps(self, name: str) -> int:
        """The number of steps that use parameter ``name``: T, or T_out for the decoder's
        parameters and the head of an encoder–decoder (its names carry ``_dec``)."""
        head = name in ("W_hy", "W_hy" + REV_BLOCK, "b_y")
        return self.steps(self.stages[-1]) if head or DECODER in name else self.T

    # ---- canonical forms

    def _canonicalize(self) -> None:
        """Each symbol's value as a Laurent polynomial in the atoms and primitives."""
        self._canon: dict = {}
        self._keys: dict = {}
        self._steps: dict = {}
        self._index = {}
        for d in self.definitions:
            sym = _se(d.symbol)
            self._index[sym] = d
            if not d.atom:
                self._canon[sym] = self._to_canonical(_se(d.expr))
                continue
            self._canon[sym] = sym
            if d.kind in ("poly", "sum"):
                self._keys[d.kind, self._to_canonical(_se(d.expr))] = sym
                continue
            arg = self._canon.get(_se(d.arg), _se(d.arg))
            self._keys[d.kind, arg] = sym
            if d.kind == "1+exp":  # e^a = N − 1
                self._keys["exp", arg] = sym - 1
            if d.kind == "log":  # e^{±log N} = N^{±1}
                self._keys["exp", sym] = arg
                self._keys["exp", symengine.expand(-sym)] = arg ** -1
            if d.kind == "relu":
                step = symengine.Symbol(f"step({d.symbol.name})")
                self._steps[sym] = step
                self._keys["step", arg] = step
                self._keys["step", sym] = step

    def _to_canonical(self, expr):
        mapping = {s: self._canon[s] for s in expr.free_symbols
                   if s in self._canon and self._canon[s] != s}
        return symengine.expand(expr.subs(mapping) if mapping else expr)

    def canonical(self, expr):
        """An expression in this network's symbols, as a canonical Laurent polynomial."""
        return self._to_canonical(_se(expr))

    def lookup(self, kind: str, arg):
        """The canonical value of ``kind(arg)`` for a canonical ``arg``, or None.

        kind: a transcendental kind ('tanh', 'sigmoid', 'relu', 'exp', 'log',
        'step' (H(a) or step(Max(0, a)))), 'sum' (Σ_j E_j → S) or 'poly' (a
        state's value, e.g. o ⊙ tanh(c) → h_t).  Mostly an atom; e^a is N − 1
        where N = 1 + e^a is one (softplus), e^{−log N} is N^{−1}.
        """
        return self._keys.get((kind, symengine.expand(arg)))

    def state(self, name: str, t: int) -> list:
        """Canonical values (atoms) of the entries of state ``name`` at step t."""
        return [self._canon.get(_se(s), _se(s)) for s in self.states[name, t]]

    def loss(self, t: int):
        """L_t as a canonical Laurent polynomial."""
        return self._canon[_se(self.losses[t])]

    # ---- reverse sweep

    def _partials(self, d: Definition) -> list:
        sym = _se(d.symbol)
        if d.kind in ("poly", "sum"):
            expr = _se(d.expr)
            return [(s, self._to_canonical(expr.diff(s))) for s in expr.free_symbols
                    if s in self._index or s in self._leaves]
        template = _derivative_template(d.kind)
        arg = _se(d.arg)
        local = template.subs({_SE_U: arg, _SE_V: sym, _SE_STEP: self._steps.get(sym, 0)})
        return [(arg, self._to_canonical(local))]

    def delta_base(self, state: str) -> str:
        """'delta' for a one-state network, 'delta^{state}' otherwise (engine's naming)."""
        return "delta" if len(self.state_names) == 1 else f"delta^{state}"

    def _name_states(self, segment: tuple, adjoint: dict) -> None:
        """Name the adjoints of a block's states (what the later blocks sent back)."""
        for s, t in self.segments[segment]:
            values, symbols = [], []
            for k, e in enumerate(self.states[s, t]):
                key = _se(e)
                value = symengine.expand(adjoint.get(key, 0))
                name = symengine.Symbol(f"{self.delta_base(s)}_{t}[{k}]") if value != 0 \
                    else symengine.Integer(0)
                values.append(value)
                symbols.append(name)
                adjoint[key] = name
            self._delta_values[s, t] = values
            self._delta_symbols[s, t] = symbols
            self._named.append((s, t))

    def _leaf_names(self) -> dict:
        """Each parameter entry → its name, each free initial-state entry → 's_0'."""
        leaves = {}
        for name, m in self.params.items():
            for index in range(m.rows * m.cols):
                leaves[_se(m[index])] = name
        for s in self.free_states:
            for e in self.initial[s]:
                leaves[_se(e)] = f"{s}_0"
        return leaves

    def _backward(self) -> None:
        if hasattr(self, "_adjoint"):
            return
        self._leaves = self._leaf_names()
        weights = {e for e, name in self._leaves.items() if name in self.params}
        self._delta_values: dict = {}
        self._delta_symbols: dict = {}
        self._named: list = []
        adjoint: dict = {_se(self.losses[t]): symengine.Integer(1) for t in self.loss_steps}
        summands: dict = {}
        segment = None
        for d in reversed(self.definitions):
            if d.segment is not None and d.segment != segment:
                segment = d.segment
                self._name_states(segment, adjoint)
            a = adjoint.get(_se(d.symbol))
            if a is None:
                continue
            a = symengine.expand(a)
            if a == 0:
                continue
            for s, partial in self._partials(d):
                if partial == 0:
                    continue
                term = a * partial
                if s in weights:
                    summands[s, d.time] = summands.get((s, d.time), 0) + term
                else:
                    adjoint[s] = adjoint.get(s, 0) + term
        self._initial = {s: [symengine.expand(adjoint.get(_se(e), 0)) for e in self.initial[s]]
                         for s in self.free_states}
        self._adjoint = adjoint
        self._summands = {k: symengine.expand(v) for k, v in summands.items()}

    def adjoint(self, name: str, t: int) -> list:
        """δ^{name}_t, entrywise, in the atoms and the δ symbols named before it.

        t = 0: ∂L/∂s_0 of a free initial state (s_{T+1} of a reverse layer, read at
        t = T), in the δ symbols of the layer's first step.
        """
        self._backward()
        if t == 0:
            if name not in self._initial:
                raise SpecError(f"{name!r} has no free initial state (the decoder's are the "
                                f"encoder's final states); free: {', '.join(self.free_states)}")
            return list(self._initial[name])
        return list(self._delta_values[name, t])

    def delta_symbols(self, name: str, t: int) -> list:
        """The symbols standing for δ^{name}_t (0 where the adjoint is exactly 0)."""
        self._backward()
        return list(self._delta_symbols[name, t])

    def summand(self, name: str, t: int) -> symengine.DenseMatrix:
        """∂L/∂θ^{(t)}: the derivative through the definitions of step t only.

        A SymEngine matrix (entries stay SymEngine expressions: converting the
        expanded polynomials of a stack back to SymPy would cost more than the sweep).
        """
        self._backward()
        m = self.params[name]
        zero = symengine.Integer(0)
        return symengine.DenseMatrix(m.rows, m.cols, [
            self._summands.get((_se(m[i, j]), t), zero)
            for i in range(m.rows) for j in range(m.cols)])

    def gradient(self, name: str) -> symengine.DenseMatrix:
        """∂L/∂θ = Σ_t ∂L/∂θ^{(t)} for a parameter, or ∂L/∂s_0 for a free initial state
        ('h_0', 'c_0', 'h_l1_0', 'h_reverse_0')."""
        if name.endswith("_0") and name[:-2] in self.free_states:
            initial = self.adjoint(name[:-2], 0)
            return symengine.DenseMatrix(len(initial), 1, initial)
        m = self.params[name]
        parts = [self.summand(name, t) for t in range(1, self.param_steps(name) + 1)]
        return symengine.DenseMatrix(m.rows, m.cols, [
            symengine.expand(sum((p[i, j] for p in parts), symengine.Integer(0)))
            for i in range(m.rows) for j in range(m.cols)])

    def resolve(self, expr):
        """Substitute every δ symbol by its value (recursively): ∂L/∂· in atoms only."""
        self._backward()
        if not hasattr(self, "_resolved"):
            self._resolved = {}
            for key in self._named:  # each δ's value refers to those named before it
                for sym, value in zip(self._delta_symbols[key], self._delta_values[key],
                                      strict=True):
                    if sym != 0:
                        self._resolved[sym] = symengine.expand(value.subs(self._resolved))
        return symengine.expand(_se(expr).subs(self._resolved))


@lru_cache(maxsize=128)
def build_network(spec: Spec, T: int, T_out: int | None = None) -> ScalarNetwork:
    """The (cached) scalar network of ``spec`` unrolled over T steps (T_out decoded)."""
    return ScalarNetwork(spec, T, T_out)


# --------------------------------------------------------------------------- numbers


def forward_values(
    spec: Spec,
    params: Mapping[str, np.ndarray],
    xs: Sequence[np.ndarray],
    initial: Mapping[str, np.ndarray] | None = None,
    ys: Sequence[np.ndarray] | None = None,
) -> dict:
    """The oracle's forward pass with numbers substituted (float64 via SymPy Floats).

    ``params`` maps parameter names to arrays of their shapes, ``xs`` the
    inputs x_1..x_T (length-D vectors; T = len(xs)), ``initial`` the free initial states
    h_0 (c_0, and h_l1, h_reverse, … of a stack; zero when absent), ``ys`` the targets
    y_1.. (for the losses and a decoder's inputs; zero when absent; a decoder's y_0 is
    zero).  Returns {'h': [h_1, ..., h_T], 'c': [...],
    'h_l1': [...], …, 'yhat': {t: ŷ_t}, 'loss': {t: L_t}} as NumPy arrays / floats.
    """
    T = len(xs)
    net = ScalarNetwork(spec, T)
    values: dict = {}

    def put(symbols: Matrix, array) -> None:
        array = np.asarray(array, dtype=float).reshape(symbols.shape)
        for i in range(symbols.rows):
            for j in range(symbols.cols):
                values[symbols[i, j]] = sympy.Float(float(array[i, j]), 17)

    for name, symbols in net.params.items():
        put(symbols, params[name])
    for t, x in enumerate(xs, start=1):
        if t in net.inputs:  # one_to_many reads x_1 only
            put(net.inputs[t], x)
    for s in net.free_states:
        h0 = None if initial is None else initial.get(s)
        put(net.initial[s], np.zeros(spec.hidden_size) if h0 is None else h0)
    for t in net.targets:
        y = np.zeros(spec.output_size) if ys is None or t == 0 \
            else np.asarray(ys[t - 1], dtype=float)
        for k, sym in enumerate(net.targets[t]):
            if isinstance(sym, Symbol):
                values[sym] = sympy.Float(float(y[k]), 17)
    for d in net.definitions:
        values[d.symbol] = sympy.Float(d.expr.xreplace(values).evalf(17), 17)

    def read(symbols) -> np.ndarray:
        return np.array([float(sympy.sympify(s).xreplace(values)) for s in symbols])

    out: dict = {s: [read(net.states[s, t]) for t in net.times(s)] for s in net.state_names}
    out["yhat"] = {t: read(net.outputs[t]) for t in net.loss_steps}
    out["loss"] = {t: float(values[net.losses[t]]) for t in net.loss_steps}
    return out
