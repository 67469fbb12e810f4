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

import functools
import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

from sympy import MatrixSymbol, S

from symrnn.engine.expr import T_SYMBOL, add, at_time, split_timed, timed
from symrnn.engine.graph import LAST_STEP, Equation, Program, network
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
            for eq in block.equations:  # a copy (h_dec_0 = h_T, x_t = ŷ_{t-1}) renames nothing
                if eq.block != "loss" and not isinstance(eq.rhs, MatrixSymbol):
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
    """state → ∂L_t/∂s_t through the head at step t (only the top h has one)."""
    carry: dict
    """state → J_{t±1}ᵀ δ_{t±1}: what the state's next step sends back to s_t (step t+1;
    step t−1 for a reverse layer, whose adjoint recurrence runs t = 1..T)."""
    deltas: dict
    """state → (δ_t symbol, its defining expression for a loss at every step)."""
    gradients: dict
    """parameter → summand at step t; ∂L/∂θ = Σ_t summand."""
    initial_state: dict
    """state → ∂L/∂s_0 (∂L/∂s_{T+1} reversed), the carry of the state's first step."""
    steps: tuple[Step, ...]
    cross: dict = field(default_factory=dict)
    """state → what the layer above sends back at step t (a per-layer network, where
    δ^{s}_t is the whole ∂L/∂s_t; otherwise it stays inside step t)."""
    final: dict = field(default_factory=dict)
    """state → δ at its last step where it is not zero after it: an encoder's
    δ_T = ∂L/∂h_dec_0, the decoder's initial-state gradient (the context's)."""
    first_step: dict = field(default_factory=dict)
    """parameter → its summand at t = 1 where step 1 differs from the generic step t
    (one_to_many with zero later inputs: W_x reads x_1 only)."""

    @property
    def loss_at_every_step(self) -> bool:
        return self.spec.topology != "many_to_one"

    def summand_range(self, name: str) -> str:
        """'t=1..T' for cell parameters, the loss steps for head parameters."""
        if name in self.first_step:
            return "t=1" if self.gradients.get(name) is None else "t=2..T"
        if name in ("W_hy", "W_hy_rev", "b_y") and not self.loss_at_every_step:
            return "t=T"
        return "t=1..T"


def _backprop(seeds: dict, equations) -> Backprop:
    return Backprop(seeds).run([Block(list(equations))])


class _Stage:
    """The rolled derivation of one stage (the network, an encoder or a decoder)."""

    def __init__(self, net, stage: str):
        self.net, self.stage, self.t = net, stage, T_SYMBOL
        self.head = stage == net.stages[-1]
        self.states = net.states_of(stage)
        self.steps: list[Step] = []
        self.local, self.cross, self.carry, self.gradients = {}, {}, {}, {}
        self.initial: dict = {}
        self.output_error = None

    def delta(self, s: str, k: int = 0) -> MatrixSymbol:
        return self.net.adjoint_symbol(s, self.t + k)

    def _run(self, seeds: dict, equations) -> Backprop:
        engine = _backprop(seeds, equations)
        self.steps += engine.steps
        return engine

    def blocks(self):
        """(states, their equations at τ) per block: every layer at once, or each."""
        net = self.net
        if not net.per_segment:
            yield self.states, lambda time, T=None: net.step_equations(
                time, net.previous(time, T, self.stage), head=False, stage=self.stage)
            return
        for layer in net.layers_of(self.stage):
            yield layer.states, functools.partial(self._layer_equations, layer)

    def _layer_equations(self, layer, time, T=None):
        return self.net.layer_equations(layer, time, self.net.previous(time, T, self.stage))

    def derive(self) -> _Stage:
        t, net = self.t, self.net
        fed_back = None
        for states, equations in self.blocks():
            d = net.direction_of(states[0])
            nxt = self._run({timed(s, t + d, sym.shape[0]): self.delta(s, d)
                             for s, sym in net.state_symbols(t, self.stage).items()
                             if s in states}, equations(t + d))
            self.carry |= {s: nxt.gradient(timed(s, t, self.size)) for s in states}
            if self.head and fed_back is None:
                fed_back = nxt.gradient(timed("yhat", t, net.sizes.O))
            own = self._run(self._seeds(states), equations(t))
            self.gradients |= {n: own.gradient(net.params[n]) for n in self._params(states)}
            first = 1 if d > 0 else LAST_STEP
            start = self._run(self._seeds(states, first), equations(first, LAST_STEP))
            self.initial |= {s: start.gradient(net.initial_states[s]) for s in states}
        if net.per_segment:
            self._cross()
        if self.head:
            self._head(fed_back)
        return self

    @property
    def size(self):
        return self.net.sizes.H

    def _seeds(self, states, time=None) -> dict:
        time = self.t if time is None else time
        return {timed(s, time, self.size): self.net.adjoint_symbol(s, time) for s in states}

    def _params(self, states) -> list[str]:
        suffixes = {self.net.layer_of(s).suffix for s in states}
        return [n for layer in self.net.layers_of(self.stage) if layer.suffix in suffixes
                for n in (sym.name for sym in layer.params.values())]

    def _cross(self) -> None:
        """What each layer sends back to the one below at step t (their h_t)."""
        for layer in self.net.layers_of(self.stage):
            below = [low for low in self.net.layers_of(self.stage)
                     if low.index == layer.index - 1]
            if not below:
                continue
            engine = self._run(self._seeds(layer.states), self._layer_equations(layer, self.t))
            for low in below:
                sym = timed(low.states[0], self.t, self.size)
                self.cross[low.states[0]] = add(self.cross.get(low.states[0]),
                                                engine.gradient(sym))

    def _head(self, fed_back) -> None:
        """e_t = ∂L_t/∂z_t (plus what x_{t+1} = ŷ_t sends back), the head's parts."""
        net, t = self.net, self.t
        head = net.head_equations(t)
        seeds = {eq.lhs: S.One for eq in head if eq.block == "loss"}
        if fed_back is not None:
            seeds[timed("yhat", t, net.sizes.O)] = fed_back
        local = Backprop(seeds).run(_head_blocks(head, t))
        self.steps = local.steps + self.steps
        self.output_error = local.definitions[0]
        self.local = {s: local.gradient(timed(s, t, self.size)) for s in self.states}
        self.gradients |= {n: local.gradient(sym) for n, sym in net.params.items()
                           if n in ("W_hy", "W_hy_rev", "b_y")}

    def first_step(self) -> dict:
        """Summands at t = 1 that the generic step's do not give (zero later inputs)."""
        out = {}
        for states, equations in self.blocks():
            one = _backprop(self._seeds(states, 1), equations(1, LAST_STEP))
            for n in self._params(states):
                value = one.gradient(self.net.params[n])
                if value != at_time(self.gradients.get(n), 1):
                    out[n] = value
        return out


