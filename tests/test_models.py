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


# ---- parametrisations (SP / NTK / μP): the coordinate check of Yang & Hu (2021) ----

from hesslab.models import ParametrisedMLP  # noqa: E402


def _feature_changes(parametrisation, width, seed, lr=0.1):
    """RMS change of each layer's pre-activations after one SGD step of the net [8, N, N, 1] on MSE."""
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(16, 8, generator=generator, dtype=torch.float64)
    y = torch.randn(16, 1, generator=generator, dtype=torch.float64)
    net = ParametrisedMLP([8, width, width, 1], parametrisation, generator=generator)
    with torch.no_grad():
        before = net.features(X)
    optimizer = torch.optim.SGD(net.param_groups(lr))
    nn.functional.mse_loss(net(X), y).backward()
    optimizer.step()
    with torch.no_grad():
        return torch.tensor([(a - b).pow(2).mean().sqrt().item() for a, b in zip(net.features(X), before)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mup_feature_updates_are_width_independent_and_sp_ntk_are_not(seed):
    widths = (64, 256, 1024)
    changes = {p: torch.stack([_feature_changes(p, N, seed) for N in widths]) for p in ("sp", "ntk", "mup")}
    # measured (seed 0): μP 0.10/0.11/0.10, 0.13/0.13/0.12, 0.12/0.14/0.12 per layer; SP output 0.77 → 8.3;
    # NTK first layer 0.0031 → 0.0008
    mup = changes["mup"]
    assert torch.all(mup.max(dim=0).values / mup.min(dim=0).values < 1.5)
    assert torch.all(mup > 0.03)  # Θ(1) movement, not frozen
    assert changes["sp"][-1, -1] / changes["sp"][0, -1] > 4  # SP: the output's update grows with the width
    assert changes["ntk"][-1, 0] / changes["ntk"][0, 0] < 0.5  # NTK: the features freeze as N grows


def test_parametrisations_init_and_learning_rates():
    generator = torch.Generator().manual_seed(0)
    ntk = ParametrisedMLP([4, 512, 512, 3], "ntk", generator=generator)
    mup = ParametrisedMLP([4, 512, 512, 3], "mup", generator=generator)
    assert ntk.weights[1].std().item() == pytest.approx(1.0, rel=0.02)
    assert ntk.multipliers == [0.5, 512**-0.5, 512**-0.5]
    assert mup.weights[2].std().item() == pytest.approx(1 / 512, rel=0.1)  # output init variance 1/fan_in²
    sgd = {g["name"]: g["lr"] for g in mup.param_groups(0.1)}
    assert sgd == pytest.approx({"input weight 0": 51.2, "input bias 0": 51.2, "hidden weight 1": 0.1,
                                 "hidden bias 1": 51.2, "output weight 2": 0.1 / 512, "output bias 2": 0.1})
    adam = {g["name"]: g["lr"] for g in mup.param_groups(0.1, optimizer="adam")}
    assert adam["hidden weight 1"] == pytest.approx(0.1 / 512) and adam["input weight 0"] == 0.1
    groups = mup.param_groups(0.1)
    assert sum(len(g["params"]) for g in groups) == len(list(mup.parameters()))
    torch.optim.Adam(mup.param_groups(0.1, optimizer="adam"))  # any torch.optim optimizer takes the groups


@pytest.mark.parametrize("kwargs, match", [({"sizes": [3]}, "sizes"), ({"parametrisation": "mup2"}, "parametrisation"),
                                           ({"activation": "swish"}, "activation")])
def test_parametrised_mlp_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ParametrisedMLP(**{"sizes": [3, 4, 1], **kwargs})
    with pytest.raises(ValueError, match="lr"):
        ParametrisedMLP([3, 4, 1]).param_groups(0.0)
