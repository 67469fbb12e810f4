"""The verification corpus, hypothesis over sizes and seeds, and tests of the tester."""

from __future__ import annotations

import functools
import itertools
import json
import re
import types

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symrnn
from symrnn import Spec
from symrnn.checks.verify import TOLERANCES, VerificationError, verify
from symrnn.cli import cli
from symrnn.engine.rules import RULES, Rule
from symrnn.errors import SpecError
from symrnn.spec import HEADS, LAYOUTS, LOSSES, TOPOLOGIES


def _corpus() -> list[Spec]:
    out = []
    for act, head, loss, top in itertools.product(
            ("tanh", "relu", "sigmoid", "identity"), ("identity", "sigmoid", "softmax"),
            ("mse", "cross_entropy"), ("many_to_many", "many_to_one")):
        try:
            out.append(Spec(activation=act, head=head, loss=loss, topology=top))
        except SpecError:
            continue  # cross_entropy needs the softmax head
    return out


CORPUS = _corpus()

GATED_CELLS = ("lstm", "gru", "gru_v1")
SINGLE_TOPOLOGIES = tuple(t for t in TOPOLOGIES if t in ("many_to_many", "many_to_one"))
"""One network over x_1..x_T; one_to_many and encoder_decoder compose layer functions and
are checked in tests/test_verify_architectures.py."""
HEAD_LOSS_TOPOLOGY = [(h, loss, top) for h, loss, top in
                      itertools.product(HEADS, LOSSES, SINGLE_TOPOLOGIES)
                      if not (loss == "cross_entropy" and h != "softmax")]
GATED_CORPUS = [Spec(cell=cell, layout=layout, head=h, loss=loss, topology=top)
                for cell, layout, (h, loss, top) in
                itertools.product(GATED_CELLS, LAYOUTS, HEAD_LOSS_TOPOLOGY)]
"""Every gated cell × layout × head × loss × topology."""
ELMAN_TORCH_CORPUS = [spec.replace(layout="torch") for spec in CORPUS]
"""The Elman corpus in torch's layout (two biases, stacked parameters)."""

NN_CELLS = {"elman": ("tanh", "relu"), "lstm": ("tanh",), "gru": ("tanh",)}
"""torch-layout cells (and activations) that torch.nn.RNN/LSTM/GRU compute too."""

STACKED = [*(Spec(cell=cell, layout=layout, num_layers=2)
             for cell in ("elman", *GATED_CELLS) for layout in LAYOUTS),
           Spec(cell="lstm", layout="torch", num_layers=3, head="softmax", loss="cross_entropy",
                topology="many_to_one"),
           Spec(cell="elman", activation="relu", layout="torch", num_layers=3),
           Spec(cell="gru_v1", num_layers=3, head="sigmoid", topology="many_to_one")]
"""Every cell × layout with 2 layers, and three 3-layer stacks."""
FAST_STACKED = {Spec(cell="lstm", layout="torch", num_layers=2), Spec(cell="gru", num_layers=2),
                Spec(cell="elman", activation="relu", layout="torch", num_layers=3)}
"""The stacks in the fast set; the others are slow-marked."""


def _stacked_params(fast: set[Spec] = FAST_STACKED) -> list:
    return [pytest.param(spec, id=_id(spec), marks=() if spec in fast else pytest.mark.slow)
            for spec in STACKED]


@functools.cache
def _module(spec: Spec, backend: str, tbptt=None, clip=None, clip_value=None):
    return symrnn.compile(spec, backend, tbptt, clip, clip_value=clip_value)


def _id(spec: Spec) -> str:
    cell = "" if spec.cell == "elman" and spec.layout == "notes" else f"{spec.cell}-"
    layout = "-torch" if spec.layout == "torch" else ""
    layers = f"-L{spec.num_layers}" if spec.num_layers > 1 else ""
    return f"{cell}{spec.activation}-{spec.head}-{spec.loss}-{spec.topology}{layout}{layers}"


def _has_nn(spec: Spec) -> bool:
    return spec.layout == "torch" and spec.activation in NN_CELLS.get(spec.cell, ())


