"""Notebook 05's experiments, headless at the notebook's quick settings: the paper's phenomenon as numbers."""

import pytest
import torch

import hesslab as hl
from hesslab.experiments import sinkhorn_newton_sparse as ex
from hesslab.transport import sparsify

N, GRID, REG, TOL = 400, 20, 1e-3, 1e-9  # the notebook's quick settings


@pytest.fixture(scope="module")
def clouds():
    return ex.random_point_clouds(N, hl.seed(0, "cpu"))


@pytest.fixture(scope="module")
def cloud_race(clouds):
    return ex.race(clouds, REG, TOL)


def test_problems_are_what_they_say():
    first, again = ex.random_point_clouds(30, hl.seed(1, "cpu")), ex.random_point_clouds(30, hl.seed(1, "cpu"))
    assert torch.equal(first.C, again.C) and first.C.max() == 1 and (first.C >= 0).all()
    assert torch.allclose(first.a, torch.full((30,), 1 / 30, dtype=torch.float64))
    assert ((first.source >= 0) & (first.source <= 1)).all() and first.source.dtype == torch.float64
    grid = ex.gaussian_mixture_densities(8)
    assert grid.C.shape == (64, 64) and grid.C.max() == 1 and torch.all(grid.C.diagonal() == 0)
    assert abs(grid.a.sum().item() - 1) < 1e-14 and abs(grid.b.sum().item() - 1) < 1e-14
    assert (grid.a > 0).all() and (grid.b > 0).all() and not torch.equal(grid.a, grid.b)


def test_sns_needs_ten_times_fewer_iterations_on_random_clouds(cloud_race):
    assert cloud_race.sinkhorn.converged and cloud_race.newton.converged
    assert cloud_race.sinkhorn.history["error"][-1] <= TOL and cloud_race.newton.history["error"][-1] <= TOL
    assert cloud_race.iteration_ratio >= 10
    assert cloud_race.sinkhorn.iterations >= 1000  # "thousands of iterations at small reg" ...
    assert cloud_race.newton.iterations <= 50  # ... "while SNS needs tens"


def test_plans_agree_with_each_other_and_with_pot(clouds, cloud_race):
    pot = ex.pot_plan(clouds, REG, TOL)
    assert cloud_race.plan_difference <= 1e-6
    assert (cloud_race.newton.plan - pot).abs().sum().item() <= 1e-6
    assert (cloud_race.sinkhorn.plan - pot).abs().sum().item() <= 1e-6


def test_sns_needs_ten_times_fewer_iterations_on_the_w2_grid():
    grid_race = ex.race(ex.gaussian_mixture_densities(GRID), REG, TOL)
    assert grid_race.sinkhorn.converged and grid_race.newton.converged
    assert grid_race.iteration_ratio >= 10 and grid_race.plan_difference <= 1e-6


def test_sinkhorn_iterations_grow_like_one_over_reg_and_sns_iterations_do_not(clouds, cloud_race):
    regs = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3)
    sweep = ex.iterations_vs_reg(clouds, regs, TOL, done=(cloud_race,))
    assert sweep.sinkhorn_iterations[-1] == cloud_race.sinkhorn.iterations  # reused, not run again
    assert all(sweep.sinkhorn_converged)
    slow, fast = sweep.sinkhorn_iterations, sweep.newton_iterations
    assert all(s1 < s2 for s1, s2 in zip(slow, slow[1:]))
    assert slow[-1] / slow[0] >= 0.5 * (regs[0] / regs[-1])  # a hundredfold smaller reg: ~ a hundredfold more
    assert max(fast) - min(fast) <= 15 and max(fast) <= 50


def test_the_hessian_is_nearly_sparse_at_small_reg(clouds, cloud_race):
    plan = cloud_race.newton.plan
    small = ex.hessian_sparsity(plan, (0.0, 1e-9, 1e-6, 1e-3))
    assert small.density[0] == 1.0 and small.mass_dropped[0] == 0.0
    assert all(d1 >= d2 for d1, d2 in zip(small.density, small.density[1:]))
    assert all(m1 <= m2 for m1, m2 in zip(small.mass_dropped, small.mass_dropped[1:]))
    assert small.density[2] < 0.1 and small.mass_dropped[2] < 1e-5  # < 10% of the entries carry all but 1e-5
    blurred = hl.transport.sinkhorn_newton_sparse(clouds.a, clouds.b, clouds.C, 1e-1, tol=TOL).plan
    assert ex.hessian_sparsity(blurred, (1e-6,)).density[0] > 5 * small.density[2]


def test_mass_curve_keeps_the_largest_entries():
    """On a plan small enough that every k is sampled: the dropped mass is that of the smallest entries, and for the
    number of entries the threshold rule keeps, keeping the largest ones drops no more than the rule does."""
    problem = ex.random_point_clouds(12, hl.seed(2, "cpu"))
    plan = hl.transport.sinkhorn_newton_sparse(problem.a, problem.b, problem.C, 1e-2, tol=1e-12).plan
    fraction, dropped = ex.mass_curve(plan, points=10_000)
    total = plan.numel()
    assert torch.equal((fraction * total).round().long(), torch.arange(1, total))  # every k < n·m
    ascending = plan.reshape(-1).sort().values
    for k in (1, 10, 100, total - 1):
        assert dropped[k - 1].item() == pytest.approx(ascending[: total - k].sum().item() / plan.sum().item(),
                                                      rel=1e-12)
    rule = ex.hessian_sparsity(plan, (1e-3,))
    k = round(rule.density[0] * total)
    assert 0 < k < total and dropped[k - 1].item() <= rule.mass_dropped[0] * (1 + 1e-12)


