"""Hutchinson, Hutch++ and the diagonal estimator: unbiasedness and variance, tested against the exact answer.

Tolerances come from the estimators' variances. For Rademacher probes z and symmetric A,
    Var(zᵀ A z) = 2 Σ_{i≠j} A_ij² =: σ²,        Var((z ⊙ A z)_i) = Σ_{j≠i} A_ij².
A mean of R independent estimates therefore has standard deviation σ / sqrt(m R); we accept |error| <= 4 of those
(a two-sided 4σ z-test: false alarm < 1e-4, and the seeds are fixed, so the suite is deterministic).
"""

import itertools
import math

import pytest
import torch
from helpers import random_symmetric

import hesslab as hl


def hutchinson_sigma(A: torch.Tensor) -> float:
    off_diagonal = A - torch.diag(torch.diag(A))
    return math.sqrt(2 * (off_diagonal**2).sum().item())


def test_hutchinson_is_unbiased_with_the_predicted_variance():
    A = random_symmetric(30, seed=0)
    sigma, m, R = hutchinson_sigma(A), 10, 400
    generator = hl.seed(0, "cpu")
    estimates = [hl.hutchinson_trace(A, m, generator=generator) for _ in range(R)]
    values = torch.tensor([e.value for e in estimates])
    # unbiased: the mean of R estimates of variance σ²/m is within 4 standard errors of tr(A)
    assert abs(values.mean().item() - A.trace().item()) <= 4 * sigma / math.sqrt(m * R)
    # variance: the sample variance of R (nearly normal, by the CLT over m probes) estimates has relative
    # standard deviation about sqrt(2 / (R − 1)); accept 4 of those
    ratio = values.var().item() / (sigma**2 / m)
    assert abs(ratio - 1) <= 4 * math.sqrt(2 / (R - 1))
    # the reported standard error estimates the same variance
    mean_reported = torch.tensor([e.stderr**2 for e in estimates]).mean().item()
    assert abs(mean_reported / (sigma**2 / m) - 1) <= 4 * math.sqrt(2 / (R - 1))


def test_hutchinson_trace_of_a_diagonal_matrix_is_exact():
    """Rademacher z has z_i² = 1, so zᵀ D z = tr(D) for every probe: zero variance."""
    D = torch.diag(torch.arange(1.0, 11.0))
    estimate = hl.hutchinson_trace(D, 5, generator=hl.seed(1, "cpu"))
    assert estimate.value == pytest.approx(55.0, abs=1e-12) and estimate.stderr == pytest.approx(0, abs=1e-12)


def test_hutch_plus_plus_is_unbiased():
    A = random_symmetric(40, seed=3, eigenvalues=1.0 / torch.arange(1, 41) ** 2)
    generator = hl.seed(3, "cpu")
    values = torch.tensor([hl.hutchinson_trace(A, 12, "hutch++", generator=generator).value for _ in range(300)])
    # the deflated remainder has σ at most Hutchinson's σ of A (projection does not increase ‖·‖_F); 4 of them
    # over sqrt(remaining probes × repetitions) bounds the deviation of the mean
    assert abs(values.mean().item() - A.trace().item()) <= 4 * hutchinson_sigma(A) / math.sqrt(4 * 300)


def test_hutch_plus_plus_beats_hutchinson_on_a_decaying_spectrum():
    """Equal budgets of 60 products on λ_i = i⁻²: Hutch++'s root-mean-square error must be several times smaller."""
    A = random_symmetric(200, seed=4, eigenvalues=1.0 / torch.arange(1, 201) ** 2)
    exact, generator = A.trace().item(), hl.seed(4, "cpu")

    def rms_error(method: str) -> float:
        errors = [hl.hutchinson_trace(A, 60, method, generator=generator).value - exact for _ in range(100)]
        return math.sqrt(sum(e * e for e in errors) / len(errors))

    assert rms_error("hutch++") < rms_error("hutchinson") / 3


def test_hutchinson_on_a_hessian_operator(mlp_problem):
    _, _, _, f, theta = mlp_problem
    H = hl.hessian(f, theta)
    estimate = hl.hutchinson_trace(hl.HessianOperator(f, theta), 400, generator=hl.seed(5, "cpu"))
    assert abs(estimate.value - H.trace().item()) <= 4 * hutchinson_sigma(H) / math.sqrt(400)


def test_hutchinson_diagonal_is_unbiased_entrywise():
    A = random_symmetric(25, seed=6)
    m = 4000
    estimate = hl.hutchinson_diagonal(A, m, generator=hl.seed(6, "cpu"))
    off_diagonal = A - torch.diag(torch.diag(A))
    stderr = ((off_diagonal**2).sum(1) / m).sqrt()
    z_scores = (estimate - torch.diag(A)) / stderr
    assert z_scores.abs().max() <= 4.5  # 25 entries at once: Bonferroni-adjusted 4σ
    assert z_scores.abs().mean() > 0.2  # and it is an estimate, not the exact diagonal read off


def test_estimators_are_reproducible_from_their_generator():
    A = random_symmetric(20, seed=7)
    for method in ("hutchinson", "hutch++"):
        first = hl.hutchinson_trace(A, 9, method, generator=hl.seed(11, "cpu"))
        again = hl.hutchinson_trace(A, 9, method, generator=hl.seed(11, "cpu"))
        other = hl.hutchinson_trace(A, 9, method, generator=hl.seed(12, "cpu"))
        assert first == again and first.value != other.value
    d1 = hl.hutchinson_diagonal(A, 5, generator=hl.seed(11, "cpu"))
    assert torch.equal(d1, hl.hutchinson_diagonal(A, 5, generator=hl.seed(11, "cpu")))


