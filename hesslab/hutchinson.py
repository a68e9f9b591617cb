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

from ._checks import check_choice, check_count
from ._dense import available_memory
from .operators import as_operator
from .sampling import rademacher


@dataclass(frozen=True)
class Estimate:
    """A Monte-Carlo estimate: ``value ± stderr`` (one standard error), from ``num_matvecs`` products.

    Attributes:
        value: the estimate.
        stderr: its standard error (0 when every sample agreed).
        num_matvecs: the matrix-vector products it cost.

    Example:
        >>> import hesslab as hl
        >>> print(hl.Estimate(value=3.0, stderr=0.125, num_matvecs=10))
        3 ± 0.12
    """

    value: float
    stderr: float
    num_matvecs: int

    def __str__(self) -> str:
        return f"{self.value:.6g} ± {self.stderr:.2g}"


PROBE_BLOCK_BYTES = 64 * 2**20  # probes are drawn and multiplied at most this many bytes at a time


def _block_size(n: int, dtype: torch.dtype) -> int:
    """Probe columns per block: an (n × block) block is at most ``PROBE_BLOCK_BYTES``.

    So any number of probes runs in bounded memory (one block of probes and one of products at a time).
    """
    return max(1, PROBE_BLOCK_BYTES // (n * torch.empty((), dtype=dtype).element_size()))


class _RunningMoments:
    """Count, mean and sum of squared deviations of samples arriving in blocks, combined exactly.

    Chan, Golub & LeVeque (1979): the mean and variance of all samples without keeping them.
    """

    def __init__(self):
        self.count, self.mean, self.squares = 0, 0.0, 0.0

    def add(self, samples: Tensor) -> None:
        samples = samples.double()
        count, mean = samples.numel(), samples.mean().item()
        squares = ((samples - mean) ** 2).sum().item()
        total = self.count + count
        delta = mean - self.mean
        self.mean += delta * count / total
        self.squares += squares + delta**2 * self.count * count / total
        self.count = total

    def standard_error(self) -> float:
        return math.sqrt(self.squares / (self.count - 1) / self.count)


def _hutchinson(A, num_probes: int, generator, project: Tensor | None = None) -> tuple[float, float]:
    """Mean and standard error of zᵀ A z over ``num_probes`` Rademacher probes z, drawn and multiplied in blocks.

    With ``project`` = Q (n, s) orthonormal, over the deflated probes (I − QQᵀ) z instead.
    """
    n = A.shape[0]
    moments = _RunningMoments()
    block = _block_size(n, A.dtype)
    for first in range(0, num_probes, block):
        probes = rademacher(n, min(block, num_probes - first), A.dtype, A.device, generator)
        if project is not None:
            probes = probes - project @ (project.T @ probes)  # (I − QQᵀ) z
        moments.add((probes * (A @ probes)).sum(0))  # A @ checks every product finite
    return moments.mean, moments.standard_error()


def hutchinson_trace(A, num_probes: int, method: str = "hutchinson",
                     generator: torch.Generator | None = None) -> Estimate:
    """Estimate tr(A) from ``num_probes`` products with A.

    Cost: ``num_probes`` products (batched), probes drawn in blocks of at most 64 MiB (any number of probes runs in
    bounded memory); Hutch++ also holds its sketch, O(n · m/3).

    Args:
        A: a ``CurvatureOperator`` (e.g. ``hl.HessianOperator``) or a dense symmetric (n, n) tensor.
        num_probes: the number of matrix-vector products to spend (>= 2 for "hutchinson", >= 4 for "hutch++").
        method: ``"hutchinson"`` — mean of zᵀAz over Rademacher z; ``"hutch++"`` — ⌊m/3⌋ products sketch
            Q = orth(A S), ⌊m/3⌋ give tr(QᵀAQ) exactly, the rest estimate the deflated remainder.
        generator: ``torch.Generator`` for the probes (same generator state, same answer).

    Returns:
        ``Estimate(value, stderr, num_matvecs)``. For Hutch++ the standard error is that of the remainder's
        Hutchinson estimate, conditional on the sketch.

    Raises:
        ValueError: if a product is not finite (∇²f is not finite at the point: f is not twice differentiable
            there), and for Hutch++ if its (n × ⌊m/3⌋) sketch would not fit in memory.

    Example:
        For a diagonal A every ±1 probe gives zᵀAz = Σ_i A_ii z_i² = tr(A) exactly (the variance 2 Σ_{i≠j} A_ij² is 0);
        for a rank-one A = uuᵀ Hutch++'s sketch captures all of it:

        >>> import torch, hesslab as hl
        >>> D = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
        >>> hl.hutchinson_trace(D, num_probes=4, generator=torch.Generator().manual_seed(0))
        Estimate(value=6.0, stderr=0.0, num_matvecs=4)
        >>> u = torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64)
        >>> estimate = hl.hutchinson_trace(torch.outer(u, u), 6, method="hutch++", generator=hl.seed(0))
        >>> round(estimate.value, 10)  # ‖u‖² = 9
        9.0
    """
    check_choice("method", method, ("hutchinson", "hutch++"))
    A = as_operator(A)
    n = A.shape[0]
    if method == "hutchinson":
        check_count("num_probes", num_probes, 2, hint="Hutchinson needs at least 2 probes to state a standard error.")
        value, stderr = _hutchinson(A, num_probes, generator)
        return Estimate(value, stderr, num_probes)
    if method == "hutch++":
        check_count("num_probes", num_probes, 4, hint="Hutch++ splits its products in three; give at least 4.")
        sketch_size = min(num_probes // 3, n)
        _check_sketch_fits(n, sketch_size, A.dtype, A.device, num_probes)
        sketch = rademacher(n, sketch_size, A.dtype, A.device, generator)
        Q, _ = torch.linalg.qr(A @ sketch)  # orthonormal basis of the top eigenspace
        exact_part = (Q * (A @ Q)).sum().item()  # tr(Qᵀ A Q)
        rest, stderr = _hutchinson(A, num_probes - 2 * sketch_size, generator, project=Q)
        return Estimate(exact_part + rest, stderr, num_probes)


def _check_sketch_fits(n: int, sketch_size: int, dtype: torch.dtype, device: torch.device, num_probes: int) -> None:
    """Refuse (ValueError) a Hutch++ sketch that would not fit in memory.

    Hutch++ holds its sketch S, Q = orth(A S) and A Q, three (n × s) matrices: refused when they would need more
    than 90% of the memory available on ``device``.
    """
    need = 3 * n * sketch_size * torch.empty((), dtype=dtype).element_size()
    budget = int(0.9 * available_memory(device))
    if need > budget:
        raise ValueError(f"hutchinson_trace: Hutch++ with num_probes={num_probes} sketches {sketch_size} directions "
                         f"of n = {n}, which needs {need / 2**30:.2f} GiB but only {budget / 2**30:.2f} GiB is "
                         f"available on {device}; use fewer probes or method='hutchinson' (it runs in blocks).")


def hutchinson_diagonal(A, num_probes: int, generator: torch.Generator | None = None) -> Tensor:
    """Estimate diag(A) as the mean of z ⊙ (A z) over Rademacher probes z (Bekas, Kokiopoulou & Saad 2007).

    Cost: ``num_probes`` products (batched), probes drawn in blocks of at most 64 MiB.

    Args:
        A: a ``CurvatureOperator`` or a dense symmetric (n, n) tensor, as in ``hutchinson_trace``.
        num_probes: the number of products, >= 1.
        generator: ``torch.Generator`` for the probes (same generator state, same answer).

    Returns:
        (n,) tensor; entry i has variance Σ_{j≠i} A_ij² / num_probes (exact for diagonal A).

    Raises:
        ValueError: if a product is not finite (∇²f is not finite at the point).

    Example:
        >>> import torch, hesslab as hl
        >>> D = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
        >>> hl.hutchinson_diagonal(D, num_probes=1, generator=torch.Generator().manual_seed(0)).tolist()
        [1.0, 2.0, 3.0]
    """
    A = as_operator(A)
    check_count("num_probes", num_probes, 1)
    n = A.shape[0]
    total = torch.zeros(n, dtype=A.dtype, device=A.device)
    block = _block_size(n, A.dtype)
    for first in range(0, num_probes, block):
        probes = rademacher(n, min(block, num_probes - first), A.dtype, A.device, generator)
        total += (probes * (A @ probes)).sum(1)
    return total / num_probes


def hutchinson_variance(A: Tensor, probes: str = "rademacher") -> float:
    """Var(zᵀAz), the variance of one probe's estimate of tr(A): 2 Σ_{i≠j} A_ij² (Rademacher z), 2 ‖A‖_F² (Gaussian).

    For z with independent entries of mean 0 and variance 1, and symmetric A,
        Var(zᵀAz) = 2 Σ_{i≠j} A_ij² + (E z_i⁴ − 1) Σ_i A_ii²,
    with E z_i⁴ = 1 for Rademacher entries (z_i² = 1: the diagonal costs nothing) and 3 for Gaussian ones. The mean
    of m independent probes, ``hutchinson_trace(A, m)``, has variance ``hutchinson_variance(A) / m`` (Hutchinson
    1989; Avron & Toledo 2011, *Randomized algorithms for estimating the trace of an implicit symmetric positive
    semi-definite matrix*, J. ACM 58(2)).

    Args:
        A: a dense symmetric (n, n) floating tensor, e.g. ``hl.hessian(f, x)`` or ``op.to_dense()``.
        probes: ``"rademacher"`` (what ``hutchinson_trace`` draws) or ``"gaussian"``.

    Returns:
        The variance, a float (summed in float64). Cost: O(n²), no products.

    Example:
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
        >>> hutchinson_variance(A)  # 2 (A_12² + A_21²)
        4.0
        >>> hutchinson_variance(A, "gaussian")  # 2 ‖A‖_F²
        30.0
    """
    if not isinstance(A, Tensor):
        raise TypeError(f"A must be a dense symmetric (n, n) torch.Tensor, got {type(A).__name__}; for a "
                        "CurvatureOperator pass op.to_dense() (the variance needs every entry).")
    as_operator(A)  # square, floating, finite and symmetric, or a clear error
    if probes not in ("rademacher", "gaussian"):
        raise ValueError(f"probes must be 'rademacher' or 'gaussian', got {probes!r}.")
    A = A.double()
    if probes == "gaussian":
        return 2 * A.pow(2).sum().item()
    off_diagonal = A - torch.diag(torch.diag(A))
    return 2 * off_diagonal.pow(2).sum().item()
