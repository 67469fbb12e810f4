"""Deliberate breaks of the engine, applied at run time with ``monkeypatch``.

Shared by ``tests/test_rules.py`` (the rule-level breaks must fail the rule
comparison) and ``tests/test_mutations.py`` (every break must fail the
symbolic proof, naming a parameter and an entry).  Nothing here edits a file:
each :class:`Mutation` patches a table entry, a method or a cell definition
through the ``monkeypatch`` fixture, so pytest undoes it after the test.

=================================  ==========================================
id                                 break
=================================  ==========================================
tanh-derivative-scaled             tanh' = 1.001 (1 − y⊙y)
tanh-derivative-replaced           tanh' = 1 − y (y⊙y → y)
sigmoid-derivative-scaled          σ' = 1.001 y⊙(1 − y)
sigmoid-derivative-replaced        σ' = y⊙(1 + y)
sigmoid-derivative-s-everywhere    σ' = s in the engine row AND in Sigmoid.fdiff
relu-derivative-scaled             relu' = 1.001 step(y)
relu-derivative-replaced           relu' = 1 (step dropped)
matmul-factor-not-transposed       Ā_i = (A_1⋯A_{i−1}) Ḡ ⋯ (no ᵀ where square)
transpose-vjp-untransposed         Ā = Ḡ instead of Ḡᵀ
scalar-multiple-coefficient-lost   Ā = Ḡ instead of c Ḡ
hadamard-own-factor                Ā_i = Ḡ ⊙ A_i instead of Ḡ ⊙ ∏_{j≠i} A_j
softmax-missing-outer-term         z̄ = s ⊙ Ḡ (− s(sᵀḠ) dropped)
mse-sign-flipped                   ŷ̄ = Ḡ (y − ŷ)
cross-entropy-without-target       z̄ = Ḡ softmax(z)
contributions-not-summed           Backprop keeps the last contribution only
rolled-carry-dropped               Recurrence: δ_t lacks J_{t+1}ᵀ δ_{t+1}
elman-forward-extra-term           a_t = W_hh h_{t−1} + W_xh x_t + b_h + h_{t−1}
lstm-forget-gate-tanh              f_t = tanh(...) instead of σ(...)
gru-reset-gate-inside-matmul       n_t = tanh(W_xn x + b_n + W_hn (r⊙h) + b_hn)
gru-v1-reset-after-product         GRU v1: n_t = tanh(W_xn x + b_n + r⊙(W_hn h))
gru-v1-candidate-update-gate       GRU v1: n_t = tanh(W_hn (u⊙h) + W_xn x + b_n)
torch-layout-recurrent-bias-lost   layout torch: affine drops b_h{g} (b_x{g} only)
stack-layer-reads-input            num_layers 2: layer 1 reads x_t, not h_t below
stack-layer-reads-previous-step    num_layers 2: layer 1 reads h_{t−1} below, not h_t
reverse-layer-reads-previous-step  bidirectional: the reverse layer reads s_{t−1}, not s_{t+1}
feedback-input-read-as-data        one_to_many feedback: x_t data, not ŷ_{t−1}
decoder-starts-from-first-encoder-state
                                   encoder_decoder: h_dec_0 = h_1 (c_1, …), not h_T
decoder-starts-from-zeros          encoder_decoder: h_dec_0 = 0, not h_T
rolled-cross-dropped               Recurrence: δ_t lacks what the layer above sends
rolled-final-dropped               Recurrence: an encoder's δ_T lacks the decoder's part
rolled-first-step-dropped          Recurrence: one_to_many's step-1 summands lost
=================================  ==========================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from sympy import MatrixSymbol, Rational, ZeroMatrix

import symrnn.ops
from symrnn.engine import cells, derive, graph, rules
from symrnn.engine.expr import (
    Softmax,
    add,
    hadamard,
    matmul,
    ones_like,
    sub,
    timed,
    transpose,
)
from symrnn.ops import ELEMENTWISE, Sigmoid
from symrnn.spec import Spec

__all__ = ["Mutation", "MUTATIONS", "RULE_MUTATIONS", "by_id"]


@dataclass(frozen=True)
class Mutation:
    id: str
    doc: str
    apply: Callable[[object], None]
    """Installs the break through a pytest ``MonkeyPatch``."""
    rule: str | None = None
    """The rule-table key it breaks (then tests/test_rules.py must catch it), if any."""
    spec: Spec | None = None
    T: int = 2
    T_out: int | None = None
    """An encoder–decoder's decoder steps (None: T)."""
    proof: str = "unrolled"
    """Which proof must fail: 'unrolled' (prove_unrolled) or 'rolled' (prove_rolled)."""
    expect: tuple[tuple[str, tuple], ...] = ()
    """(parameter, entry) pairs that must be among the proof's mismatches."""
    untouched: tuple[str, ...] = ()
    """Parameters the break cannot reach: they must not be among the mismatches."""
    proof_blind: str = ""
    """Why the proof cannot see this break (then only the rule test catches it)."""


