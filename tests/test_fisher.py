"""The empirical and Monte-Carlo Fisher (hl.fisher, hl.FisherOperator), float64, against answers written out.

Empirical: F = w Σ_i g_i g_iᵀ with g_i from one backward per sample (w = 1/N for a mean loss, 1 for a sum).
Monte-Carlo: its mean over the drawn targets is the GGN; the test allows 5 standard deviations of the estimator,
estimated entry by entry from the same draws, and checks that a Gaussian with twice the variance would fail it.
"""

import pytest
import torch
from torch import nn
from zoo import _concatenate, as_data, case, reference_ggn

import hesslab as hl
from hesslab.exact import fisher_rows

DTYPE = torch.float64


def written_out_empirical_fisher(model, loss_fn, inputs, targets, weight):
    """w Σ_i g_i g_iᵀ, g_i by a backward of sample i's loss alone."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(targets.shape[0]):
        loss = loss_fn(model(inputs[i: i + 1]), targets[i: i + 1])
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    G = torch.stack(rows)
    return weight * G.T @ G


def regression(seed=0, num_samples=12, outputs=2):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, outputs)).double()
    g = torch.Generator().manual_seed(seed + 1)
    X = torch.randn(num_samples, 3, generator=g, dtype=DTYPE)
    return model, X, torch.randn(num_samples, outputs, generator=g, dtype=DTYPE)


def test_empirical_fisher_is_the_mean_of_g_g_transpose_for_cross_entropy():
    mlp = case("mlp tanh")
    X, y = as_data(mlp, "one batch")
    expected = written_out_empirical_fisher(mlp.model, mlp.loss_fn, X, y, 1 / y.shape[0])
    torch.testing.assert_close(hl.fisher(mlp.model, mlp.loss_fn, X, y), expected, rtol=1e-12, atol=1e-14)
    op = hl.FisherOperator.from_model(mlp.model, mlp.loss_fn, (X, y))
    torch.testing.assert_close(op.to_dense(), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction, weight, known", [("mean", 1 / 12, True), ("sum", 1.0, True),
                                                       ("mean", 1 / 12, False), ("sum", 1.0, False)])
def test_empirical_fisher_weighs_samples_by_the_reduction(reduction, weight, known):
    model, X, y = regression()
    # a loss hesslab does not know (a lambda) has its reduction detected from the samples' losses
    loss = nn.MSELoss(reduction=reduction) if known else (lambda z, t: nn.functional.l1_loss(z, t, reduction=reduction))
    expected = written_out_empirical_fisher(model, loss, X, y, weight)
    torch.testing.assert_close(hl.fisher(model, loss, X, y), expected, rtol=1e-12, atol=1e-14)


def test_empirical_fisher_is_zero_where_every_sample_is_fitted_and_the_monte_carlo_one_is_not():
    model, X, _ = regression()
    with torch.no_grad():
        y = model(X)  # every residual zero: g_i = 0
    assert torch.count_nonzero(hl.fisher(model, nn.functional.mse_loss, X, y)) == 0
    mc = hl.fisher(model, nn.functional.mse_loss, X, y, "monte-carlo", num_samples=4, generator=hl.seed(0))
    assert torch.linalg.eigvalsh(mc)[-1] > 0


def test_a_block_of_parameters_is_the_block_of_the_whole_fisher():
    mlp = case("mlp tanh")
    X, y = as_data(mlp, "one batch")
    whole = hl.fisher(mlp.model, mlp.loss_fn, X, y)
    block = hl.fisher(mlp.model, mlp.loss_fn, X, y, params=["2.weight", "2.bias"])
    n = sum(p.numel() for p in mlp.model.parameters())
    torch.testing.assert_close(block, whole[n - 18:, n - 18:], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["three batches", "loader"])
def test_over_batches_the_operator_is_the_fisher_of_all_the_data(kind):
    mlp = case("mlp tanh")
    X, y = _concatenate(mlp)  # all twelve samples as one batch
    op = hl.FisherOperator.from_model(mlp.model, mlp.loss_fn, as_data(mlp, kind))
    assert op.num_batches == 3
    torch.testing.assert_close(op.to_dense(), hl.fisher(mlp.model, mlp.loss_fn, X, y), rtol=1e-12, atol=1e-14)


def test_monte_carlo_over_batches_is_one_matrix_and_reproducible():
    mlp = case("mlp tanh")
    data = as_data(mlp, "three batches")
    op = hl.FisherOperator.from_model(mlp.model, mlp.loss_fn, data, "monte-carlo", num_samples=3,
                                      generator=hl.seed(1))
    V = torch.randn(op.shape[0], 2, generator=hl.seed(2), dtype=DTYPE)
    assert torch.equal(op @ V, op @ V)  # the same draws on every product
    again = hl.FisherOperator.from_model(mlp.model, mlp.loss_fn, data, "monte-carlo", num_samples=3,
                                         generator=hl.seed(1))
    assert torch.equal(again @ V, op @ V)


def monte_carlo_check(model, loss_fn, X, y, ggn, num_samples=400, seed=0, scale=1.0):
    """(max |F_MC − scale·GGN| / (5 std + rounding), F_MC); the std from the draws, entry by entry."""
    rows = fisher_rows(model, loss_fn, X, y, "monte-carlo", num_samples=num_samples, generator=hl.seed(seed))
    N, n = y.shape[0], rows.shape[1]
    weight = 1 / N if getattr(loss_fn, "reduction", "mean") == "mean" else 1.0
    g = (rows / (weight / num_samples) ** 0.5).reshape(N, num_samples, n)
    first = torch.einsum("isj,isk->ijk", g, g) / num_samples
    second = torch.einsum("isj,isk->ijk", g * g, g * g) / num_samples
    variance = (second - first**2) * num_samples / (num_samples - 1)  # of one draw's g_j g_k, per sample i
    std = (weight**2 * variance.sum(0) / num_samples).sqrt()
    F = rows.T @ rows
    return float(((F - scale * ggn).abs() / (5 * std + 1e-12)).max()), F


def test_monte_carlo_fisher_has_the_ggn_as_its_mean_for_cross_entropy():
    mlp = case("mlp tanh")
    X, y = as_data(mlp, "one batch")
    ggn = reference_ggn("mlp tanh", "one batch")
    worst, _ = monte_carlo_check(mlp.model, mlp.loss_fn, X, y, ggn)
    assert worst <= 1.0
    assert monte_carlo_check(mlp.model, mlp.loss_fn, X, y, 2 * ggn)[0] > 1.0  # the test can tell 2x apart


@pytest.mark.parametrize("loss_fn", [nn.functional.mse_loss, nn.MSELoss(reduction="sum")])
def test_monte_carlo_fisher_has_the_ggn_as_its_mean_for_the_squared_error(loss_fn):
    model, X, y = regression(outputs=3)
    g, theta = hl.output_function(model, X)
    ggn = hl.ggn(g, lambda z: loss_fn(z, y), theta)
    assert monte_carlo_check(model, loss_fn, X, y, ggn)[0] <= 1.0
    # a Gaussian of twice the variance (σ² = D instead of D/2 for the mean) would give 2 GGN, and fail:
    assert monte_carlo_check(model, loss_fn, X, y, ggn, scale=0.5)[0] > 1.0


def test_monte_carlo_error_falls_like_one_over_root_samples():
    mlp = case("mlp tanh")
    X, y = as_data(mlp, "one batch")
    ggn = reference_ggn("mlp tanh", "one batch")
    errors = {}
    for S in (4, 64):
        errors[S] = sum(float(torch.linalg.matrix_norm(
            hl.fisher(mlp.model, mlp.loss_fn, X, y, "monte-carlo", num_samples=S, generator=hl.seed(seed)) - ggn))
            for seed in range(8)) / 8
    # 16x the draws: the error (∝ 1/√S) falls 4x; measured 3.6-4.4x over seeds
    assert 2.5 < errors[4] / errors[64] < 6.0


def test_the_fisher_keeps_the_parameters_dtype():
    model, X, y = regression()
    model = model.float()
    F = hl.fisher(model, nn.functional.mse_loss, X.float(), y.float(), "monte-carlo", generator=hl.seed(0))
    assert F.dtype == torch.float32


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(kind="fisher"), ValueError, "kind must be 'empirical' or 'monte-carlo'"),
    (dict(kind="monte-carlo", num_samples=0), ValueError, "num_samples"),
    (dict(kind="empirical", num_samples=3), ValueError, "num_samples is for kind='monte-carlo'"),
    (dict(kind="monte-carlo", generator=0), TypeError, "generator must be a torch.Generator"),
])
def test_bad_arguments_are_refused_by_name(kwargs, error, words):
    mlp = case("mlp tanh")
    X, y = as_data(mlp, "one batch")
    with pytest.raises(error, match=words):
        hl.fisher(mlp.model, mlp.loss_fn, X, y, **kwargs)
    with pytest.raises(error, match=words):
        hl.FisherOperator.from_model(mlp.model, mlp.loss_fn, (X, y), **kwargs)


@pytest.mark.parametrize("loss_fn, words", [
    (lambda z, y: nn.functional.cross_entropy(z, y), "kind='monte-carlo' samples targets"),
    (nn.CrossEntropyLoss(label_smoothing=0.1), "no class weight, no label_smoothing"),
    (nn.NLLLoss(), "kind='monte-carlo' samples targets"),
])
def test_monte_carlo_refuses_a_loss_with_no_known_likelihood(loss_fn, words):
    mlp = case("mlp tanh")
    X, y = as_data(mlp, "one batch")
    with pytest.raises(ValueError, match=words):
        hl.fisher(mlp.model, loss_fn, X, y, "monte-carlo", generator=hl.seed(0))


def test_empirical_refuses_a_loss_that_is_neither_a_mean_nor_a_sum():
    mlp = case("mlp tanh")
    X, y = as_data(mlp, "one batch")
    with pytest.raises(ValueError, match="must be a mean or a sum"):
        hl.fisher(mlp.model, lambda z, t: nn.functional.cross_entropy(z, t) ** 2, X, y)


def test_over_batches_a_sum_loss_is_refused():
    mse = case("mse sum")
    with pytest.raises(ValueError, match="sums over the batch"):
        hl.FisherOperator.from_model(mse.model, mse.loss_fn, as_data(mse, "three batches"))


def test_the_dense_fisher_has_a_memory_guard():
    mlp = case("mlp tanh")
    X, y = as_data(mlp, "one batch")
    with pytest.raises(ValueError, match="needs"):
        hl.fisher(mlp.model, mlp.loss_fn, X, y, max_memory=100)
