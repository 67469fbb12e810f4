"""The rolled recurrence laid out for printing: what each line says and where it holds.

:class:`~symrnn.engine.derive.Recurrence` holds the engine's pieces (the output error, each
state's local term, cross-layer term and carry, the parameter summands).  This module says
how a reader runs them, for every architecture:

* a forward state: δ_t = local + cross + carry(δ_{t+1}) for t = T, …, 1 from δ_{T+1} = 0
  (many_to_one: δ_T and δ_t for t < T apart);
* a reverse state (``_reverse``, step t reads its state at t+1): the carry comes from
  δ_{t−1}, so its adjoint recurrence runs t = 1, …, T from δ_0 = 0; its initial state is
  s_{T+1}, whose gradient is ∂L/∂s_{T+1};
* an encoder state (encoder_decoder): no loss, δ_t = carry for t < T from the boundary
  δ_T = ∂L/∂s^{dec}_0, the decoder's initial-state gradient (the only path from the loss);
* a decoder state (``_dec``): like a forward state over its own steps t = 1, …, T_out;
  :data:`T_OUT` names that last step (``T_out`` in text, T_{out} in LaTeX), and every sum
  of a decoder or head parameter runs to it;
* a parameter whose step 1 differs from the generic step t (one_to_many with zero later
  inputs): its summand at t = 1, then the generic sum over t = 2, …, T (or nothing).

:func:`instantiate` runs these lines for a concrete T (symbolically, boundaries as zero
matrices) so that tests can evaluate the recurrence exactly as it is printed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sympy import MatrixSymbol, Symbol, ZeroMatrix, sympify

from symrnn.engine.derive import Recurrence
from symrnn.engine.expr import add, at_time, split_timed, timed
from symrnn.engine.graph import LAST_STEP, Network, network

__all__ = ["T_LAST", "T_OUT", "HEAD_PARAMS", "Line", "StatePlan", "GradientPlan",
           "state_plans", "gradient_plan", "initial_state_name", "instantiate", "concrete",
           "is_composed"]

T_LAST = LAST_STEP
"""T: the last step (the encoder's, in an encoder–decoder)."""
T_OUT = Symbol("T_out", integer=True, positive=True)
"""T_out: the decoder's last step in an encoder–decoder."""
HEAD_PARAMS = ("W_hy", "W_hy_rev", "b_y")


@dataclass(frozen=True)
class Line:
    """``symbol = expr`` (expr None: 0), valid where ``note`` says ('' : every step)."""

    symbol: MatrixSymbol
    expr: object
    note: str = ""


@dataclass(frozen=True)
class StatePlan:
    """One state's adjoint recurrence: its lines, its boundary, the order it runs in."""

    state: str
    lines: tuple[Line, ...]
    boundary: Line
    role: str
    """'forward', 'reverse', 'encoder' or 'decoder'."""

    @property
    def last(self) -> Symbol:
        return T_OUT if self.role == "decoder" else T_LAST

    @property
    def order(self) -> str:
        """The steps in the order they are computed, as text."""
        return {"forward": "t = T, T-1, ..., 1", "reverse": "t = 1, 2, ..., T",
                "decoder": "t = T_out, T_out-1, ..., 1",
                "encoder": "t = T-1, T-2, ..., 1"}[self.role]


_START = {"forward": T_LAST + 1, "reverse": 0, "decoder": T_OUT + 1}
"""Where each kind of state's adjoint is zero: one step past its last (reverse: before
its first, t = 0)."""


def is_composed(spec) -> bool:
    """Whether ``spec`` is one of the composed architectures (bidirectional, one_to_many,
    encoder_decoder) rather than a plain sequence network."""
    return spec.bidirectional or spec.topology in ("one_to_many", "encoder_decoder")


def _role(net: Network, state: str) -> str:
    if state in net.contexts:
        return "decoder"
    if state in net.contexts.values():
        return "encoder"
    return "forward" if net.direction_of(state) > 0 else "reverse"


def _state_plan(rec: Recurrence, net: Network, state: str) -> StatePlan:
    sym, expr = rec.deltas[state]
    role = _role(net, state)
    local, cross, carry = rec.local.get(state), rec.cross.get(state), rec.carry[state]
    if role == "encoder":
        lines = (Line(sym, add(cross, carry), "t < T"),)
        return StatePlan(state, lines, Line(at_time(sym, T_LAST), rec.final[state]), role)
    start = at_time(sym, _START[role])
    if rec.loss_at_every_step:
        return StatePlan(state, (Line(sym, expr),), Line(start, None), role)
    at_last = add(local, cross, carry if role == "reverse" else None)
    lines = (Line(at_time(sym, T_LAST), at_time(at_last, T_LAST)),
             Line(sym, add(cross, carry), "t < T"))
    return StatePlan(state, lines, Line(start, None), role)


def state_plans(rec: Recurrence) -> dict[str, StatePlan]:
    """Every state's :class:`StatePlan`, in the network's order."""
    net = network(rec.spec)
    return {s: _state_plan(rec, net, s) for s in rec.deltas}


@dataclass(frozen=True)
class GradientPlan:
    """∂L/∂θ = first (at t = 1) + Σ_{t=lower}^{upper} summand, or the summand at t = T."""

    name: str
    summand: object
    first: object = None
    lower: int = 1
    upper: Symbol = T_LAST
    last_only: bool = False
    """many_to_one head parameters: the summand at t = T only."""

    @property
    def is_zero(self) -> bool:
        return self.summand is None and self.first is None


def _in_decoder(net: Network, name: str) -> bool:
    if len(net.stages) == 1:
        return False
    if name in HEAD_PARAMS:
        return True
    return any(name in {p.name for p in layer.params.values()}
               for layer in net.layers_of(net.stages[-1]))


def gradient_plan(rec: Recurrence, name: str) -> GradientPlan:
    """How ∂L/∂``name`` sums its summands (see :meth:`Recurrence.summand_range`)."""
    net = network(rec.spec)
    summand, span = rec.gradients.get(name), rec.summand_range(name)
    upper = T_OUT if _in_decoder(net, name) else T_LAST
    if span == "t=T":
        return GradientPlan(name, summand, last_only=True)
    if span == "t=1":
        return GradientPlan(name, None, rec.first_step[name], upper=upper)
    if span == "t=2..T":
        return GradientPlan(name, summand, rec.first_step[name], 2, upper)
    return GradientPlan(name, summand, upper=upper)


def initial_state_name(net: Network, state: str) -> str:
    """The initial state's name in gradients: h_0, or h_reverse_{T+1} for a reverse
    layer (its first step is t = T, reading its state at T+1)."""
    return f"{state}_0" if net.direction_of(state) > 0 else f"{state}_{{T+1}}"


# ------------------------------------------------------------ the recurrence at a T


def _line_at(plan: StatePlan, k: int, T: int):
    """The expression of δ^s_k at step k of T (None: zero)."""
    if plan.role == "encoder" and k == T:
        return plan.boundary.expr
    generic = [line for line in plan.lines if split_timed(line.symbol)[1] == "t"][0]
    if generic.note and k == T:
        return plan.lines[0].expr
    return at_time(generic.expr, k)


def concrete(expr, net: Network, T: int, T_out: int):
    """Per-step symbols at T-relative times (T, T−1, T_out+1) moved to integers; a reverse
    state at T+1 is its initial state (named h_reverse_{T+1} for every T, as the engine's
    unrolled program names it)."""
    if expr is None:
        return None
    initial = {timed(s, T + 1, *sym.shape): sym for s, sym in net.initial_states.items()
               if net.direction_of(s) < 0}
    mapping = {}
    for sym in expr.atoms(MatrixSymbol):
        parts = split_timed(sym)
        if parts is None or sym in initial.values() or parts[1].lstrip("-").isdigit():
            continue
        value = sympify(parts[1], locals={"T": T_LAST, "T_out": T_OUT, "t": Symbol("t")})
        value = value.subs({T_LAST: T, T_OUT: T_out})
        if value.is_Integer:
            mapping[sym] = timed(parts[0], int(value), *sym.shape)
    return expr.xreplace(mapping).xreplace(initial)


def _error_definitions(rec: Recurrence, T: int, steps) -> dict:
    error_sym, error = rec.output_error
    loss_steps = range(1, steps + 1) if rec.loss_at_every_step else (T,)
    return {at_time(error_sym, k): at_time(error, k) for k in loss_steps}


def instantiate(rec: Recurrence, T: int, T_out: int | None = None) -> tuple[dict, dict]:
    """The printed recurrence run at T (the decoder's at T_out, default T): the named
    adjoints {e_k, δ^s_k: expression} (boundaries as zero matrices or the encoder's δ_T)
    and {parameter or initial state name: gradient}, expressions in those names."""
    net = network(rec.spec)
    T_out = T if T_out is None else T_out
    plans = state_plans(rec)
    steps = T_out if len(net.stages) > 1 else T
    definitions = _error_definitions(rec, T, steps)
    for plan in plans.values():
        last = T_out if plan.role == "decoder" else T
        for k in range(1, last + 1):
            symbol = at_time(plan.lines[-1].symbol, k)
            value = concrete(_line_at(plan, k, last), net, T, T_out)
            definitions[symbol] = ZeroMatrix(*symbol.shape) if value is None else value
        if plan.role != "encoder":
            start = concrete(plan.boundary.symbol, net, T, T_out)
            definitions[start] = ZeroMatrix(*start.shape)
    gradients = {}
    for name in rec.gradients:
        g = gradient_plan(rec, name)
        upper = T_out if g.upper == T_OUT else T
        steps = [T] if g.last_only else range(g.lower, upper + 1)
        terms = [concrete(at_time(g.summand, k), net, T, T_out) for k in steps]
        gradients[name] = add(g.first, *(x for x in terms if x is not None))
    for s, expr in rec.initial_state.items():
        gradients[initial_state_name(net, s)] = concrete(expr, net, T, T_out)
    return definitions, gradients
