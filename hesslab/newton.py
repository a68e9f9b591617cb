"""Newton's method three ways, on any scalar f of a flat vector, with the arithmetic cost of every run counted.

    newton          x⁺ = x + α p,   (∇²f(x) + λI) p = −∇f(x),   α by Armijo backtracking, λ >= 0 (Levenberg–Marquardt;
                    raised automatically where the Hessian is not positive definite).
    damped_newton   x⁺ = x − α [∇²f(x)]⁻¹∇f(x), the stepsize from the Newton decrement G = ‖∇f(x)‖*_x (Hanzely et
                    al.): AICN α = (−1 + √(1 + 2LG)) / (LG), or the Hölder schedule α = 1 / (1 + (L G^{q−2})^{1/(q−1)});
                    L found by backtracking when it is not given.
    lazy_newton     Doikov, Chayti & Jaggi (ICML 2023): the Hessian is taken at a snapshot z = x_{m⌊t/m⌋} and reused for
                    m steps; each step minimises the model ⟨g, h⟩ + ½⟨∇²f(z)h, h⟩ + (M/6)‖h‖³ (cubic) or uses
                    (∇²f(z) + λ_t I) h = −g with λ_t = √(M‖g‖) (quadratic); M adapted by doubling and halving.

The cost model (``CostModel``), in gradient-equivalents: one evaluation of f with its gradient = 1 (every evaluation in
this module, line-search trials included, computes both); one dense Hessian = d (d Hessian-vector products); one
factorisation of a d × d matrix (Cholesky or eigendecomposition) = d³ / F and one solve with a factorised matrix =
d² / F, where F is the number of arithmetic operations of one gradient (a parameter: 4Nd for a linear model on N
samples; default d²). Every result carries a per-iteration ``history`` of cumulative counts and cost.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .checks import check_count, check_flat_vector, check_real_number
from .exact import hessian


# ----------------------------------------------------------------------------------------------------------------------
# the cost model and what a run returns
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CostModel:
    """Arithmetic cost in gradient-equivalents (one evaluation of f and ∇f = ``gradient``).

    Args:
        gradient: cost of one evaluation of f with its gradient (the unit, 1).
        hessian: cost of one dense Hessian; ``None`` means d (d Hessian-vector products, each about a gradient).
        flops_per_gradient: arithmetic operations F of one gradient; a factorisation of a d × d matrix is charged
            d³ / F and one solve with it d² / F. ``None`` means d² (a gradient as cheap as a d × d matrix-vector
            product). For a linear model on N samples F ≈ 4Nd (two passes over the N × d data).
    """

    gradient: float = 1.0
    hessian: float | None = None
    flops_per_gradient: float | None = None

    def __post_init__(self):
        for name in ("gradient", "hessian", "flops_per_gradient"):
            value = getattr(self, name)
            if value is None and name != "gradient":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
                raise ValueError(f"CostModel.{name} must be a finite number > 0{' or None' * (name != 'gradient')}"
                                 f", got {value!r}.")

    def total(self, d: int, gradients: int, hessians: int, factorizations: int, solves: int) -> float:
        """gradients·gradient + hessians·(hessian or d) + factorizations·d³/F + solves·d²/F."""
        per_hessian = d * self.gradient if self.hessian is None else self.hessian
        flops = d * d if self.flops_per_gradient is None else self.flops_per_gradient
        linear_algebra = (factorizations * d**3 + solves * d**2) / flops * self.gradient
        return gradients * self.gradient + hessians * per_hessian + linear_algebra


@dataclass(frozen=True)
class Record:
    """One accepted iterate x_k: ``f`` = f(x_k), ``grad_norm`` = ‖∇f(x_k)‖, ``step`` = ‖x_k − x_{k−1}‖ (0 at k = 0),
    ``stepsize`` α of that step (1 for lazy steps), ``regularization`` (λ of Newton's shift, L of damped Newton, M
    of lazy Newton), and the cumulative counts and ``cost`` (``CostModel``) spent up to and including x_k."""

    f: float
    grad_norm: float
    step: float
    stepsize: float
    regularization: float
    gradients: int
    hessians: int
    factorizations: int
    solves: int
    cost: float


@dataclass(frozen=True)
class NewtonResult:
    """The last iterate ``x`` (d,), whether ‖∇f(x)‖ <= tol was reached (``converged``), why the run stopped
    (``reason``), the ``history`` (one ``Record`` per accepted iterate, x_0 first) and ``shifted`` (iterations at
    which the Hessian was not positive definite and was shifted; ``newton`` only)."""

    x: Tensor
    converged: bool
    reason: str
    history: tuple[Record, ...]
    shifted: int = 0

    @property
    def f(self) -> float:
        return self.history[-1].f

    @property
    def iterations(self) -> int:
        return len(self.history) - 1

    @property
    def cost(self) -> float:
        return self.history[-1].cost

    def trace(self, field: str) -> np.ndarray:
        """One field of every record as an array, e.g. ``result.trace("cost")``."""
        return np.array([getattr(record, field) for record in self.history], dtype=float)


# ----------------------------------------------------------------------------------------------------------------------
# f, ∇f and ∇²f, counted
# ----------------------------------------------------------------------------------------------------------------------
class _Oracle:
    """Evaluates f with its gradient and its dense Hessian, and counts what the cost model charges."""

    def __init__(self, f: Callable[[Tensor], Tensor], x0: Tensor, cost_model: CostModel):
        self.f, self.d, self.cost_model = f, x0.numel(), cost_model
        self.eps = torch.finfo(x0.dtype).eps
        self.gradients = self.hessians = self.factorizations = self.solves = 0

    def value_and_gradient(self, x: Tensor, where: str = "this point") -> tuple[float, Tensor]:
        """(f(x), ∇f(x)); a non-finite value is returned as it is (with a NaN gradient) for the caller to judge; a
        finite value with a non-finite gradient raises ValueError (f is not differentiable at x)."""
        self.gradients += 1
        point = x.detach().requires_grad_(True)
        with torch.enable_grad():
            value = self.f(point)
            if not isinstance(value, Tensor):
                raise TypeError(f"f must return a torch.Tensor, got {type(value).__name__}.")
            if value.numel() != 1:
                raise ValueError(f"f must return a scalar, got shape {tuple(value.shape)}; reduce it (e.g. .mean()).")
            value = value.reshape(())
            if not bool(torch.isfinite(value)):
                return value.item(), torch.full_like(x, math.nan)
            if not value.requires_grad:
                raise ValueError("f(x) does not depend on x (no gradient graph); check that f uses its argument.")
            (gradient,) = torch.autograd.grad(value, point)
        if not bool(torch.isfinite(gradient).all()):
            raise ValueError(f"the gradient of f at {where} has non-finite entries although f is finite there: f is "
                             "not differentiable there (e.g. √|x| at 0). Start elsewhere or smooth f.")
        return value.item(), gradient.detach()

    def hessian(self, x: Tensor) -> Tensor:
        """∇²f(x), dense (d, d); a NaN or inf entry (f is not twice differentiable at x, e.g. ‖x‖ at 0) raises."""
        self.hessians += 1
        H = hessian(self.f, x)
        if not bool(torch.isfinite(H).all()):
            bad = int((~torch.isfinite(H)).sum())
            raise ValueError(f"∇²f is not finite at this point ({bad} of its {H.numel()} entries are NaN or inf): f is "
                             "not twice differentiable there (e.g. ‖x‖ at x = 0). Start elsewhere "
                             "or smooth f (e.g. √(‖x‖² + ε²) for ‖x‖).")
        return H

    def record(self, f: float, gradient: Tensor, step: float, stepsize: float, regularization: float) -> Record:
        counts = dict(gradients=self.gradients, hessians=self.hessians, factorizations=self.factorizations,
                      solves=self.solves)
        return Record(f=f, grad_norm=gradient.norm().item(), step=step, stepsize=stepsize,
                      regularization=regularization, cost=self.cost_model.total(self.d, **counts), **counts)


def _start(f, x0: Tensor, tol, max_iter: int, cost_model: CostModel | None):
    """Validate the common arguments; evaluate f and ∇f at x0 (both must be finite)."""
    if not callable(f):
        raise TypeError(f"f must be a callable f(x) -> scalar tensor, got {type(f).__name__}.")
    x0 = check_flat_vector("x0", x0)
    tol = check_real_number("tol", tol, 0.0, hint="tol is the gradient norm to stop at.")
    check_count("max_iter", max_iter, 0)
    cost_model = CostModel() if cost_model is None else cost_model
    if not isinstance(cost_model, CostModel):
        raise TypeError(f"cost_model must be a hesslab.newton.CostModel or None, got {type(cost_model).__name__}.")
    oracle = _Oracle(f, x0, cost_model)
    value, gradient = oracle.value_and_gradient(x0, "x0")
    if not math.isfinite(value):
        raise ValueError(f"f(x0) is not finite ({value}); start from a point where f is defined.")
    if not bool(torch.isfinite(gradient).all()):
        raise ValueError("the gradient of f at x0 has non-finite entries; start from a point where f is smooth.")
    return x0.detach().clone(), value, gradient, oracle, tol


def _positive(name: str, value, allow_zero: bool = False) -> float:
    """A finite number > 0 (>= 0 with ``allow_zero``): Python or numpy scalar or 0-d tensor, not a bool."""
    return check_real_number(name, value, 0.0, open="neither" if allow_zero else "low")


def _decreased(f_new: float, f_old: float, required: float, eps: float) -> bool:
    """f_old − f_new >= required, up to the rounding of f (256 ulps of |f|, eps = the dtype's): without that slack a
    nearly converged run would reject every step whose predicted decrease is below f's rounding error."""
    return math.isfinite(f_new) and f_old - f_new >= required - 256 * eps * abs(f_old)


def _finish(x, converged, reason, history, shifted=0) -> NewtonResult:
    """The result; warns when the Hessian had to be shifted (UserWarning) and when the run did not converge."""
    if shifted:
        warnings.warn(f"the Hessian was not positive definite at {shifted} iterations; Newton used ∇²f + τI there "
                      "(see Record.regularization).", UserWarning, stacklevel=3)
    if not converged:
        warnings.warn(f"Newton did not converge: {reason}.", RuntimeWarning, stacklevel=3)
    return NewtonResult(x=x, converged=converged, reason=reason, history=tuple(history), shifted=shifted)


# ----------------------------------------------------------------------------------------------------------------------
# newton: Armijo backtracking and Levenberg–Marquardt damping
# ----------------------------------------------------------------------------------------------------------------------
MAX_SHIFTS = 64  # doublings of the shift τ: from 10⁻³·scale they reach 10¹⁶·scale, beyond any finite ‖H‖/scale met


def _shifted_cholesky(H: Tensor, damping: float, oracle: _Oracle) -> tuple[Tensor, float]:
    """Cholesky factor of H + τI with τ = damping, raised (τ ← max(2τ, 10⁻³·scale), scale = mean|H_ii|, or max|H_ij|
    when the diagonal is zero) until it is positive definite (Nocedal & Wright 2006, Algorithm 3.3). Every attempt is
    one factorisation; after MAX_SHIFTS raises (τ > ‖H‖ makes H + τI positive definite, so this happens only for a
    badly scaled or non-finite H) a ValueError says so."""
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
    recorded per iteration in ``Record.regularization``, and warned about. The stepsize α starts at 1 and shrinks by
    ``backtrack`` until f(x + αp) <= f(x) + ``armijo``·α⟨∇f(x), p⟩ (Armijo 1966; Nocedal & Wright 2006, §3.1);
    ``line_search=False`` takes the full step α = 1 (pure Newton, which may diverge far from the optimum).

    Args:
        f: scalar function of a 1-D tensor; x0: (d,) starting point (f and ∇f must be finite there).
        tol: stop when ‖∇f(x)‖ <= tol. max_iter: Newton steps at most.
    Returns: ``NewtonResult``; a run that stops without reaching tol (iterations exhausted, line search failed, or
        f not finite after a full step) warns (RuntimeWarning) and says why in ``reason``.
    Cost per iteration: one Hessian (d), one or more factorisations (d³/F), one solve, one gradient per trial step.
    Locally quadratic: ‖x_{k+1} − x*‖ <= C‖x_k − x*‖² near a minimiser with positive definite, Lipschitz Hessian.
    """
    x, fx, g, oracle, tol = _start(f, x0, tol, max_iter, cost_model)
    damping = _positive("damping", damping, allow_zero=True)
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
        slope = torch.dot(g, p).item()
        alpha = 1.0
        for _ in range(max_backtracks if line_search else 1):
            f_new, g_new = oracle.value_and_gradient(x + alpha * p)
            if not line_search or _decreased(f_new, fx, -armijo * alpha * slope, oracle.eps):
                break
            alpha *= backtrack
        else:
            return _finish(x, False, f"the line search found no decrease in {max_backtracks} backtracking steps",
                           history, shifted)
        if not (math.isfinite(f_new) and bool(torch.isfinite(g_new).all())):
            return _finish(x, False, "f or its gradient is not finite at the new point (diverged); use "
                           "line_search=True or damped_newton", history, shifted)
        x, fx, g = x + alpha * p, f_new, g_new
        history.append(oracle.record(fx, g, alpha * p.norm().item(), alpha, shift))
    converged = g.norm().item() <= tol
    return _finish(x, converged, f"‖∇f‖ <= tol = {tol:g}" if converged else f"max_iter = {max_iter} reached",
                   history, shifted)


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

    Args:
        f, x0, tol, max_iter: as in ``newton``. smoothness: L, or None for backtracking from ``initial_smoothness``.
        schedule: ``"aicn"`` or ``"holder"``; degree: q in (2, 4] of the Hölder schedule.
    Returns: ``NewtonResult``; ``Record.regularization`` is the L used, ``Record.stepsize`` the α.
    Cost per iteration: one Hessian, one Cholesky factorisation, one solve, one gradient per trial of L.
    A Hessian that is not positive definite stops the run (f is not convex there).
    """
    x, fx, g, oracle, tol = _start(f, x0, tol, max_iter, cost_model)
    if schedule not in ("aicn", "holder"):
        raise ValueError(f"schedule must be 'aicn' or 'holder', got {schedule!r}.")
    degree = check_real_number("degree", degree, 2.0, 4.0, open="low",
                               hint="3: Lipschitz Hessian, 4: Lipschitz third derivative.")
    adaptive = smoothness is None
    L = _positive("initial_smoothness" if adaptive else "smoothness",
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
        for _ in range(max_backtracks if adaptive else 1):
            alpha = newton_stepsize(L, G, schedule, degree)
            f_new, g_new = oracle.value_and_gradient(x - alpha * direction)
            if not adaptive or _decreased(f_new, fx, 0.5 * alpha * (1 - alpha / 2) * G**2, oracle.eps):
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


# ----------------------------------------------------------------------------------------------------------------------
# lazy_newton: one eigendecomposition per snapshot, O(d²) per step (Doikov, Chayti & Jaggi 2023)
# ----------------------------------------------------------------------------------------------------------------------
def cubic_step(eigenvalues: Tensor, eigenvectors: Tensor, gradient: Tensor, M: float) -> Tensor:
    """The global minimiser h of ⟨g, h⟩ + ½⟨Hh, h⟩ + (M/6)‖h‖³ for H = U diag(Λ) Uᵀ (Nesterov & Polyak 2006).

    h = −U (Λ + (Mr/2) I)⁻¹ Uᵀg where the radius r = ‖h‖ solves the scalar secular equation
    ‖(Λ + (Mr/2) I)⁻¹ Uᵀg‖ = r on r > max(0, −2λ_min/M) (root found by safeguarded Newton on 1/‖h(r)‖ − 1/r, which
    is concave and increasing there). In the "hard case" (Uᵀg has no weight on λ_min's eigenvectors and the root
    would lie below −2λ_min/M) the step is completed along λ_min's eigenvector to length r = −2λ_min/M.
    Args: eigenvalues (d,), eigenvectors (d, d) of the symmetric H; gradient (d,); M > 0.
    Returns: h (d,). Cost: two d × d matrix-vector products (O(d²)) and O(d) per root-finding iteration.
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
    """μ = Mr/2 for the root r of ‖h(r)‖ = r; in the hard case also the completion length along λ_min's
    eigenvector and the mask of the eigenvalues at which Λ + μ is singular (else 0 and None)."""
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
    """h = −(H + λI)⁻¹ g = −U (Λ + λI)⁻¹ Uᵀ g for H = U diag(Λ) Uᵀ (Levenberg-type step). Cost O(d²)."""
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

    Args:
        f, x0, tol, max_iter: as in ``newton`` (max_iter counts accepted steps).
        update_every: m >= 1. regularization: ``"cubic"`` (any f) or ``"quadratic"`` (convex f). M: the
            regularisation constant (initial value when adaptive). max_doublings: failed tests allowed per step.
    Returns: ``NewtonResult``; ``Record.regularization`` is the M of the step.
    Cost: per snapshot one Hessian and one eigendecomposition; per step (tried) one gradient and one solve.
    """
    x, fx, g, oracle, tol = _start(f, x0, tol, max_iter, cost_model)
    m = check_count("update_every", update_every, 1, hint="m = 1 recomputes the Hessian at every step.")
    if regularization not in ("cubic", "quadratic"):
        raise ValueError(f"regularization must be 'cubic' or 'quadratic', got {regularization!r}.")
    M = _positive("M", M)
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
                if finite and (not adaptive or _decreased(f_new, f_snapshot, guaranteed + promised, oracle.eps)):
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
    """One lazy step h and the decrease its model guarantees ((M/12)r³ or ½λr²); h is None when the quadratic
    model has no minimiser (∇²f(z) + λI not positive definite)."""
    if regularization == "cubic":
        h = cubic_step(eigenvalues, eigenvectors, g, M)
        return h, M / 12 * h.norm().item() ** 3
    lam = math.sqrt(M * g.norm().item())
    if eigenvalues.min().item() + lam <= 0:
        return None, math.inf
    h = regularized_step(eigenvalues, eigenvectors, g, lam)
    return h, 0.5 * lam * h.norm().item() ** 2
