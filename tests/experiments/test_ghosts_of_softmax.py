"""Notebook 14's experiment, headless at the notebook's quick settings (600 SGD steps, ×1000 spike at step 150)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import hesslab as hl
from hesslab import landscape
from hesslab.experiments.ghosts_of_softmax import gradient_direction, spike_run, taylor_along_step, trained_binary_net


def test_rho_capped_sgd_survives_the_spike_that_breaks_plain_sgd_and_hurts_clipping():
    baseline = spike_run("plain", 1.0)
    plain, clipped, capped = (spike_run(method, 1000.0) for method in ("plain", "clipped", "rho-capped"))
    assert baseline.final_loss < 0.1 and baseline.final_accuracy > 0.98
    assert capped.final_loss <= 1.5 * baseline.final_loss
    assert plain.diverged or plain.final_loss > 1
    assert clipped.final_loss > 2 * capped.final_loss
    # the cap acts exactly during the spike: there the step length is the radius, elsewhere below it
    ratio = capped.step_norms / capped.radii
    assert np.allclose(ratio[150:155], 1.0)
    assert ratio.max() <= 1 + 1e-12


def test_without_a_spike_the_cap_never_acts_and_the_runs_agree():
    plain, capped = spike_run("plain", 1.0), spike_run("rho-capped", 1.0)
    assert (capped.step_norms < capped.radii).all()
    assert abs(plain.final_loss - capped.final_loss) < 1e-12


def test_spike_run_validates_the_method():
    with pytest.raises(ValueError, match="method must be"):
        spike_run("adam")


def test_taylor_polynomials_converge_inside_the_exact_radius_and_diverge_outside():
    model, inputs, targets = trained_binary_net()
    taylor = taylor_along_step(model, inputs, targets, gradient_direction(model, inputs, targets))
    assert taylor.exact_radius >= taylor.rho
    inside = np.abs(taylor.t) < 0.5 * taylor.exact_radius
    outside = np.abs(taylor.t) > 1.6 * taylor.exact_radius
    errors = np.abs(taylor.polynomials - taylor.linearised)
    assert errors[-1, inside].max() < 1e-8                         # degree 32 inside: converged
    assert errors[-1, outside].max() > 1.0                          # and far off outside
    assert errors[-1, inside].max() < errors[0, inside].max()       # higher degree, better inside
    # the linearised and the true loss agree at t = 0
    middle = taylor.t.size // 2
    assert abs(taylor.t[middle]) < 1e-15 and abs(taylor.linearised[middle] - taylor.true_loss[middle]) < 1e-12


def test_binary_ghosts_are_zeros_of_the_partition_function():
    model, inputs, targets = trained_binary_net()
    z, a = landscape.logit_derivatives(model, inputs, gradient_direction(model, inputs, targets))
    t = landscape.binary_singularity(z, a)
    partition = torch.exp(z[:, 0] + t * a[:, 0]) + torch.exp(z[:, 1] + t * a[:, 1])
    size = torch.exp(z[:, 0] + t.real * a[:, 0]) + torch.exp(z[:, 1] + t.real * a[:, 1])
    assert float((partition.abs() / size).max()) < 1e-10
    assert math.isclose(float(t.abs().min()), float(landscape.binary_radius(z, a).min()))


def test_the_quadratic_term_is_the_gauss_newton_curvature_along_the_step():
    model, inputs, targets = trained_binary_net()
    v = gradient_direction(model, inputs, targets)
    taylor = taylor_along_step(model, inputs, targets, v)
    G = hl.GGNOperator.from_model(model, nn.functional.cross_entropy, (inputs, targets))
    assert abs(2 * taylor.coefficients[2] / float(v @ (G @ v)) - 1) < 1e-8


@pytest.mark.parametrize("spike", [10.0, 100.0, 10000.0])
def test_the_rho_capped_run_ends_near_the_baseline_at_every_spike_size(spike):
    assert spike_run("rho-capped", spike).final_loss <= 1.5 * spike_run("plain", 1.0).final_loss


@pytest.mark.parametrize("seed", (1, 2, 3))
def test_notebook_claims_hold_on_further_seeds(seed):
    """Notebook 14's asserts at its quick scale (600 SGD steps, ×1000 spike at step 150 for 5 steps), on seeds it was
    not tuned on: ``seed`` draws both nets' initialisation and the SGD batches (the notebook uses 0).

    Measured, seeds 1/2/3: |F(t*)|/|terms| ≈ 1e-15; ρ* 1.16/1.15/1.12 against ρ_a 0.58/0.69/0.77; 2c_2/vᵀGv − 1
    below 1e-15; ρ-capped/unspiked loss 0.92/0.93/0.93; plain SGD NaN/16.8/14.4; clipped/ρ-capped 6.2/20.3/9.9.
    Mutations these asserts are meant to catch (by reasoning): a ghost from the wrong sign of the logit gap or a
    missing factor π (F(t*) ≠ 0); the radius π/Δ_a with Δ_a the mean instead of the spread of the slopes (ρ_a not a
    lower bound); a cap measured on another batch or not applied (the spiked run ends like plain SGD).
    """
    model, inputs, targets = trained_binary_net(seed=seed)
    v = gradient_direction(model, inputs, targets)
    z, a = landscape.logit_derivatives(model, inputs, v)
    t = landscape.binary_singularity(z, a)
    partition = torch.exp(z[:, 0] + t * a[:, 0]) + torch.exp(z[:, 1] + t * a[:, 1])
    size = torch.exp(z[:, 0] + t.real * a[:, 0]) + torch.exp(z[:, 1] + t.real * a[:, 1])
    assert float((partition.abs() / size).max()) < 1e-10
    taylor = taylor_along_step(model, inputs, targets, v)
    assert taylor.exact_radius >= taylor.rho, (taylor.exact_radius, taylor.rho)
    G = hl.GGNOperator.from_model(model, nn.functional.cross_entropy, (inputs, targets))
    assert abs(2 * taylor.coefficients[2] / float(v @ (G @ v)) - 1) < 1e-8
    baseline = spike_run("plain", 1.0, seed=seed)
    plain, clipped, capped = (spike_run(method, 1000.0, seed=seed) for method in ("plain", "clipped", "rho-capped"))
    assert capped.final_loss <= 1.5 * baseline.final_loss, (capped.final_loss, baseline.final_loss)
    assert plain.diverged or plain.final_loss > 1, plain.final_loss
    assert clipped.final_loss > 2 * capped.final_loss, (clipped.final_loss, capped.final_loss)
