"""Lanczos on structured matrices, where a ±1 start, a careless restart or a single Krylov space gives a wrong answer
that looks right (issue 12). Exact answers are dense float64 eigendecompositions; every case is a few products.

Tolerances: a converged Ritz pair has residual r <= tol·|θ| + eps·‖T‖, and then some eigenvalue lies within r of θ
(for symmetric A, ‖A y − θ y‖ bounds the distance from θ to the spectrum). With tol = 1e-10 on matrices of norm
<= 101 we accept |θ − λ| <= 2·tol·|λ|: the guarantee, with room for the rounding in computing r.
"""

import math

import pytest
import torch
from helpers import random_symmetric, seeds, sizes
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

import hesslab as hl

TOL = 1e-10
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems: one thread is fastest


def orthonormality_error(Q: torch.Tensor) -> float:
    return torch.linalg.matrix_norm(Q.T @ Q - torch.eye(Q.shape[1], dtype=Q.dtype), ord=2).item()


def hadamard(n: int) -> torch.Tensor:
    """Sylvester's Hadamard matrix divided by √n: an orthogonal matrix of ±1/√n entries (n a power of 2)."""
    H = torch.ones(1, 1, dtype=torch.float64)
    while H.shape[0] < n:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return H / math.sqrt(n)


# --- start vectors: Gaussian, never orthogonal to a structured eigenvector --------------------------------------
def test_top_eigen_of_the_textbook_2x2_hessian_for_every_seed():
    """f = x0² + x1² + x0·x1 has H = [[2, 1], [1, 2]], eigenvalues 3 and 1. A ±1/√2 start is an eigenvector, so with
    Rademacher starts about half the seeds returned 1, "converged"."""
    H = torch.tensor([[2.0, 1.0], [1.0, 2.0]])
    assert torch.equal(hl.hessian(lambda x: x[0] ** 2 + x[1] ** 2 + x[0] * x[1], torch.zeros(2)), H)
    for seed in range(100):
        result = hl.top_eigen(H, k=1, tol=TOL, generator=hl.seed(seed, "cpu"))
        assert abs(result[0][0].item() - 3.0) <= 2 * TOL * 3.0, seed
        assert result.converged


def test_top_eigen_of_identity_plus_ones_for_every_seed():
    """I + 11ᵀ (n = 100): eigenvalue 101 along 1, and 1 (99 times) on 1⊥, where a ±1 vector often lies."""
    A = torch.eye(100) + torch.ones(100, 100)
    for seed in range(50):
        values, vectors = hl.top_eigen(A, k=1, tol=TOL, generator=hl.seed(seed, "cpu"))
        assert abs(values[0].item() - 101.0) <= 2 * TOL * 101.0, seed
        assert abs(abs(vectors[:, 0].sum().item()) - 10.0) <= 1e-8  # the unit vector 1/√100


def test_top_eigen_finds_an_eigenvector_with_hadamard_structure():
    """Top eigenvector a Hadamard column (±1/8 entries, n = 64): a Rademacher start is exactly orthogonal to it with
    probability C(64, 32)/2⁶⁴ ≈ 0.1, and then Lanczos converged to the next eigenvalue, 2 (4 seeds of these 40)."""
    eigenvalues = torch.cat([torch.tensor([5.0, 2.0]), torch.linspace(0, 0.1, 62)])
    U = hadamard(64)
    A = (U * eigenvalues) @ U.T
    for seed in range(40):
        values, _ = hl.top_eigen(A, k=1, tol=TOL, generator=hl.seed(seed, "cpu"))
        assert abs(values[0].item() - 5.0) <= 2 * TOL * 5.0, seed


