"""hesslab.landscape's radius of convergence of softmax cross-entropy against closed forms."""

import math

import pytest
import torch
from torch import nn

import hesslab as hl
from hesslab import landscape
from hesslab.models import mlp

EPS = torch.finfo(torch.float64).eps


def test_logit_derivatives_by_jvp_equal_finite_differences():
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(9, 5, generator=generator, dtype=torch.float64)
    model = mlp([5, 7, 4], activation="tanh", generator=generator)
    g, theta = hl.output_function(model, X)
    v = torch.randn(theta.shape, generator=generator, dtype=torch.float64)
    z, a = landscape.logit_derivatives(model, X, v)
    h = 1e-5
    finite = (g(theta + h * v) - g(theta - h * v)) / (2 * h)
    torch.testing.assert_close(z, g(theta).detach(), rtol=0, atol=0)
    torch.testing.assert_close(a, finite.detach(), rtol=1e-8, atol=1e-9)


def test_convergence_radius_is_pi_over_the_largest_spread():
    a = torch.tensor([[0.0, 1.0, -1.0], [3.0, 0.5, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    r = landscape.convergence_radius(a)
    torch.testing.assert_close(r.spreads, torch.tensor([2.0, 3.0, 0.0], dtype=torch.float64))
    assert r.radius == math.pi / 3 and r.critical_sample == 1
    assert landscape.convergence_radius(torch.zeros(4, 3, dtype=torch.float64)).radius == math.inf
    with pytest.raises(ValueError, match="C >= 2"):
        landscape.convergence_radius(torch.zeros(4, 1))


def test_binary_singularity_is_a_zero_of_the_partition_function_at_the_predicted_radius():
    z = torch.tensor([[0.3, 2.0], [1.0, -0.5]], dtype=torch.float64)
    a = torch.tensor([[1.0, -2.0], [0.25, 0.75]], dtype=torch.float64)
    t = landscape.binary_singularity(z, a)
    partition = torch.exp(z[:, 0] + t * a[:, 0]) + torch.exp(z[:, 1] + t * a[:, 1])
    scale = torch.exp(z[:, 0] + t.real * a[:, 0]).abs() + torch.exp(z[:, 1] + t.real * a[:, 1]).abs()
    assert (partition.abs() / scale).max() < 1e-14
    delta, spread = z[:, 1] - z[:, 0], (a[:, 1] - a[:, 0]).abs()
    torch.testing.assert_close(landscape.binary_radius(z, a), (delta**2 + math.pi**2).sqrt() / spread)
    # the multiclass bound π/Δ_a is below the exact binary radius
    assert (landscape.binary_radius(z, a) >= math.pi / spread).all()


def test_linearised_cross_entropy_matches_torch_on_the_real_line_and_its_taylor_series_has_the_binary_radius():
    z = torch.tensor([[0.4, -0.6]], dtype=torch.float64)
    a = torch.tensor([[1.5, -0.5]], dtype=torch.float64)
    y = torch.tensor([0])
    t = torch.tensor([-1.0, 0.0, 0.7], dtype=torch.float64)
    want = torch.stack([nn.functional.cross_entropy(z + s * a, y) for s in t])
    torch.testing.assert_close(landscape.linearised_cross_entropy(z, a, y, t), want, rtol=1e-14, atol=1e-15)
    # Taylor coefficients from Cauchy's formula: c_1 = ℓ'(0), c_2 = ℓ''(0)/2 by closed form (softmax moments)
    rho = landscape.convergence_radius(a).radius
    c = landscape.taylor_coefficients(lambda s: landscape.linearised_cross_entropy(z, a, y, s), 60, 0.8 * rho)
    p = torch.softmax(z[0], 0)
    mean = float(p @ a[0])
    variance = float(p @ a[0] ** 2) - mean**2
    assert abs(float(c[0]) - float(want[1])) < 1e-13
    assert abs(float(c[1]) - (mean - float(a[0, 0]))) < 1e-12
    assert abs(float(c[2]) - variance / 2) < 1e-12
    # root test: |c_n|^(-1/n) tends to the exact radius √(δ² + π²)/Δ (the log singularity gives c_n ~ R^{-n}/n)
    exact = float(landscape.binary_radius(z, a)[0])
    n = torch.arange(40, 61)
    estimate = (c[40:61].abs() * n).pow(-1.0 / n).mean()
    assert abs(float(estimate) - exact) < 0.02 * exact
    assert exact > rho


def test_softmax_convergence_radius_of_a_net_uses_one_jvp():
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    model = mlp([3, 5, 4], generator=generator)
    _, theta = hl.output_function(model, X)
    v = torch.randn(theta.shape, generator=generator, dtype=torch.float64)
    _, a = landscape.logit_derivatives(model, X, v)
    assert landscape.softmax_convergence_radius(model, X, v).radius == landscape.convergence_radius(a).radius
    with pytest.raises(ValueError, match="shape"):
        landscape.logit_derivatives(model, X, v[:-1])


def test_cross_entropy_taylor_coefficients_beyond_rho_a_reach_the_exact_binary_radius():
    """Between ρ_a and the exact radius the principal log jumps; the unwrapped phase does not. Two samples; the
    coefficients must equal those from a small circle (inside ρ_a, where no unwrapping is needed)."""
    z = torch.tensor([[0.4, -3.6], [2.0, 1.0]], dtype=torch.float64)
    a = torch.tensor([[1.5, -0.5], [0.2, -0.3]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    rho = landscape.convergence_radius(a).radius
    exact = float(landscape.binary_radius(z, a).min())
    assert exact > 1.5 * rho
    small = landscape.taylor_coefficients(lambda s: landscape.linearised_cross_entropy(z, a, y, s), 12, 0.5 * rho,
                                          num_points=512)
    large = landscape.cross_entropy_taylor_coefficients(z, a, y, 60, 0.9 * exact)
    torch.testing.assert_close(large[:13], small, rtol=1e-9, atol=1e-12)
    n = torch.arange(45, 61)
    estimate = float((large[45:61].abs() * n).pow(-1.0 / n).mean())
    assert abs(estimate - exact) < 0.03 * exact, (estimate, exact)
    with pytest.raises(ValueError, match="encloses a zero"):
        landscape.cross_entropy_taylor_coefficients(z, a, y, 10, 1.1 * exact)
