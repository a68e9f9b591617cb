"""The Hessian spectrum of a digits MLP with the data sharded over torch.distributed ranks.

Run on one machine with two processes (CPUs, gloo):

    torchrun --standalone --nproc-per-node=2 examples/distributed_spectrum.py

On several machines, the same command on each with the node count, this node's rank and a reachable address:

    torchrun --nnodes=2 --node-rank=0 --nproc-per-node=4 --master-addr=10.0.0.1 --master-port=29500 \
        examples/distributed_spectrum.py            # and --node-rank=1 on the second machine

With one GPU per rank the backend is NCCL and every rank puts the model and its shard on ``cuda:<LOCAL_RANK>``
(done below when CUDA is there). Each rank holds 1/R of the data; every product is one all_reduce; every rank
computes the same numbers (rank 0 prints each rank's), and they equal the one-process numbers on all the data
(checked at the end on rank 0).
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
from torch.nn import functional as F

import hesslab as hl
from hesslab.data import digits
from hesslab.distributed import DistributedOperator
from hesslab.models import mlp, train_full_batch


def main() -> None:
    """Initialise the process group, shard the data, print the spectrum's summary on every rank."""
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.set_num_threads(1)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()

    # the same model on every rank: the same seed (or load one state_dict everywhere)
    X, y = digits(device=device)
    model = mlp([64, 32, 10], generator=torch.Generator(device=device).manual_seed(0), device=device)
    train_full_batch(model, F.cross_entropy, X, y, lr=0.5, max_steps=200)
    shard = slice(rank * len(y) // world, (rank + 1) * len(y) // world)  # this rank's rows

    H = DistributedOperator.from_model(model, F.cross_entropy, (X[shard], y[shard]))
    top = hl.top_eigen(H, 5, generator=hl.seed(0, device))
    trace = hl.hutchinson_trace(H, 100, generator=hl.seed(1, device))
    density = hl.spectral_density(H, 60, 4, generator=hl.seed(2, device))
    summary = (f"{len(y[shard])} of {len(y)} samples; n = {H.shape[0]} parameters; "
               f"top eigenvalues {[round(v, 4) for v in top.values.tolist()]}; trace {trace.value:.3f} ± "
               f"{trace.stderr:.3f}; SLQ second moment tr(H²)/n {density.moment(2):.4g}")
    summaries = [None] * world  # every rank's line, printed by rank 0 in rank order (the ranks' prints would mix)
    dist.all_gather_object(summaries, summary)
    if rank == 0:
        for other, line in enumerate(summaries):
            print(f"rank {other}/{world}: {line}", flush=True)

    if rank == 0:  # the same on one process with all the data
        one = hl.top_eigen(hl.HessianOperator.from_model(model, F.cross_entropy, (X, y)), 5,
                           generator=hl.seed(0, device))
        error = float(((top.values - one.values).abs() / one.values.abs()).max())
        print(f"rank 0: largest relative difference from one process: {error:.1e}", flush=True)
    dist.barrier()  # rank 1 must not tear its connections down while rank 0 is still at work (gloo aborts then)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
