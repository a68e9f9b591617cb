"""Entropic OT: both solvers against POT, closed forms, the dual's gradient and Hessian, bad input, numpy/torch.

Plan tolerances come from the stopping criterion. A returned plan P = exp(α_i + β_j − C_ij/reg) is the exact entropic
plan between its own marginals (r, c) = (P1, Pᵀ1), which are ε = ‖r − a‖₁ + ‖c − b‖₁ away from (a, b). To first
order, changing the marginals by δm moves (α, β) by δz = H⁺ δm with H = [[diag r, P], [Pᵀ, diag c]] (the Jacobian of
the marginals; δm is orthogonal to H's null vector (1, −1) since both sides have the same mass), and the plan by
δP_ij = P_ij (δα_i + δβ_j), so
    ‖δP‖₁ <= ⟨r, |δα|⟩ + ⟨c, |δβ|⟩ <= ‖(r, c)‖₂ ‖δz‖₂ <= ‖(r, c)‖₂ ε / λ₂(H),
λ₂ the smallest non-zero eigenvalue. ``plan_error_bound`` returns twice that (the factor 2 covers the second-order
terms, which are O(ε²) at the ε <= 1e-9 used here).
"""

import itertools
import math
import warnings

import numpy as np
import ot
import pytest
import torch

import hesslab as hl
from hesslab.transport import _sinkhorn, _sns, dual_hessian, lyapunov, sparsify  # private modules: patched below

SOLVERS = [hl.transport.sinkhorn, hl.transport.sinkhorn_newton_sparse]
EPS = torch.finfo(torch.float64).eps


def point_clouds(n: int, m: int, seed: int = 0, uniform: bool = False):
    """Random points in the unit square, squared-Euclidean cost / its max, random (or uniform) marginals of mass 1."""
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, 2, generator=generator), torch.rand(m, 2, generator=generator)
    C = torch.cdist(x, y) ** 2
    if uniform:
        a, b = torch.full((n,), 1 / n), torch.full((m,), 1 / m)
    else:
        a, b = torch.rand(n, generator=generator) + 0.5, torch.rand(m, generator=generator) + 0.5
        a, b = a / a.sum(), b / b.sum()
    return a, b, C / C.max()


def marginal_error(P, a, b) -> float:
    return float((P.sum(1) - a).abs().sum() + (P.sum(0) - b).abs().sum())


def plan_error_bound(P: torch.Tensor, error: float) -> float:
    """2 ‖(r, c)‖₂ ε / λ₂(H): how far a plan with marginal error ε can be from the exact one (module docstring)."""
    r, c = P.sum(1), P.sum(0)
    H = -dual_hessian(P, 1.0)  # reg = 1 gives H itself
    second_smallest = torch.linalg.eigvalsh(H)[1].item()
    return 2 * torch.cat([r, c]).norm().item() * error / second_smallest


def pot_plan(a, b, C, reg):
    """POT's log-domain Sinkhorn run to rounding (its stopping test is on the 2-norm of the column residual)."""
    P = ot.sinkhorn(a.numpy(), b.numpy(), C.numpy(), reg, method="sinkhorn_log", stopThr=1e-15, numItermax=100_000)
    return torch.from_numpy(P)


# --- against POT ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("reg", [0.1, 0.02])
def test_plan_matches_pot(solver, reg):
    a, b, C = point_clouds(40, 30)
    reference = pot_plan(a, b, C, reg)
    result = solver(a, b, C, reg, tol=1e-11)
    assert result.converged
    ours, theirs = marginal_error(result.plan, a, b), marginal_error(reference, a, b)
    tolerance = plan_error_bound(reference, ours + theirs)
    assert (result.plan - reference).abs().sum().item() <= tolerance
    assert result.cost == pytest.approx(float((C * reference).sum()), abs=C.max().item() * tolerance)


def test_sns_matches_sinkhorn_at_small_reg():
    """At reg = 1e-3 POT's log-domain Sinkhorn would take minutes to reach rounding; the two solvers here agree."""
    a, b, C = point_clouds(100, 100, seed=0, uniform=True)
    slow = hl.transport.sinkhorn(a, b, C, 1e-3, tol=1e-10)
    fast = hl.transport.sinkhorn_newton_sparse(a, b, C, 1e-3, tol=1e-10)
    assert slow.converged and fast.converged
    tolerance = plan_error_bound(fast.plan, marginal_error(slow.plan, a, b) + marginal_error(fast.plan, a, b))
    assert (slow.plan - fast.plan).abs().sum().item() <= tolerance
    assert fast.iterations * 10 <= slow.iterations  # the paper's phenomenon, at a small size


# --- closed forms -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", SOLVERS)
def test_separable_cost_gives_the_independent_coupling(solver):
    """C_ij = u_i + v_j: P = a bᵀ exactly for every reg, with f = u + reg·log a and g = v + reg·log b up to
    (f + c, g − c)."""
    a, b, _ = point_clouds(7, 5, seed=1)
    generator = torch.Generator().manual_seed(2)
    u, v = torch.rand(7, generator=generator), torch.rand(5, generator=generator)
    C = u[:, None] + v[None, :]
    result = solver(a, b, C, 0.01, tol=1e-13)
    exact = a[:, None] * b[None, :]
    assert (result.plan - exact).abs().sum().item() <= plan_error_bound(exact, marginal_error(result.plan, a, b))
    shift_f = result.f - u - 0.01 * a.log()
    shift_g = result.g - v - 0.01 * b.log()
    assert torch.allclose(shift_f, shift_f.mean().expand(7), atol=1e-10)
    assert torch.allclose(shift_g, -shift_f.mean().expand(5), atol=1e-10)


