"""Symbolic proof: the engine's forward and gradients equal the independent scalar oracle.

The oracle (:mod:`symrnn.checks.oracle`) writes each cell's textbook
equations in scalars and differentiates them with SymPy; it shares nothing
with the engine.  This module puts the engine on the same symbols:

* forward: the engine's unrolled program (``unroll(spec, T, T_out)``) is evaluated
  on the oracle's primitive symbols with the SymPy backend of
  :func:`symrnn.checks.evaluate.evaluate`; every value is folded into the
  oracle's atoms (engine σ(a) → the oracle's 1/(1 + e^{−a}) output s, tanh,
  ReLU, step, e^z, Σ e^z, log) and every state h_t (c_t) and every loss L_t
  must equal the oracle's exactly;
* :func:`prove_unrolled`: every entry of ``derive_unrolled(spec, T, T_out)``'s
  gradients (parameters and every free initial state: h_0, c_0, h_reverse_0, …)
  equals the oracle's ∂L/∂θ;
* :func:`prove_rolled`: the rolled recurrence ``derive_recurrence(spec)``,
  instantiated on the oracle's steps, gives every δ_t (each state), every per-step
  summand of every parameter (the oracle's ∂L/∂θ^{(t)}) and ∂L/∂s_0.  δ^{s}_t is
  local + cross + carry at its step (local only at a step with a loss), from
  δ_{T+1} = 0 for a forward state (t = T..1) and δ_0 = 0 for a reverse one (t = 1..T),
  plus ``final`` at an encoder's t = T (what the decoder sends back through its initial
  states, which are not free); the summands follow ``summand_range`` (``first_step`` at
  t = 1 where it differs, as one_to_many's zero later inputs); an encoder–decoder's
  decoder runs τ = 1..T_out.

The engine's and the oracle's names and conventions are the same (the oracle's own
tables; a parameter or state one has and the other lacks is refused): stacks (W_hh_l1,
h_l1, …), reverse layers (``_reverse``; the column blocks ``_rev`` of what reads them),
decoders (``_dec``).  Without a reverse layer δ^{s}_t holds the other states of step t
fixed, so layer l's use of layer l−1's h_t is inside step t (in the summands of layer
l−1's parameters), not in δ^{h}_t; with one, each layer's step is its own block and
δ^{s}_t is the whole ∂L/∂s_t (the LSTM's c_t holding h_t of its own step fixed).

Exactness: each compared pair is a Laurent polynomial in the oracle's atoms
and δ symbols, and the difference must expand to exactly 0.  An engine δ_t
that equals the oracle's is replaced by the oracle's δ_t symbol, so every
comparison stays one step in size; by induction from δ_{T+1} = 0 this proves
the values equal.  An engine state or δ entry that does not match becomes a symbol of
the engine's own (``engine:h_2[0]``, ``engine:delta_1[0]``), so an error surfaces at
every quantity that depends on it, and the comparison stays one step in size there too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import symengine
import sympy
from sympy import Heaviside, Matrix, MatrixSymbol, Max, Symbol

from symrnn.checks.evaluate import evaluate
from symrnn.checks.oracle import ScalarNetwork, build_network, forward_values
from symrnn.engine.derive import derive_recurrence, derive_unrolled
from symrnn.engine.expr import add, at_time, split_timed, timed
from symrnn.engine.graph import unroll
from symrnn.errors import MissingRuleError
from symrnn.ops import Exp, Sigmoid
from symrnn.spec import Spec, check_T

__all__ = ["Mismatch", "ProofResult", "forward_values", "prove", "prove_rolled", "prove_unrolled"]

_SHOWN = 300


@dataclass(frozen=True)
class Mismatch:
    """One entry where the engine and the oracle differ.

    ``kind``: 'gradient' (∂L/∂θ; ``parameter`` is θ, or 'h_0'), 'summand'
    (∂L/∂θ^{(t)} of the rolled recurrence, at step ``time``), 'delta'
    (``parameter`` names δ_t, e.g. 'delta_2', 'delta^c_2') or 'forward'
    (``parameter`` names the value, e.g. 'forward h_2', 'forward L_1').
    """

    parameter: str
    entry: tuple[int, ...]
    engine: object
    oracle: object
    difference: object
    kind: str = "gradient"
    time: int | None = None

    @property
    def label(self) -> str:
        if self.kind == "summand":
            return f"dL/d{self.parameter} summand t={self.time} {list(self.entry)}"
        if self.kind == "gradient":
            return f"dL/d{self.parameter}{list(self.entry)}"
        return f"{self.parameter}{list(self.entry)}"

    def __str__(self) -> str:
        diff = str(self.difference)
        if len(diff) > _SHOWN:
            diff = diff[:_SHOWN] + " ..."
        if self.kind in ("gradient", "summand"):
            return f"gradient mismatch for {self.label}: engine - sympy.diff = {diff}"
        return f"mismatch in {self.label}: engine - oracle = {diff}"


@dataclass(frozen=True)
class ProofResult:
    spec: Spec
    T: int
    entries_checked: int
    """Gradient entries compared (rolled: δ entries, summands and ∂L/∂s_0 too)."""
    mismatches: tuple[Mismatch, ...]
    forward_checked: int = 0
    """Forward entries compared (states and losses)."""
    kind: str = field(default="unrolled")
    T_out: int | None = None
    """An encoder–decoder's decoder steps (None otherwise)."""

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def raise_if_failed(self) -> None:
        if self.mismatches:
            shown = "\n".join(str(m) for m in self.mismatches[:5])
            total = self.entries_checked + self.forward_checked
            raise AssertionError(
                f"{len(self.mismatches)} of {total} entries differ ({self.kind} proof) "
                f"for {self.spec} at T={self.T}"
                f"{'' if self.T_out is None else f', T_out={self.T_out}'}:\n{shown}"
            )


