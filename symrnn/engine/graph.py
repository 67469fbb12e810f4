"""The unrolled computation graph: a straight-line program of equations.

``network(spec)`` resolves a spec once into a :class:`Network` (cell,
sizes, parameter and state symbols, loss steps); ``unroll(spec, T)`` lays
its cell and output head out over t = 1..T as a list of :class:`Equation`
``lhs = rhs`` in forward order (single assignment: every left-hand side is
a fresh per-step symbol).  The same builders produce the equations of one
generic step τ ∈ {t, t+1}, from which :mod:`symrnn.engine.derive` obtains
the rolled recurrence.

Per-step symbols: x_t (input, D×1), y_t (target), h_t (state), a_t
(pre-activation), z_t (logits), yhat_t (ŷ_t), L_t (loss, 1×1);
h_0 is the initial state.  The total loss is L = Σ_t L_t over the steps
that carry a loss (every step for many_to_many, t = T for many_to_one).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

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

__all__ = ["Equation", "Layer", "Network", "Program", "network", "unroll"]


@dataclass(frozen=True)
class Equation:
    lhs: MatrixSymbol
    rhs: MatrixExpr
    block: str
    """'cell' for the recurrence, 'head' for outputs, 'loss' for L_τ."""
    time: object


@dataclass(frozen=True)
class Layer:
    """One cell of a stack: its names carry ``suffix`` (``""`` for layer 0, ``_l1``, …)."""

    index: int
    suffix: str
    input: str
    """The base name of the per-step input: 'x', or the layer below's 'h' state."""
    params: dict
    """The cell's own parameter names (W_hh, b_h, …) → this layer's symbols."""
    states: tuple[str, ...]
    """This layer's state names (h_l1, c_l1, …), in the cell's order."""


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
    """h_0 (and c_0 for LSTM), for every layer."""
    layers: tuple[Layer, ...]

    @property
    def states(self) -> tuple[str, ...]:
        return tuple(self.initial_states)

    @property
    def readout(self) -> str:
        """The state the output head reads: the top layer's h."""
        return self.layers[-1].states[0]

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
        return self.spec.topology == "many_to_many" or t == T

    def adjoint_symbol(self, state: str, time) -> MatrixSymbol:
        """δ_τ for a one-state network, δ^{s}_τ for each state of a multi-state one."""
        base = "delta" if len(self.states) == 1 else f"delta^{{{state}}}"
        return timed(base, time, self.initial_states[state].shape[0])

    def state_symbols(self, time) -> dict[str, MatrixSymbol]:
        """The states at step ``time`` (h_τ, and c_τ for LSTM; every layer's)."""
        return {s: timed(s, time, sym.shape[0]) for s, sym in self.initial_states.items()}

    def _cell_equations(self, time, prev: dict[str, MatrixSymbol]) -> list[Equation]:
        out: list[Equation] = []
        for layer in self.layers:
            x = timed("x", time, self.sizes.D) if layer.input == "x" else \
                timed(layer.input, time, self.sizes.H)
            own = dict(zip(self.cell.states, (prev[s] for s in layer.states), strict=True))
            builder = StepBuilder(time=time, prev=own, x=x, params=layer.params,
                                  activation=self.spec.activation, suffix=layer.suffix)
            self.cell.step(builder)
            out += [Equation(lhs, rhs, "cell", time) for lhs, rhs in builder.equations]
        return out

    def step_equations(self, time, prev: dict[str, MatrixSymbol], *, cell: bool = True,
                       head: bool = True) -> list[Equation]:
        """Equations of step τ = ``time`` reading the states ``prev`` of step τ−1."""
        out = self._cell_equations(time, prev) if cell else []
        if head:
            builder = StepBuilder(time=time, prev=prev, x=timed("x", time, self.sizes.D),
                                  params=self.params, activation=self.spec.activation)
            h = timed(self.readout, time, self.sizes.H)
            head_step(self.spec, builder, h, timed("y", time, self.sizes.O))
            for lhs, rhs in builder.equations:
                block = "loss" if lhs.name.startswith("L_") else "head"
                out.append(Equation(lhs, rhs, block, time))
        return out

    def unroll(self, T: int) -> Program:
        """The forward pass over t = 1..T as a straight-line program."""
        T = check_T(T)
        states = self.initial_states
        equations: list[Equation] = []
        for t in range(1, T + 1):
            equations += self.step_equations(t, states, head=self.has_loss(t, T))
            states = self.state_symbols(t)
        return Program(self, T, tuple(equations))


def _layer(cell: CellDef, spec: Spec, sizes: Sizes, index: int) -> tuple[Layer, list]:
    """Layer ``index`` of the stack and its parameter definitions (inputs H wide above 0)."""
    suffix = "" if index == 0 else f"_l{index}"
    own_sizes = sizes if index == 0 else Sizes(sizes.H, sizes.H, sizes.O)
    defs = [p for p in cell.params(spec.layout == "torch") if spec.bias or not p.is_bias]
    named = [ParamDef(p.name + suffix, p.shape, p.is_bias) for p in defs]
    symbols = {p.name: n.symbol(own_sizes) for p, n in zip(defs, named, strict=True)}
    below = "x" if index == 0 else cell.states[0] + ("" if index == 1 else f"_l{index - 1}")
    states = tuple(s + suffix for s in cell.states)
    return Layer(index, suffix, below, symbols, states), named


@functools.lru_cache(maxsize=256)
def network(spec: Spec) -> Network:
    """Resolve ``spec`` into its :class:`Network` (once per spec)."""
    cell = cell_for(spec)
    sizes = Sizes.of(spec)
    layers, defs, params = [], [], {}
    for index in range(spec.num_layers):
        layer, named = _layer(cell, spec, sizes, index)
        layers.append(layer)
        defs += named
        params |= {n.name: sym for n, sym in zip(named, layer.params.values(), strict=True)}
    head = [p for p in head_params() if spec.bias or not p.is_bias]
    defs += head
    params |= {p.name: p.symbol(sizes) for p in head}
    states = {s: timed(s, 0, sizes.H) for layer in layers for s in layer.states}
    return Network(spec, cell, sizes, tuple(defs), params, states, tuple(layers))


@dataclass(frozen=True)
class Program:
    """The unrolled forward pass for a concrete T."""

    network: Network
    T: int
    equations: tuple[Equation, ...]

    @property
    def spec(self) -> Spec:
        return self.network.spec

    @property
    def params(self) -> dict[str, MatrixSymbol]:
        return self.network.params

    @property
    def initial_states(self) -> dict[str, MatrixSymbol]:
        return self.network.initial_states

    @property
    def losses(self) -> tuple[MatrixSymbol, ...]:
        return tuple(eq.lhs for eq in self.equations if eq.block == "loss")


def unroll(spec: Spec, T: int) -> Program:
    """The forward pass over t = 1..T as a straight-line program."""
    return network(spec).unroll(T)
