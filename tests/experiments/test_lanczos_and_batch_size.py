"""Notebook 03's experiment: exact batch Hessians of a linear softmax classifier, λ_max against the batch size,
SLQ against exact moments, and the convergence of Ritz values. Settings are the notebook's quick ones."""

import itertools
import math

import pytest
import torch
from helpers import random_symmetric
from torch import nn

import hesslab as hl
from hesslab.data import pixel_digits
from hesslab.experiments import lanczos_and_batch_size as bs
from hesslab.sampling import rademacher

QUICK_BATCH_SIZES = (4, 8, 16, 32, 64, 128, 256)
EPS = torch.finfo(torch.float64).eps


@pytest.fixture(scope="module")
def trained():
    """The notebook's set-up: pixel digits, linear softmax, 400 steps of full-batch GD with lr 0.5, seed 0."""
    inputs, targets = pixel_digits()
    softmax = bs.train_softmax(inputs, targets, lr=0.5, num_steps=400, generator=hl.seed(0, "cpu"))
    return inputs, targets, softmax, bs.softmax_curvature(softmax.model, inputs)


@pytest.fixture(scope="module")
def sweep(trained):
    *_, curvature = trained
    return bs.batch_size_sweep(curvature, QUICK_BATCH_SIZES, num_partitions=4, generator=hl.seed(0, "cpu"))


def hessian_of_batch(softmax, inputs, targets, index):
    f, theta = hl.loss_function(softmax.model, nn.functional.cross_entropy, inputs[index], targets[index])
    return hl.hessian(f, theta)


# ----------------------------------------------------------------------------------------------------------------------
# data and training
# ----------------------------------------------------------------------------------------------------------------------
def test_training_decreases_the_loss_and_is_reproducible(trained):
    inputs, targets, softmax, _ = trained
    assert softmax.losses[-1] < 0.25 * softmax.losses[0]
    assert all(b < a for a, b in zip(softmax.losses, softmax.losses[1:]))  # convex loss, small step: monotone
    again = bs.train_softmax(inputs, targets, lr=0.5, num_steps=400, generator=hl.seed(0, "cpu"))
    assert again.losses == softmax.losses


# ----------------------------------------------------------------------------------------------------------------------
# exact batch Hessians
# ----------------------------------------------------------------------------------------------------------------------
def test_closed_form_batch_hessian_equals_hl_hessian(trained):
    inputs, targets, softmax, curvature = trained
    for index in (torch.arange(5), torch.tensor([3, 1000, 1796, 42, 7, 512, 99])):
        expected = hessian_of_batch(softmax, inputs, targets, index)
        torch.testing.assert_close(bs.batch_hessian(curvature, index), expected, atol=1e-15, rtol=0)


def test_closed_form_full_hessian_equals_hl_hessian_and_the_ggn(trained):
    """A model linear in θ has no second-order term: the Hessian is exactly its Gauss-Newton matrix."""
    inputs, targets, softmax, curvature = trained
    index = torch.arange(0, 1797, 9)
    H = bs.batch_hessian(curvature, index)
    torch.testing.assert_close(H, hessian_of_batch(softmax, inputs, targets, index), atol=1e-15, rtol=0)
    g, theta = hl.output_function(softmax.model, inputs[index])
    G = hl.ggn(g, lambda z: nn.functional.cross_entropy(z, targets[index]), theta)
    torch.testing.assert_close(H, G, atol=1e-15, rtol=0)


def test_batch_top_eigenvalues_match_dense_eigvalsh_through_both_paths(trained):
    """B = 4 goes through the 40 × 40 Gram matrix, B = 70 through the 650 × 650 Hessian; both equal eigvalsh."""
    *_, curvature = trained
    permutation = torch.randperm(1797, generator=torch.Generator().manual_seed(3))
    for size, count in ((4, 50), (70, 3)):
        batches = permutation[: size * count].view(count, size)
        expected = torch.stack([torch.linalg.eigvalsh(bs.batch_hessian(curvature, b))[-1] for b in batches])
        tolerance = 650 * EPS * expected.max()  # backward-stable eigensolvers: error <= O(n eps ||H||)
        torch.testing.assert_close(bs.batch_top_eigenvalues(curvature, batches), expected, atol=tolerance, rtol=0)


