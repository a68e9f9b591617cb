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
