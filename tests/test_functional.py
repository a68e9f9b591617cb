"""Flattening a model into f(θ), and Hessian-vector products (float64)."""

import warnings

import numpy as np
import pytest
import torch
from helpers import classification_data, small_mlp
from torch import nn
from torch.nn import functional as F

import hesslab as hl

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


# --- models people bring (issue 12, item 5) ---
def test_transformer_encoder_layer_uses_the_math_attention_kernel():
    """scaled_dot_product_attention's fused CPU kernel has no double backward ("derivative for
    aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented"); hesslab differentiates with
    the math kernel. Reference: torch.autograd.functional.hessian under the math kernel (a separate code path)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True).double().eval()
    generator = torch.Generator().manual_seed(1)
    X, Y = torch.randn(3, 5, 4, generator=generator), torch.randn(3, 5, 4, generator=generator)
    f, theta = hl.loss_function(layer, F.mse_loss, X, Y)
    with sdpa_kernel(SDPBackend.MATH):
        H = torch.autograd.functional.hessian(f, theta)
    op = hl.HessianOperator.from_model(layer, F.mse_loss, (X, Y))
    V = torch.randn(theta.numel(), 3, generator=generator)
    torch.testing.assert_close(op @ V, H @ V, atol=1e-12, rtol=0)
    torch.testing.assert_close(hl.HessianOperator.from_model(layer, F.mse_loss, [(X[:1], Y[:1]), (X[1:], Y[1:])]) @ V,
                               H @ V, atol=1e-12, rtol=0)
    g, _ = hl.output_function(layer, X)
    with sdpa_kernel(SDPBackend.MATH):
        J = torch.autograd.functional.jacobian(g, theta).reshape(-1, theta.numel())
    G = J.T @ J * (2 / J.shape[0])  # mse_loss: H_L = 2 I / (number of entries)
    torch.testing.assert_close(hl.GGNOperator.from_model(layer, F.mse_loss, (X, Y)) @ V, G @ V, atol=1e-12, rtol=0)


class UnusedHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x):
        return torch.tanh(self.body(x))


@pytest.mark.parametrize("frozen_body", [False, True], ids=["body trainable", "body frozen"])
def test_a_parameter_block_the_loss_does_not_use_has_zero_curvature(frozen_body):
    """Before issue 12: "The differentiated Tensor at index 0 appears to not have been used in the graph"."""
    torch.manual_seed(0)
    model = UnusedHead().double()
    model.body.requires_grad_(not frozen_body)
    X, y = classification_data()
    head = ["head.weight", "head.bias"]
    zero = torch.zeros(15, 15)
    batches = [(X[:10], y[:10]), (X[10:], y[10:])]
    for data in ((X, y), batches):
        assert torch.equal(hl.HessianOperator.from_model(model, F.cross_entropy, data, params=head).to_dense(), zero)
        assert torch.equal(hl.GGNOperator.from_model(model, F.cross_entropy, data, params=head).to_dense(), zero)
    f, theta = hl.loss_function(model, F.cross_entropy, X, y, params=head)
    assert torch.equal(hl.hessian(f, theta), zero)
    assert torch.equal(hl.hvp(f, theta, torch.ones(15)), torch.zeros(15))


def test_the_full_hessian_with_an_unused_head_has_zero_head_rows():
    torch.manual_seed(0)
    model = UnusedHead().double()
    X, y = classification_data()
    f, theta = hl.loss_function(model, F.cross_entropy, X, y)
    H = hl.hessian(f, theta)
    torch.testing.assert_close(H, torch.func.hessian(f)(theta), atol=1e-12, rtol=0)
    assert torch.equal(H[15:], torch.zeros(15, 30)) and torch.equal(H[:, 15:], torch.zeros(30, 15))
    f_body, theta_body = hl.loss_function(model, F.cross_entropy, X, y, params=["body.weight", "body.bias"])
    torch.testing.assert_close(H[:15, :15], hl.hessian(f_body, theta_body), atol=1e-12, rtol=0)


def test_curvature_in_training_mode_leaves_batch_norm_statistics_unchanged():
    """Batch norm in training mode updates running_mean/var and num_batches_tracked in place on every forward;
    hesslab evaluates the model with copies of its buffers."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).double()
    X, y = classification_data()
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    with pytest.warns(UserWarning, match="ill-defined"):
        f, theta = hl.loss_function(model, F.cross_entropy, X, y)
        H = hl.hessian(f, theta)
        hl.HessianOperator.from_model(model, F.cross_entropy, [(X[:15], y[:15]), (X[15:], y[15:])]).to_dense()
        hl.GGNOperator.from_model(model, F.cross_entropy, (X, y)) @ torch.ones(theta.numel())
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name
    torch.testing.assert_close(H, torch.autograd.functional.hessian(f, theta), atol=1e-12, rtol=0)  # batch statistics
    assert model.training


