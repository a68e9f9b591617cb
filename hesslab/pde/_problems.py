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

    Example:
        F(u) = u²/2 makes the PDE linear, −Δu + u = f, so Newton's method solves it in one step:

        >>> import hesslab as hl
        >>> half_square = hl.pde.Nonlinearity("u²/2", lambda u: u**2 / 2, lambda u: u, lambda u: 1 + 0 * u)
        >>> result = hl.pde.newton(hl.pde.elliptic_problem(15, nonlinearity=half_square))
        >>> result.converged, result.iterations
        (True, 1)
    """

    name: str
    F: Callable[[Tensor], Tensor]
    dF: Callable[[Tensor], Tensor]
    d2F: Callable[[Tensor], Tensor]


def quartic(strength: float = 1.0) -> Nonlinearity:
    """F(u) = s u⁴/4, F' = s u³, F'' = 3 s u² ≥ 0: the convex problem −Δu + s u³ = f.

    Example:
        >>> import torch, hesslab as hl
        >>> F = hl.pde.quartic(2.0)
        >>> u = torch.tensor([1.0, 2.0], dtype=torch.float64)
        >>> F.name, F.F(u).tolist(), F.dF(u).tolist(), F.d2F(u).tolist()
        ('2·u⁴/4', [0.5, 8.0], [2.0, 16.0], [6.0, 24.0])
    """
    s = _check_strength(strength)
    return Nonlinearity(f"{s:g}·u⁴/4", lambda u: s * u**4 / 4, lambda u: s * u**3, lambda u: 3 * s * u**2)


def double_well(strength: float = 1.0) -> Nonlinearity:
    """F(u) = s (u² − 1)²/4, F' = s (u³ − u), F'' = s (3u² − 1): a Ginzburg-Landau / Allen-Cahn double well.

    Non-convex: where |u| < 1/√3, F'' < 0, and for s > λ_1 ≈ dπ² the state u = 0 is a saddle of the energy.

    Example:
        The wells u = ±1 are the minima of F; at u = 0 the curvature is −s:

        >>> import torch, hesslab as hl
        >>> F = hl.pde.double_well(20.0)
        >>> u = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
        >>> F.F(u).tolist(), F.dF(u).tolist(), F.d2F(u).tolist()
        ([0.0, 5.0, 0.0], [0.0, 0.0, 0.0], [40.0, -20.0, 40.0])
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
    """The interior nodes of the grid, (n^d, d), in row-major order: flat index i·n + j is the node (x_i, y_j).

    Example:
        >>> from hesslab.pde import grid_points
        >>> grid_points(3, 1).reshape(-1).tolist()  # h = 1/4
        [0.25, 0.5, 0.75]
        >>> grid_points(3, 2)[:4].tolist()  # the y-index runs fastest
        [[0.25, 0.25], [0.25, 0.5], [0.25, 0.75], [0.5, 0.25]]
    """
    axis = torch.arange(1, n + 1, dtype=dtype, device=device) / (n + 1)
    return torch.cartesian_prod(*([axis] * dim)).reshape(-1, dim)


def laplacian_matrix(n: int, dim: int) -> sparse.csr_matrix:
    """A = −Δ_h with zero Dirichlet values, (n^d, n^d) sparse.

    In 1-D T = tridiag(−1, 2, −1)/h²; in 2-D the 5-point stencil T ⊗ I + I ⊗ T (first factor: the x-index, which is
    the slow one in the row-major order).

    Example:
        >>> from hesslab.pde import laplacian_matrix
        >>> laplacian_matrix(3, 1).toarray().tolist()  # 1/h² = 16
        [[32.0, -16.0, 0.0], [-16.0, 32.0, -16.0], [0.0, -16.0, 32.0]]
        >>> laplacian_matrix(3, 2).shape, laplacian_matrix(3, 2).nnz  # 9 nodes, 5-point stencil cut at the boundary
        ((9, 9), 33)
    """
    h = 1.0 / (n + 1)
    ones = np.ones(n)
    T = sparse.diags([-ones[1:], 2 * ones, -ones[1:]], [-1, 0, 1]) / h**2
    if dim == 1:
        return sparse.csr_matrix(T)
    eye = sparse.identity(n)
    return sparse.csr_matrix(sparse.kron(T, eye) + sparse.kron(eye, T))


