"""LaTeX sections on the rolled recurrence and what training does with it.

* the rolled BPTT recurrence, valid for every T: e_t, δ_t = ∂L_t/∂h_t +
  J_{t+1}ᵀ δ_{t+1} with δ_{T+1} = 0, and ∂L/∂θ = Σ_t summand_t;
* truncated BPTT(k1, k2) as a change of that sum's range: at a chunk
  boundary τ the sum runs over t = τ−k2+1..τ and δ is cut at the window
  start (h_{τ−k2} is a constant); only the losses of the k1 new steps enter;
* global gradient-norm clipping g ← g·G_max/‖g‖ when ‖g‖ > G_max;
* the bound ‖∂h_t/∂h_k‖₂ ≤ (γ σ_max(W_hh))^{t−k}, γ = sup |f'| from
  :data:`symrnn.ops.ELEMENTWISE`.

As in :mod:`symrnn.render.latex.sections`, every formula is printed from the
engine's recurrence and unrolled gradients; a section takes a
:class:`~symrnn.latex_sections.Context` and returns LaTeX.
"""

from __future__ import annotations

from sympy import MatAdd, MatrixSymbol, Symbol

from symrnn.engine.derive import derive_unrolled
from symrnn.engine.expr import T_SYMBOL, add, at_time, split_timed, timed
from symrnn.ops import ELEMENTWISE
from symrnn.render.jacobians import Diag, jacobian_factors, to_diag_form
from symrnn.render.latex.rows import BUDGET_EM, tex_width
from symrnn.render.latex.sections import Context, display, prose_list
from symrnn.render.printing import T_OUT_LATEX, state_latex
from symrnn.render.recurrence import (
    T_LAST,
    T_OUT,
    StatePlan,
    gradient_plan,
    is_composed,
    state_plans,
)

__all__ = ["SECTIONS", "recurrence_rows", "shift_times"]

T_TAU = Symbol(r"\tau", integer=True, positive=True)
TILDE_DELTA = r"\tilde{\delta}"


def _sum(c: Context, name: str, summand) -> list[str]:
    """∂L/∂θ as its sum over t (a differing first step apart; the decoder's to T_out)."""
    lhs = c.d("L", c.name(name))
    g = gradient_plan(c.recurrence, name)
    if g.is_zero:
        return [f"{lhs} &= 0"]
    if g.last_only:
        return c.eq(lhs, at_time(g.summand, T_LAST))
    first = f"{c.tex(g.first)} + " if g.first is not None else ""
    if g.summand is None:
        return c.eq(lhs, g.first)
    upper = T_OUT_LATEX if g.upper == T_OUT else "T"
    total = rf"{first}\sum_{{t={g.lower}}}^{{{upper}}}"
    rows = c.eq(f"{lhs} &= {total}", g.summand, rel="")
    if len(rows) > 1 and isinstance(g.summand, MatAdd):
        rows[0] = rows[0].replace(total, total + r" \Bigl(", 1)
        rows[-1] += r" \Bigr)"
    return rows


def _generic_rows(c: Context, state: str, expr) -> list[str]:
    """δ_t = expr, then the same with diag(·) for the elementwise factors (when it differs)."""
    rec = c.recurrence
    delta = rec.deltas[state][0]
    rows = c.eq(c.tex(delta), expr)
    jac = add(*(to_diag_form(part) for part in
                (rec.local.get(state), rec.cross.get(state), rec.carry[state])))
    return rows + (c.eq("", jac) if jac != expr else [])


def _delta_rows(c: Context, plan: StatePlan) -> list[str]:
    rec = c.recurrence
    if plan.role != "encoder" and (rec.loss_at_every_step or rec.local[plan.state] is None):
        return _generic_rows(c, plan.state, rec.deltas[plan.state][1])
    rows = []
    for line in plan.lines:
        more = c.eq(c.tex(line.symbol), line.expr)
        if line.note:
            more[-1] += rf" \qquad ({line.note})"
        rows += more
    return rows


