"""Reproducible counterexamples: the verdict carries the whole instance, and it replays.

The first test re-checks a counterexample with torch.autograd alone: the Elman
forward pass is written here in torch from the JSON's numbers (nothing from
symrnn takes part in that computation), and autograd's gradient must equal the
JSON's "true" matrix and differ from its "claimed" one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from symrnn.cli import cli
from symrnn.engine.graph import network
from symrnn.errors import InputError, ShapeError
from symrnn.formula import check_formula
from symrnn.formula.replay import replay
from symrnn.spec import Spec

MISSING_DERIVATIVE = r"\frac{\partial L}{\partial W_{hh}} = \sum_{t=1}^{T} \delta_t h_{t-1}^\top"
CORRECT_W_HH = (r"\frac{\partial L}{\partial W_{hh}} = \sum_{t=1}^{T} "
                r"(\delta_t \odot (1 - h_t^2)) h_{t-1}^\top")


def run(*args):
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def wrong_json(formula=MISSING_DERIVATIVE, spec=None) -> dict:
    verdict = check_formula(formula, spec)
    assert not verdict.ok
    return json.loads(json.dumps(verdict.to_dict()))  # exactly what --json prints


# ------------------------------------------------ torch.autograd, from the JSON alone


def autograd_elman_tanh_mse(cx: dict, wrt: str) -> np.ndarray:
    """∂L/∂wrt by torch.autograd: h_t = tanh(W_hh h + W_xh x_t + b_h), ŷ_t = W_hy h_t + b_y,
    L = Σ_t ½‖ŷ_t − y_t‖².  Uses only torch and the JSON's numbers."""
    inst = cx["instance"]
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
         for k, v in inst["parameters"].items()}
    h = torch.tensor(inst["initial_states"]["h_0"], dtype=torch.float64)
    loss = torch.zeros((), dtype=torch.float64)
    for t in range(1, cx["T"] + 1):
        x = torch.tensor(inst["inputs"][f"x_{t}"], dtype=torch.float64)
        y = torch.tensor(inst["targets"][f"y_{t}"], dtype=torch.float64)
        h = torch.tanh(p["W_hh"] @ h + p["W_xh"] @ x + p["b_h"])
        loss = loss + 0.5 * torch.sum((p["W_hy"] @ h + p["b_y"] - y) ** 2)
    (grad,) = torch.autograd.grad(loss, [p[wrt]])
    return grad.numpy()


def test_counterexample_rechecked_with_torch_autograd_alone():
    data = wrong_json()
    cx = data["counterexample"]
    assert data["spec"]["cell"] == "elman" and data["spec"]["activation"] == "tanh"
    assert cx["wrt"] == "W_hh" and cx["spec"]["loss"] == "mse"
    true = autograd_elman_tanh_mse(cx, "W_hh")
    np.testing.assert_allclose(true, np.array(cx["true"]), rtol=1e-12, atol=1e-14)
    claimed = np.array(cx["claimed"])
    assert np.max(np.abs(claimed - true)) > 1e-3  # the formula really is wrong there
    i, j = cx["entry"]
    assert np.isclose(true[i, j], cx["true_value"], rtol=1e-12)
    assert cx["formula_value"] == claimed[i, j]
    # the worst entry is the one named
    assert np.argmax(np.abs(claimed - true)) == np.ravel_multi_index((i, j), true.shape)


