"""Symbolic proof: the engine equals the independent scalar oracle, exactly.

The oracle (:mod:`symrnn.checks.oracle`) writes each cell's textbook forward
in scalars and lets SymPy differentiate it; it imports nothing of the engine.
:func:`prove_unrolled` checks the engine's unrolled forward (every state and
loss) and every entry of every gradient (parameters and ∂L/∂h_0);
:func:`prove_rolled` instantiates the rolled recurrence at t = T..1 and checks
every δ_t, every per-step summand and ∂L/∂h_0.  Every difference must expand
to exactly 0.

Elman: every activation × head × loss × sequence topology (many_to_many, many_to_one)
× layout, hidden ∈ {1,2,3}, input ∈ {1,2}, output ∈ {1,2}, T ∈ {1,2,3,4}.  LSTM, GRU
(torch's, reset after the recurrent product) and GRU v1 (Cho's, reset before it): every
valid head × loss, every topology, both layouts, hidden ∈ {1,2}, input ∈ {1,2},
output ∈ {1,2}, T ∈ {1,2,3}; one_to_many and encoder_decoder, whose own suite is
tests/test_proof_architectures.py, at four sizes and T ∈ {1,2} (one_to_many's feed:
feedback where input = output, else zeros or repeat; the decoder's T_out ≠ T).
Layouts: ``notes`` (one bias per gate; the GRU's b_hn besides) and ``torch`` (two
biases per gate, b_x{g} and b_h{g}); the oracle has its own table of both.

Stacks (``num_layers``; the oracle's own stacking, layer l reading layer l−1's h_t):
every cell at 2 layers, every valid head × loss, every topology, both layouts, with and
without biases (one_to_many, encoder_decoder: with, T ∈ {1,2}), hidden ∈ {1,2}, input 1 /
output 2 and hidden 2 / input 1 / output 1, T ∈ {1,2,3}; Elman at 3 layers, every
activation × head × loss × sequence topology × layout, three sizes, T ∈ {1,2,3}.  Quick
(not slow): every cell × layout at 2 layers, T = 2, and a 3-layer Elman network, T = 3.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest
import symengine
from conftest import SEQUENCE_TOPOLOGIES, SPEC_COMBOS, combo_id, combo_spec

import symrnn.checks.oracle
from symrnn.checks import oracle
from symrnn.checks.oracle import ScalarNetwork, build_network
from symrnn.checks.proof import prove, prove_rolled, prove_unrolled
from symrnn.engine import rules
from symrnn.engine.derive import derive_recurrence
from symrnn.engine.expr import derivative_from_output, hadamard, matmul
from symrnn.engine.graph import network
from symrnn.errors import MissingRuleError
from symrnn.spec import HEADS, LAYOUTS, LOSSES, TOPOLOGIES, Spec

SIZES = list(itertools.product((1, 2, 3), (1, 2), (1, 2)))
LENGTHS = (1, 2, 3, 4)

GATED_SIZES = list(itertools.product((1, 2), (1, 2), (1, 2)))
GATED_LENGTHS = (1, 2, 3)
HEAD_LOSS = [(h, loss) for h, loss in itertools.product(HEADS, LOSSES)
             if not (loss == "cross_entropy" and h != "softmax")]
GATED_CELLS = ("lstm", "gru", "gru_v1")
GATED = [(cell, layout, head, loss, topo) for cell in GATED_CELLS for layout in LAYOUTS
         for (head, loss), topo in itertools.product(HEAD_LOSS, TOPOLOGIES)]
N_GATES = {"lstm": 4, "gru": 3, "gru_v1": 3}


def _cell_entries(cell: str, h: int, d: int, bias: bool = True, layout: str = "notes",
                  layers: int = 1) -> int:
    """Entries of the cell's parameters (counted here, from the equations, not the tables).

    A stack: layer 0 reads the D-wide input, every layer above the H-wide h below it.
    """
    if layers > 1:
        return _cell_entries(cell, h, d, bias, layout) + (layers - 1) * _cell_entries(
            cell, h, h, bias, layout)
    biases = 2 if layout == "torch" else 1  # b_x{g} and b_h{g}, or b_{g}
    per_gate = h * h + h * d + biases * h * bias
    if cell == "elman":
        return per_gate
    b_hn = h * bias if cell == "gru" and layout == "notes" else 0  # inside r, cannot merge
    return N_GATES[cell] * per_gate + b_hn


def _expected(cell: str, h: int, d: int, o: int, T: int, topo: str, bias: bool = True,
              layout: str = "notes", layers: int = 1, T_out: int | None = None):
    """(unrolled gradient entries, rolled entries, forward entries) of one case.

    An encoder–decoder has a second stack (the decoder, over T_out steps, its layer 0
    reading the O-wide previous target) whose initial states are not free."""
    states = (2 if cell == "lstm" else 1) * layers  # every layer's h (and c)
    cell_n = _cell_entries(cell, h, d, bias, layout, layers)
    head_n = o * h + o * bias
    if topo == "encoder_decoder":
        T_out = T if T_out is None else T_out
        dec_n = _cell_entries(cell, h, o, bias, layout, layers)
        unrolled = cell_n + dec_n + head_n + states * h
        rolled = T * (states * h + cell_n) + T_out * (states * h + dec_n + head_n) \
            + states * h
        return unrolled, rolled, (T + T_out) * states * h + T_out
    unrolled = cell_n + head_n + states * h
    rolled = T * (states * h + cell_n + head_n) + states * h
    losses = 1 if topo == "many_to_one" else T
    return unrolled, rolled, T * states * h + losses


def _feed(topo: str, hidden: int, inputs: int, outputs: int) -> str:
    """one_to_many's feed across a grid: feedback where D = O (it needs that), else zeros
    at hidden 1 and repeat above; 'zeros' (the only valid one) for other topologies."""
    if topo != "one_to_many":
        return "zeros"
    if inputs == outputs:
        return "feedback"
    return "zeros" if hidden == 1 else "repeat"


def _t_out(topo: str, T: int) -> int | None:
    """An encoder–decoder's decoder steps across a grid: T_out ≠ T (T = 1, 2, 3 → 2, 1, 2)."""
    return T % 2 + 1 if topo == "encoder_decoder" else None