def _oracles(spec: Spec, fd: bool) -> set[str]:
    return ({"autograd"} | ({"finite_differences"} if fd else set())
            | ({"torch.nn"} if _has_nn(spec) else set()))


def _check_grid(spec: Spec, backend: str) -> None:
    """T ∈ {1, 2, 7, 50} × batch ∈ {1, 5}, every oracle that applies."""
    module = _module(spec, backend)
    for T, batch in itertools.product((1, 2, 7, 50), (1, 5)):
        fd = backend == "numpy" or T <= 7  # the torch printer is checked by autograd at T=50
        report = verify(spec, backend, T=T, batch=batch, seed=T + batch, module=module,
                        finite_differences=fd)
        assert report.ok
        assert {c.oracle for c in report.checks} == _oracles(spec, fd)


def test_corpus_covers_every_activation_head_loss_topology():
    assert len(CORPUS) == 4 * 4 * 2
    assert len(HEAD_LOSS_TOPOLOGY) == 4 * 2
    assert len(GATED_CORPUS) == 3 * 2 * 8 and len(set(GATED_CORPUS)) == len(GATED_CORPUS)
    assert {s.cell for s in GATED_CORPUS} == set(GATED_CELLS)
    assert {s.layout for s in ELMAN_TORCH_CORPUS} == {"torch"}


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("spec", CORPUS, ids=_id)
def test_corpus(spec, backend):
    _check_grid(spec, backend)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("spec", GATED_CORPUS + ELMAN_TORCH_CORPUS, ids=_id)
def test_cell_corpus(spec, backend):
    _check_grid(spec, backend)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cell", ["elman", *GATED_CELLS])
def test_every_cell_and_layout(cell, layout, backend):
    spec = Spec(cell=cell, layout=layout, head="softmax", loss="cross_entropy")
    module = _module(spec, backend)
    states = ("h", "c") if cell == "lstm" else ("h",)
    assert module.STATES == states
    for T, batch in ((1, 1), (7, 3)):
        report = verify(spec, backend, T=T, batch=batch, seed=T, module=module)
        assert report.ok and {c.oracle for c in report.checks} == _oracles(spec, True)
        names = {c.name for c in report.checks if c.oracle == "autograd"}
        assert names == {*module.PARAM_NAMES, *(f"{s}_0" for s in states), "delta", "x",
                         *(f"delta_{s}" for s in states[1:])}
        assert max(c.error for c in report.checks if c.oracle != "finite_differences") < 1e-12


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("tbptt", [(1, 1), (2, 3), (3, 3), (2, 7), (4, 9)])
def test_truncated_bptt_matches_the_detach_pattern(backend, tbptt):
    for spec in (CORPUS[0], Spec(activation="relu", head="softmax", loss="cross_entropy",
                                 topology="many_to_one"), Spec(activation="identity")):
        module = _module(spec, backend, tbptt)
        for T in (1, 7, 12):
            assert verify(spec, backend, T=T, batch=3, tbptt=tbptt, module=module).ok


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("tbptt", [(1, 1), (2, 3), (3, 3), (4, 9)])
@pytest.mark.parametrize("cell", GATED_CELLS)
def test_truncated_bptt_of_gated_cells_matches_the_detach_pattern(cell, tbptt, backend):
    for spec in (Spec(cell=cell), Spec(cell=cell, layout="torch", head="softmax",
                                       loss="cross_entropy", topology="many_to_one")):
        module = _module(spec, backend, tbptt)
        for T in (1, 7, 12):
            report = verify(spec, backend, T=T, batch=3, tbptt=tbptt, module=module)
            assert report.ok and {c.oracle for c in report.checks} == _oracles(spec, False)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("spec", [Spec(), Spec(layout="torch"), *(
    Spec(cell=cell, layout=layout) for cell in GATED_CELLS for layout in LAYOUTS)], ids=_id)