def two_by_two(p: float, q: float, C: torch.Tensor, reg: float) -> torch.Tensor:
    """The entropic plan for 2 × 2: P = [[x, p − x], [q − x, 1 − p − q + x]] with the cycle condition
    x (1 − p − q + x) / ((p − x)(q − x)) = κ = exp(−(C11 + C22 − C12 − C21)/reg), i.e. A x² + B x + c = 0 with
    A = 1 − κ, B = 1 − p − q + κ(p + q), c = −κpq; the root in [0, min(p, q)] is 2|c| / (B + sqrt(B² − 4Ac))
    (the textbook formula, rearranged so that nothing cancels)."""
    kappa = math.exp(-(C[0, 0] + C[1, 1] - C[0, 1] - C[1, 0]).item() / reg)
    A, B, c = 1 - kappa, 1 - p - q + kappa * (p + q), -kappa * p * q
    x = -2 * c / (B + math.sqrt(B * B - 4 * A * c))
    return torch.tensor([[x, p - x], [q - x, 1 - p - q + x]], dtype=torch.float64)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("reg", [1.0, 0.1, 0.01])
def test_two_by_two_closed_form(solver, reg):
    p, q = 0.3, 0.6
    C = torch.tensor([[0.0, 1.0], [0.7, 0.2]], dtype=torch.float64)
    a, b = torch.tensor([p, 1 - p], dtype=torch.float64), torch.tensor([q, 1 - q], dtype=torch.float64)
    exact = two_by_two(p, q, C, reg)
    result = solver(a, b, C, reg, tol=1e-14)
    assert (result.plan - exact).abs().sum().item() <= plan_error_bound(exact, marginal_error(result.plan, a, b))


def test_two_by_two_formula_is_a_plan_of_the_right_form():
    """The closed form itself: marginals (p, q), and log P_ij = α_i + β_j − C_ij/reg for some α, β."""
    C = torch.tensor([[0.0, 1.0], [0.7, 0.2]], dtype=torch.float64)
    P = two_by_two(0.3, 0.6, C, 1.0)
    assert torch.allclose(P.sum(1), torch.tensor([0.3, 0.7], dtype=torch.float64), atol=1e-15)
    assert torch.allclose(P.sum(0), torch.tensor([0.6, 0.4], dtype=torch.float64), atol=1e-15)
    cycle = P.log() + C / 1.0  # = α_i + β_j: its 2 × 2 "cross difference" vanishes
    assert abs((cycle[0, 0] + cycle[1, 1] - cycle[0, 1] - cycle[1, 0]).item()) < 1e-13


def rounding_slack(n: int, reg: float, error: float, max_cost: float) -> float:
    """How far above W = min ⟨C, Q⟩ over couplings Q of uniform marginals a returned plan's cost can be.

    The returned P is the exact entropic plan between its own marginals (r, c), ε away from (a, a). Rounding
    (Altschuler, Weed & Rigollet 2017, Lemma 7) gives couplings Q of (a, a) with ‖P − Q‖₁ <= 2ε and Π' of (r, c) with
    ‖Π' − Π/n‖₁ <= 2ε, Π the optimal permutation. Entropic optimality of P against Π', with H <= log n² + 1 for mass
    1 and H >= the mass for entries <= 1, gives ⟨C, P⟩ <= W + 2ε·max C + 2 reg·log n.
    """
    return 2 * reg * math.log(n) + 2 * error * max_cost


@pytest.mark.parametrize("solver", SOLVERS)
def test_one_dimensional_cost_tends_to_the_sorted_matching(solver):
    """1-D, uniform weights, C = (x_i − y_j)²: unregularised OT matches the sorted points, W = Σ (x_(i) − y_(i))²/n.
    The cost of the entropic plan is within [W − 2ε·max C, W + 2ε·max C + 2 reg·log n] (``rounding_slack``)."""
    n, reg = 50, 1e-3
    generator = torch.Generator().manual_seed(4)
    x, y = torch.rand(n, generator=generator), torch.rand(n, generator=generator)
    C = (x[:, None] - y[None, :]) ** 2
    a = torch.full((n,), 1 / n)
    W = ((x.sort().values - y.sort().values) ** 2).mean().item()
    result = solver(a, a, C, reg, tol=1e-10, max_iter=100_000)
    error = marginal_error(result.plan, a, a)
    assert -2 * error * C.max().item() <= result.cost - W <= rounding_slack(n, reg, error, C.max().item())
    assert result.cost - W > 0.1 * reg  # and the entropic blur is really there: the bound is not vacuous


