"""Inverse-curvature products: (A + λI)⁻¹ b by conjugate gradient or LiSSA, and M-FAC's Woodbury inverse Fisher.

``solve`` works on any ``CurvatureOperator`` (or dense symmetric tensor): CG from ``linalg.py`` (the one CG of
hesslab) or LiSSA's truncated Neumann series. ``woodbury_fisher`` builds the exact inverse of a damped empirical
Fisher λI + (1/m) Σ g_i g_iᵀ from m gradients without forming the d × d matrix (M-FAC's dynamic algorithm).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ._checks import check_choice, check_count, check_flat_vector, check_positive, check_real_number
from ._results import history as make_history
from .linalg import conjugate_gradient
from .operators import as_operator
from .spectrum import top_eigen

METHODS = {"cg": "conjugate gradient (Hestenes & Stiefel 1952)",
           "lissa": "LiSSA, the truncated Neumann series (Agarwal, Bullins & Hazan 2017)"}


@dataclass(frozen=True)
class SolveResult:
    """The outcome of ``solve``: x ≈ (A + λI)⁻¹ b.

    x: the solution estimate (b's shape). converged: ‖(A + λI)x − b‖ <= rtol‖b‖ was reached. reason: why it stopped
    (CG's reasons, or "converged" / "max_iter" for LiSSA). iterations: updates of x. num_matvecs: products with A.
    method: "cg" or "lissa". history (DESIGN.md, "Results"), arrays of length iterations + 1: ``error`` the
    relative residual ‖(A + λI)x_k − b‖/‖b‖, ``matvecs`` the products so far, ``seconds`` since the start.

    Example:
        >>> A = torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64))
        >>> result = solve(A, torch.ones(2, dtype=torch.float64), damping=1.0)
        >>> result.x.tolist(), result.reason, result.method
        ([0.5, 0.25], 'converged', 'cg')
    """

    x: Tensor
    converged: bool
    reason: str
    iterations: int
    num_matvecs: int
    method: str
    history: dict = field(default_factory=dict)


def solve(op, b: Tensor, damping: float = 0.0, method: str = "cg", *, rtol: float = 1e-10,
          max_iter: int | None = None, scale: float | None = None, eigenvalue_bounds: tuple | None = None,
          generator: torch.Generator | None = None) -> SolveResult:
    """x = (A + λI)⁻¹ b by conjugate gradient or by LiSSA (λ = ``damping``).

    CG (``linalg.conjugate_gradient``) needs A + λI positive definite; it stops with reason "negative curvature"
    where it is not. LiSSA (Agarwal, Bullins & Hazan 2017; Koh & Liang 2017 for influence functions) sums the
    Neumann series (A + λI)⁻¹ = s Σ_k (I − s(A + λI))^k up to depth j by the recurrence

        y_0 = 0,   y_j = b + (I − s(A + λI)) y_{j−1},   x_j = s y_j,

    which converges exactly when every eigenvalue of s(A + λI) lies in (0, 2), i.e. λ_min + λ > 0 and
    s(λ_max + λ) < 2; the error contracts by max |1 − s(λ_i + λ)| per step. LiSSA refuses (ValueError) an input
    where the series diverges, judged on the eigenvalue bounds (given, or estimated by ``hl.top_eigen`` to a
    relative accuracy of 1e-8, widened by that accuracy). This is the deterministic series on the whole operator;
    Koh & Liang's stochastic version samples a minibatch per step.

    Args:
        op: A, a ``CurvatureOperator`` or a dense symmetric (n, n) tensor.
        b: (n,) right-hand side in A's dtype and device.
        damping: λ >= 0, added to every eigenvalue.
        method: "cg" or "lissa".
        rtol: the relative residual ‖(A + λI)x − b‖/‖b‖ to stop at.
        max_iter: CG steps or LiSSA depth at most (default: 10 n for CG, 10 000 for LiSSA).
        scale: LiSSA's s > 0 (default 1/(λ_max + λ), the largest step that contracts every eigen-direction).
        eigenvalue_bounds: (λ_min, λ_max) of A for LiSSA; None estimates both with ``hl.top_eigen``.
        generator: for the Lanczos starts of the eigenvalue estimates.

    Returns:
        ``SolveResult``; a run that does not converge warns.

    Raises:
        ValueError: for LiSSA when s(λ_max + λ) >= 2 or λ_min + λ <= 0 (the series cannot converge), naming the
            fix (a smaller scale, more damping).

    Cost: one product with A per iteration (LiSSA's residual comes free from its recurrence) plus, for LiSSA
    without bounds, two Lanczos runs; O(n) memory.

    Example:
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)  # eigenvalues 1 and 3
        >>> b = torch.tensor([1.0, 0.0], dtype=torch.float64)
        >>> x = solve(A, b, method="lissa", eigenvalue_bounds=(1.0, 3.0)).x
        >>> [round(v, 8) for v in x.tolist()], [round(v, 8) for v in torch.linalg.solve(A, b).tolist()]
        ([0.66666667, -0.33333333], [0.66666667, -0.33333333])
    """
    A = as_operator(op)
    n = A.shape[0]
    b = check_flat_vector("b", b)
    if b.shape[0] != n or b.dtype != A.dtype or b.device != A.device:
        raise ValueError(f"b must be a ({n},) tensor of dtype {A.dtype} on {A.device} (the operator's), got shape "
                         f"{tuple(b.shape)}, {b.dtype} on {b.device}.")
    damping = check_positive("damping", damping, allow_zero=True, hint="λ is added to every eigenvalue of A.")
    check_choice("method", method, METHODS)
    rtol = check_positive("rtol", rtol, allow_zero=True)
    default_iter = 10 * n if method == "cg" else 10_000  # CG: n steps in exact arithmetic, a few n in rounding
    max_iter = default_iter if max_iter is None else check_count("max_iter", max_iter, 1)
    matvec = lambda v: A @ v + damping * v  # noqa: E731
    if method == "cg":
        result = _cg(matvec, b, rtol, max_iter)
    else:
        scale = _lissa_scale(A, damping, scale, eigenvalue_bounds, generator)
        result = _lissa(matvec, b, scale, rtol, max_iter)
    if not result.converged:
        warnings.warn(f"solve ({method}) did not converge: {result.reason} after {result.iterations} iterations, "
                      f"relative residual {result.history['error'][-1]:.2e} > rtol = {rtol:.1e}.", stacklevel=2)
    return result


def _cg(matvec, b: Tensor, rtol: float, max_iter: int) -> SolveResult:
    """The shared CG, its history extended by the products (one per step)."""
    cg = conjugate_gradient(matvec, b, max_iter=max_iter, rtol=rtol)
    steps = np.arange(cg.iterations + 1)
    history = make_history({**cg.history, "matvecs": steps}, cg.iterations)
    return SolveResult(x=cg.x, converged=cg.converged, reason=cg.reason, iterations=cg.iterations,
                       num_matvecs=int(steps[-1]) + (1 if cg.reason == "negative curvature" else 0),
                       method="cg", history=history)


def _lissa_scale(A, damping: float, scale, bounds, generator) -> float:
    """LiSSA's s, checked against the eigenvalue bounds: 0 < s(λ_i + λ) < 2 for every eigenvalue λ_i of A."""
    if bounds is None:
        tol = 1e-8
        high = float(top_eigen(A, tol=tol, which="LA", generator=generator).values[0])
        low = float(top_eigen(A, tol=tol, which="SA", generator=generator).values[0])
        # a converged Ritz value is within tol·|θ| (+ rounding) of an eigenvalue: widen the bounds by as much
        slack = 2 * tol * max(abs(high), abs(low)) + 1e3 * torch.finfo(A.dtype).eps * max(abs(high), abs(low), 1.0)
        low, high = low - slack, high + slack
    else:
        if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
            raise ValueError(f"eigenvalue_bounds must be a pair (λ_min, λ_max) of A, got {bounds!r}.")
        low = check_real_number("eigenvalue_bounds[0]", bounds[0])
        high = check_real_number("eigenvalue_bounds[1]", bounds[1], low)
    if low + damping <= 0:
        raise ValueError(f"LiSSA cannot converge: A + λI has the eigenvalue λ_min + λ = {low:.3g} + {damping:.3g} "
                         "<= 0 (A has negative or zero curvature), where the Neumann series diverges. Add damping > "
                         f"{-low:.3g}, or use method='cg' on a positive definite problem.")
    if scale is None:
        return 1.0 / (high + damping)
    scale = check_positive("scale", scale, hint="LiSSA's s: about 1/(λ_max + damping).")
    if scale * (high + damping) >= 2:
        raise ValueError(f"LiSSA cannot converge: scale·(λ_max + λ) = {scale:.3g}·({high:.3g} + {damping:.3g}) = "
                         f"{scale * (high + damping):.3g} >= 2, so the Neumann series diverges along the top "
                         f"eigenvector. Pass scale < {2 / (high + damping):.3g}, e.g. scale=None for "
                         "1/(λ_max + damping).")
    return scale


