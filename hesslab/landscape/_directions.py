"""Directions to look at the loss along: the Hessian's top eigenvectors, and filter- or layer-normalised noise.

All directions are flat vectors laid out like ``hl.loss_function``'s θ:

    Hessian axes          v_1, …, v_k, the top-k eigenvectors of H = ∇²L(θ) (``hessian_directions``; Lanczos)
    filter-normalised     d_f ← g_f · ‖θ_f‖ / ‖g_f‖ for every filter f (row of a weight matrix, output channel of a
                          convolution), g ~ N(0, I); biases and other 1-D parameters (batch norm's γ, β) get d = 0
                          (Li, Xu, Taylor, Studer & Goldstein 2018, *Visualizing the Loss Landscape of Neural Nets*)
    layer-normalised      the same with one "filter" per parameter tensor
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .._checks import check_choice, check_flat_vector, check_generator
from ..functional import select_parameters
from ..spectrum import top_eigen

NORMALIZATIONS = ("filter", "layer", None)


def hessian_directions(op, k: int = 2, tol: float = 1e-8,
                       generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """The top-k eigenpairs of a Hessian operator: the axes along which the loss curves most.

    Cost: one Lanczos run, typically a few tens of Hessian-vector products.

    Args:
        op: ``hl.HessianOperator`` (or any symmetric operator / dense tensor).
        k: how many axes.
        tol: relative accuracy of the eigenvalues (``hl.top_eigen``).
        generator: for Lanczos' random start.

    Returns:
        Eigenvalues (k,) descending and unit eigenvectors (n, k); a slice along column i curves like λ_i.

    Example:
        >>> import torch, hesslab as hl
        >>> H = torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64))
        >>> values, vectors = hl.landscape.hessian_directions(H, k=2, generator=torch.Generator().manual_seed(0))
        >>> [round(value, 8) for value in values.tolist()]
        [3.0, 2.0]
        >>> bool(torch.allclose(vectors.abs(), torch.eye(3, dtype=torch.float64)[:, :2]))  # ±e₁, ±e₂
        True
    """
    values, vectors = top_eigen(op, k=k, tol=tol, generator=generator)
    return values, vectors


def random_direction(model: nn.Module, normalization: str | None = "filter", params: str | Sequence[str] | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
    """A Gaussian direction in parameter space, rescaled per filter or per layer to the weights' norms (Li et al. 2018).

    For every weight tensor W (ndim >= 2) with a Gaussian draw G of its shape:
    ``"filter"``: each slice G[i] (row of a linear layer, output channel of a convolution) ← G[i] ‖W[i]‖ / ‖G[i]‖;
    ``"layer"``: G ← G ‖W‖ / ‖G‖; for both, 1-D parameters (biases, batch norm's γ and β) get 0;
    ``None``: the plain N(0, I) draw everywhere.

    Args:
        model: the net; the direction is laid out like ``hl.loss_function(model, ...)``'s θ (same ``params``).
        normalization: "filter", "layer" or None.
        params: parameter names, default all that require grad.
        generator: for the Gaussian draw; drawn on the generator's device and moved to the parameters'.

    Returns:
        d (n,), the parameters' dtype and device. Cost: O(n).

    Example:
        A filter-normalised direction has the weights' filter norms, and 0 on the bias:

        >>> import torch, hesslab as hl
        >>> from hesslab.landscape import filter_norms, random_direction
        >>> model = torch.nn.Linear(3, 2).double()
        >>> d = random_direction(model, "filter", generator=torch.Generator().manual_seed(0))
        >>> X, y = torch.ones(1, 3, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
        >>> theta = hl.loss_function(model, torch.nn.functional.mse_loss, X, y)[1]
        >>> bool(torch.allclose(filter_norms(model, d)[0], filter_norms(model, theta)[0])), d[-2:].tolist()
        (True, [0.0, 0.0])
    """
    check_choice("normalization", normalization, NORMALIZATIONS)
    check_generator("generator", generator)
    pieces = []
    for _, p in select_parameters(model, params):
        draw_on = generator.device if generator is not None else torch.device("cpu")
        g = torch.randn(p.shape, generator=generator, device=draw_on, dtype=torch.float64).to(p.device)
        w = p.detach().to(torch.float64)
        if normalization is None:
            d = g
        elif p.ndim <= 1:
            d = torch.zeros_like(g)
        elif normalization == "layer":
            d = g * (w.norm() / g.norm())
        else:
            w_rows, g_rows = w.reshape(w.shape[0], -1), g.reshape(g.shape[0], -1)
            scale = w_rows.norm(dim=1, keepdim=True) / g_rows.norm(dim=1, keepdim=True)
            d = (g_rows * scale).reshape(p.shape)
        pieces.append(d.to(p.dtype).reshape(-1))
    return torch.cat(pieces)


def filter_norms(model: nn.Module, vector: Tensor, params: str | Sequence[str] | None = None) -> list[Tensor]:
    """The per-filter norms ‖vector_f‖ of a flat vector laid out like θ.

    One tensor per parameter: a weight's per-filter norms, a 1-D parameter's per-entry |·|.
    ``filter_norms(model, d)`` equals ``filter_norms(model, θ)`` for a filter-normalised d on every weight tensor.

    Args:
        model: the net whose parameters lay out ``vector``.
        vector: (n,) flat vector laid out like θ.
        params: parameter names, default all that require grad.

    Returns:
        One tensor per parameter: the norms of a weight's rows (output filters), the |entries| of a 1-D parameter.

    Example:
        >>> import torch
        >>> from hesslab.landscape import filter_norms
        >>> model = torch.nn.Linear(2, 2)  # weight rows (3, 4), (0, 1); bias (−2, 5)
        >>> [norms.tolist() for norms in filter_norms(model, torch.tensor([3.0, 4.0, 0.0, 1.0, -2.0, 5.0]))]
        [[5.0, 1.0], [2.0, 5.0]]
    """
    named = select_parameters(model, params)
    vector = check_flat_vector("vector", vector)
    total = sum(p.numel() for _, p in named)
    if vector.numel() != total:
        raise ValueError(f"vector has {vector.numel()} entries but the chosen parameters have {total}.")
    norms, start = [], 0
    for _, p in named:
        piece = vector[start:start + p.numel()].reshape(p.shape)
        start += p.numel()
        norms.append(piece.reshape(p.shape[0], -1).norm(dim=1) if p.ndim >= 2 else piece.abs())
    return norms