def test_autograd_recheck_catches_a_tampered_true_matrix():
    """Mutation: the torch re-check is not vacuous; an altered 'true' value is caught."""
    cx = wrong_json()["counterexample"]
    cx["true"][0][0] += 1e-6
    true = autograd_elman_tanh_mse(cx, "W_hh")
    assert not np.allclose(true, np.array(cx["true"]), rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------ what --json carries


@pytest.mark.parametrize("spec", [Spec(), Spec(cell="lstm"), Spec(num_layers=2)])
def test_json_carries_every_parameter_input_target_and_initial_state(spec):
    code, out = run("check", "dL/dW_hy = sum_t (y_t - yhat_t) @ h_t.T", "--json",
                    *_flags(spec))
    assert code == 1, out
    cx = json.loads(out)["counterexample"]
    net = network(spec)
    inst = cx["instance"]
    assert set(inst["parameters"]) == set(net.params)
    assert set(inst["initial_states"]) == {f"{s}_0" for s in net.initial_states}
    assert set(inst["inputs"]) == {f"x_{t}" for t in range(1, cx["T"] + 1)}
    assert set(inst["targets"]) == {f"y_{t}" for t in range(1, cx["T"] + 1)}
    for name, sym in net.params.items():
        assert np.array(inst["parameters"][name]).shape == tuple(int(d) for d in sym.shape)
    assert cx["sizes"] == {"hidden_size": spec.hidden_size, "input_size": spec.input_size,
                           "output_size": spec.output_size}
    assert np.array(cx["claimed"]).shape == np.array(cx["true"]).shape == (2, 3)
    assert cx["formula"].startswith("dL/dW_hy")


def _flags(spec: Spec) -> list[str]:
    return ["--cell", spec.cell, "--num-layers", str(spec.num_layers)]


def test_text_says_where_the_whole_instance_is():
    code, out = run("check", MISSING_DERIVATIVE)
    assert code == 1
    assert "counterexample: instance seed" in out
    assert "5 parameters, 1 initial state, 3 inputs, 3 targets" in out
    assert "symrnn check --replay FILE" in out


# ------------------------------------------------------------------ replay


@pytest.mark.parametrize("alone", [False, True])
def test_replay_round_trip_through_the_cli(tmp_path, alone):
    code, out = run("check", MISSING_DERIVATIVE, "--json")
    assert code == 1
    data = json.loads(out)
    path = tmp_path / "cx.json"
    path.write_text(json.dumps(data["counterexample"] if alone else data))
    code, again = run("check", "--replay", str(path), "--json")
    assert code == 1, again
    replayed = json.loads(again)
    assert replayed["status"] == "wrong"
    for key in ("entry", "formula_value", "true_value", "claimed", "true", "instance"):
        assert replayed["counterexample"][key] == data["counterexample"][key], key
    assert [d["class"] for d in replayed["diagnosis"]] == [d["class"] for d in data["diagnosis"]]
    assert not any("differ" in n for n in replayed["notes"])
    code, text = run("check", "--replay", str(path))
    assert code == 1 and "replayed on the instance from" in text


def test_replay_of_a_corrected_formula_passes_on_the_same_instance(tmp_path):
    cx = wrong_json()["counterexample"]
    cx["formula"] = CORRECT_W_HH
    path = tmp_path / "fixed.json"
    path.write_text(json.dumps(cx))
    code, out = run("check", "--replay", str(path))
    assert code == 0, out
    assert "CORRECT" in out and f"instances [{cx['seed']}]" in out
    assert "'true' values differ" not in out


def test_replay_uses_the_files_values_not_the_seed():
    """Mutation: change one input; the replay recomputes and says the file's numbers differ."""
    cx = wrong_json()["counterexample"]
    cx["instance"]["inputs"]["x_1"][0][0] += 0.5
    verdict = replay(cx)
    assert not verdict.ok
    assert any("'true' values differ" in n for n in verdict.notes)
    assert verdict.counterexample.true_matrix != tuple(map(tuple, cx["true"]))


def test_replay_refuses_bad_files(tmp_path):
    cx = wrong_json()["counterexample"]
    del cx["instance"]["inputs"]["x_2"]
    with pytest.raises(ShapeError, match="no value for x_2"):
        replay(cx)
    cx = wrong_json()["counterexample"]
    cx["instance"]["parameters"]["W_hh"] = [[1.0, 2.0]]
    with pytest.raises(ShapeError, match=r"W_hh has shape \(1, 2\), expected \(3, 3\)"):
        replay(cx)
    with pytest.raises(InputError, match="no counterexample"):
        replay(check_formula(CORRECT_W_HH).to_dict())
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, out = run("check", "--replay", str(bad))
    assert code == 2 and "cannot read" in out and "Traceback" not in out
    code, out = run("check", CORRECT_W_HH, "--replay", str(bad))
    assert code == 2 and "drop the FORMULA" in out
    code, out = run("check")
    assert code == 2 and "FORMULA" in out


@pytest.mark.parametrize("spec", [Spec(cell="lstm"), Spec(cell="gru", num_layers=2),
                                  Spec(bidirectional=True), Spec(topology="encoder_decoder")])
def test_replay_round_trip_for_every_cell_and_architecture(spec):
    data = wrong_json("dL/dW_hy = sum_t (y_t - yhat_t) @ h_t.T", spec)
    cx = data["counterexample"]
    assert set(cx["instance"]["parameters"]) == set(network(spec).params)
    verdict = replay(cx)
    assert not verdict.ok and verdict.counterexample is not None
    assert [list(r) for r in verdict.counterexample.true_matrix] == cx["true"]
    assert [list(r) for r in verdict.counterexample.claimed_matrix] == cx["claimed"]


def test_a_functions_counterexample_is_refused_with_its_reason():
    cx = wrong_json()["counterexample"]
    cx["formula"] = "my_bptt(...)"  # what check_function records as the formula
    with pytest.raises(InputError, match="function is not in the file"):
        replay(cx)
