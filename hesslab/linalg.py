"""Shared numerics of every iterative solver: one preconditioned conjugate gradient, one Armijo backtracking.

Every solver of hesslab (optimize, pde, transport) uses these two; none has a copy of its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._results import history as make_history

# the comparisons of ``backtracking`` are done in Python floats (float64); they widen every bound by this many ulps
# of the numbers compared, so that their own rounding cannot turn "fails" into "passes" or back
_COMPARISON_ULPS = 4 * float(np.finfo(np.float64).eps)


# ----------------------------------------------------------------------------------------------------------------------
# conjugate gradient
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CGResult:
    """The outcome of ``conjugate_gradient``.

    x: the solution estimate (b's shape and type). converged: ‖r‖ <= rtol‖b‖ was reached. reason: why CG stopped
    ("converged", "max_iter", "negative curvature", "max_norm", "breakdown"). iterations: updates of x made.
    negative_curvature: a direction p with pᵀAp <= 0 was met (A is not positive definite).
    history: read-only numpy arrays of length iterations + 1 (DESIGN.md, "Results"): ``error`` the relative residual
    ‖r_k‖/‖b‖ and ``seconds`` since the start, k = 0..iterations.

    Example:
        >>> A = torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64))
        >>> result = conjugate_gradient(lambda v: A @ v, torch.ones(3, dtype=torch.float64), max_iter=3)
        >>> result.reason, result.iterations, result.negative_curvature  # 3 distinct eigenvalues: 3 steps
        ('converged', 3, False)
        >>> result.history["error"][0], len(result.history["error"])  # ‖r_0‖/‖b‖ = 1 at x = 0
        (np.float64(1.0), 4)
    """

    x: Any
    converged: bool
    reason: str
    iterations: int
    negative_curvature: bool
    history: dict = field(default_factory=dict)


def _check_vector(name: str, v, like=None):
    """A finite 1-D torch tensor or numpy array (of ``like``'s kind and shape when given), or ValueError/TypeError."""
    if not isinstance(v, (torch.Tensor, np.ndarray)):
        raise TypeError(f"{name} must be a 1-D torch.Tensor or numpy.ndarray, got {type(v).__name__}.")
    if like is not None and (type(v) is not type(like) or tuple(v.shape) != tuple(like.shape)):
        raise ValueError(f"{name} must return a {type(like).__name__} of shape {tuple(like.shape)} (that of b), got "
                         f"a {type(v).__name__} of shape {tuple(v.shape)}; check the operator's size.")
    if like is None and v.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(v.shape)}; flatten it (e.g. b.reshape(-1)).")
    return v


def _norm(v) -> float:
    return math.sqrt(float(v @ v))


