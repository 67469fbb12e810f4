"""Exact comparison of a lowered formula with the engine's gradient.

Both sides are written over the stored forward values: every recomputed
forward quantity is replaced by its symbol (tanh(a_t) → h_t, softmax(z_t) →
ŷ_t, W_hh h_{t-1} + W_xh x_t + b_h → a_t, as the engine itself does), and each
remaining matrix symbol becomes an explicit matrix of independent scalar
symbols; the two sides are expanded entry by entry with SymPy.  Two ways, the
cheap one first:

1. **over the named adjoints** (:func:`step_pairs`): the engine's δ_t, e_t …
   stay opaque symbols.  Each quantity the formula defines under an engine
   name (δ_t, δ^{c}_t, e_t) is compared at every step with the engine's
   definition of it, both reading the *engine's* adjoints of later steps, and
   then the gradient itself; all identical proves the formula by induction
   over the steps.  Every comparison is one step of the recursion, so its size
   does not grow with T.
2. **fully inlined**: the named adjoints are substituted and both sides
   expanded whole.  Inlining multiplies the steps out (a GRU's δ_1 at T = 3
   has millions of monomials per entry), so this runs only when
   :func:`expansion_bound` says each entry stays under :data:`MAX_TERMS`.

Identical polynomials mean the formula equals the derivation for every value
of the stored quantities, not just on random instances.  A :class:`Budget`
is checked between entries; what could not run is reported as ``skipped (…)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import sympy
from sympy import QQ, MatAdd, MatMul, MatrixSymbol, Transpose
from sympy.matrices.expressions.hadamard import HadamardProduct
from sympy.matrices.expressions.special import Identity, OneMatrix, ZeroMatrix
from sympy.polys.rings import ring

from symrnn.checks.evaluate import evaluate
from symrnn.engine.expr import Apply
from symrnn.errors import SymrnnError
from symrnn.formula import nodes as N
from symrnn.formula.budget import BudgetExceeded
from symrnn.formula.lower import lower

__all__ = ["compare_symbolically", "expansion_bound", "inline", "inlined_size", "step_pairs",
           "MAX_OPS", "MAX_NODES", "MAX_TERMS"]

MAX_OPS = 400
"""Skip the exact comparison when an inlined side has more operations than this."""
MAX_NODES = 20 * MAX_OPS
"""Skip before inlining when the inlined tree would have more nodes than this."""
MAX_TERMS = 4000
"""Skip the inlined comparison when an entry may expand to more monomials than this."""


def inlined_size(expr, definitions, limit: int = MAX_NODES) -> int:
    """Nodes of ``expr`` with the named adjoints inlined, counted on the shared DAG.

    Inlining δ_t into δ_{t-1} … shares subtrees, so the inlined *tree* can be
    exponentially large (a gated cell) or deeper than Python's recursion limit
    (long T); this counts it without building it.  Counts above ``limit`` are
    reported as ``limit + 1``.
    """
    named: dict = {}

    def size(e) -> int:
        if e in named:
            return named[e]
        if not e.args:
            return 1
        n = min(limit + 1, 1 + sum(size(a) for a in e.args))
        named[e] = n  # memo: a shared subtree (x ⊙ x) is counted once per use, visited once
        return n

    for name, value in definitions:
        named[name] = 0 if value is None else size(value)
    return 0 if expr is None else size(expr)


def expansion_bound(expr, definitions, limit: int = MAX_TERMS) -> int:
    """An upper bound on the monomials of one entry of ``expr`` expanded, with the named
    adjoints inlined (counted on the DAG, capped at ``limit + 1``).

    A sum adds its terms' counts, a ⊙ multiplies them, a matrix product
    multiplies them and each inner size (1 next to a diagonal factor: I, or a ⊙
    with one, as diag(v) is lowered); a symbol or an opaque function is one.
    """
    memo: dict = {}

    def bound(e) -> tuple[int, bool]:
        """(terms per entry, whether e is diagonal)."""
        if e in memo:
            return memo[e]
        diagonal = False
        if isinstance(e, ZeroMatrix):
            n = 0
        elif isinstance(e, MatAdd):
            parts = [bound(a) for a in e.args]
            n, diagonal = sum(p[0] for p in parts), all(p[1] for p in parts)
        elif isinstance(e, HadamardProduct):
            parts = [bound(a) for a in e.args]
            n, diagonal = _product(p[0] for p in parts), any(p[1] for p in parts)
        elif isinstance(e, MatMul):
            n, diagonal = _matmul_bound([(a, bound(a)) for a in e.args])
        elif isinstance(e, Transpose):
            n, diagonal = bound(e.arg)
        else:  # a symbol, a constant matrix, a number, an opaque function
            n, diagonal = 1, isinstance(e, Identity)
        memo[e] = result = (min(n, limit + 1), diagonal)
        return result

    for name, value in definitions:
        memo[name] = (0, False) if value is None else bound(value)
    return 0 if expr is None else bound(expr)[0]


def _product(counts) -> int:
    n = 1
    for c in counts:
        n *= c
    return n


def _matmul_bound(factors) -> tuple[int, bool]:
    """(terms, diagonal) of a matrix product from its factors' (expr, (terms, diagonal))."""
    matrices = [(a, b) for a, b in factors if a.is_Matrix]
    n = _product(b[0] for _, b in factors)
    for (left, (_, left_diag)), (_, (_, right_diag)) in zip(matrices, matrices[1:], strict=False):
        if not (left_diag or right_diag):
            n *= int(left.shape[1])
    return n, bool(matrices) and all(b[1] for _, b in matrices)


