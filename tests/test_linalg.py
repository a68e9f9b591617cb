"""linalg: the one conjugate gradient and the one Armijo backtracking search, against exact answers in float64."""

import math

import numpy as np
import pytest
import torch

from hesslab.linalg import CGResult, Trial, backtracking, conjugate_gradient, sufficient_decrease

EPS = torch.finfo(torch.float64).eps


def spd(eigenvalues, seed=0):
    """Q diag(eigenvalues) Qᵀ with a random orthogonal Q (float64)."""
    eigenvalues = torch.as_tensor(eigenvalues, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=generator, dtype=torch.float64))
    return (Q * eigenvalues) @ Q.T


def rhs(n, seed=1):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def model(A, b, x) -> float:
    """q(x) = ½xᵀAx − bᵀx, the quadratic CG minimises."""
    return float(0.5 * x @ (A @ x) - b @ x)


# ----------------------------------------------------------------------------------------------------------------------
# conjugate gradient
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("condition", [1e1, 1e2, 1e4])
def test_cg_matches_a_direct_solve_on_random_spd_systems(condition):
    """‖x − x*‖/‖x*‖ <= κ · (true relative residual), and the true residual is CG's recursive one (<= rtol) up to
    its rounding drift, at most about k·κ·ε after k steps (Greenbaum 1997, §7.3)."""
    n, rtol = 30, 1e-12
    A, b = spd(torch.logspace(0, math.log10(condition), n)), rhs(n)
    result = conjugate_gradient(lambda v: A @ v, b, max_iter=10 * n, rtol=rtol)
    assert isinstance(result, CGResult) and result.converged and result.reason == "converged"
    assert not result.negative_curvature
    residual = result.history["error"]
    assert isinstance(residual, np.ndarray) and residual.shape == (result.iterations + 1,)
    assert residual[0] == 1.0 and residual[-1] <= rtol
    exact = torch.linalg.solve(A, b)
    drift = result.iterations * condition * EPS
    assert (result.x - exact).norm() <= condition * (rtol + drift) * exact.norm()


def test_cg_on_the_identity_takes_one_exact_step():
    b = rhs(7)
    result = conjugate_gradient(lambda v: v, b, max_iter=5)
    assert result.converged and result.iterations == 1 and torch.equal(result.x, b)
    assert result.history["error"].tolist() == [1.0, 0.0]


def test_cg_with_three_distinct_eigenvalues_converges_in_three_steps():
    """The Krylov space of a matrix with k distinct eigenvalues has dimension <= k: CG is exact after k steps."""
    A, b = spd([1.0] * 10 + [5.0] * 10 + [20.0] * 10, seed=2), rhs(30)
    result = conjugate_gradient(lambda v: A @ v, b, max_iter=30, rtol=1e-12)
    assert result.converged and result.iterations <= 3
    torch.testing.assert_close(result.x, torch.linalg.solve(A, b), rtol=1e-11, atol=0)


def test_a_diagonal_preconditioner_solves_an_ill_conditioned_diagonal_system_in_one_step():
    """diag(10⁰ … 10⁶): plain CG needs many steps; with M = A itself (Jacobi is exact here), one."""
    d = torch.logspace(0, 6, 50, dtype=torch.float64)
    b = rhs(50)
    plain = conjugate_gradient(lambda v: d * v, b, max_iter=500, rtol=1e-10)
    jacobi = conjugate_gradient(lambda v: d * v, b, max_iter=500, rtol=1e-10, preconditioner=lambda r: r / d)
    assert jacobi.converged and jacobi.iterations == 1 and plain.iterations > 20
    torch.testing.assert_close(jacobi.x, b / d, rtol=4 * EPS, atol=0)  # one step: x = (rᵀz/zᵀAz) z, z = b/d


