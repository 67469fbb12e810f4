"""Issue 13, frictions 1 and 2: conventions a hand-written BPTT function needs, and every
cell and layout.  Each function below is written the way tutorials and course code write
it (NumPy, its own names and layouts); each is declared correct once its convention is
declared, and a buggy or mis-declared variant is declared wrong."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from symrnn.cli.app import cli
from symrnn.errors import SymrnnError
from symrnn.formula.function import check_function
from symrnn.spec import Spec
from symrnn.testing import Conventions, assert_gradient_matches

CHAR = Spec(head="softmax", loss="cross_entropy", hidden_size=3, input_size=4, output_size=4)
MSE = Spec(hidden_size=3, input_size=2, output_size=2)
ELMAN_GRADS = ("W_xh", "W_hh", "b_h", "W_hy", "b_y")


def _softmax(z):
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


# ------------------------------------------------------------ Elman, column vectors


def min_char_rnn(inputs, targets, Wxh, Whh, Why, bh, by, hprev=None):  # noqa: N803
    """Karpathy's lossFun: integer inputs made one-hot inside, h_0 = 0 unless given."""
    xs, hs, ps, loss = {}, {-1: np.zeros((Whh.shape[0], 1)) if hprev is None else hprev}, {}, 0
    for t in range(len(inputs)):
        xs[t] = np.zeros((Wxh.shape[1], 1))
        xs[t][inputs[t]] = 1
        hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
        ps[t] = _softmax(Why @ hs[t] + by)
        loss += -np.log(ps[t][targets[t], 0])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)  # noqa: N806
    dbh, dby, dhnext = np.zeros_like(bh), np.zeros_like(by), np.zeros_like(hs[0])
    for t in reversed(range(len(inputs))):
        dy = ps[t].copy()
        dy[targets[t]] -= 1
        dWhy += dy @ hs[t].T
        dby += dy
        dhraw = (1 - hs[t] * hs[t]) * (Why.T @ dy + dhnext)
        dbh += dhraw
        dWxh += dhraw @ xs[t].T
        dWhh += dhraw @ hs[t - 1].T
        dhnext = Whh.T @ dhraw
    return loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs) - 1]


CHAR_RNN = Conventions(initial_state=None, initial_value="zero", input_kind="index",
                       target_kind="index")


@pytest.mark.parametrize("wrt", ELMAN_GRADS)
def test_min_char_rnn_zero_state_and_integer_inputs(wrt):
    assert check_function(min_char_rnn, CHAR, wrt=wrt, conventions=CHAR_RNN).ok


def test_undeclared_zero_state_is_wrong_and_hinted():
    conv = Conventions(initial_state=None, input_kind="index", target_kind="index")
    verdict = check_function(min_char_rnn, CHAR, wrt="W_hh", conventions=conv)
    assert not verdict.ok
    assert any("initial_value='zero'" in n for n in verdict.notes)


def test_undeclared_integer_inputs_is_a_clear_error():
    conv = Conventions(initial_state=None, initial_value="zero", target_kind="index")
    with pytest.raises(SymrnnError, match=r"the function raised IndexError.*input_kind"):
        check_function(min_char_rnn, CHAR, wrt="W_hh", conventions=conv)


def test_given_initial_state():
    h0 = np.array([0.3, -0.2, 0.5])
    conv = Conventions(initial_state="hprev", initial_value=h0, input_kind="index",
                       target_kind="index")
    assert check_function(min_char_rnn, CHAR, wrt="W_hh", conventions=conv).ok

    def fixed_start(inputs, targets, Wxh, Whh, Why, bh, by):  # noqa: N803
        return min_char_rnn(inputs, targets, Wxh, Whh, Why, bh, by, h0.reshape(3, 1))

    given = Conventions(initial_state=None, initial_value={"h": h0}, input_kind="index",
                        target_kind="index")
    assert check_function(fixed_start, CHAR, wrt="W_xh", conventions=given).ok
    assert not check_function(fixed_start, CHAR, wrt="W_xh", conventions=CHAR_RNN).ok


def embedding_rnn(inputs, targets, E, Whh, Why, bh, by):  # noqa: N803
    """Row-vector, 1-D code with an embedding table E (V, H): a_t = E[x_t] + h W + b."""
    hs, ps, loss = [np.zeros(Whh.shape[0])], [], 0.0
    for i, target in zip(inputs, targets, strict=True):
        hs.append(np.tanh(E[i] + hs[-1] @ Whh + bh))
        z = hs[-1] @ Why + by
        ps.append(np.exp(z - z.max()) / np.exp(z - z.max()).sum())
        loss -= np.log(ps[-1][target])
    dE, dWhh, dWhy = np.zeros_like(E), np.zeros_like(Whh), np.zeros_like(Why)  # noqa: N806
    dbh, dby, carry = np.zeros_like(bh), np.zeros_like(by), np.zeros_like(bh)
    for t in reversed(range(len(inputs))):
        dz = ps[t].copy()
        dz[targets[t]] -= 1
        dWhy += np.outer(hs[t + 1], dz)
        dby += dz
        da = (1 - hs[t + 1] ** 2) * (dz @ Why.T + carry)
        dE[inputs[t]] += da
        dWhh += np.outer(hs[t], da)
        dbh += da
        carry = da @ Whh.T
    return loss, dE, dWhh, dWhy, dbh, dby


def test_embedding_table_row_vectors_1d():
    conv = Conventions(params={"W_xh": "E", "W_hh": "Whh", "W_hy": "Why", "b_h": "bh",
                               "b_y": "by"},
                       returns=("loss", "W_xh", "W_hh", "W_hy", "b_h", "b_y"),
                       vectors="row", initial_state=None, initial_value="zero",
                       input_kind="index", target_kind="index")
    assert_gradient_matches(embedding_rnn, CHAR, conventions=conv)  # every gradient


