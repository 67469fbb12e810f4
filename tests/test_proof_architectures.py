"""Symbolic proof of the composed architectures: bidirectional, one_to_many, encoder_decoder.

The oracle (:mod:`symrnn.checks.oracle`) writes each architecture from its own reading
of the spec (reverse layers over t = T..1 reading s_{t+1}; one_to_many's later inputs
none, x_1 or ŷ_{t−1}; a decoder over y_0..y_{T_out−1} from the encoder's final states),
and :func:`symrnn.checks.proof.prove` checks the engine's unrolled forward and gradients
and its rolled recurrence (``cross``, ``final``, ``first_step``, ``summand_range``)
against it, exactly.  Every case also checks how many entries were compared, counted
here from the architecture (so a proof that silently compares less fails).

Cases (sizes hidden/input/output): every cell bidirectional at 1 layer (2/1/1, T = 3) and
2 layers (1/1/1, T = 2, torch layout), many_to_one and softmax + cross-entropy heads;
one_to_many with each feed for every cell (2/1/1, T = 3), at 2 layers, and bidirectional
(zeros, repeat); encoder_decoder with T ≠ T_out, 1 and 2 layers (LSTM: c passes the
context too; every cell).  The oracle's own wiring and the adjoint conventions are
checked from its program (the ``test_the_oracles_*`` tests); the mutations of
``tests/mutations.py`` (reverse-layer-reads-previous-step, feedback-input-read-as-data,
decoder-starts-from-*, rolled-*-dropped) show these proofs fail on a miswired engine.
"""

from __future__ import annotations

import pytest
import symengine
from test_proof import N_GATES, _cell_entries

from symrnn.checks.oracle import ScalarNetwork, build_network
from symrnn.checks.proof import prove, prove_rolled
from symrnn.engine.derive import derive_recurrence, derive_unrolled
from symrnn.errors import SpecError
from symrnn.spec import CELLS, FEEDS, Spec


def _layer_entries(spec: Spec, width: int, index: int) -> int:
    """One direction of one layer: its cell's entries, plus the reverse-h column blocks
    W_x{g}_rev (H×H per gate) of a bidirectional layer above the first."""
    h = spec.hidden_size
    n = _cell_entries(spec.cell, h, width, spec.bias, spec.layout)
    if index and spec.bidirectional:
        n += N_GATES.get(spec.cell, 1) * h * h
    return n


def _stage_entries(spec: Spec, width: int) -> int:
    directions = 2 if spec.bidirectional else 1
    h = spec.hidden_size
    return directions * sum(_layer_entries(spec, width if index == 0 else h, index)
                            for index in range(spec.num_layers))


def _expected(spec: Spec, T: int, T_out: int | None = None) -> tuple[int, int, int]:
    """(unrolled gradient entries, rolled entries, forward entries), counted from the
    architecture: every stage's parameters and states, the head (W_hy_rev too when
    bidirectional), the free initial states (not the decoder's)."""
    h, o = spec.hidden_size, spec.output_size
    states = (2 if spec.cell == "lstm" else 1) * spec.num_layers \
        * (2 if spec.bidirectional else 1)
    head = o * h * (2 if spec.bidirectional else 1) + o * spec.bias
    cells = _stage_entries(spec, spec.input_size)
    if spec.topology != "encoder_decoder":
        losses = 1 if spec.topology == "many_to_one" else T
        return (cells + head + states * h, T * (states * h + cells + head) + states * h,
                T * states * h + losses)
    T_out = T if T_out is None else T_out
    decoder = _stage_entries(spec, o)
    rolled = T * (states * h + cells) + T_out * (states * h + decoder + head) + states * h
    return cells + decoder + head + states * h, rolled, (T + T_out) * states * h + T_out


def _prove_both(spec: Spec, T: int, T_out: int | None = None) -> tuple[int, int, int]:
    unrolled, rolled = prove(spec, T, T_out)
    unrolled.raise_if_failed()
    rolled.raise_if_failed()
    assert unrolled.forward_checked == rolled.forward_checked
    return unrolled.entries_checked, rolled.entries_checked, unrolled.forward_checked


def _assert_proved(spec: Spec, T: int, T_out: int | None = None) -> None:
    assert _prove_both(spec, T, T_out) == _expected(spec, T, T_out), (spec, T, T_out)


# --------------------------------------------------------------------------- bidirectional


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_bidirectional_cells_are_proved(cell, layers):
    """Both directions of every layer; layer 1 reads [h_t; h_reverse_t] of layer 0."""
    if layers == 1:
        spec, T = Spec(cell=cell, hidden_size=2, input_size=1, output_size=1,
                       bidirectional=True), 3
    else:
        spec, T = Spec(cell=cell, hidden_size=1, input_size=1, output_size=1, layout="torch",
                       bidirectional=True, num_layers=2), 2
    _assert_proved(spec, T)


