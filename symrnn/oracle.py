"""The scalar oracle: expand the unrolled loss to scalars and let SymPy differentiate.

This is the independent check of the matrix-form engine.  For concrete small
sizes every parameter entry becomes a scalar symbol (``W_hh[0,1]``), and the
unrolled loss L = Σ_t L_t is written as a scalar program in common-
subexpression form: one scalar symbol per entry of every intermediate
(``a_1[0]``, ``h_1[0]``, ...) with its defining expression.  SymPy's own
scalar calculus differentiates it: ``sympy.diff`` of each definition, combined
by the scalar chain rule (forward mode, dτ/dθ = ∂τ/∂θ + Σ_σ ∂τ/∂σ · dσ/dθ)
— the same as ``sympy.diff`` of the fully expanded loss, without its
exponential growth in T.  Nothing of the engine's matrix rule table is used.

The engine's gradient, evaluated entrywise on the same symbols, must agree:
their difference must simplify to exactly 0 as a rational function of the
symbols.  Two identities are applied first, each true away from a
measure-zero set: step(ReLU(a)) = H(a) for a ≠ 0, and, for cross-entropy,
Σ_i y_i = 1 (targets are distributions), imposed by eliminating the last
target entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import symengine
import sympy
from sympy import Heaviside, Matrix, MatrixSymbol, Max, Symbol

from symrnn.derive import derive_unrolled
from symrnn.evaluate import evaluate, run_adjoints
from symrnn.expr import Apply, Softmax
from symrnn.graph import unroll
from symrnn.ops import Exp, Sigmoid
from symrnn.spec import Spec

__all__ = ["Mismatch", "ProofResult", "explicit_symbols", "prove_unrolled"]


def explicit_symbols(symbol: MatrixSymbol) -> Matrix:
    """A matrix of scalar symbols named like ``W_hh[0,1]`` for a matrix symbol."""
    rows, cols = (int(d) for d in symbol.shape)
    name = symbol.name.replace("{", "").replace("}", "")
    if cols == 1:
        return Matrix(rows, 1, lambda i, j: Symbol(f"{name}[{i}]", real=True))
    return Matrix(rows, cols, lambda i, j: Symbol(f"{name}[{i},{j}]", real=True))


@dataclass(frozen=True)
class Mismatch:
    parameter: str
    entry: tuple[int, ...]
    engine: object
    oracle: object
    difference: object

    def __str__(self) -> str:
        return (
            f"gradient mismatch for dL/d{self.parameter}{list(self.entry)}: "
            f"engine - sympy.diff = {self.difference}"
        )


@dataclass(frozen=True)
class ProofResult:
    spec: Spec
    T: int
    entries_checked: int
    mismatches: tuple[Mismatch, ...]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def raise_if_failed(self) -> None:
        if self.mismatches:
            shown = "\n".join(str(m) for m in self.mismatches[:5])
            raise AssertionError(
                f"{len(self.mismatches)} of {self.entries_checked} gradient entries differ "
                f"for {self.spec} at T={self.T}:\n{shown}"
            )


def _scalar_program(program, env: dict) -> tuple[dict, list]:
    """Give every forward entry a symbol; return (definitions, per-step losses)."""
    definitions: dict = {}
    losses = []
    for eq in program.equations:
        value = evaluate(eq.rhs, env)
        if eq.block == "loss":
            losses.append(value[0, 0])
            continue
        symbols = explicit_symbols(eq.lhs)
        definitions.update(zip(symbols, value, strict=True))
        env[eq.lhs] = symbols
    return definitions, losses


@dataclass
class _Atoms:
    """Symbols for the transcendental atoms, shared by the oracle and the engine.

    tanh(a) and σ(a) fold into the symbol of their output (h = tanh(a), so
    1 − tanh(a)² reads 1 − h²); H(a) for a ReLU output h = Max(0, a) becomes a
    symbol ``step(h)``; e^{z_i} and Σ_j e^{z_j} become symbols E_i and S, so a
    softmax output is E_i S^{-1}.  What remains is a Laurent polynomial.
    """

    fold: dict
    """Applied to every local partial derivative of the oracle (small expressions)."""
    known: dict
    """Sub-expression values for evaluating the engine's gradient (step(h_t))."""
    softmax: dict
    """Softmax output symbol → E_i S^{-1}."""


