"""The experiment of notebook 12 headless: the second-order methods beat their baselines on a trained digits MLP."""

import pytest

from hesslab.experiments import pruning_and_quantization as experiment


def test_the_trained_net_is_accurate():
    model, train, test = experiment.trained(0)
    assert experiment.evaluate(model, train, test).test_accuracy > 0.93


def test_layer_wise_obs_loses_less_than_magnitude_at_high_sparsity():
    magnitude = experiment.prune("magnitude", 0.9)
    obs = experiment.prune("layer-wise OBS", 0.9)
    assert obs.train_loss < 0.6 * magnitude.train_loss and obs.test_accuracy > magnitude.test_accuracy


def test_gptq_reconstructs_better_than_round_to_nearest():
    rtn, gptq = experiment.quantize("round-to-nearest", 3), experiment.quantize("GPTQ", 3)
    assert gptq.reconstruction_error < 0.5 * rtn.reconstruction_error


def test_sparsity_zero_changes_nothing():
    model, train, test = experiment.trained(0)
    assert experiment.prune("magnitude", 0.0) == experiment.evaluate(model, train, test)


@pytest.mark.parametrize("call", [lambda: experiment.prune("random", 0.5), lambda: experiment.quantize("float8", 3)])
def test_unknown_methods_are_refused(call):
    with pytest.raises(ValueError, match="method must be one of"):
        call()
