"""The lazy-Hessian experiment headless, at the notebook's quick settings: the paper's phenomenon as numbers."""

import math

import numpy as np
import pytest
import torch

from hesslab.data import breast_cancer
from hesslab.experiments import lazy_newton as lazy

SWEEP = (1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8)  # the notebook's quick sweep: m = 1, d/8, ..., 8d
TARGET = 1e-10


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems: see conftest.one_thread


@pytest.fixture(scope="module", params=["breast_cancer", "digits"])
def sweep(request):
    return lazy.lazy_sweep(request.param, SWEEP)


def test_every_run_reaches_the_target(sweep):
    for trace in sweep.traces:
        assert trace.converged and trace.history["gap"].min() <= TARGET and math.isfinite(trace.cost_to(TARGET))
        assert trace.history["gap"].min() >= -1e-14  # f* is the minimum up to rounding


def test_the_cost_is_u_shaped_with_its_bottom_near_d(sweep):
    """The paper: best total arithmetic cost at m = d. Asserted: the optimum lies in [d/4, 4d], m = d beats full
    Newton (m = 1) and both ends of the sweep (m = 1 and m = 8d) cost more than the optimum by 50% or more."""
    print(sweep.name, dict(zip(sweep.periods, sweep.costs.round())))
    assert sweep.d / 4 <= sweep.best_m <= 4 * sweep.d
    m_d = lazy.update_periods(sweep.d, (1,))[1]
    assert m_d == sweep.d and sweep.cost_for(m_d) < sweep.cost_for(1)
    assert min(sweep.costs[0], sweep.costs[-1]) >= 1.5 * sweep.costs.min()


def test_lazy_runs_compute_fewer_hessians_as_m_grows(sweep):
    hessians = [trace.hessians for trace in sweep.traces]
    assert hessians == sorted(hessians, reverse=True) and hessians[0] == sweep.traces[0].iterations


@pytest.mark.parametrize("dataset", ["breast_cancer", "digits"])
def test_damped_newton_converges_from_the_far_start_where_pure_newton_diverges(dataset):
    run = lazy.far_start(dataset)
    assert run.plain_diverged and run.plain.history["gap"][-1] > 10 * run.plain.history["gap"][0]
    assert run.damped.converged and run.damped.history["gap"][-1] <= TARGET
    assert 0 < run.stepsizes[0] < 0.5 and run.stepsizes[-1] > 0.99  # damped at first, pure Newton at the end


def test_nonconvex_variant_is_not_convex_at_the_start_and_every_run_becomes_stationary():
    assert lazy.smallest_hessian_eigenvalue("breast_cancer") < 0
    runs = lazy.nonconvex_runs("breast_cancer")
    assert [run.m for run in runs] == [1, 8, 31, 124]
    for run in runs:
        assert run.converged and run.history["error"][-1] <= 1e-8 and np.all(np.isnan(run.history["gap"]))


def test_problems_match_their_definition():
    problem = lazy.logistic_problem("breast_cancer", 1e-3)
    assert problem.d == 31 and lazy.logistic_problem("digits").d == 65
    x = torch.linspace(-1, 1, 31, dtype=torch.float64)
    X, y = breast_cancer()
    z = X @ x[:30] + x[30]
    expected = torch.nn.functional.binary_cross_entropy_with_logits(z, y.double()) + 0.5e-3 * x @ x
    torch.testing.assert_close(problem.f(x), expected, atol=1e-14, rtol=0)
    assert problem.cost_model.flops_per_gradient == 4 * 569 * 31


@pytest.mark.parametrize("call, message", [
    (lambda: lazy.logistic_problem("mnist"), "dataset must be one of"),
    (lambda: lazy.logistic_problem("digits", mu=0.0), "mu must be"),
    (lambda: lazy.starting_point(lazy.logistic_problem(), "moon"), "start must be one of"),
    (lambda: lazy.lazy_run("breast_cancer", 0), "update_every"),
])
def test_bad_experiment_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("seed", (1, 2, 3))
def test_notebook_claims_hold_from_random_starts(seed):
    """Notebook 04's asserts at its quick scale, from starts it was not tuned on: x0 ~ N(0, I) for the sweep and
    3·1 + N(0, I) for the far start (the notebook uses 1 and 3·1).

    Measured over seeds 1-4: best m = 2d or d on both data sets, cost(m = d) / cost(m = 1) 0.21-0.41, pure Newton
    worse than its start and damped Newton at f - f* < 1e-16 on every seed. Mutations these asserts are meant to
    catch (by reasoning; issue 21's mutation test applies them): a Hessian refreshed every step whatever m
    (cost(m = d) = cost(1)); damped Newton without its step size (diverges like pure Newton from the far start).
    """
    for name in ("breast_cancer", "digits"):
        sweep = lazy.lazy_sweep(name, (1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8), start="random", seed=seed)
        assert all(trace.history["gap"].min() <= 1e-10 for trace in sweep.traces), name
        assert sweep.d / 4 <= sweep.best_m <= 4 * sweep.d, (name, sweep.best_m)
        assert sweep.cost_for(lazy.update_periods(sweep.d, (1,))[1]) < sweep.cost_for(1), name
        run = lazy.far_start(name, start="far-random", seed=seed)
        assert run.plain_diverged, name
        assert run.damped.converged and run.damped.history["gap"][-1] <= 1e-10, name