def conjugate_gradient(matvec: Callable, b, *, max_iter: int, rtol: float = 1e-10,
                       preconditioner: Callable | None = None, project: Callable | None = None,
                       max_norm: float | None = None) -> CGResult:
    """Solve A x = b for symmetric A by preconditioned conjugate gradients (Hestenes & Stiefel 1952), from x = 0.

    With M⁻¹ the preconditioner and r = b − Ax, z = M⁻¹r:
        α = rᵀz / pᵀAp,   x ← x + αp,   r ← r − αAp,   z ← M⁻¹r,   β = rᵀz_new / rᵀz_old,   p ← z + βp,
    started with r = z-projected b, p = z. Equivalently CG minimises the model q(x) = ½xᵀAx − bᵀx over growing
    Krylov spaces. Stops at ‖r‖ <= rtol‖b‖ ("converged"), after ``max_iter`` updates ("max_iter"), at a direction of
    non-positive curvature pᵀAp <= 0 ("negative curvature": x so far, a descent direction of q, or at the first
    step the preconditioned right-hand side M⁻¹b, as in Newton-CG, Nocedal & Wright 2006, Algorithm 7.1), where
    ‖x‖ would exceed ``max_norm`` ("max_norm": x + τp on the sphere ‖x‖ = max_norm, τ >= 0; also at negative
    curvature; Steihaug 1983), or at a non-finite or non-positive pᵀAp or rᵀz ("breakdown", e.g. a preconditioner
    that is not positive definite; x so far, finite).

    Args:
        matvec: v ↦ A v for A symmetric (n × n), on b's type (torch tensor or numpy array).
        b: (n,) finite right-hand side, a torch.Tensor or a numpy.ndarray.
        max_iter: updates of x at most, >= 1.
        rtol: relative residual to stop at, >= 0.
        preconditioner: r ↦ M⁻¹ r for M symmetric positive definite; None is M = I.
        project: v ↦ Πv, an orthogonal projector onto the subspace CG works in (e.g. the complement of a null
            vector of A): applied to b, to every product Ap and every preconditioned residual.
        max_norm: a bound on ‖x‖ (Euclidean; with a preconditioner the iterates grow monotonically only in the
            M-norm, so the truncated step is then merely bounded, not the model's minimiser on the ball).

    Returns:
        ``CGResult``; no warning on non-convergence: inner solves of inexact Newton stop at max_iter by design.

    Cost: one product with A, one preconditioner and one projection per iteration; O(n) memory for four vectors.
    Reference: M. R. Hestenes, E. Stiefel, "Methods of conjugate gradients for solving linear systems", J. Res.
    NBS 49 (1952); T. Steihaug, "The conjugate gradient method and trust regions", SIAM J. Numer. Anal. 20 (1983).

    Example:
        >>> A = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> result = conjugate_gradient(lambda v: A @ v, torch.tensor([1.0, 2.0], dtype=torch.float64), max_iter=2)
        >>> result.converged, result.iterations, [round(11 * v, 12) for v in result.x.tolist()]  # x = (1, 7)/11
        (True, 2, [1.0, 7.0])
    """
    if not callable(matvec):
        raise TypeError(f"matvec must be a callable v -> A v, got {type(matvec).__name__}.")
    b = _check_vector("b", b)
    if not bool((torch.isfinite(b) if isinstance(b, torch.Tensor) else np.isfinite(b)).all()):
        raise ValueError("b has NaN or inf entries; CG needs a finite right-hand side.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an int >= 1 (the CG iterations at most, e.g. len(b)), got {max_iter!r}.")
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not 0 <= rtol < math.inf:
        raise ValueError(f"rtol must be a finite number >= 0 (the relative residual to stop at), got {rtol!r}.")
    if max_norm is not None and (isinstance(max_norm, bool) or not isinstance(max_norm, (int, float))
                                 or not 0 < max_norm < math.inf):
        raise ValueError(f"max_norm must be a finite number > 0 (a bound on ‖x‖) or None, got {max_norm!r}.")
    identity = lambda v: v  # noqa: E731
    project, precondition = project or identity, preconditioner or identity

    def product(v):
        return project(_check_vector("matvec", matvec(v), like=b))

    r = project(1 * b)
    x = 0 * r
    b_norm = _norm(r)
    start = time.perf_counter()
    residuals, seconds = [1.0 if b_norm > 0 else 0.0], [0.0]

    def record(residual):
        residuals.append(residual)
        seconds.append(time.perf_counter() - start)

    def finish(x, reason, negative=False):
        return CGResult(x=x, converged=reason == "converged", reason=reason, iterations=len(residuals) - 1,
                        negative_curvature=negative, history=make_history({"error": residuals, "seconds": seconds}))

    if residuals[0] <= rtol:  # b = 0, or rtol >= 1
        return finish(x, "converged")
    z = project(precondition(r))
    p, rz = 1 * z, float(r @ z)
    for _ in range(max_iter):
        if not 0 < rz < math.inf:  # the preconditioner is not positive definite, or rounding broke the recurrence
            return finish(x, "breakdown")
        Ap = product(p)
        curvature = float(p @ Ap)
        if not math.isfinite(curvature):
            return finish(x, "breakdown")
        if curvature <= 0:
            if max_norm is not None:  # q falls without bound along p: go to the sphere (Steihaug)
                x, r = x + (tau := _to_sphere(x, p, max_norm)) * p, r - tau * Ap
                record(_norm(r) / b_norm)
                return finish(x, "max_norm", negative=True)
            return finish(x if len(residuals) > 1 else z, "negative curvature", negative=True)
        alpha = rz / curvature
        if not math.isfinite(alpha):  # pᵀAp underflowed
            return finish(x, "breakdown")
        if max_norm is not None and _norm(x + alpha * p) >= max_norm:
            x, r = x + (tau := _to_sphere(x, p, max_norm)) * p, r - tau * Ap
            record(_norm(r) / b_norm)
            return finish(x, "max_norm")
        x, r = x + alpha * p, r - alpha * Ap
        record(_norm(r) / b_norm)
        if residuals[-1] <= rtol:
            return finish(x, "converged")
        z = project(precondition(r))
        rz, rz_old = float(r @ z), rz
        p = z + (rz / rz_old) * p
    return finish(x, "max_iter")


