"""Forward + backward of a gated RNN (LSTM, GRU, GRU v1) with a linear head and MSE.

Imported by ``bench_bptt.py --cell lstm|gru|gru_v1``; not run on its own.

Methods (torch layout: the parameters are torch's stacked ``weight_ih``,
``weight_hh``, ``bias_ih``, ``bias_hh`` plus the head ``W_hy``, ``b_y``):

* ``gen-numpy``  symrnn-generated NumPy module
* ``gen-torch``  symrnn-generated torch module
* ``nn.LSTM`` / ``nn.GRU``  the torch module + ``nn.Linear`` head, autograd, the
  weights copied from the same params (``gru_v1``, reset gate applied before
  ``W_hn``, has no torch module: no column). In float32 on CPU ``nn.LSTM``
  runs torch's fused oneDNN (mkldnn) RNN kernel, in float64 the native one.
* ``jax``  ``jax.jit(jax.value_and_grad(loss))``, ``loss`` a ``lax.scan`` over
  steps with the input projection hoisted (``x @ W_ih.T + b`` for every step
  before the scan), the head applied to the stacked states after it; compile
  time excluded (warm-up first); float64 rows run with ``jax_enable_x64`` on,
  float32 rows with it off. XLA runs on its own thread pool (not bound by
  ``torch.set_num_threads``; one intra-op thread per core). Omitted, with a note,
  when ``jax`` is not importable (``pip install -e '.[bench]'``).

Before timing, every method's loss and gradients are checked against
gen-numpy in float64 (relative max error 1e-9; for float32 rows also the
float32 results against the float64 reference, 1e-3); a mismatch aborts.
Timing: the torch methods round-robin within each repeat, then the NumPy
method, then JAX (never two thread pools interleaved), medians of repeats.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from symrnn import Spec
from symrnn import compile as symrnn_compile
from symrnn.errors import SpecError

TORCH_MODULES = {"lstm": "nn.LSTM", "gru": "nn.GRU"}
GATES = {"lstm": 4, "gru": 3, "gru_v1": 3}
# B·H ≤ 32·256: the float32 configs where generated must beat nn.* (float64: every config)
F32_TARGET_BH = 32 * 256


def _jax():
    """The jax module, or None when it is not importable."""
    try:
        import jax
    except ImportError:
        return None
    return jax


def jax_available() -> bool:
    return _jax() is not None


# ------------------------------------------------------------------ torch module


class TorchGated:
    """nn.LSTM / nn.GRU + nn.Linear, autograd, weights copied from the torch-layout params."""

    def __init__(self, cell: str, p: dict, dtype):
        G = GATES[cell]
        H = p["weight_hh"].shape[1]
        D = p["weight_ih"].shape[1]
        assert p["weight_ih"].shape[0] == G * H
        module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.rnn = module(D, H, batch_first=True, dtype=dtype)
        self.lin = torch.nn.Linear(H, p["W_hy"].shape[0], dtype=dtype)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.rnn, f"{name}_l0").copy_(p[name])
            self.lin.weight.copy_(p["W_hy"])
            self.lin.bias.copy_(p["b_y"])

    def __call__(self, x, y):
        for prm in (*self.rnn.parameters(), *self.lin.parameters()):
            prm.grad = None
        out, _ = self.rnn(x)
        loss = 0.5 * ((self.lin(out) - y) ** 2).sum()
        loss.backward()
        grads = {n: getattr(self.rnn, f"{n}_l0").grad
                 for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        grads |= {"W_hy": self.lin.weight.grad, "b_y": self.lin.bias.grad}
        return loss.detach(), grads


# ------------------------------------------------------------------ JAX


def jax_loss_and_grad(cell: str, dtype: str):
    """jit(value_and_grad(loss)) for the cell; call with x64 already set for dtype."""
    jax = _jax()
    jnp, lax = jax.numpy, jax.lax
    sigmoid = jax.nn.sigmoid

    def loss(p, x, y):
        B, T, D = x.shape
        H = p["weight_hh"].shape[1]
        xs = jnp.swapaxes(x, 0, 1)  # (T, B, D)
        W_hh_T = p["weight_hh"].T
        b_hh = p["bias_hh"]
        if cell == "lstm":  # both biases outside the recurrence
            P = xs @ p["weight_ih"].T + (p["bias_ih"] + b_hh)  # hoisted: (T, B, 4H)

            def step(carry, p_t):
                h, c = carry
                g = p_t + h @ W_hh_T
                i = sigmoid(g[:, :H])
                f = sigmoid(g[:, H:2 * H])
                gg = jnp.tanh(g[:, 2 * H:3 * H])
                o = sigmoid(g[:, 3 * H:])
                c = f * c + i * gg
                h = o * jnp.tanh(c)
                return (h, c), h

            h0 = jnp.zeros((B, H), dtype=x.dtype)
            init = (h0, h0)
        elif cell == "gru":  # torch / cuDNN form: r gates (W_hn h + b_hn)
            P = xs @ p["weight_ih"].T + p["bias_ih"]  # hoisted: (T, B, 3H)

            def step(h, p_t):
                q = h @ W_hh_T + b_hh
                r = sigmoid(p_t[:, :H] + q[:, :H])
                z = sigmoid(p_t[:, H:2 * H] + q[:, H:2 * H])
                n = jnp.tanh(p_t[:, 2 * H:] + r * q[:, 2 * H:])
                h = (1 - z) * n + z * h
                return h, h

            init = jnp.zeros((B, H), dtype=x.dtype)
        elif cell == "gru_v1":  # reset applied before W_hn: W_hn (r * h) + b_hn
            P = xs @ p["weight_ih"].T + p["bias_ih"]  # hoisted: (T, B, 3H)
            W_rz_T, W_n_T = W_hh_T[:, :2 * H], W_hh_T[:, 2 * H:]
            b_rz, b_n = b_hh[:2 * H], b_hh[2 * H:]

            def step(h, p_t):
                q = h @ W_rz_T + b_rz
                r = sigmoid(p_t[:, :H] + q[:, :H])
                z = sigmoid(p_t[:, H:2 * H] + q[:, H:])
                n = jnp.tanh(p_t[:, 2 * H:] + (r * h) @ W_n_T + b_n)
                h = (1 - z) * n + z * h
                return h, h

            init = jnp.zeros((B, H), dtype=x.dtype)
        else:
            raise ValueError(f"no JAX cell {cell!r}")
        _, hs = lax.scan(step, init, P)  # (T, B, H)
        err = hs @ p["W_hy"].T + p["b_y"] - jnp.swapaxes(y, 0, 1)
        return 0.5 * jnp.sum(err * err)

    return jax.jit(jax.value_and_grad(loss))


def jax_elman_loss_and_grad():
    """jit(value_and_grad(loss)) of the Elman tanh RNN in symrnn's notes names (W_hh, W_xh,
    b_h, W_hy, b_y), the input projection hoisted, a ``lax.scan`` over time."""
    jax = _jax()
    jnp, lax = jax.numpy, jax.lax

    def loss(p, x, y):
        xs = jnp.swapaxes(x, 0, 1)  # (T, B, D)
        P = xs @ p["W_xh"].T + p["b_h"]  # hoisted: (T, B, H)
        W_hh_T = p["W_hh"].T

        def step(h, p_t):
            h = jnp.tanh(p_t + h @ W_hh_T)
            return h, h

        h0 = jnp.zeros((x.shape[0], p["W_hh"].shape[0]), dtype=x.dtype)
        _, hs = lax.scan(step, h0, P)  # (T, B, H)
        err = hs @ p["W_hy"].T + p["b_y"] - jnp.swapaxes(y, 0, 1)
        return 0.5 * jnp.sum(err * err)

    return jax.jit(jax.value_and_grad(loss))


def jax_method(fn, dtype: str, p, x, y):
    """() -> (loss, grads) of a jitted JAX function on device copies of the data."""
    jax = _jax()
    _set_x64(dtype)
    pj = {k: jax.numpy.asarray(v) for k, v in p.items()}
    xj, yj = jax.numpy.asarray(x), jax.numpy.asarray(y)
    assert xj.dtype == np.dtype(dtype), (xj.dtype, dtype)
    return lambda: jax.block_until_ready(fn(pj, xj, yj))


def _set_x64(dtype: str) -> None:
    _jax().config.update("jax_enable_x64", dtype == "float64")


# ------------------------------------------------------------------ methods


GENERATED = ("gen-numpy", "gen-torch", "gen-numba")


def numba_method(spec: Spec, p, x, y):
    """(the gen-numba method, seconds of its first call: the JIT compile, or the load from
    numba's disk cache when an earlier run compiled it), or (None, None) without the extra."""
    try:
        module = symrnn_compile(spec, "numba")
    except SpecError:
        return None, None
    start = time.perf_counter()
    module.loss_and_grad(p, x, y)
    return (lambda: module.loss_and_grad(p, x, y)), time.perf_counter() - start


def problem(spec: Spec, cfg, dtype: str):
    """One config's generated modules and data, as NumPy and as torch (shared memory):
    (gen_np, gen_t, (p, x, y), (pt, xt, yt)); weights N(0, 1/fan_in), seed 0."""
    B, D, H, O, T = cfg  # noqa: E741
    gen_np, gen_t = symrnn_compile(spec, "numpy"), symrnn_compile(spec, "torch")
    rng = np.random.default_rng(0)
    p = {n: (rng.normal(size=s) / np.sqrt(s[-1])).astype(dtype)
         for n, s in gen_np.PARAM_SHAPES.items()}
    x = rng.normal(size=(B, T, D)).astype(dtype)
    y = rng.normal(size=(B, T, O)).astype(dtype)
    torch_side = ({k: torch.from_numpy(v) for k, v in p.items()}, torch.from_numpy(x),
                  torch.from_numpy(y))
    return gen_np, gen_t, (p, x, y), torch_side


def build_methods(cell: str, cfg, dtype: str, with_jax: bool):
    """(methods, param names): each method () -> (loss, grads) on the same data and weights."""
    B, D, H, O, T = cfg  # noqa: E741
    spec = Spec(cell=cell, layout="torch", hidden_size=H, input_size=D, output_size=O)
    gen_np, gen_t, (p, x, y), (pt, xt, yt) = problem(spec, cfg, dtype)
    methods = {
        "gen-numpy": lambda: gen_np.loss_and_grad(p, x, y),
        "gen-torch": lambda: gen_t.loss_and_grad(pt, xt, yt),
    }
    compiled, _ = numba_method(spec, p, x, y)
    if compiled is not None:
        methods["gen-numba"] = compiled
    if cell in TORCH_MODULES:
        module = TorchGated(cell, pt, getattr(torch, dtype))
        methods[TORCH_MODULES[cell]] = lambda: module(xt, yt)
    if with_jax:
        _set_x64(dtype)
        methods["jax"] = jax_method(jax_loss_and_grad(cell, dtype), dtype, p, x, y)
    return methods, gen_np.PARAM_NAMES


def _np(a) -> np.ndarray:
    if torch.is_tensor(a):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def check_methods(methods: dict, names, reference, tol: float, dtype: str, what: str) -> None:
    """Every method's loss and gradients against the reference (loss, grads); aborts on mismatch."""
    ref_loss, ref_grads = reference
    for method, fn in methods.items():
        loss, grads = fn()
        checks = [("L", loss, ref_loss)] + [(f"dL/d{n}", grads[n], ref_grads[n]) for n in names]
        for label, got, want in checks:
            g, r = _np(got), np.asarray(_np(want), dtype=np.float64)
            if g.dtype != np.dtype(dtype):
                raise SystemExit(f"{what} {method}: {label} is {g.dtype}, expected {dtype}")
            if g.shape != r.shape:
                raise SystemExit(f"{what} {method}: {label} shape {g.shape}, expected {r.shape}")
            err = np.abs(g.astype(np.float64) - r).max() / max(np.abs(r).max(), 1e-30)
            if not err <= tol:
                raise SystemExit(f"{what} {method}: {label} disagrees with gen-numpy "
                                 f"float64 ({err:.2e} > {tol:.0e})")


def run_config(cell: str, cfg, dtype: str, quick: bool, with_jax: bool, interleaved_ms) -> dict:
    """One table row: check (float64, then dtype), then time the methods."""
    methods64, names = build_methods(cell, cfg, "float64", with_jax)
    reference = methods64["gen-numpy"]()
    reference = (float(reference[0]), {n: _np(reference[1][n]) for n in names})
    check_methods(methods64, names, reference, 1e-9, "float64", f"{cell} {cfg} float64:")
    if dtype == "float64":
        methods = methods64
    else:
        del methods64
        methods, _ = build_methods(cell, cfg, dtype, with_jax)
        check_methods(methods, names, reference, 1e-3, dtype, f"{cell} {cfg} {dtype}:")
    if with_jax:
        _set_x64(dtype)  # the jitted fn was traced under this setting
    budget, lo, hi = (1.0, 3, 10) if quick else (4.0, 7, 41)
    groups = [("gen-torch", TORCH_MODULES.get(cell)), ("gen-numpy",), ("gen-numba",), ("jax",)]
    ms: dict = {}
    for group in groups:  # never interleave two thread pools
        group = {m: methods[m] for m in group if m in methods}
        if group:
            ms |= interleaved_ms(group, budget, lo, hi)
    return {"cell": cell, "config": cfg, "dtype": dtype, "ms": ms}


# ------------------------------------------------------------------ table


def format_rows(cell: str, rows: list[dict], jax_note: str | None = None) -> str:
    ref = TORCH_MODULES.get(cell)
    with_jax = any("jax" in r["ms"] for r in rows)
    gens = [g for g in GENERATED if g in rows[0]["ms"]]
    cols = gens + ([ref] if ref else []) + (["jax"] if with_jax else [])
    ratios = ([f"gen-best / {ref}"] if ref else []) + (["gen-best / jax"] if with_jax else [])
    head = ["(B, D, H, O, T)", "dtype", *cols, "gen-best", *ratios]
    lines = [f"#### {cell}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    worst: dict = {}
    for r in rows:
        ms = r["ms"]
        best_name = min(gens, key=ms.__getitem__)
        best = ms[best_name]
        cells = [f"{ms[c]:.2f}" for c in cols] + [best_name.removeprefix("gen-")]
        for other in ([ref] if ref else []) + (["jax"] if with_jax else []):
            ratio = best / ms[other]
            cells.append(f"{ratio:.2f}x")
            if other == ref:
                B, _, H, _, _ = r["config"]
                if r["dtype"] == "float64" or B * H <= F32_TARGET_BH:
                    key = r["dtype"]
                    worst[key] = max(worst.get(key, 0.0), ratio)
        lines.append(f"| {r['config']} | {r['dtype']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("times in ms (median); gen-best: the faster generated backend")
    if ref:
        for dtype, ratio in sorted(worst.items()):
            scope = "every row" if dtype == "float64" else "rows with B·H <= 32·256"
            verdict = "met" if ratio < 1 else "MISSED"
            lines.append(f"target gen-best < {ref} ({dtype}, {scope}): "
                         f"worst {ratio:.2f}x, {verdict}")
    if jax_note:
        lines.append(jax_note)
    return "\n".join(lines)