@pytest.mark.parametrize(("kw", "T"), [
    ({"topology": "many_to_one", "hidden_size": 2, "output_size": 2}, 3),
    ({"head": "softmax", "loss": "cross_entropy", "hidden_size": 1, "output_size": 2}, 2),
    ({"cell": "gru", "topology": "many_to_one", "num_layers": 2, "bias": False}, 3),
    ({"activation": "relu", "hidden_size": 2}, 1),
], ids=["many_to_one", "softmax-ce", "gru-2-layers-many_to_one-no-bias", "relu-T1"])
def test_bidirectional_heads_and_topologies_are_proved(kw, T):
    """The head reads both directions (W_hy_rev); at many_to_one only at t = T."""
    spec = Spec(**{"hidden_size": 1, "input_size": 1, "output_size": 1,
                   "bidirectional": True, **kw})
    _assert_proved(spec, T)


# --------------------------------------------------------------------------- one_to_many


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("cell", CELLS)
def test_one_to_many_feeds_are_proved(cell, feed):
    """x_1 at t = 1, then nothing, x_1 again, or ŷ_{t−1} (the gradient through it)."""
    spec = Spec(cell=cell, topology="one_to_many", feed=feed, hidden_size=2, input_size=1,
                output_size=1)
    _assert_proved(spec, 3)


@pytest.mark.parametrize("feed", FEEDS)
def test_one_to_many_stacks_are_proved(feed):
    """Two layers (the fed-back ŷ_{t−1} enters layer 0; sigmoid head, so ŷ ≠ z)."""
    spec = Spec(cell="lstm", topology="one_to_many", feed=feed, head="sigmoid",
                hidden_size=1, input_size=2, output_size=2, num_layers=2)
    _assert_proved(spec, 3)


@pytest.mark.parametrize("feed", [f for f in FEEDS if f != "feedback"])
def test_one_to_many_bidirectional_is_proved(feed):
    """The reverse layer reads x_1 at its last step only (zeros) or at every step."""
    spec = Spec(topology="one_to_many", feed=feed, bidirectional=True, hidden_size=1,
                input_size=1, output_size=1, num_layers=2)
    _assert_proved(spec, 3)


# --------------------------------------------------------------------------- encoder_decoder


@pytest.mark.parametrize(("cell", "layers", "T", "T_out"), [
    ("lstm", 1, 3, 2), ("lstm", 2, 2, 3), ("elman", 1, 1, 3), ("elman", 2, 3, 1),
    ("gru", 1, 2, 3), ("gru_v1", 2, 3, 2)])
def test_encoder_decoder_is_proved(cell, layers, T, T_out):
    """The decoder (own parameters, reading y_{τ−1}) starts from h_T (c_T, h_l1_T)."""
    spec = Spec(cell=cell, topology="encoder_decoder", hidden_size=1, input_size=2,
                output_size=1, num_layers=layers)
    _assert_proved(spec, T, T_out)


def test_encoder_decoder_with_distributions_is_proved():
    """Softmax + cross-entropy: the targets (and the decoder's inputs y_0..) are
    distributions; hidden 2, so the context is a vector."""
    spec = Spec(topology="encoder_decoder", head="softmax", loss="cross_entropy",
                hidden_size=2, input_size=1, output_size=2, layout="torch")
    _assert_proved(spec, 2, 3)


# --------------------------------------------------------------------------- the oracle


def _reads(net: ScalarNetwork, symbol: str) -> set[str]:
    (expr,) = [d.expr for d in net.definitions if d.symbol.name == symbol]
    return {s.name for s in expr.free_symbols}


def test_the_oracles_reverse_layer_reads_the_next_step():
    """Its own program: h_reverse_t reads h_reverse_{t+1} (h_reverse_0, the free initial
    state, at t = T); layer 1 and the head read both directions by column blocks."""
    net = ScalarNetwork(Spec(hidden_size=1, input_size=1, output_size=1, bidirectional=True,
                             num_layers=2), 3)
    assert net.state_names == ("h", "h_reverse", "h_l1", "h_l1_reverse")
    assert net.free_states == net.state_names
    assert {"h_reverse_3[0]", "x_2[0]"} <= _reads(net, "a_reverse_2[0]")
    assert not _reads(net, "a_reverse_2[0]") & {"h_reverse_1[0]", "h_2[0]"}
    assert "h_reverse_0[0]" in _reads(net, "a_reverse_3[0]")
    assert {"h_2[0]", "h_reverse_2[0]", "W_xh_l1[0]", "W_xh_rev_l1[0]", "h_l1_1[0]"} \
        <= _reads(net, "a_l1_2[0]")
    assert {"h_l1_2[0]", "h_l1_reverse_2[0]", "W_hy[0]", "W_hy_rev[0]"} <= _reads(net, "z_2[0]")
    assert net.gradient("h_reverse_0")[0] != 0


