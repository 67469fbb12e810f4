"""One step of any cell, arranged for code: products, stored values, the step's reverse pass.

:func:`plan` reads a cell's own step equations (:meth:`Network.step_equations`) and the
stacking table of its parameters (:attr:`Network.stacks`, torch's weight_ih / weight_hh /
bias_ih / bias_hh) and returns a :class:`StepPlan`.  Nothing here names a cell:

1. **Products.**  Every term ``W v`` whose weight sits in a stack becomes a *slot* symbol
   ``p_W`` (its bias, when the same sum holds the stack partner, is folded in).  Slots
   of one stack that read the same input form one :class:`Product`, a single matrix
   product per step (``h_{t-1} @ weight_hh.T``, the four LSTM gates at once); a product
   over x_t is hoisted out of the time loop (one product for every t).  An input that
   is not a plain per-step value (the GRU v1's r_t ⊙ h_{t-1}) becomes its own equation.
2. **Stored values.**  A function applied inside an equation (tanh(c_t) in
   h_t = o_t ⊙ tanh(c_t)) becomes its own equation, so the reverse pass reads its
   stored output instead of recomputing it.
3. **The step's reverse pass.**  The engine's :class:`~symrnn.engine.derive.Backprop`
   (the one rule table) runs over these equations seeded with the state adjoints
   δ^s_t, one block per equation, so that each adjoint is named when complete.  The
   result is a straight-line list of definitions, then the carries ∂L/∂s_{t-1}, the
   parameter summands and ∂L/∂x_t.  Duplicates are merged, single-use temporaries
   inlined, and every elementwise factor free of adjoints (1 − h_t ⊙ h_t,
   i_t ⊙ (1 − i_t) ⊙ g_t) is a named *factor*, computed for all t before the loop.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass

import sympy
from sympy import MatAdd, MatMul, MatrixSymbol
from sympy.matrices.expressions.hadamard import HadamardProduct

from symrnn.codegen.translate import CodegenError
from symrnn.engine.derive import Backprop, Block
from symrnn.engine.expr import (
    T_SYMBOL,
    Apply,
    add,
    hadamard,
    matmul,
    ones_like,
    split_timed,
    timed,
)
from symrnn.engine.graph import Equation, Network, network
from symrnn.spec import Spec

__all__ = ["Slot", "Product", "StepPlan", "plan", "pairs", "base_of"]

t_ = T_SYMBOL
def pairs(net: Network) -> list[tuple[str, str]]:
    """Each weight stack and the bias stack added to its products (weight_ih ↔ bias_ih,
    weight_hh_l1 ↔ bias_hh_l1, ...)."""
    return [(name, "bias_" + name[len("weight_"):]) for name in net.stacks
            if name.startswith("weight_")]


def base_of(sym: MatrixSymbol) -> str | None:
    parts = split_timed(sym)
    return parts[0] if parts else None


@dataclass(frozen=True)
class Slot:
    weight: str
    """The per-gate weight (W_xi); its rows in the stack are index·H .. (index+1)·H."""
    bias: str | None
    index: int
    symbol: MatrixSymbol
    """p_{weight} at step t: W v + b."""


@dataclass(frozen=True)
class Product:
    name: str
    stack: str
    bias_stack: str
    input: MatrixSymbol
    slots: tuple[Slot, ...]

    @property
    def hoisted(self) -> bool:
        return base_of(self.input) == "x"

    @property
    def rows(self) -> tuple[int, int]:
        return self.slots[0].index, self.slots[-1].index + 1


@dataclass(frozen=True)
class StepPlan:
    network: Network
    products: tuple[Product, ...]
    equations: tuple[Equation, ...]
    """The forward step t in order: cell equations with slots, lifted inputs and values."""
    seeds: dict
    """state → δ^s_t, the adjoint the step receives for it."""
    definitions: tuple[tuple[MatrixSymbol, object], ...]
    """The step's reverse pass: named adjoints in the order they are computed."""
    carries: dict
    """state → ∂L/∂s_{t-1} (what step t sends back)."""
    summands: dict
    """cell parameter → its summand at step t (∂L/∂θ = Σ_t summand)."""
    input_adjoint: object
    """∂L/∂x_t."""
    factors: tuple[tuple[MatrixSymbol, object], ...]
    """Adjoint-free factors F_k at step t, computed for every t before the loop."""
    slot_adjoints: dict
    """slot symbol → the definition (or seed) that holds its adjoint."""

    @property
    def states(self) -> tuple[str, ...]:
        return self.network.states

    @property
    def adjoint_bases(self) -> set[str]:
        return {base_of(s) for s, _ in self.definitions} | {base_of(s) for s in
                                                            self.seeds.values()}

    def stored(self) -> list[str]:
        """Bases of the forward values that the reverse pass reads (besides the states)."""
        return list(self._stored)

    @functools.cached_property
    def _stored(self) -> tuple[str, ...]:
        exprs = [v for _, v in self.definitions] + list(self.carries.values()) + \
            list(self.summands.values()) + [v for _, v in self.factors] + [self.input_adjoint]
        skip = self.adjoint_bases | {base_of(f) for f, _ in self.factors} | {"x"} | set(
            self.states)
        bases = {base_of(s) for e in exprs if e is not None for s in e.atoms(MatrixSymbol)}
        order = [base_of(eq.lhs) for eq in self.equations]
        return tuple(b for b in order if b in bases and b not in skip)