# --- breakdown: a fresh direction, never NaN or a non-orthonormal basis ----------------------------------------
@pytest.mark.parametrize("name", ["2x2", "zeros", "identity plus ones", "identity", "rank one"])
def test_lanczos_basis_stays_orthonormal_through_breakdowns(name):
    n = {"2x2": 2}.get(name, 5 if name == "zeros" else 12)
    A = {"2x2": torch.tensor([[2.0, 1.0], [1.0, 2.0]]), "zeros": torch.zeros(5, 5),
         "identity plus ones": torch.eye(12) + torch.ones(12, 12), "identity": torch.eye(12),
         "rank one": torch.outer(torch.arange(1.0, 13.0), torch.arange(1.0, 13.0))}[name]
    exact = torch.linalg.eigvalsh(A)
    for seed in range(30):
        result = hl.lanczos(A, n, generator=hl.seed(seed, "cpu"))
        Q = result.basis
        assert Q.shape == (n, n) and torch.isfinite(Q).all()
        assert orthonormality_error(Q) <= 1e-10, seed
        T = torch.diag(result.alphas) + torch.diag(result.betas, 1) + torch.diag(result.betas, -1)
        torch.testing.assert_close(Q.T @ A @ Q, T, atol=1e-12 * (1 + exact.abs().max().item()), rtol=0)
        torch.testing.assert_close(torch.linalg.eigvalsh(T), exact, atol=1e-12 * (1 + exact.abs().max().item()),
                                   rtol=0)


def test_lanczos_from_an_eigenvector_of_the_2x2_restarts_orthogonally():
    """From v0 = (1, 1)/√2, an eigenvector, the second basis vector must be ±(1, −1)/√2 (it was −v0 before)."""
    H = torch.tensor([[2.0, 1.0], [1.0, 2.0]])
    for seed in range(10):
        result = hl.lanczos(H, 2, v0=torch.tensor([1.0, 1.0]), generator=hl.seed(seed, "cpu"))
        assert result.betas[0] == 0
        assert orthonormality_error(result.basis) <= 1e-10, seed
        torch.testing.assert_close(torch.sort(result.alphas).values, torch.tensor([1.0, 3.0]), atol=1e-14, rtol=0)


def test_lanczos_and_top_eigen_of_the_zero_matrix():
    """Every step breaks down (A q = 0): each restart is a fresh Gaussian direction; no error about a vector the
    user never passed, and the eigenvalues are exactly 0."""
    for seed in range(20):
        result = hl.lanczos(torch.zeros(5, 5), 5, generator=hl.seed(seed, "cpu"))
        assert torch.equal(result.alphas, torch.zeros(5)) and torch.equal(result.betas, torch.zeros(4))
        assert orthonormality_error(result.basis) <= 1e-10
    top = hl.top_eigen(torch.zeros(5, 5), k=2, generator=hl.seed(0, "cpu"))
    assert torch.equal(top.values, torch.zeros(2)) and top.converged
    assert orthonormality_error(top.vectors) <= 1e-10


def test_lanczos_ends_cleanly_when_the_krylov_space_is_exhausted():
    """With every fresh direction cancelled (a basis that already spans everything), the run stops with a shorter,
    valid result instead of dividing by zero: call the kernel with a locked basis that leaves one dimension."""
    from hesslab.spectrum import _krylov as lanczos_module
    A = hl.as_operator(torch.diag(torch.arange(1.0, 6.0)))
    locked = torch.eye(5)[:4]  # span(e1..e4) locked: only e5 is left
    start = torch.ones(5, 1) / math.sqrt(5)
    alphas, betas, basis, beta = lanczos_module._lanczos(A, start, 3, hl.seed(0, "cpu"), locked=locked)
    assert alphas.shape == (1, 1) and betas.shape == (0, 1) and beta.item() == 0
    torch.testing.assert_close(alphas[0, 0], torch.tensor(5.0), atol=1e-14, rtol=0)
    torch.testing.assert_close(basis[0, 0].abs(), torch.eye(5)[4], atol=1e-14, rtol=0)


# --- repeated eigenvalues: every copy, by locking and restarting ----------------------------------------------
def repeated_spectrum(n: int) -> torch.Tensor:
    return torch.cat([torch.tensor([50.0, 20.0, 10.0, 10.0, 5.0]), torch.linspace(0, 1, n - 5)])


