"""The gradient of each sample's loss, g_i = ∇_θ ℓ_i, by ``torch.func.vmap`` of ``torch.func.grad`` over the samples.

The rows g_i make the empirical Fisher (1/N) Σ_i g_i g_iᵀ and the gradients of M-FAC's Woodbury inverse.
"""

from __future__ import annotations

from typing import Callable, Sequence

from torch import Tensor, nn
from torch.func import grad, vmap

from .._checks import (
    check_count,
    check_finite,
    check_instance,
    check_scalar_output,
)
from ._model import (
    call_model,
    check_inputs,
    differentiable_attention,
    flatten_parameters,
    select_parameters,
    warn_if_stochastic,
)


def _num_samples(inputs, targets: Tensor) -> int:
    """N, the leading dimension shared by the inputs (every tensor of a dict) and the targets; else ValueError."""
    check_instance("targets", targets, Tensor)
    sizes = [t.shape[0] if t.ndim else None for t in ([inputs] if isinstance(inputs, Tensor) else inputs.values())]
    sizes.append(targets.shape[0] if targets.ndim else None)
    if None in sizes or len(set(sizes)) != 1:
        raise ValueError(f"inputs and targets must share their first (sample) dimension, got the sizes {sizes} "
                         "(None: a 0-d tensor); pass one batch with the samples along dim 0.")
    return sizes[0]


def per_sample_gradients(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    params: str | Sequence[str] | None = None,
    *,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """The gradient of each sample's loss, ``g_i = ∇_θ ℓ(model(x_i; θ), y_i)``, as the rows of G (N, n).

    ℓ_i is ``loss_fn`` on the batch of one sample i, so for a mean loss f(θ) = (1/N) Σ_i ℓ_i and ∇f = mean of the
    rows; for a sum loss ∇f = their sum. The rows make the empirical Fisher F = (1/N) Gᵀ G and M-FAC's gradients.
    Computed by ``torch.func.vmap`` of ``torch.func.grad`` over the samples (one batched backward, not N).
    Cost: about one backward of the whole batch; memory N·n entries (plus vmap's intermediates for
    ``chunk_size`` samples at a time, default all).

    Args:
        model: any ``nn.Module`` that takes a batch along dim 0 (left unchanged; buffers are copied).
        loss_fn: ``(outputs, targets) -> scalar``, called on one sample's batch of size 1.
        inputs: (N, ...) inputs, a tensor or a dict of tensors sharing N.
        targets: (N, ...) targets.
        params: parameter names that make up θ, default all that require grad.
        chunk_size: samples per vmapped call (lower it when memory is short), default all N.

    Returns:
        ``(G, theta)``: G (N, n) in θ's dtype, checked finite; theta (n,), the detached flat parameters.

    Example:
        Least squares ℓ_i = (θ·x_i − y_i)² has g_i = 2 (θ·x_i − y_i) x_i; at θ = 0 that is −2 y_i x_i:

        >>> import torch, hesslab as hl
        >>> model = torch.nn.Linear(2, 1, bias=False).double()
        >>> torch.nn.init.zeros_(model.weight)  # doctest: +ELLIPSIS
        Parameter containing:...
        >>> X, y = torch.eye(2, dtype=torch.float64), torch.tensor([[1.0], [3.0]], dtype=torch.float64)
        >>> G, theta = hl.per_sample_gradients(model, torch.nn.functional.mse_loss, X, y)
        >>> G.tolist()
        [[-2.0, 0.0], [0.0, -6.0]]
    """
    named = select_parameters(model, params)
    check_inputs(inputs)
    num_samples = _num_samples(inputs, targets)
    if num_samples == 0:
        raise ValueError("per_sample_gradients needs at least one sample, got an empty batch (N = 0).")
    if chunk_size is not None:
        chunk_size = check_count("chunk_size", chunk_size, 1)
    warn_if_stochastic(model)
    theta = flatten_parameters(named)

    def loss_of_one(theta: Tensor, x, y: Tensor) -> Tensor:
        batch_of_one = x.unsqueeze(0) if isinstance(x, Tensor) else {k: t.unsqueeze(0) for k, t in x.items()}
        outputs = call_model(model, named, theta, batch_of_one)
        return check_scalar_output("loss_fn(model(x_i), y_i)", loss_fn(outputs, y.unsqueeze(0)), finite=False)

    with differentiable_attention():
        G = vmap(grad(loss_of_one), in_dims=(None, 0, 0), chunk_size=chunk_size)(theta, inputs, targets)
    G = G.detach()
    check_finite("the per-sample gradients", G)  # a finite loss can still have a NaN gradient (‖x‖ at 0)
    return G, theta
