"""Training the Deep Ritz network: Adam, or second-order steps solved by CG on hesslab's curvature operators.

The Gauss-Newton step solves (G + μI) d = −∇E with the GGN G = Jᵀ H_ℓ J of the energy E(θ) = ℓ(z(θ))
(``hl.GGNOperator(ritz.outputs, ritz.energy_of_outputs, θ)``), positive semi-definite when F is convex — the energy
natural gradient of Müller & Zeinhofer (2023); the Newton-CG step uses the Hessian itself.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import (
    check_choice,
    check_count,
    check_flat_vector,
    check_instance,
    check_real_number,
)
from .._results import history as make_history
from ..linalg import conjugate_gradient
from ..operators import GGNOperator, HessianOperator
from ._ritz import RitzEnergy


@dataclass(frozen=True)
class RitzTrainingResult:
    """A training run of the Deep Ritz network (DESIGN.md, "Results").

    Attributes:
        method: "Adam", "Gauss-Newton-CG" or "Newton-CG"; theta: θ (P,) at the end.
        converged: the run did not diverge (it took its ``steps``, or the second-order method stopped because its
            damping passed 10¹²: no decrease is left at rounding level); ``reason``: why it stopped.
        diverged: the energy became non-finite or rose far above its start (see ``DIVERGENCE``); training then
            stopped at the θ before that step (the last one recorded).
        iterations: steps K recorded after θ_0.
        history: float arrays (K + 1,), entry k at θ_k: ``error`` the L² error ‖u_θ − u*‖ when the problem has an
            exact solution, else the energy's excess E(θ_k) − min_j E(θ_j) over the lowest recorded; ``energy``
            E(θ_k); ``seconds`` since the start; for the second-order methods also ``inner`` (CG steps of the step
            to θ_k, 0 at k = 0) and ``damping`` (the Levenberg-Marquardt μ after that step, the initial μ at k = 0).

    Example:
        >>> import hesslab as hl
        >>> ritz = hl.pde.ritz_energy(hl.pde.elliptic_problem(7), width=4, points_per_axis=8)
        >>> result = hl.pde.train_ritz_gauss_newton(ritz, ritz.initial_parameters(hl.seed(0)), steps=3)
        >>> result.method, result.converged, result.diverged, result.reason
        ('Gauss-Newton-CG', True, False, 'steps = 3 taken')
        >>> result.iterations, len(result.history["error"]) == result.iterations + 1, sorted(result.history)
        (3, True, ['damping', 'energy', 'error', 'inner', 'seconds'])
    """

    method: str
    theta: Tensor
    converged: bool
    reason: str
    iterations: int
    history: dict[str, np.ndarray]
    diverged: bool = False


DIVERGENCE = 1e3  # E_k − E_0 > DIVERGENCE · max(|E_0|, |min_j E_j|): the run has diverged (E is not descending)


def _divergence(energies: list[float], energy: float) -> str:
    """Why the energy ``energy`` after the recorded ``energies`` means divergence, or "" if it does not."""
    if not math.isfinite(energy):
        return f"the energy became {energy}"
    scale = max(abs(energies[0]), abs(min(energies)))
    if energy - energies[0] > DIVERGENCE * scale:
        return (f"the energy rose from {energies[0]:.3g} to {energy:.3g}, more than {DIVERGENCE:g} times "
                f"{scale:.3g} above its start")
    return ""


def _record(ritz: RitzEnergy, u: Tensor, energy: float, history: dict, start: float) -> None:
    """Append the energy, the L² error of the values u (Q,) at the nodes, and the time to the history."""
    history["energies"].append(energy)
    if ritz.exact is not None:
        history["errors"].append(ritz.l2_error_of_values(u))
    history["seconds"].append(time.perf_counter() - start)


def _result(method: str, theta: Tensor, history: dict, reason: str = "", why: str = "") -> RitzTrainingResult:
    """The result; a divergence (``reason`` non-empty) is flagged in it and warned about (RuntimeWarning).

    ``why`` says why a run that did not diverge stopped.
    """
    if reason:
        warnings.warn(f"{method} diverged: {reason}; training stopped at the parameters before that step. Lower the "
                      "learning rate (or raise the damping).", RuntimeWarning, stacklevel=3)
    energies = np.array(history["energies"])
    errors = history["errors"] if history["errors"] else energies - energies.min()
    columns = {"error": errors, "energy": energies, "seconds": history["seconds"]}
    if history["dampings"]:  # the second-order methods: entry 0 is θ_0, before any CG step
        columns.update(inner=[0] + history["inner"], damping=history["dampings"])
    iterations = len(energies) - 1
    return RitzTrainingResult(method, theta.detach(), not reason, reason or why, iterations,
                              make_history(columns, iterations), diverged=bool(reason))


def _check_training_input(ritz, theta0) -> Tensor:
    check_instance("ritz", ritz, RitzEnergy, hint="Make one with hl.pde.ritz_energy(problem, width).")
    theta0 = check_flat_vector("theta0", theta0)
    if theta0.numel() != ritz.num_parameters:
        raise ValueError(f"theta0 must have {ritz.num_parameters} entries for width {ritz.width} in {ritz.dim}-D, "
                         f"got {theta0.numel()}; start from ritz.initial_parameters(generator).")
    return theta0.detach().to(device=ritz.points.device, dtype=ritz.points.dtype)


def train_ritz_adam(ritz: RitzEnergy, theta0: Tensor, steps: int = 2000, lr: float = 1e-2, final_lr: float = 1e-4,
                    progress: bool = False) -> RitzTrainingResult:
    """Minimise E(θ) with Adam (Kingma & Ba 2015), full batch (the quadrature is fixed).

    The learning rate decays geometrically from ``lr`` to ``final_lr`` over ``steps``. Cost: one gradient per step.

    Divergence — a non-finite energy, or one more than ``DIVERGENCE`` times its scale above the start — stops the
    run at the last parameters with a finite energy, sets ``diverged`` and ``reason``, and warns.

    Args:
        ritz: the ``RitzEnergy`` to minimise.
        theta0: the starting parameters θ_0 (P,), e.g. ``ritz.initial_parameters(generator)``.
        steps: Adam steps, >= 1.
        lr: the initial learning rate, > 0.
        final_lr: the learning rate at the last step, > 0.
        progress: show a tqdm progress bar.

    Returns:
        A ``RitzTrainingResult`` with method "Adam"; its history has ``steps`` + 1 entries unless the run diverged.

    Raises:
        ValueError: if theta0 has the wrong number of entries or a non-finite energy, or steps, lr or final_lr is out
            of range.

    Example:
        >>> import hesslab as hl
        >>> ritz = hl.pde.ritz_energy(hl.pde.elliptic_problem(7), width=4, points_per_axis=8)
        >>> result = hl.pde.train_ritz_adam(ritz, ritz.initial_parameters(hl.seed(0)), steps=20, lr=0.05)
        >>> result.converged, result.iterations, bool(result.history["energy"][-1] < result.history["energy"][0])
        (True, 20, True)
    """
    theta = _check_training_input(ritz, theta0).clone().requires_grad_(True)
    check_count("steps", steps, 1)
    lr = check_real_number("lr", lr, 0.0, open="low")
    final_lr = check_real_number("final_lr", final_lr, 0.0, open="low")
    optimiser = torch.optim.Adam([theta], lr=lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=(final_lr / lr) ** (1 / steps))
    history: dict = {"energies": [], "errors": [], "seconds": [], "inner": [], "dampings": []}
    start = time.perf_counter()
    last_finite = theta.detach().clone()
    for step in tqdm(range(steps + 1), desc="Adam", disable=not progress, leave=False):
        optimiser.zero_grad()
        with torch.set_grad_enabled(step < steps):
            z = ritz.outputs(theta)
            energy = ritz.energy_of_outputs(z)
        if step == 0 and not torch.isfinite(energy):
            raise ValueError(f"the energy at theta0 is not finite ({energy.item()}); start from "
                             "ritz.initial_parameters(generator).")
        reason = _divergence(history["energies"], energy.item()) if step else ""
        if reason:
            return _result("Adam", last_finite, history, reason)  # θ_k, whose energy was the last recorded
        _record(ritz, z[:, 0].detach(), energy.item(), history, start)
        if step == steps:
            break
        last_finite = theta.detach().clone()
        energy.backward()
        optimiser.step()
        schedule.step()
    return _result("Adam", theta, history, why=f"steps = {steps} taken")


def train_ritz_gauss_newton(ritz: RitzEnergy, theta0: Tensor, steps: int = 100, curvature: str = "ggn",
                            cg_steps: int = 100, damping: float = 1e-3, progress: bool = False) -> RitzTrainingResult:
    """Minimise E(θ) by Levenberg-Marquardt-damped second-order steps solved with CG on hesslab's operators.

    Each step solves

        (C + μ I) d = −∇E(θ),   C = G (``curvature="ggn"``, ``hl.GGNOperator``) or ∇²E (``"hessian"``, Newton-CG),
        θ ← θ + d if E decreases; μ ← μ/3 when the decrease is > 3/4 of the model's ½dᵀCd + ∇Eᵀd, μ ← 2μ below 1/4.

    ``cg_steps`` caps the CG steps per step (at most the number of parameters is useful). Stops early when μ
    exceeds 10¹² (no decrease is left to find at rounding level). Cost per step: one gradient, one operator
    (a graph built at θ) and up to ``cg_steps`` curvature products.

    Args:
        ritz: the ``RitzEnergy`` to minimise.
        theta0: the starting parameters θ_0 (P,), e.g. ``ritz.initial_parameters(generator)``.
        steps: second-order steps at most, >= 1.
        curvature: ``"ggn"`` (Gauss-Newton, positive semi-definite where F is convex) or ``"hessian"`` (Newton-CG).
        cg_steps: CG steps per step at most, >= 1.
        damping: the initial Levenberg-Marquardt damping μ, > 0.
        progress: show a tqdm progress bar.

    Returns:
        A ``RitzTrainingResult``; its history also holds ``inner`` (CG steps) and ``damping`` (μ).

    Raises:
        ValueError: if theta0 has the wrong number of entries or a non-finite energy or gradient, or an argument is
            out of range.

    Example:
        A few Gauss-Newton steps bring the L² error of the network from about 1 to about 10⁻²:

        >>> import hesslab as hl
        >>> ritz = hl.pde.ritz_energy(hl.pde.elliptic_problem(7), width=4, points_per_axis=8)
        >>> result = hl.pde.train_ritz_gauss_newton(ritz, ritz.initial_parameters(hl.seed(0)), steps=5)
        >>> errors = result.history["error"]
        >>> result.converged, result.iterations, round(float(errors[0]), 2), bool(errors[-1] < 0.05)
        (True, 5, 1.14, True)
    """
    theta = _check_training_input(ritz, theta0).clone()
    check_count("steps", steps, 1)
    check_count("cg_steps", cg_steps, 1)
    check_choice("curvature", curvature, ("ggn", "hessian"), hint="'ggn': Gauss-Newton, 'hessian': Newton-CG.")
    damping = check_real_number("damping", damping, 0.0, open="low",
                                hint="It is the initial Levenberg-Marquardt damping μ, e.g. 1e-3.")
    history: dict = {"energies": [], "errors": [], "seconds": [], "inner": [], "dampings": [damping]}
    start = time.perf_counter()
    energy, gradient, u = _value_and_gradient(ritz, theta)
    if not (math.isfinite(energy) and bool(torch.isfinite(gradient).all())):
        raise ValueError(f"the energy or its gradient at theta0 is not finite (E = {energy}); start from "
                         "ritz.initial_parameters(generator).")
    _record(ritz, u, energy, history, start)
    mu = damping
    for _ in tqdm(range(steps), desc=f"{curvature} CG", disable=not progress, leave=False):
        operator = (GGNOperator(ritz.outputs, ritz.energy_of_outputs, theta) if curvature == "ggn"
                    else HessianOperator(ritz.energy, theta))
        solve = conjugate_gradient(lambda v: operator @ v + mu * v, -gradient, max_iter=cg_steps)
        d, inner = solve.x, solve.iterations
        predicted = float(gradient @ d + 0.5 * d @ (operator @ d))
        trial_energy = ritz.energy(theta + d).item()
        finite = math.isfinite(trial_energy) and math.isfinite(predicted)
        ratio = (trial_energy - energy) / predicted if finite and predicted < 0 else -1.0  # NaN trial: raise μ
        if trial_energy < energy and math.isfinite(trial_energy):
            theta = theta + d
            energy, gradient, u = _value_and_gradient(ritz, theta)
        mu = mu / 3 if ratio > 0.75 else (2 * mu if ratio < 0.25 else mu)
        _record(ritz, u, energy, history, start)
        history["inner"].append(inner)
        history["dampings"].append(mu)
        if mu > 1e12:
            break
    name = "Gauss-Newton-CG" if curvature == "ggn" else "Newton-CG"
    if mu > 1e12 and len(history["inner"]) < 3:
        warnings.warn(f"{name} found no decrease of the energy at all; check theta0 and the problem.",
                      RuntimeWarning, stacklevel=2)
    why = (f"the damping μ = {mu:.3g} passed 1e12: no decrease is left at rounding level" if mu > 1e12
           else f"steps = {steps} taken")
    return _result(name, theta, history, why=why)


def _value_and_gradient(ritz: RitzEnergy, theta: Tensor) -> tuple[float, Tensor, Tensor]:
    """E(θ), ∇E(θ) and the network's values at the nodes (for the error)."""
    point = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        z = ritz.outputs(point)
        energy = ritz.energy_of_outputs(z)
        (gradient,) = torch.autograd.grad(energy, point)
    return energy.item(), gradient, z[:, 0].detach()
