"""Shared plotting: the convergence of any iterative method, and a spectral density next to the exact eigenvalues."""

from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from .spectrum import SpectralDensity


def plot_spectral_density(density: SpectralDensity, eigenvalues: Tensor | None = None, ax=None,
                          sigma: float | None = None, num_points: int = 2000, log: bool = True,
                          label: str = "SLQ density"):
    """Draw ``density.density(grid, sigma)`` over the quadrature nodes' range, with the exact eigenvalues if given.

    The exact ``eigenvalues``, when given, are drawn as a histogram normalised the same way (area 1), so the two can
    be compared by eye. ``sigma`` defaults to 1% of the spectrum's width; ``log=True`` uses a log y-axis, where the
    bulk and the outliers of a Hessian spectrum are both visible.

    Args:
        density: a ``SpectralDensity`` (``hl.spectral_density``).
        eigenvalues: exact eigenvalues (n,) to draw as a histogram; None: none.
        ax: the matplotlib axes to draw on; None: the current axes.
        sigma: the width of the Gaussian kernel; None: 1% of the spectrum's width.
        num_points: points of the grid the density is drawn on.
        log: a log y-axis.
        label: the legend label of the density curve.

    Returns:
        The matplotlib axes.

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt, torch, hesslab as hl
        >>> A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
        >>> density = hl.spectral_density(A, num_steps=5, generator=torch.Generator().manual_seed(0))
        >>> ax = plot_spectral_density(density, torch.linalg.eigvalsh(A), ax=plt.figure().gca())
        >>> len(ax.lines), len(ax.patches)  # the density curve and the histogram's 100 bars
        (1, 100)
        >>> plt.close("all")
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


def plot_convergence(results: Mapping[str, object], x: str = "iterations", y: str = "error", ax=None,
                     log: bool = True, **style):
    """One line per result: ``history[y]`` against the iteration count or ``history[x]``, labelled by the key.

    Any result of the one shape (DESIGN.md, "Results": a ``history`` dict of equal-length arrays, entry k after
    k iterations) can be drawn, so every method's convergence is plotted the same way.

    Args:
        results: {label: result}; each result has a ``history`` with the column ``y`` (and ``x``).
        x: ``"iterations"`` (0, 1, ..., K) or a history column, e.g. ``"seconds"``, ``"cost"``, ``"matvecs"``.
        y: the history column to draw, ``"error"`` by default (each result class documents what its error is).
        ax: matplotlib axes to draw on; ``None`` draws on the current axes.
        log: a log y-axis (zero or negative values are not drawn on it).
        **style: passed to every ``ax.plot`` (e.g. ``marker="o"``).

    Returns:
        The axes.

    Raises:
        TypeError: when ``results`` is not a mapping or a value has no history.
        ValueError: when a history lacks the column ``x`` or ``y`` (the message lists the columns it has).

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt, torch, hesslab as hl
        >>> f = lambda x: 0.5 * (x**2).sum() + 0.25 * (x**4).sum()
        >>> x0 = torch.ones(2, dtype=torch.float64)
        >>> results = {"newton": hl.optimize.newton(f, x0), "damped": hl.optimize.damped_newton(f, x0)}
        >>> ax = plot_convergence(results, x="cost", ax=plt.figure().gca())
        >>> len(ax.lines), [line.get_label() for line in ax.lines]
        (2, ['newton', 'damped'])
        >>> plt.close("all")
    """
    if not isinstance(results, Mapping):
        raise TypeError(f"results must be a mapping {{label: result}}, got {type(results).__name__}; wrap one "
                        "result as {'label': result}.")
    ax = ax if ax is not None else plt.gca()
    for label, result in results.items():
        history = getattr(result, "history", None)
        if not isinstance(history, Mapping):
            raise TypeError(f"results[{label!r}] must have a history dict of arrays (DESIGN.md, 'Results'), got "
                            f"{type(result).__name__} with history of type {type(history).__name__}.")
        for name in (y,) if x == "iterations" else (x, y):
            if name not in history:
                raise ValueError(f"results[{label!r}].history has no column {name!r}; it has {sorted(history)}. "
                                 "Pick one of those for x or y.")
        values = np.asarray(history[y], dtype=float)
        steps = np.arange(len(values)) if x == "iterations" else np.asarray(history[x], dtype=float)
        ax.plot(steps, values, label=str(label), **style)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend(frameon=False)
    return ax
