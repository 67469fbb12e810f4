"""LaTeX sections on one step of the cell: its rule applications, Jacobians, direct paths.

* :func:`derivation_section`: the engine's reverse pass over one generic step t, rule by
  rule (the :class:`~symrnn.engine.derive.Step` records of the rolled recurrence): what
  reaches each variable, the rule of each node, what each child receives;
* :func:`jacobian_section`: the step Jacobian ∂h_t/∂h_{t-1} (for several states the
  block Jacobian ∂(h_t, c_t)/∂(h_{t-1}, c_{t-1})), read off the engine's carry by
  :func:`symrnn.render.jacobians.step_jacobians`;
* :func:`direct_path_section`: the weight-free part of each state's own block
  (diag(f_t) for the LSTM cell state, diag(u_t) for GRU), its product over k steps,
  and why it eases vanishing gradients; a cell without one (Elman) says so.

The cell is read from the network (states, parameters), never from its name.
"""

from __future__ import annotations

import re
from itertools import groupby

from sympy import MatrixSymbol, Symbol

from symrnn.engine.expr import T_SYMBOL, at_time, split_timed
from symrnn.engine.rules import RULES
from symrnn.render.jacobians import Diag, direct_part, step_jacobians, within_step_jacobians
from symrnn.render.latex.sections import Context, display, prose_list
from symrnn.render.printing import state_latex as st
from symrnn.render.printing import symbol_latex

__all__ = ["SECTIONS", "derivation_section", "jacobian_section", "direct_path_section"]

_PRIME = re.compile(r"(?<![\\A-Za-z])([A-Za-z]{2,})'")


# ------------------------------------------------------------ rule applications


def _bar(target: MatrixSymbol) -> MatrixSymbol:
    """The name \\overline{v}_τ of the adjoint of a per-step variable v_τ."""
    base, time = split_timed(target)
    return MatrixSymbol(rf"\overline{{{symbol_latex(base)}}}_{{{time}}}", *target.shape)


def _rule_tex(c: Context, op: str) -> str:
    tex = RULES[op].latex.replace(r"\odot", c.notation.hadamard)
    return _PRIME.sub(r"\\operatorname{\1}'", tex)


def _step_rows(c: Context, step, names: dict) -> list[str]:
    rows = [rf"& \triangleright\ {c.tex(step.node)} \quad \bigl[{_rule_tex(c, step.op)}\bigr]"]
    for child, adjoint in step.contributions:
        if not isinstance(child, MatrixSymbol):
            rows += c.eq(rf"\overline{{{c.tex(child)}}}", adjoint.xreplace(names))
            continue
        bar = c.tex(_bar(child)) if split_timed(child) else rf"\overline{{{c.tex(child)}}}"
        rows += c.eq(bar, adjoint.xreplace(names), rel=r"&\mathrel{+}=")
    return rows


def _group_rows(c: Context, target, steps: list, names: dict) -> list[str]:
    """What reached ``target`` (named from here on), then each rule applied under it."""
    adjoint = steps[0].adjoint
    lhs = c.tex(_bar(target))
    rows = c.eq(lhs, adjoint.xreplace(names))
    error_sym, error = c.recurrence.output_error
    if adjoint == error_sym:
        rows[-1] += f" = {c.tex(error)}"
    if not isinstance(adjoint, MatrixSymbol) and adjoint.is_Matrix:
        names[adjoint] = _bar(target)
    for step in steps:
        rows += _step_rows(c, step, names)
    return rows


def derivation_section(c: Context) -> str:
    """The reverse pass over the head and the cell at step t, one rule application a row."""
    generic = [s for s in c.recurrence.steps if split_timed(s.target)[1] == "t"]
    names: dict = {}
    rows: list[str] = []
    for target, steps in groupby(generic, key=lambda s: s.target):
        rows += _group_rows(c, target, list(steps), names)
    seeds = prose_list([f"${c.tex(sym)}$" for sym, _ in c.recurrence.deltas.values()])
    prev = c.states_at("t-1")
    return (
        "\\section{The derivation of one step, rule by rule}\n"
        "The engine walks the equations of step $t$ backwards from the loss $L_t$ and "
        f"from {seeds} (what step $t+1$ sends back; named, not expanded). "
        "$\\overline{v}$ is $\\partial L/\\partial v$; once everything that reaches a "
        "variable has arrived, its adjoint gets that name. Under it, each "
        "$\\triangleright$ row is one node with the rule of the table it applies; "
        "$\\mathrel{+}=$ adds to a variable (contributions are summed), $=$ passes to an "
        "inner node. The contributions to the parameters are the summands of the "
        f"gradients below; those to ${prev}$ are the carry, the same pass one step later.\n"
        "{\\small\n" + display(rows) + "}\n"
    )


