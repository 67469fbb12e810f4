"""Text, JSON-ready and LaTeX renderings of derivation results.

The rolled recurrence is printed as the reader would write it::

    e_t     = ∂L_t/∂z_t            (output error)
    δ_t     = local + carry(δ_{t+1}),   δ_{T+1} = 0
    ∂L/∂θ   = Σ_{t=1}^{T} summand_t

For the composed architectures (:mod:`symrnn.render.recurrence` says how each state runs):
a reverse layer's δ runs t = 1..T from δ_0 = 0 and its initial-state gradient is
dL/dh_reverse_{T+1}; an encoder's δ_t (t < T) starts from δ_T = the decoder's
initial-state gradient; a decoder's sums run to T_out; a parameter whose step 1 differs
(one_to_many, zero later inputs) gets its t = 1 summand.  Their text and JSON add the
order of each state, the context and the later inputs; plain specs print as before.
"""

from __future__ import annotations

from typing import Any

from symrnn.engine.cells import ALIASES
from symrnn.engine.derive import Derivation, Recurrence, Unrolled
from symrnn.engine.expr import at_time
from symrnn.engine.graph import network
from symrnn.render.printing import PLAIN, T_OUT_LATEX, Notation, latex, symbol_latex, text
from symrnn.render.recurrence import (
    T_LAST,
    T_OUT,
    GradientPlan,
    Line,
    StatePlan,
    gradient_plan,
    initial_state_name,
    is_composed,
    state_plans,
)

__all__ = [
    "recurrence_dict",
    "recurrence_text",
    "recurrence_latex",
    "unrolled_dict",
    "unrolled_text",
    "derivation_dict",
]

ROLE_ORDER = ("decoder", "encoder", "forward", "reverse")
"""The order the kinds of states are computed in (a decoder before its encoder)."""


def _t(expr, notation: Notation) -> str:
    return "0" if expr is None else text(expr, notation)


def _upper(g: GradientPlan, tex: bool = False) -> str:
    if g.upper == T_OUT:
        return T_OUT_LATEX if tex else "T_out"
    return "T"


def _sum_text(rec: Recurrence, name: str, summand, notation: Notation) -> str:
    """∂L/∂θ as text: its sum over the steps (a first step apart where it differs)."""
    g = gradient_plan(rec, name)
    if g.is_zero:
        return "0"
    if g.last_only:
        return text(at_time(g.summand, T_LAST), notation)
    parts = [text(g.first, notation)] if g.first is not None else []
    if g.summand is not None:
        parts.append(f"sum_{{t={g.lower}}}^{{{_upper(g)}}} {text(g.summand, notation)}")
    return " + ".join(parts)


def _line_key(line: Line) -> str:
    return f"{line.symbol} ({line.note})" if line.note else str(line.symbol)


def _architecture(rec: Recurrence) -> dict[str, Any]:
    """What a composed network adds: each state's order, the context, the later inputs."""
    net = network(rec.spec)
    plans = state_plans(rec)
    out: dict[str, Any] = {"order": {str(p.lines[-1].symbol): p.order for p in plans.values()}}
    if net.contexts:
        out["context"] = {f"{dec}_0": f"{enc}_{{T}}" for dec, enc in net.contexts.items()}
        out["steps"] = {"encoder": "t = 1..T (no loss)", "decoder": "t = 1..T_out"}
    if rec.spec.topology == "one_to_many":
        out["input"] = {"x_{t} (t >= 2)": {"zeros": "0", "repeat": "x_{1}",
                                           "feedback": "yhat_{t-1}"}[rec.spec.feed]}
    return out


def recurrence_dict(rec: Recurrence, notation: Notation = PLAIN) -> dict[str, Any]:
    """The recurrence as strings, keyed the way the JSON output is."""
    error_sym, error = rec.output_error
    net = network(rec.spec)
    out: dict[str, Any] = {
        "output_error": {str(error_sym): _t(error, notation)},
        "adjoint": {},
        "boundary": {},
        "loss_steps": "every t" if rec.loss_at_every_step else "t = T only",
    }
    for plan in state_plans(rec).values():
        out["adjoint"] |= {_line_key(line): _t(line.expr, notation) for line in plan.lines}
        out["boundary"][str(plan.boundary.symbol)] = _t(plan.boundary.expr, notation)
    out["initial_state"] = {initial_state_name(net, s): _t(e, notation)
                            for s, e in rec.initial_state.items()}
    if is_composed(rec.spec):
        out |= _architecture(rec)
    return out


def _order_note(plans: dict[str, StatePlan]) -> str:
    """'t = T, T-1, ..., 1', or each kind of state's order when they differ."""
    roles = [r for r in ROLE_ORDER if any(p.role == r for p in plans.values())]
    if roles == ["forward"]:
        return next(iter(plans.values())).order
    orders = {p.role: p.order for p in plans.values()}
    return "; ".join(f"{'then ' if r == 'encoder' else ''}{r} states {orders[r]}"
                     for r in roles)


