"""experiments/hutchinson_and_hawq.py at notebook 02's quick settings: the quantiser, the Pareto frontier,
Hutchinson's variance, Hutch++, and HAWQ-V2's per-layer traces, ΣΩ ranking and bit choice.

Tolerances: a sample variance of R estimates is compared with its prediction within 4 of its own standard errors;
a root-mean-square error over R repeats has relative standard deviation about 1/sqrt(2R), and 4 of those are
accepted; the quantiser's error bound s/2 holds up to a few ulps of the largest entry.
"""

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hesslab as hl
from hesslab.experiments import hutchinson_and_hawq as hawq

# the notebook's quick settings
MODEL, WIDE_MODEL = (64, 64, 32, 10), (64, 32, 256, 10)
STEPS, LR, CALIBRATION, PROBES = 300, 1.0, 512, 200


@pytest.fixture(scope="module")
def net():
    return hawq.train_digits_mlp(MODEL, STEPS, LR, CALIBRATION, generator=hl.seed(0))


@pytest.fixture(scope="module")
def blocks(net):
    return hawq.hessian_blocks(net)


@pytest.fixture(scope="module")
def search(net):
    return hawq.search_bits(net, hawq.layer_traces(net, PROBES, generator=hl.seed(1)).values)


@pytest.fixture(scope="module")
def wide_search():
    wide = hawq.train_digits_mlp(WIDE_MODEL, STEPS, LR, CALIBRATION, generator=hl.seed(0))
    return hawq.search_bits(wide, hawq.layer_traces(wide, PROBES, generator=hl.seed(1)).values)


# ----------------------------------------------------------------------------------------------------------------------
# the quantiser
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
def test_quantize_uses_2_to_the_b_minus_1_symmetric_levels_and_moves_entries_by_at_most_half_a_step(bits):
    W = torch.linspace(-0.7, 0.7, 20001, dtype=torch.float64)
    Q = hawq.quantize(W, bits)
    q = 2 ** (bits - 1) - 1
    scale = 0.7 / q
    codes = Q / scale
    torch.testing.assert_close(codes, codes.round(), atol=1e-9, rtol=0)  # on the grid s·k
    assert codes.round().abs().max() == q and codes.round().unique().numel() == 2**bits - 1
    assert (Q - W).abs().max() <= scale / 2 + 8 * torch.finfo(W.dtype).eps * 0.7


