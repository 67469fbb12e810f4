"""A small character-level task: symrnn.nn against torch.nn, trained side by side.

``Embedding(vocab, 8) → recurrent(8, 16, num_layers=2, batch_first) → Linear(16, vocab)``,
next-character cross-entropy on :data:`TEXT` (shipped here: two pangrams), Adam (lr
0.01), batches of 4 windows of 12 characters drawn from one seeded generator, float64.
:func:`compare` trains the model built on ``symrnn.nn`` and the one built on
``torch.nn`` from the same initial weights and returns both loss curves;
:func:`training_section` draws them for ``symrnn report``.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["TEXT", "VOCAB", "CharModel", "batches", "step", "train", "compare",
           "training_section"]

TEXT = ("the quick brown fox jumps over the lazy dog; "
        "pack my box with five dozen liquor jugs. ") * 4
VOCAB = sorted(set(TEXT))
TORCH_CLASSES = {"elman": "RNN", "lstm": "LSTM", "gru": "GRU"}


class CharModel(torch.nn.Module):
    """Embedding → a recurrent module (2 layers) → Linear, float64."""

    def __init__(self, recurrent, hidden: int = 16, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = torch.nn.Embedding(len(VOCAB), 8, dtype=torch.float64)
        self.rnn = recurrent(8, hidden, num_layers=2, batch_first=True, dtype=torch.float64)
        self.out = torch.nn.Linear(hidden, len(VOCAB), dtype=torch.float64)

    def forward(self, ids):
        out, _ = self.rnn(self.embed(ids))
        return self.out(out)


def batches(steps: int, T: int = 12, B: int = 4):  # noqa: N803
    """(inputs, next characters), each (B, T) of indices: the same for every caller."""
    ids = torch.tensor([VOCAB.index(c) for c in TEXT])
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - T - 1, (B,), generator=gen)
        yield (torch.stack([ids[s:s + T] for s in starts]),
               torch.stack([ids[s + 1:s + T + 1] for s in starts]))


def step(model, optimizer, x, y) -> float:
    """One optimizer step on the mean next-character cross-entropy of (x, y)."""
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             y.reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def train(model: CharModel, steps: int = 200) -> list[float]:
    """Adam (lr 0.01) over :func:`batches`."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    return [step(model, optimizer, x, y) for x, y in batches(steps)]


def compare(cell: str, steps: int = 200) -> tuple[list[float], list[float]]:
    """(symrnn.nn's losses, torch.nn's losses) from the same initial weights."""
    import symrnn.nn as snn

    kind = TORCH_CLASSES[cell]
    ours = CharModel(getattr(snn, kind))
    theirs = CharModel(getattr(torch.nn, kind))
    theirs.load_state_dict(ours.state_dict())
    return train(ours, steps), train(theirs, steps)


def training_section(spec, out: Path) -> str:
    """## Training: the two loss curves (training.png) and their largest difference."""
    if spec.cell not in TORCH_CLASSES:
        return (f"## Training with symrnn.nn\n\ncell {spec.cell!r} has no torch.nn "
                "counterpart to train against (symrnn.nn.GRU(reset='before') runs it).")
    ours, theirs = compare(spec.cell)
    worst = max(abs(a - b) / abs(b) for a, b in zip(ours, theirs, strict=True))
    _plot(ours, theirs, TORCH_CLASSES[spec.cell], out / "training.png")
    return ("## Training with symrnn.nn\n\n"
            f"Embedding -> {TORCH_CLASSES[spec.cell]} (2 layers, H=16) -> Linear on a "
            f"character task, Adam, {len(ours)} steps, float64: loss {ours[0]:.3f} -> "
            f"{ours[-1]:.3f}; largest relative difference from torch.nn "
            f"{worst:.2e} per step.\n\n- plot: training.png")


def _plot(ours: list[float], theirs: list[float], kind: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
    top.plot(theirs, label=f"torch.nn.{kind}", linewidth=3, alpha=0.5)
    top.plot(ours, label=f"symrnn.nn.{kind}", linewidth=1)
    top.set_ylabel("cross-entropy")
    top.legend()
    rel = [abs(a - b) / abs(b) for a, b in zip(ours, theirs, strict=True)]
    bottom.semilogy([max(r, 1e-18) for r in rel])
    bottom.set_ylabel("relative difference")
    bottom.set_xlabel("Adam step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
