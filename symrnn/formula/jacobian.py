"""Claims about state Jacobians and adjoints, checked like gradients.

The left-hand side says what is claimed; the right-hand side is any formula:

==============================================================  ==========================
``\\frac{\\partial h_t}{\\partial h_{t-1}} = …``                     one step's Jacobian
``\\frac{\\partial h_t}{\\partial h_j} = …``                         across steps (j ≤ t)
``\\prod_{k=j+1}^{t} \\frac{\\partial h_k}{\\partial h_{k-1}} = …``    the chain rule, written out
``\\frac{\\partial L}{\\partial h_t} = …``, ``dL/dh_t = …``          the adjoint of h_t
==============================================================  ==========================

(c_t too for LSTM.)  The truth is the left-hand side lowered over the engine's own
derivatives (:meth:`~symrnn.formula.lower.Scope.jacobian`: the step-Jacobian blocks
that :mod:`symrnn.render.jacobians` reads off the engine's carry, multiplied
J_t ⋯ J_{j+1}; :meth:`~symrnn.formula.lower.Scope.state_adjoint`: the engine's named
adjoint, the total derivative).  Nothing about a cell is written here: every cell the
engine derives has its state Jacobian.

Free indices (t, j) take every value where the left-hand side exists (1 ≤ t ≤ T,
0 ≤ j ≤ t; for ∂L/∂h_t, 1 ≤ t ≤ T), at most :data:`MAX_BINDINGS` of them (evenly
spread).  In a claim about Jacobians every ``\\prod`` multiplies in chain-rule order,
the factor with the largest index first (∏_{k=j+1}^{t} M_k = M_t ⋯ M_{j+1}), on both
sides.  Both sides are evaluated on the seeded instances of
:class:`~symrnn.formula.problem.Problem` (float64, rtol 1e-7) at every binding, then
compared exactly when small (:func:`~symrnn.formula.symbolic.compare_symbolically`,
under the check's time budget).  A wrong claim gets the binding, instance and entry
with the largest deviation, and a diagnosis: one repair of the right-hand side
(:func:`~symrnn.formula.diagnose.candidate_fixes`: a transpose, an index shifted by
one, a sign, a factor, ⊙ for a product, a range), the whole result transposed, or
the engine's Jacobian without the activation's derivative (the same spec with an
identity activation), times a sign or a constant.  A right-hand side that reads a
symbol that does not exist at some binding (f_0 at t = 1) is wrong there.
"""

from __future__ import annotations

import dataclasses
import itertools
import re

import numpy as np
from sympy import MatMul, MatrixSymbol

from symrnn.engine.expr import split_timed
from symrnn.engine.graph import network
from symrnn.errors import FormulaError, ShapeError, SymrnnError
from symrnn.formula import nodes as N
from symrnn.formula.budget import Budget, BudgetExceeded
from symrnn.formula.diagnose import Slip, candidate_fixes, relation
from symrnn.formula.lower import MissingSymbol, lower
from symrnn.formula.problem import ATOL, RTOL, Problem, resolve_quantity
from symrnn.formula.symbolic import MAX_NODES, compare_symbolically, inline, inlined_size
from symrnn.formula.verdict import Counterexample, Verdict
from symrnn.ops import derivative_text
from symrnn.render.jacobians import step_jacobians
from symrnn.render.printing import latex, text
from symrnn.spec import Spec, check_T

__all__ = ["check_jacobian", "MAX_BINDINGS", "MAX_SYMBOLIC_DEGREE"]

MAX_BINDINGS = 24
"""Most bindings of the free indices one check evaluates (spread over all of them)."""
MAX_SYMBOLIC_DEGREE = 5
"""Expand a binding exactly only when it multiplies at most this many weight matrices
along one path (the expansion grows like H^degree: 0.5 s at 5 for H = 3, 12 s at 7)."""
_ORDER = "decreasing"
"""∏ in chain-rule order (see the module doc)."""
_ORDER_NOTE = ("in a claim about Jacobians \\prod_{k=a}^{b} multiplies in chain-rule order, "
               "the factor at k = b first (M_b ... M_a)")


def _children(node) -> list:
    return [getattr(node, f.name) for f in dataclasses.fields(node)
            if isinstance(getattr(node, f.name), N.Node)]