@pytest.mark.parametrize("eigenvectors", ["random orthogonal", "hadamard"])
def test_top_eigen_returns_every_copy_of_a_repeated_eigenvalue(eigenvectors):
    """Spectrum [50, 20, 10, 10, 5, bulk in [0, 1]], k = 4: one Krylov space holds 10 once, so a single run returned
    [50, 20, 10, 5]; the restart orthogonal to the locked pairs finds the second 10."""
    n = 128
    eigenvalues = repeated_spectrum(n)
    if eigenvectors == "hadamard":
        A = (hadamard(n) * eigenvalues) @ hadamard(n).T
    else:
        A = random_symmetric(n, seed=12, eigenvalues=eigenvalues)
    result = hl.top_eigen(A, k=4, tol=TOL, generator=hl.seed(0, "cpu"))
    expected = torch.tensor([50.0, 20.0, 10.0, 10.0])
    torch.testing.assert_close(result[0], expected, atol=0, rtol=2 * TOL)
    assert result.converged and 1 <= result.restarts <= 4
    assert orthonormality_error(result.vectors) <= 1e-10
    # the residuals are the true ‖A v − λ v‖, within the stopping rule's bound
    true = (A @ result.vectors - result.vectors * result.values).norm(dim=0)
    torch.testing.assert_close(result.residuals, true, atol=1e-13, rtol=0)
    assert (result.residuals <= TOL * result.values.abs() + 50 * 1e-14).all()


def test_top_eigen_with_multiplicity_k():
    """The top eigenvalue 7 with multiplicity k = 3 above well-separated 3 and 2: a single run converged to
    [7, 3, 2] within a few steps; locking needs one restart per missing copy, at most k in all."""
    eigenvalues = torch.cat([torch.full((3,), 7.0), torch.tensor([3.0, 2.0]), torch.linspace(-0.1, 0.1, 195)])
    A = random_symmetric(200, seed=13, eigenvalues=eigenvalues)
    result = hl.top_eigen(A, k=3, tol=TOL, generator=hl.seed(1, "cpu"))
    torch.testing.assert_close(result[0], torch.full((3,), 7.0), atol=0, rtol=2 * TOL)
    assert result.converged and result.restarts <= 3


def test_top_eigen_of_softmax_regression_at_zero():
    """At θ = 0 every class probability is 1/K, and the Hessian of the mean cross-entropy of a linear softmax
    classifier is (I/K − 11ᵀ/K²) ⊗ E[x̃ x̃ᵀ] (x̃ = (x, 1)): every eigenvalue σ_i/K of E[x̃x̃ᵀ]/K repeated K − 1 times.
    A single Krylov space returned two different top values where the exact answer has one twice."""
    N, d, K = 40, 5, 3
    generator = torch.Generator().manual_seed(4)
    inputs = torch.randn(N, d, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, K, (N,), generator=generator)
    model = nn.Linear(d, K).double()
    nn.init.zeros_(model.weight), nn.init.zeros_(model.bias)
    f, theta = hl.loss_function(model, nn.functional.cross_entropy, inputs, targets)
    assert torch.equal(theta, torch.zeros(K * (d + 1), dtype=torch.float64))
    lifted = torch.cat([inputs, torch.ones(N, 1, dtype=torch.float64)], 1)
    sigma = torch.linalg.eigvalsh(lifted.T @ lifted / N).flip(0)
    expected = (sigma[:2] / K).repeat_interleave(K - 1)  # [σ1, σ1, σ2, σ2] / K
    torch.testing.assert_close(torch.linalg.eigvalsh(hl.hessian(f, theta)).flip(0)[:4], expected, atol=1e-14, rtol=0)
    values, vectors = hl.top_eigen(hl.HessianOperator(f, theta), k=4, tol=TOL, generator=hl.seed(0, "cpu"))
    torch.testing.assert_close(values, expected, atol=0, rtol=2 * TOL)
    assert orthonormality_error(vectors) <= 1e-10


