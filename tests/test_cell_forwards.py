"""The cells' forwards equal torch's: the engine's and the oracle's, in float64, to 1e-12.

``torch.nn.RNNCell`` (tanh, relu), ``torch.nn.LSTMCell`` and ``torch.nn.GRUCell``
get random weights; ours are read off them.  Torch's layout: ``weight_ih``
rows stacked (i, f, g, o) for the LSTM and (r, z, n) for the GRU (z is our
u), and two biases.  Layout ``notes`` merges them: b = b_ih + b_hh, except the
GRU's candidate, where b_n = b_in and b_hn = b_hn (inside r ⊙ (W_hn h + b_hn));
layout ``torch`` takes both as they are: b_x{g} = bias_ih rows, b_h{g} = bias_hh
rows (Elman b_xh, b_hh).  The engine runs its unrolled program with the NumPy
evaluator; the oracle substitutes floats into its own textbook equations.  The two
must also agree with each other for every activation, head, loss and layout (ŷ_t
and L_t included).

``gru_v1`` (Cho et al. 2014, reset before the recurrent product) has no torch
cell: the engine and the oracle are compared with a NumPy forward written out
below, on weights read off a ``torch.nn.GRUCell``, whose own (different) output it
must then not match.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from symrnn.checks.evaluate import run_forward
from symrnn.checks.oracle import forward_values, parameter_shapes
from symrnn.engine.expr import timed
from symrnn.engine.graph import unroll
from symrnn.spec import ACTIVATIONS, LAYOUTS, Spec

TOL = 1e-12
H, D, O, T = 3, 2, 2, 3  # noqa: E741


def _engine_forward(spec: Spec, params: dict, xs, initial: dict, ys=None) -> dict:
    program = unroll(spec, len(xs))
    env = {sym: np.asarray(params[name], dtype=float).reshape(sym.shape)
           for name, sym in program.params.items()}
    for s, sym in program.initial_states.items():
        env[sym] = np.asarray(initial[s], dtype=float).reshape(-1, 1)
    for t, x in enumerate(xs, start=1):
        env[timed("x", t, spec.input_size)] = np.asarray(x, dtype=float).reshape(-1, 1)
        y = np.zeros(spec.output_size) if ys is None else ys[t - 1]
        env[timed("y", t, spec.output_size)] = np.asarray(y, dtype=float).reshape(-1, 1)
    env = run_forward(program.equations, env, backend="numpy")
    out = {s: [env[timed(s, t, spec.hidden_size)].ravel() for t in range(1, len(xs) + 1)]
           for s in program.initial_states}
    out["yhat"] = {int(eq.time): env[eq.lhs].ravel() for eq in program.equations
                   if eq.lhs.name.startswith("yhat_")}
    out["loss"] = {int(eq.time): float(env[eq.lhs][0, 0]) for eq in program.equations
                   if eq.block == "loss"}
    return out


def _head(rng, bias=True) -> dict:
    out = {"W_hy": rng.normal(size=(O, H))}
    if bias:
        out["b_y"] = rng.normal(size=O)
    return out


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().astype(float)


def _run_torch(cell, xs, h0, c0=None):
    hs, cs = [], []
    h = torch.tensor(h0).reshape(1, -1)
    c = None if c0 is None else torch.tensor(c0).reshape(1, -1)
    for x in xs:
        xt = torch.tensor(x).reshape(1, -1)
        if c is None:
            h = cell(xt, h)
        else:
            h, c = cell(xt, (h, c))
            cs.append(_np(c).ravel())
        hs.append(_np(h).ravel())
    return hs, cs


def _torch_cell(kind: str, bias: bool, nonlinearity="tanh"):
    torch.manual_seed(7)
    if kind == "elman":
        cell = torch.nn.RNNCell(D, H, bias=bias, nonlinearity=nonlinearity)
    elif kind == "lstm":
        cell = torch.nn.LSTMCell(D, H, bias=bias)
    else:
        cell = torch.nn.GRUCell(D, H, bias=bias)
    return cell.double()


def _ours_from_torch(kind: str, cell, bias: bool, layout: str = "notes") -> dict:
    """Our parameters from torch's stacked ones (``kind`` gru_v1: the GRU's weights)."""
    w_ih, w_hh = _np(cell.weight_ih), _np(cell.weight_hh)
    b_ih = _np(cell.bias_ih) if bias else None
    b_hh = _np(cell.bias_hh) if bias else None
    two = layout == "torch"
    if kind == "elman":
        out = {"W_xh": w_ih, "W_hh": w_hh}
        if bias:
            out |= {"b_xh": b_ih, "b_hh": b_hh} if two else {"b_h": b_ih + b_hh}
        return out
    gates = "ifgo" if kind == "lstm" else "run"
    out = {}
    for k, g in enumerate(gates):
        rows = slice(k * H, (k + 1) * H)
        out[f"W_x{g}"], out[f"W_h{g}"] = w_ih[rows], w_hh[rows]
        if not bias:
            continue
        if two:
            out[f"b_x{g}"], out[f"b_h{g}"] = b_ih[rows], b_hh[rows]
        elif kind == "gru" and g == "n":
            out["b_n"], out["b_hn"] = b_ih[rows], b_hh[rows]
        else:
            out[f"b_{g}"] = b_ih[rows] + b_hh[rows]
    return out


CASES = [("elman", "tanh"), ("elman", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize(("kind", "activation"), CASES, ids=lambda c: str(c))
def test_engine_and_oracle_forwards_equal_torch_cells(kind, activation, bias, layout):
    rng = np.random.default_rng(3)
    cell = _torch_cell(kind, bias, activation)
    params = _ours_from_torch(kind, cell, bias, layout) | _head(rng, bias)
    xs = [rng.normal(size=D) for _ in range(T)]
    initial = {"h": rng.normal(size=H) * 0.5}
    if kind == "lstm":
        initial["c"] = rng.normal(size=H) * 0.5
    with torch.no_grad():
        hs, cs = _run_torch(cell, xs, initial["h"], initial.get("c"))
    spec = Spec(cell=kind, activation=activation, hidden_size=H, input_size=D,
                output_size=O, bias=bias, layout=layout)
    engine = _engine_forward(spec, params, xs, initial)
    oracle = forward_values(spec, params, xs, initial)
    for t in range(T):
        np.testing.assert_allclose(engine["h"][t], hs[t], rtol=0, atol=TOL)
        np.testing.assert_allclose(oracle["h"][t], hs[t], rtol=0, atol=TOL)
        if kind == "lstm":
            np.testing.assert_allclose(engine["c"][t], cs[t], rtol=0, atol=TOL)
            np.testing.assert_allclose(oracle["c"][t], cs[t], rtol=0, atol=TOL)
    assert max(np.abs(h).max() for h in hs) > 0.05  # not a trivially small state


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def _gru_v1_numpy(p: dict, xs, h0) -> list:
    """Cho et al. (2014) by hand: r, u = σ(W_h· h + W_x· x + b·),
    n = tanh(W_hn (r ⊙ h) + W_xn x + b_n), h ← (1 − u) ⊙ n + u ⊙ h; each gate's
    bias b_{g} (notes) or b_x{g} + b_h{g} (torch), zero without biases."""

    def bias(g):
        return sum((p[n] for n in (f"b_{g}", f"b_x{g}", f"b_h{g}") if n in p), np.zeros(H))

    h, hs = np.asarray(h0, dtype=float), []
    for x in xs:
        r = _sigmoid(p["W_hr"] @ h + p["W_xr"] @ x + bias("r"))
        u = _sigmoid(p["W_hu"] @ h + p["W_xu"] @ x + bias("u"))
        n = np.tanh(p["W_hn"] @ (r * h) + p["W_xn"] @ x + bias("n"))
        h = (1 - u) * n + u * h
        hs.append(h)
    return hs


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_gru_v1_engine_and_oracle_equal_a_numpy_reference(bias, layout):
    rng = np.random.default_rng(13)
    cell = _torch_cell("gru", bias)
    params = _ours_from_torch("gru_v1", cell, bias, layout) | _head(rng, bias)
    xs = [rng.normal(size=D) for _ in range(T)]
    h0 = rng.normal(size=H) * 0.5
    want = _gru_v1_numpy(params, xs, h0)
    spec = Spec(cell="gru_v1", hidden_size=H, input_size=D, output_size=O, bias=bias,
                layout=layout)
    engine = _engine_forward(spec, params, xs, {"h": h0})
    oracle = forward_values(spec, params, xs, {"h": h0})
    for t in range(T):
        np.testing.assert_allclose(engine["h"][t], want[t], rtol=0, atol=TOL)
        np.testing.assert_allclose(oracle["h"][t], want[t], rtol=0, atol=TOL)
    assert max(np.abs(h).max() for h in want) > 0.05
    with torch.no_grad():  # same weights, torch's GRU (reset after W_hn h): another cell
        hs, _ = _run_torch(cell, xs, h0)
    assert max(np.abs(want[t] - hs[t]).max() for t in range(T)) > 1e-3
    gru = forward_values(spec.replace(cell="gru"), _ours_from_torch("gru", cell, bias, layout)
                         | _head(rng, bias), xs, {"h": h0})
    for t in range(T):
        np.testing.assert_allclose(gru["h"][t], hs[t], rtol=0, atol=TOL)


def test_the_two_grus_differ_only_through_the_reset_order():
    """With one hidden unit and no b_hn, r ⊙ (W_hn h) = W_hn (r ⊙ h): the cells coincide;
    with two they do not (so proofs and mutations of gru_v1 need hidden ≥ 2)."""
    rng = np.random.default_rng(17)
    for hidden, differ in ((1, False), (2, True)):
        spec = Spec(cell="gru_v1", bias=False, hidden_size=hidden, input_size=1,
                    output_size=1)
        params = {n: rng.normal(size=s) for n, s in parameter_shapes(spec).items()}
        xs = [rng.normal(size=1) for _ in range(2)]
        h0 = rng.normal(size=hidden)
        v1 = forward_values(spec, params, xs, {"h": h0})["h"]
        v0 = forward_values(spec.replace(cell="gru"), params, xs, {"h": h0})["h"]
        gap = max(np.abs(a - b).max() for a, b in zip(v1, v0, strict=True))
        assert (gap > 1e-6) == differ, (hidden, gap)


def test_the_gru_candidate_biases_are_not_interchangeable():
    """Layout torch: b_xn sits outside the reset, b_hn inside; swapping them is visible."""
    rng = np.random.default_rng(19)
    cell = _torch_cell("gru", True)
    params = _ours_from_torch("gru", cell, True, "torch") | _head(rng)
    params["b_xn"], params["b_hn"] = params["b_hn"], params["b_xn"]
    xs = [rng.normal(size=D) for _ in range(2)]
    h0 = np.zeros(H)
    with torch.no_grad():
        hs, _ = _run_torch(cell, xs, h0)
    spec = Spec(cell="gru", layout="torch", hidden_size=H, input_size=D, output_size=O)
    assert np.abs(forward_values(spec, params, xs, {"h": h0})["h"][1] - hs[1]).max() > 1e-3
    assert np.abs(_engine_forward(spec, params, xs, {"h": h0})["h"][1] - hs[1]).max() > 1e-3


def test_the_weight_layout_is_torchs():
    """A swapped gate order would be visible: the LSTM's (i, f, g, o) is not (i, f, o, g)."""
    rng = np.random.default_rng(5)
    cell = _torch_cell("lstm", True)
    params = _ours_from_torch("lstm", cell, True) | _head(rng)
    params["W_xo"], params["W_xg"] = params["W_xg"], params["W_xo"]
    xs = [rng.normal(size=D) for _ in range(2)]
    initial = {"h": np.zeros(H), "c": np.zeros(H)}
    with torch.no_grad():
        hs, _ = _run_torch(cell, xs, initial["h"], initial["c"])
    oracle = forward_values(Spec(cell="lstm", hidden_size=H, input_size=D, output_size=O),
                            params, xs, initial)
    assert np.abs(oracle["h"][1] - hs[1]).max() > 1e-3


