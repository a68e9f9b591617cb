"""Grid solvers of the elliptic problem: gradient descent, (I − Δ)⁻¹-preconditioned descent, and Newton."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import check_choice, check_count, check_flat_vector, check_instance, check_real_number
from .._results import history as make_history
from ..linalg import Trial, backtracking, conjugate_gradient
from ._problems import EllipticProblem, laplacian_eigenvalues

EPS = float(np.finfo(np.float64).eps)
ARMIJO = 1e-4  # sufficient decrease of the line searches: E(u + t d) <= E(u) + ARMIJO · t · Rᵀd
MAX_TRIALS = 60  # step sizes t, t/2, ... tried at most along one direction


# ----------------------------------------------------------------------------------------------------------------------
# solvers
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PDESolveResult:
    """The outcome of a grid solver (DESIGN.md, "Results").

    Attributes:
        method: the solver's name; u: the last iterate (N,).
        converged: ‖R(u)‖_h <= tol at a local minimiser (∇²E_h(u) positive definite), never at a saddle or a
            maximum; ``reason``: why the run stopped.
        iterations: accepted steps K.
        history: float arrays (K + 1,), entry k at u_k (entry 0 the start): ``error`` the residual ‖R(u_k)‖_h (the
            convergence measure), ``energy`` E_h(u_k), ``step`` the accepted step size t_k (0 at k = 0),
            ``inner`` the CG steps of a Newton-CG iteration (0 elsewhere) and ``seconds`` since the start.

    Example:
        >>> import hesslab as hl
        >>> result = hl.pde.newton(hl.pde.elliptic_problem(7))
        >>> result.method, result.converged, result.reason
        ('Newton (direct)', True, '‖R(u)‖_h <= tol = 1e-10 at a local minimiser (∇²E_h positive definite)')
        >>> result.iterations, len(result.history["error"]) == result.iterations + 1, float(result.history["step"][0])
        (5, True, 0.0)
        >>> sorted(result.history), tuple(result.u.shape)
        (['energy', 'error', 'inner', 'seconds', 'step'], (7,))
    """

    method: str
    u: Tensor
    converged: bool
    reason: str
    iterations: int
    history: dict[str, np.ndarray]


class _GridFunctions:
    """The energy (divided by h^d) and the residual on numpy arrays, for the solvers' inner loops."""

    def __init__(self, problem: EllipticProblem):
        self.A = problem.laplacian
        self.f = problem.f.numpy()
        nl = problem.nonlinearity
        self.F, self.dF, self.d2F = (_on_numpy(g) for g in (nl.F, nl.dF, nl.d2F))
        self.weight = math.sqrt(problem.h**problem.dim)
        self.log_size = math.log2(problem.size) + 2

    def evaluate(self, u: np.ndarray) -> tuple[float, float, np.ndarray]:
        """E_h(u)/h^d = ½ uᵀAu + Σ F(u_i) − fᵀu, its rounding error, and R(u) = Au + F'(u) − f.

        The rounding error of the sum (pairwise summation: about ε log₂N times the sum of the magnitudes) is the
        level below which two energies cannot be told apart.
        """
        Au = self.A @ u
        quadratic, potential, linear = 0.5 * float(u @ Au), self.F(u), float(self.f @ u)
        value = quadratic + float(potential.sum()) - linear
        rounding = EPS * self.log_size * (abs(quadratic) + float(np.abs(potential).sum()) + abs(linear))
        return value, rounding, Au + self.dF(u) - self.f

    def norm(self, r: np.ndarray) -> float:
        return self.weight * float(np.linalg.norm(r))


def _on_numpy(g: Callable[[Tensor], Tensor]) -> Callable[[np.ndarray], np.ndarray]:
    """``g`` on numpy arrays.

    A polynomial written with arithmetic operators (quartic, double_well) runs on numpy directly — ~10x less overhead
    per call than a torch round trip on the small vectors of the inner loops; any other function goes through torch.
    """
    probe = np.linspace(-2.0, 2.0, 7)
    via_torch = lambda u: g(torch.from_numpy(u)).numpy()  # noqa: E731
    try:
        direct = g(probe)
    except (TypeError, AttributeError):  # g uses torch functions: it needs tensors
        return via_torch
    same = isinstance(direct, np.ndarray) and np.array_equal(direct, via_torch(probe))
    return g if same else via_torch


