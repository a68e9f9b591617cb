"""hesslab.landscape in float64 against dense quadratics and closed forms."""

import math

import pytest
import torch
from torch import nn

import hesslab as hl
from hesslab import landscape
from hesslab.models import mlp

EPS = torch.finfo(torch.float64).eps


def quadratic(n=12, seed=0):
    """f(x) = ½ xᵀ A x + bᵀ x with a known symmetric A (eigenvalues 1..n, the top one 3n): exact H = A everywhere."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eigenvalues = torch.arange(1, n + 1, dtype=torch.float64)
    eigenvalues[-1] = 3 * n
    A = Q @ torch.diag(eigenvalues) @ Q.T
    b = torch.randn(n, generator=g, dtype=torch.float64)
    return (lambda x: 0.5 * x @ A @ x + b @ x), A, torch.randn(n, generator=g, dtype=torch.float64)


def test_hessian_directions_are_the_top_eigenvectors_and_their_second_difference_is_the_eigenvalue():
    f, A, x = quadratic()
    values, vectors = landscape.hessian_directions(hl.HessianOperator(f, x), k=2,
                                                   generator=torch.Generator().manual_seed(1))
    exact_values, exact_vectors = torch.linalg.eigh(A)
    torch.testing.assert_close(values, exact_values.flip(0)[:2], rtol=1e-8, atol=0)
    assert abs(abs(float(vectors[:, 0] @ exact_vectors[:, -1])) - 1) < 1e-8
    # a quadratic has no O(h²) truncation error: only rounding, ~ 4 eps |f| / step²
    for i in range(2):
        curvature = landscape.second_difference(f, x, vectors[:, i], step=1e-2)
        bound = 4 * EPS * (abs(float(f(x))) + 10) / 1e-4
        assert abs(float(curvature) - float(values[i])) <= bound + 1e-8 * float(values[i])


def test_second_difference_is_the_rayleigh_quotient_of_any_direction_and_scales_with_its_norm():
    f, A, x = quadratic()
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


def conv_bn_net(generator):
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64))
    return net.eval()


def test_filter_normalised_directions_have_the_weights_filter_norms_and_zero_on_1d_parameters():
    generator = torch.Generator().manual_seed(0)
    net = conv_bn_net(generator)
    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    d = landscape.random_direction(net, "filter", generator=generator)
    assert d.shape == theta.shape
    for (name, p), got, want in zip(net.named_parameters(), landscape.filter_norms(net, d),
                                    landscape.filter_norms(net, theta)):
        if p.ndim >= 2:
            torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
        else:  # conv bias, batch norm's γ and β, linear bias
            assert got.abs().max() == 0, name
    # layer normalisation: each weight tensor's norm, not each filter's
    d = landscape.random_direction(net, "layer", generator=generator)
    start = 0
    for p in net.parameters():
        piece = d[start:start + p.numel()]
        start += p.numel()
        want = p.detach().norm() if p.ndim >= 2 else torch.tensor(0.0, dtype=torch.float64)
        torch.testing.assert_close(piece.norm(), want, rtol=1e-12, atol=0)
    # None: the plain standard normal draw, biases included
    d = landscape.random_direction(net, None, generator=torch.Generator().manual_seed(5))
    assert (d != 0).all() and abs(float(d.std()) - 1) < 0.2


def test_random_direction_is_reproducible_and_validates():
    net = conv_bn_net(torch.Generator().manual_seed(0))
    a = landscape.random_direction(net, generator=torch.Generator().manual_seed(7))
    b = landscape.random_direction(net, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="normalization"):
        landscape.random_direction(net, "batch")
    with pytest.raises(ValueError, match="entries"):
        landscape.filter_norms(net, a[:-1])


def test_loss_slices_are_the_quadratic_on_a_grid():
    f, A, x = quadratic()
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


def test_a_slice_does_not_hide_other_errors_as_nan():
    x = torch.zeros(3, dtype=torch.float64)

    def f(point):
        if point[0] > 0.5:
            raise ValueError("some other problem")
        return (point**2).sum()

    with pytest.raises(ValueError, match="other problem"):
        landscape.loss_slice(f, x, [torch.ones(3, dtype=torch.float64)], [[0.0, 1.0]])