def one_hot_rnn(inputs, targets, hprev, Wxh, Whh, Why, bh, by):  # noqa: N803
    """min-char-rnn taking the one-hot vectors themselves (as its xs[t])."""
    indices = [int(np.argmax(x)) for x in inputs]
    return min_char_rnn(indices, targets, Wxh, Whh, Why, bh, by, hprev)


def test_one_hot_inputs():
    conv = Conventions(input_kind="one_hot", target_kind="index")
    assert check_function(one_hot_rnn, CHAR, wrt="W_xh", conventions=conv).ok


def flat_rnn(inputs, targets, h0, W, U, b, V, c):  # noqa: N803
    """1-D vectors, symrnn's weights (W @ h), a list of steps, MSE."""
    hs, ys = [h0], []
    for x in inputs:
        hs.append(np.tanh(W @ hs[-1] + U @ x + b))
        ys.append(V @ hs[-1] + c)
    grads = [np.zeros_like(p) for p in (W, U, b, V, c)]
    carry = np.zeros_like(h0)
    for t in reversed(range(len(inputs))):
        e = ys[t] - targets[t]
        grads[3] += np.outer(e, hs[t + 1])
        grads[4] += e
        d = (1 - hs[t + 1] ** 2) * (V.T @ e + carry)
        grads[0] += np.outer(d, hs[t])
        grads[1] += np.outer(d, inputs[t])
        grads[2] += d
        carry = W.T @ d
    loss = sum(0.5 * np.sum((y - t) ** 2) for y, t in zip(ys, targets, strict=True))
    return (loss, *grads)


FLAT = Conventions(params={"W": "W", "U": "U", "b": "b", "V": "V", "c": "c"},
                   returns=("loss", "W", "U", "b", "V", "c"), vectors="1d", initial_state="h0")


def test_1d_vectors_and_biases():
    assert_gradient_matches(flat_rnn, MSE, conventions=FLAT)


# ------------------------------------------------------------ batches, means, layouts


def batched_rnn(x, y, h0, Wx, Wh, b, Wy, c, *, batch_first=True, mean=True):  # noqa: N803
    """Row-vector minibatch code: x (B, T, D) (or (T, B, D)), weights (in, out), 1-D
    biases, loss = mean over the batch of Σ_t ½‖ŷ − y‖²."""
    if not batch_first:
        x, y = x.transpose(1, 0, 2), y.transpose(1, 0, 2)
    B, T = x.shape[:2]  # noqa: N806
    hs, outs = [h0], []
    for t in range(T):
        hs.append(np.tanh(x[:, t] @ Wx + hs[-1] @ Wh + b))
        outs.append(hs[-1] @ Wy + c)
    n = B if mean else 1
    loss = sum(0.5 * np.sum((outs[t] - y[:, t]) ** 2) for t in range(T)) / n
    grads = [np.zeros_like(p) for p in (Wx, Wh, b, Wy, c)]
    carry = np.zeros_like(h0)
    for t in reversed(range(T)):
        e = (outs[t] - y[:, t]) / n
        grads[3] += hs[t + 1].T @ e
        grads[4] += e.sum(axis=0)
        d = (1 - hs[t + 1] ** 2) * (e @ Wy.T + carry)
        grads[0] += x[:, t].T @ d
        grads[1] += hs[t].T @ d
        grads[2] += d.sum(axis=0)
        carry = d @ Wh.T
    return (loss, *grads)


BATCHED = Conventions(params={"W_xh": "Wx", "W_hh": "Wh", "b_h": "b", "W_hy": "Wy",
                              "b_y": "c"},
                      inputs="x", targets="y", initial_state="h0",
                      returns=("loss", "W_xh", "W_hh", "b_h", "W_hy", "b_y"),
                      vectors="row", batch_axis=0, sequence="batch_first", bias_ndim=1,
                      batch=4, batch_reduction="mean")


def test_batch_first_mean_over_batch():
    assert_gradient_matches(batched_rnn, MSE, conventions=BATCHED)
    as_sum = replace(BATCHED, batch_reduction="sum")
    verdict = check_function(batched_rnn, MSE, wrt="W_hh", conventions=as_sum)
    assert not verdict.ok and verdict.counterexample is not None


def test_time_major_sum_over_batch():
    def time_major(x, y, h0, Wx, Wh, b, Wy, c):  # noqa: N803
        return batched_rnn(x, y, h0, Wx, Wh, b, Wy, c, batch_first=False, mean=False)

    conv = replace(BATCHED, sequence="time_major", batch_reduction="sum", batch=3)
    assert check_function(time_major, MSE, wrt="W_xh", conventions=conv).ok
    batch_first = replace(conv, sequence="batch_first")
    # B = T = 3: (T, B, D) read as (B, T, D) mixes steps and sequences
    assert not check_function(time_major, MSE, wrt="W_xh", conventions=batch_first).ok


def test_mean_over_time_and_batch():
    def both_means(x, y, h0, Wx, Wh, b, Wy, c):  # noqa: N803
        out = batched_rnn(x, y, h0, Wx, Wh, b, Wy, c)
        return tuple(v / x.shape[1] for v in out)

    conv = replace(BATCHED, time="mean")
    assert check_function(both_means, MSE, wrt="b_h", conventions=conv).ok
    assert not check_function(both_means, MSE, wrt="b_h", conventions=BATCHED).ok


