"""The sections of a LaTeX derivation, each printed from engine expressions.

Every display below is built from what :mod:`symrnn.engine.derive` returns (the
rolled :class:`~symrnn.derive.Recurrence`, the unrolled gradients of
``derive_unrolled``) and the forward program of :mod:`symrnn.engine.graph`; the
prose around them only names what is shown.  Expressions go through the one
LaTeX printer, :func:`symrnn.printing.latex`, with the document's
:class:`~symrnn.printing.Notation`.  Column vectors throughout: h_t ∈ R^H,
Jacobian J_j = ∂h_j/∂h_{j-1} ∈ R^{H×H}, δ_t = ∂L/∂h_t.

A section function takes a :class:`Context` and returns LaTeX text.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sympy import Symbol

from symrnn.engine.derive import Recurrence
from symrnn.engine.expr import T_SYMBOL, at_time, matmul, timed
from symrnn.engine.graph import network, unroll
from symrnn.render.jacobians import Diag, Expansion, expand_last_loss
from symrnn.render.printing import Notation, latex, symbol_latex
from symrnn.spec import Spec

__all__ = ["Context", "SECTIONS", "aligned", "display"]

T_EXAMPLE = 3
"""The T of the worked example, as in the seed notes (L_3, h_3 → h_2 → h_1)."""


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

    @cached_property
    def rows(self):
        return network(self.spec).initial_states["h"].shape[0]

    @cached_property
    def expansion(self) -> Expansion:
        return expand_last_loss(self.spec, T_EXAMPLE, "W_hh")


def aligned(rows: list[str], pos: str = "") -> str:
    return f"\\begin{{aligned}}{pos}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


def display(rows: list[str]) -> str:
    return "\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}"


# ------------------------------------------------------------ model and graph


def conventions_section(c: Context) -> str:
    had = c.notation.hadamard
    names = ", ".join(
        f"${c.name(n)}$ ({role})" for n, role in
        (("W_hh", "recurrent"), ("W_xh", "input"), ("b_h", "hidden bias"),
         ("W_hy", "output"), ("b_y", "output bias"))
        if n in unroll(c.spec, 1).params
    )
    return (
        "\\section*{Conventions}\n"
        "Vectors are columns: $x_t$, $h_t$, $z_t$, $\\hat y_t$, $y_t$ and every adjoint "
        "$\\delta_t = \\partial L/\\partial h_t$, $e_t = \\partial L/\\partial z_t$ have "
        "the shape of the quantity they belong to; a gradient "
        "$\\partial L/\\partial W$ has the shape of $W$. Juxtaposition is the matrix "
        f"product, ${had}$ the elementwise product, $^{{\\top}}$ the transpose, "
        "$\\mathbf{1}$ a vector of ones and $\\operatorname{diag}(v)$ the diagonal matrix "
        f"of $v$. Parameters: {names}"
        + ("." if c.notation.aliases else "; the seed notes call them $W, U, b, V, c$.")
        + "\n"
    )




def model_section(c: Context) -> str:
    t = T_SYMBOL
    prev = {"h": timed("h", t - 1, c.rows)}
    equations = network(c.spec).step_equations(t, prev)
    rows = [rf"{c.tex(eq.lhs)} &= {c.tex(eq.rhs)}" for eq in equations]
    if c.spec.topology == "many_to_many":
        rows.append(r"L &= \sum_{t=1}^{T} L_{t}")
    else:
        rows.append(r"L &= L_{T} \quad\text{(many-to-one: a loss at the last step only)}")
    params = unroll(c.spec, 1).params
    shapes = ", ".join(
        rf"{c.name(n)} \in \mathbb{{R}}^{{{s.shape[0]}\times {s.shape[1]}}}"
        for n, s in params.items()
    )
    return (
        "\\section{Model equations}\n"
        "One step $t$ of the cell, the output head and the loss, as the engine "
        "differentiates them ($h_0$ is the initial state):\n"
        f"{display(rows)}\n"
        f"Parameters (shared by every step): ${shapes}$.\n"
    )


def _chain_diagram(c: Context, T: int) -> str:
    """h_0 → h_1 → … → h_T with inputs below and outputs above (amsmath only)."""
    program = unroll(c.spec, T)
    has_head = {eq.time for eq in program.equations if eq.block == "head"}
    W, U, V = (c.name(p) for p in ("W_hh", "W_xh", "W_hy"))
    top, up, mid, down, bottom = [""], [""], [c.tex(program.initial_states["h"])], [""], [""]
    for t in range(1, T + 1):
        head = t in has_head
        top += ["", rf"\hat{{y}}_{{{t}}}" if head else ""]
        up += ["", rf"\big\uparrow {V}" if head else ""]
        mid += [rf"\xrightarrow{{\;{W}\;}}", f"h_{{{t}}}"]
        down += ["", rf"\big\uparrow {U}"]
        bottom += ["", f"x_{{{t}}}"]
    cols = "c" * len(mid)
    body = " \\\\\n".join(" & ".join(r) for r in (top, up, mid, down, bottom))
    return f"\\[\n\\begin{{array}}{{{cols}}}\n{body}\n\\end{{array}}\n\\]"


def unrolled_section(c: Context) -> str:
    T = T_EXAMPLE
    program = unroll(c.spec, T)
    blocks = []
    for t in range(1, T + 1):
        rows = [rf"& \text{{step }} {t}"]
        rows += [rf"{c.tex(eq.lhs)} &= {c.tex(eq.rhs)}" for eq in program.equations if eq.time == t]
        blocks.append(aligned(rows, "[t]"))
    total = "L = " + " + ".join(c.tex(s) for s in program.losses)
    return (
        f"\\section{{The unrolled graph for $T = {T}$}}\n"
        "The same weights at every step; arrows show what each state reads.\n"
        f"{_chain_diagram(c, T)}\n"
        f"The forward pass as a straight-line program (\\texttt{{unroll(spec, {T})}}):\n"
        "\\[\n" + "\n\\qquad\n".join(blocks) + "\n\\]\n"
        f"\\[\n{total}\n\\]\n"
    )


# ------------------------------------------------------------ dL_3/dV, dL_3/dW


def output_gradient_section(c: Context) -> str:
    e = c.expansion
    u = e.unrolled
    T = e.T
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


def recurrent_gradient_section(c: Context) -> str:
    e = c.expansion
    T, u = e.T, e.unrolled
    W = c.name("W_hh")
    lhs = c.d(f"L_{{{T}}}", W)
    engine_sum = " + ".join(c.tex(term.engine) for term in e.terms)
    deltas = [rf"{c.tex(s)} &= {c.tex(x)}" for s, x in u.definitions]
    j = Symbol("j", integer=True)
    jac_t = [at_time(f, j - 1) for f in e.jacobian_t]
    jac_rows = [rf"J_{{j}}^{{\top}} = \left(\frac{{\partial h_{{j}}}}{{\partial h_{{j-1}}}}"
                rf"\right)^{{\top}} &= {_product(c, jac_t)}"]
    if e.local_derivative is not None:
        f_j = at_time(e.local_derivative, j)
        jac_rows.append(rf"D_{{j}} &= {c.tex(Diag(f_j))}")
    else:
        jac_rows.append(r"D_{j} &= I \quad\text{(the activation's derivative is 1)}")
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
    unrolled_section,
    output_gradient_section,
    recurrent_gradient_section,
]