def _free(node, bound: frozenset = frozenset()) -> set[str]:
    """Time indices of ``node`` that no \\sum or \\prod inside it binds (T excluded)."""
    def free_in(*times) -> set[str]:
        return {t.var for t in times if isinstance(t, N.Time) and t.var not in (None, "T")
                and t.var not in bound}

    if isinstance(node, N.Sym):
        return free_in(node.index)
    if isinstance(node, N.Power):
        return {v for v, _ in node.exponent.terms if v != "T" and v not in bound} | \
            _free(node.arg, bound)
    if isinstance(node, N.Big):
        return free_in(node.lo, node.hi) | _free(node.body, bound | {node.var})
    return set().union(*(_free(c, bound) for c in _children(node)))


def _exists(node, bound: dict, T: int) -> bool:  # noqa: N803
    """Whether every derivative in ``node`` names existing states at ``bound``."""
    times = {**bound, "T": T}
    if isinstance(node, N.Derivative):
        den = node.den.index.value(times) if isinstance(node.den.index, N.Time) else None
        if node.num == N.Sym("L"):
            return den is not None and 1 <= den <= T
        num = node.num.index.value(times) if isinstance(node.num.index, N.Time) else None
        return None not in (num, den) and 0 <= den <= num and 1 <= num <= T
    if isinstance(node, N.Big):
        lo, hi = node.lo.value(times), node.hi.value(times)
        return lo <= hi + 1 and all(_exists(node.body, {**bound, node.var: k}, T)
                                    for k in range(lo, hi + 1))
    return all(_exists(c, bound, T) for c in _children(node))


def _bindings(formula: N.Formula, T: int) -> tuple[list[dict], str]:  # noqa: N803
    """Every binding of the left-hand side's free indices where it exists, and a note."""
    names = sorted(_free(formula.lhs))
    extra = _free(formula.body) - set(names)
    for d in formula.definitions:
        extra |= _free(d.rhs) - set(names) - ({d.time.var} if d.time else set())
    if extra:
        raise FormulaError(f"free index {sorted(extra)[0]} on the right-hand side only: "
                           "bind it on the left-hand side or sum over it")
    if len(names) > 3:
        raise FormulaError(f"too many free indices ({', '.join(names)}): at most 3")
    found = [dict(zip(names, values, strict=True))
             for values in itertools.product(range(T + 1), repeat=len(names))]
    found = [b for b in found if _exists(formula.lhs, b, T)]
    if not found:
        raise FormulaError(f"the left-hand side {N.render(formula.lhs)} exists at no step "
                           f"for T = {T} (states run 0..T)")
    if len(found) > MAX_BINDINGS:
        picks = np.linspace(0, len(found) - 1, MAX_BINDINGS).round().astype(int)
        chosen = [found[i] for i in sorted(set(picks.tolist()))]
        return chosen, (f"checked at {len(chosen)} of the {len(found)} bindings of "
                        f"{', '.join(names)}, evenly spread")
    where = ", ".join(names) or "the steps written"
    return found, f"checked at every binding of {where} where the left-hand side exists"


def _side(formula: N.Formula, node) -> N.Formula:
    return dataclasses.replace(formula, body=node, definitions=formula.definitions)


def _lowered(formula: N.Formula, problem: Problem, bindings, scope=None, budget=None,
             keep_missing: bool = False) -> tuple[list, list[str]]:
    """(expression per binding, notes) of ``formula``'s body; with ``keep_missing`` a
    binding where it reads a symbol that does not exist gives the MissingSymbol error."""
    scope = problem.scope if scope is None else scope
    out, notes = [], []
    for b in bindings:
        try:
            low = lower(formula, scope, budget, bound=b, product_order=_ORDER)
        except MissingSymbol as err:
            if not keep_missing:
                raise
            out.append(err)
            continue
        out.append(low.expr)
        notes += [n for n in low.notes if n not in notes]
    return out, notes


def _evaluate(exprs, problem: Problem, shapes) -> list[list[np.ndarray]]:
    """Values per binding and instance (None: zeros of the binding's shape)."""
    out = []
    for expr, shape in zip(exprs, shapes, strict=True):
        if expr is None:
            out.append([np.zeros(shape) for _ in problem.envs])
        else:
            out.append(problem.values(expr))
    return out


def _shape(expr, fallback):
    return fallback if expr is None else tuple(int(d) for d in expr.shape)