def torch_style_rnn(inputs, targets, hprev, w_ih, w_hh, b_ih, b_hh, w_y, b_y, *,
                    forget_bias_hh=False):
    """torch.nn.RNN's parametrisation: two biases, h = tanh(W_ih x + b_ih + W_hh h + b_hh)."""
    hs, ys = [hprev], []
    for x in inputs:
        hs.append(np.tanh(w_ih @ x + b_ih + w_hh @ hs[-1] + b_hh))
        ys.append(w_y @ hs[-1] + b_y)
    grads = [np.zeros_like(p) for p in (w_ih, w_hh, b_ih, b_hh, w_y, b_y)]
    carry = np.zeros_like(hprev)
    for t in reversed(range(len(inputs))):
        e = ys[t] - targets[t]
        grads[4] += e @ hs[t + 1].T
        grads[5] += e
        d = (1 - hs[t + 1] ** 2) * (w_y.T @ e + carry)
        grads[0] += d @ inputs[t].T
        grads[1] += d @ hs[t].T
        grads[2] += d
        grads[3] += 0 if forget_bias_hh else d
        carry = w_hh.T @ d
    return (0.5 * sum(float(np.sum((y - t) ** 2)) for y, t in zip(ys, targets, strict=True)),
            *grads)


TORCH_STYLE = Conventions(params={"weight_ih_l0": "w_ih", "weight_hh_l0": "w_hh",
                                  "bias_ih_l0": "b_ih", "bias_hh_l0": "b_hh", "W_hy": "w_y",
                                  "b_y": "b_y"},
                          returns=("loss", "weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                   "bias_hh_l0", "W_hy", "b_y"), biases="two")


def test_two_biases_torch_names():
    for wrt in ("b_xh", "b_hh", "W_xh"):
        assert check_function(torch_style_rnn, MSE, wrt=wrt, conventions=TORCH_STYLE).ok

    def forgot(*args, **kwargs):
        return torch_style_rnn(*args, **kwargs, forget_bias_hh=True)

    assert not check_function(forgot, MSE, wrt="b_hh", conventions=TORCH_STYLE).ok
    assert check_function(forgot, MSE, wrt="b_xh", conventions=TORCH_STYLE).ok


# ------------------------------------------------------------ truncation, clipping, updates


def elman_bptt(inputs, targets, hprev, Wxh, Whh, Why, bh, by, *, k1=None, k2=None,  # noqa: N803
               clip=None, clip_value=None, mean=False, lr=None):
    """MSE Elman BPTT, optionally truncated the Williams–Peng way (every k1 steps the
    chunk's losses flow back k2 steps), clipped and returned as an SGD step."""
    T = len(inputs)  # noqa: N806
    k1, k2 = k1 or T, k2 or T
    hs, ys = {0: hprev}, {}
    for t in range(1, T + 1):
        hs[t] = np.tanh(Wxh @ inputs[t - 1] + Whh @ hs[t - 1] + bh)
        ys[t] = Why @ hs[t] + by
    grads = [np.zeros_like(p) for p in (Wxh, Whh, Why, bh, by)]
    for start in range(1, T + 1, k1):
        stop = min(start + k1 - 1, T)
        carry = np.zeros_like(hprev)
        for t in range(stop, max(stop - k2 + 1, 1) - 1, -1):
            dh = carry
            if t >= start:  # this chunk's loss at t
                e = ys[t] - targets[t - 1]
                grads[2] += e @ hs[t].T
                grads[4] += e
                dh = dh + Why.T @ e
            d = (1 - hs[t] ** 2) * dh
            grads[0] += d @ inputs[t - 1].T
            grads[1] += d @ hs[t - 1].T
            grads[3] += d
            carry = Whh.T @ d
    loss = sum(0.5 * float(np.sum((ys[t] - targets[t - 1]) ** 2)) for t in ys)
    if mean:
        loss, grads = loss / T, [g / T for g in grads]
    if clip is not None:
        norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads))
        grads = [g * (clip / norm) for g in grads] if norm > clip else grads
    if clip_value is not None:
        grads = [np.clip(g, -clip_value, clip_value) for g in grads]
    if lr is not None:
        grads = [-lr * g for g in grads]
    return (loss, *grads, hs[T])


def variant(**options):
    def fn(inputs, targets, hprev, Wxh, Whh, Why, bh, by):  # noqa: N803
        return elman_bptt(inputs, targets, hprev, Wxh, Whh, Why, bh, by, **options)

    return fn


@pytest.mark.parametrize("k1,k2", [(2, 3), (2, 2), (1, 2)])
def test_truncated_bptt(k1, k2):
    fn = variant(k1=k1, k2=k2)
    declared = Conventions(tbptt=(k1, k2))
    for wrt in ("W_hh", "W_xh", "b_h"):
        assert check_function(fn, MSE, wrt=wrt, conventions=declared, T=5).ok
    assert not check_function(fn, MSE, wrt="W_hh", conventions=Conventions(), T=5).ok
    other = Conventions(tbptt=(k1, k2 + 1))
    assert not check_function(fn, MSE, wrt="W_hh", conventions=other, T=5).ok


def test_karpathy_chunks_are_tbptt_k_k():
    """min-char-rnn's training loop: chunks of seq_length, hprev carried, full BPTT in
    each chunk, gradients summed: tbptt=(k, k)."""
    def chunked(inputs, targets, hprev, Wxh, Whh, Why, bh, by):  # noqa: N803
        total, h = None, hprev
        for s in range(0, len(inputs), 2):
            out = elman_bptt(inputs[s:s + 2], targets[s:s + 2], h, Wxh, Whh, Why, bh, by)
            total = out[:-1] if total is None else tuple(a + b for a, b in
                                                         zip(total, out[:-1], strict=True))
            h = out[-1]
        return (*total, h)

    assert check_function(chunked, MSE, wrt="W_hh", conventions=Conventions(tbptt=(2, 2)),
                          T=6).ok


@pytest.mark.parametrize("options,declared", [
    ({"clip": 0.3}, {"clip": 0.3}),
    ({"clip_value": 0.05}, {"clip_value": 0.05}),
    ({"clip": 0.02, "mean": True}, {"clip": 0.02, "time": "mean"}),
    ({"clip_value": 0.1, "k1": 2, "k2": 3}, {"clip_value": 0.1, "tbptt": (2, 3)}),
])
def test_clipping_as_the_function_does_it(options, declared):
    fn = variant(**options)
    for wrt in ("W_hh", "W_hy"):
        assert check_function(fn, MSE, wrt=wrt, conventions=Conventions(**declared), T=4).ok
    undeclared = {k: v for k, v in declared.items() if not k.startswith("clip")}
    assert not check_function(fn, MSE, wrt="W_hh", conventions=Conventions(**undeclared),
                              T=4).ok