def _to_sphere(x, p, radius: float) -> float:
    """τ >= 0 with ‖x + τp‖ = radius, for ‖x‖ <= radius: the positive root of ‖p‖²τ² + 2xᵀpτ + ‖x‖² − radius²."""
    pp, xp, xx = float(p @ p), float(x @ p), float(x @ x)
    gap = max(radius**2 - xx, 0.0)
    # the root without cancellation: τ = gap / (xᵀp + √((xᵀp)² + ‖p‖² gap)) when xᵀp >= 0
    root = math.sqrt(xp**2 + pp * gap)
    return gap / (xp + root) if xp >= 0 else (root - xp) / pp


# ----------------------------------------------------------------------------------------------------------------------
# Armijo backtracking
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trial:
    """What a line search's trial function returns for a step s along a direction d.

    change: φ(s) − φ(0), the change of the objective (computed as accurately as the caller can, e.g. SNS's
    exact increment). rounding: a bound on |computed change − exact change| (>= 0). constraint, constraint_rounding:
    an optional side condition that an accepted step must meet, constraint <= 0 (e.g. SNS's cap on the marginal
    error), and a bound on its rounding. payload: anything the caller wants back with the accepted step (the new
    value, gradient, state).

    Example:
        >>> Trial(change=-1.0, rounding=1e-16).finite(), Trial(change=float("nan")).finite()
        (True, False)
    """

    change: float
    rounding: float = 0.0
    payload: Any = None
    constraint: float = -math.inf
    constraint_rounding: float = 0.0

    def finite(self) -> bool:
        """Whether the change, the side condition and their rounding bounds are all numbers (-inf: no condition)."""
        return all(math.isfinite(v) for v in (self.change, self.rounding, self.constraint_rounding)) and not \
            math.isnan(self.constraint)


@dataclass(frozen=True)
class LineSearchResult:
    """The outcome of ``backtracking``.

    step: the accepted s, or None. trials: evaluations made. payload: the accepted trial's (None when none).
    reason: "sufficient decrease", "not a descent direction" or "max_trials". decrease_met: some trial met the
    sufficient decrease but not the side condition (so the side condition is what refused the step).

    Example:
        >>> # φ(s) = −s + s² with the side condition s <= 0.3: s = 1 fails the decrease, s = 0.5 the side condition
        >>> result = backtracking(lambda s: Trial(change=-s + s**2, constraint=s - 0.3), slope=-1.0)
        >>> result.step, result.trials, result.reason, result.decrease_met
        (0.25, 3, 'sufficient decrease', True)
    """

    step: float | None
    trials: int
    payload: Any
    reason: str
    decrease_met: bool = False


def sufficient_decrease(change: float, bound: float, rounding: float = 0.0, *, benefit_of_doubt: bool = True) -> bool:
    """Whether change <= bound holds for the exact change, given the computed change and a bound on its rounding.

    Three cases: surely (change + rounding <= bound), surely not (change − rounding > bound), undecided (in
    between, where rounding cannot tell). ``benefit_of_doubt`` decides the undecided case: True accepts it (a
    nearly converged run whose predicted decrease is below f's rounding must still take its steps), False rejects
    it (accept only what is provable despite rounding). A non-finite change is never sufficient. The comparison
    itself is widened by a few ulps of the numbers compared, so that its own rounding is covered too.
    Cost: O(1).

    Example:
        >>> sufficient_decrease(-1e-17, -1e-16, rounding=1e-15), sufficient_decrease(-1e-17, -1e-16, 1e-15,
        ...                                                                          benefit_of_doubt=False)
        (True, False)
    """
    return _verdict(change, bound, rounding) in (("pass", "undecided") if benefit_of_doubt else ("pass",))


def _verdict(change: float, bound: float, rounding: float) -> str:
    """"pass", "fail" or "undecided" for change <= bound with |computed − exact change| <= rounding."""
    if not (math.isfinite(change) and math.isfinite(rounding)) or math.isnan(bound):
        return "fail"
    widened = rounding + _COMPARISON_ULPS * (abs(change) + rounding + abs(bound))
    if change + widened <= bound:
        return "pass"
    return "fail" if change - widened > bound else "undecided"


def _trial_verdict(trial: Trial, bound: float) -> str:
    """The verdict on the sufficient decrease and the side condition together: pass only if both surely pass."""
    if not trial.finite():
        return "fail"
    verdicts = {_verdict(trial.change, bound, trial.rounding),
                _verdict(trial.constraint, 0.0, trial.constraint_rounding) if trial.constraint > -math.inf else "pass"}
    return "fail" if "fail" in verdicts else ("undecided" if "undecided" in verdicts else "pass")


