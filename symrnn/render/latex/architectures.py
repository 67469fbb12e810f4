"""LaTeX sections of the composed architectures: bidirectional, one-to-many, encoder–decoder.

A composed network (:func:`symrnn.render.recurrence.is_composed`) gets these sections in
place of the single-chain ones (the worked ∂L_3/∂W_hh expansion, the step Jacobians and
the truncation assume one chain of states run forward):

* :func:`conventions_section`, :func:`model_section`: the names (an arrow for a reverse
  layer, (l) for layer l, dec for the decoder, an arrowed subscript for the columns that
  read a reverse state) and one step of every layer, the context, the fed-back input;
* :func:`directions_section` (bidirectional): each state's adjoint split into what the
  head, the layer above (the cross-layer term) and its own next step send, and the order
  the engine computes them in for T = 3 (a reverse layer's adjoints come out t = 1, 2, 3);
* :func:`feed_section` (one_to_many): the fed-back path x_{t+1} = ŷ_t into e_t, and what
  each feed (zeros, repeat, feedback) does to ∂L/∂W_x;
* :func:`context_section` (encoder_decoder): the encoder's boundary δ_T = ∂L/∂s^{dec}_0,
  the decoder's carry at t = 0 (checked), the only path from the loss to the encoder.

Every formula is printed from the engine (:mod:`symrnn.engine.derive`, the network's
equations, a :class:`~symrnn.engine.derive.Backprop` over one step); prose only names it.
"""

from __future__ import annotations

from sympy import MatrixSymbol, S

from symrnn.engine.derive import Backprop, Block, derive_recurrence, derive_unrolled
from symrnn.engine.expr import T_SYMBOL, at_time, split_timed, timed
from symrnn.errors import SpecError
from symrnn.render.jacobians import coefficient, to_diag_form
from symrnn.render.latex.bptt import _sum
from symrnn.render.latex.rows import BUDGET_EM, tex_width
from symrnn.render.latex.sections import Context, _alias_note, _roles, display, prose_list
from symrnn.render.printing import T_OUT_LATEX, state_latex
from symrnn.render.recurrence import state_plans
from symrnn.spec import FEEDS

__all__ = ["SECTIONS", "conventions_section", "model_section", "directions_section",
           "feed_section", "context_section", "head_jacobian", "fed_back"]

T_ORDER = 3
"""The T of the worked order of the adjoints (bidirectional)."""
FEED_WORDS = {"zeros": r"no input ($x_t = \mathbf{0}$)", "repeat": r"$x_t = x_1$",
              "feedback": r"$x_t = \hat y_{t-1}$"}


def _st(state: str, time) -> str:
    return state_latex(state, str(time).replace(" ", ""))


# ------------------------------------------------------------ conventions, model


def _notation_note(c: Context) -> str:
    """What the marks on the names mean, for the marks this network uses."""
    net, notes = c.net, []
    if c.spec.bidirectional:
        notes.append(
            "An arrow marks the reverse direction (torch's suffix \\texttt{\\_reverse}): "
            f"${_st('h_reverse', 't')}$ is its state, ${c.name('W_hh_reverse')}$ its weights. "
            f"${c.name('W_hy_rev')}$ is the block of the head's weight whose columns "
            f"multiply ${_st('h_reverse', 't')}$ (torch's weight is "
            f"$[{c.name('W_hy')}\\ \\ {c.name('W_hy_rev')}]$ over $[h_t; "
            f"{_st('h_reverse', 't')}]$)")
    if c.spec.num_layers > 1:
        notes.append("the superscript $(l)$ marks layer $l \\ge 2$, which reads layer "
                     "$l-1$'s states at the same step")
    if net.contexts:
        notes.append("the superscript $\\mathrm{dec}$ marks the decoder, unmarked names "
                     "are the encoder's")
    text = "; ".join(notes)
    return f"{text[:1].upper()}{text[1:]}." if notes else ""


def _held_note(c: Context) -> str:
    net = c.net
    several = len(net.cell.states) > 1
    if net.per_segment:
        return (" (each the whole derivative of $L$ by its state: every layer's step is a "
                "block of its own, so what the layer above sends at the same step is a term "
                "of its own" + (", and the states of one layer's step are each taken with "
                                "the others held fixed" if several else "") + ")")
    return " (each with the other states of step $t$ held fixed)" if len(net.states) > 1 \
        else ""