def test_returned_updates():
    update = Conventions(returned="update", lr=0.1)
    assert check_function(variant(lr=0.1), MSE, wrt="W_xh", conventions=update).ok
    negative = Conventions(returned="negative_gradient")
    assert check_function(variant(lr=1.0), MSE, wrt="W_xh", conventions=negative).ok
    verdict = check_function(variant(lr=1.0), MSE, wrt="W_xh", conventions=Conventions())
    assert not verdict.ok and "sign" in verdict.diagnosis_classes
    assert not check_function(variant(lr=0.1), MSE, wrt="W_xh",
                              conventions=Conventions(returned="update", lr=0.2)).ok


def float32_rnn(inputs, targets, hprev, Wxh, Whh, Why, bh, by, *, derivative=True):  # noqa: N803
    """Everything in float32, whatever it is given."""
    f32 = [np.asarray(a, dtype=np.float32) for a in (hprev, Wxh, Whh, Why, bh, by)]
    hprev, Wxh, Whh, Why, bh, by = f32  # noqa: N806
    xs = [np.asarray(x, dtype=np.float32) for x in inputs]
    ys = [np.asarray(y, dtype=np.float32) for y in targets]
    hs, outs = [hprev], []
    for x in xs:
        hs.append(np.tanh(Wxh @ x + Whh @ hs[-1] + bh))
        outs.append(Why @ hs[-1] + by)
    grads = [np.zeros_like(p) for p in (Wxh, Whh, Why, bh, by)]
    carry = np.zeros_like(hprev)
    for t in reversed(range(len(xs))):
        e = outs[t] - ys[t]
        grads[2] += e @ hs[t + 1].T
        grads[4] += e
        dh = Why.T @ e + carry
        d = (1 - hs[t + 1] ** 2) * dh if derivative else dh
        grads[0] += d @ xs[t].T
        grads[1] += d @ hs[t].T
        grads[3] += d
        carry = Whh.T @ d
    loss = sum(0.5 * float(np.sum((o - y) ** 2)) for o, y in zip(outs, ys, strict=True))
    assert all(g.dtype == np.float32 for g in grads)
    return (loss, *grads, hs[-1])


def test_float32_with_its_tolerance():
    f32 = Conventions(dtype="float32")
    verdict = check_function(float32_rnn, MSE, wrt="W_hh", conventions=f32, T=5)
    assert verdict.ok
    assert any("float32" in n and "rtol 0.0001" in n for n in verdict.notes)
    # float64's rtol 1e-7 sees float32 rounding as a mismatch
    assert not check_function(float32_rnn, MSE, wrt="W_hh", conventions=Conventions(), T=5).ok

    def no_derivative(**kwargs):
        return float32_rnn(**kwargs, derivative=False)

    assert not check_function(no_derivative, MSE, wrt="W_hh", conventions=f32, T=5).ok


# ------------------------------------------------------------ gated cells, stacked weights

LSTM = Spec(cell="lstm", hidden_size=2, input_size=3, output_size=2)
LSTM_GRADS = ("W_xi", "W_hf", "W_xg", "W_ho", "b_i", "b_f", "b_g", "b_o", "W_hy")


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def lstm_stacked(x, y, h0, c0, Wx, Wh, b, Wy, by, *, order="ifgo"):  # noqa: N803
    """A NumPy LSTM with one (4H, D) input weight, (4H, H) recurrent weight and (4H, 1)
    bias, the gates' row blocks in ``order``; MSE head."""
    H = Wh.shape[1]  # noqa: N806
    rows = {g: slice(k * H, (k + 1) * H) for k, g in enumerate(order)}
    hs, cs, cache, outs = [h0], [c0], [], []
    for x_t in x:
        a = Wx @ x_t + Wh @ hs[-1] + b
        i, f, o = (_sigmoid(a[rows[g]]) for g in "ifo")
        g = np.tanh(a[rows["g"]])
        cs.append(f * cs[-1] + i * g)
        hs.append(o * np.tanh(cs[-1]))
        cache.append((i, f, g, o))
        outs.append(Wy @ hs[-1] + by)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)  # noqa: N806
    dWy, dby = np.zeros_like(Wy), np.zeros_like(by)  # noqa: N806
    dh_next, dc_next = np.zeros_like(h0), np.zeros_like(c0)
    for t in reversed(range(len(x))):
        i, f, g, o = cache[t]
        e = outs[t] - y[t]
        dWy += e @ hs[t + 1].T
        dby += e
        dh = Wy.T @ e + dh_next
        tc = np.tanh(cs[t + 1])
        dc = dc_next + dh * o * (1 - tc ** 2)
        da = np.zeros_like(b)
        da[rows["i"]] = dc * g * i * (1 - i)
        da[rows["f"]] = dc * cs[t] * f * (1 - f)
        da[rows["g"]] = dc * i * (1 - g ** 2)
        da[rows["o"]] = dh * tc * o * (1 - o)
        dWx += da @ x[t].T
        dWh += da @ hs[t].T
        db += da
        dh_next, dc_next = Wh.T @ da, dc * f
    loss = sum(0.5 * float(np.sum((o - t) ** 2)) for o, t in zip(outs, y, strict=True))
    return loss, dWx, dWh, db, dWy, dby


def lstm_in(order):
    def fn(x, y, h0, c0, Wx, Wh, b, Wy, by):  # noqa: N803
        return lstm_stacked(x, y, h0, c0, Wx, Wh, b, Wy, by, order=order)

    return fn