def _lissa(matvec, b: Tensor, scale: float, rtol: float, max_depth: int) -> SolveResult:
    """The recurrence y_j = y_{j−1} + (b − s(A + λI)y_{j−1}); the bracket is minus the residual of s y_{j−1}."""
    b_norm = float(torch.linalg.vector_norm(b))
    start = time.perf_counter()
    errors, matvecs, seconds = [1.0 if b_norm > 0 else 0.0], [0], [0.0]
    if errors[0] <= rtol:  # b = 0: x = 0
        return _lissa_result(torch.zeros_like(b), "converged", errors, matvecs, seconds)
    y = b.clone()  # y_1 = b (y_0 = 0)
    for depth in range(1, max_depth + 1):
        residual = b - scale * matvec(y)  # b − (A + λI)x_j for x_j = s y_j
        errors.append(float(torch.linalg.vector_norm(residual)) / b_norm)
        matvecs.append(depth)
        seconds.append(time.perf_counter() - start)
        if not math.isfinite(errors[-1]):
            raise ValueError("LiSSA's iterate is not finite: the series diverged (the eigenvalue bounds were wrong).")
        if errors[-1] <= rtol or depth == max_depth:
            break
        y = y + residual
    return _lissa_result(scale * y, "converged" if errors[-1] <= rtol else "max_iter", errors, matvecs, seconds)


