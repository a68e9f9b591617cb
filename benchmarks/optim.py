"""Benchmark one step of hesslab.optim's AdaHessian and Sophia against one step of torch.optim.Adam, in one run.

The task is notebook 10's: scikit-learn's digits, an MLP 64-W-10 (tanh, float32, W = 64 by default), mean
cross-entropy on mini-batches of 128, ``torch.set_num_threads(2)``. One "step" of each competitor is what a training
loop pays per iteration, the forward pass included:

    competitor        one step
    Adam              zero_grad, forward, backward, torch.optim.Adam.step()          (the baseline)
    gradient          zero_grad, forward, backward                                     (for reference)
    AdaHessian        AdaHessian.step(closure): forward, gradient with its graph, one HVP, the update
    SophiaG (k = 10)  Sophia.step(closure): forward, gradient, the update; every 10th step also samples labels and
                      runs one more backward (the Gauss-Newton-Bartlett estimate)
    SophiaH (k = 10)  the same with the Hutchinson estimate (gradient with graph and one HVP on the refresh step)

Every competitor is timed in units of 10 consecutive steps (so the Sophia rows are amortised over k = 10, and all
units are of similar length), and a step's time is the unit's divided by 10.

Targets (issue 15): an AdaHessian step <= 2.5x an Adam step; a SophiaG step amortised over k = 10 <= 1.3x.

Timing: every competitor is warmed up, then all run interleaved, round-robin, for ``--rounds`` rounds (the starting
competitor rotates every round); in each round a competitor runs ``--repeats`` of its units back to back. A time
is the median over rounds; a ratio is the ratio of two medians and the brackets give the interquartile range of the
per-round ratios (the two ran back to back).

    .venv/bin/python benchmarks/optim.py                 # ~1 minute on a 2-core CPU
    .venv/bin/python benchmarks/optim.py --width 256     # a wider MLP
    .venv/bin/python benchmarks/optim.py --device cuda   # default: hesslab.device()
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
from harness import header, race, table  # benchmarks/harness.py: this folder is on sys.path
from torch.nn.functional import cross_entropy

import hesslab as hl
from hesslab import data, models

PACKAGES = ("torch", "hesslab", "numpy")
ADAHESSIAN_TARGET = 2.5  # an AdaHessian step <= 2.5 Adam steps
SOPHIA_G_TARGET = 1.3  # a SophiaG step amortised over k = 10 <= 1.3 Adam steps
K = 10


def make_task(width: int, batch_size: int, device: torch.device):
    """The digits data on the device, a fresh MLP per competitor (same initial weights), fixed batches."""
    inputs, targets = data.digits(dtype=torch.float32, device=device)
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, inputs.shape[0], (batch_size,), generator=generator).to(device) for _ in range(64)]

    def model():
        return models.mlp([64, width, 10], generator=torch.Generator().manual_seed(0), dtype=torch.float32,
                          device=device)

    return inputs, targets, batches, model


def competitors(width: int, batch_size: int, device: torch.device) -> dict[str, Callable[[], None]]:
    """One callable per competitor; each call runs one unit, K = 10 steps, on the next mini-batches of a cycle of
    64."""
    inputs, targets, batches, new_model = make_task(width, batch_size, device)
    units: dict[str, Callable[[], None]] = {}

    def cycling():
        state = {"i": 0}

        def next_batch():
            index = batches[state["i"] % len(batches)]
            state["i"] += 1
            return inputs[index], targets[index]
        return next_batch

    def first_order(optimizer_of, with_step: bool):
        model = new_model()
        optimizer = optimizer_of(model.parameters())
        batch = cycling()

        def unit():
            for _ in range(K):
                x, y = batch()
                optimizer.zero_grad(set_to_none=True)
                cross_entropy(model(x), y).backward()
                if with_step:
                    optimizer.step()
        return unit

    units["Adam"] = first_order(lambda p: torch.optim.Adam(p, lr=1e-3), True)
    units["gradient"] = first_order(lambda p: torch.optim.Adam(p, lr=1e-3), False)

    def second_order(optimizer_of, with_logits: bool, steps: int):
        model = new_model()
        optimizer = optimizer_of(model.parameters())
        batch = cycling()

        def unit():
            for _ in range(steps):
                x, y = batch()
                if with_logits:
                    def closure():
                        logits = model(x)
                        return cross_entropy(logits, y), logits
                else:
                    def closure():
                        return cross_entropy(model(x), y)
                optimizer.step(closure)
        return unit

    generator = torch.Generator(device).manual_seed(1)
    units["AdaHessian"] = second_order(lambda p: hl.optim.AdaHessian(p, lr=1e-3, generator=generator), False, K)
    units["SophiaG"] = second_order(lambda p: hl.optim.Sophia(p, lr=1e-4, update_every=K, generator=generator), True, K)
    units["SophiaH"] = second_order(
        lambda p: hl.optim.Sophia(p, lr=1e-4, update_every=K, estimator="hutchinson", generator=generator), False, K)
    return units


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="default: hesslab.device() (CUDA when available)")
    parser.add_argument("--width", type=int, default=64, help="hidden width W of the MLP 64-W-10 (default 64)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--repeats", type=int, default=3, help="units of 10 steps per competitor and round (default 3)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else hl.device()
    print(header(device, PACKAGES))
    n = sum(p.numel() for p in make_task(args.width, args.batch_size, device)[3]().parameters())
    print(f"task: digits, MLP 64-{args.width}-10 (tanh, float32, {n} parameters), batch {args.batch_size}; "
          f"{args.rounds} rounds x {args.repeats} units; medians, [interquartile range of per-round ratios]\n")
    start = time.perf_counter()
    units = competitors(args.width, args.batch_size, device)
    timings = race(units, device, args.rounds, args.repeats, warmup=3)
    adam = timings.median("Adam")
    rows = [("Adam step", "Adam", None), ("gradient (forward + backward)", "gradient", None),
            ("AdaHessian step", "AdaHessian", ADAHESSIAN_TARGET),
            (f"SophiaG step, amortised over k = {K}", "SophiaG", SOPHIA_G_TARGET),
            (f"SophiaH step, amortised over k = {K}", "SophiaH", None)]
    cells = []
    met_all = True
    for label, name, target in rows:
        median, q1, q3 = timings.ratio(name, "Adam")
        met = "-" if target is None else ("yes" if median <= target else "NO")
        met_all &= met != "NO"
        target_text = "-" if target is None else f"<= {target}x"
        cells.append([label, f"{timings.median(name) / K * 1e3:.3f} ms", f"{median:.2f}x [{q1:.2f}-{q3:.2f}]",
                      f"{timings.fastest_ratio(name, 'Adam'):.2f}x", target_text, met])
    print("\n".join(table(["workload", "time per step (median)", "ratio to an Adam step (medians) [IQR]",
                           "ratio of the fastest rounds", "target", "met"], cells)))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nAdam step {adam / K * 1e3:.3f} ms; all targets met: {'yes' if met_all else 'NO'}; "
          f"load average {load:.1f} at the end; total time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
