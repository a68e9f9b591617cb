"""Quantization of a layer: round-to-nearest, sequential OBQ, and GPTQ (its lazy-batch Cholesky form)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_count, check_positive
from ._obs import check_layer, damped, inverse_of


def quantization_grid(weight: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """The asymmetric min-max grid of each row: scale = (max − min)/(2^b − 1), zero = round(−min/scale).

    The grid always contains 0 (min <= 0 <= max). Args: weight (r, c); bits >= 1. Returns (scale, zero), each (r, 1).

    Example:
        >>> scale, zero = quantization_grid(torch.tensor([[-1.0, 0.5, 2.0]]), bits=2)
        >>> scale.item(), zero.item()
        (1.0, 1.0)
    """
    bits = check_count("bits", bits, 1, 16)
    low = weight.amin(dim=1, keepdim=True).clamp(max=0.0)
    high = weight.amax(dim=1, keepdim=True).clamp(min=0.0)
    scale = (high - low) / (2**bits - 1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero row: any scale keeps it 0
    return scale, torch.round(-low / scale)


def quantize(w: Tensor, scale: Tensor, zero: Tensor, bits: int) -> Tensor:
    """The nearest grid point: scale · (clamp(round(w/scale) + zero, 0, 2^b − 1) − zero), for w of scale's rows.

    Example:
        >>> quantize(torch.tensor([[0.4, 1.6, 9.0]]), torch.tensor([[1.0]]), torch.tensor([[1.0]]), bits=2).tolist()
        [[0.0, 2.0, 2.0]]
    """
    levels = torch.clamp(torch.round(w / scale) + zero, 0, 2**bits - 1)
    return scale * (levels - zero)


def _group_grid(W: Tensor, start: int, bits: int, group_size: int | None):
    """The grid of the group starting at ``start`` (per row when group_size is None), from the current W."""
    columns = slice(start, W.shape[1] if group_size is None else start + group_size)
    return quantization_grid(W[:, columns], bits)


def without_dead_inputs(weight: Tensor, H: Tensor) -> Tensor:
    """A copy of W with the columns of dead inputs (H_ii = 0: the input is always 0) set to 0, as GPTQ does."""
    W = weight.clone()
    W[:, torch.diagonal(H) == 0] = 0.0
    return W


def _check_group(group_size, columns: int) -> int | None:
    return None if group_size is None else check_count("group_size", group_size, 1, columns)


def round_to_nearest(weight: Tensor, bits: int, group_size: int | None = None) -> Tensor:
    """Round every weight to its row's (or group's) min-max grid: the baseline of GPTQ. Cost O(r c).

    Args:
        weight: W (r, c).
        bits: bits per weight, 1..16.
        group_size: columns per grid (None: one grid per row).

    Returns:
        Ŵ (r, c) on the grid.

    Example:
        >>> round_to_nearest(torch.tensor([[-1.0, 0.4, 2.0]]), bits=2).tolist()
        [[-1.0, 0.0, 2.0]]
    """
    group_size = _check_group(group_size, weight.shape[1])
    step = weight.shape[1] if group_size is None else group_size
    parts = []
    for start in range(0, weight.shape[1], step):
        scale, zero = _group_grid(weight, start, bits, group_size)
        parts.append(quantize(weight[:, start:start + step], scale, zero, bits))
    return torch.cat(parts, dim=1)


def obq_quantize(weight: Tensor, H: Tensor, bits: int, group_size: int | None = None, damping: float = 0.01) -> Tensor:
    """Quantize the columns in order by Optimal Brain Quantization's update, with the full inverse (the reference).

    For column i, with H⁻¹ the inverse over the columns not yet quantized: q = quant(w_i) and
        W ← W − ((w_i − q) / [H⁻¹]_ii) (H⁻¹ e_i)ᵀ,    H⁻¹ ← H⁻¹ − H⁻¹e_i e_iᵀH⁻¹ / [H⁻¹]_ii
    (Frantar & Alistarh 2022, in GPTQ's fixed order). Cost O(c³ + r c²). GPTQ computes the same in O(c³ + r c²/B)
    memory traffic; this is the readable form that the tests compare it with.

    Args:
        weight: W (r, c).
        H: (c, c) row Hessian.
        bits: bits per weight, 1..16.
        group_size: columns per grid (None: per row).
        damping: H + damping · mean(diag H) · I (GPTQ's 1%).

    Returns:
        Ŵ (r, c).

    Example:
        >>> W, H = torch.tensor([[0.3, 0.3]], dtype=torch.float64), torch.eye(2, dtype=torch.float64)
        >>> obq_quantize(W, H, bits=1).tolist()  # H = I: no feedback between columns, RTN
        [[0.3, 0.3]]
    """
    check_layer(weight, H)
    group_size = _check_group(group_size, weight.shape[1])
    damping = check_positive("damping", damping, allow_zero=True)
    W, H_inv = without_dead_inputs(weight, H), inverse_of(damped(H, damping))
    Q = torch.empty_like(W)
    for i in range(W.shape[1]):
        if group_size is None and i == 0 or group_size is not None and i % group_size == 0:
            scale, zero = _group_grid(W, i, bits, group_size)
        Q[:, i] = quantize(W[:, i:i + 1], scale, zero, bits)[:, 0]
        column, d = H_inv[:, i].clone(), H_inv[i, i]
        W -= torch.outer((W[:, i] - Q[:, i]) / d, column)
        H_inv -= torch.outer(column, column) / d
    return Q


def gptq(weight: Tensor, H: Tensor, bits: int, block_size: int = 128, group_size: int | None = None,
         damping: float = 0.01) -> Tensor:
    """GPTQ (Frantar, Ashkboos, Hoefler & Alistarh, ICLR 2023): columns in order, error fed back through Cholesky.

    With U the upper Cholesky factor of H⁻¹ (H damped by 1% of its mean diagonal), row i of U is the OBQ update
    of column i over the columns left, scaled: U_i,j / U_ii = [H⁻¹_F]_ij / [H⁻¹_F]_ii. So for each column i

        q = quant(w_i),   e = (w_i − q) / U_ii,   W_{:, j} ← W_{:, j} − e U_ij  (j > i),

    applied inside a block of B columns at once and to the later columns once per block (lazy batches:
    W_{:, later} ← W_{:, later} − E U_{block, later}). Per-group grids are taken from the updated weights at
    each group's first column. Cost O(c³) for the factor and O(r c²) for the updates.

    Args:
        weight: W (r, c).
        H: (c, c) row Hessian (``layer_hessian``).
        bits: bits per weight, 1..16.
        block_size: B, columns per lazy block (1: the plain OBQ recursion).
        group_size: columns per grid (None: one grid per row).
        damping: the fraction of the mean diagonal added to H (0.01 in the paper).

    Returns:
        Ŵ (r, c), every entry on its grid.

    Example:
        >>> W = torch.tensor([[0.0, 0.55, 0.25, 1.0]], dtype=torch.float64)  # grid: 0, 1/3, 2/3, 1 (2 bits)
        >>> H = torch.tensor([[4.0, 0, 0, 0], [0, 1.0, 0.9, 0], [0, 0.9, 1.0, 0], [0, 0, 0, 4.0]], dtype=torch.float64)
        >>> [round(v, 4) for v in gptq(W, H, bits=2, damping=0.0)[0].tolist()]  # 0.55 up: 0.25 goes down
        [0.0, 0.6667, 0.0, 1.0]
        >>> [round(v, 4) for v in round_to_nearest(W, bits=2)[0].tolist()]
        [0.0, 0.6667, 0.3333, 1.0]
    """
    check_layer(weight, H)
    block_size = check_count("block_size", block_size, 1)
    group_size = _check_group(group_size, weight.shape[1])
    damping = check_positive("damping", damping, allow_zero=True)
    U = torch.linalg.cholesky(inverse_of(damped(H, damping)), upper=True)
    W, columns = without_dead_inputs(weight, H), weight.shape[1]
    Q = torch.empty_like(W)
    for start in range(0, columns, block_size):
        end = min(start + block_size, columns)
        errors = torch.empty(W.shape[0], end - start, dtype=W.dtype, device=W.device)
        for i in range(start, end):
            if i == 0 or group_size is not None and i % group_size == 0:
                scale, zero = _current_group_grid(W, errors[:, :i - start], U, i, start, end, bits, group_size)
            Q[:, i] = quantize(W[:, i:i + 1], scale, zero, bits)[:, 0]
            error = (W[:, i] - Q[:, i]) / U[i, i]
            W[:, i:end] -= torch.outer(error, U[i, i:end])
            errors[:, i - start] = error
        W[:, end:] -= errors @ U[start:end, end:]
    return Q


def _current_group_grid(W, errors, U, i, start, end, bits, group_size):
    """The grid of the group starting at column i, from its weights with every update so far applied.

    Columns past the block (>= end) still lack the block's lazy update: it is added here, so that the grid (and so
    the result) does not depend on the block size. (The authors' code takes these columns as they are.)
    """
    stop = W.shape[1] if group_size is None else min(i + group_size, W.shape[1])
    group = W[:, i:stop]
    if stop > end and errors.shape[1] > 0:
        group = torch.cat([W[:, i:end], W[:, end:stop] - errors @ U[start:i, end:stop]], dim=1)
    return quantization_grid(group, bits)


def reconstruction_error(weight: Tensor, quantized: Tensor, H: Tensor) -> Tensor:
    """½ Σ_rows δᵀHδ with δ = w − ŵ: ‖(W − Ŵ)Xᵀ‖²_F / N for H = 2XᵀX/N. A 0-d tensor.

    Example:
        >>> reconstruction_error(torch.ones(1, 2), torch.zeros(1, 2), 2 * torch.eye(2)).item()
        2.0
    """
    check_layer(weight, H)
    delta = weight - quantized
    return 0.5 * ((delta @ H) * delta).sum()
