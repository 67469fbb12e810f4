"""Forward + backward of an Elman tanh RNN with a linear head and MSE, six ways.

Methods (one process, ``torch.set_num_threads(2)``, median of repeats; the
torch methods run round-robin within each repeat so that load drift hits all
alike, then the NumPy methods likewise: interleaving torch's OpenMP pool with
NumPy's BLAS pool makes each spin against the other on 2 cores):

* ``autograd-loop``  torch autograd, Python loop over steps (head per step)
* ``nn.RNN``         torch.nn.RNN + nn.Linear, autograd
* ``hand-numpy``     hand-written NumPy BPTT (below: hoisted input projection,
                     stacked weight gradients, in-place loop on bound views)
* ``hand-torch``     the same hand-written BPTT in torch, no autograd
* ``gen-numpy``      symrnn-generated NumPy module
* ``gen-torch``      symrnn-generated torch module
* ``gen-numba``      symrnn-generated Numba module (time loops compiled; with the
                     ``numba`` extra only, timed in its own group: numba's BLAS is scipy's)
* ``jax``            ``jax.jit(value_and_grad)`` over ``lax.scan`` (the ``bench`` extra),
                     timed after all the other rows

Loss L = ½ Σ_{b,t} ‖W_hy h_t + b_y − y_t‖².  FLOPs counted for one
forward + backward (matrix products only, no dL/dx):
2·T·B·(2·D·H + 3·H·H + 3·H·O).  The GEMM-bound time is those FLOPs at the
large-matrix-product rate measured in the same run (best of NumPy and torch).
Peak memory: tracemalloc peak of one NumPy forward + backward.

Usage: ``python bench/bench_bptt.py [--quick] [--dtype float32|float64|both]
[--cell elman|lstm|gru|gru_v1|all] [--output FILE]``

``--cell`` (default ``elman``: the table above, methods unchanged) picks the
cell; ``lstm``, ``gru``, ``gru_v1`` run ``bench_gated.py`` (generated NumPy,
generated torch, ``nn.LSTM``/``nn.GRU`` + autograd, JAX when installed: the
``bench`` extra), ``all`` runs the four in turn (Elman first; its JAX column is
timed after every other Elman row, since JAX's thread pool stays up once started).
``--output FILE`` also writes the markdown tables to FILE.
``--arch stacked|bidirectional|both`` benchmarks 2-layer networks instead
(``bench_architectures.py``: generated NumPy and torch vs ``nn.RNN/LSTM/GRU(num_layers=2,
bidirectional=...)``) for ``--cell`` elman, lstm, gru or all.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from symrnn import Spec
from symrnn import compile as symrnn_compile

CONFIGS = [(1, 8, 32, 8, 100), (32, 16, 64, 16, 100), (32, 64, 256, 64, 100),
           (64, 128, 512, 128, 200), (16, 32, 128, 32, 1000)]
NAMES = ("W_hh", "W_xh", "b_h", "W_hy", "b_y")
TORCH_METHODS = ("autograd-loop", "nn.RNN", "hand-torch", "gen-torch")
NUMPY_METHODS = ("hand-numpy", "gen-numpy")
CELLS = ("elman", "lstm", "gru", "gru_v1")


def flops(B, D, H, O, T) -> float:  # noqa: E741
    return 2.0 * T * B * (2 * D * H + 3 * H * H + 3 * H * O)


# ------------------------------------------------------------------ hand-written


def hand_numpy(p, x, y):
    W_hh, W_xh, b_h, W_hy, b_y = (p[n] for n in NAMES)
    B, T, D = x.shape
    H = W_hh.shape[0]
    xs = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(T * B, D)
    ys = np.ascontiguousarray(y.transpose(1, 0, 2)).reshape(T * B, -1)
    pre = (xs @ W_xh.T + b_h).reshape(T, B, H)
    hs = np.empty((T + 1, B, H), dtype=x.dtype)
    hs[0] = 0
    W_hh_T = W_hh.T
    for t in range(T):
        h = hs[t + 1]
        np.matmul(hs[t], W_hh_T, out=h)
        h += pre[t]
        np.tanh(h, out=h)
    h_all = hs[1:].reshape(T * B, H)
    err = h_all @ W_hy.T + b_y - ys
    loss = 0.5 * float((err * err).sum())
    dh = (err @ W_hy).reshape(T, B, H)
    da = (1 - h_all * h_all).reshape(T, B, H)
    dnext = np.zeros((B, H), dtype=x.dtype)
    for t in range(T - 1, -1, -1):
        dht, dat = dh[t], da[t]
        dht += dnext
        dat *= dht
        np.matmul(dat, W_hh, out=dnext)
    da2 = da.reshape(T * B, H)
    grads = {"W_hh": da2.T @ hs[:-1].reshape(T * B, H), "W_xh": da2.T @ xs,
             "b_h": da2.sum(0), "W_hy": err.T @ h_all, "b_y": err.sum(0)}
    return loss, grads


@torch.no_grad()
def hand_torch(p, x, y):
    W_hh, W_xh, b_h, W_hy, b_y = (p[n] for n in NAMES)
    B, T, D = x.shape
    H = W_hh.shape[0]
    xs = x.transpose(0, 1).reshape(T * B, D)
    ys = y.transpose(0, 1).reshape(T * B, -1)
    pre = torch.addmm(b_h, xs, W_xh.T).view(T, B, H)
    hs = torch.empty((T + 1, B, H), dtype=x.dtype)
    hs[0] = 0
    W_hh_T = W_hh.T
    for t in range(T):
        h = hs[t + 1]
        torch.addmm(pre[t], hs[t], W_hh_T, out=h)
        h.tanh_()
    h_all = hs[1:].view(T * B, H)
    err = torch.addmm(b_y, h_all, W_hy.T) - ys
    loss = 0.5 * float((err * err).sum())
    dh = (err @ W_hy).view(T, B, H)
    da = (1 - h_all * h_all).view(T, B, H)
    dnext = torch.zeros((B, H), dtype=x.dtype)
    for t in range(T - 1, -1, -1):
        dht, dat = dh[t], da[t]
        dht += dnext
        dat *= dht
        torch.matmul(dat, W_hh, out=dnext)
    da2 = da.view(T * B, H)
    grads = {"W_hh": da2.T @ hs[:-1].reshape(T * B, H), "W_xh": da2.T @ xs,
             "b_h": da2.sum(0), "W_hy": err.T @ h_all, "b_y": err.sum(0)}
    return loss, grads


def autograd_loop(p, x, y):
    q = {k: v.detach().requires_grad_(True) for k, v in p.items()}
    B, T, _ = x.shape
    h = torch.zeros((B, q["W_hh"].shape[0]), dtype=x.dtype)
    loss = 0
    for t in range(T):
        h = torch.tanh(x[:, t] @ q["W_xh"].T + h @ q["W_hh"].T + q["b_h"])
        z = h @ q["W_hy"].T + q["b_y"]
        loss = loss + 0.5 * ((z - y[:, t]) ** 2).sum()
    loss.backward()
    return float(loss.detach()), {k: v.grad for k, v in q.items()}


class TorchRNN:
    def __init__(self, p, dtype):
        H, D = p["W_xh"].shape
        self.rnn = torch.nn.RNN(D, H, batch_first=True, dtype=dtype)
        self.lin = torch.nn.Linear(H, p["W_hy"].shape[0], dtype=dtype)
        with torch.no_grad():
            self.rnn.weight_hh_l0.copy_(p["W_hh"])
            self.rnn.weight_ih_l0.copy_(p["W_xh"])
            self.rnn.bias_ih_l0.copy_(p["b_h"])
            self.rnn.bias_hh_l0.zero_()
            self.lin.weight.copy_(p["W_hy"])
            self.lin.bias.copy_(p["b_y"])

    def __call__(self, p, x, y):
        for prm in (*self.rnn.parameters(), *self.lin.parameters()):
            prm.grad = None
        out, _ = self.rnn(x)
        loss = 0.5 * ((self.lin(out) - y) ** 2).sum()
        loss.backward()
        grads = {"W_hh": self.rnn.weight_hh_l0.grad, "W_xh": self.rnn.weight_ih_l0.grad,
                 "b_h": self.rnn.bias_ih_l0.grad, "W_hy": self.lin.weight.grad,
                 "b_y": self.lin.bias.grad}
        return float(loss.detach()), grads


# ------------------------------------------------------------------ timing


def median_ms(fn, budget_s: float, min_reps: int, max_reps: int) -> float:
    fn()  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < budget_s
                                    and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def interleaved_ms(methods: dict, budget_s: float, min_reps: int, max_reps: int) -> dict:
    """Median ms per method, the methods run round-robin so that load drift hits all alike."""
    for fn in methods.values():
        fn()  # warm-up
    times: dict = {m: [] for m in methods}
    start = time.perf_counter()
    rep = 0
    while rep < min_reps or (time.perf_counter() - start < budget_s and rep < max_reps):
        order = list(methods)[rep % len(methods):] + list(methods)[:rep % len(methods)]
        for m in order:
            t0 = time.perf_counter()
            methods[m]()
            times[m].append(time.perf_counter() - t0)
        rep += 1
    return {m: 1e3 * statistics.median(ts) for m, ts in times.items()}


def gemm_gflops(dtype: str) -> float:
    n = 2048
    a = np.random.default_rng(0).normal(size=(n, n)).astype(dtype)
    b = a.T.copy()
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    best = 0.0
    for fn in (lambda: a @ b, lambda: ta @ tb):
        ms = median_ms(fn, 1.0, 3, 10)
        best = max(best, 2 * n ** 3 / (ms * 1e-3) / 1e9)
    return best


def numpy_peak_mb(fn) -> float:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2 ** 20


def check_agreement(results: dict, reference: dict, dtype: str) -> None:
    tol = 1e-3 if dtype == "float32" else 1e-9
    for method, grads in results.items():
        for name in NAMES:
            g = np.asarray(grads[name].detach() if torch.is_tensor(grads[name]) else grads[name],
                           dtype=np.float64)
            r = np.asarray(reference[name], dtype=np.float64)
            err = np.abs(g - r).max() / max(np.abs(r).max(), 1e-30)
            if err > tol:
                raise SystemExit(f"{method}: dL/d{name} disagrees with hand-numpy ({err:.2e})")


def run_config(cfg, dtype: str, quick: bool, gemm: float) -> dict:
    B, D, H, O, T = cfg  # noqa: E741
    spec = Spec(hidden_size=H, input_size=D, output_size=O)
    gen_np, gen_t, (p, x, y), (pt, xt, yt) = gated_module().problem(spec, cfg, dtype)
    rnn = TorchRNN(pt, getattr(torch, dtype))
    methods = {
        "autograd-loop": lambda: autograd_loop(pt, xt, yt),
        "nn.RNN": lambda: rnn(pt, xt, yt),
        "hand-numpy": lambda: hand_numpy(p, x, y),
        "hand-torch": lambda: hand_torch(pt, xt, yt),
        "gen-numpy": lambda: gen_np.loss_and_grad(p, x, y),
        "gen-torch": lambda: gen_t.loss_and_grad(pt, xt, yt),
    }
    compiled, first_call_s = gated_module().numba_method(spec, p, x, y)
    if compiled is not None:
        methods["gen-numba"] = compiled
    reference = hand_numpy(p, x, y)[1]
    check_agreement({m: fn()[1] for m, fn in methods.items()}, reference, dtype)
    budget, lo, hi = (1.0, 3, 10) if quick else (4.0, 7, 41)
    ms = {}
    for group in (TORCH_METHODS, NUMPY_METHODS, ("gen-numba",)):  # never interleave pools
        group = {m: methods[m] for m in group if m in methods}
        if group:
            ms |= interleaved_ms(group, budget, lo, hi)
    row = {"config": cfg, "dtype": dtype, "ms": ms, "flops": flops(*cfg),
           "gemm_bound_ms": flops(*cfg) / (gemm * 1e9) * 1e3,
           "peak_mb": {m: numpy_peak_mb(methods[m]) for m in ("hand-numpy", "gen-numpy")},
           "stored_mb": (T + 1) * B * H * np.dtype(dtype).itemsize / 2 ** 20,
           "numba_first_call_s": first_call_s}
    return row


def format_rows(rows: list[dict], gemm: dict) -> str:
    cols = ["autograd-loop", "nn.RNN", "hand-numpy", "hand-torch", "gen-numpy", "gen-torch"]
    cols += [c for c in ("gen-numba", "jax") if c in rows[0]["ms"]]
    versus = [c for c in ("nn.RNN", "hand-numpy", "jax") if c in rows[0]["ms"]]
    lines = ["| (B, D, H, O, T) | dtype | " + " | ".join(cols)
             + " | gen-np / hand-np | gen-t / hand-t | gen-t / nn.RNN | "
             + " | ".join(f"best gen / {c}" for c in versus)
             + " | best gen GFLOP/s | GEMM-bound | best gen / bound "
               "| peak MB gen-np (hand-np; h_t store) |",
             "|" + "---|" * (len(cols) + 9 + len(versus))]
    gens = [c for c in cols if c.startswith("gen-")]
    for r in rows:
        ms = r["ms"]
        best = min(ms[g] for g in gens)
        cells = [f"{ms[c]:.2f}" for c in cols]
        lines.append(
            f"| {r['config']} | {r['dtype']} | " + " | ".join(cells)
            + f" | {ms['gen-numpy'] / ms['hand-numpy']:.2f}x"
            + f" | {ms['gen-torch'] / ms['hand-torch']:.2f}x"
            + f" | {ms['gen-torch'] / ms['nn.RNN']:.2f}x"
            + "".join(f" | {best / ms[c]:.2f}x" for c in versus)
            + f" | {r['flops'] / (best * 1e-3) / 1e9:.1f}"
            + f" | {r['gemm_bound_ms']:.2f}"
            + f" | {best / r['gemm_bound_ms']:.2f}x"
            + f" | {r['peak_mb']['gen-numpy']:.1f} ({r['peak_mb']['hand-numpy']:.1f};"
              f" {r['stored_mb']:.1f}) |")
    rates = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in gemm.items())
    lines.append("")
    lines.append(f"times in ms (median); large-GEMM rate measured in this run: {rates}")
    first = [f"{r['config']} {r['dtype']} {r['numba_first_call_s']:.2f} s" for r in rows
             if r.get("numba_first_call_s") is not None]
    if first:
        lines.append("gen-numba first call (JIT compile, or load from numba's disk cache): "
                     + "; ".join(first))
    return "\n".join(lines)


def tbptt_memory(dtype: str, cfg=(16, 32, 128, 32, 1000), tbptt=(50, 100)) -> str:
    """Peak traced memory and time: full BPTT vs TBPTT stored vs TBPTT streamed (NumPy)."""
    B, D, H, O, T = cfg  # noqa: E741
    spec = Spec(hidden_size=H, input_size=D, output_size=O)
    full, cut = symrnn_compile(spec, "numpy"), symrnn_compile(spec, "numpy", tbptt)
    rng = np.random.default_rng(0)
    p = {n: (rng.normal(size=s) / np.sqrt(s[-1])).astype(dtype)
         for n, s in full.PARAM_SHAPES.items()}
    x = rng.normal(size=(B, T, D)).astype(dtype)
    y = rng.normal(size=(B, T, O)).astype(dtype)
    runs = {"full BPTT": lambda: full.loss_and_grad(p, x, y),
            f"TBPTT {tbptt} stored": lambda: cut.loss_and_grad(p, x, y),
            f"TBPTT {tbptt} streamed": lambda: cut.loss_and_grad_streamed(p, x, y)}
    ms = interleaved_ms(runs, 3.0, 5, 20)
    one = T * B * H * np.dtype(dtype).itemsize / 2 ** 20
    lines = [f"generated NumPy, {cfg} {dtype}; one (T, B, H) tensor = {one:.1f} MB"]
    for name, fn in runs.items():
        lines.append(f"  {name:<26} {ms[name]:8.2f} ms   peak {numpy_peak_mb(fn):6.1f} MB")
    return "\n".join(lines)


def time_jax(row: dict, quick: bool) -> None:
    """Add the JAX method's median to ``row`` (same data; checked against hand-numpy)."""
    bench_gated = gated_module()
    B, D, H, O, T = row["config"]  # noqa: E741
    spec = Spec(hidden_size=H, input_size=D, output_size=O)
    _, _, (p, x, y), _ = bench_gated.problem(spec, row["config"], row["dtype"])
    jax = bench_gated.jax_method(bench_gated.jax_elman_loss_and_grad(), row["dtype"], p, x, y)
    check_agreement({"jax": {n: np.asarray(g) for n, g in jax()[1].items()}},
                    hand_numpy(p, x, y)[1], row["dtype"])
    budget, lo, hi = (1.0, 3, 10) if quick else (4.0, 7, 41)
    row["ms"] |= interleaved_ms({"jax": jax}, budget, lo, hi)