def inline(expr, definitions):
    """``expr`` with every named adjoint substituted (None if a zero one is used)."""
    resolved: dict = {}
    for name, value in definitions:
        resolved[name] = None if value is None else value.xreplace(resolved)
    zeros = {k for k, v in resolved.items() if v is None}
    if expr is None or zeros & expr.atoms(MatrixSymbol):
        return None
    return expr.xreplace({k: v for k, v in resolved.items() if v is not None})


def step_pairs(formula: N.Formula, scope, unrolled,
               engine_named: set[str] | None = None) -> list[tuple[str, object, object]] | None:
    """(label, formula side, engine side) for each step of each quantity the formula
    defines under an engine name, then (last, engine side None) the gradient, all over
    the engine's named adjoints; None when the formula cannot be lowered so.

    A definition ``δ_t = …`` is renamed so that the δ_{t+1} it reads is the
    engine's; a definition under another name (δ^{f}_t), or one not in
    ``engine_named`` (default: all that have an engine name), stays the formula's own.
    """
    engine = dict(unrolled.definitions)
    renamed, steps = [], []
    for d in formula.definitions:
        names = {t: _engine_symbol(d.base, t, scope) for t in range(1, scope.T + 1)}
        if any(sym in engine for sym in names.values()) and \
                (engine_named is None or d.base in engine_named):
            renamed.append(dataclasses.replace(d, base=d.base + "#formula"))
            steps += [(d.base, t, sym) for t, sym in names.items()]
        else:
            renamed.append(d)
    own = dataclasses.replace(formula, definitions=tuple(renamed))
    try:
        pairs = [(base, _lower_at(own, base + "#formula", t, scope),
                  engine.get(sym)) for base, t, sym in dict.fromkeys(steps)]
        pairs.append(("the gradient", lower(own, scope).expr, None))
    except SymrnnError:
        return None
    return pairs


def _engine_symbol(base: str, t: int, scope):
    """The engine's symbol for ``base_t`` (δ_t → δ^{h}_t for a gated cell), or None."""
    probe = N.Formula((), None, N.Sym(base, N.Time(None, t)))
    try:
        return lower(probe, scope).expr
    except SymrnnError:
        return None


def _lower_at(formula: N.Formula, base: str, t: int, scope):
    return lower(dataclasses.replace(formula, body=N.Sym(base, N.Time(None, t))), scope).expr


def compare_symbolically(user, truth, unrolled, budget=None, *, formula=None,
                         scope=None) -> str:
    """'identical', 'different' or 'skipped (…)' (also when ``budget`` runs out).

    With the parsed ``formula`` and its ``scope`` the comparison over the named
    adjoints is tried first (see the module docstring).
    """
    if budget is not None and budget.exceeded:
        return f"skipped ({budget.reason})"
    reuse = {eq.rhs: eq.lhs for eq in unrolled.program.equations if eq.block != "loss"}
    try:
        if formula is None:
            proved = _identical(user, truth, reuse, budget)
        else:
            proved = _proved_by_steps(formula, scope, unrolled, truth, reuse, budget)
        return "identical" if proved else _inlined(user, truth, unrolled, reuse, budget)
    except BudgetExceeded:
        return f"skipped ({budget.reason})"
    except _Opaque as err:
        return f"skipped ({err})"