# --- which="SA": the most negative curvature ------------------------------------------------------------------
def test_smallest_algebraic_eigenvalues_of_an_indefinite_matrix():
    eigenvalues = torch.cat([torch.tensor([-3.0, -2.5]), torch.linspace(-1, 4, 98)])
    A = random_symmetric(100, seed=14, eigenvalues=eigenvalues)
    result = hl.top_eigen(A, k=2, which="SA", tol=TOL, generator=hl.seed(0, "cpu"))
    torch.testing.assert_close(result.values, torch.tensor([-3.0, -2.5]), atol=0, rtol=2 * TOL)
    assert (result.residuals <= TOL * 3 + 1e-13).all()
    # the first vector is a direction of negative curvature: vᵀ A v = −3
    v = result.vectors[:, 0]
    assert v @ A @ v == pytest.approx(-3.0, rel=2 * TOL)
    largest, _ = hl.top_eigen(A, k=1, which="LA", tol=TOL, generator=hl.seed(0, "cpu"))
    torch.testing.assert_close(largest, torch.tensor([4.0]), atol=0, rtol=2 * TOL)


def test_eigen_result_fields_and_backward_compatible_unpacking():
    A = random_symmetric(20, seed=15)
    result = hl.top_eigen(A, k=2, generator=hl.seed(0, "cpu"))
    values, vectors = result
    assert values is result.values and vectors is result.vectors and result[0] is result.values
    assert len(result) == 2 and values.shape == (2,) and vectors.shape == (20, 2)
    assert result.residuals.shape == (2,) and isinstance(result.converged, bool) and result.reason
    assert result.num_matvecs >= 2 + 2  # at least k Lanczos steps and the k residual products
    assert isinstance(result, hl.EigenResult)


# --- half precision: the recurrence in float32 ----------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_top_eigen_of_a_half_precision_operator(dtype):
    """Each product with the half-precision matrix rounds its input and its output (unit roundoff u = eps/2), so the
    run sees A + E with ‖E‖ <= 2u‖A‖ = eps‖A‖, and each eigenvalue moves by at most that (Weyl: a symmetric
    eigenvalue has condition 1); the value returned in the operator's dtype is rounded once more, by u|λ|.
    A bfloat16 recurrence restarted at nearly every step and was off by 30-90%."""
    eigenvalues = torch.cat([torch.tensor([10.0, 8.0, 6.0]), torch.linspace(0, 1, 97)])
    A = random_symmetric(100, seed=16, eigenvalues=eigenvalues).to(dtype)
    exact = torch.linalg.eigvalsh(A.double()).flip(0)[:3]  # of the matrix as stored
    eps = torch.finfo(dtype).eps
    result = hl.top_eigen(A, k=3, generator=hl.seed(0, "cpu"))
    error = (result[0].double() - exact).abs()
    assert (error <= eps * exact[0] + eps / 2 * exact.abs() + 1e-6 * exact.abs()).all(), error
    assert result.values.dtype == dtype and result.converged
    lanczos = hl.lanczos(A, 30, generator=hl.seed(0, "cpu"))
    assert lanczos.basis.dtype == torch.float32
    assert (lanczos.betas > 0).all()  # no spurious breakdowns
    assert orthonormality_error(lanczos.basis.double()) <= 30 * torch.finfo(torch.float32).eps


# --- non-finite curvature is an error, for every estimator ----------------------------------------------------
def nan_operator(n: int = 6) -> hl.CurvatureOperator:
    return hl.CurvatureOperator(lambda V: V * float("nan"), n, torch.float64, torch.device("cpu"))


@pytest.mark.parametrize("estimator", [
    lambda A: hl.hutchinson_trace(A, 4, generator=hl.seed(0, "cpu")),
    lambda A: hl.hutchinson_trace(A, 6, "hutch++", generator=hl.seed(0, "cpu")),
    lambda A: hl.hutchinson_diagonal(A, 3, generator=hl.seed(0, "cpu")),
    lambda A: hl.lanczos(A, 3, generator=hl.seed(0, "cpu")),
    lambda A: hl.top_eigen(A, 2, generator=hl.seed(0, "cpu")),
    lambda A: hl.spectral_density(A, 3, 2, generator=hl.seed(0, "cpu")),
], ids=["hutchinson", "hutch++", "diagonal", "lanczos", "top_eigen", "spectral_density"])
def test_non_finite_curvature_is_an_error(estimator):
    with pytest.raises(ValueError, match="not finite at this point"):
        estimator(nan_operator())


