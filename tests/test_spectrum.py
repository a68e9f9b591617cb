"""Lanczos, top eigenpairs and stochastic Lanczos quadrature against dense eigendecompositions (float64)."""

import math

import pytest
import torch
from helpers import random_square, random_symmetric, seeds, sizes
from hypothesis import given, settings

import hesslab as hl


def tridiagonal(alphas, betas):
    return torch.diag(alphas) + torch.diag(betas, 1) + torch.diag(betas, -1)


def test_full_lanczos_reproduces_every_eigenvalue_and_keeps_the_basis_orthonormal():
    A = random_symmetric(60, seed=0)
    result = hl.lanczos(A, 60, generator=hl.seed(0, "cpu"))
    Q = result.basis
    torch.testing.assert_close(Q.T @ Q, torch.eye(60), atol=1e-12, rtol=0)
    torch.testing.assert_close(Q.T @ A @ Q, tridiagonal(result.alphas, result.betas), atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.eigvalsh(tridiagonal(result.alphas, result.betas)),
                               torch.linalg.eigvalsh(A), atol=1e-12, rtol=0)


def test_lanczos_recovers_exactly_repeated_eigenvalues_after_breakdown():
    """Eigenvalue 5 three times and 3 twice: one Krylov space holds each distinct eigenvalue once (27 here), so
    the multiplicities only come back through the (near-)breakdown and restart orthogonal to the basis."""
    eigenvalues = torch.cat([torch.full((3,), 5.0), torch.full((2,), 3.0), torch.linspace(-2, 2, 25)])
    A = random_symmetric(30, seed=1, eigenvalues=eigenvalues)
    result = hl.lanczos(A, 30, generator=hl.seed(1, "cpu"))
    torch.testing.assert_close(result.basis.T @ result.basis, torch.eye(30), atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.eigvalsh(tridiagonal(result.alphas, result.betas)),
                               torch.sort(eigenvalues).values, atol=1e-10, rtol=0)


def test_exact_breakdown_restarts_orthogonally():
    """On diag(1, 2, 3, 4) from e1 + e2 the Krylov space closes after two steps (β₂ = 0 exactly); the restart must
    continue orthogonally and find the two eigenvalues the start vector could not see."""
    A = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    result = hl.lanczos(A, 4, v0=torch.tensor([1.0, 1.0, 0.0, 0.0]), generator=hl.seed(0, "cpu"))
    assert result.betas[1] == 0
    torch.testing.assert_close(result.basis.T @ result.basis, torch.eye(4), atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.eigvalsh(tridiagonal(result.alphas, result.betas)),
                               torch.tensor([1.0, 2.0, 3.0, 4.0]), atol=1e-12, rtol=0)


def test_lanczos_with_a_tight_cluster_keeps_the_tridiagonal_relation():
    """A cluster 3, 3 + 1e-8, 3 + 2e-8 gives tiny (not zero) betas; full reorthogonalisation keeps QᵀAQ = T."""
    eigenvalues = torch.cat([3 + torch.tensor([0.0, 1e-8, 2e-8]), torch.linspace(-2, 2, 27)])
    A = random_symmetric(30, seed=2, eigenvalues=eigenvalues)
    result = hl.lanczos(A, 30, generator=hl.seed(2, "cpu"))
    Q, T = result.basis, tridiagonal(result.alphas, result.betas)
    torch.testing.assert_close(Q.T @ Q, torch.eye(30), atol=1e-12, rtol=0)
    torch.testing.assert_close(Q.T @ A @ Q, T, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.eigvalsh(T), torch.sort(eigenvalues).values, atol=1e-12, rtol=0)


def test_lanczos_with_a_block_of_start_vectors_runs_each_independently():
    A = random_symmetric(20, seed=2)
    V0 = torch.randn(20, 3, generator=torch.Generator().manual_seed(2))
    block = hl.lanczos(A, 8, v0=V0)
    for p in range(3):
        single = hl.lanczos(A, 8, v0=V0[:, p])
        torch.testing.assert_close(block.alphas[p], single.alphas, atol=1e-12, rtol=0)
        torch.testing.assert_close(block.betas[p], single.betas, atol=1e-12, rtol=0)
        torch.testing.assert_close(block.basis[p], single.basis, atol=1e-12, rtol=0)