def conventions_section(c: Context) -> str:
    had = c.notation.hadamard
    names = ", ".join(", ".join(f"${c.name(n)}$" for n in group) + f" ({role})"
                      for role, group in _roles(c).items())
    adjoints = ", ".join(f"${c.tex(sym)} = \\partial L/\\partial {_st(s, 't')}$"
                         for s, (sym, _) in c.recurrence.deltas.items())
    return (
        "\\section*{Conventions}\n"
        f"Vectors are columns; every adjoint {adjoints}{_held_note(c)} and "
        "$e_t = \\partial L/\\partial z_t$ has the shape of its quantity, a gradient "
        "$\\partial L/\\partial W$ the shape of $W$. Juxtaposition is the matrix product, "
        f"${had}$ the elementwise product, $^{{\\top}}$ the transpose, $\\mathbf{{1}}$ a "
        "vector of ones, $\\operatorname{diag}(v)$ the diagonal matrix of $v$. "
        f"{_notation_note(c)} Parameters: {names}{_alias_note(c)}\n"
    )


def _stage_rows(c: Context, stage: str, time, label: str) -> list[str]:
    net = c.net
    eqs = net.step_equations(time, net.previous(time, stage=stage), head=False, stage=stage)
    rows = [rf"&\text{{{label}}}"] if label else []
    return rows + [row for eq in eqs for row in c.eq(c.tex(eq.lhs), eq.rhs)]


def _context_rows(c: Context) -> list[str]:
    return [r"&\text{context}"] + [rf"{_st(dec, 0)} &= {_st(enc, 'T')}"
                                   for dec, enc in c.net.contexts.items()]


def _step_rows(c: Context) -> list[str]:
    """One step of every stage (one_to_many: step 1 apart when it reads x_1 differently)."""
    net, t = c.net, T_SYMBOL
    if len(net.stages) > 1:
        rows = _stage_rows(c, net.stages[0], t, "encoder, $t = 1, \\dots, T$")
        rows += _context_rows(c)
        return rows + _stage_rows(c, net.stages[-1], t, "decoder, $t = 1, \\dots, "
                                  f"{T_OUT_LATEX}$")
    if c.spec.topology == "one_to_many" and c.spec.feed != "feedback":
        return _stage_rows(c, "", 1, "step $1$") + _stage_rows(c, "", t, "step $t \\ge 2$")
    label = "step $t \\ge 2$ ($x_1$ is given)" if c.spec.topology == "one_to_many" else ""
    return _stage_rows(c, "", t, label)


def model_section(c: Context) -> str:
    net, t = c.net, T_SYMBOL
    rows = _step_rows(c)
    rows += [row for eq in net.head_equations(t) for row in c.eq(c.tex(eq.lhs), eq.rhs)]
    last = T_OUT_LATEX if net.contexts else "T"
    rows.append(rf"L &= \sum_{{t=1}}^{{{last}}} L_{{t}}")
    shapes = ", ".join(rf"${c.name(n)} \in \mathbb{{R}}^{{{s.shape[0]}\times {s.shape[1]}}}$"
                       for n, s in net.params.items())
    free = [s for s in net.states if s not in net.contexts]
    initial = prose_list([f"${c.tex(net.initial_states[s])}$" for s in free])
    reverse = (" (a reverse layer starts at $t = T$ from its state at $T+1$)"
               if c.spec.bidirectional else "")
    return (
        "\\section{Model equations}\n"
        "One step of every layer, the output head and the loss, as the engine "
        f"differentiates them; {initial} {'is' if len(free) == 1 else 'are'} the free "
        f"initial state{'' if len(free) == 1 else 's'}{reverse}:\n"
        f"{display(rows)}\n"
        f"Parameters (shared by every step): {shapes}.\n"
    )


# ------------------------------------------------------------ bidirectional


def _part_rows(c: Context, state: str) -> list[str]:
    """[δ]_head, [δ]_above, [δ]_next: what reaches δ^s_t from where."""
    rec = c.recurrence
    sym = c.tex(rec.deltas[state][0])
    step = "t+1" if c.net.direction_of(state) > 0 else "t-1"
    parts = [(r"\text{head}", rec.local.get(state)),
             (r"\text{layer above}", rec.cross.get(state)),
             (rf"\text{{step }} {step}", rec.carry[state])]
    return [row for label, expr in parts if expr is not None
            for row in c.eq(rf"\bigl[{sym}\bigr]_{{{label}}}", expr)]


def _reads_delta(expr, state: str, net) -> bool:
    base = split_timed(net.adjoint_symbol(state, T_SYMBOL))[0]
    return any(split_timed(a) and split_timed(a)[0] == base for a in expr.atoms(MatrixSymbol))


def _uncoupled(c: Context) -> bool:
    """True when no carry reads the adjoint of the other direction of its own layer."""
    net, rec = c.net, c.recurrence
    for layer in net.layers:
        others = [s for other in net.layers if other.index == layer.index
                  and other.direction != layer.direction for s in other.states]
        if any(_reads_delta(rec.carry[s], o, net) for s in layer.states for o in others):
            return False
    return True