# ----------------------------------------------------------------------------------------------------------------------
# per-sample gradients
# ----------------------------------------------------------------------------------------------------------------------
def looped_gradients(model, loss_fn, inputs, targets, params=None):
    """The reference: one autograd.grad per sample, on the batch of that one sample."""
    named = [(name, p) for name, p in model.named_parameters()
             if p.requires_grad and (params is None or name in params)]
    rows = []
    for i in range(targets.shape[0]):
        x = inputs[i:i + 1] if isinstance(inputs, torch.Tensor) else {k: t[i:i + 1] for k, t in inputs.items()}
        grads = torch.autograd.grad(loss_fn(model(x), targets[i:i + 1]), [p for _, p in named], allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for (_, p), g in
                               zip(named, grads)]))
    return torch.stack(rows)


@pytest.mark.parametrize("loss", [F.cross_entropy, lambda z, y: F.cross_entropy(z, y, reduction="sum")])
def test_per_sample_gradients_equal_one_backward_per_sample(loss):
    model = small_mlp(nn.Tanh())
    X, y = classification_data()
    G, theta = hl.per_sample_gradients(model, loss, X, y)
    assert G.shape == (30, theta.numel()) and G.dtype == torch.float64
    torch.testing.assert_close(G, looped_gradients(model, loss, X, y), rtol=1e-12, atol=1e-14)


def test_per_sample_gradients_of_a_mean_loss_average_to_the_gradient():
    model = small_mlp(nn.GELU())
    X, y = classification_data()
    f, theta = hl.loss_function(model, F.cross_entropy, X, y)
    point = theta.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(f(point), point)
    G, _ = hl.per_sample_gradients(model, F.cross_entropy, X, y, chunk_size=7)
    torch.testing.assert_close(G.mean(0), gradient, rtol=1e-12, atol=1e-14)


def test_per_sample_gradients_of_least_squares_are_residual_times_input():
    # ℓ_i = (w·x_i + b − y_i)²: g_i = 2 r_i (x_i, 1), exactly
    model = nn.Linear(3, 1).double()
    X = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.randn(8, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    G, _ = hl.per_sample_gradients(model, F.mse_loss, X, y)
    residual = (model(X) - y).detach()
    torch.testing.assert_close(G, 2 * residual * torch.cat([X, torch.ones(8, 1, dtype=torch.float64)], 1),
                               rtol=1e-12, atol=1e-14)


def test_per_sample_gradients_of_a_block_dict_inputs_and_batch_norm_in_eval():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.norm, self.head = nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 3)

        def forward(self, batch):
            return self.head(torch.tanh(self.norm(self.body(batch["x"]))))

    torch.manual_seed(0)
    model = Net().double().eval()
    model.norm.running_mean.uniform_(-1, 1)
    X, y = classification_data()
    params = ["body.weight", "norm.weight", "head.bias"]
    G, theta = hl.per_sample_gradients(model, F.cross_entropy, {"x": X}, y, params=params)
    assert theta.numel() == 20 + 5 + 3
    torch.testing.assert_close(G, looped_gradients(model, F.cross_entropy, {"x": X}, y, params), rtol=1e-12,
                               atol=1e-14)


def test_per_sample_gradients_refuse_bad_batches():
    model = small_mlp(nn.Tanh())
    X, y = classification_data()
    with pytest.raises(ValueError, match="share their first"):
        hl.per_sample_gradients(model, F.cross_entropy, X, y[:-1])
    with pytest.raises(ValueError, match="share their first"):
        hl.per_sample_gradients(model, F.cross_entropy, X, y[0])
    with pytest.raises(ValueError, match="at least one sample"):
        hl.per_sample_gradients(model, F.cross_entropy, X[:0], y[:0])
    with pytest.raises(TypeError, match="targets"):
        hl.per_sample_gradients(model, F.cross_entropy, X, y.tolist())
    with pytest.raises(ValueError, match="chunk_size"):
        hl.per_sample_gradients(model, F.cross_entropy, X, y, chunk_size=0)


def test_per_sample_gradients_refuse_a_non_finite_gradient():
    # ℓ_i = ‖w‖ (the inputs multiplied by zero): at w = 0 its gradient w/‖w‖ is 0/0
    model = nn.Linear(2, 1, bias=False).double()
    nn.init.zeros_(model.weight)
    def norm_loss(outputs, targets):
        return (outputs - targets).pow(2).sum().sqrt()  # sqrt at 0: an infinite derivative

    X, y = torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="per-sample gradients has"):
        hl.per_sample_gradients(model, norm_loss, X, y)


# ----------------------------------------------------------------------------------------------------------------------
# bad input: the point, the vector, the loss, the parameters; non-finite curvature
# everywhere it is used
# ----------------------------------------------------------------------------------------------------------------------
quadratic = lambda x: (x**2).sum()  # noqa: E731


@pytest.mark.parametrize("x, error, message", [
    (torch.ones(2, 3), ValueError, "flat 1-D vector"),
    (torch.ones(3, dtype=torch.int64), TypeError, "floating dtype"),
    ([1.0, 2.0], TypeError, "torch.Tensor"),
    (torch.ones(0), ValueError, "empty"),
    (torch.tensor([1.0, float("nan")]), ValueError, "non-finite"),
    (torch.tensor([1.0, float("inf")]), ValueError, "non-finite"),
])
def test_bad_point(x, error, message):
    with pytest.raises(error, match=message):
        hl.hvp(quadratic, x, torch.ones(2))
    with pytest.raises(error, match=message):
        hl.hessian(quadratic, x)


