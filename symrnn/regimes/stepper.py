"""One time step of any cell, evaluated from its definition, with its Jacobian.

The step equations are those of :func:`symrnn.engine.graph.network` (the ones the
derivation differentiates), evaluated by :mod:`symrnn.checks.evaluate` on NumPy arrays;
nothing here knows which cell it runs.  The state s_t stacks the cell's states in
definition order (h, then c for LSTM), n = |states|·H values.

The step Jacobian J_t = ∂s_t/∂s_{t-1} (n × n) comes from central differences: the step
is evaluated once on 2n + 1 columns, s_{t-1} and s_{t-1} ± δ_j e_j, and
J_t[:, j] = (s_t^(+j) - s_t^(-j)) / 2δ_j with δ_j = :data:`STEP`·max(1, |s_{t-1,j}|).
The cell language's operations are smooth (affine maps, ⊙, tanh, sigmoid), so the
error is O(δ²) + O(ε/δ), about 1e-10 relative (the tests compare the Jacobians' adjoint
product with the generated backward code).  Real arrays on purpose: NumPy multiplies
complex matrices (a complex step) some ten times slower.  A ReLU Elman cell is
differenced across its kink only when a pre-activation lies within δ of 0.

Carry gates (:class:`Carry`): a state whose own equation has a term gate ⊙ s_{t-1}
carries itself through that gate; LSTM's c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t (the forget
gate f), the GRUs' h_t = (1 - u_t) ⊙ n_t + u_t ⊙ h_{t-1} (the update gate u).  That state's
diagonal block of J_t is diag(gate_t) plus the terms through the gates' own dependence on
s_{t-1} (none for LSTM's c, whose gates read h only).  The gate's bias is the bias
parameter in the gate's equation (b_f, b_u with layout 'notes').
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sympy import MatAdd, MatrixSymbol
from sympy.matrices.expressions.hadamard import HadamardProduct

from symrnn.checks.evaluate import run_forward
from symrnn.engine.expr import split_timed, timed
from symrnn.engine.graph import Equation, Network, network
from symrnn.errors import ShapeError
from symrnn.spec import Spec

__all__ = ["STEP", "Carry", "Trajectory", "CellStep", "find_carries", "with_carry_bias"]

STEP = 6e-6
"""Relative difference step δ (about ε^(1/3), which balances truncation and rounding)."""


@dataclass(frozen=True)
class Carry:
    """State ``state`` is carried from step t-1 to t through gate ``gate`` (bias ``bias``)."""

    state: str
    gate: str
    bias: str | None
    """The gate's bias parameter (None without biases)."""


@dataclass(frozen=True)
class Trajectory:
    """One sequence through the cell, from s_0 = 0."""

    states: np.ndarray
    """(T + 1, n): s_0 … s_T, the states stacked in definition order."""
    jacobians: np.ndarray
    """(T, n, n): row t-1 holds J_t = ∂s_t/∂s_{t-1}."""
    gates: dict[str, np.ndarray]
    """Carry gate name → (T, H) values, row t-1 at step t."""


def _terms(expr) -> tuple:
    return expr.args if isinstance(expr, MatAdd) else (expr,)


def _gate_bias(net: Network, rhs) -> str | None:
    used = rhs.atoms(MatrixSymbol)
    names = [p.name for p in net.param_defs if p.is_bias and net.params[p.name] in used]
    return names[0] if names else None


def find_carries(net: Network, equations: tuple[Equation, ...]) -> tuple[Carry, ...]:
    """The (state, gate, bias) triples of the step ``equations``, read off their terms."""
    by_lhs = {eq.lhs: eq.rhs for eq in equations}
    out = []
    for state, prev in net.initial_states.items():
        rhs = by_lhs[timed(state, 1, net.sizes.H)]
        for term in _terms(rhs):
            if not (isinstance(term, HadamardProduct) and prev in term.args):
                continue
            others = [a for a in term.args if a != prev]
            if len(others) == 1 and others[0] in by_lhs:
                gate = others[0]
                out.append(Carry(state, split_timed(gate)[0], _gate_bias(net, by_lhs[gate])))
    return tuple(out)


