"""Properties that must hold for every small problem, drawn by hypothesis (float64)."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hesslab as hl

sizes = st.integers(min_value=1, max_value=12)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def matrix(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@settings(max_examples=40, deadline=None)
@given(n=sizes, seed=seeds)
def test_hessian_of_any_quadratic_form_is_its_symmetric_part(n, seed):
    A = matrix(n, seed)
    x = torch.randn(n, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    H = hl.hessian(lambda x: 0.5 * x @ A @ x + torch.sin(x).sum(), x)
    torch.testing.assert_close(H, (A + A.T) / 2 - torch.diag(torch.sin(x)), atol=1e-12, rtol=0)


@settings(max_examples=40, deadline=None)
@given(n=sizes, seed=seeds)
def test_full_lanczos_spectrum_equals_eigvalsh(n, seed):
    A = matrix(n, seed)
    A = A + A.T
    result = hl.lanczos(A, n, generator=hl.seed(seed, "cpu"))
    T = torch.diag(result.alphas) + torch.diag(result.betas, 1) + torch.diag(result.betas, -1)
    scale = torch.linalg.matrix_norm(A, ord=2).item()
    torch.testing.assert_close(torch.linalg.eigvalsh(T), torch.linalg.eigvalsh(A), atol=1e-12 * scale * n, rtol=0)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=2, max_value=12), seed=seeds)
def test_hessian_vector_products_are_symmetric_and_linear(n, seed):
    generator = torch.Generator().manual_seed(seed)
    W = torch.randn(n, n, generator=generator, dtype=torch.float64)
    x, v, w = (torch.randn(n, generator=generator, dtype=torch.float64) for _ in range(3))
    f = lambda x: torch.logsumexp(W @ torch.tanh(x), dim=0)  # noqa: E731
    op = hl.HessianOperator(f, x)
    assert abs(w @ (op @ v) - v @ (op @ w)) <= 1e-12 * (1 + (op @ v).norm() * w.norm())
    torch.testing.assert_close(op @ (2 * v - 3 * w), 2 * (op @ v) - 3 * (op @ w), atol=1e-12, rtol=0)
    torch.testing.assert_close(op @ torch.stack([v, w], 1), torch.stack([op @ v, op @ w], 1), atol=1e-12, rtol=0)


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
    key = {"LA": lam, "SA": -lam, "LM": lam.abs()}[which]
    expected = lam[torch.argsort(key, descending=True)[:k]]
    scale = lam.abs().max().item()
    assert result.converged and result.restarts <= k
    torch.testing.assert_close(torch.sort(result.values).values, torch.sort(expected).values,
                               atol=2 * tol * scale + 1e-14 * (1 + scale), rtol=0)
    assert torch.linalg.matrix_norm(result.vectors.T @ result.vectors - torch.eye(k), ord=2) <= 1e-10
