"""The Lanczos recurrence with full reorthogonalisation, its restarts after a breakdown, and ``lanczos``.

Lanczos (1950) builds an orthonormal basis Q_m = [q_1 … q_m] of the Krylov space span{q_1, A q_1, …, A^{m−1} q_1} in
which A is tridiagonal, T_m = Q_mᵀ A Q_m (diagonal α, off-diagonal β):

    β_j q_{j+1} = A q_j − α_j q_j − β_{j−1} q_{j−1},      α_j = q_jᵀ A q_j.

In floating point the q_j lose orthogonality, so every new vector is re-orthogonalised against all previous ones
(full reorthogonalisation, repeated once when much cancellation happened — "twice is enough", Parlett 1980).
A breakdown (β_j at rounding level) continues from a fresh Gaussian direction orthogonal to the basis.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor

from .._checks import check_count, check_like
from .._dense import available_memory
from ..operators import as_operator
from ..sampling import gaussian

MAX_REDRAWS = 10  # fresh directions tried after a breakdown before the Krylov space is declared exhausted
RESIDUAL_FLOOR = 1  # a residual below this many units of the operator's eps·‖T‖ is rounding: converged


class LanczosResult(NamedTuple):
    """``alphas`` (m,), ``betas`` (m−1,) of the tridiagonal T_m and the orthonormal ``basis`` Q_m (n, m).

    With a block of p starting vectors: alphas (p, m), betas (p, m−1), basis (p, n, m).
    A zero beta marks a breakdown (an invariant subspace was found) followed by a restart from a fresh Gaussian
    direction orthogonal to the basis. m is smaller than the steps asked for only when the Krylov space is
    exhausted (no direction orthogonal to the basis is left). Half-precision operators give float32 results.

    Example:
        >>> import torch, hesslab as hl
        >>> A = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))
        >>> result = hl.lanczos(A, 4, generator=torch.Generator().manual_seed(0))
        >>> tuple(result.alphas.shape), tuple(result.betas.shape), tuple(result.basis.shape)
        ((4,), (3,), (4, 4))
        >>> T = torch.diag(result.alphas) + torch.diag(result.betas, 1) + torch.diag(result.betas, -1)
        >>> torch.linalg.eigvalsh(T).round(decimals=8).tolist()  # m = n steps: T_m has A's eigenvalues
        [1.0, 2.0, 3.0, 4.0]
    """

    alphas: Tensor
    betas: Tensor
    basis: Tensor


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the recurrence: the operator's, but at least float32.

    A bfloat16 inner product has 3 digits, too few to orthogonalise against; the products A q stay in the
    operator's dtype.
    """
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _random_start(n: int, p: int, dtype, device, generator) -> Tensor:
    """p random unit vectors (Gaussian, normalised) as the columns of an (n, p) tensor."""
    start = gaussian(n, p, dtype, device, generator)
    return start / start.norm(dim=0)


def _apply(A, rows: Tensor) -> Tensor:
    """A q for each row q of ``rows`` (p, n): the product in A's dtype, checked finite, returned in rows' dtype."""
    product = (A @ rows.T.to(A.dtype)).T
    return product.to(rows.dtype)  # checked finite by the operator (CurvatureOperator.__matmul__)


