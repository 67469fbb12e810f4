"""Generated BPTT modules: text properties, passes, loading, torch integration."""

from __future__ import annotations

import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch

import symrnn
from symrnn import Spec
from symrnn.checks.verify import reference_grads
from symrnn.codegen import generate, ir
from symrnn.codegen.printer import NUMPY, TORCH, Printer
from symrnn.errors import SpecError

SMALL = Spec(hidden_size=4, input_size=3, output_size=2)


def _data(spec: Spec, B=3, T=6, seed=0):
    rng = np.random.default_rng(seed)
    module = symrnn.compile(spec, "numpy")
    params = {k: rng.normal(scale=0.5, size=s) for k, s in module.PARAM_SHAPES.items()}
    x = rng.normal(size=(B, T, spec.input_size))
    shape = (B, T, spec.output_size) if spec.topology == "many_to_many" else (B, spec.output_size)
    return params, x, rng.normal(size=shape), rng.normal(size=(B, spec.hidden_size))


# ------------------------------------------------------------------ printers


def test_printers_differ_by_tables_only():
    tree = ir.op("add", ir.op("matmul", ir.Name("h"), ir.op("T", ir.Name("W"))),
                 ir.op("tanh", ir.op("sub", ir.Name("a"), ir.op("sub", ir.Name("b"), ir.Num(1)))))
    assert Printer(NUMPY).expr(tree) == "h @ W.T + np.tanh(a - (b - 1))"
    assert Printer(TORCH).expr(tree) == "h @ W.T + torch.tanh(a - (b - 1))"
    summed = ir.op("sum_all", ir.op("mul", ir.Name("d"), ir.Name("d")))
    assert Printer(NUMPY).expr(summed) == "(d * d).sum()"
    assert Printer(TORCH).expr(ir.op("sum0", ir.Name("g"))) == "g.sum(dim=0)"


# ------------------------------------------------------------------ module text


def test_same_spec_gives_identical_text():
    assert generate(SMALL, "numpy") == generate(SMALL, "numpy")
    assert generate(SMALL, "torch", (2, 4), 1.0) == generate(SMALL, "torch", (2, 4), 1.0)


def test_header_states_spec_truncation_version_and_command():
    text = generate(SMALL, "numpy", (3, 5), 2.0)
    head = text.split('"""')[1]
    for needle in ("symrnn 0.1.0", "--tbptt 3,5", "--clip 2.0", "activation=tanh",
                   "k1=3, k2=5", "global norm 2.0", "summed over batch", "delta_{t} ="):
        assert needle in head
    assert "PARAM_SHAPES = {'W_hh': (4, 4), 'W_xh': (4, 3), 'b_h': (4,)" in text


def _loop_bodies(text: str) -> list[str]:
    lines = text.splitlines()
    bodies = []
    for i, line in enumerate(lines):
        if line.lstrip().startswith("for t in "):
            depth = len(line) - len(line.lstrip())
            body = []
            for inner in lines[i + 1:]:
                if inner.strip() and len(inner) - len(inner.lstrip()) <= depth:
                    break
                body.append(inner)
            bodies.append("\n".join(body))
    return bodies


def test_hoisting_keeps_input_and_head_products_out_of_the_loops():
    text = generate(SMALL, "numpy")
    loops = _loop_bodies(text)
    assert len(loops) == 2  # the forward and the reverse time loop
    for body in loops:
        assert "W_xh" not in body and "W_hy" not in body
    assert text.count("x_all @ W_xh.T") == 1
    assert "dQ_all.T @ h_prev" in text  # dW_hh as one product over the stacked steps
    # tanh' = 1 - h*h from the stored outputs, hoisted into the adjoint buffer, in place
    assert "dQ = HS[1:] * HS[1:]" in text and "np.subtract(1, dQ, out=dQ)" in text