def test_hessian_of_a_function_not_twice_differentiable_is_an_error():
    """f = Σ |x_i|^1.5 is finite and differentiable at 0 but its second derivative (0.75 |x|^−0.5) is infinite;
    Hutchinson gave `nan ± nan`."""
    op = hl.HessianOperator(lambda x: (x.abs() ** 1.5).sum(), torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="not twice differentiable"):
        hl.hutchinson_trace(op, 4, generator=hl.seed(0, "cpu"))
    with pytest.raises(ValueError, match="not twice differentiable"):
        hl.top_eigen(op, 1, generator=hl.seed(0, "cpu"))


def test_slq_through_breakdowns_keeps_rademacher_probes_and_exact_moments():
    """SLQ's probes stay Rademacher/√n (its estimator's definition). On I + 11ᵀ each probe's Krylov space closes
    after at most two steps; the fresh Gaussian directions after the breakdown form a decoupled block of T whose
    nodes have weight S_1i² = 0, so the moments stay exactly those of the probes."""
    n, p = 12, 8
    A = torch.eye(n) + torch.ones(n, n)
    sd = hl.spectral_density(A, n, p, generator=hl.seed(3, "cpu"))
    assert torch.isfinite(sd.nodes).all() and torch.isfinite(sd.weights).all()
    probes = hl.hutchinson.rademacher(n, p, A.dtype, A.device, hl.seed(3, "cpu")) / math.sqrt(n)
    for power in range(6):
        expected = (probes * (torch.linalg.matrix_power(A, power) @ probes)).sum(0).mean().item()
        assert sd.moment(power) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    result = hl.lanczos(torch.zeros(5, 5), 5, generator=hl.seed(0, "cpu"))
    zero_density = hl.spectral_density(torch.zeros(5, 5), 5, 3, generator=hl.seed(0, "cpu"))
    assert torch.equal(zero_density.nodes, torch.zeros(3, 5)) and result.alphas.shape == (5,)
    assert zero_density.weights.sum().item() == pytest.approx(1.0, abs=1e-14)


# --- properties that hold for every small problem, drawn by hypothesis (float64) ---
SPECTRA = ("repeated", "clustered", "negative", "rank one", "gaussian")


