"""Reverse-mode differentiation of matrix programs, and BPTT from it.

The engine (:class:`Backprop`) walks a straight-line program of equations
backwards.  Each equation's adjoint Ḡ = ∂L/∂lhs is pushed through its
right-hand side with the rule table of :mod:`symrnn.rules`; adjoints that
reach the same symbol are summed.  The root of a right-hand side is
represented by its left-hand side symbol, so activation derivatives read
the stored output (1 − h_t ⊙ h_t, not 1 − tanh²(a_t)).  Every rule
application is recorded as a :class:`Step` with its rationale.

Named adjoints.  Before a block of equations is processed, the adjoints of
chosen variables are complete and get a name: the state adjoint
δ_t = ∂L/∂h_t (for a cell with several states, δ^h_t, δ^c_t, each the
derivative with the other states of step t held fixed), and the output
error e_t = ∂L_t/∂z_t.  Expressions then refer to δ_{t+1} instead of
repeating it, which keeps every result linear in T.

BPTT (column vectors, L = Σ_t L_t):

* rolled, derived once from one generic step t and valid for every T::

      e_t = ∂L_t/∂z_t                      (output error, from the head)
      δ_t = W_hyᵀ e_t + J_{t+1}ᵀ δ_{t+1},  δ_{T+1} = 0
      ∂L/∂θ = Σ_t (∂(step t)/∂θ)ᵀ δ_t

* unrolled for a concrete T, the same reverse pass over ``unroll(spec, T)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from sympy import MatrixSymbol, S

from symrnn.cells import cell_for
from symrnn.expr import T_SYMBOL, add, timed
from symrnn.graph import Equation, Program, initial_states, parameters, step_equations, unroll
from symrnn.rules import op_key, rule_for
from symrnn.spec import Spec, check_T

__all__ = [
    "Step",
    "Block",
    "Backprop",
    "Recurrence",
    "Unrolled",
    "Derivation",
    "derive",
    "derive_recurrence",
    "derive_unrolled",
    "adjoint_symbol",
]


@dataclass(frozen=True)
class Step:
    """One rule application: node → its children's adjoints."""

    target: MatrixSymbol
    op: str
    rule: str
    node: object
    adjoint: object
    contributions: tuple[tuple[object, object], ...]


@dataclass(frozen=True)
class Block:
    """Equations processed together; ``name_before`` adjoints are named first."""

    equations: Sequence[Equation]
    name_before: dict = field(default_factory=dict)


class Backprop:
    """Reverse mode over a list of blocks, from seeds {symbol: adjoint}."""

    def __init__(self, seeds: dict):
        self._terms: dict = {var: [value] for var, value in seeds.items()}
        self.steps: list[Step] = []
        self.definitions: list[tuple[MatrixSymbol, object]] = []
        self._reuse: dict = {}

    def run(self, blocks: Sequence[Block]) -> Backprop:
        for block in blocks:
            for eq in block.equations:
                if eq.block != "loss":
                    self._reuse[eq.rhs] = eq.lhs
        for block in reversed(blocks):
            for var, name in block.name_before.items():
                self._name(var, name)
            for eq in reversed(block.equations):
                adjoint = self.adjoint(eq.lhs)
                if adjoint is not None:
                    self._push(eq.rhs, adjoint, eq.lhs, eq.lhs)
        return self

    def adjoint(self, var):
        """The adjoint accumulated so far (a sum of contributions), or None."""
        terms = self._terms.get(var)
        return add(*terms) if terms else None

    def _name(self, var, name: MatrixSymbol) -> None:
        value = self.adjoint(var)
        self.definitions.append((name, self.reuse(value)))
        if value is not None:
            self._terms[var] = [name]

    def _push(self, node, adjoint, out, target) -> None:
        if isinstance(node, MatrixSymbol):
            self._terms.setdefault(node, []).append(adjoint)
            return
        rule = rule_for(node)
        contributions = tuple(
            (child, adj) for child, adj in rule.vjp(node, adjoint, out) if adj is not None
        )
        self.steps.append(Step(target, op_key(node), rule.formula, node, adjoint, contributions))
        for child, adj in contributions:
            self._push(child, adj, child, target)

    def reuse(self, expr):
        """Replace recomputed forward values by their stored symbols (softmax(z_t) → ŷ_t)."""
        return None if expr is None else expr.xreplace(self._reuse)

    def gradient(self, symbol: MatrixSymbol):
        return self.reuse(self.adjoint(symbol))


def adjoint_symbol(spec: Spec, state: str, time, rows) -> MatrixSymbol:
    """δ_τ for a one-state cell, δ^{s}_τ for each state of a multi-state cell."""
    base = "delta" if len(cell_for(spec).states) == 1 else f"delta^{{{state}}}"
    return timed(base, time, rows)


def _head_blocks(eqs: list[Equation], spec: Spec, time) -> list[Block]:
    """Head equations split so that e_τ = ∂L/∂z_τ is named when complete."""
    (z_eq,) = [eq for eq in eqs if eq.lhs.name.startswith("z_")]
    rest = [eq for eq in eqs if eq is not z_eq]
    error = timed("e", time, z_eq.lhs.shape[0])
    return [Block([z_eq], {z_eq.lhs: error}), Block(rest)]