def _initial_rows(c: Context) -> list[str]:
    """∂L/∂s_0 of every free initial state (∂L/∂s_{T+1} for a reverse layer)."""
    rows = []
    for s, x in c.recurrence.initial_state.items():
        time = "0" if c.net.direction_of(s) > 0 else "T+1"
        rows += c.eq(c.d("L", state_latex(s, time)), x)
    return rows


def recurrence_rows(c: Context) -> list[str]:
    """e_t, δ_t (every state), its boundary (δ_{T+1} = 0, …), every ∂L/∂θ as a sum over t,
    ∂L/∂s_0 (align rows)."""
    rec = c.recurrence
    plans = state_plans(rec)
    error_sym, error = rec.output_error
    rows = c.eq(c.tex(error_sym), error) if is_composed(c.spec) else \
        [rf"{c.tex(error_sym)} &= {c.tex(error)}"]
    for plan in plans.values():
        rows += _delta_rows(c, plan)
    for plan in plans.values():
        rows += c.eq(c.tex(plan.boundary.symbol), plan.boundary.expr)
    rows += [row for name, summand in rec.gradients.items() for row in _sum(c, name, summand)]
    return rows + _initial_rows(c)


def _run_order(c: Context, plans: dict[str, StatePlan]) -> str:
    """The prose of a composed network's order: which adjoints run which way."""
    groups: dict[str, list[str]] = {}
    for plan in plans.values():
        groups.setdefault(plan.role, []).append(f"${c.tex(plan.lines[-1].symbol)}$")
    text = {
        "forward": "{} run $t = T, T-1, \\dots, 1$ from zero at $T+1$",
        "reverse": "{} run forward in time, $t = 1, 2, \\dots, T$, from zero at $t = 0$ "
                   "(step $t$ of a reverse layer reads its state at $t+1$, so $\\delta_t$ "
                   "receives from $\\delta_{{t-1}}$)",
        "decoder": "{} run $t = T_{{\\mathrm{{out}}}}, \\dots, 1$ over the decoder's steps",
        "encoder": "then {} run $t = T-1, \\dots, 1$ from $\\delta_T$, the decoder's "
                   "initial-state gradient",
    }
    parts = [text[role].format(prose_list(groups[role]))
             for role in ("decoder", "encoder", "forward", "reverse") if role in groups]
    return "; ".join(parts)


def recurrence_section(c: Context) -> str:
    rec = c.recurrence
    rows = recurrence_rows(c)
    where = "every step" if rec.loss_at_every_step else "the last step only"
    adjoints = prose_list([f"${c.tex(sym)} = \\partial L/\\partial {state_latex(s, 't')}$"
                           for s, (sym, _) in rec.deltas.items()])
    if is_composed(c.spec):
        return (
            "\\section{The rolled BPTT recurrence (every $T$)}\n"
            f"Derived once from one generic step $t$ of each layer: {adjoints}. The loss "
            f"sits at {where}. The adjoints {_run_order(c, state_plans(rec))}. Where a line "
            "has a second form, it is the same expression with every elementwise product by "
            "forward values written as $\\operatorname{diag}(\\cdot)$:\n"
            f"{display(rows)}\n"
        )
    return (
        "\\section{The rolled BPTT recurrence (every $T$)}\n"
        f"Derived once from one generic step $t$; {adjoints} "
        f"collect{'s' if len(rec.deltas) == 1 else ''} everything that reaches the state "
        "at step $t$, from the loss at step $t$ and from step "
        f"$t+1$. The loss sits at {where}. The second line of each adjoint is the same "
        "expression with every elementwise product by forward values written as "
        "$\\operatorname{diag}(\\cdot)$. Run $t = T, T-1, \\dots, 1$:\n"
        f"{display(rows)}\n"
    )


def shift_times(expr, offset: int, rename: dict[str, str]):
    """Move per-step symbols at integer times by ``offset``; rename bases (delta → δ̃,
    delta^{c} → δ̃^{c})."""
    if expr is None:
        return None
    mapping = {}
    for sym in expr.atoms(MatrixSymbol):
        parts = split_timed(sym)
        if parts is not None and parts[1].lstrip("-").isdigit():
            base, sep, sup = parts[0].partition("^")
            mapping[sym] = timed(rename.get(base, base) + sep + sup, int(parts[1]) + offset,
                                 *sym.shape)
    return expr.xreplace(mapping)


