"""Reverse-mode differentiation of matrix programs, and BPTT from it.

The engine (:class:`Backprop`) walks a straight-line program of equations
backwards.  Each equation's adjoint Ḡ = ∂L/∂lhs is pushed through its
right-hand side with the rule table of :mod:`symrnn.engine.rules`; adjoints that
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

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

from sympy import MatrixSymbol, S

from symrnn.engine.expr import T_SYMBOL, add, timed
from symrnn.engine.graph import Equation, Program, network
from symrnn.engine.rules import op_key, rule_for
from symrnn.spec import Spec

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


def adjoint_symbol(spec: Spec, state: str, time) -> MatrixSymbol:
    """δ_τ for a one-state cell, δ^{s}_τ for each state (see :meth:`Network.adjoint_symbol`)."""
    return network(spec).adjoint_symbol(state, time)


def _head_blocks(eqs: list[Equation], time) -> list[Block]:
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



def derive_recurrence(spec: Spec) -> Recurrence:
    """Derive the rolled BPTT recurrence from one generic step t."""
    net = network(spec)
    t = T_SYMBOL
    at = {k: net.state_symbols(t + k) for k in (-1, 0, 1)}
    delta = {k: {s: net.adjoint_symbol(s, t + k) for s in net.states} for k in (0, 1)}

    head = net.step_equations(t, at[-1], cell=False)
    local = Backprop({eq.lhs: S.One for eq in head if eq.block == "loss"})
    local.run(_head_blocks(head, t))

    nxt = net.step_equations(t + 1, at[0], head=False)
    carry = Backprop({at[1][s]: delta[1][s] for s in net.states}).run([Block(nxt)])

    cur = net.step_equations(t, at[-1], head=False)
    params = Backprop({at[0][s]: delta[0][s] for s in net.states}).run([Block(cur)])

    first = net.step_equations(1, net.initial_states, head=False)
    one = net.state_symbols(1)
    init = Backprop({one[s]: net.adjoint_symbol(s, 1) for s in net.states}).run([Block(first)])

    gradients = {name: add(params.gradient(sym), local.gradient(sym))
                 for name, sym in net.params.items()}
    deltas = {
        s: (delta[0][s], add(local.gradient(at[0][s]), carry.gradient(at[0][s])))
        for s in net.states
    }
    return Recurrence(
        spec=spec,
        output_error=local.definitions[0],
        local={s: local.gradient(at[0][s]) for s in net.states},
        carry={s: carry.gradient(at[0][s]) for s in net.states},
        deltas=deltas,
        gradients=gradients,
        initial_state={s: init.gradient(sym) for s, sym in net.initial_states.items()},
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



@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a derivation allocates.

    An unrolled derivation allocates O(T) long-lived SymPy nodes (no reference
    cycles among them); every full collection the allocations trigger walks
    all of them, which made ``derive_unrolled`` super-linear in T (about a
    third of the time at T = 4000).  Reference counting still frees garbage.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def derive_unrolled(spec: Spec, T: int) -> Unrolled:
    """Reverse mode over the unrolled program: gradients for this T (time linear in T)."""
    with _collector_paused():
        return _derive_unrolled(spec, T)


def _derive_unrolled(spec: Spec, T: int) -> Unrolled:
    net = network(spec)
    program = net.unroll(T)
    by_step: dict[int, list[Equation]] = {}
    for eq in program.equations:
        by_step.setdefault(eq.time, []).append(eq)
    blocks: list[Block] = []
    for t in range(1, program.T + 1):
        cell = [eq for eq in by_step[t] if eq.block == "cell"]
        names = {sym: net.adjoint_symbol(s, t) for s, sym in net.state_symbols(t).items()}
        blocks.append(Block(cell, names))
        head = [eq for eq in by_step[t] if eq.block != "cell"]
        if head:
            blocks += _head_blocks(head, t)
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



def derive(spec: Spec) -> Derivation:
    """Derive BPTT for ``spec``: the rolled recurrence, once, for every T."""
    return Derivation(spec, derive_recurrence(spec))
