"""Generated modules of composed architectures: bidirectional stacks, encoder–decoder,
one_to_many with zero or repeated inputs.

Checked against torch.nn.RNN/LSTM/GRU(bidirectional=True) with the same weights, and
against a textbook forward written here (per sequence, column vectors) run by autograd.
"""

from __future__ import annotations

import builtins
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from symrnn.codegen import compile, generate
from symrnn.engine.graph import network
from symrnn.errors import SpecError
from symrnn.spec import Spec

NN = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
H, D, O, B, T = 3, 2, 2, 3, 4  # noqa: E741


def _as(backend: str, a):
    a = a.detach().clone() if isinstance(a, torch.Tensor) else torch.as_tensor(a)
    return a.numpy() if backend == "numpy" else a


def _np(a) -> np.ndarray:
    return a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _nn_case(cell: str, layers: int, seed: int):
    """torch.nn module, head, data and autograd gradients of ½Σ‖head(out) − y‖²."""
    torch.manual_seed(seed)
    rnn = NN[cell](D, H, num_layers=layers, bidirectional=True, batch_first=True,
                   dtype=torch.float64)
    head = torch.nn.Linear(2 * H, O, dtype=torch.float64)
    x = torch.randn(B, T, D, dtype=torch.float64, requires_grad=True)
    y = torch.randn(B, T, O, dtype=torch.float64)
    n_states = 2 if cell == "lstm" else 1
    s0 = [torch.randn(2 * layers, B, H, dtype=torch.float64, requires_grad=True)
          for _ in range(n_states)]
    out, _ = rnn(x, tuple(s0) if cell == "lstm" else s0[0])
    loss = 0.5 * ((head(out) - y) ** 2).sum()
    loss.backward()
    return rnn, head, x, y, s0, loss


def _module_params(rnn, head) -> dict:
    params = {name.replace("_l0", ""): p for name, p in rnn.named_parameters()}
    params |= {"W_hy": head.weight[:, :H], "W_hy_rev": head.weight[:, H:], "b_y": head.bias}
    return params


def _initial_args(mod, s0, layers: int) -> list:
    """STATE_ARGS in the module's order from torch's (2·layers, B, H) stacks."""
    out = []
    for state in mod.STATES:
        base, _, rest = state.partition("_")
        layer = int(rest.split("_")[0][1:]) if rest.startswith("l") else 0
        k = 2 * layer + (1 if rest.endswith("reverse") else 0)
        out.append(s0["hc".index(base)][k])
    return out


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", sorted(NN))
def test_bidirectional_gradients_equal_torch_nn(cell, layers, backend):
    """Same state_dict: loss, every parameter's, x's and h0's (c0's) gradients to 1e-10."""
    rnn, head, x, y, s0, loss = _nn_case(cell, layers, seed=layers)
    spec = Spec(cell=cell, layout="torch", bidirectional=True, num_layers=layers,
                hidden_size=H, input_size=D, output_size=O)
    mod = compile(spec, backend)
    params = {k: _as(backend, v) for k, v in _module_params(rnn, head).items()}
    inits = [_as(backend, s) for s in _initial_args(mod, s0, layers)]
    value, grads = mod.loss_and_grad(params, _as(backend, x), _as(backend, y), *inits,
                                     input_grad=True)
    assert abs(float(value) - loss.item()) < 1e-10
    for name, p in rnn.named_parameters():
        np.testing.assert_allclose(_np(grads[name.replace("_l0", "")]), p.grad.numpy(),
                                   atol=1e-10, rtol=0, err_msg=name)
    joined = np.concatenate([_np(grads["W_hy"]), _np(grads["W_hy_rev"])], axis=1)
    np.testing.assert_allclose(joined, head.weight.grad.numpy(), atol=1e-10, rtol=0)
    np.testing.assert_allclose(_np(grads["x"]), x.grad.numpy(), atol=1e-10, rtol=0)
    got = _initial_args(mod, [s.grad for s in s0], layers)
    for state, want in zip(mod.STATES, got, strict=True):
        np.testing.assert_allclose(_np(grads[f"{state}_0"]), want.numpy(), atol=1e-10,
                                   rtol=0, err_msg=state)