def derive_recurrence(spec: Spec) -> Recurrence:
    """Derive the rolled BPTT recurrence from one generic step t (per stage, per layer
    where a layer's step is its own block)."""
    net = network(spec)
    stages = [_Stage(net, stage).derive() for stage in net.stages]
    top = stages[-1]
    merged: dict = {k: {} for k in ("local", "cross", "carry", "gradients", "initial")}
    for stage in stages:
        for key in merged:
            merged[key] |= getattr(stage, key)
    merged["local"] = {s: merged["local"].get(s) for s in net.states}
    deltas = {s: (net.adjoint_symbol(s, T_SYMBOL),
                  add(merged["local"].get(s), merged["cross"].get(s), merged["carry"][s]))
              for s in net.states}
    final = {enc: merged["initial"][dec] for dec, enc in net.contexts.items()}
    gradients = {name: merged["gradients"].get(name) for name in net.params}
    initial = {s: v for s, v in merged["initial"].items() if s not in net.contexts}
    first = {}
    if spec.topology == "one_to_many":
        first = {k: v for stage in stages for k, v in stage.first_step().items()}
    return Recurrence(
        spec=spec, output_error=top.output_error, local=merged["local"],
        carry=merged["carry"], deltas=deltas, gradients=gradients, initial_state=initial,
        steps=tuple(step for stage in stages for step in stage.steps),
        cross=merged["cross"], final=final, first_step=first)


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


def derive_unrolled(spec: Spec, T: int, T_out: int | None = None) -> Unrolled:
    """Reverse mode over the unrolled program: gradients for this T (time linear in T;
    ``T_out``: an encoder–decoder's decoder steps, default T)."""
    with _collector_paused():
        return _derive_unrolled(spec, T, T_out)


def _derive_unrolled(spec: Spec, T: int, T_out: int | None = None) -> Unrolled:
    net = network(spec)
    program = net.unroll(T, T_out)
    blocks: list[Block] = []
    for group in program.groups:
        if group.kind == "head":
            blocks += _head_blocks(list(group.equations), group.equations[0].time)
            continue
        names = {sym: net.adjoint_symbol(*_state_time(sym)) for sym in group.states}
        blocks.append(Block(list(group.equations), names))
    engine = Backprop({loss: S.One for loss in program.losses}).run(blocks)
    gradients = {name: engine.gradient(sym) for name, sym in program.params.items()}
    for s, sym in program.initial_states.items():
        gradients[f"{s}_0"] = engine.gradient(sym)
    return Unrolled(program, tuple(engine.definitions), gradients, tuple(engine.steps))


def _state_time(sym: MatrixSymbol) -> tuple[str, int]:
    base, time = split_timed(sym)
    return base, int(time)


@dataclass(frozen=True)
class Derivation:
    """Everything derived for a spec: the rolled recurrence and, on demand, unrolled forms."""

    spec: Spec
    recurrence: Recurrence

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.recurrence.steps

    def unrolled(self, T: int, T_out: int | None = None) -> Unrolled:
        return derive_unrolled(self.spec, T, T_out)



def derive(spec: Spec) -> Derivation:
    """Derive BPTT for ``spec``: the rolled recurrence, once, for every T."""
    return Derivation(spec, derive_recurrence(spec))
