"""pde.py: the discrete energy, its sparse exact Hessian against autograd, the manufactured solution's order of
convergence, the three solvers, and bad input. All in float64."""

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sparse
import torch

import hesslab as hl
from hesslab.pde import laplacian_matrix, manufactured_source, negative_curvature

EPS = torch.finfo(torch.float64).eps
PROBLEMS = [(1, 6, hl.pde.quartic(2.0)), (1, 5, hl.pde.double_well(3.0)), (2, 4, hl.pde.quartic(2.0)),
            (2, 3, hl.pde.double_well(3.0))]


def random_point(problem, seed=0):
    return torch.randn(problem.size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --- the energy, its gradient and its Hessian ---
@pytest.mark.parametrize("dim, n, nonlinearity", PROBLEMS)
def test_sparse_hessian_equals_autograd_dense_hessian(dim, n, nonlinearity):
    problem = hl.pde.elliptic_problem(n, dim, nonlinearity)
    u = random_point(problem)
    dense = hl.hessian(problem.energy, u)
    functorch = torch.func.hessian(problem.energy)(u)
    assembled = torch.from_numpy(problem.hessian(u).toarray())
    # every entry is a sum of at most 2d + 2 rounded terms of size <= max|H|: a few ulps of max|H|
    tolerance = 16 * EPS * float(assembled.abs().max())
    torch.testing.assert_close(dense, assembled, rtol=0, atol=tolerance)
    torch.testing.assert_close(functorch, assembled, rtol=0, atol=tolerance)
    assert problem.hessian(u).nnz <= problem.size * (2 * dim + 1)


def test_hessian_operator_matches_the_sparse_hessian_on_a_larger_grid():
    problem = hl.pde.elliptic_problem(12, 2, hl.pde.quartic(5.0))
    u = random_point(problem, 1)
    V = torch.randn(problem.size, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    H = problem.hessian(u)
    expected = torch.from_numpy(H @ V.numpy())
    got = hl.HessianOperator(problem.energy, u) @ V
    torch.testing.assert_close(got, expected, rtol=0, atol=64 * EPS * float(abs(H).max()) * V.abs().max().item())


@pytest.mark.parametrize("dim, n, nonlinearity", PROBLEMS)
def test_energy_gradient_is_the_scaled_discrete_pde_residual(dim, n, nonlinearity):
    problem = hl.pde.elliptic_problem(n, dim, nonlinearity)
    u = random_point(problem, 3)
    gradient = torch.func.grad(problem.energy)(u)
    residual = problem.residual(u)
    scale = problem.h**dim
    tolerance = 16 * EPS * scale * float(residual.abs().max() + 4 * dim * u.abs().max() / problem.h**2)
    torch.testing.assert_close(gradient, scale * residual, rtol=0, atol=tolerance)
    # the residual's stencil form against the assembled matrix: R = A u + F'(u) − f
    assembled = problem.laplacian @ u.numpy() + nonlinearity.dF(u).numpy() - problem.f.numpy()
    np.testing.assert_allclose(residual.numpy(), assembled, rtol=0, atol=tolerance / scale)


def test_energy_equals_its_quadratic_form():
    """Σ_edges ½((u_j − u_i)/h)² = ½ uᵀ A u with zero boundary values."""
    problem = hl.pde.elliptic_problem(5, 2, hl.pde.quartic(1.0))
    u = random_point(problem, 4)
    quadratic = 0.5 * u.numpy() @ (problem.laplacian @ u.numpy())
    expected = problem.h**2 * (quadratic + float(problem.nonlinearity.F(u).sum() - problem.f @ u))
    assert problem.energy(u).item() == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("dim, n", [(1, 9), (2, 6)])
def test_laplacian_eigenvalues_in_closed_form(dim, n):
    exact = np.linalg.eigvalsh(laplacian_matrix(n, dim).toarray())
    closed = hl.pde.laplacian_eigenvalues(n, dim).numpy()
    np.testing.assert_allclose(closed, exact, rtol=0, atol=64 * EPS * exact[-1])
    assert closed[0] == pytest.approx(dim * math.pi**2, rel=dim * math.pi**2 / (n + 1) ** 2)


@pytest.mark.parametrize("nonlinearity", [hl.pde.quartic(2.5), hl.pde.double_well(1.5)])
def test_nonlinearity_derivatives_match_autograd(nonlinearity):
    u = torch.linspace(-2, 2, 17, dtype=torch.float64)
    first = torch.func.vmap(torch.func.grad(nonlinearity.F))(u)
    second = torch.func.vmap(torch.func.grad(nonlinearity.dF))(u)
    torch.testing.assert_close(nonlinearity.dF(u), first)
    torch.testing.assert_close(nonlinearity.d2F(u), second)


def test_manufactured_source_in_closed_form():
    """u* = sin(πx): f = π² sin(πx) + s sin³(πx); u* = sin(πx) sin(πy): f = 2π² u* + s u*³."""
    s = 2.0
    x = torch.rand(20, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    source = manufactured_source(lambda p: torch.sin(math.pi * p[:, 0]), hl.pde.quartic(s))
    sine = torch.sin(math.pi * x[:, 0])
    torch.testing.assert_close(source(x), math.pi**2 * sine + s * sine**3)
    y = torch.rand(20, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    source = manufactured_source(lambda p: torch.sin(math.pi * p).prod(dim=1), hl.pde.quartic(s))
    product = torch.sin(math.pi * y).prod(dim=1)
    torch.testing.assert_close(source(y), 2 * math.pi**2 * product + s * product**3)


# --- the manufactured solution converges at second order ---
@pytest.mark.parametrize("dim, sizes", [(1, [15, 31, 63]), (2, [7, 15, 31])])
def test_discretisation_error_falls_at_second_order(dim, sizes):
    """The 3-/5-point stencil has truncation error (h²/12) Σ ∂⁴u*/∂x_k⁴ + O(h⁴), so the error is C h² + O(h⁴) and
    the observed order log₂(e(h)/e(h/2)) is 2 + O(h²): with h <= 1/8 and u*'s derivatives of order π^k the
    deviation is a few hundredths at most (measured: < 0.003). The Newton residual 1e-10 is far below the errors."""
    errors = []
    for n in sizes:
        problem = hl.pde.elliptic_problem(n, dim)
        result = hl.pde.newton(problem)
        assert result.converged
        errors.append(problem.error(result.u))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(orders - 2) < 0.05), orders


# --- solvers ---
def test_newton_converges_quadratically_in_a_handful_of_steps():
    problem = hl.pde.elliptic_problem(63, 1, hl.pde.quartic(3.0))
    result = hl.pde.newton(problem)
    r = result.history["error"]
    assert result.converged and result.iterations <= 10 and r[-1] <= 1e-10
    assert problem.residual_norm(result.u) == pytest.approx(r[-1], rel=1e-3)  # torch stencil vs the solver's numpy
    assert all(column.shape == (result.iterations + 1,) for column in result.history.values())
    assert np.all(result.history["step"][1:] == 1)  # full steps on this convex problem: the line search never cut one
    # quadratic: after a full step R(u + d) = ½ F'''(ξ) d² pointwise and ‖d‖ <= ‖R‖/λ_1, so r_{k+1} <= C r_k² with
    # C of the order of max|F'''| / (2 λ_1²) (up to the ratio of the max and grid norms); F''' = 6 s u here
    ratios = r[2:] / r[1:-1] ** 2
    C = 6 * 3.0 * float(result.u.abs().max()) / (2 * math.pi**4)
    assert ratios.max() < C, (ratios, C)
    assert r[-1] < 1e-3 * r[-2]


def test_newton_cg_and_direct_agree():
    """Both stop at ‖R‖_h <= tol; since R is Lipschitz-invertible with ‖(A + diag F'')⁻¹‖ <= 1/λ_1 (F'' >= 0),
    the two solutions differ by at most (r_1 + r_2)/λ_1 in the grid norm."""
    problem = hl.pde.elliptic_problem(31, 2, hl.pde.quartic(2.0))
    direct = hl.pde.newton(problem, linear_solver="direct")
    cg = hl.pde.newton(problem, linear_solver="cg")
    assert direct.converged and cg.converged and cg.history["inner"].sum() > 0
    lam_1 = float(hl.pde.laplacian_eigenvalues(31, 2)[0])
    difference = problem.h * float(torch.linalg.vector_norm(direct.u - cg.u))
    assert difference <= (direct.history["error"][-1] + cg.history["error"][-1]) / lam_1


def test_gradient_descent_iterations_are_bounded_by_the_condition_number():
    """For a μ-strongly convex, L-smooth energy with step 1/L: ‖g_k‖² <= 2L(E_k − E*) <= 2L(1 − μ/L)^k (E_0 − E*) <=
    (L/μ)(1 − μ/L)^k ‖g_0‖², so k <= (L/μ)(ln(‖g_0‖/tol) + ½ ln(L/μ)) iterations suffice, with μ = λ_1 (F'' >= 0) and
    L = λ_max(A) + max F'' along the run (bounded here by its value at the solution times 2, generously)."""
    for n in (7, 15, 31):
        problem = hl.pde.elliptic_problem(n, 1)
        result = hl.pde.gradient_descent(problem, tol=1e-6)
        eigenvalues = hl.pde.laplacian_eigenvalues(n, 1)
        solution = hl.pde.newton(problem).u
        L = float(eigenvalues[-1] + 2 * problem.nonlinearity.d2F(solution).max())
        mu = float(eigenvalues[0])
        bound = (L / mu) * (math.log(result.history["error"][0] / 1e-6) + 0.5 * math.log(L / mu))
        assert result.converged and result.iterations <= bound
        energies = result.history["energy"]
        assert np.all(np.diff(energies) <= 1e-12 * np.abs(energies[:-1]))  # monotone up to rounding


def test_preconditioned_iterations_do_not_depend_on_the_grid():
    counts = [hl.pde.preconditioned_gradient_descent(hl.pde.elliptic_problem(n, 1)).iterations for n in (15, 63, 255)]
    assert max(counts) < 2 * min(counts), counts
    plain = [hl.pde.gradient_descent(hl.pde.elliptic_problem(n, 1)).iterations for n in (7, 31)]
    assert plain[1] > 10 * plain[0], plain


@pytest.mark.parametrize("dim, n", [(1, 31), (2, 7)])
def test_preconditioned_spectrum_lies_within_its_closed_form_bounds(dim, n):
    """P⁻¹(A + diag c) has Rayleigh quotients (a + c̄)/(a + 1), a >= λ_1: the interval
    [min(1, (λ_1 + min c)/(λ_1 + 1)), max(1, (λ_1 + max c)/(λ_1 + 1))] holds them all, whatever h (the min with 1
    matters once min c > 1: the quotient tends to 1 as a grows)."""
    problem = hl.pde.elliptic_problem(n, dim, hl.pde.quartic(4.0))
    u = random_point(problem, 7)
    c = problem.nonlinearity.d2F(u).numpy()
    H = problem.laplacian.toarray() + np.diag(c)
    P = problem.laplacian.toarray() + np.eye(problem.size)
    eigenvalues = scipy.linalg.eigh(H, P, eigvals_only=True)
    lam_1 = float(hl.pde.laplacian_eigenvalues(n, dim)[0])
    low, high = min(1.0, (lam_1 + c.min()) / (lam_1 + 1)), max(1.0, (lam_1 + c.max()) / (lam_1 + 1))
    slack = 1e-12 * high
    assert eigenvalues.min() >= low - slack and eigenvalues.max() <= high + slack


@pytest.mark.parametrize("linear_solver", ["direct", "cg"])
def test_newton_on_the_double_well_reaches_a_local_minimum(linear_solver):
    """s = 30 > λ_1 ≈ π²: u = 0 is a saddle (the Hessian A − s I is indefinite there). From a small random start
    Newton's direction is not a descent direction at first; the safeguard takes the preconditioned gradient step, and
    the run ends at a point with a positive definite Hessian and a lower energy than u = 0."""
    problem = hl.pde.elliptic_problem(31, 1, hl.pde.double_well(30.0), source=0.0)
    u0 = 1e-3 * random_point(problem, 8)
    H0 = problem.hessian(torch.zeros(problem.size)).toarray()
    assert np.linalg.eigvalsh(H0)[0] < 0
    result = hl.pde.newton(problem, u0=u0, linear_solver=linear_solver)
    assert result.converged and result.history["error"][-1] <= 1e-10
    assert np.linalg.eigvalsh(problem.hessian(result.u).toarray())[0] > 0
    assert result.history["energy"][-1] < problem.energy(torch.zeros(problem.size, dtype=torch.float64))


def test_non_convergence_warns_and_is_reported():
    problem = hl.pde.elliptic_problem(31, 1)
    with pytest.warns(RuntimeWarning, match="raise max_iter"):
        result = hl.pde.gradient_descent(problem, max_iter=5)
    assert not result.converged and result.iterations == 5 and result.history["error"].shape == (6,)
    assert np.all(np.isfinite(result.history["error"])) and torch.isfinite(result.u).all()


def test_starting_point_is_used():
    problem = hl.pde.elliptic_problem(15, 1)
    solution = hl.pde.newton(problem).u
    restarted = hl.pde.newton(problem, u0=solution)
    assert restarted.iterations == 0 and restarted.converged


# --- bad input ---
@pytest.mark.parametrize("kwargs, error, message", [
    (dict(n=2), ValueError, "n must be >= 3"),
    (dict(n=5.0), TypeError, "n must be an int"),
    (dict(n=5, dim=3), ValueError, "dim must be 1 or 2"),
    (dict(n=5, dim=0), ValueError, "dim must be 1 or 2"),
    (dict(n=5, dim=1.0), ValueError, "dim must be 1 or 2"),
    (dict(n=5, source=float("nan")), ValueError, "source must be a finite number"),
    (dict(n=5, source=True), TypeError, "source must be a real number"),
    (dict(n=5, source=lambda x: 1 / (x[:, 0] - x[:, 0])), ValueError, "non-finite"),
    (dict(n=5, source=lambda x: x), ValueError, "shape"),
    (dict(n=5, source="one"), TypeError, "source must be"),
    (dict(n=5, solution=lambda x: torch.cos(x[:, 0])), ValueError, "vanish on the boundary"),
    (dict(n=5, solution=lambda x: torch.sin(math.pi * x[:, 0]), source=1.0), ValueError, "not both"),
    (dict(n=5, nonlinearity="quartic"), TypeError, "Nonlinearity"),
])
def test_bad_problem(kwargs, error, message):
    with pytest.raises(error, match=message):
        hl.pde.elliptic_problem(**kwargs)


@pytest.mark.parametrize("strength, error", [(-1.0, ValueError), (float("nan"), ValueError),
                                             (float("inf"), ValueError), ("1", TypeError), (True, TypeError)])
def test_bad_strength(strength, error):
    """A str was a ValueError before; it is a type error (like a bool, which is not a number here)."""
    with pytest.raises(error, match="strength"):
        hl.pde.quartic(strength)
    with pytest.raises(error, match="strength"):
        hl.pde.double_well(strength)


def test_numpy_scalars_and_0d_tensors_are_numbers_for_problems_and_solvers():
    reference = hl.pde.newton(hl.pde.elliptic_problem(9, 1, hl.pde.quartic(2.0), source=1.0))
    for number in (np.float64, lambda v: torch.tensor(v, dtype=torch.float64)):
        problem = hl.pde.elliptic_problem(9, 1, hl.pde.quartic(number(2.0)), source=number(1.0))
        result = hl.pde.newton(problem, tol=number(1e-10))
        assert torch.equal(result.u, reference.u)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(u0=torch.zeros(4, dtype=torch.float64)), ValueError, "u0 must have 7 entries"),
    (dict(u0=torch.full((7,), float("nan"), dtype=torch.float64)), ValueError, "non-finite"),
    (dict(u0=torch.zeros(7, 1, dtype=torch.float64)), ValueError, "flat 1-D"),
    (dict(tol=0.0), ValueError, r"tol must be a finite number in \(0"),
    (dict(tol=True), TypeError, "tol must be a real number"),
    (dict(max_iter=0), ValueError, "max_iter must be >= 1"),
])
def test_bad_solver_input(kwargs, error, message):
    problem = hl.pde.elliptic_problem(7, 1)
    for solver in (hl.pde.newton, hl.pde.gradient_descent, hl.pde.preconditioned_gradient_descent):
        with pytest.raises(error, match=message):
            solver(problem, **kwargs)


