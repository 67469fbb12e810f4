"""symrnn.nn.LSTM under torch.nn.parallel.DistributedDataParallel (gloo, 2 processes).

Each process trains Embedding → symrnn.nn.LSTM → Linear on its half of every batch; DDP
averages the gradients.  The same model trained in one process on the whole batches
(the loss a mean over the batch, so the average of the halves' gradients is the whole
batch's) must end with the same parameters.  Run::

    python examples/ddp_train.py [--steps 5] [--world 2]

It prints the largest parameter difference and exits 1 above 1e-10 (float64).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TEXT = "the quick brown fox jumps over the lazy dog; pack my box with five dozen jugs. " * 3
VOCAB = sorted(set(TEXT))
B, T, H = 8, 10, 12


class CharModel(torch.nn.Module):
    """Embedding → symrnn.nn.LSTM (2 layers, bidirectional) → Linear."""

    def __init__(self):
        from symrnn.nn import LSTM

        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(len(VOCAB), 6, dtype=torch.float64)
        self.rnn = LSTM(6, H, num_layers=2, bidirectional=True, batch_first=True,
                        dtype=torch.float64)
        self.out = torch.nn.Linear(2 * H, len(VOCAB), dtype=torch.float64)

    def forward(self, x):
        out, _ = self.rnn(self.embed(x))
        return self.out(out)


def batches(steps: int):
    ids = torch.tensor([VOCAB.index(c) for c in TEXT])
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - T - 1, (B,), generator=gen)
        yield (torch.stack([ids[s:s + T] for s in starts]),
               torch.stack([ids[s + 1:s + T + 1] for s in starts]))


def step(model, optimizer, x, y) -> None:
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(VOCAB)), y.reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def worker(rank: int, world: int, steps: int, init: str, result: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = CharModel()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
    share = B // world
    for x, y in batches(steps):
        part = slice(rank * share, (rank + 1) * share)
        step(ddp, optimizer, x[part], y[part])
    if rank == 0:
        torch.save({n: p.detach() for n, p in model.named_parameters()}, result)
    dist.destroy_process_group()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--world", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        init, result = f"file://{os.path.join(tmp, 'rendezvous')}", os.path.join(tmp, "p.pt")
        mp.spawn(worker, args=(args.world, args.steps, init, result), nprocs=args.world)
        distributed = torch.load(result)
    model = CharModel()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in batches(args.steps):
        step(model, optimizer, x, y)
    worst = max((distributed[n] - p.detach()).abs().max().item()
                for n, p in model.named_parameters())
    moved = max((start[n] - p.detach()).abs().max().item() for n, p in model.named_parameters())
    print(f"{args.world} processes (gloo) vs 1 process, {args.steps} SGD steps: "
          f"largest parameter difference {worst:.3e} (the parameters moved by up to "
          f"{moved:.3e})")
    return 0 if worst <= 1e-10 and moved > 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
