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
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ._checks import check_choice, check_count, check_like, check_positive
from ._results import history as make_history
from .exact import available_memory
from .operators import as_operator
from .sampling import gaussian, rademacher

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


@dataclass(frozen=True)
class EigenResult:
    """Eigenpairs from ``top_eigen``, with their true residuals and the history of the Lanczos runs.

    ``values`` (k,), unit ``vectors`` (n, k), true ``residuals`` (k,) ‖A v_i − λ_i v_i‖, ``converged``, ``reason``
    (why it stopped), ``restarts`` (deflated Lanczos runs after the first) and ``num_matvecs`` (products with A, the
    k of the residual check included).

    ``iterations`` counts the Lanczos steps of all runs (one product each: ``num_matvecs − k``), and ``history``
    (DESIGN.md, "Results") holds float arrays (``iterations`` + 1,), entry j after j steps: ``error`` the largest
    relative residual max_i β|s_i|/|θ_i| of the wanted Ritz pairs of the current run (inf at entry 0 and while a
    run has fewer Ritz values than it needs), ``matvecs`` the products so far and ``seconds`` since the start.

    Unpacks as before: ``values, vectors = hl.top_eigen(A, k)``, and ``result[0]`` is ``values``.

    Example:
        >>> import torch, hesslab as hl
        >>> result = hl.top_eigen(torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)), k=2)
        >>> result.values.round(decimals=8).tolist(), result.converged
        ([4.0, 3.0], True)
        >>> result.num_matvecs == result.iterations + 2, len(result.history["error"]) == result.iterations + 1
        (True, True)
        >>> values, vectors = result
        >>> tuple(vectors.shape)
        (4, 2)
    """

    values: Tensor
    vectors: Tensor
    residuals: Tensor
    converged: bool
    reason: str
    restarts: int
    num_matvecs: int
    iterations: int
    history: dict[str, np.ndarray]

    def __iter__(self):
        return iter((self.values, self.vectors))

    def __getitem__(self, index):
        return (self.values, self.vectors)[index]

    def __len__(self) -> int:
        return 2


WHICH = {"LA": "largest algebraic", "SA": "smallest algebraic (most negative: negative curvature)",
         "LM": "largest magnitude"}


def _sort_key(theta: Tensor, which: str) -> Tensor:
    """Larger key = more wanted: θ for "LA", −θ for "SA", |θ| for "LM"."""
    return {"LA": theta, "SA": -theta, "LM": theta.abs()}[which]


