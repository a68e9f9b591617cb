"""Notebook 14: along a step, softmax cross-entropy is analytic only inside ρ_a = π / Δ_a.

A step longer than that leaves every Taylor model (the Hessian's quadratic included), and capping the step at ρ_a
survives learning-rate spikes.

Sao (2026), *Ghosts of Softmax: Complex Singularities That Limit Safe Step Sizes in Cross-Entropy*. The formulas are
in ``hesslab.landscape``; here: the Taylor polynomials of a trained net's loss along a direction, the binary case's
exact radius, and SGD on the digits with a learning-rate spike — plain, with gradient clipping, and with the step
capped at ρ_a (measured on the step's own mini-batch by one Jacobian-vector product).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_choice
from ..data import breast_cancer, digits
from ..functional import flatten_parameters, loss_function, select_parameters, unflatten
from ..landscape import (
    binary_radius,
    convergence_radius,
    cross_entropy_taylor_coefficients,
    linearised_cross_entropy,
    logit_derivatives,
    loss_slice,
)
from ..models import mlp

METHODS = ("plain", "clipped", "rho-capped")


@dataclass(frozen=True)
class SpikeRun:
    """One SGD run through a learning-rate spike.

    Full-data ``losses`` (every ``eval_every`` steps, at ``steps``), per-step ``step_norms`` ‖Δθ‖ and ``radii`` ρ_a
    of the step taken (nan for methods that do not measure it), and the final loss and accuracy (nan when the run
    diverged), and the trained ``model``.
    """

    method: str
    spike: float
    steps: np.ndarray
    losses: np.ndarray
    step_norms: np.ndarray
    radii: np.ndarray
    final_loss: float
    final_accuracy: float
    model: nn.Module = field(compare=False, repr=False)   # the net at the end of the run

    @property
    def diverged(self) -> bool:
        """Whether the run diverged (its final loss is not finite)."""
        return not math.isfinite(self.final_loss)


def _evaluate(model: nn.Module, inputs: Tensor, targets: Tensor) -> tuple[float, float]:
    with torch.no_grad():
        logits = model(inputs)
        loss = nn.functional.cross_entropy(logits, targets).item()
        accuracy = (logits.argmax(1) == targets).double().mean().item()
    return loss, accuracy


@lru_cache(maxsize=64)
def spike_run(method: str, spike: float = 1000.0, num_steps: int = 600, spike_at: int = 150, spike_steps: int = 5,
              lr: float = 0.05, batch_size: int = 64, clip: float = 1.0, width: int = 128, eval_every: int = 10,
              seed: int = 0) -> SpikeRun:
    """SGD on the digits (MLP 64-width-width-10, ReLU, float64), the lr × ``spike`` for ``spike_steps`` steps.

    ``method``: ``"plain"`` θ ← θ − lr g; ``"clipped"`` with g rescaled to norm <= ``clip`` first;
    ``"rho-capped"`` with the step Δθ = −lr g shortened to ‖Δθ‖ <= ρ_a, ρ_a = π / Δ_a along v = Δθ / ‖Δθ‖ on the
    step's mini-batch. The same seed gives the same initialisation and batches for every method. A run whose
    parameters become non-finite stops there (final loss nan). Cost: ``num_steps`` gradients (+ as many JVPs).
    """
    check_choice("method", method, METHODS)
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = digits()
    model = mlp([64, width, width, 10], activation="relu", generator=generator)
    named = select_parameters(model)
    theta = flatten_parameters(named)
    order = torch.cat([torch.randperm(len(targets), generator=generator)
                       for _ in range(num_steps * batch_size // len(targets) + 1)])
    steps, losses, step_norms, radii = [], [], [], []
    for step in range(num_steps):
        if step % eval_every == 0:
            steps.append(step)
            losses.append(_evaluate(model, inputs, targets)[0])
        index = order[step * batch_size:(step + 1) * batch_size]
        x, y = inputs[index], targets[index]
        point = theta.detach().requires_grad_(True)
        loss = nn.functional.cross_entropy(torch.func.functional_call(model, unflatten(point, named), (x,)), y)
        (gradient,) = torch.autograd.grad(loss, point)
        rate = lr * (spike if spike_at <= step < spike_at + spike_steps else 1.0)
        if method == "clipped":
            gradient = gradient * min(1.0, clip / float(gradient.norm()))
        delta = -rate * gradient
        radius = math.nan
        if method == "rho-capped" and float(delta.norm()) > 0:
            length = float(delta.norm())
            _load(model, named, theta)
            radius = convergence_radius(logit_derivatives(model, x, delta / length)[1]).radius
            delta = delta * min(1.0, radius / length)
        step_norms.append(float(delta.norm()))
        radii.append(radius)
        theta = theta + delta
        if not torch.isfinite(theta).all():
            break
        _load(model, named, theta)
    final = _evaluate(model, inputs, targets) if torch.isfinite(theta).all() else (math.nan, math.nan)
    if not math.isfinite(final[0]):
        final = (math.nan, math.nan)
    steps.append(len(step_norms))
    losses.append(final[0])
    return SpikeRun(method, float(spike), np.array(steps), np.array(losses), np.array(step_norms), np.array(radii),
                    final[0], final[1], model)


def _load(model: nn.Module, named, theta: Tensor) -> None:
    with torch.no_grad():
        for (name, p), piece in zip(named, unflatten(theta, named).values()):
            p.copy_(piece)


# ----------------------------------------------------------------------------------------------------------------------
# Taylor polynomials along a direction
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaylorAlongStep:
    """The linearised loss ℓ(t) and the true loss L(θ + t v) on a grid of real t, with ℓ's Taylor polynomials.

    ℓ's Taylor polynomials of several ``degrees`` at t = 0; the bound ρ_a and, for two classes, the exact radius
    R* = min_i √(δ_i² + π²)/Δ_a,i (nan otherwise).
    """

    t: np.ndarray
    linearised: np.ndarray
    true_loss: np.ndarray
    degrees: tuple[int, ...]
    polynomials: np.ndarray        # (len(degrees), len(t))
    coefficients: np.ndarray       # (order + 1,)
    rho: float
    exact_radius: float


def taylor_along_step(model: nn.Module, inputs: Tensor, targets: Tensor, direction: Tensor,
                      degrees=(2, 4, 8, 16, 32), span: float = 2.5, num_t: int = 301,
                      order: int = 64) -> TaylorAlongStep:
    """Along θ + t·direction: the linearised cross-entropy, the true loss, and Taylor polynomials on |t| <= span·ρ_a.

    The coefficients come from Cauchy's formula on |t| = 0.9 R* (two classes) or 0.9 ρ_a (more classes, where
    only the bound is known). Polynomial values beyond the radius of convergence grow without bound; they are
    returned as they are. Cost: one JVP, num_t forward passes.
    """
    z, a = logit_derivatives(model, inputs, direction)
    rho = convergence_radius(a).radius
    exact = float(binary_radius(z, a).min()) if z.shape[1] == 2 else math.nan
    cauchy = 0.9 * (exact if z.shape[1] == 2 else rho)
    coefficients = cross_entropy_taylor_coefficients(z, a, targets, order, cauchy)
    t = torch.linspace(-span * rho, span * rho, num_t, dtype=torch.float64)
    f, theta = loss_function(model, nn.functional.cross_entropy, inputs, targets)
    true_loss = loss_slice(f, theta, [direction], [t.numpy()]).losses
    powers = t[None, :] ** torch.arange(order + 1, dtype=torch.float64)[:, None]
    polynomials = np.stack([(coefficients[: d + 1, None] * powers[: d + 1]).sum(0).numpy() for d in degrees])
    return TaylorAlongStep(t.numpy(), linearised_cross_entropy(z, a, targets, t).numpy(), true_loss, tuple(degrees),
                           polynomials, coefficients.numpy(), rho, exact)


@lru_cache(maxsize=4)
def trained_binary_net(width: int = 16, steps: int = 200, lr: float = 0.1, seed: int = 0):
    """An MLP 30-width-2 (tanh) trained by full-batch gradient descent on scikit-learn's breast-cancer set.

    Returns ``(model, inputs, targets)``.
    """
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = breast_cancer()
    model = mlp([30, width, 2], generator=generator)
    optimiser = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimiser.step()
    return model, inputs, targets


def gradient_direction(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    """−∇L/‖∇L‖, the unit direction of a gradient-descent step on the whole batch."""
    f, theta = loss_function(model, nn.functional.cross_entropy, inputs, targets)
    gradient = torch.func.grad(f)(theta)
    return -gradient / gradient.norm()
