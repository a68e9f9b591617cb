"""The Lanczos method: top eigenpairs and the spectral density of a symmetric operator from products alone.

Lanczos (1950) builds an orthonormal basis Q_m = [q_1 … q_m] of the Krylov space span{q_1, A q_1, …, A^{m−1} q_1} in
which A is tridiagonal, T_m = Q_mᵀ A Q_m (diagonal α, off-diagonal β):

    β_j q_{j+1} = A q_j − α_j q_j − β_{j−1} q_{j−1},      α_j = q_jᵀ A q_j.

In floating point the q_j lose orthogonality, so every new vector is re-orthogonalised against all previous ones
(full reorthogonalisation, repeated once when much cancellation happened — "twice is enough", Parlett 1980).
The eigenvalues of T_m (Ritz values) approximate A's extreme eigenvalues first (``top_eigen``). With T_m = S Θ Sᵀ,
the nodes θ_i and weights (S_1i)² form an m-point Gauss quadrature for the spectral measure of q_1:
q_1ᵀ p(A) q_1 = Σ_i (S_1i)² p(θ_i) for every polynomial p of degree <= 2m − 1 (Golub & Meurant). Averaging over
random q_1 gives stochastic Lanczos quadrature (SLQ; Ubaru, Chen & Saad 2017; used for Hessians by Ghorbani,
Krishnan & Xiao 2019 and Papyan 2019).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from .checks import check_count, check_like
from .hutchinson import rademacher
from .operators import as_operator


class LanczosResult(NamedTuple):
    """``alphas`` (m,), ``betas`` (m−1,) of the tridiagonal T_m and the orthonormal ``basis`` Q_m (n, m).

    With a block of p starting vectors: alphas (p, m), betas (p, m−1), basis (p, n, m).
    A zero beta marks a breakdown (an invariant subspace was found) followed by a restart orthogonal to the basis.
    """

    alphas: Tensor
    betas: Tensor
    basis: Tensor


def _random_start(n: int, p: int, dtype, device, generator) -> Tensor:
    """p random unit vectors (Rademacher / √n) as columns."""
    return rademacher(n, p, dtype, device, generator) / math.sqrt(n)


def _lanczos(A, start: Tensor, max_steps: int, generator=None,
             stop: Callable[[Tensor, Tensor, Tensor], bool] | None = None):
    """Lanczos with full reorthogonalisation on p independent start vectors at once (the columns of ``start``).

    ``stop(alphas (j, p), betas (j−1, p), beta_j (p,))`` is asked after each step j and may end the run early.
    Returns alphas (m, p), betas (m−1, p), the basis (p, m, n) (probe, step, coordinate) and the last residual
    norm β_m (p,). Cost: m batched products, O(m² n p) for the reorthogonalisation, O(m n p) memory.
    """
    n, p = start.shape
    basis = torch.empty((p, max_steps, n), dtype=A.dtype, device=A.device)  # only written rows are ever read
    alphas = torch.zeros((max_steps, p), dtype=A.dtype, device=A.device)
    betas = torch.zeros((max_steps, p), dtype=A.dtype, device=A.device)
    basis[:, 0] = start.T
    eps, tiny = torch.finfo(A.dtype).eps, torch.finfo(A.dtype).tiny
    scale = torch.zeros(p, dtype=A.dtype, device=A.device)  # running max of |α|, β: the size of T
    for j in range(max_steps):
        q = basis[:, j]  # (p, n): one row per probe
        w = (A @ q.T).T
        alphas[j] = torch.linalg.vecdot(q, w)
        w = torch.addcmul(w, alphas[j, :, None], q, value=-1)  # the three-term recurrence w − α q − β q_prev ...
        if j > 0:
            w.addcmul_(betas[j - 1, :, None], basis[:, j - 1], value=-1)
        w, beta = _orthogonalise(w, basis[:, : j + 1])  # ... and what rounding left along the older vectors
        if j + 1 == max_steps or (stop is not None and stop(alphas[: j + 1], betas[:j], beta)):
            return alphas[: j + 1], betas[:j], basis[:, : j + 1], beta
        scale = torch.maximum(scale, torch.maximum(alphas[j].abs(), beta))
        breakdown = beta <= 100 * eps * scale.clamp_min(tiny)
        if breakdown.any():  # invariant subspace: continue from a fresh direction orthogonal to the basis
            fresh, _ = _orthogonalise(_random_start(n, p, A.dtype, A.device, generator).T, basis[:, : j + 1])
            fresh, norm = _orthogonalise(fresh, basis[:, : j + 1])
            w = torch.where(breakdown[:, None], fresh / norm[:, None], w)
            beta = torch.where(breakdown, torch.zeros_like(beta), beta)
            basis[:, j + 1] = torch.where(breakdown[:, None], w, w / beta.clamp_min(tiny)[:, None])
        else:
            basis[:, j + 1] = w / beta[:, None]
        betas[j] = beta
    raise AssertionError("unreachable: the loop returns at its last step (max_steps >= 1)")


def _project_out(w: Tensor, Q: Tensor) -> Tensor:
    """w − Q Qᵀ w per probe: w (p, n), Q (p, j, n) with orthonormal rows (classical Gram-Schmidt, fused)."""
    coefficients = torch.bmm(Q, w.unsqueeze(-1))  # (p, j, 1)
    return torch.baddbmm(w.unsqueeze(-1), Q.transpose(1, 2), coefficients, alpha=-1).squeeze(-1)


def _orthogonalise(w: Tensor, Q: Tensor) -> tuple[Tensor, Tensor]:
    """Remove from each row of w (p, n) its components along that probe's basis Q (p, j, n); a second pass only
    where the first cancelled more than 30% of the norm (Daniel, Gragg, Kaufman & Stewart 1976).
    Returns the new w and its row norms."""
    before = w.norm(dim=1)
    w = _project_out(w, Q)
    norm = w.norm(dim=1)
    again = norm < 0.7 * before
    if again.any():
        w = torch.where(again[:, None], _project_out(w, Q), w)
        norm = w.norm(dim=1)
    return w, norm


def _tridiagonal(alphas: Tensor, betas: Tensor) -> Tensor:
    """T (…, m, m) in float64 from alphas (…, m) and betas (…, m−1)."""
    alphas, betas = alphas.double(), betas.double()
    return torch.diag_embed(alphas) + torch.diag_embed(betas, 1) + torch.diag_embed(betas, -1)


def lanczos(A, num_steps: int, v0: Tensor | None = None, generator: torch.Generator | None = None) -> LanczosResult:
    """Run ``num_steps`` Lanczos steps on the symmetric operator A.

    Args:
        A: a ``CurvatureOperator`` or a dense symmetric (n, n) tensor.
        num_steps: m, 1 <= m <= n.
        v0: starting vector (n,) — or p starting vectors (n, p), run side by side — default one random unit vector.
        generator: for the random start (and the restart after a breakdown).
    Returns: ``LanczosResult(alphas, betas, basis)`` with T_m = Q_mᵀ A Q_m = tridiag(betas, alphas, betas).
    Cost: m products; O(m² n) for full reorthogonalisation; O(m n) memory for the basis.
    """
    A = as_operator(A)
    n = A.shape[0]
    check_count("num_steps", num_steps, 1, n, hint="Lanczos cannot take more steps than the dimension n.")
    if v0 is None:
        start = _random_start(n, 1, A.dtype, A.device, generator)
    else:
        start = check_like("v0", v0, n, A.dtype, A.device).reshape(n, -1)
        norms = start.norm(dim=0)
        if (norms == 0).any():
            raise ValueError("v0 has a zero column; Lanczos needs a non-zero starting vector.")
        start = start / norms
    alphas, betas, basis, _ = _lanczos(A, start, num_steps, generator)
    if v0 is None or v0.ndim == 1:
        return LanczosResult(alphas[:, 0], betas[:, 0], basis[0].T)
    return LanczosResult(alphas.T, betas.T, basis.transpose(1, 2))


def top_eigen(A, k: int = 1, tol: float = 1e-6, max_steps: int | None = None, which: str = "LA",
              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """The k largest eigenvalues of A (descending) and their unit eigenvectors, by Lanczos.

    Converged when every wanted Ritz value θ_i has the error bound min(r_i, r_i² / gap_i) <= tol·|θ_i|, where
    r_i = β_m |s_mi| is its residual ‖A y_i − θ_i y_i‖ and gap_i the distance to the other Ritz values
    (Kahan-Parlett-Jiang; the gap is estimated from the Ritz values, so an eigenvalue not yet seen can hide).

    Args:
        A: a ``CurvatureOperator`` or a dense symmetric tensor. k: 1 <= k <= n.
        tol: relative accuracy of the eigenvalues. max_steps: Lanczos steps at most (default min(n, max(300, 4k))).
        which: ``"LA"`` largest algebraic (default) or ``"LM"`` largest in magnitude.
        generator: for the random start.
    Returns: eigenvalues (k,) descending (by value, or by magnitude for "LM"), eigenvectors (n, k).
    A run that does not converge within max_steps warns and returns its best estimates.
    Note: one Krylov space holds one copy of each eigenvalue; an exactly repeated eigenvalue is found again only
    after a breakdown and restart, so for multiplicities prefer ``lanczos(A, n)`` on tiny problems.
    Cost: one product per step, typically a few tens of steps.
    """
    A = as_operator(A)
    n = A.shape[0]
    check_count("k", k, 1, n, hint="there are only n eigenvalues.")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}.")
    if which not in ("LA", "LM"):
        raise ValueError(f"which must be 'LA' (largest algebraic) or 'LM' (largest magnitude), got {which!r}.")
    max_steps = min(n, max(300, 4 * k)) if max_steps is None else check_count("max_steps", max_steps, k, n)

    def wanted(theta: Tensor) -> Tensor:
        order = theta.abs() if which == "LM" else theta
        return torch.argsort(order, descending=True)[:k]

    def converged(alphas: Tensor, betas: Tensor, beta: Tensor) -> bool:
        if alphas.shape[0] < k:
            return False
        theta, S = torch.linalg.eigh(_tridiagonal(alphas[:, 0], betas[:, 0]))
        idx = wanted(theta)
        residual = beta[0].double().abs() * S[-1, idx].abs()
        if theta.numel() == 1:  # no other Ritz value: the gap is unknown, only the residual bounds the error
            bound = residual
        else:
            others = (theta[idx, None] - theta[None, :]).abs()
            others[torch.arange(k), idx] = math.inf
            bound = torch.minimum(residual, residual**2 / others.min(dim=1).values)
        return bool((bound <= tol * theta[idx].abs().clamp_min(torch.finfo(A.dtype).tiny)).all())

    start = _random_start(n, 1, A.dtype, A.device, generator)
    alphas, betas, basis, beta = _lanczos(A, start, max_steps, generator, stop=converged)
    if alphas.shape[0] == max_steps and max_steps < n and not converged(alphas, betas, beta):
        warnings.warn(f"top_eigen did not reach tol={tol} within max_steps={max_steps}; the estimates may be "
                      "inaccurate — raise max_steps or tol.", RuntimeWarning, stacklevel=2)
    theta, S = torch.linalg.eigh(_tridiagonal(alphas[:, 0], betas[:, 0]))
    idx = wanted(theta)
    vectors = basis[0].T @ S[:, idx].to(A.dtype)
    return theta[idx].to(A.dtype), vectors / vectors.norm(dim=0)


@dataclass(frozen=True)
class SpectralDensity:
    """A spectral density as Gauss quadrature: ``nodes`` (p, m) and ``weights`` (p, m) from p probes of m steps.

    All weights together sum to 1: the density is the mean over probes of Σ_i w_i δ(λ − θ_i), an estimate of the
    eigenvalue distribution (1/n) Σ_j δ(λ − λ_j).
    """

    nodes: Tensor
    weights: Tensor

    def density(self, grid: Tensor, sigma: float) -> Tensor:
        """The density smoothed by a Gaussian of width ``sigma``: Σ w_i N(t; θ_i, σ²) at each grid point t."""
        if not (isinstance(sigma, (int, float)) and sigma > 0):
            raise ValueError(f"sigma must be a positive number, got {sigma!r}.")
        grid = torch.as_tensor(grid, dtype=torch.float64)
        nodes, weights = self.nodes.double().reshape(-1).cpu(), self.weights.double().reshape(-1).cpu()
        z = (grid[..., None] - nodes) / sigma
        return (weights * torch.exp(-0.5 * z**2)).sum(-1) / (sigma * math.sqrt(2 * math.pi))

    def moment(self, power: int) -> float:
        """Σ w_i θ_i^power, an estimate of tr(A^power)/n — exact per probe for power <= 2m − 1."""
        return float((self.weights.double() * self.nodes.double() ** power).sum())


def spectral_density(A, num_steps: int, num_probes: int = 1,
                     generator: torch.Generator | None = None) -> SpectralDensity:
    """Stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017): the eigenvalue density of A.

    For each of ``num_probes`` random unit probes v (Rademacher/√n), m Lanczos steps give T_m = S Θ Sᵀ; the probe
    contributes nodes θ_i with weights S_1i² / num_probes. Then Σ w_i θ_i^k is Hutchinson's estimate of tr(A^k)/n,
    exact for the probes used whenever k <= 2m − 1.

    Args:
        A: a ``CurvatureOperator`` or dense symmetric tensor. num_steps: m, 1 <= m <= n. num_probes: >= 1.
        generator: for the probes.
    Returns: ``SpectralDensity(nodes (p, m), weights (p, m))``; ``.density(grid, sigma)`` for plotting.
    Cost: m batched products over the p probes, O(m² n p) for reorthogonalisation, O(m n p) memory.
    """
    A = as_operator(A)
    n = A.shape[0]
    check_count("num_steps", num_steps, 1, n, hint="Lanczos cannot take more steps than the dimension n.")
    check_count("num_probes", num_probes, 1)
    alphas, betas, _, _ = _lanczos(A, _random_start(n, num_probes, A.dtype, A.device, generator), num_steps, generator)
    nodes, S = torch.linalg.eigh(_tridiagonal(alphas.T, betas.T))  # (p, m), (p, m, m)
    return SpectralDensity(nodes=nodes, weights=S[:, 0, :] ** 2 / num_probes)
