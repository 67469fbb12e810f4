"""Generated code for every cell and layout against torch autograd on a textbook forward.

The reference here is independent of symrnn's engine: each cell's step is written from
its textbook equations in torch, with per-gate parameters; autograd differentiates it.
The generated modules (NumPy and torch; per-gate or torch's stacked parameters) must give
the same loss and every gradient to 1e-10 in float64, with full BPTT, with truncated
BPTT (against the detach pattern), and streamed.  A broken rule in the rule table must
show up as wrong generated code, and nothing in ``symrnn/codegen`` may name a cell.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import by_id

import symrnn
from symrnn.codegen import generate
from symrnn.codegen.plan import plan
from symrnn.engine.graph import network
from symrnn.spec import Spec

CELLS = ("elman", "lstm", "gru", "gru_v1")
LAYOUTS = ("notes", "torch")
HEADS = (("identity", "mse"), ("sigmoid", "mse"), ("softmax", "cross_entropy"))


# ------------------------------------------------------------------ the textbook reference


def _b(p, *names):
    return sum((p[n] for n in names if n in p), torch.zeros(()))


def _affine(p, g, h, x):
    return h @ p[f"W_h{g}"].T + x @ p[f"W_x{g}"].T + _b(p, f"b_{g}", f"b_x{g}", f"b_h{g}")


def _elman(p, h, c, x):
    return torch.tanh(_affine(p, "h", h, x)), c


def _lstm(p, h, c, x):
    i, f = torch.sigmoid(_affine(p, "i", h, x)), torch.sigmoid(_affine(p, "f", h, x))
    g, o = torch.tanh(_affine(p, "g", h, x)), torch.sigmoid(_affine(p, "o", h, x))
    c = f * c + i * g
    return o * torch.tanh(c), c


def _gru(p, h, c, x):
    r, u = torch.sigmoid(_affine(p, "r", h, x)), torch.sigmoid(_affine(p, "u", h, x))
    n = torch.tanh(x @ p["W_xn"].T + _b(p, "b_n", "b_xn") + r * (h @ p["W_hn"].T + _b(p, "b_hn")))
    return (1 - u) * n + u * h, c


def _gru_v1(p, h, c, x):
    r, u = torch.sigmoid(_affine(p, "r", h, x)), torch.sigmoid(_affine(p, "u", h, x))
    n = torch.tanh(_affine(p, "n", r * h, x))
    return (1 - u) * n + u * h, c


STEPS = {"elman": _elman, "lstm": _lstm, "gru": _gru, "gru_v1": _gru_v1}


def _loss_at(spec, p, h, y):
    z = h @ p["W_hy"].T + _b(p, "b_y")
    if spec.loss == "cross_entropy":
        return -(y * torch.log_softmax(z, -1)).sum()
    yhat = torch.sigmoid(z) if spec.head == "sigmoid" else z
    return 0.5 * ((yhat - y) ** 2).sum()


def _layer_params(p, layer: int) -> dict:
    """Layer ``layer``'s parameters under the cell's own names (W_hh_l1 → W_hh)."""
    if layer == 0:
        return {k: v for k, v in p.items() if not re.search(r"_l\d+$", k)}
    suffix = f"_l{layer}"
    return {k[:-len(suffix)]: v for k, v in p.items() if k.endswith(suffix)}


def _stack_step(spec, p, hcs, x):
    """One step of every layer, bottom up: each layer reads the h_t of the one below."""
    out, inp = [], x
    for layer, (h, c) in enumerate(hcs):
        h, c = STEPS[spec.cell](_layer_params(p, layer), h, c, inp)
        out.append((h, c))
        inp = h
    return out


def _window_loss(spec, p, states, x, y, first, stop, start):
    """Σ of the losses at steps start..stop, running steps first..stop from ``states``."""
    hcs = states
    total = torch.zeros(())
    T = x.shape[1]
    for t in range(first, stop + 1):
        hcs = _stack_step(spec, p, hcs, x[:, t - 1])
        if t >= start and (spec.topology == "many_to_many" or t == T):
            target = y[:, t - 1] if spec.topology == "many_to_many" else y
            total = total + _loss_at(spec, p, hcs[-1][0], target)
    return total, hcs


def _pairs(spec, init: dict) -> list:
    """Initial (h, c) per layer as leaf tensors (c unused by one-state cells)."""
    out = []
    for layer in range(spec.num_layers):
        suffix = "" if layer == 0 else f"_l{layer}"
        out.append(tuple(torch.tensor(init[s + suffix], requires_grad=True) for s in ("h", "c")))
    return out


def reference(spec, pergate, x, y, init, tbptt=None):
    """(loss, grads) by autograd; TBPTT by the detach pattern."""
    p = {k: torch.tensor(v, requires_grad=True) for k, v in pergate.items()}
    s0 = _pairs(spec, init)
    x, y = torch.tensor(x, requires_grad=True), torch.tensor(y)
    T = x.shape[1]
    k1, k2 = tbptt or (T, T)
    with torch.no_grad():  # every state of the full forward, for the windows' starts
        states, hcs = [s0], s0
        for t in range(1, T + 1):
            hcs = _stack_step(spec, p, hcs, x[:, t - 1])
            states.append(hcs)
    loss = torch.zeros(())
    for start in range(1, T + 1, k1):
        stop = min(start + k1 - 1, T)
        first = max(stop - k2 + 1, 1)
        begin = s0 if first == 1 else [tuple(s.detach() for s in hc) for hc in states[first - 1]]
        window, _ = _window_loss(spec, p, begin, x, y, first, stop, start)
        window.backward()
        loss = loss + window.detach()
    grads = {k: v.grad.numpy() for k, v in p.items()} | {"x": x.grad.numpy()}
    for layer, pair in enumerate(s0):
        for name, s in zip(("h", "c"), pair, strict=True):
            key = f"{name}_0" if layer == 0 else f"{name}_l{layer}_0"
            grads[key] = s.grad.numpy() if s.grad is not None else np.zeros(s.shape)
    return float(loss), grads


# ------------------------------------------------------------------ data and comparison


def data(spec, B, T, seed):
    net = network(spec)
    rng = np.random.default_rng(seed)
    pergate = {}
    for name, sym in net.params.items():
        shape = tuple(int(d) for d in sym.shape)
        value = rng.normal(scale=0.5, size=shape)
        pergate[name] = value[:, 0] if name in net.bias_names else value
    H, D, O = spec.hidden_size, spec.input_size, spec.output_size  # noqa: E741
    x = rng.normal(size=(B, T, D))
    shape = (B, T, O) if spec.topology == "many_to_many" else (B, O)
    y = rng.normal(size=shape)
    if spec.loss == "cross_entropy":
        y = np.eye(O)[rng.integers(0, O, size=shape[:-1])]
    init = {}
    for layer in range(spec.num_layers):
        suffix = "" if layer == 0 else f"_l{layer}"
        init |= {s + suffix: rng.normal(size=(B, H)) * 0.5 for s in ("h", "c")}
    return pergate, x, y, init


def module_params(spec, pergate):
    """The generated module's parameters: per-gate, or stacked as torch stores them."""
    net = network(spec)
    if spec.layout != "torch":
        return dict(pergate)
    out = {}
    for stack, members in net.stacks.items():
        present = [m for m in members if m is not None]
        if present:
            like = pergate[present[0]]
            out[stack] = np.concatenate([pergate[m] if m else np.zeros_like(like)
                                         for m in members])
    out |= {n: pergate[n] for n in ("W_hy", "b_y") if n in pergate}
    return out