def test_bad_solver_choices():
    with pytest.raises(ValueError, match="linear_solver must be 'direct' or 'cg'"):
        hl.pde.newton(hl.pde.elliptic_problem(7, 1), linear_solver="lu")
    with pytest.raises(TypeError, match="EllipticProblem"):
        hl.pde.newton(sparse.identity(3))
    with pytest.raises(ValueError, match="no exact solution"):
        problem = hl.pde.elliptic_problem(7, 1, source=1.0)
        problem.error(hl.pde.newton(problem).u)


# --- issue 12: a saddle is never reported as solved -------------------------------------------------------------------
@pytest.mark.parametrize("solver, kwargs", [
    (hl.pde.newton, {}), (hl.pde.newton, dict(linear_solver="cg")), (hl.pde.preconditioned_gradient_descent, {}),
])
def test_a_saddle_is_not_reported_as_solved(solver, kwargs):
    """double_well(50), f = 0: u = 0 solves R(u) = 0 exactly but is a saddle (λ_min(A − 50 I) ≈ π² − 50 < 0). Before,
    pde_newton reported it "converged in 0 iterations". Now the run steps off it along the direction of negative
    curvature and ends at a local minimiser: positive definite Hessian, lower energy."""
    problem = hl.pde.elliptic_problem(50, 1, hl.pde.double_well(50.0), source=0.0)
    zero = torch.zeros(problem.size, dtype=torch.float64)
    assert problem.residual_norm(zero) == 0 and np.linalg.eigvalsh(problem.hessian(zero).toarray())[0] < 0
    result = solver(problem, **kwargs)
    assert result.converged and result.iterations > 0 and "local minimiser" in result.reason
    assert np.linalg.eigvalsh(problem.hessian(result.u).toarray())[0] > 0
    energies, residuals = result.history["energy"], result.history["error"]
    assert energies[-1] < energies[0] and residuals[-1] <= (1e-10 if solver is hl.pde.newton else 1e-6)


