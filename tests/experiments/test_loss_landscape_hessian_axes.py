"""Notebook 13's experiment, headless at the notebook's quick settings."""

import numpy as np
import pytest

from hesslab.experiments.loss_landscape_hessian_axes import axes, criteria, slice_2d, slices_1d


@pytest.mark.parametrize("batch_norm", [False, True])
def test_curvature_along_v1_is_lambda1_and_random_directions_see_far_less(batch_norm):
    a = axes(batch_norm)
    assert abs(a.curvatures_eigen[0] / a.eigenvalues[0] - 1) < 1e-3
    assert abs(a.curvatures_eigen[1] / a.eigenvalues[1] - 1) < 1e-3
    assert (a.curvatures_random <= a.eigenvalues[0]).all()
    assert a.curvatures_random.max() < 0.1 * a.eigenvalues[0]
    assert 0 <= a.bias_share <= 1


def test_slices_are_centred_on_the_trained_loss():
    s, curves = slices_1d(True, num=5)
    a = axes(True)
    for losses in curves.values():
        assert abs(losses[2] - a.loss) < 1e-12 and losses.shape == (5,)
    plane = slice_2d("hessian", True, num=3)
    assert plane.losses.shape == (3, 3) and abs(plane.losses[1, 1] - a.loss) < 1e-12
    with pytest.raises(ValueError, match="kind"):
        slice_2d("pca")


def test_lla_criteria_separate_clean_from_shuffled_labels():
    clean, noisy = criteria(0.0, epochs=200), criteria(0.5, epochs=200)
    assert clean.train_accuracy > 0.99 and noisy.train_accuracy > 0.99      # both fit their training labels
    assert clean.test_accuracy > noisy.test_accuracy + 0.2
    assert noisy.lambda_max > 5 * clean.lambda_max
    assert clean.re > 1.5 * noisy.re
    assert np.isclose(clean.weights.sum(), 1) and clean.lambda_min < 0 < clean.lambda_max


@pytest.mark.parametrize("seed", (1, 2, 3))
def test_notebook_claims_hold_on_further_seeds(seed):
    """Notebook 13's asserts at its quick scale (200 epochs for the criteria), on seeds it was not tuned on: ``seed``
    draws the initialisation, the batches, the split, the shuffled labels and the probes (the notebook uses 0).

    Measured, seeds 1/2/3: second difference along v_1 within 3e-6-4e-5 of λ_1; random uᵀHu/λ_1 at most 0.014;
    test accuracy clean 0.972/0.972/0.974 against shuffled 0.619/0.560/0.595; λ_max shuffled/clean 21.7/14.9/14.2;
    re clean/shuffled 2.6/6.5/3.6. Mutations these asserts are meant to catch (by reasoning): a second difference
    with the wrong step scaling (curvature off by a factor 4 or h², not 1e-3); eigenvectors from the GGN instead of
    the Hessian would still pass the first assert at a minimum (H ≈ G), so it is the plain `hl.top_eigen` being
    tested, not the net; shuffled labels not actually shuffled (no gap in accuracy or sharpness).
    """
    for batch_norm in (False, True):
        a = axes(batch_norm, seed=seed)
        assert abs(a.curvatures_eigen[0] / a.eigenvalues[0] - 1) < 1e-3, (batch_norm, a.curvatures_eigen)
        assert (a.curvatures_random <= a.eigenvalues[0]).all()
        assert a.curvatures_random.max() < 0.1 * a.eigenvalues[0], (batch_norm, a.curvatures_random)
    clean, noisy = criteria(0.0, epochs=200, seed=seed), criteria(0.5, epochs=200, seed=seed)
    assert clean.train_accuracy > 0.99 and noisy.train_accuracy > 0.99
    assert clean.test_accuracy > noisy.test_accuracy + 0.2, (clean.test_accuracy, noisy.test_accuracy)
    assert noisy.lambda_max > 5 * clean.lambda_max, (clean.lambda_max, noisy.lambda_max)
    assert clean.re > 1.5 * noisy.re, (clean.re, noisy.re)