@pytest.mark.parametrize("solver", SOLVERS)
def test_permutation_problem_as_reg_goes_to_zero(solver):
    """Points with a unique optimal matching (the identity): the plan tends to Π/n. A coupling Q of uniform marginals
    is a mixture of permutations σ/n (Birkhoff) with some weight λ on the identity, so ⟨C, Q⟩ − W >= (1 − λ) Δ/n and
    ‖Q − Π/n‖₁ <= 2(1 − λ), with Δ the gap between the best and second-best matchings (enumerated). With Q the
    rounding of P (``rounding_slack``): ‖P − Π/n‖₁ <= 2ε + 2n (2 reg·log n + 4ε·max C) / Δ."""
    n = 6
    x = torch.arange(n, dtype=torch.float64)
    C = (x[:, None] - x[None, :] - 0.25) ** 2
    costs = sorted(sum(C[i, s[i]].item() for i in range(n)) for s in itertools.permutations(range(n)))
    gap = costs[1] - costs[0]
    a = torch.full((n,), 1 / n)
    for reg in [1e-2, 1e-3]:
        result = solver(a, a, C, reg, tol=1e-12)
        error, max_cost = marginal_error(result.plan, a, a), C.max().item()
        distance = (result.plan - torch.eye(n) / n).abs().sum().item()
        assert distance <= 2 * error + 2 * n * (rounding_slack(n, reg, error, max_cost) + 2 * error * max_cost) / gap


def test_sinkhorn_stalls_on_a_weakly_coupled_chain_where_newton_does_not():
    """The same problem at reg = 0.03: the plan is a chain of diagonal blocks coupled by entries ~ e^(−0.5/reg), and
    Sinkhorn's contraction factor is within rounding of 1 — it stalls near 2e-8. Newton steps along the weak coupling
    are damped by the line search (the dual is far from quadratic there) but keep gaining a constant factor."""
    n = 6
    x = torch.arange(n, dtype=torch.float64)
    C = (x[:, None] - x[None, :] - 0.25) ** 2
    a = torch.full((n,), 1 / n)
    with pytest.warns(RuntimeWarning, match="sinkhorn did not reach"):
        stalled = hl.transport.sinkhorn(a, a, C, 0.03, tol=1e-12, max_iter=2000)
    assert stalled.history["error"][-1] > 0.5 * stalled.history["error"][1]
    newton = hl.transport.sinkhorn_newton_sparse(a, a, C, 0.03, tol=1e-12)
    assert newton.converged and newton.iterations <= 100


# --- the dual ---------------------------------------------------------------------------------------------------------
def random_dual_point(n=5, m=4, seed=0):
    a, b, C = point_clouds(n, m, seed=seed)
    generator = torch.Generator().manual_seed(seed + 10)
    return a, b, C, 0.1 * torch.randn(n, generator=generator), 0.1 * torch.randn(m, generator=generator)


def test_lyapunov_gradient_is_the_marginal_residual():
    a, b, C, f, g = random_dual_point()
    reg = 0.3
    f, g = f.requires_grad_(), g.requires_grad_()
    grad_f, grad_g = torch.autograd.grad(lyapunov(f, g, a, b, C, reg), (f, g))
    P = torch.exp((f[:, None] + g[None, :] - C) / reg).detach()
    assert torch.allclose(grad_f, a - P.sum(1), atol=1e-14)
    assert torch.allclose(grad_g, b - P.sum(0), atol=1e-14)


def test_dual_hessian_matches_autodiff_and_has_the_null_vector():
    a, b, C, f, g = random_dual_point()
    reg = 0.3
    z = torch.cat([f, g])
    exact = torch.func.hessian(lambda z: lyapunov(z[:5], z[5:], a, b, C, reg))(z)
    P = torch.exp((f[:, None] + g[None, :] - C) / reg)
    H = dual_hessian(P, reg)
    assert torch.allclose(H, exact, atol=1e-12)
    null = torch.cat([torch.ones(5), -torch.ones(4)])
    assert (H @ null).abs().max().item() < 1e-14
    eigenvalues = torch.linalg.eigvalsh(H)
    assert eigenvalues.max().item() < 1e-14 and eigenvalues[-2].item() < -1e-6  # NSD, one-dimensional null space


@pytest.mark.parametrize("solver", SOLVERS)
def test_duality_gap_at_the_solution(solver):
    """Primal ⟨C, P⟩ − reg·H(P) minus dual L(f, g) is exactly ⟨f, P1 − a⟩ + ⟨g, Pᵀ1 − b⟩ for P = exp((f+g−C)/reg),
    so it is bounded by max(|f|, |g|) ε."""
    a, b, C = point_clouds(20, 15, seed=5)
    reg = 0.05
    result = solver(a, b, C, reg, tol=1e-12)
    P = result.plan
    primal = (C * P).sum() + reg * (P * (P.log() - 1)).sum()
    dual = lyapunov(result.f, result.g, a, b, C, reg)
    bound = max(result.f.abs().max(), result.g.abs().max()).item() * marginal_error(P, a, b)
    assert abs((primal - dual).item()) <= bound + 10 * EPS * abs(primal.item())


def test_sparsify_keeps_what_the_rule_says():
    a, b, C = point_clouds(30, 20, seed=6)
    P = hl.transport.sinkhorn(a, b, C, 0.01).plan
    assert torch.equal(sparsify(P, 0.0).to_dense(), P)
    threshold = 1e-3
    dense = sparsify(P, threshold).to_dense()
    kept = dense > 0
    rule = P >= threshold * torch.minimum(P.sum(1, keepdim=True), P.sum(0, keepdim=True))
    assert torch.equal(kept, rule) and 0 < kept.sum() < P.numel() and torch.equal(dense[kept], P[kept])
    dropped = P - dense
    assert (dropped.sum(1) <= threshold * 20 * P.sum(1)).all() and (dropped.sum(0) <= threshold * 30 * P.sum(0)).all()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a GPU"))])
