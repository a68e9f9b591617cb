"""Flattening a model into f(θ), and Hessian-vector products (float64)."""

import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import hesslab as hl
from conftest import classification_data, small_mlp

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus, "gelu": nn.GELU}
LOSSES = {
    "cross_entropy": F.cross_entropy,
    "mse": lambda z, t: F.mse_loss(z, F.one_hot(t, z.shape[1]).to(z.dtype)),
}


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_hvp_works_for_every_common_activation_and_loss(activation, loss):
    """On torch 2.13 forward-over-reverse fails for some of these pairs ("ZeroTensors are immutable");
    hesslab's double backward must give the exact product for all of them."""
    model = small_mlp(ACTIVATIONS[activation]())
    X, y = classification_data()
    f, theta = hl.loss_function(model, LOSSES[loss], X, y)
    H = torch.func.hessian(f)(theta)
    v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(2))
    V = torch.randn(theta.numel(), 3, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(hl.hvp(f, theta, v), H @ v, atol=1e-12, rtol=0)
    torch.testing.assert_close(hl.hvp(f, theta, V), H @ V, atol=1e-12, rtol=0)


def test_theta_is_a_detached_copy_in_parameter_order(mlp_problem):
    model, _, _, _, theta = mlp_problem
    expected = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert torch.equal(theta, expected) and not theta.requires_grad
    theta += 1  # changing θ must not change the model
    assert torch.equal(torch.cat([p.detach().reshape(-1) for p in model.parameters()]), expected)


def test_loss_function_evaluates_the_model_loss(mlp_problem):
    model, X, y, f, theta = mlp_problem
    torch.testing.assert_close(f(theta), F.cross_entropy(model(X), y))
    torch.testing.assert_close(f(theta + 0.1), F.cross_entropy(torch.func.functional_call(
        model, {n: p + 0.1 for n, p in model.named_parameters()}, (X,)), y))


def test_output_function_returns_the_model_outputs(mlp_problem):
    model, X, _, _, _ = mlp_problem
    g, theta = hl.output_function(model, X)
    torch.testing.assert_close(g(theta), model(X))


def test_params_selects_a_block_in_model_order():
    model = small_mlp()
    X, y = classification_data()
    f, theta = hl.loss_function(model, F.cross_entropy, X, y, params=["2.bias", "0.weight"])
    expected = torch.cat([model[0].weight.detach().reshape(-1), model[2].bias.detach()])
    assert torch.equal(theta, expected)


def test_frozen_parameters_are_left_out_by_default():
    model = small_mlp()
    model[0].requires_grad_(False)
    X, y = classification_data()
    _, theta = hl.loss_function(model, F.cross_entropy, X, y)
    assert theta.numel() == model[2].weight.numel() + model[2].bias.numel()


@pytest.mark.parametrize("layer", [nn.Dropout(0.1), nn.BatchNorm1d(6)])
def test_training_mode_with_stochastic_layers_warns(layer):
    model = nn.Sequential(nn.Linear(4, 6), layer, nn.Tanh(), nn.Linear(6, 3)).double()
    X, y = classification_data()
    with pytest.warns(UserWarning, match="ill-defined"):
        hl.loss_function(model, F.cross_entropy, X, y)
    with pytest.warns(UserWarning, match="ill-defined"):
        hl.HessianOperator.from_model(model, F.cross_entropy, (X, y))
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hl.loss_function(model, F.cross_entropy, X, y)


def test_hvp_of_quadratic_is_matrix_times_vector():
    A = torch.randn(6, 6)
    A = A + A.T
    f = lambda x: 0.5 * x @ A @ x  # noqa: E731
    v = torch.randn(6)
    torch.testing.assert_close(hl.hvp(f, torch.randn(6), v), A @ v, atol=1e-12, rtol=0)


def test_hvp_respects_float32():
    f = lambda x: (x**3).sum()  # noqa: E731
    out = hl.hvp(f, torch.ones(3, dtype=torch.float32), torch.ones(3, dtype=torch.float32))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.full((3,), 6.0, dtype=torch.float32))
