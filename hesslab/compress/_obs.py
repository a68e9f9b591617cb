"""Optimal Brain Surgeon pruning: one layer's quadratic model H = 2XᵀX/N, the global M-FAC model, and magnitude."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_positive, check_real_number


@dataclass(frozen=True)
class PruneResult:
    """The outcome of a pruning: the pruned weight, its mask and the predicted loss increase.

    ``weight`` (the input's shape, pruned entries exactly 0), ``mask`` (bool, True = kept) and
    ``predicted_increase``: the loss increase the quadratic model predicts (per row for a layer,
    (rows,); a 0-d tensor for the global and magnitude prunings: for magnitude the model's ½δᵀHδ when H was given,
    else None).

    Example:
        >>> result = magnitude_prune(torch.tensor([[1.0, -3.0, 2.0, 0.5]]), sparsity=0.5)
        >>> result.weight.tolist(), result.mask.tolist()
        ([[0.0, -3.0, 2.0, 0.0]], [[False, True, True, False]])
    """

    weight: Tensor
    mask: Tensor
    predicted_increase: Tensor | None


def layer_hessian(inputs: Tensor) -> Tensor:
    """H = 2XᵀX/N, the Hessian of one row's reconstruction error ‖(w − ŵ)ᵀxᵢ‖² averaged over the N inputs xᵢ.

    The layer-wise model of Optimal Brain Compression (Frantar & Alistarh 2022) and GPTQ: for a linear layer with
    weight W (r, c) and inputs X (N, c), ‖(W − Ŵ)Xᵀ‖²_F / N = ½ Σ_rows δᵀHδ with δ = w − ŵ. Cost O(N c²).

    Args:
        inputs: X (N, c), the layer's inputs (one row per sample), floating.

    Returns:
        H (c, c).

    Example:
        >>> layer_hessian(torch.tensor([[1.0, 0.0], [1.0, 2.0]])).tolist()
        [[2.0, 2.0], [2.0, 4.0]]
    """
    if not isinstance(inputs, Tensor) or inputs.ndim != 2 or not inputs.is_floating_point() or inputs.shape[0] == 0:
        raise ValueError("inputs must be a floating (N, c) tensor of the layer's inputs, N >= 1, got "
                         f"{type(inputs).__name__} of shape {tuple(getattr(inputs, 'shape', ()))}.")
    return 2 * inputs.T @ inputs / inputs.shape[0]


def damped(H: Tensor, damping: float) -> Tensor:
    """H + damping · mean(diag H) · I, with a dead input (H_ii = 0) given H_ii = 1 (GPTQ's convention)."""
    H = H.clone()
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1.0
    H += damping * torch.diagonal(H).mean() * torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    return H


def check_layer(W: Tensor, H: Tensor) -> None:
    """W a floating (r, c) tensor and H a symmetric (c, c) one of its dtype, or ValueError."""
    if not isinstance(W, Tensor) or W.ndim != 2 or not W.is_floating_point():
        raise ValueError(f"weight must be a floating (rows, columns) tensor, got {type(W).__name__} of shape "
                         f"{tuple(getattr(W, 'shape', ()))}.")
    if not isinstance(H, Tensor) or tuple(H.shape) != (W.shape[1], W.shape[1]) or H.dtype != W.dtype:
        raise ValueError(f"H must be a ({W.shape[1]}, {W.shape[1]}) tensor of dtype {W.dtype} (the Hessian over a "
                         f"row of the weight, e.g. layer_hessian(inputs)), got {tuple(getattr(H, 'shape', ()))}.")


def inverse_of(H: Tensor) -> Tensor:
    """H⁻¹ by Cholesky, or ValueError when H is not positive definite (the fix: damping > 0)."""
    L, info = torch.linalg.cholesky_ex(H)
    if int(info) != 0:
        raise ValueError("H (after damping) is not positive definite: pass damping > 0 (e.g. 0.01, 1% of the mean "
                         "diagonal) or more calibration inputs than columns.")
    return torch.cholesky_inverse(L)


def _pruned_count(sparsity, size: int) -> int:
    sparsity = check_real_number("sparsity", sparsity, 0.0, 1.0, open="high", hint="the fraction of weights to zero.")
    return int(round(sparsity * size))


def obs_prune_layer(weight: Tensor, H: Tensor, sparsity: float, damping: float = 0.0) -> PruneResult:
    """Prune each row of a layer to ``sparsity`` by Optimal Brain Surgeon, one weight at a time (Hassibi & Stork 1993).

    On the quadratic model ½δᵀHδ of each row w, the weight q whose removal costs least, and its best correction:

        saliency_q = w_q² / (2 [H⁻¹]_qq),     δ = −(w_q / [H⁻¹]_qq) H⁻¹ e_q,

    then H⁻¹ ← H⁻¹ − H⁻¹e_q e_qᵀH⁻¹ / [H⁻¹]_qq (the inverse over the weights left), repeated until k = sparsity·c
    weights of the row are zero (OBC's greedy order; Frantar & Alistarh 2022). The summed saliencies are the exact
    increase ½δᵀHδ of the final row on the quadratic. Cost O(k c² r) time, O(r c²) memory.

    Args:
        weight: W (r, c) of a linear layer (y = W x).
        H: the (c, c) Hessian of one row, e.g. ``layer_hessian(inputs)``.
        sparsity: the fraction of each row's weights to zero, in [0, 1).
        damping: H + damping · mean(diag H) · I before inverting (0: exact; 0.01 is OBC's and GPTQ's).

    Returns:
        ``PruneResult`` with ``predicted_increase`` (r,), the summed saliencies of each row.

    Example:
        >>> H = torch.tensor([[2.0, 1.0], [1.0, 2.0]])  # correlated inputs: the kept weight takes over
        >>> result = obs_prune_layer(torch.tensor([[1.0, 0.9]]), H, sparsity=0.5)
        >>> [round(v, 6) for v in result.weight[0].tolist()], round(result.predicted_increase.item(), 6)
        ([1.45, 0.0], 0.6075)
    """
    check_layer(weight, H)
    damping = check_positive("damping", damping, allow_zero=True)
    rows, columns = weight.shape
    k = _pruned_count(sparsity, columns)
    H_inv = inverse_of(damped(H, damping) if damping > 0 else H).expand(rows, columns, columns).clone()
    W = weight.clone()
    mask = torch.ones_like(W, dtype=torch.bool)
    increase = torch.zeros(rows, dtype=W.dtype, device=W.device)
    row = torch.arange(rows, device=W.device)
    for _ in range(k):
        diagonal = torch.diagonal(H_inv, dim1=1, dim2=2)
        saliency = torch.where(mask, W**2 / (2 * diagonal.clamp_min(torch.finfo(W.dtype).tiny)), torch.inf)
        q = saliency.argmin(dim=1)
        column, d_q = H_inv[row, :, q], diagonal[row, q]  # H⁻¹e_q (r, c), [H⁻¹]_qq (r,)
        increase += saliency[row, q]
        W -= (W[row, q] / d_q)[:, None] * column
        H_inv -= column[:, :, None] * column[:, None, :] / d_q[:, None, None]
        mask[row, q] = False
        W[~mask] = 0.0  # exactly zero (the correction leaves rounding there)
    return PruneResult(W, mask, increase)


def global_obs_prune(theta: Tensor, inverse, sparsity: float, candidates: Tensor | None = None) -> PruneResult:
    """Prune a whole network at once on the M-FAC inverse Fisher: OBS with the weights taken as independent.

    saliency_q = θ_q² / (2 [F⁻¹]_qq) over the candidates; the k = sparsity · (number of candidates) lowest are
    removed, and the others corrected by the sum of their single-weight OBS updates (WoodFisher's and M-FAC's
    one-shot pruning; Singh & Alistarh 2020, Frantar et al. 2021):

        δ = −F⁻¹ Σ_{q∈Q} (θ_q / [F⁻¹]_qq) e_q,       then θ_Q = 0.

    Cost: the inverse diagonal (O(m² d)) and one inverse product (O(m d + m²)).

    Args:
        theta: (d,) the flat parameters.
        inverse: a ``hesslab.inverse.WoodburyFisher`` of d parameters (``woodbury_fisher(G, damping)``).
        sparsity: the fraction of the candidates to zero, in [0, 1).
        candidates: bool (d,), True where a parameter may be pruned (e.g. weights, not biases); default all.

    Returns:
        ``PruneResult`` of θ (d,); ``predicted_increase``: the summed saliencies (exact for one weight removed).

    Example:
        >>> from hesslab.inverse import woodbury_fisher
        >>> F_inv = woodbury_fisher(torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64), damping=1.0)
        >>> global_obs_prune(torch.tensor([0.5, 2.0, -1.0], dtype=torch.float64), F_inv, 1 / 3).weight.tolist()
        [0.0, 2.0, -1.0]
    """
    d = theta.shape[0] if isinstance(theta, Tensor) and theta.ndim == 1 else None
    if d is None or getattr(inverse, "shape", None) != (d, d):
        raise ValueError(f"theta must be a (d,) tensor and inverse a WoodburyFisher of d x d, got {type(theta)} and "
                         f"{getattr(inverse, 'shape', type(inverse).__name__)}.")
    candidates = torch.ones(d, dtype=torch.bool, device=theta.device) if candidates is None else candidates
    if not isinstance(candidates, Tensor) or candidates.dtype != torch.bool or candidates.shape != theta.shape:
        raise ValueError(f"candidates must be a bool tensor of theta's shape ({d},), or None.")
    k = _pruned_count(sparsity, int(candidates.sum()))
    diagonal = inverse.inverse_diagonal()
    saliency = torch.where(candidates, theta**2 / (2 * diagonal), torch.inf)
    pruned = torch.zeros(d, dtype=torch.bool, device=theta.device)
    pruned[saliency.argsort()[:k]] = True
    removal = torch.where(pruned, theta / diagonal, torch.zeros_like(theta))
    weight = theta - inverse.inverse_product(removal)
    weight[pruned] = 0.0
    return PruneResult(weight, ~pruned, saliency[pruned].sum())


def magnitude_prune(weight: Tensor, sparsity: float, H: Tensor | None = None) -> PruneResult:
    """Zero the fraction ``sparsity`` of the entries of ``weight`` with the smallest |w| (the baseline; no update).

    Args:
        weight: any floating tensor (a layer's (r, c), or a flat θ).
        sparsity: the fraction to zero, in [0, 1).
        H: optional (c, c) row Hessian of a layer: then ``predicted_increase`` is ½ Σ_rows δᵀHδ.

    Returns:
        ``PruneResult``. Cost O(size · log size).

    Example:
        >>> magnitude_prune(torch.tensor([3.0, -1.0, 2.0]), sparsity=1 / 3).weight.tolist()
        [3.0, 0.0, 2.0]
    """
    if not isinstance(weight, Tensor) or not weight.is_floating_point():
        raise ValueError(f"weight must be a floating tensor, got {type(weight).__name__}.")
    k = _pruned_count(sparsity, weight.numel())
    mask = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
    mask[weight.abs().reshape(-1).argsort()[:k]] = False
    mask = mask.reshape(weight.shape)
    pruned = torch.where(mask, weight, torch.zeros_like(weight))
    increase = None  # no model of the loss without H: nothing is predicted (not a NaN that looks like a number)
    if H is not None:
        check_layer(weight, H)
        delta = pruned - weight
        increase = 0.5 * ((delta @ H) * delta).sum()
    return PruneResult(pruned, mask, increase)
