"""Benchmark curvature products over several batches against the same products on the concatenated batch.

``HessianOperator.from_model(model, loss, batches) @ V`` over 3 batches, V with 30 columns, against the baseline
measured in the same run: the same 30 products on the concatenated batch, *including* the one gradient graph they
need (``HessianOperator.from_model(model, loss, (X, y)) @ V``: build the graph once, 30 backward passes). Over
batches each product builds each group's gradient graph once and runs all 30 columns through it; by default small
batches are merged into one graph of up to ``samples_per_graph`` = 1024 samples (``hesslab._merging``), here all 3.
The target is <= 1.15x the baseline. Also printed: the same operator with every batch its own graph
(``samples_per_graph=1``: 3 graphs, 90 backward passes of a third of the size), the concatenated operator's products
alone (graph already built) and the same for the GGN.

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


def graphs(op) -> str:
    """"1 graph", "3 graphs": the operator's gradient graphs per product."""
    return f"{op.num_graphs} graph{'s' if op.num_graphs > 1 else ''}"


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
    unmerged = hl.HessianOperator.from_model(model, F.cross_entropy, batches, samples_per_graph=1)
    concatenated = hl.HessianOperator.from_model(model, F.cross_entropy, (X, y))
    ggn_over_batches = hl.GGNOperator.from_model(model, F.cross_entropy, batches)
    ggn_unmerged = hl.GGNOperator.from_model(model, F.cross_entropy, batches, samples_per_graph=1)
    if args.chunk_size is not None:
        for op in (over_batches, unmerged, ggn_over_batches, ggn_unmerged):
            op.chunk_size = args.chunk_size
    ggn_concatenated = hl.GGNOperator.from_model(model, F.cross_entropy, (X, y))
    error = max((op @ V - concatenated @ V).norm() / (concatenated @ V).norm() for op in (over_batches, unmerged))
    ggn_error = max((op @ V - ggn_concatenated @ V).norm() / (ggn_concatenated @ V).norm()
                    for op in (ggn_over_batches, ggn_unmerged))
    workloads = {
        "concatenated: graph + products (baseline)":
            lambda: hl.HessianOperator.from_model(model, F.cross_entropy, (X, y)) @ V,
        f"{args.batches} batches: products ({graphs(over_batches)}, default)": lambda: over_batches @ V,
        f"{args.batches} batches: products (samples_per_graph=1)": lambda: unmerged @ V,
        "concatenated: products on a kept graph": lambda: concatenated @ V,
        "GGN concatenated: graphs + products (baseline)":
            lambda: hl.GGNOperator.from_model(model, F.cross_entropy, (X, y)) @ V,
        f"GGN {args.batches} batches: products ({graphs(ggn_over_batches)}, default)":
            lambda: ggn_over_batches @ V,
        f"GGN {args.batches} batches: products (samples_per_graph=1)": lambda: ggn_unmerged @ V,
    }
    timings = race(workloads, rounds=args.rounds, warmup=1)
    names = list(workloads)
    print(f"MLP {args.sizes} ({args.dtype}, n = {n:,}), {args.batches} batches of {args.batch_size}, "
          f"V with {args.columns} columns ({over_batches.chunk_size} per backward over batches, "
          f"{concatenated.chunk_size} on the concatenated batch), {args.rounds} interleaved rounds (medians; range "
          "in brackets)")
    print(f"check: relative difference batches (merged and not) vs concatenated, Hessian {error:.1e}, "
          f"GGN {ggn_error:.1e}")
    rows = []
    for name in names:
        baseline = names[4] if name.startswith("GGN") else names[0]
        low, high = timings.spread(name, baseline)
        rows.append([name, f"{timings.median(name) * 1e3:.1f} ms",
                     f"{timings.median(name) / timings.median(baseline):.2f}x baseline [{low:.2f}-{high:.2f}]"])
    print("\n".join(table(["workload", "median", "ratio [fastest-slowest round]"], rows)))


if __name__ == "__main__":
    main()