@dataclass(frozen=True)
class Recurrence:
    """The rolled BPTT recurrence of a spec, valid for every T."""

    spec: Spec
    output_error: tuple[MatrixSymbol, object]
    local: dict
    """state → ∂L_t/∂s_t through the head at step t (only h has one)."""
    carry: dict
    """state → J_{t+1}ᵀ δ_{t+1}: what step t+1 sends back to s_t."""
    deltas: dict
    """state → (δ_t symbol, its defining expression for a loss at every step)."""
    gradients: dict
    """parameter → summand at step t; ∂L/∂θ = Σ_t summand."""
    initial_state: dict
    """state → ∂L/∂s_0, the carry of step 1."""
    steps: tuple[Step, ...]

    @property
    def loss_at_every_step(self) -> bool:
        return self.spec.topology == "many_to_many"

    def summand_range(self, name: str) -> str:
        """'t=1..T' for cell parameters, the loss steps for head parameters."""
        if name in ("W_hy", "b_y") and not self.loss_at_every_step:
            return "t=T"
        return "t=1..T"

    def _repr_latex_(self) -> str:
        from symrnn.latex import repr_latex

        return repr_latex(self)


def derive_recurrence(spec: Spec) -> Recurrence:
    """Derive the rolled BPTT recurrence from one generic step t."""
    t = T_SYMBOL
    states = cell_for(spec).states
    rows = parameters(spec)["W_hy"].shape[1]
    at = {s: {k: timed(s, t + k, rows) for k in (-1, 0, 1)} for s in states}
    delta = {s: {k: adjoint_symbol(spec, s, t + k, rows) for k in (0, 1)} for s in states}

    head = step_equations(spec, t, {s: at[s][-1] for s in states}, cell=False)
    local = Backprop({eq.lhs: S.One for eq in head if eq.block == "loss"})
    local.run(_head_blocks(head, spec, t))

    nxt = step_equations(spec, t + 1, {s: at[s][0] for s in states}, head=False)
    carry = Backprop({at[s][1]: delta[s][1] for s in states}).run([Block(nxt)])

    cur = step_equations(spec, t, {s: at[s][-1] for s in states}, head=False)
    params = Backprop({at[s][0]: delta[s][0] for s in states}).run([Block(cur)])

    first = step_equations(spec, 1, initial_states(spec), head=False)
    init_seeds = {timed(s, 1, rows): adjoint_symbol(spec, s, 1, rows) for s in states}
    init = Backprop(init_seeds).run([Block(first)])

    gradients = {}
    for name, sym in parameters(spec).items():
        gradients[name] = add(params.gradient(sym), local.gradient(sym))
    deltas = {
        s: (delta[s][0], add(local.gradient(at[s][0]), carry.gradient(at[s][0])))
        for s in states
    }
    return Recurrence(
        spec=spec,
        output_error=local.definitions[0],
        local={s: local.gradient(at[s][0]) for s in states},
        carry={s: carry.gradient(at[s][0]) for s in states},
        deltas=deltas,
        gradients=gradients,
        initial_state={s: init.gradient(sym) for s, sym in initial_states(spec).items()},
        steps=tuple(local.steps + carry.steps + params.steps),
    )


@dataclass(frozen=True)
class Unrolled:
    """Matrix-form gradients for a concrete T."""

    program: Program
    definitions: tuple[tuple[MatrixSymbol, object], ...]
    """Named adjoints (e_t, δ_t) in the order they are computed (t = T first)."""
    gradients: dict
    """parameter name (and 'h_0', 'c_0') → ∂L/∂θ in terms of the named adjoints."""
    steps: tuple[Step, ...]

    @cached_property
    def _resolved(self) -> dict:
        resolved: dict = {}
        for name, value in self.definitions:
            if value is not None:  # a zero adjoint is never referenced by name
                resolved[name] = value.xreplace(resolved)
        return resolved

    def inline(self, expr):
        """Substitute every named adjoint: the gradient with nothing left named."""
        return None if expr is None else expr.xreplace(self._resolved)

    def _repr_latex_(self) -> str:
        from symrnn.latex import repr_latex

        return repr_latex(self)


def derive_unrolled(spec: Spec, T: int) -> Unrolled:
    """Reverse mode over the unrolled program: gradients for this T."""
    program = unroll(spec, check_T(T))
    states = cell_for(spec).states
    blocks: list[Block] = []
    for t in range(1, program.T + 1):
        cell = [eq for eq in program.equations if eq.time == t and eq.block == "cell"]
        names = {}
        for s in states:
            (eq,) = [e for e in cell if e.lhs.name == f"{s}_{{{t}}}"]
            names[eq.lhs] = adjoint_symbol(spec, s, t, eq.lhs.shape[0])
        blocks.append(Block(cell, names))
        head = [eq for eq in program.equations if eq.time == t and eq.block != "cell"]
        if head:
            blocks += _head_blocks(head, spec, t)
    engine = Backprop({loss: S.One for loss in program.losses}).run(blocks)
    gradients = {name: engine.gradient(sym) for name, sym in program.params.items()}
    for s, sym in program.initial_states.items():
        gradients[f"{s}_0"] = engine.gradient(sym)
    return Unrolled(program, tuple(engine.definitions), gradients, tuple(engine.steps))


@dataclass(frozen=True)
class Derivation:
    """Everything derived for a spec: the rolled recurrence and, on demand, unrolled forms."""

    spec: Spec
    recurrence: Recurrence

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.recurrence.steps

    def unrolled(self, T: int) -> Unrolled:
        return derive_unrolled(self.spec, T)

    def _repr_latex_(self) -> str:
        from symrnn.latex import repr_latex

        return repr_latex(self)


def derive(spec: Spec) -> Derivation:
    """Derive BPTT for ``spec``: the rolled recurrence, once, for every T."""
    return Derivation(spec, derive_recurrence(spec))