def _proved_by_steps(formula, scope, unrolled, truth, reuse, budget) -> bool:
    """Identity over the named adjoints, step by step.  A definition that is not the
    engine's quantity of its name (the notes' δ^{c}_t = ∂L/∂c_t where the engine's
    holds h_t fixed) is dropped from the engine-named set (the last failing one
    first: the ones before it may fail only by reading it), and the rest tried again."""
    named = None
    while True:
        pairs = step_pairs(formula, scope, unrolled, named)
        if pairs is None:
            return False
        failed = []
        for base, a, b in pairs[:-1]:
            if base not in failed and not _all_identical([(base, a, b)], reuse, budget):
                failed.append(base)
        if not failed:
            return _all_identical([("the gradient", pairs[-1][1], truth)], reuse, budget)
        named = set(dict.fromkeys(base for base, _, _ in pairs[:-1])) - {failed[-1]}


def _all_identical(pairs, reuse, budget) -> bool:
    """Every pair identical over the named adjoints (False also when one cannot be expanded:
    the inlined comparison may still decide)."""
    try:
        return all(_identical(a, b, reuse, budget) for _, a, b in pairs)
    except _Opaque:
        return False


class _Opaque(Exception):
    """A side SymPy cannot evaluate entrywise."""


def _inlined(user, truth, unrolled, reuse, budget) -> str:
    sides = []
    for side in (user, truth):
        bound = expansion_bound(side, unrolled.definitions)
        if bound > MAX_TERMS:
            return f"skipped (an inlined entry may have more than {MAX_TERMS} terms)"
        if inlined_size(side, unrolled.definitions) > MAX_NODES:
            return f"skipped (more than {MAX_OPS} operations)"
        inlined = inline(side, unrolled.definitions)
        if inlined is None:
            return "skipped (a side is exactly zero)"
        sides.append(inlined)
    return "identical" if _identical(*sides, reuse, budget) else "different"


def _identical(a, b, reuse, budget) -> bool:
    """Whether two matrix expressions (None: zero) expand to the same polynomials."""
    if a is None and b is None:
        return True
    for side in (a, b):  # before any tree walk: the sides are DAGs, their trees can be huge
        if inlined_size(side, ()) > MAX_NODES or expansion_bound(side, ()) > MAX_TERMS:
            raise _Opaque(f"an entry may have more than {MAX_TERMS} terms")
    sides = [None if s is None else s.xreplace(reuse) for s in (a, b)]
    shape = next(s.shape for s in sides if s is not None)
    if any(s is not None and s.shape != shape for s in sides):
        return False
    if any(s is not None and sympy.count_ops(s) > MAX_OPS for s in sides):
        raise _Opaque(f"more than {MAX_OPS} operations")
    if budget is not None:
        budget.check()
    try:
        x, y = _Polynomials(sides, budget).evaluate(sides)
        return bool(np.all(x == y))
    except _Opaque:  # a node the polynomial evaluator does not know: SymPy's own expand
        return _expand_identical(sides, shape, budget)


def _expand_identical(sides, shape, budget) -> bool:
    env = {}
    for s in sides:
        for sym in (s.atoms(MatrixSymbol) if s is not None else ()):
            rows, cols = (int(d) for d in sym.shape)
            env[sym] = sympy.Matrix(rows, cols,
                                    lambda i, j, m=sym: sympy.Symbol(f"{m.name}[{i},{j}]"))
    try:
        x, y = (sympy.zeros(*(int(d) for d in shape)) if s is None else
                evaluate(s, env, "sympy") for s in sides)
    except Exception as err:  # noqa: BLE001 - an opaque node is a skip, not a crash
        raise _Opaque(type(err).__name__) from None
    if x.shape != y.shape:
        return False
    for p, q in zip(x, y, strict=True):
        if budget is not None:
            budget.check()
        if sympy.expand(p - q) != 0:
            return False
    return True


