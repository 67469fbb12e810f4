"""Lower a parsed formula to a SymPy matrix expression over the engine's symbols.

For a concrete spec and T every node becomes a matrix expression built with
the :mod:`symrnn.engine.expr` builders (so non-conformable formulas raise
:class:`~symrnn.errors.ShapeError` naming both shapes).  Sums and products
over t expand for this T; definitions (``δ_t = …``) are inlined at each step
they are used, and a user-defined quantity outside 1..T is zero (δ_{T+1} = 0).
An adjoint the user did not define (δ_t, e_t) is the engine's named adjoint.

Reading rules (recorded in :attr:`Lowered.notes` when they fire):

* a column times a column, ``u v`` with u m×1, v n×1, n > 1, is the outer
  product u vᵀ (the notes' ``−(y_3 − ŷ_3) h_3``);
* a scalar added to a matrix is broadcast (``1 - h_t^2`` is 1 − h_t ⊙ h_t);
* ``f'(u)`` is the spec's hidden activation's derivative at u, entrywise;
  ``diag(v)`` is the diagonal matrix of v; ``\\prod_{j=a}^{b} M_j`` is M_a ⋯ M_b.

Bounded: a sum or product has at most T + 2 terms (time indices run 0..T+1),
the whole formula expands to at most :data:`MAX_WORK` node visits, and
⊙ chains are kept flat (a nested HadamardProduct makes every ``shape`` walk
the chain: quadratic per lowering, cubic in a diagnosis).  An optional
:class:`~symrnn.formula.budget.Budget` is checked every few hundred visits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy
from sympy import Basic, MatrixExpr, MatrixSymbol
from sympy.matrices.expressions.hadamard import HadamardProduct
from sympy.matrices.expressions.special import Identity, OneMatrix, ZeroMatrix

from symrnn.engine import expr as X
from symrnn.engine.cells import ALIASES
from symrnn.engine.graph import Program
from symrnn.errors import FormulaError, ShapeError, SymrnnError, suggest
from symrnn.formula import nodes as N
from symrnn.ops import ELEMENTWISE

__all__ = ["Lowered", "Scope", "lower", "resolve_param", "MAX_WORK"]

MAX_WORK = 100_000
"""Most formula nodes one lowering may visit (sums expand once per step)."""

SYNONYMS = {"W_yh": "W_hy"}
"""Other names in the notes (ŷ_t = g*(W_yh h_t + b))."""


def resolve_param(names, base: str, index=None) -> str | None:
    """The parameter a written name denotes (W, W_{hh}, W_hh, V, W_yh …), or None."""
    raw = base if index is None else f"{base}_{index}"
    for candidate in (raw, ALIASES.get(raw), SYNONYMS.get(raw)):
        if candidate is not None and candidate in names:
            return candidate
    return None


@dataclass(frozen=True)
class Scope:
    """What a formula may refer to for one spec and T."""

    program: Program
    adjoints: dict
    """name → MatrixSymbol of the engine's named adjoint (None: exactly zero)."""

    @property
    def T(self) -> int:
        return self.program.T

    def symbols(self) -> dict[str, MatrixSymbol]:
        out = {s.name: s for s in self.program.params.values()}
        for eq in self.program.equations:
            out[eq.lhs.name] = eq.lhs
            out.update({a.name: a for a in eq.rhs.atoms(MatrixSymbol)})
        return out


@dataclass
class Lowered:
    expr: object
    notes: list[str] = field(default_factory=list)