def laplacian_eigenvalues(n: int, dim: int) -> Tensor:
    """The eigenvalues of A = −Δ_h in closed form, ascending.

    They are μ_k = (4/h²) sin²(kπh/2), k = 1..n, in 1-D and μ_j + μ_k in 2-D (the eigenvectors are the sine modes
    sin(kπx_i)). λ_1 ≈ dπ², λ_N ≈ 4d/h².

    Example:
        For n = 3 (h = 1/4) the formula gives 64 sin²(kπ/8) = 32 − 16√2, 32, 32 + 16√2, the eigenvalues of the matrix:

        >>> import math, torch
        >>> from hesslab.pde import laplacian_eigenvalues, laplacian_matrix
        >>> [round(x, 12) for x in laplacian_eigenvalues(3, 1).tolist()]
        [9.37258300203, 32.0, 54.62741699797]
        >>> round(32 - 16 * math.sqrt(2), 12), round(32 + 16 * math.sqrt(2), 12)
        (9.37258300203, 54.62741699797)
        >>> dense = torch.tensor(laplacian_matrix(3, 2).toarray())
        >>> bool(torch.allclose(laplacian_eigenvalues(3, 2), torch.linalg.eigvalsh(dense), rtol=1e-12))
        True
    """
    h = 1.0 / (n + 1)
    mu = 4 / h**2 * torch.sin(torch.arange(1, n + 1, dtype=torch.float64) * math.pi * h / 2) ** 2
    values = mu if dim == 1 else (mu[:, None] + mu[None, :]).reshape(-1)
    return torch.sort(values).values


@dataclass(frozen=True)
class EllipticProblem:
    """−Δu + F'(u) = f on [0, 1]^d, u = 0 on the boundary, on an n (or n × n) grid.

    Build it with ``elliptic_problem``. Grid functions are flat (N,) float64 tensors, N = n^d, in the order of
    ``points``.

    Example:
        On 3 nodes (h = 1/4) the Hessian at u = 0, where F'' = 3u² = 0, is h·A = tridiag(−4, 8, −4):

        >>> import torch, hesslab as hl
        >>> problem = hl.pde.elliptic_problem(3)
        >>> problem.size, problem.h, problem.energy(torch.zeros(3, dtype=torch.float64)).item()
        (3, 0.25, 0.0)
        >>> problem.hessian(torch.zeros(3, dtype=torch.float64)).toarray().tolist()
        [[8.0, -4.0, 0.0], [-4.0, 8.0, -4.0], [0.0, -4.0, 8.0]]
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
        """E_h(u) (see the module docstring), a 0-d tensor: a scalar function of one flat vector, for every tool.

        Computed from squared differences along each axis (zero padding = the boundary); cost O(N).
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
        """The exact Hessian ∇²E_h(u) = h^d (A + diag F''(u)), (N, N) ``scipy.sparse`` CSR.

        It has at most 2d + 1 entries a row, assembled from the stencil. Cost O(N).
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

    Returns:
        An ``EllipticProblem``; its ``energy`` is E_h, ``hessian`` the sparse ∇²E_h.

    Raises:
        ValueError: for n < 3, a dim other than 1 or 2, both ``source`` and ``solution``, a solution that does not
            vanish on the boundary, or a source that is not finite or of the wrong shape at the grid nodes.
        TypeError: for an n that is not an int, a ``nonlinearity`` that is not a ``Nonlinearity``, or a source or
            solution that is not callable.

    Example:
        The gradient of the energy is h^d times the discrete residual, ∇E_h(u) = h^d R(u):

        >>> import torch, hesslab as hl
        >>> problem = hl.pde.elliptic_problem(7)
        >>> u = problem.exact().requires_grad_(True)
        >>> (gradient,) = torch.autograd.grad(problem.energy(u), u)
        >>> bool(torch.allclose(gradient, problem.h * problem.residual(u.detach()), rtol=1e-12, atol=1e-12))
        True
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
    """u*(x) = Π_k sin(π x_k) · exp(x_1): zero on the boundary of [0, 1]^d, smooth, not a Laplacian eigenfunction.

    Example:
        >>> import math, torch
        >>> from hesslab.pde import sine_solution
        >>> values = sine_solution(torch.tensor([[0.5, 0.5], [0.0, 0.3], [0.7, 1.0]], dtype=torch.float64))
        >>> round(values[0].item(), 12) == round(math.exp(0.5), 12), [round(x, 12) for x in values[1:].tolist()]
        (True, [0.0, 0.0])
    """
    return torch.sin(math.pi * x).prod(dim=-1) * torch.exp(x[..., 0])


def manufactured_source(solution: Callable[[Tensor], Tensor], nonlinearity: Nonlinearity) -> Callable[[Tensor], Tensor]:
    """f = −Δu* + F'(u*) as a function of points (M, d), with Δu* = Σ_k ∂²u*/∂x_k² by autograd.

    u* acts row by row (point i's value depends on row i only), so ∂/∂x of Σ_i u*(x_i) holds every point's gradient,
    and one more backward pass per axis k gives every ∂²u*/∂x_k²: 1 + d batched backward passes in all.

    Example:
        For u* = sin(πx) and F = u⁴/4, f = π² sin(πx) + sin³(πx), which is π² + 1 at x = ½:

        >>> import math, torch, hesslab as hl
        >>> source = hl.pde.manufactured_source(lambda x: torch.sin(math.pi * x[:, 0]), hl.pde.quartic())
        >>> round(source(torch.tensor([[0.5]], dtype=torch.float64)).item(), 10) == round(math.pi**2 + 1, 10)
        True
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
