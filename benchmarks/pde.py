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
import statistics
import time

import scipy.sparse as sparse

import hesslab as hl
from hesslab.pde._solvers import _factorise


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="interior nodes per axis (2-D grid n × n)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    setup, problem = timed(lambda: hl.pde.elliptic_problem(args.n, 2))
    solution = hl.pde.newton(problem).u
    H = problem.laplacian + sparse.diags(problem.nonlinearity.d2F(solution).numpy())
    workloads = {
        "one factorisation (baseline)": lambda: _factorise(H),
        "Newton, direct": lambda: hl.pde.newton(problem),
        "Newton-CG, (A + I)-preconditioned": lambda: hl.pde.newton(problem, linear_solver="cg"),
        "(A + I)-preconditioned GD, tol 1e-6": lambda: hl.pde.preconditioned_gradient_descent(problem),
    }
    times: dict[str, list[float]] = {name: [] for name in workloads}
    results: dict[str, object] = {}
    names = list(workloads)
    for round_ in range(args.rounds):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            seconds, results[name] = timed(workloads[name])
            times[name].append(seconds)
    baseline = statistics.median(times[names[0]])
    print(f"{args.n} × {args.n} grid, N = {problem.size:,} unknowns; problem set-up (source by autograd) {setup:.2f} s")
    print(f"{'workload':<38} {'median s':>9} {'x baseline':>11}  iterations  final residual")
    for name in names:
        median = statistics.median(times[name])
        result = results[name]
        detail = "" if name == names[0] else f"{result.iterations:>10}  {float(result.history["error"][-1]):.1e}"
        print(f"{name:<38} {median:>9.2f} {median / baseline:>10.1f}x  {detail}")
    newton = results["Newton, direct"]
    ratio = statistics.median(times["Newton, direct"]) / baseline
    verdict = "met" if ratio <= newton.iterations + 1 else "MISSED"
    print(f"target: Newton direct <= (iterations + 1) = {newton.iterations + 1} factorisations: {ratio:.1f} "
          f"— {verdict}")


if __name__ == "__main__":
    main()