class _Lowerer:
    def __init__(self, formula: N.Formula, scope: Scope, budget=None):
        self.scope = scope
        self.budget = budget
        self.work = 0
        self.T = scope.T
        self.syms = scope.symbols()
        self.params = {name: s for name, s in self.syms.items() if X.split_timed(s) is None}
        self.defs: dict[str, list[N.Definition]] = {}
        for d in formula.definitions:
            self.defs.setdefault(d.base, []).append(d)
        self.memo: dict[tuple[str, int], object] = {}
        self.active: set[tuple[str, int]] = set()
        self.notes: list[str] = []
        self.steps = sorted({p[0] for s in self.syms.values() if (p := X.split_timed(s))}
                            | set(self.defs) | {"delta", "e"})

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # ------------------------------------------------------------ symbols
    def symbol(self, node: N.Sym, bound: dict[str, int]):
        if node.base == "T" and node.index is None:
            return sympy.Integer(self.T)
        if node.base == "L":
            raise FormulaError("the loss L may appear only on the left-hand side (dL/dW = ...)")
        index = node.index
        if isinstance(index, N.Time) and index.var and index.offset == 0 and \
                resolve_param(self.params, node.base, index.var):
            index = index.var  # b_i, b_n: a gate's bias, not a step
        if not isinstance(index, N.Time):
            name = resolve_param(self.params, node.base, index)
            if name is not None:
                return self.params[name]
            if node.base in self.steps and node.index is None:
                raise FormulaError(f"{node.base} needs a time index, as in {node.base}_t")
            known = sorted(set(self.params) | set(ALIASES) | set(self.steps))
            written = N.render(node)
            raise FormulaError(f"unknown symbol {written!r}{suggest(written, known)} "
                               f"(known: {', '.join(known)})")
        try:
            time = node.index.value({**bound, "T": self.T})
        except KeyError:
            raise FormulaError(
                f"free index {node.index.var} in {N.render(node)}: sum over it "
                f"(\\sum_{node.index.var}) or define {node.base}_{node.index.var} = ..."
            ) from None
        return self.at(node.base, time)

    def at(self, base: str, time: int):
        if base in self.defs:
            return self.defined(base, time)
        name = f"{base}_{{{time}}}"
        for candidate in (name, f"delta^{{h}}_{{{time}}}" if base == "delta" else name):
            if candidate in self.scope.adjoints:  # δ_t of a gated cell is δ^h_t
                return self.scope.adjoints[candidate]
        if base in ("delta", "e") or base.startswith("delta^"):
            self.note(f"{base}_{time} is zero here (no loss reaches it)")
            return None
        if name in self.syms:
            return self.syms[name]
        if base not in self.steps:
            raise FormulaError(f"unknown symbol {base!r}{suggest(base, self.steps)} "
                               f"(per-step symbols: {', '.join(self.steps)})")
        return Missing(f"{base}_{time} does not exist for T = {self.T} "
                       "(steps run 1..T, h_0 is the initial state)")

    def defined(self, base: str, time: int):
        key = (base, time)
        if key in self.memo:
            return self.memo[key]
        if key in self.active:
            raise FormulaError(f"the definition of {base}_{time} refers to itself")
        rules = self.defs[base]
        exact = [d for d in rules if d.time.var in (None, "T") and
                 d.time.value({"T": self.T}) == time]
        generic = [d for d in rules if d.time.var not in (None, "T")]
        if exact:
            rule, bound = exact[0], {}
        elif generic and 1 <= time <= self.T:
            rule = generic[0]
            bound = {rule.time.var: time - rule.time.offset}
        else:
            self.note(f"{base}_{time} is outside 1..T and taken as zero")
            self.memo[key] = None
            return None
        self.active.add(key)
        try:
            value = self.node(rule.rhs, bound)
        finally:
            self.active.discard(key)
        if _is_scalar(value):
            if value != 0:
                raise FormulaError(f"{base}_{time} is defined as the scalar {value}; "
                                   "expected a vector")
            value = None
        self.memo[key] = value
        return value

    # ------------------------------------------------------------ nodes
    def node(self, node, bound: dict[str, int]):
        self.work += 1
        if self.work > MAX_WORK:
            raise FormulaError(f"the formula expands to more than {MAX_WORK} terms for "
                               f"T = {self.T} (nested sums or products over many steps)")
        if self.budget is not None and self.work % 256 == 0:
            self.budget.check()
        method = getattr(self, f"_{type(node).__name__}")
        return method(node, bound)

    def _Num(self, node: N.Num, bound):
        return sympy.Rational(node.value.numerator, node.value.denominator)

    def _Sym(self, node: N.Sym, bound):
        return self.symbol(node, bound)

    def _Neg(self, node: N.Neg, bound):
        return scale(-1, self.node(node.arg, bound))

    def _Add(self, node: N.Add, bound):
        return self.plus(self.node(node.left, bound), self.node(node.right, bound))

    def _Sub(self, node: N.Sub, bound):
        return self.plus(self.node(node.left, bound), scale(-1, self.node(node.right, bound)))

    def _Prod(self, node: N.Prod, bound):
        a, b = self.node(node.left, bound), self.node(node.right, bound)
        if node.op != "div" and (a is None or b is None):
            return None
        if isinstance(a, Missing) or isinstance(b, Missing):
            return a if isinstance(a, Missing) else b
        if node.op == "div":
            if not _is_scalar(b):
                raise FormulaError(f"division by the matrix {N.render(node.right)}: "
                                   "expected a scalar divisor such as 2 or T")
            if b == 0:
                raise FormulaError(f"division by zero in {N.render(node)}")
            return scale(1 / b, a)
        if _is_scalar(a) or _is_scalar(b):
            return scale(a, b) if _is_scalar(a) else scale(b, a)
        if a is None or b is None:
            return None
        if node.op == "hadamard":
            if a.shape != b.shape:
                raise ShapeError(f"'{N.render(node)}' is not conformable: elementwise product "
                                 f"of {N.render(node.left)} with shape {X.shape_str(a)} and "
                                 f"{N.render(node.right)} with shape {X.shape_str(b)}")
            return _hadamard(a, b)
        if a.shape[1] == 1 and b.shape[1] == 1 and b.shape[0] != 1:
            self.note(f"{N.render(node)}: a column times a column is read as the outer "
                      f"product ({N.render(node.left)}) ({N.render(node.right)})^T")
            b = X.transpose(b)
        if a.shape[1] != b.shape[0]:
            raise ShapeError(f"'{N.render(node)}' is not conformable: {N.render(node.left)} "
                             f"has shape {X.shape_str(a)}, {N.render(node.right)} has shape "
                             f"{X.shape_str(b)}")
        return X.matmul(a, b)

    def _Transpose(self, node: N.Transpose, bound):
        value = self.node(node.arg, bound)
        if isinstance(value, Missing):
            return value
        return value if _is_scalar(value) else X.transpose(value)

    def _Square(self, node: N.Square, bound):
        value = self.node(node.arg, bound)
        if value is None or isinstance(value, Missing):
            return value
        if _is_scalar(value):
            return value ** 2
        return X.hadamard(value, value)  # not flattened: (x²)² must stay a DAG

    def _Call(self, node: N.Call, bound):
        arg = self.node(node.arg, bound)
        if isinstance(arg, Missing):
            return arg
        if _is_scalar(arg):
            raise FormulaError(f"{node.func}(...) of a scalar: expected a vector argument")
        if arg is None:
            arg = ZeroMatrix(1, 1)
        func = self.scope.program.spec.activation if node.func == "f" else node.func
        if node.derivative:
            if func not in ELEMENTWISE or ELEMENTWISE[func].derivative is None:
                raise FormulaError(f"no derivative notation for {func!r}")
            return X.derivative_from_output(func, X.apply(func, arg))
        if func == "softmax":
            return X.Softmax(arg)
        if func == "diag":
            if arg.shape[1] != 1:
                raise ShapeError(f"diag needs a column vector, got shape {X.shape_str(arg)}")
            n = arg.shape[0]
            return HadamardProduct(X.matmul(arg, OneMatrix(1, n)), Identity(n))
        return X.apply(func, arg)

    def _Big(self, node: N.Big, bound):
        scope = {**bound, "T": self.T}
        try:
            lo, hi = node.lo.value(scope), node.hi.value(scope)
        except KeyError as err:
            raise FormulaError(f"free index {err.args[0]} in the bounds of \\{node.kind}_"
                               f"{{{node.var}={node.lo}}}^{{{node.hi}}}") from None
        if node.var in bound:
            raise FormulaError(f"index {node.var} of \\{node.kind} is already in use")
        if hi - lo + 1 > self.T + 2:
            raise FormulaError(f"\\{node.kind}_{{{node.var}={lo}}}^{{{hi}}} has {hi - lo + 1} "
                               f"terms, but for T = {self.T} time indices run 0..{self.T + 1}")
        values = [self.node(node.body, {**bound, node.var: k}) for k in range(lo, hi + 1)]
        if node.kind == "sum":
            out = None
            for v in values:
                out = self.plus(out, v)
            return out
        if not values:
            return self.empty_product(node, bound)
        out = values[0]
        for v in values[1:]:
            if out is None or v is None:
                return None
            if isinstance(out, Missing) or isinstance(v, Missing):
                return out if isinstance(out, Missing) else v
            out = scale(out, v) if _is_scalar(out) else (
                scale(v, out) if _is_scalar(v) else X.matmul(out, v))
        return out

    def empty_product(self, node: N.Big, bound):
        """The identity, sized by the body at any step where it exists."""
        for k in range(0, self.T + 2):
            value = self.node(node.body, {**bound, node.var: k})
            if isinstance(value, MatrixExpr):
                if value.shape[0] != value.shape[1]:
                    raise ShapeError(f"\\prod of non-square factors {N.render(node.body)} "
                                     f"of shape {X.shape_str(value)}")
                return Identity(value.shape[0])
        raise FormulaError(f"empty product {N.render(node)}: its size is unknown")

    def plus(self, a, b):
        if isinstance(a, Missing) or isinstance(b, Missing):
            return a if isinstance(a, Missing) else b
        if a is None:
            return b
        if b is None:
            return a
        if _is_scalar(a) and _is_scalar(b):
            return a + b
        if _is_scalar(a) or _is_scalar(b):
            s, m = (a, b) if _is_scalar(a) else (b, a)
            if s == 0:
                return m
            return X.add(m, scale(s, OneMatrix(*m.shape)))
        return X.add(a, b)


