"""Column-vector matrix expressions → batched row-major code expressions.

The derivation speaks of column vectors: h_t = f(W_hh h_{t-1} + ...).  The
generated code holds a batch of them as the rows of an array (B, n) for one
step, or (S·B, n) for S steps stacked.  Each rule below is the transpose of
its column form, applied row-wise:

==================  ==========================================
column form         rows
==================  ==========================================
W v                 R(v) @ W.T
Wᵀ v                R(v) @ W
u ⊙ v               R(u) * R(v)
u + v, u − v, c u   R(u) + R(v), R(u) - R(v), c * R(u)
u (vᵀ w)            R(u) * rowsum(R(v) * R(w))
f(v), softmax(v)    f(R(v)), softmax(R(v)) along the last axis
b (a bias, n×1)     b, shape (n,), broadcast over rows
1 (ones)            1
==================  ==========================================

Per-step symbols (``h_{t-1}``, ``delta_{t+1}``, ``e_{t}``) are bound by an
environment: a function that returns the code for a symbol at a relative
time offset, so one expression can be printed inside the time loop or
stacked over all steps.  Outer products u vᵀ summed over steps are the
gradient lowering's business (:func:`outer_sum`), not a row rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sympy import Basic, MatAdd, MatMul, MatrixSymbol
from sympy.matrices.expressions.hadamard import HadamardProduct
from sympy.matrices.expressions.special import OneMatrix
from sympy.matrices.expressions.transpose import Transpose

from symrnn.codegen import ir
from symrnn.engine.expr import Apply, Softmax, split_timed
from symrnn.errors import SymrnnError

__all__ = ["CodegenError", "Env", "rows", "time_offset", "timed_symbols", "timed_bases",
           "to_generic", "outer_sum"]

Env = Callable[[str, int], ir.Node]
"""(base name, offset k of time t+k) → code for that per-step quantity."""

_OFFSET = re.compile(r"^t(?:(?P<sign>[+-])(?P<k>\d+))?$")


class CodegenError(SymrnnError):
    """The code generator met an expression it has no lowering for."""


def time_offset(sym: MatrixSymbol) -> tuple[str, int] | None:
    """('h', -1) for h_{t-1}; None for a parameter; error for a fixed step."""
    parts = split_timed(sym)
    if parts is None:
        return None
    base, time = parts
    match = _OFFSET.match(time)
    if match is None:
        raise CodegenError(f"expected a symbol at a step t+k, got {sym.name}")
    k = int(match["k"] or 0)
    return base, (-k if match["sign"] == "-" else k)


def timed_symbols(expr: Basic) -> set[tuple[str, int]]:
    out = set()
    for sym in expr.atoms(MatrixSymbol):
        key = time_offset(sym)
        if key is not None:
            out.add(key)
    return out


def timed_bases(expr: Basic) -> set[str]:
    """Bases of every per-step symbol, at a step t+k or a fixed step."""
    return {parts[0] for sym in expr.atoms(MatrixSymbol) if (parts := split_timed(sym))}


def to_generic(expr: Basic, time: int) -> Basic:
    """Rename per-step symbols at the fixed step ``time`` to step t (offset 0)."""
    from symrnn.engine.expr import T_SYMBOL, timed

    mapping = {}
    for sym in expr.atoms(MatrixSymbol):
        parts = split_timed(sym)
        if parts and parts[1] == str(time):
            mapping[sym] = timed(parts[0], T_SYMBOL, *sym.shape)
    return expr.xreplace(mapping)


def _is_vector(expr) -> bool:
    return expr.shape[1] == 1


def rows(expr: Basic, env: Env, params: dict[str, ir.Node]) -> ir.Node:
    """The row form R(expr) of a column-vector expression."""
    if isinstance(expr, MatrixSymbol):
        key = time_offset(expr)
        if key is None:
            return params[expr.name]
        return env(*key)
    if isinstance(expr, OneMatrix):
        return ir.Num(1)
    if isinstance(expr, MatAdd):
        return _sum(expr.args, env, params)
    if isinstance(expr, HadamardProduct):
        out = rows(expr.args[0], env, params)
        for arg in expr.args[1:]:
            out = ir.op("mul", out, rows(arg, env, params))
        return out
    if isinstance(expr, MatMul):
        return _product(expr, env, params)
    if isinstance(expr, Apply):
        inner = rows(expr.arg, env, params)
        return inner if expr.op == "identity" else ir.op(expr.op, inner)
    if isinstance(expr, Softmax):
        return ir.op("softmax", rows(expr.arg, env, params))
    raise CodegenError(f"no row-form lowering for {type(expr).__name__} in {expr}")


def _sum(terms, env: Env, params) -> ir.Node:
    out = None
    for term in terms:
        coeff, body = _split_negative(term)
        code = rows(body, env, params)
        if out is None:
            out = ir.op("neg", code) if coeff < 0 else code
        else:
            out = ir.op("sub" if coeff < 0 else "add", out, code)
    return out


def _split_negative(term):
    if isinstance(term, MatMul):
        coeff, mats = term.as_coeff_matrices()
        if coeff == -1:
            return -1, mats[0] if len(mats) == 1 else MatMul(*mats)
    return 1, term


def _param_factor(m, params) -> ir.Node:
    """The right factor that R(... m v) needs: W.T for W, W for Wᵀ."""
    if isinstance(m, MatrixSymbol) and time_offset(m) is None:
        return ir.op("T", params[m.name])
    if isinstance(m, Transpose) and isinstance(m.arg, MatrixSymbol):
        if time_offset(m.arg) is None:
            return params[m.arg.name]
    raise CodegenError(f"expected a parameter or its transpose as a left factor, got {m}")


def _product(expr: MatMul, env: Env, params) -> ir.Node:
    coeff, mats = expr.as_coeff_matrices()
    if not _is_vector(mats[-1]):
        raise CodegenError(f"expected a product ending in a column vector, got {expr}")
    if len(mats) >= 3 and _is_vector(mats[0]) and isinstance(mats[1], Transpose) \
            and _is_vector(mats[1].arg):
        inner = MatMul(*mats[2:]) if len(mats) > 3 else mats[2]
        dot = ir.op("rowsum", ir.op("mul", rows(mats[1].arg, env, params),
                                    rows(inner, env, params)))
        out = ir.op("mul", rows(mats[0], env, params), dot)
    else:
        out = rows(mats[-1], env, params)
        for m in reversed(mats[:-1]):
            out = ir.op("matmul", out, _param_factor(m, params))
    if coeff == 1:
        return out
    if coeff == -1:
        return ir.op("neg", out)
    return ir.op("mul", ir.Num(float(coeff)), out)


def outer_sum(summand: Basic, env: Env, params) -> ir.Node:
    """Σ over stacked rows of a gradient summand: u vᵀ → R(u).T @ R(v); u → Σ R(u)."""
    coeff = 1
    if isinstance(summand, MatMul):
        coeff, mats = summand.as_coeff_matrices()
        if len(mats) == 2 and _is_vector(mats[0]) and isinstance(mats[1], Transpose) \
                and _is_vector(mats[1].arg):
            out = ir.op("matmul", ir.op("T", rows(mats[0], env, params)),
                        rows(mats[1].arg, env, params))
            return out if coeff == 1 else ir.op("mul", ir.Num(float(coeff)), out)
    if _is_vector(summand):
        return ir.op("sum0", rows(summand, env, params))
    raise CodegenError(f"expected an outer product u v.T or a vector summand, got {summand}")