def stacked_conventions(gate_order):
    return Conventions(params={"weight_ih": "Wx", "weight_hh": "Wh", "bias_ih": "b",
                               "W_hy": "Wy", "b_y": "by"},
                       inputs="x", targets="y", initial_state={"h": "h0", "c": "c0"},
                       returns=("loss", "weight_ih", "weight_hh", "bias_ih", "W_hy", "b_y"),
                       gate_order=gate_order)


@pytest.mark.parametrize("order", ["ifgo", "gifo", "ifog"])
def test_lstm_stacked_weights_in_declared_gate_order(order):
    assert_gradient_matches(lstm_in(order), LSTM, conventions=stacked_conventions(order))


def test_lstm_wrong_gate_order_declared_is_wrong():
    with pytest.raises(AssertionError, match="WRONG"):
        assert_gradient_matches(lstm_in("gifo"), LSTM, conventions=stacked_conventions("ifgo"))
    with pytest.raises(SymrnnError, match="gate order 'ifgx'"):
        check_function(lstm_in("ifgo"), LSTM, wrt="W_xi",
                       conventions=stacked_conventions("ifgx"))


def test_lstm_batch_of_columns_clipped():
    """A batched LSTM (x_t (D, B) columns) that clips every gradient entry: the engine's
    clipped gradient of the batch's summed loss."""
    def batched(x, y, h0, c0, **p):
        B = h0.shape[1]  # noqa: N806
        outs = [lstm_stacked([v[:, [b]] for v in x], [v[:, [b]] for v in y], h0[:, [b]],
                             c0[:, [b]], **p, order="gifo") for b in range(B)]
        loss, *grads = (sum(o[i] for o in outs) for i in range(len(outs[0])))
        return (loss, *(np.clip(g, -0.05, 0.05) for g in grads))

    conv = replace(stacked_conventions("gifo"), batch=3, clip_value=0.05)
    assert_gradient_matches(batched, LSTM, conventions=conv)
    with pytest.raises(AssertionError):
        assert_gradient_matches(batched, LSTM, wrt="W_xi",
                                conventions=replace(conv, clip_value=None))


def test_lstm_keras_row_layout_ifco():
    """Keras' LSTM: kernel (D, 4H), recurrent_kernel (H, 4H), bias (4H,), gates i, f, c, o;
    row vectors.  Written as the column function on transposes."""
    def keras_lstm(x, y, h0, c0, kernel, recurrent_kernel, bias, Wy, by):  # noqa: N803
        col = [v.reshape(-1, 1) for v in x]
        out = lstm_stacked(col, [v.reshape(-1, 1) for v in y], h0.reshape(-1, 1),
                           c0.reshape(-1, 1), kernel.T, recurrent_kernel.T,
                           bias.reshape(-1, 1), Wy.T, by.reshape(-1, 1), order="ifgo")
        loss, dWx, dWh, db, dWy, dby = out  # noqa: N806
        return loss, dWx.T, dWh.T, db.ravel(), dWy.T, dby.ravel()

    conv = Conventions(params={"weight_ih": "kernel", "weight_hh": "recurrent_kernel",
                               "bias_ih": "bias", "W_hy": "Wy", "b_y": "by"},
                       inputs="x", targets="y", initial_state={"h": "h0", "c": "c0"},
                       returns=("loss", "weight_ih", "weight_hh", "bias_ih", "W_hy", "b_y"),
                       vectors="row", gate_order="ifco")
    assert_gradient_matches(keras_lstm, LSTM, conventions=conv)


def test_lstm_per_gate_names():
    """The notes' per-gate names: the function takes W_xi, W_hi, b_i, ... separately."""
    gates = "ifgo"

    def per_gate(x, y, h0, c0, Wy, by, **p):  # noqa: N803
        Wx = np.vstack([p[f"W_x{g}"] for g in gates])  # noqa: N806
        Wh = np.vstack([p[f"W_h{g}"] for g in gates])  # noqa: N806
        b = np.vstack([p[f"b_{g}"] for g in gates])
        loss, dWx, dWh, db, dWy, dby = lstm_stacked(x, y, h0, c0, Wx, Wh, b, Wy, by)  # noqa: N806
        split = [np.split(a, 4) for a in (dWx, dWh, db)]
        return (loss, *(s[k] for k in range(4) for s in split), dWy, dby)

    names = {f"{w}{g}": f"{w}{g}" for g in gates for w in ("W_x", "W_h", "b_")}
    conv = Conventions(params={**names, "W_hy": "Wy", "b_y": "by"}, inputs="x", targets="y",
                       initial_state={"h": "h0", "c": "c0"},
                       returns=("loss", *(f"{w}{g}" for g in gates
                                          for w in ("W_x", "W_h", "b_")), "W_hy", "b_y"))
    for wrt in LSTM_GRADS:
        assert check_function(per_gate, LSTM, wrt=wrt, conventions=conv).ok


GRU = Spec(cell="gru_v1", hidden_size=3, input_size=2, output_size=2)


