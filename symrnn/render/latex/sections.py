"""The sections of a LaTeX derivation, each printed from engine expressions.

Every display below is built from what :mod:`symrnn.engine.derive` returns (the
rolled :class:`~symrnn.derive.Recurrence`, the unrolled gradients of
``derive_unrolled``) and the forward program of :mod:`symrnn.engine.graph`; the
prose around them only names what is shown.  Expressions go through the one
LaTeX printer, :func:`symrnn.printing.latex`, with the document's
:class:`~symrnn.printing.Notation`.  Column vectors throughout: h_t ∈ R^H,
Jacobian J_j = ∂h_j/∂h_{j-1} ∈ R^{H×H}, δ_t = ∂L/∂h_t.

Sections read the cell from the :class:`~symrnn.engine.graph.Network` (its states, its
parameters, torch's stacks), never from the cell's name: the same code writes Elman,
LSTM and GRU documents.  A section that needs a structure a cell lacks (the Jacobian
expansion of ∂L_3/∂W_hh needs one state whose carry is one product) returns "".

A section function takes a :class:`Context` and returns LaTeX text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from sympy import MatrixSymbol, Symbol
from sympy import latex as scalar_latex

from symrnn.engine.cells import ALIASES
from symrnn.engine.derive import Recurrence, Unrolled, derive_unrolled
from symrnn.engine.expr import T_SYMBOL, at_time, matmul, split_timed, timed
from symrnn.engine.graph import Network, network, unroll
from symrnn.render.jacobians import Diag, Expansion, expand_last_loss, expandable
from symrnn.render.latex.rows import BUDGET_EM, equation_rows, tex_width
from symrnn.render.printing import Notation, latex, symbol_latex
from symrnn.spec import Spec

__all__ = ["Context", "SECTIONS", "aligned", "display"]

T_EXAMPLE = 3
"""The T of the worked example, as in the seed notes (L_3, h_3 → h_2 → h_1)."""

ROLES = {"weight_hh": "recurrent", "weight_ih": "input", "bias_ih": "bias",
         "bias_hh": "recurrent bias"}
HEAD_ROLES = {"W_hy": "output", "b_y": "output bias"}


_STACK_SUFFIX = re.compile(r"(?P<dec>_dec)?(?:_l(?P<layer>\d+))?(?P<rev>_reverse)?$")
"""A stacked tensor's suffix: the decoder's, a layer's (l ≥ 1), the reverse direction's."""


def _layer_word(stack: str) -> str:
    """', layer 2' for weight_hh_l1 (layers counted from 1 in prose), '' for layer 0;
    ', reverse' and ', decoder' for the reverse direction's and the decoder's."""
    match = _STACK_SUFFIX.search(stack)
    words = [", decoder" if match["dec"] else "",
             f", layer {int(match['layer']) + 1}" if match["layer"] else "",
             ", reverse" if match["rev"] else ""]
    return "".join(words)


def _role_of_stack(stack: str) -> str:
    return ROLES[stack[:_STACK_SUFFIX.search(stack).start()]] + _layer_word(stack)


TORCH_GATE_NAMES = {"u": "z"}
"""Gates that torch's documentation names differently (GRU: update gate u here, z there)."""


