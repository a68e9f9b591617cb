"""Benchmark the PDE solvers of hesslab.pde on a 2-D grid (default 256 × 256, N = 65,536 unknowns), in one run.

Baseline, measured in the same run: one sparse factorisation of the Hessian A + diag F''(u) at the solution (SuperLU,
the same ordering and options ``pde_newton`` uses). Newton with a direct solver needs one factorisation per
iteration, so its time over the baseline is about its iteration count plus the cost of residuals, energies and line
searches: the target is <= (iterations + 1) factorisations. Also timed: Newton-CG (preconditioned by A + I) and
(A + I)-preconditioned gradient descent. Every workload runs ``--rounds`` times, interleaved; times are medians.

    .venv/bin/python benchmarks/pde.py            # 256 × 256, 3 rounds (~1 min on a 2-core CPU)
    .venv/bin/python benchmarks/pde.py --n 128    # a smaller grid
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import scipy.sparse as sparse
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import header, race, table, timed  # noqa: E402  benchmarks/harness.py

import hesslab as hl  # noqa: E402
from hesslab.pde._solvers import _factorise  # noqa: E402

PACKAGES = ("torch", "hesslab", "scipy", "numpy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="interior nodes per axis (2-D grid n × n)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(header(torch.device("cpu"), PACKAGES))  # scipy's sparse solvers: the CPU

    setup, problem = timed(lambda: hl.pde.elliptic_problem(args.n, 2))
    solution = hl.pde.newton(problem).u
    H = problem.laplacian + sparse.diags(problem.nonlinearity.d2F(solution).numpy())
    workloads = {
        "one factorisation (baseline)": lambda: _factorise(H),
        "Newton, direct": lambda: hl.pde.newton(problem),
        "Newton-CG, (A + I)-preconditioned": lambda: hl.pde.newton(problem, linear_solver="cg"),
        "(A + I)-preconditioned GD, tol 1e-6": lambda: hl.pde.preconditioned_gradient_descent(problem),
    }
    timings = race(workloads, rounds=args.rounds, warmup=0)
    names = list(workloads)
    baseline = names[0]
    print(f"{args.n} × {args.n} grid, N = {problem.size:,} unknowns; problem set-up (source by autograd) {setup:.2f} s")
    rows = []
    for name in names:
        result = timings.results[name][-1]
        detail = ["", ""] if name == baseline else [str(result.iterations), f"{float(result.history['error'][-1]):.1e}"]
        rows.append([name, f"{timings.median(name):.2f}", f"{timings.median(name) / timings.median(baseline):.1f}x",
                     *detail])
    print("\n".join(table(["workload", "median s", "x baseline", "iterations", "final residual"], rows)))
    newton = timings.results["Newton, direct"][-1]
    ratio = timings.median("Newton, direct") / timings.median(baseline)
    verdict = "met" if ratio <= newton.iterations + 1 else "MISSED"
    print(f"target: Newton direct <= (iterations + 1) = {newton.iterations + 1} factorisations: {ratio:.1f} "
          f"— {verdict}")


if __name__ == "__main__":
    main()
