"""Every rule of the rule table against ``sympy.diff`` on explicit matrices.

For each operation key of :data:`symrnn.engine.rules.RULES` the table
:data:`CASES` holds one or more small nodes ``out = op(children)`` over
``MatrixSymbol`` children (shapes 2×2, 2×1, 3×1, 2×3, ...).  With a symbolic
upstream adjoint Ḡ (a ``MatrixSymbol`` of the node's shape) the rule's VJP
gives matrix expressions for the children's adjoints; this test evaluates
them on explicit ``sympy.Matrix`` entries and compares, entry by entry, with

    ∂/∂A_ij  Σ_kl Ḡ_kl · out_kl

computed by ``sympy.diff`` from the test's own forward definition of the
node.  Nothing of the engine's evaluator is used: the elementwise functions
are written here in plain SymPy (tanh, 1/(1 + e^{−a}), Max(0, a),
log(1 + e^{a}), e^{a}, Heaviside(a, 0)), not the engine's ``Sigmoid``/``Exp``
classes with their ``fdiff``.

Exactness.  The difference rule − truth is first reduced with
``sympy.cancel`` (rational functions in the entries, e^{entries} and
tanh(entries)): it must be exactly 0.  Only for operations that are
differentiable almost everywhere (relu, step: the difference contains
Heaviside/DiracDelta/Max) the comparison is made exactly at random nonzero
rational points (every entry takes both signs), i.e. off the null set where
the derivative does not exist.

Conventions the cases encode:

* ``step(0) = 0`` (Heaviside(a, 0)): relu' is written from the output as
  step(relu(a)), which is right for a < 0 only with this convention.
* The fused softmax cross-entropy rule z̄ = Ḡ(softmax(z) − y) holds for
  targets that are distributions (Σ y = 1); its case uses y_last = 1 − Σ others.
* Targets are data: a loss rule returns no adjoint for them.

A rule registered without a case here fails :func:`test_every_rule_has_a_case`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
import sympy
from sympy import (
    DiracDelta,
    Heaviside,
    Identity,
    MatAdd,
    MatMul,
    Matrix,
    MatrixSymbol,
    Max,
    Min,
    OneMatrix,
    Rational,
    ZeroMatrix,
)
from sympy.core.cache import clear_cache
from sympy.matrices.expressions.hadamard import HadamardProduct
from sympy.matrices.expressions.transpose import Transpose

from symrnn.engine import rules
from symrnn.engine.expr import Apply, MSELoss, Softmax, SoftmaxCrossEntropy
from symrnn.ops import ELEMENTWISE

# ----------------------------------------------------------------- the test's own SymPy


def _sigmoid(a):
    return 1 / (1 + sympy.exp(-a))


SCALAR = {
    "identity": lambda a: a,
    "tanh": sympy.tanh,
    "sigmoid": _sigmoid,
    "relu": lambda a: Max(0, a),
    "softplus": lambda a: sympy.log(1 + sympy.exp(a)),
    "exp": sympy.exp,
    "step": lambda a: Heaviside(a, 0),
}
"""Elementwise functions as the test writes them (independent of symrnn.ops)."""

LOSSES = ("MSELoss", "SoftmaxCrossEntropy")
"""Per-step losses: roots of the program, whose VJP takes a scalar adjoint."""

ALMOST_EVERYWHERE = (Heaviside, DiracDelta, Max, Min)
"""Functions whose presence allows the a.e. (pointwise, off the null set) comparison."""


def explicit(symbol: MatrixSymbol) -> Matrix:
    """A matrix of real scalar symbols ``A[i,j]`` standing for the entries of ``symbol``."""
    rows, cols = (int(d) for d in symbol.shape)
    return Matrix(rows, cols, lambda i, j: sympy.Symbol(f"{symbol.name}[{i},{j}]", real=True))


def value(expr, env: dict) -> Matrix:
    """Explicit value of a matrix expression, with the test's own scalar functions."""
    if isinstance(expr, sympy.Symbol) and expr in env:  # a loss's scalar adjoint
        return env[expr]
    if isinstance(expr, MatrixSymbol):
        return env[expr]
    if isinstance(expr, MatAdd):
        parts = [value(a, env) for a in expr.args]
        out = parts[0]
        for part in parts[1:]:
            out = out + part
        return out
    if isinstance(expr, MatMul):
        coeff, mats = expr.as_coeff_matrices()
        out = value(mats[0], env)
        for m in mats[1:]:
            out = out * value(m, env)
        return coeff * out
    if isinstance(expr, HadamardProduct):
        parts = [value(a, env) for a in expr.args]
        out = parts[0]
        for part in parts[1:]:
            out = out.multiply_elementwise(part)
        return out
    if isinstance(expr, Transpose):
        return value(expr.arg, env).T
    if isinstance(expr, Apply):
        return value(expr.arg, env).applyfunc(SCALAR[expr.op])
    if isinstance(expr, Softmax):
        e = value(expr.arg, env).applyfunc(sympy.exp)
        return e / sum(e)
    if isinstance(expr, MSELoss):
        d = value(expr.prediction, env) - value(expr.target, env)
        return Matrix([[Rational(1, 2) * sum(x**2 for x in d)]])
    if isinstance(expr, SoftmaxCrossEntropy):
        z, y = value(expr.prediction, env), value(expr.target, env)
        lse = sympy.log(sum(z.applyfunc(sympy.exp)))
        return Matrix([[-sum(y[i] * (z[i] - lse) for i in range(z.rows))]])
    if isinstance(expr, OneMatrix):
        return sympy.ones(*(int(d) for d in expr.shape))
    if isinstance(expr, ZeroMatrix):
        return sympy.zeros(*(int(d) for d in expr.shape))
    if isinstance(expr, Identity):
        return sympy.eye(int(expr.rows))
    raise TypeError(f"the test's evaluator has no case for {type(expr).__name__} ({expr})")


