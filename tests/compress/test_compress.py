"""hesslab.compress in float64: OBS's predicted increase against the exact one, GPTQ against OBQ and RTN."""

import itertools

import pytest
import torch
from helpers import seeds
from hypothesis import given, settings

from hesslab import compress
from hesslab.inverse import woodbury_fisher

DTYPE = torch.float64


def _layer(rows: int, columns: int, samples: int, seed: int, correlation: float = 0.5):
    """A random weight and inputs with correlated features (x = z + correlation · shared), float64."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(rows, columns, generator=g, dtype=DTYPE)
    Z = torch.randn(samples, columns, generator=g, dtype=DTYPE)
    X = Z + correlation * torch.randn(samples, 1, generator=g, dtype=DTYPE) * torch.randn(columns, generator=g,
                                                                                         dtype=DTYPE)
    return W, X


def test_layer_hessian_gives_the_reconstruction_error():
    W, X = _layer(3, 5, 40, seed=0)
    H = compress.layer_hessian(X)
    W_hat = compress.round_to_nearest(W, bits=2)
    exact = ((W - W_hat) @ X.T).pow(2).sum() / X.shape[0]
    torch.testing.assert_close(compress.reconstruction_error(W, W_hat, H), exact, rtol=1e-12, atol=0)


@pytest.mark.parametrize("sparsity", [0.2, 0.5, 0.8])
def test_obs_predicted_increase_is_the_exact_increase_on_the_quadratic(sparsity):
    W, X = _layer(4, 10, 50, seed=1)
    H = compress.layer_hessian(X)
    result = compress.obs_prune_layer(W, H, sparsity)
    delta = result.weight - W
    exact = 0.5 * ((delta @ H) * delta).sum(dim=1)  # per row
    torch.testing.assert_close(result.predicted_increase, exact, rtol=1e-9, atol=1e-12)
    assert int((~result.mask).sum(dim=1).unique().item()) == round(sparsity * 10)
    assert bool((result.weight[~result.mask] == 0).all())


def test_obs_on_one_weight_is_the_best_correction_of_the_others():
    """Removing q and re-optimising the rest exactly (a least-squares solve) gives OBS's update and saliency."""
    W, X = _layer(1, 6, 30, seed=2)
    H = compress.layer_hessian(X)
    result = compress.obs_prune_layer(W, H, 1 / 6)
    q = int((~result.mask[0]).nonzero())
    keep = [i for i in range(6) if i != q]
    # minimise ½(w' − w)ᵀH(w' − w) with w'_q = 0: H_KK (w'_K − w_K) = H_Kq w_q
    best = W[0].clone()
    best[keep] += torch.linalg.solve(H[keep][:, keep], H[keep, q] * W[0, q])
    best[q] = 0.0
    torch.testing.assert_close(result.weight[0], best, rtol=1e-10, atol=1e-12)
    # and q is the cheapest single removal: compare with every one
    costs = []
    for r in range(6):
        others = [i for i in range(6) if i != r]
        candidate = W[0].clone()
        candidate[others] += torch.linalg.solve(H[others][:, others], H[others, r] * W[0, r])
        candidate[r] = 0.0
        costs.append(float(0.5 * (candidate - W[0]) @ H @ (candidate - W[0])))
    assert q == min(range(6), key=costs.__getitem__)
    assert float(result.predicted_increase[0]) == pytest.approx(min(costs), rel=1e-9)


def test_obs_with_a_diagonal_hessian_is_magnitude_pruning_weighted_by_curvature():
    W = torch.tensor([[1.0, 2.0, 3.0]], dtype=DTYPE)
    H = torch.diag(torch.tensor([100.0, 1.0, 1.0], dtype=DTYPE))  # saliencies 50, 2, 4.5: weight 2.0 goes first
    result = compress.obs_prune_layer(W, H, 1 / 3)
    assert result.weight.tolist() == [[1.0, 0.0, 3.0]]
    magnitude = compress.magnitude_prune(W, 1 / 3, H=H)
    assert magnitude.weight.tolist() == [[0.0, 2.0, 3.0]] and float(magnitude.predicted_increase) == 50.0


def test_obs_refuses_a_singular_hessian_without_damping_and_takes_it_with():
    W, X = _layer(2, 8, 4, seed=3)  # 4 samples, 8 inputs: H has rank 4
    H = compress.layer_hessian(X)
    with pytest.raises(ValueError, match="not positive definite: pass damping > 0"):
        compress.obs_prune_layer(W, H, 0.5)
    assert compress.obs_prune_layer(W, H, 0.5, damping=0.01).mask.sum() == 8