def _architecture_lines(rec: Recurrence) -> list[str]:
    """Header lines of a composed network: directions, stages, inputs (none otherwise)."""
    spec, net = rec.spec, network(rec.spec)
    lines = []
    if spec.bidirectional:
        lines.append("reverse layers (_reverse): step t reads the state at t+1, forward pass "
                     "t = T, ..., 1 from h_reverse_{T+1}; their adjoints run t = 1, ..., T")
    if net.contexts:
        context = ", ".join(f"{dec}_0 = {enc}_{{T}}" for dec, enc in net.contexts.items())
        lines.append(f"encoder t = 1..T (no loss), decoder (_dec) t = 1..T_out reading "
                     f"y_{{t-1}}; context {context}")
    if spec.topology == "one_to_many":
        later = {"zeros": "no input", "repeat": "x_{t} = x_{1}",
                 "feedback": "x_{t} = yhat_{t-1}"}[spec.feed]
        lines.append(f"input x_1 at t = 1; t >= 2: {later} (feed {spec.feed})")
    return lines


def _boundary_text(rec: Recurrence, plan: StatePlan, notation: Notation) -> str:
    out = f"  {plan.boundary.symbol} = {_t(plan.boundary.expr, notation)}"
    if plan.role == "encoder":
        dec = next(d for d, e in network(rec.spec).contexts.items() if e == plan.state)
        out += f"   (= dL/d{dec}_0: the loss reaches the encoder through the context only)"
    return out


def recurrence_text(rec: Recurrence, notation: Notation = PLAIN) -> str:
    d = recurrence_dict(rec, notation)
    spec = rec.spec
    plans = state_plans(rec)
    lines = [
        f"BPTT for {spec.cell} ({spec.activation}, head {spec.head}, loss {spec.loss}, "
        f"{spec.topology}{', bidirectional' if spec.bidirectional else ''}); column vectors, "
        "@ = matrix product, * = elementwise",
        f"loss at: {d['loss_steps']}",
        *_architecture_lines(rec),
        "",
        "output error:",
    ]
    lines += [f"  {k} = {v}" for k, v in d["output_error"].items()]
    lines.append(f"adjoint recurrence ({_order_note(plans)}):")
    lines += [f"  {k} = {v}" for k, v in d["adjoint"].items()]
    lines += [_boundary_text(rec, plan, notation) for plan in plans.values()]
    lines.append("parameter gradients:")
    alias = {v: k for k, v in ALIASES.items()} if notation.aliases else {}
    for name, summand in rec.gradients.items():
        lines.append(f"  dL/d{alias.get(name, name)} = {_sum_text(rec, name, summand, notation)}")
    for name, expr in d["initial_state"].items():
        lines.append(f"  dL/d{name} = {expr}")
    return "\n".join(lines)


def _sum_latex(rec: Recurrence, name: str, notation: Notation) -> str:
    """``\\frac{∂L}{∂θ} &= …``: the sum over its steps, a differing first step apart."""
    g = gradient_plan(rec, name)
    lhs = rf"\frac{{\partial L}}{{\partial {symbol_latex(name, notation)}}}"
    if g.is_zero:
        return f"{lhs} &= 0"
    if g.last_only:
        return rf"{lhs} &= \left.{latex(g.summand, notation)}\right|_{{t=T}}"
    parts = [latex(g.first, notation)] if g.first is not None else []
    if g.summand is not None:
        parts.append(rf"\sum_{{t={g.lower}}}^{{{_upper(g, tex=True)}}} "
                     f"{latex(g.summand, notation)}")
    return f"{lhs} &= " + " + ".join(parts)


def _line_latex(line: Line, notation: Notation) -> str:
    body = latex(line.expr, notation) if line.expr is not None else "0"
    note = rf" \qquad ({line.note})" if line.note else ""
    return rf"{latex(line.symbol, notation)} &= {body}{note}"


def recurrence_latex(rec: Recurrence, notation: Notation = PLAIN) -> str:
    """An ``aligned`` block with the recurrence and every gradient (for a composed network
    also each state's boundary and the initial-state gradients)."""
    error_sym, error = rec.output_error
    composed = is_composed(rec.spec)
    plans = state_plans(rec)
    rows = [rf"{latex(error_sym, notation)} &= {latex(error, notation)}"]
    rows += [_line_latex(line, notation) for plan in plans.values() for line in plan.lines]
    if composed:
        rows += [_line_latex(plan.boundary, notation) for plan in plans.values()]
    rows += [_sum_latex(rec, name, notation) for name in rec.gradients]
    if composed:
        net = network(rec.spec)
        rows += [rf"\frac{{\partial L}}{{\partial {symbol_latex(_initial_symbol(net, s))}}} "
                 rf"&= {latex(x, notation) if x is not None else '0'}"
                 for s, x in rec.initial_state.items()]
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


def _initial_symbol(net, state: str) -> str:
    """The initial state's symbol name (h_{0}, h_reverse_{T+1}) for LaTeX."""
    return net.initial_states[state].name


def unrolled_dict(u: Unrolled, notation: Notation = PLAIN) -> dict[str, Any]:
    net = u.program.network
    names = {f"{s}_0": initial_state_name(net, s) for s in u.program.initial_states}
    out = {
        "T": u.program.T,
        "adjoints": {str(s): _t(e, notation) for s, e in u.definitions},
        "gradients": {names.get(k, k): _t(v, notation) for k, v in u.gradients.items()},
    }
    if len(net.stages) > 1:
        out["T_out"] = u.program.T_out
    return out


def unrolled_text(u: Unrolled, notation: Notation = PLAIN) -> str:
    d = unrolled_dict(u, notation)
    steps = f", T_out = {d['T_out']}" if "T_out" in d else ""
    lines = [f"unrolled gradients, T = {d['T']}{steps}:"]
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