# ----------------------------------------------------------------- elementwise rows


def _derivative(name: str, new: Callable) -> Callable:
    """Replace row ``name``'s derivative by ``new(right_derivative, y, algebra)``."""

    def apply(mp) -> None:
        row = ELEMENTWISE[name]
        right = row.derivative
        mp.setitem(ELEMENTWISE, name,
                   dataclasses.replace(row, derivative=lambda y, m: new(right, y, m)))

    return apply


def _scaled(right, y, m):
    return matmul(Rational(1001, 1000), right(y, m))  # the engine's (matrix) algebra only


def _sigmoid_s_everywhere(mp) -> None:
    _derivative("sigmoid", lambda right, y, m: y)(mp)
    mp.setattr(Sigmoid, "fdiff", lambda self, argindex=1: Sigmoid(self.args[0]))
    assert symrnn.ops.Sigmoid is Sigmoid


# ----------------------------------------------------------------- rules


def _rule(key: str, vjp) -> Callable:
    def apply(mp) -> None:
        right = rules.RULES[key]
        mp.setitem(rules.RULES, key, rules.Rule(key, "broken: " + right.formula, right.latex, vjp))

    return apply


def _matmul_untransposed(node, g, out):
    """Like the MatMul rule, but the left factor is not transposed when it is square."""
    coeff, mats = node.as_coeff_matrices()
    result = []
    for i, child in enumerate(mats):
        left = matmul(*mats[:i]) if i else None
        if left is not None and left.shape[0] != left.shape[1]:
            left = transpose(left)  # keep shapes valid: only the square case is wrong
        right = transpose(matmul(*mats[i + 1:])) if i + 1 < len(mats) else None
        result.append((child, matmul(coeff, *[f for f in (left, g, right) if f is not None])))
    return result


def _hadamard_own_factor(node, g, out):
    return [(child, hadamard(g, child)) for child in node.args]


# ----------------------------------------------------------------- engine and cells


def _keep_last_contribution(mp) -> None:
    right = derive.Backprop._push

    def _push(self, node, adjoint, out, target):
        if isinstance(node, MatrixSymbol):
            self._terms[node] = [adjoint]  # overwrite instead of append: no sum
            return
        right(self, node, adjoint, out, target)

    mp.setattr(derive.Backprop, "_push", _push)


def _patch_recurrence(change: Callable) -> Callable:
    """derive_recurrence with ``change(rec)`` applied to its result (also where the proof
    imported the name)."""

    def apply(mp) -> None:
        right = derive.derive_recurrence

        def derive_recurrence(spec):
            return change(right(spec))

        mp.setattr(derive, "derive_recurrence", derive_recurrence)
        # modules that imported the name directly (the proof) see the broken one too
        import sys

        for module in list(sys.modules.values()):
            name = getattr(module, "__name__", "") or ""
            if name.startswith("symrnn.") and getattr(module, "derive_recurrence", None) is right:
                mp.setattr(module, "derive_recurrence", derive_recurrence)

    return apply


def _without_carry(rec):
    return dataclasses.replace(
        rec,
        carry={s: None for s in rec.carry},
        deltas={s: (sym, rec.local[s]) for s, (sym, _) in rec.deltas.items()},
    )


_drop_carry = _patch_recurrence(_without_carry)


def _without_cross(rec):
    """δ_t = local + carry: what the layer above sends at step t dropped."""
    return dataclasses.replace(rec, cross={}, deltas={
        s: (sym, add(rec.local[s], rec.carry[s])) for s, (sym, _) in rec.deltas.items()})