def _check_solver_input(problem, u0, tol, max_iter) -> tuple[np.ndarray, float]:
    """u0 as a float64 numpy copy (zeros by default) and tol as a float."""
    check_instance("problem", problem, EllipticProblem, hint="Make one with hl.pde.elliptic_problem(...).")
    tol = check_real_number("tol", tol, 0.0, open="low", hint="tol is the residual norm ‖R(u)‖_h to reach.")
    check_count("max_iter", max_iter, 1)
    if u0 is None:
        return np.zeros(problem.size), tol
    u0 = check_flat_vector("u0", u0)
    if u0.numel() != problem.size:
        raise ValueError(f"u0 must have {problem.size} entries (n^d grid values), got {u0.numel()}.")
    return u0.detach().double().cpu().numpy().copy(), tol


def negative_curvature(problem: EllipticProblem, u: Tensor | np.ndarray) -> tuple[float, np.ndarray] | None:
    """None when ∇²E_h(u) is positive definite, else (λ_min, d): a direction of negative (or zero) curvature.

    With R(u) = 0, None means that u is a strict local minimiser. λ_min is the smallest eigenvalue of A + diag F''(u)
    (<= 0) and d (N,) its eigenvector, scaled to max|d_i| = 1.

    Weyl's inequality λ_min >= λ_1 + min F''(u) settles most cases for free; otherwise the signs of the pivots of a
    symmetric factorisation decide (Sylvester's law of inertia), and only for an indefinite Hessian is the eigenpair
    computed, by shift-invert Lanczos about σ = λ_1 + min F'' − 1 < λ_min (``scipy.sparse.linalg.eigsh``, a fixed
    start vector: deterministic). Cost: none, or one sparse factorisation, or a few more solves with one.

    Example:
        u = 0 is a minimiser of the quartic energy, but a saddle of the double well with s = 20 > λ_1 ≈ π², where
        λ_min = λ_1 − 20 along the first sine mode:

        >>> import torch, hesslab as hl
        >>> zero = torch.zeros(15, dtype=torch.float64)
        >>> print(hl.pde.negative_curvature(hl.pde.elliptic_problem(15), zero))
        None
        >>> saddle = hl.pde.elliptic_problem(15, nonlinearity=hl.pde.double_well(20.0), source=0.0)
        >>> lam_min, d = hl.pde.negative_curvature(saddle, zero)
        >>> lam_1 = hl.pde.laplacian_eigenvalues(15, 1)[0].item()
        >>> round(lam_min, 9) == round(lam_1 - 20, 9), round(abs(float(d[7])), 12)  # the mode peaks at the middle node
        (True, 1.0)
    """
    u = u.detach().double().cpu().numpy() if isinstance(u, Tensor) else np.asarray(u, dtype=np.float64)
    grid = _GridFunctions(problem)
    c = grid.d2F(u)
    lam_1 = float(laplacian_eigenvalues(problem.n, problem.dim)[0])
    if c.min() > -lam_1:
        return None
    H = problem.laplacian + sparse.diags(c)
    if bool((_factorise(H).U.diagonal() > 0).all()):
        return None
    sigma = lam_1 + float(c.min()) - 1.0
    values, vectors = sparse_linalg.eigsh(sparse.csc_matrix(H), k=1, sigma=sigma, which="LM", v0=np.ones(problem.size))
    d = vectors[:, 0]
    return float(values[0]), d / np.abs(d).max()


def _energy_trial(grid: _GridFunctions, u: np.ndarray, d: np.ndarray, energy: float, rounding: float):
    """t ↦ the change E(u + t d) − E(u) (divided by h^d) for ``linalg.backtracking``.

    Its rounding bound is the sum of both energies' (``_GridFunctions.evaluate``); the payload is (u + t d, its
    energy, its rounding, its residual).
    """

    def trial(t: float) -> Trial:
        point = u + t * d
        point_energy, point_rounding, point_r = grid.evaluate(point)
        return Trial(change=point_energy - energy, rounding=rounding + point_rounding,
                     payload=(point, point_energy, point_rounding, point_r))

    return trial


def _escape(grid: _GridFunctions, u: np.ndarray, energy: float, rounding: float, r: np.ndarray, d: np.ndarray):
    """A step u + t d along a direction of negative curvature d that provably lowers the energy, or None.

    d takes the sign that does not raise the energy to first order; t = 1, 1/2, ... (MAX_TRIALS at most) until the
    Armijo test passes without the benefit of the doubt: at a saddle Rᵀd ≈ 0, and only a decrease beyond the
    energies' rounding shows that the step left it. Returns (t, u + t d, its energy, rounding and residual).
    """
    d = -d if float(r @ d) > 0 else d
    search = backtracking(_energy_trial(grid, u, d, energy, rounding), float(r @ d), armijo=ARMIJO,
                          max_trials=MAX_TRIALS, benefit_of_doubt=False)
    return None if search.step is None else (search.step, *search.payload)


