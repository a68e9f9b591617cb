"""Notebook 01: the Hessian of a trained over-parametrised net is a bulk at zero plus about one outlier per class.

Sagun, Evci, Güney, Dauphin & Bottou (2017), *Empirical Analysis of the Hessian of Over-Parametrized Neural Networks*:
train an MLP on k Gaussian clusters and compute its exact Hessian. Its spectrum has two parts: a *bulk* of eigenvalues
at (or near) zero, which grows with the number of parameters, and a few large *outliers*, about as many as there are
classes, which depend on the data, not on the width. Papyan (2019, 2020) traced the outliers to the class means of the
generalised Gauss-Newton part G = (1/N) Σ_i J_iᵀ H_i J_i of the Hessian H = G + (1/N) Σ_i Σ_c (∂ℓ_i/∂z_c) ∇²z_c:
G has rank at most N (k − 1), because each softmax cross-entropy Hessian H_i = diag(p_i) − p_i p_iᵀ has rank k − 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor, nn

from .._checks import check_choice
from ..data import gaussian_clusters
from ..exact import ggn, hessian
from ..functional import loss_function, output_function
from ..models import mlp, train_full_batch

NEAR_ZERO = 1e-3  # |λ| < NEAR_ZERO · λ_max counts as "at zero"


@dataclass(frozen=True)
class Spectrum:
    """Exact eigenvalues of one trained net's curvature matrix, in descending order (float64, CPU)."""

    matrix: str              # "hessian", "ggn" or "difference" (H − G)
    num_classes: int
    width: int
    num_params: int
    num_points: int
    loss: float
    steps: int
    eigenvalues: Tensor

    @property
    def outliers(self) -> int:
        """The number of outliers: below the top eigenvalue, where λ_i / λ_{i+1} is largest among the top 2k + 2."""
        return bulk_edge(self.eigenvalues, 2 * self.num_classes + 2)

    @property
    def near_zero_fraction(self) -> float:
        """The fraction of eigenvalues with |λ| < NEAR_ZERO · λ_max: the bulk at zero."""
        return (self.eigenvalues.abs() < NEAR_ZERO * self.eigenvalues[0]).double().mean().item()

    @property
    def rank(self) -> int:
        """Numerical rank: eigenvalues above n · eps · |λ|_max (``torch.linalg.matrix_rank``'s default)."""
        largest = self.eigenvalues.abs().max()
        tol = self.eigenvalues.numel() * torch.finfo(self.eigenvalues.dtype).eps * largest
        return int((self.eigenvalues.abs() > tol).sum())


def bulk_edge(eigenvalues: Tensor, top: int) -> int:
    """The i (1-based, i >= 2) where the ratio λ_i / λ_{i+1} is largest among the ``top`` largest eigenvalues.

    The bulk edge is a relative jump, hence a ratio. The top eigenvalue is skipped: it is the outlier of the mean
    gradient direction, shared by all classes (Papyan 2019), and stands so far above the class outliers that the
    first ratio would otherwise win whatever the structure below it.
    """
    head = eigenvalues[:top]
    if head.numel() < 3 or head[-1] <= 0:
        raise ValueError(f"need at least 3 positive eigenvalues among the top {top}, got {head.tolist()}.")
    ratios = head[1:-1].log() - head[2:].log()
    return int(ratios.argmax()) + 2


def width_trend(spectra: list[Spectrum]) -> float:
    """The least-squares slope of the near-zero fraction against log2(n): how much the bulk grows per doubling.

    A trend over all widths, not a chain of pairwise comparisons: at N = 200 points the fraction of one narrow net
    can exceed its neighbour's by chance (seed 3: 0.356 at width 32, 0.321 at width 64), while the trend is
    positive on every seed tried (0.07–0.14 per doubling over seeds 0–5 at widths 32, 64, 128).
    """
    if len(spectra) < 2:
        raise ValueError(f"a trend needs at least two widths, got {len(spectra)}.")
    x = torch.tensor([float(s.num_params) for s in spectra], dtype=torch.float64).log2()
    y = torch.tensor([s.near_zero_fraction for s in spectra], dtype=torch.float64)
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x * x).sum())


def train_on_clusters(num_classes: int, width: int, spread: float = 10.0, num_points: int = 200, dim: int = 20,
                      lr: float = 0.05, target_loss: float = 0.1, max_steps: int = 20_000, seed: int = 0):
    """An MLP dim–width–k (tanh) trained by full-batch gradient descent on k Gaussian clusters until loss < target.

    Centres uniform in [−spread, spread]^dim, unit standard deviation (Sagun et al. 2017, Section 3). Returns
    ``(model, inputs, targets, run)``; the same seed gives the same data, initialisation and trajectory.
    """
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = gaussian_clusters(num_points, dim, num_classes, spread=spread, generator=generator)
    model = mlp([dim, width, num_classes], activation="tanh", generator=generator)
    run = train_full_batch(model, nn.functional.cross_entropy, inputs, targets, lr=lr, max_steps=max_steps,
                           target_loss=target_loss)
    if not run.reached_target:
        raise ValueError(f"training did not reach loss {target_loss} in {max_steps} steps (last loss "
                         f"{run.losses[-1]:.3g}); raise max_steps or lr, or separate the clusters more (spread).")
    return model, inputs, targets, run


@lru_cache(maxsize=8)
def _trained(num_classes: int, width: int, spread: float, num_points: int, dim: int, lr: float, seed: int):
    return train_on_clusters(num_classes, width, spread, num_points, dim, lr, seed=seed)


@lru_cache(maxsize=4)
def _matrix(matrix: str, *setting) -> Tensor:
    """The dense H or G of a trained setting (cached: H − G reuses both)."""
    model, inputs, targets, _ = _trained(*setting)
    if matrix == "hessian":
        f, theta = loss_function(model, nn.functional.cross_entropy, inputs, targets)
        return hessian(f, theta)
    g, theta = output_function(model, inputs)
    return ggn(g, lambda outputs: nn.functional.cross_entropy(outputs, targets), theta)


@lru_cache(maxsize=32)
def spectrum(num_classes: int, width: int, matrix: str = "hessian", spread: float = 10.0, num_points: int = 200,
             dim: int = 20, lr: float = 0.05, seed: int = 0) -> Spectrum:
    """Train (``train_on_clusters``) and return the exact eigenvalues of H, of G, or of H − G (``matrix``).

    Cost: n Hessian-vector (or GGN-vector) products and one n×n eigendecomposition, n = (dim + 1)·width +
    (width + 1)·k (3,978 at width 128, k = 10: seconds on a laptop). Cached: the widgets revisit settings.
    """
    check_choice("matrix", matrix, ("hessian", "ggn", "difference"))
    setting = (num_classes, width, float(spread), num_points, dim, float(lr), seed)
    run = _trained(*setting)[3]
    if matrix == "difference":
        M = _matrix("hessian", *setting) - _matrix("ggn", *setting)
    else:
        M = _matrix(matrix, *setting)
    eigenvalues = torch.linalg.eigvalsh(M).flip(0)
    return Spectrum(matrix, num_classes, width, M.shape[0], num_points, run.losses[-1], len(run.losses) - 1,
                    eigenvalues)