def test_clipping_of_every_cell_matches_the_reference(spec, backend):
    for tbptt, clip, clip_value in ((None, 0.5, None), (None, None, 0.05), ((3, 5), 1.0, 0.1)):
        module = _module(spec, backend, tbptt, clip, clip_value)
        report = verify(spec, backend, T=9, batch=2, tbptt=tbptt, clip=clip,
                        clip_value=clip_value, module=module)
        assert report.ok and "finite_differences" not in {c.oracle for c in report.checks}


def _stacked_names(spec: Spec, module) -> set[str]:
    """What verify checks against autograd for a stack: every parameter, every layer's
    initial states, delta (the top layer's h), delta_s of every other state, and x."""
    top = "h" if spec.num_layers == 1 else f"h_l{spec.num_layers - 1}"
    return {*module.PARAM_NAMES, *(f"{s}_0" for s in module.STATES), "delta", "x",
            *(f"delta_{s}" for s in module.STATES if s != top)}


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("spec", _stacked_params())
def test_stacked_layers_of_every_cell_and_layout(spec, backend):
    module = _module(spec, backend)
    per_layer = len(module.STATES) // spec.num_layers
    own = module.STATES[:per_layer]
    assert module.STATES == tuple(s + ("" if k == 0 else f"_l{k}")
                                  for k in range(spec.num_layers) for s in own)
    assert f"h_l{spec.num_layers - 1}_0" in {f"{s}_0" for s in module.STATES}
    for T, batch in ((1, 1), (6, 3)):
        report = verify(spec, backend, T=T, batch=batch, seed=T + 1, module=module)
        assert report.ok and {c.oracle for c in report.checks} == _oracles(spec, True)
        worst = report.worst()
        assert set(worst["autograd"]) == _stacked_names(spec, module)
        assert set(worst["finite_differences"]) == {*module.PARAM_NAMES,
                                                    *(f"{s}_0" for s in module.STATES)}
        if "torch.nn" in worst:
            assert set(worst["torch.nn"]) == set(worst["finite_differences"]) | {"x"}
        assert max(c.error for c in report.checks if c.oracle != "finite_differences") < 1e-12


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("spec", _stacked_params({Spec(cell="lstm", layout="torch",
                                                       num_layers=2)}))
def test_truncated_bptt_and_clipping_of_stacks_match_the_references(spec, backend):
    for tbptt, clip, clip_value in (((1, 1), None, None), ((2, 3), None, None),
                                    ((4, 9), None, None), (None, 0.5, None),
                                    ((3, 5), 1.0, 0.1)):
        module = _module(spec, backend, tbptt, clip, clip_value)
        for T in (1, 7, 12):
            report = verify(spec, backend, T=T, batch=3, tbptt=tbptt, clip=clip,
                            clip_value=clip_value, module=module)
            assert report.ok and {c.oracle for c in report.checks} == _oracles(spec, False)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_float32_has_its_own_tolerance(backend):
    assert TOLERANCES["float32"]["autograd"] > TOLERANCES["float64"]["autograd"]
    for spec in CORPUS[::5]:
        module = _module(spec, backend)
        report = verify(spec, backend, T=50, batch=5, dtype="float32", module=module)
        assert report.ok
        assert max(c.error for c in report.checks if c.oracle == "autograd") > 1e-12
    for cell in GATED_CELLS:
        spec = Spec(cell=cell, layout="torch")
        report = verify(spec, backend, T=50, batch=5, dtype="float32",
                        module=_module(spec, backend))
        assert report.ok and {c.tolerance for c in report.checks if c.oracle != "finite_"
                              "differences"} == {TOLERANCES["float32"]["autograd"]}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(H=st.integers(1, 6), D=st.integers(1, 4), O=st.integers(1, 4), T=st.integers(1, 12),
       B=st.integers(1, 4), seed=st.integers(0, 2**16), index=st.integers(0, len(CORPUS) - 1),
       bias=st.booleans())
