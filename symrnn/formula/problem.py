"""The checking problem: which gradient, for which spec and T, on which instances.

A :class:`Quantity` is ∂L/∂θ (the total loss) or ∂L_k/∂θ (the loss term at
step k only).  A claim about L_k is checked on the unrolled program with
T = k and the loss at step k only (steps after k cannot influence L_k).

:class:`Problem` holds the engine's answer (:func:`~symrnn.derive.derive_unrolled`)
and random instances: parameters, inputs, targets and h_0 drawn from a seeded
NumPy generator (float64; weights N(0, 0.5²) so that tanh is neither
saturated nor linear), the forward pass run by
:func:`~symrnn.evaluate.run_forward` and the engine's adjoints by
:func:`~symrnn.evaluate.run_adjoints`.  Formulas are evaluated on the
forward pass's own h_t, ŷ_t, δ_t.

Truth variants for the diagnosis: ``exact``; ``no_deriv`` (the engine for the
same spec with an identity activation, evaluated on the real forward pass:
every activation-derivative factor dropped); ``local_only`` (every δ_t
without the carry from step t+1); ``no_head_deriv`` (a sigmoid head's
ŷ ⊙ (1 − ŷ) dropped from e_t).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from sympy import MatAdd, MatrixSymbol

from symrnn.checks.evaluate import evaluate, run_adjoints, run_forward
from symrnn.engine.derive import Unrolled, derive_unrolled
from symrnn.engine.expr import split_timed
from symrnn.engine.graph import network
from symrnn.errors import FormulaError, SpecError
from symrnn.formula.lower import Scope, resolve_param
from symrnn.spec import Spec, check_T

__all__ = ["Quantity", "Problem", "VARIANTS", "RTOL", "ATOL"]

RTOL, ATOL = 1e-7, 1e-9
"""float64 tolerances: formulas and engine differ only by rounding (≈1e-15)."""

VARIANTS = ("exact", "no_deriv", "local_only", "no_deriv+local_only", "no_head_deriv")


@dataclass(frozen=True)
class Quantity:
    loss_step: int | None
    wrt: str

    def __str__(self) -> str:
        loss = "L" if self.loss_step is None else f"L_{self.loss_step}"
        return f"d{loss}/d{self.wrt}"

    def latex(self) -> str:
        from symrnn.render.printing import symbol_latex

        loss = "L" if self.loss_step is None else f"L_{{{self.loss_step}}}"
        return rf"\frac{{\partial {loss}}}{{\partial {symbol_latex(self.wrt)}}}"


def resolve_quantity(spec: Spec, raw_wrt: str, loss_step: int | None) -> Quantity:
    """Map a written parameter (W, W_{hh}, V, h_0 …) to the spec's name."""
    net = network(spec)
    names = list(net.params) + [f"{s}_0" for s in net.initial_states]
    base, _, index = raw_wrt.partition("_")
    name = resolve_param(names, base, index or None)
    if name is None:
        from symrnn.errors import suggest

        raise FormulaError(f"unknown parameter {raw_wrt!r}{suggest(raw_wrt, names)} "
                           f"(expected one of {', '.join(names)} or an alias W, U, b, V, c)")
    if loss_step is not None and loss_step < 1:
        raise FormulaError(f"loss term L_{loss_step}: expected a step k >= 1")
    return Quantity(loss_step, name)


