"""Stochastic Lanczos quadrature: the eigenvalue density of a symmetric operator from a few Lanczos runs.

With T_m = S Θ Sᵀ, the nodes θ_i and weights (S_1i)² form an m-point Gauss quadrature for the spectral measure of
q_1: q_1ᵀ p(A) q_1 = Σ_i (S_1i)² p(θ_i) for every polynomial p of degree <= 2m − 1 (Golub & Meurant). Averaging over
random q_1 gives stochastic Lanczos quadrature (SLQ; Ubaru, Chen & Saad 2017; used for Hessians by Ghorbani,
Krishnan & Xiao 2019 and Papyan 2019). SLQ keeps Rademacher probes, because they define its estimator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_count, check_positive
from ..operators import as_operator
from ..sampling import rademacher
from ._krylov import _check_basis_fits, _lanczos, _tridiagonal, _work_dtype


@dataclass(frozen=True)
class SpectralDensity:
    """A spectral density as Gauss quadrature: ``nodes`` (p, m) and ``weights`` (p, m) from p probes of m steps.

    All weights together sum to 1: the density is the mean over probes of Σ_i w_i δ(λ − θ_i), an estimate of the
    eigenvalue distribution (1/n) Σ_j δ(λ − λ_j).

    Attributes:
        nodes: (p, m) Ritz values θ_i of each probe.
        weights: (p, m) their weights (S_1i)² / p.

    Example:
        >>> import torch
        >>> from hesslab.spectrum import SpectralDensity
        >>> density = SpectralDensity(nodes=torch.tensor([[1.0, 3.0]]), weights=torch.tensor([[0.5, 0.5]]))
        >>> density.moment(1), density.moment(2)  # the mean and mean square of the eigenvalues {1, 3}
        (2.0, 5.0)
    """

    nodes: Tensor
    weights: Tensor

    def density(self, grid: Tensor, sigma: float) -> Tensor:
        """The density smoothed by a Gaussian of width ``sigma``: Σ w_i N(t; θ_i, σ²) at each grid point t.

        Args:
            grid: points t (any shape), a tensor or array.
            sigma: the Gaussian's standard deviation, > 0.

        Returns:
            float64 tensor of grid's shape; it integrates to 1 over the real line.

        Example:
            >>> import torch
            >>> from hesslab.spectrum import SpectralDensity
            >>> density = SpectralDensity(nodes=torch.tensor([[1.0, 3.0]]), weights=torch.tensor([[0.5, 0.5]]))
            >>> [round(value, 4) for value in density.density(torch.tensor([1.0, 2.0]), sigma=1.0).tolist()]
            [0.2265, 0.242]
        """
        sigma = check_positive("sigma", sigma, hint="It is the width of the Gaussian smoothing each node.")
        grid = torch.as_tensor(grid, dtype=torch.float64)
        nodes, weights = self.nodes.double().reshape(-1).cpu(), self.weights.double().reshape(-1).cpu()
        z = (grid[..., None] - nodes) / sigma
        return (weights * torch.exp(-0.5 * z**2)).sum(-1) / (sigma * math.sqrt(2 * math.pi))

    def moment(self, power: int) -> float:
        """Σ w_i θ_i^power, an estimate of tr(A^power)/n — exact per probe for power <= 2m − 1.

        Args:
            power: the moment's order k (θ^k).

        Returns:
            The moment, a float.

        Example:
            >>> import torch
            >>> from hesslab.spectrum import SpectralDensity
            >>> SpectralDensity(nodes=torch.tensor([[1.0, 3.0]]), weights=torch.tensor([[0.5, 0.5]])).moment(3)
            14.0
        """
        return float((self.weights.double() * self.nodes.double() ** power).sum())


def spectral_density(A, num_steps: int, num_probes: int = 1,
                     generator: torch.Generator | None = None) -> SpectralDensity:
    """Stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017): the eigenvalue density of A.

    For each of ``num_probes`` random unit probes v = z/√n, z Rademacher (±1) — the estimator's definition: then
    Σ w_i θ_i^k is Hutchinson's estimate of tr(A^k)/n, with Hutchinson's least variance — m Lanczos steps give
    T_m = S Θ Sᵀ, and the probe contributes nodes θ_i with weights S_1i² / num_probes, exact for the probes used
    whenever k <= 2m − 1. (A ±1 probe may be orthogonal to a structured eigenvector; that probe then gives it
    weight 0, and the average over probes is still unbiased.) A breakdown continues from a fresh Gaussian direction,
    whose nodes get weight 0. Probes run side by side, in blocks whose Lanczos bases fit in memory.

    Cost: m batched products over the p probes, O(m² n p) for reorthogonalisation, O(m n p) memory per block.

    Args:
        A: a ``CurvatureOperator`` or dense symmetric tensor.
        num_steps: m, 1 <= m <= n.
        num_probes: p, >= 1.
        generator: for the probes.

    Returns:
        ``SpectralDensity(nodes (p, m), weights (p, m))``; ``.density(grid, sigma)`` for plotting. A probe whose
        Krylov space is exhausted before m steps (only when m is close to n) has its missing nodes at 0 with
        weight 0.

    Raises:
        ValueError: if a product is not finite (∇²f is not finite at the point).

    Example:
        For a diagonal A every probe z/√n gives vᵀA^k v = tr(A^k)/n exactly, and 3 steps are exact up to k = 5:

        >>> import torch, hesslab as hl
        >>> A = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
        >>> density = hl.spectral_density(A, num_steps=3, num_probes=2, generator=torch.Generator().manual_seed(0))
        >>> round(density.moment(1), 10), round(density.moment(2), 10)  # 6/3 and 14/3
        (2.0, 4.6666666667)
    """
    A = as_operator(A)
    n = A.shape[0]
    check_count("num_steps", num_steps, 1, n, hint="Lanczos cannot take more steps than the dimension n.")
    check_count("num_probes", num_probes, 1)
    work = _work_dtype(A.dtype)
    block = _check_basis_fits(n, num_steps, num_probes, work, A.device, "spectral_density")
    nodes = torch.zeros((num_probes, num_steps), dtype=torch.float64, device=A.device)
    weights = torch.zeros_like(nodes)
    for first in range(0, num_probes, block):
        p = min(block, num_probes - first)
        probes = rademacher(n, p, work, A.device, generator) / math.sqrt(n)
        alphas, betas, _, _ = _lanczos(A, probes, num_steps, generator)
        theta, S = torch.linalg.eigh(_tridiagonal(alphas.T, betas.T))  # (p, m'), (p, m', m')
        m = theta.shape[1]
        nodes[first: first + p, :m] = theta
        weights[first: first + p, :m] = S[:, 0, :] ** 2 / num_probes
    return SpectralDensity(nodes=nodes, weights=weights)
