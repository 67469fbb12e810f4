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

__all__ = ["Equation", "Network", "Program", "network", "unroll"]


@dataclass(frozen=True)
class Equation:
    lhs: MatrixSymbol
    rhs: MatrixExpr
    block: str
    """'cell' for the recurrence, 'head' for outputs, 'loss' for L_τ."""
    time: object


@dataclass(frozen=True, eq=False)
class Network:
    """A spec resolved once: its cell, sizes, parameters, states and loss steps.

    Everything downstream (the reverse mode, the code generator, the LaTeX
    writer) reads this object instead of looking the spec up again; build it
    with :func:`network` (cached per spec).
    """

    spec: Spec
    cell: CellDef
    sizes: Sizes
    param_defs: tuple[ParamDef, ...]
    params: dict[str, MatrixSymbol]
    """Parameter symbols of the cell and the head (biases dropped when off)."""
    initial_states: dict[str, MatrixSymbol]
    """h_0 (and c_0 for LSTM)."""

    @property
    def states(self) -> tuple[str, ...]:
        return self.cell.states

    @property
    def stacks(self) -> dict[str, tuple[str | None, ...]]:
        """torch's stacked parameters → the per-gate names in them (absent ones None)."""
        table = self.cell.stacks(self.spec.layout == "torch")
        return {name: tuple(p if p in self.params else None for p in members)
                for name, members in table.items()}

    @property
    def bias_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.param_defs if p.is_bias)

    def has_loss(self, t: int, T: int) -> bool:
        """Whether step t of T carries a loss (every step, or the last only)."""
        return self.spec.topology == "many_to_many" or t == T

    def adjoint_symbol(self, state: str, time) -> MatrixSymbol:
        """δ_τ for a one-state cell, δ^{s}_τ for each state of a multi-state cell."""
        base = "delta" if len(self.states) == 1 else f"delta^{{{state}}}"
        return timed(base, time, self.initial_states[state].shape[0])

    def state_symbols(self, time) -> dict[str, MatrixSymbol]:
        """The states at step ``time`` (h_τ, and c_τ for LSTM)."""
        return {s: timed(s, time, sym.shape[0]) for s, sym in self.initial_states.items()}

    def step_equations(self, time, prev: dict[str, MatrixSymbol], *, cell: bool = True,
                       head: bool = True) -> list[Equation]:
        """Equations of step τ = ``time`` reading the states ``prev`` of step τ−1."""
        builder = StepBuilder(time=time, prev=prev, x=timed("x", time, self.sizes.D),
                              params=self.params, activation=self.spec.activation)
        out: list[Equation] = []
        if cell:
            self.cell.step(builder)
            out += [Equation(lhs, rhs, "cell", time) for lhs, rhs in builder.equations]
            builder.equations.clear()
        if head:
            h = timed("h", time, self.sizes.H)
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


@functools.lru_cache(maxsize=256)
def network(spec: Spec) -> Network:
    """Resolve ``spec`` into its :class:`Network` (once per spec)."""
    cell = cell_for(spec)
    sizes = Sizes.of(spec)
    defs = tuple(p for p in cell.params(spec.layout == "torch") + head_params()
                 if spec.bias or not p.is_bias)
    params = {p.name: p.symbol(sizes) for p in defs}
    states = {s: timed(s, 0, sizes.H) for s in cell.states}
    return Network(spec, cell, sizes, defs, params, states)


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
