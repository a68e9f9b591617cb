"""The experiment of notebook 12 headless: the second-order methods beat their baselines on a trained digits MLP."""

import pytest
import torch

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


def test_influence_predicts_leave_one_out_retraining_and_cg_agrees_with_lissa():
    problem = experiment.softmax_regression(num_train=500)
    cg = experiment.influence(problem, "cg", num_points=6)
    lissa, lissa_solve = experiment.predicted_influences(problem, "lissa")
    assert cg.solve.converged and lissa_solve.converged
    torch.testing.assert_close(lissa[cg.index], cg.predicted, rtol=1e-7, atol=1e-12)
    correlation = torch.corrcoef(torch.stack([cg.predicted, cg.actual]))[0, 1]
    slope = cg.predicted @ cg.actual / (cg.predicted @ cg.predicted)
    assert correlation > 0.99 and 0.9 < slope < 1.25


def test_softmax_regression_sample_gradients_are_the_autograd_ones():
    problem = experiment.softmax_regression(num_train=30)
    theta = 0.1 * torch.randn(650, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rows = torch.func.jacrev(lambda t: torch.nn.functional.cross_entropy(
        problem.inputs @ t.reshape(10, -1).T, problem.targets, reduction="none"))(theta)
    torch.testing.assert_close(problem.sample_gradients(theta), rows)
    assert torch.linalg.norm(torch.func.grad(problem.loss)(problem.optimum)) <= 1e-12
