"""Notebook 01's experiment, headless at the notebook's quick settings (k = 10, width 128)."""

import pytest
import torch

from hesslab.experiments.bulk_and_outliers import Spectrum, bulk_edge, spectrum, train_on_clusters, width_trend


def test_bulk_edge_finds_the_relative_jump_below_the_top():
    eigenvalues = torch.tensor([50.0, 9.0, 8.0, 7.5, 1.0, 0.9, 0.8, 0.7], dtype=torch.float64)
    assert bulk_edge(eigenvalues, 8) == 4          # 7.5 / 1.0 is the largest ratio below the top
    with pytest.raises(ValueError, match="positive"):
        bulk_edge(torch.tensor([3.0, 2.0, -1.0], dtype=torch.float64), 3)


def test_training_failure_is_reported():
    with pytest.raises(ValueError, match="did not reach"):
        train_on_clusters(4, 8, spread=0.5, max_steps=3)


@pytest.fixture(scope="module")
def quick():
    return {matrix: spectrum(10, 128, matrix) for matrix in ("hessian", "ggn", "difference")}


def test_about_one_outlier_per_class(quick):
    assert abs(quick["hessian"].outliers - 10) <= 1
    assert abs(quick["ggn"].outliers - 10) <= 1


def test_ggn_rank_bound_and_psd(quick):
    G = quick["ggn"]
    assert G.rank <= G.num_points * (10 - 1) < G.num_params
    assert G.eigenvalues[-1] >= -1e-10 * G.eigenvalues[0]


def test_hessian_is_ggn_plus_a_small_indefinite_difference(quick):
    H, D = quick["hessian"], quick["difference"]
    assert H.loss < 0.1
    assert D.eigenvalues[0] > 0 > D.eigenvalues[-1]           # indefinite
    assert D.eigenvalues.abs().max() < 0.5 * H.eigenvalues[0]  # small next to the outliers


def test_bulk_at_zero_grows_with_width(quick):
    by_width = [spectrum(10, width) for width in (32, 64)] + [quick["hessian"]]
    assert width_trend(by_width) >= 0.05
    assert max(s.near_zero_fraction for s in by_width) == by_width[-1].near_zero_fraction


def test_width_trend_is_the_least_squares_slope_per_doubling():
    values = [torch.tensor([1.0, 0.5, 0.0, 0.0]), torch.tensor([1.0, 0.0, 0.0, 0.0]),
              torch.tensor([1.0, 0.0, 0.0, 0.0])]
    spectra = [Spectrum("hessian", 2, w, n, 10, 0.0, 0, v.double()) for w, n, v in zip((1, 2, 4), (4, 8, 16), values)]
    # fractions 0.5, 0.75, 0.75 at log2 n = 2, 3, 4: slope (0.75 - 0.5) / 2
    assert abs(width_trend(spectra) - 0.125) < 1e-12
    with pytest.raises(ValueError, match="two widths"):
        width_trend(spectra[:1])


@pytest.mark.parametrize("seed", (1, 2, 3))
def test_notebook_claims_hold_on_further_seeds(seed):
    """Notebook 01's asserts, at its quick scale (k = 10, widths 32/64/128), on seeds it was not tuned on.

    Measured over seeds 0-5: outliers 10 (H and G) at width 128 on every seed; max |eig(H - G)| / λ_max(H) 0.26-0.42;
    trend 0.07-0.14 per doubling. Mutations these asserts are meant to catch (by reasoning; issue 21's mutation test
    applies them): the Hessian replaced by the GGN (H - G = 0 is not indefinite); the width ignored by the model
    (trend 0); pairwise monotonicity instead of the trend would fail seed 3 of the correct code (0.356 > 0.321), which
    is why the claim is a trend.
    """
    H, G, D = (spectrum(10, 128, matrix, seed=seed) for matrix in ("hessian", "ggn", "difference"))
    assert abs(H.outliers - 10) <= 1 and abs(G.outliers - 10) <= 1, (H.outliers, G.outliers)
    assert G.rank <= G.num_points * (10 - 1) < G.num_params
    assert D.eigenvalues[0] > 0 > D.eigenvalues[-1]
    assert D.eigenvalues.abs().max() < 0.5 * H.eigenvalues[0]
    by_width = [spectrum(10, width, seed=seed) for width in (32, 64)] + [H]
    assert width_trend(by_width) >= 0.05, [s.near_zero_fraction for s in by_width]
    assert max(s.near_zero_fraction for s in by_width) == H.near_zero_fraction


def test_bad_matrix_name():
    with pytest.raises(ValueError, match="matrix must be"):
        spectrum(3, 8, "laplacian")
