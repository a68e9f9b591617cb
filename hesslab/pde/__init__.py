"""Nonlinear elliptic variational PDEs on the unit cube by finite differences, and a Deep Ritz network for them.

The finite-difference part: the energy as a scalar function of the grid values, its sparse exact Hessian, and three
solvers that show why curvature decides.

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

from ._problems import (
    EllipticProblem,
    Nonlinearity,
    double_well,
    elliptic_problem,
    grid_points,
    laplacian_eigenvalues,
    laplacian_matrix,
    manufactured_source,
    quartic,
    sine_solution,
)
from ._ritz import RitzEnergy, gauss_legendre, ritz_energy
from ._ritz_training import RitzTrainingResult, train_ritz_adam, train_ritz_gauss_newton
from ._solvers import (
    PDESolveResult,
    gradient_descent,
    negative_curvature,
    newton,
    preconditioned_gradient_descent,
)

__all__ = ["EllipticProblem", "Nonlinearity", "quartic", "double_well", "elliptic_problem", "grid_points",
           "laplacian_matrix", "laplacian_eigenvalues", "sine_solution", "manufactured_source",
           "PDESolveResult", "gradient_descent", "preconditioned_gradient_descent", "newton", "negative_curvature",
           "RitzEnergy", "RitzTrainingResult", "gauss_legendre", "ritz_energy", "train_ritz_adam",
           "train_ritz_gauss_newton"]