def _descent(problem: EllipticProblem, u0, direction, tol: float, max_iter: int, method: str,
             progress: bool) -> PDESolveResult:
    """u_{k+1} = u_k + t_k d_k until ‖R(u_k)‖_h <= tol, with ``direction(u, R) -> (d, t_initial, inner)``.

    The step size comes from a backtracking (Armijo) search on the energy (``linalg.backtracking``): halve t until
    E(u + t d) <= E(u) + 10⁻⁴ t Rᵀd, with the benefit of the doubt where the energies' rounding cannot tell (near the
    solution).

    A point with ‖R‖_h <= tol counts as solved only where ∇²E_h is positive definite: at a saddle or a maximum
    (``negative_curvature``) the run steps along a direction of negative curvature, which lowers the energy, and
    goes on (each such step counts as an iteration); if no such step lowers the energy, it stops unconverged.
    """
    grid = _GridFunctions(problem)
    u = u0
    energy, rounding, r = grid.evaluate(u)
    residuals, energies, steps, inners, seconds = [grid.norm(r)], [energy], [], [], [0.0]
    start = time.perf_counter()
    bar = tqdm(total=max_iter, desc=method, disable=not progress, leave=False)
    reason = ""

    def solved() -> bool:
        """‖R‖ <= tol at a local minimiser; at a saddle, the escape step is left in ``escape``."""
        nonlocal reason, escape
        if not residuals[-1] <= tol:
            return False
        curvature = negative_curvature(problem, u)
        if curvature is None:
            reason = f"‖R(u)‖_h <= tol = {tol:g} at a local minimiser (∇²E_h positive definite)"
            return True
        escape = _escape(grid, u, energy, rounding, r, curvature[1])
        reason = (f"‖R(u)‖_h <= tol = {tol:g}, but at a saddle or maximum of the energy (λ_min(∇²E_h)/h^d = "
                  f"{curvature[0]:.3g} < 0), and no step along its direction of negative curvature lowers the energy")
        return False

    escape = None
    converged = solved()
    while not converged and len(steps) < max_iter:
        if residuals[-1] <= tol:  # a saddle: step along the direction of negative curvature, or give up
            if escape is None:
                break
            t, trial, trial_energy, trial_rounding, trial_r = escape
            inner, escape = 0, None
        else:
            d, t, inner = direction(u, r)
            search = backtracking(_energy_trial(grid, u, d, energy, rounding), float(r @ d), armijo=ARMIJO,
                                  initial=t, max_trials=MAX_TRIALS)
            if search.step is None:
                reason = "the line search found no decrease of the energy along the search direction"
                break  # no decrease along d even for tiny steps: stop and report non-convergence
            t, (trial, trial_energy, trial_rounding, trial_r) = search.step, search.payload
        u, energy, rounding, r = trial, trial_energy, trial_rounding, trial_r
        residuals.append(grid.norm(r))
        energies.append(energy)
        steps.append(t)
        inners.append(inner)
        seconds.append(time.perf_counter() - start)
        if not np.isfinite(residuals[-1]):
            reason = "the residual is not finite (diverged)"
            break
        converged = solved()
        bar.update()
    bar.close()
    if not converged:
        if not reason or (residuals[-1] > tol and len(steps) >= max_iter):
            reason = f"max_iter = {max_iter} reached"
        advice = "" if residuals[-1] <= tol else "; raise max_iter or tol"
        warnings.warn(f"{method} stopped after {len(steps)} iterations with residual {residuals[-1]:.3g} "
                      f"({'<=' if residuals[-1] <= tol else '>'} tol={tol:g}): {reason}{advice}.", RuntimeWarning,
                      stacklevel=3)

    h_d = problem.h**problem.dim
    columns = {"error": residuals, "energy": h_d * np.array(energies), "step": [0.0] + steps,
               "inner": [0] + inners, "seconds": seconds}
    return PDESolveResult(method, torch.from_numpy(u), bool(converged), reason, len(steps),
                          make_history(columns, len(steps)))


