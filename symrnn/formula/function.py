"""Check a user's Python (NumPy) BPTT function against the derivation engine.

The user declares how the function is called and what it returns in a
:class:`~symrnn.formula.conventions.Conventions` (layouts, inputs, initial states,
batches, means, truncation, clipping, signs, float32, stacked gate weights);
symrnn draws the same seeded instances as for formulas
(:class:`~symrnn.formula.problem.Problem`), calls the function on each, maps its
gradients back to symrnn's convention (column vectors, L = Σ_t L_t summed over the
batch) and compares them with the engine's.

Every cell and architecture the engine derives (elman, lstm, gru, gru_v1; stacked;
bidirectional), topologies many_to_many and many_to_one.  Instances: instance k
calls the function once with ``batch`` sequences, those of Problem seeds
``seed + k·B … seed + k·B + B − 1``, sharing the parameters of the first.  The
correct gradient is the engine's unrolled gradient (one sequence, full BPTT, no
clipping; then the diagnosis runs too), otherwise the generated NumPy module of the
same derivation (:func:`symrnn.codegen.compile`), lowered with the function's
truncation and clipping, summed over the batch.  A mean over time or batch scales
the function's gradients by T·B back to the sum, and clipping thresholds by the same
factor (clip(g/f) = clip_{f·G}(g)/f).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from symrnn.engine.expr import timed
from symrnn.engine.graph import Network, network
from symrnn.errors import SpecError
from symrnn.formula.bindings import Binding, bind, split_blocks, stack_value
from symrnn.formula.check import _pairs, correct_formula
from symrnn.formula.conventions import Conventions
from symrnn.formula.diagnose import diagnose
from symrnn.formula.instance import counterexample_of, worst_deviation
from symrnn.formula.problem import Problem, resolve_quantity
from symrnn.formula.verdict import Counterexample, Verdict
from symrnn.render.printing import latex
from symrnn.spec import Spec, check_T

__all__ = ["Conventions", "check_function", "returned_gradients"]

_IGNORED = ("_", "loss", "h_last")
"""Entries of ``returns`` that are not gradients."""


@dataclass(frozen=True)
class _Setup:
    """A spec and conventions resolved once: what the function takes and returns."""

    net: Network
    conv: Conventions
    params: tuple[tuple[str, Binding], ...]
    """(keyword, binding) for every parameter the function takes."""
    returned: dict[int, Binding]
    """position in the returned tuple → the gradient it holds."""
    states: dict[str, str]
    """free initial state → the function's keyword."""

    @classmethod
    def of(cls, spec: Spec, conv: Conventions) -> _Setup:
        net = network(spec)
        params = tuple((kw, bind(net, name, conv.gate_order)) for name, kw in
                       conv.params.items())
        returned = {i: bind(net, name, conv.gate_order) for i, name in
                    enumerate(conv.returns) if name not in _IGNORED}
        free = tuple(s for s in net.initial_states if s not in net.contexts)
        return cls(net, conv, params, returned, conv.state_keywords(free))

    def holder(self, wrt: str) -> tuple[int, Binding]:
        for i, binding in self.returned.items():
            if wrt in binding.members:
                return i, binding
        raise SpecError(f"the conventions' returns {self.conv.returns} name no gradient for "
                        f"{wrt}")


def _spec_for(spec: Spec, conv: Conventions) -> Spec:
    if conv.biases is not None:
        spec = spec.replace(layout="torch" if conv.biases == "two" else "notes")
    if spec.topology not in ("many_to_many", "many_to_one"):
        raise SpecError(f"checking functions takes topologies many_to_many and many_to_one "
                        f"(inputs x_1..x_T, a target per loss step), got {spec.topology!r}")
    return spec


def returned_gradients(spec: Spec, conventions: Conventions | None = None) -> list[str]:
    """The parameters whose gradients the function returns (a stack: each gate's), and the
    initial states when ``initial_state_constant`` is False."""
    conv = conventions or Conventions()
    setup = _Setup.of(_spec_for(spec, conv), conv)
    names = [m for b in setup.returned.values() for m in b.members if m is not None]
    return [n for n in dict.fromkeys(names)
            if n in setup.net.params or not conv.initial_state_constant]


def _lookup(problem: Problem, env: dict) -> Callable[[str], np.ndarray]:
    program = problem.unrolled.program
    table = {**program.params, **{f"{s}_0": v for s, v in program.initial_states.items()}}
    return lambda name: env[table[name]]


def _per_step(conv: Conventions, members: list[dict], base: str, size: int, T: int,
              kind: str) -> list:
    out = []
    for t in range(1, T + 1):
        columns = [m.get(timed(base, t, size)) for m in members]
        if columns[0] is None:
            out.append(None)
        else:
            out.append(conv.index_in(columns) if kind == "index" else conv.vector_in(columns))
    return out