def test_a_layer_run_forward_breaks_the_equality(tmp_path):
    """Test the test: the reverse layer fed unflipped inputs gives wrong gradients."""
    rnn, head, x, y, s0, loss = _nn_case("lstm", 2, seed=3)
    spec = Spec(cell="lstm", layout="torch", bidirectional=True, num_layers=2,
                hidden_size=H, input_size=D, output_size=O)
    source = generate(spec, "numpy").replace(
        "seq = below if direction > 0 else _flip(below)", "seq = below")
    path = tmp_path / "broken.py"
    path.write_text(source)
    namespace: dict = {}
    exec(builtins.compile(source, str(path), "exec"), namespace)  # noqa: S102 - generated
    params = {k: _as("numpy", v) for k, v in _module_params(rnn, head).items()}
    _, grads = namespace["loss_and_grad"](params, _as("numpy", x), _as("numpy", y))
    got = grads["weight_ih_reverse"]
    want = dict(rnn.named_parameters())["weight_ih_l0_reverse"].grad.numpy()
    assert np.abs(got - want).max() > 1e-3


def _per_gate(torch_values: dict, suffix: str, layer: int, k: int, g: str) -> dict:
    """One LSTM gate's notes-layout parameters from torch.nn's stacked tensors."""
    tag = f"_l{layer}" + ("_reverse" if suffix.endswith("reverse") else "")
    rows = slice(k * H, (k + 1) * H)
    w_ih = torch_values[f"weight_ih{tag}"][rows]
    out = {f"W_h{g}{suffix}": torch_values[f"weight_hh{tag}"][rows],
           f"b_{g}{suffix}": torch_values[f"bias_ih{tag}"][rows]
           + torch_values[f"bias_hh{tag}"][rows]}
    if layer == 0:
        out[f"W_x{g}{suffix}"] = w_ih
    else:
        out[f"W_x{g}{suffix}"] = w_ih[:, :H]
        out[f"W_x{g}_rev{suffix}"] = w_ih[:, H:]
    return out


def _notes_params(rnn, head, grads: bool = False) -> dict:
    values = {n: (p.grad if grads else p).detach().numpy() for n, p in rnn.named_parameters()}
    out = {}
    for layer in (0, 1):
        for direction in ("", "_reverse"):
            suffix = ("" if layer == 0 else f"_l{layer}") + direction
            for k, g in enumerate("ifgo"):
                out |= _per_gate(values, suffix, layer, k, g)
    w = (head.weight.grad if grads else head.weight).detach().numpy()
    b = (head.bias.grad if grads else head.bias).detach().numpy()
    return out | {"W_hy": w[:, :H], "W_hy_rev": w[:, H:], "b_y": b}


def test_notes_layout_bidirectional_equals_torch_nn():
    """Per-gate parameters, with the _rev column blocks of the layer above: torch.nn's
    gradients split by gate and by column block (one bias per gate: b = b_ih + b_hh, whose
    gradient is each of theirs)."""
    rnn, head, x, y, s0, loss = _nn_case("lstm", 2, seed=5)
    spec = Spec(cell="lstm", bidirectional=True, num_layers=2, hidden_size=H, input_size=D,
                output_size=O)
    mod = compile(spec)
    params = _notes_params(rnn, head)
    assert set(params) == set(mod.PARAM_NAMES)
    inits = [s.detach().numpy() for s in _initial_args(mod, s0, 2)]
    value, grads = mod.loss_and_grad(params, _as("numpy", x), _as("numpy", y), *inits)
    assert abs(value - loss.item()) < 1e-10
    for name, want in _notes_params(rnn, head, grads=True).items():
        if name.startswith("b_") and name != "b_y":
            continue  # b_ih + b_hh: compared below against one of them
        np.testing.assert_allclose(grads[name], want, atol=1e-10, rtol=0, err_msg=name)
    torch_grads = {n: p.grad.numpy() for n, p in rnn.named_parameters()}
    np.testing.assert_allclose(grads["b_f_l1_reverse"],
                               torch_grads["bias_ih_l1_reverse"][H:2 * H], atol=1e-10, rtol=0)


# ------------------------------------------------------------------ a textbook reference


