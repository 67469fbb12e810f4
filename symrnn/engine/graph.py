"""The unrolled computation graph: a straight-line program of equations.

``network(spec)`` resolves a spec once into a :class:`Network` (cell, sizes, parameter
and state symbols, its layers, loss steps); ``unroll(spec, T)`` lays its cell and output
head out over t = 1..T as a list of :class:`Equation` ``lhs = rhs`` in forward order
(single assignment: every left-hand side is a fresh per-step symbol).  The same builders
produce the equations of one generic step τ ∈ {t−1, t, t+1}, from which
:mod:`symrnn.engine.derive` obtains the rolled recurrence.

Per-step symbols: x_t (input, D×1), y_t (target), h_t (state), a_t
(pre-activation), z_t (logits), yhat_t (ŷ_t), L_t (loss, 1×1);
h_0 is the initial state.  The total loss is L = Σ_t L_t over the steps
that carry a loss (every step but for many_to_one, t = T there).

An architecture is cell definitions composed, as :class:`Layer` s: a stack (layer l reads
layer l−1's h_t), a reverse direction (reads its state at t+1; its initial state is
``h_reverse_{T+1}``), a concatenated input [h_t; h_reverse_t] (one column block of weights
per part, tagged ``_rev``), an encoder and a decoder (stage ``_dec``, whose initial
states are the encoder's final ones), one_to_many's later inputs (none, x_1 again, or
ŷ_{t−1} through an ``input`` equation).  Nothing else changes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy
from sympy import MatrixExpr, MatrixSymbol

from symrnn.engine.cells import (
    CellDef,
    ParamDef,
    Sizes,
    StepBuilder,
    cell_for,
    head_params,
    head_step,
)
from symrnn.engine.expr import timed
from symrnn.spec import Spec, check_T

__all__ = ["Equation", "Group", "Layer", "Network", "Program", "network", "unroll",
           "REVERSE", "DECODER", "LAST_STEP"]

REVERSE = "_reverse"
"""Suffix of a reverse-direction layer's names (torch's)."""
DECODER = "_dec"
"""Suffix of the decoder's names in an encoder–decoder."""
REV_INPUT = "_rev"
"""Tag of the input weights' column block that multiplies a reverse-direction state."""
LAST_STEP = sympy.Symbol("T", integer=True, positive=True)
"""T as a time index: a reverse layer's initial state is its state at T+1."""


@dataclass(frozen=True)
class Equation:
    lhs: MatrixSymbol
    rhs: MatrixExpr
    block: str
    """'cell' for the recurrence, 'input' for a fed-back input, 'context' for a decoder's
    initial state, 'head' for outputs, 'loss' for L_τ."""
    time: object


@dataclass(frozen=True)
class Layer:
    """One cell of the architecture: its names carry ``suffix`` (``""`` for layer 0,
    ``_l1``, ``_reverse``, ``_l1_reverse``, ``_dec``, …)."""

    index: int
    suffix: str
    input: str
    """The base name of the per-step input: 'x', 'y' (a decoder's previous targets), or
    the layer below's 'h' state."""
    params: dict
    """The cell's own parameter names (W_hh, b_h, …; W_xh_rev) → this layer's symbols."""
    states: tuple[str, ...]
    """This layer's state names (h_l1, c_l1, …), in the cell's order."""
    direction: int = 1
    """+1: runs t = 1..T reading its state at t−1; −1: t = T..1 reading it at t+1."""
    more_inputs: tuple[tuple[str, str], ...] = ()
    """Further column blocks of the input: (the layer below's h_reverse, '_rev')."""
    stage: str = ""
    """'' (the network, or an encoder) or '_dec' (the decoder)."""


@dataclass(frozen=True)
class Group:
    """Equations the reverse mode processes together, and the states it names first."""

    equations: tuple[Equation, ...]
    states: tuple[MatrixSymbol, ...] = ()
    """States whose adjoints are named (δ) before the group is processed."""
    kind: str = "cell"
    """'cell' or 'head' (the output error e_τ is named inside a head group)."""