def test_sparse_products(device):
    """S x and Sᵀ y as the dense products (scipy on the CPU, torch CSR with a sorted transpose on a GPU)."""
    a, b, C = point_clouds(30, 20, seed=6)
    P = hl.transport.sinkhorn(a, b, C, 0.01).plan.to(device)
    S = sparsify(P, 1e-3)
    times, transposed_times = _sns._sparse_products(S)
    x, y = torch.rand(20, dtype=torch.float64, device=device), torch.rand(30, dtype=torch.float64, device=device)
    assert torch.allclose(times(x), S.to_dense() @ x, atol=1e-16)
    assert torch.allclose(transposed_times(y), S.to_dense().T @ y, atol=1e-16)


# --- results: history, kinds, devices, zero masses -------------------------------------------------------------------
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("n, reg, tol, seed", [(25, 0.01, 1e-9, 7), (200, 1e-3, 1e-12, 5)])
def test_history_is_the_marginal_error(solver, n, reg, tol, seed):
    """The logged error is that of the returned plan (recomputed from the potentials), up to rounding. (The second
    case has Newton steps that shrink plan entries by e^−16: a plan updated by 1 + expm1(t) lost digits there.)"""
    a, b, C = point_clouds(n, n, seed=seed)
    result = solver(a, b, C, reg, tol=tol)
    assert result.converged and result.history["error"][-1] <= tol
    assert len(result.history["error"]) == len(result.history["seconds"]) == result.iterations + 1
    assert np.all(np.diff(result.history["seconds"]) >= 0) and result.reason
    # Sinkhorn logs the rows' error (columns are matched by construction): the full error may exceed it by rounding,
    # n + m sums of terms whose exponents are at most max C / reg, each relative error eps.
    rounding = (n + n + C.max().item() / reg) * EPS
    assert marginal_error(result.plan, a, b) <= result.history["error"][-1] + rounding


@pytest.mark.parametrize("solver", SOLVERS)
def test_progress_bar_changes_nothing(solver, capsys):
    a, b, C = point_clouds(15, 15, seed=16)
    quiet, shown = solver(a, b, C, 0.05, tol=1e-10), solver(a, b, C, 0.05, tol=1e-10, progress=True)
    assert torch.equal(quiet.plan, shown.plan) and np.array_equal(quiet.history["error"], shown.history["error"])
    assert solver.__name__ in capsys.readouterr().err  # tqdm writes its bar to stderr


@pytest.mark.parametrize("solver", SOLVERS)
def test_numpy_in_numpy_out(solver):
    a, b, C = point_clouds(12, 9, seed=8)
    from_torch = solver(a, b, C, 0.05, tol=1e-12)
    from_numpy = solver(a.numpy(), b.numpy(), C.numpy(), 0.05, tol=1e-12)
    for name in ("plan", "f", "g"):
        value = getattr(from_numpy, name)
        assert isinstance(value, np.ndarray) and value.dtype == np.float64
        assert isinstance(getattr(from_torch, name), torch.Tensor)
        np.testing.assert_array_equal(value, getattr(from_torch, name).numpy())
    assert from_numpy.cost == from_torch.cost and from_numpy.iterations == from_torch.iterations


@pytest.mark.parametrize("solver", SOLVERS)
def test_float32_stays_float32(solver):
    a, b, C = point_clouds(12, 9, seed=9)
    result = solver(a.float(), b.float(), C.float(), 0.05, tol=1e-5)
    assert result.converged and result.plan.dtype == result.f.dtype == torch.float32
    reference = solver(a, b, C, 0.05, tol=1e-12).plan
    assert (result.plan.double() - reference).abs().sum().item() <= plan_error_bound(reference, 1e-5) + 1e-5


@pytest.mark.parametrize("solver", SOLVERS)
def test_integer_cost_is_computed_in_float64(solver):
    a = np.full(3, 1 / 3)
    result = solver(a, a, np.array([[0, 1, 4], [1, 0, 1], [4, 1, 0]]), 0.5)
    assert result.plan.dtype == np.float64 and result.converged


@pytest.mark.parametrize("solver", SOLVERS)
def test_zero_masses_are_left_out(solver):
    """A point without mass gets no plan and the potential −inf; the rest is the problem on the support."""
    a, b, C = point_clouds(8, 6, seed=10)
    a_zero, b_zero = a.clone(), b.clone()
    a_zero[2], b_zero[4] = 0.0, 0.0
    a_zero, b_zero = a_zero / a_zero.sum(), b_zero / b_zero.sum()
    result = solver(a_zero, b_zero, C, 0.05, tol=1e-12)
    rows, cols = [0, 1, 3, 4, 5, 6, 7], [0, 1, 2, 3, 5]
    support = solver(a_zero[rows], b_zero[cols], C[rows][:, cols], 0.05, tol=1e-12)
    assert torch.equal(result.plan[rows][:, cols], support.plan)
    assert (result.plan[2] == 0).all() and (result.plan[:, 4] == 0).all()
    assert result.f[2] == -math.inf and result.g[4] == -math.inf
    assert torch.isfinite(result.f[rows]).all() and not torch.isnan(result.plan).any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("solver", SOLVERS)
def test_cuda_in_cuda_out(solver):
    a, b, C = point_clouds(50, 40, seed=11)
    on_gpu = solver(a.cuda(), b, C.cuda(), 0.01, tol=1e-11)
    assert on_gpu.plan.device.type == "cuda" and on_gpu.f.device.type == "cuda"
    on_cpu = solver(a, b, C, 0.01, tol=1e-11).plan
    assert (on_gpu.plan.cpu() - on_cpu).abs().sum().item() <= plan_error_bound(on_cpu, 2e-11)