def gradient_descent(problem: EllipticProblem, u0: Tensor | None = None, tol: float = 1e-6,
                     max_iter: int = 100_000, progress: bool = False) -> PDESolveResult:
    """Plain gradient descent on E_h: u ← u − t R(u) (the gradient divided by h^d), with a backtracking search.

    The first trial step is t = 1/L_k with the curvature bound L_k = λ_max(A) + max_i F''(u_i)⁺ ≥ ‖A + diag F''(u_k)‖.
    Converges at the rate 1 − μ/L, μ ≈ λ_1 + min F'': about κ log(‖R_0‖/tol) iterations with κ = L/μ ≈ 4/(π²h²) ~ n².
    Cost per iteration: O(N).

    Args:
        problem: the ``EllipticProblem`` to solve.
        u0: the starting grid values (N,); default zeros.
        tol: stop at a local minimiser with ‖R(u)‖_h <= tol, > 0.
        max_iter: iterations at most, >= 1.
        progress: show a tqdm progress bar.

    Returns:
        A ``PDESolveResult``; warns (RuntimeWarning) when ``max_iter`` is reached first.

    Example:
        On 7 nodes (κ ≈ 25) it needs a few hundred iterations, and lands within tol of Newton's solution:

        >>> import hesslab as hl
        >>> problem = hl.pde.elliptic_problem(7)
        >>> result = hl.pde.gradient_descent(problem, tol=1e-6)
        >>> result.converged, 100 < result.iterations < 1000
        (True, True)
        >>> bool((result.u - hl.pde.newton(problem).u).abs().max() < 1e-6)
        True
    """
    u0, tol = _check_solver_input(problem, u0, tol, max_iter)
    grid = _GridFunctions(problem)
    lam_max = float(laplacian_eigenvalues(problem.n, problem.dim)[-1])

    def direction(u, r):
        return -r, 1.0 / (lam_max + max(float(grid.d2F(u).max()), 0.0)), 0

    return _descent(problem, u0, direction, tol, max_iter, "gradient descent", progress)


def preconditioned_gradient_descent(problem: EllipticProblem, u0: Tensor | None = None, tol: float = 1e-6,
                                    max_iter: int = 10_000, progress: bool = False) -> PDESolveResult:
    """Gradient descent preconditioned by P = −Δ_h + I (Marwah, Lipton, Lu & Risteski 2022): u ← u − t P⁻¹ R(u).

    The preconditioned Hessian P⁻¹(A + diag c), c = F''(u), has the Rayleigh quotients (a + c̄)/(a + 1) with
    a = vᵀAv/vᵀv ≥ λ_1, monotone in a, so its spectrum lies in
    [min(1, (λ_1 + min c)/(λ_1 + 1)), max(1, (λ_1 + max c)/(λ_1 + 1))], a range that does not depend on h: the
    iteration count is grid-independent. The step is t = 1 / (that upper bound) with a
    backtracking search. Cost: one sparse factorisation of P, then one pair of triangular solves per iteration.

    Args:
        problem: the ``EllipticProblem`` to solve.
        u0: the starting grid values (N,); default zeros.
        tol: stop at a local minimiser with ‖R(u)‖_h <= tol, > 0.
        max_iter: iterations at most, >= 1.
        progress: show a tqdm progress bar.

    Returns:
        A ``PDESolveResult``; warns (RuntimeWarning) when ``max_iter`` is reached first.

    Example:
        The same iteration count on a grid 4 times finer (plain gradient descent would need 16 times more):

        >>> import hesslab as hl
        >>> [hl.pde.preconditioned_gradient_descent(hl.pde.elliptic_problem(n)).iterations for n in (7, 31)]
        [16, 16]
    """
    u0, tol = _check_solver_input(problem, u0, tol, max_iter)
    grid = _GridFunctions(problem)
    lam_1 = float(laplacian_eigenvalues(problem.n, problem.dim)[0])
    solve_P = _factorise(problem.laplacian + sparse.identity(problem.size)).solve

    def direction(u, r):
        upper = max(1.0, (lam_1 + float(grid.d2F(u).max())) / (lam_1 + 1))
        return -solve_P(r), 1.0 / upper, 0

    return _descent(problem, u0, direction, tol, max_iter, "preconditioned gradient descent", progress)


