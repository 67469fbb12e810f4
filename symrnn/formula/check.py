"""Check a hand-derived gradient formula against the derivation engine.

``check_formula(formula, spec, *, wrt=None, T=None)`` returns a
:class:`~symrnn.formula.verdict.Verdict`:

1. parse (:mod:`symrnn.formula.parse`); the claimed quantity is the formula's
   left-hand side (∂L/∂W, ∂L_3/∂V), or ``wrt`` (which overrides the
   parameter named there, with a note);
2. lower it for the spec and T (T = k for a claim about L_k, default 3
   otherwise); a non-conformable formula is wrong, with the clashing shapes,
   and is then also checked with every size 1 (the scalar case);
3. numeric: evaluate it on seeded random instances, on the forward pass's own
   h_t, ŷ_t, δ_t, against the engine's gradient (float64, rtol 1e-7);
4. symbolic, only for a numerically correct formula and only while it fits the
   budget: step by step over the engine's named adjoints, else fully inlined
   when each entry stays small (:mod:`symrnn.formula.symbolic`); the verdict's
   ``symbolic`` says identical, different or why it was skipped;
5. when wrong: the counterexample (largest deviation), the first wrong
   definition of a formula with several (:func:`~symrnn.formula.diagnose.
   locate_definition`) and the classic slips (:mod:`symrnn.formula.diagnose`).

Bounded: T (and k of a claim about L_k, and every time index written) is at
most ``max_T`` (default :data:`MAX_T`); the symbolic comparison, the
diagnosis and the scalar case share a time budget of ``budget_s`` seconds
(default :data:`~symrnn.formula.budget.DEFAULT_BUDGET_S`; None: unlimited),
checked between steps.  What the budget cut short is listed in
:attr:`Verdict.skipped` (and the symbolic field says ``skipped (budget … s
exceeded)``); the parts that ran are reported as usual.
"""

from __future__ import annotations

from symrnn.errors import FormulaError, ShapeError
from symrnn.formula import nodes as N
from symrnn.formula.budget import DEFAULT_BUDGET_S, Budget
from symrnn.formula.diagnose import diagnose, locate_definition
from symrnn.formula.jacobian import check_jacobian
from symrnn.formula.lower import lower
from symrnn.formula.parse import parse_formula
from symrnn.formula.problem import ATOL, RTOL, Problem, resolve_quantity
from symrnn.formula.statements import declare_time
from symrnn.formula.symbolic import compare_symbolically, inline, inlined_size
from symrnn.formula.verdict import Counterexample, Verdict
from symrnn.render.printing import latex, text
from symrnn.spec import DEFAULT_SPEC, Spec, check_T

__all__ = ["check_formula", "correct_formula", "DEFAULT_T", "MAX_T"]

DEFAULT_T = 3
MAX_T = 64
"""Default bound on the unrolled length of a check (``max_T``)."""
MAX_EXPANDED = 600
"""Print the fully expanded correct gradient when it is at most this many characters."""
_MAX_EXPANDED_NODES = MAX_EXPANDED // 2
"""Do not even build the expansion when its tree has more nodes than this."""


