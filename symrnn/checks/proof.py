"""Symbolic proof: the engine's forward and gradients equal the independent scalar oracle.

The oracle (:mod:`symrnn.checks.oracle`) writes each cell's textbook
equations in scalars and differentiates them with SymPy; it shares nothing
with the engine.  This module puts the engine on the same symbols:

* forward: the engine's unrolled program (``unroll(spec, T)``) is evaluated
  on the oracle's primitive symbols with the SymPy backend of
  :func:`symrnn.checks.evaluate.evaluate`; every value is folded into the
  oracle's atoms (engine σ(a) → the oracle's 1/(1 + e^{−a}) output s, tanh,
  ReLU, step, e^z, Σ e^z, log) and every state h_t (c_t) and every loss L_t
  must equal the oracle's exactly;
* :func:`prove_unrolled`: every entry of ``derive_unrolled(spec, T)``'s
  gradients (parameters, h_0, c_0) equals the oracle's ∂L/∂θ;
* :func:`prove_rolled`: the rolled recurrence ``derive_recurrence(spec)``,
  instantiated at t = T..1 with δ_{T+1} = 0 (for many_to_one the head's
  local term at t = T only), gives every δ_t (each state), every per-step
  summand of every parameter (the oracle's ∂L/∂θ^{(t)}) and ∂L/∂s_0.

Stacks (``num_layers``): every layer's parameters (W_hh_l1, …) and states (h_l1,
c_l1, …) are compared, with the engine's convention, which the oracle shares: δ^{s}_t
holds the other states of step t fixed, so layer l's use of layer l−1's h_t is inside
step t (in the summands of layer l−1's parameters), not in δ^{h}_t.

Exactness: each compared pair is a Laurent polynomial in the oracle's atoms
and δ symbols, and the difference must expand to exactly 0.  An engine δ_t
that equals the oracle's is replaced by the oracle's δ_t symbol, so every
comparison stays one step in size; by induction from δ_{T+1} = 0 this proves
the values equal.  Engine expressions that do not match stay unfolded, so
an error surfaces at every quantity that depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import symengine
import sympy
from sympy import Heaviside, Matrix, MatrixSymbol, Max, Symbol

from symrnn.checks.evaluate import evaluate
from symrnn.checks.oracle import ScalarNetwork, build_network, forward_values
from symrnn.engine.derive import derive_recurrence, derive_unrolled
from symrnn.engine.expr import add, at_time, split_timed
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

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def raise_if_failed(self) -> None:
        if self.mismatches:
            shown = "\n".join(str(m) for m in self.mismatches[:5])
            total = self.entries_checked + self.forward_checked
            raise AssertionError(
                f"{len(self.mismatches)} of {total} entries differ ({self.kind} proof) "
                f"for {self.spec} at T={self.T}:\n{shown}"
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


def _forward(spec: Spec, T: int, net: ScalarNetwork):
    """Evaluate the engine's unrolled forward on the oracle's symbols; compare states/losses."""
    program = unroll(spec, T)
    engine = _Engine(net)
    if set(program.params) != set(net.params):  # same cell, layout and biases on both sides
        raise MissingRuleError(
            f"the engine's parameters {sorted(program.params)} are not the oracle's "
            f"{sorted(net.params)} for {spec}")
    if tuple(program.initial_states) != net.state_names:  # same cell and stack on both sides
        raise MissingRuleError(
            f"the engine's states {list(program.initial_states)} are not the oracle's "
            f"{list(net.state_names)} for {spec}")
    for name, sym in program.params.items():
        engine.bind(sym, net.params[name])
    for s, sym in program.initial_states.items():
        engine.bind(sym, net.states[s, 0])
    for eq in program.equations:
        for sym in eq.rhs.atoms(MatrixSymbol):
            parts = split_timed(sym)
            if parts and parts[0] in ("x", "y") and sym not in engine.env:
                t = int(parts[1])
                engine.bind(sym, net.inputs[t] if parts[0] == "x" else net.targets[t])
    mismatches, checked = [], 0
    for eq in program.equations:
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
    """Compare δ^{state}_t with the oracle; bind the engine's δ symbol (matched → oracle's)."""
    oracle = net.adjoint(state, t)
    symbols = net.delta_symbols(state, t)
    bound = []
    for k, (e, o, s) in enumerate(zip(entries, oracle, symbols, strict=True)):
        diff = _differs(e, o)
        if diff is None:
            bound.append(s)
        else:
            bound.append(e)
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


def _setup(spec: Spec, T: int):
    if not spec.is_concrete:
        raise ValueError("the scalar oracle needs concrete sizes")
    T = check_T(T)
    net = build_network(spec, T)
    return (T, net, *_forward(spec, T, net))


def prove_unrolled(spec: Spec, T: int) -> ProofResult:
    """Check the engine's unrolled forward and every gradient entry against the oracle."""
    return _prove_unrolled(spec, *_setup(spec, T))