def test_passes_rewrite_in_place_and_share_subexpressions():
    text = generate(SMALL, "numpy")
    assert "W_hh_T = W_hh.T" in text and "np.matmul(HS[t - 1], W_hh_T, out=HS_t)" in text
    assert "HS_t = HS[t]" in text and "np.tanh(HS_t, out=HS_t)" in text
    assert "common0 = yhat - y_all" in text
    plain = generate(SMALL, "numpy", passes=())
    assert "out=" not in plain.split("def forward")[1] and "common0" not in plain


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_unoptimised_code_gives_the_same_gradients(backend):
    from symrnn.checks.verify import verify

    singles = tuple((name,) for name in symrnn.codegen.DEFAULT_PASSES)
    for passes in ((), *singles, symrnn.codegen.DEFAULT_PASSES):
        module = symrnn.compile(SMALL, backend, passes=passes)
        assert verify(SMALL, backend, T=5, batch=2, module=module,
                      finite_differences=False).ok


@pytest.mark.skipif(shutil.which("ruff") is None and not Path(sys.executable).with_name("ruff")
                    .exists(), reason="ruff not installed")
def test_generated_modules_pass_ruff(tmp_path):
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    specs = [SMALL, Spec(activation="relu", head="softmax", loss="cross_entropy",
                         topology="many_to_one", bias=False),
             Spec(activation="identity", head="sigmoid")]
    for i, spec in enumerate(specs):
        for backend in ("numpy", "torch"):
            (tmp_path / f"gen_{i}_{backend}.py").write_text(generate(spec, backend))
            (tmp_path / f"gen_{i}_{backend}_tb.py").write_text(
                generate(spec, backend, (2, 3), 1.0, clip_value=0.5))
    result = subprocess.run(
        [ruff, "check", "--no-cache", "--isolated", "--line-length", "100",
         "--select", "E,F,W,I,B,UP", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unsupported_spec_is_a_clear_spec_error():
    with pytest.raises(SpecError, match="expected integer sizes"):
        generate(Spec(hidden_size="H"))
    with pytest.raises(SpecError, match="1 <= k1 <= k2"):
        generate(SMALL, tbptt=(4, 2))


# ------------------------------------------------------------------ loading, numerics


def test_compile_loads_from_a_real_file_and_tracebacks_show_it():
    module = symrnn.compile(SMALL, "numpy")
    path = Path(module.__file__)
    assert path.exists() and path.read_text() == generate(SMALL, "numpy")
    params, x, y, h0 = _data(SMALL)
    with pytest.raises(ValueError, match=r"y: expected shape \(3, 6, 2\), got \(3, 6\)") as info:
        module.forward(params, x, y[..., 0], h0)
    frames = traceback.extract_tb(info.value.__traceback__)
    assert any(f.filename == str(path) and f.line for f in frames)
    with pytest.raises(ValueError, match=r"x: expected shape \(B, T, 3\), got \(3, 6\)"):
        module.forward(params, x[..., 0], y, h0)
    with pytest.raises(ValueError, match="x: expected a floating dtype"):
        module.forward(params, x.astype(int), y, h0)
    with pytest.raises(ValueError, match=r"h0: expected shape \(3, 4\), got \(4,\)"):
        module.forward(params, x, y, h0[0])


def test_shapes_dtypes_and_delta_key():
    module = symrnn.compile(SMALL, "numpy")
    params, x, y, h0 = _data(SMALL)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    loss, grads = module.loss_and_grad(p32, x.astype(np.float32), y.astype(np.float32))
    assert loss.dtype == np.float32
    assert grads["delta"].shape == (3, 6, 4) and grads["h_0"].shape == (3, 4)
    for name, shape in module.PARAM_SHAPES.items():
        assert grads[name].shape == shape and grads[name].dtype == np.float32
    _, ref = reference_grads(SMALL, {k: torch.tensor(v) for k, v in params.items()},
                             torch.tensor(x), torch.tensor(y), torch.tensor(h0))
    _, g64 = module.loss_and_grad(params, x, y, h0)
    np.testing.assert_allclose(g64["delta"], ref["delta"], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("topology", ["many_to_many", "many_to_one"])
def test_class_indices_equal_one_hot_targets(topology):
    spec = SMALL.replace(head="softmax", loss="cross_entropy", output_size=3, topology=topology)
    module = symrnn.compile(spec, "numpy")
    params, x, _, h0 = _data(spec)
    labels = np.random.default_rng(1).integers(0, 3, size=(3, 6) if topology == "many_to_many"
                                                else (3,))
    loss_i, g_i = module.loss_and_grad(params, x, labels, h0)
    loss_h, g_h = module.loss_and_grad(params, x, np.eye(3)[labels], h0)
    assert loss_i == pytest.approx(loss_h, rel=1e-14)
    np.testing.assert_allclose(g_i["W_hh"], g_h["W_hh"], rtol=1e-13)


def test_clipping_bounds_the_gradients():
    params, x, y, h0 = _data(SMALL)
    _, raw = symrnn.compile(SMALL, "numpy").loss_and_grad(params, x, y, h0)
    names = list(symrnn.compile(SMALL, "numpy").PARAM_NAMES)
    norm = np.sqrt(sum((raw[n] ** 2).sum() for n in names))
    _, clipped = symrnn.compile(SMALL, "numpy", clip=norm / 4).loss_and_grad(params, x, y, h0)
    assert np.sqrt(sum((clipped[n] ** 2).sum() for n in names)) == pytest.approx(norm / 4)
    np.testing.assert_allclose(clipped["W_hh"], raw["W_hh"] / 4, rtol=1e-12)
    _, same = symrnn.compile(SMALL, "numpy", clip=norm * 2).loss_and_grad(params, x, y, h0)
    np.testing.assert_array_equal(same["W_hh"], raw["W_hh"])
    _, boxed = symrnn.compile(SMALL, "numpy", clip_value=0.01).loss_and_grad(params, x, y, h0)
    assert max(np.abs(boxed[n]).max() for n in names) <= 0.01


def test_full_truncation_equals_full_bptt():
    params, x, y, h0 = _data(SMALL, T=6)
    _, full = symrnn.compile(SMALL, "numpy").loss_and_grad(params, x, y, h0)
    _, cut = symrnn.compile(SMALL, "numpy", tbptt=(6, 6)).loss_and_grad(params, x, y, h0)
    for name in full:
        np.testing.assert_allclose(cut[name], full[name], rtol=1e-12, atol=1e-14)
    _, short = symrnn.compile(SMALL, "numpy", tbptt=(2, 2)).loss_and_grad(params, x, y, h0)
    assert not np.allclose(short["W_hh"], full["W_hh"])


# ------------------------------------------------------------------ torch integration


def test_autograd_function_passes_torch_gradcheck():
    module = symrnn.compile(SMALL, "torch")
    params, x, y, h0 = _data(SMALL, B=2, T=4)
    weights = [torch.tensor(params[n], requires_grad=True) for n in module.PARAM_NAMES]
    h = torch.tensor(h0, requires_grad=True)
    xs = torch.tensor(x, requires_grad=True)

    def fn(xs, h, *w):
        return module.BPTTFunction.apply(xs, torch.tensor(y), h, *w)

    assert torch.autograd.gradcheck(fn, (xs, h, *weights))


def test_module_trains_with_torch_optim_next_to_other_layers():
    torch.manual_seed(0)
    module = symrnn.compile(SMALL, "torch")
    rnn = module.RNNLoss(dtype=torch.float64)
    encoder = torch.nn.Linear(3, 3, dtype=torch.float64)  # another layer, upstream
    opt = torch.optim.Adam([*rnn.parameters(), *encoder.parameters()], lr=0.05)
    x = torch.randn(8, 10, 3, dtype=torch.float64)
    y = torch.roll(x[..., :2], 1, dims=1)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = rnn(encoder(x), y) / 80
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    assert encoder.weight.grad is not None and encoder.weight.grad.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_torch_backend_on_cuda():
    from symrnn.checks.verify import verify

    module = symrnn.compile(SMALL, "torch")
    params, x, y, h0 = _data(SMALL)
    cuda = {k: torch.tensor(v, device="cuda") for k, v in params.items()}
    loss, grads = module.loss_and_grad(cuda, torch.tensor(x, device="cuda"),
                                       torch.tensor(y, device="cuda"),
                                       torch.tensor(h0, device="cuda"))
    assert grads["W_hh"].device.type == "cuda"
    _, cpu = module.loss_and_grad({k: torch.tensor(v) for k, v in params.items()},
                                  torch.tensor(x), torch.tensor(y), torch.tensor(h0))
    for name in cpu:
        torch.testing.assert_close(grads[name].cpu(), cpu[name], rtol=1e-10, atol=1e-12)
    assert verify(SMALL, "torch", T=5, batch=2, finite_differences=False).ok


_REVERSE_LOOP = """\
    carry = {zeros}  # carry_T = 0 (nothing after step T)
    for t in range(T, 0, -1):
        dQ_tm1 = dQ[t - 1]
        delta_tm1 = delta[t - 1]
        delta_tm1 += carry  # delta_t = local_t + carry_t (dL/dh_t)
        dQ_tm1 *= delta_tm1  # da_{{t}} = delta_{{t}} * F0_{{t}}
        {mm}(dQ_tm1, W_hh, out=carry)  # dL/dh_(t-1) = W_hh.T @ da_{{t}}
"""


@pytest.mark.parametrize(("backend", "zeros", "mm"), [
    ("numpy", "np.zeros((B, H), dtype=dtype)", "np.matmul"),
    ("torch", "torch.zeros((B, H), dtype=dtype, device=device)", "torch.matmul"),
])
def test_golden_reverse_loop(backend, zeros, mm):
    text = generate(Spec(), backend)
    loop = text[text.index("    carry = "):text.index("    dh_0 =")]
    assert loop == _REVERSE_LOOP.format(zeros=zeros, mm=mm)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("spec", [SMALL, SMALL.replace(activation="identity"),
                                  SMALL.replace(head="softmax", loss="cross_entropy",
                                                topology="many_to_one")])
def test_streamed_tbptt_equals_the_stored_version(backend, spec):
    for tbptt, clip in (((1, 1), None), ((2, 5), 0.5), ((3, 3), None)):
        module = symrnn.compile(spec, backend, tbptt, clip)
        for T in (1, 7):
            params, x, y, h0 = _data(spec, T=T)
            if spec.loss == "cross_entropy":
                y = np.eye(spec.output_size)[np.argmax(y, axis=-1)]
            conv = (lambda a: torch.tensor(a)) if backend == "torch" else (lambda a: a)
            args = ({k: conv(v) for k, v in params.items()}, conv(x), conv(y), conv(h0))
            loss, full = module.loss_and_grad(*args)
            loss_s, streamed = module.loss_and_grad_streamed(*args, deltas=True)
            assert float(loss_s) == pytest.approx(float(loss), rel=1e-13)
            for name in streamed:
                np.testing.assert_allclose(np.asarray(streamed[name]), np.asarray(full[name]),
                                           rtol=1e-12, atol=1e-14)


def test_streamed_tbptt_holds_one_window_not_T():
    import tracemalloc

    spec = Spec(hidden_size=64, input_size=4, output_size=4)
    module = symrnn.compile(spec, "numpy", (10, 20))
    rng = np.random.default_rng(0)
    params = {k: rng.normal(scale=0.1, size=s) for k, s in module.PARAM_SHAPES.items()}
    x, y = rng.normal(size=(16, 2000, 4)), rng.normal(size=(16, 2000, 4))
    peaks = {}
    for name in ("loss_and_grad", "loss_and_grad_streamed"):
        tracemalloc.start()
        getattr(module, name)(params, x, y)
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    states = 2000 * 16 * 64 * 8  # one (T, B, H) float64 tensor
    assert peaks["loss_and_grad"] > 3 * states
    assert peaks["loss_and_grad_streamed"] < states / 4
