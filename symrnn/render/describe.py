"""Text, JSON-ready and LaTeX renderings of derivation results.

The rolled recurrence is printed as the reader would write it::

    e_t     = ∂L_t/∂z_t            (output error)
    δ_t     = local + carry(δ_{t+1}),   δ_{T+1} = 0
    ∂L/∂θ   = Σ_{t=1}^{T} summand_t
"""

from __future__ import annotations

from typing import Any

from sympy import Symbol

from symrnn.engine.cells import ALIASES
from symrnn.engine.derive import Derivation, Recurrence, Unrolled
from symrnn.engine.expr import at_time
from symrnn.render.printing import PLAIN, Notation, latex, symbol_latex, text

T_LAST = Symbol("T", integer=True, positive=True)

__all__ = [
    "recurrence_dict",
    "recurrence_text",
    "recurrence_latex",
    "unrolled_dict",
    "unrolled_text",
    "derivation_dict",
]


def _t(expr, notation: Notation) -> str:
    return "0" if expr is None else text(expr, notation)


def _sum_text(rec: Recurrence, name: str, summand, notation: Notation) -> str:
    if summand is None:
        return "0"
    body = text(summand, notation)
    if rec.summand_range(name) == "t=T":
        return text(at_time(summand, T_LAST), notation)
    return f"sum_{{t=1}}^{{T}} {body}"


def recurrence_dict(rec: Recurrence, notation: Notation = PLAIN) -> dict[str, Any]:
    """The recurrence as strings, keyed the way the JSON output is."""
    error_sym, error = rec.output_error
    out: dict[str, Any] = {
        "output_error": {str(error_sym): _t(error, notation)},
        "adjoint": {},
        "boundary": {},
        "loss_steps": "every t" if rec.loss_at_every_step else "t = T only",
    }
    for state, (sym, expr) in rec.deltas.items():
        if rec.loss_at_every_step:
            out["adjoint"][str(sym)] = _t(expr, notation)
        else:
            last = at_time(rec.local[state], T_LAST)
            out["adjoint"][str(at_time(sym, T_LAST))] = _t(last, notation)
            out["adjoint"][f"{sym} (t < T)"] = _t(rec.carry[state], notation)
        out["boundary"][str(at_time(sym, T_LAST + 1))] = "0"
    out["initial_state"] = {f"{s}_0": _t(e, notation) for s, e in rec.initial_state.items()}
    return out


def recurrence_text(rec: Recurrence, notation: Notation = PLAIN) -> str:
    d = recurrence_dict(rec, notation)
    spec = rec.spec
    lines = [
        f"BPTT for {spec.cell} ({spec.activation}, head {spec.head}, loss {spec.loss}, "
        f"{spec.topology}); column vectors, @ = matrix product, * = elementwise",
        f"loss at: {d['loss_steps']}",
        "",
        "output error:",
    ]
    lines += [f"  {k} = {v}" for k, v in d["output_error"].items()]
    lines.append("adjoint recurrence (t = T, T-1, ..., 1):")
    lines += [f"  {k} = {v}" for k, v in d["adjoint"].items()]
    lines += [f"  {k} = {v}" for k, v in d["boundary"].items()]
    lines.append("parameter gradients:")
    alias = {v: k for k, v in ALIASES.items()} if notation.aliases else {}
    for name, summand in rec.gradients.items():
        lines.append(f"  dL/d{alias.get(name, name)} = {_sum_text(rec, name, summand, notation)}")
    for name, expr in d["initial_state"].items():
        lines.append(f"  dL/d{name} = {expr}")
    return "\n".join(lines)


def recurrence_latex(rec: Recurrence, notation: Notation = PLAIN) -> str:
    """An ``aligned`` block with the recurrence and every gradient."""
    error_sym, error = rec.output_error
    rows = [rf"{latex(error_sym, notation)} &= {latex(error, notation)}"]
    for sym, expr in rec.deltas.values():
        rows.append(rf"{latex(sym, notation)} &= {latex(expr, notation) if expr else '0'}")
    for name, summand in rec.gradients.items():
        body = latex(summand, notation) if summand is not None else "0"
        lhs = rf"\frac{{\partial L}}{{\partial {symbol_latex(name, notation)}}}"
        if rec.summand_range(name) == "t=T":
            rows.append(rf"{lhs} &= \left.{body}\right|_{{t=T}}")
        else:
            rows.append(rf"{lhs} &= \sum_{{t=1}}^{{T}} {body}")
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


def unrolled_dict(u: Unrolled, notation: Notation = PLAIN) -> dict[str, Any]:
    return {
        "T": u.program.T,
        "adjoints": {str(s): _t(e, notation) for s, e in u.definitions},
        "gradients": {k: _t(v, notation) for k, v in u.gradients.items()},
    }


def unrolled_text(u: Unrolled, notation: Notation = PLAIN) -> str:
    d = unrolled_dict(u, notation)
    lines = [f"unrolled gradients, T = {d['T']}:"]
    lines += [f"  {k} = {v}" for k, v in d["adjoints"].items()]
    alias = {v: k for k, v in ALIASES.items()} if notation.aliases else {}
    lines += [f"  dL/d{alias.get(k, k)} = {v}" for k, v in d["gradients"].items()]
    return "\n".join(lines)


def derivation_dict(
    derivation: Derivation, T: int | None = None, notation: Notation = PLAIN
) -> dict[str, Any]:
    """``{"spec", "recurrence", "gradients"[, "unrolled"]}`` with expressions as strings."""
    rec = derivation.recurrence
    out: dict[str, Any] = {
        "spec": derivation.spec.to_dict(),
        "recurrence": recurrence_dict(rec, notation),
        "gradients": {
            name: _sum_text(rec, name, summand, notation)
            for name, summand in rec.gradients.items()
        },
    }
    out["gradients"].update(out["recurrence"]["initial_state"])
    if T is not None:
        out["unrolled"] = unrolled_dict(derivation.unrolled(T), notation)
    return out
