"""Benchmark the sharpness measurement of hesslab.training, ratios against baselines timed in the same run (issue 14).

On notebook 07's net mid-training (MLP 64-64-64-10 tanh on 1000 digits, squared error, full-batch GD with η = 0.25,
float64), at each of the steps t = T, T+1, …, T+K−1:

    warm     top_eigen(H_t, tol, v0=U_t), U_t = warm_subspace([v_{t−4}, …, v_{t−1}]): Rayleigh–Ritz on the span of
             the last four measurements' top eigenvectors, expanded by residuals (track_curvature, every=1, the
             default warm_vectors=4)
    warm-1   top_eigen(H_t, tol, v0=v_{t−1}): Lanczos from the previous top eigenvector alone (the earlier warm start)
    cold     top_eigen(H_t, tol) from a random Gaussian vector
    PyHessian  eigenvalues() (power iteration, its default tol 1e-3 on the eigenvalue's relative change)

Targets: warm <= 0.35x cold's HVPs at the same tol, and warm <= 0.5x PyHessian's time. Reported at two points of
the run: T = 300 (progressive sharpening) and T = 700 (at the edge, where the top direction turns from step to step).
The warm starts are in their steady state: both are measured (uncounted) over the ``--warmup`` steps before each
window, as track_curvature would have. Every column of every product counts (a start block of m vectors is m HVPs).

    .venv/bin/python benchmarks/training.py [--steps 300 700] [--window 10] [--warmup 4] [--tol 1e-3]
"""

from __future__ import annotations

import argparse
import statistics
import warnings

import torch
from harness import header, ratio_text, table, timed  # benchmarks/harness.py: this folder is on sys.path

import hesslab as hl
from hesslab.experiments.edge_of_stability import digits_subset, squared_error
from hesslab.models import mlp
from hesslab.training import warm_subspace

warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")  # PyHessian's own call
HVP_TARGET, TIME_TARGET = 0.35, 0.5


def gd_step(model, inputs, targets, lr):
    """One full-batch gradient-descent step."""
    model.zero_grad(set_to_none=True)
    squared_error(model(inputs), targets).backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
    model.zero_grad(set_to_none=True)


def measure_window(model, inputs, targets, lr, window, warmup, tol, generator):
    """Per step of the window: the HVPs, seconds and eigenvalues of warm, warm-1, cold, and PyHessian's seconds.

    The first ``warmup`` steps only fill the warm starts' memory (as in a run of track_curvature) and are not
    returned.
    """
    from pyhessian import hessian as pyhessian

    previous = [hl.top_eigen(hl.HessianOperator.from_model(model, squared_error, (inputs, targets)), tol=1e-8,
                             generator=generator).vectors[:, 0]]
    single = previous[-1]
    rows = []
    for step in range(-warmup, window):
        gd_step(model, inputs, targets, lr)
        op = hl.HessianOperator.from_model(model, squared_error, (inputs, targets))
        warm_s, warm = timed(lambda: hl.top_eigen(op, tol=tol, v0=warm_subspace(previous), generator=generator))
        single_s, warm_1 = timed(lambda: hl.top_eigen(op, tol=tol, v0=single, generator=generator))
        previous, single = (previous + [warm.vectors[:, 0]])[-4:], warm_1.vectors[:, 0]
        if step < 0:
            continue
        cold_s, cold = timed(lambda: hl.top_eigen(op, tol=tol, generator=generator))
        ph = pyhessian(model, squared_error, data=(inputs, targets), cuda=False)
        model.zero_grad(set_to_none=True)
        ph_s, (ph_values, _) = timed(lambda: ph.eigenvalues(top_n=1))
        rows.append({"warm_hvps": warm.num_matvecs, "warm1_hvps": warm_1.num_matvecs, "cold_hvps": cold.num_matvecs,
                     "warm_s": warm_s, "warm1_s": single_s, "cold_s": cold_s, "ph_s": ph_s,
                     "warm": warm.values[0].item(), "warm1": warm_1.values[0].item(), "cold": cold.values[0].item(),
                     "pyhessian": float(ph_values[0]), "warm_error": (warm.residuals[0] / warm.values[0]).item()})
    return rows


def verdict_row(name, rows, hvps, seconds, tol):
    """A table row: ``name``'s median HVPs and time, its HVPs against cold's and its time against PyHessian's."""
    med = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    hvp_ratio = sum(r[hvps] for r in rows) / sum(r["cold_hvps"] for r in rows)
    time_ratios = sorted(r[seconds] / r["ph_s"] for r in rows)
    time_ratio = (statistics.median(time_ratios), time_ratios[len(rows) // 4], time_ratios[(3 * len(rows)) // 4])
    return [name, f"{med[hvps]:.0f} HVPs, {med[seconds] * 1e3:.1f} ms",
            f"{hvp_ratio:.2f}x cold top_eigen's HVPs ({med['cold_hvps']:.0f}, tol {tol:g}); "
            + ratio_text(time_ratio, f"PyHessian ({med['ph_s'] * 1e3:.1f} ms)"),
            f"<= {HVP_TARGET}x HVPs, <= {TIME_TARGET}x PyHessian",
            "met" if hvp_ratio <= HVP_TARGET and time_ratio[0] <= TIME_TARGET else "missed"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, nargs="+", default=[300, 700])
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--lr", type=float, default=0.25)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(header(torch.device("cpu"), ["torch", "hesslab", "pyhessian"]))
    inputs, targets = digits_subset(1000, 0)
    model = mlp([64, 64, 64, 64, 10], activation="tanh", generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    done, out = 0, []
    for step in sorted(args.steps):
        for _ in range(step - args.warmup - done):
            gd_step(model, inputs, targets, args.lr)
        rows = measure_window(model, inputs, targets, args.lr, args.window, args.warmup, args.tol, generator)
        done = step + args.window
        med = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        agree = max(max(abs(r["warm"] - r["cold"]), abs(r["warm1"] - r["cold"])) / abs(r["cold"]) for r in rows)
        print(f"  steps {step}-{step + args.window - 1}: λ_max ≈ {med['cold']:.4f} (2/η = {2 / args.lr:g}); "
              f"warm {med['warm_hvps']:.0f} HVPs (per step {[r['warm_hvps'] for r in rows]}), warm-1 "
              f"{med['warm1_hvps']:.0f}, cold {med['cold_hvps']:.0f}, PyHessian λ ≈ {med['pyhessian']:.4f}; "
              f"warm, warm-1 and cold agree to {agree:.1e}; warm's largest relative residual "
              f"{max(r['warm_error'] for r in rows):.1e}; HVPs in all: warm {sum(r['warm_hvps'] for r in rows)}, "
              f"warm-1 {sum(r['warm1_hvps'] for r in rows)}, cold {sum(r['cold_hvps'] for r in rows)}")
        out.append(verdict_row(f"warm sharpness, steps {step}+", rows, "warm_hvps", "warm_s", args.tol))
        out.append(verdict_row(f"warm-1 (one vector), steps {step}+", rows, "warm1_hvps", "warm1_s", args.tol))
    print("\n".join(table(["workload", "hesslab", "ratio", "target", ""], out)))


if __name__ == "__main__":
    main()
