"""Benchmark hesslab.distributed: 2 ranks × 1 thread against 1 process × 1 thread on the same total data.

Workloads (float32, an MLP 64-128-128-10 with tanh, mean cross-entropy, 2048 and 8192 samples from Gaussian
clusters):

    one HVP                 DistributedOperator @ v, each rank on its 1024 samples   vs  HessianOperator @ v on 2048
    Hutchinson, 100 probes  hutchinson_trace(DistributedOperator, 100)               vs  the same on one process
    all-reduce              dist.all_reduce of an n + 2 vector (what one product sends), as a share of one HVP

Both competitors run inside the same two spawned ranks (gloo over loopback), interleaved round-robin by
``harness.race``: for the one-process baseline rank 0 computes alone on all the data while rank 1 waits at a barrier,
so both are timed in the same minutes. Target: speedup >= 1.6x on this 2-core machine.

    .venv/bin/python benchmarks/distributed.py [--rounds 7] [--samples 2048 8192]
"""

from __future__ import annotations

import argparse
import datetime
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from harness import header, race, ratio_text, table  # benchmarks/harness.py: this folder is on sys.path
from torch.nn import functional as F

import hesslab as hl
from hesslab.data import gaussian_clusters
from hesslab.distributed import DistributedOperator
from hesslab.models import mlp

WIDTH, INPUT_DIM, CLASSES = 128, 64, 10


def problem(samples: int):
    """The model and the data, the same on every rank (seeded)."""
    X, y = gaussian_clusters(samples, INPUT_DIM, CLASSES, generator=torch.Generator().manual_seed(0))
    model = mlp([INPUT_DIM, WIDTH, WIDTH, CLASSES], generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    return model, X.float(), y


def rank_main(rank: int, store: str, samples: int, rounds: int, queue) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=120))
    model, X, y = problem(samples)
    half = slice(rank * samples // 2, (rank + 1) * samples // 2)
    shared = DistributedOperator.from_model(model, F.cross_entropy, (X[half], y[half]))
    whole = hl.HessianOperator.from_model(model, F.cross_entropy, (X, y)) if rank == 0 else None
    n = shared.shape[0]
    v = torch.randn(n, generator=torch.Generator().manual_seed(2))
    buffer = torch.randn(n + 2)  # what one product sends: A v, the status flag, the hash

    def together(work):
        def call():
            work()
            dist.barrier()
        return call

    def alone(work):  # rank 0 works, rank 1 waits at the barrier
        return together(work if rank == 0 else (lambda: None))

    hvp = race({"1 process": alone(lambda: whole @ v), "2 ranks": together(lambda: shared @ v),
                "all_reduce": together(lambda: dist.all_reduce(buffer.clone()))},
               rounds=rounds, repeats=20, warmup=3)
    trace = race({"1 process": alone(lambda: hl.hutchinson_trace(whole, 100, generator=hl.seed(3, "cpu"))),
                  "2 ranks": together(lambda: hl.hutchinson_trace(shared, 100, generator=hl.seed(3, "cpu")))},
                 rounds=rounds, repeats=1, warmup=1)
    if rank == 0:
        queue.put({"n": n, "hvp": (hvp.median("1 process"), hvp.median("2 ranks"), hvp.ratio("1 process", "2 ranks"),
                                   hvp.median("all_reduce")),
                   "trace": (trace.median("1 process"), trace.median("2 ranks"), trace.ratio("1 process", "2 ranks"))})
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--samples", type=int, nargs="+", default=[2048, 8192],
                        help="total samples (each rank holds half); one table row group per size")
    args = parser.parse_args()
    print(header(torch.device("cpu"), ["torch"]))
    rows = []
    for samples in args.samples:
        rows += measure(samples, args.rounds)
    print(f"float32, MLP {INPUT_DIM}-{WIDTH}-{WIDTH}-{CLASSES}; 2 ranks x 1 thread (gloo) against 1 process x 1 "
          f"thread on the same total data; medians of {args.rounds} interleaved rounds\n")
    print("\n".join(table(["workload", "1 process", "2 ranks", "ratio", "target"], rows)))


def measure(samples: int, rounds: int) -> list[list[str]]:
    """The table rows for one data size: run the two ranks, collect rank 0's timings."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    store = tempfile.mktemp(prefix="hesslab_bench_")
    ranks = [context.Process(target=rank_main, args=(rank, store, samples, rounds, queue))
             for rank in range(2)]
    for process in ranks:
        process.start()
    result = queue.get(timeout=1800)
    for process in ranks:
        process.join()
    one, two, ratio, reduce_seconds = result["hvp"]
    one_t, two_t, ratio_t = result["trace"]
    what = f"{samples} samples (n = {result['n']:,})"
    return [[f"one HVP, {what}", f"{one * 1e3:.2f} ms", f"{two * 1e3:.2f} ms", ratio_text(ratio, "speedup"), ">= 1.6x"],
            [f"Hutchinson, 100 probes, {samples} samples", f"{one_t * 1e3:.0f} ms", f"{two_t * 1e3:.0f} ms",
             ratio_text(ratio_t, "speedup"), ">= 1.6x"],
            [f"all_reduce of n + 2 floats, {samples} samples", "", f"{reduce_seconds * 1e3:.3f} ms",
             f"{reduce_seconds / two:.0%} of a 2-rank HVP", ""]]


if __name__ == "__main__":
    main()
