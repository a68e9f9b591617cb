"""Shared plotting: a spectral density next to the exact eigenvalues it estimates."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from torch import Tensor

from .spectrum import SpectralDensity


def plot_spectral_density(density: SpectralDensity, eigenvalues: Tensor | None = None, ax=None,
                          sigma: float | None = None, num_points: int = 2000, log: bool = True,
                          label: str = "SLQ density"):
    """Draw ``density.density(grid, sigma)`` over the quadrature nodes' range, and, when given, a histogram of the
    exact ``eigenvalues`` normalised the same way (area 1), so the two can be compared by eye.

    ``sigma`` defaults to 1% of the spectrum's width; ``log=True`` uses a log y-axis, where the bulk and the
    outliers of a Hessian spectrum are both visible. Returns the matplotlib axes.
    """
    ax = ax if ax is not None else plt.gca()
    nodes = density.nodes.double().reshape(-1).cpu()
    low, high = nodes.min().item(), nodes.max().item()
    if eigenvalues is not None:
        eigenvalues = eigenvalues.double().reshape(-1).cpu()
        low, high = min(low, eigenvalues.min().item()), max(high, eigenvalues.max().item())
    width = max(high - low, 1e-12)
    sigma = 0.01 * width if sigma is None else sigma
    grid = torch.linspace(low - 0.05 * width, high + 0.05 * width, num_points, dtype=torch.float64)
    if eigenvalues is not None:
        ax.hist(eigenvalues.numpy(), bins=100, range=(grid[0].item(), grid[-1].item()), density=True,
                color="0.75", label=f"exact eigenvalues (n = {eigenvalues.numel()})")
    ax.plot(grid.numpy(), density.density(grid, sigma).numpy(), color="C3", lw=1.5, label=label)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(bottom=1e-4 / width)
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("density")
    ax.legend(frameon=False)
    return ax
