"""Plausibly wrong implementations, applied to the library by monkeypatching, must fail the notebooks' asserts.

Each test runs an experiment-level assertion of a notebook twice, at small settings: on the library as it is (the
assertion holds) and with one mutation applied (the assertion fails). The assertion is the notebook's own
expression, repeated here. This keeps true what issue 21 found missing: that a notebook's asserts catch wrong code,
not only the unit tests.

Mutation → the notebook assertion that fails (measured values, correct → mutated):

- 01, the Hessian replaced by the GGN (H − G ≡ 0) → "H − G is indefinite": λ_max(H − G) > 0 > λ_min(H − G) fails.
- 02, HAWQ-V1's score λ_max(H_i)·‖ΔW_i‖² in place of V2's Tr(H_i)/n_i·‖ΔW_i‖² (n_i·λ_max fed where the trace goes)
  → "on the quadratic layers V2's score ranks the layers as the loss increase" fails (flat > wide > spiked
  measured, spiked > flat > wide scored). On both digits nets it picks the same bits as V2, so only this catches it.
- 02, HAWQ-V2 without the 1/n_i → the same assert fails (scored wide > flat > spiked).
- 02, Gaussian instead of Rademacher probes in hl.hutchinson_trace → "the variance of hl.hutchinson_trace on the
  damped block H + I follows 2Σ_{i≠j}A_ij²/m within 4 s.d." fails (measured/predicted 0.83 → 5.9, 27.8 s.d. off); the
  traces' 4-standard-error assert does not catch it (Gaussian estimates are unbiased, their stderr measured).
- 03, Lanczos without reorthogonalisation → "the top four Ritz values after 30 steps are at 1e-10 relative" fails
  (relative errors 4e-16 → 0.26, a ghost copy of λ_1).
- 03, SLQ with Gaussian instead of Rademacher probes → "SLQ on diag(eig H) is exact to rounding" fails
  (|error| / rounding 3e-3 → 2e10); the 4-standard-error moment check of the batches does not catch it (|z| < 2).
- 05, Sinkhorn's column update using a instead of b → "both marginals recomputed from the plan within
  tol + (n + m)ε" and "the plan within 1e-6 of POT's" fail on the grid, where a ≠ b (‖Pᵀ1 − b‖₁ = 1.6,
  ‖P − P_POT‖₁ = 2.0 at the notebook's 20 × 20 grid), while the solver's own log says converged.

Not here: notebook 04's mutations (its owner's notebook).
"""

import dataclasses

import numpy as np
import pytest
import torch

import hesslab as hl
from hesslab import hutchinson, sampling, spectrum  # noqa: E402  the modules whose names are patched
from hesslab.data import pixel_digits
from hesslab.experiments import bulk_and_outliers as bo
from hesslab.experiments import hutchinson_and_hawq as hawq
from hesslab.experiments import lanczos_and_batch_size as bs
from hesslab.experiments import sinkhorn_newton_sparse as ot_ex
from hesslab.transport import _sinkhorn, _sns  # noqa: E402

EPS = torch.finfo(torch.float64).eps
MATRIX = bo._matrix  # the cached original, cleared around each call (a patched _matrix has no cache)


# ----------------------------------------------------------------------------------------------------------------------
# the notebooks' assertions, as functions returning whether they hold
# ----------------------------------------------------------------------------------------------------------------------
def notebook_01_difference_is_indefinite(seed: int = 0) -> bool:
    """Notebook 01: the eigenvalues of H − G have both signs (at width 32, k = 10: the cheap setting)."""
    bo.spectrum.cache_clear()
    MATRIX.cache_clear()
    D = bo.spectrum(10, 32, "difference", seed=seed)
    return bool(D.eigenvalues[0] > 0 > D.eigenvalues[-1])


def notebook_02_v2_ranks_the_quadratic_layers_as_their_loss() -> bool:
    """Notebook 02: on the quadratic layers, HAWQ-V2's score orders the layers as the exact loss increase does."""
    ranking = hawq.rank_layers(hawq.spiked_and_flat_layers(generator=hl.seed(2)), bits=4, num_probes=200,
                               generator=hl.seed(3))
    return ranking.order(ranking.omega) == ranking.order(ranking.loss_increase)


def notebook_02_variance_is_rademachers_on_the_damped_block() -> bool:
    """Notebook 02: hl.hutchinson_trace's variance on H + I (the spiked block, damped) is 2Σ_{i≠j}A_ij²/m."""
    block = hawq.spiked_and_flat_layers(generator=hl.seed(2)).blocks[0]
    damped = hawq.estimator_variance(block + torch.eye(len(block), dtype=torch.float64), 16, 64,
                                     generator=hl.seed(4))
    return bool(abs(damped.variance - damped.rademacher) <= 4 * damped.stderr)


@pytest.fixture(scope="module")
def softmax_hessian():
    """Notebook 03's full-batch Hessian (closed form, 650 × 650) of the linear softmax on digits, seed 0."""
    inputs, targets = pixel_digits()
    softmax = bs.train_softmax(inputs, targets, lr=0.5, num_steps=400, generator=hl.seed(0, "cpu"))
    return bs.batch_hessian(bs.softmax_curvature(softmax.model, inputs))


def notebook_03_ritz_values_at_rounding(H) -> bool:
    convergence = bs.ritz_convergence(H, 30, k=4, generator=hl.seed(0, "cpu"))
    error = (convergence.eigenvalues - convergence.ritz[-1]).abs() / convergence.eigenvalues[0]
    return bool(error.max() <= 1e-10)