# --- non-convergence and the Newton fallback --------------------------------------------------------------------------
@pytest.mark.parametrize("solver", SOLVERS)
def test_non_convergence_is_reported_and_warned(solver):
    a, b, C = point_clouds(30, 30, seed=12)
    with pytest.warns(RuntimeWarning, match="did not reach the marginal error tol=1.0e-12 within max_iter=3"):
        result = solver(a, b, C, 1e-3, tol=1e-12, max_iter=3, **({"warm_start": 2} if solver is SOLVERS[1] else {}))
    assert not result.converged and result.iterations == 3 and result.history["error"][-1] > 1e-12
    assert torch.isfinite(result.plan).all() and math.isfinite(result.cost)


def test_sns_falls_back_to_sinkhorn_when_the_line_search_fails(monkeypatch):
    """With no line-search trial allowed every Newton step is replaced by a Sinkhorn iteration: SNS then is Sinkhorn."""
    monkeypatch.setattr(_sns, "MAX_HALVINGS", 0)
    a, b, C = point_clouds(20, 20, seed=13)
    fallback = hl.transport.sinkhorn_newton_sparse(a, b, C, 0.05, tol=1e-10, warm_start=1)
    plain = hl.transport.sinkhorn(a, b, C, 0.05, tol=1e-10)
    assert fallback.iterations == plain.iterations
    assert torch.allclose(fallback.plan, plain.plan, rtol=0, atol=1e-15)


def test_a_row_whose_sum_underflows_takes_the_exact_log_domain_step(monkeypatch):
    """An outlier source point ~1 away from every target at reg = 1e-3: after the first column scaling its row sums
    to about e^−940, which underflows; that half-step is then taken by logsumexp, and nothing becomes NaN or inf."""
    exact_steps = []
    representable = _sinkhorn._representable
    monkeypatch.setattr(_sinkhorn, "_representable", lambda sums: representable(sums) or exact_steps.append(1))
    x, y = torch.tensor([0.0, 0.01, 0.02, 1.0]), torch.tensor([0.0, 0.01, 0.02, 0.03])
    C, a = (x[:, None] - y[None, :]) ** 2, torch.full((4,), 0.25)
    newton = hl.transport.sinkhorn_newton_sparse(a, a, C, 1e-3, tol=1e-12)
    assert exact_steps and newton.converged and torch.isfinite(newton.plan).all()
    assert marginal_error(newton.plan, a, a) <= 1e-12 + (8 + C.max().item() / 1e-3) * EPS  # as in the history test
    exact_steps.clear()
    with pytest.warns(RuntimeWarning, match="sinkhorn did not reach"):  # the outlier's coupling is weak: it stalls
        slow = hl.transport.sinkhorn(a, a, C, 1e-3, tol=1e-12, max_iter=500)
    assert exact_steps and torch.isfinite(slow.plan).all() and slow.history["error"][-1] < slow.history["error"][0]


def full_system(S: torch.Tensor, row_sums: torch.Tensor, col_sums: torch.Tensor) -> torch.Tensor:
    """[[diag(r), S], [Sᵀ, diag(c)]], the (negated, reg = 1) sparsified Hessian that a Newton step solves with."""
    return torch.cat([torch.cat([torch.diag(row_sums), S], 1), torch.cat([S.T, torch.diag(col_sums)], 1)])


@pytest.mark.parametrize("threshold", [0.0, 1e-3])
def test_newton_direction_solves_the_sparsified_system(threshold):
    """The Schur-complement CG solves M (x, y) = (p, q), M = [[diag(r), S], [Sᵀ, diag(c)]]: the first block row to
    rounding (x is eliminated through it), the second, orthogonal to 1, to CG's relative residual rtol — its
    residual is minus that of the Schur system T y = q − Sᵀ(p/r). Without sparsification the system is consistent
    and (x, y) is its least-squares solution up to the null direction (1, −1), which changes no plan."""
    a, b, C = point_clouds(30, 20, seed=21)
    plan = hl.transport.sinkhorn(a, b, C, 0.02, tol=1e-2).plan  # a plan far enough from the optimum for a sizeable step
    row_sums, col_sums = plan.sum(1), plan.sum(0)
    S = sparsify(plan, threshold).to_dense()
    assert threshold == 0 or (S == 0).any()
    p, q = a - row_sums, b - col_sums
    rtol = 1e-12
    x, y = _sns._newton_direction(lambda v: S @ v, lambda w: S.T @ w, row_sums, col_sums, p, q, rtol, 20)
    M = full_system(S, row_sums, col_sums)
    residual = M @ torch.cat([x, y]) - torch.cat([p, q])
    rounding = 100 * EPS * torch.linalg.matrix_norm(M, 2).item() * torch.cat([x, y]).norm().item()
    assert residual[:30].norm().item() <= rounding
    schur_rhs = q - S.T @ (p / row_sums)
    centred = residual[30:] - residual[30:].mean()
    assert centred.norm().item() <= rtol * (schur_rhs - schur_rhs.mean()).norm().item() + rounding
    if threshold == 0:
        assert abs(residual[30:].mean().item()) <= rounding
        exact = torch.linalg.lstsq(M, torch.cat([p, q]), driver="gelsd").solution
        null = torch.cat([torch.ones(30), -torch.ones(20)]).double() / math.sqrt(50)
        difference = torch.cat([x, y]) - exact
        # M (difference) = residual, and M acts on the part orthogonal to its null vector with eigenvalues >= λ₂
        second = torch.linalg.eigvalsh(M)[1].item()
        assert (difference - (difference @ null) * null).norm().item() <= (residual.norm().item() + rounding) / second