def check_formula(formula: str | N.Formula, spec: Spec | None = None, *, wrt: str | None = None,
                  T: int | None = None, instances: int = 3, seed: int = 0,
                  diagnosis: bool = True, scalar_case: bool = True, max_T: int = MAX_T,
                  budget_s: float | None = DEFAULT_BUDGET_S,
                  time: str | None = None) -> Verdict:  # noqa: N803
    """Decide whether ``formula`` is the claimed gradient for ``spec``.

    ``time="mean"`` declares L = (1/T) Σ_t L_t (as does ``L = \\frac{1}{T} \\sum_t L_t``
    in the formula; default Σ_t L_t).  A claim about Jacobians or adjoints
    (∂h_t/∂h_{t-1} = …, ∂L/∂h_t = …) is checked by :mod:`symrnn.formula.jacobian`.

    ``max_T`` bounds T, the k of L_k and every time index in the formula
    (FormulaError beyond it); ``budget_s`` bounds the symbolic work (see the
    module docstring): what it cut short is listed in ``Verdict.skipped``.
    """
    if isinstance(max_T, bool) or not isinstance(max_T, int) or max_T < 1:
        raise FormulaError(f"max_T must be a positive integer, got {max_T!r}")
    budget = Budget(budget_s)
    spec = DEFAULT_SPEC if spec is None else spec
    parsed = parse_formula(formula, max_time=max_T + 1) if isinstance(formula, str) else formula
    parsed, notes = declare_time(parsed, time)
    if parsed.lhs is not None:
        return check_jacobian(parsed, spec, T=T, instances=instances, seed=seed,
                              diagnosis=diagnosis, max_T=max_T, budget=budget, notes=notes)
    claim = parsed.claim
    if claim is None and wrt is None:
        raise FormulaError("say which gradient the formula is: write dL/dW_hh = ... "
                           "(or \\frac{\\partial L}{\\partial W} = ...) or pass wrt")
    loss_step = claim.loss_step if claim is not None else None
    quantity = resolve_quantity(spec, wrt if wrt is not None else claim.wrt, loss_step)
    if claim is not None and wrt is not None:
        written = resolve_quantity(spec, claim.wrt, loss_step)
        if written.wrt != quantity.wrt:
            notes.append(f"the left-hand side names {claim.wrt} ({written.wrt}); "
                         f"checked as {quantity} as asked")
    if loss_step is not None and T is not None and T != loss_step:
        notes.append(f"a claim about L_{loss_step} is checked with T = {loss_step}")
    T = check_T(T or DEFAULT_T)
    if loss_step is not None and loss_step > max_T:
        raise FormulaError(f"the claim about L_{loss_step} is checked with T = {loss_step} "
                           f"unrolled steps, above max_T = {max_T} (pass max_T=... to allow more)")
    if loss_step is None and T > max_T:
        raise FormulaError(f"T = {T} is above max_T = {max_T}: a check unrolls the network "
                           "symbolically (pass max_T=... to allow more)")
    problem = Problem(spec, quantity, T, instances=instances, seed=seed)
    return _judge(parsed, problem, notes, diagnosis, scalar_case, budget)


def correct_formula(problem: Problem) -> tuple[str, ...]:
    """The engine's gradient for the problem: the sum, then the adjoints it uses."""
    expr = problem.truth_expr
    lines = [f"{problem.quantity} = {'0' if expr is None else text(expr)}"]
    defs = [(s, v) for s, v in problem.unrolled.definitions if v is not None]
    if defs:
        lines.append("where " + "; ".join(f"{s} = {text(v)}" for s, v in defs))
        small = inlined_size(expr, problem.unrolled.definitions,
                             _MAX_EXPANDED_NODES) <= _MAX_EXPANDED_NODES
        expanded = inline(expr, problem.unrolled.definitions) if small else None
        if expanded is not None and len(text(expanded)) <= MAX_EXPANDED:
            lines.append(f"expanded: {problem.quantity} = {text(expanded)}")
    return tuple(lines)


def _base(problem: Problem, parsed: N.Formula, notes: list[str]) -> dict:
    expr = problem.truth_expr
    return {
        "quantity": str(problem.quantity),
        "formula": parsed.source,
        "spec": problem.spec.to_dict(),
        "T": problem.T,
        "correct": correct_formula(problem),
        "correct_latex": "0" if expr is None else latex(expr),
        "quantity_latex": problem.quantity.latex(),
        "definitions_latex": tuple(f"{latex(s)} = {latex(v)}" for s, v in
                                   problem.unrolled.definitions if v is not None),
        "claimed_latex": _source_rhs(parsed.source),
        "seeds": problem.seeds,
        "notes": tuple(notes),
    }


