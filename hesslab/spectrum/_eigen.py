"""Top eigenpairs by Lanczos: Ritz pairs, a residual stopping test, and locking for repeated eigenvalues.

The eigenvalues of T_m (Ritz values) approximate A's extreme eigenvalues first. Starts and restarts are Gaussian: a
±1 vector can be exactly orthogonal to a structured eigenvector ((1, −1) of [[2, 1], [1, 2]], the 1⊥ eigenspace of
I + 11ᵀ) and then never sees it. One Krylov space holds one copy of each eigenvalue, so ``top_eigen`` locks
converged Ritz pairs and restarts orthogonally to them until no missing copy is left (Saad, *Numerical Methods for
Large Eigenvalue Problems*, 2011, ch. 4 and 6).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .._checks import check_choice, check_count, check_like, check_positive
from .._results import history as make_history
from ..operators import as_operator
from ._krylov import (
    RESIDUAL_FLOOR,
    _apply,
    _check_basis_fits,
    _fresh_direction,
    _lanczos,
    _orthogonalise,
    _project_out,
    _random_start,
    _tridiagonal,
    _work_dtype,
)


@dataclass(frozen=True)
class EigenResult:
    """Eigenpairs from ``top_eigen``, with their true residuals and the history of the Lanczos runs.

    ``values`` (k,), unit ``vectors`` (n, k), true ``residuals`` (k,) ‖A v_i − λ_i v_i‖, ``converged``, ``reason``
    (why it stopped), ``restarts`` (deflated Lanczos runs after the first) and ``num_matvecs`` (products with A, the
    residual check's included: k after Lanczos runs; none for the vectors of a start-subspace run, whose A v_i it
    already has).

    ``iterations`` counts the products of all runs (a Lanczos step, a start-subspace column or expansion: one each;
    ``num_matvecs`` less the residual check's), and ``history`` (DESIGN.md, "Results") holds float arrays
    (``iterations`` + 1,), entry j after j products: ``error`` the largest relative residual ‖r_i‖/|θ_i| of the
    wanted Ritz pairs of the current run (β|s_i| for Lanczos; inf at entry 0, before a start block's last column
    and while a run has fewer Ritz values than it needs), ``matvecs`` the products so far and ``seconds`` since the
    start.

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


def _start_basis(v0: Tensor, work: torch.dtype, drop_below: float | None = None) -> Tensor:
    """An orthonormal basis (n, m') of span(v0) for v0 (n, m): Gram-Schmidt (twice) column by column.

    A column whose part orthogonal to the columns before it is at most ``drop_below`` (default √eps) of its norm
    (dependent, or zero) is dropped, so m' <= m; a ValueError when nothing is left.
    """
    drop_below = math.sqrt(torch.finfo(work).eps) if drop_below is None else drop_below
    n = v0.shape[0]
    kept: list[Tensor] = []
    for column in v0.to(work).T:
        norm = column.norm()
        if norm == 0:
            continue
        if kept:
            Q = torch.stack(kept)[None]  # (1, j, n)
            column = _project_out(_project_out(column[None], Q), Q)[0]
        if column.norm() > drop_below * norm:
            kept.append(column / column.norm())
    if not kept:
        raise ValueError(f"v0 of shape {tuple(v0.shape)} spans nothing (its columns are zero); pass a non-zero "
                         "start or v0=None.")
    return torch.stack(kept, dim=1).reshape(n, -1)


def _subspace_run(A, start: Tensor, max_dim: int, wanted, judge, generator):
    """Rayleigh–Ritz on span(start), expanded by residuals: the first run of ``top_eigen`` from a start subspace.

    With V_j (n, j) orthonormal and A V_j stored, the Ritz pairs of H_j = V_jᵀ A V_j = S diag(θ) Sᵀ are
    (θ_i, y_i = V_j s_i) with the true residuals

        r_i = (A V_j) s_i − θ_i y_i        (no further product: A y_i = (A V_j) s_i).

    Until ``judge`` finds every wanted pair converged, the residual of the most wanted unconverged one,
    orthogonalised twice against V_j (a fresh Gaussian direction if nothing is left of it), becomes v_{j+1}: one
    product. From one vector this is Lanczos (span(V_j) is the Krylov space: r_i ∈ A·span(V_j) + span(V_j));
    from a subspace that already nearly holds the eigenvector — the top eigenvectors of the last few steps of a
    training run — it converges in a few products after the start's.

    Args:
        A: the operator.
        start: (n, m) orthonormal columns in the work dtype (``_start_basis``).
        max_dim: the largest basis, >= m.
        wanted: ``theta -> indices`` of the wanted Ritz values, most wanted first.
        judge: ``(theta, idx, residuals, matvecs) -> (j,) bool`` converged per wanted pair (it also logs).
        generator: for a fresh direction.

    Returns:
        (theta of the wanted (c,) float64, their unit Ritz vectors (c, n), A times them (c, n), converged,
        exhausted, products). Cost: m products at once (one (n, m) product), then one per expansion;
        O(n · max_dim) memory for V and A V.
    """
    n, m = start.shape
    V = torch.empty((max_dim, n), dtype=start.dtype, device=start.device)  # rows: only the first j are read
    AV = torch.empty_like(V)
    H = torch.zeros((max_dim, max_dim), dtype=torch.float64)
    V[:m] = start.T
    AV[:m] = _apply(A, V[:m])
    H[:m, :m] = (V[:m] @ AV[:m].T).double().cpu()
    j = m
    while True:
        block = (H[:j, :j] + H[:j, :j].T) / 2
        theta, S = torch.linalg.eigh(block)
        idx = wanted(theta)
        coefficients = S[:, idx].to(V)
        Y, AY = coefficients.T @ V[:j], coefficients.T @ AV[:j]  # (c, n)
        R = AY - theta[idx].to(V)[:, None] * Y
        small = judge(theta, idx, R.norm(dim=1).double().cpu(), j)
        exhausted = j == n
        # Wanted pairs are only the best of span(V) when span(V) holds a Ritz value beyond them: with all of its
        # values wanted (e.g. V an invariant subspace of the size of k), one would be locked without any choice.
        chosen = idx.numel() < j
        if (bool(small.all()) and chosen) or exhausted or j == max_dim:
            return theta[idx], Y, AY, bool(small.all()) or exhausted, exhausted, j
        w = R[int((~small).nonzero()[0]) if not bool(small.all()) else 0][None]
        w, norm, clean = _orthogonalise(w, V[None, :j], twice=True)
        if bool(clean) and norm.item() > 0:
            w = w / norm
        else:  # the residual lies in span(V_j) to rounding: a fresh direction
            w, found = _fresh_direction(V[None, :j], generator)
            if not bool(found):
                return theta[idx], Y, AY, True, True, j
        V[j] = w[0]
        AV[j] = _apply(A, V[j:j + 1])[0]
        H[: j + 1, j] = (V[: j + 1] @ AV[j]).double().cpu()
        H[j, : j + 1] = H[: j + 1, j]
        j += 1


def top_eigen(A, k: int = 1, tol: float = 1e-6, max_steps: int | None = None, which: str = "LA",
              generator: torch.Generator | None = None, v0: Tensor | None = None) -> EigenResult:
    """The k extreme eigenvalues of A and their unit eigenvectors, by Lanczos with locking and restarts.

    A Ritz pair (θ, y = Q s) of T_m is converged when its residual, r = ‖A y − θ y‖ = β_m |s_m|, satisfies

        r <= tol·|θ| + eps·‖T_m‖        (eps of A's dtype: below that a residual is rounding),

    which guarantees an eigenvalue of A within r of θ. From a start subspace (v0 of shape (n, m)) the first run is
    a Rayleigh–Ritz on span(v0) instead: with V orthonormal and A V (one (n, m) product), the Ritz pairs
    (θ_i, y_i = V s_i) of Vᵀ A V have the true residuals r_i = ‖(A V) s_i − θ_i y_i‖, judged by the same test, and
    until they pass V grows by the residual of the most wanted unconverged pair (one product each; from one vector
    the same Krylov spaces as Lanczos). One Krylov space holds one copy of each eigenvalue, so a
    repeated one is found by locking: converged pairs are kept, and Lanczos restarts from a fresh Gaussian vector
    orthogonal to them (on the deflated operator); a restart whose most wanted converged Ritz value is no better
    than the k-th kept one proves nothing is missing. At most k restarts (none for k = 1), so every eigenvalue of
    multiplicity <= k comes back as often as it occurs.

    Args:
        A: a ``CurvatureOperator`` or a dense symmetric tensor.
        k: how many eigenpairs, 1 <= k <= n.
        tol: relative residual (hence eigenvalue) accuracy.
        max_steps: Lanczos steps per run (default min(n, max(300, 4k))).
        which: ``"LA"`` largest algebraic (default), ``"SA"`` smallest algebraic (the most negative: directions of
            negative curvature) or ``"LM"`` largest in magnitude.
        generator: for the random starts.
        v0: (n,) start of the first Lanczos run (default a random Gaussian one), or (n, m) a start subspace,
            1 <= m <= max_steps (columns in the span of the earlier ones, to √eps, are dropped; zero columns
            too). A warm start — the top eigenvector(s) of nearby matrices (``hesslab.training``) — converges in
            fewer products. Restarts stay random. A start subspace is for warm starts only: if span(v0) holds an
            eigenvector (an invariant subspace, or a random block with m + multiplicity > n), its eigenvalue can
            come back as converged although a more wanted one exists outside; for a cold start pass v0=None.

    Returns:
        ``EigenResult(values (k,), vectors (n, k), residuals (k,), converged, reason, restarts, num_matvecs,
        iterations, history)``,
        values ordered most wanted first (descending for "LA", ascending for "SA", by magnitude for "LM"), in A's
        dtype; ``values, vectors = top_eigen(...)`` still works. A run that does not converge warns and returns its
        best estimates. Half-precision operators: the recurrence runs in float32, the products in A's dtype.

    Raises:
        ValueError: if a product is not finite (∇²f is not finite at the point), or v0 is zero, spans nothing or
            has more than max_steps columns.

    Cost: one product per step, typically a few tens of steps per run; for k >= 2 one more run (the check that no
    copy is missing) plus one per missing copy; k products for the residuals of the Lanczos runs' vectors. A start
    subspace: m products (one batched product) plus one per expansion, its residuals free. O(max_steps · n) memory
    (twice that with a start subspace: V and A V).

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

        From a start subspace that holds the top eigenvector (1, 1)/√2, the two products of the start suffice:

        >>> block = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
        >>> result = hl.top_eigen(A, v0=block, tol=1e-10)
        >>> round(result.values.item(), 8), result.num_matvecs, result.residuals.item() < 1e-12
        (3.0, 2, True)
    """
    A = as_operator(A)
    n = A.shape[0]
    check_count("k", k, 1, n, hint="there are only n eigenvalues.")
    tol = check_positive("tol", tol)
    check_choice("which", which, WHICH, hint="LA: largest algebraic, SA: smallest algebraic, LM: largest magnitude.")
    max_steps = min(n, max(300, 4 * k)) if max_steps is None else check_count("max_steps", max_steps, k, n)
    work = _work_dtype(A.dtype)
    _check_basis_fits(n, max_steps, 1, work, A.device, "top_eigen")
    block = None  # a start subspace: its orthonormal basis (n, m')
    if v0 is not None:
        v0 = check_like("v0", v0, n, A.dtype, A.device)
        if v0.ndim == 2:
            if not 1 <= v0.shape[1] <= max_steps:
                raise ValueError(f"v0 of shape {tuple(v0.shape)}: a start subspace needs 1 <= m <= max_steps = "
                                 f"{max_steps} columns (and m <= n = {n}); pass fewer columns.")
            block = _start_basis(v0, work)
            _check_basis_fits(n, 2 * max_steps, 1, work, A.device, "top_eigen")  # V and A V
        elif not bool(v0.any()):
            raise ValueError(f"v0 must be a non-zero vector of shape ({n},), got zeros; pass a non-zero start or "
                             "v0=None.")
    floor = RESIDUAL_FLOOR * torch.finfo(A.dtype).eps

    locked_values = torch.zeros(0, dtype=torch.float64)
    locked_vectors = torch.zeros((0, n), dtype=work, device=A.device)
    locked_products: dict[int, Tensor] = {}  # row of locked_vectors -> A times it, where a run already has it
    num_matvecs, reason, converged = 0, "", False
    restarts = 0
    start_time = time.perf_counter()
    steps_log = {"error": [math.inf], "matvecs": [0], "seconds": [0.0]}  # entry 0: no product yet
    largest_ritz = [0.0]  # max |θ| over every Ritz value seen: an estimate of ‖A‖, the scale of rounding
    for restarts in range(k + 1 if k > 1 else 1):
        threshold = (torch.sort(_sort_key(locked_values, which), descending=True).values[k - 1]
                     if locked_values.numel() >= k else torch.tensor(-math.inf, dtype=torch.float64))
        need = max(k - locked_values.numel(), 0)
        # a value better than the k-th kept by less than its own accuracy is that value again: nothing is missing
        # (rounding of a Ritz value of a deflated run: ~√n·eps·‖A‖, the bound of a product's rounding; 10x spare)
        # (‖A‖ estimated by the largest |θ| seen, not the kept values: those may all be ~0, e.g. "SA" on rank one)
        margin = ((tol * threshold.abs() + 10 * math.sqrt(n) * floor * max(largest_ritz[0],
                                                                           locked_values.abs().max().item()))
                  if need == 0 else 0.0)

        def wanted(theta: Tensor) -> Tensor:
            """Most wanted first: at least ``need`` (to fill k), every one better than the k-th kept, and one."""
            key = _sort_key(theta, which)
            better = int((key > threshold + margin).sum()) if need == 0 else 0
            count = min(max(need, better, 1), theta.numel())
            return torch.argsort(key, descending=True)[:count]

        def judge(theta: Tensor, idx: Tensor, residual: Tensor, steps: int) -> Tensor:
            """Per wanted Ritz pair (θ_i, i in idx) after ``steps`` products of this run: residual <= tol·|θ_i| + floor.

            Logs the step in ``steps_log`` (one entry per product: inf for those of a start block before its last)
            and the verdict in ``judged``.
            """
            logged = len(steps_log["matvecs"]) - 1 - num_matvecs  # this run's products logged so far
            for done in range(logged + 1, steps + 1):
                steps_log["matvecs"].append(num_matvecs + done)
                steps_log["seconds"].append(time.perf_counter() - start_time)
                steps_log["error"].append(math.inf)
            largest_ritz[0] = max(largest_ritz[0], theta.abs().max().item())
            if theta.numel() < need:
                judged.append((steps, False))
                return torch.zeros(idx.numel(), dtype=torch.bool)
            steps_log["error"][-1] = (residual / theta[idx].abs().clamp_min(floor)).max().item()
            small = residual <= tol * theta[idx].abs() + floor * theta.abs().max()
            judged.append((steps, bool(small.all())))
            return small

        def residuals_small(alphas: Tensor, betas: Tensor, beta: Tensor) -> bool:
            """Whether the wanted Ritz pairs of T_j after these Lanczos steps are converged (residual β_j |s_ji|)."""
            theta, S = torch.linalg.eigh(_tridiagonal(alphas[:, 0], betas[:, 0]))
            idx = wanted(theta)
            return bool(judge(theta, idx, beta[0].double().abs() * S[-1, idx].abs(), alphas.shape[0]).all())

        judged: list[tuple[int, bool]] = []  # (steps, converged) of each step residuals_small judged in this run
        room = n - locked_vectors.shape[0]
        steps = min(max_steps, room)
        if restarts == 0 and block is not None:  # a start subspace: Rayleigh–Ritz expanded by residuals
            ritz_values, ritz_vectors, products, run_converged, exhausted, used = _subspace_run(
                A, block, steps, wanted, judge, generator)  # steps = max_steps >= m here: nothing is locked yet
            num_matvecs += used
            for row, (vector, product) in enumerate(zip(ritz_vectors, products)):  # A y = (A V) s: the residual
                locked_products[row] = product / vector.norm()  # check needs no new product (y is kept unit)
        else:
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
            ritz_values = theta[idx]
            ritz_vectors = (basis[0].T @ S[:, idx].to(work)).T  # (c, n), orthonormal and orthogonal to locked
        if restarts > 0 and run_converged and not bool((_sort_key(ritz_values, which) > threshold + margin).any()):
            converged, reason = True, f"restart {restarts} found nothing beyond the {k} kept eigenvalues"
            break
        locked_values = torch.cat([locked_values, ritz_values.cpu()])
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
    iterations = num_matvecs
    unknown = [i for i, row in enumerate(order.tolist()) if row not in locked_products]
    products = torch.empty_like(vectors.T)  # (k, n): A v_i, computed only where no run has it
    if unknown:
        products[unknown] = _apply(A, vectors.T[unknown])
    for i, row in enumerate(order.tolist()):
        if row in locked_products:
            products[i] = locked_products[row]
    num_matvecs += len(unknown)
    residuals = (products.T.double() - vectors.double() * values).norm(dim=0)
    return EigenResult(values.to(A.dtype), vectors.to(A.dtype), residuals.to(A.dtype), converged, reason,
                       restarts, num_matvecs, iterations, make_history(steps_log, iterations))