def gru_reset_before(inputs, targets, hprev, Wxr, Whr, br, Wxz, Whz, bz, Wxn, Whn, bn,  # noqa: N803
                     Wy, by, *, reset_after=False):
    """The GRU most NumPy tutorials write (Cho et al.): n = tanh(Wxn x + Whn (r*h) + bn),
    h = (1 - z) * n + z * h.  ``reset_after``: torch's n = tanh(Wxn x + bn + r*(Whn h))."""
    hs, cache, outs = [hprev], [], []
    for x in inputs:
        h = hs[-1]
        r = _sigmoid(Wxr @ x + Whr @ h + br)
        z = _sigmoid(Wxz @ x + Whz @ h + bz)
        m = Whn @ h if reset_after else Whn @ (r * h)
        n = np.tanh(Wxn @ x + (r * m if reset_after else m) + bn)
        hs.append((1 - z) * n + z * h)
        cache.append((r, z, n, m))
        outs.append(Wy @ hs[-1] + by)
    params = (Wxr, Whr, br, Wxz, Whz, bz, Wxn, Whn, bn, Wy, by)
    g = {k: np.zeros_like(p) for k, p in zip(range(11), params, strict=True)}
    dh_next = np.zeros_like(hprev)
    for t in reversed(range(len(inputs))):
        r, z, n, m = cache[t]
        h, x = hs[t], inputs[t]
        e = outs[t] - targets[t]
        g[9] += e @ hs[t + 1].T
        g[10] += e
        dh = Wy.T @ e + dh_next
        dn = dh * (1 - z) * (1 - n ** 2)
        dz = dh * (h - n) * z * (1 - z)
        if reset_after:
            dr = dn * m * r * (1 - r)
            g[7] += (dn * r) @ h.T
            dh_prev = dh * z + Whn.T @ (dn * r)
        else:
            dr = (Whn.T @ dn) * h * r * (1 - r)
            g[7] += dn @ (r * h).T
            dh_prev = dh * z + (Whn.T @ dn) * r
        for k, d in ((0, dr), (3, dz), (6, dn)):
            g[k] += d @ x.T
            g[k + 2] += d
        g[1] += dr @ h.T
        g[4] += dz @ h.T
        dh_next = dh_prev + Whr.T @ dr + Whz.T @ dz
    loss = sum(0.5 * float(np.sum((o - y) ** 2)) for o, y in zip(outs, targets, strict=True))
    return (loss, *g.values())


GRU_NAMES = ("W_xr", "W_hr", "b_r", "W_xu", "W_hu", "b_u", "W_xn", "W_hn", "b_n", "W_hy",
             "b_y")
GRU_CONV = Conventions(params=dict(zip(GRU_NAMES, ("Wxr", "Whr", "br", "Wxz", "Whz", "bz",
                                                   "Wxn", "Whn", "bn", "Wy", "by"),
                                       strict=True)),
                       returns=("loss", *GRU_NAMES))


def test_gru_reset_before():
    assert_gradient_matches(gru_reset_before, GRU, conventions=GRU_CONV)
    with pytest.raises(AssertionError):  # the reset-after cell is another model
        assert_gradient_matches(gru_reset_before, GRU.replace(cell="gru"), wrt="W_hr",
                                conventions=GRU_CONV)


def test_gru_reset_after_torch_stacks_rzn():
    """torch.nn.GRU's layout: weight_ih (3H, D) in r, z, n order, two biases; the function
    works on per-gate views of them."""
    def torch_gru(inputs, targets, hprev, w_ih, w_hh, b_ih, b_hh, Wy, by):  # noqa: N803
        Wx, Wh, bx, bh = (np.split(a, 3) for a in (w_ih, w_hh, b_ih, b_hh))  # noqa: N806
        # b_hr, b_hz add to the gates' biases; b_hn sits inside r * (W_hn h + b_hn)
        inner = dict(Wxr=Wx[0], Whr=Wh[0], br=bx[0] + bh[0], Wxz=Wx[1], Whz=Wh[1],
                     bz=bx[1] + bh[1], Wxn=Wx[2], Whn=Wh[2], bhn=bh[2], bn=bx[2])
        return gru_with_bhn(inputs, targets, hprev, inner, Wy, by)

    def gru_with_bhn(inputs, targets, hprev, p, Wy, by):  # noqa: N803
        Whn, bhn = p["Whn"], p["bhn"]  # noqa: N806
        hs, cache, outs = [hprev], [], []
        for x in inputs:
            h = hs[-1]
            r = _sigmoid(p["Wxr"] @ x + p["Whr"] @ h + p["br"])
            z = _sigmoid(p["Wxz"] @ x + p["Whz"] @ h + p["bz"])
            m = Whn @ h + bhn
            n = np.tanh(p["Wxn"] @ x + p["bn"] + r * m)
            hs.append((1 - z) * n + z * h)
            cache.append((r, z, n, m))
            outs.append(Wy @ hs[-1] + by)
        dWx = [np.zeros_like(p["Wxr"]) for _ in range(3)]  # noqa: N806
        dWh = [np.zeros_like(p["Whr"]) for _ in range(3)]  # noqa: N806
        dbx = [np.zeros_like(p["br"]) for _ in range(3)]
        dbh = [np.zeros_like(p["br"]) for _ in range(3)]
        dWy, dby, dh_next = np.zeros_like(Wy), np.zeros_like(by), np.zeros_like(hprev)  # noqa: N806
        for t in reversed(range(len(inputs))):
            r, z, n, m = cache[t]
            h, x = hs[t], inputs[t]
            e = outs[t] - targets[t]
            dWy += e @ hs[t + 1].T
            dby += e
            dh = Wy.T @ e + dh_next
            dn = dh * (1 - z) * (1 - n ** 2)
            dz = dh * (h - n) * z * (1 - z)
            dr = dn * m * r * (1 - r)
            dm = dn * r
            for k, d in enumerate((dr, dz, dn)):
                dWx[k] += d @ x.T
                dbx[k] += d
            for k, d in enumerate((dr, dz, dm)):
                dWh[k] += d @ h.T
                dbh[k] += d
            dh_next = dh * z + p["Whr"].T @ dr + p["Whz"].T @ dz + Whn.T @ dm
        loss = sum(0.5 * float(np.sum((o - y) ** 2)) for o, y in zip(outs, targets,
                                                                      strict=True))
        return (loss, np.vstack(dWx), np.vstack(dWh), np.vstack(dbx), np.vstack(dbh), dWy,
                dby)

    conv = Conventions(params={"weight_ih": "w_ih", "weight_hh": "w_hh", "bias_ih": "b_ih",
                               "bias_hh": "b_hh", "W_hy": "Wy", "b_y": "by"},
                       returns=("loss", "weight_ih", "weight_hh", "bias_ih", "bias_hh",
                                "W_hy", "b_y"), biases="two", gate_order="rzn")
    spec = Spec(cell="gru", hidden_size=3, input_size=2, output_size=2)
    assert_gradient_matches(torch_gru, spec, conventions=conv)
    with pytest.raises(AssertionError):  # the same arrays read as z, r, n
        assert_gradient_matches(torch_gru, spec, wrt="W_xr",
                                conventions=replace(conv, gate_order="zrn"))