def test_hypothesis_sizes_and_seeds(H, D, O, T, B, seed, index, bias):  # noqa: E741
    spec = CORPUS[index].replace(hidden_size=H, input_size=D, output_size=O, bias=bias)
    assert verify(spec, "numpy", T=T, batch=B, seed=seed, module=_module(spec, "numpy")).ok


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(H=st.integers(1, 6), D=st.integers(1, 4), O=st.integers(1, 4), T=st.integers(1, 12),
       B=st.integers(1, 4), seed=st.integers(0, 2**16),
       cell=st.sampled_from(("elman", *GATED_CELLS)),
       layout=st.sampled_from(LAYOUTS), index=st.integers(0, len(HEAD_LOSS_TOPOLOGY) - 1),
       bias=st.booleans(), backend=st.sampled_from(["numpy", "torch"]),
       layers=st.integers(1, 3))
def test_hypothesis_cells_sizes_and_seeds(H, D, O, T, B, seed, cell, layout, index, bias,  # noqa: E741
                                          backend, layers):
    head, loss, topology = HEAD_LOSS_TOPOLOGY[index]
    spec = Spec(cell=cell, layout=layout, head=head, loss=loss, topology=topology,
                hidden_size=H, input_size=D, output_size=O, bias=bias, num_layers=layers)
    report = verify(spec, backend, T=T, batch=B, seed=seed, module=_module(spec, backend))
    assert report.ok and {c.oracle for c in report.checks} == _oracles(spec, True)


# ------------------------------------------------------------------ test the tester


def test_wrong_tanh_rule_gives_wrong_code_and_verify_fails(monkeypatch):
    right = RULES["tanh"]

    def wrong_vjp(node, g, out):  # f'(a) = 1 - h instead of 1 - h*h
        from symrnn.engine.expr import hadamard, ones_like, sub

        return [(node.arg, hadamard(g, sub(ones_like(out), out)))]

    monkeypatch.setitem(RULES, "tanh", Rule("tanh", "wrong", "wrong", wrong_vjp))
    spec = Spec()
    good_text = None
    bad = symrnn.compile(spec, "numpy")
    bad_text = open(bad.__file__).read()
    assert "dQ = 1 - HS[1:]  # hoisted into dQ: 1 - h_{t}\n" in bad_text
    with pytest.raises(VerificationError, match=r"gradient mismatch for dL/d\w+\[[\d, ]+\] "
                                                r"\(T=20, autograd\): reference=.*generated="):
        verify(spec, "numpy", T=20, module=bad)
    monkeypatch.setitem(RULES, "tanh", right)
    good_text = symrnn.codegen.generate(spec, "numpy")
    assert "dQ = HS[1:] * HS[1:]  # hoisted into dQ: 1 - h_{t} * h_{t}\n" in good_text
    assert verify(spec, "numpy", T=20).ok


def test_report_without_raising_lists_the_failures(monkeypatch):
    def wrong_vjp(node, g, out):
        return [(node.arg, g)]  # treats tanh as the identity

    monkeypatch.setitem(RULES, "tanh", Rule("tanh", "wrong", "wrong", wrong_vjp))
    report = verify(Spec(), "torch", T=7, raise_exception=False)
    assert not report.ok
    assert {c.name for c in report.failures} >= {"W_hh", "W_xh", "b_h"}
    assert "W_hy" not in {c.name for c in report.failures if c.oracle == "autograd"}


@pytest.mark.parametrize("cell", GATED_CELLS)
def test_wrong_sigmoid_rule_fails_every_gated_cell(cell, monkeypatch):
    monkeypatch.setitem(RULES, "sigmoid", Rule("sigmoid", "wrong", "wrong",
                                               lambda node, g, out: [(node.arg, g)]))
    spec = Spec(cell=cell, layout="torch")
    report = verify(spec, "numpy", T=6, batch=2, raise_exception=False)
    assert not report.ok and "W_hy" not in {c.name for c in report.failures}
    assert {c.oracle for c in report.failures} == _oracles(spec, True)
    with pytest.raises(VerificationError, match=r"gradient mismatch for dL/d"):
        verify(spec, "torch", T=6, batch=2)