def test_kept_products_are_csr_when_sparse_and_all_of_p_when_not(monkeypatch):
    """Below DENSE_FRACTION kept, S is the CSR matrix of ``sparsify``; above it, S = P (the exact Newton step)."""
    a, b, C = point_clouds(40, 30, seed=22)
    plan = hl.transport.sinkhorn(a, b, C, 1e-3, tol=1e-6).plan
    row_sums, col_sums = plan.sum(1), plan.sum(0)
    sparse = sparsify(plan, 1e-6).to_dense()
    kept = (sparse > 0).double().mean().item()
    assert kept < _sns.DENSE_FRACTION  # the rule keeps few entries at this small reg
    x, y = torch.rand(30, dtype=torch.float64), torch.rand(40, dtype=torch.float64)
    times, transposed_times = _sns._kept_products(plan, row_sums, col_sums, 1e-6)
    assert torch.allclose(times(x), sparse @ x, rtol=1e-14, atol=0)
    assert torch.allclose(transposed_times(y), sparse.T @ y, rtol=1e-14, atol=0)
    monkeypatch.setattr(_sns, "DENSE_FRACTION", kept / 2)  # now "too many" are kept: all of P
    times, transposed_times = _sns._kept_products(plan, row_sums, col_sums, 1e-6)
    assert torch.equal(times(x), plan @ x) and torch.equal(transposed_times(y), plan.T @ y)


def test_sns_takes_sparse_steps_at_small_reg_and_exact_ones_at_large(monkeypatch):
    """Which Hessian block each Newton step used: CSR (sparse) at reg = 1e-3, all of P at reg = 1e-1."""
    built = []
    sparse_products = _sns._sparse_products
    monkeypatch.setattr(_sns, "_sparse_products", lambda S: built.append(S._nnz()) or sparse_products(S))
    a, b, C = point_clouds(100, 100, seed=23, uniform=True)
    small = hl.transport.sinkhorn_newton_sparse(a, b, C, 1e-3, tol=1e-10)
    assert small.converged and len(built) == small.iterations - 20  # every Newton step was sparse
    assert max(built) < _sns.DENSE_FRACTION * 100 * 100
    built.clear()
    large = hl.transport.sinkhorn_newton_sparse(a, b, C, 1e-1, tol=1e-10, warm_start=2)
    assert large.converged and large.iterations > 2 and not built


def test_a_newton_step_with_an_empty_row_is_refused():
    """A row whose sum underflowed to 0 makes the eliminated Δα infinite: the step returns None, the plan unchanged
    (SNS then takes a Sinkhorn step, which handles underflow exactly)."""
    a = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    problem = _sns._prepare(a, a, torch.rand(3, 3, dtype=torch.float64), 0.1, 1e-9, 10)
    plan = torch.tensor([[0.4, 0.1, 0.0], [0.0, 0.0, 0.0], [0.1, 0.0, 0.2]], dtype=torch.float64)
    before = plan.clone()
    row_sums, col_sums = plan.sum(1), plan.sum(0)
    why = _sns._newton_step(problem, plan, row_sums, col_sums, 0.3, 0.0, 10)
    assert isinstance(why, str) and "underflowed" in why  # refused, and why (for the non-convergence warning)
    assert torch.equal(plan, before)


def test_line_search_refuses_a_direction_that_does_not_ascend():
    """ℓ is concave, so ℓ(z + sΔ) − ℓ(z) <= s⟨∇ℓ, Δ⟩: with ⟨∇ℓ, Δ⟩ <= 0 no step is tried at all."""
    plan = torch.full((2, 2), 0.25, dtype=torch.float64)
    sums = plan.sum(1)
    a = torch.tensor([0.75, 0.25], dtype=torch.float64)  # ∇ℓ = (a − P1, b − Pᵀ1) = (0.25, −0.25, 0.25, −0.25)
    for d_alpha in ([-1.0, 1.0], [0.0, 0.0], [math.nan, 0.0]):  # ⟨∇ℓ, Δ⟩ = −0.5, 0, NaN
        step, why = _sns._line_search(plan, sums, sums, a, a, torch.tensor(d_alpha, dtype=torch.float64),
                                                 torch.zeros(2, dtype=torch.float64))
        assert step is None and "not an ascent direction" in why


def test_sns_keeps_every_entry_with_threshold_zero():
    """threshold = 0 is exact Newton: quadratic convergence, a handful of Newton steps."""
    a, b, C = point_clouds(40, 40, seed=14)
    result = hl.transport.sinkhorn_newton_sparse(a, b, C, 0.01, tol=1e-12, threshold=0.0, warm_start=5)
    assert result.converged and result.iterations - 5 <= 10