# --------------------------------------------------------------------------- folding


class _Engine:
    """The engine's values on the oracle's symbols, folded into its atoms.

    Every evaluated engine matrix is stored as a matrix of fresh placeholder
    symbols whose folded values live in ``values``; so SymPy only ever sees
    one equation's worth of expression, and SymEngine does the algebra.
    """

    def __init__(self, net: ScalarNetwork):
        self.net = net
        self.values: dict = {}
        self.memo: dict = {}
        self.env: dict = {}
        self.fresh = 0

    # sympy expression (placeholders, primitives, engine functions) → symengine canonical
    def fold(self, expr):
        memo = self.memo
        if expr in memo:
            return memo[expr]
        if isinstance(expr, Symbol):
            value = self.values.get(expr)
            out = value if value is not None else symengine.Symbol(expr.name)
        elif expr.is_Number:
            out = symengine.sympify(expr)
        elif isinstance(expr, Sigmoid | sympy.tanh | Exp | sympy.exp | sympy.log | Heaviside):
            kind = {Sigmoid: "sigmoid", sympy.tanh: "tanh", Exp: "exp", sympy.exp: "exp",
                    sympy.log: "log", Heaviside: "step"}[expr.func]
            out = self._atom(kind, self.fold(expr.args[0]))
        elif isinstance(expr, Max):
            args = [a for a in expr.args if a != 0]
            if len(args) != 1 or len(expr.args) != 2:
                raise MissingRuleError(f"cannot fold {expr} into the oracle's atoms")
            out = self._atom("relu", self.fold(args[0]))
        elif isinstance(expr, sympy.Add):
            out = symengine.Integer(0)
            for a in expr.args:
                out = out + self.fold(a)
            out = symengine.expand(out)
            out = self.net.lookup("sum", out) or out
        elif isinstance(expr, sympy.Mul):
            out = symengine.Integer(1)
            for a in expr.args:
                out = out * self.fold(a)
        elif isinstance(expr, sympy.Pow):
            out = self.fold(expr.base) ** self.fold(expr.exp)
        else:
            raise MissingRuleError(f"cannot fold {type(expr).__name__} ({expr}) into the oracle")
        memo[expr] = out
        return out

    def _atom(self, kind: str, arg):
        arg = symengine.expand(arg)
        atom = self.net.lookup(kind, arg)
        if atom is None:  # not one of the oracle's values: a symbol of the engine's own
            self.fresh += 1
            atom = symengine.Symbol(f"engine:{kind}#{self.fresh}")
        return atom

    def value(self, expr) -> list:
        """Folded, expanded entries of an engine matrix expression (row-major)."""
        m = evaluate(expr, self.env)
        return [symengine.expand(self.fold(e)) for e in m]

    def store(self, symbol: MatrixSymbol, entries: list) -> None:
        """Bind an engine symbol to folded entries (a state value folds to its atom)."""
        rows, cols = (int(d) for d in symbol.shape)
        placeholders = []
        for k, entry in enumerate(entries):
            p = Symbol(f"<{symbol.name}>[{k}]")
            state = self.net.lookup("poly", entry) if entry.free_symbols else None
            self.values[p] = state if state is not None else entry
            placeholders.append(p)
        self.env[symbol] = Matrix(rows, cols, placeholders)

    def bind(self, symbol: MatrixSymbol, value: Matrix) -> None:
        self.env[symbol] = value