def _tilde(c: Context, time):
    """δ^s_time → δ̃^s_time for every state (the truncated adjoints)."""
    out = {}
    for s in c.net.states:
        sym = c.net.adjoint_symbol(s, time)
        base, sep, sup = split_timed(sym)[0].partition("^")
        out[sym] = timed(TILDE_DELTA + sep + sup, time, *sym.shape)
    return out


def _window_example(c: Context, k1: int, k2: int) -> str:
    """The engine's gradient over one window, as TBPTT computes it at τ = 2 k1."""
    if k2 > k1 or not c.recurrence.loss_at_every_step:
        return ("(No worked window here: it is shown for $k_2 \\le k_1$ with a loss at "
                "every step, where every loss in the window is new.)\n")
    tau = 2 * k1
    shift = tau - k2
    u = derive_unrolled(c.spec, k2)
    rename = {"delta": TILDE_DELTA}
    rows = [row for s, x in u.definitions
            for row in c.eq(c.tex(shift_times(s, shift, rename)), shift_times(x, shift, rename))]
    W = c.recurrent_weight
    grad = shift_times(u.gradients[W], shift, rename)
    rows += c.eq(rf"g_{{{tau}}}({c.name(W)})", grad)
    start = c.states_at(shift)
    return (
        f"For $(k_1, k_2) = ({k1}, {k2})$ at the boundary $\\tau = {tau}$ the engine, run "
        f"over the window $t = {shift + 1}, \\dots, {tau}$ with ${start}$ as its "
        "constant initial state, gives\n"
        f"{display(rows)}\n"
        f"Nothing reaches ${start}$ or earlier steps: that is the truncation.\n"
    )


def _tbptt_rows(c: Context) -> list[str]:
    rec = c.recurrence
    tilde = {**_tilde(c, T_SYMBOL), **_tilde(c, T_SYMBOL + 1)}
    W = c.recurrent_weight
    rows = c.eq(rf"g_{{\tau}}({c.name(W)}) &= \sum_{{t=\max(1,\, \tau-k_2+1)}}^{{\tau}}",
                rec.gradients[W].xreplace(tilde), rel="")
    for state, (delta, _) in rec.deltas.items():
        local = rec.local[state]
        head = f"{c.tex(tilde[delta])} &=" + (rf" \chi_{{t}}\, {c.tex(local)} +" if local else "")
        rows += c.eq(head, rec.carry[state].xreplace(tilde), rel="")
    ends = ", ".join(f"{c.tex(at_time(tilde[d], T_TAU + 1))} = 0" for d, _ in rec.deltas.values())
    if tex_width(rows[-1] + ends) + 4 <= BUDGET_EM:
        rows[-1] += rf", \qquad {ends}"
    else:
        rows.append(rf"& {ends}")
    return rows


def tbptt_section(c: Context) -> str:
    example = _window_example(c, *c.tbptt) if c.tbptt else ""
    start = c.states_at(r"\tau-k_2")
    return (
        "\\section{Truncated BPTT with $(k_1, k_2)$}\n"
        "Truncation changes the range of the sum, not the summand. The forward pass runs "
        f"$k_1$ steps at a time and carries ${c.states_at()}$ across chunks; at each chunk "
        "boundary $\\tau \\in \\{k_1, 2k_1, \\dots\\}$ the update uses, for every parameter "
        "(shown for the recurrent weights),\n"
        f"{display(_tbptt_rows(c))}\n"
        "where $\\chi_t = 1$ when step $t$ carries a loss among the $k_1$ new steps "
        "($\\tau - k_1 < t \\le \\tau$) and $0$ otherwise. So $t$ runs over the last $k_2$ "
        "steps instead of $1, \\dots, T$, and $\\tilde\\delta$ is cut at the window start: "
        f"${start}$ is treated as a constant, so no gradient flows into it or into "
        "earlier steps. With $k_1 = k_2 = T$ this is full BPTT.\n" + example
    )