def _order_line(c: Context, u) -> str:
    """The named adjoints of the unrolled engine, in the order it computes them (as many
    to a row as fit the page)."""
    rows: list[list[str]] = [[]]
    for sym, _ in u.definitions:
        name = c.tex(sym)
        if rows[-1] and tex_width(",\\ ".join(rows[-1] + [name])) > BUDGET_EM:
            rows.append([])
        rows[-1].append(name)
    return ", \\\\\n".join(",\\ ".join(row) for row in rows)


def _reverse_rows(c: Context, u) -> list[str]:
    reverse = {split_timed(c.net.adjoint_symbol(s, T_SYMBOL))[0] for s in c.net.states
               if c.net.direction_of(s) < 0}
    return [row for sym, expr in u.definitions if split_timed(sym)[0] in reverse
            for row in c.eq(c.tex(sym), expr)]


def directions_section(c: Context) -> str:
    if not c.spec.bidirectional:
        return ""
    rows = [row for s in c.net.states for row in _part_rows(c, s)]
    u = derive_unrolled(c.spec, T_ORDER)
    top = next(s for s, tag in c.net.readouts if tag)
    separate = ("Neither direction of a layer reads the other, so no carry above mixes "
                "them: the two directions meet only in the layer above and in the head. "
                if _uncoupled(c) else "")
    return (
        "\\section{Two directions and the layer above}\n"
        "Every layer and direction has its own adjoint. What reaches one at step $t$ comes "
        "from the head (top layer only), from the layer above at the same step $t$ (the "
        "cross-layer term: the layer above reads both directions' states through its input "
        "weights, one column block each, so each of its two directions sends to each state "
        "below), and from the state's own next step: $t+1$ for a forward layer, $t-1$ for a "
        f"reverse one, whose step $t$ reads its state at $t+1$. The parts:\n"
        f"{display(rows)}\n"
        f"{separate}A reverse layer's forward pass runs $t = T, \\dots, 1$, so its adjoint "
        "recurrence runs forward in time, $t = 1, \\dots, T$: at $t = 1$ nothing comes from "
        "step $0$ (the boundary is $\\delta_0 = 0$), and its initial state "
        f"${_st(top, 'T+1')}$ gets its gradient from step $T$, last. The engine's reverse "
        "pass over the unrolled program for "
        f"$T = {T_ORDER}$ computes the named adjoints in this order:\n"
        f"\\[\n\\begin{{gathered}}\n{_order_line(c, u)}\n\\end{{gathered}}\n\\]\n"
        "and those of the reverse layers as\n"
        f"{{\\small\n{display(_reverse_rows(c, u))}}}\n"
    )


# ------------------------------------------------------------ one_to_many


def fed_back(c: Context):
    """∂L/∂x_{t+1} from step t+1 (seeded with its δ's), and ∂L_t/∂ŷ_t from the loss."""
    net, t = c.net, T_SYMBOL
    nxt = t + 1
    eqs = [eq for layer in net.layers
           for eq in net.layer_equations(layer, nxt, net.previous(nxt))]
    seeds = {timed(s, nxt, sym.shape[0]): net.adjoint_symbol(s, nxt)
             for s, sym in net.initial_states.items()}
    through = Backprop(seeds).run([Block(eqs)]).gradient(timed("x", nxt, net.sizes.D))
    loss = [eq for eq in net.head_equations(t) if eq.block == "loss"]
    local = Backprop({eq.lhs: S.One for eq in loss}).run([Block(loss)])
    return through, local.gradient(timed("yhat", t, net.sizes.O))


def head_jacobian(net):
    """(∂ŷ_t/∂z_t)ᵀ from the engine: the head's rule applied to a symbol g, its
    coefficient in front of g (diag(ŷ ⊙ (1 − ŷ)) for a sigmoid head, I for identity)."""
    t = T_SYMBOL
    (eq,) = [eq for eq in net.head_equations(t) if eq.lhs == timed("yhat", t, net.sizes.O)]
    g = MatrixSymbol("g", net.sizes.O, 1)
    back = Backprop({eq.lhs: g}).run([Block([eq])])
    return coefficient(back.gradient(timed("z", t, net.sizes.O)), g)


