"""Exact Hessians and GGNs against closed forms and against torch.func.hessian (float64)."""

import pytest
import torch
from helpers import classification_data, random_square, seeds, sizes, small_mlp
from hypothesis import given, settings
from torch import nn
from torch.nn import functional as F

import hesslab as hl
from hesslab._dense import available_memory

TOL = 1e-12


def test_quadratic_form_hessian_is_its_symmetric_matrix():
    A = torch.randn(7, 7, generator=torch.Generator().manual_seed(0))
    b = torch.randn(7)
    f = lambda x: 0.5 * x @ A @ x + b @ x  # noqa: E731
    H = hl.hessian(f, torch.randn(7))
    torch.testing.assert_close(H, (A + A.T) / 2, atol=TOL, rtol=0)


def test_linear_least_squares_hessian_is_XtX_over_n():
    X, y = torch.randn(40, 5), torch.randn(40)
    f = lambda w: 0.5 * ((X @ w - y) ** 2).mean()  # noqa: E731
    torch.testing.assert_close(hl.hessian(f, torch.randn(5)), X.T @ X / 40, atol=TOL, rtol=0)


def test_logistic_regression_hessian_is_XtDX_over_n():
    X = torch.randn(50, 4)
    y = (torch.rand(50) < 0.5).double()
    w = torch.randn(4)
    f = lambda w: F.binary_cross_entropy_with_logits(X @ w, y)  # noqa: E731
    p = torch.sigmoid(X @ w)
    expected = X.T @ (X * (p * (1 - p))[:, None]) / 50
    torch.testing.assert_close(hl.hessian(f, w), expected, atol=TOL, rtol=0)


