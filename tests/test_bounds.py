"""Bounded work: unrolled derivation linear in T, formula checks bounded in T, depth and time."""

from __future__ import annotations

import pytest
from sympy import MatAdd, preorder_traversal
from sympy.matrices.expressions.hadamard import HadamardProduct

from symrnn.engine.derive import derive_unrolled
from symrnn.errors import FormulaError
from symrnn.formula import check_formula, parse_formula
from symrnn.formula.budget import Budget
from symrnn.formula.lower import lower
from symrnn.formula.parse import MAX_DEPTH
from symrnn.formula.problem import Problem, resolve_quantity
from symrnn.spec import Spec


def _nodes(expr) -> int:
    return sum(1 for _ in preorder_traversal(expr))


# ------------------------------------------------------------------ linear in T


@pytest.mark.parametrize("spec", [Spec(), Spec(cell="lstm"),
                                  Spec(topology="many_to_one", head="softmax",
                                       loss="cross_entropy")])
def test_every_named_adjoint_has_a_size_independent_of_T(spec):
    """δ_t refers to δ_{t+1} by name: no definition grows with T, each gradient term neither."""
    sizes = {}
    for T in (20, 160):
        u = derive_unrolled(spec, T)
        defs = [_nodes(v) for _, v in u.definitions if v is not None]
        terms = [_nodes(t) for g in u.gradients.values() if g is not None
                 for t in (g.args if isinstance(g, MatAdd) else (g,))]
        sizes[T] = (max(defs), max(terms), len(u.steps) / T)
    assert sizes[20][:2] == sizes[160][:2]
    assert sizes[160][2] == pytest.approx(sizes[20][2], rel=0.1)  # rule applications ∝ T


def test_a_long_unrolled_derivation_completes():
    u = derive_unrolled(Spec(), 2000)
    assert len(u.gradients["W_hh"].args) == 2000
    assert u.definitions[0][0].name == "e_{2000}"


# ------------------------------------------------------------------ bounds on T


@pytest.mark.parametrize(("formula", "value"), [
    (r"dL/dW_hh = \sum_{t=1}^{999999999} delta_t h_{t-1}^T", "999999999"),
    (r"dL/dW_hh = \prod_{j=1}^{999999} W_hh", "999999"),
    (r"\frac{\partial L_{5000}}{\partial W_hh} = delta_1 h_0^T", "5000"),
    (r"dL/dW_hh = delta_{100000} h_0^T", "100000"),
])
def test_time_indices_beyond_max_T_are_formula_errors_with_a_column(formula, value):
    with pytest.raises(FormulaError) as info:
        check_formula(formula)
    err = info.value
    assert value in str(err) and "bound 65" in str(err) and "max_T" in str(err)
    assert err.column is not None and formula[err.column - 1] in "^_"


def test_max_T_is_configurable():
    with pytest.raises(FormulaError, match="T = 80 is above max_T = 64"):
        check_formula("dL/dW_hy = sum_t e_t h_t^T", T=80)
    with pytest.raises(FormulaError, match="max_T = 4"):
        check_formula(r"\frac{\partial L_5}{\partial V} = e_5 h_5^T", max_T=4)
    verdict = check_formula("dL/dW_hy = sum_t e_t h_t^T", T=80, max_T=80, budget_s=0)
    assert verdict.ok


def test_a_long_claim_needs_no_deep_recursion():
    """L_300 used to raise RecursionError while printing the inlined gradient."""
    verdict = check_formula(r"\frac{\partial L_{300}}{\partial W_hh} = delta_1 h_0^T",
                            max_T=300, budget_s=1)
    assert not verdict.ok and verdict.T == 300
    assert not any(line.startswith("expanded:") for line in verdict.correct)


def test_nesting_deeper_than_the_bound_is_a_formula_error():
    deep = "dL/dW_hh = " + "(" * (MAX_DEPTH + 10) + "W_hh" + ")" * (MAX_DEPTH + 10)
    with pytest.raises(FormulaError, match=f"nested too deeply: .* at most {MAX_DEPTH}"):
        parse_formula(deep)
    negs = "dL/dW_hh = " + "-" * 600 + "W_hh"
    with pytest.raises(FormulaError, match="nested too deeply"):
        check_formula(negs)


def test_a_sum_with_more_terms_than_steps_is_an_error():
    with pytest.raises(FormulaError, match=r"has 20 terms, but for T = 3"):
        check_formula(r"dL/dW_hh = \sum_{t=1}^{20} delta_t h_{t-1}^T")


def test_a_hadamard_chain_lowers_to_one_flat_product():
    """A nested ⊙ made every shape walk the chain: quadratic per lowering, cubic in diagnosis."""
    n = 150
    formula = parse_formula("dL/dW_hh = sum_t (" + "*".join(["delta_t"] * n) + ") h_{t-1}^T")
    problem = Problem(Spec(), resolve_quantity(Spec(), "W_hh", None), 3)
    expr = lower(formula, problem.scope).expr
    flats = [a for a in preorder_traversal(expr) if isinstance(a, HadamardProduct)]
    assert {len(a.args) for a in flats} == {n}
    assert not any(isinstance(b, HadamardProduct) for a in flats for b in a.args)


# ------------------------------------------------------------------ budgets


def test_a_spent_budget_skips_the_symbolic_comparison_and_says_so():
    verdict = check_formula(r"dL/dW_hy = sum_t e_t h_t^T", budget_s=0)
    assert verdict.ok
    assert verdict.symbolic == "skipped (budget 0 s exceeded)"
    assert verdict.skipped == ("symbolic comparison skipped: budget 0 s exceeded",)
    assert "skipped: symbolic comparison skipped: budget 0 s exceeded" in verdict.to_text()
    assert verdict.to_dict()["skipped"] == list(verdict.skipped)
    full = check_formula(r"dL/dW_hy = sum_t e_t h_t^T")
    assert full.symbolic == "identical" and full.skipped == ()


def test_a_spent_budget_stops_the_diagnosis_and_says_so():
    formula = r"dL/dW_hh = sum_t (delta_t * (1 - h_t^2)) h_t^T"  # h_t for h_{t-1}
    cut = check_formula(formula, budget_s=0)
    assert not cut.ok and cut.counterexample is not None and cut.diagnosis == ()
    assert cut.skipped[0] == "diagnosis stopped before trying any candidate: budget 0 s exceeded"
    text = cut.to_text()
    assert "none found before the budget ran out" in text
    assert "no single classic slip" not in text
    full = check_formula(formula)
    assert "off_by_one" in full.diagnosis_classes and full.skipped == ()
    shape = check_formula("dL/dW_hh = sum_t delta_t", budget_s=0)  # (3, 1), not (3, 3)
    assert shape.shape_error and shape.scalar_case is None
    assert "scalar case (all sizes 1) skipped: budget 0 s exceeded" in shape.skipped


def test_a_long_wrong_formula_is_diagnosed_within_its_budget():
    formula = "dL/dW_hh = sum_t (" + "*".join(["delta_t"] * 150) + ") h_{t-1}^T"
    verdict = check_formula(formula, budget_s=0.5, scalar_case=False)
    assert not verdict.ok
    assert verdict.skipped and "budget 0.5 s exceeded" in verdict.skipped[0]
    assert "candidate fixes" in verdict.skipped[0]


def test_budget_rejects_nonsense():
    with pytest.raises(ValueError, match="budget_s"):
        Budget(-1)
    assert not Budget(None).exceeded
