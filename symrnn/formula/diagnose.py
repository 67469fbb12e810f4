"""The classic-slip catalogue: which mistake explains a wrong formula.

Two moves, combined:

* **fix the user's formula**: one mutation of its AST at a time — drop or add
  a transpose, swap ⊙ and the matrix product, flip a sign, shift one time
  index by ±1, widen a sum to its full range, drop a constant factor — plus
  transposing the whole result;
* **mutate the correct gradient**: the engine's gradient without the
  activation-derivative factors, with only the local term of each δ_t (no
  recursion through h_{t-1} … h_1), or both; with Wᵀ written W in the
  recursion; with each outer product's state one step off; with the recursion
  truncated after k steps (per loss term, or the backward pass over the last k
  steps only) (:mod:`symrnn.formula.problem`).  These need no AST, so a Python
  function's output (``formula`` None) gets all of them.

A (possibly fixed) formula that equals c × (a truth variant) on every
instance is explained by the fix's slip, the variant's slips, and, for c ≠ 1,
a sign flip (c = −1) or a wrong constant factor.  The explanation with the
fewest slips wins; a mutation that changes nothing numerically is skipped.

For a formula with several definitions (a gated cell's δ^{c}_t, δ^{f}_t …),
:func:`locate_definition` checks each defined quantity against the engine's own
adjoint of that quantity, step by step, and names the first wrong one.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from sympy import MatrixSymbol

from symrnn.engine.graph import network
from symrnn.errors import SymrnnError
from symrnn.formula import nodes as N
from symrnn.formula.budget import Budget, BudgetExceeded
from symrnn.formula.lower import lower
from symrnn.formula.problem import ATOL, RTOL, Problem
from symrnn.ops import derivative_text

__all__ = ["SLIPS", "Slip", "diagnose", "candidate_fixes", "relation", "locate_definition",
           "WRONG_DEFINITION"]

SLIPS: dict[str, str] = {
    "transpose": "a missing or extra transpose",
    "sign": "a sign flip",
    "activation_derivative": "a missing activation-derivative factor",
    "local_only": "only the local term at each step (the recursion is missing)",
    "off_by_one": "an off-by-one time index",
    "constant_factor": "a wrong constant factor",
    "hadamard_matmul": "⊙ written where a matrix product belongs, or the reverse",
    "sum_range": "a sum over the wrong range (truncation)",
}
"""Diagnosis classes → what the reader is told."""


@dataclass(frozen=True)
class Slip:
    kind: str
    detail: str

    @property
    def message(self) -> str:
        return f"{SLIPS[self.kind]}: {self.detail}"


def _swap(node: N.Prod) -> Iterator[tuple[Slip, N.Node]]:
    text = N.render(node)
    if node.op == "hadamard":
        yield (Slip("hadamard_matmul", f"'{text}' uses ⊙ where a matrix product belongs"),
               N.Prod("matmul", node.left, node.right))
    elif node.op == "matmul":
        yield (Slip("hadamard_matmul", f"'{text}' is a matrix product where ⊙ belongs"),
               N.Prod("hadamard", node.left, node.right))


def _fixes_at(node) -> Iterator[tuple[Slip, N.Node]]:
    """Single-node mutations of the user's formula, with the slip each one repairs."""
    text = N.render(node)
    if isinstance(node, N.Transpose):
        yield Slip("transpose", f"{text} has an extra transpose"), node.arg
    if isinstance(node, (N.Sym, N.Prod, N.Call)) and not isinstance(node, N.Num):
        yield Slip("transpose", f"{text} should be transposed"), N.Transpose(node)
    if isinstance(node, N.Prod):
        yield from _swap(node)
        if node.op == "div":
            yield Slip("constant_factor", f"the division in '{text}'"), node.left
    if isinstance(node, N.Neg):
        yield Slip("sign", f"the minus sign in '{text}'"), node.arg
    if isinstance(node, N.Sub):
        yield (Slip("sign", f"the sign of {N.render(node.right)} in '{text}'"),
               N.Add(node.left, node.right))
    if isinstance(node, N.Add):
        yield (Slip("sign", f"the sign of {N.render(node.right)} in '{text}'"),
               N.Sub(node.left, node.right))
    if isinstance(node, N.Num) and node.value not in (0, 1):
        yield Slip("constant_factor", f"the factor {node.value}"), N.Num(Fraction(1))
    if isinstance(node, N.Sym) and isinstance(node.index, N.Time):
        for by in (-1, 1):
            new = N.Sym(node.base, node.index.shifted(by))
            yield (Slip("off_by_one", f"{N.render(node)} where {N.render(new)} belongs"), new)
    if isinstance(node, N.Big):
        yield from _ranges(node)
    if isinstance(node, N.Sym) and node.base == "delta" and isinstance(node.index, N.Time):
        derivative = N.Call("f", N.Sym("a", node.index), derivative=True)
        yield (Slip("activation_derivative", f"{text} needs the factor f'(a_{{{node.index}}})"),
               N.Prod("hadamard", node, derivative))