def _entry(index: int, cols: int) -> tuple[int, ...]:
    return divmod(index, cols) if cols > 1 else (index,)


def _differs(engine, oracle) -> object | None:
    difference = symengine.expand(engine - oracle)
    return None if difference == 0 else difference


def _state_label(base: str) -> str:
    return base.replace("{", "").replace("}", "")


def _check_tables(spec: Spec, program, net: ScalarNetwork) -> None:
    """The engine and the oracle must name the same parameters and states (refused
    otherwise: the proof compares every gradient and every state of both)."""
    if set(program.params) != set(net.params):  # same cell, layout and biases on both sides
        raise MissingRuleError(
            f"the engine's parameters {sorted(program.params)} are not the oracle's "
            f"{sorted(net.params)} for {spec}")
    if tuple(program.network.states) != net.state_names:  # same cell and layers
        raise MissingRuleError(
            f"the engine's states {list(program.network.states)} are not the oracle's "
            f"{list(net.state_names)} for {spec}")
    if tuple(program.initial_states) != net.free_states:  # the decoder's are not free
        raise MissingRuleError(
            f"the engine's free initial states {list(program.initial_states)} are not the "
            f"oracle's {list(net.free_states)} for {spec}")


def _bind_inputs(engine: _Engine, net: ScalarNetwork, program) -> None:
    """Parameters, free initial states and data (x_t, y_t) on the oracle's symbols.

    A datum the oracle's network does not have (an x_t the engine reads as data where
    the oracle feeds ŷ_{t−1} back) gets symbols of its own, so what depends on it
    differs.  A reverse layer's initial state h_reverse_{T+1} is also bound under its
    concrete name (the rolled recurrence at t = T reads s_{t+1})."""
    for name, sym in program.params.items():
        engine.bind(sym, net.params[name])
    for s, sym in program.initial_states.items():
        engine.bind(sym, net.initial[s])
        if net.layer_of(s).direction < 0:
            engine.bind(timed(s, net.T + 1, *sym.shape), net.initial[s])
    defined = {eq.lhs for eq in program.equations}
    for eq in program.equations:
        for sym in eq.rhs.atoms(MatrixSymbol):
            parts = split_timed(sym)
            if parts and parts[0] in ("x", "y") and sym not in engine.env \
                    and sym not in defined:
                data = net.data(parts[0], int(parts[1]))
                engine.bind(sym, data if data is not None else _entries_of(sym, "engine-only"))


def _entries_of(symbol: MatrixSymbol, tag: str) -> Matrix:
    """Fresh symbols ``tag:name[k]`` for the entries of an engine symbol."""
    rows, cols = (int(d) for d in symbol.shape)
    name = _state_label(symbol.name)
    return Matrix(rows, cols, [Symbol(f"{tag}:{name}[{k}]") for k in range(rows * cols)])