ARCHITECTURE_SIZES = ((1, 1, 1), (1, 2, 1), (2, 1, 1), (2, 1, 2))
"""hidden, input, output of one_to_many and encoder_decoder in the gated grid (feeds:
feedback, zeros, feedback, repeat)."""


def _grid(topo: str, sizes, lengths, light_sizes=None):
    """(sizes, T) of a grid: all of it for the sequence topologies; one_to_many and
    encoder_decoder (proved at length in tests/test_proof_architectures.py) at
    ``light_sizes`` (default: the grid's) and the two shortest lengths."""
    if topo in SEQUENCE_TOPOLOGIES:
        return itertools.product(sizes, lengths)
    return itertools.product(light_sizes or sizes, lengths[:2])


def _prove_both(spec: Spec, T: int, T_out: int | None = None) -> tuple[int, int, int]:
    unrolled, rolled = prove(spec, T, T_out)
    unrolled.raise_if_failed()
    rolled.raise_if_failed()
    assert unrolled.forward_checked == rolled.forward_checked
    return unrolled.entries_checked, rolled.entries_checked, unrolled.forward_checked


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("combo", SPEC_COMBOS, ids=combo_id)
def test_elman_unrolled_and_rolled_equal_the_scalar_oracle(combo, layout):
    got = [0, 0, 0]
    want = [0, 0, 0]
    for (hidden, inputs, outputs), T in itertools.product(SIZES, LENGTHS):
        spec = combo_spec(combo, hidden_size=hidden, input_size=inputs, output_size=outputs,
                          layout=layout)
        for k, n in enumerate(_prove_both(spec, T)):
            got[k] += n
        for k, n in enumerate(_expected("elman", hidden, inputs, outputs, T, spec.topology,
                                        layout=layout)):
            want[k] += n
    assert got == want