# ----------------------------------------------------------------- cases


@dataclass
class Case:
    """A node of one operation over explicit children, and which children get an adjoint."""

    name: str
    node: object
    wrt: tuple[MatrixSymbol, ...]
    """Children with an adjoint (targets of a loss are data and excluded)."""
    fixed: dict = field(default_factory=dict)
    """Explicit values replacing the generic entries of some symbols (CE targets)."""

    def env(self) -> dict:
        syms = self.node.atoms(MatrixSymbol)
        env = {s: explicit(s) for s in syms}
        env.update(self.fixed)
        return env


def _m(name: str, rows: int, cols: int = 1) -> MatrixSymbol:
    return MatrixSymbol(name, rows, cols)


A22, B22, C22 = _m("A", 2, 2), _m("B", 2, 2), _m("C", 2, 2)
A23, B31, A21, B21, C21, Z31, Z21 = (
    _m("A", 2, 3), _m("B", 3, 1), _m("A", 2), _m("B", 2), _m("C", 2), _m("z", 3), _m("z", 2)
)
P21, Y21, Y31, A31 = _m("p", 2), _m("y", 2), _m("y", 3), _m("a", 3)


def _distribution(y: MatrixSymbol) -> Matrix:
    entries = explicit(y)
    entries[entries.rows - 1] = 1 - sum(entries[: entries.rows - 1], sympy.S.Zero)
    return entries


def _elementwise_cases(op: str) -> list[Case]:
    return [Case(f"{op}(A 2x2)", Apply(op, A22), (A22,)),
            Case(f"{op}(a 3x1)", Apply(op, A31), (A31,))]


