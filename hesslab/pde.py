"""Nonlinear elliptic variational PDEs on the unit cube by finite differences: the energy as a scalar function of the
grid values, its sparse exact Hessian, and three solvers that show why curvature decides.

    E(u) = ∫_Ω ½|∇u|² + F(u) − f u dx,     Ω = [0, 1]^d (d = 1 or 2),     u = 0 on ∂Ω,

is minimised by the solution of its Euler-Lagrange equation −Δu + F'(u) = f (F(u) = u⁴/4: −Δu + u³ = f).
On the grid x_i = i h, i = 1..n per axis, h = 1/(n+1) (N = n^d unknowns; the boundary nodes hold 0):

    E_h(u)   = h^d [ Σ_edges ½ ((u_j − u_i)/h)² + Σ_i F(u_i) − f_i u_i ]     (all edges, boundary nodes included)
    ∇E_h(u)  = h^d R(u),        R(u) = A u + F'(u) − f                       (the discrete PDE residual)
    ∇²E_h(u) = h^d (A + diag F''(u)),                                         A = −Δ_h (3- or 5-point stencil)

The eigenvalues of A run from λ_1 ≈ dπ² to λ_N ≈ 4d/h², so plain gradient descent needs O(κ) = O(n²) steps. Marwah,
Lipton, Lu & Risteski (2022), *Neural Network Approximations of PDEs Beyond Linearity: A Representational Perspective*,
prove their result by a gradient flow preconditioned in a Hilbert space, (I − Δ)⁻¹ dE(u), which converges at a rate
independent of the discretisation; here it is the discrete step u ← u − η (A + I)⁻¹ R(u). Newton solves with the
exact sparse Hessian and converges quadratically.

The grid solvers run on the CPU with ``scipy.sparse`` (SuperLU factorisations); the energy ``problem.energy`` is a
torch function on any device, for every hesslab tool (``hl.HessianOperator(problem.energy, u)``).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .checks import check_count, check_flat_vector, check_real_number

EPS = float(np.finfo(np.float64).eps)


# ----------------------------------------------------------------------------------------------------------------------
# the potential F
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Nonlinearity:
    """The potential F of the Lagrangian ½|∇u|² + F(u) with its first two derivatives, elementwise on tensors.

    ``F``, ``dF``, ``d2F`` map a tensor of values u to F(u), F'(u), F''(u) of the same shape; write them with torch
    operations (they also run inside autograd, for the energy's Hessian and the neural ansatz). Build your own as
    ``Nonlinearity("name", F, dF, d2F)``; ``quartic`` and ``double_well`` are ready-made.
    """

    name: str
    F: Callable[[Tensor], Tensor]
    dF: Callable[[Tensor], Tensor]
    d2F: Callable[[Tensor], Tensor]


def quartic(strength: float = 1.0) -> Nonlinearity:
    """F(u) = s u⁴/4, F' = s u³, F'' = 3 s u² ≥ 0: the convex problem −Δu + s u³ = f."""
    s = _check_strength(strength)
    return Nonlinearity(f"{s:g}·u⁴/4", lambda u: s * u**4 / 4, lambda u: s * u**3, lambda u: 3 * s * u**2)


def double_well(strength: float = 1.0) -> Nonlinearity:
    """F(u) = s (u² − 1)²/4, F' = s (u³ − u), F'' = s (3u² − 1): a Ginzburg-Landau / Allen-Cahn double well.

    Non-convex: where |u| < 1/√3, F'' < 0, and for s > λ_1 ≈ dπ² the state u = 0 is a saddle of the energy.
    """
    s = _check_strength(strength)
    return Nonlinearity(f"{s:g}·(u²−1)²/4", lambda u: s * (u**2 - 1) ** 2 / 4, lambda u: s * (u**3 - u),
                        lambda u: s * (3 * u**2 - 1))


def _check_strength(strength) -> float:
    return check_real_number("strength", strength, 0.0, hint="It is the factor s of the potential F.")


# ----------------------------------------------------------------------------------------------------------------------
# the problem
# ----------------------------------------------------------------------------------------------------------------------
def grid_points(n: int, dim: int, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """The interior nodes of the grid, (n^d, d), in row-major order: flat index i·n + j is the node (x_i, y_j)."""
    axis = torch.arange(1, n + 1, dtype=dtype, device=device) / (n + 1)
    return torch.cartesian_prod(*([axis] * dim)).reshape(-1, dim)


def laplacian_matrix(n: int, dim: int) -> sparse.csr_matrix:
    """A = −Δ_h with zero Dirichlet values, (n^d, n^d) sparse: T = tridiag(−1, 2, −1)/h² in 1-D; in 2-D the 5-point
    stencil T ⊗ I + I ⊗ T (first factor: the x-index, which is the slow one in the row-major order)."""
    h = 1.0 / (n + 1)
    ones = np.ones(n)
    T = sparse.diags([-ones[1:], 2 * ones, -ones[1:]], [-1, 0, 1]) / h**2
    if dim == 1:
        return sparse.csr_matrix(T)
    eye = sparse.identity(n)
    return sparse.csr_matrix(sparse.kron(T, eye) + sparse.kron(eye, T))


def laplacian_eigenvalues(n: int, dim: int) -> Tensor:
    """The eigenvalues of A = −Δ_h in closed form, ascending: μ_k = (4/h²) sin²(kπh/2), k = 1..n, in 1-D and
    μ_j + μ_k in 2-D (the eigenvectors are the sine modes sin(kπx_i)). λ_1 ≈ dπ², λ_N ≈ 4d/h²."""
    h = 1.0 / (n + 1)
    mu = 4 / h**2 * torch.sin(torch.arange(1, n + 1, dtype=torch.float64) * math.pi * h / 2) ** 2
    values = mu if dim == 1 else (mu[:, None] + mu[None, :]).reshape(-1)
    return torch.sort(values).values


@dataclass(frozen=True)
class EllipticProblem:
    """−Δu + F'(u) = f on [0, 1]^d, u = 0 on the boundary, on an n (or n × n) grid. Build it with
    ``elliptic_problem``. Grid functions are flat (N,) float64 tensors, N = n^d, in the order of ``points``."""

    n: int
    dim: int
    nonlinearity: Nonlinearity
    source: Callable[[Tensor], Tensor]
    solution: Callable[[Tensor], Tensor] | None
    points: Tensor
    f: Tensor
    laplacian: sparse.csr_matrix = field(repr=False)

    @property
    def h(self) -> float:
        return 1.0 / (self.n + 1)

    @property
    def size(self) -> int:
        return self.n**self.dim

    def energy(self, u: Tensor) -> Tensor:
        """E_h(u) (see the module docstring), a 0-d tensor: a scalar function of one flat vector, for every hesslab
        tool. Computed from squared differences along each axis (zero padding = the boundary); cost O(N)."""
        U = u.reshape((self.n,) * self.dim)
        gradient_part = 0.0
        for axis in range(self.dim):
            shape = list(U.shape)
            shape[axis] = 1
            zero = U.new_zeros(shape)
            differences = torch.diff(U, dim=axis, prepend=zero, append=zero) / self.h
            gradient_part = gradient_part + 0.5 * (differences**2).sum()
        f = self.f.to(u)
        return self.h**self.dim * (gradient_part + self.nonlinearity.F(u).sum() - (f * u).sum())

    def residual(self, u: Tensor) -> Tensor:
        """R(u) = A u + F'(u) − f, the discrete PDE residual (N,); ∇E_h(u) = h^d R(u). Stencil form, O(N)."""
        U = u.reshape((self.n,) * self.dim)
        negative_laplacian = torch.zeros_like(U)
        for axis in range(self.dim):
            padded = torch.nn.functional.pad(U.movedim(axis, -1), (1, 1))
            negative_laplacian += (2 * padded[..., 1:-1] - padded[..., :-2] - padded[..., 2:]).movedim(-1, axis)
        return negative_laplacian.reshape(-1) / self.h**2 + self.nonlinearity.dF(u) - self.f.to(u)

    def residual_norm(self, u: Tensor) -> float:
        """‖R(u)‖_h = sqrt(h^d Σ_i R_i²), the grid L²(Ω) norm of the residual (the solvers' stopping measure)."""
        return math.sqrt(self.h**self.dim) * float(torch.linalg.vector_norm(self.residual(u)))

    def hessian(self, u: Tensor) -> sparse.csr_matrix:
        """The exact Hessian ∇²E_h(u) = h^d (A + diag F''(u)), (N, N) ``scipy.sparse`` CSR with at most 2d + 1
        entries a row, assembled from the stencil. Cost O(N)."""
        curvature = self.nonlinearity.d2F(u.detach().double().cpu()).numpy()
        return sparse.csr_matrix(self.h**self.dim * (self.laplacian + sparse.diags(curvature)))

    def exact(self) -> Tensor | None:
        """The manufactured solution at the grid nodes (N,), or None when the problem has none."""
        return None if self.solution is None else self.solution(self.points)

    def error(self, u: Tensor) -> float:
        """max_i |u_i − u*(x_i)|, the discretisation error of a solved grid function (needs a manufactured u*)."""
        if self.solution is None:
            raise ValueError("this problem has no exact solution; build it with "
                             "elliptic_problem(..., solution=u_star).")
        return float((u.cpu() - self.exact()).abs().max())


def elliptic_problem(n: int, dim: int = 1, nonlinearity: Nonlinearity | None = None,
                     source: Callable[[Tensor], Tensor] | float | None = None,
                     solution: Callable[[Tensor], Tensor] | str | None = "sine") -> EllipticProblem:
    """The problem −Δu + F'(u) = f on [0, 1]^d with u = 0 on the boundary, discretised on n interior nodes per axis.

    Args:
        n: interior nodes per axis, >= 3 (h = 1/(n+1)); N = n^d unknowns.
        dim: 1 or 2.
        nonlinearity: F and its derivatives, default ``quartic(1.0)`` (F = u⁴/4).
        source: f as a function of points (M, d) -> (M,), or a constant; give either ``source`` or ``solution``.
        solution: a manufactured solution u*(x), points (M, d) -> (M,), vanishing on the boundary; then
            f = −Δu* + F'(u*) is computed from it by autograd, so errors are measurable. ``"sine"`` (the default
            when no ``source`` is given) is u*(x) = Π_k sin(πx_k) · exp(x_1), smooth and not an eigenfunction.
    Returns: an ``EllipticProblem``; its ``energy`` is E_h, ``hessian`` the sparse ∇²E_h.
    """
    check_count("n", n, 3, hint="the grid needs at least 3 interior nodes per axis; use n >= 3.")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim not in (1, 2):
        raise ValueError(f"dim must be 1 or 2 (problems on [0,1] or [0,1]^2), got {dim!r}.")
    nonlinearity = quartic(1.0) if nonlinearity is None else nonlinearity
    if not isinstance(nonlinearity, Nonlinearity):
        raise TypeError(f"nonlinearity must be a hesslab Nonlinearity (quartic(s), double_well(s)), "
                        f"got {type(nonlinearity).__name__}.")
    if source is not None and solution not in (None, "sine"):
        raise ValueError("give either source= (f) or solution= (a manufactured u*, from which f is computed), "
                         "not both.")
    if source is not None:
        solution = None
    elif solution == "sine":
        solution = sine_solution
    if solution is not None:
        if not callable(solution):
            raise TypeError(f"solution must be a function of points (M, d) -> (M,) or 'sine', got {solution!r}.")
        _check_vanishes_on_boundary(solution, dim)
        source = manufactured_source(solution, nonlinearity)
    elif isinstance(source, (int, float, np.integer, np.floating)) or (isinstance(source, Tensor) and source.ndim == 0):
        value = check_real_number("source", source, hint="A constant source f is one finite real number.")
        source = lambda x, value=value: torch.full(x.shape[:1], value, dtype=x.dtype, device=x.device)  # noqa: E731
    elif not callable(source):
        raise TypeError(f"source must be a function of points (M, d) -> (M,) or a number, got {type(source).__name__}.")
    points = grid_points(n, dim)
    f = source(points)
    if not isinstance(f, Tensor) or f.shape != (n**dim,):
        raise ValueError(f"source(points) must return a tensor of shape ({n**dim},) for points of shape "
                         f"{tuple(points.shape)}, got {getattr(f, 'shape', type(f).__name__)}.")
    if not torch.isfinite(f).all():
        bad = int((~torch.isfinite(f)).sum())
        raise ValueError(f"the source f has {bad} non-finite values (NaN or inf) at the grid nodes; the PDE needs a "
                         "finite right-hand side — check the source (or manufactured solution) function.")
    return EllipticProblem(n, dim, nonlinearity, source, solution, points, f.detach().double(),
                           laplacian_matrix(n, dim))


def sine_solution(x: Tensor) -> Tensor:
    """u*(x) = Π_k sin(π x_k) · exp(x_1): zero on the boundary of [0, 1]^d, smooth, not a Laplacian eigenfunction."""
    return torch.sin(math.pi * x).prod(dim=-1) * torch.exp(x[..., 0])


def manufactured_source(solution: Callable[[Tensor], Tensor], nonlinearity: Nonlinearity) -> Callable[[Tensor], Tensor]:
    """f = −Δu* + F'(u*) as a function of points (M, d), with Δu* = Σ_k ∂²u*/∂x_k² by autograd.

    u* acts row by row (point i's value depends on row i only), so ∂/∂x of Σ_i u*(x_i) holds every point's gradient,
    and one more backward pass per axis k gives every ∂²u*/∂x_k²: 1 + d batched backward passes in all.
    """
    def source(x: Tensor) -> Tensor:
        with torch.enable_grad():
            point = x.detach().requires_grad_(True)
            values = solution(point)
            (gradient,) = torch.autograd.grad(values.sum(), point, create_graph=True)
            laplacian = sum(torch.autograd.grad(gradient[:, k].sum(), point, retain_graph=True)[0][:, k]
                            for k in range(x.shape[1]))
        return (-laplacian + nonlinearity.dF(values)).detach()

    return source


def _check_vanishes_on_boundary(solution: Callable[[Tensor], Tensor], dim: int) -> None:
    """Homogeneous Dirichlet data: u* must be 0 on ∂Ω (checked at 65 points per face, to rounding)."""
    t = torch.linspace(0, 1, 65, dtype=torch.float64)
    faces = [torch.zeros(65, 1), torch.ones(65, 1)] if dim == 1 else [
        torch.stack([torch.full_like(t, edge), t], 1) for edge in (0.0, 1.0)] + [
        torch.stack([t, torch.full_like(t, edge)], 1) for edge in (0.0, 1.0)]
    boundary = torch.cat(faces).double()
    values = solution(boundary)
    interior = solution(grid_points(7, dim))
    scale = max(1.0, float(interior.abs().max()))
    if not torch.isfinite(values).all() or float(values.abs().max()) > 1e-10 * scale:
        raise ValueError(f"the manufactured solution must vanish on the boundary (u = 0 on ∂Ω), but it reaches "
                         f"{float(values.abs().max()):.3g} there; multiply it by Π_k x_k(1 − x_k) or use sines.")


# ----------------------------------------------------------------------------------------------------------------------
# solvers
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PDESolveResult:
    """The outcome of a grid solver, with its per-iteration history (index 0 = the starting point).

    u (N,); residuals, energies, seconds: (iterations + 1,) — ‖R(u_k)‖_h, E_h(u_k), wall-clock time since the start;
    step_sizes, inner_iterations: (iterations,) — the accepted step t_k and the CG steps of a Newton-CG iteration.
    ``converged`` means ‖R(u)‖_h <= tol at a local minimiser (∇²E_h(u) positive definite), never at a saddle or a
    maximum; ``reason`` says why the run stopped.
    """

    method: str
    u: Tensor
    converged: bool
    iterations: int
    residuals: Tensor
    energies: Tensor
    step_sizes: Tensor
    inner_iterations: Tensor
    seconds: Tensor
    reason: str = ""


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
        """E_h(u)/h^d = ½ uᵀAu + Σ F(u_i) − fᵀu; the rounding error of that sum (pairwise summation: about ε log₂N
        times the sum of the magnitudes), below which two energies cannot be told apart; and R(u) = Au + F'(u) − f."""
        Au = self.A @ u
        quadratic, potential, linear = 0.5 * float(u @ Au), self.F(u), float(self.f @ u)
        value = quadratic + float(potential.sum()) - linear
        rounding = EPS * self.log_size * (abs(quadratic) + float(np.abs(potential).sum()) + abs(linear))
        return value, rounding, Au + self.dF(u) - self.f

    def norm(self, r: np.ndarray) -> float:
        return self.weight * float(np.linalg.norm(r))


def _on_numpy(g: Callable[[Tensor], Tensor]) -> Callable[[np.ndarray], np.ndarray]:
    """``g`` on numpy arrays. A polynomial written with arithmetic operators (quartic, double_well) runs on numpy
    directly — ~10x less overhead per call than a torch round trip on the small vectors of the inner loops; any other
    function goes through torch."""
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
    if not isinstance(problem, EllipticProblem):
        raise TypeError(f"problem must be an EllipticProblem (hl.elliptic_problem(...)), got {type(problem).__name__}.")
    tol = check_real_number("tol", tol, 0.0, open="low", hint="tol is the residual norm ‖R(u)‖_h to reach.")
    check_count("max_iter", max_iter, 1)
    if u0 is None:
        return np.zeros(problem.size), tol
    u0 = check_flat_vector("u0", u0)
    if u0.numel() != problem.size:
        raise ValueError(f"u0 must have {problem.size} entries (n^d grid values), got {u0.numel()}.")
    return u0.detach().double().cpu().numpy().copy(), tol


def negative_curvature(problem: EllipticProblem, u: Tensor | np.ndarray) -> tuple[float, np.ndarray] | None:
    """None when ∇²E_h(u) is positive definite (u is a strict local minimiser if R(u) = 0); else (λ_min, d): the
    smallest eigenvalue of A + diag F''(u) (<= 0) and its eigenvector d (N,), scaled to max|d_i| = 1.

    Weyl's inequality λ_min >= λ_1 + min F''(u) settles most cases for free; otherwise the signs of the pivots of a
    symmetric factorisation decide (Sylvester's law of inertia), and only for an indefinite Hessian is the eigenpair
    computed, by shift-invert Lanczos about σ = λ_1 + min F'' − 1 < λ_min (``scipy.sparse.linalg.eigsh``, a fixed
    start vector: deterministic). Cost: none, or one sparse factorisation, or a few more solves with one."""
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


def _escape(grid: _GridFunctions, u: np.ndarray, energy: float, rounding: float, r: np.ndarray, d: np.ndarray):
    """A step u + t d along a direction of negative curvature d (the sign that does not raise the energy to first
    order), t = 1, 1/2, ... (60 at most), that lowers the energy by more than its rounding; None if there is none."""
    d = -d if float(r @ d) > 0 else d
    t = 1.0
    for _ in range(60):
        trial = u + t * d
        trial_energy, trial_rounding, trial_r = grid.evaluate(trial)
        if trial_energy < energy - rounding - trial_rounding:
            return t, trial, trial_energy, trial_rounding, trial_r
        t /= 2
    return None


def _descent(problem: EllipticProblem, u0, direction, tol: float, max_iter: int, method: str,
             progress: bool) -> PDESolveResult:
    """u_{k+1} = u_k + t_k d_k until ‖R(u_k)‖_h <= tol, with ``direction(u, R) -> (d, t_initial, inner)`` and a
    backtracking (Armijo) search on the energy: halve t until E(u + t d) <= E(u) + 10⁻⁴ t Rᵀd (up to rounding).

    A point with ‖R‖_h <= tol counts as solved only where ∇²E_h is positive definite: at a saddle or a maximum
    (``negative_curvature``) the run steps along a direction of negative curvature, which lowers the energy, and
    goes on (each such step counts as an iteration); if no such step lowers the energy, it stops unconverged."""
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
            slope = float(r @ d)
            for _ in range(60):
                trial = u + t * d
                trial_energy, trial_rounding, trial_r = grid.evaluate(trial)
                if trial_energy <= energy + 1e-4 * t * slope + rounding + trial_rounding:
                    break
                t /= 2
            else:
                reason = "the line search found no decrease of the energy along the search direction"
                break  # no decrease along d even for tiny steps: stop and report non-convergence
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

    def history(values, dtype=torch.float64):
        return torch.tensor(values, dtype=dtype)

    h_d = problem.h**problem.dim
    return PDESolveResult(method, torch.from_numpy(u), bool(converged), len(steps), history(residuals),
                          h_d * history(energies), history(steps), history(inners, torch.int64), history(seconds),
                          reason)


def pde_gradient_descent(problem: EllipticProblem, u0: Tensor | None = None, tol: float = 1e-6,
                         max_iter: int = 100_000, progress: bool = False) -> PDESolveResult:
    """Plain gradient descent on E_h: u ← u − t R(u) (the gradient divided by h^d), t = 1/L_k with the curvature bound
    L_k = λ_max(A) + max_i F''(u_i)⁺ ≥ ‖A + diag F''(u_k)‖ and a backtracking search.

    Converges at the rate 1 − μ/L, μ ≈ λ_1 + min F'': about κ log(‖R_0‖/tol) iterations with κ = L/μ ≈ 4/(π²h²) ~ n².
    Cost per iteration: O(N). Returns a ``PDESolveResult``; warns when ``max_iter`` is reached first.
    """
    u0, tol = _check_solver_input(problem, u0, tol, max_iter)
    grid = _GridFunctions(problem)
    lam_max = float(laplacian_eigenvalues(problem.n, problem.dim)[-1])

    def direction(u, r):
        return -r, 1.0 / (lam_max + max(float(grid.d2F(u).max()), 0.0)), 0

    return _descent(problem, u0, direction, tol, max_iter, "gradient descent", progress)


def pde_preconditioned_gradient_descent(problem: EllipticProblem, u0: Tensor | None = None, tol: float = 1e-6,
                                        max_iter: int = 10_000, progress: bool = False) -> PDESolveResult:
    """Gradient descent preconditioned by P = −Δ_h + I (Marwah, Lipton, Lu & Risteski 2022): u ← u − t P⁻¹ R(u).

    The preconditioned Hessian P⁻¹(A + diag c), c = F''(u), has the Rayleigh quotients (a + c̄)/(a + 1) with
    a = vᵀAv/vᵀv ≥ λ_1, monotone in a, so its spectrum lies in
    [min(1, (λ_1 + min c)/(λ_1 + 1)), max(1, (λ_1 + max c)/(λ_1 + 1))], a range that does not depend on h: the
    iteration count is grid-independent. The step is t = 1 / (that upper bound) with a
    backtracking search. Cost: one sparse factorisation of P, then one pair of triangular solves per iteration.
    """
    u0, tol = _check_solver_input(problem, u0, tol, max_iter)
    grid = _GridFunctions(problem)
    lam_1 = float(laplacian_eigenvalues(problem.n, problem.dim)[0])
    solve_P = _factorise(problem.laplacian + sparse.identity(problem.size)).solve

    def direction(u, r):
        upper = max(1.0, (lam_1 + float(grid.d2F(u).max())) / (lam_1 + 1))
        return -solve_P(r), 1.0 / upper, 0

    return _descent(problem, u0, direction, tol, max_iter, "preconditioned gradient descent", progress)


def pde_newton(problem: EllipticProblem, u0: Tensor | None = None, tol: float = 1e-10, max_iter: int = 50,
               linear_solver: str = "direct", progress: bool = False) -> PDESolveResult:
    """Newton's method with the exact sparse Hessian: solve (A + diag F''(u)) d = −R(u), then u ← u + t d with t = 1
    first and backtracking on the energy (so it also converges from far away; quadratically near the solution).

    Args:
        linear_solver: ``"direct"`` — a sparse LU factorisation (SuperLU, minimum-degree ordering) per step;
            ``"cg"`` — conjugate gradients on the Hessian, preconditioned by (A + I)⁻¹ (factorised once; the spectrum
            of the preconditioned Hessian is grid-independent, see ``pde_preconditioned_gradient_descent``), to the
            relative accuracy min(0.1, ‖R_k‖/‖R_0‖): inexact Newton; the CG steps go to ``inner_iterations``.
    Where the Hessian is not positive definite (a non-convex F, e.g. ``double_well``: detected from the signs of the
    pivots of its symmetric factorisation, Sylvester's law of inertia, when F'' < −λ_1 somewhere, or by CG meeting a
    direction of non-positive curvature) that iteration takes the preconditioned gradient direction −(A + I)⁻¹R
    instead, so that Newton is not drawn to saddle points: it converges only where the Hessian is positive definite.
    Cost per iteration: one sparse factorisation (O(N^{3/2}) in 2-D with a minimum-degree ordering), or a
    few CG steps, each one product with H and one solve with the factors of A + I.
    Rounding: R(u) is computed to about ε λ_max(A) max|u| ≈ 8dε/h² max|u| (2·10⁻¹¹ on a 256 × 256 grid, 10⁻¹⁰ on
    1000 nodes in 1-D); a ``tol`` below that cannot be reached and ends in a non-convergence warning.
    """
    u0, tol = _check_solver_input(problem, u0, tol, max_iter)
    if linear_solver not in ("direct", "cg"):
        raise ValueError(f"linear_solver must be 'direct' or 'cg', got {linear_solver!r}.")
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
            d, inner, non_positive = conjugate_gradient(
                lambda v: H @ v, -r, problem.size, rtol=min(0.1, grid.norm(r) / first_norm[0]),
                preconditioner=preconditioner())
            d = None if non_positive else d
        if d is None:  # H is not positive definite here: Newton could head for a saddle or a maximum
            d = -preconditioner()(r)
        return d, 1.0, inner

    return _descent(problem, u0, direction, tol, max_iter, f"Newton ({linear_solver})", progress)


def _factorise(M: sparse.spmatrix):
    """SuperLU factors of the sparse symmetric M (``.solve(b)``): a minimum-degree ordering of Mᵀ + M applied
    symmetrically and diagonal pivots (no row exchanges), so that P M Pᵀ = L U with U = D Lᵀ and the signs of
    diag(U) are the signs of M's eigenvalues (Sylvester's law of inertia)."""
    return sparse_linalg.splu(sparse.csc_matrix(M), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                              options=dict(SymmetricMode=True))


def conjugate_gradient(matvec, b, max_steps: int, rtol: float = 1e-10, preconditioner=None):
    """Solve A x = b for symmetric A given by ``matvec`` with (preconditioned) conjugate gradients (Hestenes &
    Stiefel 1952), from x = 0, for numpy arrays or torch tensors alike.

    Stops at ‖b − A x‖ <= rtol ‖b‖, after ``max_steps`` steps, or at a direction p of non-positive curvature
    pᵀAp <= 0 (A is not positive definite): then the iterate so far is returned — a descent direction for the model
    ½xᵀAx − bᵀx — or, at the first step, the preconditioned right-hand side M⁻¹b.
    Returns (x, steps taken, whether non-positive curvature was met). Cost: one product (and one preconditioner
    solve) per step.
    """
    x = 0 * b
    r = 1 * b
    z = r if preconditioner is None else preconditioner(r)
    p = 1 * z
    rz = float(r @ z)
    stop = rtol**2 * float(b @ b)
    for step in range(max_steps):
        if float(r @ r) <= stop:
            return x, step, False
        Ap = matvec(p)
        curvature = float(p @ Ap)
        if curvature <= 0:
            return (x if step else 1 * z), step, True
        alpha = rz / curvature
        x = x + alpha * p
        r = r - alpha * Ap
        z = r if preconditioner is None else preconditioner(r)
        rz, rz_old = float(r @ z), rz
        p = z + (rz / rz_old) * p
    return x, max_steps, False
