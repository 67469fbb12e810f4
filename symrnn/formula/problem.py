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
ŷ ⊙ (1 − ŷ) dropped from e_t); and, needing no AST (a Python function's
output is only numbers), ``recursion_transposed:W`` (every Wᵀ in the adjoint
recursion written W, for a square W), ``shifted:±1`` (the transposed state or
input of each outer product taken one step later or earlier: δ_t h_tᵀ for
δ_t h_{t-1}ᵀ), ``truncated:k`` (each loss term's recursion cut after k steps,
truncated BPTT) and ``last:k`` (the backward pass run over the last k steps only).

:meth:`Problem.quantity_adjoints` is the engine's own adjoint of every forward
quantity (a gate f_t, the cell state c_t, …) and of each activation's argument,
read off the reverse pass's recorded steps: what a user's definitions of
δ^{f}_t, δ^{c}_t … are checked against.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from sympy import MatAdd, MatrixSymbol, Transpose
from sympy.matrices.expressions.special import ZeroMatrix

from symrnn.checks.evaluate import evaluate, run_adjoints, run_forward
from symrnn.engine.derive import Unrolled, derive_unrolled
from symrnn.engine.expr import Apply, add, split_timed, timed
from symrnn.engine.graph import network
from symrnn.errors import FormulaError, SpecError
from symrnn.formula.lower import Scope, resolve_param
from symrnn.spec import Spec, check_T

__all__ = ["Quantity", "Problem", "VARIANTS", "RTOL", "ATOL"]

RTOL, ATOL = 1e-7, 1e-9
"""float64 tolerances: formulas and engine differ only by rounding (≈1e-15)."""

VARIANTS = ("exact", "no_deriv", "local_only", "no_deriv+local_only", "no_head_deriv")
"""The variants without a parameter (see :meth:`Problem.variants` for all)."""
MAX_TRUNCATION = 4
"""Truncation variants (``truncated:k``, ``last:k``) are tried for k up to this."""
MAX_TRUNCATED_T = 16
"""Per-loss truncation (T reverse passes per instance) is tried up to this T."""


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
                 seed: int = 0, one_hot_targets: bool = False, one_hot_inputs: bool = False,
                 initial_values: dict | None = None):
        if not spec.is_concrete:
            raise SpecError("checking needs concrete sizes, got symbolic ones "
                            f"(H={spec.hidden_size}, D={spec.input_size}, O={spec.output_size})")
        self.spec, self.quantity, self.seed = spec, quantity, seed
        self.one_hot = one_hot_targets
        self.one_hot_inputs = one_hot_inputs
        self.initial_values = dict(initial_values or {})
        """state name (h, c, h_l1, …) → its fixed (H, 1) initial value (drawn when absent)."""
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
            elif parts[0] == "x" and self.one_hot_inputs:
                env[sym] = np.eye(shape[0])[:, [int(rng.integers(shape[0]))]]
            elif parts[0] == "y" and self.one_hot:
                env[sym] = np.eye(shape[0])[:, [int(rng.integers(shape[0]))]]
            elif parts[0] == "y" and self.spec.loss == "cross_entropy":
                env[sym] = rng.dirichlet(np.ones(shape[0])).reshape(shape)
            else:
                env[sym] = rng.normal(0.0, 1.0, shape)
        for state, value in self.initial_values.items():
            env[program.initial_states[state]] = np.array(value, dtype=float).reshape(-1, 1)
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
        return self.variants().get(kind)

    def variants(self, budget=None) -> dict[str, list[np.ndarray]]:
        """Every truth variant that applies: kind → values on the instances.

        Computed once, in the order of :meth:`_makers`; with a ``budget``
        (:class:`~symrnn.formula.budget.Budget`) checked between variants, so a long
        problem raises BudgetExceeded with the ones done so far kept for next time.
        """
        for kind, make in self._maker_list:
            if kind in self._variant_cache:
                continue
            if budget is not None:
                budget.check()
            values = make()
            self._variant_cache[kind] = None if values is None or (
                kind != "exact" and _same(values, self.truth)) else values
        return {k: v for k, v in self._variant_cache.items() if v is not None}

    @cached_property
    def _variant_cache(self) -> dict:
        return {}

    @cached_property
    def _maker_list(self) -> list:
        return list(self._makers())

    def _makers(self):
        """(kind, thunk) for each variant; truncations only for k ≤ MAX_TRUNCATION."""
        defs, grad = self.unrolled.definitions, self.truth_expr
        yield "exact", lambda: self.truth
        yield "local_only", lambda: self._evaluate_with(_local_only(defs), grad)
        yield from self._plain_variants()
        for name, flipped in _recursion_transposed(defs, self.unrolled.program.params):
            yield f"recursion_transposed:{name}", \
                lambda flipped=flipped: self._evaluate_with(flipped, grad)
        for by in (1, -1):
            shifted = _shift_outer(grad, by, self.scope.symbols())
            if shifted is not None:
                yield f"shifted:{by:+d}", lambda shifted=shifted: self.values(shifted)
        for k in range(2, min(self.T, MAX_TRUNCATION + 1) if self.T <= MAX_TRUNCATED_T else 2):
            yield f"truncated:{k}", lambda k=k: self._truncated(k)
        for k in range(1, min(self.T, MAX_TRUNCATION + 1)):
            kept = _masked(defs, lambda base, t, k=k: t > self.T - k)
            yield f"last:{k}", lambda kept=kept: self._evaluate_with(kept, grad)

    def _plain_variants(self):
        """The engine for the same spec with an identity activation (head) on the real pass."""
        wrt = self.quantity.wrt
        if self.spec.cell == "elman" and self.spec.activation != "identity":
            plain = self._derived_with("activation")
            yield "no_deriv", lambda: self._evaluate_with(plain().definitions,
                                                          plain().gradients[wrt])
            yield "no_deriv+local_only", lambda: self._evaluate_with(
                _local_only(plain().definitions), plain().gradients[wrt])
        if self.spec.head == "sigmoid":
            head = self._derived_with("head")
            yield "no_head_deriv", lambda: self._evaluate_with(head().definitions,
                                                               head().gradients[wrt])

    def _derived_with(self, field: str):
        """A thunk: the engine for the same spec with ``field`` set to identity (once)."""
        cache: list[Unrolled] = []

        def derived() -> Unrolled:
            if not cache:
                cache.append(derive_unrolled(self.eff_spec.replace(**{field: "identity"}),
                                             self.T))
            return cache[0]

        return derived

    def _truncated(self, k: int) -> list[np.ndarray]:
        """Σ_s the gradient of L_s with its recursion cut after k steps (δ_t = 0 for t ≤ s − k)."""
        total = [np.zeros(self.shape) for _ in self.envs]
        for s in range(1, self.T + 1):
            kept = _masked(self.unrolled.definitions,
                           lambda base, t, s=s: t == s if base == "e" else s - k < t <= s)
            for acc, part in zip(total, self._evaluate_with(kept, self.truth_expr), strict=True):
                acc += part
        return total

    @cached_property
    def quantity_adjoints(self) -> tuple[dict, dict]:
        """(symbol → ∂L/∂symbol, lhs → ∂L/∂(its activation's argument)), from the engine.

        Summed over the recorded rule applications, so each is the total
        derivative (for c_t: the carry and what h_t = o_t ⊙ tanh(c_t) sends back).
        """
        applied = {eq.rhs: eq.lhs for eq in self.unrolled.program.equations
                   if isinstance(eq.rhs, Apply)}
        total: dict = {}
        pre: dict = {}
        for step in self.unrolled.steps:
            for child, adj in step.contributions:
                if isinstance(child, MatrixSymbol):
                    total.setdefault(child, []).append(adj)
            if applied.get(step.node) == step.target:
                pre[step.target] = add(*(adj for _, adj in step.contributions))
        return {sym: add(*terms) for sym, terms in total.items()}, pre

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


