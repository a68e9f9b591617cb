"""Benchmark hesslab's entropic OT solvers against POT 0.9, in one run.

Problem (Tang et al., ICLR 2024, first experiment): n random points in [0, 1]² on each side (seeded), the squared
Euclidean cost divided by its maximum, uniform marginals 1/n; n = 500 and 1000, reg = 1e-2 and 1e-3, solved to an ℓ1
marginal error ‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁ of 1e-8 and of 1e-12, in float64.

    competitor              what it runs
    hesslab sinkhorn        hl.transport.sinkhorn (log domain), tol = the target
    hesslab SNS             hl.transport.sinkhorn_newton_sparse (defaults: 20 warm-start steps, threshold 1e-6),
                            tol = the target
    POT sinkhorn            ot.sinkhorn(method="sinkhorn"): the scaling form u, v with K = exp(−C/reg)
    POT sinkhorn_log        ot.sinkhorn(method="sinkhorn_log"): the log-domain form

POT stops when the 2-norm of its column residual (checked every 10 iterations) is below stopThr; since
‖r‖₁ <= √n ‖r‖₂, stopThr = target/√n guarantees the ℓ1 target (its rows are exact after each iteration). Every
competitor's achieved ℓ1 marginal error is measured from its plan and printed, with its ℓ1 distance to a reference plan
(hesslab SNS to 1e-13). The three fast competitors run in `--rounds` interleaved rounds (the order rotates; medians
are reported, every round's time is printed); POT's sinkhorn_log, which takes tens of seconds, runs once. Everything
runs in this process with `--threads` torch and BLAS threads.

Targets (issue 5): SNS needs >= 10x fewer iterations than Sinkhorn at reg = 1e-3; SNS's wall time is below POT's
sinkhorn_log by >= 10x, and below POT's plain sinkhorn at tol 1e-12.

    .venv/bin/python benchmarks/sinkhorn.py              # the full table, ~3 minutes on a 2-core CPU
    .venv/bin/python benchmarks/sinkhorn.py --quick      # n = 500 only
    .venv/bin/python benchmarks/sinkhorn.py --device cuda --sizes 10000   # on a GPU (POT then runs on torch/CUDA)
    .venv/bin/python benchmarks/sinkhorn.py --soundness  # issue 12's grid: SNS never worse than its warm start

``--soundness`` checks issue 12's requirement instead of timing anything: on n = 300, 500, 1000 uniform points
(seeds 0, 1, 2), reg = 1e-4, 3e-4, 1e-3, SNS's marginal error never exceeds its warm-start error and SNS reaches
tol 1e-8 where Sinkhorn, given as many iterations, has not (so Sinkhorn needs more).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import ot
import torch
from harness import header, race, table, timed  # benchmarks/harness.py: this folder is on sys.path
from threadpoolctl import threadpool_limits

import hesslab as hl

PACKAGES = ("torch", "hesslab", "pot", "numpy", "scipy")  # versions printed in the header
REGS = (1e-2, 1e-3)
TOLS = (1e-8, 1e-12)
ITERATION_TARGET, LOG_TIME_TARGET = 10.0, 10.0  # SNS >= 10x fewer iterations; >= 10x faster than POT's log form
COMPETITORS = ("hesslab sinkhorn", "hesslab SNS", "POT sinkhorn", "POT sinkhorn_log")


@dataclass(frozen=True)
class Problem:
    n: int
    a: torch.Tensor
    b: torch.Tensor
    C: torch.Tensor


def make_problem(n: int, device: torch.device) -> Problem:
    generator = torch.Generator().manual_seed(n)
    x = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    y = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    C = torch.cdist(x, y) ** 2
    a = torch.full((n,), 1 / n, dtype=torch.float64)
    return Problem(n, a.to(device), a.clone().to(device), (C / C.max()).to(device))


@dataclass(frozen=True)
class Run:
    competitor: str
    n: int
    reg: float
    tol: float
    seconds: float
    iterations: int
    error: float  # achieved ℓ1 marginal error
    distance: float  # ‖P − P_reference‖₁
    converged: bool


def marginal_error(plan: torch.Tensor, problem: Problem) -> float:
    return float((plan.sum(1) - problem.a).abs().sum() + (plan.sum(0) - problem.b).abs().sum())


def solver(competitor: str, problem: Problem, reg: float, tol: float) -> Callable[[], tuple[torch.Tensor, int, bool]]:
    """A call that solves the problem and returns (plan, iterations, converged)."""
    if competitor.startswith("hesslab"):
        method = hl.transport.sinkhorn if competitor == "hesslab sinkhorn" else hl.transport.sinkhorn_newton_sparse

        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # non-convergence is reported in the table
                result = method(problem.a, problem.b, problem.C, reg, tol=tol, max_iter=1_000_000)
            return result.plan, result.iterations, result.converged
        return run
    on_gpu = problem.C.device.type == "cuda"  # POT takes torch tensors on the GPU (its torch backend), numpy here
    a, b, C = (t if on_gpu else t.cpu().numpy() for t in (problem.a, problem.b, problem.C))
    method = competitor.split()[1]

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # POT warns when it stops at numItermax: reported as not converged
            plan, log = ot.sinkhorn(a, b, C, reg, method=method, stopThr=tol / math.sqrt(problem.n),
                                    numItermax=1_000_000, log=True)
        plan = torch.as_tensor(plan, device=problem.C.device)
        return plan, int(log["niter"]), marginal_error(plan, problem) <= tol
    return run


def bench(problem: Problem, reg: float, reference: torch.Tensor, device: torch.device, rounds: int) -> list[Run]:
    """Per tolerance: the three fast competitors in ``rounds`` interleaved rounds (the order rotates every round, the
    median is reported), POT's log-domain Sinkhorn once (it takes tens of seconds)."""
    runs = []
    for tol in TOLS:
        calls = {competitor: solver(competitor, problem, reg, tol) for competitor in COMPETITORS}
        fast = {competitor: call for competitor, call in calls.items() if competitor != "POT sinkhorn_log"}
        timings = race(fast, device, rounds, warmup=0)  # warmed up once per process by warm_up
        times = dict(timings.times)
        outputs = {competitor: results[-1] for competitor, results in timings.results.items()}
        seconds, outputs["POT sinkhorn_log"] = timed(calls["POT sinkhorn_log"], device)
        times["POT sinkhorn_log"] = [seconds]
        for competitor in COMPETITORS:
            plan, iterations, converged = outputs[competitor]
            run = Run(competitor, problem.n, reg, tol, statistics.median(times[competitor]), iterations,
                      marginal_error(plan, problem), float((plan - reference).abs().sum()), converged)
            spread = ", ".join(duration(t) for t in times[competitor])
            print(f"  tol {tol:.0e}  {competitor:17s} {iterations:7d} it  {duration(run.seconds):>9s} "
                  f"(rounds: {spread})  "
                  f"error {run.error:.1e}  ‖P − P_ref‖₁ {run.distance:.1e}" + ("" if converged else "  NOT CONVERGED"),
                  flush=True)
            runs.append(run)
    return runs