def _lissa_result(x, reason, errors, matvecs, seconds) -> SolveResult:
    """LiSSA's result; its history's entry j is the state x_j = s y_j (entry 0: x = 0)."""
    iterations = len(errors) - 1
    return SolveResult(x=x, converged=reason == "converged", reason=reason, iterations=iterations,
                       num_matvecs=matvecs[-1], method="lissa",
                       history=make_history({"error": errors, "matvecs": matvecs, "seconds": seconds}, iterations))


# ----------------------------------------------------------------------------------------------------------------------
# M-FAC: the inverse of a damped empirical Fisher from m gradients
# ----------------------------------------------------------------------------------------------------------------------
class WoodburyFisher:
    """F = λI + (1/m) Σ_i g_i g_iᵀ and its exact inverse, from the m gradients alone (``woodbury_fisher``).

    Sherman-Morrison, one gradient at a time: F_0 = λI, F_i = F_{i−1} + g_i g_iᵀ/m, and with v_i = F_{i−1}⁻¹ g_i

        F_i⁻¹ = F_{i−1}⁻¹ − v_i v_iᵀ / (m + g_iᵀ v_i),   so   F⁻¹ = I/λ − Σ_i v_i v_iᵀ / (m + g_iᵀ v_i).

    M-FAC's dynamic algorithm keeps each v_i as a combination of the gradients, v_i = Σ_j B_ij g_j (B lower
    triangular, (m, m)), which needs only the Gram matrix K = G Gᵀ. ``inverse_product(x) = x/λ − Gᵀ Bᵀ C B G x``
    (C = diag(1/(m + g_iᵀv_i))) costs O(m d + m²); ``inverse_diagonal()`` O(m² d) once.
    Reference: E. Frantar, E. Kurtic, D. Alistarh, "M-FAC: Efficient matrix-free approximations of second-order
    information", NeurIPS 2021.

    Example:
        >>> G = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)  # F = I + diag(1, 4)/2
        >>> inverse = woodbury_fisher(G, damping=1.0)
        >>> x = inverse.inverse_product(torch.ones(2, dtype=torch.float64))
        >>> [round(v, 12) for v in x.tolist()], [round(v, 12) for v in inverse.inverse_diagonal().tolist()]
        ([0.666666666667, 0.333333333333], [0.666666666667, 0.333333333333])
    """

    def __init__(self, gradients: Tensor, damping: float, coefficients: Tensor, denominators: Tensor):
        self.gradients, self.damping = gradients, damping
        self.coefficients, self.denominators = coefficients, denominators
        self.shape = (gradients.shape[1], gradients.shape[1])

    def product(self, x: Tensor) -> Tensor:
        """F x = λx + Gᵀ(G x)/m for x (d,) or (d, k). Cost O(m d k)."""
        return self.damping * x + self.gradients.T @ (self.gradients @ x) / self.gradients.shape[0]

    def inverse_product(self, x: Tensor) -> Tensor:
        """F⁻¹ x for x (d,) or (d, k). Cost O((m d + m²) k)."""
        B, c = self.coefficients, self.denominators
        coordinates = B @ (self.gradients @ x)  # (v_iᵀ x)_i
        weighted = coordinates / (c if x.ndim == 1 else c[:, None])
        return x / self.damping - self.gradients.T @ (B.T @ weighted)

    def inverse_columns(self, index: Tensor) -> Tensor:
        """F⁻¹ e_q for the indices q (k,), as the columns of a (d, k) tensor. Cost O((m d + m²) k)."""
        E = torch.zeros(self.shape[0], len(index), dtype=self.gradients.dtype, device=self.gradients.device)
        E[index, torch.arange(len(index))] = 1.0
        return self.inverse_product(E)

    def inverse_diagonal(self) -> Tensor:
        """[F⁻¹]_qq = 1/λ − Σ_i (v_i)_q² / (m + g_iᵀv_i) for every q, (d,). Cost O(m² d)."""
        V = self.coefficients @ self.gradients  # row i: v_i
        return 1.0 / self.damping - (V**2 / self.denominators[:, None]).sum(0)


