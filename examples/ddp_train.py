"""symrnn.nn.LSTM under torch.nn.parallel.DistributedDataParallel (gloo, 2 processes).

Each process trains symrnn.nn.training's Embedding → symrnn.nn.LSTM (2 layers) → Linear
on its half of every batch of the character task; DDP
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

from symrnn.nn.training import CharModel, batches, step

B = 8
"""Batch size of one step; each of the processes takes B / world of it."""


def make_model():
    from symrnn.nn import LSTM

    return CharModel(LSTM)


def worker(rank: int, world: int, steps: int, init: str, result: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = make_model()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
    share = B // world
    for x, y in batches(steps, B=B):
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
    model = make_model()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in batches(args.steps, B=B):
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