def test_softmax_cross_entropy_ggn_closed_form():
    """For a linear softmax model z = W x, G = (1/N) Σ_n (diag(p_n) − p_n p_nᵀ) ⊗ x_n x_nᵀ (row-major W)."""
    N, d, C = 20, 3, 4
    X, y = classification_data(N, d, C)
    model = nn.Linear(d, C, bias=False).double()
    g, theta = hl.output_function(model, X)
    G = hl.ggn(g, lambda z: F.cross_entropy(z, y), theta)
    P = torch.softmax(X @ model.weight.detach().T, dim=1)
    expected = sum(torch.kron(torch.diag(p) - torch.outer(p, p), torch.outer(x, x)) for p, x in zip(P, X)) / N
    torch.testing.assert_close(G, expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("activation", [nn.Tanh(), nn.Softplus(), nn.GELU()])
def test_small_net_hessian_matches_torch_func(activation, mlp_problem):
    model = small_mlp(activation)
    X, y = classification_data()
    f, theta = hl.loss_function(model, F.cross_entropy, X, y)
    torch.testing.assert_close(hl.hessian(f, theta), torch.func.hessian(f)(theta), atol=TOL, rtol=0)


def test_ggn_matches_jacobian_formula_for_small_net(mlp_problem):
    model, X, y, _, theta = mlp_problem
    g, theta = hl.output_function(model, X)
    loss_of_output = lambda z: F.cross_entropy(z, y)  # noqa: E731
    J = torch.func.jacrev(g)(theta).reshape(-1, theta.numel())
    z = g(theta).detach()
    H_out = torch.func.hessian(lambda flat: loss_of_output(flat.reshape(z.shape)))(z.reshape(-1))
    torch.testing.assert_close(hl.ggn(g, loss_of_output, theta), J.T @ H_out @ J, atol=TOL, rtol=0)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_ggn_equals_hessian_for_linear_model_with_convex_loss(loss):
    """The outputs are linear in θ, so H = Jᵀ H_L J exactly."""
    X, y = classification_data(25, 5, 3)
    model = nn.Linear(5, 3).double()
    loss_fn = F.cross_entropy if loss == "cross_entropy" else (lambda z, t: F.mse_loss(z, F.one_hot(t, 3).double()))
    f, theta = hl.loss_function(model, loss_fn, X, y)
    g, _ = hl.output_function(model, X)
    torch.testing.assert_close(hl.ggn(g, lambda z: loss_fn(z, y), theta), hl.hessian(f, theta), atol=TOL, rtol=0)


def test_ggn_rank_is_at_most_N_times_C_minus_1():
    """Softmax cross-entropy's output Hessian has rank C−1 per sample (Papyan 2019)."""
    N, C = 6, 3
    X, y = classification_data(N, 4, C)
    model = small_mlp(width=10, classes=C)
    g, theta = hl.output_function(model, X)
    G = hl.ggn(g, lambda z: F.cross_entropy(z, y), theta)
    assert theta.numel() > N * (C - 1)
    assert torch.linalg.matrix_rank(G, hermitian=True, rtol=1e-10) <= N * (C - 1)


def test_ggn_is_positive_semidefinite_and_hessian_is_not_in_general(mlp_problem):
    model, X, y, f, theta = mlp_problem
    g, _ = hl.output_function(model, X)
    G = hl.ggn(g, lambda z: F.cross_entropy(z, y), theta)
    assert torch.linalg.eigvalsh(G).min() > -1e-12
    assert torch.linalg.eigvalsh(hl.hessian(f, theta)).min() < -1e-6


@pytest.mark.parametrize("chunk_size", [1, 3, 1000])
def test_chunk_size_does_not_change_the_result(chunk_size, mlp_problem):
    _, _, _, f, theta = mlp_problem
    torch.testing.assert_close(hl.hessian(f, theta, chunk_size=chunk_size), torch.func.hessian(f)(theta),
                               atol=TOL, rtol=0)


def test_per_layer_block_is_the_submatrix_of_the_full_hessian(mlp_problem):
    model, X, y, f, theta = mlp_problem
    H = hl.hessian(f, theta)
    f_block, theta_block = hl.loss_function(model, F.cross_entropy, X, y, params=["2.weight", "2.bias"])
    start = sum(p.numel() for name, p in model.named_parameters() if name.startswith("0."))
    torch.testing.assert_close(hl.hessian(f_block, theta_block), H[start:, start:], atol=TOL, rtol=0)


def test_hessian_refuses_a_matrix_that_does_not_fit_and_says_what_it_needs():
    """The budget counts the n² matrix and 3 blocks of n × chunk entries (identity block, its product, the copy
    written into the matrix); before issue 12 only the matrix was counted (max_memory = n²·8 was accepted)."""
    f = lambda x: (x**4).sum()  # noqa: E731
    with pytest.raises(ValueError, match=r"needs .* GiB .*HessianOperator"):
        hl.hessian(f, torch.ones(1000), max_memory=1000 * 1000 * 8 - 1)
    assert hl.hessian(f, torch.ones(10), max_memory=(10 * 10 + 3 * 10) * 8, chunk_size=1).shape == (10, 10)
    with pytest.raises(ValueError, match="for blocks of 1 columns"):
        hl.hessian(f, torch.ones(10), max_memory=(10 * 10 + 3 * 10) * 8 - 1, chunk_size=1)


def test_max_memory_counts_the_column_blocks_of_chunk_size():
    """chunk_size = n makes blocks of 3 n² entries: an n² budget, enough for the matrix alone, is refused."""
    f = lambda x: (x**4).sum()  # noqa: E731
    n = 50
    with pytest.raises(ValueError, match=r"20,000 for the matrix, 60,000 for blocks of 50 columns.*lower chunk_size"):
        hl.hessian(f, torch.ones(n), max_memory=4 * n * n * 8 - 1, chunk_size=n)
    op = hl.CurvatureOperator(lambda V: 12 * V, n, torch.float64, "cpu", chunk_size=1)
    with pytest.raises(ValueError, match="blocks of 1 columns"):
        op.to_dense(max_memory=n * n * 8)
    H = hl.hessian(f, torch.ones(n), max_memory=4 * n * n * 8, chunk_size=n)
    torch.testing.assert_close(H, 12 * torch.eye(n), atol=0, rtol=0)


def test_refusal_comes_before_any_evaluation_of_f():
    def f(x):
        raise AssertionError("f must not be evaluated for a matrix that will be refused")

    with pytest.raises(ValueError, match="needs"):
        hl.hessian(f, torch.ones(100), max_memory=8)
    with pytest.raises(ValueError, match="needs"):
        hl.ggn(f, f, torch.ones(100), max_memory=8)


def test_hessian_of_a_huge_vector_is_refused_against_real_available_memory():
    available = available_memory(torch.device("cpu"))
    n = int((available / 4) ** 0.5) + 1  # a float32 n×n matrix just beyond what is available
    with pytest.raises(ValueError, match="matrix-free"):
        hl.hessian(lambda x: (x**2).sum(), torch.ones(n, dtype=torch.float32))


def test_hessian_keeps_dtype_and_device():
    f = lambda x: (x**3).sum()  # noqa: E731
    H = hl.hessian(f, torch.ones(4, dtype=torch.float32))
    assert H.dtype == torch.float32 and H.device.type == "cpu"
    torch.testing.assert_close(H, 6 * torch.eye(4, dtype=torch.float32))


def test_hessian_of_linear_function_is_zero():
    f = lambda x: x.sum() * 3  # noqa: E731
    assert torch.equal(hl.hessian(f, torch.ones(5)), torch.zeros(5, 5))


# --- properties that hold for every small problem, drawn by hypothesis (float64) ---
@settings(max_examples=40, deadline=None)
@given(n=sizes, seed=seeds)
def test_hessian_of_any_quadratic_form_is_its_symmetric_part(n, seed):
    A = random_square(n, seed)
    x = torch.randn(n, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    H = hl.hessian(lambda x: 0.5 * x @ A @ x + torch.sin(x).sum(), x)
    torch.testing.assert_close(H, (A + A.T) / 2 - torch.diag(torch.sin(x)), atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# bad input and non-finite curvature: a clear error
# ----------------------------------------------------------------------------------------------------------------------
def test_ggn_loss_must_be_scalar():
    with pytest.raises(ValueError, match="must return a scalar"):
        hl.ggn(lambda x: x * 2, lambda z: z**2, torch.ones(3))


def test_non_finite_ggn_is_an_error():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="the GGN Jᵀ H_L J is not finite at this point"):
        hl.ggn(lambda x: 2 * x, lambda z: z.norm(), x)
    with pytest.raises(ValueError, match="the GGN Jᵀ H_L J is not finite"):
        hl.GGNOperator(lambda x: 2 * x, lambda z: z.norm(), x) @ torch.ones(3)