def _step(cell: str, p: dict, sfx: str, h, c, x):
    """One textbook step (column vectors), independent of the engine and the generator."""
    def affine(g, hh=h):
        term = p[f"W_h{g}{sfx}"] @ hh + p[f"b_{g}{sfx}"]
        return term if x is None else term + p[f"W_x{g}{sfx}"] @ x

    if cell == "elman":
        return torch.tanh(affine("h")), None
    if cell == "lstm":
        i, f = torch.sigmoid(affine("i")), torch.sigmoid(affine("f"))
        g, o = torch.tanh(affine("g")), torch.sigmoid(affine("o"))
        c = f * c + i * g
        return o * torch.tanh(c), c
    r, u = torch.sigmoid(affine("r")), torch.sigmoid(affine("u"))
    inner = p[f"b_n{sfx}"] + (0 if x is None else p[f"W_xn{sfx}"] @ x)
    n = torch.tanh(inner + r * (p[f"W_hn{sfx}"] @ h + p[f"b_hn{sfx}"]))
    return (1 - u) * n + u * h, None


def _reference(spec: Spec, p: dict, x, y, T_in: int, T_out: int):
    """½ Σ_b Σ_t ‖W_hy h_t + b_y − y_t‖² for one layer (encoder_decoder, one_to_many)."""
    loss = 0
    for b in range(x.shape[0]):
        h = torch.zeros(H, 1, dtype=torch.float64)
        c = torch.zeros(H, 1, dtype=torch.float64)
        steps = []
        if spec.topology == "encoder_decoder":
            for t in range(T_in):
                h, c = _step(spec.cell, p, "", h, c, x[b, t][:, None])
            feeds = [torch.zeros(O, 1, dtype=torch.float64)] + [y[b, t][:, None]
                                                                for t in range(T_out - 1)]
            sfx = "_dec"
        else:
            feeds = [x[b][:, None]] + [x[b][:, None] if spec.feed == "repeat" else None
                                       for _ in range(T_out - 1)]
            sfx = ""
        for t in range(T_out):
            inp = feeds[t] if spec.feed != "feedback" or t == 0 else steps[-1]
            h, c = _step(spec.cell, p, sfx, h, c, inp)
            z = p["W_hy"] @ h + p["b_y"]
            steps.append(torch.sigmoid(z) if spec.head == "sigmoid" else z)
            loss = loss + 0.5 * ((steps[-1][:, 0] - y[b, t]) ** 2).sum()
    return loss


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("topology,feed,head", [
    ("encoder_decoder", "zeros", "identity"), ("one_to_many", "zeros", "identity"),
    ("one_to_many", "repeat", "identity"), ("one_to_many", "feedback", "identity"),
    ("one_to_many", "feedback", "sigmoid")])