def test_top_eigen_matches_eigvalsh_on_a_hessian(mlp_problem):
    _, _, _, f, theta = mlp_problem
    H = hl.hessian(f, theta)
    exact_values, exact_vectors = torch.linalg.eigh(H)
    values, vectors = hl.top_eigen(hl.HessianOperator(f, theta), k=3, tol=1e-10, generator=hl.seed(0, "cpu"))
    torch.testing.assert_close(values, exact_values.flip(0)[:3], atol=0, rtol=1e-9)
    assert torch.all(values[:-1] >= values[1:])
    residuals = (H @ vectors - vectors * values).norm(dim=0)
    assert residuals.max() <= 1e-4 * values.abs().max()


def test_top_eigen_on_a_tight_cluster():
    eigenvalues = torch.cat([torch.tensor([10.0, 9.999, 9.998]), torch.linspace(0, 9, 97)])
    A = random_symmetric(100, seed=3, eigenvalues=eigenvalues)
    values, _ = hl.top_eigen(A, k=3, tol=1e-10, generator=hl.seed(3, "cpu"))
    torch.testing.assert_close(values, torch.tensor([10.0, 9.999, 9.998]), atol=1e-8, rtol=0)


def test_top_eigen_largest_magnitude():
    eigenvalues = torch.cat([torch.tensor([-7.0, 4.0]), torch.linspace(-1, 1, 38)])
    A = random_symmetric(40, seed=4, eigenvalues=eigenvalues)
    values, _ = hl.top_eigen(A, k=2, which="LM", tol=1e-6, generator=hl.seed(4, "cpu"))
    torch.testing.assert_close(values, torch.tensor([-7.0, 4.0]), atol=0, rtol=1e-6)  # rtol = the tol asked for
    largest, _ = hl.top_eigen(A, k=1, tol=1e-6, generator=hl.seed(4, "cpu"))
    torch.testing.assert_close(largest, torch.tensor([4.0]), atol=0, rtol=1e-6)


def test_top_eigen_warns_when_it_does_not_converge():
    A = random_symmetric(200, seed=5, eigenvalues=torch.linspace(0, 1, 200))  # no gap at the top
    with pytest.warns(RuntimeWarning, match="did not reach"):
        hl.top_eigen(A, k=1, tol=1e-14, max_steps=5, generator=hl.seed(5, "cpu"))


def test_spectral_density_weights_sum_to_one_and_the_density_integrates_to_one():
    A = random_symmetric(50, seed=6)
    sd = hl.spectral_density(A, 10, num_probes=4, generator=hl.seed(6, "cpu"))
    assert sd.nodes.shape == sd.weights.shape == (4, 10)
    assert sd.weights.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert (sd.weights >= 0).all()
    grid = torch.linspace(-6, 6, 4001)
    assert torch.trapezoid(sd.density(grid, sigma=0.1), grid).item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("power", [1, 2, 3, 5, 7, 9])
def test_slq_moments_are_exact_for_its_probes_up_to_degree_2m_minus_1(power):
    """With m = 5 steps, Σ w θ^k equals the mean over the same probes of vᵀ A^k v for every k <= 9."""
    n, m, p = 40, 5, 3
    A = random_symmetric(n, seed=7)
    sd = hl.spectral_density(A, m, num_probes=p, generator=hl.seed(7, "cpu"))
    probes = hl.hutchinson.rademacher(n, p, A.dtype, A.device, hl.seed(7, "cpu")) / math.sqrt(n)
    expected = (probes * (torch.linalg.matrix_power(A, power) @ probes)).sum(0).mean().item()
    assert sd.moment(power) == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("power", [1, 2, 4])
def test_slq_moments_estimate_normalised_traces_within_the_hutchinson_error(power):
    n, p = 60, 30
    A = random_symmetric(n, seed=8)
    sd = hl.spectral_density(A, 10, num_probes=p, generator=hl.seed(8, "cpu"))
    Ak = torch.linalg.matrix_power(A, power)
    off_diagonal = Ak - torch.diag(torch.diag(Ak))
    sigma = math.sqrt(2 * (off_diagonal**2).sum().item()) / n  # of one probe's vᵀ A^k v, v = z/√n
    assert abs(sd.moment(power) - Ak.trace().item() / n) <= 4 * sigma / math.sqrt(p)