def test_the_two_grus_are_told_apart():
    """gru_v1's code (reset before the product) fails the gru references, and vice versa."""
    for claimed, actual in (("gru", "gru_v1"), ("gru_v1", "gru")):
        spec = Spec(cell=claimed, layout="torch")
        module = _module(Spec(cell=actual, layout="torch"), "numpy")
        report = verify(spec, "numpy", T=5, batch=2, module=module, raise_exception=False)
        assert {c.oracle for c in report.failures} >= (
            {"autograd", "torch.nn"} if claimed == "gru" else {"autograd"})


@pytest.mark.parametrize("state", ["h_0", "c_0", "delta_c"])
def test_a_wrong_lstm_state_gradient_is_named(state, monkeypatch):
    spec = Spec(cell="lstm")
    real = _module(spec, "numpy")

    def backward(params, cache, input_grad=False):
        grads = real.backward(params, cache, input_grad=input_grad)
        grads[state] = grads[state] * 1.001
        return grads

    fake = types.SimpleNamespace(PARAM_SHAPES=real.PARAM_SHAPES, forward=real.forward,
                                 backward=backward)
    report = verify(spec, module=fake, raise_exception=False)
    assert {c.name for c in report.failures} == {state}


@pytest.mark.parametrize("name", ["weight_hh_l1", "bias_ih_l1", "weight_ih", "h_l1_0",
                                  "c_l1_0", "delta_h", "delta_c_l1", "delta"])
def test_a_wrong_gradient_of_a_stack_is_named(name):
    """A gradient of one layer off by 0.1%: only that one fails, under its own name."""
    spec = Spec(cell="lstm", layout="torch", num_layers=2)
    real = _module(spec, "numpy")

    def backward(params, cache, input_grad=False):
        grads = real.backward(params, cache, input_grad=input_grad)
        grads[name] = grads[name] * 1.001
        return grads

    fake = types.SimpleNamespace(PARAM_SHAPES=real.PARAM_SHAPES, forward=real.forward,
                                 backward=backward)
    report = verify(spec, T=5, batch=2, module=fake, raise_exception=False)
    assert {c.name for c in report.failures} == {name}
    want = {"autograd"} if name.startswith("delta") else _oracles(spec, True)
    assert {c.oracle for c in report.failures} == want


def test_a_layer_swap_is_caught():
    """The generated gradients of layer 1 returned for layer 0 and back: the reference
    stacks layers in order (x feeds layer 0, the head reads the top)."""
    spec = Spec(cell="gru", layout="torch", num_layers=2, hidden_size=3, input_size=3)
    real = _module(spec, "numpy")

    def backward(params, cache, input_grad=False):
        grads = real.backward(params, cache, input_grad=input_grad)
        for stack in ("weight_hh", "bias_hh"):
            grads[stack], grads[f"{stack}_l1"] = grads[f"{stack}_l1"], grads[stack]
        return grads

    fake = types.SimpleNamespace(PARAM_SHAPES=real.PARAM_SHAPES, forward=real.forward,
                                 backward=backward)
    report = verify(spec, T=5, batch=2, module=fake, raise_exception=False)
    assert {"weight_hh", "weight_hh_l1"} <= {c.name for c in report.failures}
    assert {c.oracle for c in report.failures} == _oracles(spec, True)


# ------------------------------------------------------------------ CLI