def _without_final(rec):
    """An encoder's δ_T without what the decoder sends back through its initial states."""
    return dataclasses.replace(rec, final={})


def _without_first_step(rec):
    """The summands of step 1 taken from the generic step (W_x of zero later inputs: 0)."""
    return dataclasses.replace(rec, first_step={})


def _cell(name: str, step) -> Callable:
    def apply(mp) -> None:
        mp.setitem(cells.CELLS, name, dataclasses.replace(cells.CELLS[name], step=step))

    return apply


def _elman_extra_term(b) -> None:
    h = b.prev["h"]
    a = b.let("a", add(b.affine("h", h), h))
    b.let("h", b.f(b.activation, a))


def _lstm_forget_tanh(b) -> None:
    h, c = b.prev["h"], b.prev["c"]
    i = b.let("i", b.f("sigmoid", b.affine("i", h)))
    f = b.let("f", b.f("tanh", b.affine("f", h)))  # the break: σ → tanh
    o = b.let("o", b.f("sigmoid", b.affine("o", h)))
    g = b.let("g", b.f("tanh", b.affine("g", h)))
    c_new = b.let("c", add(hadamard(f, c), hadamard(i, g)))
    b.let("h", hadamard(o, b.f("tanh", c_new)))


def _gru_reset_inside(b) -> None:
    h = b.prev["h"]
    r = b.let("r", b.f("sigmoid", b.affine("r", h)))
    u = b.let("u", b.f("sigmoid", b.affine("u", h)))
    recurrent = add(matmul(b.p("W_hn"), hadamard(r, h)), b.p("b_hn"))  # the break
    n = b.let("n", b.f("tanh", add(matmul(b.p("W_xn"), b.x), b.p("b_n"), recurrent)))
    b.let("h", add(hadamard(sub(ones_like(u), u), n), hadamard(u, h)))


def _gru_v1_reset_after(b) -> None:
    h = b.prev["h"]
    r = b.let("r", b.f("sigmoid", b.affine("r", h)))
    u = b.let("u", b.f("sigmoid", b.affine("u", h)))
    recurrent = hadamard(r, matmul(b.p("W_hn"), h))  # the break: torch's order in Cho's cell
    n = b.let("n", b.f("tanh", add(matmul(b.p("W_xn"), b.x), b.input_bias("n"), recurrent)))
    b.let("h", add(hadamard(sub(ones_like(u), u), n), hadamard(u, h)))


def _gru_v1_candidate_update_gate(b) -> None:
    h = b.prev["h"]
    b.let("r", b.f("sigmoid", b.affine("r", h)))
    u = b.let("u", b.f("sigmoid", b.affine("u", h)))
    n = b.let("n", b.f("tanh", b.affine("n", hadamard(u, h))))  # the break: u where r belongs
    b.let("h", add(hadamard(sub(ones_like(u), u), n), hadamard(u, h)))


def _drop_recurrent_bias(mp) -> None:
    def affine(self, gate, h_in, x_in=None):
        return add(matmul(self.p(f"W_h{gate}"), h_in),
                   matmul(self.p(f"W_x{gate}"), self.x if x_in is None else x_in),
                   self.input_bias(gate))  # the break: b_h{gate} of the torch layout dropped

    mp.setattr(cells.StepBuilder, "affine", affine)


def _stack_input(wrong: str) -> Callable:
    """Network.layer_equations with layer l ≥ 1 reading the wrong input: 'x' (x_t, which
    needs input size = hidden size to fit the H×H weights) or 'previous' (layer l−1's
    h_{t−1}, from ``prev``, instead of its h_t)."""
    original = graph.Network.layer_equations

    def layer_equations(self, layer, time, prev):
        if layer.input == "x":
            return original(self, layer, time, prev)
        x = timed("x", time, self.sizes.D) if wrong == "x" else prev[layer.input]  # the break
        own = dict(zip(self.cell.states, (prev[s] for s in layer.states), strict=True))
        builder = cells.StepBuilder(time=time, prev=own, x=x, params=layer.params,
                                    activation=self.spec.activation, suffix=layer.suffix)
        self.cell.step(builder)
        return [graph.Equation(lhs, rhs, "cell", time) for lhs, rhs in builder.equations]

    def apply(mp) -> None:
        mp.setattr(graph.Network, "layer_equations", layer_equations)

    return apply


