"""The experiment of notebook 09 headless, at small widths and few steps: μP's sharpness grows to one trajectory."""

import math

import pytest
import torch

from hesslab.experiments import mup_sharpness as experiment


@pytest.fixture(scope="module")
def mup():
    return {width: experiment.run(width, "mup", steps=60, every=20) for width in (128, 512)}


@pytest.fixture(scope="module")
def ntp():
    return {width: experiment.run(width, "ntp", steps=300, every=100) for width in (32, 1024)}


def test_mup_sharpness_grows_and_matches_across_widths(mup):
    for result in mup.values():
        assert result.at(60) > 2.5 * result.at(0)
    assert experiment.spread([result.at(60) for result in mup.values()]) < 0.1


def test_ntp_sharpness_growth_shrinks_with_width(ntp):
    assert ntp[32].growth > 0.01
    assert abs(ntp[1024].growth) < 0.3 * ntp[32].growth


def test_the_measured_sharpness_is_lr_times_the_top_eigenvalue_of_the_dense_ggn():
    X, y = experiment.teacher_data(generator=torch.Generator().manual_seed(0))
    model = experiment.TwoLayerTanh(16, 32, "mup", torch.Generator().manual_seed(1))
    jacobian = torch.autograd.functional.jacobian(
        lambda W, a: torch.tanh(X @ W.T / 4) @ a / 32, (model.W.detach(), model.a.detach()))
    J = torch.cat([j.reshape(128, -1) for j in jacobian], 1)
    dense = torch.linalg.eigvalsh(J.T @ J / 128)[-1].item()
    result = experiment.run(32, "mup", steps=0)
    assert math.isclose(result.sharpness[0], experiment.learning_rate(5.0, 32, "mup") * dense, rel_tol=1e-6)


def test_unmeasured_steps_are_refused(mup):
    with pytest.raises(ValueError, match="was not measured"):
        mup[128].at(7)


@pytest.mark.parametrize("call, match", [
    (lambda: experiment.run(64, "sp"), "parametrisation must be"),
    (lambda: experiment.run(0, "mup"), "width"),
    (lambda: experiment.run(64, "mup", eta0=-1.0), "eta0"),
    (lambda: experiment.TwoLayerTanh(16, 64, "NTK"), "parametrisation must be"),
])
def test_bad_input_is_refused(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