def _sequences(setup: _Setup, members: list[dict], T: int) -> tuple:
    conv, spec = setup.conv, setup.net.spec
    xs = _per_step(conv, members, "x", spec.input_size, T, conv.input_kind)
    ys = _per_step(conv, members, "y", spec.output_size, T, conv.target_kind)
    if conv.sequence != "list" and spec.topology == "many_to_one":
        return conv.sequence_in(xs), ys[-1]
    return conv.sequence_in(xs), conv.sequence_in(ys)


def _call(fn: Callable, setup: _Setup, members: list[dict], problem: Problem) -> tuple:
    """Call the function on one instance (B sequences); its returned tuple."""
    conv, program = setup.conv, problem.unrolled.program
    lookup = _lookup(problem, members[0])
    kwargs = {kw: conv.param_in(stack_value(b.members, lookup), b.is_bias)
              for kw, b in setup.params}
    kwargs[conv.inputs], kwargs[conv.targets] = _sequences(setup, members, problem.T)
    for state, kw in setup.states.items():
        kwargs[kw] = conv.vector_in([m[program.initial_states[state]] for m in members])
    try:
        out = fn(**kwargs)
    except Exception as err:  # the user's code failed on what the conventions pass it
        raise SpecError(f"the function raised {type(err).__name__}: {err}; it was called "
                        f"with {_shapes(kwargs)} (declare the conventions it expects: "
                        "vectors, sequence, input_kind, initial_state, ...)") from err
    if not isinstance(out, tuple) or len(out) != len(conv.returns):
        size = len(out) if isinstance(out, tuple) else 1
        raise SpecError(f"the function should return a tuple {conv.returns}, got "
                        f"{type(out).__name__} of length {size}")
    return out


def _shapes(kwargs: dict) -> str:
    def shape(value) -> str:
        if isinstance(value, list):
            return f"a list of {len(value)} " + (shape(value[0]) if value else "")
        if isinstance(value, np.ndarray):
            return f"{value.dtype} {value.shape}"
        return type(value).__name__
    return ", ".join(f"{k}={shape(v)}" for k, v in kwargs.items())


def _claimed(setup: _Setup, out: tuple, wrt: str, shape: tuple[int, int]) -> np.ndarray:
    """The returned gradient of ``wrt``, in symrnn's convention (the sum over t and b)."""
    i, binding = setup.holder(wrt)
    rows = shape[0] * len(binding.members)
    stacked = setup.conv.grad_out(binding.written, out[i], (rows, shape[1]))
    return split_blocks(binding.members, stacked)[wrt] / setup.conv.sign


class _Oracle:
    """The engine's loss and gradient for an instance, under the function's conventions."""

    def __init__(self, setup: _Setup, problem: Problem):
        self.setup, self.problem = setup, problem
        conv = setup.conv
        self.module = None
        if not conv.plain:
            from symrnn.codegen import compile as compile_module

            clip, clip_value = conv.clip_thresholds(problem.T)
            self.module = compile_module(problem.spec, "numpy", conv.tbptt, clip,
                                         clip_value=clip_value)

    def __call__(self, k: int, members: list[dict]) -> tuple[float, np.ndarray]:
        """(L, ∂L/∂wrt) for instance k, summed over time and batch."""
        problem = self.problem
        if self.module is None:
            env = members[0]
            loss = sum(float(env[s][0, 0]) for s in problem.unrolled.program.losses)
            return loss, problem.truth[k]
        loss, grads = self._module_grads(members)
        return loss, grads[problem.quantity.wrt]

    def _module_grads(self, members: list[dict]) -> tuple[float, dict]:
        module, net, problem = self.module, self.setup.net, self.problem
        program, T = problem.unrolled.program, problem.T
        lookup = _lookup(problem, members[0])
        params = {name: stack_value(net.stacks.get(name, (name,)), lookup)
                  .reshape(module.PARAM_SHAPES[name]) for name in module.PARAM_NAMES}
        spec = net.spec
        x = np.stack([np.hstack([m[timed("x", t, spec.input_size)] for t in range(1, T + 1)]).T
                      for m in members])
        steps = range(1, T + 1) if spec.topology == "many_to_many" else (T,)
        y = np.stack([np.hstack([m[timed("y", t, spec.output_size)] for t in steps]).T
                      for m in members])
        y = y if spec.topology == "many_to_many" else y[:, 0]
        states = [np.stack([m[program.initial_states[s]].ravel() for m in members])
                  for s in module.STATES]
        loss, grads = module.loss_and_grad(params, x, y, *states)
        out = {}
        for name in module.PARAM_NAMES:
            members_of = net.stacks.get(name, (name,))
            blocks = split_blocks(members_of, np.asarray(grads[name]))
            out |= {m: g.reshape(program.params[m].shape) for m, g in blocks.items()}
        return float(loss), out