@pytest.mark.parametrize("v, error, message", [
    (torch.ones(4), ValueError, r"shape \(3,\) or \(3, k\)"),
    (torch.ones(3, 2, 1), ValueError, "shape"),
    (torch.ones(3, dtype=torch.float32), TypeError, "dtype"),
    (torch.ones(3, dtype=torch.float64, device="meta"), ValueError, "is on meta"),
    (torch.tensor([0.0, float("nan"), 1.0], dtype=torch.float64), ValueError, "non-finite"),
    ("v", TypeError, "torch.Tensor"),
])
def test_bad_vector(v, error, message):
    with pytest.raises(error, match=message):
        hl.hvp(quadratic, torch.ones(3), v)
    with pytest.raises(error, match=message):
        hl.HessianOperator(quadratic, torch.ones(3)) @ v


def test_huge_but_finite_vector_is_accepted():
    """The fast finiteness check sums the entries; an overflowing sum of finite entries must not be an error."""
    v = torch.full((3,), 3e38, dtype=torch.float32)
    assert torch.isfinite(hl.hvp(quadratic, torch.ones(3, dtype=torch.float32), v * 0 + 1)).all()
    hl._checks.check_finite("v", v)  # raises nothing


def test_non_scalar_loss():
    with pytest.raises(ValueError, match="must return a scalar.*reduction='mean'"):
        hl.hvp(lambda x: x**2, torch.ones(3), torch.ones(3))
    model = small_mlp()
    X, y = classification_data()
    f, theta = hl.loss_function(model, lambda z, t: F.cross_entropy(z, t, reduction="none"), X, y)
    with pytest.raises(ValueError, match="must return a scalar"):
        hl.hessian(f, theta)


def test_non_finite_loss_at_the_point():
    with pytest.raises(ValueError, match="not finite"):
        hl.hvp(lambda x: torch.log(x).sum(), torch.tensor([1.0, 0.0]), torch.ones(2))


def test_function_that_ignores_its_argument():
    with pytest.raises(ValueError, match="does not depend on x"):
        hl.hvp(lambda x: torch.tensor(1.0), torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="does not depend on x"):
        hl.ggn(lambda x: torch.ones(2), lambda z: z.sum(), torch.ones(3))


def test_parameter_selection_errors():
    model = small_mlp()
    X, y = classification_data()
    with pytest.raises(ValueError, match=r"not parameters of the model; available: \['0.weight'"):
        hl.loss_function(model, F.cross_entropy, X, y, params=["fc.weight"])
    with pytest.raises(ValueError, match="params is empty"):
        hl.loss_function(model, F.cross_entropy, X, y, params=[])
    model[0].weight.requires_grad_(False)
    with pytest.raises(ValueError, match=r"\['0.weight'\] do not require grad.*requires_grad_\(True\)"):
        hl.loss_function(model, F.cross_entropy, X, y, params=["0.weight"])
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no parameters that require grad"):
        hl.output_function(model, X)
    with pytest.raises(TypeError, match="nn.Module"):
        hl.loss_function(lambda x: x, F.cross_entropy, X, y)


def kinked(x):
    """((x − 1)²).sum() + 0.1‖x‖: finite value and (sub)gradient at 0, Hessian 0/0 there (all NaN before)."""
    return ((x - 1) ** 2).sum() + 0.1 * x.norm()


@pytest.mark.parametrize("call", [
    lambda x: hl.hessian(kinked, x),
    lambda x: hl.hvp(kinked, x, torch.ones(3)),
    lambda x: hl.hvp(kinked, x, torch.ones(3, 2)),
    lambda x: hl.HessianOperator(kinked, x) @ torch.ones(3),
    lambda x: hl.HessianOperator(kinked, x) @ torch.ones(3, 4),
    lambda x: hl.HessianOperator(kinked, x).to_dense(),
    lambda x: hl.HessianOperator(kinked, x).to_scipy() @ np.ones(3),
    lambda x: hl.hutchinson_trace(hl.HessianOperator(kinked, x), 4),
    lambda x: hl.hutchinson_diagonal(hl.HessianOperator(kinked, x), 4),
    lambda x: hl.lanczos(hl.HessianOperator(kinked, x), 2),
    lambda x: hl.top_eigen(hl.HessianOperator(kinked, x), 1),
], ids=["hessian", "hvp", "hvp V", "op @ v", "op @ V", "to_dense", "to_scipy", "hutchinson_trace",
        "hutchinson_diagonal", "lanczos", "top_eigen"])
def test_non_finite_hessian_is_an_error_everywhere(call):
    with pytest.raises(ValueError, match=r"∇²f is not finite at this point \(f is not twice differentiable there"):
        call(torch.zeros(3))
