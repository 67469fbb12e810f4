"""Mutation tests of the proof: every deliberate break must fail the symbolic proof alone.

Each break of :mod:`mutations` (see the table there) is installed at run time
with ``monkeypatch`` (no file is edited), and the proof — ``prove_unrolled``
or, for the rolled recurrence, ``prove_rolled`` — must report mismatches
naming the expected parameter and entry.  No numeric check is involved: the
proof compares the engine's matrix-form gradients with the independent scalar
oracle (:mod:`symrnn.checks.oracle`: its own textbook forward, SymPy's
derivative of 1/(1 + e^{−a}) etc.), so a break that is consistent inside the
engine (σ' = s in the engine's row *and* in ``Sigmoid.fdiff``) is still caught.

=================================  ====================  ==================================
mutation (test id)                 spec, T, proof        must be among the mismatches
=================================  ====================  ==================================
tanh-derivative-scaled             elman tanh 2/1/1, 2   W_hh[0,0], W_xh[1,0], h_0[0]
tanh-derivative-replaced           elman tanh 2/1/1, 2   b_h[0]
sigmoid-derivative-scaled          elman σ 2/1/1, 2      W_hh[0,1], b_h[1]
sigmoid-derivative-replaced        elman σ 2/1/1, 2      W_xh[0,0]
sigmoid-derivative-s-everywhere    elman σ 2/1/1, 2      W_hh[1,0], h_0[1]
relu-derivative-scaled             elman relu 2/1/1, 2   W_hh[0,0], b_h[0]
relu-derivative-replaced           elman relu 2/1/1, 2   W_xh[1,0]
matmul-factor-not-transposed       elman tanh 2/1/1, 2   h_0[0], W_hh[0,0]
transpose-vjp-untransposed         (proof blind)         caught by tests/test_rules.py only
scalar-multiple-coefficient-lost   gru 1/1/1, 1          W_hu[0,0], b_u[0]
hadamard-own-factor                gru 1/1/1, 1          W_xn[0,0], b_r[0]
softmax-missing-outer-term         softmax+mse 1/1/2, 1  b_y[0], W_hy[1,0]
mse-sign-flipped                   elman 1/1/1, 1        b_y[0], W_hy[0,0], W_hh[0,0]
cross-entropy-without-target       softmax+CE 1/1/2, 1   b_y[0], b_y[1]
contributions-not-summed           elman tanh 2/1/1, 2   W_hh[0,0], b_y[0]
rolled-carry-dropped               elman 2/1/1, 2 rolled delta_1[0], W_hh[0,0], h_0[0]
elman-forward-extra-term           elman tanh 2/1/1, 2   forward h_1[0], W_hh[0,0], h_0[0]
lstm-forget-gate-tanh              lstm 1/1/1, 2         forward c_1[0], W_hf[0,0], b_f[0]
gru-reset-gate-inside-matmul       gru 2/1/1, 1          forward h_1[1], b_hn[0], W_hr[0,0]
gru-v1-reset-after-product         gru_v1 2/1/1, 1       forward h_1[0], h_1[1], W_hr[0,1],
                                                         W_hn[1,0]
gru-v1-candidate-update-gate       gru_v1 2/1/1, 2       forward h_2[1], delta_1[0], b_r[1],
                                   rolled                W_hu[1,1]
torch-layout-recurrent-bias-lost   lstm torch 1/1/1, 2   forward c_1[0], b_hi[0], b_ho[0],
                                                         b_xf[0]
stack-layer-reads-input            elman 2 layers        forward h_l1_1[0], L_1[0],
                                   2/2/1, 2              W_xh_l1[1,0], W_hh[0,0], h_0[1]
stack-layer-reads-previous-step    lstm 2 layers         forward c_l1_1[0], delta^h_1[0],
                                   1/1/1, 2 rolled       W_xi[0,0], W_xf_l1[0,0], h_0[0]
reverse-layer-reads-previous-step  elman bidirectional   forward h_reverse_1[0], h_reverse_2[0],
                                   1/1/1, 2              W_hh_reverse[0,0], h_reverse_0[0],
                                                         W_hy[0,0]
feedback-input-read-as-data        elman one_to_many     forward h_2[0], L_2[0], W_xh[1,0],
                                   feedback 2/1/1, 2     W_hy[0,1], h_0[0]
decoder-starts-from-first-         lstm 2 layers         forward h_dec_1[0], c_dec_l1_1[0],
encoder-state                      encoder_decoder       L_3[0], W_hf[0,0], W_xi_l1[0,0],
                                   1/1/1, T 2, T_out 3   c_0[0], W_hy[0,0]
decoder-starts-from-zeros          elman encoder_decoder forward h_dec_1[0], W_hh[0,1],
                                   2/1/1, T 3, T_out 2   W_xh[1,0], h_0[0], W_hh_dec[1,1]
rolled-cross-dropped               elman bidirectional   delta^h_1[0], delta^h_reverse_2[0],
                                   2 layers 1/1/1, 2     W_xh[0,0], W_hh_reverse[0,0], h_0[0]
                                   rolled
rolled-final-dropped               elman encoder_decoder delta^h_2[0], delta^h_1[1],
                                   2/1/1, T 2, T_out 3   W_hh[0,0], h_0[1]
                                   rolled
rolled-first-step-dropped          elman one_to_many     W_xh[0,0], W_xh[1,0] (summand t=1)
                                   zeros 2/1/1, 2 rolled
=================================  ====================  ==================================

(sizes are hidden/input/output.)  Every cell and both layouts have a forward
mutation (:func:`test_every_cell_and_layout_has_a_forward_mutation`); the two GRUs'
reset orders coincide at hidden size 1 (r ⊙ (W_hn h) = W_hn (r ⊙ h) for scalars), so
their mutations use hidden 2, and at hidden 1 the proof passes, as it must
(:func:`test_reset_order_is_invisible_at_hidden_size_one`).  A stack has mutations of
its wiring (layer 1 reading x_t, or the layer below's h_{t−1}, instead of its h_t;
:func:`test_stack_wiring_mutations_reach_only_the_layers_above`): layer 0's forward
is untouched, and δ^{h}_T of layer 0 (the head reads layer 1 only) stays 0.  The
architectures have mutations of their wiring (a reverse layer reading s_{t−1}, the fed-back
input read as data, a decoder starting from the encoder's first state or from zeros;
:func:`test_architecture_wiring_mutations_fail_both_proofs`, and at T = 1, where two of
them are the right network, :func:`test_wiring_breaks_are_invisible_at_one_step`) and of
the rolled recurrence's new parts (``cross``, ``final``, ``first_step`` dropped).

Each mutation also lists parameters it cannot reach (``untouched``, e.g. W_hy
for an activation derivative, δ_T for the dropped carry), which must not be
reported.  The engine caches per spec
(``symrnn.engine.graph.network`` is an ``lru_cache``) and SymPy memoizes;
both are cleared before and after every test, after the monkeypatches are
undone.  :func:`test_unbroken_engine_passes_the_same_proofs` runs each proof
once without a break, so each failure is the mutation's doing.
"""

