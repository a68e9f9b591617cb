"""hesslab.landscape's slices and second differences in float64 against dense quadratics."""

import math

import pytest
import torch
from helpers import known_quadratic
from torch import nn

import hesslab as hl
from hesslab import landscape
from hesslab.models import mlp

EPS = torch.finfo(torch.float64).eps



def test_second_difference_is_the_rayleigh_quotient_of_any_direction_and_scales_with_its_norm():
    f, A, x = known_quadratic()
    d = torch.randn(12, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 7
    exact = float(d @ A @ d)
    assert abs(float(landscape.second_difference(f, x, d)) - exact) <= 1e-6 * exact
    eigenvalues = torch.linalg.eigvalsh(A)
    assert eigenvalues[0] <= exact / float(d @ d) <= eigenvalues[-1]


def test_second_difference_of_a_smooth_net_converges_at_second_order():
    """Against the exact dᵀHd of a tanh net: the error falls ~100x when the step falls 10x (O(h²))."""
    generator = torch.Generator().manual_seed(0)
    X, y = torch.randn(30, 4, generator=generator, dtype=torch.float64), torch.arange(30) % 3
    model = mlp([4, 6, 3], generator=generator)
    f, theta = hl.loss_function(model, nn.functional.cross_entropy, X, y)
    d = torch.randn(theta.shape, generator=generator, dtype=torch.float64)
    exact = float(d @ hl.hvp(f, theta, d))
    errors = [abs(float(landscape.second_difference(f, theta, d, step)) - exact) for step in (1e-1, 1e-2)]
    assert 30 < errors[0] / errors[1] < 300, errors


def test_loss_slices_are_the_quadratic_on_a_grid():
    f, A, x = known_quadratic()
    d1, d2 = torch.eye(12, dtype=torch.float64)[:2]
    alphas, betas = torch.linspace(-1, 1, 5), torch.linspace(-2, 2, 3)
    one = landscape.loss_slice(f, x, [d1], [alphas])
    two = landscape.loss_slice(f, x, [d1, d2], [alphas, betas])
    assert one.losses.shape == (5,) and two.losses.shape == (5, 3)
    for i, a in enumerate(alphas.tolist()):
        assert abs(one.losses[i] - float(f(x + a * d1))) < 1e-12
        for j, b in enumerate(betas.tolist()):
            assert abs(two.losses[i, j] - float(f(x + a * d1 + b * d2))) < 1e-12
    assert one.center_loss == float(f(x))
    with pytest.raises(ValueError, match="one or two directions"):
        landscape.loss_slice(f, x, [d1, d2], [alphas])


def test_a_non_finite_point_of_a_slice_is_nan_not_an_error():
    generator = torch.Generator().manual_seed(0)
    X, y = torch.randn(8, 3, generator=generator, dtype=torch.float64), torch.arange(8) % 2
    model = mlp([3, 4, 2], generator=generator)
    f, theta = hl.loss_function(model, nn.functional.cross_entropy, X, y)
    d = torch.ones_like(theta)
    result = landscape.loss_slice(f, theta, [d], [[0.0, 1e308]])
    assert math.isfinite(result.losses[0]) and math.isnan(result.losses[1])


def test_loss_over_batches_is_the_sample_weighted_mean():
    generator = torch.Generator().manual_seed(0)
    X, y = torch.randn(10, 3, generator=generator, dtype=torch.float64), torch.arange(10) % 2
    model = mlp([3, 4, 2], generator=generator)
    f_all, theta = hl.loss_function(model, nn.functional.cross_entropy, X, y)
    f_batches, theta_b = landscape.loss_over_batches(model, nn.functional.cross_entropy,
                                                     [(X[:7], y[:7]), (X[7:], y[7:])])
    assert torch.equal(theta, theta_b)
    assert abs(float(f_all(theta)) - float(f_batches(theta))) < 1e-14


def test_a_slice_does_not_hide_other_errors_as_nan():
    x = torch.zeros(3, dtype=torch.float64)

    def f(point):
        if point[0] > 0.5:
            raise ValueError("some other problem")
        return (point**2).sum()

    with pytest.raises(ValueError, match="other problem"):
        landscape.loss_slice(f, x, [torch.ones(3, dtype=torch.float64)], [[0.0, 1.0]])
