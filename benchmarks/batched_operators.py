"""Benchmark curvature products over several batches against the same products on the concatenated batch.

``HessianOperator.from_model(model, loss, batches) @ V`` over 3 batches, V with 30 columns, against the baseline
measured in the same run: the same 30 products on the concatenated batch, *including* the one gradient graph they
need (``HessianOperator.from_model(model, loss, (X, y)) @ V``: build the graph once, 30 backward passes). Over
batches each product must build each batch's gradient graph once and run all 30 columns through it (3 graphs, 90
backward passes of a third of the size), so the target is <= 1.15x the baseline. Also printed: the concatenated
operator's products alone (graph already built) and the same for the GGN.

    .venv/bin/python benchmarks/batched_operators.py                 # 2 threads, 7 interleaved rounds
    .venv/bin/python benchmarks/batched_operators.py --threads 1 --dtype float32
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import header, race, table  # noqa: E402  benchmarks/harness.py

import hesslab as hl  # noqa: E402
from hesslab.models import mlp  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--columns", type=int, default=30)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 64, 10], help="MLP layer sizes")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="columns per batched backward of the operators over batches (default: hesslab's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(header(torch.device("cpu"), ("torch", "numpy")))

    generator = torch.Generator().manual_seed(0)
    model = mlp(args.sizes, "tanh", generator=generator, dtype=dtype)
    N = args.batches * args.batch_size
    X = torch.randn(N, args.sizes[0], generator=generator, dtype=dtype)
    y = torch.randint(0, args.sizes[-1], (N,), generator=generator)
    batches = list(zip(X.split(args.batch_size), y.split(args.batch_size)))
    n = sum(p.numel() for p in model.parameters())
    V = torch.randn(n, args.columns, generator=generator, dtype=dtype)

    over_batches = hl.HessianOperator.from_model(model, F.cross_entropy, batches)
    concatenated = hl.HessianOperator.from_model(model, F.cross_entropy, (X, y))
    ggn_over_batches = hl.GGNOperator.from_model(model, F.cross_entropy, batches)
    if args.chunk_size is not None:
        over_batches.chunk_size = ggn_over_batches.chunk_size = args.chunk_size
    ggn_concatenated = hl.GGNOperator.from_model(model, F.cross_entropy, (X, y))
    error = (over_batches @ V - concatenated @ V).norm() / (concatenated @ V).norm()
    ggn_error = (ggn_over_batches @ V - ggn_concatenated @ V).norm() / (ggn_concatenated @ V).norm()
    workloads = {
        "concatenated: graph + products (baseline)":
            lambda: hl.HessianOperator.from_model(model, F.cross_entropy, (X, y)) @ V,
        f"{args.batches} batches: products": lambda: over_batches @ V,
        "concatenated: products on a kept graph": lambda: concatenated @ V,
        "GGN concatenated: graphs + products (baseline)":
            lambda: hl.GGNOperator.from_model(model, F.cross_entropy, (X, y)) @ V,
        f"GGN {args.batches} batches: products": lambda: ggn_over_batches @ V,
    }
    timings = race(workloads, rounds=args.rounds, warmup=1)
    names = list(workloads)
    print(f"MLP {args.sizes} ({args.dtype}, n = {n:,}), {args.batches} batches of {args.batch_size}, "
          f"V with {args.columns} columns ({over_batches.chunk_size} per backward over batches, "
          f"{concatenated.chunk_size} on the concatenated batch), {args.rounds} interleaved rounds (medians; range "
          "in brackets)")
    print(f"check: relative difference batches vs concatenated, Hessian {error:.1e}, GGN {ggn_error:.1e}")
    rows = []
    for name in names:
        baseline = names[3] if name.startswith("GGN") else names[0]
        low, high = timings.spread(name, baseline)
        rows.append([name, f"{timings.median(name) * 1e3:.1f} ms",
                     f"{timings.median(name) / timings.median(baseline):.2f}x baseline [{low:.2f}-{high:.2f}]"])
    print("\n".join(table(["workload", "median", "ratio [fastest-slowest round]"], rows)))


if __name__ == "__main__":
    main()