# --- bad input -------------------------------------------------------------------------------------------------------
A3 = torch.full((3,), 1 / 3, dtype=torch.float64)
C33 = torch.rand(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("args, kwargs, error, message", [
    ((torch.tensor([0.5, 0.6, -0.1]), A3, C33, 0.1), {}, ValueError, "a must be non-negative"),
    ((A3, torch.tensor([0.5, 0.6, -0.1]), C33, 0.1), {}, ValueError, "b must be non-negative"),
    ((A3, 2 * A3, C33, 0.1), {}, ValueError, "same total mass.*normalise"),
    ((torch.full((4,), 0.25), A3, C33, 0.1), {}, ValueError, r"a must be a 1-D vector of length 3.*got shape \(4,\)"),
    ((A3, torch.full((2,), 0.5), C33, 0.1), {}, ValueError, "b must be a 1-D vector of length 3"),
    ((A3, A3, torch.ones(3), 0.1), {}, ValueError, "C must be a non-empty 2-D cost matrix"),
    ((A3, A3, torch.ones(0, 3), 0.1), {}, ValueError, "C must be a non-empty 2-D cost matrix"),
    ((A3, A3, C33, 0.0), {}, ValueError, r"reg must be a finite number in \(0, inf\).*entropic regularisation"),
    ((A3, A3, C33, -1.0), {}, ValueError, r"reg must be a finite number in \(0"),
    ((A3, A3, C33, math.nan), {}, ValueError, r"reg must be a finite number in \(0"),
    ((A3, A3, C33, "0.1"), {}, TypeError, "reg must be a real number"),  # was a ValueError: a str is a type error
    ((A3, A3, C33, True), {}, TypeError, "reg must be a real number"),
    ((A3, A3, C33, np.bool_(True)), {}, TypeError, "reg must be a real number"),
    ((A3, A3, C33, 0.1 + 0j), {}, TypeError, "reg must be a real number"),
    ((A3, A3, C33, 0.1), {"tol": True}, TypeError, "tol must be a real number"),
    ((A3, A3, C33.to(torch.complex128)), {"reg": 0.1}, TypeError, "C must hold real numbers.*complex128"),
    ((A3, A3, C33.numpy() + 1j), {"reg": 0.1}, TypeError, "C must hold real numbers"),
    ((A3, A3, C33 > 0.5, 0.1), {}, TypeError, "C must hold real numbers, got dtype torch.bool"),
    ((A3 > 0, A3, C33, 0.1), {}, TypeError, "a must hold real numbers"),
    ((torch.ones(0), torch.ones(0), torch.ones(0, 0), 0.1), {}, ValueError, "C must be a non-empty 2-D cost matrix"),
    ((A3, A3, torch.tensor([[0.0, 1, 2], [1, math.inf, 1], [2, 1, 0]]), 0.1), {}, ValueError, "C has non-finite"),
    ((A3, A3, torch.tensor([[0.0, 1, 2], [1, math.nan, 1], [2, 1, 0]]), 0.1), {}, ValueError, "C has non-finite"),
    ((torch.tensor([0.5, math.nan, 0.5]), A3, C33, 0.1), {}, ValueError, "a has non-finite"),
    ((torch.zeros(3), torch.zeros(3), C33, 0.1), {}, ValueError, "a has zero total mass"),
    (([1 / 3] * 3, A3, C33, 0.1), {}, TypeError, "a must be a torch.Tensor or a numpy.ndarray"),
    ((A3, A3, C33.tolist(), 0.1), {}, TypeError, "C must be a torch.Tensor or a numpy.ndarray"),
    ((A3.to("meta"), A3, C33, 0.1), {}, ValueError, "a is on meta but C is on cpu"),
    ((A3.float(), A3.float(), C33.float(), 1e-40), {}, ValueError, "C / reg overflows"),
    ((A3, A3, C33, 0.1), {"tol": 0.0}, ValueError, r"tol must be a finite number in \(0"),
    ((A3, A3, C33, 0.1), {"max_iter": 0}, ValueError, "max_iter must be >= 1"),
    ((A3, A3, C33, 0.1), {"max_iter": 2.5}, TypeError, "max_iter must be an int"),
])
def test_bad_input(solver, args, kwargs, error, message):
    with pytest.raises(error, match=message):
        solver(*args, **kwargs)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"warm_start": 0}, ValueError, "warm_start must be >= 1"),
    ({"threshold": 1.0}, ValueError, r"threshold must be a finite number in \[0, 1\)"),
    ({"threshold": -0.1}, ValueError, r"threshold must be a finite number in \[0, 1\)"),
    ({"cg_max_iter": 0}, ValueError, "cg_max_iter must be >= 1"),
])
def test_bad_sns_options(kwargs, error, message):
    with pytest.raises(error, match=message):
        hl.transport.sinkhorn_newton_sparse(A3, A3, C33, 0.1, **kwargs)