def _lanczos(A, start: Tensor, max_steps: int, generator=None,
             stop: Callable[[Tensor, Tensor, Tensor], bool] | None = None, locked: Tensor | None = None):
    """Lanczos with full reorthogonalisation on p independent start vectors at once.

    The start vectors are the columns of ``start``, unit norm, in the work dtype.

    ``locked`` (l, n), orthonormal rows: every basis vector is also kept orthogonal to them, so the run is Lanczos
    on the deflated operator (I − VVᵀ) A (I − VVᵀ) restricted to span(V)⊥ (``top_eigen``'s restarts).
    ``stop(alphas (j, p), betas (j−1, p), beta_j (p,))`` is asked after each step j and may end the run early.
    A breakdown (β_j at rounding level: an invariant subspace) continues from a fresh Gaussian direction
    orthogonalised twice against the basis, redrawn up to ``MAX_REDRAWS`` times; when none leaves anything the
    Krylov space is exhausted and the run ends there (a shorter result, never NaN).
    Returns alphas (m, p), betas (m−1, p), the basis (p, m, n) (probe, step, coordinate) and the last residual
    norm β_m (p,). Cost: m batched products, O(m² n p) for the reorthogonalisation, O(m n p) memory.
    """
    n, p = start.shape
    dtype, device = start.dtype, start.device
    l = 0 if locked is None else locked.shape[0]
    basis = torch.empty((p, l + max_steps, n), dtype=dtype, device=device)  # only written rows are ever read
    alphas = torch.zeros((max_steps, p), dtype=dtype, device=device)
    betas = torch.zeros((max_steps, p), dtype=dtype, device=device)
    if l:
        basis[:, :l] = locked
        start, _, _ = _orthogonalise(start.T, basis[:, :l], twice=True)
        start = (start / start.norm(dim=1, keepdim=True)).T
    basis[:, l] = start.T
    eps, tiny = torch.finfo(dtype).eps, torch.finfo(dtype).tiny
    scale = torch.zeros(p, dtype=dtype, device=device)  # running max of |α|, β: the size of T
    for j in range(max_steps):
        q = basis[:, l + j]  # (p, n): one row per probe
        w = _apply(A, q)
        alphas[j] = torch.linalg.vecdot(q, w)
        w = torch.addcmul(w, alphas[j, :, None], q, value=-1)  # the three-term recurrence w − α q − β q_prev ...
        if j > 0:
            w.addcmul_(betas[j - 1, :, None], basis[:, l + j - 1], value=-1)
        w, beta, clean = _orthogonalise(w, basis[:, : l + j + 1])  # ... and what rounding left along the others
        if j + 1 == max_steps or (stop is not None and stop(alphas[: j + 1], betas[:j], beta)):
            return alphas[: j + 1], betas[:j], basis[:, l: l + j + 1], beta
        scale = torch.maximum(scale, torch.maximum(alphas[j].abs(), beta))
        breakdown = (beta <= 100 * eps * scale.clamp_min(tiny)) | ~clean
        if breakdown.any():  # invariant subspace: continue from a fresh direction orthogonal to the basis
            fresh, found = _fresh_direction(basis[:, : l + j + 1], generator)
            if not found[breakdown].all():  # nothing is left orthogonal to the basis: the Krylov space is exhausted
                beta = torch.where(breakdown, torch.zeros_like(beta), beta)
                return alphas[: j + 1], betas[:j], basis[:, l: l + j + 1], beta
            beta = torch.where(breakdown, torch.zeros_like(beta), beta)
            basis[:, l + j + 1] = torch.where(breakdown[:, None], fresh, w / beta.clamp_min(tiny)[:, None])
        else:
            basis[:, l + j + 1] = w / beta[:, None]
        betas[j] = beta
    raise AssertionError("unreachable: the loop returns at its last step (max_steps >= 1)")


def _fresh_direction(Q: Tensor, generator) -> tuple[Tensor, Tensor]:
    """A unit vector orthogonal to each probe's basis Q (p, j, n), from Gaussian draws orthogonalised twice.

    A draw is kept when the second pass removed less than 30% of what the first left (then the first left a
    real direction, not rounding); at most ``MAX_REDRAWS`` draws. Returns (p, n) and found (p,) bool.
    """
    p, _, n = Q.shape
    fresh = torch.zeros((p, n), dtype=Q.dtype, device=Q.device)
    found = torch.zeros(p, dtype=torch.bool, device=Q.device)
    for _ in range(MAX_REDRAWS):
        draw = gaussian(n, p, Q.dtype, Q.device, generator).T
        first = _project_out(draw, Q)
        second = _project_out(first, Q)
        norm = second.norm(dim=1)
        good = (norm >= 0.7 * first.norm(dim=1)) & (norm > 0) & ~found
        fresh = torch.where(good[:, None], second / norm.clamp_min(torch.finfo(Q.dtype).tiny)[:, None], fresh)
        found = found | good
        if found.all():
            break
    return fresh, found


def _project_out(w: Tensor, Q: Tensor) -> Tensor:
    """w − Q Qᵀ w per probe: w (p, n), Q (p, j, n) with orthonormal rows (classical Gram-Schmidt, fused)."""
    coefficients = torch.bmm(Q, w.unsqueeze(-1))  # (p, j, 1)
    return torch.baddbmm(w.unsqueeze(-1), Q.transpose(1, 2), coefficients, alpha=-1).squeeze(-1)