def test_negative_curvature_at_the_first_step_returns_the_preconditioned_right_hand_side():
    A, b = torch.diag(torch.tensor([1.0, 2.0, -5.0], dtype=torch.float64)), torch.ones(3, dtype=torch.float64)
    result = conjugate_gradient(lambda v: A @ v, b, max_iter=10)  # bᵀAb = −2 < 0
    assert result.negative_curvature and result.reason == "negative curvature" and not result.converged
    assert result.iterations == 0 and torch.equal(result.x, b) and model(A, b, result.x) < 0


def test_negative_curvature_later_returns_a_descent_direction_of_the_model():
    A, b = spd([-0.5, 1.0, 2.0, 3.0, 4.0], seed=3), torch.ones(5, dtype=torch.float64)
    result = conjugate_gradient(lambda v: A @ v, b, max_iter=20)
    assert result.negative_curvature and result.iterations >= 1
    assert torch.isfinite(result.x).all() and model(A, b, result.x) < 0


def test_projection_solves_a_singular_system_orthogonal_to_its_null_vector():
    """The path-graph Laplacian has the null vector 1; CG projected onto 1's complement solves A x = Πb with x ⊥ 1:
    the pseudo-inverse solution."""
    n = 12
    A = torch.diag(torch.full((n,), 2.0, dtype=torch.float64)) - torch.diag(torch.ones(n - 1, dtype=torch.float64), 1)
    A = A - torch.diag(torch.ones(n - 1, dtype=torch.float64), -1)
    A[0, 0] = A[-1, -1] = 1.0
    b = rhs(n) + 3.0  # not centred: a component along the null vector

    def centre(v):
        return v - v.mean()

    result = conjugate_gradient(lambda v: A @ v, b, max_iter=n, rtol=1e-12, project=centre)
    assert result.converged
    exact = torch.linalg.pinv(A) @ b
    kappa = 4.0 / (2 - 2 * math.cos(math.pi / n))  # λ_max / λ_2 of the path Laplacian
    assert (result.x - exact).norm() <= kappa * (1e-12 + n * kappa * EPS) * exact.norm()
    assert abs(result.x.sum().item()) <= n * EPS * result.x.abs().sum().item()


def test_max_norm_truncates_the_step_on_the_sphere_and_lowers_the_model():
    A, b = spd(torch.logspace(0, 2, 20), seed=4), rhs(20)
    exact = torch.linalg.solve(A, b)
    radius = 0.5 * exact.norm().item()
    result = conjugate_gradient(lambda v: A @ v, b, max_iter=100, rtol=1e-12, max_norm=radius)
    assert result.reason == "max_norm" and not result.converged and not result.negative_curvature
    assert abs(result.x.norm().item() - radius) <= 8 * EPS * radius
    assert model(A, b, result.x) < 0 and len(result.history["error"]) == result.iterations + 1
    # a bound that the solution meets changes nothing
    loose = conjugate_gradient(lambda v: A @ v, b, max_iter=100, rtol=1e-12, max_norm=2 * exact.norm().item())
    free = conjugate_gradient(lambda v: A @ v, b, max_iter=100, rtol=1e-12)
    assert loose.converged and torch.equal(loose.x, free.x)


def test_max_norm_at_negative_curvature_goes_to_the_sphere():
    A, b = torch.diag(torch.tensor([1.0, 2.0, -5.0], dtype=torch.float64)), torch.ones(3, dtype=torch.float64)
    result = conjugate_gradient(lambda v: A @ v, b, max_iter=10, max_norm=3.0)
    assert result.negative_curvature and result.reason == "max_norm"
    assert abs(result.x.norm().item() - 3.0) <= 8 * EPS * 3.0 and model(A, b, result.x) < 0