def top_eigen(A, k: int = 1, tol: float = 1e-6, max_steps: int | None = None, which: str = "LA",
              generator: torch.Generator | None = None, v0: Tensor | None = None) -> EigenResult:
    """The k extreme eigenvalues of A and their unit eigenvectors, by Lanczos with locking and restarts.

    A Ritz pair (θ, y = Q s) of T_m is converged when its residual, r = ‖A y − θ y‖ = β_m |s_m|, satisfies

        r <= tol·|θ| + eps·‖T_m‖        (eps of A's dtype: below that a residual is rounding),

    which guarantees an eigenvalue of A within r of θ. One Krylov space holds one copy of each eigenvalue, so a
    repeated one is found by locking: converged pairs are kept, and Lanczos restarts from a fresh Gaussian vector
    orthogonal to them (on the deflated operator); a restart whose most wanted converged Ritz value is no better
    than the k-th kept one proves nothing is missing. At most k restarts (none for k = 1), so every eigenvalue of
    multiplicity <= k comes back as often as it occurs.

    Cost: one product per step, typically a few tens of steps per run; for k >= 2 one more run (the check that no
    copy is missing) plus one per missing copy; k products for the residuals. O(max_steps · n) memory.

    Args:
        A: a ``CurvatureOperator`` or a dense symmetric tensor.
        k: how many eigenpairs, 1 <= k <= n.
        tol: relative residual (hence eigenvalue) accuracy.
        max_steps: Lanczos steps per run (default min(n, max(300, 4k))).
        which: ``"LA"`` largest algebraic (default), ``"SA"`` smallest algebraic (the most negative: directions of
            negative curvature) or ``"LM"`` largest in magnitude.
        generator: for the random starts.
        v0: (n,) start of the first Lanczos run (default a random Gaussian one); a warm start — e.g. the top
            eigenvector of a nearby matrix (``hesslab.training``) — converges in fewer products. Restarts stay
            random.

    Returns:
        ``EigenResult(values (k,), vectors (n, k), residuals (k,), converged, reason, restarts, num_matvecs,
        iterations, history)``,
        values ordered most wanted first (descending for "LA", ascending for "SA", by magnitude for "LM"), in A's
        dtype; ``values, vectors = top_eigen(...)`` still works. A run that does not converge warns and returns its
        best estimates. Half-precision operators: the recurrence runs in float32, the products in A's dtype.

    Raises:
        ValueError: if a product is not finite (∇²f is not finite at the point).

    Cost: one product per step, typically a few tens of steps per run; for k >= 2 one more run (the check that no
    copy is missing) plus one per missing copy; k products for the residuals. O(max_steps · n) memory.

    Example:
        [[2, 1], [1, 2]] has the eigenvalues 3 (along (1, 1)/√2) and 1 (along (1, −1)/√2):

        >>> import torch, hesslab as hl
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
        >>> values, vectors = hl.top_eigen(A, generator=torch.Generator().manual_seed(0))
        >>> round(values.item(), 8), [round(abs(entry), 8) for entry in vectors[:, 0].tolist()]
        (3.0, [0.70710678, 0.70710678])
        >>> result = hl.top_eigen(A, k=2, which="SA", generator=torch.Generator().manual_seed(0))
        >>> [round(value, 8) for value in result.values.tolist()], result.converged
        ([1.0, 3.0], True)
    """
    A = as_operator(A)
    n = A.shape[0]
    check_count("k", k, 1, n, hint="there are only n eigenvalues.")
    tol = check_positive("tol", tol)
    check_choice("which", which, WHICH, hint="LA: largest algebraic, SA: smallest algebraic, LM: largest magnitude.")
    max_steps = min(n, max(300, 4 * k)) if max_steps is None else check_count("max_steps", max_steps, k, n)
    work = _work_dtype(A.dtype)
    _check_basis_fits(n, max_steps, 1, work, A.device, "top_eigen")
    if v0 is not None:
        v0 = check_like("v0", v0, n, A.dtype, A.device)
        if v0.ndim != 1 or not bool(v0.any()):
            raise ValueError(f"v0 must be one non-zero vector of shape ({n},), got shape {tuple(v0.shape)}"
                             f"{'' if v0.ndim != 1 else ' of zeros'}; pass a non-zero start or v0=None.")
    floor = RESIDUAL_FLOOR * torch.finfo(A.dtype).eps

    locked_values = torch.zeros(0, dtype=torch.float64)
    locked_vectors = torch.zeros((0, n), dtype=work, device=A.device)
    num_matvecs, reason, converged = 0, "", False
    restarts = 0
    start_time = time.perf_counter()
    steps_log = {"error": [math.inf], "matvecs": [0], "seconds": [0.0]}  # entry 0: no product yet
    for restarts in range(k + 1 if k > 1 else 1):
        threshold = (torch.sort(_sort_key(locked_values, which), descending=True).values[k - 1]
                     if locked_values.numel() >= k else torch.tensor(-math.inf, dtype=torch.float64))
        need = max(k - locked_values.numel(), 0)
        # a value better than the k-th kept by less than its own accuracy is that value again: nothing is missing
        # (rounding of a Ritz value of a deflated run: ~√n·eps·‖A‖, the bound of a product's rounding; 10x spare)
        margin = ((tol * threshold.abs() + 10 * math.sqrt(n) * floor * locked_values.abs().max()) if need == 0
                  else 0.0)

        def wanted(theta: Tensor) -> Tensor:
            """Most wanted first: at least ``need`` (to fill k), every one better than the k-th kept, and one."""
            key = _sort_key(theta, which)
            better = int((key > threshold + margin).sum()) if need == 0 else 0
            count = min(max(need, better, 1), theta.numel())
            return torch.argsort(key, descending=True)[:count]

        def residuals_small(alphas: Tensor, betas: Tensor, beta: Tensor) -> bool:
            """Whether the wanted Ritz pairs after these steps are converged.

            Logs the step in ``steps_log`` and the verdict in ``judged``.
            """
            steps_log["matvecs"].append(num_matvecs + alphas.shape[0])
            steps_log["seconds"].append(time.perf_counter() - start_time)
            if alphas.shape[0] < need:
                steps_log["error"].append(math.inf)
                judged.append((alphas.shape[0], False))
                return False
            theta, S = torch.linalg.eigh(_tridiagonal(alphas[:, 0], betas[:, 0]))
            idx = wanted(theta)
            residual = beta[0].double().abs() * S[-1, idx].abs()
            steps_log["error"].append((residual / theta[idx].abs().clamp_min(floor)).max().item())
            small = bool((residual <= tol * theta[idx].abs() + floor * theta.abs().max()).all())
            judged.append((alphas.shape[0], small))
            return small

        judged: list[tuple[int, bool]] = []  # (steps, converged) of each step residuals_small judged in this run
        room = n - locked_vectors.shape[0]
        steps = min(max_steps, room)
        if restarts == 0 and v0 is not None:
            start = (v0.to(work) / v0.to(work).norm()).reshape(n, 1)
        else:
            start = _random_start(n, 1, work, A.device, generator)
        alphas, betas, basis, beta = _lanczos(A, start, steps, generator, stop=residuals_small,
                                              locked=locked_vectors if locked_vectors.numel() else None)
        exhausted = alphas.shape[0] == room  # the run saw all of span(locked)⊥: its Ritz values are exact
        if judged and judged[-1][0] == alphas.shape[0]:  # the run's last step was judged (and logged)
            run_converged = exhausted or judged[-1][1]
        else:  # the run ended without asking (max_steps or exhaustion): judge and log its last step now
            run_converged = residuals_small(alphas, betas, beta) or exhausted
        num_matvecs += alphas.shape[0]
        theta, S = torch.linalg.eigh(_tridiagonal(alphas[:, 0], betas[:, 0]))
        idx = wanted(theta)
        if restarts > 0 and run_converged and not bool((_sort_key(theta[idx], which) > threshold + margin).any()):
            converged, reason = True, f"restart {restarts} found nothing beyond the {k} kept eigenvalues"
            break
        ritz_vectors = (basis[0].T @ S[:, idx].to(work)).T  # (c, n), orthonormal and orthogonal to locked
        locked_values = torch.cat([locked_values, theta[idx].cpu()])
        locked_vectors = torch.cat([locked_vectors, ritz_vectors / ritz_vectors.norm(dim=1, keepdim=True)])
        if not run_converged:
            reason = (f"a Lanczos run did not reach tol={tol} within max_steps={max_steps}; the estimates may be "
                      "inaccurate — raise max_steps or tol.")
            break
        if k == 1 or exhausted or locked_vectors.shape[0] == n:
            converged = True
            reason = ("the Krylov space was exhausted: the Ritz values are eigenvalues" if exhausted else
                      f"residuals <= tol·|θ| + {RESIDUAL_FLOOR}·eps·‖T‖")
            break
    else:
        reason = f"still finding missing copies after {k} restarts; the values may miss a repeated eigenvalue."
    if not converged:
        warnings.warn(f"top_eigen did not converge: {reason}", RuntimeWarning, stacklevel=2)

    order = torch.argsort(_sort_key(locked_values, which), descending=True)[:k]
    values = locked_values[order].to(device=A.device)
    vectors = locked_vectors[order.to(A.device)].T  # (n, k)
    products = _apply(A, vectors.T).T.double()
    num_matvecs += k
    residuals = (products - vectors.double() * values).norm(dim=0)
    iterations = num_matvecs - k
    return EigenResult(values.to(A.dtype), vectors.to(A.dtype), residuals.to(A.dtype), converged, reason,
                       restarts, num_matvecs, iterations, make_history(steps_log, iterations))


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