def clipping_section(c: Context) -> str:
    names = prose_list([f"${c.name(n)}$" for n in c.recurrence.gradients])
    grad = c.d("L", r"\theta")
    rows = [
        rf"g &= \left({grad}\right)_{{\theta \in \Theta}}",
        rf"\lVert g \rVert &= \Bigl(\sum_{{\theta \in \Theta}} \left\lVert {grad} "
        r"\right\rVert_F^2\Bigr)^{1/2}",
        r"g &\leftarrow g \cdot \frac{G_{\max}}{\lVert g \rVert} \qquad "
        r"\text{when } \lVert g \rVert > G_{\max}\text{; otherwise unchanged.}",
    ]
    return (
        "\\section{Gradient-norm clipping}\n"
        "The seed notes' remedy for exploding gradients, on the global norm of all "
        "parameter gradients (after the sum over $t$, truncated or not), "
        f"$\\Theta$ = \\{{{names}\\}}:\n"
        f"{display(rows)}\n"
        "The clipped gradient keeps its direction and has norm $G_{\\max}$.\n"
    )


def bound_section(c: Context) -> str:
    """‖∂h_t/∂h_k‖ ≤ (γ σ_max(W_hh))^{t−k}; only where the step Jacobian is D_j W_hh."""
    e = c.expansion
    if e is None:
        return ""
    act = c.spec.activation
    gamma = ELEMENTWISE[act].gamma
    W = c.name("W_hh")
    j = Symbol("j", integer=True)
    jac = " ".join(c.tex(f) for f in jacobian_factors(e, j))
    rows = [
        rf"\frac{{\partial h_j}}{{\partial h_{{j-1}}}} = J_{{j}} &= {jac}",
        r"\frac{\partial h_t}{\partial h_k} &= J_{t} J_{t-1} \cdots J_{k+1}",
        rf"\left\lVert \frac{{\partial h_t}}{{\partial h_k}} \right\rVert_2 &\le "
        rf"\prod_{{j=k+1}}^{{t}} \lVert J_j \rVert_2 \le "
        rf"\bigl(\gamma\, \sigma_{{\max}}({W})\bigr)^{{t-k}}, \qquad "
        rf"\gamma = \sup\lvert f'\rvert = {c.tex(gamma)} \text{{ for {act}}}",
    ]
    if e.local_derivative is None:
        exact = (f"Here $J_j = {W}$ exactly (linear RNN), so $\\partial h_t/\\partial h_k = "
                 f"{W}^{{t-k}}$ and its norm grows or decays like $\\rho({W})^{{t-k}}$, "
                 f"$\\rho$ the spectral radius.\n")
    else:
        (diag,) = [f for f in jacobian_factors(e, j) if isinstance(f, Diag)]
        exact = (f"The diagonal factor holds the activation's derivative: "
                 f"$\\lVert {c.tex(diag)} \\rVert_2 \\le \\gamma$.\n")
    return (
        "\\section{The gradient bound and the regimes}\n"
        "Every term of $\\partial L/\\partial\\theta$ that crosses from step $t$ back to "
        "step $k$ carries the Jacobian product $\\partial h_t/\\partial h_k$, with the step "
        "Jacobian from the engine:\n"
        f"{display(rows)}\n" + exact +
        f"If $\\gamma\\,\\sigma_{{\\max}}({W}) < 1$ the bound decays geometrically: "
        "vanishing gradients are guaranteed. $\\gamma\\,\\sigma_{\\max} > 1$ is necessary "
        "for exploding gradients but not sufficient (Pascanu, Mikolov and Bengio, 2013). "
        "\\texttt{symrnn regimes} predicts the regime from the spectrum of the recurrent "
        "matrix and measures the actual rate.\n"
    )


SECTIONS = [recurrence_section, tbptt_section, clipping_section, bound_section]