@dataclass(frozen=True, eq=False)
class Network:
    """A spec resolved once: its cell, layers, sizes, parameters, states and loss steps.

    Everything downstream (the reverse mode, the code generator, the LaTeX
    writer) reads this object instead of looking the spec up again; build it
    with :func:`network` (cached per spec).  A stack of ``num_layers`` is the same cell
    definition composed: layer l reads layer l−1's h_t as its input; nothing else changes.
    """

    spec: Spec
    cell: CellDef
    sizes: Sizes
    param_defs: tuple[ParamDef, ...]
    params: dict[str, MatrixSymbol]
    """Parameter symbols of every layer and the head (biases dropped when off)."""
    initial_states: dict[str, MatrixSymbol]
    """h_0 (and c_0 for LSTM), for every layer; h_reverse_{T+1} for a reverse layer;
    h_dec_0 for a decoder (set to the encoder's final state, see :attr:`contexts`)."""
    layers: tuple[Layer, ...]

    @property
    def states(self) -> tuple[str, ...]:
        return tuple(self.initial_states)

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(layer.stage for layer in self.layers))

    def layers_of(self, stage: str | None = None) -> tuple[Layer, ...]:
        """The layers of ``stage`` (None: the head's, the last)."""
        stage = self.stages[-1] if stage is None else stage
        return tuple(layer for layer in self.layers if layer.stage == stage)

    def states_of(self, stage: str | None = None) -> tuple[str, ...]:
        return tuple(s for layer in self.layers_of(stage) for s in layer.states)

    def layer_of(self, state: str) -> Layer:
        return next(layer for layer in self.layers if state in layer.states)

    def direction_of(self, state: str) -> int:
        return self.layer_of(state).direction

    @property
    def per_segment(self) -> bool:
        """Whether each layer's step is its own block: a step t of every layer together is
        not one block once a reverse layer runs step t after step t+1."""
        return any(layer.direction < 0 for layer in self.layers)

    @property
    def contexts(self) -> dict[str, str]:
        """A decoder's state → the encoder's state whose final value initialises it."""
        if len(self.stages) == 1:
            return {}
        encoder = self.states_of(self.stages[0])
        return dict(zip(self.states_of(self.stages[-1]), encoder, strict=True))

    @property
    def readouts(self) -> tuple[tuple[str, str], ...]:
        """The states the output head reads, with their column-block tags: the top
        layer's h, and its reverse's h (tag '_rev') when bidirectional."""
        top = [layer for layer in self.layers_of() if layer.index == self.spec.num_layers - 1]
        return tuple((layer.states[0], REV_INPUT if layer.direction < 0 else "")
                     for layer in top)

    @property
    def readout(self) -> str:
        """The state the output head reads: the top layer's h (its forward one)."""
        return self.readouts[0][0]

    @property
    def stacks(self) -> dict[str, tuple[str | None, ...]]:
        """torch's stacked parameters → the per-gate names in them (absent ones None)."""
        table = self.cell.stacks(self.spec.layout == "torch")
        out = {}
        for layer in self.layers:
            for name, members in table.items():
                out[name + layer.suffix] = tuple(
                    p + layer.suffix if p is not None and p + layer.suffix in self.params
                    else None for p in members)
        return out

    @property
    def bias_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.param_defs if p.is_bias)

    def has_loss(self, t: int, T: int) -> bool:
        """Whether step t of T carries a loss (every step, or the last only)."""
        return self.spec.topology != "many_to_one" or t == T

    def adjoint_symbol(self, state: str, time) -> MatrixSymbol:
        """δ_τ for a one-state network, δ^{s}_τ for each state of a multi-state one."""
        base = "delta" if len(self.states) == 1 else f"delta^{{{state}}}"
        return timed(base, time, self.initial_states[state].shape[0])

    def state_symbols(self, time, stage: str | None = ...) -> dict[str, MatrixSymbol]:
        """The states at step ``time`` (h_τ, and c_τ for LSTM; every layer's, or
        ``stage``'s)."""
        names = self.states if stage is ... else self.states_of(stage)
        return {s: timed(s, time, self.initial_states[s].shape[0]) for s in names}

    def previous(self, time, T=None, stage: str | None = ...) -> dict[str, MatrixSymbol]:
        """What step ``time`` reads of each state: s_{τ−1}, or s_{τ+1} for a reverse
        layer; the initial state at the first step (τ = 1, or τ = T reversed)."""
        out = {}
        for s, now in self.state_symbols(time, stage).items():
            d = self.direction_of(s)
            first = (time == 1) if d > 0 else (T is not None and time == T)
            out[s] = self.initial_states[s] if first else timed(s, time - d, now.shape[0])
        return out

    def _input(self, layer: Layer, time) -> MatrixSymbol | None:
        """Layer 0's input at step τ (x_τ; none, x_1 or x_τ = ŷ_{τ−1} for one_to_many;
        y_{τ−1} for a decoder), or the layer below's h_τ."""
        if layer.input == "y":
            return timed("y", time - 1, self.sizes.O)
        if layer.input != "x":
            return timed(layer.input, time, self.sizes.H)
        if self.spec.topology == "one_to_many" and time != 1:
            if self.spec.feed == "zeros":
                return None
            if self.spec.feed == "repeat":
                return timed("x", 1, self.sizes.D)
        return timed("x", time, self.sizes.D)

    def input_equations(self, time) -> list[Equation]:
        """x_τ = ŷ_{τ−1} (one_to_many with feedback, τ ≠ 1), else none."""
        if self.spec.feed != "feedback" or time == 1:
            return []
        x = timed("x", time, self.sizes.D)
        return [Equation(x, timed("yhat", time - 1, self.sizes.O), "input", time)]

    def layer_equations(self, layer: Layer, time, prev: dict) -> list[Equation]:
        """Layer ``layer``'s equations at step τ reading its states ``prev``."""
        more = tuple((timed(base, time, self.sizes.H), tag) for base, tag in layer.more_inputs)
        own = dict(zip(self.cell.states, (prev[s] for s in layer.states), strict=True))
        builder = StepBuilder(time=time, prev=own, x=self._input(layer, time),
                              params=layer.params, activation=self.spec.activation,
                              suffix=layer.suffix, more_inputs=more)
        self.cell.step(builder)
        return [Equation(lhs, rhs, "cell", time) for lhs, rhs in builder.equations]

    def head_equations(self, time) -> list[Equation]:
        """z_τ, ŷ_τ and L_τ of the head over the top layer's h_τ (and h_reverse_τ)."""
        (h, _), *more = self.readouts
        builder = StepBuilder(
            time=time, prev={}, x=timed(h, time, self.sizes.H), params=self.params,
            activation=self.spec.activation,
            more_inputs=tuple((timed(s, time, self.sizes.H), tag) for s, tag in more))
        head_step(self.spec, builder, timed("y", time, self.sizes.O))
        return [Equation(lhs, rhs, "loss" if lhs.name.startswith("L_") else "head", time)
                for lhs, rhs in builder.equations]

    def step_equations(self, time, prev: dict[str, MatrixSymbol], *, cell: bool = True,
                       head: bool = True, stage: str | None = None) -> list[Equation]:
        """Equations of step τ = ``time`` of ``stage`` (None: the head's) reading ``prev``."""
        out: list[Equation] = []
        if cell:
            out += self.input_equations(time) if stage in (None, self.stages[-1]) else []
            for layer in self.layers_of(stage):
                out += self.layer_equations(layer, time, prev)
        if head and stage in (None, self.stages[-1]):
            out += self.head_equations(time)
        return out

    def unroll(self, T: int, T_out: int | None = None) -> Program:
        """The forward pass over t = 1..T (a decoder's over τ = 1..T_out, default T)."""
        T = check_T(T)
        T_out = T if T_out is None else check_T(T_out)
        groups: list[Group] = []
        for stage in self.stages:
            last = stage == self.stages[-1]
            steps = T_out if last and len(self.stages) > 1 else T
            if stage != self.stages[0]:
                groups.append(self._context(T))
            groups += (self._per_layer if self.per_segment else self._per_step)(
                stage, steps, last)
        equations = tuple(eq for g in groups for eq in g.equations)
        return Program(self, T, equations, tuple(groups), T_out)

    def _context(self, T: int) -> Group:
        """h_dec_0 = h_T (and c): the decoder starts from the encoder's final states."""
        eqs = tuple(Equation(self.initial_states[dec], timed(enc, T, self.sizes.H),
                             "context", 0) for dec, enc in self.contexts.items())
        return Group(eqs)

    def _heads(self, t: int, T: int) -> list[Group]:
        return [Group(tuple(self.head_equations(t)), (), "head")] if self.has_loss(t, T) \
            else []

    def _per_step(self, stage: str, T: int, head: bool) -> list[Group]:
        """Step by step, every layer of a step in one group (states named together)."""
        groups: list[Group] = []
        for t in range(1, T + 1):
            eqs = self.step_equations(t, self.previous(t, T, stage), head=False, stage=stage)
            groups.append(Group(tuple(eqs), tuple(self.state_symbols(t, stage).values())))
            groups += self._heads(t, T) if head else []
        return groups

    def _per_layer(self, stage: str, T: int, head: bool) -> list[Group]:
        """Layer by layer, each direction over its own order of steps; heads last."""
        groups: list[Group] = []
        for layer in self.layers_of(stage):
            order = range(1, T + 1) if layer.direction > 0 else range(T, 0, -1)
            for t in order:
                now = [timed(s, t, self.sizes.H) for s in layer.states]
                prev = self.previous(t, T, stage)
                groups.append(Group(tuple(self.layer_equations(layer, t, prev)), tuple(now)))
        if head:
            for t in range(1, T + 1):
                groups += self._heads(t, T)
        return groups