# ------------------------------------------------------------------ products


class _Slots:
    """Finds ``W v (+ b)`` terms, replaces them by slot symbols, records the inputs."""

    def __init__(self, net: Network):
        self.net = net
        self.weights: dict[str, tuple[str, int]] = {}
        self.biases: dict[str, tuple[str, int]] = {}
        for weight_stack, bias_stack in pairs(net):
            for k, name in enumerate(net.stacks[weight_stack]):
                if name is not None:
                    self.weights[name] = (weight_stack, k)
            for k, name in enumerate(net.stacks[bias_stack]):
                if name is not None:
                    self.biases[name] = (weight_stack, k)
        self.found: dict[str, tuple[Slot, object]] = {}

    def _weight(self, term) -> str | None:
        if isinstance(term, MatMul):
            coeff, mats = term.as_coeff_matrices()
            if coeff == 1 and len(mats) == 2 and isinstance(mats[0], MatrixSymbol) \
                    and mats[0].name in self.weights:
                return mats[0].name
        return None

    def _slot(self, weight: str, v, bias: str | None) -> MatrixSymbol:
        stack, k = self.weights[weight]
        symbol = timed(f"p_{weight}", t_, self.net.sizes.H)
        slot = Slot(weight, bias, k, symbol)
        if weight in self.found and self.found[weight][1] != v:
            raise CodegenError(f"{weight} multiplies two different inputs in one step")
        self.found[weight] = (slot, v)
        return symbol

    def replace_sum(self, terms: tuple) -> object:
        """The terms of one sum, with ``W v`` (and W's paired bias) as slot symbols."""
        names = {t.name for t in terms if isinstance(t, MatrixSymbol)}
        out, used = [], set()
        for term in terms:
            weight = self._weight(term)
            if weight is None:
                out.append(term)
                continue
            stack, k = self.weights[weight]
            bias = next((b for b, place in self.biases.items()
                         if place == (stack, k) and b in names), None)
            used.add(bias)
            out.append(self._slot(weight, term.args[-1], bias))
        return add(*(t for t in out if not (isinstance(t, MatrixSymbol) and t.name in used)))

    def rewrite(self, expr):
        while True:
            nodes = list(sympy.postorder_traversal(expr))
            node = next((n for n in nodes if isinstance(n, MatAdd)
                         and any(self._weight(a) for a in n.args)), None)
            node = node or next((n for n in nodes if self._weight(n)), None)
            if node is None:
                return expr
            terms = node.args if isinstance(node, MatAdd) else (node,)
            expr = expr.xreplace({node: self.replace_sum(terms)})


def _products(slots: _Slots) -> tuple[Product, ...]:
    """Slots of one stack with one input, in stack order, as contiguous products."""
    out: list[Product] = []
    for weight_stack, bias_stack in pairs(slots.net):
        row = sorted((s for s, _ in slots.found.values() if slots.weights[s.weight][0]
                      == weight_stack), key=lambda s: s.index)
        runs: list[list[Slot]] = []
        for slot in row:
            v = slots.found[slot.weight][1]
            if runs and slots.found[runs[-1][-1].weight][1] == v \
                    and runs[-1][-1].index + 1 == slot.index:
                runs[-1].append(slot)
            else:
                runs.append([slot])
        for run in runs:
            v = slots.found[run[0].weight][1]
            name = "P" if base_of(v) == "x" else "Q" if not any(
                p.name.startswith("Q") for p in out) else f"Q{len(out)}"
            out.append(Product(name, weight_stack, bias_stack, v, tuple(run)))
    return tuple(out)


# ------------------------------------------------------------------ equations


def _lift(rhs, lhs: MatrixSymbol, make) -> object:
    """Functions applied below the root of ``rhs`` become equations (their values stored)."""
    inner = [n for n in sympy.preorder_traversal(rhs) if isinstance(n, Apply) and n is not rhs]
    for node in inner:
        arg = node.arg
        tag = base_of(arg) if isinstance(arg, MatrixSymbol) and base_of(arg) else base_of(lhs)
        rhs = rhs.xreplace({node: make(f"{node.op}_{tag}", node)})
    return rhs


