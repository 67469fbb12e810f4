"""symrnn.nn.RNN / LSTM / GRU against torch.nn's with the same state_dict."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import symrnn.nn as snn
from symrnn.errors import SpecError
from symrnn.nn.training import compare, training_section
from symrnn.spec import Spec

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def _pair(kind: str, D: int, H: int, layers: int, bidirectional: bool, batch_first: bool,  # noqa: N803
          bias: bool, dtype, backend: str = "auto", **extra):
    ref = getattr(torch.nn, kind)(D, H, num_layers=layers, bias=bias, batch_first=batch_first,
                                  bidirectional=bidirectional, dtype=dtype, **extra)
    ours = getattr(snn, kind)(D, H, num_layers=layers, bias=bias, batch_first=batch_first,
                              bidirectional=bidirectional, dtype=dtype, backend=backend,
                              **extra)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _run(module, x, hx, weights):
    """Outputs, final states and the gradients of a loss that reads all of them."""
    out, state = module(x, hx)
    finals = state if isinstance(state, tuple) else (state,)
    loss = (out * weights).sum() + sum((s ** 2).sum() * (k + 1) for k, s in enumerate(finals))
    leaves = [x, *(hx if isinstance(hx, tuple) else (hx,)), *module.parameters()]
    return out, finals, torch.autograd.grad(loss, leaves)


def _assert_same(kind, D, H, layers, bidirectional, batch_first, bias, T, B, dtype, seed,  # noqa: N803
                 backend="auto"):
    torch.manual_seed(seed)
    ref, ours = _pair(kind, D, H, layers, bidirectional, batch_first, bias, dtype, backend)
    shape = (B, T, D) if batch_first else (T, B, D)
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    n = layers * (2 if bidirectional else 1)
    h0 = torch.randn(n, B, H, dtype=dtype, requires_grad=True)
    hx = (h0, torch.randn(n, B, H, dtype=dtype, requires_grad=True)) if kind == "LSTM" else h0
    weights = torch.randn(*shape[:2], H * (2 if bidirectional else 1), dtype=dtype)
    want = _run(ref, x, hx, weights)
    got = _run(ours, x, hx, weights)
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(got[0], want[0], atol=tol, rtol=tol)
    for a, b in zip(got[1], want[1], strict=True):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)
    names = ["x", "h0", "c0"][:2 + (kind == "LSTM")] + [n for n, _ in ref.named_parameters()]
    for name, a, b in zip(names, got[2], want[2], strict=True):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol,
                                   msg=lambda m, name=name: f"{name}: {m}")


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["RNN", "LSTM", "GRU"]), D=st.integers(1, 4), H=st.integers(1, 4),
       layers=st.integers(1, 3), bidirectional=st.booleans(), batch_first=st.booleans(),
       bias=st.booleans(), T=st.integers(1, 5), B=st.integers(1, 3),
       dtype=st.sampled_from([torch.float64, torch.float32]), seed=st.integers(0, 99))
def test_equal_to_torch_nn(kind, D, H, layers, bidirectional, batch_first, bias, T, B,  # noqa: N803
                           dtype, seed):
    """Outputs, h_n (c_n) and the gradients of input, h0 (c0) and every parameter: 1e-10
    in float64, 1e-5 in float32."""
    _assert_same(kind, D, H, layers, bidirectional, batch_first, bias, T, B, dtype, seed)


NUMBA = pytest.param("numba", marks=pytest.mark.skipif(
    importlib.util.find_spec("numba") is None, reason="numba not installed (symrnn[numba])"))


@pytest.mark.parametrize("backend", ["numpy", "torch", NUMBA])
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_two_layer_bidirectional_equal_to_torch_nn(kind, backend):
    """Every generated backend (auto picks NumPy on the CPU)."""
    _assert_same(kind, 3, 4, 2, True, True, True, 6, 3, torch.float64, 0, backend)


def test_relu_rnn_equal_to_torch_nn():
    torch.manual_seed(1)
    ref, ours = _pair("RNN", 3, 4, 2, False, True, True, torch.float64, nonlinearity="relu")
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 2, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 5, 4, dtype=torch.float64)
    for a, b in zip(_run(ours, x, h0, w)[2], _run(ref, x, h0, w)[2], strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("kind, extra", [("LSTM", {}), ("GRU", {"reset": "before"}),
                                         ("RNN", {"nonlinearity": "relu"})])
def test_gradcheck(kind, extra):
    """torch.autograd.gradcheck of output and final state in the input, h0 and every
    parameter (GRU reset-before included, which torch.nn lacks), float64."""
    torch.manual_seed(2)
    module = getattr(snn, kind)(2, 3, num_layers=2, bidirectional=True, dtype=torch.float64,
                                **extra)
    names = [n for n, _ in module.named_parameters()]
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    weights = [p.detach().clone().requires_grad_() for p in module.parameters()]

    def fn(x, h0, *ws):
        hx = (h0, h0 * 0.5) if kind == "LSTM" else h0
        out, state = torch.func.functional_call(module, dict(zip(names, ws, strict=True)),
                                                (x, hx))
        return out, state[0] if kind == "LSTM" else state

    assert torch.autograd.gradcheck(fn, (x, h0, *weights), eps=1e-6, atol=1e-7)


def test_state_dict_round_trip():
    ref, ours = _pair("LSTM", 3, 4, 2, True, False, True, torch.float64)
    back = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    back.load_state_dict(ours.state_dict())
    for (n, a), (m, b) in zip(ref.state_dict().items(), back.state_dict().items(), strict=True):
        assert n == m and torch.equal(a, b)


def test_dropout_between_layers():
    """Train mode draws one mask per lower layer (the gradient goes through the same
    mask); eval mode, and dropout 0, equal torch.nn."""
    torch.manual_seed(3)
    module = snn.GRU(2, 3, num_layers=2, dropout=0.5, dtype=torch.float64)
    x = torch.randn(5, 2, 2, dtype=torch.float64, requires_grad=True)
    module.eval()
    ref = torch.nn.GRU(2, 3, num_layers=2, dropout=0.5, dtype=torch.float64)
    ref.load_state_dict(module.state_dict())
    ref.eval()
    torch.testing.assert_close(module(x)[0], ref(x)[0], atol=1e-12, rtol=0)
    module.train()
    torch.manual_seed(4)
    first = module(x)[0]
    torch.manual_seed(4)
    assert torch.equal(first, module(x)[0])
    assert not torch.allclose(first, module.eval()(x)[0])
    module.train()

    def seeded(x):
        torch.manual_seed(5)
        return module(x)[0]

    assert torch.autograd.gradcheck(seeded, (x,), eps=1e-6, atol=1e-7)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(SpecError, match="nonlinearity"):
        snn.RNN(2, 3, nonlinearity="gelu")
    with pytest.raises(SpecError, match="dropout"):
        snn.LSTM(2, 3, dropout=1.5)
    with pytest.raises(SpecError, match="reset"):
        snn.GRU(2, 3, reset="middle")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_equal_to_torch_nn(dtype):
    torch.manual_seed(6)
    ref = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=dtype, device="cuda")
    ours = snn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=dtype, device="cuda")
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(5, 2, 3, dtype=dtype, device="cuda", requires_grad=True)
    w = torch.randn(5, 2, 8, dtype=dtype, device="cuda")
    h0 = torch.zeros(4, 2, 4, dtype=dtype, device="cuda", requires_grad=True)
    hx = (h0, torch.zeros_like(h0, requires_grad=True))
    for a, b in zip(_run(ours, x, hx, w)[2], _run(ref, x, hx, w)[2], strict=True):
        torch.testing.assert_close(a, b, atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])


def test_training_curve_equals_torch_nn():
    """Embedding → LSTM (2 layers) → Linear trained by Adam for 200 steps: the loss curve
    of symrnn.nn.LSTM equals torch.nn.LSTM's step for step (float64, 1e-8 relative)."""
    ours, theirs = compare("lstm", steps=200)
    assert ours[-1] < 0.6 * ours[0]  # it learns
    worst = max(abs(a - b) / abs(b) for a, b in zip(ours, theirs, strict=True))
    assert worst < 1e-8, worst


def test_training_section_draws_both_curves(tmp_path):
    text = training_section(Spec(cell="gru"), tmp_path)
    assert "largest relative difference" in text and (tmp_path / "training.png").stat().st_size
    assert "no torch.nn counterpart" in training_section(Spec(cell="gru_v1"), tmp_path)
