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
  ``diag(v)`` is the diagonal matrix of v; ``\\prod_{j=a}^{b} M_j`` is M_a ⋯ M_b
  (in a claim about Jacobians, chain-rule order M_b ⋯ M_a: ``product_order``);
* ``M^{n}`` is the matrix power (n an integer expression of the indices, ≥ 0;
  M^0 = I); ``M^2`` of a square matrix with more than one column too, of a
  vector the elementwise square;
* ``∂L/∂s_t`` is the engine's adjoint of the state s_t, the total derivative
  (:meth:`Scope.state_adjoint`); ``∂s_t/∂s'_j`` the engine's state Jacobian
  (:meth:`Scope.jacobian`, read off :mod:`symrnn.render.jacobians`);
* d2l's names are read as symrnn's: W_hx is W_xh, W_qh is W_hy, b_q is b_y;
* with a mean over time (``Formula.loss_time`` "mean") the gradient formula is
  compared as T × (formula) with ∂(Σ_t L_t)/∂θ, and ∂L/∂s_t is (1/T) × the
  engine's adjoint.

Bounded: a sum or product has at most T + 2 terms (time indices run 0..T+1),
the whole formula expands to at most :data:`MAX_WORK` node visits, and
⊙ chains are kept flat (a nested HadamardProduct makes every ``shape`` walk
the chain: quadratic per lowering, cubic in a diagnosis).  An optional
:class:`~symrnn.formula.budget.Budget` is checked every few hundred visits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import sympy
from sympy import Basic, MatrixExpr, MatrixSymbol
from sympy.matrices.expressions.hadamard import HadamardProduct
from sympy.matrices.expressions.special import Identity, OneMatrix, ZeroMatrix

from symrnn.engine import expr as X
from symrnn.engine.cells import ALIASES
from symrnn.engine.expr import at_time
from symrnn.engine.graph import Program, network
from symrnn.errors import FormulaError, ShapeError, SymrnnError, suggest
from symrnn.formula import nodes as N
from symrnn.ops import ELEMENTWISE
from symrnn.render.jacobians import Diag, step_jacobians, within_step_jacobians
from symrnn.spec import Spec

__all__ = ["Lowered", "Scope", "lower", "resolve_param", "MAX_WORK", "MissingSymbol",
           "diag_matrix", "evaluable", "D2L_NAMES"]

MAX_WORK = 100_000
"""Most formula nodes one lowering may visit (sums expand once per step)."""

SYNONYMS = {"W_yh": "W_hy"}
"""Other names in the notes (ŷ_t = g*(W_yh h_t + b))."""
D2L_NAMES = {"W_hx": "W_xh", "W_qh": "W_hy", "b_q": "b_y"}
"""d2l.ai's names (h_t = φ(W_hx x_t + W_hh h_{t-1} + b_h), o_t = W_qh h_t + b_q)."""
D2L_NOTE = "d2l's names read as symrnn's: W_hx is W_xh, W_qh is W_hy, b_q is b_y"


def resolve_param(names, base: str, index=None) -> str | None:
    """The parameter a written name denotes (W, W_{hh}, W_hh, V, W_yh, W_hx …), or None."""
    raw = base if index is None else f"{base}_{index}"
    for candidate in (raw, ALIASES.get(raw), SYNONYMS.get(raw), D2L_NAMES.get(raw)):
        if candidate is not None and candidate in names:
            return candidate
    return None


def diag_matrix(v):
    """diag(v) of a column vector v as an evaluable expression (v 1ᵀ ⊙ I)."""
    if v.shape[1] != 1:
        raise ShapeError(f"diag needs a column vector, got shape {X.shape_str(v)}")
    n = v.shape[0]
    return HadamardProduct(X.matmul(v, OneMatrix(1, n)), Identity(n))


def evaluable(expr):
    """``expr`` with every :class:`~symrnn.render.jacobians.Diag` written as diag_matrix."""
    while expr is not None and (found := expr.atoms(Diag)):
        expr = expr.xreplace({d: diag_matrix(d.args[0]) for d in found})
    return expr


@lru_cache(maxsize=64)
def _blocks(spec: Spec) -> tuple[dict, dict]:
    """(∂s_t/∂s'_{t-1}, ∂s_t/∂s'_t) blocks of the engine at the generic step t."""
    return step_jacobians(spec), within_step_jacobians(spec)