@pytest.mark.slow
@pytest.mark.parametrize("case", GATED, ids=lambda c: "-".join(c))
def test_gated_cells_unrolled_and_rolled_equal_the_scalar_oracle(case):
    cell, layout, head, loss, topo = case
    for (hidden, inputs, outputs), T in _grid(topo, GATED_SIZES, GATED_LENGTHS,
                                              ARCHITECTURE_SIZES):
        spec = Spec(cell=cell, head=head, loss=loss, topology=topo, layout=layout,
                    hidden_size=hidden, input_size=inputs, output_size=outputs,
                    feed=_feed(topo, hidden, inputs, outputs))
        T_out = _t_out(topo, T)
        assert _prove_both(spec, T, T_out) == _expected(
            cell, hidden, inputs, outputs, T, topo, layout=layout, T_out=T_out), (spec, T)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cell", GATED_CELLS)
def test_gated_cells_proved_against_their_textbook_equations(cell, layout):
    """A quick (not slow) instance of the gated proofs: hidden 2, T = 2."""
    spec = Spec(cell=cell, layout=layout, hidden_size=2, input_size=1, output_size=1)
    assert _prove_both(spec, 2) == _expected(cell, 2, 1, 1, 2, spec.topology, layout=layout)


STACKED_SIZES = ((1, 1, 2), (2, 1, 1))
"""hidden, input, output of the stacked grids: hidden ≠ input, so layer 1's H×H input
weights differ in shape from layer 0's H×D."""
STACKED_LENGTHS = (1, 2, 3)
ALL_CELLS = ("elman", *GATED_CELLS)
STACKED = [(cell, layout, head, loss, topo) for cell in ALL_CELLS for layout in LAYOUTS
           for (head, loss), topo in itertools.product(HEAD_LOSS, TOPOLOGIES)]


@pytest.mark.slow
@pytest.mark.parametrize("case", STACKED, ids=lambda c: "-".join(c))
def test_two_layer_stacks_unrolled_and_rolled_equal_the_scalar_oracle(case):
    cell, layout, head, loss, topo = case
    biases = (True, False) if topo in SEQUENCE_TOPOLOGIES else (True,)
    for ((hidden, inputs, outputs), T), bias in itertools.product(
            _grid(topo, STACKED_SIZES, STACKED_LENGTHS), biases):
        spec = Spec(cell=cell, head=head, loss=loss, topology=topo, layout=layout, bias=bias,
                    hidden_size=hidden, input_size=inputs, output_size=outputs, num_layers=2,
                    feed=_feed(topo, hidden, inputs, outputs))
        T_out = _t_out(topo, T)
        assert _prove_both(spec, T, T_out) == _expected(
            cell, hidden, inputs, outputs, T, topo, bias, layout, layers=2, T_out=T_out), \
            (spec, T)


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("combo", SPEC_COMBOS, ids=combo_id)
def test_three_layer_elman_unrolled_and_rolled_equal_the_scalar_oracle(combo, layout):
    for (hidden, inputs, outputs), T in itertools.product(
            ((1, 1, 1), (2, 1, 2), (1, 2, 1)), STACKED_LENGTHS):
        spec = combo_spec(combo, hidden_size=hidden, input_size=inputs, output_size=outputs,
                          layout=layout, num_layers=3)
        assert _prove_both(spec, T) == _expected("elman", hidden, inputs, outputs, T,
                                                 spec.topology, layout=layout, layers=3)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cell", ALL_CELLS)
def test_two_layer_stacks_are_proved(cell, layout):
    """A quick (not slow) instance of the stacked grid: hidden 2, input 1, T = 2."""
    spec = Spec(cell=cell, layout=layout, hidden_size=2, input_size=1, output_size=1,
                num_layers=2)
    assert _prove_both(spec, 2) == _expected(cell, 2, 1, 1, 2, spec.topology, layout=layout,
                                             layers=2)


