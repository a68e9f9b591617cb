"""models.py: the small nets of the notebooks and their full-batch training."""

import pytest
import torch
from torch import nn

from hesslab.data import gaussian_clusters
from hesslab.models import mlp, train_full_batch


def test_mlp_layout_parameter_count_and_seeding():
    net = mlp([20, 128, 10], generator=torch.Generator().manual_seed(0))
    assert [type(m) for m in net] == [nn.Linear, nn.Tanh, nn.Linear]
    assert sum(p.numel() for p in net.parameters()) == 20 * 128 + 128 + 128 * 10 + 10
    assert net[0].weight.abs().max() <= 20 ** -0.5
    again = mlp([20, 128, 10], generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), again.parameters()))
    with pytest.raises(ValueError, match="activation"):
        mlp([2, 3], activation="swish")
    with pytest.raises(ValueError, match="sizes"):
        mlp([2])


def test_train_full_batch_reaches_target_and_reports_divergence():
    X, y = gaussian_clusters(60, 4, 3, spread=5.0, generator=torch.Generator().manual_seed(0))
    net = mlp([4, 16, 3], generator=torch.Generator().manual_seed(0))
    run = train_full_batch(net, nn.functional.cross_entropy, X, y, lr=0.5, max_steps=2000, target_loss=0.05)
    assert run.reached_target and run.losses[-1] < 0.05 < run.losses[0]
    with pytest.raises(ValueError, match="diverged"):
        train_full_batch(mlp([4, 16, 3]), nn.functional.mse_loss, X, nn.functional.one_hot(y).double(),
                         lr=1e6, max_steps=50)
