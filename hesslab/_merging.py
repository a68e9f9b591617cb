"""Merging small batches into one graph: the same operator in fewer, larger products.

Over batches an operator is ``A = Σ_b n_b A_b / N`` (``hesslab.batches``), one gradient graph per batch and one
backward pass per batch and column. On small batches (a few hundred samples) each backward pass is dominated by
the fixed cost of its operations, not by their arithmetic, so B batches cost up to B times one batch of all their
samples (1.5x for 3 batches of 256 on a 2-core CPU, 2x for batches of 64). When the loss is a mean over samples that
the model treats independently, the concatenated batch b₁ ∪ … ∪ b_k has exactly the matrix

    A(b₁ ∪ … ∪ b_k) = Σ_j n_j A(b_j) / Σ_j n_j,

so consecutive batches are concatenated along their first dimension into groups of up to ``samples_per_graph``
samples, and of at most ``MERGED_GRAPH_BYTES`` (1 GiB) of saved tensors at the first batch's bytes per sample
(``saved_bytes``). That equation is *checked* before any merging, on the first group: both sides times one
Gaussian vector must agree to rounding (a nonzero difference of the matrices is seen by a random vector with
probability one). A model that mixes samples (batch norm in training mode, even with γ = 0, where the loss itself
does not change), sequence-first data whose first dimension is time, class weights or ``ignore_index`` break it,
and then every batch stays its own graph.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import torch
from torch import Tensor

# The largest group of merged batches, in samples (the default of ``from_model``'s ``samples_per_graph``).
SAMPLES_PER_GRAPH = 1024
# Merging never builds a graph holding more than this, as estimated from the first batch's graph per sample.
MERGED_GRAPH_BYTES = 2**30

T = TypeVar("T")


def layout(batch) -> tuple | None:
    """What two batches must share to be concatenated: names, dtypes, devices and shapes past the first dimension.

    Args:
        batch: an ``(inputs, targets)`` pair, inputs a tensor or a dict of tensors.

    Returns:
        A hashable description, or None when the batch cannot be concatenated (a 0-d tensor, or tensors whose first
        dimensions differ: then it is not the samples' dimension of all of them).

    Example:
        >>> import torch
        >>> from hesslab._merging import layout
        >>> layout((torch.ones(4, 3), torch.zeros(4))) == layout((torch.ones(2, 3), torch.zeros(2)))
        True
        >>> layout((torch.ones(4, 3), torch.zeros(4, 5))) == layout((torch.ones(4, 3), torch.zeros(4))), layout(
        ...     (torch.ones(5, 4, 3), torch.zeros(4)))  # (T, B, F) inputs, (B,) targets: not along one dimension
        (False, None)
    """
    inputs, targets = batch
    named = sorted(inputs.items()) if isinstance(inputs, Mapping) else [("", inputs)]
    tensors = [*named, ("targets", targets)]
    if any(tensor.ndim == 0 for _, tensor in tensors) or len({tensor.shape[0] for _, tensor in tensors}) != 1:
        return None
    return tuple((name, tensor.dtype, tensor.device, tuple(tensor.shape[1:])) for name, tensor in tensors)


def merge_plan(layouts: Sequence[tuple | None], lengths: Sequence[int], samples_per_graph: int) -> list[range]:
    """Groups of consecutive batches to concatenate: one layout each, at most ``samples_per_graph`` samples.

    Greedy from the first batch; a batch with no layout (None), or with more samples than the limit, stays alone.

    Args:
        layouts: ``layout(batch)`` of every batch, in order.
        lengths: every batch's first dimension (its samples).
        samples_per_graph: the most samples in a group of two or more batches.

    Returns:
        The groups as ranges of batch indices, covering 0..B−1 in order.

    Example:
        >>> from hesslab._merging import merge_plan
        >>> merge_plan(["a", "a", "a", "b", None, None], [256, 256, 256, 256, 8, 8], 600)
        [range(0, 2), range(2, 3), range(3, 4), range(4, 5), range(5, 6)]
    """
    groups: list[range] = []
    start, total = 0, 0
    for index, (kind, length) in enumerate(zip(layouts, lengths)):
        if index > start and (kind is None or kind != layouts[start] or total + length > samples_per_graph):
            groups.append(range(start, index))
            start, total = index, 0
        total += length
    groups.append(range(start, len(layouts)))
    return groups


def concatenated(batches: Sequence) -> tuple:
    """The batches as one: every tensor (each input of a dict alike) concatenated along dimension 0.

    Args:
        batches: ``(inputs, targets)`` pairs of one ``layout``.

    Returns:
        One ``(inputs, targets)`` pair (the batch itself when there is one).

    Example:
        >>> import torch
        >>> from hesslab._merging import concatenated
        >>> inputs, targets = concatenated([({"x": torch.ones(2, 3)}, torch.zeros(2)), ({"x": torch.ones(1, 3)},
        ...                                                                              torch.ones(1))])
        >>> inputs["x"].shape, targets.tolist()
        (torch.Size([3, 3]), [0.0, 0.0, 1.0])
    """
    if len(batches) == 1:
        return tuple(batches[0])
    first = batches[0][0]
    if isinstance(first, Mapping):
        inputs = {name: torch.cat([b[0][name] for b in batches]) for name in first}
    else:
        inputs = torch.cat([b[0] for b in batches])
    return inputs, torch.cat([b[1] for b in batches])


def same_product(merged: Tensor, weighted: Tensor) -> bool:
    """Whether the merged batch's product equals the sample-weighted mean of its batches' products, up to rounding.

    ``‖merged − weighted‖ <= 1024 ε ‖merged‖`` (ε of the dtype: 2e-13 in float64, 1e-4 in float32); rounding is far
    below that, what batch statistics or a wrong samples' dimension change far above. A product that fails only by
    rounding costs speed (no merging), never correctness. Half precisions are never merged.

    Args:
        merged: A(merged batch) v, a tensor.
        weighted: ``Σ_j n_j A(b_j) v / Σ_j n_j``, the same shape.

    Returns:
        True when they agree (and are finite).

    Example:
        >>> import torch
        >>> from hesslab._merging import same_product
        >>> v = torch.tensor([0.3, -1.0], dtype=torch.float64)
        >>> same_product(v, v * (1 + 1e-15)), same_product(v, v * (1 + 1e-6))
        (True, False)
    """
    if merged.dtype not in (torch.float32, torch.float64):
        return False
    if not (merged.isfinite().all() and weighted.isfinite().all()):
        return False
    tol = 1024 * torch.finfo(merged.dtype).eps
    return bool((merged - weighted).norm() <= tol * merged.norm())


def merging_keeps_the_matrix(product_on: Callable[[tuple], Callable[[Tensor], Tensor]], merged: tuple,
                             parts: list[tuple[int, tuple]], x: Tensor) -> bool:
    """Whether ``A(merged) v = Σ_j n_j A(b_j) v / Σ_j n_j`` for one Gaussian v (seed 0): the check before merging.

    Args:
        product_on: ``batch -> (v -> A(batch) v)``, as in ``operators.CurvatureOperator._over_batches``.
        merged: the group's batches concatenated.
        parts: ``(n_j, b_j)`` for the group's batches.
        x: the point (n,), for v's size, dtype and device.

    Returns:
        ``same_product`` of the two sides. Cost: one product on the group, one on each of its batches.

    Example:
        Least squares, A(b) = XᵀX / n_b: a mean over samples merges; a sum over them (XᵀX) does not.

        >>> import torch
        >>> from hesslab._merging import concatenated, merging_keeps_the_matrix
        >>> g = torch.Generator().manual_seed(0)
        >>> parts = [(n, (torch.randn(n, 3, generator=g, dtype=torch.float64), torch.zeros(n))) for n in (2, 3)]
        >>> merged, x = concatenated([batch for _, batch in parts]), torch.zeros(3, dtype=torch.float64)
        >>> mean = lambda batch: lambda v: batch[0].T @ (batch[0] @ v) / len(batch[0])
        >>> total = lambda batch: lambda v: batch[0].T @ (batch[0] @ v)
        >>> merging_keeps_the_matrix(mean, merged, parts, x), merging_keeps_the_matrix(total, merged, parts, x)
        (True, False)
    """
    v = torch.randn(x.numel(), generator=torch.Generator(x.device).manual_seed(0), dtype=x.dtype, device=x.device)
    whole = product_on(merged)(v)
    weighted = sum(n * product_on(batch)(v) for n, batch in parts) / sum(n for n, _ in parts)
    return same_product(whole, weighted)


def saved_bytes(build: Callable[[], T]) -> tuple[T, int]:
    """``build()``, and the bytes of the tensors autograd saved for backward while it ran: the graph's memory.

    Each storage is counted once (views share one); tensors saved by later calls of what ``build`` returns (e.g.
    each product's backward) are not counted.

    Args:
        build: a function that builds a graph, e.g. ``lambda: hvp_at(f, x)``.

    Returns:
        ``(build(), bytes)``.

    Example:
        >>> import torch
        >>> from hesslab._merging import saved_bytes
        >>> x = torch.ones(1000, dtype=torch.float64, requires_grad=True)
        >>> y, held = saved_bytes(lambda: (x.sin() ** 2).sum())  # sin saves x, the square saves sin x: 8000 bytes each
        >>> held
        16000
    """
    storages: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = build()
    return result, sum(storages.values())
