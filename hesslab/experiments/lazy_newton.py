"""Doikov, Chayti & Jaggi (ICML 2023), *Second-order optimization with lazy Hessians*.

Reusing one Hessian for m steps lowers the total arithmetic cost of Newton's method, with the sweet spot near m = d.

The problem is the paper's: L2-regularised logistic regression on a real data set — scikit-learn's breast-cancer
(30 features) or digits 0-vs-rest (64 pixels), each with an intercept (d = 31, 65); ``"digits-features"`` (256
random Fourier features of the digits, d = 257) for the full scale — and a non-convex variant with the regulariser
μ Σ_i x_i² / (1 + x_i²):

    f(x) = (1/N) Σ_n log(1 + exp(−s_n ⟨a_n, x⟩)) + (μ/2)‖x‖²,     s_n = ±1.

Cost is counted by ``hl.optimize.CostModel`` with F = 4Nd operations per gradient (X x and Xᵀr): a Hessian costs d
gradients, an eigendecomposition d³/(4Nd), a lazy step one gradient and d²/(4Nd). Runs are cached
(``functools.lru_cache``), so a notebook's sweeps and widgets share them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from torch.nn.functional import softplus

from .. import data
from .._checks import check_choice, check_positive
from .._results import history as make_history
from ..optimize import CostModel, NewtonResult, damped_newton, lazy_newton, newton

DATASETS = ("breast_cancer", "digits", "digits-features")
STARTS = ("zero", "ones", "random", "far", "far-random")


@dataclass(frozen=True)
class LogisticProblem:
    """The logistic regression f(x) on the data set ``name``.

    Rows ``inputs`` (N, d) (intercept column included), ``labels`` (N,) in {0, 1}, regulariser strength ``mu``,
    ``nonconvex`` (the bounded regulariser instead of (μ/2)‖x‖²) and ``f`` itself.
    """

    name: str
    inputs: Tensor
    labels: Tensor
    mu: float
    nonconvex: bool
    f: Callable[[Tensor], Tensor]

    @property
    def d(self) -> int:
        """The number of parameters (features and intercept)."""
        return self.inputs.shape[1]

    @property
    def cost_model(self) -> CostModel:
        """One gradient = 4Nd operations (two passes over the data); a Hessian = d gradients."""
        return CostModel(flops_per_gradient=4.0 * self.inputs.shape[0] * self.d)


def _features(dataset: str, device) -> tuple[Tensor, Tensor]:
    if dataset == "breast_cancer":
        return data.breast_cancer(device=device)
    inputs, digit = data.digits(device=device)
    labels = (digit == 0).long()
    if dataset == "digits":
        return inputs, labels
    generator = torch.Generator().manual_seed(0)  # fixed features: the data set must not change between runs
    W = torch.randn(inputs.shape[1], 256, generator=generator, dtype=torch.float64) / 8.0
    b = 2 * math.pi * torch.rand(256, generator=generator, dtype=torch.float64)
    features = math.sqrt(2.0) * torch.cos(inputs @ W.to(inputs.device) + b.to(inputs.device))
    return (features - features.mean(0)) / features.std(0), labels


@lru_cache(maxsize=None)
def logistic_problem(dataset: str = "breast_cancer", mu: float = 1e-3, nonconvex: bool = False,
                     device: torch.device | str | None = None) -> LogisticProblem:
    """The regularised logistic regression with intercept on ``dataset`` (one of ``DATASETS``), float64.

    Convex: f(x) = mean log(1 + exp(−s⟨a, x⟩)) + (μ/2)‖x‖². ``nonconvex=True`` replaces the regulariser by
    μ Σ_i x_i²/(1 + x_i²), bounded and concave for |x_i| > 1/√3 (the paper's non-convex experiment).
    """
    check_choice("dataset", dataset, DATASETS)
    mu = check_positive("mu", mu, hint="It is the regularisation strength.")
    inputs, labels = _features(dataset, device)
    inputs = torch.cat([inputs, torch.ones_like(inputs[:, :1])], dim=1)
    signed = inputs * (2 * labels.to(inputs.dtype) - 1)[:, None]  # rows s_n a_n

    def f(x: Tensor) -> Tensor:
        loss = softplus(-(signed @ x)).mean()  # log(1 + exp(−s⟨a, x⟩))
        if nonconvex:
            return loss + mu * (x**2 / (1 + x**2)).sum()
        return loss + mu / 2 * (x @ x)

    return LogisticProblem(dataset, inputs, labels, float(mu), nonconvex, f)


def starting_point(problem: LogisticProblem, start: str = "ones", seed: int = 0) -> Tensor:
    """The starting point x0 of ``problem`` named ``start``.

    ``"zero"``; ``"ones"``; ``"random"`` (N(0, I) from ``seed``); ``"far"`` (3·ones: pure Newton diverges);
    ``"far-random"`` (3·ones + N(0, I) from ``seed``: the far start on other seeds).
    """
    check_choice("start", start, STARTS)
    like = problem.inputs
    if start == "zero":
        return torch.zeros(problem.d, dtype=like.dtype, device=like.device)
    if start in ("ones", "far"):
        return torch.full((problem.d,), 1.0 if start == "ones" else 3.0, dtype=like.dtype, device=like.device)
    if start in ("random", "far-random"):
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(problem.d, generator=generator, dtype=like.dtype).to(like.device)
        return noise if start == "random" else 3.0 + noise


@lru_cache(maxsize=None)
def optimal_value(dataset: str, mu: float = 1e-3, device: torch.device | str | None = None) -> float:
    """f* of the convex problem on ``dataset`` to rounding.

    Newton with Armijo backtracking from 0 to ‖∇f‖ <= 1e-12 (one minimiser: f is μ-strongly convex, so
    f − f* <= ‖∇f‖²/(2μ) <= 5e-22 there).
    """
    problem = logistic_problem(dataset, mu, device=device)
    return newton(problem.f, starting_point(problem, "zero"), tol=1e-12, max_iter=200).f


# ----------------------------------------------------------------------------------------------------------------------
# runs and sweeps over m
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trace:
    """One labelled run with its update period ``m``.

    Whether it ``converged`` and why it stopped (``reason``), and its ``history`` — the ``NewtonResult.history``
    (``error`` = ‖∇f‖, ``cost`` in gradient-equivalents, ``hessians``, ``seconds``, ...) with the column ``gap``
    f − f* (NaN on the non-convex problem), one entry per accepted iterate.
    """

    label: str
    m: int
    converged: bool
    reason: str
    history: dict[str, np.ndarray]

    @property
    def iterations(self) -> int:
        """Accepted steps (the history has one more entry)."""
        return len(self.history["error"]) - 1

    @property
    def hessians(self) -> int:
        """Hessians computed in the whole run."""
        return int(self.history["hessians"][-1])

    def cost_to(self, target: float, on: str = "gap") -> float:
        """Cost at the first iterate with ``history[on]`` (``gap`` or ``error``) <= target; inf if never."""
        hit = np.flatnonzero(self.history[on] <= target)
        return float(self.history["cost"][hit[0]]) if hit.size else math.inf


def _trace(result: NewtonResult, label: str, m: int, f_star: float) -> Trace:
    columns = dict(result.history, gap=result.history["f"] - f_star)
    return Trace(label=label, m=m, converged=result.converged, reason=result.reason,
                 history=make_history(columns, result.iterations))


@lru_cache(maxsize=512)
def lazy_run(dataset: str, m: int, regularization: str = "cubic", start: str = "ones", mu: float = 1e-3,
             nonconvex: bool = False, tol: float = 1e-9, device: torch.device | str | None = None,
             seed: int = 0) -> Trace:
    """``lazy_newton`` with update_every = m and adaptive M (from 1) until ‖∇f‖ <= tol (at most 20000 steps).

    On the convex problem ``tol = 1e-9`` guarantees f − f* <= ‖∇f‖²/(2μ) <= 1e-10 for μ >= 5e-9.
    """
    problem = logistic_problem(dataset, mu, nonconvex, device)
    f_star = math.nan if nonconvex else optimal_value(dataset, mu, device)
    result = lazy_newton(problem.f, starting_point(problem, start, seed), update_every=m, regularization=regularization,
                         tol=tol, max_iter=20000, cost_model=problem.cost_model)
    return _trace(result, f"m = {m}", m, f_star)


def update_periods(d: int, multiples: tuple[float, ...] = (1 / 4, 1 / 2, 1, 2, 4)) -> tuple[int, ...]:
    """m = 1 (full Newton) and m = round(c·d) for each multiple c, without repeats: 1, d/4, d/2, d, 2d, 4d."""
    periods = [1]
    for c in multiples:
        m = max(1, round(c * d))
        if m not in periods:
            periods.append(m)
    return tuple(periods)


@dataclass(frozen=True)
class LazySweep:
    """Runs for several m on one problem.

    ``traces`` in the order of ``periods``, ``f_star``, the ``target`` accuracy f − f* and the ``costs`` to reach it
    (one per m).
    """

    name: str
    d: int
    f_star: float
    target: float
    periods: tuple[int, ...]
    traces: tuple[Trace, ...]
    costs: np.ndarray

    @property
    def best_m(self) -> int:
        """The cost-optimal m."""
        return self.periods[int(np.argmin(self.costs))]

    def cost_for(self, m: int) -> float:
        """The cost to reach ``target`` with update period ``m`` (one of ``periods``)."""
        return float(self.costs[self.periods.index(m)])


def lazy_sweep(dataset: str = "breast_cancer", multiples: tuple[float, ...] = (1 / 4, 1 / 2, 1, 2, 4),
               regularization: str = "cubic", start: str = "ones", mu: float = 1e-3, target: float = 1e-10,
               device: torch.device | str | None = None, seed: int = 0) -> LazySweep:
    """Lazy Newton for m = 1 and m = round(c·d), c in ``multiples``, on the convex problem on ``dataset``.

    For each m the arithmetic cost to reach f − f* <= ``target``.
    """
    d = logistic_problem(dataset, mu, device=device).d
    periods = update_periods(d, tuple(multiples))
    traces = tuple(lazy_run(dataset, m, regularization, start, mu, device=device, seed=seed) for m in periods)
    costs = np.array([trace.cost_to(target) for trace in traces])
    return LazySweep(dataset, d, optimal_value(dataset, mu, device), target, periods, traces, costs)


def nonconvex_runs(dataset: str = "breast_cancer", multiples: tuple[float, ...] = (1 / 4, 1, 4),
                   start: str = "ones", mu: float = 1e-3, tol: float = 1e-8,
                   device: torch.device | str | None = None) -> tuple[Trace, ...]:
    """Cubic lazy Newton on the non-convex problem for m = 1 and m = round(c·d): ‖∇f‖ against cost (no f*)."""
    d = logistic_problem(dataset, mu, True, device).d
    return tuple(lazy_run(dataset, m, "cubic", start, mu, True, tol, device)
                 for m in update_periods(d, tuple(multiples)))


def smallest_hessian_eigenvalue(dataset: str, start: str = "ones", mu: float = 1e-3, nonconvex: bool = True,
                                device: torch.device | str | None = None) -> float:
    """λ_min(∇²f(x0)): negative where the non-convex problem is not convex."""
    from ..exact import hessian

    problem = logistic_problem(dataset, mu, nonconvex, device)
    return torch.linalg.eigvalsh(hessian(problem.f, starting_point(problem, start)))[0].item()


# ----------------------------------------------------------------------------------------------------------------------
# global convergence: damped Newton from a far start
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FarStart:
    """Pure Newton (full steps) and damped Newton (AICN, backtracked L) from the same far point.

    ``x0_norm`` = ‖x0‖, ``f_star``, the two traces, and the ``stepsizes`` of damped Newton per iteration.
    """

    x0_norm: float
    f_star: float
    plain: Trace
    damped: Trace
    stepsizes: np.ndarray

    @property
    def plain_diverged(self) -> bool:
        """Pure Newton did not converge and ended above f(x0): it made things worse, not better."""
        return (not self.plain.converged) and self.plain.history["gap"][-1] > self.plain.history["gap"][0]


@lru_cache(maxsize=32)
def far_start(dataset: str = "breast_cancer", start: str = "far", plain_iterations: int = 12, mu: float = 1e-3,
              schedule: str = "aicn", device: torch.device | str | None = None, seed: int = 0) -> FarStart:
    """Pure Newton (``line_search=False``) for ``plain_iterations`` steps, and damped Newton to ‖∇f‖ <= 1e-9."""
    problem = logistic_problem(dataset, mu, device=device)
    x0 = starting_point(problem, start, seed)
    f_star = optimal_value(dataset, mu, device)
    with warnings.catch_warnings():  # pure Newton is expected not to converge here; the result says so
        warnings.simplefilter("ignore", RuntimeWarning)
        plain = newton(problem.f, x0, line_search=False, max_iter=plain_iterations, cost_model=problem.cost_model)
    damped = damped_newton(problem.f, x0, schedule=schedule, tol=1e-9, max_iter=500, cost_model=problem.cost_model)
    return FarStart(x0.norm().item(), f_star, _trace(plain, "Newton, full steps", 1, f_star),
                    _trace(damped, f"damped Newton ({schedule})", 1, f_star), damped.history["stepsize"][1:])
