"""Notebook 05: Sinkhorn against Sinkhorn-Newton-Sparse.

Tang et al., "Accelerating Sinkhorn algorithm with sparse Newton iterations", ICLR 2024.

The paper's claim: at small reg, Sinkhorn needs thousands of iterations while SNS — a few Sinkhorn steps, then Newton
steps with a sparsified Hessian of the dual — needs tens, at a comparable cost per iteration, because near the
optimum the plan (and with it the Hessian) is nearly sparse. The functions here build the paper's two kinds of
problems (random point clouds, and discretised 2-D densities with the W2 cost), race the two solvers, sweep reg, and
measure how sparse the Hessian is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..transport import SinkhornResult, sinkhorn, sinkhorn_newton_sparse, sparsify


@dataclass(frozen=True)
class OTProblem:
    """An optimal-transport problem ``name`` between two point sets in the plane.

    Marginals a (n,), b (m,), cost C (n, m) (squared distances divided by their maximum) and the points behind them,
    ``source`` (n, 2) and ``target`` (m, 2).
    """

    name: str
    a: Tensor
    b: Tensor
    C: Tensor
    source: Tensor
    target: Tensor


def _squared_distances(x: Tensor, y: Tensor) -> Tensor:
    """|x_i − y_j|² / max, the paper's normalised squared-Euclidean cost."""
    C = torch.cdist(x, y) ** 2
    return C / C.max()


def random_point_clouds(n: int, generator: torch.Generator | None = None,
                        device: torch.device | str = "cpu") -> OTProblem:
    """n uniform random points in [0, 1]² on each side, uniform weights 1/n (float64)."""
    source = torch.rand(n, 2, generator=generator, dtype=torch.float64, device=getattr(generator, "device", "cpu"))
    target = torch.rand(n, 2, generator=generator, dtype=torch.float64, device=source.device)
    source, target = source.to(device), target.to(device)
    weights = torch.full((n,), 1 / n, dtype=torch.float64, device=device)
    return OTProblem(f"{n} random points", weights, weights.clone(), _squared_distances(source, target),
                     source, target)


def _gaussian_mixture(points: Tensor, centers, widths, weights) -> Tensor:
    density = sum(w * torch.exp(-((points - torch.tensor(c, dtype=points.dtype, device=points.device)) ** 2).sum(1)
                                / (2 * s**2)) for c, s, w in zip(centers, widths, weights))
    return density / density.sum()


def gaussian_mixture_densities(k: int, device: torch.device | str = "cpu") -> OTProblem:
    """Two mixtures of two Gaussians discretised on the k × k cell centres of [0, 1]² (n = m = k²), on ``device``.

    With the squared Euclidean cost: the entropic W2 problem between two 2-D densities, as in the paper's second
    experiment.
    """
    t = (torch.arange(k, dtype=torch.float64, device=device) + 0.5) / k
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), dim=-1).reshape(-1, 2)
    a = _gaussian_mixture(grid, [(0.3, 0.3), (0.7, 0.65)], [0.10, 0.15], [1.0, 0.7])
    b = _gaussian_mixture(grid, [(0.65, 0.3), (0.3, 0.75)], [0.12, 0.08], [0.8, 1.0])
    return OTProblem(f"W2 between two densities on a {k}×{k} grid", a, b, _squared_distances(grid, grid), grid, grid)


@dataclass(frozen=True)
class Race:
    """Both solvers on one problem, to the same marginal error ``tol``."""

    reg: float
    tol: float
    sinkhorn: SinkhornResult
    newton: SinkhornResult

    @property
    def iteration_ratio(self) -> float:
        """Sinkhorn's iterations over SNS's (warm start included)."""
        return self.sinkhorn.iterations / self.newton.iterations

    @property
    def plan_difference(self) -> float:
        """‖P_Sinkhorn − P_SNS‖₁."""
        return float((self.sinkhorn.plan - self.newton.plan).abs().sum())


def race(problem: OTProblem, reg: float, tol: float = 1e-9, warm_start: int = 20, threshold: float = 1e-6,
         max_iter: int = 100_000) -> Race:
    """Run ``sinkhorn`` and ``sinkhorn_newton_sparse`` on ``problem`` to the marginal error ``tol``."""
    slow = sinkhorn(problem.a, problem.b, problem.C, reg, tol=tol, max_iter=max_iter)
    fast = sinkhorn_newton_sparse(problem.a, problem.b, problem.C, reg, tol=tol, max_iter=max_iter,
                                  warm_start=warm_start, threshold=threshold)
    return Race(reg, tol, slow, fast)


def pot_plan(problem: OTProblem, reg: float, tol: float = 1e-9) -> Tensor:
    """POT's plan (``ot.sinkhorn``, the classical scaling form, on the CPU) for ``problem`` at ``reg``.

    Stopped once its criterion — the 2-norm of the column residual, checked every 10 iterations — is below tol/√m,
    which implies an ℓ1 residual below ``tol``. Needs POT (the ``test`` extra).
    """
    import ot  # noqa: PLC0415 — a test dependency, only needed here

    a, b, C = (t.cpu().numpy() for t in (problem.a, problem.b, problem.C))
    plan = ot.sinkhorn(a, b, C, reg, method="sinkhorn", stopThr=tol / math.sqrt(len(b)), numItermax=1_000_000)
    return torch.from_numpy(plan).to(problem.C.device)