def _layer_params(cell: CellDef, spec: Spec, sizes: Sizes, suffix: str, more: tuple,
                  input_size) -> tuple[dict, list[ParamDef]]:
    """A layer's parameter symbols (by the cell's names) and definitions (its names)."""
    own_sizes = Sizes(sizes.H, input_size, sizes.O)
    defs = [p for p in cell.params(spec.layout == "torch") if spec.bias or not p.is_bias]
    defs += [ParamDef(p.name + tag, ("H", "H")) for _, tag in more for p in defs
             if p.shape[1] == "D"]
    named = [ParamDef(p.name + suffix, p.shape, p.is_bias) for p in defs]
    symbols = {p.name: n.symbol(own_sizes) for p, n in zip(defs, named, strict=True)}
    return symbols, named


def _layers(cell: CellDef, spec: Spec, sizes: Sizes, stage: str) -> list[tuple[Layer, list]]:
    """Every layer of one stage, each with its parameter definitions."""
    out: list[tuple[Layer, list]] = []
    directions = (1, -1) if spec.bidirectional else (1,)
    for index in range(spec.num_layers):
        for d in directions:
            suffix = stage + ("" if index == 0 else f"_l{index}") + (REVERSE if d < 0 else "")
            below = stage + ("" if index <= 1 else f"_l{index - 1}")
            if index == 0:
                (source, width), more = (("y", sizes.O) if stage else ("x", sizes.D)), ()
            else:
                source, width = cell.states[0] + below, sizes.H
                more = ((cell.states[0] + below + REVERSE, REV_INPUT),) if spec.bidirectional \
                    else ()
            params, named = _layer_params(cell, spec, sizes, suffix, more, width)
            states = tuple(s + suffix for s in cell.states)
            out.append((Layer(index, suffix, source, params, states, d, more, stage), named))
    return out


