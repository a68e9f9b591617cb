"""data.py: the small datasets of the notebooks."""

import pytest
import torch

from hesslab.data import breast_cancer, digits, gaussian_clusters, pixel_digits


def test_gaussian_clusters_shapes_balance_and_reproducibility():
    X, y = gaussian_clusters(203, 5, 4, generator=torch.Generator().manual_seed(0))
    assert X.shape == (203, 5) and y.shape == (203,) and X.dtype == torch.float64
    assert torch.bincount(y).tolist() == [51, 51, 51, 50]
    X2, y2 = gaussian_clusters(203, 5, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(X, X2) and torch.equal(y, y2)
    # with std 0 every point sits on its centre, inside the cube
    X0, y0 = gaussian_clusters(40, 3, 4, spread=2.0, std=0.0, generator=torch.Generator().manual_seed(1))
    assert X0.abs().max() <= 2.0
    assert all(torch.unique(X0[y0 == c], dim=0).shape[0] == 1 for c in range(4))


def test_gaussian_clusters_bad_input():
    with pytest.raises(ValueError, match="num_classes"):
        gaussian_clusters(3, 2, 5)
    with pytest.raises(ValueError, match="spread"):
        gaussian_clusters(10, 2, 2, spread=0.0)
    with pytest.raises(TypeError, match="dim"):
        gaussian_clusters(10, 2.0, 2)


def test_bundled_sets_are_standardised():
    X, y = digits()
    assert X.shape == (1797, 64) and set(y.tolist()) == set(range(10))
    varying = X.std(dim=0) > 0
    assert torch.allclose(X.mean(dim=0), torch.zeros(64, dtype=X.dtype), atol=1e-12)
    assert torch.allclose(X.std(dim=0)[varying], torch.ones(int(varying.sum()), dtype=X.dtype))
    X, y = breast_cancer(dtype=torch.float32)
    assert X.shape == (569, 30) and X.dtype == torch.float32 and set(y.tolist()) == {0, 1}


def test_pixel_digits_are_grey_levels_in_the_unit_interval():
    inputs, targets = pixel_digits()
    assert inputs.shape == (1797, 64) and inputs.dtype == torch.float64
    assert inputs.min() == 0 and inputs.max() == 1
    assert torch.equal(torch.unique(inputs * 16), torch.arange(17, dtype=torch.float64))
    assert set(targets.tolist()) == set(range(10))