def with_carry_bias(params: dict, carries: tuple[Carry, ...], value: float | None) -> dict:
    """``params`` with every carry gate's bias set to ``value`` (unchanged for None)."""
    out = dict(params)
    for carry in carries:
        if value is not None and carry.bias is not None:
            out[carry.bias] = np.full(np.shape(params[carry.bias]), float(value))
    return out


class CellStep:
    """The step of ``spec``'s cell as a function of (s_{t-1}, x_t), with its Jacobian."""

    def __init__(self, spec: Spec) -> None:
        net = network(spec)
        if not spec.is_concrete:
            raise ShapeError("a numeric cell step needs integer sizes")
        self.net, self.H, self.D = net, int(net.sizes.H), int(net.sizes.D)
        self.n = self.H * len(net.states)
        self.equations = tuple(net.step_equations(1, net.initial_states, head=False))
        self.x = timed("x", 1, net.sizes.D)
        self.outputs = net.state_symbols(1)
        self.carries = find_carries(net, self.equations)

    def environment(self, params: dict) -> dict:
        """Parameter values by symbol, as 2-D arrays of the symbols' shapes."""
        env = {}
        for name, sym in self.net.params.items():
            shape = tuple(int(d) for d in sym.shape)
            env[sym] = np.asarray(params[name], dtype=float).reshape(shape)
        return env

    def evaluate(self, env: dict, s_prev: np.ndarray, x_t: np.ndarray) -> dict:
        """Every left-hand side of one step; ``s_prev`` is (n, N), one state per column."""
        values = dict(env)
        for k, sym in enumerate(self.net.initial_states.values()):
            values[sym] = s_prev[k * self.H:(k + 1) * self.H]
        values[self.x] = np.asarray(x_t, dtype=float).reshape(self.D, 1)
        return run_forward(self.equations, values, backend="numpy")

    def stacked(self, values: dict) -> np.ndarray:
        """s_t of an evaluated step: the new states stacked, (n, N)."""
        return np.vstack([values[self.outputs[s]] for s in self.net.states])

    def step(self, env: dict, s_prev: np.ndarray, x_t: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, dict]:
        """(s_t, J_t, carry gate values) at one step, J_t by central differences."""
        delta = STEP * np.maximum(1.0, np.abs(s_prev))
        shift = np.diag(delta)
        probe = s_prev[:, None] + np.hstack([np.zeros((self.n, 1)), shift, -shift])
        values = self.evaluate(env, probe, x_t)
        out = self.stacked(values)
        jacobian = (out[:, 1:self.n + 1] - out[:, self.n + 1:]) / (2 * delta)
        gates = {c.gate: values[timed(c.gate, 1, self.H)][:, 0] for c in self.carries}
        return out[:, 0], jacobian, gates

    def run(self, params: dict, x: np.ndarray) -> Trajectory:
        """The trajectory of one sequence x (T, D) from s_0 = 0."""
        env = self.environment(params)
        T = x.shape[0]
        states = np.zeros((T + 1, self.n))
        jacobians = np.zeros((T, self.n, self.n))
        gates = {c.gate: np.zeros((T, self.H)) for c in self.carries}
        with np.errstate(over="ignore", invalid="ignore"):
            for t in range(1, T + 1):
                states[t], jacobians[t - 1], now = self.step(env, states[t - 1], x[t - 1])
                for name, value in now.items():
                    gates[name][t - 1] = value
        return Trajectory(states, jacobians, gates)

    def at_rest(self, params: dict) -> dict[str, np.ndarray]:
        """Carry gate values at s_{t-1} = 0, x_t = 0: the biases alone (σ(b_f) for LSTM)."""
        values = self.evaluate(self.environment(params), np.zeros((self.n, 1)),
                               np.zeros(self.D))
        return {c.gate: values[timed(c.gate, 1, self.H)][:, 0] for c in self.carries}