def test_batch_top_eigenvalue_agrees_with_top_eigen_on_the_hessian_operator(trained):
    inputs, targets, softmax, curvature = trained
    index = torch.arange(100, 132)
    operator = hl.HessianOperator.from_model(softmax.model, nn.functional.cross_entropy,
                                             (inputs[index], targets[index]))
    (top,), _ = hl.top_eigen(operator, k=1, tol=1e-10, generator=hl.seed(0, "cpu"))
    exact = bs.batch_top_eigenvalues(curvature, index[None])[0]
    assert abs(top - exact) <= 1e-10 * exact  # top_eigen's stopping criterion


def test_softmax_curvature_rejects_other_models():
    inputs, _ = pixel_digits()
    with pytest.raises(TypeError, match="nn.Linear"):
        bs.softmax_curvature(hl.models.mlp([64, 8, 10]), inputs)
    with pytest.raises(TypeError, match="nn.Linear"):
        bs.softmax_curvature(nn.Linear(64, 10, bias=False).double(), inputs)


def test_index_validation(trained):
    *_, curvature = trained
    with pytest.raises(ValueError, match=r"batches must be a non-empty \(num_batches, B\)"):
        bs.batch_top_eigenvalues(curvature, torch.arange(4))
    with pytest.raises(ValueError, match=r"sample indices in \[0, 1797\)"):
        bs.batch_hessian(curvature, torch.tensor([0, 1797]))
    with pytest.raises(TypeError, match="integer tensor"):
        bs.batch_hessian(curvature, torch.tensor([0.0, 1.0]))


# ----------------------------------------------------------------------------------------------------------------------
# partitions and the sweep over batch sizes
# ----------------------------------------------------------------------------------------------------------------------
def test_partition_covers_every_sample_once_and_is_nested():
    permutation = torch.randperm(23, generator=torch.Generator().manual_seed(0))
    for size in (1, 2, 4, 8, 16, 23):
        blocks = bs.partition(permutation, size)
        flat = torch.cat([b.reshape(-1) for b in blocks])
        assert torch.equal(flat, permutation)
        assert blocks[0].shape[1] == size and all(b.shape[1] < size for b in blocks[1:])
    def boundaries(size):  # where one batch ends and the next begins, along the permutation
        lengths = [row.numel() for block in bs.partition(permutation, size) for row in block]
        return set(itertools.accumulate(lengths))

    assert boundaries(8) <= boundaries(4) <= boundaries(2)  # every 8-batch is the union of 4-batches: nested
    with pytest.raises(ValueError, match="batch_size"):
        bs.partition(permutation, 24)


def test_mean_batch_lambda_max_exceeds_the_full_batch_and_does_not_grow_with_b(sweep):
    """Convexity of λ_max over a nested partition: theorems, up to the eigensolver's rounding."""
    rounding = 650 * EPS * sweep.batch_tops[0].max().item()
    means = sweep.mean_top.tolist()
    assert all(mean >= sweep.top_full - rounding for mean in means), means
    assert all(later <= earlier + rounding for earlier, later in zip(means, means[1:])), means


def test_small_batches_are_much_sharper_and_the_excess_falls_like_one_over_b(sweep):
    """The paper's phenomenon on this set-up: about twice as sharp at B = 4, within 2% at B = 256; the excess
    over the full batch falls with a log-log slope near -1 for B >= 16. (The 2% holds for seed 0 only — 2.0%, 2.8%,
    2.2% on seeds 1-3 — so the notebook does not claim it; the seed-robust claims are in
    test_notebook_claims_hold_on_further_seeds.)"""
    excess = sweep.mean_top - sweep.top_full
    assert sweep.mean_top[0] > 2 * sweep.top_full
    assert excess[-1] < 0.02 * sweep.top_full
    sizes = torch.tensor(sweep.batch_sizes, dtype=torch.float64)
    large = sizes >= 16
    slope = torch.linalg.lstsq(torch.stack([sizes[large].log(), torch.ones(int(large.sum()))], 1),
                               excess[large].log()[:, None]).solution[0, 0]
    assert -1.3 < slope < -0.7, slope


