"""The experiment of notebook 07 headless, at a small size: gradient descent sharpens to 2/η and stays there."""

import numpy as np
import pytest
import torch

import hesslab as hl
from hesslab.experiments import edge_of_stability as experiment
from hesslab.models import mlp


def test_squared_error_is_half_the_summed_square_against_one_hot_targets():
    outputs = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    targets = torch.tensor([1, 2])
    # sample 0: (1−0)² + (2−1)² + 0 = 2; sample 1: (3−1)² = 4; mean of halves = (1 + 2)/2
    assert experiment.squared_error(outputs, targets).item() == pytest.approx(1.5)


def test_measured_sharpness_is_the_dense_top_eigenvalue_at_the_end():
    run = experiment.gradient_descent(lr=0.5, steps=30, every=10, num_samples=60, width=6, tol=1e-8)
    inputs, targets = experiment.digits_subset(60, 0)
    model = mlp([64, 6, 6, 6, 10], activation="tanh", generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(30):
        optimizer.zero_grad()
        experiment.squared_error(model(inputs), targets).backward()
        optimizer.step()
    dense = hl.HessianOperator.from_model(model, experiment.squared_error, (inputs, targets)).to_dense()
    assert run.sharpness[-1] == pytest.approx(torch.linalg.eigvalsh(dense)[-1].item(), rel=1e-6)


def test_large_step_sizes_reach_the_edge_and_a_small_one_does_not():
    edge = experiment.gradient_descent(lr=0.4, steps=600, every=10, num_samples=300, width=32)
    assert edge.sharpness[0] < 0.6 * edge.edge
    assert 0.9 <= edge.late_ratio(0.3) <= 1.15
    small = experiment.gradient_descent(lr=0.05, steps=300, every=50, num_samples=300, width=32)
    assert small.late_ratio() < 0.5
    assert np.all(np.isfinite(small.loss)) and small.loss[-1] < small.loss[0]


@pytest.mark.parametrize("kwargs", [{"lr": 0.0}, {"lr": float("nan")}, {"num_samples": 5000}])
def test_bad_input_is_refused(kwargs):
    with pytest.raises(ValueError):
        experiment.gradient_descent(**{"lr": 0.1, "steps": 1, **kwargs})
