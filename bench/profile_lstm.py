"""Where a generated LSTM step spends its time, against torch's fused oneDNN LSTM (float32).

Prints the generated NumPy forward and backward times at (B, D, H, O, T) = (16, 32, 128,
32, 1000), the cost of the single NumPy calls a step is made of (the (B, H) @ (H, 4H)
GEMM, the in-place sigmoid over (B, 4H), one tanh and one multiply over (B, H)), and
``nn.LSTM`` + ``nn.Linear`` + autograd on the same data.  Usage:
``python bench/profile_lstm.py``.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

import symrnn
from symrnn import Spec

B, D, H, O, T = 16, 32, 128, 32, 1000  # noqa: E741


def per_call_us(fn, n: int = 2000) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    torch.set_num_threads(2)
    spec = Spec(cell="lstm", layout="torch", hidden_size=H, input_size=D, output_size=O)
    gen = symrnn.compile(spec, "numpy")
    rng = np.random.default_rng(0)
    p = {n: (rng.normal(size=s) / np.sqrt(s[-1])).astype("float32")
         for n, s in gen.PARAM_SHAPES.items()}
    x = rng.normal(size=(B, T, D)).astype("float32")
    y = rng.normal(size=(B, T, O)).astype("float32")
    fw, bw = [], []
    for _ in range(7):
        t0 = time.perf_counter()
        _, cache = gen.forward(p, x, y)
        t1 = time.perf_counter()
        gen.backward(p, cache)
        fw.append(t1 - t0)
        bw.append(time.perf_counter() - t1)
    print(f"generated NumPy: forward {statistics.median(fw) * 1e3:.1f} ms, "
          f"backward {statistics.median(bw) * 1e3:.1f} ms (T = {T})")
    gates = rng.normal(size=(B, 4 * H)).astype("float32")
    h = rng.normal(size=(B, H)).astype("float32")
    W = rng.normal(size=(H, 4 * H)).astype("float32")  # noqa: N806
    block, out = gates[:, :H], np.empty((B, H), dtype="float32")
    calls = {
        f"GEMM ({B}x{H})@({H}x{4 * H})": lambda: np.matmul(h, W, out=gates),
        f"sigmoid in place over ({B}, {4 * H})": lambda: gen._sigmoid_(gates),
        f"tanh ({B}, {H})": lambda: np.tanh(block, out=out),
        f"multiply ({B}, {H})": lambda: np.multiply(block, block, out=out),
    }
    print("per call: " + "; ".join(f"{k} {per_call_us(f):.1f} us" for k, f in calls.items()))
    lstm, head = torch.nn.LSTM(D, H, batch_first=True), torch.nn.Linear(H, O)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        lstm.zero_grad()
        states, _ = lstm(xt)
        (0.5 * ((head(states) - yt) ** 2).sum()).backward()
        times.append(time.perf_counter() - t0)
    print(f"nn.LSTM (oneDNN) forward + backward {statistics.median(times) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