def _same(u: list[np.ndarray], v: list[np.ndarray]) -> bool:
    return all(a.shape == b.shape and np.allclose(a, b, rtol=1e-12, atol=1e-14)
               for a, b in zip(u, v, strict=True))


def _masked(definitions, keep):
    """Adjoint definitions with every named adjoint for which ``keep(base, t)`` is false
    set to zero (bases: ``e`` for output errors, ``delta…`` for the recursion)."""
    out = []
    for name, value in definitions:
        parts = split_timed(name)
        if parts and value is not None and not keep("e" if parts[0] == "e" else "delta",
                                                    int(parts[1])):
            value = None
        out.append((name, value))
    return out


def _recursion_transposed(definitions, params: dict):
    """(W, definitions with Wᵀ written W) for each square W transposed in the recursion."""
    for name, W in params.items():
        if W.shape[0] != W.shape[1] or W.shape[0] == 1:
            continue
        flipped = [(n, None if v is None else v.xreplace({Transpose(W): W}))
                   for n, v in definitions]
        if any(a[1] != b[1] for a, b in zip(flipped, definitions, strict=True)):
            yield name, flipped


def _shift_outer(grad, by: int, symbols: dict):
    """``grad`` with each transposed per-step factor s_kᵀ read as s_{k+by}ᵀ (zero where
    that step does not exist); None when nothing shifts."""
    if grad is None:
        return None
    swap = {}
    for node in grad.atoms(Transpose):
        parts = split_timed(node.arg) if isinstance(node.arg, MatrixSymbol) else None
        if parts is None or parts[0] == "e" or parts[0].startswith("delta"):
            continue
        new = timed(parts[0], int(parts[1]) + by, node.arg.shape[0])
        swap[node] = Transpose(new) if new.name in symbols else ZeroMatrix(*node.shape)
    return grad.xreplace(swap) if swap else None


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