def prove_rolled(spec: Spec, T: int) -> ProofResult:
    """Instantiate the rolled recurrence at t = T..1 and check it against the oracle.

    Compared: every entry of δ_t for every state and step, every per-step
    summand of every parameter (∂L/∂θ^{(t)}; zero outside the summand's
    range), and ∂L/∂s_0 for every state; and the forward, as for
    :func:`prove_unrolled`.
    """
    return _prove_rolled(spec, *_setup(spec, T))


def prove(spec: Spec, T: int) -> tuple[ProofResult, ProofResult]:
    """(:func:`prove_unrolled`, :func:`prove_rolled`), evaluating the engine's forward once."""
    T, net, engine, mismatches, forward_checked = _setup(spec, T)
    saved = dict(engine.values), dict(engine.env), dict(engine.memo)
    unrolled = _prove_unrolled(spec, T, net, engine, list(mismatches), forward_checked)
    engine.values, engine.env, engine.memo = saved  # the rolled proof binds δ_t, e_t anew
    rolled = _prove_rolled(spec, T, net, engine, list(mismatches), forward_checked)
    return unrolled, rolled


def _prove_unrolled(spec, T, net, engine, mismatches, forward_checked) -> ProofResult:
    unrolled = derive_unrolled(spec, T)
    states = {_delta_name(net, s, t): (s, t)
              for s in net.state_names for t in range(1, T + 1)}
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
    return ProofResult(spec, T, checked, tuple(mismatches), forward_checked, "unrolled")


def _delta_name(net: ScalarNetwork, state: str, t: int) -> str:
    """The engine's name of δ^{state}_t (see :func:`symrnn.engine.derive.adjoint_symbol`).

    δ_t for a one-state network; δ^{s}_t for each state of every layer otherwise (an
    LSTM's δ^{c}_t, a stack's δ^{h_l1}_t).
    """
    base = "delta" if len(net.state_names) == 1 else f"delta^{{{state}}}"
    return f"{base}_{{{t}}}"


def _prove_rolled(spec, T, net, engine, mismatches, forward_checked) -> ProofResult:
    rec = derive_recurrence(spec)
    loss_steps = set(net.loss_steps)
    e_sym, e_expr = rec.output_error
    for t in sorted(loss_steps):
        engine.store(at_time(e_sym, t), engine.value(at_time(e_expr, t)))
    checked = 0
    for t in range(T, 0, -1):
        computed = {}
        for s in net.state_names:
            delta_sym, delta_expr = rec.deltas[s]
            if rec.loss_at_every_step and t < T:
                expr = delta_expr
            else:
                parts = []
                if t in loss_steps and rec.local.get(s) is not None:
                    parts.append(rec.local[s])
                if t < T and rec.carry.get(s) is not None:
                    parts.append(rec.carry[s])
                expr = add(*parts) if parts else None
            symbol = at_time(delta_sym, t)
            computed[s] = (symbol, _value_or_zero(engine, at_time(expr, t), symbol.shape))
        for s, (symbol, entries) in computed.items():
            name = f"{_state_label(split_timed(symbol)[0])}_{t}"
            checked += _bind_delta(engine, net, symbol, s, t, entries, mismatches, name)
    for name, summand in rec.gradients.items():
        steps = {T} if rec.summand_range(name) == "t=T" else set(range(1, T + 1))
        for t in range(1, T + 1):
            oracle = net.summand(name, t)
            if t in steps:
                entries = _value_or_zero(engine, at_time(summand, t), oracle.shape)
            else:
                entries = _zeros(oracle.shape)
            checked += _compare_matrix(entries, oracle, name, mismatches, "summand", t)
    for s, expr in rec.initial_state.items():
        oracle = net.gradient(f"{s}_0")
        entries = _value_or_zero(engine, expr, oracle.shape)
        checked += _compare_matrix(entries, oracle, f"{s}_0", mismatches)
    return ProofResult(spec, T, checked, tuple(mismatches), forward_checked, "rolled")
