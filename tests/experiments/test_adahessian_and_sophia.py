"""The AdaHessian/Sophia experiment headless, at the notebook's quick settings: the phenomena as numbers.

Calibrated on seeds 0, 1, 2 (the notebook uses the same); what these assert held on all three."""

import math

import numpy as np
import pytest
import torch

from hesslab.experiments import adahessian_and_sophia as ex

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems: see conftest.one_thread


def test_toy_matches_its_formula_and_its_stationary_points():
    theta = torch.tensor([0.3, -1.0], dtype=torch.float64)
    expected = 8 * (0.3 - 1) ** 2 * (1.3 * 0.09 + 0.6 + 1) + 0.5 * 25
    assert ex.toy_loss(theta).item() == pytest.approx(expected, rel=1e-15)
    for point, value in ((ex.TOY_MINIMUM, 0.0), (ex.TOY_SADDLE, 8.0)):
        x = torch.tensor(point, dtype=torch.float64, requires_grad=True)
        (gradient,) = torch.autograd.grad(ex.toy_loss(x), x)
        assert gradient.abs().max() == 0 and ex.toy_loss(x).item() == value
    # the saddle: negative curvature in θ1, positive in θ2; the start already has negative curvature in θ1
    saddle = ex.toy_hessian_diagonal(torch.tensor(ex.TOY_SADDLE, dtype=torch.float64))
    assert saddle[0].item() == pytest.approx(8 * (2 - 8 + 2.6), rel=1e-14) and saddle[1].item() == 1.0  # −27.2
    assert ex.toy_hessian_diagonal(torch.tensor(ex.TOY_START, dtype=torch.float64))[0] < 0
    assert ex.gd_stability_limit() == pytest.approx(2 / 68.8, rel=1e-14)


def test_newton_goes_to_the_saddle():
    run = ex.toy_newton()
    assert abs(run.history["theta1"][-1]) < 1e-3 and run.history["loss"][-1] == pytest.approx(8.0, abs=1e-9)
    assert not run.converged and run.reason.startswith("a stationary point") and run.iterations <= 10


@pytest.mark.parametrize("estimator", ["exact", "hutchinson"])
def test_sophia_with_the_diagonal_converges_in_at_most_10_steps(estimator):
    run = ex.toy_sophia(lr=1.0, rho=1.0, estimator=estimator)
    assert run.converged and run.iterations <= 10  # measured: 4
    assert run.history["theta1"][1] == pytest.approx(1.2)  # the first θ1 step is clipped: 0.2 + lr·1


def test_sophia_with_a_noisy_diagonal_still_converges():
    for seed in (0, 1, 2):
        run = ex.toy_sophia(estimator="noisy", seed=seed)
        assert run.converged and run.iterations <= 40, (seed, run.iterations)


def test_the_best_gradient_descent_needs_300_steps_and_larger_rates_fail():
    grid = ex.toy_grid("gd", ex.GD_GRID)
    assert grid.steps.min() >= 300 and grid.best.converged and grid.best.iterations == grid.steps.min()
    assert grid.best_lr < ex.gd_stability_limit()
    assert np.all(np.isinf(grid.steps[grid.lrs > ex.gd_stability_limit()]))  # measured: best 355 at lr 0.0285


def test_adam_needs_more_than_ten_times_sophias_steps():
    grid = ex.toy_grid("adam", ex.ADAM_GRID)
    assert 100 <= grid.steps.min() <= 300  # measured: 170 at lr 0.17
    assert grid.steps.min() >= 10 * ex.toy_sophia().iterations


def test_estimator_errors_fall_as_one_over_sqrt_probes():
    for seed in (0, 1, 2):
        errors = ex.estimator_errors(seed=seed, width=8)
        pairs = ((errors.hutchinson, errors.hutchinson_predicted), (errors.gnb, errors.gnb_predicted))
        for measured, predicted in pairs:
            slope = ex.EstimatorErrors.slope(errors.probes, measured)
            assert -0.65 <= slope <= -0.35, (seed, slope)
            assert np.all(np.abs(np.log(measured / predicted)) <= np.log(1.5)), (seed, measured / predicted)