def _atoms(program, env: dict, definitions: dict) -> _Atoms:
    fold, known, softmax = {}, {}, {}
    for sym, value in definitions.items():
        if isinstance(value, sympy.tanh | Sigmoid):
            fold[value] = sym
    for eq in program.equations:
        if eq.block == "loss":
            continue
        relu = [(k, v) for k, v in zip(env[eq.lhs], map(definitions.get, env[eq.lhs]),
                                       strict=True) if isinstance(v, Max)]
        if relu:
            steps = []
            for sym, value in relu:
                step = Symbol(f"step({sym})")
                fold[value] = sym
                fold[Heaviside(value.args[1])] = step
                steps.append(step)
            known[Apply("step", eq.lhs)] = Matrix(steps).reshape(*env[eq.lhs].shape)
        if isinstance(eq.rhs, Softmax):
            z = env[eq.rhs.arg]
            exps = [Exp(zi) for zi in z]
            for e in exps:
                fold[e] = Symbol(f"E({e.args[0]})", positive=True)
            total = fold[exps[0]]
            if len(exps) > 1:  # one class: softmax is 1 and the normaliser is E itself
                total = Symbol(f"S({eq.rhs.arg.name})", positive=True)
                fold[sympy.Add(*exps)] = total
            for yi, e in zip(env[eq.lhs], exps, strict=True):
                softmax[yi] = fold[e] / total
    return _Atoms(fold, known, softmax)


def _total_derivative(expr, theta, definitions: dict, fold: dict, memo: dict):
    """d expr / d theta through every defined intermediate (scalar chain rule)."""
    result = sympy.diff(expr, theta).xreplace(fold)
    for sym in expr.free_symbols & definitions.keys():
        if sym not in memo:
            memo[sym] = _total_derivative(definitions[sym], theta, definitions, fold, memo)
        if memo[sym] != 0:
            result += sympy.diff(expr, sym).xreplace(fold) * memo[sym]
    return result


def _is_zero(expr) -> bool:
    """Exact zero test of a Laurent polynomial (SymEngine expands it quickly)."""
    return symengine.expand(symengine.sympify(expr)) == 0


def prove_unrolled(spec: Spec, T: int) -> ProofResult:
    """Compare every entry of the engine's unrolled gradient with SymPy's derivative."""
    if not spec.is_concrete:
        raise ValueError("the scalar oracle needs concrete sizes")
    program = unroll(spec, T)
    env: dict = {}
    leaves = {**program.params, **{f"{s}_0": v for s, v in program.initial_states.items()}}
    data = set()
    for eq in program.equations:
        data |= {s for s in eq.rhs.atoms(MatrixSymbol) if s.name[:2] in ("x_", "y_")}
    for sym in [*leaves.values(), *sorted(data, key=lambda s: s.name)]:
        env[sym] = explicit_symbols(sym)
        if spec.loss == "cross_entropy" and sym.name.startswith("y_"):
            # targets are distributions: the last entry is 1 - (the others)
            env[sym][-1] = 1 - sum(env[sym][:-1])
    definitions, losses = _scalar_program(program, env)
    loss = sum(losses)
    atoms = _atoms(program, env, definitions)

    unrolled = derive_unrolled(spec, T)
    engine_env = {k: v.xreplace(atoms.softmax) for k, v in env.items()}
    run_adjoints(unrolled.definitions, engine_env, known=atoms.known)
    mismatches = []
    checked = 0
    for name, sym in leaves.items():
        expr = unrolled.gradients[name]
        if expr is None:
            engine = sympy.zeros(*env[sym].shape)
        else:
            engine = evaluate(expr, engine_env, known=atoms.known)
        for index in range(env[sym].rows * env[sym].cols):
            i, j = divmod(index, env[sym].cols)
            oracle = _total_derivative(loss, env[sym][i, j], definitions, atoms.fold, {})
            oracle = oracle.xreplace(atoms.softmax)
            checked += 1
            if not _is_zero(engine[i, j] - oracle):
                entry = (i, j) if env[sym].cols > 1 else (i,)
                mismatches.append(
                    Mismatch(name, entry, engine[i, j], oracle, engine[i, j] - oracle)
                )
    return ProofResult(spec, T, checked, tuple(mismatches))
