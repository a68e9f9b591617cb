"""newton, damped_newton and lazy_newton against exact answers, independent implementations and independent counts."""

import math
import warnings

import numpy as np
import pytest
import scipy.optimize
import torch
from helpers import random_symmetric

import hesslab as hl
from hesslab.experiments.lazy_newton import logistic_problem, starting_point

EPS = torch.finfo(torch.float64).eps
from hesslab.optimize import _cost, _lazy, _newton  # noqa: E402  the private modules, for counting and patching

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems: see conftest.one_thread


@pytest.fixture(scope="module")
def logistic():
    return logistic_problem("breast_cancer", mu=1e-3)


def quadratic_problem(d=12, seed=0):
    """f(x) = ½xᵀAx − bᵀx with A's eigenvalues in [1, 10]: the minimiser is A⁻¹b."""
    A = random_symmetric(d, seed=seed, eigenvalues=torch.linspace(1.0, 10.0, d, dtype=torch.float64))
    b = torch.randn(d, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    return (lambda x: 0.5 * x @ A @ x - b @ x), A, b


# ----------------------------------------------------------------------------------------------------------------------
# newton
# ----------------------------------------------------------------------------------------------------------------------
def test_newton_minimises_a_strictly_convex_quadratic_in_one_step():
    f, A, b = quadratic_problem()
    result = hl.optimize.newton(f, torch.full((12,), 5.0))
    x_star = torch.linalg.solve(A, b)
    assert result.converged and result.iterations == 1 and result.history["stepsize"][1] == 1.0
    # the Cholesky solve is backward stable: ‖x − x*‖ <= κ(A)·d·eps·‖x*‖ with κ(A) = 10
    assert (result.x - x_star).norm() <= 10 * 12 * EPS * x_star.norm() * 10
    counts = ("gradients", "hessians", "factorizations", "solves")
    assert tuple(result.history[name][-1] for name in counts) == (2, 1, 1, 1)


def order_estimates(errors):
    """q_k = log(e_{k+1}/e_k) / log(e_k/e_{k−1}); exactly 2 when e_{k+1} = C e_k² for any constant C."""
    e = np.asarray(errors)
    return np.log(e[2:] / e[1:-1]) / np.log(e[1:-1] / e[:-2])


@pytest.mark.parametrize("solver", ["newton", "damped_newton"])
def test_quadratic_convergence_on_logistic_regression(logistic, solver):
    """With C_k = g_{k+1}/g_k² (g = ‖∇f‖), the order estimate is exactly q_k = 2 + log(C_k/C_{k−1}) / log(g_k/g_{k−1}):
    2 when C_k settles (quadratic), drifting to 1 for linear and growing C_k for merely superlinear convergence.
    In the local regime g < 3e-3 (C·g < 0.15 here, C ≈ 45) C_k moves by under 25% per step while |log(g_k/g_{k−1})|
    >= 2.3, so |q − 2| <= log(1.25)/2.3 < 0.1. Gradients below 1e-13 are at the rounding level and left out."""
    run = getattr(hl.optimize, solver)
    result = run(logistic.f, starting_point(logistic, "zero"), tol=1e-13)
    g = result.history["error"]
    local = g[(g < 3e-3) & (g > 1e-13)]
    assert local.size >= 3, f"too few iterates in the local regime: {g}"
    q = order_estimates(local)
    print(solver, "gradient norms", local, "order estimates", q)
    assert np.all(np.abs(q - 2) < 0.1)


def test_newton_levenberg_marquardt_damping_is_recorded_and_converges():
    f, A, b = quadratic_problem()
    result = hl.optimize.newton(f, torch.zeros(12), damping=0.5, tol=1e-10)
    assert result.converged and np.all(result.history["regularization"] == 0.5)
    # the damped step contracts the error by max_i λ/(λ_i + λ) = 0.5/1.5 per iteration on this quadratic
    assert result.iterations <= math.ceil(math.log(1e-10 / b.norm().item()) / math.log(1 / 3)) + 2


def test_newton_shifts_an_indefinite_hessian_and_says_so():
    """f(x) = x₁⁴/4 − x₁²/2 + x₂²/2 has ∇²f = diag(3x₁² − 1, 1), indefinite at x₁ = 0.1; the shifted step is a descent
    direction and Newton reaches a minimiser (±1, 0) — no NaN anywhere."""
    f = lambda x: x[0] ** 4 / 4 - x[0] ** 2 / 2 + x[1] ** 2 / 2  # noqa: E731
    with pytest.warns(UserWarning, match="not positive definite"):
        result = hl.optimize.newton(f, torch.tensor([0.1, 1.0]), tol=1e-12)
    assert result.converged and result.shifted >= 1 and result.history["regularization"][1] > 0
    torch.testing.assert_close(result.x.abs(), torch.tensor([1.0, 0.0]), atol=1e-10, rtol=0)
    assert np.all(np.isfinite(result.history["f"]))


def test_pure_newton_diverges_far_away_and_reports_it(logistic):
    with pytest.warns(RuntimeWarning, match="did not converge"):
        result = hl.optimize.newton(logistic.f, starting_point(logistic, "far"), line_search=False, max_iter=8)
    assert not result.converged and "max_iter" in result.reason
    assert result.f > result.history["f"][0]  # worse than where it started


# ----------------------------------------------------------------------------------------------------------------------
# damped_newton
# ----------------------------------------------------------------------------------------------------------------------
def test_aicn_stepsize_minimises_the_cubic_bound():
    for L, G in [(0.1, 0.3), (1.0, 1.0), (10.0, 5.0), (1e3, 1e-2)]:
        bound = lambda a: -a * G**2 + a**2 * G**2 / 2 + L * a**3 * G**3 / 6  # noqa: E731
        best = scipy.optimize.minimize_scalar(bound, bounds=(0, 1), method="bounded", options={"xatol": 1e-12}).x
        assert abs(hl.optimize.newton_stepsize(L, G, "aicn") - best) < 1e-8
    assert hl.optimize.newton_stepsize(1.0, 0.0, "aicn") == 1.0
    assert hl.optimize.newton_stepsize(1.0, 0.0, "holder", 4.0) == 1.0
    assert 0 < hl.optimize.newton_stepsize(5.0, 2.0, "holder", 3.0) == pytest.approx(1 / (1 + math.sqrt(10.0)))


@pytest.mark.parametrize("schedule", ["aicn", "holder"])
def test_damped_newton_is_affine_invariant(logistic, schedule):
    """g(y) = f(Ay): damped Newton's iterates are y_k = A⁻¹x_k, so f values, stepsizes and L's agree; rounding only."""
    A = torch.eye(31) + 0.3 * torch.randn(31, 31, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x0 = starting_point(logistic, "far")
    original = hl.optimize.damped_newton(logistic.f, x0, schedule=schedule, tol=1e-9)
    transformed = hl.optimize.damped_newton(lambda y: logistic.f(A @ y), torch.linalg.solve(A, x0), schedule=schedule,
                                   tol=1e-9 / torch.linalg.matrix_norm(A, 2).item())
    assert original.converged and transformed.converged
    n = min(original.iterations, transformed.iterations) + 1
    for column, rel in (("f", 1e-9), ("stepsize", 1e-6)):
        np.testing.assert_allclose(original.history[column][:n], transformed.history[column][:n], rtol=rel, atol=1e-12)
    torch.testing.assert_close(A @ transformed.x, original.x, atol=1e-6, rtol=0)


def test_damped_newton_converges_from_far_where_pure_newton_does_not(logistic):
    x0 = starting_point(logistic, "far")
    result = hl.optimize.damped_newton(logistic.f, x0, tol=1e-9)
    assert result.converged and np.all(np.diff(result.history["f"]) <= 0)  # monotone: the backtracking test
    fixed = hl.optimize.damped_newton(logistic.f, x0, smoothness=result.history["regularization"].max(), tol=1e-9)
    assert fixed.converged


def test_damped_newton_stops_at_an_indefinite_hessian():
    with pytest.warns(RuntimeWarning, match="not positive definite"):
        result = hl.optimize.damped_newton(lambda x: x[0] ** 4 / 4 - x[0] ** 2 / 2 + x[1] ** 2,
                                           torch.tensor([0.1, 1.0]))
    assert not result.converged and result.iterations == 0


# ----------------------------------------------------------------------------------------------------------------------
# the cubic subproblem
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("M", [0.1, 10.0])
def test_cubic_step_satisfies_the_global_optimality_conditions(seed, M):
    """h minimises ⟨g,h⟩ + ½hᵀHh + (M/6)‖h‖³ globally iff (H + (M/2)‖h‖ I) h = −g and H + (M/2)‖h‖ I ⪰ 0
    (Nesterov & Polyak 2006, Theorem 10). Residuals at rounding level: d·eps·(‖H‖‖h‖ + ‖g‖)·10³."""
    H = random_symmetric(20, seed=seed)  # indefinite: standard normal eigenvalues
    g = torch.randn(20, generator=torch.Generator().manual_seed(100 + seed), dtype=torch.float64)
    lam, U = torch.linalg.eigh(H)
    h = hl.optimize.cubic_step(lam, U, g, M)
    mu = M / 2 * h.norm()
    scale = 20 * EPS * 1e3 * (torch.linalg.matrix_norm(H, 2) * h.norm() + g.norm())
    assert (H @ h + mu * h + g).norm() <= scale
    assert lam.min() + mu >= -scale


def test_cubic_step_hard_case():
    """g orthogonal to the eigenvector of λ_min = −1: the minimiser has ‖h‖ = 2/M and a component along e₁."""
    H = torch.diag(torch.tensor([-1.0, 2.0, 3.0]))
    g = torch.tensor([0.0, 0.1, 0.1])
    lam, U = torch.linalg.eigh(H)
    M = 1.0
    h = hl.optimize.cubic_step(lam, U, g, M)
    assert h.norm().item() == pytest.approx(2 / M, rel=1e-12) and abs(h[0].item()) > 1
    torch.testing.assert_close(H @ h + M / 2 * h.norm() * h, -g, atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# lazy_newton with m = 1 is its non-lazy counterpart
# ----------------------------------------------------------------------------------------------------------------------
def reference_cubic_step(H, g, M):
    """Non-lazy, no eigendecomposition: bisection on r for ‖(H + (Mr/2) I)⁻¹ g‖ = r, each trial a dense solve."""
    low = max(0.0, -2 * torch.linalg.eigvalsh(H)[0].item() / M)
    high = low + 1.0
    step = lambda r: -torch.linalg.solve(H + M * r / 2 * torch.eye(len(g)), g)  # noqa: E731
    while step(high).norm() > high:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if step(mid).norm() > mid else (low, mid)
    return step(high)


def reference_regularized_step(H, g, M):
    return -torch.linalg.solve(H + math.sqrt(M * g.norm()) * torch.eye(len(g)), g)


def reference_newton(f, x0, kind, M, adaptive, steps):
    """Cubic Newton (Nesterov & Polyak 2006) / regularised Newton (Mishchenko 2023), Hessian at every step, with the
    same doubling/halving search written out: accept when f(x) − f(x⁺) >= (M/12)r³ (cubic) or ½λr² (quadratic)."""
    x, fs, grads = x0.clone(), [], []
    for k in range(steps + 1):
        g = torch.func.grad(f)(x)
        fs.append(f(x).item())
        grads.append(g.norm().item())
        if k == steps:
            break
        H = torch.func.hessian(f)(x)
        M = M / 2 if adaptive and k > 0 else M
        while True:
            if kind == "cubic":
                h = reference_cubic_step(H, g, M)
                promised = M / 12 * h.norm().item() ** 3
            else:
                h = reference_regularized_step(H, g, M)
                promised = 0.5 * math.sqrt(M * g.norm().item()) * h.norm().item() ** 2
            if not adaptive or f(x).item() - f(x + h).item() >= promised:
                break
            M *= 2
        x = x + h
    return x, np.array(fs), np.array(grads)


@pytest.mark.parametrize("kind, nonconvex", [("cubic", False), ("quadratic", False), ("cubic", True)])
@pytest.mark.parametrize("adaptive", [False, True])
def test_lazy_newton_with_m_1_is_the_non_lazy_method_iterate_by_iterate(kind, nonconvex, adaptive):
    """12 steps from the same start, compared step by step (f, ‖∇f‖) and at the end (x)."""
    problem = logistic_problem("breast_cancer", mu=1e-3, nonconvex=nonconvex)
    x0 = starting_point(problem, "ones")
    with warnings.catch_warnings():  # 12 steps need not reach tol; that is not what is compared
        warnings.simplefilter("ignore", RuntimeWarning)
        lazy = hl.optimize.lazy_newton(problem.f, x0, update_every=1, regularization=kind, M=0.05, adaptive=adaptive,
                              tol=0.0, max_iter=12)
    x_ref, f_ref, g_ref = reference_newton(problem.f, x0, kind, 0.05, adaptive, steps=12)
    assert lazy.iterations + 1 == len(f_ref) == 13
    # the two subproblem solvers agree to ~1e-14 relative; the Newton map contracts, so differences stay that small
    np.testing.assert_allclose(lazy.history["f"], f_ref, rtol=1e-12, atol=0)
    np.testing.assert_allclose(lazy.history["error"], g_ref, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(lazy.x, x_ref, atol=1e-10, rtol=0)
    assert lazy.history["hessians"][-1] == 12  # one Hessian per step when m = 1


def test_lazy_newton_reuses_each_hessian_for_m_steps(logistic):
    result = hl.optimize.lazy_newton(logistic.f, starting_point(logistic, "ones"), update_every=7, tol=1e-9)
    assert result.converged
    assert result.history["hessians"][-1] == math.ceil(result.iterations / 7)
    assert result.history["factorizations"][-1] == result.history["hessians"][-1]  # one eigendecomposition per snapshot


# ----------------------------------------------------------------------------------------------------------------------
# cost accounting against independent counts
# ----------------------------------------------------------------------------------------------------------------------
class Counter:
    def __init__(self, function):
        self.function, self.calls = function, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.function(*args, **kwargs)


@pytest.mark.parametrize("solver, kwargs", [
    ("newton", dict(start="far")),
    ("newton", dict(start="far", line_search=False, max_iter=3)),
    ("damped_newton", dict(start="far")),
    ("lazy_newton", dict(start="ones", update_every=5)),
    ("lazy_newton", dict(start="ones", update_every=5, regularization="quadratic")),
])
def test_cost_accounting_matches_independently_counted_evaluations(logistic, monkeypatch, solver, kwargs):
    """Count calls of f, of the Hessian, of every factorisation and every solve from outside; the last record's
    counts must equal them and its cost must be gradients + d·hessians + (d³·factorisations + d²·solves)/F."""
    f = Counter(logistic.f)
    hessians = Counter(_cost.hessian)
    monkeypatch.setattr(_cost, "hessian", hessians)
    factorizations = {name: Counter(getattr(torch.linalg, name)) for name in ("eigh", "cholesky_ex")}
    for name, counter in factorizations.items():
        monkeypatch.setattr(torch.linalg, name, counter)
    solves = {name: Counter(getattr(_lazy, name)) for name in ("cubic_step", "regularized_step")}
    for name, counter in solves.items():
        monkeypatch.setattr(_lazy, name, counter)
    cholesky_solves = Counter(torch.cholesky_solve)
    monkeypatch.setattr(torch, "cholesky_solve", cholesky_solves)

    x0 = starting_point(logistic, kwargs.pop("start"))
    F, d = 1234.0, logistic.d
    with pytest.warns(RuntimeWarning) if kwargs.get("line_search") is False else _no_warning():
        result = getattr(hl.optimize, solver)(f, x0, cost_model=hl.optimize.CostModel(flops_per_gradient=F), **kwargs)
    last = {name: values[-1] for name, values in result.history.items()}
    assert last["hessians"] == hessians.calls >= 1
    assert last["gradients"] == f.calls - hessians.calls  # each dense Hessian evaluates f once, each gradient once
    assert last["factorizations"] == sum(c.calls for c in factorizations.values())
    assert last["solves"] == cholesky_solves.calls + sum(c.calls for c in solves.values())
    expected = last["gradients"] + d * last["hessians"] + (d**3 * last["factorizations"] + d**2 * last["solves"]) / F
    assert last["cost"] == pytest.approx(expected, rel=1e-14)
    assert np.all(np.diff(result.history["cost"]) > 0)


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_cost_model_defaults_and_parameters():
    default = hl.optimize.CostModel()
    assert default.total(10, gradients=3, hessians=2, factorizations=1, solves=4) == 3 + 20 + (1000 + 400) / 100
    custom = hl.optimize.CostModel(gradient=2.0, hessian=5.0, flops_per_gradient=1000.0)
    assert custom.total(10, 1, 1, 1, 1) == 2.0 + 5.0 + 1100 / 1000 * 2.0
    with pytest.raises(ValueError, match="flops_per_gradient"):
        hl.optimize.CostModel(flops_per_gradient=0)
    with pytest.raises(ValueError, match="hessian"):
        hl.optimize.CostModel(hessian=-1.0)


# ----------------------------------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------------------------------
square = lambda x: (x**2).sum()  # noqa: E731


@pytest.mark.parametrize("solver", ["newton", "damped_newton", "lazy_newton"])
@pytest.mark.parametrize("f, x0, error, message", [
    (lambda x: x**2, torch.ones(3), ValueError, "must return a scalar"),
    (lambda x: 1.0, torch.ones(3), TypeError, "must return a torch.Tensor"),
    ("f", torch.ones(3), TypeError, "f must be a callable"),
    (square, torch.ones(2, 3), ValueError, "x0 must be a flat 1-D vector"),
    (square, torch.ones(3, dtype=torch.int64), TypeError, "floating dtype"),
    (square, torch.tensor([1.0, float("nan")]), ValueError, "non-finite"),
    (lambda x: (x**2).sum() / 0.0, torch.ones(3), ValueError, r"f\(x0\) is not finite"),
    (lambda x: x.abs().sqrt().sum(), torch.zeros(3), ValueError, "gradient of f at x0 has non-finite"),
    (lambda x: torch.tensor(1.0), torch.ones(3), ValueError, "does not depend on x"),
])
def test_bad_function_or_start(solver, f, x0, error, message):
    with pytest.raises(error, match=message):
        getattr(hl.optimize, solver)(f, x0)


@pytest.mark.parametrize("solver, kwargs, error, message", [
    ("newton", dict(tol=-1.0), ValueError, "tol"),
    ("newton", dict(max_iter=2.5), TypeError, "max_iter"),
    ("newton", dict(damping=-1.0), ValueError, "damping"),
    ("newton", dict(backtrack=1.0), ValueError, "backtrack"),
    ("newton", dict(cost_model="cheap"), TypeError, "cost_model"),
    ("damped_newton", dict(schedule="fast"), ValueError, "schedule must be 'aicn' or 'holder'"),
    ("damped_newton", dict(schedule="holder", degree=5.0), ValueError, "degree"),
    ("damped_newton", dict(smoothness=0.0), ValueError, "smoothness"),
    ("lazy_newton", dict(update_every=0), ValueError, "update_every"),
    ("lazy_newton", dict(update_every=2.0), TypeError, "update_every"),
    ("lazy_newton", dict(regularization="cubicc"), ValueError, "regularization must be 'cubic' or 'quadratic'"),
    ("lazy_newton", dict(M=0.0), ValueError, "M must be"),
])
def test_bad_options(solver, kwargs, error, message):
    with pytest.raises(error, match=message):
        getattr(hl.optimize, solver)(square, torch.ones(3), **kwargs)


def test_quadratic_regularisation_on_a_non_convex_function_is_reported_not_nan():
    """With fixed M, λ = √(M‖g‖) can be too small for ∇²f + λI ≻ 0 on a non-convex f: the run stops and says why."""
    f = lambda x: x[0] ** 4 / 4 - x[0] ** 2 / 2 + x[1] ** 2 / 2  # noqa: E731
    with pytest.warns(RuntimeWarning, match="quadratic regularisation needs a convex f"):
        result = hl.optimize.lazy_newton(f, torch.tensor([0.1, 1.0]), regularization="quadratic", M=1e-3,
                                         adaptive=False)
    assert not result.converged and np.all(np.isfinite(result.history["f"]))
    adaptive = hl.optimize.lazy_newton(f, torch.tensor([0.1, 1.0]), regularization="quadratic", M=1e-3, tol=1e-10)
    assert adaptive.converged  # doubling M makes λ large enough


# ----------------------------------------------------------------------------------------------------------------------
# non-finite curvature is an error, every loop is bounded, numbers are numbers (issue 12)
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["newton", "damped_newton", "lazy_newton"])
def test_a_non_finite_hessian_is_an_error_not_a_hang(solver):
    """f = ‖x − 1‖² + 0.1‖x‖ is finite with a finite (sub)gradient at 0, but its Hessian there is all NaN (the norm is
    not twice differentiable at 0). Before, newton looped forever shifting a NaN matrix."""
    f = lambda x: ((x - 1) ** 2).sum() + 0.1 * x.norm()  # noqa: E731
    with pytest.raises(ValueError, match="∇²f is not finite at this point"):  # hl.hessian refuses it too
        hl.hessian(f, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="∇²f is not finite at this point.*not twice differentiable"):
        getattr(hl.optimize, solver)(f, torch.zeros(3, dtype=torch.float64))


def test_a_non_finite_gradient_at_an_iterate_is_an_error():
    """f = ½‖x‖² + 0·Σ√|x_i| has ∇²f = I away from 0, so the first Newton step from x0 = 1 lands exactly on 0, where f
    is finite but the autograd gradient is 0·∞ = NaN: a ValueError, not a "diverged" result."""
    f = lambda x: 0.5 * (x**2).sum() + 0.0 * x.abs().sqrt().sum()  # noqa: E731
    with pytest.raises(ValueError, match="gradient of f at this point has non-finite entries.*not differentiable"):
        hl.optimize.newton(f, torch.ones(2, dtype=torch.float64), line_search=False)


def test_the_shift_loop_is_bounded():
    """A NaN matrix is never positive definite; a finite one needing a shift 10³⁰ times its diagonal is too far.
    Both end in a ValueError after MAX_SHIFTS + 1 factorisations (before: an endless loop for NaN)."""
    oracle = _cost._Oracle(lambda x: (x**2).sum(), torch.ones(2, dtype=torch.float64), hl.optimize.CostModel())
    for H in (torch.full((2, 2), math.nan, dtype=torch.float64),
              torch.tensor([[1e-20, 1e10], [1e10, 1e-20]], dtype=torch.float64)):
        oracle.factorizations = 0
        with pytest.raises(ValueError, match="not positive definite for any shift"):
            _newton._shifted_cholesky(H, 0.0, oracle)
        assert oracle.factorizations == _newton.MAX_SHIFTS + 1
    # a zero diagonal is scaled by the largest entry: [[0, 1], [1, 0]] + τI is positive definite for τ > 1
    factor, shift = _newton._shifted_cholesky(torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64), 0.0, oracle)
    assert 1.0 < shift <= 2.048


@pytest.mark.parametrize("solver, kwargs", [
    ("newton", dict(tol=np.float64(1e-9), damping=torch.tensor(1e-3, dtype=torch.float64),
                    armijo=np.float32(1e-4), backtrack=torch.tensor(0.5))),
    ("damped_newton", dict(tol=torch.tensor(1e-9), smoothness=np.float64(1.0), degree=np.int64(3),
                           schedule="holder")),
    ("lazy_newton", dict(tol=np.float64(1e-9), M=torch.tensor(1.0, dtype=torch.float64))),
])
def test_numpy_scalars_and_0d_tensors_are_numbers(solver, kwargs):
    f, A, b = quadratic_problem(d=5)
    floats = {key: (float(value) if not isinstance(value, str) else value) for key, value in kwargs.items()}
    x0 = torch.zeros(5, dtype=torch.float64)
    assert torch.equal(getattr(hl.optimize, solver)(f, x0, **kwargs).x, getattr(hl.optimize, solver)(f, x0, **floats).x)


@pytest.mark.parametrize("solver, kwargs, error, message", [
    ("newton", dict(tol=True), TypeError, "tol must be a real number"),
    ("newton", dict(damping=False), TypeError, "damping must be a real number"),
    ("newton", dict(armijo=1.0), ValueError, r"armijo must be a finite number in \(0, 1\)"),
    ("newton", dict(armijo=2.0), ValueError, "armijo"),
    ("newton", dict(armijo=0.0), ValueError, "armijo"),
    ("newton", dict(tol=1j), TypeError, "tol must be a real number"),
    ("newton", dict(tol=torch.ones(2)), TypeError, "tol must be a real number"),
    ("newton", dict(tol=math.nan), ValueError, "tol must be a finite number"),
    ("damped_newton", dict(degree=True), TypeError, "degree"),
    ("lazy_newton", dict(M=np.bool_(True)), TypeError, "M must be a real number"),
])
def test_bools_and_out_of_range_numbers_are_refused(solver, kwargs, error, message):
    with pytest.raises(error, match=message):
        getattr(hl.optimize, solver)(square, torch.ones(3, dtype=torch.float64), **kwargs)
