"""Elliptic variational problems on the unit cube: the potential F, the grid, the energy and its sparse Hessian."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sparse
import torch
from torch import Tensor

from .._checks import check_callable, check_choice, check_count, check_instance, check_real_number

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
    stencil T ⊗ I + I ⊗ T (first factor: the x-index, which is the slow one in the row-major order).
    """
    h = 1.0 / (n + 1)
    ones = np.ones(n)
    T = sparse.diags([-ones[1:], 2 * ones, -ones[1:]], [-1, 0, 1]) / h**2
    if dim == 1:
        return sparse.csr_matrix(T)
    eye = sparse.identity(n)
    return sparse.csr_matrix(sparse.kron(T, eye) + sparse.kron(eye, T))


def laplacian_eigenvalues(n: int, dim: int) -> Tensor:
    """The eigenvalues of A = −Δ_h in closed form, ascending: μ_k = (4/h²) sin²(kπh/2), k = 1..n, in 1-D and
    μ_j + μ_k in 2-D (the eigenvectors are the sine modes sin(kπx_i)). λ_1 ≈ dπ², λ_N ≈ 4d/h².
    """
    h = 1.0 / (n + 1)
    mu = 4 / h**2 * torch.sin(torch.arange(1, n + 1, dtype=torch.float64) * math.pi * h / 2) ** 2
    values = mu if dim == 1 else (mu[:, None] + mu[None, :]).reshape(-1)
    return torch.sort(values).values


@dataclass(frozen=True)
class EllipticProblem:
    """−Δu + F'(u) = f on [0, 1]^d, u = 0 on the boundary, on an n (or n × n) grid. Build it with
    ``elliptic_problem``. Grid functions are flat (N,) float64 tensors, N = n^d, in the order of ``points``.
    """

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
        tool. Computed from squared differences along each axis (zero padding = the boundary); cost O(N).
        """
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
        entries a row, assembled from the stencil. Cost O(N).
        """
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
    check_choice("dim", dim, (1, 2), hint="Problems live on [0,1] or [0,1]^2.")
    nonlinearity = quartic(1.0) if nonlinearity is None else nonlinearity
    check_instance("nonlinearity", nonlinearity, Nonlinearity, hint="Make one with quartic(s) or double_well(s).")
    if source is not None and solution not in (None, "sine"):
        raise ValueError("give either source= (f) or solution= (a manufactured u*, from which f is computed), "
                         "not both.")
    if source is not None:
        solution = None
    elif solution == "sine":
        solution = sine_solution
    if solution is not None:
        check_callable("solution", solution, "of points (M, d) -> (M,)", hint="Or pass solution='sine'.")
        _check_vanishes_on_boundary(solution, dim)
        source = manufactured_source(solution, nonlinearity)
    elif isinstance(source, (int, float, np.integer, np.floating)) or (isinstance(source, Tensor) and source.ndim == 0):
        value = check_real_number("source", source, hint="A constant source f is one finite real number.")
        source = lambda x, value=value: torch.full(x.shape[:1], value, dtype=x.dtype, device=x.device)  # noqa: E731
    else:
        check_callable("source", source, "of points (M, d) -> (M,)", hint="Or pass a number (a constant source).")
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
