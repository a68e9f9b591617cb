"""Notebook 13: loss slices along the Hessian's own axes and along random directions, and the LLA spectral criteria.

The random directions are filter-normalised; the criteria are those of two nets that generalise differently.

Gabdullin (2024), *Investigating generalization capabilities of neural networks by means of loss landscapes and
Hessian analysis* (the LLA library), after Li, Xu, Taylor, Studer & Goldstein (2018), *Visualizing the Loss Landscape
of Neural Nets*. A slice L(θ + s u) along a unit vector u curves like uᵀHu, a Rayleigh quotient: at most λ_1, and for
a random u about tr(H)/n, far below it — random slices show a flat landscape whatever the top curvature is. Along the
top eigenvector v_1 the slice curves exactly like λ_1. Filter normalisation gives biases and batch norm's γ, β zero
weight, so a random slice never moves them. The LLA criteria read the spectral density (SLQ):
re = |λ_min / λ_max| and the ratio of negative to positive spectral mass.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_choice
from ..data import digits
from ..functional import loss_function
from ..landscape import (
    hessian_directions,
    loss_slice,
    random_direction,
    second_difference,
)
from ..models import mlp
from ..operators import HessianOperator
from ..spectrum import spectral_density


def digits_net(width: int = 32, batch_norm: bool = False, generator: torch.Generator | None = None) -> nn.Sequential:
    """An MLP 64-width-10 with tanh (smooth: second differences are exact to O(h²)), initialised from ``generator``.

    With ``batch_norm``, batch norm after the hidden linear layer (Linear, BatchNorm1d, tanh, Linear).
    """
    net = mlp([64, width, 10], activation="tanh", generator=generator)
    if batch_norm:
        net = nn.Sequential(net[0], nn.BatchNorm1d(width, dtype=torch.float64), *net[1:])
    return net


@lru_cache(maxsize=8)
def trained(batch_norm: bool = False, width: int = 32, steps: int = 300, lr: float = 0.5, seed: int = 0):
    """``digits_net`` trained by full-batch gradient descent on all 1797 digits; batch norm then in eval mode.

    Returns ``(model, inputs, targets)``.
    """
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = digits()
    model = digits_net(width, batch_norm, generator)
    optimiser = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimiser.step()
    return model.eval(), inputs, targets


@dataclass(frozen=True)
class Axes:
    """A trained net's top Hessian eigenpairs, random filter-normalised directions, and their curvatures.

    ``curvatures_*`` are second differences uᵀHu along the unit vectors (eigenvectors; d/‖d‖); ``bias_share`` is the
    fraction of ‖v_1‖² on 1-D parameters (biases, γ, β), which filter normalisation never moves.
    """

    batch_norm: bool
    num_params: int
    loss: float
    eigenvalues: np.ndarray
    curvatures_eigen: np.ndarray
    curvatures_random: np.ndarray
    bias_share: float
    eigenvectors: Tensor        # (n, k)
    randoms: Tensor             # (n, r), filter-normalised, not unit


@lru_cache(maxsize=8)
def axes(batch_norm: bool = False, k: int = 2, num_random: int = 4, seed: int = 0) -> Axes:
    """Top-k eigenpairs (Lanczos, tol 1e-10) and ``num_random`` filter-normalised directions of ``trained(...)``.

    Cost: a Lanczos run (tens to a few hundred Hessian-vector products) and 3 forward passes per curvature.
    """
    model, inputs, targets = trained(batch_norm, seed=seed)
    f, theta = loss_function(model, nn.functional.cross_entropy, inputs, targets)
    generator = torch.Generator().manual_seed(seed)
    values, vectors = hessian_directions(HessianOperator(f, theta), k=k, tol=1e-10, generator=generator)
    randoms = torch.stack([random_direction(model, "filter", generator=generator) for _ in range(num_random)], 1)
    eigen = [float(second_difference(f, theta, vectors[:, i])) for i in range(k)]
    rand = [float(second_difference(f, theta, randoms[:, i] / randoms[:, i].norm())) for i in range(num_random)]
    one_d = torch.cat([torch.full((p.numel(),), p.ndim <= 1) for p in model.parameters()])
    share = float((vectors[one_d, 0] ** 2).sum())
    return Axes(batch_norm, theta.numel(), float(f(theta)), values.numpy(), np.array(eigen), np.array(rand), share,
                vectors, randoms)


def slices_1d(batch_norm: bool = False, span: float = 1.0, num: int = 41, seed: int = 0):
    """L(θ + s u) for s ∈ [−span, span], u = v_1, v_2 and each random direction normalised to unit length.

    Returns ``(s, {label: losses})``.
    """
    model, inputs, targets = trained(batch_norm, seed=seed)
    f, theta = loss_function(model, nn.functional.cross_entropy, inputs, targets)
    a = axes(batch_norm, seed=seed)
    s = np.linspace(-span, span, num)
    curves = {f"v{i + 1} (λ = {a.eigenvalues[i]:.3g})": loss_slice(f, theta, [a.eigenvectors[:, i]], [s]).losses
              for i in range(a.eigenvectors.shape[1])}
    for i in range(a.randoms.shape[1]):
        u = a.randoms[:, i] / a.randoms[:, i].norm()
        curves[f"random {i + 1} (uᵀHu = {a.curvatures_random[i]:.2g})"] = loss_slice(f, theta, [u], [s]).losses
    return s, curves


def slice_2d(kind: str, batch_norm: bool = False, span: float = 1.0, num: int = 21, seed: int = 0):
    """L(θ + α u_1 + β u_2) on a num × num grid of α, β in [−span, span].

    u the top two eigenvectors (``kind="hessian"``) or the first two random directions normalised to unit length
    (``kind="random"``), for the net ``trained(batch_norm, seed=seed)``. Returns a ``LossSlice``.
    """
    check_choice("kind", kind, ("hessian", "random"))
    model, inputs, targets = trained(batch_norm, seed=seed)
    f, theta = loss_function(model, nn.functional.cross_entropy, inputs, targets)
    a = axes(batch_norm, seed=seed)
    U = a.eigenvectors[:, :2] if kind == "hessian" else a.randoms[:, :2] / a.randoms[:, :2].norm(dim=0)
    grid = np.linspace(-span, span, num)
    return loss_slice(f, theta, [U[:, 0], U[:, 1]], [grid, grid])


# ----------------------------------------------------------------------------------------------------------------------
# LLA criteria: clean vs partly shuffled labels
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Criteria:
    """The LLA spectral criteria of one net from its SLQ density, with its train and test accuracy."""

    noise: float
    train_accuracy: float
    test_accuracy: float
    lambda_min: float
    lambda_max: float
    re: float                 # |λ_min / λ_max|
    negative_mass: float      # Σ w_i over θ_i < 0 divided by Σ w_i over θ_i > 0
    nodes: np.ndarray
    weights: np.ndarray


@lru_cache(maxsize=16)
def criteria(noise: float, width: int = 64, epochs: int = 60, lr: float = 0.1, batch_size: int = 32,
             num_train: int = 1000, slq_steps: int = 40, slq_probes: int = 4, seed: int = 0) -> Criteria:
    """Train an MLP 64-width-10 (tanh) on digits with a fraction ``noise`` of labels shuffled, and read its criteria.

    SGD on ``num_train`` digits; then the SLQ density of its training-loss Hessian and the criteria re and
    negative/positive mass.

    Test accuracy on the remaining digits (true labels). Cost: epochs × num_train / batch_size gradients, then
    slq_steps × slq_probes Hessian-vector products.
    """
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = digits()
    order = torch.randperm(len(targets), generator=generator)
    train, test = order[:num_train], order[num_train:]
    x, y = inputs[train], targets[train].clone()
    noisy = torch.rand(num_train, generator=generator) < noise
    y[noisy] = y[noisy][torch.randperm(int(noisy.sum()), generator=generator)]
    model = mlp([64, width, 10], activation="tanh", generator=generator)
    optimiser = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(epochs):
        for batch in torch.randperm(num_train, generator=generator).split(batch_size):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
    with torch.no_grad():
        train_accuracy = (model(x).argmax(1) == y).double().mean().item()
        test_accuracy = (model(inputs[test]).argmax(1) == targets[test]).double().mean().item()
    f, theta = loss_function(model, nn.functional.cross_entropy, x, y)
    density = spectral_density(HessianOperator(f, theta), slq_steps, slq_probes, generator=generator)
    nodes, weights = density.nodes.reshape(-1).numpy(), density.weights.reshape(-1).numpy()
    low, high = float(nodes.min()), float(nodes.max())
    negative = float(weights[nodes < 0].sum()) / float(weights[nodes > 0].sum())
    return Criteria(float(noise), train_accuracy, test_accuracy, low, high, abs(low / high), negative, nodes, weights)