def newton(problem: EllipticProblem, u0: Tensor | None = None, tol: float = 1e-10, max_iter: int = 50,
           linear_solver: str = "direct", progress: bool = False) -> PDESolveResult:
    """Newton's method with the exact sparse Hessian: solve (A + diag F''(u)) d = −R(u), then u ← u + t d.

    The step size is t = 1 first, then backtracking on the energy (so it also converges from far away; quadratically
    near the solution).

    Args:
        problem: the ``EllipticProblem`` to solve.
        u0: the starting grid values (N,); default zeros.
        tol: stop at a local minimiser with ‖R(u)‖_h <= tol, > 0 (see Rounding below for the smallest reachable).
        max_iter: iterations at most, >= 1.
        linear_solver: ``"direct"`` — a sparse LU factorisation (SuperLU, minimum-degree ordering) per step;
            ``"cg"`` — conjugate gradients on the Hessian, preconditioned by (A + I)⁻¹ (factorised once; the spectrum
            of the preconditioned Hessian is grid-independent, see ``preconditioned_gradient_descent``), to the
            relative accuracy min(0.1, ‖R_k‖/‖R_0‖): inexact Newton; the CG steps go to ``history['inner']``.
        progress: show a tqdm progress bar.

    Returns:
        A ``PDESolveResult``; warns (RuntimeWarning) when it stops unconverged.

    Where the Hessian is not positive definite (a non-convex F, e.g. ``double_well``: detected from the signs of the
    pivots of its symmetric factorisation, Sylvester's law of inertia, when F'' < −λ_1 somewhere, or by CG meeting a
    direction of non-positive curvature) that iteration takes the preconditioned gradient direction −(A + I)⁻¹R
    instead, so that Newton is not drawn to saddle points: it converges only where the Hessian is positive definite.
    Cost per iteration: one sparse factorisation (O(N^{3/2}) in 2-D with a minimum-degree ordering), or a
    few CG steps, each one product with H and one solve with the factors of A + I.
    Rounding: R(u) is computed to about ε λ_max(A) max|u| ≈ 8dε/h² max|u| (2·10⁻¹¹ on a 256 × 256 grid, 10⁻¹⁰ on
    1000 nodes in 1-D); a ``tol`` below that cannot be reached and ends in a non-convergence warning.

    Example:
        Five iterations to ‖R‖_h <= 10⁻¹⁰ from u = 0, as on 7 or 15 nodes; the error against u* is the discretisation's,
        O(h²) (h = 1/32 here):

        >>> import hesslab as hl
        >>> problem = hl.pde.elliptic_problem(31)
        >>> result = hl.pde.newton(problem)
        >>> result.converged, result.iterations, problem.error(result.u) < problem.h**2
        (True, 5, True)
        >>> hl.pde.newton(problem, linear_solver="cg").converged
        True
    """
    u0, tol = _check_solver_input(problem, u0, tol, max_iter)
    check_choice("linear_solver", linear_solver, ("direct", "cg"))
    grid = _GridFunctions(problem)
    first_norm = [grid.norm(grid.evaluate(u0)[2])]  # CG's tolerance is relative to it (the first non-zero one)
    solve_P: list = []  # (A + I)⁻¹, factorised once when first needed

    def preconditioner():
        if not solve_P:
            solve_P.append(_factorise(problem.laplacian + sparse.identity(problem.size)).solve)
        return solve_P[0]

    lam_1 = float(laplacian_eigenvalues(problem.n, problem.dim)[0])

    def direction(u, r):
        c = grid.d2F(u)
        H = problem.laplacian + sparse.diags(c)
        inner = 0
        if linear_solver == "direct":
            factors = _factorise(H)
            # λ_min(H) >= λ_1 + min c (Weyl): positive definite unless F'' < −λ_1 somewhere; only then are the pivots
            # inspected (building U costs a quarter of the factorisation)
            positive_definite = c.min() > -lam_1 or bool((factors.U.diagonal() > 0).all())
            d = -factors.solve(r) if positive_definite else None
        else:
            first_norm[0] = first_norm[0] or grid.norm(r)  # 0 when u0 was a saddle (R = 0) left by an escape step
            solve = conjugate_gradient(lambda v: H @ v, -r, max_iter=problem.size,
                                       rtol=min(0.1, grid.norm(r) / first_norm[0]), preconditioner=preconditioner())
            d, inner = (None if solve.negative_curvature else solve.x), solve.iterations
        if d is None:  # H is not positive definite here: Newton could head for a saddle or a maximum
            d = -preconditioner()(r)
        return d, 1.0, inner

    return _descent(problem, u0, direction, tol, max_iter, f"Newton ({linear_solver})", progress)


def _factorise(M: sparse.spmatrix):
    """SuperLU factors of the sparse symmetric M (``.solve(b)``).

    A minimum-degree ordering of Mᵀ + M applied symmetrically and diagonal pivots (no row exchanges), so that
    P M Pᵀ = L U with U = D Lᵀ and the signs of diag(U) are the signs of M's eigenvalues (Sylvester's law of inertia).
    """
    return sparse_linalg.splu(sparse.csc_matrix(M), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                              options=dict(SymmetricMode=True))