def test_three_layer_elman_is_proved():
    spec = Spec(activation="relu", hidden_size=2, input_size=1, output_size=2, num_layers=3,
                topology="many_to_one")
    assert _prove_both(spec, 3) == _expected("elman", 2, 1, 2, 3, "many_to_one", layers=3)


def test_the_oracles_stack_is_its_own():
    """The oracle's table and forward of a stack, read from its own program: layer l's
    input weights are H×H and multiply layer l−1's h_t; the head reads the top layer."""
    spec = Spec(cell="lstm", hidden_size=2, input_size=3, output_size=1, num_layers=3)
    shapes = oracle.parameter_shapes(spec)
    assert shapes["W_xi"] == (2, 3) and shapes["W_xi_l1"] == shapes["W_xo_l2"] == (2, 2)
    assert len(shapes) == 3 * 12 + 2 and "W_hi_l3" not in shapes
    net = ScalarNetwork(spec, 2)
    assert net.state_names == ("h", "c", "h_l1", "c_l1", "h_l2", "c_l2")
    assert net.readout == "h_l2"
    defs = {d.symbol.name: d.expr for d in net.definitions}
    names = {s.name for s in defs["af_l2_2[0]"].free_symbols}
    assert {"h_l1_2[0]", "h_l1_2[1]", "h_l2_1[1]", "W_xf_l2[0,1]"} <= names
    assert not any(n.startswith(("x_", "h_1", "h_l1_1")) for n in names)
    assert {s.name for s in defs["z_2[0]"].free_symbols} >= {"h_l2_2[0]", "W_hy[0,1]"}
    assert not any(s.name.startswith("h_l1") for s in defs["z_2[0]"].free_symbols)


def test_stacked_adjoints_hold_the_other_states_of_the_step_fixed():
    """δ^{h}_t of a lower layer is what step t+1 sends back (the head reads the top
    layer only), so δ^{h}_T = 0; the path through layer 1 at step T is in the summands of
    step T — in the oracle and in the engine's recurrence alike."""
    spec = Spec(hidden_size=2, input_size=1, output_size=1, num_layers=2)
    net = ScalarNetwork(spec, 2)
    assert net.adjoint("h", 2) == [0, 0] and all(v != 0 for v in net.adjoint("h_l1", 2))
    assert all(v != 0 for v in net.summand("W_hh", 2))
    used = {str(s) for v in net.summand("W_xh", 2) for s in v.free_symbols}
    assert "delta^h_l1_2[0]" in used and not any(u.startswith("delta^h_") and "l1" not in u
                                                 for u in used)
    rec = derive_recurrence(spec)
    assert rec.local["h"] is None and rec.local["h_l1"] is not None
    assert [str(rec.deltas[s][0]) for s in ("h", "h_l1")] == [
        "delta^{h}_{t}", "delta^{h_l1}_{t}"]


def test_oracle_and_engine_state_tables_must_agree(monkeypatch):
    """A state the oracle has and the engine lacks is refused before anything is compared."""
    monkeypatch.setitem(oracle.STATES, "elman", ("h", "s"))
    build_network.cache_clear()
    try:
        spec = Spec(hidden_size=1, input_size=1, output_size=1, num_layers=2)
        with pytest.raises(MissingRuleError, match=r"states \['h', 'h_l1'\] are not the "
                                                   r"oracle's \['h', 's', 'h_l1', 's_l1'\]"):
            prove_rolled(spec, 1)
    finally:
        monkeypatch.undo()
        build_network.cache_clear()