# ------------------------------------------------------------ architectures

STACKED = Spec(num_layers=2, hidden_size=3, input_size=2, output_size=2)


def two_layer_rnn(inputs, targets, h0, h1, W0, U0, b0, W1, U1, b1, V, c, *,  # noqa: N803
                  upper_recursion=True):
    """A 2-layer Elman stack: layer 1 reads layer 0's h_t; the head reads layer 1."""
    hs0, hs1, ys = [h0], [h1], []
    for x in inputs:
        hs0.append(np.tanh(W0 @ hs0[-1] + U0 @ x + b0))
        hs1.append(np.tanh(W1 @ hs1[-1] + U1 @ hs0[-1] + b1))
        ys.append(V @ hs1[-1] + c)
    g = [np.zeros_like(p) for p in (W0, U0, b0, W1, U1, b1, V, c)]
    carry0, carry1 = np.zeros_like(h0), np.zeros_like(h1)
    for t in reversed(range(len(inputs))):
        e = ys[t] - targets[t]
        g[6] += e @ hs1[t + 1].T
        g[7] += e
        d1 = (1 - hs1[t + 1] ** 2) * (V.T @ e + carry1)
        g[3] += d1 @ hs1[t].T
        g[4] += d1 @ hs0[t + 1].T
        g[5] += d1
        carry1 = W1.T @ d1 if upper_recursion else 0 * carry1
        d0 = (1 - hs0[t + 1] ** 2) * (U1.T @ d1 + carry0)
        g[0] += d0 @ hs0[t].T
        g[1] += d0 @ inputs[t].T
        g[2] += d0
        carry0 = W0.T @ d0
    loss = sum(0.5 * float(np.sum((y - t) ** 2)) for y, t in zip(ys, targets, strict=True))
    return (loss, *g)


TWO_LAYER = Conventions(
    params={"W_hh": "W0", "W_xh": "U0", "b_h": "b0", "weight_hh_l1": "W1",
            "weight_ih_l1": "U1", "b_h_l1": "b1", "V": "V", "c": "c"},
    initial_state={"h": "h0", "h_l1": "h1"},
    returns=("loss", "W_hh", "W_xh", "b_h", "W_hh_l1", "W_xh_l1", "b_h_l1", "W_hy", "b_y"))


def test_two_layer_stack():
    assert_gradient_matches(two_layer_rnn, STACKED, conventions=TWO_LAYER)

    def no_upper_recursion(**kwargs):
        return two_layer_rnn(**kwargs, upper_recursion=False)

    verdict = check_function(no_upper_recursion, STACKED, wrt="W_hh_l1", conventions=TWO_LAYER)
    assert not verdict.ok and verdict.counterexample is not None


BIDIRECTIONAL = Spec(bidirectional=True, hidden_size=2, input_size=2, output_size=2)


def birnn(inputs, targets, h0, hT, Wf, Uf, bf, Wb, Ub, bb, V, Vb, c):  # noqa: N803
    """A bidirectional Elman layer, head ŷ_t = V h_t + V_b h←_t + c."""
    T = len(inputs)  # noqa: N806
    hf, hb = {0: h0}, {T + 1: hT}
    for t in range(1, T + 1):
        hf[t] = np.tanh(Wf @ hf[t - 1] + Uf @ inputs[t - 1] + bf)
    for t in range(T, 0, -1):
        hb[t] = np.tanh(Wb @ hb[t + 1] + Ub @ inputs[t - 1] + bb)
    e = {t: V @ hf[t] + Vb @ hb[t] + c - targets[t - 1] for t in range(1, T + 1)}
    g = [np.zeros_like(p) for p in (Wf, Uf, bf, Wb, Ub, bb, V, Vb, c)]
    carry = np.zeros_like(h0)
    for t in range(T, 0, -1):
        d = (1 - hf[t] ** 2) * (V.T @ e[t] + carry)
        g[0] += d @ hf[t - 1].T
        g[1] += d @ inputs[t - 1].T
        g[2] += d
        carry = Wf.T @ d
    carry = np.zeros_like(hT)
    for t in range(1, T + 1):
        d = (1 - hb[t] ** 2) * (Vb.T @ e[t] + carry)
        g[3] += d @ hb[t + 1].T
        g[4] += d @ inputs[t - 1].T
        g[5] += d
        carry = Wb.T @ d
    for t in range(1, T + 1):
        g[6] += e[t] @ hf[t].T
        g[7] += e[t] @ hb[t].T
        g[8] += e[t]
    return (0.5 * sum(float(np.sum(v ** 2)) for v in e.values()), *g)


def test_bidirectional():
    names = ("W_hh", "W_xh", "b_h", "W_hh_reverse", "W_xh_reverse", "b_h_reverse", "W_hy",
             "W_hy_rev", "b_y")
    keywords = ("Wf", "Uf", "bf", "Wb", "Ub", "bb", "V", "Vb", "c")
    conv = Conventions(params=dict(zip(names, keywords, strict=True)),
                       initial_state={"h": "h0", "h_reverse": "hT"},
                       returns=("loss", *names))
    assert_gradient_matches(birnn, BIDIRECTIONAL, conventions=conv)
    swapped = replace(conv, initial_state={"h": "hT", "h_reverse": "h0"})
    assert not check_function(birnn, BIDIRECTIONAL, wrt="W_hh", conventions=swapped).ok