def warm_up(device: torch.device) -> None:
    small = make_problem(50, device)
    for competitor in COMPETITORS:
        solver(competitor, small, 0.05, 1e-8)()


# ----------------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------------
def duration(seconds: float) -> str:
    """Three significant digits: '12.3 ms', '1.07 s'."""
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def results_table(runs: list[Run]) -> list[str]:
    """The markdown table: one row per (n, reg, tol), iterations and seconds of each competitor, and the ratios."""
    header = ["n", "reg", "tol", *COMPETITORS, "iterations: Sinkhorn / SNS", "time: POT log / SNS", "time: POT / SNS"]
    rows = []
    by_key = {(r.n, r.reg, r.tol, r.competitor): r for r in runs}
    for n, reg, tol in sorted({(r.n, r.reg, r.tol) for r in runs}, key=lambda k: (k[0], -k[1], -k[2])):
        cells = []
        for competitor in COMPETITORS:
            r = by_key[n, reg, tol, competitor]
            cells.append(f"{r.iterations} it, {duration(r.seconds)}" + ("" if r.converged else " (not converged)"))
        sns = by_key[n, reg, tol, "hesslab SNS"]
        ratios = [by_key[n, reg, tol, "hesslab sinkhorn"].iterations / sns.iterations,
                  by_key[n, reg, tol, "POT sinkhorn_log"].seconds / sns.seconds,
                  by_key[n, reg, tol, "POT sinkhorn"].seconds / sns.seconds]
        rows.append([str(n), f"{reg:g}", f"{tol:.0e}", *cells, *(f"{ratio:.1f}x" for ratio in ratios)])
    return table(header, rows)