def _ranges(node: N.Big) -> Iterator[tuple[Slip, N.Node]]:
    full_hi = N.Time("T") if node.hi.var in (None, "T") else N.Time(node.hi.var)
    lo_fixed, hi_fixed = N.Time(None, 1), full_hi
    for lo, hi in ((lo_fixed, node.hi), (node.lo, hi_fixed), (lo_fixed, hi_fixed)):
        if (lo, hi) != (node.lo, node.hi):
            yield (Slip("sum_range", f"\\{node.kind} over {node.var} = {node.lo}..{node.hi} "
                        f"should run over {lo}..{hi}"),
                   N.Big(node.kind, node.var, lo, hi, node.body))


def candidate_fixes(formula: N.Formula) -> Iterator[tuple[Slip, N.Formula]]:
    for path, node in N.walk(formula):
        if not path:
            continue
        for slip, new in _fixes_at(node):
            yield slip, N.replace_at(formula, path, new)


def relation(u: list[np.ndarray], v: list[np.ndarray]) -> float | None:
    """c with u = c v on every instance (entrywise, float64 tolerance), else None."""
    if any(a.shape != b.shape for a, b in zip(u, v, strict=True)):
        return None
    uu = np.concatenate([a.ravel() for a in u])
    vv = np.concatenate([b.ravel() for b in v])
    scale = max(np.abs(vv).max(initial=0.0), np.abs(uu).max(initial=0.0), 1e-300)
    if np.abs(vv).max(initial=0.0) < 1e-12 * scale:
        return 1.0 if np.abs(uu).max(initial=0.0) < 1e-12 else None
    c = float(uu @ vv / (vv @ vv))
    if np.allclose(uu, c * vv, rtol=RTOL, atol=ATOL * scale) and abs(c) > 1e-9:
        return c
    return None


def _factor_slips(c: float, T: int) -> list[Slip]:
    if np.isclose(c, 1.0, rtol=RTOL):
        return []
    slips = []
    if c < 0:
        slips.append(Slip("sign", "the whole formula has the opposite sign"))
    mag = abs(c)
    if not np.isclose(mag, 1.0, rtol=RTOL):
        named = {1 / T: "1/T", float(T): "T", 0.5: "1/2", 2.0: "2"}
        label = next((v for k, v in named.items() if np.isclose(mag, k, rtol=RTOL)),
                     str(Fraction(mag).limit_denominator(1000)))
        slips.append(Slip("constant_factor", f"the formula is {label} times the gradient"))
    return slips


def _variant_slips(kind: str, problem: Problem) -> list[Slip]:
    slips = []
    if "no_deriv" in kind:
        act = problem.spec.activation
        slips.append(Slip("activation_derivative",
                          f"the factor {act}'(a_t) = "
                          f"{derivative_text(act)} (h = h_t) is missing"))
    if kind == "no_head_deriv":
        slips.append(Slip("activation_derivative", "the output head's factor sigmoid'(z_t) = "
                          "yhat_t * (1 - yhat_t) is missing from e_t"))
    if "local_only" in kind:
        states = problem.carry_states()
        through = " and ".join([", ".join(states[:-1]), states[-1]] if len(states) > 1
                               else states) or "earlier states"
        slips.append(Slip("local_only", f"the recursion through {through} is missing"))
    name, _, arg = kind.partition(":")
    if name in _PARAMETRISED:
        slips.append(_PARAMETRISED[name](arg, problem))
    return slips


def _shifted(by: str, problem: Problem) -> Slip:
    when, example = ("later", "h_t") if by == "+1" else ("earlier", "h_{t-2}")
    return Slip("off_by_one", f"each outer product takes its transposed state (or input) one "
                f"step {when}: {example} where h_{{t-1}} belongs")