def notebook_03_slq_exact_on_a_diagonal(H, steps: int = 40, probes: int = 8) -> bool:
    eigenvalues = torch.linalg.eigvalsh(H).flip(0)
    D = torch.diag(eigenvalues)
    diagonal = bs.compare_density(D, D, steps, probes, generator=hl.seed(0, "cpu"))
    tolerance = steps * probes * EPS * eigenvalues[0] ** diagonal.powers
    return bool(torch.all((diagonal.slq_moments - diagonal.exact_moments).abs() <= tolerance))


def notebook_05_marginals_and_pot_on_the_grid(grid: int = 10, reg: float = 1e-2,
                                               tol: float = 1e-9) -> tuple[bool, bool]:
    """Notebook 05's two assertions on the a ≠ b grid, at a smaller grid and larger reg (seconds, not minutes)."""
    problem = ot_ex.gaussian_mixture_densities(grid)
    result = hl.transport.sinkhorn(problem.a, problem.b, problem.C, reg, tol=tol, max_iter=100_000)
    marginals = sum(ot_ex.marginal_errors(problem, result.plan)) <= tol + ot_ex.marginal_rounding(problem)
    pot = (result.plan - ot_ex.pot_plan(problem, reg, tol)).abs().sum().item() <= 1e-6
    return marginals, pot


# ----------------------------------------------------------------------------------------------------------------------
# the mutations
# ----------------------------------------------------------------------------------------------------------------------
def test_01_hessian_replaced_by_the_ggn_fails_the_indefinite_difference(monkeypatch):
    assert notebook_01_difference_is_indefinite()
    original = bo._matrix
    monkeypatch.setattr(bo, "_matrix", lambda matrix, *setting: original("ggn", *setting))  # "H" is G: H − G = 0
    try:
        assert not notebook_01_difference_is_indefinite()
    finally:
        monkeypatch.undo()
        bo.spectrum.cache_clear()
        MATRIX.cache_clear()


def test_02_hawq_v1_top_eigenvalue_score_fails_the_quadratic_ranking(monkeypatch):
    assert notebook_02_v2_ranks_the_quadratic_layers_as_their_loss()

    def size_times_top_eigenvalue(A, num_probes, method="hutchinson", generator=None):
        # V1's λ_max where V2's trace goes; sensitivities divides by n_i, so Ω_i = λ_max(H_i)·‖ΔW_i‖² exactly
        dense = A.to_dense()
        return hl.Estimate(len(dense) * torch.linalg.eigvalsh(dense)[-1].item(), 0.0, num_probes)

    monkeypatch.setattr(hawq, "hutchinson_trace", size_times_top_eigenvalue)
    assert not notebook_02_v2_ranks_the_quadratic_layers_as_their_loss()


def test_02_hawq_without_the_one_over_n_fails_the_quadratic_ranking(monkeypatch):
    assert notebook_02_v2_ranks_the_quadratic_layers_as_their_loss()

    def trace_times_perturbation(weights, traces, bit_choices=hawq.BIT_CHOICES):  # Tr(H_i)·‖Q_b(W_i) − W_i‖²
        return np.array([[trace * (hawq.quantize(W, b) - W).pow(2).sum().item() for b in bit_choices]
                         for W, trace in zip(weights, traces)])

    monkeypatch.setattr(hawq, "sensitivities", trace_times_perturbation)
    assert not notebook_02_v2_ranks_the_quadratic_layers_as_their_loss()


def test_02_gaussian_hutchinson_probes_fail_the_variance_assert(monkeypatch):
    assert notebook_02_variance_is_rademachers_on_the_damped_block()
    monkeypatch.setattr(hutchinson, "rademacher", sampling.gaussian)
    assert not notebook_02_variance_is_rademachers_on_the_damped_block()


def test_03_lanczos_without_reorthogonalisation_fails_the_ritz_assert(monkeypatch, softmax_hessian):
    assert notebook_03_ritz_values_at_rounding(softmax_hessian)
    original = spectrum._krylov._orthogonalise

    def three_term_only(w, Q, twice=False):  # the recurrence alone: no projection against the older basis vectors
        if twice:  # the start vector's orthogonalisation against locked vectors (restarts) is left alone
            return original(w, Q, twice)
        return w, w.norm(dim=1), torch.ones(w.shape[0], dtype=torch.bool, device=w.device)

    monkeypatch.setattr(spectrum._krylov, "_orthogonalise", three_term_only)
    assert not notebook_03_ritz_values_at_rounding(softmax_hessian)


def test_03_gaussian_slq_probes_fail_the_diagonal_assert(monkeypatch, softmax_hessian):
    assert notebook_03_slq_exact_on_a_diagonal(softmax_hessian)
    monkeypatch.setattr(spectrum._density, "rademacher", sampling.gaussian)
    assert not notebook_03_slq_exact_on_a_diagonal(softmax_hessian)


def test_05_sinkhorn_column_update_with_a_fails_the_marginal_and_pot_asserts(monkeypatch):
    assert notebook_05_marginals_and_pot_on_the_grid() == (True, True)
    original = _sinkhorn._sinkhorn_iterations

    def columns_matched_to_a(problem, *args, **kwargs):
        return original(dataclasses.replace(problem, b=problem.a), *args, **kwargs)

    monkeypatch.setattr(_sinkhorn, "_sinkhorn_iterations", columns_matched_to_a)  # in Sinkhorn and in SNS's warm start
    monkeypatch.setattr(_sns, "_sinkhorn_iterations", columns_matched_to_a)
    assert notebook_05_marginals_and_pot_on_the_grid() == (False, False)