def test_bad_conventions_are_named():
    for bad, match in [({"vectors": "diagonal"}, "conventions.vectors"),
                       ({"batch": 2, "vectors": "1d"}, "needs a batch axis"),
                       ({"sequence": "batch_first"}, "batch_first"),
                       ({"tbptt": (3, 2)}, "k1"),
                       ({"clip": -1.0}, "conventions.clip"),
                       ({"returned": "update"}, "needs lr"),
                       ({"initial_value": "ones"}, "initial_value")]:
        with pytest.raises(SymrnnError, match=match):
            Conventions(**bad)
    with pytest.raises(SymrnnError, match="mapping"):
        check_function(lstm_in("ifgo"), LSTM, wrt="W_xi",
                       conventions=replace(stacked_conventions("ifgo"), initial_state="h0"))
    with pytest.raises(SymrnnError, match="topologies"):
        check_function(min_char_rnn, MSE.replace(topology="one_to_many"),
                       conventions=CHAR_RNN)


# ------------------------------------------------------------ the command line

USER_FILE = '''
import numpy as np


def lossFun(inputs, targets, Wxh, Whh, Why, bh, by):
    """min-char-rnn with h_0 = 0 inside; SLIP = 1 drops the recursion."""
    xs, hs, ps, loss = {}, {-1: np.zeros((Whh.shape[0], 1))}, {}, 0
    for t in range(len(inputs)):
        xs[t] = np.zeros((Wxh.shape[1], 1))
        xs[t][inputs[t]] = 1
        hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
        z = Why @ hs[t] + by
        ps[t] = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        loss += -np.log(ps[t][targets[t], 0])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby, dhnext = np.zeros_like(bh), np.zeros_like(by), np.zeros_like(hs[0])
    for t in reversed(range(len(inputs))):
        dy = ps[t].copy()
        dy[targets[t]] -= 1
        dWhy += dy @ hs[t].T
        dby += dy
        dhraw = (1 - hs[t] * hs[t]) * (Why.T @ dy + dhnext * (1 - SLIP))
        dbh += dhraw
        dWxh += dhraw @ xs[t].T
        dWhh += dhraw @ hs[t - 1].T
        dhnext = Whh.T @ dhraw
    return loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs) - 1]
'''

CHAR_FLAGS = ["--head", "softmax", "--loss", "cross_entropy", "--hidden-size", "3",
              "--input-size", "4", "--output-size", "4", "--initial-state", "none",
              "--initial-value", "zero", "--input-kind", "index", "--target-kind", "index"]


def _user_file(tmp_path, slip: int):
    path = tmp_path / f"char_rnn_{slip}.py"
    path.write_text(f"SLIP = {slip}\n" + USER_FILE)
    return f"{path}:lossFun"


def test_cli_function_correct_wrong_and_bad_options(tmp_path):
    run = CliRunner().invoke
    ok = run(cli, ["check", "--function", _user_file(tmp_path, 0), *CHAR_FLAGS, "--wrt", "W"])
    assert ok.exit_code == 0, ok.output
    assert "CORRECT" in ok.output and "zero initial state" in ok.output
    wrong = run(cli, ["check", "--function", _user_file(tmp_path, 1), *CHAR_FLAGS,
                      "--wrt", "W_xh", "--json"])
    assert wrong.exit_code == 1, wrong.output
    assert '"status": "wrong"' in wrong.output
    for argv, message in [
        (["--function", _user_file(tmp_path, 0), *CHAR_FLAGS, "--gate-order", "ifgo"],
         None),  # a gate order for Elman's one-gate stacks is harmless
        (["dL/dW = 0", "--gate-order", "ifgo"], "applies to --function"),
        (["--function", str(tmp_path / "missing.py") + ":f"], "not a Python file"),
        (["--function", _user_file(tmp_path, 0).replace("lossFun", "nope")], "no function"),
        (["--function", _user_file(tmp_path, 0), *CHAR_FLAGS, "--tbptt", "3,1"], "--tbptt"),
        (["--function", _user_file(tmp_path, 0), "--vectors", "diagonal"], "diagonal"),
        (["--function", _user_file(tmp_path, 0), *CHAR_FLAGS, "--returned", "update"],
         "needs lr"),
    ]:
        result = run(cli, ["check", *argv])
        if message is None:
            assert result.exit_code == 0, result.output
            continue
        assert result.exit_code == 2, (argv, result.output)
        assert message in result.output and "Traceback" not in result.output


def test_cli_help_names_every_convention_flag():
    out = CliRunner().invoke(cli, ["check", "--help"]).output
    for flag in ("--function", "--param", "--initial-state", "--initial-value", "--returns",
                 "--vectors", "--batch-axis", "--sequence", "--input-kind", "--target-kind",
                 "--time", "--batch", "--batch-reduction", "--biases", "--bias-ndim",
                 "--gate-order", "--tbptt", "--clip", "--clip-value", "--returned", "--lr",
                 "--dtype", "--instances", "--initial-state-gradient"):
        assert flag in out, flag


# ------------------------------------------------------------ the checker's own parts, broken


def test_mutation_ignoring_the_declared_gate_order_is_caught(monkeypatch):
    from symrnn.formula import bindings

    monkeypatch.setattr(bindings, "_order", lambda net, order, members: members)
    with pytest.raises(AssertionError):
        assert_gradient_matches(lstm_in("gifo"), LSTM, wrt="W_xi",
                                conventions=stacked_conventions("gifo"))


def test_mutation_clip_threshold_not_scaled_by_the_mean_is_caught(monkeypatch):
    from symrnn.formula import conventions

    fn, conv = variant(clip=0.02, mean=True), Conventions(clip=0.02, time="mean")
    assert check_function(fn, MSE, wrt="W_hh", conventions=conv, T=4).ok
    monkeypatch.setattr(conventions.Conventions, "clip_thresholds",
                        lambda self, T: (self.clip, self.clip_value))
    assert not check_function(fn, MSE, wrt="W_hh", conventions=conv, T=4).ok