HEADS = [("identity", "mse"), ("sigmoid", "mse"), ("softmax", "mse"),
         ("softmax", "cross_entropy")]


@pytest.mark.parametrize(("head", "loss"), HEADS, ids=lambda c: str(c))
@pytest.mark.parametrize("topology", ["many_to_many", "many_to_one"])
@pytest.mark.parametrize("cell_activation_layout",
                         [("elman", a, "notes") for a in ACTIVATIONS] + [("elman", "tanh", "torch")]
                         + [(c, "tanh", la) for c in ("lstm", "gru", "gru_v1") for la in LAYOUTS],
                         ids=lambda c: "-".join(c))
def test_engine_and_oracle_forwards_agree_on_every_spec(cell_activation_layout, topology, head,
                                                        loss):
    kind, activation, layout = cell_activation_layout
    spec = Spec(cell=kind, activation=activation, head=head, loss=loss, topology=topology,
                hidden_size=2, input_size=2, output_size=3, layout=layout)
    rng = np.random.default_rng(11)
    params = {name: rng.normal(size=shape) for name, shape in parameter_shapes(spec).items()}
    xs = [rng.normal(size=2) for _ in range(3)]
    ys = [rng.dirichlet(np.ones(3)) for _ in range(3)]
    initial = {"h": rng.normal(size=2), "c": rng.normal(size=2)}
    engine = _engine_forward(spec, params, xs, initial, ys)
    oracle = forward_values(spec, params, xs, initial, ys)
    for s in ("h", "c") if kind == "lstm" else ("h",):
        for t in range(3):
            np.testing.assert_allclose(engine[s][t], oracle[s][t], rtol=0, atol=TOL)
    assert engine["yhat"].keys() == oracle["yhat"].keys()
    for t, yhat in oracle["yhat"].items():
        np.testing.assert_allclose(engine["yhat"][t], yhat, rtol=0, atol=TOL)
        assert engine["loss"][t] == pytest.approx(oracle["loss"][t], abs=TOL)