CASES: dict[str, list[Case]] = {
    "Constant": [
        Case("ones 2x2", OneMatrix(2, 2), ()),
        Case("zeros 2x1", ZeroMatrix(2, 1), ()),
        Case("identity 2", Identity(2), ()),
    ],
    "MatAdd": [
        Case("A+B 2x1", MatAdd(A21, B21), (A21, B21)),
        Case("A+B+C 2x2", MatAdd(A22, B22, C22), (A22, B22, C22)),
    ],
    "MatMul": [
        Case("A(2x3) B(3x1)", MatMul(A23, B31), (A23, B31)),
        Case("A B 2x2", MatMul(A22, B22), (A22, B22)),
        Case("-3/2 A B C (2x2 2x2 2x1)", MatMul(Rational(-3, 2), A22, B22, C21),
             (A22, B22, C21)),
    ],
    "ScalarMultiple": [
        Case("-A 2x1", MatMul(-1, A21), (A21,)),
        Case("7/3 A 2x2", MatMul(Rational(7, 3), A22), (A22,)),
    ],
    "Transpose": [
        Case("A.T 2x3", Transpose(A23), (A23,)),
        Case("A.T 2x2", Transpose(A22), (A22,)),
    ],
    "HadamardProduct": [
        Case("A*B 2x1", HadamardProduct(A21, B21), (A21, B21)),
        Case("A*B*C 2x2", HadamardProduct(A22, B22, C22), (A22, B22, C22)),
    ],
    **{op: _elementwise_cases(op) for op in ELEMENTWISE},
    "Softmax": [
        Case("softmax(z 3x1)", Softmax(Z31), (Z31,)),
        Case("softmax(z 2x1)", Softmax(Z21), (Z21,)),
    ],
    "MSELoss": [
        Case("mse(p 2x1, y)", MSELoss(P21, Y21), (P21,)),
    ],
    "SoftmaxCrossEntropy": [
        Case("ce(z 3x1, y a distribution)", SoftmaxCrossEntropy(Z31, Y31), (Z31,),
             {Y31: _distribution(Y31)}),
        Case("ce(z 2x1, y a distribution)", SoftmaxCrossEntropy(Z21, Y21), (Z21,),
             {Y21: _distribution(Y21)}),
    ],
}


# ----------------------------------------------------------------- the comparison


def _points(symbols, count: int = 6, seed: int = 20240601) -> list[dict]:
    """Nonzero rational points; entry k is positive at point 0, negative at point 1."""
    rng = random.Random(seed)
    symbols = sorted(symbols, key=str)
    points = []
    for n in range(count):
        point = {}
        for s in symbols:
            magnitude = Rational(rng.randint(1, 97), rng.randint(1, 31))
            sign = 1 if n == 0 else -1 if n == 1 else rng.choice((1, -1))
            point[s] = sign * magnitude
        points.append(point)
    return points


def _is_zero(diff) -> tuple[bool, str]:
    """Exactly zero, or zero almost everywhere when a.e. functions occur; (ok, how)."""
    if sympy.cancel(sympy.expand(diff)) == 0:
        return True, "exact"
    if not diff.has(*ALMOST_EVERYWHERE):
        return False, "exact"
    for point in _points(diff.free_symbols):
        at = diff.xreplace(point)
        if sympy.cancel(sympy.expand(at.rewrite(sympy.exp))) != 0:
            return False, f"a.e., at {point}"
    return True, "a.e."


def rule_mismatches(key: str, case: Case, rule: rules.Rule | None = None) -> list[str]:
    """Where the rule's VJP differs from sympy.diff on ``case`` (empty: the rule is right)."""
    rule = rules.RULES[key] if rule is None else rule
    node = case.node
    assert rules.op_key(node) == key, f"case {case.name!r} is a {rules.op_key(node)!r} node"
    env = case.env()
    Y = MatrixSymbol("Y", *node.shape)
    if key in LOSSES:  # a loss is a root: its adjoint is a scalar (the engine seeds 1)
        G = sympy.Symbol("g", real=True)
        env[G] = Matrix([[G]])
    else:
        G = MatrixSymbol("G", *node.shape)
        env[G] = explicit(G)
    out = value(node, env)
    env[Y] = out  # the stored output the rule may read (f' from the output)
    phi = sum((env[G][i, j] * out[i, j] for i in range(out.rows) for j in range(out.cols)),
              sympy.S.Zero)

    problems: list[str] = []
    adjoints: dict = {}
    for child, adj in rule.vjp(node, G, Y):
        if child not in case.wrt:
            problems.append(f"{key} [{case.name}]: adjoint for {child}, which gets none")
            continue
        if adj is None:
            continue
        try:
            val = value(adj, env)
        except (sympy.ShapeError, ValueError, TypeError) as err:
            problems.append(f"{key} [{case.name}]: adjoint of {child} = {adj} fails: {err}")
            continue
        if val.shape != tuple(int(d) for d in child.shape):
            problems.append(f"{key} [{case.name}]: adjoint of {child} has shape {val.shape}, "
                            f"expected {child.shape}")
            continue
        adjoints[child] = adjoints[child] + val if child in adjoints else val

    for child in case.wrt:
        entries = env[child]
        got = adjoints.get(child, sympy.zeros(*entries.shape))
        for i in range(entries.rows):
            for j in range(entries.cols):
                truth = sympy.diff(phi, entries[i, j])
                ok, how = _is_zero(got[i, j] - truth)
                if not ok:
                    problems.append(
                        f"{key} [{case.name}]: d/d{child}[{i},{j}] ({how}): rule gives "
                        f"{got[i, j]}, sympy.diff gives {sympy.simplify(truth)}"
                    )
    return problems