def _head_params(spec: Spec, sizes: Sizes) -> list[ParamDef]:
    head = [p for p in head_params() if spec.bias or not p.is_bias]
    if spec.bidirectional:
        head.insert(1, ParamDef("W_hy" + REV_INPUT, ("O", "H")))
    return head


@functools.lru_cache(maxsize=256)
def network(spec: Spec) -> Network:
    """Resolve ``spec`` into its :class:`Network` (once per spec)."""
    cell = cell_for(spec)
    sizes = Sizes.of(spec)
    stages = ("", DECODER) if spec.topology == "encoder_decoder" else ("",)
    layers, defs, params = [], [], {}
    for stage in stages:
        for layer, named in _layers(cell, spec, sizes, stage):
            layers.append(layer)
            defs += named
            params |= {n.name: sym for n, sym in zip(named, layer.params.values(),
                                                     strict=True)}
    head = _head_params(spec, sizes)
    defs += head
    params |= {p.name: p.symbol(sizes) for p in head}
    states = {s: timed(s, 0 if layer.direction > 0 else LAST_STEP + 1, sizes.H)
              for layer in layers for s in layer.states}
    return Network(spec, cell, sizes, tuple(defs), params, states, tuple(layers))


@dataclass(frozen=True)
class Program:
    """The unrolled forward pass for a concrete T."""

    network: Network
    T: int
    equations: tuple[Equation, ...]
    groups: tuple[Group, ...] = ()
    T_out: int | None = None
    """The decoder's steps (encoder_decoder); T otherwise."""

    @property
    def spec(self) -> Spec:
        return self.network.spec

    @property
    def params(self) -> dict[str, MatrixSymbol]:
        return self.network.params

    @property
    def initial_states(self) -> dict[str, MatrixSymbol]:
        """The free initial states (a decoder's are the encoder's final ones)."""
        contexts = self.network.contexts
        return {s: sym for s, sym in self.network.initial_states.items() if s not in contexts}

    @property
    def losses(self) -> tuple[MatrixSymbol, ...]:
        return tuple(eq.lhs for eq in self.equations if eq.block == "loss")


def unroll(spec: Spec, T: int, T_out: int | None = None) -> Program:
    """The forward pass over t = 1..T as a straight-line program."""
    return network(spec).unroll(T, T_out)
