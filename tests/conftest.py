"""Shared small problems. Every exactness claim is checked in float64."""

import pytest
import torch
from helpers import classification_data, small_mlp
from torch import nn

import hesslab as hl


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny problems (d <= 65): fastest there, and spares a loaded CPU the
    OpenMP contention that makes two threads many times slower when another process holds a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def mlp_problem():
    model = small_mlp()
    inputs, targets = classification_data()
    f, theta = hl.loss_function(model, nn.functional.cross_entropy, inputs, targets)
    return model, inputs, targets, f, theta