@pytest.fixture(scope="module")
def runs():
    return {name: [ex.train(name, seed=seed) for seed in (0, 1, 2)] for name in ex.OPTIMIZERS}


def test_every_tuned_optimizer_reaches_the_target_on_every_seed(runs):
    for name, by_seed in runs.items():
        for seed, run in enumerate(by_seed):
            assert run.converged and math.isfinite(run.first("loss", ex.TASK_TARGET)), (name, seed)
            assert np.all(np.diff(run.history["cost"]) > 0) and len(set(map(len, run.history.values()))) == 1


def test_adam_is_cheaper_than_adahessian_against_cost_on_every_seed(runs):
    for adam, adahessian in zip(runs["Adam"], runs["AdaHessian"]):
        assert adam.first("loss", ex.TASK_TARGET, "cost") < adahessian.first("loss", ex.TASK_TARGET, "cost")


def test_sophia_clips_a_large_but_not_total_fraction_of_coordinates(runs):
    for name in ("SophiaG", "SophiaH"):
        for run in runs[name]:
            clipped = run.history["clipped"][1:]
            assert np.all((0.3 < clipped) & (clipped < 0.99)), (name, clipped.min(), clipped.max())
            assert clipped[0] > clipped[-1]
    assert np.all(np.isnan(runs["Adam"][0].history["clipped"]))


def test_step_costs_follow_the_cost_model():
    assert [ex.step_cost(name, refreshed=True) for name in ex.OPTIMIZERS] == [1, 1, 3, 2, 3]
    assert [ex.step_cost(name, refreshed=False) for name in ex.OPTIMIZERS] == [1, 1, 3, 1, 1]


@pytest.mark.parametrize("call, message", [
    (lambda: ex.toy_sophia(estimator="gnb"), "estimator must be one of"),
    (lambda: ex.toy_grid("newton", (0.1,)), "method must be"),
    (lambda: ex.train("Lion"), "optimizer must be one of"),
    (lambda: ex.step_cost("Lion", True), "optimizer must be one of"),
])
def test_bad_experiment_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("seed", (3, 4, 5))
def test_notebook_claims_hold_on_further_seeds(seed):
    """Notebook 10's seed-dependent claims on seeds it was not calibrated on (its rates were tuned on seed 0 and
    checked on 1, 2; the toy's exact-diagonal runs are deterministic).

    Measured on seeds 3-5: every optimizer reaches loss 0.01 (steps SGD 70-100, Adam 80-90, AdaHessian 80-100,
    SophiaG 150-170, SophiaH 140-170); Adam 80-90 against AdaHessian 240-300 gradient-equivalents; clipped fraction
    SophiaG 0.68-0.96, SophiaH 0.46-0.95, falling; the noisy-diagonal toy converges in 8-11 steps.
    """
    runs = {name: ex.train(name, seed=seed) for name in ex.OPTIMIZERS}
    for name, run in runs.items():
        assert run.converged and math.isfinite(run.first("loss", ex.TASK_TARGET)), name
    assert runs["Adam"].first("loss", ex.TASK_TARGET, "cost") < runs["AdaHessian"].first("loss", ex.TASK_TARGET, "cost")
    for name in ("SophiaG", "SophiaH"):
        clipped = runs[name].history["clipped"][1:]
        assert np.all((0.3 < clipped) & (clipped < 0.99)) and clipped[0] > clipped[-1], name
    toy = ex.toy_sophia(estimator="noisy", seed=seed)
    assert toy.converged and toy.iterations <= 40
    errors = ex.estimator_errors(seed=seed, width=8)
    for measured, predicted in ((errors.hutchinson, errors.hutchinson_predicted), (errors.gnb, errors.gnb_predicted)):
        assert -0.65 <= ex.EstimatorErrors.slope(errors.probes, measured) <= -0.35
        assert np.all(np.abs(np.log(measured / predicted)) <= np.log(1.5))