from __future__ import annotations

import pytest
from mutations import MUTATIONS, Mutation, by_id
from sympy.core.cache import clear_cache
from sympy.matrices.expressions.transpose import Transpose

from symrnn.checks.proof import prove_rolled, prove_unrolled
from symrnn.engine.graph import network, unroll
from symrnn.spec import CELLS, LAYOUTS, Spec

PROOFS = {"unrolled": prove_unrolled, "rolled": prove_rolled}


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Autouse, so set up before ``monkeypatch`` and torn down after its undo."""
    network.cache_clear()
    clear_cache()
    yield
    network.cache_clear()
    clear_cache()


def _entry(entry) -> tuple:
    """(i, j) for a matrix entry; a column vector's (i,) read as (i, 0)."""
    entry = tuple(int(k) for k in entry)
    return entry + (0,) if len(entry) == 1 else entry


def _mismatches(result) -> set[tuple[str, tuple]]:
    return {(m.parameter, _entry(m.entry)) for m in result.mismatches}


def _params(mutations):
    return [pytest.param(m, id=m.id) for m in mutations]


@pytest.mark.parametrize("mutation", _params(MUTATIONS))
def test_the_proof_alone_catches_the_mutation(mutation: Mutation, monkeypatch):
    if mutation.proof_blind:
        _proof_blind(mutation, monkeypatch)
        return
    prove = PROOFS[mutation.proof]
    mutation.apply(monkeypatch)
    result = prove(mutation.spec, mutation.T, mutation.T_out)
    found = _mismatches(result)
    assert not result.ok, f"{mutation.id} ({mutation.doc}): the {mutation.proof} proof passed"
    assert result.mismatches
    missing = [e for e in mutation.expect if e not in found]
    assert not missing, (
        f"{mutation.id}: expected mismatches {missing} not reported; got {sorted(found)}"
    )
    reached = {p for p, _ in found} & set(mutation.untouched)
    assert not reached, f"{mutation.id}: {sorted(reached)} cannot depend on this break"
    with pytest.raises(AssertionError):
        result.raise_if_failed()