# ------------------------------------------------------------ Jacobians


def _partial(c: Context, num: str, den: str, frac: str = r"\frac") -> str:
    return rf"{frac}{{\partial {num}}}{{\partial {den}}}"


def _block_matrix(c: Context) -> str:
    states = c.net.states
    rows = [" & ".join(_partial(c, st(s, "t"), st(p, "t-1"), r"\dfrac") for p in states)
            for s in states]
    return (rf"\frac{{\partial {c.states_at('t')}}}{{\partial {c.states_at('t-1')}}} = "
            "\\begin{bmatrix}\n" + " \\\\\n".join(rows) + "\n\\end{bmatrix}")


def jacobian_section(c: Context) -> str:
    blocks = step_jacobians(c.spec)
    rows = [row for (s, p), block in blocks.items()
            for row in c.eq(_partial(c, st(s, "t"), st(p, "t-1")), block)]
    within = within_step_jacobians(c.spec)
    rows += [row for (s, p), block in within.items()
             for row in c.eq(_partial(c, st(s, "t"), st(p, "t")), block)]
    several = len(c.net.states) > 1
    lead = (f"\\[\n{_block_matrix(c)}\n\\]\nwith the blocks (each holds the other states "
            "of step $t-1$ fixed)" if several else "For this cell:")
    inside = (" The last rows are the Jacobians between states of the same step: "
              + prose_list([f"${st(s, 't')}$ reads ${st(p, 't')}$" for s, p in within]) + "."
              if within else "")
    return (
        "\\section{The step Jacobians through the gates}\n"
        "The carry of the recurrence is linear in the adjoints of step $t+1$: the carry "
        "of a state $s'$ is $\\sum_s (\\partial s_{t+1}/\\partial s'_t)^{\\top} "
        "\\delta^{s}_{t+1}$. The matrix in front of each adjoint, transposed and moved "
        "back one step, is a Jacobian of one step; gate derivatives appear as "
        "$\\operatorname{diag}(\\cdot)$ factors, each in the order of the chain rule. "
        f"{lead}\n{display(rows)}\n{inside}\n"
    )


# ------------------------------------------------------------ direct paths


def _direct_product(c: Context, direct) -> str:
    """∏_{j=t-k+1}^{t} D_j, and diag(v_t ⊙ ⋯ ⊙ v_{t-k+1}) when D is one diag(v)."""
    j = Symbol("j", integer=True)
    prod = rf"\prod_{{j=t-k+1}}^{{t}} {c.tex(at_time(direct, j))}"
    if not isinstance(direct, Diag):
        return prod
    v = direct.args[0]
    had = c.notation.hadamard
    chain = (f"{c.tex(v)} {had} {c.tex(at_time(v, T_SYMBOL - 1))} {had} \\cdots {had} "
             f"{c.tex(at_time(v, Symbol('t-k+1')))}")
    return rf"{prod} = \operatorname{{diag}}\left({chain}\right)"


def _through_other_states(c: Context, state: str, within: dict) -> list[str]:
    """d s_t/d s_{t-1} when another state of step t−1 reads s_{t-1} (h_{t-1} reads c_{t-1})."""
    rows = []
    for (reader, read), block in within.items():
        if read != state:
            continue
        direct = _partial(c, st(state, "t"), st(state, "t-1"))
        via = _partial(c, st(state, "t"), st(reader, "t-1"))
        inner = c.tex(at_time(block, T_SYMBOL - 1))
        rows.append(rf"\frac{{d {st(state, 't')}}}{{d {st(state, 't-1')}}} &= {direct} + {via}"
                    rf"\,\frac{{\partial {st(reader, 't-1')}}}{{\partial {st(state, 't-1')}}}")
        rows.append(rf"&= {c.tex(step_jacobians(c.spec)[(state, state)])} + {via}\, {inner}")
    return rows