def test_spiked_wigner_prediction_tracks_the_measured_mean(sweep):
    """Nothing is fitted: s_B² is measured. The predicted excess is within a factor 1.5 of the measured one."""
    ratio = (sweep.prediction - sweep.top_full) / (sweep.mean_top - sweep.top_full)
    assert torch.all((ratio > 1 / 1.5) & (ratio < 1.5)), ratio


def test_fluctuation_is_the_exact_without_replacement_variance():
    """On 7 samples, E‖(H_B − H) u‖² over all C(7, B) batches equals the closed form, for every B."""
    inputs, targets = pixel_digits()
    softmax = bs.train_softmax(inputs, targets, num_steps=5, generator=hl.seed(1, "cpu"))
    curvature = bs.softmax_curvature(softmax.model, inputs[:7])
    H = bs.batch_hessian(curvature)
    u = torch.randn(650, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    u = u / u.norm()
    sizes = (1, 2, 3, 7)
    predicted = bs.fluctuation(curvature, u, sizes)
    for size, value in zip(sizes, predicted):
        batches = [torch.tensor(c) for c in itertools.combinations(range(7), size)]
        exact = torch.stack([((bs.batch_hessian(curvature, b) - H) @ u).square().sum() for b in batches]).mean()
        torch.testing.assert_close(value, exact, atol=1e-15, rtol=1e-12)


def test_fluctuation_validation(trained):
    *_, curvature = trained
    with pytest.raises(ValueError, match="u must be a vector of the n = 650"):
        bs.fluctuation(curvature, torch.ones(64, dtype=torch.float64), (4,))
    with pytest.raises(ValueError, match="batch size"):
        bs.fluctuation(curvature, torch.ones(650, dtype=torch.float64), (0,))


def test_spiked_wigner_formula_and_its_threshold():
    noise = torch.tensor([4.0, 1.0, 0.25])
    torch.testing.assert_close(bs.spiked_wigner(1.0, noise), torch.tensor([4.0, 2.0, 1.25]))


def test_median_batch_is_the_median(trained):
    *_, curvature = trained
    permutation = torch.randperm(1797, generator=torch.Generator().manual_seed(5))
    index = bs.median_batch(curvature, permutation, 32)
    tops = bs.batch_top_eigenvalues(curvature, bs.partition(permutation, 32)[0])
    assert bs.batch_top_eigenvalues(curvature, index[None])[0] == tops.median()


def test_sweep_validation(trained):
    *_, curvature = trained
    with pytest.raises(ValueError, match="batch size"):
        bs.batch_size_sweep(curvature, (4, 0))
    with pytest.raises(ValueError, match="batch size"):
        bs.batch_size_sweep(curvature, (4, 1798))
    with pytest.raises(ValueError, match="empty"):
        bs.batch_size_sweep(curvature, ())
    with pytest.raises(ValueError, match="num_partitions"):
        bs.batch_size_sweep(curvature, (4,), num_partitions=0)
    with pytest.raises(TypeError, match="batch size"):
        bs.batch_size_sweep(curvature, (4.0,))


# ----------------------------------------------------------------------------------------------------------------------
# SLQ against the exact spectrum
# ----------------------------------------------------------------------------------------------------------------------
def test_slq_moments_are_hutchinson_estimates_on_the_same_probes(trained):
    """Gauss quadrature with m nodes is exact to degree 2m − 1: Σ w θ^k = mean over probes of vᵀ H^k v."""
    inputs, targets, softmax, curvature = trained
    index = torch.arange(64)
    H = bs.batch_hessian(curvature, index)
    operator = hl.HessianOperator.from_model(softmax.model, nn.functional.cross_entropy,
                                             (inputs[index], targets[index]))
    comparison = bs.compare_density(operator, H, num_steps=4, num_probes=6, max_power=7,
                                    generator=torch.Generator().manual_seed(2))
    probes = rademacher(650, 6, torch.float64, torch.device("cpu"), torch.Generator().manual_seed(2)) / math.sqrt(650)
    for k in range(8):
        hutchinson = (probes * (torch.linalg.matrix_power(H, k) @ probes)).sum(0).mean()
        torch.testing.assert_close(comparison.slq_moments[k], hutchinson, atol=1e-14 * H.norm(2) ** k, rtol=1e-9)


def test_exact_moments_and_hutchinson_standard_error_formula(trained):
    *_, curvature = trained
    H = bs.batch_hessian(curvature, torch.arange(200))
    comparison = bs.compare_density(H, H, num_steps=5, num_probes=3, max_power=3,
                                    generator=torch.Generator().manual_seed(0))
    for k in range(4):
        M = torch.linalg.matrix_power(H, k)
        torch.testing.assert_close(comparison.exact_moments[k], M.trace() / 650, atol=1e-15, rtol=1e-10)
        variance = 2 * (M.square().sum() - M.diagonal().square().sum())  # Var(zᵀ M z) for Rademacher z
        torch.testing.assert_close(comparison.stderr[k], (variance / 3).sqrt() / 650, atol=1e-15, rtol=1e-8)
    assert comparison.stderr[0] == 0 and abs(comparison.slq_moments[0] - 1) < 1e-14


def test_slq_moments_match_the_exact_spectrum_within_their_standard_error(trained):
    """The notebook's closing check at its quick settings (40 steps, 8 probes), for batches and the full data."""
    inputs, targets, softmax, curvature = trained
    generator = hl.seed(0, "cpu")
    for size in (16, 256, 1797):
        index = torch.arange(size)
        operator = hl.HessianOperator.from_model(softmax.model, nn.functional.cross_entropy,
                                                 (inputs[index], targets[index]))
        c = bs.compare_density(operator, bs.batch_hessian(curvature, index), 40, 8, generator=generator)
        rounding = 40 * 8 * EPS * c.eigenvalues[-1] ** c.powers
        assert torch.all((c.slq_moments - c.exact_moments).abs() <= 4 * c.stderr + rounding), size


def test_compare_density_validation():
    A = random_symmetric(10)
    with pytest.raises(ValueError, match="exact must be the dense"):
        bs.compare_density(A, A[0], 3, 2)
    with pytest.raises(ValueError, match="same Hessian"):
        bs.compare_density(A, random_symmetric(11), 3, 2)
    with pytest.raises(ValueError, match="max_power"):
        bs.compare_density(A, A, 3, 2, max_power=-1)


# ----------------------------------------------------------------------------------------------------------------------
# Ritz values
# ----------------------------------------------------------------------------------------------------------------------
def test_ritz_values_interlace_rise_and_obey_the_kaniel_paige_bound():
    eigenvalues = torch.cat([torch.tensor([10.0, 7.0, 6.5]), torch.linspace(-1, 1, 37)])
    A = random_symmetric(40, seed=3, eigenvalues=eigenvalues)
    result = bs.ritz_convergence(A, 40, k=3, generator=torch.Generator().manual_seed(0))
    rounding = 1e3 * EPS * 10
    torch.testing.assert_close(result.eigenvalues, torch.tensor([10.0, 7.0, 6.5]), atol=1e-12, rtol=0)
    assert torch.all(result.ritz <= result.eigenvalues + rounding)  # Cauchy interlacing: θ_i <= λ_i
    assert torch.all(result.ritz[1:] >= result.ritz[:-1] - rounding)  # ... and θ_i grows with the Krylov space
    assert torch.all(result.eigenvalues[0] - result.ritz[:, 0] <= result.bound + rounding)
    torch.testing.assert_close(result.ritz[-1], result.eigenvalues, atol=1e-12, rtol=0)  # j = n: exact
    assert result.residual[-1] == 0 and result.estimate[-1] == 0


def test_ritz_convergence_on_the_full_hessian_is_fast(trained):
    """Nine well-separated outliers: λ_1 to 1e-10 in at most 20 of 650 steps; some eigenvalue lies within the
    residual r of θ_1 (for a symmetric matrix, min_j |λ_j − θ| <= ‖A y − θ y‖)."""
    *_, curvature = trained
    H = bs.batch_hessian(curvature)
    result = bs.ritz_convergence(H, 20, k=2, generator=hl.seed(0, "cpu"))
    error = result.eigenvalues[0] - result.ritz[:, 0]
    assert error[-1] <= 1e-10 * result.eigenvalues[0]
    eigenvalues = torch.linalg.eigvalsh(H)
    distance = (result.ritz[:, :1] - eigenvalues).abs().min(dim=1).values
    assert torch.all(distance <= result.residual + 650 * EPS * eigenvalues[-1])


def test_ritz_convergence_validation():
    A = random_symmetric(10)
    with pytest.raises(ValueError, match="num_steps"):
        bs.ritz_convergence(A, 2, k=3)
    with pytest.raises(ValueError, match="exact must be a dense"):
        bs.ritz_convergence(A[0], 2)


@pytest.mark.parametrize("seed", (1, 2, 3))
def test_notebook_claims_hold_on_further_seeds(seed):
    """Notebook 03's phenomenon asserts at its quick scale (B = 4 ... 256, 4 partitions), on seeds it was not tuned
    on: ``seed`` draws the initialisation of the softmax and the partitions (the notebook uses 0).

    Measured, seeds 1/2/3: B = 4 is 2.27/2.28/2.27× sharper than the full batch; log-log slope of the excess for
    B >= 16 −1.07/−0.97/−1.02; predicted/measured excess in [0.89, 1.16]/[0.74, 1.15]/[0.94, 1.16]; top four Ritz
    values after 30 steps at rounding (≤ 4e-16 relative). The tests' old "within 2% at B = 256" is not a seed-robust
    claim (excess 2.0%/2.8%/2.2%: seven batches per partition at B = 256), so neither the notebook nor this test
    makes it. Mutations these asserts are meant to catch: Lanczos without reorthogonalisation (a ghost copy of λ_1:
    Ritz errors 0.12-0.26, tests/test_notebook_mutations.py); an unweighted mean or one batch per B instead of the
    partition (the theorems); s_B² without the without-replacement factor (N − B)/(N − 1) or the 1/B (prediction
    off by more than 1.5 at large B).
    """
    inputs, targets = pixel_digits()
    softmax = bs.train_softmax(inputs, targets, lr=0.5, num_steps=400, generator=hl.seed(seed, "cpu"))
    curvature = bs.softmax_curvature(softmax.model, inputs)
    sweep = bs.batch_size_sweep(curvature, QUICK_BATCH_SIZES, num_partitions=4, generator=hl.seed(seed, "cpu"))
    rounding = 650 * EPS * sweep.batch_tops[0].max().item()
    means = sweep.mean_top.tolist()
    assert all(mean >= sweep.top_full - rounding for mean in means), means
    assert all(later <= earlier + rounding for earlier, later in zip(means, means[1:])), means
    assert sweep.mean_top[0] > 2 * sweep.top_full, means
    assert -1.3 < excess_slope(sweep) < -0.7
    ratio = (sweep.prediction - sweep.top_full) / (sweep.mean_top - sweep.top_full)
    assert torch.all((ratio > 1 / 1.5) & (ratio < 1.5)), ratio
    convergence = bs.ritz_convergence(bs.batch_hessian(curvature), 30, k=4, generator=hl.seed(seed, "cpu"))
    assert ((convergence.eigenvalues - convergence.ritz[-1]).abs() <= 1e-10 * convergence.eigenvalues[0]).all()


def excess_slope(sweep) -> float:
    """Least-squares slope of log(mean λ_max(H_B) − λ_max(H)) against log B over B >= 16 (the notebook's statistic)."""
    sizes = torch.tensor(sweep.batch_sizes, dtype=torch.float64)
    large = sizes >= 16
    excess = sweep.mean_top - sweep.top_full
    return torch.linalg.lstsq(torch.stack([sizes[large].log(), torch.ones(int(large.sum()), dtype=torch.float64)], 1),
                              excess[large].log()[:, None]).solution[0, 0].item()