def test_banded_order_and_hessian_pattern(clouds, cloud_race):
    plan = cloud_race.newton.plan
    source_order, target_order = ex.banded_order(clouds, plan)
    assert torch.equal(source_order.sort().values, torch.arange(N))
    assert torch.equal(target_order.sort().values, torch.arange(N))
    pattern = ex.hessian_pattern(plan, 1e-6, source_order, target_order)
    S = sparsify(plan, 1e-6)
    assert pattern.shape == (2 * N, 2 * N) and torch.equal(pattern, pattern.T) and pattern.diagonal().all()
    assert int(pattern.sum()) == 2 * S.values().numel() + 2 * N
    # ordered, the kept entries lie near the diagonal of the coupling block: a band, not a scatter
    rows, cols = pattern[:N, N:].nonzero(as_tuple=True)
    assert (rows - cols).abs().float().median() < N / 10


def test_marginal_errors_are_recomputed_from_the_plan():
    grid = ex.gaussian_mixture_densities(4)
    plan = grid.a[:, None] * grid.b[None, :]  # the independent coupling: both marginals exact
    rows, cols = ex.marginal_errors(grid, plan)
    assert rows <= ex.marginal_rounding(grid) and cols <= ex.marginal_rounding(grid)
    wrong = grid.a[:, None] * grid.a[None, :]  # columns matched to a instead of b
    assert ex.marginal_errors(grid, wrong)[1] == pytest.approx(float((grid.a - grid.b).abs().sum()), rel=1e-12)
    with pytest.raises(ValueError, match="cost's shape"):
        ex.marginal_errors(grid, plan[:3])


def test_on_the_grid_both_marginals_hold_and_the_plans_agree_with_pot():
    """The grid is where a ≠ b: a Sinkhorn whose column update used a instead of b logs a converged row error but
    leaves ‖Pᵀ1 − b‖₁ = 1.6 and ‖P − P_POT‖₁ = 2.0 (measured; tests/test_notebook_mutations.py applies it).
    Measured correct: recomputed marginal errors 9.8e-10 (Sinkhorn) and 7.4e-10 (SNS); POT differences 3.1e-9 and
    3.8e-9."""
    grid = ex.gaussian_mixture_densities(GRID)
    grid_race = ex.race(grid, REG, TOL)
    pot = ex.pot_plan(grid, REG, TOL)
    for result in (grid_race.sinkhorn, grid_race.newton):
        assert sum(ex.marginal_errors(grid, result.plan)) <= TOL + ex.marginal_rounding(grid)
        assert (result.plan - pot).abs().sum().item() <= 1e-6


@pytest.mark.parametrize("seed", (1, 2, 3))
def test_notebook_claims_hold_on_further_seeds(seed):
    """Notebook 05's asserts on the random clouds (n = 400, reg 1e-3, tol 1e-9) for point sets it was not tuned on
    (``hl.seed(seed)``; the notebook uses 0). The grid is deterministic and is checked above.

    Measured, seeds 1/2/3: Sinkhorn 2035/1918/2310 iterations, SNS 30/32/33 (68/60/70×); recomputed marginal errors
    9.95e-10/9.97e-10/9.93e-10 (Sinkhorn), ≤ 3.2e-12 (SNS); ‖P_SNS − P_POT‖₁ ≈ 6.9e-9, ‖P_Sinkhorn − P_POT‖₁ ≈ 2e-9;
    after the warm start SNS's error never exceeds its value there. Mutations these asserts are meant to catch: SNS
    without its Newton steps (iteration ratio 1); a plan not rescaled by the accepted step (recomputed marginals off
    though the log says converged); a wrong reg convention (e.g. exp(−C·reg): POT differs by O(1)).
    """
    clouds = ex.random_point_clouds(N, hl.seed(seed, "cpu"))
    cloud_race = ex.race(clouds, REG, TOL)
    pot = ex.pot_plan(clouds, REG, TOL)
    assert cloud_race.sinkhorn.converged and cloud_race.newton.converged
    assert cloud_race.newton.iterations * 10 <= cloud_race.sinkhorn.iterations, cloud_race.iteration_ratio
    for result in (cloud_race.sinkhorn, cloud_race.newton):
        assert result.history["error"][-1] <= TOL
        assert sum(ex.marginal_errors(clouds, result.plan)) <= TOL + ex.marginal_rounding(clouds)
        assert (result.plan - pot).abs().sum().item() <= 1e-6
    error = cloud_race.newton.history["error"]
    assert max(error[20:]) <= error[20]  # the warm start's error caps SNS
    assert cloud_race.plan_difference <= 1e-6