def test_global_obs_matches_dense_obs_for_one_weight():
    g = torch.Generator().manual_seed(4)
    G, theta = torch.randn(8, 6, generator=g, dtype=DTYPE), torch.randn(6, generator=g, dtype=DTYPE)
    F = 0.1 * torch.eye(6, dtype=DTYPE) + G.T @ G / 8
    F_inv = torch.linalg.inv(F)
    result = compress.global_obs_prune(theta, woodbury_fisher(G, 0.1), 1 / 6)
    saliency = theta**2 / (2 * torch.diagonal(F_inv))
    q = int(saliency.argmin())
    expected = theta - theta[q] / F_inv[q, q] * F_inv[:, q]
    expected[q] = 0.0
    torch.testing.assert_close(result.weight, expected, rtol=1e-10, atol=1e-12)
    # one weight: the predicted increase ½δᵀFδ is exact
    delta = result.weight - theta
    torch.testing.assert_close(result.predicted_increase, 0.5 * delta @ F @ delta, rtol=1e-9, atol=0)


def test_global_obs_keeps_the_non_candidates():
    theta = torch.tensor([0.1, 5.0, 0.2, 3.0], dtype=DTYPE)
    candidates = torch.tensor([False, True, True, True])
    result = compress.global_obs_prune(theta, woodbury_fisher(torch.zeros(1, 4, dtype=DTYPE), 1.0), 1 / 3,
                                       candidates=candidates)
    assert result.weight.tolist() == [0.1, 5.0, 0.0, 3.0]


# ----------------------------------------------------------------------------------------------------------------------
# quantization
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits, group_size, damping", list(itertools.product([2, 3, 4], [None, 4], [0.0, 0.01])))
def test_gptq_with_block_size_one_is_sequential_obq(bits, group_size, damping):
    W, X = _layer(5, 12, 60, seed=5)
    H = compress.layer_hessian(X)
    obq = compress.obq_quantize(W, H, bits, group_size=group_size, damping=damping)
    for block_size in (1, 5, 128):  # lazy blocks change the order of the updates, not their sum
        torch.testing.assert_close(compress.gptq(W, H, bits, block_size=block_size, group_size=group_size,
                                                 damping=damping), obq, rtol=0, atol=1e-10)


def test_gptq_output_is_on_the_grid():
    W, X = _layer(4, 8, 40, seed=6)
    Q = compress.gptq(W, compress.layer_hessian(X), bits=3)
    scale, zero = compress.quantization_grid(W, 3)  # per-row grid from the original weights
    levels = Q / scale + zero
    torch.testing.assert_close(levels, levels.round(), rtol=0, atol=1e-9)
    assert levels.min() >= -1e-9 and levels.max() <= 7 + 1e-9


def test_gptq_with_uncorrelated_inputs_is_round_to_nearest():
    W, _ = _layer(4, 8, 40, seed=7)
    H = torch.diag(torch.linspace(0.5, 2.0, 8, dtype=DTYPE))  # no feedback between columns
    torch.testing.assert_close(compress.gptq(W, H, bits=2, damping=0.0), compress.round_to_nearest(W, 2),
                               rtol=0, atol=1e-12)


def test_gptq_zeroes_dead_inputs():
    W, X = _layer(3, 6, 30, seed=8)
    X[:, 2] = 0.0
    Q = compress.gptq(W, compress.layer_hessian(X), bits=3)
    assert bool((Q[:, 2] == 0).all())


@settings(max_examples=25, deadline=None)
@given(seed=seeds)
def test_gptq_reconstruction_error_is_at_most_round_to_nearest(seed):
    W, X = _layer(16, 32, 256, seed=seed, correlation=1.0)
    H = compress.layer_hessian(X)
    for bits in (2, 3, 4):
        gptq = compress.reconstruction_error(W, compress.gptq(W, H, bits), H)
        rtn = compress.reconstruction_error(W, compress.round_to_nearest(W, bits), H)
        assert gptq <= rtn


@pytest.mark.parametrize("call, match", [
    (lambda W, H: compress.gptq(W, H[:2, :2], 2), r"H must be a \(4, 4\)"),
    (lambda W, H: compress.gptq(W, H, 0), "bits"),
    (lambda W, H: compress.gptq(W, H, 2, block_size=0), "block_size"),
    (lambda W, H: compress.gptq(W, H, 2, group_size=5), "group_size"),
    (lambda W, H: compress.obs_prune_layer(W, H, 1.0), "sparsity"),
    (lambda W, H: compress.obs_prune_layer(W[0], H, 0.5), "weight must be a floating"),
    (lambda W, H: compress.layer_hessian(W[0]), "inputs must be"),
])
def test_bad_arguments_are_named(call, match):
    W, H = torch.ones(2, 4, dtype=DTYPE), torch.eye(4, dtype=DTYPE)
    with pytest.raises(ValueError, match=match):
        call(W, H)


def test_magnitude_pruning_without_a_hessian_predicts_nothing_rather_than_nan():
    result = compress.magnitude_prune(torch.tensor([[3.0, -1.0, 2.0]], dtype=torch.float64), sparsity=1 / 3)
    assert result.predicted_increase is None