def _mismatch(values, truths, problem: Problem, conv: Conventions) -> Counterexample | None:
    """The largest deviation over the instances beyond the conventions' (rtol, atol); for
    one sequence it carries the whole instance (:func:`~symrnn.formula.instance.
    counterexample_of`), otherwise the seed of the instance's first sequence."""
    worst = worst_deviation(values, truths, *conv.tolerance)
    if worst is None:
        return None
    k, (i, j) = worst
    if conv.plain:
        return counterexample_of(problem, k, (i, j), values[k])
    return Counterexample(problem.seeds[k * conv.batch], (i, j), float(values[k][i, j]),
                          float(truths[k][i, j]))


def _problem(spec: Spec, conv: Conventions, wrt: str, T: int, instances: int,
             seed: int) -> Problem:
    quantity = resolve_quantity(spec, wrt, None)
    if quantity.wrt.endswith("_0") and quantity.wrt not in network(spec).params:
        if conv.initial_state_constant:
            raise SpecError("the conventions say h_0 is a constant; set "
                            "initial_state_constant=False to check its gradient")
        if not conv.plain:
            raise SpecError("an initial state's gradient is checked for one sequence, "
                            "full BPTT, no clipping (conventions.batch = 1)")
    net = network(spec)
    free = tuple(s for s in net.initial_states if s not in net.contexts)
    return Problem(spec, quantity, check_T(T), instances=instances * conv.batch, seed=seed,
                   one_hot_targets=conv.target_kind == "index",
                   one_hot_inputs=conv.input_kind != "vector",
                   initial_values=conv.initial_values(free, int(spec.hidden_size)))


def check_function(fn: Callable, spec: Spec, *, wrt: str = "W_hh",
                   conventions: Conventions | None = None, T: int = 3, instances: int = 3,
                   seed: int = 0) -> Verdict:
    """Decide whether ``fn`` returns the gradient ∂L/∂wrt (under ``conventions``).

    ``wrt``: any parameter of the spec (per-gate names such as W_xf, the aliases), or
    h_0 with ``initial_state_constant=False``.  Compared with rtol 1e-7 (float64) or
    rtol 1e-4, atol 1e-5 (``dtype="float32"``; see
    :data:`~symrnn.formula.conventions.TOLERANCES`).
    """
    conv = conventions or Conventions()
    spec = _spec_for(spec, conv)
    setup = _Setup.of(spec, conv)
    problem = _problem(spec, conv, wrt, T, instances, seed)
    setup.holder(problem.quantity.wrt)
    oracle, factor, B = _Oracle(setup, problem), conv.loss_factor(problem.T), conv.batch
    values, truths, notes = [], [], list(conv.describe())
    for k in range(instances):
        members = problem.envs[k * B:(k + 1) * B]
        out = _call(fn, setup, members, problem)
        values.append(factor * _claimed(setup, out, problem.quantity.wrt, problem.shape))
        loss, truth = oracle(k, members)
        truths.append(truth)
        notes += _loss_note(conv, out, loss / factor)
    seeds = problem.seeds[::B]
    base = {"quantity": str(problem.quantity),
            "formula": f"{getattr(fn, '__name__', 'function')}(...)",
            "spec": spec.to_dict(), "T": problem.T, "correct": correct_formula(problem),
            "correct_latex": latex(problem.truth_expr), "quantity_latex":
            problem.quantity.latex(), "seeds": seeds}
    bad = _mismatch(values, truths, problem, conv)
    if bad is None:
        return Verdict("correct", symbolic="not applicable (a function)",
                       notes=tuple(dict.fromkeys(notes)), **base)
    notes += _hints(setup)
    slips = diagnose(None, problem, values) if conv.plain else ()
    return Verdict("wrong", counterexample=bad, diagnosis=_pairs(slips),
                   notes=tuple(dict.fromkeys(notes)), **base)


def _loss_note(conv: Conventions, out: tuple, expected: float) -> list[str]:
    if "loss" not in conv.returns:
        return []
    returned = float(np.sum(out[conv.returns.index("loss")]))
    rtol = conv.tolerance[0]
    if np.isclose(returned, expected, rtol=rtol):
        return []
    return [f"the returned loss {returned:.6g} differs from L = {expected:.6g}"]


def _hints(setup: _Setup) -> list[str]:
    """What a wrong verdict may come from that the conventions could declare."""
    conv = setup.conv
    if conv.initial_state is None and isinstance(conv.initial_value, str) \
            and conv.initial_value == "random":
        return ["the function takes no initial state, so the instances' h_0 was drawn at "
                "random; if the function starts from zeros, declare initial_value='zero'"]
    return []