def _orthogonalise(w: Tensor, Q: Tensor, twice: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Remove from each row of w (p, n) its components along that probe's basis Q (p, j, n).

    A second pass runs where the first cancelled more than 30% of the norm (Daniel, Gragg, Kaufman & Stewart 1976),
    or always if ``twice``.

    Returns the new w, its row norms, and ``clean`` (p,): False where the second pass again cancelled more than
    30% — then what the first pass left was rounding error, not a new direction (treat it as a breakdown).
    """
    before = w.norm(dim=1)
    w = _project_out(w, Q)
    norm = w.norm(dim=1)
    clean = torch.ones_like(norm, dtype=torch.bool)
    again = torch.ones_like(clean) if twice else norm < 0.7 * before
    if again.any():
        second = _project_out(w, Q)
        second_norm = second.norm(dim=1)
        clean = ~again | (second_norm >= 0.7 * norm)
        w = torch.where(again[:, None], second, w)
        norm = torch.where(again, second_norm, norm)
    return w, norm, clean


def _tridiagonal(alphas: Tensor, betas: Tensor) -> Tensor:
    """T (…, m, m) in float64 from alphas (…, m) and betas (…, m−1)."""
    alphas, betas = alphas.double(), betas.double()
    return torch.diag_embed(alphas) + torch.diag_embed(betas, 1) + torch.diag_embed(betas, -1)


def _check_basis_fits(n: int, steps: int, probes: int, dtype: torch.dtype, device: torch.device, what: str) -> int:
    """How many probes' Lanczos bases (steps × n each) fit at once in half the available memory.

    A ValueError when not even one does.
    """
    one = n * steps * torch.empty((), dtype=dtype).element_size()
    budget = available_memory(device) // 2
    if one > budget:
        raise ValueError(f"{what}: {steps} Lanczos steps on n = {n} need a basis of {one / 2**30:.2f} GiB but only "
                         f"{budget / 2**30:.2f} GiB (half of what is available on {device}) may be used; take fewer "
                         "steps.")
    return max(1, min(probes, budget // one))


def lanczos(A, num_steps: int, v0: Tensor | None = None, generator: torch.Generator | None = None) -> LanczosResult:
    """Run ``num_steps`` Lanczos steps on the symmetric operator A.

    Cost: m products; O(m² n) for full reorthogonalisation; O(m n) memory for the basis.

    Args:
        A: a ``CurvatureOperator`` or a dense symmetric (n, n) tensor.
        num_steps: m, 1 <= m <= n.
        v0: starting vector (n,) — or p starting vectors (n, p), run side by side — default one random unit vector
            (Gaussian: a ±1 vector can be orthogonal to a structured eigenvector and never see it).
        generator: for the random start (and the fresh Gaussian direction after a breakdown).

    Returns:
        ``LanczosResult(alphas, betas, basis)`` with T_m = Q_mᵀ A Q_m = tridiag(betas, alphas, betas) and
        Q_mᵀ Q_m = I to rounding; fewer than m steps only if the Krylov space is exhausted first. The recurrence
        runs in float32 for bfloat16/float16 operators (their products stay in that dtype), so the result is
        float32 there.

    Raises:
        ValueError: if a product is not finite (∇²f is not finite at the point).

    Example:
        After n steps the Krylov space is all of R^n, and T_n has exactly A's eigenvalues:

        >>> import torch, hesslab as hl
        >>> A = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
        >>> alphas, betas, Q = hl.lanczos(A, 3, generator=torch.Generator().manual_seed(0))
        >>> T = torch.diag(alphas) + torch.diag(betas, 1) + torch.diag(betas, -1)
        >>> [round(value, 8) for value in torch.linalg.eigvalsh(T).tolist()]
        [1.0, 2.0, 3.0]
        >>> bool(torch.allclose(Q.T @ A @ Q, T)), bool(torch.allclose(Q.T @ Q, torch.eye(3, dtype=torch.float64)))
        (True, True)
    """
    A = as_operator(A)
    n = A.shape[0]
    check_count("num_steps", num_steps, 1, n, hint="Lanczos cannot take more steps than the dimension n.")
    work = _work_dtype(A.dtype)
    _check_basis_fits(n, num_steps, 1, work, A.device, "lanczos")
    if v0 is None:
        start = _random_start(n, 1, work, A.device, generator)
    else:
        start = check_like("v0", v0, n, A.dtype, A.device).reshape(n, -1).to(work)
        norms = start.norm(dim=0)
        if (norms == 0).any():
            raise ValueError("v0 has a zero column; Lanczos needs a non-zero starting vector.")
        start = start / norms
    _check_basis_fits(n, num_steps * start.shape[1], 1, work, A.device, "lanczos")
    alphas, betas, basis, _ = _lanczos(A, start, num_steps, generator)
    if v0 is None or v0.ndim == 1:
        return LanczosResult(alphas[:, 0], betas[:, 0], basis[0].T)
    return LanczosResult(alphas.T, betas.T, basis.transpose(1, 2))
