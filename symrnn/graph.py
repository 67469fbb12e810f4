"""The unrolled computation graph: a straight-line program of equations.

``unroll(spec, T)`` lays a cell and its output head out over t = 1..T as a
list of :class:`Equation` ``lhs = rhs`` in forward order (single
assignment: every left-hand side is a fresh per-step symbol).  The same
builders produce the equations of one generic step τ ∈ {t, t+1}, from which
:mod:`symrnn.derive` obtains the rolled recurrence.

Per-step symbols: x_t (input, D×1), y_t (target), h_t (state), a_t
(pre-activation), z_t (logits), yhat_t (ŷ_t), L_t (loss, 1×1);
h_0 is the initial state.  The total loss is L = Σ_t L_t over the steps
that carry a loss (every step for many_to_many, t = T for many_to_one).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sympy import MatrixExpr, MatrixSymbol

from symrnn.cells import Sizes, StepBuilder, cell_for, head_params, head_step
from symrnn.expr import timed
from symrnn.printing import text
from symrnn.spec import Spec, check_T

__all__ = ["Equation", "Program", "parameters", "initial_states", "step_equations", "unroll"]


@dataclass(frozen=True)
class Equation:
    lhs: MatrixSymbol
    rhs: MatrixExpr
    block: str
    """'cell' for the recurrence, 'head' for outputs, 'loss' for L_τ."""
    time: object


def parameters(spec: Spec) -> dict[str, MatrixSymbol]:
    """Parameter symbols of the cell and the head (biases dropped if off)."""
    sizes = Sizes.of(spec)
    defs = cell_for(spec).params + head_params()
    return {p.name: p.symbol(sizes) for p in defs if spec.bias or not p.is_bias}


def initial_states(spec: Spec) -> dict[str, MatrixSymbol]:
    """h_0 (and c_0 for LSTM)."""
    sizes = Sizes.of(spec)
    return {s: timed(s, 0, sizes.H) for s in cell_for(spec).states}


def step_equations(
    spec: Spec, time, prev: dict[str, MatrixSymbol], *, cell: bool = True, head: bool = True
) -> list[Equation]:
    """Equations of step τ = ``time`` reading the states ``prev`` of step τ−1."""
    sizes = Sizes.of(spec)
    builder = StepBuilder(
        time=time,
        prev=prev,
        x=timed("x", time, sizes.D),
        params=parameters(spec),
        activation=spec.activation,
    )
    out: list[Equation] = []
    if cell:
        cell_for(spec).step(builder)
        out += [Equation(lhs, rhs, "cell", time) for lhs, rhs in builder.equations]
        builder.equations.clear()
    if head:
        h = timed("h", time, sizes.H)
        head_step(spec, builder, h, timed("y", time, sizes.O))
        for lhs, rhs in builder.equations:
            block = "loss" if lhs.name.startswith("L_") else "head"
            out.append(Equation(lhs, rhs, block, time))
    return out


@dataclass(frozen=True)
class Program:
    """The unrolled forward pass for a concrete T."""

    spec: Spec
    T: int
    equations: tuple[Equation, ...]

    @cached_property
    def params(self) -> dict[str, MatrixSymbol]:
        return parameters(self.spec)

    @cached_property
    def initial_states(self) -> dict[str, MatrixSymbol]:
        return initial_states(self.spec)

    @property
    def losses(self) -> tuple[MatrixSymbol, ...]:
        return tuple(eq.lhs for eq in self.equations if eq.block == "loss")

    def to_text(self) -> str:
        lines = [f"unrolled {self.spec.cell} RNN, T = {self.T}"]
        lines += [f"  {eq.lhs} = {text(eq.rhs)}" for eq in self.equations]
        lines.append("  L = " + " + ".join(str(s) for s in self.losses))
        return "\n".join(lines)

    def to_latex(self) -> str:
        from symrnn.printing import latex

        rows = [rf"{latex(eq.lhs)} &= {latex(eq.rhs)}" for eq in self.equations]
        rows.append("L &= " + " + ".join(latex(s) for s in self.losses))
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


def unroll(spec: Spec, T: int) -> Program:
    """The forward pass over t = 1..T as a straight-line program."""
    T = check_T(T)
    states = initial_states(spec)
    equations: list[Equation] = []
    for t in range(1, T + 1):
        head = spec.topology == "many_to_many" or t == T
        step = step_equations(spec, t, states, head=head)
        equations += step
        states = {s: timed(s, t, sym.shape[0]) for s, sym in states.items()}
    return Program(spec, T, tuple(equations))
