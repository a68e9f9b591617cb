"""Notebook 03: Lanczos, stochastic Lanczos quadrature, and the Hessian of a mini-batch.

Granziol, Zohren & Roberts (2022), *Learning Rates as a Function of Batch Size: A Random Matrix Theory Approach to
Neural Network Training* (JMLR 23(173)): the Hessian of a batch of B samples, H_B = H + ε_B, is the full-batch
Hessian H plus a fluctuation ε_B whose size shrinks like 1/√B; its extremal eigenvalues exceed H's and move towards
them as B grows. Here on scikit-learn's digits with a linear softmax classifier 64 → 10 (with bias, cross-entropy),
whose 650 × 650 Hessian is small enough to know exactly.

A model linear in its parameters θ = (W, b) has no second-order term in its Hessian (it is its Gauss-Newton matrix),
and each sample's Hessian factors exactly (x̃ = (x, 1), p = softmax(W x + b), C classes):

    h_i = (diag p_i − p_i p_iᵀ) ⊗ x̃_i x̃_iᵀ = M_i M_iᵀ,     M_i = R_i ⊗ x̃_i  (n × C),   R_i = (I − p_i 1ᵀ) diag(√p_i).

So H_S = (1/|S|) Σ_{i∈S} h_i = M_S M_Sᵀ / |S| for a batch S, and its nonzero eigenvalues are those of the
Gram matrix M_Sᵀ M_S / |S| (C|S| × C|S|, entries (R_iᵀ R_j)(x̃_i · x̃_j)): for small batches a small exact
eigenproblem, all batches of a partition at once (``batch_top_eigenvalues``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import check_count
from ..hutchinson import rademacher
from ..models import mlp, train_full_batch
from ..operators import as_operator
from ..spectrum import SpectralDensity, lanczos, spectral_density


@dataclass(frozen=True)
class Softmax:
    """A trained linear softmax classifier: ``model`` = Sequential(Linear(d, C)), the losses of its training run."""

    model: nn.Sequential
    losses: list[float]


def train_softmax(inputs: Tensor, targets: Tensor, lr: float = 0.5, num_steps: int = 400,
                  generator: torch.Generator | None = None, progress: bool = False) -> Softmax:
    """A linear softmax classifier Linear(d, C) trained by full-batch gradient descent on (``inputs``, ``targets``).

    Initialise Linear(d, C) as PyTorch does (from ``generator``) and run ``num_steps`` of full-batch gradient descent
    with step ``lr`` on the mean cross-entropy (``progress``: a tqdm bar). Cost: ``num_steps`` gradients of the full
    data.
    """
    num_classes = int(targets.max()) + 1
    model = mlp([inputs.shape[1], num_classes], generator=generator, dtype=inputs.dtype, device=inputs.device)
    run = train_full_batch(model, nn.functional.cross_entropy, inputs, targets, lr=lr, max_steps=num_steps,
                           progress=progress)
    return Softmax(model, run.losses)


# ----------------------------------------------------------------------------------------------------------------------
# exact per-sample factors of the Hessian
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SoftmaxCurvature:
    """Per-sample Hessian factors h_i = (R_i R_iᵀ) ⊗ x̃_i x̃_iᵀ: ``roots`` R (N, C, C), ``features`` x̃ (N, d + 1).

    ``order`` (n,) maps θ's order (W row by row, then b) to the (class, feature) order of the Kronecker products:
    ``H_theta = H_kron[order][:, order]``.
    """

    roots: Tensor
    features: Tensor
    order: Tensor

    @property
    def num_params(self) -> int:
        """n = C (d + 1), the number of parameters."""
        return self.roots.shape[1] * self.features.shape[1]


def softmax_curvature(model: nn.Module, inputs: Tensor) -> SoftmaxCurvature:
    """The exact per-sample Hessian factors of the cross-entropy of a linear softmax ``model`` at ``inputs``.

    R_i = (I − p_i 1ᵀ) diag(√p_i) satisfies R_i R_iᵀ = diag(p_i) − p_i p_iᵀ, the Hessian of the cross-entropy in the
    logits. Cost: one forward pass, O(N C²) memory.
    """
    linear = model[0] if isinstance(model, nn.Sequential) and len(model) == 1 else model
    if not isinstance(linear, nn.Linear) or linear.bias is None:
        raise TypeError("model must be one nn.Linear with a bias (or a Sequential holding only that), the linear "
                        f"softmax classifier of train_softmax; got {type(model).__name__}.")
    weight, bias = linear.weight.detach(), linear.bias.detach()
    probabilities = torch.softmax(inputs @ weight.T + bias, dim=1)  # (N, C)
    num_classes, dim = weight.shape
    eye = torch.eye(num_classes, dtype=inputs.dtype, device=inputs.device)
    roots = (eye - probabilities[:, :, None]) * probabilities.sqrt()[:, None, :]
    features = torch.cat([inputs, torch.ones_like(inputs[:, :1])], dim=1)
    kron = torch.arange(num_classes * (dim + 1), device=inputs.device).view(num_classes, dim + 1)
    order = torch.cat([kron[:, :dim].reshape(-1), kron[:, dim]])
    return SoftmaxCurvature(roots, features, order)


def batch_hessian(curvature: SoftmaxCurvature, index: Tensor | None = None) -> Tensor:
    """The dense Hessian H_S = (1/|S|) Σ_{i∈S} (R_i R_iᵀ) ⊗ x̃_i x̃_iᵀ of the batch ``index`` (all samples if None).

    (n, n) in θ's order — equal to ``hl.hessian`` of the batch's mean cross-entropy. Cost: O(|S| n²).
    """
    roots, features = curvature.roots, curvature.features
    if index is not None:
        _check_index("index", index, 1, roots.shape[0])
        roots, features = roots[index], features[index]
    logit_hessians = roots @ roots.transpose(1, 2)
    n = curvature.num_params
    H = torch.einsum("icd,ie,if->cedf", logit_hessians, features, features).reshape(n, n) / roots.shape[0]
    return H[curvature.order][:, curvature.order]


def batch_top_eigenvalues(curvature: SoftmaxCurvature, batches: Tensor) -> Tensor:
    """λ_max(H_S) for every row S of ``batches`` (num_batches, B) of sample indices, exactly and all at once.

    For C·B < n through the Gram matrix M_Sᵀ M_S / B, entries (R_iᵀ R_j)_{ab} (x̃_i · x̃_j) (C B × C B); otherwise
    through the n × n matrix H_S itself. Cost: one batched symmetric eigenproblem of size min(C B, n).
    """
    _check_index("batches", batches, 2, curvature.roots.shape[0])
    num_batches, size = batches.shape
    roots, features = curvature.roots[batches], curvature.features[batches]  # (b, B, C, C), (b, B, d + 1)
    num_classes, n = roots.shape[-1], curvature.num_params
    if num_classes * size < n:
        gram = torch.einsum("bica,bjcd,bij->biajd", roots, roots, features @ features.transpose(1, 2))
        matrices = gram.reshape(num_batches, num_classes * size, num_classes * size)
    else:
        logit_hessians = roots @ roots.transpose(-1, -2)
        matrices = torch.einsum("bicd,bie,bif->bcedf", logit_hessians, features, features).reshape(num_batches, n, n)
    return torch.linalg.eigvalsh(matrices)[:, -1] / size


# ----------------------------------------------------------------------------------------------------------------------
# λ_max against the batch size
# ----------------------------------------------------------------------------------------------------------------------
def _check_index(name: str, index: Tensor, ndim: int, num_points: int) -> None:
    """``index`` must be a non-empty integer tensor with ``ndim`` dimensions and entries in [0, num_points)."""
    if not isinstance(index, Tensor) or index.dtype.is_floating_point or index.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of sample indices, got "
                        f"{type(index).__name__ if not isinstance(index, Tensor) else index.dtype}.")
    if index.ndim != ndim or index.numel() == 0:
        shape = "(B,)" if ndim == 1 else "(num_batches, B)"
        raise ValueError(f"{name} must be a non-empty {shape} tensor of sample indices, "
                         f"got shape {tuple(index.shape)}.")
    if int(index.min()) < 0 or int(index.max()) >= num_points:
        raise ValueError(f"{name} must hold sample indices in [0, {num_points}), got entries from {int(index.min())} "
                         f"to {int(index.max())}.")


def partition(permutation: Tensor, batch_size: int) -> list[Tensor]:
    """Consecutive chunks of ``permutation``: batches of ``batch_size`` samples and one shorter batch of the rest.

    Chunks of 2B are unions of two chunks of B, so the partitions of one permutation for B, 2B, 4B, … are nested.
    Returns a list of index tensors: one (num_full, B) block, and a (1, r) block when r = N mod B > 0.
    """
    check_count("batch_size", batch_size, 1, permutation.numel(), hint="a batch holds between 1 and all N samples.")
    num_full = permutation.numel() // batch_size
    blocks = [permutation[: num_full * batch_size].view(num_full, batch_size)] if num_full else []
    if permutation.numel() % batch_size:
        blocks.append(permutation[num_full * batch_size:].view(1, -1))
    return blocks


def fluctuation(curvature: SoftmaxCurvature, u: Tensor, batch_sizes: list[int] | tuple[int, ...]) -> Tensor:
    """s_B² = E‖(H_B − H) u‖² for a batch of B samples drawn without replacement, for each B in ``batch_sizes``.

    The size of the mini-batch fluctuation ε_B = H_B − H along the unit vector ``u`` (n,) (θ's order).

    With σ² = (1/N) Σ_i ‖(h_i − H) u‖² (the per-sample spread), sampling without replacement gives
    s_B² = σ² (N − B) / (B (N − 1)): 1/B for small batches, and 0 for the full batch. Here h_i u = (A_i U x̃_i) ⊗ x̃_i
    (U the C × (d + 1) matrix of u), so ‖h_i u‖² = ‖A_i U x̃_i‖² ‖x̃_i‖². Returns (len(batch_sizes),).
    Cost: O(N C (C + d)).
    """
    N = curvature.roots.shape[0]
    for size in batch_sizes:
        check_count("every batch size", size, 1, N, hint="a batch holds between 1 and all N samples.")
    num_classes, width = curvature.roots.shape[1], curvature.features.shape[1]
    if not isinstance(u, Tensor) or u.shape != (curvature.num_params,):
        raise ValueError(f"u must be a vector of the n = {curvature.num_params} parameters, got "
                         f"{tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__}.")
    U = torch.empty_like(u)
    U[curvature.order] = u  # θ's order -> the (class, feature) order
    U = U.view(num_classes, width)
    logit_hessians = curvature.roots @ curvature.roots.transpose(1, 2)
    left = (logit_hessians @ (curvature.features @ U.T)[:, :, None]).squeeze(-1)  # A_i U x̃_i, (N, C)
    mean_product = left.T @ curvature.features / N  # H u as a C × (d + 1) matrix
    spread = (left.square().sum(1) * curvature.features.square().sum(1)).mean() - mean_product.square().sum()
    sizes = torch.as_tensor(batch_sizes, dtype=u.dtype, device=u.device)
    return spread * (N - sizes) / (sizes * (N - 1))


def spiked_wigner(top: float, noise: Tensor) -> Tensor:
    """λ_max(H_B) predicted by a spiked random-matrix model in the spirit of Granziol et al. (2022).

    Model: H_B = H + ε_B with H ≈ λ₁ u₁u₁ᵀ (+ a bulk near 0) and ε_B a Wigner matrix with ‖ε_B u‖² ≈ s_B² along
    every unit vector u. Then (Baik, Ben Arous & Péché 2005; Benaych-Georges & Nadakuditi 2011)

        λ_max(H_B) → λ₁ + s_B² / λ₁   if λ₁ > s_B,       2 s_B   otherwise,

    the paper's λ₁ + Pσ²/(Bλ₁) with Pσ²/B = s_B². ``top`` = λ₁, ``noise`` = s_B² (``fluctuation`` along u₁).
    """
    return torch.where(top**2 > noise, top + noise / top, 2 * noise.sqrt())


def median_batch(curvature: SoftmaxCurvature, permutation: Tensor, batch_size: int) -> Tensor:
    """The batch of size B, among the full batches of ``partition(permutation, B)``, whose λ_max is the median.

    A typical batch, to draw one batch Hessian's spectrum without picking an unusually sharp or flat one.
    Returns its sample indices (B,). Cost: one ``batch_top_eigenvalues`` over the partition.
    """
    check_count("batch_size", batch_size, 1, permutation.numel())
    block = partition(permutation, batch_size)[0]
    tops = batch_top_eigenvalues(curvature, block)
    return block[torch.argsort(tops)[(tops.numel() - 1) // 2]]


@dataclass(frozen=True)
class BatchSizeSweep:
    """λ_max of mini-batch Hessians over random partitions of the data, for each batch size B.

    ``mean_top[k]``: the batch-size-weighted mean of λ_max(H_S) over the batches S of a partition into batches of
    ``batch_sizes[k]``, averaged over ``num_partitions`` random partitions. ``batch_tops[k]``: λ_max of every batch
    of exactly that size (the shorter remainder batches left out). ``top_full``: λ_max(H). ``noise``: s_B², the
    measured mini-batch fluctuation along H's top eigenvector (``fluctuation``); ``prediction``: ``spiked_wigner``.
    """

    batch_sizes: tuple[int, ...]
    mean_top: Tensor
    batch_tops: tuple[Tensor, ...]
    top_full: float
    noise: Tensor
    prediction: Tensor
    num_partitions: int


def batch_size_sweep(curvature: SoftmaxCurvature, batch_sizes: list[int] | tuple[int, ...],
                     num_partitions: int = 1, generator: torch.Generator | None = None,
                     progress: bool = False) -> BatchSizeSweep:
    """For each B of ``batch_sizes``: λ_max of every batch Hessian of random partitions into batches of B.

    ``num_partitions`` times, partition the data at random (from ``generator``) into batches of B (and one
    remainder) and take λ_max of every batch Hessian exactly (``batch_top_eigenvalues``); ``progress``: a tqdm bar.

    One random permutation serves every B of a partition (``partition``), so for B dividing 2B the partitions are
    nested. Convexity of λ_max then makes two statements theorems, not tendencies: λ_max(H) = λ_max(Σ_S (|S|/N) H_S)
    <= Σ_S (|S|/N) λ_max(H_S), and the weighted mean does not increase from B to 2B (each 2B-batch Hessian is the
    weighted mean of two B-batch Hessians).
    Cost per partition and B: one batched eigenproblem of size min(C B, n) per batch.
    """
    N = curvature.roots.shape[0]
    check_count("num_partitions", num_partitions, 1)
    if len(batch_sizes) == 0:
        raise ValueError("batch_sizes is empty; give at least one batch size, e.g. (4, 8, 16).")
    for size in batch_sizes:
        check_count("every batch size", size, 1, N, hint="a batch holds between 1 and all N samples.")
    device = curvature.roots.device
    source = generator.device if generator is not None else device
    sums = torch.zeros(len(batch_sizes), dtype=curvature.roots.dtype, device=device)
    tops: list[list[Tensor]] = [[] for _ in batch_sizes]
    for _ in tqdm(range(num_partitions), desc="partitions", disable=not progress, leave=False):
        permutation = torch.randperm(N, generator=generator, device=source).to(device)
        for k, size in enumerate(batch_sizes):
            for block in partition(permutation, size):
                values = batch_top_eigenvalues(curvature, block)
                sums[k] += block.shape[1] * values.sum()
                if block.shape[1] == size:
                    tops[k].append(values)
    eigenvalues, eigenvectors = torch.linalg.eigh(batch_hessian(curvature))
    top_full = eigenvalues[-1].item()
    noise = fluctuation(curvature, eigenvectors[:, -1], batch_sizes)
    return BatchSizeSweep(tuple(batch_sizes), sums / (N * num_partitions), tuple(torch.cat(t) for t in tops),
                          top_full, noise, spiked_wigner(top_full, noise), num_partitions)


# ----------------------------------------------------------------------------------------------------------------------
# stochastic Lanczos quadrature against the exact spectrum
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DensityComparison:
    """The SLQ density of a Hessian next to its exact eigenvalues, and their moments.

    ``eigenvalues`` (n,) ascending; ``density`` the SLQ quadrature. For k = 0..K (``powers``): ``exact_moments`` =
    tr(H^k)/n, ``slq_moments`` = Σ w θ^k, and ``stderr`` = the standard error of Hutchinson's estimate of tr(H^k)/n
    with the probes used, sqrt(2 (‖H^k‖_F² − ‖diag H^k‖²) / p) / n, which SLQ's moment is for k <= 2m − 1.
    """

    eigenvalues: Tensor
    density: SpectralDensity
    powers: Tensor
    exact_moments: Tensor
    slq_moments: Tensor
    stderr: Tensor


def compare_density(operator, exact: Tensor, num_steps: int, num_probes: int, max_power: int = 4,
                    generator: torch.Generator | None = None) -> DensityComparison:
    """Run SLQ (``hl.spectral_density``) on the matrix-free ``operator`` and compare with the dense ``exact`` matrix.

    Args:
        operator: the Hessian as an ``hl.HessianOperator`` (or any operator hesslab accepts).
        exact: the same Hessian as a dense (n, n) tensor, for the exact eigenvalues and moments.
        num_steps: m, the Lanczos steps on each probe.
        num_probes: p, the number of probes.
        max_power: K, moments k = 0..K.
        generator: for the probes.

    Returns:
        A ``DensityComparison``. Cost: m p products (batched over probes), one dense n × n eigendecomposition.

    Raises:
        ValueError: if ``exact`` is not a square matrix of the operator's size, or ``max_power`` is negative.
    """
    check_count("max_power", max_power, 0)
    operator = as_operator(operator)
    if not isinstance(exact, Tensor) or exact.ndim != 2 or exact.shape[0] != exact.shape[1]:
        raise ValueError(f"exact must be the dense (n, n) Hessian, got "
                         f"{getattr(exact, 'shape', type(exact).__name__)}.")
    if exact.shape[0] != operator.shape[0]:
        raise ValueError(f"exact is {tuple(exact.shape)} but the operator is {tuple(operator.shape)}; pass the same "
                         "Hessian twice, once as an operator and once dense.")
    density = spectral_density(operator, num_steps, num_probes, generator=generator)
    eigenvalues, eigenvectors = torch.linalg.eigh(exact.double())
    powers = torch.arange(max_power + 1)
    n = eigenvalues.numel()
    exact_moments = torch.stack([(eigenvalues**k).mean() for k in powers.tolist()])
    slq_moments = torch.tensor([density.moment(k) for k in powers.tolist()], dtype=torch.float64)
    frobenius = torch.stack([(eigenvalues ** (2 * k)).sum() for k in powers.tolist()])
    diagonal = torch.stack([((eigenvectors**2) @ eigenvalues**k).square().sum() for k in powers.tolist()])
    stderr = (2 * (frobenius - diagonal).clamp_min(0) / num_probes).sqrt() / n
    return DensityComparison(eigenvalues.cpu(), density, powers, exact_moments.cpu(), slq_moments,
                             stderr.cpu())


# ----------------------------------------------------------------------------------------------------------------------
# how fast Lanczos finds the top eigenvalues
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RitzConvergence:
    """Ritz values of one Lanczos run after each step, against the exact top eigenvalues.

    ``steps`` (s,) = k..m; ``ritz`` (s, k) the k largest Ritz values after each step, descending; ``eigenvalues``
    (k,) the exact largest eigenvalues; ``residual`` (s,) the residual norm r = β_j |e_jᵀ y₁| = ‖A y₁ − θ₁ y₁‖ of
    the top Ritz pair (``hl.top_eigen`` stops when r <= tol·|θ₁|: some eigenvalue lies within r of θ₁) and
    ``estimate`` (s,) = min(r, r² / (θ₁ − θ₂)), the sharper a-posteriori error estimate (no knowledge of λ₁ needed;
    the gap comes from the Ritz values, so a not-yet-found eigenvalue can make it too small); ``bound`` (s,) the
    Kaniel-Paige-Saad a-priori bound on λ₁ − θ₁.
    """

    steps: Tensor
    ritz: Tensor
    eigenvalues: Tensor
    residual: Tensor
    estimate: Tensor
    bound: Tensor


def kaniel_paige_bound(eigenvalues: Tensor, cos_angle: float, steps: Tensor) -> Tensor:
    """Saad's (1980) form of the Kaniel-Paige bound after j Lanczos steps from a start vector at angle φ to u₁.

        0 <= λ₁ − θ₁⁽ʲ⁾ <= (λ₁ − λ_n) (tan φ / T_{j−1}(1 + 2γ))²,    γ = (λ₁ − λ₂) / (λ₂ − λ_n),

    T the Chebyshev polynomial (T_k(x) = cosh(k arccosh x) for x >= 1). ``eigenvalues`` descending (n,);
    ``cos_angle`` = cos φ; ``steps`` the j's, one bound each.
    """
    top, second, bottom = eigenvalues[0].item(), eigenvalues[1].item(), eigenvalues[-1].item()
    gamma = (top - second) / max(second - bottom, torch.finfo(torch.float64).tiny)
    tan_angle = math.sqrt(max(1 - cos_angle**2, 0.0)) / max(cos_angle, torch.finfo(torch.float64).tiny)
    chebyshev = torch.cosh((steps.double() - 1) * math.acosh(1 + 2 * gamma))
    return (top - bottom) * (tan_angle / chebyshev) ** 2


def ritz_convergence(exact: Tensor, num_steps: int, k: int = 3,
                     generator: torch.Generator | None = None) -> RitzConvergence:
    """Run ``num_steps`` Lanczos steps on the symmetric matrix ``exact`` (n, n) and record the k largest Ritz values.

    From a random unit start (from ``generator``), after every step j >= k: the k largest Ritz values (eigenvalues of
    the leading j × j block of T).

    Cost: m products, m small tridiagonal eigenproblems, one dense eigendecomposition for the reference.
    """
    if not isinstance(exact, Tensor) or exact.ndim != 2 or exact.shape[0] != exact.shape[1]:
        raise ValueError(f"exact must be a dense symmetric (n, n) matrix, got "
                         f"{getattr(exact, 'shape', type(exact).__name__)}.")
    n = exact.shape[0]
    check_count("k", k, 1, n)
    check_count("num_steps", num_steps, k, n, hint="it must be at least k (k Ritz values need k steps).")
    start = rademacher(n, 1, exact.dtype, exact.device, generator)[:, 0] / math.sqrt(n)
    # one step more than asked, for β_m, the residual of step m; after n steps the residual is exactly 0
    result = lanczos(exact, min(num_steps + 1, n), v0=start, generator=generator)
    alphas, betas = result.alphas.double().cpu(), result.betas.double().cpu()
    betas_with_last = torch.cat([betas, torch.zeros(1, dtype=torch.float64)])
    steps = torch.arange(k, num_steps + 1)
    ritz, residual, estimate = [], [], []
    for j in steps.tolist():
        T = torch.diag(alphas[:j]) + torch.diag(betas[: j - 1], 1) + torch.diag(betas[: j - 1], -1)
        theta, S = torch.linalg.eigh(T)
        ritz.append(theta.flip(0)[:k])
        r = betas_with_last[j - 1].abs() * S[-1, -1].abs()
        gap = theta[-1] - theta[-2] if j > 1 else torch.tensor(math.inf, dtype=torch.float64)
        residual.append(r)
        estimate.append(torch.minimum(r, r**2 / gap.clamp_min(torch.finfo(torch.float64).tiny)))
    eigenvalues, eigenvectors = torch.linalg.eigh(exact.double())
    eigenvalues, top_vector = eigenvalues.flip(0).cpu(), eigenvectors[:, -1]
    cos_angle = abs(float(top_vector @ start.double()))
    return RitzConvergence(steps, torch.stack(ritz), eigenvalues[:k], torch.stack(residual), torch.stack(estimate),
                           kaniel_paige_bound(eigenvalues, cos_angle, steps))
