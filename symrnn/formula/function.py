"""Check a user's Python (NumPy) BPTT function against the derivation engine.

The user declares how the function is called and what it returns in a
:class:`Conventions`; symrnn draws the same seeded instances as for formulas
(:class:`~symrnn.formula.problem.Problem`), calls the function on each, maps
its gradients back to symrnn's column-vector convention and compares.

Conventions (symrnn's own: column vectors, h_t = f(W_hh h_{t-1} + W_xh x_t + b_h),
L = Σ_t L_t, h_0 a constant input):

* ``vectors="column"``: per-step vectors are (n, 1); weights as in symrnn.
  ``vectors="row"``: per-step vectors are (1, n) with ``batch_axis=0`` (a batch
  of one) or (n,) with ``batch_axis=None``; the function computes
  h_t = f(h_{t-1} W_hh' + x_t W_xh' + b_h'), so each weight it receives (and
  each gradient it returns) is symrnn's transposed, and biases are rows.
* ``sequence="list"``: inputs/targets are lists of per-step arrays;
  ``"stacked"``: one array with time on axis 0.
* ``targets="vector"`` or ``"index"`` (class indices, for cross-entropy).
* ``time="sum"`` or ``"mean"``: the function's loss is Σ_t L_t or (1/T) Σ_t L_t.
* ``initial_state_constant``: when False, the function also returns ∂L/∂h_0
  (name ``"h_0"`` in ``returns``).
* ``params`` maps symrnn names (or aliases W, U, b, V, c) to keyword names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from symrnn.engine.expr import timed
from symrnn.errors import SpecError
from symrnn.formula.check import _counterexample, _pairs, correct_formula
from symrnn.formula.diagnose import diagnose
from symrnn.formula.problem import Problem, resolve_quantity
from symrnn.formula.verdict import Verdict
from symrnn.render.printing import latex
from symrnn.spec import Spec, check_T

__all__ = ["Conventions", "check_function"]

_KARPATHY = {"W_xh": "Wxh", "W_hh": "Whh", "W_hy": "Why", "b_h": "bh", "b_y": "by"}


@dataclass(frozen=True)
class Conventions:
    """How a user's BPTT function is called and what it returns (see the module doc)."""

    params: Mapping[str, str] = field(default_factory=lambda: dict(_KARPATHY))
    inputs: str = "inputs"
    targets: str = "targets"
    initial_state: str | None = "hprev"
    returns: tuple[str, ...] = ("loss", "W_xh", "W_hh", "W_hy", "b_h", "b_y", "_")
    vectors: str = "column"
    batch_axis: int | None = None
    sequence: str = "list"
    target_kind: str = "vector"
    time: str = "sum"
    initial_state_constant: bool = True

    def __post_init__(self) -> None:
        choices = {"vectors": ("column", "row"), "sequence": ("list", "stacked"),
                   "target_kind": ("vector", "index"), "time": ("sum", "mean"),
                   "batch_axis": (None, 0)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise SpecError(f"conventions.{name}: expected one of {allowed}, "
                                f"got {getattr(self, name)!r}")

    def vector_in(self, col: np.ndarray) -> np.ndarray:
        if self.vectors == "column":
            return col.copy()
        return col.T.copy() if self.batch_axis == 0 else col.ravel().copy()

    def param_in(self, name: str, value: np.ndarray) -> np.ndarray:
        if self.vectors == "column":
            return value.copy()
        if value.shape[1] == 1 and name.startswith(("b_", "h_", "c_")):
            return self.vector_in(value)
        return value.T.copy()

    def grad_out(self, name: str, value, shape: tuple[int, int]) -> np.ndarray:
        arr = np.asarray(value, dtype=float)
        if self.vectors == "row" and arr.ndim == 2:
            arr = arr.T
        if arr.size != shape[0] * shape[1]:
            raise SpecError(f"gradient for {name}: expected {shape[0] * shape[1]} entries "
                            f"(shape {shape}), got shape {arr.shape}")
        return arr.reshape(shape)


def _call(fn: Callable, conv: Conventions, env: dict, problem: Problem):
    program = problem.unrolled.program
    T, spec = problem.T, problem.spec
    kwargs = {}
    for ours, theirs in conv.params.items():
        name = resolve_quantity(spec, ours, None).wrt
        if name in program.params:
            kwargs[theirs] = conv.param_in(name, env[program.params[name]])
    xs = [conv.vector_in(env[timed("x", t, spec.input_size)]) for t in range(1, T + 1)]
    ys = []
    for t in range(1, T + 1):
        y = env.get(timed("y", t, spec.output_size))
        if y is None:
            ys.append(None)
        else:
            ys.append(int(np.argmax(y)) if conv.target_kind == "index" else conv.vector_in(y))
    if conv.sequence == "stacked":
        xs, ys = np.stack(xs), np.stack(ys)
    kwargs[conv.inputs], kwargs[conv.targets] = xs, ys
    if conv.initial_state is not None:
        if len(program.initial_states) != 1:
            raise SpecError(f"checking functions needs a one-state cell (elman, gru), "
                            f"got {spec.cell} with states {', '.join(program.initial_states)}")
        (h0,) = program.initial_states.values()
        kwargs[conv.initial_state] = conv.param_in("h_0", env[h0])
    out = fn(**kwargs)
    if not isinstance(out, tuple) or len(out) != len(conv.returns):
        size = len(out) if isinstance(out, tuple) else 1
        raise SpecError(f"the function should return a tuple {conv.returns}, got "
                        f"{type(out).__name__} of length {size}")
    return dict(zip(conv.returns, out, strict=True))


def check_function(fn: Callable, spec: Spec, *, wrt: str = "W_hh",
                   conventions: Conventions | None = None, T: int = 3, instances: int = 3,
                   seed: int = 0) -> Verdict:
    """Decide whether ``fn`` returns the gradient ∂L/∂wrt (under ``conventions``)."""
    conv = conventions or Conventions()
    quantity = resolve_quantity(spec, wrt, None)
    if quantity.wrt.startswith("h_") and conv.initial_state_constant:
        raise SpecError("the conventions say h_0 is a constant; set "
                        "initial_state_constant=False to check its gradient")
    names = {resolve_quantity(spec, r, None).wrt: r for r in conv.returns
             if r not in ("_", "loss", "h_last")}
    if quantity.wrt not in names:
        raise SpecError(f"the conventions' returns {conv.returns} name no gradient for "
                        f"{quantity.wrt}")
    problem = Problem(spec, quantity, check_T(T), instances=instances, seed=seed,
                      one_hot_targets=conv.target_kind == "index")
    factor = problem.T if conv.time == "mean" else 1
    values, notes = [], []
    for env in problem.envs:
        out = _call(fn, conv, env, problem)
        values.append(factor * conv.grad_out(quantity.wrt, out[names[quantity.wrt]],
                                             problem.shape))
        if "loss" in out:
            total = sum(float(env[s][0, 0]) for s in problem.unrolled.program.losses) / factor
            if not np.isclose(float(np.sum(out["loss"])), total, rtol=1e-7):
                notes.append(f"the returned loss {float(np.sum(out['loss'])):.6g} differs "
                             f"from L = {total:.6g}")
    base = {"quantity": str(quantity), "formula": f"{getattr(fn, '__name__', 'function')}(...)",
            "spec": spec.to_dict(), "T": problem.T, "correct": correct_formula(problem),
            "correct_latex": latex(problem.truth_expr), "quantity_latex": quantity.latex(),
            "seeds": problem.seeds, "notes": tuple(dict.fromkeys(notes))}
    bad = _counterexample(values, problem)
    if bad is None:
        return Verdict("correct", symbolic="not applicable (a function)", **base)
    return Verdict("wrong", counterexample=bad, diagnosis=_pairs(diagnose(None, problem, values)),
                   **base)
