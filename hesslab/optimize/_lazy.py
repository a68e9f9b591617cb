"""Lazy Newton: one eigendecomposition per snapshot, O(d²) per step (Doikov, Chayti & Jaggi 2023)."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import check_choice, check_count, check_positive
from ..linalg import sufficient_decrease
from ._cost import (
    CostModel,
    NewtonResult,
    _finish,
    _start,
)


# ----------------------------------------------------------------------------------------------------------------------
# lazy_newton: one eigendecomposition per snapshot, O(d²) per step (Doikov, Chayti & Jaggi 2023)
# ----------------------------------------------------------------------------------------------------------------------
def cubic_step(eigenvalues: Tensor, eigenvectors: Tensor, gradient: Tensor, M: float) -> Tensor:
    """The global minimiser h of ⟨g, h⟩ + ½⟨Hh, h⟩ + (M/6)‖h‖³ for H = U diag(Λ) Uᵀ (Nesterov & Polyak 2006).

    h = −U (Λ + (Mr/2) I)⁻¹ Uᵀg where the radius r = ‖h‖ solves the scalar secular equation
    ‖(Λ + (Mr/2) I)⁻¹ Uᵀg‖ = r on r > max(0, −2λ_min/M) (root found by safeguarded Newton on 1/‖h(r)‖ − 1/r, which
    is concave and increasing there). In the "hard case" (Uᵀg has no weight on λ_min's eigenvectors and the root
    would lie below −2λ_min/M) the step is completed along λ_min's eigenvector to length r = −2λ_min/M.
    Cost: two d × d matrix-vector products (O(d²)) and O(d) per root-finding iteration.

    Args:
        eigenvalues: Λ (d,), the eigenvalues of the symmetric H.
        eigenvectors: U (d, d), its orthonormal eigenvectors (columns).
        gradient: g (d,).
        M: the cubic regularisation constant, > 0.

    Returns:
        h (d,).

    Example:
        >>> import math, torch
        >>> from hesslab.optimize import cubic_step
        >>> eigenvalues, eigenvectors = torch.tensor([1.0, 2.0], dtype=torch.float64), torch.eye(2, dtype=torch.float64)
        >>> h = cubic_step(eigenvalues, eigenvectors, torch.tensor([3.0, 0.0], dtype=torch.float64), M=2.0)
        >>> # h = −3 / (1 + r) e₁ with r = ‖h‖: r(1 + r) = 3, so r = (√13 − 1) / 2
        >>> round(-h[0].item(), 12) == round((math.sqrt(13) - 1) / 2, 12), h[1].item()
        (True, 0.0)
    """
    g_hat = eigenvectors.T @ gradient
    lam = eigenvalues.detach().cpu().numpy().astype(np.float64)
    b2 = g_hat.detach().cpu().numpy().astype(np.float64) ** 2
    low = max(0.0, -2.0 * lam.min() / M)
    shift, completion, singular = _cubic_shift(lam, b2, M, low)
    if completion == 0:
        return eigenvectors @ (-g_hat / (eigenvalues + shift))
    # hard case: Λ + shift is singular along λ_min; solve on the rest and finish the step along λ_min's eigenvector
    singular = torch.as_tensor(singular, device=eigenvalues.device)
    coefficients = torch.where(singular, 0.0, -g_hat / torch.where(singular, 1.0, eigenvalues + shift))
    coefficients[int(torch.argmin(eigenvalues))] = completion
    return eigenvectors @ coefficients


def _cubic_shift(lam: np.ndarray, b2: np.ndarray, M: float, low: float) -> tuple[float, float, np.ndarray | None]:
    """μ = Mr/2 for the root r of ‖h(r)‖ = r, with the completion of the hard case.

    In the hard case also the completion length along λ_min's eigenvector and the mask of the eigenvalues at which
    Λ + μ is singular (else 0 and None).
    """
    norm_g = math.sqrt(b2.sum())
    if norm_g == 0.0 and low == 0.0:
        return 0.0, 0.0, None

    def norm_and_slope(r: float) -> tuple[float, float]:
        denominators = lam + M * r / 2
        n2 = float((b2 / denominators**2).sum())
        return math.sqrt(n2), -M / 2 * float((b2 / denominators**3).sum()) / math.sqrt(n2) if n2 > 0 else 0.0

    if low > 0:  # a negative eigenvalue: is this the hard case?
        free = lam + M * low / 2 > 1e-12 * max(1.0, abs(lam).max())
        rest = math.sqrt(float((b2[free] / (lam[free] + M * low / 2) ** 2).sum()))
        if b2[~free].sum() <= (1e-12 * norm_g) ** 2 and rest <= low:
            return M * low / 2, math.sqrt(max(low**2 - rest**2, 0.0)), ~free
    high = (-lam.min() + math.sqrt(lam.min() ** 2 + 2 * M * norm_g)) / M  # ‖h(high)‖ <= high there
    high = max(high, low) * (1 + 1e-15) + 1e-300
    left, right, r = low, high, high
    for _ in range(200):
        n, slope = norm_and_slope(r)
        psi = 1 / n - 1 / r
        if psi < 0:
            left = r
        else:
            right = r
        if abs(n - r) <= 1e-15 * r or right - left <= 1e-15 * right:
            break
        derivative = -slope / n**2 + 1 / r**2
        candidate = r - psi / derivative if derivative > 0 else math.nan
        r = candidate if left < candidate < right else (left + right) / 2
    return M * r / 2, 0.0, None


def regularized_step(eigenvalues: Tensor, eigenvectors: Tensor, gradient: Tensor, lam: float) -> Tensor:
    """h = −(H + λI)⁻¹ g = −U (Λ + λI)⁻¹ Uᵀ g for H = U diag(Λ) Uᵀ (Levenberg-type step). Cost O(d²).

    Args:
        eigenvalues: Λ (d,), the eigenvalues of the symmetric H.
        eigenvectors: U (d, d), its orthonormal eigenvectors (columns).
        gradient: g (d,).
        lam: the shift λ, with Λ + λ > 0.

    Returns:
        h (d,).

    Example:
        >>> import torch
        >>> from hesslab.optimize import regularized_step
        >>> eigenvalues, eigenvectors = torch.tensor([1.0, 2.0], dtype=torch.float64), torch.eye(2, dtype=torch.float64)
        >>> regularized_step(eigenvalues, eigenvectors, torch.tensor([3.0, 4.0], dtype=torch.float64), 2.0).tolist()
        [-1.0, -1.0]
    """
    return eigenvectors @ (-(eigenvectors.T @ gradient) / (eigenvalues + lam))


def lazy_newton(
    f: Callable[[Tensor], Tensor],
    x0: Tensor,
    *,
    update_every: int = 1,
    regularization: str = "cubic",
    M: float = 1.0,
    adaptive: bool = True,
    tol: float = 1e-8,
    max_iter: int = 1000,
    max_doublings: int = 60,
    cost_model: CostModel | None = None,
    progress: bool = False,
) -> NewtonResult:
    """Newton with lazy Hessians (Doikov, Chayti & Jaggi, *Second-order optimization with lazy Hessians*, ICML 2023).

    The Hessian is computed at the snapshot z_t = x_{m⌊t/m⌋} (m = ``update_every``) and eigendecomposed once,
    ∇²f(z_t) = U Λ Uᵀ; every step uses a fresh gradient g_t = ∇f(x_t) and costs O(d²):

        cubic (Algorithm 1):      x_{t+1} = argmin_y ⟨g_t, y − x_t⟩ + ½⟨∇²f(z_t)(y − x_t), y − x_t⟩ + (M/6)‖y − x_t‖³
        quadratic (Algorithm 2):  x_{t+1} = x_t − (∇²f(z_t) + λ_t I)⁻¹ g_t,   λ_t = √(M‖g_t‖)   (convex f)

    m = 1 is cubic Newton (Nesterov & Polyak 2006) or regularised Newton (Mishchenko 2023). The paper's analysis
    needs M of order mL (L the Hessian's Lipschitz constant) and puts the best total arithmetic cost at m = d.

    ``adaptive=True`` finds M by doubling and halving, as the paper's adaptive Algorithm 3 does. The acceptance test
    here is the decrease the model guarantees, counted over the phase so far: f(z_t) − f(x_{t+1}) >= Σ_i (M_i/12)r_i³
    (cubic) or Σ_i ½λ_i r_i² (quadratic), r_i the step lengths since the snapshot. A step that fails is redone with
    2M from the same point and snapshot; each new snapshot starts from M/2. The cubic test holds once M >= L with
    the exact Hessian (m = 1) and once M >= (3m − 2)L along a phase (the stale Hessian is off by L‖x − z‖ <=
    L Σ_i r_i), so M stays of the order mL that the analysis asks for.

    Cost: per snapshot one Hessian and one eigendecomposition; per step (tried) one gradient and one solve.

    Args:
        f: scalar function of a 1-D tensor, f(x) -> scalar tensor.
        x0: (d,) floating-point starting point (f and ∇f must be finite there).
        update_every: m >= 1, the steps per snapshot of the Hessian.
        regularization: ``"cubic"`` (any f) or ``"quadratic"`` (convex f).
        M: the regularisation constant, > 0 (the initial value when adaptive).
        adaptive: find M by doubling and halving (True) or keep it fixed (False).
        tol: stop when ‖∇f(x)‖ <= tol.
        max_iter: accepted steps at most.
        max_doublings: failed tests allowed per step, >= 0.
        cost_model: the ``CostModel`` that prices ``history['cost']``; None: ``CostModel()``.
        progress: show a tqdm progress bar over the steps.

    Returns:
        ``NewtonResult``; ``history['regularization']`` is the M of the step. A run that stops without reaching tol
        warns (RuntimeWarning) and says why in ``reason``.

    Raises:
        ValueError: for an invalid argument, when f or ∇f is not finite at x0, when ∇f is not finite where f is, or
            when ∇²f is not finite at a snapshot.
        TypeError: when f is not callable, x0 is not a floating-point tensor or cost_model is not a ``CostModel``.

    Example:
        >>> import torch, hesslab as hl
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> b = torch.tensor([1.0, 2.0], dtype=torch.float64)
        >>> f = lambda x: 0.5 * x @ A @ x - b @ x
        >>> result = hl.optimize.lazy_newton(f, torch.zeros(2, dtype=torch.float64), update_every=2)
        >>> result.converged, result.iterations, [round(v, 8) for v in result.x.tolist()]  # x* = A⁻¹b
        (True, 4, [0.2, 0.6])
        >>> result.history["hessians"].tolist()  # one Hessian per m = 2 steps
        [0.0, 1.0, 1.0, 2.0, 2.0]
    """
    x, fx, g, oracle, tol = _start(f, x0, tol, max_iter, cost_model)
    m = check_count("update_every", update_every, 1, hint="m = 1 recomputes the Hessian at every step.")
    check_choice("regularization", regularization, ("cubic", "quadratic"))
    M = check_positive("M", M)
    check_count("max_doublings", max_doublings, 0)
    history = [oracle.record(fx, g, 0.0, 1.0, M)]
    bar = tqdm(total=max_iter, desc="lazy_newton", disable=not progress, leave=False)
    while len(history) <= max_iter:
        if g.norm().item() <= tol:
            break
        oracle.factorizations += 1
        eigenvalues, eigenvectors = torch.linalg.eigh(oracle.hessian(x))
        f_snapshot, guaranteed = fx, 0.0
        M = M / 2 if adaptive and len(history) > 1 else M
        for _ in range(min(m, max_iter + 1 - len(history))):
            for _ in range(max_doublings + 1):
                h, promised = _lazy_step(eigenvalues, eigenvectors, g, M, regularization)
                oracle.solves += h is not None
                f_new, g_new = oracle.value_and_gradient(x + h) if h is not None else (math.nan, g)
                finite = math.isfinite(f_new) and bool(torch.isfinite(g_new).all())
                if finite and (not adaptive or sufficient_decrease(f_new - f_snapshot, -(guaranteed + promised),
                                                                   oracle.rounding(f_snapshot))):
                    break
                if not adaptive:
                    bar.close()
                    why = ("∇²f(z) + λI is not positive definite; quadratic regularisation needs a convex f"
                           if h is None else "f is not finite after a step; raise M or use adaptive=True")
                    return _finish(x, False, why, history)
                M *= 2
            else:
                bar.close()
                return _finish(x, False, f"no M up to {M:g} gave the guaranteed decrease", history)
            x, fx, g, guaranteed = x + h, f_new, g_new, guaranteed + promised
            history.append(oracle.record(fx, g, h.norm().item(), 1.0, M))
            bar.update()
            if g.norm().item() <= tol:
                break
    bar.close()
    converged = g.norm().item() <= tol
    return _finish(x, converged, f"‖∇f‖ <= tol = {tol:g}" if converged else f"max_iter = {max_iter} reached",
                   history)


def _lazy_step(eigenvalues, eigenvectors, g, M, regularization) -> tuple[Tensor | None, float]:
    """One lazy step h and the decrease its model guarantees ((M/12)r³ or ½λr²).

    h is None when the quadratic model has no minimiser (∇²f(z) + λI not positive definite).
    """
    if regularization == "cubic":
        h = cubic_step(eigenvalues, eigenvectors, g, M)
        return h, M / 12 * h.norm().item() ** 3
    lam = math.sqrt(M * g.norm().item())
    if eigenvalues.min().item() + lam <= 0:
        return None, math.inf
    h = regularized_step(eigenvalues, eigenvectors, g, lam)
    return h, 0.5 * lam * h.norm().item() ** 2