def _direct_rows(c: Context, state: str, block, direct) -> list[str]:
    lhs = _partial(c, st(state, "t"), st(state, "t-1"))
    held = (r" \quad \text{(" + prose_list([f"${st(p, 't-1')}$" for p in c.net.states
                                             if p != state]) + " held fixed)}"
            if len(c.net.states) > 1 else "")
    rest = "" if direct == block else r" + \bigl(\text{terms with a weight matrix}\bigr)"
    k_steps = (rf"\frac{{\partial {st(state, 't')}}}{{\partial {st(state, 't-k')}}}"
               r"\Big|_{\text{direct}}")
    return [rf"{lhs} &= {c.tex(direct)}{rest}{held}",
            rf"{k_steps} &= {_direct_product(c, direct)}"]


def _update(c: Context, state: str) -> str:
    """The step equation of ``state`` (c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t), as the engine has it."""
    now = c.net.state_symbols(T_SYMBOL)[state]
    eqs = c.net.step_equations(T_SYMBOL, c.net.state_symbols(T_SYMBOL - 1), head=False)
    (eq,) = [eq for eq in eqs if eq.lhs == now]
    return f"{c.tex(eq.lhs)} = {c.tex(eq.rhs)}"


def _direct_paragraph(c: Context, state: str, block, direct) -> str:
    gate = direct.args[0] if isinstance(direct, Diag) else direct
    exact = ("Holding the other states fixed this is the whole block, so the product is "
             f"$\\partial {st(state, 't')}/\\partial {st(state, 't-k')}$ itself. "
             if direct == block and len(c.net.states) > 1 else "")
    return (
        f"The update ${_update(c, state)}$ passes ${st(state, 't-1')}$ on through an "
        "elementwise product with a gate, added to the rest. "
        f"Along this direct path ${st(state, 't-1')} \\to {st(state, 't')}$ the gradient is "
        "multiplied by gate values only: no weight matrix and no derivative of a squashing "
        f"function. {exact}With ${c.tex(gate)} \\approx \\mathbf{{1}}$ the product over $k$ "
        "steps stays near the identity for every $k$, so what reaches "
        f"${st(state, 't-k')}$ along it does not vanish; a gate near $\\mathbf{{0}}$ cuts it "
        "on purpose. This is why the cell eases vanishing gradients: a plain recurrent "
        "step multiplies by $\\operatorname{diag}(f') W$ every time, whose norm can shrink "
        "geometrically in $k$.\n"
    )


def _through_note(c: Context, state: str, within: dict) -> str:
    readers = prose_list([f"${st(r, 't-1')}$" for r, read in within if read == state])
    return (f"The last rows count {readers} as a function of ${st(state, 't-1')}$ (within step "
            f"$t-1$ it reads ${st(state, 't-1')}$): the total derivative adds a path through the "
            "gates, whose factors carry weight matrices like any recurrent Jacobian, while the "
            "direct term is unchanged.\n")


def direct_path_section(c: Context) -> str:
    blocks = step_jacobians(c.spec)
    within = within_step_jacobians(c.spec)
    parts = []
    for s in c.net.states:
        direct = direct_part(blocks[(s, s)], c.net.params)
        if direct is None:
            continue
        through = _through_other_states(c, s, within)
        rows = _direct_rows(c, s, blocks[(s, s)], direct) + through
        parts.append(f"{display(rows)}\n{_direct_paragraph(c, s, blocks[(s, s)], direct)}"
                     + (_through_note(c, s, within) if through else ""))
    if not parts:
        names = prose_list([f"$\\partial {st(s, 't')}/\\partial {st(s, 't-1')}$"
                            for s in c.net.states])
        parts.append(f"Every term of {names} above contains a weight matrix: this cell has "
                     "no direct path, and $\\partial h_t/\\partial h_k$ is a product of "
                     "$t-k$ such Jacobians.\n")
    else:
        parts.insert(0, "The terms of a state's own Jacobian block that contain no "
                        "parameter form its direct path:\n")
    return "\\section{The direct path: why gates ease vanishing gradients}\n" + "".join(parts)


SECTIONS = [derivation_section, jacobian_section, direct_path_section]
