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

Starts and restarts are Gaussian: a ±1 vector can be exactly orthogonal to a structured eigenvector ((1, −1) of
[[2, 1], [1, 2]], the 1⊥ eigenspace of I + 11ᵀ) and then never sees it; SLQ alone keeps Rademacher probes, because
they define its estimator. One Krylov space holds one copy of each eigenvalue, so ``top_eigen`` locks converged Ritz
pairs and restarts orthogonally to them until no missing copy is left (Saad, *Numerical Methods for Large Eigenvalue
Problems*, 2011, ch. 4 and 6).

One idea per module: ``_krylov`` (the recurrence, restarts, ``lanczos``), ``_eigen`` (``top_eigen``), ``_density``
(``spectral_density``).
"""

from ._density import SpectralDensity, spectral_density
from ._eigen import EigenResult, top_eigen
from ._krylov import LanczosResult, lanczos

__all__ = ["LanczosResult", "lanczos", "EigenResult", "top_eigen", "SpectralDensity", "spectral_density"]
