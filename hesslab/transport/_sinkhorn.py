"""Log-domain Sinkhorn (Cuturi 2013): exact block-coordinate ascent on the dual."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._dual import _plan
from ._problem import ABSORB, SinkhornResult, _finish, _Log, _prepare, _Problem


# ----------------------------------------------------------------------------------------------------------------------
# Sinkhorn
# ----------------------------------------------------------------------------------------------------------------------
def _representable(sums: Tensor) -> bool:
    """Whether every row/column sum is a normal positive float (no underflow to 0 or below, no overflow)."""
    return bool(((sums >= torch.finfo(sums.dtype).tiny) & (sums < math.inf)).all())


def _sinkhorn_iterations(problem: _Problem, alpha: Tensor, beta: Tensor, plan: Tensor, log: _Log, tol: float,
                         max_iter: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sinkhorn iterations from the potentials (α, β), with ``plan`` the plan there (overwritten).

    They run until the marginal error is at most ``tol`` or ``max_iter`` iterations are logged; returns the new
    potentials and the plan there, diag(u) K diag(v) (no further pass of exp). An empty log first gets the error of
    the starting point.

    In the log domain an iteration is α ← log a − log Σ_j exp(β_j − C_ij/reg), then β likewise. It runs here in the
    stabilised scaling form (Schmitzer 2019, "Stabilized sparse scaling algorithms for entropy regularized transport
    problems"): with the kernel K = exp(α_i + β_j − C_ij/reg) frozen at the current potentials, the same iteration
    is u ← a / (K v), v ← b / (Kᵀ u), with potentials α + log u, β + log v — two matrix-vector products instead
    of two passes of exp over the n × m matrix. Once a scaling leaves [1/ABSORB, ABSORB] it is absorbed into the
    potentials and K rebuilt, so nothing overflows; should a row or column sum still under- or overflow (the first
    steps at a tiny reg), that half-step is taken exactly, by a max-shifted logsumexp. After a v-update the columns
    match b (up to rounding), so the logged error is that of the rows, u ⊙ (K v) − a, whose K v the next
    u-update needs anyway.
    """
    a, b, neg_k = problem.a, problem.b, problem.neg_k
    kernel, u, v = plan, torch.ones_like(a), torch.ones_like(b)
    rows = kernel @ v
    if not log.history:
        log.record((rows - a).abs().sum())
    while log.history[-1] > tol and log.iterations < max_iter:
        if _representable(rows):
            u = a / rows
        else:  # exact log-domain row update, then a fresh kernel
            beta = beta + v.log()
            alpha = a.log() - torch.logsumexp(beta[None, :] + neg_k, dim=1)
            kernel, u, v = _plan(alpha, beta, neg_k), torch.ones_like(a), torch.ones_like(b)
        columns = kernel.T @ u
        if _representable(columns):
            v = b / columns
        else:  # exact log-domain column update, then a fresh kernel
            alpha = alpha + u.log()
            beta = b.log() - torch.logsumexp(alpha[:, None] + neg_k, dim=0)
            kernel, u, v = _plan(alpha, beta, neg_k), torch.ones_like(a), torch.ones_like(b)
        smallest, largest = torch.cat([u, v]).aminmax()
        if largest.item() > ABSORB or smallest.item() < 1 / ABSORB:
            alpha, beta = alpha + u.log(), beta + v.log()
            kernel, u, v = _plan(alpha, beta, neg_k), torch.ones_like(a), torch.ones_like(b)
        rows = kernel @ v
        log.record((u * rows - a).abs().sum())
    return alpha + u.log(), beta + v.log(), kernel.mul_(u[:, None]).mul_(v[None, :])