def structured_symmetric(n: int, seed: int, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Q diag(λ) Qᵀ with a random orthogonal Q and a structured spectrum λ: values from {−2, 1, 3} (repeated), a
    cluster 3 + 1e-6·i beside a normal rest, all negative, zero with one eigenvalue 4, or normal."""
    generator = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    normal = torch.randn(n, generator=generator, dtype=torch.float64)
    if kind == "repeated":
        lam = torch.tensor([-2.0, 1.0, 3.0], dtype=torch.float64)[torch.randint(0, 3, (n,), generator=generator)]
    elif kind == "clustered":
        lam = torch.where(torch.arange(n) < n // 2, 3 + 1e-6 * torch.arange(n, dtype=torch.float64), normal)
    elif kind == "negative":
        lam = -normal.abs() - 0.1
    elif kind == "rank one":
        lam = torch.zeros(n, dtype=torch.float64)
        lam[0] = 4.0
    else:
        lam = normal
    return (Q * lam) @ Q.T, lam


@settings(max_examples=60, deadline=None)
@given(n=sizes, seed=seeds, kind=st.sampled_from(SPECTRA))
def test_full_lanczos_on_structured_spectra_keeps_an_orthonormal_basis(n, seed, kind):
    A, lam = structured_symmetric(n, seed, kind)
    result = hl.lanczos(A, n, generator=hl.seed(seed, "cpu"))
    Q = result.basis
    assert Q.shape == (n, n)
    assert torch.linalg.matrix_norm(Q.T @ Q - torch.eye(n), ord=2) <= 1e-10
    T = torch.diag(result.alphas) + torch.diag(result.betas, 1) + torch.diag(result.betas, -1)
    scale = lam.abs().max().item() + 1
    torch.testing.assert_close(torch.linalg.eigvalsh(T), torch.sort(lam).values, atol=1e-12 * scale * n, rtol=0)


@settings(max_examples=60, deadline=None)
@given(n=sizes, seed=seeds, kind=st.sampled_from(SPECTRA), which=st.sampled_from(("LA", "SA", "LM")),
       data=st.data())
def test_top_eigen_on_structured_spectra_finds_every_copy(n, seed, kind, which, data):
    """Each returned θ is within its residual r <= tol·|θ| + eps·‖T‖ of an eigenvalue, and with every copy of a
    repeated eigenvalue found the k values are the k most wanted eigenvalues: |θ − λ| <= 2·tol·‖A‖."""
    k = data.draw(st.integers(min_value=1, max_value=n), label="k")
    A, lam = structured_symmetric(n, seed, kind)
    tol = 1e-10
    result = hl.top_eigen(A, k, tol=tol, which=which, generator=hl.seed(seed, "cpu"))
    assert_most_wanted(result, lam, k, which, tol)
    assert torch.linalg.matrix_norm(result.vectors.T @ result.vectors - torch.eye(k), ord=2) <= 1e-10


def assert_most_wanted(result, lam, k, which, tol):
    """Converged, at most k restarts, and the values are the k most wanted eigenvalues to 2·tol·‖A‖."""
    key = {"LA": lam, "SA": -lam, "LM": lam.abs()}[which]
    expected = lam[torch.argsort(key, descending=True)[:k]]
    scale = lam.abs().max().item()
    assert result.converged and result.restarts <= k
    torch.testing.assert_close(torch.sort(result.values).values, torch.sort(expected).values,
                               atol=2 * tol * scale + 1e-14 * (1 + scale), rtol=0)


# --- start subspaces: v0 of shape (n, m), a Rayleigh–Ritz on span(v0) expanded by residuals ---------------------
@settings(max_examples=60, deadline=None)
@given(n=sizes, seed=seeds, kind=st.sampled_from(SPECTRA), which=st.sampled_from(("LA", "SA", "LM")),
       data=st.data())
def test_top_eigen_from_a_random_start_subspace_on_structured_spectra(n, seed, kind, which, data):
    """The same guarantee as from one vector: every copy, each θ within 2·tol·‖A‖ of the eigenvalue, true residuals.

    For a block in general position: m + (largest multiplicity) <= n. Beyond that span(v0) contains an eigenvector
    of the repeated eigenvalue for every block, the Rayleigh–Ritz sees it with zero residual, and a less wanted
    eigenvalue can be returned as converged (the documented limit of a start subspace, pinned in
    ``test_a_random_block_that_must_contain_an_eigenvector_can_stop_at_it``)."""
    k = data.draw(st.integers(min_value=1, max_value=n), label="k")
    A, lam = structured_symmetric(n, seed, kind)
    multiplicity = int(torch.unique(lam, return_counts=True)[1].max())
    assume(multiplicity < n)
    m = data.draw(st.integers(min_value=1, max_value=n - multiplicity), label="m")
    block = torch.randn(n, m, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    tol = 1e-10
    result = hl.top_eigen(A, k, tol=tol, which=which, v0=block, generator=hl.seed(seed, "cpu"))
    assert_most_wanted(result, lam, k, which, tol)
    scale = lam.abs().max().item()
    true = (A @ result.vectors - result.vectors * result.values).norm(dim=0)
    torch.testing.assert_close(result.residuals, true, atol=1e-12 * (1 + scale), rtol=0)
    assert len(result.history["error"]) == result.iterations + 1


def test_a_start_subspace_that_is_the_top_eigenspace_converges_in_its_own_products():
    """Top eigenvalue 7 three times (random orthogonal eigenvectors): from exactly that eigenspace, one (n, 3)
    product gives three zero residuals, k = 3 returns [7, 7, 7], and the check run finds nothing missing."""
    eigenvalues = torch.cat([torch.full((3,), 7.0), torch.tensor([3.0, 2.0]), torch.linspace(-0.1, 0.1, 195)])
    generator = torch.Generator().manual_seed(13)
    Q, _ = torch.linalg.qr(torch.randn(200, 200, generator=generator, dtype=torch.float64))
    A = (Q * eigenvalues) @ Q.T
    top = Q[:, :3] @ torch.randn(3, 3, generator=generator, dtype=torch.float64)  # a basis of the eigenspace
    one = hl.top_eigen(A, tol=TOL, v0=top, generator=hl.seed(0, "cpu"))
    assert one.values.item() == pytest.approx(7.0, rel=1e-13) and one.num_matvecs == 3 and one.iterations == 3
    three = hl.top_eigen(A, k=3, tol=TOL, v0=top, generator=hl.seed(0, "cpu"))
    torch.testing.assert_close(three.values, torch.full((3,), 7.0, dtype=torch.float64), atol=0, rtol=2 * TOL)
    assert three.converged and three.restarts == 1 and "found nothing beyond" in three.reason
    assert orthonormality_error(three.vectors) <= 1e-12


def test_a_hadamard_start_subspace_and_the_repeated_eigenvalue():
    """Spectrum [50, 20, 10, 10, 5, bulk] on Hadamard eigenvectors (±1/√128 entries), k = 4, from the two ±1
    eigenvectors of 10 and a third of the bulk: the first run holds both copies of 10 (one Krylov space cannot),
    and all four values are those of eigvalsh."""
    n = 128
    H = hadamard(n)
    A = (H * repeated_spectrum(n)) @ H.T
    block = H[:, [2, 3, 60]] * math.sqrt(n)  # ±1 columns: the eigenvectors of 10, 10 and of a bulk value
    result = hl.top_eigen(A, k=4, tol=TOL, v0=block, generator=hl.seed(0, "cpu"))
    expected = torch.linalg.eigvalsh(A).flip(0)[:4]
    torch.testing.assert_close(result.values, expected, atol=0, rtol=2 * TOL)
    assert result.converged and orthonormality_error(result.vectors) <= 1e-10


def test_a_start_subspace_with_dependent_and_zero_columns_uses_each_direction_once():
    """[u, 2u, 0, w, u + w]: two directions, so the start costs two products, and the value is eigvalsh's."""
    A = random_symmetric(40, seed=5, eigenvalues=torch.linspace(-1, 3, 40, dtype=torch.float64))
    generator = torch.Generator().manual_seed(6)
    u, w = torch.randn(40, generator=generator, dtype=torch.float64), torch.randn(40, generator=generator,
                                                                                    dtype=torch.float64)
    block = torch.stack([u, 2 * u, torch.zeros(40, dtype=torch.float64), w, u + w], dim=1)
    result = hl.top_eigen(A, tol=TOL, v0=block, generator=hl.seed(0, "cpu"))
    assert result.values.item() == pytest.approx(torch.linalg.eigvalsh(A)[-1].item(), rel=2 * TOL)
    assert result.history["matvecs"][2] == 2 and result.history["error"][1] == math.inf  # the start block: 2
    assert math.isfinite(result.history["error"][2])


def test_a_start_subspace_inside_an_invariant_subspace_returns_its_eigenvalue():
    """As from one eigenvector: a start inside an invariant subspace has zero residuals and returns that
    subspace's top eigenvalue (the guarantee is an eigenvalue within r, not the top one) — warm starts must be
    near the wanted eigenvector; a random vector is never orthogonal to it."""
    A = torch.diag(torch.tensor([5.0, 3.0, 2.0, 1.0], dtype=torch.float64))
    block = torch.eye(4, dtype=torch.float64)[:, 1:3]
    assert hl.top_eigen(A, tol=TOL, v0=block).values.item() == 3.0


def test_a_random_block_that_must_contain_an_eigenvector_can_stop_at_it():
    """The limit of a start subspace, found by a property test: eigenvalues (3, 1, −2, −2, −2), "LM", k = 1, a random
    (5, 3) block. Three dimensions in five must meet the 3-dimensional eigenspace of −2, so span(v0) holds an exact
    eigenvector: its Ritz pair (−2, zero residual) is the most wanted of the block's Ritz values (−2, 0.79, 1.35) and
    is returned as converged, though |3| > |−2|. A one-vector start (Lanczos) finds 3. Warm starts from nearby
    matrices' top eigenvectors are not in this position; the docstring of ``top_eigen`` says so."""
    A, lam = structured_symmetric(5, 3, "repeated")
    assert sorted(lam.tolist()) == [-2.0, -2.0, -2.0, 1.0, 3.0]
    block = torch.randn(5, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert abs(hl.top_eigen(A, tol=1e-10, which="LM", v0=block).values.item() + 2) < 1e-10
    assert abs(hl.top_eigen(A, tol=1e-10, which="LM", generator=hl.seed(3, "cpu")).values.item() - 3) < 1e-10


def test_a_start_subspace_follows_a_turn_inside_a_crowded_top_cluster():
    """Top eigenvalues 8.57, 8.21, 8.05 above a bulk in [0, 7.5] (as at the edge of stability), and A_new's
    eigenvectors are A_old's turned inside the top 3 (|⟨v_new, v_old⟩| = 0.87) and then slightly (angle ~0.02)
    towards the bulk: v_new's projection on span(A_old's top 3) has norm 0.9998. From that span the start's 3
    products and a few expansions do; from A_old's top eigenvector alone (Lanczos, or a one-column block) nearly
    twice as many. Ignoring all but the block's first column would cost as much as the single vector."""
    n = 300
    generator = torch.Generator().manual_seed(8)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    eigenvalues = torch.cat([torch.tensor([8.57, 8.21, 8.05]), torch.linspace(0, 7.5, n - 3)]).double()
    R, _ = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))  # a turn inside the top 3
    K = torch.randn(n, n, generator=generator, dtype=torch.float64)
    Q_new = Q.clone()
    Q_new[:, :3] = Q[:, :3] @ R
    Q_new = Q_new @ torch.linalg.matrix_exp(0.02 * (K - K.T) / math.sqrt(2 * n))  # a small turn of everything
    A_new = (Q_new * eigenvalues) @ Q_new.T
    block = Q[:, :3]  # A_old's top eigenvectors
    subspace = hl.top_eigen(A_new, tol=1e-3, v0=block, generator=hl.seed(0, "cpu"))
    single = hl.top_eigen(A_new, tol=1e-3, v0=block[:, 0], generator=hl.seed(0, "cpu"))
    first_only = hl.top_eigen(A_new, tol=1e-3, v0=block[:, :1], generator=hl.seed(0, "cpu"))
    exact = torch.linalg.eigvalsh(A_new)[-1].item()
    for result in (subspace, single, first_only):
        assert abs(result.values.item() - exact) <= result.residuals.item() + 1e-12
        assert result.residuals.item() <= 1e-3 * result.values.item()
    # measured: 6 products from the block (3 + 3 expansions), 11 from the vector, 10 from it as a block; cold 18
    assert subspace.num_matvecs <= 0.6 * min(single.num_matvecs, first_only.num_matvecs)