def _forward(spec: Spec, net: ScalarNetwork):
    """Evaluate the engine's unrolled forward on the oracle's symbols; compare states/losses.

    A value an equation reads before any equation defines it (a miswired program) is a
    symbol of its own, so everything that depends on it differs from the oracle."""
    program = unroll(spec, net.T, net.T_out)
    _check_tables(spec, program, net)
    engine = _Engine(net)
    _bind_inputs(engine, net, program)
    mismatches, checked = [], 0
    for eq in program.equations:
        for sym in eq.rhs.atoms(MatrixSymbol):  # read before defined: a miswired program
            if sym not in engine.env:
                engine.bind(sym, _entries_of(sym, "unbound"))
        entries = engine.value(eq.rhs)
        engine.store(eq.lhs, entries)
        base, time = split_timed(eq.lhs)
        t = int(time)
        state = eq.block == "cell" and base in net.state_names
        if eq.block == "loss":
            oracle = [net.loss(t)]
        elif state:
            oracle = net.state(base, t)
        else:
            continue
        for k, (e, o) in enumerate(zip(entries, oracle, strict=True)):
            checked += 1
            placeholder = engine.env[eq.lhs][k]
            diff = _differs(engine.values[placeholder], o)
            if diff is not None:
                mismatches.append(Mismatch(f"forward {base}_{t}", (k,), e, o, diff, "forward", t))
                if state:  # the engine's own state from here on: a symbol, kept small
                    engine.values[placeholder] = symengine.Symbol(f"engine:{base}_{t}[{k}]")
    return engine, mismatches, checked


def _bind_delta(engine: _Engine, net: ScalarNetwork, symbol: MatrixSymbol, state: str, t: int,
                entries: list, mismatches: list | None, name: str) -> int:
    """Compare δ^{state}_t with the oracle; bind the engine's δ symbol: an entry that
    matches to the oracle's δ symbol, one that does not to a symbol of the engine's own
    (``engine:delta_2[0]``: what depends on it differs too, and stays one step in size)."""
    oracle = net.adjoint(state, t)
    symbols = net.delta_symbols(state, t)
    bound = []
    for k, (e, o, s) in enumerate(zip(entries, oracle, symbols, strict=True)):
        diff = _differs(e, o)
        if diff is None:
            bound.append(s)
        else:
            bound.append(symengine.Symbol(f"engine:{_state_label(symbol.name)}[{k}]"))
            if mismatches is not None:
                mismatches.append(Mismatch(name, (k,), e, o, diff, "delta", t))
    placeholders = []
    for k, b in enumerate(bound):
        p = Symbol(f"<{symbol.name}>[{k}]")
        engine.values[p] = b
        placeholders.append(p)
    engine.env[symbol] = Matrix(len(placeholders), 1, placeholders)
    return len(entries)


def _compare_matrix(engine_entries: list, oracle: Matrix, name: str, mismatches: list,
                    kind: str = "gradient", time: int | None = None) -> int:
    for index, e in enumerate(engine_entries):
        i, j = divmod(index, oracle.cols)
        o = oracle[i, j]
        diff = _differs(e, o)
        if diff is not None:
            mismatches.append(Mismatch(name, _entry(index, oracle.cols), e, o, diff, kind, time))
    return len(engine_entries)


def _zeros(shape) -> list:
    rows, cols = (int(d) for d in shape)
    return [symengine.Integer(0)] * (rows * cols)


def _value_or_zero(engine: _Engine, expr, shape) -> list:
    return _zeros(shape) if expr is None else engine.value(expr)


def _setup(spec: Spec, T: int, T_out: int | None):
    if not spec.is_concrete:
        raise ValueError("the scalar oracle needs concrete sizes")
    T = check_T(T)
    T_out = None if T_out is None else check_T(T_out)
    net = build_network(spec, T, T_out)
    return (net, *_forward(spec, net))


def prove_unrolled(spec: Spec, T: int, T_out: int | None = None) -> ProofResult:
    """Check the engine's unrolled forward and every gradient entry against the oracle
    (``T_out``: an encoder–decoder's decoder steps, default T)."""
    return _prove_unrolled(spec, *_setup(spec, T, T_out))


def prove_rolled(spec: Spec, T: int, T_out: int | None = None) -> ProofResult:
    """Instantiate the rolled recurrence on the oracle's steps and check it.

    Compared: every entry of δ_t for every state and step (forward states at
    t = T..1 from δ_{T+1} = 0, reverse states at t = 1..T from δ_0 = 0, an encoder's
    δ_T from the recurrence's ``final``), every per-step summand of every parameter
    (∂L/∂θ^{(t)}, by ``summand_range`` and ``first_step``; zero outside the range), and
    ∂L/∂s_0 of every free initial state; and the forward, as for :func:`prove_unrolled`.
    """
    return _prove_rolled(spec, *_setup(spec, T, T_out))