@dataclass(frozen=True)
class Context:
    """What every section needs: the spec, its derivation and the notation."""

    spec: Spec
    recurrence: Recurrence
    notation: Notation
    tbptt: tuple[int, int] | None = None

    def tex(self, expr) -> str:
        return "0" if expr is None else latex(expr, self.notation)

    def name(self, param: str) -> str:
        return symbol_latex(param, self.notation)

    def d(self, loss: str, wrt: str) -> str:
        return rf"\frac{{\partial {loss}}}{{\partial {wrt}}}"

    def eq(self, lhs: str, expr, rel: str = "&=") -> list[str]:
        """``lhs &= expr``, broken over rows after whole terms when it is too wide."""
        return equation_rows(lhs, expr, self.tex, rel=rel, hadamard=self.notation.hadamard)

    @cached_property
    def net(self) -> Network:
        return network(self.spec)

    @cached_property
    def rows(self):
        return self.net.initial_states["h"].shape[0]

    @cached_property
    def recurrent_weight(self) -> str:
        """The first recurrent weight (W_hh; W_hi for LSTM): the one the sections single out."""
        return next(p for p in self.net.stacks["weight_hh"] if p is not None)

    def states_at(self, time=None) -> str:
        """h_τ, or (h_τ, c_τ) for a cell with several states (plain h, (h, c) for None);
        ``time`` may be LaTeX (\\tau-k_2)."""
        names = [symbol_latex(s) if time is None
                 else symbol_latex(f"{s}_{{{format_time(time)}}}") for s in self.net.states]
        return names[0] if len(names) == 1 else rf"\left({', '.join(names)}\right)"

    @cached_property
    def expansion(self) -> Expansion | None:
        """∂L_3/∂W_hh as Jacobian products, for cells where it applies (else None)."""
        if not expandable(self.spec, "W_hh"):
            return None
        return expand_last_loss(self.spec, T_EXAMPLE, "W_hh")

    @cached_property
    def last_loss(self) -> Unrolled:
        """The unrolled engine for the loss at step T_EXAMPLE alone."""
        return derive_unrolled(self.spec.replace(topology="many_to_one"), T_EXAMPLE)


def format_time(time) -> str:
    return str(time).replace(" ", "")


def aligned(rows: list[str], pos: str = "") -> str:
    return f"\\begin{{aligned}}{pos}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


def display(rows: list[str]) -> str:
    return "\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}"


def prose_list(items: list[str]) -> str:
    """a, b and c (items already typeset)."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ------------------------------------------------------------ model and graph


def _roles(c: Context) -> dict[str, list[str]]:
    """role → its parameters, in the network's order (from torch's stacks, then the head;
    a weight's columns that read a reverse direction (``_rev``) get their own role)."""
    role = {p: _role_of_stack(stack) for stack, members in c.net.stacks.items()
            for p in members if p}
    role.update(HEAD_ROLES)
    for name in c.net.params:
        base = re.sub(r"_rev(?=_|$)", "", name, count=1)
        if name not in role and base in role:
            role[name] = role[base] + ", columns reading the reverse direction"
    out: dict[str, list[str]] = {}
    for name in c.net.params:
        if name in role:
            out.setdefault(role[name], []).append(name)
    return out


def _alias_note(c: Context) -> str:
    pairs = [(a, n) for a, n in ALIASES.items() if n in c.net.params]
    if c.notation.aliases or not pairs:
        return "."
    return "; the seed notes write " + prose_list(
        [f"${a}$ for ${c.name(n)}$" for a, n in pairs]) + "."


def conventions_section(c: Context) -> str:
    had = c.notation.hadamard
    names = ", ".join(", ".join(f"${c.name(n)}$" for n in group) + f" ({role})"
                      for role, group in _roles(c).items())
    states = ", ".join(f"${symbol_latex(s + '_{t}')}$" for s in c.net.states)
    adjoints = ", ".join(f"${c.tex(sym)} = \\partial L/\\partial {symbol_latex(s + '_{t}')}$"
                         for s, (sym, _) in c.recurrence.deltas.items())
    held = (" (each with the other states of step $t$ held fixed)"
            if len(c.net.states) > 1 else "")
    return (
        "\\section*{Conventions}\n"
        f"Vectors are columns: $x_t$, {states}, $z_t$, $\\hat y_t$, $y_t$ and every adjoint "
        f"{adjoints}{held}, $e_t = \\partial L/\\partial z_t$ have "
        "the shape of the quantity they belong to; a gradient "
        "$\\partial L/\\partial W$ has the shape of $W$. Juxtaposition is the matrix "
        f"product, ${had}$ the elementwise product, $^{{\\top}}$ the transpose, "
        "$\\mathbf{1}$ a vector of ones and $\\operatorname{diag}(v)$ the diagonal matrix "
        f"of $v$. Parameters: {names}{_alias_note(c)}\n"
    )