def _reverse_reads_previous(mp) -> None:
    """Network.previous: a reverse layer's step t reads its state at t−1 (the initial
    state at t = 1), as a forward layer would, instead of at t+1."""
    original = graph.Network.previous

    def previous(self, time, T=None, stage=...):
        out = original(self, time, T, stage)
        for s, now in self.state_symbols(time, stage).items():
            if self.direction_of(s) < 0:  # the break: t − 1 for the reverse direction
                first = time == 1
                out[s] = self.initial_states[s] if first else timed(s, time - 1, now.shape[0])
        return out

    mp.setattr(graph.Network, "previous", previous)


def _feedback_as_data(mp) -> None:
    """Network.input_equations: no x_t = ŷ_{t−1}, so x_t is read as data (the gradient
    no longer flows back through the fed output)."""
    mp.setattr(graph.Network, "input_equations", lambda self, time: [])


def _decoder_context(source: str) -> Callable:
    """Network._context: the decoder starts from the encoder's first state h_1 (c_1, …)
    ('first') or from zeros ('zeros'), not from its final state h_T."""

    def context(self, T):
        eqs = []
        for dec, enc in self.contexts.items():
            init = self.initial_states[dec]
            value = ZeroMatrix(*init.shape) if source == "zeros" else timed(enc, 1, *init.shape)
            eqs.append(graph.Equation(init, value, "context", 0))  # the break
        return graph.Group(tuple(eqs))

    def apply(mp) -> None:
        mp.setattr(graph.Network, "_context", context)

    return apply


# ----------------------------------------------------------------- the table

_ELMAN = Spec(hidden_size=2, input_size=1, output_size=1)
_CELL_PARAMS = ("W_hh", "W_xh", "b_h", "h_0")