def _start(problem: _Problem) -> tuple[Tensor, Tensor, Tensor]:
    """Iteration 0: α = 0 and β = log b − log Σ_i exp(−C_ij/reg), so that the columns match b.

    Returns α, β and the plan there. Each column's largest exponent m_j = max_i(−C_ij/reg) is factored out, so nothing
    underflows: K_ij = exp(−C_ij/reg − m_j) has a 1 in every column, β = log b − m − log(Kᵀ1), and the plan is
    K diag(b / Kᵀ1). Cost: one pass of exp over the n × m matrix.
    """
    a, b, neg_k = problem.a, problem.b, problem.neg_k
    shift = neg_k.amax(dim=0)
    kernel = (neg_k - shift).exp_()
    col_sums = kernel.T @ torch.ones_like(a)
    return torch.zeros_like(a), b.log() - shift - col_sums.log(), kernel.mul_((b / col_sums)[None, :])


def sinkhorn(a, b, C, reg: float, tol: float = 1e-9, max_iter: int = 10_000,
             progress: bool = False) -> SinkhornResult:
    """Entropic optimal transport by Sinkhorn's algorithm in the log domain (stable at small ``reg``).

    Solves min_P ⟨C, P⟩ − reg·H(P) s.t. P1 = a, Pᵀ1 = b (POT's convention) by alternating the exact maximisations
    of the dual L over f and g:
        f_i = reg·log a_i − reg·log Σ_j exp((g_j − C_ij)/reg),    g_j = reg·log b_j − reg·log Σ_i exp((f_i − C_ij)/reg).
    The potentials are kept in the log domain; the iterations run as matrix-vector products with the kernel
    exp((f_i + g_j − C_ij)/reg) frozen at the last absorption (Schmitzer's stabilised scaling), so no number
    over- or underflows at any reg, and an exact logsumexp half-step is taken where a sum would.

    Args:
        a: source marginal (n,), non-negative.
        b: target marginal (m,), non-negative, with the same total mass as ``a``.
        C: cost matrix (n, m), finite. Torch tensors or numpy arrays; results come back as C's kind, on C's device.
            float32 C is computed in float32, anything else in float64.
        reg: the entropic regularisation, > 0. Iterations grow roughly like 1/reg.
        tol: stop when ‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁ <= tol.
        max_iter: iterations at most; if ``tol`` is not reached the result says ``converged=False`` and a
            RuntimeWarning is issued.
        progress: show a tqdm progress bar.

    Returns:
        ``SinkhornResult(plan, f, g, cost, converged, reason, iterations, history)``.
    Cost: two matrix-vector products with the n × m kernel per iteration, and an exp pass over it at each absorption
    (rare near convergence); O(nm) memory.
    Reference: Cuturi, "Sinkhorn distances", NeurIPS 2013; the log-domain form as in Peyré & Cuturi, "Computational
    Optimal Transport" (2019), §4.4; the stabilisation from B. Schmitzer, SIAM J. Sci. Comput. 41(3), 2019.

    Example:
        Two points on each side, cost 1 to cross: by symmetry P = [[p, ½ − p], [½ − p, p]], and P_ij ∝ exp(−C_ij/reg)
        makes (½ − p)/p = e^(−1/reg) = 1/3 at reg = 1/log 3, so p = 3/8 and the cost is 2 · 1/8:

        >>> import math, torch, hesslab as hl
        >>> a = b = torch.tensor([0.5, 0.5], dtype=torch.float64)
        >>> C = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
        >>> result = hl.transport.sinkhorn(a, b, C, reg=1 / math.log(3))
        >>> [[round(x, 9) for x in row] for row in result.plan.tolist()], round(result.cost, 9), result.converged
        ([[0.375, 0.125], [0.125, 0.375]], 0.25, True)
    """
    problem = _prepare(a, b, C, reg, tol, max_iter)
    tol = problem.tol
    log = _Log(max_iter, progress, "sinkhorn")
    alpha, beta, plan = _sinkhorn_iterations(problem, *_start(problem), log, tol, max_iter)
    return _finish(problem, alpha, beta, plan, log, tol, "sinkhorn")