def model_section(c: Context) -> str:
    t = T_SYMBOL
    equations = c.net.step_equations(t, c.net.state_symbols(t - 1))
    rows = [row for eq in equations for row in c.eq(c.tex(eq.lhs), eq.rhs)]
    if c.spec.topology == "many_to_many":
        rows.append(r"L &= \sum_{t=1}^{T} L_{t}")
    else:
        rows.append(r"L &= L_{T} \quad\text{(many-to-one: a loss at the last step only)}")
    shapes = ", ".join(
        rf"${c.name(n)} \in \mathbb{{R}}^{{{s.shape[0]}\times {s.shape[1]}}}$"
        for n, s in c.net.params.items()
    )
    initial = prose_list([f"${c.tex(s)}$" for s in c.net.initial_states.values()])
    initial += " is the initial state" if len(c.net.states) == 1 else " are the initial states"
    note = (c.net.cell.step.__doc__ or "").strip()
    cell = c.spec.cell.replace("_", "\\_")
    return (
        "\\section{Model equations}\n"
        + (f"Cell \\texttt{{{cell}}}: {note}\n" if note else "")
        + "One step $t$ of the cell, the output head and the loss, as the engine "
        f"differentiates them ({initial}):\n"
        f"{display(rows)}\n"
        f"Parameters (shared by every step): {shapes}.\n"
    )


def _slice(k: int) -> str:
    def mult(n: int) -> str:
        return "0" if n == 0 else "H" if n == 1 else f"{n}H"

    return f"[{mult(k)}:{mult(k + 1)}]"


def _stack_head(c: Context, stack: str, members) -> str:
    sizes = c.net.sizes
    cols = {"weight_ih": sizes.D, "weight_hh": sizes.H}.get(stack, 1)
    shape = rf"${scalar_latex(len(members) * sizes.H)}\times {scalar_latex(cols)}$"
    return rf"\texttt{{{stack.replace('_', chr(92) + '_')}}} {shape}"


def _gate_of(c: Context, param: str) -> MatrixSymbol:
    """The left-hand side of the step equation that reads ``param`` (its gate, i_t, n_t)."""
    sym = c.net.params[param]
    eqs = c.net.step_equations(T_SYMBOL, c.net.state_symbols(T_SYMBOL - 1), head=False)
    return next(eq.lhs for eq in eqs if sym in eq.rhs.atoms(MatrixSymbol))


def _torch_note(c: Context, gates: list[str], empty: list[str], zeros: bool) -> str:
    tt = [rf"\texttt{{{s.replace('_', chr(92) + '_')}}}" for s in empty]
    notes = []
    if not c.spec.bias:
        notes.append("No biases (torch: \\texttt{bias=False}).")
    elif empty or zeros:
        where = f"{prose_list(tt)} and the $\\mathbf{{0}}$ blocks have" if empty and zeros \
            else (f"{prose_list(tt)} has" if empty else "the $\\mathbf{0}$ blocks have")
        notes.append(
            f"One bias per gate: {where} no parameter here. Both biases of a row enter the "
            "same sum, so the bias in the \\texttt{bias\\_ih} column stands for "
            "\\texttt{bias\\_ih} + \\texttt{bias\\_hh} of its rows (load their sum there "
            "and zeros in \\texttt{bias\\_hh}).")
    notes += [f"torch's documentation calls the gate ${name}_t$ here ${theirs}_t$."
              for name, theirs in TORCH_GATE_NAMES.items() if name in gates]
    return " ".join(notes)


def _rows_per_gate(c: Context) -> str:
    H = c.net.sizes.H
    return "$H$ rows" if not isinstance(H, int) else f"$H = {H}$ rows"


