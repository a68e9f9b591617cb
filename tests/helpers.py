"""Small problems shared by the tests: a tiny MLP, its data, random symmetric matrices (float64).

Imported by the tests as `from helpers import ...` (pyproject puts tests/ on the path); conftest.py holds only
fixtures and hooks.
"""

import torch
from hypothesis import strategies as st
from torch import nn

# hypothesis strategies for the property tests: a small dimension and any seed
sizes = st.integers(min_value=1, max_value=12)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def small_mlp(activation: nn.Module = None, d_in: int = 4, width: int = 6, classes: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, width), activation or nn.Tanh(), nn.Linear(width, classes)).double()


def classification_data(n: int = 30, d_in: int = 4, classes: int = 3, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, d_in, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, classes, (n,), generator=generator)
    return inputs, targets


def random_symmetric(n: int, seed: int = 0, eigenvalues=None) -> torch.Tensor:
    """Q diag(λ) Qᵀ with a random orthogonal Q; λ standard normal unless given."""
    generator = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    lam = torch.randn(n, generator=generator, dtype=torch.float64) if eigenvalues is None else eigenvalues
    return (Q * lam) @ Q.T


def random_square(n: int, seed: int) -> torch.Tensor:
    """An (n, n) matrix of independent standard normal entries (not symmetric), float64."""
    return torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def known_quadratic(n=12, seed=0):
    """f(x) = ½ xᵀ A x + bᵀ x with a known symmetric A (eigenvalues 1..n, the top one 3n): exact H = A everywhere."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eigenvalues = torch.arange(1, n + 1, dtype=torch.float64)
    eigenvalues[-1] = 3 * n
    A = Q @ torch.diag(eigenvalues) @ Q.T
    b = torch.randn(n, generator=g, dtype=torch.float64)
    return (lambda x: 0.5 * x @ A @ x + b @ x), A, torch.randn(n, generator=g, dtype=torch.float64)