def test_the_smallest_copies_of_a_zero_eigenvalue_beside_a_rank_one_part_from_a_start_subspace():
    """Found by the property test above: A = 4 uuᵀ (n = 9), k = 3, "SA", a random (9, 2) start. Every kept value is ~0,
    so the margin that tells "the same value again" from "a better one" must scale with ‖A‖ (the largest Ritz value
    seen), not with the kept values: else each restart's rounding-level 0 looks better and the run never ends."""
    A, lam = structured_symmetric(9, 0, "rank one")
    block = torch.randn(9, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for v0 in (block, None):
        result = hl.top_eigen(A, 3, tol=1e-10, which="SA", v0=v0, generator=hl.seed(0, "cpu"))
        assert_most_wanted(result, lam, 3, "SA", 1e-10)


def test_a_start_subspace_that_is_invariant_and_holds_an_unwanted_eigenvalue_is_expanded():
    """span(e0, e1) of diag(4, 0, …, 0) is invariant, with Ritz values {4, 0}; for k = 2, "SA" both would be "wanted"
    with no choice made. The run must grow past it (a Ritz value beyond the wanted ones) and return 0 twice."""
    A = torch.diag(torch.tensor([4.0] + [0.0] * 6, dtype=torch.float64))
    block = torch.eye(7, 2, dtype=torch.float64)
    result = hl.top_eigen(A, 2, tol=1e-10, which="SA", v0=block, generator=hl.seed(0, "cpu"))
    assert result.converged and result.restarts <= 1
    torch.testing.assert_close(result.values, torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
