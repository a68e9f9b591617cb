"""Stochastic trace and diagonal estimation from matrix-vector products alone.

Hutchinson (1989):   tr(A) = E[zᵀ A z]  for random z with E[z zᵀ] = I;  with Rademacher z (entries ±1)
                     Var(zᵀ A z) = 2 Σ_{i≠j} A_ij²,   so m probes give standard error sqrt(Var / m).
Hutch++ (Meyer, Musco, Musco & Woodruff 2021): spend a third of the products on a sketch Q = orth(A S) of the top
                     eigenspace, take its trace exactly, and apply Hutchinson only to the deflated rest:
                     tr(A) = tr(Qᵀ A Q) + tr((I − QQᵀ) A (I − QQᵀ)).  Error O(1/m) instead of O(1/√m) when the
                     spectrum decays.
Diagonal (Bekas, Kokiopoulou & Saad 2007):   diag(A) = E[z ⊙ A z],  Var((z ⊙ A z)_i) = Σ_{j≠i} A_ij².
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .checks import check_count
from .operators import as_operator


@dataclass(frozen=True)
class Estimate:
    """A Monte-Carlo estimate: ``value ± stderr`` (one standard error), from ``num_matvecs`` products."""

    value: float
    stderr: float
    num_matvecs: int

    def __str__(self) -> str:
        return f"{self.value:.6g} ± {self.stderr:.2g}"


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}; "
                        "make one with hl.seed(0).")


def rademacher(n: int, num: int, dtype: torch.dtype, device: torch.device,
               generator: torch.Generator | None = None) -> Tensor:
    """``num`` Rademacher probes as the columns of an (n, num) tensor: entries ±1 with probability ½ each.

    The probes of Hutchinson's estimator (the least-variance choice: Var(zᵀAz) = 2 Σ_{i≠j} A_ij²). Not a good
    start for Lanczos: a ±1 vector can be exactly orthogonal to a structured eigenvector (1 ⟂ (1, −1)); use
    ``gaussian`` there. Drawn on the generator's device (so the same generator gives the same probes) and moved
    to ``device``.
    """
    _check_generator(generator)
    source = generator.device if generator is not None else device
    bits = torch.randint(0, 2, (n, num), generator=generator, device=source, dtype=dtype)
    return bits.mul_(2).sub_(1).to(device)


def gaussian(n: int, num: int, dtype: torch.dtype, device: torch.device,
             generator: torch.Generator | None = None) -> Tensor:
    """``num`` standard normal vectors as the columns of an (n, num) tensor (entries N(0, 1), independent).

    Lanczos starts and restarts: a Gaussian vector has a nonzero component along every fixed direction with
    probability 1, whatever the structure of A's eigenvectors. Drawn on the generator's device, moved to ``device``.
    """
    _check_generator(generator)
    source = generator.device if generator is not None else device
    return torch.randn((n, num), generator=generator, device=source, dtype=dtype).to(device)


def _hutchinson(A, probes: Tensor) -> tuple[float, float]:
    """Mean and standard error of zᵀ A z over the probe columns."""
    samples = (probes * (A @ probes)).sum(0).double()
    return samples.mean().item(), samples.std().item() / math.sqrt(samples.numel())


def hutchinson_trace(A, num_probes: int, method: str = "hutchinson",
                     generator: torch.Generator | None = None) -> Estimate:
    """Estimate tr(A) from ``num_probes`` products with A.

    Args:
        A: a ``CurvatureOperator`` (e.g. ``hl.HessianOperator``) or a dense symmetric (n, n) tensor.
        num_probes: the number of matrix-vector products to spend (>= 2 for "hutchinson", >= 4 for "hutch++").
        method: ``"hutchinson"`` — mean of zᵀAz over Rademacher z; ``"hutch++"`` — ⌊m/3⌋ products sketch
            Q = orth(A S), ⌊m/3⌋ give tr(QᵀAQ) exactly, the rest estimate the deflated remainder.
        generator: ``torch.Generator`` for the probes (same generator state, same answer).
    Returns:
        ``Estimate(value, stderr, num_matvecs)``. For Hutch++ the standard error is that of the remainder's
        Hutchinson estimate, conditional on the sketch.
    Cost: ``num_probes`` products (batched), O(n · num_probes) memory.
    """
    A = as_operator(A)
    n = A.shape[0]
    if method == "hutchinson":
        check_count("num_probes", num_probes, 2, hint="Hutchinson needs at least 2 probes to state a standard error.")
        value, stderr = _hutchinson(A, rademacher(n, num_probes, A.dtype, A.device, generator))
        return Estimate(value, stderr, num_probes)
    if method == "hutch++":
        check_count("num_probes", num_probes, 4, hint="Hutch++ splits its products in three; give at least 4.")
        sketch_size = min(num_probes // 3, n)
        sketch = rademacher(n, sketch_size, A.dtype, A.device, generator)
        Q, _ = torch.linalg.qr(A @ sketch)  # orthonormal basis of the sketched top eigenspace, (n, s)
        exact_part = (Q * (A @ Q)).sum().item()  # tr(Qᵀ A Q)
        probes = rademacher(n, num_probes - 2 * sketch_size, A.dtype, A.device, generator)
        probes = probes - Q @ (Q.T @ probes)  # (I − QQᵀ) z
        rest, stderr = _hutchinson(A, probes)
        return Estimate(exact_part + rest, stderr, num_probes)
    raise ValueError(f"method must be 'hutchinson' or 'hutch++', got {method!r}.")


def hutchinson_diagonal(A, num_probes: int, generator: torch.Generator | None = None) -> Tensor:
    """Estimate diag(A) as the mean of z ⊙ (A z) over Rademacher probes z (Bekas, Kokiopoulou & Saad 2007).

    Args: A as in ``hutchinson_trace``; num_probes >= 1; generator for the probes.
    Returns: (n,) tensor; entry i has variance Σ_{j≠i} A_ij² / num_probes (exact for diagonal A).
    Cost: ``num_probes`` products (batched).
    """
    A = as_operator(A)
    check_count("num_probes", num_probes, 1)
    probes = rademacher(A.shape[0], num_probes, A.dtype, A.device, generator)
    return (probes * (A @ probes)).mean(1)