def test_cg_takes_numpy_arrays_and_agrees_with_torch():
    A, b = spd(torch.logspace(0, 3, 20), seed=5), rhs(20)
    on_torch = conjugate_gradient(lambda v: A @ v, b, max_iter=100, rtol=1e-12)
    on_numpy = conjugate_gradient(lambda v: A.numpy() @ v, b.numpy(), max_iter=100, rtol=1e-12)
    assert isinstance(on_numpy.x, np.ndarray) and on_numpy.iterations == on_torch.iterations
    np.testing.assert_allclose(on_numpy.x, on_torch.x.numpy(), rtol=1e-9)
    # the exact inverse as preconditioner: one step
    exact = conjugate_gradient(lambda v: A.numpy() @ v, b.numpy(), max_iter=100, rtol=1e-12,
                               preconditioner=lambda r: np.linalg.solve(A.numpy(), r))
    assert exact.iterations == 1 and np.allclose(exact.x, on_torch.x.numpy(), rtol=1e-9)


def test_a_zero_right_hand_side_is_solved_by_zero_without_a_product():
    products = []
    result = conjugate_gradient(lambda v: products.append(1) or v, torch.zeros(4, dtype=torch.float64), max_iter=3)
    assert result.converged and result.iterations == 0 and not products and torch.equal(result.x, torch.zeros(4))


def test_an_indefinite_preconditioner_is_a_breakdown_not_a_nan():
    A, b = spd([1.0, 2.0, 3.0]), torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    result = conjugate_gradient(lambda v: A @ v, b, max_iter=10, preconditioner=lambda r: -r)
    assert result.reason == "breakdown" and not result.converged and torch.isfinite(result.x).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(b=torch.ones(2, 2)), "b must be 1-D"),
    (dict(b=torch.tensor([1.0, math.nan])), "b has NaN or inf"),
    (dict(b=[1.0, 2.0]), "b must be a 1-D torch.Tensor or numpy.ndarray"),
    (dict(max_iter=0), "max_iter must be an int >= 1"),
    (dict(max_iter=True), "max_iter must be an int >= 1"),
    (dict(rtol=-1.0), "rtol must be a finite number >= 0"),
    (dict(max_norm=0.0), "max_norm must be a finite number > 0"),
    (dict(matvec=lambda v: torch.ones(3)), "matvec must return a Tensor of shape \\(2,\\)"),
    (dict(matvec="A"), "matvec must be a callable"),
])
def test_cg_bad_input_names_the_argument(kwargs, match):
    arguments = dict(matvec=lambda v: v, b=torch.ones(2), max_iter=5) | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        conjugate_gradient(arguments.pop("matvec"), arguments.pop("b"), **arguments)


# ----------------------------------------------------------------------------------------------------------------------
# Armijo backtracking
# ----------------------------------------------------------------------------------------------------------------------
def quadratic(slope=-1.0, curvature=1.0):
    """φ(s) − φ(0) = slope·s + ½·curvature·s², exact in binary floating point for the steps 2^-k."""
    return lambda s: Trial(change=slope * s + 0.5 * curvature * s * s, payload=s)


@pytest.mark.parametrize("benefit_of_doubt", [True, False])
def test_the_full_newton_step_on_a_quadratic_passes_exactly_when_c_is_at_most_one_half(benefit_of_doubt):
    """With its minimiser at s = 1, φ(1) − φ(0) = ½φ'(0): c = ½ − δ accepts s = 1, c = ½ + δ rejects it."""
    below = backtracking(quadratic(), -1.0, armijo=0.5 - 2**-20, benefit_of_doubt=benefit_of_doubt)
    assert below.step == 1.0 and below.trials == 1 and below.payload == 1.0 and below.reason == "sufficient decrease"
    above = backtracking(quadratic(), -1.0, armijo=0.5 + 2**-20, benefit_of_doubt=benefit_of_doubt)
    assert above.step == 0.5 and above.trials == 2  # φ(½) − φ(0) = −3/8 <= −(½ + δ)/2