@lru_cache(maxsize=4096)
def _block_at(spec: Spec, s: str, other: str, time: int, within: bool):
    """One block at step ``time``, evaluable (None: s_time does not read s'_{time-1})."""
    step, same = _blocks(spec)
    return evaluable(at_time(same.get((s, other)) if within else step[(s, other)], time))


@dataclass(frozen=True)
class Scope:
    """What a formula may refer to for one spec and T."""

    program: Program
    adjoints: dict
    """name → MatrixSymbol of the engine's named adjoint (None: exactly zero)."""
    jacobian_spec: Spec | None = None
    """Whose state Jacobians ∂s_t/∂s'_j are read (None: the program's spec)."""

    @property
    def T(self) -> int:
        return self.program.T

    def _states(self, *names: str) -> list[str]:
        states = network(self.program.spec).states
        for name in names:
            if name not in states:
                raise FormulaError(f"{name}_t is not a state of this cell: derivatives "
                                   f"dL/ds_t and ds_t/ds_j take a state ({', '.join(states)})")
        return states

    def _block(self, s: str, other: str, time: int, within: bool = False):
        return _block_at(self.jacobian_spec or self.program.spec, s, other, time, within)

    def state_adjoint(self, state: str, time: int):
        """∂L/∂s_time, the total derivative: the engine's named adjoint (its carry and the
        head) plus what the states of the same step that read s send back (LSTM:
        ∂L/∂c_t = δ^c_t + (∂h_t/∂c_t)ᵀ δ^h_t); at time 0 the carry into s_0."""
        states = self._states(state)
        net = network(self.program.spec)
        if not 0 <= time <= self.T:
            return None
        if time == 0:
            return X.add(*(X.matmul(X.transpose(self._block(s, state, 1)),
                                    self.adjoints.get(net.adjoint_symbol(s, 1).name))
                           for s in states))
        own = self.adjoints.get(net.adjoint_symbol(state, time).name)
        sent = [X.matmul(X.transpose(block), self.adjoints.get(net.adjoint_symbol(s, time).name))
                for s in states if (block := self._block(s, state, time, within=True))
                is not None]
        return X.add(own, *sent)

    def jacobian(self, state: str, time: int, other: str, other_time: int):
        """∂s_time/∂s'_other_time of the engine (other states of step other_time held
        fixed): the product of the step Jacobians J_time ⋯ J_{other_time+1}, block (s, s')."""
        states = self._states(state, other)
        for t in (time, other_time):
            if not 0 <= t <= self.T:
                return Missing(f"the Jacobian d{state}_{time}/d{other}_{other_time} does not "
                               f"exist: states run 0..T = {self.T}")
        if other_time > time:
            return None  # a state does not depend on later ones
        if other_time == time:
            return Identity(self.program.initial_states[state].shape[0]) if state == other \
                else self._block(state, other, time, within=True)
        row = {s: self._block(state, s, time) for s in states}
        for k in range(time - 1, other_time, -1):
            row = {s: X.add(*(X.matmul(row[m], self._block(m, s, k)) for m in states
                              if row[m] is not None)) for s in states}
        return row[other]

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
    def __init__(self, formula: N.Formula, scope: Scope, budget=None,
                 product_order: str = "increasing"):
        self.scope = scope
        self.budget = budget
        self.product_order = product_order
        self.mean = formula.loss_time == "mean"
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
        if index is None and node.base in self.defs:
            return self.defined(node.base, None)
        if not isinstance(index, N.Time):
            name = resolve_param(self.params, node.base, index)
            if name is not None:
                if f"{node.base}_{index}" in D2L_NAMES:
                    self.note(D2L_NOTE)
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
        other = {"delta": f"delta^{{h}}_{{{time}}}", "delta^{h}": f"delta_{{{time}}}"}
        for candidate in (name, other.get(base, name)):
            if candidate in self.scope.adjoints:  # δ_t of a gated cell is δ^h_t, and back
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
        timeless = [d for d in rules if d.time is None]
        exact = [d for d in rules if d.time is not None and d.time.var in (None, "T") and
                 d.time.value({"T": self.T}) == time]
        generic = [d for d in rules if d.time is not None and d.time.var not in (None, "T")]
        if (time is None) != bool(timeless):
            written = base if time is None else f"{base}_{time}"
            raise FormulaError(f"{written}: {base} is defined {'without' if timeless else 'with'}"
                               " a time index; use it the same way")
        if timeless:
            rule, bound = timeless[0], {}
        elif exact:
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
        rows, cols = value.shape
        if rows == cols and cols > 1:
            self.note(f"{N.render(node)}: the square of a square matrix is read as the "
                      "matrix power (a vector's ^2 is elementwise)")
            return X.matmul(value, value)
        return X.hadamard(value, value)  # not flattened: (x²)² must stay a DAG

    def _Power(self, node: N.Power, bound):
        try:
            n = node.exponent.value({**bound, "T": self.T})
        except KeyError as err:
            raise FormulaError(f"free index {err.args[0]} in the exponent of "
                               f"{N.render(node)}: sum over it or bind it") from None
        if n < 0:
            raise FormulaError(f"{N.render(node)} has the negative exponent {n} here: "
                               "expected a power n >= 0")
        value = self.node(node.arg, bound)
        if value is None or isinstance(value, Missing) or _is_scalar(value):
            return value if value is None or isinstance(value, Missing) else value ** n
        if value.shape[0] != value.shape[1]:
            raise ShapeError(f"'{N.render(node)}': a power of {N.render(node.arg)} with shape "
                             f"{X.shape_str(value)}, not a square matrix")
        self.work += n
        return Identity(value.shape[0]) if n == 0 else X.matmul(*[value] * n)

    def _Derivative(self, node: N.Derivative, bound):
        num, den = node.num, node.den
        if not (isinstance(num, N.Sym) and isinstance(den, N.Sym)):
            raise FormulaError(f"{N.render(node)}: expected a symbol over a symbol")
        times = {**bound, "T": self.T}
        try:
            den_time = den.index.value(times) if isinstance(den.index, N.Time) else None
            num_time = num.index.value(times) if isinstance(num.index, N.Time) else None
        except KeyError as err:
            raise FormulaError(f"free index {err.args[0]} in {N.render(node)}: sum over it "
                               "or bind it") from None
        if den_time is None:
            raise FormulaError(f"{N.render(node)}: on this side a derivative is taken with "
                               "respect to a state at a step, as in dL/dh_t or dh_t/dh_{t-1}")
        if num.base == "L" and num.index is None:
            adjoint = self.scope.state_adjoint(den.base, den_time)
            return scale(sympy.Rational(1, self.T), adjoint) if self.mean else adjoint
        if num_time is None:
            raise FormulaError(f"{N.render(node)}: expected dL/dh_t (the total loss L) or a "
                               "state Jacobian dh_t/dh_j")
        return self.scope.jacobian(num.base, num_time, den.base, den_time)

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
            return diag_matrix(arg)
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
        if self.product_order == "decreasing":
            values.reverse()
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