def woodbury_fisher(gradients: Tensor, damping: float) -> WoodburyFisher:
    """The inverse of the damped empirical Fisher F = λI + (1/m) Σ_i g_i g_iᵀ, by M-FAC's dynamic algorithm.

    Set-up: K = G Gᵀ (O(m² d)), then for i = 1..m the row B_i of v_i = F_{i−1}⁻¹ g_i = Σ_j B_ij g_j,
    B_i = e_i/λ − Σ_{j<i} (v_jᵀ g_i)/(m + g_jᵀ v_j) B_j with v_jᵀ g_i = (B K)_ji (O(m³)). Never forms a d × d matrix.

    Args:
        gradients: G (m, d), one gradient per row (e.g. ``hl.per_sample_gradients``), floating, finite.
        damping: λ > 0.

    Returns:
        ``WoodburyFisher`` with ``product``, ``inverse_product``, ``inverse_columns`` and ``inverse_diagonal``.

    Example:
        >>> G = torch.tensor([[1.0, 1.0]], dtype=torch.float64)  # F = I + 11ᵀ: eigenvalues 3 (along 1) and 1
        >>> x = woodbury_fisher(G, 1.0).inverse_product(torch.ones(2, dtype=torch.float64))
        >>> [round(v, 12) for v in x.tolist()]
        [0.333333333333, 0.333333333333]
    """
    if not isinstance(gradients, Tensor) or gradients.ndim != 2 or not gradients.is_floating_point():
        raise ValueError("gradients must be a floating (m, d) tensor, one gradient per row, got "
                         f"{type(gradients).__name__} of shape {tuple(getattr(gradients, 'shape', ()))}; build it "
                         "with hl.per_sample_gradients.")
    m = check_count("gradients.shape[0]", gradients.shape[0], 1, hint="M-FAC needs at least one gradient.")
    if not bool(torch.isfinite(gradients).all()):
        raise ValueError("gradients must be finite, got NaN/inf entries.")
    damping = check_positive("damping", damping, hint="the λ of λI + (1/m) Σ g gᵀ; without it F is singular for m < d.")
    K = gradients @ gradients.T
    B = torch.zeros(m, m, dtype=gradients.dtype, device=gradients.device)
    denominators = torch.empty(m, dtype=gradients.dtype, device=gradients.device)
    for i in range(m):
        B[i, i] = 1.0 / damping
        if i > 0:
            overlaps = B[:i, :i] @ K[:i, i]  # v_jᵀ g_i for j < i
            B[i, :i] -= (overlaps / denominators[:i]) @ B[:i, :i]
        denominators[i] = m + B[i, : i + 1] @ K[: i + 1, i]  # m + g_iᵀ v_i
    return WoodburyFisher(gradients, damping, B, denominators)