_PARAMETRISED = {
    "recursion_transposed": lambda w, p: Slip(
        "transpose", f"the recursion uses {w} where {w}^T belongs (δ_t = ... + "
        f"{w} (...) instead of {w}^T (...))"),
    "shifted": _shifted,
    "truncated": lambda k, p: Slip(
        "sum_range", f"each loss term's recursion is cut after {k} steps (truncated BPTT); "
        f"the full gradient runs back to step 1"),
    "last": lambda k, p: Slip(
        "sum_range", f"the backward pass covers only the last {k} of {p.T} steps "
        f"(t = {p.T - int(k) + 1}..{p.T})"),
}
"""Variant kind (before the colon) → the slip, given the text after it."""


def _candidates(formula: N.Formula | None, problem: Problem, values, budget: Budget,
                progress: list[int]):
    yield [], values
    transposed = [a.T for a in values]
    yield [Slip("transpose", "the whole result is transposed")], transposed
    if formula is None:
        return
    fixes = list(candidate_fixes(formula))
    progress[1] = len(fixes)
    for slip, fixed in fixes:
        budget.check()
        progress[0] += 1
        try:
            lowered = lower(fixed, problem.scope, budget)
            fixed_values = problem.values(lowered.expr)
        except BudgetExceeded:
            raise
        except (SymrnnError, KeyError):
            continue
        if all(a.shape == b.shape and np.allclose(a, b, rtol=1e-12, atol=1e-14)
               for a, b in zip(fixed_values, values, strict=True)):
            continue
        yield [slip], fixed_values


def diagnose(formula: N.Formula | None, problem: Problem, values: list[np.ndarray], *,
             budget: Budget | None = None,
             skipped: list[str] | None = None) -> tuple[Slip, ...]:
    """The smallest set of classic slips that explains ``values`` (empty: none found).

    With ``formula`` None (a Python function's output) only whole-result slips
    and the truth variants are tried.  With a ``budget`` the search stops
    between candidates when it runs out; what it did not try is appended to
    ``skipped`` and the best explanation found so far is returned.
    """
    budget = Budget(None) if budget is None else budget
    best: list[Slip] | None = None
    progress = [0, 0]
    try:
        budget.check()
        variants = list(problem.variants(budget).items())
        for fix_slips, fixed in _candidates(formula, problem, values, budget, progress):
            for kind, truth in variants:
                if truth is None:
                    continue
                c = relation(fixed, truth)
                if c is None:
                    continue
                slips = fix_slips + _variant_slips(kind, problem) + _factor_slips(c, problem.T)
                if slips and (best is None or len(slips) < len(best)):
                    best = slips
            if best is not None and len(best) == 1:
                break
    except BudgetExceeded:
        if skipped is not None:
            tried = (f"after {progress[0]} of {progress[1]} candidate fixes"
                     if progress[1] else "before trying any candidate")
            skipped.append(f"diagnosis stopped {tried}: {budget.reason}")
    return tuple(best or ())


# ------------------------------------------------------- the first wrong definition

WRONG_DEFINITION = "wrong_definition"
"""Diagnosis class of :func:`locate_definition`: where the formula goes wrong, not a
slip of the catalogue (so not in :data:`SLIPS`)."""

_ADJOINT = re.compile(r"^delta(?:\^\{(\w+)\})?$")
"""δ (the first state's adjoint) or δ^{q} (the adjoint of the quantity q_t)."""


def _meanings(base: str, t: int, problem: Problem) -> list[tuple[str, object]]:
    """(label, expression; None: zero) for what ``base_t`` may denote: the engine's
    symbol of that name, and for δ / δ^{q} the total ∂L/∂q_t and ∂L/∂(q_t's
    activation argument)."""
    out: list[tuple[str, object]] = []
    name = f"{base}_{{{t}}}"
    try:
        named = lower(N.Formula((), None, N.Sym(base, N.Time(None, t))), problem.scope).expr
    except SymrnnError:
        named = None
    if isinstance(named, MatrixSymbol) or name in problem.scope.adjoints:
        out.append((f"the engine's {base}_t", named))
    match = _ADJOINT.match(base)
    if match:
        q = match[1] or network(problem.spec).states[0]
        total, pre = problem.quantity_adjoints
        quantity = problem.scope.symbols().get(f"{q}_{{{t}}}")
        out += [(label, e) for label, e in ((f"dL/d{q}_t", total.get(quantity)),
                                            (f"dL/d(the argument of {q}_t's activation)",
                                             pre.get(quantity))) if e is not None]
    return out


