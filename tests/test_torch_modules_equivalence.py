"""torch.nn.LSTM / GRU / RNN state_dicts load into the generated torch-layout modules.

``nn.LSTM(8, 32).state_dict()`` with ``_l0`` dropped (weight_ih_l0 → weight_ih, ...) plus
an ``nn.Linear`` head (weight → W_hy, bias → b_y) is exactly the parameter dict of the
generated LSTM with ``layout = "torch"``; the generated loss and gradients equal those of
the torch modules (same head, same loss, autograd) to 1e-10 in float64.  The same for
``nn.GRU`` (cell ``gru``: reset after the recurrent product) and ``nn.RNN`` (Elman, whose
bias_ih / bias_hh are the per-gate b_xh / b_hh).  Stacks too: ``nn.LSTM(8, 32,
num_layers=2)``'s state_dict with ``_l0`` dropped and ``_l1`` kept (weight_ih_l1 ...) is
the parameter dict of the generated 2-layer module, whose initial states h0, c0, h0_l1,
c0_l1 are the rows of torch's (num_layers, B, H) h0 / c0.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import symrnn
from symrnn import Spec
from symrnn.engine.graph import network

D, H, O, T, B = 8, 32, 3, 12, 4  # noqa: E741

MODULES = {
    "lstm": ("lstm", "tanh", torch.nn.LSTM, {}),
    "gru": ("gru", "tanh", torch.nn.GRU, {}),
    "rnn-tanh": ("elman", "tanh", torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn-relu": ("elman", "relu", torch.nn.RNN, {"nonlinearity": "relu"}),
}
HEADS = [("identity", "mse", "many_to_many"), ("softmax", "cross_entropy", "many_to_one"),
         ("sigmoid", "mse", "many_to_one"), ("softmax", "mse", "many_to_many")]
TOL = {"rtol": 1e-10, "atol": 1e-10}


@functools.cache
def _compiled(spec: Spec, backend: str):
    return symrnn.compile(spec, backend)


def _setup(name: str, head=HEADS[0], bias: bool = True, seed: int = 0, num_layers: int = 1):
    """The spec, torch's modules (seeded default init) and random x, y and initial states
    (h0, c0, h0_l1, c0_l1, ...: the generated module's STATES)."""
    cell, activation, cls, kwargs = MODULES[name]
    spec = Spec(cell=cell, activation=activation, layout="torch", head=head[0], loss=head[1],
                topology=head[2], hidden_size=H, input_size=D, output_size=O, bias=bias,
                num_layers=num_layers)
    torch.manual_seed(seed)
    rnn = cls(D, H, num_layers=num_layers, bias=bias, batch_first=True, dtype=torch.float64,
              **kwargs)
    linear = torch.nn.Linear(H, O, bias=bias, dtype=torch.float64)
    x = torch.randn(B, T, D, dtype=torch.float64)
    shape = (B, T, O) if spec.topology == "many_to_many" else (B, O)
    if spec.loss == "cross_entropy":
        y = torch.eye(O, dtype=torch.float64)[torch.randint(0, O, shape[:-1])]
    else:
        y = torch.rand(shape, dtype=torch.float64)
    states = tuple(0.5 * torch.randn(B, H, dtype=torch.float64)
                   for _ in _compiled(spec, "torch").STATES)
    return spec, rnn, linear, x, y, states


def _params(rnn: torch.nn.Module, linear: torch.nn.Linear) -> dict[str, torch.Tensor]:
    """The generated module's parameters: the state_dict without ``_l0``, and the head."""
    out = {k.removesuffix("_l0"): v.detach().clone() for k, v in rnn.state_dict().items()}
    out["W_hy"] = linear.weight.detach().clone()
    if linear.bias is not None:
        out["b_y"] = linear.bias.detach().clone()
    return out


OUTPUT = {"identity": lambda z: z, "sigmoid": torch.sigmoid,
          "softmax": lambda z: torch.softmax(z, dim=-1)}


def _torch_loss(spec: Spec, rnn, linear, x, y, states):
    """torch's module, then the linear head and the loss (summed over steps and batch).

    ``states`` are per layer (h, c, h_l1, c_l1, ...); torch takes each kind stacked over
    the layers, (num_layers, B, H)."""
    n = len(states) // spec.num_layers
    init = tuple(torch.stack(states[k::n]) for k in range(n))
    out, _ = rnn(x, (init if len(init) > 1 else init[0]) if init else None)
    z = linear(out if spec.topology == "many_to_many" else out[:, -1])
    if spec.loss == "cross_entropy":
        return -(y * torch.log_softmax(z, dim=-1)).sum()
    return 0.5 * ((OUTPUT[spec.head](z) - y) ** 2).sum()


def _torch_grads(spec: Spec, rnn, linear, x, y, states):
    """Loss and gradients of torch's modules by autograd, keyed as the generated module's."""
    x = x.clone().requires_grad_(True)
    states = tuple(s.clone().requires_grad_(True) for s in states)
    loss = _torch_loss(spec, rnn, linear, x, y, states)
    rnn.zero_grad()
    linear.zero_grad()
    loss.backward()
    grads = {k.removesuffix("_l0"): p.grad for k, p in rnn.named_parameters()}
    grads.update({"W_hy": linear.weight.grad, **({"b_y": linear.bias.grad}
                                                  if linear.bias is not None else {})})
    names = _compiled(spec, "torch").STATES if states else ()
    grads.update({f"{s}_0": v.grad for s, v in zip(names, states, strict=True)})
    grads["x"] = x.grad
    return loss.detach(), grads


def _generated(spec: Spec, backend: str, params, x, y, states):
    module = _compiled(spec, backend)
    conv = (lambda v: v) if backend == "torch" else (lambda v: v.numpy())
    loss, cache = module.forward({k: conv(v) for k, v in params.items()}, conv(x), conv(y),
                                 *(conv(s) for s in states))
    grads = module.backward({k: conv(v) for k, v in params.items()}, cache, input_grad=True)
    return torch.as_tensor(loss), {k: torch.as_tensor(np.asarray(v)) if backend == "numpy"
                                   else v for k, v in grads.items()}


def _assert_equal(spec, backend, rnn, linear, x, y, states):
    params = _params(rnn, linear)
    assert set(params) == set(_compiled(spec, backend).PARAM_NAMES)
    want_loss, want = _torch_grads(spec, rnn, linear, x, y, states)
    loss, grads = _generated(spec, backend, params, x, y, states)
    torch.testing.assert_close(loss, want_loss, **TOL)
    for name, ref in want.items():
        torch.testing.assert_close(grads[name], ref, **TOL, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("head", HEADS, ids="-".join)
@pytest.mark.parametrize("name", MODULES)
def test_state_dict_loads_and_gives_the_same_loss_and_gradients(name, head, backend):
    spec, rnn, linear, x, y, states = _setup(name, head)
    _assert_equal(spec, backend, rnn, linear, x, y, states)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name", MODULES)
def test_without_biases_and_initial_states(name, backend):
    spec, rnn, linear, x, y, _ = _setup(name, bias=False, seed=1)
    assert not any("bias" in k for k in rnn.state_dict())
    _assert_equal(spec, backend, rnn, linear, x, y, ())


def test_nn_lstm_8_32_state_dict_keys_are_the_generated_parameters():
    rnn = torch.nn.LSTM(8, 32)
    module = _compiled(Spec(cell="lstm", layout="torch", hidden_size=32, input_size=8,
                            output_size=O), "torch")
    renamed = {k.removesuffix("_l0"): tuple(v.shape) for k, v in rnn.state_dict().items()}
    assert renamed == {k: v for k, v in module.PARAM_SHAPES.items() if k not in ("W_hy", "b_y")}
    assert list(renamed) == list(module.PARAM_NAMES[:4]) and module.STATES == ("h", "c")


def test_nn_rnn_biases_are_b_xh_and_b_hh():
    stacks = network(Spec(layout="torch")).stacks
    assert stacks == {"weight_ih": ("W_xh",), "weight_hh": ("W_hh",), "bias_ih": ("b_xh",),
                      "bias_hh": ("b_hh",)}
    spec, rnn, linear, x, y, states = _setup("rnn-tanh", seed=2)
    _, want = _torch_grads(spec, rnn, linear, x, y, states)
    _, grads = _generated(spec, "numpy", _params(rnn, linear), x, y, states)
    # two biases added in the same pre-activation: the same gradient, torch's and ours
    torch.testing.assert_close(grads["bias_ih"], grads["bias_hh"], **TOL)
    torch.testing.assert_close(grads["bias_hh"], want["bias_hh"], **TOL)


@pytest.mark.parametrize(("name", "num_layers"), [*((m, 1) for m in MODULES),
                                                   ("lstm", 2), ("gru", 2)])
def test_generated_rnnloss_module_loads_the_renamed_state_dict(name, num_layers):
    spec, rnn, linear, x, y, states = _setup(name, HEADS[1], seed=3 + 3 * (num_layers - 1),
                                             num_layers=num_layers)
    module = _compiled(spec, "torch")
    model = module.RNNLoss(dtype=torch.float64)
    model.load_state_dict(_params(rnn, linear), strict=True)
    loss = model(x, y, *states)
    loss.backward()
    want_loss, want = _torch_grads(spec, rnn, linear, x, y, states)
    torch.testing.assert_close(loss.detach(), want_loss, **TOL)
    for name_ in module.PARAM_NAMES:
        torch.testing.assert_close(getattr(model, name_).grad, want[name_], **TOL)


# ------------------------------------------------------------------ stacked layers

STACKED = ["lstm", "gru", "rnn-tanh"]
"""torch modules checked with num_layers=2 (nn.LSTM and nn.GRU; nn.RNN as well)."""


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("head", HEADS[:2], ids="-".join)
@pytest.mark.parametrize("name", STACKED)
def test_two_layer_state_dict_loads_and_gives_the_same_loss_and_gradients(name, head,
                                                                          backend):
    """Every gradient: both layers' parameters, h0/c0 of each layer, the head and x."""
    spec, rnn, linear, x, y, states = _setup(name, head, seed=4, num_layers=2)
    assert any(k.endswith("_l1") for k in rnn.state_dict())
    _, want = _torch_grads(spec, rnn, linear, x, y, states)
    assert {"weight_hh_l1", "h_l1_0", "x"} <= set(want)
    _assert_equal(spec, backend, rnn, linear, x, y, states)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_two_layers_without_biases_and_initial_states(name, backend):
    spec, rnn, linear, x, y, _ = _setup(name, bias=False, seed=5, num_layers=2)
    assert not any("bias" in k for k in rnn.state_dict())
    _assert_equal(spec, backend, rnn, linear, x, y, ())


def test_nn_lstm_8_32_two_layers_state_dict_keys_are_the_generated_parameters():
    rnn = torch.nn.LSTM(8, 32, num_layers=2)
    module = _compiled(Spec(cell="lstm", layout="torch", hidden_size=32, input_size=8,
                            output_size=O, num_layers=2), "torch")
    renamed = {k.removesuffix("_l0"): tuple(v.shape) for k, v in rnn.state_dict().items()}
    assert renamed == {k: v for k, v in module.PARAM_SHAPES.items() if k not in ("W_hy", "b_y")}
    assert list(renamed) == list(module.PARAM_NAMES[:8])
    assert renamed["weight_ih"] == (4 * 32, 8) and renamed["weight_ih_l1"] == (4 * 32, 32)
    assert module.STATES == ("h", "c", "h_l1", "c_l1")
    assert module.STATE_ARGS == ("h0", "c0", "h0_l1", "c0_l1")