def _equations(net: Network, slots: _Slots) -> list[Equation]:
    prev = net.state_symbols(t_ - 1)
    out: list[Equation] = []
    seen: set[str] = set()

    def make(base: str, rhs) -> MatrixSymbol:
        lhs = timed(base, t_, *rhs.shape)
        out.append(Equation(lhs, rhs, "cell", t_))
        return lhs

    for eq in net.step_equations(t_, prev, head=False):
        rhs = slots.rewrite(eq.rhs)
        for weight, (slot, v) in list(slots.found.items()):
            if weight in seen:
                continue
            seen.add(weight)
            if not (isinstance(v, MatrixSymbol) and base_of(v)):
                v = make(f"in_{weight}", v)
                slots.found[weight] = (slot, v)
            bias = net.params.get(slot.bias) if slot.bias else None
            out.append(Equation(slot.symbol, add(matmul(net.params[weight], v), bias),
                                "cell", t_))
        out.append(Equation(eq.lhs, _lift(rhs, eq.lhs, make), "cell", t_))
    return out


# ------------------------------------------------------------------ reverse pass


def _reverse(net: Network, equations: list[Equation]):
    seeds = {s: net.adjoint_symbol(s, t_) for s in net.states}
    now = net.state_symbols(t_)
    blocks = [Block([eq], {eq.lhs: timed(f"d{base_of(eq.lhs)}", t_, *eq.lhs.shape)})
              for eq in equations]
    engine = Backprop({now[s]: seeds[s] for s in net.states}).run(blocks)
    prev = net.state_symbols(t_ - 1)
    carries = {s: engine.gradient(prev[s]) for s in net.states}
    cell = [p.name for p in net.param_defs if p.name in net.params and
            p.name not in ("W_hy", "b_y")]
    summands = {n: engine.gradient(net.params[n]) for n in cell}
    dx = engine.gradient(timed("x", t_, net.sizes.D))
    return seeds, list(engine.definitions), carries, summands, dx


def _substitute_all(state: dict, mapping: dict) -> None:
    state["definitions"] = [(n, v.xreplace(mapping)) for n, v in state["definitions"]]
    for key in ("carries", "summands"):
        state[key] = {k: (v.xreplace(mapping) if v is not None else None)
                      for k, v in state[key].items()}
    if state["dx"] is not None:
        state["dx"] = state["dx"].xreplace(mapping)


def _merge(state: dict, keep: set) -> None:
    """Drop zero adjoints; a definition that is a bare symbol or repeats an earlier one
    is replaced by it."""
    while True:
        seen: dict = {}
        mapping = {}
        kept = []
        for name, value in state["definitions"]:
            if value is None:
                continue
            if isinstance(value, MatrixSymbol) or value in seen:
                mapping[name] = value if isinstance(value, MatrixSymbol) else seen[value]
                continue
            seen[value] = name
            kept.append((name, value))
        state["definitions"] = kept
        if not mapping:
            return
        for key, value in mapping.items():
            while value in mapping:
                value = mapping[value]
            mapping[key] = value
        _substitute_all(state, mapping)
        for key in list(state["alias"]):
            state["alias"][key] = state["alias"][key].xreplace(mapping)
        state["alias"].update({k: v for k, v in mapping.items()})


def _uses(state: dict) -> Counter:
    exprs = [v for _, v in state["definitions"]] + list(state["carries"].values()) + \
        list(state["summands"].values()) + [state["dx"]]
    counts: Counter = Counter()
    for e in exprs:
        if e is not None:
            for node in sympy.preorder_traversal(e):
                if isinstance(node, MatrixSymbol):
                    counts[node] += 1
    return counts


def _scaled(value, adjoint: set[str]) -> bool:
    """value = one adjoint ⊙ adjoint-free factors: substituting it costs nothing once the
    factors are hoisted (dn = δ ⊙ (1 − u) read by three slots becomes δ ⊙ F_k in each)."""
    if not isinstance(value, HadamardProduct):
        return False
    moving = [a for a in _flatten(value)
              if any(base_of(s) in adjoint for s in a.atoms(MatrixSymbol))]
    return len(moving) == 1 and isinstance(moving[0], MatrixSymbol)


def _inline(state: dict, homes: set, adjoint: set[str]) -> None:
    """Temporaries read once, or scaled adjoints (and not holding a slot's adjoint), are
    substituted."""
    while True:
        counts = _uses(state)
        target = next(((n, v) for n, v in state["definitions"]
                       if n not in homes and (counts[n] == 1 or _scaled(v, adjoint))), None)
        if target is None:
            return
        state["definitions"].remove(target)
        _substitute_all(state, {target[0]: target[1]})


def _flatten(expr):
    if isinstance(expr, HadamardProduct):
        out = []
        for a in expr.args:
            out += _flatten(a)
        return out
    return [expr]