def prove(spec: Spec, T: int, T_out: int | None = None) -> tuple[ProofResult, ProofResult]:
    """(:func:`prove_unrolled`, :func:`prove_rolled`), evaluating the engine's forward once."""
    net, engine, mismatches, forward_checked = _setup(spec, T, T_out)
    saved = dict(engine.values), dict(engine.env), dict(engine.memo)
    unrolled = _prove_unrolled(spec, net, engine, list(mismatches), forward_checked)
    engine.values, engine.env, engine.memo = saved  # the rolled proof binds δ_t, e_t anew
    rolled = _prove_rolled(spec, net, engine, list(mismatches), forward_checked)
    return unrolled, rolled


def _result(spec, net, checked, mismatches, forward_checked, kind) -> ProofResult:
    T_out = net.T_out if spec.topology == "encoder_decoder" else None
    return ProofResult(spec, net.T, checked, tuple(mismatches), forward_checked, kind, T_out)


def _prove_unrolled(spec, net, engine, mismatches, forward_checked) -> ProofResult:
    unrolled = derive_unrolled(spec, net.T, net.T_out)
    states = {_delta_name(net, s, t): (s, t) for s in net.state_names for t in net.times(s)}
    for name, value in unrolled.definitions:
        if value is None:
            continue
        entries = engine.value(value)
        if name.name in states:
            s, t = states[name.name]
            _bind_delta(engine, net, name, s, t, entries, None, "")
        else:
            engine.store(name, entries)
    checked = 0
    for name, expr in unrolled.gradients.items():
        oracle = net.gradient(name)
        entries = _value_or_zero(engine, expr, oracle.shape)
        checked += _compare_matrix(entries, oracle, name, mismatches)
    return _result(spec, net, checked, mismatches, forward_checked, "unrolled")


def _delta_name(net: ScalarNetwork, state: str, t: int) -> str:
    """The engine's name of δ^{state}_t (see :func:`symrnn.engine.derive.adjoint_symbol`).

    δ_t for a one-state network; δ^{s}_t for each state of every layer otherwise (an
    LSTM's δ^{c}_t, a stack's δ^{h_l1}_t, δ^{h_reverse}_t, δ^{h_dec}_t).
    """
    return f"{_delta_base(net, state)}_{{{t}}}"


def _delta_base(net: ScalarNetwork, state: str) -> str:
    return "delta" if len(net.state_names) == 1 else f"delta^{{{state}}}"


_LAST = re.compile(r"^T(?P<offset>[+-]\d+)?$")


def _concrete(expr, T: int):
    """Per-step symbols at T, T±k (the recurrence's first step of a reverse layer) at
    the concrete T."""
    if expr is None:
        return None
    mapping = {}
    for sym in expr.atoms(MatrixSymbol):
        parts = split_timed(sym)
        match = _LAST.match(parts[1]) if parts is not None else None
        if match:
            mapping[sym] = timed(parts[0], T + int(match["offset"] or 0), *sym.shape)
    return expr.xreplace(mapping)