def test_quantize_is_idempotent_odd_and_scale_equivariant():
    W = torch.randn(40, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for bits in (2, 3, 4, 8):
        Q = hawq.quantize(W, bits)
        torch.testing.assert_close(hawq.quantize(Q, bits), Q, atol=4 * torch.finfo(W.dtype).eps, rtol=0)
        assert torch.equal(hawq.quantize(-W, bits), -Q)
        assert torch.equal(hawq.quantize(4.0 * W, bits), 4.0 * Q)  # a power of two scales exactly
        assert hawq.quantize(W, bits).abs().max() == pytest.approx(W.abs().max().item(), rel=1e-15)


def test_quantisation_error_of_spread_out_weights_is_a_twelfth_of_a_squared_step():
    """Entries spread evenly over many steps round with an error uniform on [−s/2, s/2]: E e² = s²/12 and
    Var e² = s⁴/80 − s⁴/144 = s⁴/180, so the mean of n squared errors lies within 4 s²/sqrt(180 n) of s²/12."""
    n = 200_000
    W = 2 * torch.rand(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 1
    scale = W.abs().max().item() / (2**5 - 1)
    mean_square = (hawq.quantize(W, 6) - W).pow(2).mean().item()
    assert abs(mean_square - scale**2 / 12) <= 4 * scale**2 / math.sqrt(180 * n)


def test_quantize_zero_and_bad_input():
    assert torch.equal(hawq.quantize(torch.zeros(3, 2, dtype=torch.float64), 4), torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="bits"):
        hawq.quantize(torch.ones(3), 1)
    with pytest.raises(TypeError, match="bits"):
        hawq.quantize(torch.ones(3), 4.0)
    with pytest.raises(TypeError, match="weight"):
        hawq.quantize(torch.ones(3, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="weight"):
        hawq.quantize(torch.tensor([1.0, float("nan")]), 4)


# ----------------------------------------------------------------------------------------------------------------------
# the Pareto frontier
# ----------------------------------------------------------------------------------------------------------------------
def test_pareto_frontier_and_pick_on_a_hand_made_example():
    #            0  1  2  3  4  5  6
    sizes = [1, 2, 2, 3, 4, 5, 4]
    costs = [5, 3, 4, 3, 1, 2, 1]
    # 2 loses to 1 (same size, dearer); 3 to 1 (larger, same cost); 5 to 4; 6 duplicates 4 (the first is kept)
    assert hawq.pareto_frontier(sizes, costs).tolist() == [0, 1, 4]
    assert [hawq.frontier_pick(sizes, costs, budget) for budget in (1, 2, 3.5, 4, 100)] == [0, 1, 1, 4, 4]
    with pytest.raises(ValueError, match="budget"):
        hawq.frontier_pick(sizes, costs, 0.5)
    with pytest.raises(ValueError, match="sizes and costs"):
        hawq.pareto_frontier([1, 2], [1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=25))
def test_pareto_frontier_is_exactly_the_undominated_points(points):
    sizes, costs = np.array(points).T

    def dominates(j, i):
        return sizes[j] <= sizes[i] and costs[j] <= costs[i] and (sizes[j] < sizes[i] or costs[j] < costs[i])

    frontier = set(hawq.pareto_frontier(sizes, costs).tolist())
    for i in range(len(points)):
        undominated = not any(dominates(j, i) for j in range(len(points)))
        first_of_its_kind = all(points[j] != points[i] for j in range(i))
        assert (i in frontier) == (undominated and first_of_its_kind)


# ----------------------------------------------------------------------------------------------------------------------
# Hutchinson's variance and Hutch++ on a Hessian block of the trained net
# ----------------------------------------------------------------------------------------------------------------------
def test_probe_variance_is_twice_the_off_diagonal_mass_over_m(blocks):
    result = hawq.probe_variance(blocks[2], [2, 4, 8, 16, 32, 64, 128], repeats=64, generator=hl.seed(4))
    assert result.trace == pytest.approx(blocks[2].trace().item())
    assert (np.abs(result.variance - result.predicted) <= 4 * result.stderr).all()
    assert result.kurtosis > 0  # one quadratic form is heavy-tailed; the CLT over m probes tames it
    assert np.allclose(result.predicted * result.num_probes, result.predicted[0] * 2)  # exactly 1/m


def test_probe_variance_of_a_diagonal_matrix_is_zero_and_bad_input():
    result = hawq.probe_variance(torch.diag(torch.arange(1.0, 6.0)), [1, 3], repeats=5, generator=hl.seed(0))
    assert np.all(result.variance == 0) and np.all(result.predicted == 0) and result.trace == 15
    with pytest.raises(TypeError, match="dense"):
        hawq.probe_variance([[1.0]], [1], repeats=5)
    with pytest.raises(ValueError, match="repeats"):
        hawq.probe_variance(torch.eye(3), [1], repeats=3)
    with pytest.raises(ValueError, match="num_probes"):
        hawq.probe_variance(torch.eye(3), [0], repeats=5)
    with pytest.raises(ValueError, match="trace 0"):
        hawq.trace_errors(torch.diag(torch.tensor([1.0, -1.0])), [6], repeats=2)
    with pytest.raises(ValueError, match="num_matvecs"):
        hawq.trace_errors(torch.eye(3), [3], repeats=2)


def test_hutch_plus_plus_error_falls_faster_than_hutchinsons(blocks):
    A, repeats = blocks[2], 32
    errors = hawq.trace_errors(A, [12, 48, 192, 384], repeats, generator=hl.seed(3))
    # Hutchinson's root-mean-square error is sqrt(2 Σ_{i≠j} A_ij² / m) / tr A
    predicted = np.sqrt(hl.hutchinson_variance(A) / errors.num_matvecs) / A.trace().item()
    assert (np.abs(errors.hutchinson / predicted - 1) <= 4 / math.sqrt(2 * repeats)).all()
    # Hutch++ deflates the decaying spectrum: at 384 products it is many times more accurate
    assert errors.hutch_plus_plus[-1] < errors.hutchinson[-1] / 10
    assert errors.hutch_plus_plus[-1] / errors.hutch_plus_plus[0] < errors.hutchinson[-1] / errors.hutchinson[0]


# ----------------------------------------------------------------------------------------------------------------------
# HAWQ-V2
# ----------------------------------------------------------------------------------------------------------------------
def test_trained_net_and_its_bad_input(net):
    assert net.weight_names == ("0.weight", "2.weight", "4.weight")
    assert net.layer_sizes.tolist() == [4096, 2048, 320]
    assert net.losses[-1] < 0.05 < net.losses[0] and net.accuracy > 0.99
    with pytest.raises(ValueError, match="sizes"):
        hawq.train_digits_mlp((32, 10))
    with pytest.raises(ValueError, match="calibration_size"):
        hawq.train_digits_mlp(MODEL, steps=1, calibration_size=0)


def test_per_layer_hutchinson_traces_are_within_5_percent_of_the_exact_ones(net, blocks):
    traces = hawq.layer_traces(net, PROBES, generator=hl.seed(1), blocks=blocks)
    assert np.allclose(traces.exact, [block.trace().item() for block in blocks])
    assert (np.abs(traces.relative_errors) <= 0.05).all()
    # and the error is what the estimator's own standard error says it should be
    assert (np.abs(traces.values - traces.exact) <= 4 * traces.stderrs).all()


def test_dense_blocks_and_matrix_free_products_give_the_same_estimates(net, blocks):
    """Same generator, same probes: only rounding differs between H_i V and the Hessian-vector products."""
    matrix_free = hawq.layer_traces(net, 20, generator=hl.seed(7))
    dense = hawq.layer_traces(net, 20, generator=hl.seed(7), blocks=blocks)
    assert np.allclose(matrix_free.values, dense.values, rtol=1e-10, atol=0)
    with pytest.raises(ValueError, match="exact"):
        matrix_free.relative_errors
    with pytest.raises(ValueError, match="blocks"):
        hawq.layer_traces(net, 20, blocks=blocks[:2])


def test_search_scores_sizes_and_losses_of_every_configuration(net, search):
    assert search.configs.shape == (64, 3) and len({tuple(c) for c in search.configs}) == 64
    assert search.model_bits[search.index([2, 3, 8])] == 4096 * 2 + 2048 * 3 + 320 * 8
    config = search.index([2, 4, 8])
    assert search.total_omega[config] == pytest.approx(search.omega[0, 0] + search.omega[1, 2] + search.omega[2, 3])
    # Ω_i(b) = Tr(H_i) / n_i · ‖Q_b(W_i) − W_i‖², computed by hand for one entry
    traces = hawq.layer_traces(net, PROBES, generator=hl.seed(1)).values
    W = net.weights[1]
    assert search.omega[1, 1] == pytest.approx(traces[1] / W.numel() * (hawq.quantize(W, 3) - W).pow(2).sum().item())
    # the vectorised loss increase equals quantising a copy of the model; the net itself is left alone
    before = [p.clone() for p in net.model.parameters()]
    quantised = copy.deepcopy(net.model)
    with torch.no_grad():
        for name, bits in zip(net.weight_names, [2, 4, 8]):
            quantised.get_parameter(name).copy_(hawq.quantize(net.model.get_parameter(name), bits))
        increase = (hawq.LOSS(quantised(net.inputs), net.targets) - hawq.LOSS(net.model(net.inputs), net.targets))
    assert search.loss_increase[config] == pytest.approx(increase.item(), rel=1e-10, abs=1e-14)
    assert all(torch.equal(p, q) for p, q in zip(before, net.model.parameters()))
    with pytest.raises(ValueError, match="not among"):
        search.index([5, 5, 5])
    with pytest.raises(ValueError, match="bit_choices"):
        hawq.search_bits(net, traces, bit_choices=(2, 2, 4))
    rescored = hawq.search_bits(net, 2 * traces, loss_increase=search.loss_increase)
    assert np.allclose(rescored.total_omega, 2 * search.total_omega) and rescored.spearman == search.spearman
    with pytest.raises(ValueError, match="loss_increase"):
        hawq.search_bits(net, traces, loss_increase=search.loss_increase[:5])
    with pytest.raises(ValueError, match="configs"):
        hawq.quantized_loss_increase(net, np.array([[2, 3]]))


def test_total_omega_ranks_the_measured_loss_increases(search, wide_search):
    assert search.spearman >= 0.8 and wide_search.spearman >= 0.8


def test_the_frontier_picks_uniform_precision_where_uniform_is_best(search):
    """64-64-32-10: its three layers are about equally sensitive per weight, and uniform precision is already on the
    measured frontier; HAWQ-V2's frontier keeps it rather than trading bits between layers."""
    for row in hawq.compare_with_uniform(search):
        assert row.pick == row.uniform == row.best
        assert row.pick_loss_increase <= row.uniform_loss_increase


def test_the_frontier_pick_beats_uniform_precision_at_equal_size_on_the_wide_net(wide_search):
    """64-32-256-10: the wide 32→256 layer is much less sensitive per weight; at the size of uniform 4 bits the
    frontier moves bits from it to the first layer and loses several times less."""
    row = next(row for row in hawq.compare_with_uniform(wide_search) if row.bits == 4)
    assert wide_search.model_bits[row.pick] <= row.budget
    assert row.pick_loss_increase < row.uniform_loss_increase / 2
    assert row.pick == row.best


@pytest.mark.parametrize("seed", (1, 2, 3))
def test_notebook_claims_hold_on_further_seeds(seed):
    """Notebook 02's asserts at its quick scale, on seeds it was not tuned on (net initialisation ``seed``, probes
    ``seed + 1``; the notebook uses 0 and 1).

    Measured over seeds 0-3: trace errors within 2.6 standard errors (at most 5.0%, layer 2 of seed 1, which is why the
    notebook states the error in standard errors); Spearman 0.96-0.97 and 0.94; the wide net's 4-bit-size pick 2.4-6x
    below uniform. Mutations these asserts are meant to catch (by reasoning; issue 21's mutation test applies them):
    probes without the 1/m mean (traces m times too large); the score without the weights' perturbation ‖ΔW‖² (the
    frontier then picks by trace alone and loses the 4-bit-size win).
    """
    narrow = hawq.train_digits_mlp(MODEL, STEPS, LR, CALIBRATION, generator=hl.seed(seed))
    blocks = hawq.hessian_blocks(narrow)
    traces = hawq.layer_traces(narrow, PROBES, generator=hl.seed(seed + 1), blocks=blocks)
    assert (np.abs(traces.values - traces.exact) <= 4 * traces.stderrs).all()
    assert (np.abs(traces.relative_errors) <= 0.1).all()
    search = hawq.search_bits(narrow, traces.values)
    wide = hawq.train_digits_mlp(WIDE_MODEL, STEPS, LR, CALIBRATION, generator=hl.seed(seed))
    wide_search = hawq.search_bits(wide, hawq.layer_traces(wide, PROBES, generator=hl.seed(seed + 1)).values)
    assert search.spearman >= 0.8 and wide_search.spearman >= 0.8
    assert all(row.pick == row.uniform == row.best for row in hawq.compare_with_uniform(search))
    wide_4 = next(row for row in hawq.compare_with_uniform(wide_search) if row.bits == 4)
    assert wide_search.model_bits[wide_4.pick] <= wide_4.budget
    assert wide_4.pick_loss_increase < wide_4.uniform_loss_increase / 2
    variance = hawq.probe_variance(blocks[2], [2, 4, 8, 16, 32, 64, 128], 64, generator=hl.seed(seed))
    assert np.all(np.abs(variance.variance - variance.predicted) <= 4 * variance.stderr)


# ----------------------------------------------------------------------------------------------------------------------
# layers ranked differently by λ_max, Tr/n and Tr; the probes told apart by the variance
# ----------------------------------------------------------------------------------------------------------------------
def test_quadratic_layers_have_the_stated_spectra():
    model = hawq.spiked_and_flat_layers(generator=hl.seed(0))
    assert model.names == ("spiked", "flat", "wide") and list(model.layer_sizes) == [64, 64, 512]
    for H, top, trace in zip(model.blocks, [2.0, 1.0, 0.1], [8 + 60 * 0.02, 64.0, 51.2]):
        eigenvalues = torch.linalg.eigvalsh(H)
        assert torch.equal(H, H.T)
        assert eigenvalues[-1].item() == pytest.approx(top, rel=1e-12)
        assert H.trace().item() == pytest.approx(trace, rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_only_hawq_v2_ranks_the_quadratic_layers_as_their_loss_increase(seed):
    ranking = hawq.rank_layers(hawq.spiked_and_flat_layers(generator=hl.seed(seed)), bits=4, num_probes=200,
                               generator=hl.seed(10 + seed))
    # the three statistics rank the layers three ways
    assert ranking.order(ranking.top_eigenvalues) == ("spiked", "flat", "wide")
    assert ranking.order(ranking.exact_traces / ranking.sizes) == ("flat", "spiked", "wide")
    assert ranking.order(ranking.exact_traces) == ("flat", "wide", "spiked")
    # the loss, exactly quadratic, ranks them as HAWQ-V2's score; V1's and the score without 1/n do not
    assert ranking.order(ranking.loss_increase) == ranking.order(ranking.omega) == ("flat", "wide", "spiked")
    assert ranking.order(ranking.hawq_v1) == ("spiked", "flat", "wide")
    assert ranking.order(ranking.without_size) == ("wide", "flat", "spiked")
    # on the flat blocks (H = cI) Rademacher Hutchinson is exact and ½ΔᵀHΔ = ½Ω exactly
    assert ranking.traces[1:] == pytest.approx(ranking.exact_traces[1:], rel=1e-12)
    assert ranking.loss_increase[1:] == pytest.approx(ranking.omega[1:] / 2, rel=1e-12)
    assert ranking.hawq_v1 == pytest.approx(ranking.top_eigenvalues * ranking.perturbations)


def test_rank_layers_bad_input():
    with pytest.raises(TypeError, match="QuadraticLayers"):
        hawq.rank_layers("net")
    with pytest.raises(ValueError, match="bits"):
        hawq.rank_layers(hawq.spiked_and_flat_layers(generator=hl.seed(0)), bits=1)


def test_estimator_variance_tells_rademacher_from_gaussian_probes_on_a_large_diagonal():
    A = hawq.spiked_and_flat_layers(generator=hl.seed(0)).blocks[0] + torch.eye(64, dtype=torch.float64)
    result = hawq.estimator_variance(A, 16, 64, generator=hl.seed(1))
    assert abs(result.variance - result.rademacher) <= 4 * result.stderr
    assert result.gaussian > 5 * result.rademacher and result.gaussian - result.rademacher > 8 * result.stderr
    assert result.rademacher == pytest.approx(hl.hutchinson_variance(A) / 16)
    # a diagonal matrix: every Rademacher estimate is the trace
    diagonal = hawq.estimator_variance(torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)), 2, 4)
    assert diagonal.variance == pytest.approx(0, abs=1e-25) and diagonal.rademacher == 0 and diagonal.stderr == 0
    with pytest.raises(ValueError, match="num_probes"):
        hawq.estimator_variance(A, 1, 64)
    with pytest.raises(ValueError, match="repeats"):
        hawq.estimator_variance(A, 4, 3)
    with pytest.raises(TypeError, match="dense"):
        hawq.estimator_variance([[1.0]], 4, 8)