def _proof_blind(mutation: Mutation, monkeypatch) -> None:
    """The proof cannot see a rule no forward equation uses; the rule test must see it."""
    from test_rules import CASES, rule_mismatches

    for spec in (Spec(hidden_size=2, input_size=1, output_size=2, **kw) for kw in (
            {}, {"activation": "relu"}, {"head": "sigmoid"}, {"head": "softmax"},
            {"head": "softmax", "loss": "cross_entropy"}, {"cell": "lstm"}, {"cell": "gru"},
            {"cell": "gru_v1"}, {"layout": "torch"}, {"cell": "lstm", "layout": "torch"},
            {"cell": "gru", "layout": "torch"}, {"cell": "gru_v1", "layout": "torch"},
            {"topology": "many_to_one"}, {"bias": False})):
        for eq in unroll(spec, 2).equations:
            assert not eq.rhs.has(Transpose), (
                f"{spec}: {eq.lhs} = {eq.rhs} applies {mutation.rule}: make "
                f"{mutation.id} a proof mutation (remove proof_blind)"
            )
    mutation.apply(monkeypatch)
    caught = [p for case in CASES[mutation.rule] for p in rule_mismatches(mutation.rule, case)]
    assert caught, f"{mutation.id}: neither the proof nor the rule test sees it"


def _baselines():
    seen = {}
    for m in MUTATIONS:
        if not m.proof_blind:
            seen.setdefault((m.proof, m.spec, m.T, m.T_out), m.id)
    return [pytest.param(*key, id=f"{key[0]}-{mid}") for key, mid in seen.items()]


@pytest.mark.parametrize(("proof", "spec", "T", "T_out"), _baselines())
def test_unbroken_engine_passes_the_same_proofs(proof, spec, T, T_out):
    result = PROOFS[proof](spec, T, T_out)
    result.raise_if_failed()
    assert result.ok and result.entries_checked > 0


def test_every_mutation_names_what_it_expects():
    for m in MUTATIONS:
        assert m.proof_blind or m.expect, m.id
        assert m.proof in PROOFS, m.id
    assert len({m.id for m in MUTATIONS}) == len(MUTATIONS)


def test_every_cell_and_layout_has_a_forward_mutation():
    """A wrong forward of each cell (and of each layout) is among the breaks."""

    def forward(m):
        return not m.proof_blind and any(p.startswith("forward ") for p, _ in m.expect)

    cells = {m.spec.cell for m in MUTATIONS if forward(m)}
    layouts = {m.spec.layout for m in MUTATIONS if forward(m)}
    assert cells == set(CELLS) and layouts == set(LAYOUTS), (cells, layouts)
    gated = [m for m in MUTATIONS if forward(m) and m.spec.cell == "gru_v1"]
    assert {m.proof for m in gated} == set(PROOFS)


