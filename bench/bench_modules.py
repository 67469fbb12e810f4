"""Forward + backward of symrnn.nn.RNN/LSTM/GRU against torch.nn's, in one run.

For each cell and config (B, D, H, O, T) of ``bench_bptt.CONFIGS`` (O unused: the loss is
⟨output, w⟩ for a fixed random w, so only the recurrent module is timed) and each dtype:
one forward and ``backward()`` through ``symrnn.nn.X`` (backend 'numpy', what 'auto'
picks on the CPU, and 'numba' when installed) and ``torch.nn.X`` (one layer, batch_first,
same state_dict), interleaved round-robin, median of repeats
(``torch.set_num_threads(2)``).  The gradients are checked to agree first (which also
compiles the numba kernels, so compile time is not timed).

Usage: ``python bench/bench_modules.py [--quick] [--dtype float32|float64|both]
[--cell elman|lstm|gru|all] [--output FILE]``
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

import symrnn.nn as snn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bptt import CONFIGS, interleaved_ms  # noqa: E402

CLASSES = {"elman": "RNN", "lstm": "LSTM", "gru": "GRU"}
F32_TARGET_BH = 32 * 256
"""float32 target: symrnn at least as fast where B·H ≤ 32·256 (oneDNN above)."""


OURS = ("numpy", "numba") if importlib.util.find_spec("numba") else ("numpy",)
"""symrnn.nn backends timed (numba when the extra is installed)."""


def methods(cell: str, cfg, dtype: str) -> dict:
    """'symrnn.nn <backend>' and 'torch.nn': () -> the gradient of ⟨output, w⟩ in every
    parameter."""
    B, D, H, _, T = cfg  # noqa: N806
    kind = CLASSES[cell]
    dt = getattr(torch, dtype)
    torch.manual_seed(0)
    theirs = getattr(torch.nn, kind)(D, H, batch_first=True, dtype=dt)
    ours = {b: getattr(snn, kind)(D, H, batch_first=True, dtype=dt, backend=b) for b in OURS}
    for module in ours.values():
        module.load_state_dict(theirs.state_dict())
    x = torch.randn(B, T, D, dtype=dt)
    w = torch.randn(B, T, H, dtype=dt)

    def run(module):
        def once():
            module.zero_grad(set_to_none=True)
            out, _ = module(x)
            (out * w).sum().backward()
            return [p.grad for p in module.parameters()]
        return once

    return {f"symrnn.nn {b}": run(m) for b, m in ours.items()} | {"torch.nn": run(theirs)}


def check(found: dict, dtype: str, what: str) -> None:
    """Every symrnn.nn backend's gradients equal torch.nn's (this also compiles them)."""
    ref = found["torch.nn"]()
    tol = 1e-9 if dtype == "float64" else 1e-3
    for name in (n for n in found if n != "torch.nn"):
        for g, r in zip(found[name](), ref, strict=True):
            err = ((g - r).abs().max() / r.abs().max().clamp_min(1e-30)).item()
            if not err <= tol:
                raise SystemExit(f"{what}: {name}'s gradient disagrees with torch.nn's "
                                 f"({err:.2e} > {tol:.0e})")


def run(cells, dtypes, configs, quick: bool) -> str:
    budget, lo, hi = (1.0, 3, 10) if quick else (3.0, 5, 31)
    names = [f"symrnn.nn {b}" for b in OURS]
    lines = ["| cell | (B, D, H, O, T) | dtype | " + " | ".join(f"{n} ms" for n in names)
             + " | torch.nn ms | best / torch.nn | target |",
             "|---|---|---|" + "---|" * len(names) + "---|---|---|"]
    for cell in cells:
        for dtype in dtypes:
            for cfg in configs:
                found = methods(cell, cfg, dtype)
                check(found, dtype, f"{cell} {cfg} {dtype}")
                ms = interleaved_ms(found, budget, lo, hi)
                best = min(names, key=ms.__getitem__)
                ratio = ms[best] / ms["torch.nn"]
                B, _, H, _, _ = cfg  # noqa: N806
                target = dtype == "float64" or B * H <= F32_TARGET_BH
                verdict = ("met" if ratio <= 1.0 else "missed") if target else "-"
                ours = " | ".join(f"{ms[n]:.2f}" for n in names)
                lines.append(f"| {cell} | {cfg} | {dtype} | {ours} | {ms['torch.nn']:.2f} | "
                             f"{ratio:.2f}x ({best.split()[-1]}) | {verdict} |")
                print(lines[-1], flush=True)
    return "\n".join(lines) + ("\n\nbest / torch.nn: the faster symrnn.nn backend's median "
                               "ms over torch.nn's (below 1: faster)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 small configs, few repeats")
    parser.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    parser.add_argument("--cell", choices=[*CLASSES, "all"], default="all")
    parser.add_argument("--output", metavar="FILE", help="also write the table to FILE")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    cells = list(CLASSES) if args.cell == "all" else [args.cell]
    table = run(cells, dtypes, CONFIGS[:3] if args.quick else CONFIGS, args.quick)
    print(table)
    if args.output:
        Path(args.output).write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
