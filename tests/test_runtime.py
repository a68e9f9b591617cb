"""device(), seed() and the one place that decides problem sizes."""

import random

import numpy as np
import pytest
import torch

import hesslab as hl


def test_device_is_cuda_exactly_when_available():
    assert hl.device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_seed_seeds_every_generator_and_returns_a_reproducible_one():
    g1 = hl.seed(123, "cpu")
    draws = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g1).item())
    g2 = hl.seed(123, "cpu")
    assert draws == (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g2).item())
    assert hl.seed(0).device == hl.device()


def test_scale_follows_the_device_and_the_environment(monkeypatch):
    monkeypatch.delenv("HESSLAB_SCALE", raising=False)
    assert hl.scale() == ("full" if torch.cuda.is_available() else "quick")
    monkeypatch.setenv("HESSLAB_SCALE", "full")
    assert hl.scale() == "full" and hl.sized(quick=10, full=1000) == 1000
    monkeypatch.setenv("HESSLAB_SCALE", "quick")
    assert hl.scale() == "quick" and hl.sized(quick=10, full=1000) == 10


# ----------------------------------------------------------------------------------------------------------------------
# bad arguments: a clear error naming the argument
# ----------------------------------------------------------------------------------------------------------------------
def test_seed_and_scale_errors(monkeypatch):
    with pytest.raises(TypeError, match="seed value must be an int"):
        hl.seed(1.5)
    monkeypatch.setenv("HESSLAB_SCALE", "huge")
    with pytest.raises(ValueError, match="HESSLAB_SCALE"):
        hl.scale()