def test_no_warning_when_converged():
    a, b, C = point_clouds(10, 10, seed=15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hl.transport.sinkhorn(a, b, C, 0.1)
        hl.transport.sinkhorn_newton_sparse(a, b, C, 0.1)


# --- issue 12: the SNS line search is numerically sound; numbers are numbers -----------------------------------------
def uniform_clouds(n: int, seed: int):
    """The issue's problem: n uniform points in [0, 1]² on each side, squared-Euclidean cost / its max, weights 1/n."""
    from hesslab.experiments.sinkhorn_newton_sparse import random_point_clouds
    problem = random_point_clouds(n, torch.Generator().manual_seed(seed))
    return problem.a, problem.b, problem.C


@pytest.mark.parametrize("reg, seed", [(1e-3, 0), (3e-4, 0), (1e-4, 3)])
def test_sns_never_exceeds_its_warm_start_error_and_needs_fewer_iterations_than_sinkhorn(reg, seed):
    """n = 300 (benchmarks/sinkhorn.py --soundness runs n = 300, 500, 1000 and three seeds). Before, at reg = 3e-4
    (seed 0) the first Newton step "ascended" by a cancellation in the closed-form increase while the dual truly fell
    by 4e31: the marginal error jumped from 0.17 to 8e31. Now every accepted step truly raises the dual and keeps the
    error at most the warm start's; SNS reaches tol = 1e-8 where Sinkhorn, given as many iterations, has not."""
    a, b, C = uniform_clouds(300, seed)
    sns = hl.transport.sinkhorn_newton_sparse(a, b, C, reg, tol=1e-8, max_iter=2000)
    warm = sns.history["error"][20]
    assert sns.converged and max(sns.history["error"][20:]) <= warm
    with pytest.warns(RuntimeWarning, match="sinkhorn did not reach"):
        sinkhorn = hl.transport.sinkhorn(a, b, C, reg, tol=1e-8, max_iter=sns.iterations)
    assert not sinkhorn.converged  # so Sinkhorn needs more iterations than SNS took


def test_line_search_is_not_fooled_by_cancellation_along_the_null_direction():
    """Δ = (Δ₀ + t1, Δ'₀ − t1) changes neither the plan nor L (Σa = Σb), but at t = 40 the closed form
    uᵀPv + ⟨P1, φ(x)⟩ + ⟨Pᵀ1, φ(y)⟩ that the line search used before has terms of size e⁴⁰ ≈ 2e17 which cancel:
    at s = 1 it gives −25 (an impossible negative penalty, so a huge "increase"), while the true penalty 0.093
    exceeds s⟨∇ℓ, Δ⟩ = 0.043 — the dual falls. The step now accepted must truly pass the Armijo test, checked by
    Σ_ij P_ij φ(z_ij) (non-negative terms, no cancellation), and agree with the search without the null part."""
    a, b, C = uniform_clouds(40, 1)
    plan = hl.transport.sinkhorn(a, b, C, 1e-2, tol=1e-1).plan
    row_sums, col_sums = plan.sum(1), plan.sum(0)
    d_alpha, d_beta = 4 * (a - row_sums) / row_sums, 4 * (b - col_sums) / col_sums  # 4x a diagonal-Newton step
    slope = float((a - row_sums) @ d_alpha + (b - col_sums) @ d_beta)
    x, y = d_alpha + 40, d_beta - 40
    u, v = torch.expm1(x), torch.expm1(y)
    closed_form = float(u @ (plan @ v) + row_sums @ (u - x) + col_sums @ (v - y))
    true_at_one = float((plan * _sns._phi(x[:, None] + y[None, :])).sum())
    assert closed_form < 0 < slope < true_at_one  # the old test would have accepted s = 1; it must not
    ls = _sns._line_search
    plain, _ = ls(plan, row_sums, col_sums, a, b, d_alpha, d_beta)
    shifted, _ = ls(plan, row_sums, col_sums, a, b, x, y)
    assert shifted == plain < 1
    z = shifted * (x[:, None] + y[None, :])
    true_penalty = float((plan * _sns._phi(z)).sum())
    assert shifted * slope - true_penalty >= _sns.ARMIJO * shifted * slope


def test_phi_is_accurate_for_small_and_large_arguments():
    """φ(z) = e^z − 1 − z against its series in exact rational arithmetic (float64 inputs), to a few ulps."""
    from fractions import Fraction
    z = torch.tensor([-30.0, -1.0, -0.4999, -1e-3, -1e-9, 0.0, 1e-12, 1e-5, 0.3, 0.5, 2.0, 20.0], dtype=torch.float64)
    phi = _sns._phi(z)
    for value, got in zip(z.tolist(), phi.tolist()):
        exact = float(sum(Fraction(value) ** k / math.factorial(k) for k in range(2, 120)))  # converges for |z| <= 30
        assert abs(got - exact) <= 8 * EPS * exact, (value, got, exact)


def test_a_run_that_cannot_converge_says_why(monkeypatch):
    """tol = 1e-17 is below the rounding of the plan's row sums: the warning says so (both solvers). And when Newton
    steps are refused (here: no line-search trial allowed), the warning counts them and gives the last reason."""
    a, b, C = point_clouds(30, 30, seed=12)
    for solver in SOLVERS:
        with pytest.warns(RuntimeWarning, match=r"did not reach.*rounding level of the plan's row and column sums.*"
                                                r"loosen tol"):
            result = solver(a, b, C, 0.1, tol=1e-17, max_iter=400)
        assert not result.converged and np.all(np.isfinite(result.history["error"]))
    monkeypatch.setattr(_sns, "MAX_HALVINGS", 0)
    with pytest.warns(RuntimeWarning, match=r"Raise max_iter.* 10 Newton steps were replaced by Sinkhorn "
                                            r"iterations; the last because no step size"):
        hl.transport.sinkhorn_newton_sparse(a, b, C, 1e-3, tol=1e-12, max_iter=30)


@pytest.mark.parametrize("solver", SOLVERS)
def test_numpy_scalars_and_0d_tensors_are_numbers(solver):
    a, b, C = point_clouds(12, 9, seed=8)
    reference = solver(a, b, C, 0.05, tol=1e-9)
    for reg, tol in ((np.float64(0.05), np.float64(1e-9)),
                     (torch.tensor(0.05, dtype=torch.float64), torch.tensor(1e-9, dtype=torch.float64))):
        result = solver(a, b, C, reg, tol=tol)
        assert torch.equal(result.plan, reference.plan) and result.iterations == reference.iterations