def test_elman_torch_layout_is_proved():
    """A quick instance of the Elman grid with two biases, b_xh and b_hh."""
    spec = Spec(layout="torch", hidden_size=2, input_size=2, output_size=1)
    assert _prove_both(spec, 3) == _expected("elman", 2, 2, 1, 3, spec.topology, layout="torch")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cell", ["elman", *GATED_CELLS])
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_no_bias_spec_is_proved(cell, topology, layout):
    spec = Spec(cell=cell, bias=False, hidden_size=2, topology=topology, layout=layout,
                feed=_feed(topology, 2, 2, 2))
    T = 3 if cell == "elman" else 2
    T_out = _t_out(topology, T)
    assert _prove_both(spec, T, T_out) == _expected(cell, 2, 2, 2, T, topology, bias=False,
                                                    layout=layout, T_out=T_out)


@pytest.mark.parametrize("cell", ["elman", *GATED_CELLS])
def test_torch_layout_biases_enter_as_torchs_sum(cell):
    """With two biases, ∂L/∂b_x{g} = ∂L/∂b_h{g} (they are added), except the GRU's b_hn,
    which the reset scales: the oracle's equations, not an assumption of the proof."""
    net = ScalarNetwork(Spec(cell=cell, layout="torch", hidden_size=2, input_size=1,
                             output_size=1), 2)
    gates = {"elman": "h", "lstm": "ifgo"}.get(cell, "run")
    for g in gates:
        x, h = net.gradient(f"b_x{g}"), net.gradient(f"b_h{g}")
        same = all(symengine.expand(a - b) == 0 for a, b in zip(x, h, strict=True))
        assert same == ((cell, g) != ("gru", "n")), (cell, g)
    biases = {name for name in net.params if name.startswith("b_")}
    assert biases == {f"b_{side}{g}" for g in gates for side in "xh"} | {"b_y"}


def test_oracle_and_engine_parameter_tables_must_agree(monkeypatch):
    """A parameter the oracle has and the engine lacks (or the reverse) is refused, not
    skipped: the proof compares every gradient of both."""
    right = oracle._CELL_PARAMETERS["gru_v1"]
    monkeypatch.setitem(oracle._CELL_PARAMETERS, "gru_v1", lambda H, D, two: {
        k: v for k, v in right(H, D, two).items() if k != "b_hn"})
    build_network.cache_clear()
    try:
        spec = Spec(cell="gru_v1", layout="torch", hidden_size=1, input_size=1, output_size=1)
        with pytest.raises(MissingRuleError, match=r"parameters .*'b_hn'.* are not the oracle"):
            prove_unrolled(spec, 1)
    finally:
        monkeypatch.undo()
        build_network.cache_clear()
    network.cache_clear()


def test_a_wrong_rule_fails_the_proof_naming_parameter_and_entry(monkeypatch):
    """Test the tester: tanh' scaled by 1.001 must be caught."""
    right = rules.RULES["tanh"]

    def scaled(node, g, out):
        slope = derivative_from_output("tanh", out)
        return [(node.arg, matmul(1.001, hadamard(g, slope)))]

    monkeypatch.setitem(rules.RULES, "tanh", rules.Rule("tanh", "wrong", right.latex, scaled))
    spec = Spec(hidden_size=2, input_size=1, output_size=1)
    result = prove_unrolled(spec, 2)
    assert not result.ok
    names = {m.parameter for m in result.mismatches}
    assert {"W_hh", "W_xh", "b_h", "h_0"} <= names
    assert "W_hy" not in names  # the head does not pass through tanh'
    assert not any(m.kind == "forward" for m in result.mismatches)  # rules: not the forward
    with pytest.raises(AssertionError, match=r"gradient mismatch for dL/dW_hh\[0, 0\]"):
        result.raise_if_failed()

    rolled = prove_rolled(spec, 2)
    labels = {m.label for m in rolled.mismatches}
    assert "delta_1[0]" in labels  # δ_1 = W_hhᵀ(δ_2 ⊙ tanh') + ...: wrong
    assert "delta_2[0]" not in labels  # δ_2 = W_hyᵀ e_2 needs no tanh'
    assert "dL/dW_hh summand t=2 [0, 1]" in labels
    with pytest.raises(AssertionError, match=r"mismatch for dL/dW_hh summand t=1 \[0, 1\]"):
        rolled.raise_if_failed()