def _upper_layers(c: Context) -> str:
    """The layers above 0 have the same table, their names suffixed."""
    if len(c.net.layers) == 1:
        return ""
    names = prose_list([f"\\texttt{{\\_l{layer.index}}}" for layer in c.net.layers[1:]])
    return (f" Layers $2, \\ldots, {len(c.net.layers)}$ have the same table with {names} "
            "appended to every name (torch's \\texttt{weight\\_ih\\_l1}, ...); their "
            "\\texttt{weight\\_ih} blocks are $H$ columns wide, since they read the layer "
            "below's $h_t$.")


def torch_section(c: Context) -> str:
    own = {s: m for s, m in c.net.stacks.items() if not re.search(r"_l\d+$", s)}
    stacks = {s: m for s, m in own.items() if any(m)}
    empty = [s for s, m in own.items() if not any(m)]
    gates = [_gate_of(c, p) for p in stacks["weight_ih"]]
    header = ["rows", "gate"] + [_stack_head(c, s, m) for s, m in stacks.items()]
    body = []
    for k, gate in enumerate(gates):
        cells = [f"\\texttt{{{_slice(k)}}}", f"${c.tex(gate)}$"]
        cells += [f"${c.name(m[k])}$" if m[k] else r"$\mathbf{0}$" for m in stacks.values()]
        body.append(" & ".join(cells))
    zeros = any(m is None for members in stacks.values() for m in members)
    note = _torch_note(c, [split_timed(g)[0] for g in gates], empty, zeros)
    return (
        "\\section{Parameters and torch's stacked tensors}\n"
        "torch stores the cell's parameters in stacked tensors, one block of "
        f"{_rows_per_gate(c)} per gate (the equation that reads the block), top to bottom:\n"
        "\\begin{center}\n\\begin{tabular}{" + "l" * len(header) + "}\n"
        + " & ".join(header) + " \\\\\n\\hline\n" + " \\\\\n".join(body) + "\n"
        "\\end{tabular}\n\\end{center}\n" + note + _upper_layers(c) + "\n"
    )


def _chain_diagram(c: Context, T: int) -> str:
    """s_0 → s_1 → … → s_T with inputs below and outputs above (amsmath only)."""
    program = unroll(c.spec, T)
    has_head = {eq.time for eq in program.equations if eq.block == "head"}
    W, U = (_single(c, c.net.stacks[s]) for s in ("weight_hh", "weight_ih"))
    V = c.name("W_hy")
    arrow = rf"\xrightarrow{{\;{W}\;}}" if W else r"\longrightarrow"
    top, up, mid, down, bottom = [""], [""], [c.states_at(0)], [""], [""]
    for t in range(1, T + 1):
        head = t in has_head
        top += ["", rf"\hat{{y}}_{{{t}}}" if head else ""]
        up += ["", rf"\big\uparrow {V}" if head else ""]
        mid += [arrow, c.states_at(t)]
        down += ["", rf"\big\uparrow {U}"]
        bottom += ["", f"x_{{{t}}}"]
    cols = "c" * len(mid)
    body = " \\\\\n".join(" & ".join(r) for r in (top, up, mid, down, bottom))
    return f"\\[\n\\begin{{array}}{{{cols}}}\n{body}\n\\end{{array}}\n\\]"


def _single(c: Context, members) -> str:
    """The one parameter of a stack (W_hh of an Elman cell), or '' for a gated cell."""
    present = [m for m in members if m]
    return c.name(present[0]) if len(present) == 1 else ""


def _step_blocks(c: Context, program) -> list[str]:
    blocks = []
    for t in range(1, program.T + 1):
        rows = [rf"& \text{{step }} {t}"]
        rows += [r for eq in program.equations if eq.time == t for r in c.eq(c.tex(eq.lhs), eq.rhs)]
        blocks.append(aligned(rows, "[t]"))
    return blocks


