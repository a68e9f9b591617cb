"""AdaHessian (Yao et al., AAAI 2021) and Sophia (Liu et al., ICLR 2024) on Sophia's 2-D toy and a real task.

Both are diagonal second-order optimizers; they run on the 2-D toy of Sophia's Figure 2 and on a small real task.

The toy (as recalled in issue 15 and checked numerically here: the stationary points and curvatures below follow
from the formula; the paper's caption itself could not be consulted offline):

    L(θ) = 8 (θ1 − 1)² (1.3 θ1² + 2 θ1 + 1) + ½ (θ2 − 4)²,    start (0.2, 0),  minimum (1, 4) with L = 0,

a sharp coordinate θ1 (∂²L/∂θ1² = 68.8 at the minimum, −27.97 at the start) and a flat one θ2 (curvature 1), and a
stationary point at θ1 = 0 (a maximum in θ1, a minimum in θ2: a saddle, L = 8) between the start and the minimum.
Gradient descent must use lr < 2/68.8 for the minimum to be stable and then crawls along θ2; Newton's method
follows the negative curvature to the saddle; Sophia clips the steps where the curvature is negative or tiny.

The real task: scikit-learn's digits (1797 images 8×8, 10 classes), an MLP 64-W-10 (tanh), mini-batches drawn from
a seeded generator (the same batches for every optimizer), the full-batch training loss every few steps. Cost is in
gradient-equivalents (``STEP_COST``): a gradient = 1, a Hessian-vector product = 2 (the usual estimate for double
backward; ``benchmarks/optim.py`` measures the real per-step times), Sophia's estimate only every k steps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor
from torch.nn.functional import cross_entropy

from .. import data, models
from .._checks import check_choice
from .._results import history as make_history
from ..exact import ggn, hessian
from ..functional import loss_function, output_function
from ..optim import AdaHessian, Sophia
from ..optim.estimators import (
    gauss_newton_bartlett_estimate,
    hutchinson_diagonal_estimate,
)

TOY_START = (0.2, 0.0)
TOY_MINIMUM = (1.0, 4.0)
TOY_SADDLE = (0.0, 4.0)
TOY_TARGET = 1e-8  # "converged": L(θ) < 1e-8
TOY_ESTIMATORS = ("exact", "hutchinson", "noisy")


@dataclass(frozen=True)
class Run:
    """One optimisation run (DESIGN.md, "Results").

    ``converged`` (the target was reached), ``reason``, ``iterations`` (recorded iterates after the start: steps on
    the toy, evaluations every ``eval_every`` steps in ``train``) and ``history``: float arrays (``iterations`` + 1,),
    the start first — ``error`` the loss L(θ) (the toy's minimum is 0; ``train``: the full training loss), ``loss``
    (the same), ``step`` (optimizer steps so far), ``seconds`` since the start, and ``theta1``, ``theta2`` (toy) or
    ``cost``, ``clipped`` (``train``).
    """

    label: str
    converged: bool
    reason: str
    iterations: int
    history: dict[str, np.ndarray] = field(repr=False)

    def first(self, key: str, at_most: float, of: str = "step") -> float:
        """``history[of]`` at the first record with ``history[key] <= at_most`` (inf if never)."""
        hit = np.flatnonzero(self.history[key] <= at_most)
        return float(self.history[of][hit[0]]) if hit.size else math.inf


# ----------------------------------------------------------------------------------------------------------------------
# the 2-D toy of Sophia's Figure 2
# ----------------------------------------------------------------------------------------------------------------------
def toy_loss(theta: Tensor) -> Tensor:
    """L(θ) = 8(θ1 − 1)²(1.3θ1² + 2θ1 + 1) + ½(θ2 − 4)² for θ of shape (2,), or (..., 2) elementwise."""
    t1, t2 = theta[..., 0], theta[..., 1]
    return 8 * (t1 - 1) ** 2 * (1.3 * t1**2 + 2 * t1 + 1) + 0.5 * (t2 - 4) ** 2


def toy_hessian_diagonal(theta: Tensor) -> Tensor:
    """diag ∇²L(θ), exact (from hl.hessian; the Hessian of this separable L is diagonal)."""
    return torch.diagonal(hessian(toy_loss, theta.detach()))


def gd_stability_limit() -> float:
    """2 / ∂²L/∂θ1²(minimum) = 2/68.8: for larger lr the minimum is unstable under gradient descent."""
    return 2.0 / toy_hessian_diagonal(torch.tensor(TOY_MINIMUM, dtype=torch.float64))[0].item()


def _toy_run(label: str, optimizer_step, theta: torch.nn.Parameter, max_steps: int, stop=None) -> Run:
    points, losses = [theta.detach().clone()], [toy_loss(theta.detach()).item()]
    start, seconds = time.perf_counter(), [0.0]
    reason = f"max_steps = {max_steps} reached"
    for _ in range(max_steps):
        optimizer_step()
        value = toy_loss(theta.detach()).item()
        points.append(theta.detach().clone())
        losses.append(value)
        seconds.append(time.perf_counter() - start)
        if not math.isfinite(value) or value > 1e12:
            reason = "diverged"
            break
        if value < TOY_TARGET:
            reason = f"L < {TOY_TARGET:g}"
            break
        if stop is not None and stop():
            reason = stop.__doc__.rstrip(".")
            break
    path = torch.stack(points).numpy()
    history = make_history({"error": losses, "loss": losses, "step": np.arange(len(losses)), "seconds": seconds,
                            "theta1": path[:, 0], "theta2": path[:, 1]}, len(losses) - 1)
    return Run(label, reason.startswith("L <"), reason, len(losses) - 1, history)


def _toy_parameter() -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.tensor(TOY_START, dtype=torch.float64))


def toy_newton(max_steps: int = 30) -> Run:
    """Newton's method with full steps θ ← θ − [∇²L(θ)]⁻¹ ∇L(θ) (exact Hessian, no line search, no shift)."""
    theta = _toy_parameter()

    def step():
        x = theta.detach()
        point = x.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(toy_loss(point), point)
        with torch.no_grad():
            theta.sub_(torch.linalg.solve(hessian(toy_loss, x), gradient))

    def stationary():
        """a stationary point: ‖∇L‖ <= 1e-12."""
        point = theta.detach().clone().requires_grad_(True)
        return torch.autograd.grad(toy_loss(point), point)[0].norm().item() <= 1e-12

    return _toy_run("Newton", step, theta, max_steps, stationary)


def _torch_optimizer_run(label: str, make, max_steps: int) -> Run:
    theta = _toy_parameter()
    optimizer = make([theta])

    def step():
        optimizer.zero_grad()
        toy_loss(theta).backward()
        optimizer.step()

    return _toy_run(label, step, theta, max_steps)


def toy_gradient_descent(lr: float, max_steps: int = 3000) -> Run:
    """θ ← θ − lr ∇L(θ) (``torch.optim.SGD``), until L < 1e-8, divergence or ``max_steps``."""
    return _torch_optimizer_run(f"GD, lr = {lr:g}", lambda p: torch.optim.SGD(p, lr=lr), max_steps)


def toy_adam(lr: float, max_steps: int = 3000) -> Run:
    """``torch.optim.Adam`` with its default betas (0.9, 0.999) and eps 1e-8."""
    return _torch_optimizer_run(f"Adam, lr = {lr:g}", lambda p: torch.optim.Adam(p, lr=lr), max_steps)


def toy_sophia(lr: float = 1.0, rho: float = 1.0, estimator: str = "exact", betas: tuple[float, float] = (0.0, 0.0),
               max_steps: int = 200, seed: int = 0) -> Run:
    """``hl.optim.Sophia`` on the toy with k = 1, no weight decay, ε = 1e-12 and the diagonal estimate ``estimator``.

    ``estimator``: ``"exact"`` (diag ∇²L), ``"hutchinson"`` (SophiaH, z ⊙ Hz — exact here too, because H is
    diagonal), or ``"noisy"`` (the exact diagonal times (1 + ½ξ), ξ ~ N(0, 1) per coordinate: a stand-in for a noisy
    estimate).
    """
    check_choice("estimator", estimator, TOY_ESTIMATORS)
    generator = torch.Generator().manual_seed(seed)

    def exact(loss, params):
        return [toy_hessian_diagonal(params[0])]

    def noisy(loss, params):
        xi = torch.randn(2, generator=generator, dtype=torch.float64)
        return [toy_hessian_diagonal(params[0]) * (1 + 0.5 * xi)]

    chosen = {"exact": exact, "noisy": noisy, "hutchinson": "hutchinson"}[estimator]
    theta = _toy_parameter()
    optimizer = Sophia([theta], lr=lr, betas=betas, rho=rho, weight_decay=0.0, update_every=1, estimator=chosen,
                       generator=generator)
    return _toy_run(f"Sophia ({estimator}), lr = {lr:g}, ρ = {rho:g}", lambda: optimizer.step(lambda: toy_loss(theta)),
                    theta, max_steps)


@dataclass(frozen=True)
class GridSearch:
    """A learning-rate grid search on the toy.

    Steps to L < 1e-8 for each learning rate (inf: not within ``max_steps``), which runs diverged, and the best run
    with its trajectory.
    """

    lrs: np.ndarray
    steps: np.ndarray
    diverged: np.ndarray
    best_lr: float
    best: Run


@lru_cache(maxsize=8)
def toy_grid(method: str, lrs: tuple[float, ...], max_steps: int = 1000) -> GridSearch:
    """Gradient descent (``method="gd"``) or Adam (``"adam"``) at every lr of the grid ``lrs``.

    Each runs until L < 1e-8 (its step count is recorded), divergence (|θ| > 1e6) or ``max_steps``; the best run is
    re-run alone for its trajectory.

    GD: all runs as one (len(lrs), 2) parameter of ``torch.optim.SGD(lr=1)`` on Σ_i lr_i L(θ_i), whose step is
    θ_i ← θ_i − lr_i ∇L(θ_i) for every row at once. Adam: one param group per lr (Adam is invariant to scaling the
    loss, so the trick above does not apply).
    """
    check_choice("method", method, ("gd", "adam"))
    rates = torch.tensor(lrs, dtype=torch.float64)
    if method == "gd":
        thetas = torch.nn.Parameter(torch.tensor(TOY_START, dtype=torch.float64).repeat(len(lrs), 1))
        optimizer = torch.optim.SGD([thetas], lr=1.0)
        current = lambda: thetas  # noqa: E731
        objective = lambda: (rates * toy_loss(thetas)).sum()  # noqa: E731
    else:
        rows = [_toy_parameter() for _ in lrs]
        optimizer = torch.optim.Adam([{"params": [row], "lr": lr} for row, lr in zip(rows, lrs)])
        current = lambda: torch.stack(rows)  # noqa: E731
        objective = lambda: toy_loss(current()).sum()  # noqa: E731
    steps = np.full(len(lrs), math.inf)
    diverged = np.zeros(len(lrs), dtype=bool)
    for t in range(1, max_steps + 1):
        optimizer.zero_grad()
        objective().backward()
        optimizer.step()
        with torch.no_grad():
            points = current()
            losses = toy_loss(points).numpy()
            big = (points.abs().amax(1) > 1e6).numpy() | ~np.isfinite(losses)
        diverged |= big & np.isinf(steps)
        newly = (losses < TOY_TARGET) & np.isinf(steps) & ~diverged
        steps[newly] = t
        if np.all(np.isfinite(steps) | diverged):
            break
        if diverged.any():  # keep the diverged rows finite, so the others' arithmetic stays clean
            with torch.no_grad():
                for i in np.flatnonzero(diverged):
                    (thetas[i] if method == "gd" else rows[i]).copy_(torch.tensor(TOY_MINIMUM))
    best = int(np.argmin(steps))
    run_at = toy_gradient_descent if method == "gd" else toy_adam
    return GridSearch(np.array(lrs), steps, diverged, lrs[best], run_at(lrs[best], max_steps))


GD_GRID = tuple(np.round(np.arange(0.002, 0.0351, 0.0005), 4).tolist())
ADAM_GRID = tuple(np.round(np.geomspace(0.02, 2.0, 16), 4).tolist())


# ----------------------------------------------------------------------------------------------------------------------
# the real task: digits
# ----------------------------------------------------------------------------------------------------------------------
OPTIMIZERS = ("SGD", "Adam", "AdaHessian", "SophiaG", "SophiaH")
HVP_COST = 2.0  # gradient-equivalents per Hessian-vector product (double backward)
SOPHIA_K = 10
# learning rates tuned on seed 0 by ``tune`` (over LR_GRIDS, 400 steps, width 64); seeds 1, 2 are held out
LR_GRIDS = {"SGD": (1.0, 2.0, 4.0, 8.0), "Adam": (0.003, 0.01, 0.03, 0.1), "AdaHessian": (0.15, 0.3, 0.6, 1.2),
            "SophiaG": (0.001, 0.003, 0.01, 0.03), "SophiaH": (0.001, 0.003, 0.01, 0.03)}
TUNED_LR = {"SGD": 4.0, "Adam": 0.03, "AdaHessian": 0.3, "SophiaG": 0.003, "SophiaH": 0.003}
TASK_TARGET = 0.01  # full-batch training loss


def step_cost(name: str, refreshed: bool) -> float:
    """Gradient-equivalents of one step of optimizer ``name`` (``refreshed``: the curvature estimate is refreshed).

    1 gradient, plus one HVP (AdaHessian; SophiaH when it refreshes) or one more backward (SophiaG when it
    refreshes).
    """
    check_choice("optimizer", name, OPTIMIZERS)
    if name in ("SGD", "Adam"):
        return 1.0
    if name == "AdaHessian":
        return 1.0 + HVP_COST
    if name == "SophiaG":
        return 1.0 + (1.0 if refreshed else 0.0)
    if name == "SophiaH":
        return 1.0 + (HVP_COST if refreshed else 0.0)


@lru_cache(maxsize=4)
def digits_data(device: str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """``hl.data.digits``: standardised inputs (1797, 64) and labels (1797,) on ``device`` in ``dtype``, cached."""
    return data.digits(dtype=dtype, device=device)


def make_optimizer(name: str, params, lr: float, generator: torch.Generator, rho: float = 0.04):
    """The optimizer ``name`` over ``params`` with learning rate ``lr`` and randomness from ``generator``.

    SGD, Adam (torch's), AdaHessian (paper defaults but lr), SophiaG / SophiaH (k = 10, ρ = ``rho``, no weight
    decay: the task is about optimisation, not regularisation).
    """
    check_choice("optimizer", name, OPTIMIZERS)
    if name == "SGD":
        return torch.optim.SGD(params, lr=lr)
    if name == "Adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "AdaHessian":
        return AdaHessian(params, lr=lr, generator=generator)
    if name in ("SophiaG", "SophiaH"):
        estimator = "gauss-newton-bartlett" if name == "SophiaG" else "hutchinson"
        return Sophia(params, lr=lr, rho=rho, weight_decay=0.0, update_every=SOPHIA_K, estimator=estimator,
                      generator=generator)


@lru_cache(maxsize=256)
def train(name: str, lr: float | None = None, seed: int = 0, steps: int = 400, batch_size: int = 128,
          width: int = 64, rho: float = 0.04, eval_every: int = 10, device: str = "cpu") -> Run:
    """Train the digits MLP 64-``width``-10 with optimizer ``name`` (lr default ``TUNED_LR[name]``) for ``steps``.

    ``seed`` sets the initial weights, the mini-batch sequence (the same for every optimizer) and the optimizer's
    own randomness. History every ``eval_every`` steps: step, cost (gradient-equivalents), loss (full training set),
    clipped (Sophia: mean fraction of clipped coordinates over those steps; NaN for the others).
    """
    check_choice("optimizer", name, OPTIMIZERS)
    lr = TUNED_LR[name] if lr is None else lr
    inputs, targets = digits_data(device)
    model = models.mlp([inputs.shape[1], width, 10], generator=torch.Generator().manual_seed(seed),
                       dtype=inputs.dtype, device=device)
    optimizer = make_optimizer(name, model.parameters(), lr, torch.Generator(device).manual_seed(seed + 1000), rho)
    batches = torch.Generator().manual_seed(seed + 2000)

    def full_loss() -> float:
        with torch.no_grad():
            return cross_entropy(model(inputs), targets).item()

    start = time.perf_counter()
    record = {"step": [0], "cost": [0.0], "loss": [full_loss()], "clipped": [math.nan], "seconds": [0.0]}
    cost, clipped = 0.0, []
    reason = f"{steps} steps"
    for t in range(steps):
        index = torch.randint(0, inputs.shape[0], (batch_size,), generator=batches).to(device)
        x, y = inputs[index], targets[index]
        if name in ("SGD", "Adam"):
            optimizer.zero_grad()
            cross_entropy(model(x), y).backward()
            optimizer.step()
        elif name == "SophiaG":
            optimizer.step(lambda: (lambda logits: (cross_entropy(logits, y), logits))(model(x)))
        else:
            optimizer.step(lambda: cross_entropy(model(x), y))
        cost += step_cost(name, refreshed=t % SOPHIA_K == 0)
        if name.startswith("Sophia"):
            clipped.append(optimizer.clipped_fraction)
        if (t + 1) % eval_every == 0 or t + 1 == steps:
            loss = full_loss()
            record["step"].append(t + 1)
            record["cost"].append(cost)
            record["loss"].append(loss)
            record["clipped"].append(float(np.mean(clipped)) if clipped else math.nan)
            record["seconds"].append(time.perf_counter() - start)
            clipped = []
            if not math.isfinite(loss):
                reason = "diverged"
                break
    history = make_history(dict(record, error=record["loss"]), len(record["loss"]) - 1)
    return Run(f"{name}, lr = {lr:g}", bool(history["loss"].min() <= TASK_TARGET), reason,
               len(record["loss"]) - 1, history)


def lr_sweep(name: str, seed: int = 0, **kwargs) -> dict[float, Run]:
    """``train`` at every lr of ``LR_GRIDS[name]``."""
    return {lr: train(name, lr, seed, **kwargs) for lr in LR_GRIDS[name]}


def tune(name: str, seed: int = 0, **kwargs) -> float:
    """The lr of ``LR_GRIDS[name]`` that reaches ``TASK_TARGET`` in the fewest steps among those that end at or below.

    A run that gets there and climbs back out is not a good choice; the smallest lr if none does.
    """
    sweep = lr_sweep(name, seed, **kwargs)
    stable = {lr: run.first("loss", TASK_TARGET) for lr, run in sweep.items()
              if run.history["loss"][-1] <= TASK_TARGET}
    return min(stable, key=stable.get) if stable else min(sweep)


# ----------------------------------------------------------------------------------------------------------------------
# how good are the diagonal estimates? relative error against the exact diagonals, against the number of probes
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EstimatorErrors:
    """‖mean of m estimates − exact‖ / ‖exact‖ for each m in ``probes``.

    Hutchinson against diag(H), GNB against diag(GGN); ``*_predicted``: the root-mean-square error the variances
    predict, sqrt(Σ_i Var_i / m) / ‖exact‖.
    """

    probes: np.ndarray
    hutchinson: np.ndarray
    hutchinson_predicted: np.ndarray
    gnb: np.ndarray
    gnb_predicted: np.ndarray
    num_parameters: int

    @staticmethod
    def slope(probes: np.ndarray, errors: np.ndarray) -> float:
        """Least-squares slope of log(error) against log(m): −½ for 1/√m."""
        return float(np.polyfit(np.log(probes), np.log(errors), 1)[0])


@lru_cache(maxsize=8)
def estimator_errors(probes: tuple[int, ...] = (1, 4, 16, 64, 256), seed: int = 0, width: int = 16,
                     samples: int = 256) -> EstimatorErrors:
    """Errors of the Hutchinson and GNB diagonal estimates on a digits MLP 64-``width``-10 (float64).

    At its initialisation (``seed``) on ``samples`` images: exact diag(H) and diag(GGN) (``hl.hessian``, ``hl.ggn``),
    and the running means of max(probes) Hutchinson and GNB estimates.
    """
    inputs, targets = data.digits()
    inputs, targets = inputs[:samples], targets[:samples]
    model = models.mlp([64, width, 10], generator=torch.Generator().manual_seed(seed))
    f, theta = loss_function(model, cross_entropy, inputs, targets)
    g, _ = output_function(model, inputs)
    H = hessian(f, theta)
    exact_h, exact_ggn = H.diagonal(), ggn(g, lambda z: cross_entropy(z, targets), theta).diagonal()
    params = list(model.parameters())
    generator = torch.Generator().manual_seed(seed + 1)
    logits = model(inputs)
    gradients = torch.autograd.grad(cross_entropy(logits, targets), params, create_graph=True)
    m_max = max(probes)
    hutchinson = torch.stack([torch.cat([d.reshape(-1) for d in hutchinson_diagonal_estimate(
        gradients, params, generator, retain_graph=True)]) for _ in range(m_max)])
    gnb = torch.stack([torch.cat([d.reshape(-1) for d in gauss_newton_bartlett_estimate(logits, params, generator)])
                       for _ in range(m_max)])
    m = np.array(probes)

    def relative(draws: Tensor, exact: Tensor) -> np.ndarray:
        return np.array([((draws[:k].mean(0) - exact).norm() / exact.norm()).item() for k in probes])

    hutchinson_variance = ((H**2).sum(1) - exact_h**2).sum().item()  # Σ_i Σ_{j≠i} H_ij², exact for Rademacher
    gnb_variance = gnb.var(0).sum().item()  # estimated from the draws
    return EstimatorErrors(m, relative(hutchinson, exact_h), np.sqrt(hutchinson_variance / m) / exact_h.norm().item(),
                           relative(gnb, exact_ggn), np.sqrt(gnb_variance / m) / exact_ggn.norm().item(), theta.numel())