class Problem:
    """The engine's gradient and seeded random instances for one quantity."""

    def __init__(self, spec: Spec, quantity: Quantity, T: int, *, instances: int = 3,
                 seed: int = 0, one_hot_targets: bool = False):
        if not spec.is_concrete:
            raise SpecError("checking needs concrete sizes, got symbolic ones "
                            f"(H={spec.hidden_size}, D={spec.input_size}, O={spec.output_size})")
        self.spec, self.quantity, self.seed = spec, quantity, seed
        self.one_hot = one_hot_targets
        if quantity.loss_step is not None:
            T = quantity.loss_step
            spec = spec.replace(topology="many_to_one")
        self.T = check_T(T)
        self.eff_spec = spec
        self.unrolled: Unrolled = derive_unrolled(spec, self.T)
        adjoints = {name.name: (name if value is not None else None)
                    for name, value in self.unrolled.definitions}
        self.scope = Scope(self.unrolled.program, adjoints)
        self.seeds = tuple(range(seed, seed + instances))
        self.envs = [self._instance(s) for s in self.seeds]
        self.truth_expr = self.unrolled.gradients[quantity.wrt]
        self.target = self._target_symbol()

    def _target_symbol(self) -> MatrixSymbol:
        program = self.unrolled.program
        table = {**program.params, **{f"{s}_0": v for s, v in program.initial_states.items()}}
        return table[self.quantity.wrt]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(d) for d in self.target.shape)

    def _instance(self, seed: int) -> dict:
        rng = np.random.default_rng(seed)
        program = self.unrolled.program
        env: dict = {}
        symbols = {a for eq in program.equations for a in eq.rhs.atoms(MatrixSymbol)}
        for sym in sorted(symbols, key=lambda s: s.name):
            shape = tuple(int(d) for d in sym.shape)
            parts = split_timed(sym)
            if parts is None or parts[0] in ("h", "c"):
                env[sym] = rng.normal(0.0, 0.5, shape)
            elif parts[0] == "y" and self.one_hot:
                env[sym] = np.eye(shape[0])[:, [int(rng.integers(shape[0]))]]
            elif parts[0] == "y" and self.spec.loss == "cross_entropy":
                env[sym] = rng.dirichlet(np.ones(shape[0])).reshape(shape)
            else:
                env[sym] = rng.normal(0.0, 1.0, shape)
        run_forward(program.equations, env, "numpy")
        run_adjoints(self.unrolled.definitions, env, "numpy")
        return env

    def values(self, expr) -> list[np.ndarray]:
        """``expr`` on every instance (None: zeros of the target's shape)."""
        if expr is None:
            return [np.zeros(self.shape) for _ in self.envs]
        return [np.asarray(evaluate(expr, env, "numpy"), dtype=float) for env in self.envs]

    @cached_property
    def truth(self) -> list[np.ndarray]:
        return self.values(self.truth_expr)

    def variant(self, kind: str) -> list[np.ndarray] | None:
        """Numeric values of a truth variant (None when it does not apply)."""
        return self._variants.get(kind)

    @cached_property
    def _variants(self) -> dict[str, list[np.ndarray]]:
        out = {"exact": self.truth}
        local = _local_only(self.unrolled.definitions)
        out["local_only"] = self._evaluate_with(local, self.truth_expr)
        if self.spec.cell == "elman" and self.spec.activation != "identity":
            plain = derive_unrolled(self.eff_spec.replace(activation="identity"), self.T)
            grad = plain.gradients[self.quantity.wrt]
            out["no_deriv"] = self._evaluate_with(plain.definitions, grad)
            both = _local_only(plain.definitions)
            out["no_deriv+local_only"] = self._evaluate_with(both, grad)
        if self.spec.head == "sigmoid":
            plain = derive_unrolled(self.eff_spec.replace(head="identity"), self.T)
            out["no_head_deriv"] = self._evaluate_with(plain.definitions,
                                                       plain.gradients[self.quantity.wrt])
        return out

    def _evaluate_with(self, definitions, expr) -> list[np.ndarray]:
        out = []
        for env in self.envs:
            local_env = dict(env)
            for name, value in definitions:
                if value is None:
                    local_env[name] = np.zeros(tuple(int(d) for d in name.shape))
            run_adjoints(definitions, local_env, "numpy")
            out.append(np.zeros(self.shape) if expr is None else
                       np.asarray(evaluate(expr, local_env, "numpy"), dtype=float))
        return out

    def carry_states(self) -> list[str]:
        """h_{k-1}, …, h_1 for the recursion the local-only slip drops."""
        last = self.T if self.quantity.loss_step is None else self.quantity.loss_step
        state = network(self.spec).states[0]
        return [f"{state}_{k}" for k in range(last - 1, 0, -1)]


def _local_only(definitions):
    """Adjoint definitions with every term that carries another adjoint removed."""
    out = []
    for name, value in definitions:
        parts = split_timed(name)
        if value is not None and parts and parts[0].startswith("delta"):
            terms = value.args if isinstance(value, MatAdd) else (value,)
            kept = [t for t in terms if not any(
                (p := split_timed(a)) and p[0].startswith("delta")
                for a in t.atoms(MatrixSymbol))]
            value = MatAdd(*kept) if len(kept) > 1 else (kept[0] if kept else None)
        out.append((name, value))
    return out
