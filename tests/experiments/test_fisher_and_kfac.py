"""The experiment of notebook 11 headless: EF is no Fisher away from a well-specified optimum; K-FAC, EKFAC, MC."""

import numpy as np
import pytest
import torch
from torch import nn

import hesslab as hl
from hesslab.experiments import fisher_and_kfac as experiment


def test_the_toy_matrices_are_those_of_the_library():
    data = experiment.regression_data(num_samples=30, noise=0.7, seed=1)
    model = nn.Linear(2, 1, bias=False).double()
    theta = torch.tensor([0.3, 2.0], dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(theta.unsqueeze(0))
    X, y = data.inputs, data.targets.unsqueeze(1)
    EF = hl.fisher(model, experiment.half_squared_error, X, y)
    torch.testing.assert_close(experiment.empirical_fisher_matrix(data, theta), EF, rtol=1e-12, atol=1e-14)
    ggn = hl.GGNOperator.from_model(model, experiment.half_squared_error, (X, y)).to_dense()
    torch.testing.assert_close(experiment.fisher_matrix(data), ggn, rtol=1e-12, atol=1e-14)
    f, x = hl.loss_function(model, experiment.half_squared_error, X, y)
    gradient = torch.func.grad(f)(x)
    torch.testing.assert_close(experiment.gradient(data, theta), gradient, rtol=1e-12, atol=1e-14)


def test_ef_tends_to_the_fisher_at_a_well_specified_optimum_only():
    well = [np.mean([experiment.empirical_fisher_gap(n, 1.0, seed) for seed in range(10)]) for n in (100, 10_000)]
    assert well[1] < 4 / np.sqrt(10_000) and well[1] < well[0] / 3
    assert experiment.empirical_fisher_gap(10_000, noise=2.0) > 2.5  # EF -> σ² F
    assert experiment.empirical_fisher_gap(10_000, offset=(1.5, -1.5)) > 1.0  # away from θ̂


def test_the_natural_gradient_points_at_the_optimum_and_ef_does_not():
    data = experiment.regression_data(noise=1.0)
    field = experiment.vector_field(data, points=9, damping=0.0)
    assert experiment.angle_to_natural_gradient(field, "EF").max() > 45
    optimum = data.optimum.numpy()
    t1, t2 = np.meshgrid(field.theta1, field.theta2)
    towards = np.stack([optimum[0] - t1, optimum[1] - t2], axis=-1)
    np.testing.assert_allclose(field.directions["NGD (Fisher)"], towards, atol=1e-10)


def test_kfac_is_exact_for_one_sample_of_one_layer():
    assert experiment.one_sample_kfac_gap(seed=3) < 1e-10


def test_ekfac_is_closer_than_kfac_on_every_block_and_the_errors_are_shaped():
    model, data = experiment.digits_mlp(steps=10, num_samples=40, width=6)
    errors = experiment.block_errors(experiment.curvatures(model, data, generator=torch.Generator().manual_seed(0)))
    assert errors.layers == ["0", "2", "4"]
    assert np.all(errors.frobenius["EKFAC"] <= errors.frobenius["K-FAC"])
    assert all(len(errors.frobenius[m]) == 3 and np.all(errors.top_eigenvalue[m] >= 0) for m in experiment.METHODS)
    assert errors.spectra[0]["GGN"].shape == (6 * 65,)


def test_the_monte_carlo_error_falls_like_one_over_root_samples():
    model, data = experiment.digits_mlp(steps=10, num_samples=40, width=6)
    samples = (1, 4, 16, 64)
    errors = experiment.monte_carlo_errors(model, data, samples, repeats=2, layer="4")
    assert -0.65 < experiment.log_log_slope(samples, errors) < -0.35


def test_natural_gradient_beats_gradient_descent_and_refuses_unknown_methods():
    model, data = experiment.digits_mlp(steps=10, num_samples=40, width=6)
    ggn = experiment.natural_gradient_losses("GGN", model, data, steps=3, damping=0.1)
    gd = experiment.natural_gradient_losses("GD", model, data, steps=3, damping=0.1)
    assert ggn[-1] < gd[-1] < gd[0] == ggn[0]
    with pytest.raises(ValueError, match="method must be one of"):
        experiment.natural_gradient_losses("Newton", model, data)


def test_the_notebooks_asserts_catch_plausibly_wrong_code(monkeypatch):
    """Mutations of the library that the notebook's asserts must catch (measured, correct → mutated)."""
    model, data = experiment.digits_mlp(steps=10, num_samples=40, width=6)
    samples = (1, 4, 16, 64)
    from hesslab import exact

    # the Monte-Carlo Fisher drawing the most likely class every time: a biased estimate, its error stops falling
    def most_likely(outputs, likelihood, reduction, num_samples, generator):
        return outputs.argmax(1).repeat_interleave(num_samples)

    with monkeypatch.context() as patch:
        patch.setattr(exact, "sample_targets", most_likely)
        errors = experiment.monte_carlo_errors(model, data, samples, repeats=1, layer="4")
        assert not -0.65 < experiment.log_log_slope(samples, errors) < -0.35

    # EKFAC's refitted diagonal off by 30%: no longer the Frobenius-best in K-FAC's eigenbasis on some block
    original = experiment.KFACOperator.from_model.__func__

    def scaled(cls, *args, **kwargs):
        op = original(cls, *args, **kwargs)
        for f in op.factors:
            if f.corrected is not None:  # EKFAC's operators only (plain K-FAC does not compute it)
                f.corrected = 1.3 * f.corrected
        return op

    with monkeypatch.context() as patch:
        patch.setattr(experiment.KFACOperator, "from_model", classmethod(scaled))
        model, data = experiment.digits_mlp(0)
        errors = experiment.block_errors(experiment.curvatures(model, data,
                                                               generator=torch.Generator().manual_seed(1)))
        assert not np.all(errors.frobenius["EKFAC"] <= errors.frobenius["K-FAC"])