def test_a_wrong_loss_rule_fails_the_proof(monkeypatch):
    def doubled(node, g, out):
        return [(child, matmul(2, adj)) for child, adj in right(node, g, out)]

    right = rules.RULES["MSELoss"].vjp
    monkeypatch.setitem(rules.RULES, "MSELoss", rules.Rule("MSELoss", "x", "x", doubled))
    spec = Spec(hidden_size=1, input_size=1, output_size=1)
    result = prove_unrolled(spec, 1)
    assert {m.parameter for m in result.mismatches} >= {"W_hy", "b_y", "W_hh"}
    assert not prove_rolled(spec, 1).ok


def test_a_wrong_engine_forward_fails_the_forward_check(monkeypatch):
    """The engine's GRU with u and 1 − u swapped: consistent inside, wrong against torch's form."""
    import dataclasses

    from symrnn.engine import cells
    from symrnn.engine.expr import add, ones_like, sub
    from symrnn.engine.graph import network

    def swapped(b):
        h = b.prev["h"]
        r = b.let("r", b.f("sigmoid", b.affine("r", h)))
        u = b.let("u", b.f("sigmoid", b.affine("u", h)))
        rec = add(matmul(b.p("W_hn"), h), b.p("b_hn"))
        n = b.let("n", b.f("tanh", add(matmul(b.p("W_xn"), b.x), b.p("b_n"), hadamard(r, rec))))
        b.let("h", add(hadamard(u, n), hadamard(sub(ones_like(u), u), h)))

    monkeypatch.setitem(cells.CELLS, "gru", dataclasses.replace(cells.CELLS["gru"], step=swapped))
    network.cache_clear()
    try:
        spec = Spec(cell="gru", hidden_size=2, input_size=1, output_size=1)
        for prove in (prove_unrolled, prove_rolled):
            result = prove(spec, 2)
            labels = {m.label for m in result.mismatches}
            assert {"forward h_1[0]", "forward h_2[1]", "forward L_2[0]"} <= labels
            with pytest.raises(AssertionError, match=r"mismatch in forward h_1\[0\]"):
                result.raise_if_failed()
    finally:
        monkeypatch.undo()
        network.cache_clear()


def test_the_oracle_imports_nothing_of_the_engine():
    """Every import of oracle.py (function-level included) is outside symrnn or spec/errors."""
    tree = ast.parse(Path(symrnn.checks.oracle.__file__).read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in oracle.py"
            module = node.module or ""
            found.append(module)
            if module == "symrnn":
                found += [f"symrnn.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            pytest.fail("oracle.py calls __import__")
    ours = {m for m in found if m == "symrnn" or m.startswith("symrnn.")}
    assert ours <= {"symrnn.spec", "symrnn.errors"}, sorted(ours)
    assert "symrnn.spec" in ours  # the check does see the imports


def test_the_oracle_derivatives_are_sympys_own():
    """σ is 1/(1 + e^{-a}) in the oracle's program, and SymPy's derivative folds to s(1 − s)."""
    net = ScalarNetwork(Spec(activation="sigmoid", hidden_size=1, input_size=1,
                             output_size=1), 1)
    (h_def,) = [d for d in net.definitions if d.symbol.name == "h_1[0]"]
    assert h_def.kind == "sigmoid" and "exp" in str(h_def.expr) and "Sigmoid" not in str(h_def.expr)
    (delta,) = net.adjoint("h", 1)
    (summand,) = net.summand("b_h", 1)
    d, s = symengine.Symbol("delta_1[0]"), symengine.Symbol("h_1[0]")
    assert symengine.expand(summand - d * s * (1 - s)) == 0  # ∂L/∂b_h = δ_1 s(1 − s)
    assert delta != 0