def marginal_errors(problem: OTProblem, plan: Tensor) -> tuple[float, float]:
    """(‖P1 − a‖₁, ‖Pᵀ1 − b‖₁) recomputed from ``plan`` (n, m), independently of what a solver logged.

    A solver that matched its columns to the wrong marginal reports a small error but fails the second number.
    Cost: O(nm).
    """
    if plan.shape != problem.C.shape:
        raise ValueError(f"plan must have the cost's shape {tuple(problem.C.shape)}, got {tuple(plan.shape)}.")
    return float((plan.sum(1) - problem.a).abs().sum()), float((plan.sum(0) - problem.b).abs().sum())


def marginal_rounding(problem: OTProblem) -> float:
    """(n + m)·ε·mass: the rounding of the n + m row and column sums of a plan of ``problem``.

    The most by which a recomputed marginal error may exceed the one the solver certified.
    """
    n, m = problem.C.shape
    return (n + m) * torch.finfo(problem.C.dtype).eps * float(problem.a.sum())


@dataclass(frozen=True)
class RegSweep:
    """Iterations to reach ``tol`` for each reg (``converged`` False where Sinkhorn hit ``max_iter``)."""

    regs: tuple[float, ...]
    sinkhorn_iterations: tuple[int, ...]
    newton_iterations: tuple[int, ...]
    sinkhorn_converged: tuple[bool, ...]


def iterations_vs_reg(problem: OTProblem, regs, tol: float = 1e-9, max_iter: int = 100_000,
                      done: tuple[Race, ...] = ()) -> RegSweep:
    """The iteration counts of both solvers as reg shrinks (Sinkhorn's grow like 1/reg; SNS's barely move).

    One race per reg of ``regs``, to ``tol`` and at most ``max_iter`` iterations. ``done``: races on this problem
    already run at some of the regs, reused instead of run again.
    """
    known = {r.reg: r for r in done if r.tol == tol}
    races = [known[reg] if reg in known else race(problem, reg, tol, max_iter=max_iter) for reg in regs]
    return RegSweep(tuple(regs), tuple(r.sinkhorn.iterations for r in races),
                    tuple(r.newton.iterations for r in races), tuple(r.sinkhorn.converged for r in races))


@dataclass(frozen=True)
class Sparsity:
    """How sparse SNS's Sparsify step makes the Hessian, for each threshold ρ.

    For each ρ: the fraction of the n·m entries of the plan kept in the Hessian, and the fraction of the plan's mass
    carried by the entries it drops.
    """

    thresholds: tuple[float, ...]
    density: tuple[float, ...]
    mass_dropped: tuple[float, ...]


def hessian_sparsity(plan: Tensor, thresholds) -> Sparsity:
    """How sparse the sparsified Hessian of ``plan`` is, and how much of the plan it drops, for each threshold.

    The dropped mass is the sum of the dropped entries themselves (1 − kept/total would lose it to rounding).
    """
    density, dropped = [], []
    for threshold in thresholds:
        S = sparsify(plan, threshold)
        density.append(S.values().numel() / plan.numel())
        dropped.append(float((plan - S.to_dense()).sum() / plan.sum()))  # kept entries cancel exactly
    return Sparsity(tuple(thresholds), tuple(density), tuple(dropped))


def mass_curve(plan: Tensor, points: int = 400) -> tuple[Tensor, Tensor]:
    """Keep the k largest entries of the plan: the fraction of entries k/(n·m) against the fraction of mass dropped.

    At ``points`` values of k < n·m spaced logarithmically (CPU tensors). The dropped mass is summed from the
    smallest entries up, so that tiny fractions are not lost to rounding.
    """
    ascending = plan.reshape(-1).sort().values
    dropped = ascending.cumsum(0) / ascending.sum()  # dropped[j]: the mass of the j + 1 smallest entries
    total = ascending.numel()
    kept = torch.unique(torch.logspace(0, math.log10(total - 1), points, device=plan.device).long())
    return (kept.double() / total).cpu(), dropped[total - kept - 1].cpu()


def banded_order(problem: OTProblem, plan: Tensor, cells: int = 16) -> tuple[Tensor, Tensor]:
    """Orders of the sources and targets of ``problem`` in which the ``plan`` reads as a band.

    Sources along a serpentine path through a ``cells`` × ``cells`` grid of [0, 1]², each target after the source
    that sends it the most mass.
    """
    cell = (problem.source * cells).long().clamp(0, cells - 1)
    column = torch.where(cell[:, 0] % 2 == 0, cell[:, 1], cells - 1 - cell[:, 1])  # serpentine: no long jumps
    source_order = torch.argsort(cell[:, 0] * cells + column, stable=True)
    rank = torch.empty_like(source_order)
    rank[source_order] = torch.arange(len(source_order), device=rank.device)
    target_order = torch.argsort(rank[plan.argmax(dim=0)], stable=True)
    return source_order, target_order


def hessian_pattern(plan: Tensor, threshold: float, source_order: Tensor, target_order: Tensor) -> Tensor:
    """The non-zero pattern (n + m, n + m) of the sparsified Hessian [[diag(P1), S], [Sᵀ, diag(Pᵀ1)]].

    S is ``plan`` sparsified at ``threshold``, the sources in ``source_order`` and the targets in ``target_order``
    (a boolean CPU tensor, for a spy plot).
    """
    S = sparsify(plan, threshold)
    kept = S.to_dense()[source_order][:, target_order] > 0
    n, m = kept.shape
    pattern = torch.zeros(n + m, n + m, dtype=torch.bool, device=kept.device)
    pattern[:n, n:], pattern[n:, :n] = kept, kept.T
    pattern.fill_diagonal_(True)
    return pattern.cpu()
