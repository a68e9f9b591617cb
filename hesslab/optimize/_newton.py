"""Newton's method with Armijo backtracking and Levenberg–Marquardt damping."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import check_count, check_positive, check_real_number
from ..linalg import Trial, backtracking
from ._cost import (
    CostModel,
    NewtonResult,
    _finish,
    _Oracle,
    _start,
)

# ----------------------------------------------------------------------------------------------------------------------
# newton: Armijo backtracking and Levenberg–Marquardt damping
# ----------------------------------------------------------------------------------------------------------------------
MAX_SHIFTS = 64  # doublings of the shift τ: from 10⁻³·scale they reach 10¹⁶·scale, beyond any finite ‖H‖/scale met


def _shifted_cholesky(H: Tensor, damping: float, oracle: _Oracle) -> tuple[Tensor, float]:
    """Cholesky factor of H + τI and the shift τ, from τ = damping raised until H + τI is positive definite.

    τ ← max(2τ, 10⁻³·scale), scale = mean|H_ii|, or max|H_ij| when the diagonal is zero (Nocedal & Wright 2006,
    Algorithm 3.3). Every attempt is one factorisation; after MAX_SHIFTS raises (τ > ‖H‖ makes H + τI positive
    definite, so this happens only for a badly scaled or non-finite H) a ValueError says so.
    """
    scale = H.diagonal().abs().mean().item() or H.abs().max().item() or 1.0
    shift = damping
    eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    for _ in range(MAX_SHIFTS + 1):
        oracle.factorizations += 1
        factor, info = torch.linalg.cholesky_ex(H + shift * eye)
        if int(info) == 0:
            return factor, shift
        shift = max(2 * shift, 1e-3 * scale)
    raise ValueError(f"∇²f + τI was not positive definite for any shift τ up to {shift:.3g} ({MAX_SHIFTS} doublings; "
                     f"mean |diagonal| of ∇²f = {scale:.3g}): the Hessian is too badly scaled for a shifted Cholesky "
                     "factorisation. Rescale f or its variables, or pass a larger damping.")


def newton(
    f: Callable[[Tensor], Tensor],
    x0: Tensor,
    *,
    tol: float = 1e-8,
    max_iter: int = 100,
    line_search: bool = True,
    damping: float = 0.0,
    armijo: float = 1e-4,
    backtrack: float = 0.5,
    max_backtracks: int = 60,
    cost_model: CostModel | None = None,
    progress: bool = False,
) -> NewtonResult:
    """Newton's method x⁺ = x + α p with (∇²f(x) + λI) p = −∇f(x) and an Armijo backtracking line search.

    λ = ``damping`` (Levenberg–Marquardt, 0 for the classical method); where ∇²f(x) + λI is not positive definite
    (a non-convex f) the shift is raised until it is, so p is always a descent direction — counted in ``shifted``,
    recorded per iteration in ``history['regularization']``, and warned about. The stepsize α starts at 1 and shrinks by
    ``backtrack`` until f(x + αp) <= f(x) + ``armijo``·α⟨∇f(x), p⟩ (Armijo 1966; Nocedal & Wright 2006, §3.1);
    ``line_search=False`` takes the full step α = 1 (pure Newton, which may diverge far from the optimum).

    Cost per iteration: one Hessian (d), one or more factorisations (d³/F), one solve, one gradient per trial step.
    Locally quadratic: ‖x_{k+1} − x*‖ <= C‖x_k − x*‖² near a minimiser with positive definite, Lipschitz Hessian.

    Args:
        f: scalar function of a 1-D tensor, f(x) -> scalar tensor.
        x0: (d,) floating-point starting point (f and ∇f must be finite there).
        tol: stop when ‖∇f(x)‖ <= tol.
        max_iter: Newton steps at most.
        line_search: True: Armijo backtracking from α = 1; False: always the full step α = 1.
        damping: λ >= 0, the Levenberg–Marquardt shift (0: the classical method).
        armijo: c in (0, 1), the fraction of the predicted decrease a step must achieve (usually 1e-4).
        backtrack: ρ in (0, 1), the factor that shrinks α at each trial (usually 0.5).
        max_backtracks: trial steps per line search at most, >= 1.
        cost_model: the ``CostModel`` that prices ``history['cost']``; None: ``CostModel()``.
        progress: show a tqdm progress bar over the iterations.

    Returns:
        ``NewtonResult``; a run that stops without reaching tol (iterations exhausted, line search failed, or f not
        finite after a full step) warns (RuntimeWarning) and says why in ``reason``.

    Raises:
        ValueError: for an invalid argument, when f or ∇f is not finite at x0, when ∇f is not finite where f is,
            when ∇²f is not finite at an iterate, or when no shift makes ∇²f + τI positive definite.
        TypeError: when f is not callable, x0 is not a floating-point tensor or cost_model is not a ``CostModel``.

    Example:
        >>> import torch, hesslab as hl
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> b = torch.tensor([1.0, 2.0], dtype=torch.float64)
        >>> result = hl.optimize.newton(lambda x: 0.5 * x @ A @ x - b @ x, torch.zeros(2, dtype=torch.float64))
        >>> result.converged, result.iterations, [round(v, 12) for v in result.x.tolist()]  # x* = A⁻¹b in one step
        (True, 1, [0.2, 0.6])
        >>> print(*sorted(result.history))  # one entry per iterate x_0, x_1 in every column
        cost error f factorizations gradients hessians regularization seconds solves step stepsize
        >>> result.history["stepsize"].tolist(), result.history["hessians"].tolist()
        ([1.0, 1.0], [0.0, 1.0])
    """
    x, fx, g, oracle, tol = _start(f, x0, tol, max_iter, cost_model)
    damping = check_positive("damping", damping, allow_zero=True)
    armijo = check_real_number("armijo", armijo, 0.0, 1.0, open="both",
                               hint="It is the fraction of the predicted decrease a step must achieve; the usual "
                                    "value is 1e-4 (below 0.5, so that full Newton steps pass near a minimiser).")
    backtrack = check_real_number("backtrack", backtrack, 0.0, 1.0, open="both",
                                  hint="It is the factor that shrinks the stepsize, e.g. 0.5.")
    check_count("max_backtracks", max_backtracks, 1)
    history, shifted = [oracle.record(fx, g, 0.0, 1.0, damping)], 0
    for _ in tqdm(range(max_iter), desc="newton", disable=not progress, leave=False):
        if g.norm().item() <= tol:
            return _finish(x, True, f"‖∇f‖ <= tol = {tol:g}", history, shifted)
        factor, shift = _shifted_cholesky(oracle.hessian(x), damping, oracle)
        shifted += shift > damping
        oracle.solves += 1
        p = -torch.cholesky_solve(g[:, None], factor)[:, 0]
        if line_search:
            search = backtracking(lambda alpha: _trial(oracle, x + alpha * p, fx), torch.dot(g, p).item(),
                                  armijo=armijo, shrink=backtrack, max_trials=max_backtracks)
            if search.step is None:
                return _finish(x, False, f"the line search found no decrease in {max_backtracks} backtracking steps",
                               history, shifted)
            alpha, (f_new, g_new) = search.step, search.payload
        else:
            alpha, (f_new, g_new) = 1.0, oracle.value_and_gradient(x + p)
        if not (math.isfinite(f_new) and bool(torch.isfinite(g_new).all())):
            return _finish(x, False, "f or its gradient is not finite at the new point (diverged); use "
                           "line_search=True or damped_newton", history, shifted)
        x, fx, g = x + alpha * p, f_new, g_new
        history.append(oracle.record(fx, g, alpha * p.norm().item(), alpha, shift))
    converged = g.norm().item() <= tol
    return _finish(x, converged, f"‖∇f‖ <= tol = {tol:g}" if converged else f"max_iter = {max_iter} reached",
                   history, shifted)


def _trial(oracle: _Oracle, x_new: Tensor, fx: float) -> Trial:
    """The change f(x_new) − f(x) for the line search, with f's rounding bound; payload (f(x_new), ∇f(x_new))."""
    f_new, g_new = oracle.value_and_gradient(x_new)
    return Trial(change=f_new - fx, rounding=oracle.rounding(fx), payload=(f_new, g_new))