def test_cli_verify_ok_and_json():
    result = CliRunner().invoke(cli, ["verify", "--T", "5", "--batch", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] and set(data["max_relative_error"]) == {"autograd", "finite_differences"}


def test_cli_verify_exits_nonzero_on_mismatch(monkeypatch):
    monkeypatch.setitem(RULES, "tanh", Rule("tanh", "wrong", "wrong",
                                            lambda node, g, out: [(node.arg, g)]))
    result = CliRunner().invoke(cli, ["verify", "--backend", "torch", "--T", "6"])
    assert result.exit_code == 1
    assert "MISMATCH" in result.output and "gradient mismatch for dL/dW_hh[" in result.output


@pytest.mark.parametrize("args", [["--cell", "lstm"], ["--cell", "gru", "--layout", "torch"],
                                  ["--cell", "gru_v1"], ["--cell", "lstm", "--layout", "torch",
                                                         "--tbptt", "2,3", "--clip", "0.5"]])
def test_cli_verify_gated_cells(args):
    result = CliRunner().invoke(cli, ["verify", "--T", "5", "--batch", "2", "--json", *args])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    cell, torch_layout = args[1], "torch" in args
    assert data["ok"] and data["spec"]["cell"] == cell
    errors = data["max_relative_error"]
    assert ("torch.nn" in errors) == (torch_layout and cell != "gru_v1")
    assert ("c_0" in errors["autograd"]) == (cell == "lstm")
    text = CliRunner().invoke(cli, ["verify", "--T", "4", *args])
    assert text.exit_code == 0 and text.output.rstrip().endswith("ok"), text.output


@pytest.mark.parametrize("args", [["--cell", "lstm", "--layout", "torch"], ["--cell", "gru_v1"],
                                  ["--cell", "elman", "--layout", "torch", "--tbptt", "2,3"]])
def test_cli_verify_stacked(args):
    result = CliRunner().invoke(cli, ["verify", "--T", "4", "--batch", "2", "--json",
                                      "--num-layers", "2", *args])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] and data["spec"]["num_layers"] == 2
    errors = data["max_relative_error"]
    assert {"h_0", "h_l1_0", "delta_h", "delta"} <= set(errors["autograd"])
    assert ("torch.nn" in errors) == ("torch" in args and args[1] != "gru_v1")
    if "torch.nn" in errors:
        assert {"weight_hh_l1", "h_l1_0", "x"} <= set(errors["torch.nn"])


def _gflop(*args: str) -> int:
    """The work verify's CLI estimates for ``args`` (refused at --max-gflop 1)."""
    result = CliRunner().invoke(cli, ["verify", "--max-gflop", "1", *args])
    assert result.exit_code != 0
    match = re.search(r"needs about (\d+) GFLOP, above --max-gflop 1", result.output)
    assert match, result.output
    return int(match.group(1))


def test_cli_verify_cost_scales_with_num_layers():
    """Each layer costs at least one single-layer run (those above read H-wide inputs)."""
    args = ["--cell", "lstm", "--hidden-size", "256"]
    one = _gflop(*args)
    counts = {n: _gflop(*args, "--num-layers", str(n)) for n in (2, 4, 8)}
    assert one < counts[2] < counts[4] < counts[8]
    assert all(counts[n] >= n * one - n for n in counts)
    assert "2 layers" in CliRunner().invoke(cli, ["verify", "--max-gflop", "1", *args,
                                                  "--num-layers", "2"]).output


def test_cli_verify_gated_cell_exits_nonzero_on_mismatch(monkeypatch):
    monkeypatch.setitem(RULES, "sigmoid", Rule("sigmoid", "wrong", "wrong",
                                               lambda node, g, out: [(node.arg, g)]))
    result = CliRunner().invoke(cli, ["verify", "--cell", "lstm", "--layout", "torch",
                                      "--T", "6"])
    assert result.exit_code == 1
    assert "MISMATCH" in result.output and "gradient mismatch for dL/d" in result.output
    assert "torch.nn (tolerance" in result.output and result.output.rstrip().endswith("FAILED")


def test_cli_codegen_writes_a_module(tmp_path):
    out = tmp_path / "bptt.py"
    result = CliRunner().invoke(cli, ["codegen", "--backend", "torch", "--tbptt", "3,5",
                                      "--clip", "1.5", "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "TBPTT = (3, 5)" in text and "CLIP = 1.5" in text and "import torch" in text
    bad = CliRunner().invoke(cli, ["codegen", "--tbptt", "x"])
    assert bad.exit_code == 2 and "expected k1,k2" in bad.output
    lstm = CliRunner().invoke(cli, ["codegen", "--cell", "lstm"])
    assert lstm.exit_code == 0 and "STATES = ('h', 'c')" in lstm.output