class MissingSymbol(FormulaError):
    """The formula reads a symbol that does not exist at this T (or binding)."""


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


def _leading_mean(formula: N.Formula) -> bool:
    body = formula.body
    return isinstance(body, N.Prod) and body.op == "matmul" and \
        body.left == N.Prod("div", N.Num(1), N.Sym("T"))


def lower(formula: N.Formula, scope: Scope, budget=None, *, bound: dict | None = None,
          product_order: str = "increasing") -> Lowered:
    """The formula's body as a matrix expression (None: exactly zero).

    ``bound`` gives values to free time indices (a claim about ∂h_t/∂h_{t-1} is lowered
    at each t); ``product_order`` "decreasing" multiplies ∏ factors in chain-rule order.
    For a gradient with a mean over time the value is T × the formula (see the module
    doc).  With a ``budget``, raises :class:`~symrnn.formula.budget.BudgetExceeded`
    once it has run out.
    """
    lowerer = _Lowerer(formula, scope, budget, product_order)
    if formula.claim is not None and formula.claim.wrt in D2L_NAMES:
        lowerer.note(D2L_NOTE)
    gradient = formula.lhs is None
    if gradient and not lowerer.mean and _leading_mean(formula):
        lowerer.note("the formula has a leading 1/T but L is taken as sum_t L_t: for a mean "
                     "over time declare L = \\frac{1}{T} \\sum_{t=1}^{T} L_t (or time='mean')")
    try:
        value = lowerer.node(formula.body, dict(bound or {}))
        if gradient and lowerer.mean:
            value = scale(sympy.Integer(scope.T), value)
        if isinstance(value, Missing):
            raise MissingSymbol(value.message)
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