def _cases():
    for key, cases in CASES.items():
        for case in cases:
            yield pytest.param(key, case, id=f"{key}:{case.name}")


# ----------------------------------------------------------------- tests


def coverage_problem() -> str:
    """Why the cases do not cover the rule table exactly ('' when they do)."""
    missing = set(rules.RULES) - set(CASES)
    stale = set(CASES) - set(rules.RULES)
    if missing or stale:
        return (
            f"rules without a case in tests/test_rules.py CASES: {sorted(missing)}; "
            f"cases for operations not in RULES: {sorted(stale)}. "
            "Add a node of the new operation (and its forward value in value()) to CASES."
        )
    if set(SCALAR) != set(ELEMENTWISE):
        return f"write the scalar definition of {sorted(set(ELEMENTWISE) ^ set(SCALAR))} in SCALAR"
    return ""


def test_every_rule_has_a_case():
    problem = coverage_problem()
    assert not problem, problem


def test_a_rule_registered_without_a_case_is_reported(monkeypatch):
    monkeypatch.setitem(rules.RULES, "Cube", rules.Rule("Cube", "x", "x", lambda n, g, o: []))
    assert "'Cube'" in coverage_problem()


@pytest.mark.parametrize(("key", "case"), list(_cases()))
def test_rule_matches_sympy_diff(key, case):
    problems = rule_mismatches(key, case)
    assert not problems, "\n".join(problems)


def test_constant_rule_sends_nothing():
    for case in CASES["Constant"]:
        assert rules.RULES["Constant"].vjp(case.node, MatrixSymbol("G", *case.node.shape),
                                           case.node) == []


def test_loss_rules_send_no_adjoint_to_targets():
    for key in LOSSES:
        for case in CASES[key]:
            children = [c for c, _ in rules.RULES[key].vjp(case.node, sympy.Symbol("g"),
                                                           case.node)]
            assert children == [case.node.prediction], key


def test_relu_derivative_needs_step_of_zero_to_be_zero(monkeypatch):
    """The a.e. comparison is not vacuous: step(0) = 1/2 would make relu' wrong for a < 0."""
    monkeypatch.setitem(SCALAR, "step", lambda a: Heaviside(a))  # SymPy's default H(0) = 1/2
    problems = rule_mismatches("relu", CASES["relu"][0])
    assert problems and all("a.e., at" in p for p in problems)


# ----------------------------------------------------------------- test the test


def _wrong_rules():
    """Rules broken on purpose; each must be caught by :func:`rule_mismatches`."""
    from mutations import RULE_MUTATIONS

    return [pytest.param(m, id=m.id) for m in RULE_MUTATIONS]


@pytest.fixture
def _sympy_cache():
    """A break of Sigmoid.fdiff must not outlive its test in SymPy's cache."""
    clear_cache()
    yield
    clear_cache()


@pytest.mark.parametrize("mutation", _wrong_rules())
def test_the_comparison_catches_a_wrong_rule(mutation, _sympy_cache, monkeypatch):
    mutation.apply(monkeypatch)
    caught = [p for case in CASES[mutation.rule] for p in rule_mismatches(mutation.rule, case)]
    assert caught, f"{mutation.id}: the comparison did not notice the broken {mutation.rule} rule"


def test_the_comparison_catches_a_scaled_tanh_rule(monkeypatch):
    """Self-contained: tanh' × 1.001 registered as the tanh rule."""
    right = rules.RULES["tanh"]

    def scaled(node, g, out):
        return [(child, MatMul(Rational(1001, 1000), adj))
                for child, adj in right.vjp(node, g, out)]

    monkeypatch.setitem(rules.RULES, "tanh", rules.Rule("tanh", "wrong", right.latex, scaled))
    problems = rule_mismatches("tanh", CASES["tanh"][0])
    assert len(problems) == 4  # every entry of the 2×2 argument
    assert "d/dA[0,0]" in problems[0]