def _claimed_shape(lhs, problem: Problem) -> tuple[int, int]:
    """The shape the left-hand side has: (n_s, n_s') for ∂s/∂s', (n_s, 1) for ∂L/∂s."""
    derivative = next(n for _, n in N.walk(lhs) if isinstance(n, N.Derivative))
    sizes = {s: int(v.shape[0]) for s, v in problem.unrolled.program.initial_states.items()}
    network(problem.spec)  # the states exist: Scope names them on a wrong one
    den = sizes.get(derivative.den.base)
    num = 1 if derivative.num == N.Sym("L") else sizes.get(derivative.num.base)
    if den is None or num is None:
        raise FormulaError(f"{N.render(derivative)}: derivatives take the states of the "
                           f"cell ({', '.join(sizes)})")
    return (den, 1) if derivative.num == N.Sym("L") else (num, den)


def check_jacobian(formula: N.Formula, spec: Spec, *, T: int | None = None,  # noqa: N803
                   instances: int = 3, seed: int = 0, diagnosis: bool = True,
                   max_T: int = 64, budget: Budget | None = None,
                   notes: list[str] | None = None) -> Verdict:
    """Decide a claim about ∂s_t/∂s'_j or ∂L/∂s_t (``formula.lhs``) for ``spec``."""
    if formula.lhs is None:
        raise FormulaError("not a claim about Jacobians or adjoints: the left-hand side "
                           "must be dh_t/dh_{t-1}, dh_t/dh_j, a product of them or dL/dh_t")
    budget = Budget(None) if budget is None else budget
    written = [n.index.offset for _, n in N.walk(formula.lhs) if isinstance(n, N.Sym)
               and isinstance(n.index, N.Time) and n.index.var is None]
    T = check_T(max([T or 3, *written]))
    if T > max_T:
        raise FormulaError(f"T = {T} is above max_T = {max_T} (pass max_T=... to allow more)")
    param = next(iter(network(spec).params))
    problem = Problem(spec, resolve_quantity(spec, param, None), T, instances=instances,
                      seed=seed)
    bindings, where = _bindings(formula, T)
    shape = _claimed_shape(formula.lhs, problem)
    truth, lhs_notes = _lowered(_side(formula, formula.lhs), problem, bindings)
    base = _base(formula, problem, T, list(notes or []) + [where] + lhs_notes)
    try:
        claimed, rhs_notes = _lowered(formula, problem, bindings, keep_missing=True)
    except ShapeError as err:
        return Verdict("wrong", shape_error=str(err), **base)
    base["notes"] = tuple(dict.fromkeys(base["notes"] + tuple(rhs_notes)))
    if _has_product(formula):
        base["notes"] += (_ORDER_NOTE,)
    return _judge(formula, problem, bindings, truth, claimed, shape, base, diagnosis, budget)


def _has_product(formula: N.Formula) -> bool:
    return any(isinstance(n, N.Big) and n.kind == "prod"
               for side in (formula.lhs, formula.body) for _, n in N.walk(side))


def _base(formula: N.Formula, problem: Problem, T: int, notes: list[str]) -> dict:  # noqa: N803
    claim = re.split(r";|\n|\\\\", formula.source)[-1]
    lhs, _, rhs = claim.rpartition("=")
    return {"quantity": N.render(formula.lhs), "formula": formula.source,
            "spec": problem.spec.to_dict(), "T": T,
            "correct": _correct_lines(formula.lhs, problem.spec),
            "correct_latex": _correct_latex(formula.lhs, problem.spec),
            "quantity_latex": lhs.strip(), "claimed_latex": rhs.strip(),
            "seeds": problem.seeds, "notes": tuple(dict.fromkeys(notes))}


def _correct_latex(lhs, spec: Spec) -> str:
    """The generic step Jacobian of the left-hand side's first derivative, in LaTeX."""
    first = next(n for _, n in N.walk(lhs) if isinstance(n, N.Derivative))
    if first.num == N.Sym("L"):
        return r"\text{the engine's adjoint (the total derivative)}"
    block = step_jacobians(spec).get((first.num.base, first.den.base))
    shown = "0" if block is None else latex(block)
    num, den = first.num.index, first.den.index
    if lhs is first and num.var == den.var == "t" and num.offset - den.offset == 1:
        return shown  # the claim is the step Jacobian itself
    step = rf"\frac{{\partial {first.num.base}_t}}{{\partial {first.den.base}_{{t-1}}}} = "
    return r"\text{the chain rule over } " + step + shown