def targets(runs: list[Run]) -> list[str]:
    """The issue's three targets, each MET or MISSED, with the ratio behind it for every configuration."""
    by_key = {(r.n, r.reg, r.tol, r.competitor): r for r in runs}
    iterations, log_time, plain_time = [], [], []
    for n, reg, tol in sorted({(r.n, r.reg, r.tol) for r in runs}):
        sns, sinkhorn = by_key[n, reg, tol, "hesslab SNS"], by_key[n, reg, tol, "hesslab sinkhorn"]
        pot, pot_log = by_key[n, reg, tol, "POT sinkhorn"], by_key[n, reg, tol, "POT sinkhorn_log"]
        if reg == 1e-3:
            ratio = sinkhorn.iterations / sns.iterations
            iterations.append((f"n={n} tol={tol:.0e}: {ratio:.0f}x", ratio >= ITERATION_TARGET))
        ratio = pot_log.seconds / sns.seconds
        log_time.append((f"n={n} reg={reg:g} tol={tol:.0e}: {ratio:.0f}x", ratio >= LOG_TIME_TARGET))
        if tol == 1e-12:
            ratio = pot.seconds / sns.seconds
            plain_time.append((f"n={n} reg={reg:g}: {ratio:.1f}x", ratio > 1))
    lines = []
    for name, checks in [("SNS >= 10x fewer iterations than Sinkhorn at reg 1e-3", iterations),
                         ("SNS >= 10x faster than POT sinkhorn_log", log_time),
                         ("SNS faster than POT sinkhorn at tol 1e-12", plain_time)]:
        met = all(ok for _, ok in checks)
        lines.append(f"- {name}: {'MET' if met else 'MISSED'} — " + "; ".join(text for text, _ in checks))
    return lines


SOUNDNESS_SIZES, SOUNDNESS_REGS, SOUNDNESS_SEEDS = (300, 500, 1000), (1e-4, 3e-4, 1e-3), (0, 1, 2)


def soundness() -> bool:
    """Issue 12's grid; prints one row per problem and returns whether every row passed."""
    from hesslab.experiments.sinkhorn_newton_sparse import random_point_clouds
    print("| n | reg | seed | warm-start error | max error after | SNS iterations | final | Sinkhorn at as many | ok |")
    print("|---|---|---|---|---|---|---|---|---|")
    passed = True
    for n in SOUNDNESS_SIZES:
        for reg in SOUNDNESS_REGS:
            for seed in SOUNDNESS_SEEDS:
                problem = random_point_clouds(n, torch.Generator().manual_seed(seed))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    sns = hl.transport.sinkhorn_newton_sparse(problem.a, problem.b, problem.C, reg, tol=1e-8,
                                                              max_iter=5000)
                    plain = hl.transport.sinkhorn(problem.a, problem.b, problem.C, reg, tol=1e-8,
                                                  max_iter=sns.iterations)
                warm, worst = sns.history["error"][20], max(sns.history["error"][20:])
                ok = sns.converged and worst <= warm and not plain.converged
                passed &= ok
                print(f"| {n} | {reg:g} | {seed} | {warm:.3g} | {worst:.3g} | {sns.iterations} | "
                      f"{sns.history['error'][-1]:.2g} | {plain.history['error'][-1]:.2g} | {'yes' if ok else 'NO'} |",
                      flush=True)
    print(f"\nissue 12 SNS soundness: {'MET' if passed else 'MISSED'}")
    return passed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default=None, help="default: hesslab.device() (CUDA when available)")
    parser.add_argument("--quick", action="store_true", help="n = 500 only")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="point counts (default: 500 1000)")
    parser.add_argument("--threads", type=int, default=2, help="torch and BLAS threads (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the fast competitors (default 3)")
    parser.add_argument("--soundness", action="store_true", help="issue 12's SNS grid instead of the timings")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.soundness:
        torch.set_num_threads(args.threads)
        raise SystemExit(0 if soundness() else 1)
    device = torch.device(args.device) if args.device else hl.device()
    sizes = args.sizes or ((500,) if args.quick else (500, 1000))
    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        print(header(device, PACKAGES))
        started = time.perf_counter()
        warm_up(device)
        runs = []
        for n in sizes:
            problem = make_problem(n, device)
            for reg in REGS:
                reference = hl.transport.sinkhorn_newton_sparse(problem.a, problem.b, problem.C, reg, tol=1e-13).plan
                print(f"== n = {n}, reg = {reg:g} (reference: SNS to 1e-13)", flush=True)
                runs += bench(problem, reg, reference, device, args.rounds)
    print()
    print("\n".join(results_table(runs)))
    print()
    print("\n".join(targets(runs)))
    print(f"\ntotal time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