class _Polynomials:
    """Entries as sparse polynomials over QQ (:mod:`sympy.polys.rings`), one generator
    per entry of each matrix symbol (and of f(s) for an elementwise f of a symbol s).

    Every sum and product is expanded as it is formed, once per shared
    subexpression of the DAG, where ``sympy.expand`` of the finished entries
    re-expands each shared factor at every use (seconds per entry for a T = 3
    product of diag(·) factors, milliseconds here).
    """

    def __init__(self, sides, budget):
        self.budget = budget
        leaves = {leaf for s in sides if s is not None for leaf in _leaves(s)}
        names = [f"{name}[{i},{j}]" for name, rows, cols in sorted(leaves)
                 for i in range(rows) for j in range(cols)]
        self.ring, *gens = ring(names or ["unused"], QQ)
        self.gens = dict(zip(names, gens, strict=False))
        self.memo: dict = {}

    def evaluate(self, sides):
        return [self.zeros(sides[1 - k].shape) if s is None else self.value(s)
                for k, s in enumerate(sides)]

    def zeros(self, shape):
        return self.full(shape, self.ring.zero)

    def full(self, shape, value):
        out = np.empty(tuple(int(d) for d in shape), dtype=object)
        out.fill(value)
        return out

    def leaf(self, name: str, shape):
        rows, cols = (int(d) for d in shape)
        return np.array([[self.gens[f"{name}[{i},{j}]"] for j in range(cols)]
                         for i in range(rows)], dtype=object)

    def matmul(self, a, b):
        """a @ b entry by entry, the budget checked between entries (one can take long)."""
        out = self.zeros((a.shape[0], b.shape[1]))
        for i in range(a.shape[0]):
            for j in range(b.shape[1]):
                self.tick()
                out[i, j] = sum((a[i, k] * b[k, j] for k in range(a.shape[1])), self.ring.zero)
        return out

    def hadamard(self, a, b):
        out = self.zeros(a.shape)
        for index in np.ndindex(*a.shape):
            self.tick()
            out[index] = a[index] * b[index]
        return out

    def tick(self) -> None:
        if self.budget is not None:
            self.budget.check()

    def value(self, e):
        if e in self.memo:
            return self.memo[e]
        if self.budget is not None:
            self.budget.check()
        self.memo[e] = out = self._value(e)
        return out

    def _value(self, e):
        if isinstance(e, MatrixSymbol):
            return self.leaf(e.name, e.shape)
        if isinstance(e, Apply) and isinstance(e.arg, MatrixSymbol):
            return self.leaf(f"{e.op}({e.arg.name})", e.shape)
        if isinstance(e, (Identity, OneMatrix, ZeroMatrix)):
            out = self.zeros(e.shape) if not isinstance(e, OneMatrix) else \
                self.full(e.shape, self.ring.one)
            if isinstance(e, Identity):
                np.fill_diagonal(out, self.ring.one)
            return out
        if isinstance(e, MatAdd):
            return _reduce(np.add, [self.value(a) for a in e.args])
        if isinstance(e, HadamardProduct):
            return _reduce(self.hadamard, [self.value(a) for a in e.args])
        if isinstance(e, Transpose):
            return self.value(e.arg).T
        if isinstance(e, MatMul):
            scalars = [a for a in e.args if not a.is_Matrix]
            if any(not a.is_Rational for a in scalars):
                raise _Opaque(f"a coefficient {scalars}")
            out = _reduce(self.matmul, [self.value(a) for a in e.args if a.is_Matrix])
            c = self.ring.ground_new(QQ.from_sympy(sympy.Mul(*scalars)))
            return out if c == self.ring.one else out * c
        raise _Opaque(type(e).__name__)


def _leaves(expr):
    """(name, rows, cols) of every generator matrix of ``expr``."""
    out = {(m.name, int(m.shape[0]), int(m.shape[1])) for m in expr.atoms(MatrixSymbol)}
    for node in expr.atoms(Apply):
        if isinstance(node.arg, MatrixSymbol):
            out.add((f"{node.op}({node.arg.name})", int(node.shape[0]), int(node.shape[1])))
    return out


def _reduce(op, values):
    out = values[0]
    for v in values[1:]:
        out = op(out, v)
    return out