def _correct_lines(lhs, spec: Spec) -> tuple[str, ...]:
    """The engine's step Jacobians (or adjoints) the left-hand side is made of."""
    blocks = step_jacobians(spec)
    pairs = {(n.num.base, n.den.base) for _, n in N.walk(lhs) if isinstance(n, N.Derivative)}
    lines = []
    for num, den in sorted(pairs):
        if num == "L":
            lines.append(f"dL/d{den}_t = the engine's adjoint of {den}_t (the total "
                         "derivative; symrnn derive prints its recurrence)")
            continue
        shown = [(a, b) for a, b in blocks if len(blocks) == 1 or (a, b) == (num, den)]
        lines += [f"d{a}_t/d{b}_{{t-1}} = "
                  f"{'0' if blocks[(a, b)] is None else text(blocks[(a, b)])}"
                  for a, b in shown]
        if len(blocks) > 1:
            lines.append(f"across steps d{num}_t/d{den}_j is the ({num}, {den}) block of "
                         "J_t ... J_{j+1}, J the step Jacobian of the state "
                         f"({', '.join(sorted({a for a, _ in blocks}))})")
        else:
            lines.append(f"across steps d{num}_t/d{den}_j = J_t ... J_{{j+1}}, "
                         f"J_k = d{num}_k/d{den}_{{k-1}}")
    return tuple(lines)


def _judge(formula, problem: Problem, bindings, truth, claimed, shape, base: dict,
           diagnosis: bool, budget: Budget) -> Verdict:
    true_values = _evaluate(truth, problem, [shape] * len(bindings))
    gone = [(b, e) for b, e in zip(bindings, claimed, strict=True)
            if isinstance(e, MissingSymbol)]
    if gone:
        b, err = gone[0]
        where = ", ".join(f"{k} = {v}" for k, v in b.items())
        base["notes"] += (f"at {where} the right-hand side is not defined: {err}",)
        slips, skipped = _diagnose(formula, problem, bindings, None, true_values, budget) \
            if diagnosis else ((), ())
        return Verdict("wrong", diagnosis=slips, skipped=skipped, **base)
    shapes = [_shape(c, shape) for c in claimed]
    wrong_shape = next((s for s in shapes if s != shape), None)
    if wrong_shape is not None:
        return Verdict("wrong", shape_error=f"the right-hand side has shape {wrong_shape} but "
                       f"{base['quantity']} has shape {shape}", **base)
    values = _evaluate(claimed, problem, shapes)
    bad = _counterexample(values, true_values, bindings, problem)
    if bad is None:
        symbolic, skipped = _symbolic(claimed, truth, problem, budget)
        return Verdict("correct", symbolic=symbolic, skipped=skipped, **base)
    counterexample, where = bad
    base["notes"] += (where,)
    slips, skipped = _diagnose(formula, problem, bindings, values, true_values, budget) \
        if diagnosis else ((), ())
    return Verdict("wrong", counterexample=counterexample, diagnosis=slips,
                   skipped=skipped, **base)


def _counterexample(values, true_values, bindings, problem: Problem):
    """(the worst entry over bindings and instances, where it is), or None."""
    worst = None
    for b, per_claimed, per_true in zip(bindings, values, true_values, strict=True):
        for seed, claimed, true in zip(problem.seeds, per_claimed, per_true, strict=True):
            if np.allclose(claimed, true, rtol=RTOL, atol=ATOL):
                continue
            diff = np.abs(claimed - true)
            i, j = np.unravel_index(int(np.argmax(diff)), diff.shape)
            if worst is None or diff[i, j] > worst[0]:
                where = ", ".join(f"{k} = {v}" for k, v in b.items()) or "the steps written"
                worst = (diff[i, j], Counterexample(seed, (int(i), int(j)),
                                                    float(claimed[i, j]), float(true[i, j])),
                         f"the counterexample is at {where}")
    return None if worst is None else worst[1:]


def _degree(expr, definitions) -> int | None:
    """The most weight matrices (square parameters) multiplied along one path of ``expr``
    with the adjoints inlined: its entries are polynomials of that degree in the weights,
    whose expansion grows like H^degree.  None: too large to inline."""
    if inlined_size(expr, definitions) > MAX_NODES:
        return None
    memo: dict = {}

    def degree(e) -> int:
        if e not in memo:
            if isinstance(e, MatrixSymbol):
                memo[e] = int(split_timed(e) is None and e.shape[0] == e.shape[1] != 1)
            elif isinstance(e, MatMul):
                memo[e] = sum(degree(a) for a in e.args)
            else:
                memo[e] = max((degree(a) for a in e.args), default=0)
        return memo[e]

    return degree(inline(expr, definitions))


