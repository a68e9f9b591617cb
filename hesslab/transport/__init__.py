"""Entropic optimal transport: log-domain Sinkhorn and Sinkhorn-Newton-Sparse (Tang et al., ICLR 2024).

The problem, in POT's convention, for marginals a (n,), b (m,) of equal mass and a cost matrix C (n, m):

    minimise  ⟨C, P⟩ − reg·H(P)   over P >= 0 with P1 = a, Pᵀ1 = b,      H(P) = −Σ_ij P_ij (log P_ij − 1).

Its dual is the concave Lyapunov potential of Tang, Shavlovsky, Rahmanian, Tardini, Thekumparampil, Xiao & Ying,
"Accelerating Sinkhorn algorithm with sparse Newton iterations" (ICLR 2024), in their notation with η = 1/reg:

    L(f, g) = ⟨f, a⟩ + ⟨g, b⟩ − reg Σ_ij P_ij,        P_ij = exp((f_i + g_j − C_ij) / reg),
    ∇L = (a − P1, b − Pᵀ1),        ∇²L = −(1/reg) [[diag(P1), P], [Pᵀ, diag(Pᵀ1)]].

The gradient is the marginal residual, so the error of every method here is one number, the marginal error
‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁ = ‖∇L‖₁. The Hessian is negative semidefinite with null vector (1, −1): adding c to f and
subtracting it from g changes nothing.

* Sinkhorn (Cuturi 2013) is exact block-coordinate ascent on L: f = reg·log a − reg·log Σ_j exp((g_j − C_ij)/reg),
  then g likewise. It converges linearly, and the rate degrades as reg shrinks.
* Sinkhorn-Newton-Sparse (SNS) warms up with a few Sinkhorn steps, then takes Newton steps on L. Near the optimum
  P is approximately sparse — most of its mass sits on a few entries per row — so the Hessian is replaced by one
  that keeps only the largest entries of P (and the exact diagonal), the Newton system is solved by conjugate
  gradient, and a backtracking line search on L keeps every step an ascent step.

Internally the potentials are kept in units of reg, α = f/reg and β = g/reg, so that P_ij = exp(α_i + β_j − C_ij/reg)
and the Newton system needs no factor of reg.
"""

from ._dual import dual_hessian, lyapunov, sparsify
from ._problem import DENSE_FRACTION, SinkhornResult
from ._sinkhorn import sinkhorn
from ._sns import sinkhorn_newton_sparse

__all__ = ["sinkhorn", "sinkhorn_newton_sparse", "SinkhornResult", "lyapunov", "dual_hessian", "sparsify",
           "DENSE_FRACTION"]