def test_the_oracles_one_to_many_inputs():
    """x_1 at t = 1; at t = 2 no input term (zeros), x_1 (repeat) or ŷ_1 (feedback)."""
    reads = {}
    for feed in FEEDS:
        net = ScalarNetwork(Spec(topology="one_to_many", feed=feed, hidden_size=1,
                                 input_size=1, output_size=1), 2)
        assert net.loss_steps == (1, 2) and set(net.inputs) == {1}
        reads[feed] = _reads(net, "a_2[0]")
    assert not any(n.startswith(("x_", "W_xh", "yhat")) for n in reads["zeros"])
    assert {"x_1[0]", "W_xh[0]"} <= reads["repeat"]
    assert {"yhat_1[0]", "W_xh[0]"} <= reads["feedback"] and "x_1[0]" not in reads["feedback"]


def test_the_oracles_decoder_starts_from_the_encoders_final_states():
    """h_dec_0, c_dec_0 are the very entries of h_T, c_T (not free); the decoder reads
    y_{τ−1} and carries the loss on y_1..y_T_out; the head reads h_dec only."""
    spec = Spec(cell="lstm", topology="encoder_decoder", hidden_size=1, input_size=2,
                output_size=1)
    net = ScalarNetwork(spec, 3, 2)
    assert net.free_states == ("h", "c") and net.readout == "h_dec"
    assert net.initial["h_dec"] is net.states["h", 3]
    assert net.initial["c_dec"] is net.states["c", 3]
    assert net.loss_steps == (1, 2) and set(net.targets) == {0, 1, 2}
    assert {"y_0[0]", "h_3[0]", "W_xi_dec[0]", "W_hi_dec[0]"} <= _reads(net, "ai_dec_1[0]")
    assert "c_3[0]" in _reads(net, "c_dec_1[0]")
    assert net.param_steps("W_hi") == 3
    assert net.param_steps("W_hi_dec") == net.param_steps("W_hy") == 2
    with pytest.raises(SpecError, match="no free initial state"):
        net.adjoint("h_dec", 0)


def test_adjoints_are_whole_with_a_reverse_layer_and_per_step_without():
    """With a reverse layer each layer's step is a block: δ^{h}_T of layer 0 (which the
    head does not read) is what layer 1 sends at step T, in the oracle and in the
    engine's recurrence (``cross``); without one, it is held fixed inside step T (0)."""
    base = Spec(hidden_size=1, input_size=1, output_size=1, num_layers=2)
    per_step = ScalarNetwork(base, 2)
    whole = ScalarNetwork(base.replace(bidirectional=True), 2)
    assert per_step.adjoint("h", 2) == [0]
    assert whole.adjoint("h", 2) != [0] and whole.adjoint("h_reverse", 1) != [0]
    used = {str(s) for v in whole.adjoint("h", 2) for s in v.free_symbols}
    assert {"delta^h_l1_2[0]", "delta^h_l1_reverse_2[0]"} <= used
    rec = derive_recurrence(base.replace(bidirectional=True))
    assert set(rec.cross) == {"h", "h_reverse"}
    assert derive_recurrence(base).cross == {}


def test_an_encoders_last_adjoint_is_what_the_decoder_sends_back():
    """δ^{h}_T of the encoder is ∂L/∂h_dec_0 (the recurrence's ``final``); its δ^{c}_T is
    nonzero too (the LSTM's context carries c)."""
    spec = Spec(cell="lstm", topology="encoder_decoder", hidden_size=1, input_size=1,
                output_size=1)
    net = build_network(spec, 2, 3)
    for s in ("h", "c"):
        (value,) = net.adjoint(s, 2)
        assert value != 0 and any("dec_1" in str(v) for v in value.free_symbols), s
    assert set(derive_recurrence(spec).final) == {"h", "c"}
    assert set(derive_unrolled(spec, 2, 3).gradients) >= {"h_0", "c_0"}
    assert "h_dec_0" not in derive_unrolled(spec, 2, 3).gradients


def test_the_oracles_decoder_sums_over_its_own_steps():
    """∂L/∂θ of a decoder parameter sums its summands over τ = 1..T_out (T_out > T)."""
    spec = Spec(topology="encoder_decoder", hidden_size=1, input_size=1, output_size=1)
    net = ScalarNetwork(spec, 1, 3)
    total = sum((net.summand("W_hh_dec", t)[0] for t in (1, 2, 3)), symengine.Integer(0))
    assert net.summand("W_hh_dec", 3)[0] != 0
    assert symengine.expand(net.gradient("W_hh_dec")[0] - total) == 0


def test_T_out_is_refused_outside_an_encoder_decoder():
    with pytest.raises(SpecError, match="T_out applies to topology 'encoder_decoder' only"):
        prove_rolled(Spec(hidden_size=1, input_size=1, output_size=1), 2, 3)