def backtracking(trial: Callable[[float], Trial], slope: float, *, armijo: float = 1e-4, shrink: float = 0.5,
                 max_trials: int = 60, initial: float = 1.0, benefit_of_doubt: bool = True,
                 refine: Callable[[float], Trial] | None = None) -> LineSearchResult:
    """Armijo backtracking: the first step s in {s₀, ρs₀, ρ²s₀, ...} that decreases φ(s) = f(x + sd) enough.

    At most ``max_trials`` steps are tried; the test is
        φ(s) − φ(0) <= c · s · φ'(0)        (c = ``armijo``, ρ = ``shrink``, φ'(0) = ``slope`` = ⟨∇f(x), d⟩ < 0)

    (Armijo 1966; Nocedal & Wright 2006, §3.1, Algorithm 3.1). ``trial(s)`` returns the change φ(s) − φ(0) with a
    bound on its rounding, and the test is judged with that bound by ``sufficient_decrease``: ``benefit_of_doubt``
    decides a trial that rounding cannot decide (True: accept it; False: reject it — accept only what is provable).
    A trial that is not finite, or undecided, is first re-evaluated by ``refine(s)`` when given (a costlier, more
    accurate evaluation). A side condition ``Trial.constraint <= 0`` is judged the same way; a step is accepted
    only when it passes too. For a quadratic φ(s) = φ'(0)s + ½κs² with its minimiser at s* = −φ'(0)/κ = 1 (a
    Newton step), φ(1) − φ(0) = ½φ'(0): the full step passes exactly when c <= ½.

    Args:
        trial: s ↦ ``Trial`` (the change of the objective at step s, its rounding bound, a payload).
        slope: φ'(0), the directional derivative; > 0 (an ascent direction) returns no step, without a trial.
        armijo: c in (0, 1), the fraction of the linear decrease required (usually 1e-4).
        shrink: ρ in (0, 1), the factor between consecutive steps (usually ½).
        max_trials: evaluations at most, >= 0.
        initial: s₀ > 0, the first step (1 for Newton).
        benefit_of_doubt: how an undecided test is decided (see above).
        refine: s ↦ ``Trial``, a second evaluation for the trials the first cannot decide; None: none.

    Returns:
        ``LineSearchResult`` (step or None, trials, the accepted trial's payload, reason).

    Cost: one call of ``trial`` per step tried (and one of ``refine`` for an undecided one).

    Example:
        >>> result = backtracking(lambda s: Trial(change=-s + s**2), slope=-1.0)  # φ(s) = −s + s²: s* = 1/2
        >>> result.step, result.trials, result.reason
        (0.5, 2, 'sufficient decrease')
    """
    if not callable(trial) or (refine is not None and not callable(refine)):
        raise TypeError("trial (and refine) must be callables s -> Trial, got "
                        f"{type(trial).__name__} and {type(refine).__name__}.")
    if isinstance(slope, bool) or not isinstance(slope, (int, float)) or math.isnan(slope) or math.isinf(slope):
        raise ValueError(f"slope must be a finite number (the directional derivative ⟨∇f, d⟩), got {slope!r}; a "
                         "NaN slope means the direction or the gradient is not finite.")
    for name, value in (("armijo", armijo), ("shrink", shrink)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(f"{name} must be a number in (0, 1), got {value!r}; usual values: armijo = 1e-4, "
                             "shrink = 0.5.")
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 0:
        raise ValueError(f"max_trials must be an int >= 0 (the step sizes to try at most), got {max_trials!r}.")
    if isinstance(initial, bool) or not isinstance(initial, (int, float)) or not 0 < initial < math.inf:
        raise ValueError(f"initial must be a finite number > 0 (the first step size, e.g. 1), got {initial!r}.")
    if slope > 0:
        return LineSearchResult(None, 0, None, "not a descent direction")
    step, decrease_met = float(initial), False
    for count in range(1, max_trials + 1):
        bound = armijo * step * slope
        result = trial(step)
        verdict = _trial_verdict(result, bound)
        if verdict != "pass" and refine is not None and (verdict == "undecided" or not result.finite()):
            result = refine(step)
            verdict = _trial_verdict(result, bound)
        if verdict == "pass" or (verdict == "undecided" and benefit_of_doubt):
            return LineSearchResult(step, count, result.payload, "sufficient decrease", decrease_met)
        decrease_met = decrease_met or (result.finite() and _verdict(result.change, bound, result.rounding) == "pass")
        step *= shrink
    return LineSearchResult(None, max_trials, None, "max_trials", decrease_met)