def _feedback_part(c: Context) -> str:
    through, local = fed_back(c)
    x_next, yhat = _st("x", "t+1"), _st("yhat", "t")
    error_sym, error = c.recurrence.output_error
    rows = c.eq(c.d("L", x_next), through)
    rows += c.eq(c.d("L_{t}", yhat), local)
    rows += c.eq(rf"\left({c.d(yhat, 'z_{t}')}\right)^{{\top}}", head_jacobian(c.net))
    rows += c.eq(c.tex(error_sym), error)
    diag = to_diag_form(error)
    rows += c.eq("", diag) if diag != error else []
    return (
        "\\subsection*{The fed-back output}\n"
        f"With $x_{{t+1}} = {yhat}$ the output of step $t$ is also the input of step $t+1$, "
        f"so ${yhat}$ receives from two places: its own loss $L_t$, and step $t+1$, which "
        f"reads it as ${x_next}$ (the engine's reverse pass over step $t+1$ seeded with its "
        "adjoints). Their sum passes through the head's Jacobian into the output error, "
        f"$e_t = (\\partial {yhat}/\\partial z_t)^{{\\top}} (\\partial L_t/\\partial {yhat} + "
        f"\\partial L/\\partial {x_next})$:\n"
        f"{display(rows)}\n"
        f"At $t = T$ there is no step $T+1$ and only the loss term is left (the boundary "
        "$\\delta_{T+1} = 0$). The state adjoint reads $e_t$ through the head, so the path "
        f"$h_t \\to {yhat} \\to h_{{t+1}}$ enters $\\delta_t$ there, besides the recurrent "
        "path through $W_{hh}$.\n"
    )


def _feed_rows(c: Context, feed: str) -> list[str] | None:
    try:
        spec = c.spec.replace(feed=feed)
    except SpecError:
        return None
    other = Context(spec, derive_recurrence(spec), c.notation)
    error_sym, error = other.recurrence.output_error
    rows = [rf"&\text{{feed \texttt{{{feed}}}: {FEED_WORDS[feed]} for $t \ge 2$}}"]
    rows += other.eq(other.tex(error_sym), error)
    inputs = [p for p in other.net.stacks["weight_ih"] if p is not None]
    return rows + [row for p in inputs for row in _sum(other, p, other.recurrence.gradients[p])]


def feed_section(c: Context) -> str:
    if c.spec.topology != "one_to_many":
        return ""
    feedback = _feedback_part(c) if c.spec.feed == "feedback" else ""
    rows = [row for feed in FEEDS for row in (_feed_rows(c, feed) or [])]
    return (
        "\\section{One input, outputs at every step}\n"
        f"Step $1$ reads the given $x_1$; this document's feed is \\texttt{{{c.spec.feed}}}: "
        f"{FEED_WORDS[c.spec.feed]} for $t \\ge 2$.\n" + feedback +
        "\\subsection*{What each feed changes}\n"
        "The feeds differ in what the input weights multiply after step 1; the engine's "
        "output error and input-weight gradients for each (where the sizes allow it):\n"
        f"{display(rows)}\n"
        "With zero later inputs only step $1$ reads the input weights (the generic step's "
        "summand is absent, the sum is its $t = 1$ term); repeating $x_1$ makes every "
        "summand end in $x_1^{\\top}$; feeding back adds the fed-back term to $e_t$ and "
        "ends the summand of step $t$ in $\\hat y_{t-1}^{\\top}$.\n"
    )


# ------------------------------------------------------------ encoder_decoder


def _boundary_rows(c: Context) -> tuple[list[str], bool]:
    """δ^s_T = ∂L/∂s^{dec}_0 per encoder state, and whether each is the decoder's carry
    at t = 0."""
    rec, rows, same = c.recurrence, [], True
    for dec, enc in c.net.contexts.items():
        lhs = rf"{c.tex(at_time(rec.deltas[enc][0], 'T'))} = {c.d('L', _st(dec, 0))}"
        rows += c.eq(lhs, rec.final[enc])
        same = same and rec.final[enc] == at_time(rec.carry[dec], 0)
    return rows, same


def _noted(rows: list[str], note: str) -> list[str]:
    if note:
        rows[-1] += rf" \qquad ({note})"
    return rows


def context_section(c: Context) -> str:
    net = c.net
    if not net.contexts:
        return ""
    rows, same = _boundary_rows(c)
    plans = state_plans(c.recurrence)
    lines = [row for s in net.contexts.values() for line in plans[s].lines
             for row in _noted(c.eq(c.tex(line.symbol), line.expr), line.note)]
    contexts = prose_list([f"${_st(dec, 0)} = {_st(enc, 'T')}$"
                           for dec, enc in net.contexts.items()])
    check = ("each is the decoder's carry at $t = 0$, the expression that would pass "
             "back to a step before its first (checked: the same expressions)" if same else
             "\\textbf{MISMATCH}: not the decoder's carry at $t = 0$")
    return (
        "\\section{Through the context}\n"
        f"The decoder starts from the encoder's final states, {contexts}, and only the "
        "decoder carries a loss. So the encoder's adjoints have no term from a head: "
        "everything reaches the encoder at its last step $T$, through the context, as the "
        "decoder's initial-state gradients; " + check + ":\n"
        f"{display(rows)}\n"
        "From there the encoder's adjoints run back through its own steps, $t = T-1, "
        "\\dots, 1$, with its carry only:\n"
        f"{display(lines)}\n"
    )


SECTIONS = [conventions_section, model_section, directions_section, feed_section,
            context_section]
"""The composed network's own sections, in document order (the recurrence follows)."""
