"""Damped Newton: stepsize schedules from the Newton decrement (Hanzely et al.)."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import check_choice, check_count, check_positive, check_real_number
from ..linalg import sufficient_decrease
from ._cost import (
    CostModel,
    NewtonResult,
    _finish,
    _start,
)


# ----------------------------------------------------------------------------------------------------------------------
# damped_newton: stepsize schedules from the Newton decrement (Hanzely et al.)
# ----------------------------------------------------------------------------------------------------------------------
def newton_stepsize(L: float, decrement: float, schedule: str = "aicn", degree: float = 3.0) -> float:
    """The damped Newton stepsize α for smoothness constant L and Newton decrement G = ‖∇f(x)‖*_x.

    ``"aicn"``: α = (−1 + √(1 + 2LG)) / (LG), the minimiser over α of the affine-invariant cubic bound
    f(x − αn) <= f(x) − αG² + ½α²G² + (L/6)α³G³ (Hanzely, Kamzolov, Pasechnyuk, Gasnikov, Richtárik & Takáč 2022,
    AICN; global O(k⁻²), local quadratic). ``"holder"``: α = 1 / (1 + (L G^{q−2})^{1/(q−1)}) with q = ``degree`` in
    (2, 4]: the Newton step regularised in its own local norm, (1 + λ)∇²f·h = −∇f with λ = (L G^{q−2})^{1/(q−1)},
    the affine-invariant form of the regularised Newton steps of Doikov, Mishchenko & Nesterov (2024) — our reading
    of the schedules of Hanzely, Abdukhakimov & Takáč (2024, *Newton Method Revisited: Global Convergence Rates up
    to O(k⁻³)*): q = 3 for a Lipschitz Hessian, q = 4 for a Lipschitz third derivative, the O(k⁻³) case.
    Both tend to 1 as G → 0, so the method becomes pure Newton near the optimum.

    Args:
        L: the smoothness constant L >= 0.
        decrement: the Newton decrement G >= 0.
        schedule: ``"aicn"`` or ``"holder"``.
        degree: q in (2, 4] of the Hölder schedule (unused by AICN).

    Returns:
        α in (0, 1].

    Raises:
        ValueError: for a schedule other than ``"aicn"`` and ``"holder"``.

    Example:
        >>> from hesslab.optimize import newton_stepsize
        >>> newton_stepsize(1.0, 4.0), newton_stepsize(1.0, 1.0, "holder")  # (−1 + √9) / 4 and 1 / (1 + √1)
        (0.5, 0.5)
    """
    t = L * decrement
    if schedule == "aicn":
        return 1.0 if t < 1e-12 else (math.sqrt(1 + 2 * t) - 1) / t
    if schedule == "holder":
        return 1.0 / (1.0 + (L * decrement ** (degree - 2)) ** (1 / (degree - 1)))
    raise ValueError(f"schedule must be 'aicn' or 'holder', got {schedule!r}.")


def damped_newton(
    f: Callable[[Tensor], Tensor],
    x0: Tensor,
    *,
    smoothness: float | None = None,
    schedule: str = "aicn",
    degree: float = 3.0,
    initial_smoothness: float = 1.0,
    tol: float = 1e-8,
    max_iter: int = 200,
    max_backtracks: int = 60,
    cost_model: CostModel | None = None,
    progress: bool = False,
) -> NewtonResult:
    """Stepsized Newton for convex f: x⁺ = x − α n, n = [∇²f(x)]⁻¹∇f(x), α from the Newton decrement G = √⟨∇f, n⟩.

    The stepsize (``newton_stepsize``) needs an affine-invariant smoothness constant L (semi-strong
    self-concordance, ‖∇²f(y) − ∇²f(x)‖_x <= L‖y − x‖_x). Given ``smoothness=L`` it is used as it is. Otherwise L is
    found by backtracking (Hanzely et al.): each iteration first tries L/2 and doubles L until the step keeps half of
    the decrease the quadratic model predicts, f(x) − f(x⁺) >= ½·α(1 − α/2)G²; with AICN or q = 3 the cubic bound
    above guarantees that decrease for every valid L, so L never grows beyond twice the true constant.
    Affine-invariant: the iterates do not change under a linear change of variables, and from any start the
    iterates converge for convex f with positive definite Hessians, where pure Newton may diverge.

    Cost per iteration: one Hessian, one Cholesky factorisation, one solve, one gradient per trial of L.
    A Hessian that is not positive definite stops the run (f is not convex there).

    Args:
        f: scalar function of a 1-D tensor, f(x) -> scalar tensor (convex).
        x0: (d,) floating-point starting point (f and ∇f must be finite there).
        smoothness: L > 0, used as it is; None: found by backtracking from ``initial_smoothness``.
        schedule: ``"aicn"`` or ``"holder"`` (``newton_stepsize``).
        degree: q in (2, 4] of the Hölder schedule.
        initial_smoothness: L > 0 that the backtracking starts from (when ``smoothness`` is None).
        tol: stop when ‖∇f(x)‖ <= tol.
        max_iter: Newton steps at most.
        max_backtracks: trials of L per iteration at most, >= 1.
        cost_model: the ``CostModel`` that prices ``history['cost']``; None: ``CostModel()``.
        progress: show a tqdm progress bar over the iterations.

    Returns:
        ``NewtonResult``; ``history['regularization']`` is the L used, ``history['stepsize']`` the α. A run that
        stops without reaching tol warns (RuntimeWarning) and says why in ``reason``.

    Raises:
        ValueError: for an invalid argument, when f or ∇f is not finite at x0, when ∇f is not finite where f is, or
            when ∇²f is not finite at an iterate.
        TypeError: when f is not callable, x0 is not a floating-point tensor or cost_model is not a ``CostModel``.

    Example:
        >>> import torch, hesslab as hl
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> b = torch.tensor([1.0, 2.0], dtype=torch.float64)
        >>> result = hl.optimize.damped_newton(lambda x: 0.5 * x @ A @ x - b @ x, torch.zeros(2, dtype=torch.float64))
        >>> result.converged, result.iterations, [round(v, 8) for v in result.x.tolist()]  # x* = A⁻¹b
        (True, 4, [0.2, 0.6])
        >>> result.history["regularization"].tolist()  # a quadratic's L is 0: the first trial L/2 always passes
        [1.0, 0.5, 0.25, 0.125, 0.0625]
        >>> result.history["stepsize"].round(3).tolist()  # α → 1 as G → 0
        [1.0, 0.807, 0.973, 1.0, 1.0]
    """
    x, fx, g, oracle, tol = _start(f, x0, tol, max_iter, cost_model)
    check_choice("schedule", schedule, ("aicn", "holder"))
    degree = check_real_number("degree", degree, 2.0, 4.0, open="low",
                               hint="3: Lipschitz Hessian, 4: Lipschitz third derivative.")
    adaptive = smoothness is None
    L = check_positive("initial_smoothness" if adaptive else "smoothness",
                       initial_smoothness if adaptive else smoothness)
    check_count("max_backtracks", max_backtracks, 1)
    history = [oracle.record(fx, g, 0.0, 1.0, L)]
    for _ in tqdm(range(max_iter), desc="damped_newton", disable=not progress, leave=False):
        if g.norm().item() <= tol:
            return _finish(x, True, f"‖∇f‖ <= tol = {tol:g}", history)
        oracle.factorizations += 1
        factor, info = torch.linalg.cholesky_ex(oracle.hessian(x))
        if int(info) != 0:
            return _finish(x, False, "the Hessian is not positive definite (f is not convex here); use newton or "
                           "lazy_newton(regularization='cubic')", history)
        oracle.solves += 1
        direction = torch.cholesky_solve(g[:, None], factor)[:, 0]
        G = math.sqrt(max(torch.dot(g, direction).item(), 0.0))
        L = L / 2 if adaptive else L
        # backtracking on L, not on the step: α(L) is not geometric in the trials and the decrease required,
        # ½α(1 − α/2)G², is not linear in α, so this is not an Armijo search (linalg.backtracking); it shares the
        # Armijo search's judgement of a decrease despite rounding (linalg.sufficient_decrease)
        for _ in range(max_backtracks if adaptive else 1):
            alpha = newton_stepsize(L, G, schedule, degree)
            f_new, g_new = oracle.value_and_gradient(x - alpha * direction)
            if not adaptive or sufficient_decrease(f_new - fx, -0.5 * alpha * (1 - alpha / 2) * G**2,
                                                   oracle.rounding(fx)):
                break
            L *= 2
        else:
            return _finish(x, False, f"no smoothness constant up to L = {L:g} gave a decrease", history)
        if not (math.isfinite(f_new) and bool(torch.isfinite(g_new).all())):
            return _finish(x, False, "f is not finite after a step; smoothness is too small", history)
        x, fx, g = x - alpha * direction, f_new, g_new
        history.append(oracle.record(fx, g, alpha * direction.norm().item(), alpha, L))
    converged = g.norm().item() <= tol
    return _finish(x, converged, f"‖∇f‖ <= tol = {tol:g}" if converged else f"max_iter = {max_iter} reached",
                   history)