MUTATIONS: tuple[Mutation, ...] = (
    Mutation("tanh-derivative-scaled", "tanh' = 1.001 (1 - y*y)",
             _derivative("tanh", _scaled), "tanh", _ELMAN,
             expect=(("W_hh", (0, 0)), ("W_xh", (1, 0)), ("h_0", (0, 0))), untouched=("W_hy",)),
    Mutation("tanh-derivative-replaced", "tanh' = 1 - y",
             _derivative("tanh", lambda right, y, m: m.sub(m.one(y), y)), "tanh", _ELMAN,
             expect=(("b_h", (0, 0)),), untouched=("W_hy", "b_y")),
    Mutation("sigmoid-derivative-scaled", "sigma' = 1.001 y*(1 - y)",
             _derivative("sigmoid", _scaled), "sigmoid", _ELMAN.replace(activation="sigmoid"),
             expect=(("W_hh", (0, 1)), ("b_h", (1, 0))), untouched=("W_hy",)),
    Mutation("sigmoid-derivative-replaced", "sigma' = y*(1 + y)",
             _derivative("sigmoid", lambda right, y, m: m.mul(y, m.sub(m.one(y), m.neg(y)))),
             "sigmoid", _ELMAN.replace(activation="sigmoid"), expect=(("W_xh", (0, 0)),)),
    Mutation("sigmoid-derivative-s-everywhere",
             "sigma' = s in the engine's row and in symrnn.ops.Sigmoid.fdiff: only the "
             "oracle's own 1/(1+exp(-a)) can tell",
             _sigmoid_s_everywhere, "sigmoid", _ELMAN.replace(activation="sigmoid"),
             expect=(("W_hh", (1, 0)), ("h_0", (1, 0))), untouched=("W_hy", "b_y")),
    Mutation("relu-derivative-scaled", "relu' = 1.001 step(y)",
             _derivative("relu", _scaled), "relu", _ELMAN.replace(activation="relu"),
             expect=(("W_hh", (0, 0)), ("b_h", (0, 0))), untouched=("W_hy",)),
    Mutation("relu-derivative-replaced", "relu' = 1 (the step factor dropped)",
             _derivative("relu", lambda right, y, m: m.one(y)), "relu",
             _ELMAN.replace(activation="relu"), expect=(("W_xh", (1, 0)),)),
    Mutation("matmul-factor-not-transposed",
             "MatMul VJP: left factor (A_1...A_{i-1}) not transposed where square "
             "(W_hh G instead of W_hh.T G)",
             _rule("MatMul", _matmul_untransposed), "MatMul", _ELMAN,
             expect=(("h_0", (0, 0)), ("W_hh", (0, 0))), untouched=("W_hy", "b_y")),
    Mutation("transpose-vjp-untransposed", "Transpose VJP: A_bar = G instead of G.T",
             _rule("Transpose", lambda node, g, out: [(node.arg, g)]), "Transpose", _ELMAN,
             proof_blind="no cell, head or loss applies Transpose in its forward equations "
                         "(Transpose only appears inside adjoints, which are never "
                         "differentiated), so no proof can reach this rule; "
                         "tests/test_rules.py catches it"),
    Mutation("scalar-multiple-coefficient-lost",
             "ScalarMultiple VJP: A_bar = G (c dropped); reached by the GRU's 1 - u",
             _rule("ScalarMultiple", lambda node, g, out: [(node.as_coeff_matrices()[1][0], g)]),
             "ScalarMultiple", Spec(cell="gru", hidden_size=1, input_size=1, output_size=1),
             T=1, expect=(("W_hu", (0, 0)), ("b_u", (0, 0))), untouched=("W_hy", "b_y", "W_hr")),
    Mutation("hadamard-own-factor", "HadamardProduct VJP: A_i_bar = G * A_i",
             _rule("HadamardProduct", _hadamard_own_factor), "HadamardProduct",
             Spec(cell="gru", hidden_size=1, input_size=1, output_size=1), T=1,
             expect=(("W_xn", (0, 0)), ("b_r", (0, 0))), untouched=("W_hy", "b_y")),
    Mutation("softmax-missing-outer-term", "Softmax VJP: z_bar = s * G (- s (s.T G) dropped)",
             _rule("Softmax", lambda node, g, out: [(node.arg, hadamard(out, g))]), "Softmax",
             Spec(head="softmax", hidden_size=1, input_size=1, output_size=2), T=1,
             expect=(("b_y", (0, 0)), ("W_hy", (1, 0))),),
    Mutation("mse-sign-flipped", "MSELoss VJP: yhat_bar = G (y - yhat)",
             _rule("MSELoss", lambda node, g, out: [
                 (node.prediction, matmul(g, sub(node.target, node.prediction)))]),
             "MSELoss", Spec(hidden_size=1, input_size=1, output_size=1), T=1,
             expect=(("b_y", (0, 0)), ("W_hy", (0, 0)), ("W_hh", (0, 0)))),
    Mutation("cross-entropy-without-target", "SoftmaxCrossEntropy VJP: z_bar = G softmax(z)",
             _rule("SoftmaxCrossEntropy", lambda node, g, out: [
                 (node.prediction, matmul(g, Softmax(node.prediction)))]),
             "SoftmaxCrossEntropy",
             Spec(head="softmax", loss="cross_entropy", hidden_size=1, input_size=1,
                  output_size=2), T=1,
             expect=(("b_y", (0, 0)), ("b_y", (1, 0)))),
    Mutation("contributions-not-summed",
             "Backprop._push: a symbol keeps only the last adjoint pushed into it",
             _keep_last_contribution, None, _ELMAN,
             expect=(("W_hh", (0, 0)), ("b_y", (0, 0)))),
    Mutation("rolled-carry-dropped",
             "derive_recurrence: carry = 0 and delta_t = local only (no J_{t+1}.T delta_{t+1})",
             _drop_carry, None, _ELMAN, proof="rolled",
             expect=(("delta_1", (0, 0)), ("W_hh", (0, 0)), ("h_0", (0, 0))),
             untouched=("delta_2", "W_hy", "b_y")),
    Mutation("elman-forward-extra-term", "Elman step: a_t = W_hh h + W_xh x + b_h + h_{t-1}",
             _cell("elman", _elman_extra_term), None, _ELMAN,
             expect=(("forward h_1", (0, 0)), ("W_hh", (0, 0)), ("h_0", (0, 0)))),
    Mutation("lstm-forget-gate-tanh", "LSTM step: f_t = tanh(W_hf h + W_xf x + b_f)",
             _cell("lstm", _lstm_forget_tanh), None,
             Spec(cell="lstm", hidden_size=1, input_size=1, output_size=1),
             expect=(("forward c_1", (0, 0)), ("W_hf", (0, 0)), ("b_f", (0, 0)))),
    Mutation("gru-reset-gate-inside-matmul",
             "GRU step: n_t = tanh(W_xn x + b_n + W_hn (r*h) + b_hn) (Cho's form, not torch's)",
             _cell("gru", _gru_reset_inside), None,
             Spec(cell="gru", hidden_size=2, input_size=1, output_size=1), T=1,
             expect=(("forward h_1", (1, 0)), ("b_hn", (0, 0)), ("W_hr", (0, 0)))),
    Mutation("gru-v1-reset-after-product",
             "GRU v1 step: n_t = tanh(W_xn x + b_n + r*(W_hn h)) (torch's order, not Cho's); "
             "the same cell at hidden size 1, so hidden 2",
             _cell("gru_v1", _gru_v1_reset_after), None,
             Spec(cell="gru_v1", hidden_size=2, input_size=1, output_size=1), T=1,
             expect=(("forward h_1", (0, 0)), ("forward h_1", (1, 0)), ("W_hr", (0, 1)),
                     ("W_hn", (1, 0)))),
    Mutation("gru-v1-candidate-update-gate",
             "GRU v1 step: n_t = tanh(W_hn (u*h) + W_xn x + b_n) (the update gate where the "
             "reset belongs)",
             _cell("gru_v1", _gru_v1_candidate_update_gate), None,
             Spec(cell="gru_v1", hidden_size=2, input_size=1, output_size=1), T=2,
             proof="rolled",
             expect=(("forward h_2", (1, 0)), ("delta_1", (0, 0)), ("b_r", (1, 0)),
                     ("W_hu", (1, 1)))),
    Mutation("torch-layout-recurrent-bias-lost",
             "StepBuilder.affine: b_x{g} only, the torch layout's b_h{g} dropped (LSTM, torch)",
             _drop_recurrent_bias, None,
             Spec(cell="lstm", layout="torch", hidden_size=1, input_size=1, output_size=1),
             expect=(("forward c_1", (0, 0)), ("b_hi", (0, 0)), ("b_ho", (0, 0)),
                     ("b_xf", (0, 0)))),
    Mutation("stack-layer-reads-input",
             "Network.layer_equations: layer 1 of a 2-layer stack reads x_t instead of "
             "layer 0's h_t (input size = hidden size, so the shapes fit)",
             _stack_input("x"), None,
             Spec(hidden_size=2, input_size=2, output_size=1, num_layers=2),
             expect=(("forward h_l1_1", (0, 0)), ("forward L_1", (0, 0)), ("W_xh_l1", (1, 0)),
                     ("W_hh", (0, 0)), ("h_0", (1, 0))),
             untouched=("forward h_1", "forward h_2")),
    Mutation("stack-layer-reads-previous-step",
             "Network.layer_equations: layer 1 of a 2-layer LSTM stack reads layer 0's "
             "h_{t-1} instead of its h_t (the cross-layer path moved out of step t)",
             _stack_input("previous"), None,
             Spec(cell="lstm", hidden_size=1, input_size=1, output_size=1, num_layers=2),
             proof="rolled",
             expect=(("forward c_l1_1", (0, 0)), ("delta^h_1", (0, 0)), ("W_xi", (0, 0)),
                     ("W_xf_l1", (0, 0)), ("h_0", (0, 0))),
             untouched=("forward h_1", "forward c_2", "delta^h_2", "delta^c_2")),
    Mutation("reverse-layer-reads-previous-step",
             "Network.previous: a bidirectional net's reverse layer reads its state at "
             "t-1 (the initial state at t=1) instead of t+1",
             _reverse_reads_previous, None,
             Spec(hidden_size=1, input_size=1, output_size=1, bidirectional=True), T=2,
             expect=(("forward h_reverse_1", (0, 0)), ("forward h_reverse_2", (0, 0)),
                     ("W_hh_reverse", (0, 0)), ("h_reverse_0", (0, 0)), ("W_hy", (0, 0))),
             untouched=("forward h_1", "forward h_2")),
    Mutation("feedback-input-read-as-data",
             "Network.input_equations: one_to_many feedback without x_t = yhat_(t-1), so "
             "x_t is data and no gradient flows back through the fed output",
             _feedback_as_data, None,
             Spec(hidden_size=2, input_size=1, output_size=1, topology="one_to_many",
                  feed="feedback"), T=2,
             expect=(("forward h_2", (0, 0)), ("forward L_2", (0, 0)), ("W_xh", (1, 0)),
                     ("W_hy", (0, 1)), ("h_0", (0, 0))),
             untouched=("forward h_1", "forward L_1")),
    Mutation("decoder-starts-from-first-encoder-state",
             "Network._context: the decoder starts from the encoder's h_1, c_1 instead of "
             "its final h_T, c_T (LSTM, 2 layers)",
             _decoder_context("first"), None,
             Spec(cell="lstm", hidden_size=1, input_size=1, output_size=1,
                  topology="encoder_decoder", num_layers=2), T=2, T_out=3,
             expect=(("forward h_dec_1", (0, 0)), ("forward c_dec_l1_1", (0, 0)),
                     ("forward L_3", (0, 0)), ("W_hf", (0, 0)), ("W_xi_l1", (0, 0)),
                     ("c_0", (0, 0)), ("W_hy", (0, 0))),
             untouched=("forward h_1", "forward c_2", "forward h_l1_2")),
    Mutation("decoder-starts-from-zeros",
             "Network._context: the decoder starts from zeros instead of the encoder's final "
             "states (no gradient reaches the encoder)",
             _decoder_context("zeros"), None,
             Spec(hidden_size=2, input_size=1, output_size=1, topology="encoder_decoder"),
             T=3, T_out=2,
             expect=(("forward h_dec_1", (0, 0)), ("W_hh", (0, 1)), ("W_xh", (1, 0)),
                     ("h_0", (0, 0)), ("W_hh_dec", (1, 1))),
             untouched=("forward h_1", "forward h_3")),
    Mutation("rolled-cross-dropped",
             "derive_recurrence: delta_t = local + carry, without what the layer above sends "
             "at step t (bidirectional, 2 layers)",
             _patch_recurrence(_without_cross), None,
             Spec(hidden_size=1, input_size=1, output_size=1, bidirectional=True,
                  num_layers=2), T=2, proof="rolled",
             expect=(("delta^h_1", (0, 0)), ("delta^h_reverse_2", (0, 0)), ("W_xh", (0, 0)),
                     ("W_hh_reverse", (0, 0)), ("h_0", (0, 0))),
             untouched=("delta^h_l1_1", "delta^h_l1_reverse_2", "W_hh_l1", "W_xh_rev_l1",
                        "W_hy_rev", "b_y")),
    Mutation("rolled-final-dropped",
             "derive_recurrence: final = {} (the encoder's delta_T without what the decoder "
             "sends back)",
             _patch_recurrence(_without_final), None,
             Spec(hidden_size=2, input_size=1, output_size=1, topology="encoder_decoder"),
             T=2, T_out=3, proof="rolled",
             expect=(("delta^h_2", (0, 0)), ("delta^h_1", (1, 0)), ("W_hh", (0, 0)),
                     ("h_0", (1, 0))),
             untouched=("delta^h_dec_1", "delta^h_dec_3", "W_hh_dec", "W_xh_dec", "W_hy")),
    Mutation("rolled-first-step-dropped",
             "derive_recurrence: first_step = {} (one_to_many zeros: W_xh's summand at t=1, "
             "the only one, lost)",
             _patch_recurrence(_without_first_step), None,
             Spec(hidden_size=2, input_size=1, output_size=1, topology="one_to_many"),
             T=2, proof="rolled",
             expect=(("W_xh", (0, 0)), ("W_xh", (1, 0))),
             untouched=("delta_1", "delta_2", "W_hh", "b_h", "h_0", "W_hy")),
)

RULE_MUTATIONS = tuple(m for m in MUTATIONS if m.rule is not None)


def by_id(mutation_id: str) -> Mutation:
    (m,) = [m for m in MUTATIONS if m.id == mutation_id]
    return m