def test_probes_run_in_blocks_with_exactly_combined_moments(monkeypatch):
    """Any number of probes in bounded memory: with blocks of 3 probes, 10 probes give the mean and standard error
    of the same 10 samples as if they had been held at once (Chan-Golub-LeVeque combination is exact)."""
    A = random_symmetric(16, seed=8)
    monkeypatch.setattr(hl.hutchinson, "PROBE_BLOCK_BYTES", 16 * 8 * 3)
    estimate = hl.hutchinson_trace(A, 10, generator=hl.seed(13, "cpu"))
    generator = hl.seed(13, "cpu")
    probes = torch.cat([hl.hutchinson.rademacher(16, size, A.dtype, A.device, generator) for size in (3, 3, 3, 1)], 1)
    samples = (probes * (A @ probes)).sum(0)
    assert estimate.value == pytest.approx(samples.mean().item(), rel=1e-14)
    assert estimate.stderr == pytest.approx(samples.std().item() / math.sqrt(10), rel=1e-12)
    diagonal = hl.hutchinson_diagonal(A, 10, generator=hl.seed(13, "cpu"))
    torch.testing.assert_close(diagonal, (probes * (A @ probes)).mean(1), atol=1e-14, rtol=0)


def test_absurd_probe_counts_are_refused_before_any_work():
    """Hutch++ must hold its (n × m/3) sketch: a count that would need more memory than exists is a ValueError
    that says so, raised before a single product (the operator here would fail if it were called)."""
    def never(V):
        raise AssertionError("no product should be taken")
    op = hl.CurvatureOperator(never, 10**6, torch.float64, torch.device("cpu"))
    with pytest.raises(ValueError, match="Hutch\\+\\+ with num_probes=3000000.*method='hutchinson'"):
        hl.hutchinson_trace(op, 3 * 10**6, "hutch++")
    with pytest.raises(ValueError, match="take fewer steps"):
        hl.spectral_density(op, 10**6, 1)
    with pytest.raises(ValueError, match="take fewer steps"):
        hl.lanczos(op, 10**6)


# --- the variance of one probe (hl.hutchinson_variance) ---
def test_hutchinson_variance_is_the_exact_variance_over_every_sign_vector():
    """Over all 2^n Rademacher vectors (each of probability 2^-n) zᵀAz has mean tr(A) and variance 2 Σ_{i≠j} A_ij²:
    an exact expectation, so only rounding separates the two (float64 sums of 1024 terms of size <= ~1e2)."""
    n = 10
    A = random_symmetric(n, seed=3)
    signs = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=n)), dtype=torch.float64).T  # (n, 2^n)
    forms = (signs * (A @ signs)).sum(0)
    assert forms.mean().item() == pytest.approx(A.trace().item(), rel=1e-12, abs=1e-12)
    assert hl.hutchinson_variance(A) == pytest.approx(forms.var(correction=0).item(), rel=1e-12)
    # Gaussian probes: Var(zᵀAz) = 2 tr(A²) by Isserlis' theorem (the diagonal counts)
    assert hl.hutchinson_variance(A, "gaussian") == pytest.approx(2 * torch.trace(A @ A).item(), rel=1e-12)
    D = torch.diag(torch.arange(1.0, 5.0, dtype=torch.float32))
    assert hl.hutchinson_variance(D) == 0 and hl.hutchinson_variance(D, "gaussian") == 2 * (1 + 4 + 9 + 16)


def test_hutchinson_variance_bad_input():
    with pytest.raises(TypeError, match=r"dense symmetric \(n, n\) torch.Tensor.*op.to_dense\(\)"):
        hl.hutchinson_variance(hl.as_operator(torch.eye(3)))
    with pytest.raises(TypeError, match="torch.Tensor, got list"):
        hl.hutchinson_variance([[1.0]])
    with pytest.raises(ValueError, match="not symmetric"):
        hl.hutchinson_variance(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        hl.hutchinson_variance(torch.ones(2, 3))
    with pytest.raises(ValueError, match="probes must be 'rademacher' or 'gaussian', got 'normal'"):
        hl.hutchinson_variance(torch.eye(2), "normal")


def test_a_dense_matrix_multiplies_a_block_of_probes_in_one_product_per_n_columns():
    """``as_operator(A)`` of a dense A takes A @ Z for up to n probe columns at once, never column by column."""
    A = random_symmetric(16, seed=4)
    op = hl.as_operator(A)
    shapes, product = [], op._product
    op._product = lambda V: shapes.append(tuple(V.shape)) or product(V)
    hl.hutchinson_trace(op, 10, generator=hl.seed(0, "cpu"))
    assert shapes == [(16, 10)]
    shapes.clear()
    hl.hutchinson_trace(op, 40, generator=hl.seed(0, "cpu"))
    assert shapes == [(16, 16), (16, 16), (16, 8)]


# ----------------------------------------------------------------------------------------------------------------------
# bad arguments: a clear error naming the argument
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, error, message", [
    (lambda A: hl.hutchinson_trace(A, 1), ValueError, "num_probes must be >= 2"),
    (lambda A: hl.hutchinson_trace(A, 3, "hutch++"), ValueError, "num_probes must be >= 4"),
    (lambda A: hl.hutchinson_trace(A, 10.0), TypeError, "num_probes must be an int"),
    (lambda A: hl.hutchinson_trace(A, 10, "exact"), ValueError, "'hutchinson' or 'hutch\\+\\+'"),
    (lambda A: hl.hutchinson_trace(A, 10, generator=0), TypeError, "torch.Generator"),
    (lambda A: hl.hutchinson_diagonal(A, 0), ValueError, "num_probes must be >= 1"),
])
def test_out_of_range_arguments_of_the_estimators(call, error, message):
    with pytest.raises(error, match=message):
        call(random_symmetric(5))