def test_a_saddle_that_cannot_be_left_is_reported_unconverged(monkeypatch):
    """Should no step along the negative-curvature direction lower the energy, the run stops at the saddle with
    converged=False, and the reason and the warning say it is a saddle."""
    from hesslab.pde import _solvers
    monkeypatch.setattr(_solvers, "_escape", lambda *args: None)
    problem = hl.pde.elliptic_problem(20, 1, hl.pde.double_well(50.0), source=0.0)
    with pytest.warns(RuntimeWarning, match="saddle or maximum"):
        result = hl.pde.newton(problem)
    assert not result.converged and result.iterations == 0 and "saddle" in result.reason


def test_negative_curvature_is_the_smallest_eigenpair():
    problem = hl.pde.elliptic_problem(12, 2, hl.pde.double_well(60.0), source=0.0)
    u = 0.1 * random_point(problem, 3)
    H = problem.hessian(u).toarray() / problem.h**2
    eigenvalues, eigenvectors = np.linalg.eigh(H)
    value, d = negative_curvature(problem, u)
    assert value == pytest.approx(eigenvalues[0], rel=1e-10)
    assert abs(abs(d @ eigenvectors[:, 0]) - np.linalg.norm(d)) <= 1e-8 * np.linalg.norm(d) and np.abs(d).max() == 1
    assert negative_curvature(hl.pde.elliptic_problem(12, 2, hl.pde.double_well(1.0), source=0.0), u) is None

