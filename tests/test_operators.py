"""Matrix-free operators against their dense matrices (float64)."""

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import eigsh
from torch.nn import functional as F

import hesslab as hl
from conftest import random_symmetric

TOL = 1e-12


def test_hessian_operator_matches_dense(mlp_problem):
    _, _, _, f, theta = mlp_problem
    H = torch.func.hessian(f)(theta)
    op = hl.HessianOperator(f, theta)
    V = torch.randn(theta.numel(), 9)
    torch.testing.assert_close(op @ V, H @ V, atol=TOL, rtol=0)
    torch.testing.assert_close(op @ V[:, 0], H @ V[:, 0], atol=TOL, rtol=0)
    torch.testing.assert_close(op.to_dense(), H, atol=TOL, rtol=0)
    assert op.shape == (theta.numel(), theta.numel()) and op.dtype == torch.float64 and op.device.type == "cpu"


def test_repeated_products_at_a_fixed_point_stay_exact(mlp_problem):
    """The operator keeps the gradient's graph; products must not consume or alter it."""
    _, _, _, f, theta = mlp_problem
    op = hl.HessianOperator(f, theta)
    v = torch.randn(theta.numel())
    first = op @ v
    for _ in range(3):
        assert torch.equal(op @ v, first)


def test_from_model_single_batch_matches_loss_function(mlp_problem):
    model, X, y, f, theta = mlp_problem
    op = hl.HessianOperator.from_model(model, F.cross_entropy, (X, y))
    torch.testing.assert_close(op.to_dense(), hl.hessian(f, theta), atol=TOL, rtol=0)


def test_iterable_of_batches_gives_the_batch_size_weighted_mean(mlp_problem):
    """Unequal batches (7, 13, 10): the mean loss over all 30 samples has the Hessian Σ n_b H_b / N."""
    model, X, y, f, theta = mlp_problem
    batches = [(X[:7], y[:7]), (X[7:20], y[7:20]), (X[20:], y[20:])]
    H_full = hl.hessian(f, theta)
    torch.testing.assert_close(hl.HessianOperator.from_model(model, F.cross_entropy, batches).to_dense(), H_full,
                               atol=TOL, rtol=0)
    g, _ = hl.output_function(model, X)
    G_full = hl.ggn(g, lambda z: F.cross_entropy(z, y), theta)
    torch.testing.assert_close(hl.GGNOperator.from_model(model, F.cross_entropy, batches).to_dense(), G_full,
                               atol=TOL, rtol=0)


def test_data_loader_is_accepted(mlp_problem):
    model, X, y, f, theta = mlp_problem
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=8)
    op = hl.HessianOperator.from_model(model, F.cross_entropy, loader)
    v = torch.randn(theta.numel())
    torch.testing.assert_close(op @ v, hl.hvp(f, theta, v), atol=TOL, rtol=0)


def test_ggn_operator_matches_dense_ggn(mlp_problem):
    model, X, y, _, theta = mlp_problem
    g, _ = hl.output_function(model, X)
    loss_of_output = lambda z: F.cross_entropy(z, y)  # noqa: E731
    op = hl.GGNOperator(g, loss_of_output, theta)
    V = torch.randn(theta.numel(), 5)
    torch.testing.assert_close(op @ V, hl.ggn(g, loss_of_output, theta) @ V, atol=TOL, rtol=0)


def test_per_layer_operator_block(mlp_problem):
    model, X, y, f, theta = mlp_problem
    H = hl.hessian(f, theta)
    n0 = model[0].weight.numel() + model[0].bias.numel()
    op = hl.HessianOperator.from_model(model, F.cross_entropy, (X, y), params=["0.weight", "0.bias"])
    torch.testing.assert_close(op.to_dense(), H[:n0, :n0], atol=TOL, rtol=0)
    assert hl.hutchinson_trace(op, 4, generator=hl.seed(0, "cpu")).num_matvecs == 4


def test_to_scipy_works_with_eigsh(mlp_problem):
    _, _, _, f, theta = mlp_problem
    op = hl.HessianOperator(f, theta)
    linear_operator = op.to_scipy()
    assert linear_operator.shape == op.shape and linear_operator.dtype == np.float64
    v = np.random.default_rng(0).standard_normal(theta.numel())
    np.testing.assert_allclose(linear_operator @ v, (op @ torch.from_numpy(v)).numpy(), atol=TOL)
    top = eigsh(linear_operator, k=5, which="LA", return_eigenvectors=False)
    exact = torch.linalg.eigvalsh(op.to_dense()).numpy()[-5:]
    np.testing.assert_allclose(np.sort(top), exact, atol=1e-10)


def test_to_scipy_keeps_float32():
    op = hl.as_operator(random_symmetric(8).float())
    assert op.to_scipy().dtype == np.float32
    assert (op.to_scipy() @ np.ones(8, dtype=np.float32)).dtype == np.float32


def test_chunked_products_equal_unchunked():
    A = random_symmetric(12)
    op = hl.CurvatureOperator(lambda V: A @ V, 12, A.dtype, A.device, chunk_size=5)
    V = torch.randn(12, 13)
    torch.testing.assert_close(op @ V, A @ V, atol=TOL, rtol=0)


def test_to_dense_is_memory_guarded(mlp_problem):
    _, _, _, f, theta = mlp_problem
    with pytest.raises(ValueError, match="GiB"):
        hl.HessianOperator(f, theta).to_dense(max_memory=100)