def _side_by_side(blocks: list[str]) -> str:
    """The step blocks in as many columns as fit the page (2em between columns)."""
    widest = max(tex_width(row) for b in blocks for row in b.split(" \\\\\n")[1:])
    per_row = max(1, min(len(blocks), int((BUDGET_EM + 2) // (widest + 2))))
    lines = ["\n\\qquad\n".join(blocks[i:i + per_row]) for i in range(0, len(blocks), per_row)]
    return "\n".join(f"\\[\n{line}\n\\]" for line in lines)


def unrolled_section(c: Context) -> str:
    T = T_EXAMPLE
    program = unroll(c.spec, T)
    total = "L = " + " + ".join(c.tex(s) for s in program.losses)
    return (
        f"\\section{{The unrolled graph for $T = {T}$}}\n"
        "The same weights at every step; arrows show what each state reads.\n"
        f"{_chain_diagram(c, T)}\n"
        f"The forward pass as a straight-line program (\\texttt{{unroll(spec, {T})}}):\n"
        + _side_by_side(_step_blocks(c, program)) + "\n"
        f"\\[\n{total}\n\\]\n"
    )


# ------------------------------------------------------------ dL_3/dV, dL_3/dW


def output_gradient_section(c: Context) -> str:
    u = c.last_loss
    T = u.program.T
    V = c.name("W_hy")
    lhs = c.d(f"L_{{{T}}}", V)
    named = u.gradients["W_hy"]
    rows = [rf"{c.tex(sym)} &= {c.tex(expr)}" for sym, expr in u.definitions[:1]]
    rows.append(rf"{lhs} &= {c.tex(named)} = {c.tex(u.inline(named))}")
    if "b_y" in u.gradients:
        rows.append(rf"{c.d(f'L_{{{T}}}', c.name('b_y'))} &= {c.tex(u.gradients['b_y'])}")
    return (
        f"\\section{{The loss at step {T}: $\\partial L_{{{T}}}/\\partial {V}$}}\n"
        f"$L_{{{T}}}$ reads ${V}$ only through $z_{{{T}}}$, so one step of the chain rule "
        f"suffices; $e_{{{T}}} = \\partial L_{{{T}}}/\\partial z_{{{T}}}$ is the output "
        "error the engine derives for this head and loss:\n"
        f"{display(rows)}\n"
        f"The seed notes (least squares, scalar notation) write "
        f"$\\partial L_3/\\partial V = -(y_3 - \\hat y_3)\\,h_3$: with column vectors the "
        "outer product needs $h_3^{\\top}$, and a nonlinear head adds its derivative "
        f"inside $e_{{{T}}}$.\n"
    )


def _abbreviate(c: Context, expr):
    """Replace diag(f'_j) by D_j in an expression."""
    f = c.expansion.local_derivative
    if f is None:
        return expr
    mapping = {Diag(at_time(f, j)): timed("D", j, c.rows, c.rows) for j in range(0, 10)}
    return expr.xreplace(mapping)


def _product(c: Context, fs) -> str:
    """A product of factors printed as one expression (so sums get their brackets)."""
    return c.tex(_abbreviate(c, matmul(*fs))) if fs else ""


def _term_row(c: Context, term) -> str:
    T = c.expansion.T
    parts = [_product(c, term.left)]
    for j, fs in term.jacobians:
        parts.append(rf"\underbrace{{{_product(c, fs)}}}_{{J_{{{j}}}^{{\top}}}}")
    seed = _product(c, term.seed)
    parts.append(rf"\underbrace{{{seed}}}_{{\partial L_{{{T}}}/\partial h_{{{T}}}}}")
    parts.append(_product(c, term.right))
    return rf"\text{{term }} {term.k}: &\quad " + " ".join(p for p in parts if p)


def _jacobian_rows(c: Context, e: Expansion) -> list[str]:
    """J_jᵀ from the carry and D_j, the diagonal factor of the summand."""
    j = Symbol("j", integer=True)
    jac_t = [at_time(f, j - 1) for f in e.jacobian_t]
    rows = [rf"J_{{j}}^{{\top}} = \left(\frac{{\partial h_{{j}}}}{{\partial h_{{j-1}}}}"
            rf"\right)^{{\top}} &= {_product(c, jac_t)}"]
    if e.local_derivative is not None:
        rows.append(rf"D_{{j}} &= {c.tex(Diag(at_time(e.local_derivative, j)))}")
    else:
        rows.append(r"D_{j} &= I \quad\text{(the activation's derivative is 1)}")
    return rows


def recurrent_gradient_section(c: Context) -> str:
    """∂L_3/∂W_hh as Jacobian products; only where :func:`expandable` (one-state carry)."""
    e = c.expansion
    if e is None:
        return ""
    T, u = e.T, e.unrolled
    W = c.name("W_hh")
    lhs = c.d(f"L_{{{T}}}", W)
    engine_sum = " + ".join(c.tex(term.engine) for term in e.terms)
    deltas = [rf"{c.tex(s)} &= {c.tex(x)}" for s, x in u.definitions]
    jac_rows = _jacobian_rows(c, e)
    general = (rf"{lhs} = \sum_{{k=1}}^{{{T}}} D_{{k}} \Bigl(\prod_{{j=k+1}}^{{{T}}} "
               rf"J_{{j}}^{{\top}}\Bigr) \frac{{\partial L_{{{T}}}}}{{\partial h_{{{T}}}}}\, "
               rf"h_{{k-1}}^{{\top}}")
    verdict = ("each term equals the engine's term with the same $k$, factor by factor "
               f"(checked: {', '.join(str(t.k) for t in e.terms)})"
               if e.matches else
               "\\textbf{MISMATCH}: the Jacobian form differs from the engine's terms for "
               f"$k \\in \\{{{', '.join(str(t.k) for t in e.terms if not t.matches)}\\}}$")
    return (
        f"\\section{{$\\partial L_{{{T}}}/\\partial {W}$ through "
        f"$h_{{{T}}} \\to h_{{{T-1}}} \\to h_{{1}}$}}\n"
        "The seed notes start $\\partial L_3/\\partial W = \\frac{\\partial L_3}{\\partial "
        "\\hat y_3}\\frac{\\partial \\hat y_3}{\\partial h_3}\\frac{\\partial h_3}{\\partial W}$, "
        "then label the next line $\\partial L_3/\\partial V$ (it is meant to be "
        "$\\partial L_3/\\partial W$) and stop at ``to be continued''. "
        f"The factor $\\partial h_{{{T}}}/\\partial {W}$ is not local: $h_{{{T}}}$ reads "
        f"${W}$ directly and through every earlier state. "
        f"Reverse mode over the unrolled program with the loss $L_{{{T}}}$ alone gives "
        f"{len(e.terms)} terms, one per step $k$ at which ${W}$ is used:\n"
        f"\\[\n{lhs} = {engine_sum}\n\\]\n"
        "with the adjoints, computed from the last step backwards,\n"
        f"{display(deltas)}\n"
        "Substituting the adjoints turns each term into a product of Jacobians, "
        f"with the transposed step Jacobian read off the engine's carry:\n"
        f"{display(jac_rows)}\n"
        f"\\[\n{general}\n\\]\n"
        "Written out:\n"
        "{\\small\n" + display([_term_row(c, t) for t in e.terms]) + "}\n"
        f"With every $D_j$ written out, term {e.terms[-1].k} is\n"
        f"\\[\n{c.tex(e.terms[-1].named_product)}\n\\]\n"
        f"Check: {verdict}.\n"
    )


SECTIONS = [
    conventions_section,
    model_section,
    torch_section,
    unrolled_section,
    output_gradient_section,
    recurrent_gradient_section,
]