class Missing:
    """A symbol that does not exist (h_{T+1}); harmless only when multiplied by zero."""

    def __init__(self, message: str):
        self.message = message


def _hadamard(a, b):
    """a ⊙ b with nested ⊙ flattened into one n-ary product."""
    if not (isinstance(a, HadamardProduct) or isinstance(b, HadamardProduct)) or \
            a.shape != b.shape or isinstance(a, OneMatrix) or isinstance(b, OneMatrix):
        return X.hadamard(a, b)  # the shape error, ones, zeros and the binary case
    flat = (a.args if isinstance(a, HadamardProduct) else (a,)) + \
        (b.args if isinstance(b, HadamardProduct) else (b,))
    # Basic.__new__: the factors are checked already (a flat product's shape is its
    # first factor's); HadamardProduct(...) would validate and sympify every factor
    # again, quadratic along a chain.
    return Basic.__new__(HadamardProduct, *flat)


def _is_scalar(value) -> bool:
    return isinstance(value, Basic) and not isinstance(value, MatrixExpr)


def scale(c, value):
    """c · value for a scalar c (value scalar, matrix or None)."""
    if value is None or isinstance(value, Missing):
        return value
    if _is_scalar(value):
        return c * value
    return X.matmul(c, value)


def lower(formula: N.Formula, scope: Scope, budget=None) -> Lowered:
    """The formula's body as a matrix expression (None: exactly zero).

    With a ``budget``, raises :class:`~symrnn.formula.budget.BudgetExceeded`
    once it has run out.
    """
    lowerer = _Lowerer(formula, scope, budget)
    try:
        value = lowerer.node(formula.body, {})
        if isinstance(value, Missing):
            raise FormulaError(value.message)
        if _is_scalar(value):
            value = None if value == 0 else scale(value, OneMatrix(1, 1))
    except RecursionError:
        raise FormulaError("formula nested too deeply") from None
    except ShapeError as err:
        err.notes = list(lowerer.notes)
        raise
    except (TypeError, ValueError) as err:
        if isinstance(err, SymrnnError):
            raise
        raise ShapeError(f"cannot build the formula: {err}") from None
    return Lowered(value, lowerer.notes)