def test_encoder_decoder_and_one_to_many_equal_autograd(cell, topology, feed, head):
    """Feedback included: x_(t+1) = yhat_t, its gradient through the fed output."""
    spec = Spec(cell=cell, topology=topology, feed=feed, head=head, hidden_size=H,
                input_size=O, output_size=O)
    net = network(spec)
    gen = torch.Generator().manual_seed(7)
    p = {n: torch.randn(*s.shape, dtype=torch.float64, generator=gen, requires_grad=True)
         for n, s in net.params.items()}
    T_in, T_out = (T, T - 1) if topology == "encoder_decoder" else (1, T)
    x = torch.randn(B, T_in, O, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.randn(B, T_out, O, dtype=torch.float64, generator=gen)
    x_arg = x[:, 0] if topology == "one_to_many" else x
    x_ref = x[:, 0] if topology == "one_to_many" else x
    loss = _reference(spec, p, x_ref, y, T_in, T_out)
    loss.backward()
    mod = compile(spec, "numpy")
    params = {n: v.detach().numpy().reshape(mod.PARAM_SHAPES[n]) for n, v in p.items()}
    value, grads = mod.loss_and_grad(params, x_arg.detach().numpy(), y.numpy(),
                                     input_grad=True)
    assert abs(value - loss.item()) < 1e-10
    for n, v in p.items():
        np.testing.assert_allclose(grads[n].reshape(v.shape), v.grad.numpy(), atol=1e-10,
                                   rtol=0, err_msg=n)
    want_x = x.grad.numpy()[:, 0] if topology == "one_to_many" else x.grad.numpy()
    np.testing.assert_allclose(grads["x"], want_x, atol=1e-10, rtol=0)


def test_encoder_gradient_arrives_only_through_the_context():
    """With the decoder's recurrent path cut off from the encoder (zero context weights
    W_hh_dec), the encoder's gradients vanish: the context state is the only path."""
    spec = Spec(topology="encoder_decoder", hidden_size=H, input_size=D, output_size=O)
    mod = compile(spec)
    rng = np.random.default_rng(2)
    params = {n: rng.standard_normal(s) for n, s in mod.PARAM_SHAPES.items()}
    x, y = rng.standard_normal((B, T, D)), rng.standard_normal((B, 3, O))
    _, grads = mod.loss_and_grad(params, x, y)
    assert np.abs(grads["W_xh"]).max() > 1e-6
    params["W_hh_dec"] = np.zeros_like(params["W_hh_dec"])
    _, grads = mod.loss_and_grad(params, x, y)
    assert np.abs(grads["W_xh"]).max() == 0 and np.abs(grads["h_0"]).max() == 0


def test_composed_modules_refuse_what_they_do_not_generate():
    with pytest.raises(SpecError, match="reverse layer needs the whole sequence"):
        generate(Spec(bidirectional=True), tbptt=(2, 2))


@pytest.mark.skipif(shutil.which("ruff") is None and not Path(sys.executable).with_name("ruff")
                    .exists(), reason="ruff not installed")
def test_composed_modules_pass_ruff_and_are_stable(tmp_path):
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    specs = [Spec(cell="lstm", layout="torch", bidirectional=True, num_layers=2),
             Spec(cell="gru_v1", topology="encoder_decoder", num_layers=2),
             Spec(cell="elman", topology="one_to_many", feed="repeat", head="softmax",
                  loss="cross_entropy", bias=False),
             Spec(cell="lstm", topology="one_to_many", feed="feedback", head="softmax",
                  loss="cross_entropy", num_layers=2)]
    for i, spec in enumerate(specs):
        for backend in ("numpy", "torch"):
            text = generate(spec, backend)
            assert text == generate(spec, backend)
            (tmp_path / f"gen_{i}_{backend}.py").write_text(text)
    result = subprocess.run(
        [ruff, "check", "--no-cache", "--isolated", "--line-length", "100",
         "--select", "E,F,W,I,B,UP", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_composed_clipping_equals_clipping_the_full_gradient(backend):
    """Global-norm then elementwise clipping of every parameter's gradient, as for one
    network: the clipped module equals the unclipped one's gradients clipped here."""
    spec = Spec(cell="gru", bidirectional=True, hidden_size=H, input_size=D, output_size=O)
    plain, clipped = compile(spec, backend), compile(spec, backend, clip=0.5,
                                                     clip_value=0.05)
    rng = np.random.default_rng(4)
    params = {n: _as(backend, rng.standard_normal(s)) for n, s in plain.PARAM_SHAPES.items()}
    x, y = _as(backend, rng.standard_normal((B, T, D))), _as(backend,
                                                            rng.standard_normal((B, T, O)))
    _, full = plain.loss_and_grad(params, x, y)
    _, got = clipped.loss_and_grad(params, x, y)
    norm = np.sqrt(sum((_np(full[n]) ** 2).sum() for n in plain.PARAM_NAMES))
    assert norm > 0.5
    for n in plain.PARAM_NAMES:
        want = np.clip(_np(full[n]) * 0.5 / norm, -0.05, 0.05)
        np.testing.assert_allclose(_np(got[n]), want, atol=1e-12, rtol=0, err_msg=n)


def test_composed_torch_module_is_an_autograd_node():
    """RNNLoss(x, y).backward() leaves the generated gradients on the parameters, x and the
    given initial states (the rest stay None)."""
    spec = Spec(cell="lstm", layout="torch", bidirectional=True, num_layers=2,
                hidden_size=H, input_size=D, output_size=O)
    mod = compile(spec, "torch")
    model = mod.RNNLoss(dtype=torch.float64)
    x = torch.randn(B, T, D, dtype=torch.float64, requires_grad=True)
    y = torch.randn(B, T, O, dtype=torch.float64)
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    loss = model(x, y, h0)
    (2.0 * loss).backward()
    params = {n: p.detach() for n, p in model.params().items()}
    want_loss, want = mod.loss_and_grad(params, x.detach(), y, h0.detach(), input_grad=True)
    assert torch.allclose(loss, want_loss)
    for n, p in model.params().items():
        assert torch.allclose(p.grad, 2.0 * want[n], atol=1e-12), n
    assert torch.allclose(x.grad, 2.0 * want["x"], atol=1e-12)
    assert torch.allclose(h0.grad, 2.0 * want["h_0"], atol=1e-12)