def _judge(parsed, problem: Problem, notes, diagnosis: bool, scalar_case: bool,
           budget: Budget | None = None) -> Verdict:
    budget = Budget(None) if budget is None else budget
    base = _base(problem, parsed, notes)
    skipped: list[str] = []
    try:
        lowered = lower(parsed, problem.scope)
    except ShapeError as err:
        base["notes"] = tuple(notes + getattr(err, "notes", []))
        scalar = _scalar(parsed, problem, scalar_case, budget, skipped)
        return Verdict("wrong", shape_error=str(err), scalar_case=scalar,
                       skipped=tuple(skipped), **base)
    base["notes"] = tuple(notes + lowered.notes)
    expr = lowered.expr
    shape = problem.shape if expr is None else tuple(int(d) for d in expr.shape)
    values = problem.values(expr)
    if shape != problem.shape:
        message = (f"the formula has shape {shape} but {problem.quantity} has shape "
                   f"{problem.shape}")
        slips = _diagnose(parsed, problem, values, diagnosis, budget, skipped)
        scalar = _scalar(parsed, problem, scalar_case, budget, skipped)
        return Verdict("wrong", shape_error=message, diagnosis=slips,
                       scalar_case=scalar, skipped=tuple(skipped), **base)
    bad = _counterexample(values, problem)
    if bad is None:
        symbolic = compare_symbolically(expr, problem.truth_expr, problem.unrolled, budget,
                                        formula=parsed, scope=problem.scope)
        if symbolic.startswith("skipped (budget"):
            skipped.append(f"symbolic comparison skipped: {budget.reason}")
        return Verdict("correct", symbolic=symbolic, skipped=tuple(skipped), **base)
    slips = _diagnose(parsed, problem, values, diagnosis, budget, skipped)
    return Verdict("wrong", counterexample=bad, diagnosis=slips,
                   skipped=tuple(skipped), **base)


def _diagnose(parsed, problem: Problem, values, enabled: bool, budget: Budget,
              skipped: list[str]) -> tuple[tuple[str, str], ...]:
    """The first wrong definition (when there are several), then the classic slips."""
    if not enabled:
        return ()
    located = locate_definition(parsed, problem, budget, skipped) \
        if len(parsed.definitions) > 1 else None
    slips = _pairs(diagnose(parsed, problem, values, budget=budget, skipped=skipped))
    return ((located,) if located else ()) + slips


def _source_rhs(source: str) -> str:
    """The claimed right-hand side as the user wrote it (LaTeX) or in \\texttt."""
    rhs = source.rsplit("=", 1)[-1].strip()
    if "\\" in rhs:
        return rhs
    return r"\texttt{" + "".join("\\" + c if c in "_{}&%#$^~" else c for c in rhs) + "}"


def _pairs(slips) -> tuple[tuple[str, str], ...]:
    return tuple((s.kind, s.message) for s in slips)


def _counterexample(values, problem: Problem) -> Counterexample | None:
    """The instance with the largest deviation, carried whole (instance, both matrices)."""
    from symrnn.formula.instance import counterexample_of, worst_deviation

    worst = worst_deviation(values, problem.truth, RTOL, ATOL)
    return None if worst is None else counterexample_of(problem, *worst, values[worst[0]])


def _scalar(parsed, problem: Problem, enabled: bool, budget: Budget,
            skipped: list[str]) -> Verdict | None:
    spec = problem.spec
    if not enabled or (spec.hidden_size, spec.input_size, spec.output_size) == (1, 1, 1):
        return None
    if budget.exceeded:
        skipped.append(f"scalar case (all sizes 1) skipped: {budget.reason}")
        return None
    scalar_spec = spec.replace(hidden_size=1, input_size=1, output_size=1)
    scalar = Problem(scalar_spec, problem.quantity, problem.T, instances=len(problem.seeds),
                     seed=problem.seeds[0])
    return _judge(parsed, scalar, [], True, False, budget)