def _symbolic(claimed, truth, problem: Problem, budget: Budget) -> tuple[str, tuple]:
    """'identical' when the two sides expand to the same entries at every binding whose
    expansion is small (:data:`MAX_SYMBOLIC_DEGREE`), smallest first."""
    defs = problem.unrolled.definitions
    pairs = [([_degree(u, defs), _degree(t, defs)], u, t)
             for u, t in zip(claimed, truth, strict=True) if u is not None and t is not None]
    small = sorted(((max(d), u, t) for d, u, t in pairs if None not in d and
                    max(d) <= MAX_SYMBOLIC_DEGREE), key=lambda p: p[0])
    for _, user, true in small:
        result = compare_symbolically(user, true, problem.unrolled, budget)
        if result != "identical":
            skipped = (f"symbolic comparison skipped: {budget.reason}",) \
                if result.startswith("skipped (budget") else ()
            return result, skipped
    if not small:
        return (f"skipped (products of more than {MAX_SYMBOLIC_DEGREE} weight matrices, "
                "or a side exactly zero)"), ()
    if len(small) < len(claimed):
        return (f"identical at {len(small)} of {len(claimed)} bindings (the others multiply "
                f"more than {MAX_SYMBOLIC_DEGREE} weight matrices: numeric only)"), ()
    return "identical", ()


def _flat(values) -> list[np.ndarray]:
    return [a for per_binding in values for a in per_binding]


def _factor(c: float) -> list[tuple[str, str]]:
    out = []
    if c < 0:
        out.append(("sign", Slip("sign", "the whole right-hand side has the opposite "
                                         "sign").message))
    if not np.isclose(abs(c), 1.0, rtol=RTOL):
        out.append(("constant_factor", Slip("constant_factor", f"the right-hand side is "
                                                               f"{abs(c):.6g} times the "
                                                               "truth").message))
    return out


def _variants(formula, problem: Problem, bindings, true_values, shape):
    """(slips, values) of the truth and of the truth without the activation's derivative."""
    yield [], true_values
    spec = problem.spec
    try:
        plain = spec.replace(activation="identity")
        scope = dataclasses.replace(problem.scope, jacobian_spec=plain)
        exprs, _ = _lowered(_side(formula, formula.lhs), problem, bindings, scope=scope)
    except SymrnnError:
        return
    values = _evaluate(exprs, problem, [shape] * len(bindings))
    if all(np.allclose(a, b, rtol=1e-12, atol=1e-14)
           for a, b in zip(_flat(values), _flat(true_values), strict=True)):
        return
    message = Slip("activation_derivative", f"the factor diag({spec.activation}'(a_t)) = "
                   f"diag({derivative_text(spec.activation)}) (h = h_t) of each step "
                   "Jacobian is missing").message
    yield [("activation_derivative", message)], values


def _candidates(formula, problem: Problem, bindings, values, budget: Budget):
    """(slips, values) of the right-hand side as written (None: it is not defined at every
    binding) and after one repair."""
    yield [], values
    if values is not None and all(a.shape[0] == a.shape[1] for a in _flat(values)):
        yield ([("transpose", Slip("transpose", "the whole right-hand side is transposed")
                 .message)], [[a.T for a in per] for per in values])
    for slip, fixed in candidate_fixes(formula):
        budget.check()
        yield [(slip.kind, slip.message)], _try_values(fixed, problem, bindings, budget)


def _try_values(formula, problem: Problem, bindings, budget: Budget):
    """Values of a repaired right-hand side per binding, or None when it does not lower."""
    try:
        exprs, _ = _lowered(formula, problem, bindings, budget=budget)
        if any(e is None for e in exprs):
            return None
        return _evaluate(exprs, problem, [None] * len(exprs))
    except BudgetExceeded:
        raise
    except (SymrnnError, KeyError):
        return None


def _diagnose(formula, problem: Problem, bindings, values, true_values,
              budget: Budget) -> tuple[tuple, tuple]:
    """The smallest explanation: (class, message) pairs, and what the budget cut short."""
    shape = true_values[0][0].shape
    best: list | None = None
    try:
        budget.check()
        variants = list(_variants(formula, problem, bindings, true_values, shape))
        for slips, candidate in _candidates(formula, problem, bindings, values, budget):
            if candidate is None:
                continue
            for variant_slips, truth in variants:
                c = relation(_flat(candidate), _flat(truth))
                explained = None if c is None else slips + variant_slips + _factor(c)
                if explained and (best is None or len(explained) < len(best)):
                    best = explained
            if best is not None and len(best) == 1:
                break
    except BudgetExceeded:
        return tuple(best or ()), (f"diagnosis stopped: {budget.reason}",)
    return tuple(best or ()), ()
