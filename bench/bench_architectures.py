"""Stacked (2 layers) and bidirectional (2 layers) networks: generated vs torch.nn.

Called by ``bench_bptt.py --arch stacked|bidirectional|both`` (see its docstring for the
timing method).  For each cell (elman, lstm, gru) and config (B, D, H, O, T): the
generated NumPy and torch modules (layout 'torch', so the weights are torch.nn's own
state_dict) against ``torch.nn.RNN/LSTM/GRU(num_layers=2, bidirectional=...)`` with an
``nn.Linear`` head and autograd, on the same data.  Loss ½ Σ ‖head(out) − y‖².  Every
method's loss and gradients are first checked against gen-numpy in float64 (1e-9).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from symrnn import Spec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gated import problem  # noqa: E402  (the one builder of weights and data)

NN = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
ARCHS = ("stacked", "bidirectional")
LAYERS = 2


class TorchStack(torch.nn.Module):
    """torch.nn's recurrent module + nn.Linear head, weights from the generated names."""

    def __init__(self, cell: str, bidirectional: bool, params: dict, cfg, dtype):
        super().__init__()
        B, D, H, O, T = cfg  # noqa: E741
        self.rnn = NN[cell](D, H, num_layers=LAYERS, bidirectional=bidirectional,
                            batch_first=True, dtype=dtype)
        self.head = torch.nn.Linear(H * (2 if bidirectional else 1), O, dtype=dtype)
        with torch.no_grad():
            for name, p in self.rnn.named_parameters():
                p.copy_(params[name.replace("_l0", "")])
            w = [params["W_hy"]] + ([params["W_hy_rev"]] if bidirectional else [])
            self.head.weight.copy_(torch.cat(w, dim=1))
            self.head.bias.copy_(params["b_y"])

    def forward(self, x, y):
        for p in self.parameters():
            p.grad = None
        out, _ = self.rnn(x)
        loss = 0.5 * ((self.head(out) - y) ** 2).sum()
        loss.backward()
        grads = {n.replace("_l0", ""): p.grad for n, p in self.rnn.named_parameters()}
        return loss.detach(), grads


def build_methods(cell: str, arch: str, cfg, dtype: str):
    """(methods, names compared): each method () -> (loss, grads)."""
    B, D, H, O, T = cfg  # noqa: E741
    bidirectional = arch == "bidirectional"
    spec = Spec(cell=cell, layout="torch", num_layers=LAYERS, bidirectional=bidirectional,
                hidden_size=H, input_size=D, output_size=O)
    gen_np, gen_t, (p, x, y), (pt, xt, yt) = problem(spec, cfg, dtype)
    module = TorchStack(cell, bidirectional, pt, cfg, getattr(torch, dtype))
    methods = {
        "gen-numpy": lambda: gen_np.loss_and_grad(p, x, y),
        "gen-torch": lambda: gen_t.loss_and_grad(pt, xt, yt),
        f"nn.{NN[cell].__name__}": lambda: module(xt, yt),
    }
    names = [n.replace("_l0", "") for n, _ in module.rnn.named_parameters()]
    return methods, names


def run_config(cell: str, arch: str, cfg, dtype: str, quick: bool, interleaved_ms,
               check_methods, to_numpy) -> dict:
    """One row: check against gen-numpy float64, then time (torch methods interleaved)."""
    methods64, names = build_methods(cell, arch, cfg, "float64")
    ref_loss, ref_grads = methods64["gen-numpy"]()
    reference = (float(ref_loss), {n: to_numpy(ref_grads[n]) for n in names})
    check_methods(methods64, names, reference, 1e-9, "float64", f"{arch} {cell} {cfg}")
    methods = methods64
    if dtype != "float64":
        methods, _ = build_methods(cell, arch, cfg, dtype)
        check_methods(methods, names, reference, 1e-3, dtype, f"{arch} {cell} {cfg} {dtype}")
    budget, lo, hi = (1.0, 3, 10) if quick else (3.0, 5, 31)
    reference_name = f"nn.{NN[cell].__name__}"
    ms = interleaved_ms({m: methods[m] for m in ("gen-torch", reference_name)}, budget, lo, hi)
    ms |= interleaved_ms({"gen-numpy": methods["gen-numpy"]}, budget, lo, hi)
    return {"cell": cell, "arch": arch, "config": cfg, "dtype": dtype, "ms": ms,
            "reference": reference_name}


def format_rows(rows: list[dict]) -> str:
    """One markdown table per (arch, cell): times, the faster generated one, its ratio."""
    out = []
    for arch in ARCHS:
        for cell in NN:
            mine = [r for r in rows if r["arch"] == arch and r["cell"] == cell]
            if not mine:
                continue
            ref = mine[0]["reference"]
            head = ["(B, D, H, O, T)", "dtype", "gen-numpy", "gen-torch", ref, "gen-best",
                    f"gen-best / {ref}"]
            lines = [f"#### {cell}, 2 layers" + (", bidirectional" if arch == "bidirectional"
                                                  else ""), "",
                     "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for r in mine:
                ms = r["ms"]
                best = min(("gen-numpy", "gen-torch"), key=ms.__getitem__)
                lines.append(f"| {r['config']} | {r['dtype']} | {ms['gen-numpy']:.2f} | "
                             f"{ms['gen-torch']:.2f} | {ms[ref]:.2f} | "
                             f"{best.removeprefix('gen-')} | {ms[best] / ms[ref]:.2f}x |")
            out.append("\n".join(lines) + "\n\ntimes in ms (median)")
    return "\n\n".join(out)