def per_gate_grads(spec, grads):
    """The module's gradients in per-gate names (row blocks of the stacked ones)."""
    net = network(spec)
    out = {k: np.asarray(v) for k, v in grads.items()}
    H = spec.hidden_size
    for stack, members in net.stacks.items():
        if stack in out:
            for k, name in enumerate(members):
                if name is not None:
                    out[name] = out[stack][k * H:(k + 1) * H]
    return out


def initial(module, init: dict, conv) -> dict:
    """The module's initial-state arguments (h0, c0, h0_l1, ...) from per-state values."""
    return {arg: conv(init[s]) for s, arg in zip(module.STATES, module.STATE_ARGS, strict=True)}


def run(spec, backend, pergate, x, y, init, tbptt=None, streamed=False):
    module = symrnn.compile(spec, backend, tbptt)
    conv = torch.tensor if backend == "torch" else np.asarray
    params = {k: conv(v) for k, v in module_params(spec, pergate).items()}
    states = initial(module, init, conv)
    fn = module.loss_and_grad_streamed if streamed else module.loss_and_grad
    loss, grads = fn(params, conv(x), conv(y), **states)
    return float(loss), per_gate_grads(spec, grads)


def assert_matches(spec, got, want, tol=1e-10):
    loss, grads = got
    ref_loss, ref = want
    assert loss == pytest.approx(ref_loss, rel=tol, abs=tol)
    names = list(network(spec).params) + [f"{s}_0" for s in network(spec).states]
    for name in names:
        np.testing.assert_allclose(grads[name], ref[name], rtol=tol, atol=tol, err_msg=name)


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("topology", ["many_to_many", "many_to_one"])
def test_full_bptt_equals_autograd(cell, layout, backend, topology):
    spec = Spec(cell=cell, layout=layout, topology=topology, hidden_size=4, input_size=3,
                output_size=2)
    args = data(spec, B=3, T=6, seed=1)
    want = reference(spec, *args)
    assert_matches(spec, run(spec, backend, *args), want)
    module = symrnn.compile(spec, backend)
    conv = torch.tensor if backend == "torch" else np.asarray
    pergate, x, y, init = args
    params = {k: conv(v) for k, v in module_params(spec, pergate).items()}
    _, cache = module.forward(params, conv(x), conv(y), **initial(module, init, conv))
    dx = np.asarray(module.backward(params, cache, input_grad=True)["x"])
    np.testing.assert_allclose(dx, want[1]["x"], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("num_layers", [2, 3])
def test_stacked_layers_equal_autograd(cell, layout, num_layers):
    """A stack is the cell composed: the same generator, every layer's gradients right."""
    spec = Spec(cell=cell, layout=layout, num_layers=num_layers, hidden_size=3,
                input_size=2, output_size=2)
    args = data(spec, B=2, T=5, seed=6)
    want = reference(spec, *args)
    for backend in ("numpy", "torch"):
        assert_matches(spec, run(spec, backend, *args), want)
    for tbptt in ((2, 3),):
        want = reference(spec, *args, tbptt=tbptt)
        assert_matches(spec, run(spec, "numpy", *args, tbptt=tbptt), want)
        assert_matches(spec, run(spec, "torch", *args, tbptt=tbptt, streamed=True), want)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(("head", "loss"), HEADS)
@pytest.mark.parametrize("bias", [True, False])
def test_every_head_loss_and_bias(cell, head, loss, bias):
    spec = Spec(cell=cell, head=head, loss=loss, bias=bias, hidden_size=3, input_size=2,
                output_size=3)
    args = data(spec, B=2, T=4, seed=2)
    for backend in ("numpy", "torch"):
        assert_matches(spec, run(spec, backend, *args), reference(spec, *args))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("tbptt", [(1, 1), (2, 3), (3, 3)])
def test_truncated_bptt_equals_the_detach_pattern_stored_and_streamed(cell, layout, tbptt):
    spec = Spec(cell=cell, layout=layout, hidden_size=3, input_size=2, output_size=2)
    args = data(spec, B=2, T=7, seed=3)
    want = reference(spec, *args, tbptt=tbptt)
    for backend in ("numpy", "torch"):
        assert_matches(spec, run(spec, backend, *args, tbptt=tbptt), want)
        assert_matches(spec, run(spec, backend, *args, tbptt=tbptt, streamed=True), want)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=st.sampled_from(CELLS), layout=st.sampled_from(LAYOUTS),
       H=st.integers(1, 5), D=st.integers(1, 4), O=st.integers(1, 3),  # noqa: N803
       T=st.integers(1, 9), B=st.integers(1, 4), seed=st.integers(0, 2**16),  # noqa: N803
       many=st.booleans(), layers=st.integers(1, 3))