class _Rolled:
    """The rolled recurrence instantiated on the oracle's steps, each δ_t and e_t bound
    when an expression first reads it (so every order of dependencies is followed: t =
    T..1 forward, t = 1..T reversed, a layer after the one above it, an encoder after
    the decoder), and each δ_t compared with the oracle's as it is bound.

    Beyond the ends of the recurrence δ is zero (δ_{T+1} forward, δ_0 reversed); any
    other symbol no forward step defines (h_{T+1}, a_reverse_0, …) is a symbol of its
    own, which must vanish with the zero δ it multiplies.
    """

    def __init__(self, rec, net: ScalarNetwork, engine: _Engine, mismatches: list):
        self.rec, self.net, self.engine, self.mismatches = rec, net, engine, mismatches
        self.checked = 0
        self.deltas = {_delta_base(net, s): s for s in net.state_names}
        self.pending: set = set()

    def value(self, expr, shape) -> list:
        """Folded entries of an instantiated expression (zeros for None)."""
        if expr is None:
            return _zeros(shape)
        for sym in expr.atoms(MatrixSymbol):
            if sym not in self.engine.env:
                self._bind(sym)
        return self.engine.value(expr)

    def _bind(self, sym: MatrixSymbol) -> None:
        parts = split_timed(sym)
        t = int(parts[1]) if parts is not None and parts[1].lstrip("-").isdigit() else None
        if t is not None and parts[0] == "e" and t in self.net.loss_steps:
            _, e_expr = self.rec.output_error
            self.engine.store(sym, self.value(at_time(e_expr, t), sym.shape))
        elif t is not None and parts[0] in self.deltas:
            self._delta(self.deltas[parts[0]], t, sym)
        else:
            self.engine.bind(sym, _entries_of(sym, "unbound"))

    def _delta(self, s: str, t: int, sym: MatrixSymbol) -> None:
        times, net = self.net.times(s), self.net
        if t not in times or (s, t) in self.pending:
            end = times[-1] + 1 if net.layer_of(s).direction > 0 else 0
            zero = t == end and (s, t) not in self.pending
            self.engine.bind(sym, sympy.zeros(*sym.shape) if zero
                             else _entries_of(sym, "unbound"))
            return
        self.pending.add((s, t))
        entries = self.value(self._delta_expr(s, t), sym.shape)
        name = f"{_state_label(split_timed(sym)[0])}_{t}"
        self.checked += _bind_delta(self.engine, net, sym, s, t, entries, self.mismatches, name)

    def _delta_expr(self, s: str, t: int):
        """δ^{s}_t by the recurrence: local + cross + carry (no local without a loss at
        step t), plus, at an encoder's last step, what the decoder sends back (final)."""
        rec = self.rec
        expr = rec.deltas[s][1]
        if rec.local.get(s) is not None and t not in self.net.loss_steps:
            expr = add(rec.cross.get(s), rec.carry.get(s))
        expr = at_time(expr, t)
        if s in rec.final and t == self.net.times(s)[-1]:
            expr = add(expr, _concrete(rec.final[s], self.net.T))
        return expr

    def summand(self, name: str, t: int):
        """The recurrence's summand of parameter ``name`` at step t (None: zero there)."""
        rec, last = self.rec, self.net.param_steps(name)
        span = rec.summand_range(name)
        if span == "t=T":
            return at_time(rec.gradients[name], t) if t == last else None
        if span in ("t=1", "t=2..T") and t == 1:
            return _concrete(rec.first_step[name], self.net.T)
        return None if span == "t=1" else at_time(rec.gradients[name], t)


def _adjoint_order(net: ScalarNetwork):
    """(state, t) in the order the recurrence runs, so that what each δ reads is mostly
    bound already (the binding is lazy either way; this keeps it shallow): the last
    stage first; step by step (t = T..1) without a reverse layer, else layer by layer
    from the top (forward t = T..1, reverse t = 1..T)."""
    for stage in reversed(net.stages):
        layers = [layer for layer in reversed(net.layers) if layer.stage == stage]
        if not net.per_layer:
            for t in reversed(net.times(layers[0].states[0])):
                yield from ((s, t) for layer in layers for s in layer.states)
            continue
        for layer in layers:
            times = net.times(layer.states[0])
            for t in (reversed(times) if layer.direction > 0 else times):
                yield from ((s, t) for s in layer.states)


def _prove_rolled(spec, net, engine, mismatches, forward_checked) -> ProofResult:
    rolled = _Rolled(derive_recurrence(spec), net, engine, mismatches)
    for s, t in _adjoint_order(net):
        symbol = at_time(rolled.rec.deltas[s][0], t)
        if symbol not in engine.env:
            rolled.value(symbol, symbol.shape)
    checked = rolled.checked
    for name in net.params:
        for t in range(1, net.param_steps(name) + 1):
            oracle = net.summand(name, t)
            entries = rolled.value(rolled.summand(name, t), oracle.shape)
            checked += _compare_matrix(entries, oracle, name, mismatches, "summand", t)
    for s in net.free_states:
        oracle = net.gradient(f"{s}_0")
        expr = _concrete(rolled.rec.initial_state.get(s), net.T)
        entries = rolled.value(expr, oracle.shape)
        checked += _compare_matrix(entries, oracle, f"{s}_0", mismatches)
    return _result(spec, net, checked, mismatches, forward_checked, "rolled")