def test_slq_of_a_hessian_operator_matches_its_exact_histogram_moments(mlp_problem):
    _, _, _, f, theta = mlp_problem
    n = theta.numel()
    eigenvalues = torch.linalg.eigvalsh(hl.hessian(f, theta))
    sd = hl.spectral_density(hl.HessianOperator(f, theta), n, num_probes=2, generator=hl.seed(9, "cpu"))
    # with m = n steps each probe's quadrature nodes are the exact eigenvalues (its Krylov space is everything)
    torch.testing.assert_close(torch.sort(sd.nodes[0]).values, eigenvalues, atol=1e-10, rtol=0)


def test_lanczos_functions_are_reproducible_from_their_generator():
    A = random_symmetric(30, seed=10)
    assert torch.equal(hl.lanczos(A, 6, generator=hl.seed(1, "cpu")).alphas,
                       hl.lanczos(A, 6, generator=hl.seed(1, "cpu")).alphas)
    assert torch.equal(hl.top_eigen(A, 2, generator=hl.seed(1, "cpu"))[0],
                       hl.top_eigen(A, 2, generator=hl.seed(1, "cpu"))[0])
    first = hl.spectral_density(A, 6, 3, generator=hl.seed(1, "cpu"))
    again = hl.spectral_density(A, 6, 3, generator=hl.seed(1, "cpu"))
    other = hl.spectral_density(A, 6, 3, generator=hl.seed(2, "cpu"))
    assert torch.equal(first.nodes, again.nodes) and torch.equal(first.weights, again.weights)
    assert not torch.equal(first.weights, other.weights)


# --- properties that hold for every small problem, drawn by hypothesis (float64) ---
@settings(max_examples=40, deadline=None)
@given(n=sizes, seed=seeds)
def test_full_lanczos_spectrum_equals_eigvalsh(n, seed):
    A = random_square(n, seed)
    A = A + A.T
    result = hl.lanczos(A, n, generator=hl.seed(seed, "cpu"))
    T = torch.diag(result.alphas) + torch.diag(result.betas, 1) + torch.diag(result.betas, -1)
    scale = torch.linalg.matrix_norm(A, ord=2).item()
    torch.testing.assert_close(torch.linalg.eigvalsh(T), torch.linalg.eigvalsh(A), atol=1e-12 * scale * n, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# bad arguments: a clear error naming the argument
# ----------------------------------------------------------------------------------------------------------------------
def test_operator_like_arguments():
    with pytest.raises(ValueError, match="square"):
        hl.hutchinson_trace(torch.ones(3, 4), 4)
    with pytest.raises(TypeError, match="CurvatureOperator"):
        hl.top_eigen([[1.0]], 1)
    with pytest.raises(TypeError, match="floating dtype"):
        hl.lanczos(torch.eye(3, dtype=torch.int64), 2)


@pytest.mark.parametrize("call, error, message", [
    (lambda A: hl.lanczos(A, 0), ValueError, r"num_steps must be in \[1, 5\]"),
    (lambda A: hl.lanczos(A, 6), ValueError, r"num_steps must be in \[1, 5\].*more steps than the dimension"),
    (lambda A: hl.lanczos(A, 3, v0=torch.zeros(5)), ValueError, "zero column"),
    (lambda A: hl.lanczos(A, 3, v0=torch.ones(4)), ValueError, "v0 must have shape"),
    (lambda A: hl.top_eigen(A, 0), ValueError, r"k must be in \[1, 5\]"),
    (lambda A: hl.top_eigen(A, 6), ValueError, r"k must be in \[1, 5\]"),
    (lambda A: hl.top_eigen(A, 1, tol=0), ValueError, r"tol must be a finite number in \(0, inf\)"),
    (lambda A: hl.top_eigen(A, 1, which="BE"), ValueError, "which must be"),
    (lambda A: hl.top_eigen(A, 2, max_steps=1), ValueError, r"max_steps must be in \[2, 5\]"),
    (lambda A: hl.spectral_density(A, 6), ValueError, r"num_steps must be in \[1, 5\]"),
    (lambda A: hl.spectral_density(A, 2, num_probes=0), ValueError, "num_probes must be >= 1"),
    (lambda A: hl.spectral_density(A, 2).density(torch.zeros(3), sigma=0), ValueError,
     r"sigma must be a finite number in \(0, inf\)"),

])
def test_out_of_range_arguments_of_the_spectrum(call, error, message):
    with pytest.raises(error, match=message):
        call(random_symmetric(5))