def test_hypothesis_sizes_and_seeds(cell, layout, H, D, O, T, B, seed, many,  # noqa: E741, N803
                                    layers):
    spec = Spec(cell=cell, layout=layout, hidden_size=H, input_size=D, output_size=O,
                topology="many_to_many" if many else "many_to_one", num_layers=layers)
    args = data(spec, B=B, T=T, seed=seed)
    assert_matches(spec, run(spec, "numpy", *args), reference(spec, *args))


@pytest.mark.parametrize("mutation", ["sigmoid-derivative-scaled", "hadamard-own-factor",
                                      "matmul-factor-not-transposed"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_v1"])
def test_a_broken_rule_gives_wrong_generated_code(mutation, cell, monkeypatch):
    """The plan runs the engine's reverse pass: a wrong rule is wrong code (test the test)."""
    spec = Spec(cell=cell, hidden_size=3, input_size=2, output_size=2)
    args = data(spec, B=2, T=4, seed=4)
    want = reference(spec, *args)
    assert_matches(spec, run(spec, "numpy", *args), want)
    network.cache_clear()
    by_id(mutation).apply(monkeypatch)
    try:
        with pytest.raises(AssertionError):
            assert_matches(spec, run(spec, "numpy", *args), want)
    finally:
        monkeypatch.undo()
        network.cache_clear()


def test_nothing_in_codegen_names_a_cell():
    pattern = re.compile(r"""["'](elman|lstm|gru|gru_v1)["']|cell\s*==""")
    for path in sorted(Path(symrnn.codegen.__file__).parent.glob("*.py")):
        found = pattern.findall(path.read_text())
        assert not found, f"{path.name} names a cell: {found}"


@pytest.mark.parametrize("cell", CELLS)
def test_products_are_stacked_per_input(cell):
    """One matrix product per input per step: every gate of x_t at once, of h_{t-1} at once."""
    step = plan(Spec(cell=cell, hidden_size=3))
    inputs = [str(p.input) for p in step.products]
    assert len(inputs) == len(set(inputs))
    assert sum(p.hoisted for p in step.products) == 1
    text = generate(Spec(cell=cell, hidden_size=3), "numpy")
    loop = text.split("for t in range(1, T + 1):")[1].split("h_all =")[0]
    loops = "\n".join(line.split("#")[0] for line in loop.splitlines())
    products = loops.count("@") + loops.count("matmul(") + loops.count("addmm(")
    assert products == len(step.products) - 1  # the hoisted one is outside


@pytest.mark.skipif(shutil.which("ruff") is None and not Path(sys.executable).with_name("ruff")
                    .exists(), reason="ruff not installed")
@pytest.mark.parametrize("cell", CELLS)
def test_generated_modules_pass_ruff_and_are_stable(cell, tmp_path):
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    for i, (layout, backend, tbptt) in enumerate([("notes", "numpy", None),
                                                  ("torch", "torch", (2, 3))]):
        spec = Spec(cell=cell, layout=layout, hidden_size=5, input_size=3, output_size=2)
        text = generate(spec, backend, tbptt, 1.0)
        assert text == generate(spec, backend, tbptt, 1.0)
        (tmp_path / f"m{i}.py").write_text(text)
    done = subprocess.run([ruff, "check", "--no-cache", "--isolated", "--line-length", "100",
                           str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_lstm_reads_stored_gates_not_recomputed_ones():
    text = generate(Spec(cell="lstm", hidden_size=3), "numpy")
    backward = text.split("def backward")[1].split("def _dtype_name")[0]
    assert "np.tanh(" not in backward and "_sigmoid(" not in backward
    for buffer in ("IS", "FS", "GS", "OS", "TANH_CS"):
        assert f"cache['{buffer}']" in backward


@pytest.mark.parametrize("cell", CELLS)
def test_torch_wrappers_backpropagate_the_generated_gradients(cell):
    """RNNLoss / BPTTFunction: autograd calls the generated backward (initial states too)."""
    spec = Spec(cell=cell, layout="torch", hidden_size=3, input_size=2, output_size=2)
    module = symrnn.compile(spec, "torch")
    model = module.RNNLoss(dtype=torch.float64)
    pergate, x, y, init = data(spec, B=2, T=5, seed=5)
    states = [torch.tensor(init[s], requires_grad=True) for s in module.STATES]
    xt = torch.tensor(x, requires_grad=True)
    loss = model(xt, torch.tensor(y), *states)
    loss.backward()
    params = {n: getattr(model, n).detach() for n in module.PARAM_NAMES}
    _, grads = module.loss_and_grad(params, torch.tensor(x), torch.tensor(y),
                                    *[s.detach() for s in states])
    for name in module.PARAM_NAMES:
        torch.testing.assert_close(getattr(model, name).grad, grads[name], rtol=1e-12, atol=0)
    for s, state in zip(module.STATES, states, strict=True):
        torch.testing.assert_close(state.grad, grads[f"{s}_0"], rtol=1e-12, atol=0)
    full = module.backward(params, module.forward(params, torch.tensor(x), torch.tensor(y),
                                                  *[s.detach() for s in states])[1],
                           input_grad=True)
    torch.testing.assert_close(xt.grad, full["x"], rtol=1e-12, atol=0)