def _signed_factors(term) -> tuple[object, list]:
    """term = c · (f_1 ⊙ f_2 ⊙ …): (c, [f_1, f_2, …])."""
    coeff = 1
    if isinstance(term, MatMul):
        coeff, mats = term.as_coeff_matrices()
        if len(mats) != 1:
            return 1, [term]
        term = mats[0]
    return coeff, _flatten(term)


def _factor_out(expr, adjoint: set[str]):
    """Σ_i c_i (m ⊙ r_i) → m ⊙ Σ_i c_i r_i for an adjoint m shared by every term, so that
    the adjoint-free rest can be hoisted (δ ⊙ h − δ ⊙ n → δ ⊙ (h − n))."""
    if expr is None or isinstance(expr, MatrixSymbol):
        return expr
    if isinstance(expr, HadamardProduct):
        return functools.reduce(hadamard, (_factor_out(a, adjoint) for a in _flatten(expr)))
    if isinstance(expr, MatMul):
        coeff, mats = expr.as_coeff_matrices()
        return matmul(coeff, *(_factor_out(m, adjoint) for m in mats))
    if not isinstance(expr, MatAdd):
        return expr
    terms = [_signed_factors(_factor_out(a, adjoint)) for a in expr.args]
    shared = set.intersection(*({f for f in fs if isinstance(f, MatrixSymbol)
                                 and base_of(f) in adjoint} for _, fs in terms))
    if not shared:
        return add(*(matmul(c, functools.reduce(hadamard, fs)) for c, fs in terms))
    m = min(shared, key=lambda f: f.name)
    rest = []
    for c, fs in terms:
        others = list(fs)
        others.remove(m)
        body = functools.reduce(hadamard, others) if others else ones_like(m)
        rest.append(matmul(c, body))
    return hadamard(m, add(*rest))


def _hoist(state: dict, adjoint: set[str]) -> list:
    """Adjoint-free factors of elementwise products → named factors F_k (deduplicated)."""
    factors: dict = {}

    def free(e) -> bool:
        return not any(base_of(s) in adjoint for s in e.atoms(MatrixSymbol))

    def name(factor) -> MatrixSymbol:
        if factor not in factors:
            factors[factor] = timed(f"F{len(factors)}", t_, *factor.shape)
        return factors[factor]

    def hoist(expr):
        if expr is None or isinstance(expr, MatrixSymbol) or free(expr):
            return expr
        if isinstance(expr, HadamardProduct):
            args = _flatten(expr)
            fixed = [a for a in args if free(a)]
            moving = [hoist(a) for a in args if not free(a)]
            if fixed and not (len(fixed) == 1 and isinstance(fixed[0], MatrixSymbol)):
                fixed = [name(functools.reduce(hadamard, fixed))]
            return functools.reduce(hadamard, moving + fixed)
        if isinstance(expr, MatAdd):
            return add(*(hoist(a) for a in expr.args))
        if isinstance(expr, MatMul):
            coeff, mats = expr.as_coeff_matrices()
            return matmul(coeff, *(hoist(m) for m in mats))
        return expr

    state["definitions"] = [(n, hoist(_factor_out(v, adjoint))) for n, v in state["definitions"]]
    state["carries"] = {k: hoist(_factor_out(v, adjoint)) for k, v in state["carries"].items()}
    return [(sym, f) for f, sym in factors.items()]


def plan(spec: Spec) -> StepPlan:
    """The :class:`StepPlan` of ``spec``'s cell (not cached: it is cheap, and a rule
    patched at run time must reach it)."""
    net = network(spec)
    slots = _Slots(net)
    equations = _equations(net, slots)
    products = _products(slots)
    seeds, definitions, carries, summands, dx = _reverse(net, equations)
    state = {"definitions": definitions, "carries": carries, "summands": summands, "dx": dx,
             "alias": {}}
    slot_syms = [s.symbol for p in products for s in p.slots]
    _merge(state, set())
    homes = {_resolve(state, timed(f"d{base_of(s)}", t_, *s.shape)) for s in slot_syms}
    adjoint = {base_of(n) for n, _ in state["definitions"]} | {base_of(s) for s in
                                                              seeds.values()}
    _inline(state, homes, adjoint)
    adjoint = {base_of(n) for n, _ in state["definitions"]} | {base_of(s) for s in
                                                              seeds.values()}
    factors = _hoist(state, adjoint)
    slot_adjoints = {s: _resolve(state, timed(f"d{base_of(s)}", t_, *s.shape))
                     for s in slot_syms}
    return StepPlan(net, products, tuple(equations), seeds, tuple(state["definitions"]),
                    state["carries"], state["summands"], state["dx"], tuple(factors),
                    slot_adjoints)


def _resolve(state: dict, sym):
    while sym in state["alias"]:
        sym = state["alias"][sym]
    return sym