def _steps_matched(formula: N.Formula, base: str, problem: Problem, budget: Budget,
                   scope=None) -> dict[int, int | None] | None:
    """t (T first) → index of the meaning the formula's base_t equals (None: none);
    None when the engine has no meaning for ``base``.  ``scope`` overrides what the
    formula's other quantities read (default: the problem's)."""
    matched: dict[int, int | None] = {}
    for t in range(problem.T, 0, -1):
        budget.check()
        meanings = [problem.values(e) for _, e in _meanings(base, t, problem)]
        if not meanings:
            return None
        body = dataclasses.replace(formula, body=N.Sym(base, N.Time(None, t)))
        try:
            values = problem.values(lower(body, scope or problem.scope, budget).expr)
        except BudgetExceeded:
            raise
        except SymrnnError:
            values = None
        matched[t] = next((i for i, m in enumerate(meanings)
                           if values is not None and _close(values, m)), None)
    return matched


def _close(u, v) -> bool:
    return all(a.shape == b.shape and np.allclose(a, b, rtol=RTOL, atol=ATOL)
               for a, b in zip(u, v, strict=True))


def locate_definition(formula: N.Formula, problem: Problem, budget: Budget | None = None,
                      skipped: list[str] | None = None) -> tuple[str, str] | None:
    """(WRONG_DEFINITION, message) naming the first wrong definition, or None.

    Each defined quantity (δ_t, δ^{c}_t, δ^{f}_t, e_t …) is evaluated from the
    formula's own definitions at every step and compared with what the engine
    says it may be (:func:`_meanings`).  The backward pass runs t = T … 1, so the
    culprit is wrong at the latest step where anything is wrong, and reads no
    other wrong quantity of that step.  Then the others are checked again
    reading the engine's value of the culprit: if all are right, it is the only one.
    """
    budget = Budget(None) if budget is None else budget
    order = list(dict.fromkeys(d.base for d in formula.definitions))
    try:
        found = {b: m for b in order if (m := _steps_matched(formula, b, problem, budget))}
        wrong = {b: [t for t, i in m.items() if i is None] for b, m in found.items()}
        wrong = {b: steps for b, steps in wrong.items() if steps}
        if not wrong:
            return None
        latest = max(steps[0] for steps in wrong.values())
        at_latest = [b for b in order if b in wrong and wrong[b][0] == latest]
        culprit = next((b for b in at_latest if not _uses_same_step(formula, b, at_latest)),
                       at_latest[0])
        alone = _alone(formula, problem, budget, culprit, [b for b in found if b != culprit])
    except BudgetExceeded:
        if skipped is not None:
            skipped.append(f"locating the wrong definition stopped: {budget.reason}")
        return None
    return WRONG_DEFINITION, _located_message(formula, order, wrong, culprit, alone)


def _uses_same_step(formula: N.Formula, base: str, others: list[str]) -> bool:
    """Whether a definition of ``base`` reads another of ``others`` at its own step."""
    for d in formula.definitions:
        if d.base != base:
            continue
        for _, node in N.walk(d.rhs):
            if isinstance(node, N.Sym) and node.base in others and node.base != base and \
                    node.index == d.time:
                return True
    return False


def _alone(formula: N.Formula, problem: Problem, budget: Budget, culprit: str,
           others: list[str]) -> str | None:
    """The meaning of the culprit (label) under which, read at the engine's value,
    every other definition is right; None if there is none."""
    rest = dataclasses.replace(formula, definitions=tuple(
        d for d in formula.definitions if d.base != culprit))
    labels = dict.fromkeys(label for t in range(1, problem.T + 1)
                           for label, _ in _meanings(culprit, t, problem))
    for label in labels:
        adjoints = dict(problem.scope.adjoints)
        for t in range(1, problem.T + 1):
            adjoints[f"{culprit}_{{{t}}}"] = dict(_meanings(culprit, t, problem)).get(label)
        scope = dataclasses.replace(problem.scope, adjoints=adjoints)
        if all(None not in _steps_matched(rest, b, problem, budget, scope).values()
               for b in others):
            return label
    return None


def _located_message(formula: N.Formula, order: list[str], wrong: dict, culprit: str,
                     alone: str | None) -> str:
    first = next(d for d in formula.definitions if d.base == culprit)
    number = order.index(culprit) + 1
    label = N.render(N.Sym(culprit, first.time))
    steps = ", ".join(str(t) for t in wrong[culprit])
    message = f"{label} (definition {number}) is wrong at t = {steps}"
    if alone is not None:
        others = "the definitions before it are right" if number == len(order) else \
            "the other definitions are right"
        return f"{message}; {others} (checked with {label} taken as {alone})"
    also = [str(order.index(b) + 1) for b in order if b in wrong and b != culprit]
    return message + (f"; definition{'s' if len(also) > 1 else ''} {', '.join(also)} "
                      "also differ" if also else "")