def run_elman(dtypes: list[str], configs: list, quick: bool) -> str:
    gemm = {d: gemm_gflops(d) for d in dtypes}
    rows = []
    for dtype in dtypes:
        for cfg in configs:
            rows.append(run_config(cfg, dtype, quick, gemm[dtype]))
            print(f"done {cfg} {dtype}: " + ", ".join(
                f"{m} {v:.2f} ms" for m, v in rows[-1]["ms"].items()), flush=True)
    if gated_module().jax_available():  # after every other row: JAX's pool stays up
        for row in rows:
            time_jax(row, quick)
            print(f"done {row['config']} {row['dtype']}: jax {row['ms']['jax']:.2f} ms",
                  flush=True)
    return ("#### elman\n\n" + format_rows(rows, gemm) + "\n\n```\n"
            + tbptt_memory(dtypes[0]) + "\n```")


def gated_module():
    """The gated-cell benchmark module next to this file (it imports JAX only on demand)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_gated as module

    return module


def run_gated(cell: str, dtypes: list[str], configs: list, quick: bool) -> str:
    bench_gated = gated_module()

    with_jax = bench_gated.jax_available()
    note = None if with_jax else ("jax not importable: JAX column omitted "
                                  "(pip install -e '.[bench]')")
    if note:
        print(note, flush=True)
    rows = []
    for dtype in dtypes:
        for cfg in configs:
            rows.append(bench_gated.run_config(cell, cfg, dtype, quick, with_jax,
                                               interleaved_ms))
            print(f"done {cell} {cfg} {dtype}: " + ", ".join(
                f"{m} {v:.2f} ms" for m, v in rows[-1]["ms"].items()), flush=True)
    return bench_gated.format_rows(cell, rows, note)


def run_architectures(archs, cells, dtypes: list[str], configs: list, quick: bool) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_architectures as arch_bench

    bench_gated = gated_module()
    rows = []
    for arch in archs:
        for cell in cells:
            for dtype in dtypes:
                for cfg in configs:
                    rows.append(arch_bench.run_config(
                        cell, arch, cfg, dtype, quick, interleaved_ms,
                        bench_gated.check_methods, bench_gated._np))
                    print(f"done {arch} {cell} {cfg} {dtype}: " + ", ".join(
                        f"{m} {v:.2f} ms" for m, v in rows[-1]["ms"].items()), flush=True)
    return arch_bench.format_rows(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 small configs, few repeats")
    parser.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    parser.add_argument("--cell", choices=[*CELLS, "all"], default="elman")
    parser.add_argument("--output", metavar="FILE", help="also write the tables to FILE")
    parser.add_argument("--arch", choices=["stacked", "bidirectional", "both"],
                        help="2-layer stacked and/or bidirectional networks vs torch.nn")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    configs = CONFIGS[:3] if args.quick else CONFIGS
    cells = CELLS if args.cell == "all" else (args.cell,)
    if args.arch:
        archs = ("stacked", "bidirectional") if args.arch == "both" else (args.arch,)
        arch_cells = [c for c in cells if c != "gru_v1"]  # torch.nn has no GRU v1
        table = run_architectures(archs, arch_cells, dtypes, configs, args.quick)
        print(table, flush=True)
        if args.output:
            Path(args.output).write_text(table + "\n", encoding="utf-8")
        return
    tables = []
    for cell in cells:
        if cell == "elman":
            table = run_elman(dtypes, configs, args.quick)
        else:
            table = run_gated(cell, dtypes, configs, args.quick)
        tables.append(table)
        print()
        print(table, flush=True)
        print()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write("\n\n".join(tables) + "\n")


if __name__ == "__main__":
    main()
