"""pde_neural.py: the Deep Ritz two-layer network, its quadrature energy, its Gauss-Newton operator, CG, training."""

import math

import numpy as np
import pytest
import torch

import hesslab as hl
from hesslab.pde import gauss_legendre


def ritz(dim=1, width=5, points=12, strength=2.0):
    return hl.pde.ritz_energy(hl.pde.elliptic_problem(7, dim, hl.pde.quartic(strength)), width, points)


@pytest.mark.parametrize("dim", [1, 2])
def test_closed_form_input_gradient_equals_autograd(dim):
    energy = ritz(dim)
    theta = energy.initial_parameters(torch.Generator().manual_seed(0))
    x = torch.rand(9, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    u, grad = energy.network(theta, x)
    autograd = torch.func.vmap(torch.func.grad(lambda p: energy.network(theta, p[None])[0][0]))(x)
    torch.testing.assert_close(grad, autograd, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dim", [1, 2])
def test_network_vanishes_on_the_boundary(dim):
    energy = ritz(dim)
    theta = energy.initial_parameters(torch.Generator().manual_seed(2))
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    boundary = torch.tensor([[0.0], [1.0]], dtype=torch.float64) if dim == 1 else torch.cat(
        [torch.stack([torch.full_like(t, e), t], 1) for e in (0.0, 1.0)]
        + [torch.stack([t, torch.full_like(t, e)], 1) for e in (0.0, 1.0)])
    u, _ = energy.network(theta, boundary)
    assert u.abs().max() == 0


@pytest.mark.parametrize("dim", [1, 2])
def test_gauss_legendre_is_exact_for_polynomials(dim):
    """p nodes per axis integrate x^k exactly for k <= 2p − 1: ∫_[0,1]^d x_1^k x_d^j = 1/((k+1)(j+1))."""
    points, weights = gauss_legendre(4, dim)
    for k in range(8):
        value = (weights * points[:, 0] ** k * points[:, -1] ** (7 - k if dim == 2 else 0)).sum()
        expected = 1 / (k + 1) / ((8 - k) if dim == 2 else 1)
        assert value.item() == pytest.approx(expected, rel=1e-14)


def test_ritz_energy_of_the_exact_solution_by_quadrature():
    """For u* = sin(πx) and F = 0, f = π² sin(πx): E(u*) = ∫ ½ π² cos² − π² sin² = π²/4 − π²/2 = −π²/4. The
    network is not needed for this: the quadrature and the energy density are."""
    problem = hl.pde.elliptic_problem(7, 1, hl.pde.quartic(0.0), solution=lambda x: torch.sin(math.pi * x[:, 0]))
    energy = hl.pde.ritz_energy(problem, 1, 32)
    x = energy.points
    z = torch.cat([torch.sin(math.pi * x), math.pi * torch.cos(math.pi * x)], dim=1)
    assert energy.energy_of_outputs(z).item() == pytest.approx(-math.pi**2 / 4, rel=1e-13)


def test_ggn_operator_is_jacobian_transpose_times_loss_hessian_times_jacobian():
    energy = ritz(width=4, points=6)
    theta = energy.initial_parameters(torch.Generator().manual_seed(3))
    G = hl.GGNOperator(energy.outputs, energy.energy_of_outputs, theta).to_dense()
    J = torch.func.jacrev(energy.outputs)(theta).reshape(-1, theta.numel())  # (Q·(1 + d), P)
    u = energy.outputs(theta)[:, 0]
    w = energy.weights
    H_out = torch.stack([w * energy.problem.nonlinearity.d2F(u), w], dim=1).reshape(-1)  # diagonal, row-major
    torch.testing.assert_close(G, J.T @ (H_out[:, None] * J), rtol=1e-12, atol=1e-13)
    assert torch.linalg.eigvalsh(G).min() >= -1e-12 * torch.linalg.eigvalsh(G).max()  # convex F: PSD


def test_same_generator_same_start_and_same_training():
    energy = ritz()
    theta0 = energy.initial_parameters(torch.Generator().manual_seed(5))
    assert torch.equal(theta0, energy.initial_parameters(torch.Generator().manual_seed(5)))
    a = hl.pde.train_ritz_gauss_newton(energy, theta0, steps=5)
    b = hl.pde.train_ritz_gauss_newton(energy, theta0, steps=5)
    assert torch.equal(a.theta, b.theta)


@pytest.mark.parametrize("curvature", ["ggn", "hessian"])
def test_second_order_training_decreases_the_energy_monotonically(curvature):
    energy = ritz(width=6, points=24)
    theta0 = energy.initial_parameters(torch.Generator().manual_seed(6))
    run = hl.pde.train_ritz_gauss_newton(energy, theta0, steps=15, curvature=curvature)
    energies, errors = run.history["energy"], run.history["error"]
    assert np.all(np.diff(energies) <= 0)
    assert energies[-1] < energies[0]
    assert errors[-1] < errors[0] and run.converged and run.reason
    assert run.history["inner"].shape == run.history["damping"].shape == (run.iterations + 1,)
    assert run.history["inner"][0] == 0 and np.all(run.history["inner"][1:] >= 1)


def test_adam_history():
    energy = ritz(width=6, points=24)
    theta0 = energy.initial_parameters(torch.Generator().manual_seed(7))
    run = hl.pde.train_ritz_adam(energy, theta0, steps=50)
    energies = run.history["energy"]
    assert run.iterations == 50 and run.converged and run.reason == "steps = 50 taken"
    assert energies.shape == run.history["error"].shape == run.history["seconds"].shape == (51,)
    assert energies[-1] < energies[0] and torch.isfinite(run.theta).all()
    assert energies[-1] == pytest.approx(energy.energy(run.theta).item(), rel=1e-14)


def test_bad_neural_input():
    energy = ritz()
    theta0 = energy.initial_parameters(torch.Generator().manual_seed(8))
    with pytest.raises(ValueError, match="width must be >= 1"):
        hl.pde.ritz_energy(energy.problem, 0)
    with pytest.raises(TypeError, match="EllipticProblem"):
        hl.pde.ritz_energy("problem", 3)
    with pytest.raises(ValueError, match="theta0 must have"):
        hl.pde.train_ritz_adam(energy, theta0[:-1])
    with pytest.raises(TypeError, match="RitzEnergy"):
        hl.pde.train_ritz_adam(energy.energy, theta0)
    with pytest.raises(ValueError, match="curvature must be"):
        hl.pde.train_ritz_gauss_newton(energy, theta0, curvature="fisher")
    with pytest.raises(ValueError, match="damping"):
        hl.pde.train_ritz_gauss_newton(energy, theta0, damping=0.0)
    with pytest.raises(ValueError, match="lr"):
        hl.pde.train_ritz_adam(energy, theta0, lr=-1.0)
    with pytest.raises(ValueError, match="no exact solution"):
        hl.pde.ritz_energy(hl.pde.elliptic_problem(7, 1, source=1.0), energy.width).l2_error(theta0)
    with pytest.raises(ValueError, match="theta must have shape"):
        hl.pde.ritz_energy(energy.problem, 3).energy(theta0)


# --- issue 12: training says the truth --------------------------------------------------------------------------------
def test_adam_divergence_is_flagged_warned_and_stops_at_the_last_good_parameters():
    """lr = 100 on this problem throws the energy up by 4 orders of magnitude at once (before: no flag at all
    while finite, a ValueError, losing the history, once not finite)."""
    energy = ritz(width=6, points=24)
    theta0 = energy.initial_parameters(torch.Generator().manual_seed(7))
    with pytest.warns(RuntimeWarning, match="Adam diverged: the energy"):
        run = hl.pde.train_ritz_adam(energy, theta0, steps=200, lr=100.0, final_lr=100.0)
    assert run.diverged and not run.converged and run.reason and run.iterations < 200
    assert np.all(np.isfinite(run.history["energy"])) and torch.isfinite(run.theta).all()
    assert run.history["energy"][-1] == pytest.approx(energy.energy(run.theta).item(), rel=1e-14)
    calm = hl.pde.train_ritz_adam(energy, theta0, steps=50)
    assert not calm.diverged and calm.converged and calm.reason == "steps = 50 taken"


def test_divergence_rule():
    from hesslab.pde._ritz_training import DIVERGENCE, _divergence
    assert _divergence([-1.0, -2.0], math.nan) == "the energy became nan"
    assert _divergence([-1.0, -2.0], -1.0 + 0.5 * DIVERGENCE * 2.0) == ""  # within 1e3 × max(|E_0|, |min E|) = 2e3
    assert "rose" in _divergence([-1.0, -2.0], -1.0 + 1.01 * DIVERGENCE * 2.0)


def test_gauss_newton_raises_the_damping_after_a_non_finite_trial(monkeypatch):
    """A NaN trial energy used to leave μ unchanged (NaN compares False both ways), so the same NaN step was retried
    every iteration; now μ doubles, as after any rejected step."""
    energy = ritz()
    theta0 = energy.initial_parameters(torch.Generator().manual_seed(8))
    calls = []
    original = type(energy).energy

    def energy_nan_first(self, theta):
        calls.append(1)
        return original(self, theta) * (math.nan if len(calls) == 1 else 1.0)

    monkeypatch.setattr(type(energy), "energy", energy_nan_first)
    run = hl.pde.train_ritz_gauss_newton(energy, theta0, steps=2, curvature="ggn", damping=1e-3)
    assert run.history["damping"][0] == 1e-3 and run.history["damping"][1] == pytest.approx(2e-3)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(lr=True), TypeError, "lr must be a real number"),
    (dict(lr=np.float64(1e-2)), None, None),
    (dict(lr=torch.tensor(1e-2, dtype=torch.float64)), None, None),
])
def test_adam_numbers(kwargs, error, message):
    energy = ritz()
    theta0 = energy.initial_parameters(torch.Generator().manual_seed(8))
    if error is None:
        assert torch.equal(hl.pde.train_ritz_adam(energy, theta0, steps=3, **kwargs).theta,
                           hl.pde.train_ritz_adam(energy, theta0, steps=3, lr=1e-2).theta)
    else:
        with pytest.raises(error, match=message):
            hl.pde.train_ritz_adam(energy, theta0, steps=3, **kwargs)
