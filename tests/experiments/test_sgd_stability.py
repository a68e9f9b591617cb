"""The experiment of notebook 08 headless: SGD (batch 1) ends with tr(H) <= 2/η, GD only with λ_max <= 2/η."""

import pytest
import torch

from hesslab.experiments import sgd_stability as experiment


def test_the_hessian_matches_its_closed_form_away_from_a_minimum():
    X, y = experiment.sparse_regression(n=4, dim=6, seed=1)
    model = experiment.DiagonalLinearNet(6, alpha=0.7)
    with torch.no_grad():
        model.u.add_(0.3 * torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    H = experiment.hessian(model, X, y)
    assert torch.allclose(H, experiment.closed_form_hessian(model, X, y), atol=1e-12)
    assert torch.isclose(H.trace(), 4 * ((model.u**2 + model.v**2).detach() * (X**2).mean(0)).sum())


def test_the_initial_trace_is_eight_alpha_squared_times_the_mean_squared_norm():
    run = experiment.train(alpha=2.0, lr=0.002, steps=0, n=10, dim=8)
    X, _ = experiment.sparse_regression(n=10, dim=8)
    assert run.final_trace == pytest.approx(8 * 4 * float((X**2).sum()) / 10)


def test_sgd_ends_flatter_than_two_over_eta_and_gd_does_not():
    gd = experiment.train(alpha=1.0, lr=0.01, steps=1000, every=1000)
    sgd = experiment.train(alpha=1.0, lr=0.01, batch_size=1, steps=1000, every=1000)
    assert gd.loss[-1] < 1e-10 and sgd.loss[-1] < 1e-5
    assert sgd.final_trace < 0.5 * 2 / 0.01 < gd.final_trace
    assert gd.final_sharpness <= 2 / 0.01


def test_gd_started_too_sharp_ends_at_the_edge_with_a_large_trace():
    gd = experiment.train(alpha=1.0, lr=0.06, steps=1000, every=1000)
    assert gd.sharpness[0] > 2 / 0.06 >= gd.final_sharpness > 0.8 * 2 / 0.06
    assert gd.final_trace > 5 * 2 / 0.06


def test_at_a_tiny_step_sgd_is_no_flatter_than_gd():
    gd = experiment.train(alpha=1.0, lr=0.002, steps=1000, every=1000)
    sgd = experiment.train(alpha=1.0, lr=0.002, batch_size=1, steps=1000, every=1000)
    assert sgd.final_trace == pytest.approx(gd.final_trace, rel=0.02)


def test_the_same_seed_gives_the_same_run():
    first, again = (experiment.train(lr=0.01, batch_size=2, steps=30, every=10, seed=3) for _ in range(2))
    assert (first.trace == again.trace).all() and (first.loss == again.loss).all()


def test_a_diverging_run_is_refused():
    with pytest.raises(ValueError, match="training diverged"):
        experiment.train(alpha=1.0, lr=0.05, batch_size=1, steps=200, every=200)


@pytest.mark.parametrize("kwargs, match", [({"lr": 0.0}, "lr"), ({"lr": -1.0}, "lr"), ({"alpha": 0.0}, "alpha"),
                                           ({"batch_size": 21}, "batch_size"), ({"batch_size": 0}, "batch_size"),
                                           ({"steps": -1}, "steps"), ({"every": 0}, "every")])
def test_bad_input_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        experiment.train(**{"steps": 1, **kwargs})
