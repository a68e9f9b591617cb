"""hesslab.landscape's directions (Hessian axes, filter-/layer-normalised) in float64 against dense quadratics."""


import pytest
import torch
from helpers import known_quadratic
from torch import nn

import hesslab as hl
from hesslab import landscape

EPS = torch.finfo(torch.float64).eps



def test_hessian_directions_are_the_top_eigenvectors_and_their_second_difference_is_the_eigenvalue():
    f, A, x = known_quadratic()
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
