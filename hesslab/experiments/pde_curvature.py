"""Notebook 06 (PDE curvature): why curvature decides how fast a nonlinear elliptic variational PDE is solved.

Marwah, Lipton, Lu & Risteski (2022), *Neural Network Approximations of PDEs Beyond Linearity*: the solution of
−Δu + F'(u) = f minimises E(u) = ∫ ½|∇u|² + F(u) − f u, and gradient descent preconditioned by (I − Δ) converges
exponentially at a rate that does not depend on the discretisation. Each function runs one experiment and returns a
small frozen dataclass; the notebook plots them, ``tests/test_experiments_pde.py`` asserts the phenomena.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sparse
import torch
from scipy.sparse.linalg import eigsh
from torch import Tensor

from .._checks import check_choice
from ..exact import hessian
from ..operators import HessianOperator
from ..pde import (
    EllipticProblem,
    PDESolveResult,
    RitzTrainingResult,
    double_well,
    elliptic_problem,
    gradient_descent,
    laplacian_eigenvalues,
    newton,
    preconditioned_gradient_descent,
    quartic,
    ritz_energy,
    train_ritz_adam,
    train_ritz_gauss_newton,
)
from ..spectrum import SpectralDensity, spectral_density

SOLVERS = {"Newton": newton, "preconditioned GD": preconditioned_gradient_descent,
           "gradient descent": gradient_descent}


def make_problem(n: int, dim: int = 1, strength: float = 1.0, nonlinearity: str = "quartic") -> EllipticProblem:
    """The notebook's problem on an n^dim grid, with the manufactured solution u*(x) = Π_k sin(πx_k) exp(x_1).

    F = s u⁴/4 (``"quartic"``) or s (u² − 1)²/4 (``"double well"``), s = ``strength``.
    """
    check_choice("nonlinearity", nonlinearity, ("quartic", "double well"))
    F = quartic(strength) if nonlinearity == "quartic" else double_well(strength)
    return elliptic_problem(n, dim, F)


# ----------------------------------------------------------------------------------------------------------------------
# (1) iterations against grid size
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SolverScaling:
    """How the solvers scale with the grid size n.

    For each n: the iterations of each solver to reach its tolerance, their residual histories, and the condition
    number κ = λ_max/λ_min of the Hessian h^{-d}∇²E_h at the solution.
    """

    grid_sizes: list[int]
    dim: int
    tol: float
    newton_tol: float
    iterations: dict[str, list[int]]
    converged: dict[str, list[bool]]
    residuals: dict[str, list[np.ndarray]]
    seconds: dict[str, list[float]]
    condition_numbers: list[float]


def condition_number(problem: EllipticProblem, u: Tensor) -> float:
    """κ of A + diag F''(u) of ``problem`` at ``u``, from its extreme eigenvalues.

    Lanczos on the sparse matrix; shift-invert for the smallest.
    """
    H = sparse.csc_matrix(problem.hessian(u) / problem.h**problem.dim)
    largest = eigsh(H, k=1, which="LA", return_eigenvectors=False)[0]
    smallest = eigsh(H, k=1, sigma=0, which="LM", return_eigenvectors=False)[0]
    return float(largest / smallest)


def solver_scaling(grid_sizes: list[int], dim: int = 1, strength: float = 1.0, tol: float = 1e-6,
                   newton_tol: float = 1e-10, max_iter: int = 1_000_000, progress: bool = False,
                   seed: int | None = None) -> SolverScaling:
    """Run the three solvers on each grid of the quartic problem and record how they scale.

    Newton (to ``newton_tol``), preconditioned and plain gradient descent (to ``tol``, at most ``max_iter``
    iterations) from u = 0; recorded: iterations, residual histories, run times and the Hessian's κ.

    ``seed``: start instead from u0 ~ N(0, I) (the grid values), drawn from ``torch.Generator().manual_seed(seed)``
    afresh for each grid and shared by the three solvers.
    """
    names = list(SOLVERS)
    iterations: dict = {name: [] for name in names}
    converged: dict = {name: [] for name in names}
    residuals: dict = {name: [] for name in names}
    seconds: dict = {name: [] for name in names}
    kappas = []
    for n in grid_sizes:
        problem = make_problem(n, dim, strength)
        u0 = None if seed is None else torch.randn(problem.size, generator=torch.Generator().manual_seed(seed),
                                                   dtype=torch.float64)
        for name, solver in SOLVERS.items():
            start = time.perf_counter()
            if name == "Newton":
                result = solver(problem, u0, tol=newton_tol, progress=progress)
            else:
                result = solver(problem, u0, tol=tol, max_iter=max_iter, progress=progress)
            seconds[name].append(time.perf_counter() - start)
            iterations[name].append(result.iterations)
            converged[name].append(result.converged)
            residuals[name].append(result.history["error"])
            if name == "Newton":
                kappas.append(condition_number(problem, result.u))
    return SolverScaling(list(grid_sizes), dim, tol, newton_tol, iterations, converged, residuals, seconds, kappas)


# ----------------------------------------------------------------------------------------------------------------------
# (2) the spectrum of the discretised Hessian
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HessianSpectra:
    """Eigenvalues of the Hessian and of the preconditioned Hessian at the solution of each grid.

    Eigenvalues (ascending) of H = A + diag F''(u) (the Hessian divided by h^d) and of the preconditioned P⁻¹H,
    P = A + I; and the closed-form bounds of P⁻¹H's spectrum
    [min(1, (λ_1 + min c)/(λ_1 + 1)), max(1, (λ_1 + max c)/(λ_1 + 1))], c = F''(u).
    """

    grid_sizes: list[int]
    dim: int
    hessian: list[np.ndarray]
    preconditioned: list[np.ndarray]
    bounds: list[tuple[float, float]]


def hessian_spectra(grid_sizes: list[int], dim: int = 1, strength: float = 1.0) -> HessianSpectra:
    """Dense eigenvalues of H and of the pencil (H, P) at the Newton solution of each grid (small grids: O(N³))."""
    hessians, preconditioned, bounds = [], [], []
    for n in grid_sizes:
        problem = make_problem(n, dim, strength)
        u = newton(problem).u
        H = (problem.hessian(u) / problem.h**problem.dim).toarray()
        P = (problem.laplacian + sparse.identity(problem.size)).toarray()
        hessians.append(np.linalg.eigvalsh(H))
        preconditioned.append(scipy.linalg.eigh(H, P, eigvals_only=True))
        c = problem.nonlinearity.d2F(u).numpy()
        lam_1 = float(laplacian_eigenvalues(n, dim)[0])
        # x'(A + C)x / x'(A + I)x with a = x'Ax/x'x >= λ_1 and c in [min c, max c]: (a + c)/(a + 1) is monotone in a,
        # so its extremes are at a = λ_1 or a → ∞ (the limit 1) — whether c is below or above 1.
        bounds.append((min(1.0, (lam_1 + c.min()) / (lam_1 + 1)), max(1.0, (lam_1 + c.max()) / (lam_1 + 1))))
    return HessianSpectra(list(grid_sizes), dim, hessians, preconditioned, bounds)


# ----------------------------------------------------------------------------------------------------------------------
# discretisation error
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiscretisationError:
    """max_i |u_h(x_i) − u*(x_i)| of the Newton solution on each grid, and the slope of its log.

    The least-squares slope of log error against log(1/h) = log(n + 1): −2 for the second-order stencil
    (error ∝ h²).
    """

    grid_sizes: list[int]
    dim: int
    h: np.ndarray
    errors: np.ndarray
    slope: float


def discretisation_error(grid_sizes: list[int], dim: int = 1, strength: float = 1.0) -> DiscretisationError:
    """Solve the manufactured problem by Newton on each grid, to ‖R‖_h <= 10⁻⁸, and measure the error against u*.

    Since ‖(A + diag F'')⁻¹‖ <= 1/λ_1 (F'' >= 0), the solve's own error is <= 10⁻⁸/π², far below the
    discretisation errors (> 10⁻⁷ for n < 2000); a tighter tolerance would meet the rounding floor
    ε λ_max(A) max|u| ≈ 10⁻¹⁰ on grids finer than ~1000 nodes.
    """
    h, errors = [], []
    for n in grid_sizes:
        problem = make_problem(n, dim, strength)
        h.append(problem.h)
        errors.append(problem.error(newton(problem, tol=1e-8).u))
    h, errors = np.array(h), np.array(errors)
    slope = float(np.polyfit(np.log(1 / h), np.log(errors), 1)[0])
    return DiscretisationError(list(grid_sizes), dim, h, errors, slope)


@dataclass(frozen=True)
class LargeSolve:
    """One Newton solve: grid, wall-clock seconds (problem set-up excluded), iterations, final residual, error."""

    n: int
    dim: int
    linear_solver: str
    seconds: float
    iterations: int
    residual: float
    error: float
    result: PDESolveResult


def large_newton_solve(n: int = 256, dim: int = 2, strength: float = 1.0, linear_solver: str = "direct") -> LargeSolve:
    """Time Newton's method on an n^d grid (the issue's 256 × 256 target: N = 65 536 unknowns)."""
    problem = make_problem(n, dim, strength)
    start = time.perf_counter()
    result = newton(problem, linear_solver=linear_solver)
    seconds = time.perf_counter() - start
    return LargeSolve(n, dim, linear_solver, seconds, result.iterations, float(result.history["error"][-1]),
                      problem.error(result.u), result)


# ----------------------------------------------------------------------------------------------------------------------
# (3) the neural ansatz
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NeuralSweep:
    """Adam against Gauss-Newton-CG for each width m of the two-layer Deep Ritz network.

    For each m: the final L² error of Adam and of Gauss-Newton-CG from the same start, the runs themselves, and the
    number of parameters.
    """

    widths: list[int]
    dim: int
    strength: float
    points_per_axis: int
    num_parameters: list[int]
    adam_errors: list[float]
    gauss_newton_errors: list[float]
    adam_runs: list[RitzTrainingResult]
    gauss_newton_runs: list[RitzTrainingResult]


def neural_width_sweep(widths: list[int], dim: int = 1, strength: float = 1.0, points_per_axis: int = 48,
                       adam_steps: int = 1500, gauss_newton_steps: int = 40, generator: torch.Generator | None = None,
                       device=None, progress: bool = False) -> NeuralSweep:
    """Train the Deep Ritz network of each width with Adam and with Gauss-Newton-CG from the same start.

    Adam (lr 10⁻² decaying to 10⁻⁴, ``adam_steps``) and Gauss-Newton-CG (``gauss_newton_steps``, CG capped at the
    number of parameters), from one random start per width drawn from ``generator``.
    """
    problem = make_problem(7, dim, strength)  # the grid is unused: only F, f and u* matter to the network
    adam_runs, gn_runs, sizes = [], [], []
    for width in widths:
        ritz = ritz_energy(problem, width, points_per_axis, device=device)
        theta0 = ritz.initial_parameters(generator)
        adam_runs.append(train_ritz_adam(ritz, theta0, steps=adam_steps, progress=progress))
        gn_runs.append(train_ritz_gauss_newton(ritz, theta0, steps=gauss_newton_steps, cg_steps=ritz.num_parameters,
                                          progress=progress))
        sizes.append(ritz.num_parameters)
    adam_errors = [float(run.history["error"][-1]) for run in adam_runs]
    gauss_newton_errors = [float(run.history["error"][-1]) for run in gn_runs]
    return NeuralSweep(list(widths), dim, strength, points_per_axis, sizes, adam_errors, gauss_newton_errors,
                       adam_runs, gn_runs)


@dataclass(frozen=True)
class LossSpectrum:
    """The spectrum of the Hessian of the Deep Ritz loss E(θ) at a θ trained by ``method``.

    Its exact eigenvalues (ascending, dense, small nets) and the stochastic-Lanczos-quadrature density from
    ``hl.spectral_density`` (matrix-free).
    """

    method: str
    eigenvalues: Tensor
    density: SpectralDensity


def loss_spectrum(sweep: NeuralSweep, index: int = -1, num_steps: int | None = None, num_probes: int = 8,
                  generator: torch.Generator | None = None) -> list[LossSpectrum]:
    """The loss Hessian's spectrum at the end of the Adam run and of the Gauss-Newton run of ``sweep.widths[index]``.

    Dense eigenvalues by ``hl.hessian`` and the SLQ density by ``hl.spectral_density(hl.HessianOperator(E, θ), ...)``
    with ``num_steps`` Lanczos steps (default: half the parameters) and ``num_probes`` probes drawn from
    ``generator``.
    """
    ritz = ritz_energy(make_problem(7, sweep.dim, sweep.strength), sweep.widths[index], sweep.points_per_axis)
    steps = num_steps or max(2, ritz.num_parameters // 2)
    spectra = []
    for run in (sweep.adam_runs[index], sweep.gauss_newton_runs[index]):
        theta = run.theta.to(ritz.points.device)
        eigenvalues = torch.linalg.eigvalsh(hessian(ritz.energy, theta)).cpu()
        density = spectral_density(HessianOperator(ritz.energy, theta), steps, num_probes, generator=generator)
        spectra.append(LossSpectrum(run.method, eigenvalues, density))
    return spectra


# ----------------------------------------------------------------------------------------------------------------------
# the widget
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SingleSolve:
    """One solver on one problem, for the widget: the problem, the result, and the error against u*."""

    problem: EllipticProblem
    result: PDESolveResult
    error: float


def single_solve(n: int, dim: int, strength: float, solver: str, nonlinearity: str = "quartic",
                 max_iter: int = 20_000) -> SingleSolve:
    """Solve one problem with one solver (``"Newton"``, ``"preconditioned GD"``, ``"gradient descent"``).

    Gradient methods to 10⁻⁶ and at most ``max_iter`` iterations; a run that stops first says so in
    ``result.converged`` (its warning is recorded there, not printed).
    """
    check_choice("solver", solver, SOLVERS)
    problem = make_problem(n, dim, strength, nonlinearity)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = (newton(problem) if solver == "Newton"
                  else SOLVERS[solver](problem, tol=1e-6, max_iter=max_iter))
    return SingleSolve(problem, result, problem.error(result.u))