def test_rounding_leniency_near_a_minimum():
    """f(x) = (x − 1)² + 1 at x = 1 + 10⁻⁹ along d = −10⁻⁹: the true decrease 10⁻¹⁸ is below f's rounding (ε), so the
    computed change is 0. With f's rounding bound and the benefit of the doubt the step is taken (what a nearly
    converged Newton run needs); without the bound, or asked for proof, it is not."""
    x, d = 1 + 1e-9, -1e-9
    f = lambda t: (t - 1) ** 2 + 1  # noqa: E731
    slope = 2 * (x - 1) * d

    def trial(rounding):
        return lambda s: Trial(change=f(x + s * d) - f(x), rounding=rounding)

    assert trial(0.0)(1.0).change == 0.0
    lenient = backtracking(trial(256 * EPS * f(x)), slope)
    assert lenient.step == 1.0 and lenient.trials == 1
    strict = backtracking(trial(256 * EPS * f(x)), slope, benefit_of_doubt=False, max_trials=10)
    unaware = backtracking(trial(0.0), slope, max_trials=10)
    assert strict.step is None and unaware.step is None and strict.reason == unaware.reason == "max_trials"


def test_an_ascent_direction_gets_no_step_and_no_trial():
    calls = []
    result = backtracking(lambda s: calls.append(s) or Trial(-1.0), 0.5)
    assert result.step is None and result.trials == 0 and result.reason == "not a descent direction" and not calls


def test_max_trials_bounds_the_evaluations():
    calls = []
    result = backtracking(lambda s: calls.append(s) or Trial(1.0), -1.0, max_trials=7, shrink=0.25)
    assert result.step is None and result.trials == 7 and result.reason == "max_trials"
    assert calls == [0.25**k for k in range(7)]
    assert backtracking(lambda s: calls.append(s) or Trial(-1.0), -1.0, max_trials=0).trials == 0 and len(calls) == 7


def test_a_non_finite_trial_is_a_failure_and_the_step_shrinks():
    result = backtracking(lambda s: Trial(math.nan) if s > 0.3 else quadratic()(s), -1.0)
    assert result.step == 0.25 and result.trials == 3


def test_refine_decides_what_the_first_evaluation_cannot_and_the_side_condition_refuses():
    """A first evaluation whose rounding bound is huge is undecided; the refined one decides. A side condition
    (constraint <= 0) that only s <= 1/4 meets makes 1/4 the step; one that no step meets is reported."""
    coarse = lambda s: Trial(change=-s / 2, rounding=1e3)  # noqa: E731
    refined = []

    def refine(s):
        refined.append(s)
        return Trial(change=-s / 2, constraint=s - 0.3, constraint_rounding=1e-3)

    result = backtracking(coarse, -1.0, benefit_of_doubt=False, refine=refine)
    assert result.step == 0.25 and refined == [1.0, 0.5, 0.25]
    never = backtracking(coarse, -1.0, benefit_of_doubt=False, max_trials=5,
                         refine=lambda s: Trial(change=-s / 2, constraint=1.0))
    assert never.step is None and never.decrease_met
    assert not backtracking(coarse, -1.0, benefit_of_doubt=False, max_trials=5).decrease_met


def test_sufficient_decrease_three_cases():
    assert sufficient_decrease(-2.0, -1.0, 0.5) and not sufficient_decrease(0.0, -1.0, 0.5)
    assert sufficient_decrease(-1.0, -1.0, 0.5) and not sufficient_decrease(-1.0, -1.0, 0.5, benefit_of_doubt=False)
    assert not sufficient_decrease(math.nan, -1.0) and not sufficient_decrease(-math.inf, -1.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(slope=math.nan), "slope must be a finite number"),
    (dict(armijo=0.0), "armijo must be a number in \\(0, 1\\)"),
    (dict(armijo=1.0), "armijo must be a number in \\(0, 1\\)"),
    (dict(shrink=1.5), "shrink must be a number in \\(0, 1\\)"),
    (dict(max_trials=-1), "max_trials must be an int >= 0"),
    (dict(initial=0.0), "initial must be a finite number > 0"),
    (dict(trial=None), "trial \\(and refine\\) must be callables"),
])
def test_backtracking_bad_input_names_the_argument(kwargs, match):
    arguments = dict(trial=quadratic(), slope=-1.0) | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        backtracking(arguments.pop("trial"), arguments.pop("slope"), **arguments)