def test_reset_order_is_invisible_at_hidden_size_one(monkeypatch):
    """r ⊙ (W_hn h) = W_hn (r ⊙ h) when h is a scalar: the broken gru_v1 is then the right
    cell, and the exact proof says so; at hidden 2 it fails."""
    mutation = by_id("gru-v1-reset-after-product")
    mutation.apply(monkeypatch)
    spec = mutation.spec.replace(hidden_size=1)
    for prove in PROOFS.values():
        prove(spec, 2).raise_if_failed()
    assert not prove_unrolled(mutation.spec, 1).ok


@pytest.mark.parametrize("mutation_id", ["stack-layer-reads-input",
                                         "stack-layer-reads-previous-step"])
def test_stack_wiring_mutations_reach_only_the_layers_above(mutation_id, monkeypatch):
    """Both proofs see a miswired stack (the table names one of them per mutation): layer
    0's forward never changes, every h of layer 1 does, and so does ∂L/∂h_l1_0
    (test_unbroken_engine_passes_the_same_proofs runs the same stacks unbroken)."""
    mutation = by_id(mutation_id)
    assert mutation.spec.num_layers == 2
    mutation.apply(monkeypatch)
    for proof, prove in PROOFS.items():
        found = {p for p, _ in _mismatches(prove(mutation.spec, mutation.T))}
        forward = {p for p in found if p.startswith("forward ")}
        assert {f"forward h_l1_{t}" for t in range(1, mutation.T + 1)} <= forward, proof
        assert not any(p.startswith("forward ") and "_l1_" not in p and "L_" not in p
                       for p in forward), (proof, sorted(forward))
        assert "h_l1_0" in found, proof


ARCHITECTURE_WIRING = ("reverse-layer-reads-previous-step", "feedback-input-read-as-data",
                       "decoder-starts-from-first-encoder-state", "decoder-starts-from-zeros")


@pytest.mark.parametrize("mutation_id", ARCHITECTURE_WIRING)
def test_architecture_wiring_mutations_fail_both_proofs(mutation_id, monkeypatch):
    """A miswired architecture fails the unrolled and the rolled proof alike (the table
    names the unrolled one's entries), and what it cannot reach — the forward direction
    of a bidirectional net, step 1 of a fed-back one, the encoder's states — still
    matches."""
    mutation = by_id(mutation_id)
    mutation.apply(monkeypatch)
    for proof, prove in PROOFS.items():
        result = prove(mutation.spec, mutation.T, mutation.T_out)
        found = {p for p, _ in _mismatches(result)}
        assert not result.ok, proof
        assert {p for p in found if p.startswith("forward ")}, proof
        assert not found & set(mutation.untouched), (proof, sorted(found))


@pytest.mark.parametrize("mutation_id", ["decoder-starts-from-first-encoder-state",
                                         "reverse-layer-reads-previous-step"])
def test_wiring_breaks_are_invisible_at_one_step(mutation_id, monkeypatch):
    """At T = 1 the encoder's first state is its final one, and a reverse layer's only
    step reads its initial state either way: the broken unrolled program is then right,
    and the exact proof says so (so the failures above are the wiring's, not noise).  The
    rolled recurrence is a formula for every T: a reverse step reading s_{t−1} is wrong
    in it even at T = 1 (its summand reads h_reverse_0, ∂L/∂h_reverse_0 is lost)."""
    mutation = by_id(mutation_id)
    mutation.apply(monkeypatch)
    prove_unrolled(mutation.spec, 1, mutation.T_out).raise_if_failed()
    rolled = prove_rolled(mutation.spec, 1, mutation.T_out)
    if mutation_id == "decoder-starts-from-first-encoder-state":
        rolled.raise_if_failed()
    else:
        assert {("W_hh_reverse", (0, 0)), ("h_reverse_0", (0, 0))} <= _mismatches(rolled)
        assert not any(p.startswith("forward ") for p, _ in _mismatches(rolled))
