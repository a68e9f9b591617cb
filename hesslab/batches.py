"""Data for curvature operators: one ``(inputs, targets)`` batch, or a fixed re-iterable of batches.

Over batches b = 1..B with n_b samples each, an operator is the sample-weighted mean of the batch matrices

    A = Σ_b n_b A_b / N,    N = Σ_b n_b,

which is the curvature of the mean loss over all the data **when each batch loss is a mean over its samples**
(``reduction='mean'``). Two things make that formula silently wrong, and both are refused when the operator is made:

* **data that changes between passes** (a shuffling ``DataLoader``, random augmentation, ``drop_last`` with
  shuffling). Every product reads all batches again, so different batches make every product a different matrix.
  The data is read twice and each batch's bytes compared through a hash (memory of one batch).
* **a sum over the batch** (``reduction='sum'``). Then ``A_b`` is n_b times the batch's mean curvature and the
  weighted mean above is no curvature of the data (0.38x the truth in the issue's example). It is detected exactly
  on the first batch: a mean is unchanged when the batch is duplicated (each sample twice), a sum doubles.

n_b is ``targets.numel()``, the number of entries that ``reduction='mean'`` averages in every torch loss (for
class-index targets (N,) or (N, d1, ...) exactly; for (N, C) probability or regression targets C times the number of
samples, a factor that cancels in n_b / N). It is right for batch-first and sequence-first (T, B) targets alike, and
for padded sequences whose length differs between batches; not for ``ignore_index`` or class ``weight``.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Callable

import torch
from torch import Tensor

from ._merging import MERGED_GRAPH_BYTES, concatenated, layout, merge_plan

Batch = tuple[Tensor | Mapping[str, Tensor], Tensor]

# A bound on the batches read from data, so that an endless iterable is an error, not a hang.
MAX_BATCHES = 10**6


def is_batch(item) -> bool:
    """Whether ``item`` is an ``(inputs, targets)`` pair: inputs a tensor or a dict of tensors, targets a tensor.

    Args:
        item: anything.

    Returns:
        True for a tuple or list of two such items, False otherwise.

    Example:
        >>> import torch
        >>> from hesslab.batches import is_batch
        >>> is_batch((torch.ones(4, 3), torch.zeros(4))), is_batch({"x": torch.ones(4, 3)})
        (True, False)
    """
    if not isinstance(item, (tuple, list)) or len(item) != 2 or not isinstance(item[1], Tensor):
        return False
    inputs = item[0]
    return isinstance(inputs, Tensor) or (
        isinstance(inputs, Mapping) and bool(inputs) and all(isinstance(v, Tensor) for v in inputs.values()))


def num_samples(batch: Batch) -> int:
    """n_b: the number of target entries, which a mean-reduction loss averages over (see the module docstring).

    Args:
        batch: an ``(inputs, targets)`` pair.

    Returns:
        ``targets.numel()``.

    Example:
        >>> import torch
        >>> from hesslab.batches import num_samples
        >>> num_samples((torch.ones(4, 3), torch.zeros(4))), num_samples((torch.ones(4, 3), torch.zeros(4, 2)))
        (4, 8)
    """
    return batch[1].numel()


def fingerprint(batch: Batch) -> bytes:
    """A hash of the batch's tensors: their names, dtypes, shapes and bytes (BLAKE2b, 16 bytes).

    Args:
        batch: an ``(inputs, targets)`` pair (inputs a tensor or a dict of tensors).

    Returns:
        16 bytes; equal batches give equal fingerprints. Cost: one pass over the batch's bytes.

    Example:
        >>> import torch
        >>> from hesslab.batches import fingerprint
        >>> X, y = torch.ones(4, 3), torch.zeros(4)
        >>> len(fingerprint((X, y))), fingerprint((X, y)) == fingerprint((X.clone(), y))
        (16, True)
        >>> fingerprint((X, y + 1)) == fingerprint((X, y))
        False
    """
    inputs, targets = batch
    named = sorted(inputs.items()) if isinstance(inputs, Mapping) else [("", inputs)]
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in [*named, ("targets", targets)]:
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        flat = tensor.detach().reshape(-1).contiguous().cpu()
        digest.update(flat.view(torch.uint8).numpy() if flat.numel() else b"")
    return digest.digest()


def check_batch(batch, where: str) -> Batch:
    """Check one batch of the data: an ``(inputs, targets)`` pair with at least one sample.

    Args:
        batch: the item the data gave.
        where: where it came from, for the error message (e.g. "at position 3").

    Returns:
        The batch as a tuple.

    Raises:
        TypeError: when it is not an ``(inputs, targets)`` pair.
        ValueError: when it has no samples.

    Example:
        >>> import torch
        >>> from hesslab.batches import check_batch
        >>> len(check_batch([torch.ones(2, 3), torch.zeros(2)], "at position 0"))
        2
        >>> check_batch((torch.ones(0, 3), torch.zeros(0)), "at position 0")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: data holds an empty batch (0 samples) at position 0; ...
    """
    if not is_batch(batch):
        raise TypeError(
            f"every batch must be an (inputs, targets) pair (inputs a tensor or a dict of tensors, targets a tensor), "
            f"got {type(batch).__name__} {where}."
        )
    if num_samples(batch) == 0:
        raise ValueError(f"data holds an empty batch (0 samples) {where}; the mean loss of no samples is undefined, "
                         "drop it.")
    return tuple(batch)


def read(data, what: str, on_first: Callable[[Batch], None] | None = None) -> tuple[list[int], list[bytes], list]:
    """One pass over the data: each batch checked, its n_b, fingerprint and ``_merging.layout``.

    ``on_first(batch)`` is called on the first batch (while it is there). At most ``MAX_BATCHES`` batches.

    Args:
        data: an iterable of ``(inputs, targets)`` pairs.
        what: the name of the pass, for the error message ("first", "second").
        on_first: called with the first batch, or None.

    Returns:
        ``(sizes, hashes, layouts)``: n_b, ``fingerprint`` and ``(layout, first dimension)`` of every batch, in order.

    Example:
        >>> import torch
        >>> from hesslab.batches import read
        >>> sizes, hashes, layouts = read([(torch.ones(2, 3), torch.zeros(2)), (torch.ones(1, 3), torch.zeros(1))],
        ...                               "first")
        >>> sizes, len(hashes), [length for _, length in layouts]
        ([2, 1], 2, [2, 1])
    """
    sizes, hashes, layouts = [], [], []
    for index, batch in enumerate(data):
        if index == MAX_BATCHES:
            raise ValueError(f"data yielded more than {MAX_BATCHES} batches on its {what} pass; an operator reads "
                             "all of it on every product, so it must be finite (is it an endless stream?).")
        batch = check_batch(batch, f"at position {index}")
        sizes.append(num_samples(batch))
        hashes.append(fingerprint(batch))
        layouts.append((layout(batch), batch[1].shape[0] if batch[1].ndim else 1))
        if index == 0 and on_first is not None:
            on_first(batch)
    return sizes, hashes, layouts


class Batches:
    """A re-iterable of batches, checked to give the same batches on every pass; iterating yields (n_b / N, batch).

    Each pass also checks the count and sizes of the batches against the first (cheap), so data that changes after
    the operator was made is an error too, if it changes them. ``check_first(batch)`` runs on the first batch of the
    first pass (the sum-over-the-batch check).

    Args:
        data: a re-iterable of ``(inputs, targets)`` pairs (a list, a DataLoader without shuffling).
        check_first: called with the first batch of the first pass, or None.

    Raises:
        ValueError: when the data has no batches, or two passes give different batches.

    Example:
        >>> import torch
        >>> from hesslab.batches import Batches
        >>> X, y = torch.ones(4, 3), torch.zeros(4)
        >>> batches = Batches([(X[:1], y[:1]), (X[1:], y[1:])])
        >>> len(batches), [weight for weight, _ in batches]  # n_b / N
        (2, [0.25, 0.75])
    """

    def __init__(self, data: Iterable[Batch], check_first: Callable[[Batch], None] | None = None):
        self.data = data
        self.sizes, first, self.layouts = read(data, "first", check_first)
        if not self.sizes:
            raise ValueError("data has no batches; give at least one (inputs, targets) pair.")
        sizes, second, _ = read(data, "second")
        if sizes != self.sizes or second != first:
            raise ValueError(
                f"data gave different batches on two passes ({describe_difference(self.sizes, sizes, first, second)})."
                " A curvature operator is one fixed matrix, and every product reads all batches again, so it needs "
                "the same batches in the same order on every pass. Use a DataLoader with shuffle=False and no random "
                "transforms, or pass a list of batches, e.g. list(loader)."
            )
        self.total = sum(self.sizes)
        self.groups = [range(index, index + 1) for index in range(len(self.sizes))]  # every batch its own piece

    def __len__(self) -> int:
        return len(self.sizes)

    def __iter__(self) -> Iterator[tuple[float, Batch]]:
        """(weight, batch) per group of ``self.groups``: Σ n_b / N over the group, its batches concatenated."""
        count, pending = 0, []
        ends = {group.stop - 1: group for group in self.groups}
        for index, batch in enumerate(self.data):
            if index >= len(self.sizes) or num_samples(batch) != self.sizes[index]:
                raise self.changed()
            pending.append(tuple(batch))
            if index in ends:
                weight = sum(self.sizes[i] for i in ends[index]) / self.total
                yield weight, concatenated(pending)
                pending = []
            count += 1
        if count != len(self.sizes):
            raise self.changed()

    def merge(self, samples_per_graph: int, graph_bytes: Callable[[Batch], int],
              keeps_the_matrix: Callable[[Batch, list[tuple[int, Batch]]], bool]) -> None:
        """Group consecutive batches (``_merging.merge_plan``) if the first group passes ``keeps_the_matrix``.

        The groups hold at most ``samples_per_graph`` samples, and at most ``MERGED_GRAPH_BYTES`` of graph at the
        first batch's ``graph_bytes(batch)`` per sample. ``keeps_the_matrix(merged, parts)`` gets the first group
        of two or more batches, concatenated, and its batches with their n_b, and says whether the merged batch's
        matrix is their weighted mean (``_merging.merging_keeps_the_matrix``). If not, or if no two batches can be
        merged, every batch stays its own group. Cost: reading the data up to that group.

        Args:
            samples_per_graph: the most samples (first dimension) in a merged group; 1 merges nothing.
            graph_bytes: the bytes a batch's graph holds.
            keeps_the_matrix: the check, see above.
        """
        kinds, lengths = [kind for kind, _ in self.layouts], [length for _, length in self.layouts]
        if samples_per_graph <= 1 or len(merge_plan(kinds, lengths, samples_per_graph)) == len(self):
            return
        per_sample = graph_bytes(tuple(next(iter(self.data)))) / lengths[0]
        plan = merge_plan(kinds, lengths, min(samples_per_graph, int(MERGED_GRAPH_BYTES // max(per_sample, 1.0))))
        first = next((group for group in plan if len(group) > 1), None)
        if first is None:
            return
        parts = [(self.sizes[index], tuple(batch)) for index, batch in zip(range(first.stop), self.data)
                 if index in first]
        if keeps_the_matrix(concatenated([batch for _, batch in parts]), parts):
            self.groups = plan

    def changed(self) -> ValueError:
        """The error for data that no longer gives the batches it gave when the operator was made.

        Returns:
            The ``ValueError`` (to be raised), naming the batch count and sizes it had.

        Example:
            >>> import torch
            >>> from hesslab.batches import Batches
            >>> print(Batches([(torch.ones(2, 3), torch.zeros(2))]).changed())  # doctest: +ELLIPSIS
            data no longer gives the 1 batches of [2] samples it gave when the operator was made; ...
        """
        return ValueError(
            f"data no longer gives the {len(self.sizes)} batches of {self.sizes[:5]}{'...' if len(self) > 5 else ''} "
            "samples it gave when the operator was made; a curvature operator needs the same batches on every product."
        )


def describe_difference(sizes_1: list[int], sizes_2: list[int], hashes_1: list[bytes], hashes_2: list[bytes]) -> str:
    """Say how two passes over the data differ: in the number of batches, or the first batch that changed.

    Args:
        sizes_1: n_b of every batch on the first pass.
        sizes_2: n_b of every batch on the second pass.
        hashes_1: fingerprints on the first pass.
        hashes_2: fingerprints on the second pass (the passes must differ).

    Returns:
        A short description, for an error message.

    Example:
        >>> from hesslab.batches import describe_difference
        >>> describe_difference([2, 2], [2], [b"a", b"b"], [b"a"])
        '2 batches, then 1'
        >>> describe_difference([2, 2], [2, 2], [b"a", b"b"], [b"a", b"c"])
        'batch 1 differs, with 2 then 2 samples'
    """
    if len(sizes_1) != len(sizes_2):
        return f"{len(sizes_1)} batches, then {len(sizes_2)}"
    index = next(i for i, (a, b) in enumerate(zip(hashes_1, hashes_2)) if a != b)
    return f"batch {index} differs, with {sizes_1[index]} then {sizes_2[index]} samples"


def as_batches(data, check_first: Callable[[Batch], None] | None = None) -> tuple[Batch | None, Batches | None]:
    """Tell one batch from a re-iterable of batches.

    ``(batch, None)`` for one (inputs, targets) pair, ``(None, Batches(data, check_first))`` for a re-iterable of
    pairs (``check_first`` is not run on a single batch: its loss, mean or sum, is a function like any other).

    Args:
        data: one ``(inputs, targets)`` pair, or a re-iterable of them (not a one-shot iterator).
        check_first: run on the first of several batches (``Batches``), or None.

    Returns:
        ``(batch, None)`` or ``(None, batches)``.

    Raises:
        TypeError: for anything else, a one-shot iterator included (every product reads all batches again).

    Example:
        >>> import torch
        >>> from hesslab.batches import as_batches
        >>> X, y = torch.ones(4, 3), torch.zeros(4)
        >>> single, batches = as_batches((X, y))
        >>> batches is None, len(as_batches([(X, y), (X, y)])[1])
        (True, 2)
    """
    if is_batch(data):
        return check_batch(data, "(the one batch given)"), None
    if isinstance(data, Tensor) or not isinstance(data, Iterable):
        raise TypeError(
            "data must be an (inputs, targets) pair (inputs a tensor or a dict of tensors) or an iterable of such "
            f"pairs, got {type(data).__name__}."
        )
    if iter(data) is data:
        raise TypeError(
            "data is a one-shot iterator (e.g. a generator); every product reads all batches again, so pass a list of "
            "batches or a DataLoader."
        )
    warn_if_drop_last(data)
    return None, Batches(data, check_first)


def warn_if_drop_last(data) -> None:
    """Warn about a DataLoader with ``drop_last`` that drops samples.

    The operator then leaves them out (without shuffling the same ones each pass, so it is still one matrix, of
    the kept samples).

    Args:
        data: the data given to the operator (anything without ``drop_last`` is silent).

    Example:
        >>> import torch, warnings
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from hesslab.batches import warn_if_drop_last
        >>> loader = DataLoader(TensorDataset(torch.ones(5, 3), torch.zeros(5)), batch_size=2, drop_last=True)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_if_drop_last(loader)  # 5 samples in batches of 2: the fifth is dropped
        >>> len(caught)
        1
    """
    drop_last, batch_size = getattr(data, "drop_last", False), getattr(data, "batch_size", None)
    dataset = getattr(data, "dataset", None)
    if drop_last and batch_size and hasattr(dataset, "__len__") and len(dataset) % batch_size:
        warnings.warn(
            f"the DataLoader drops its last {len(dataset) % batch_size} samples (drop_last=True): the operator is the "
            "curvature of the other samples only. Use drop_last=False for all of them.",
            UserWarning, stacklevel=4,
        )


# ----------------------------------------------------------------------------------------------------------------------
# mean or sum over the batch
# ----------------------------------------------------------------------------------------------------------------------
def duplicated(outputs: Tensor, targets: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """The batch with every sample twice: outputs concatenated with themselves along ``dim``, targets along 0.

    Args:
        outputs: the model's outputs on the batch.
        targets: the batch's targets, samples along dimension 0.
        dim: the samples' dimension of ``outputs``.

    Returns:
        ``(outputs twice, targets twice)``.

    Example:
        >>> import torch
        >>> from hesslab.batches import duplicated
        >>> outputs, targets = duplicated(torch.ones(3, 2), torch.zeros(3), 0)
        >>> outputs.shape, targets.shape
        (torch.Size([6, 2]), torch.Size([6]))
    """
    return torch.cat([outputs, outputs], dim=dim), torch.cat([targets, targets], dim=0)


def check_mean_reduction(loss_fn: Callable[[Tensor, Tensor], Tensor], outputs, targets: Tensor) -> None:
    """Refuse a loss that sums over the batch; warn about one that is neither a mean nor a sum.

    With the batch duplicated, a mean over samples is unchanged, ``L₂ = L``, and a sum doubles, ``L₂ = 2L``. The
    two differ by a factor 2, so a relative tolerance far below 1 separates them; ``tol = 64 ε`` (clipped to
    [1e-4, 0.25]) leaves room for the rounding of the two reductions in the outputs' dtype. The samples' axis of
    the outputs is the first one whose length is targets' leading length that the loss accepts duplicated (0 for
    batch-first outputs, 1 for sequence-first (T, B, C)). Outputs that are not a tensor, a loss that rejects every
    duplicated batch, or a loss of 0 are not checked.

    Args:
        loss_fn: ``(outputs, targets) -> scalar``.
        outputs: the model's outputs on the first batch.
        targets: that batch's targets.

    Raises:
        ValueError: when the loss doubles with the batch (a sum); a loss that changes by another factor is warned.

    Example:
        >>> import torch
        >>> from hesslab.batches import check_mean_reduction
        >>> outputs, targets = torch.ones(3, 2, dtype=torch.float64), torch.zeros(3, 2, dtype=torch.float64)
        >>> check_mean_reduction(torch.nn.functional.mse_loss, outputs, targets)  # a mean: accepted
        >>> check_mean_reduction(torch.nn.MSELoss(reduction="sum"), outputs, targets)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: loss_fn sums over the batch (its value doubles when every sample is repeated): ...
    """
    if not isinstance(outputs, Tensor) or targets.ndim == 0 or not outputs.is_floating_point():
        return
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loss's own warnings (e.g. broadcasting) were or will be shown once
        loss = loss_fn(outputs, targets)
        if not isinstance(loss, Tensor) or loss.numel() != 1 or not torch.isfinite(loss) or loss == 0:
            return
        loss = float(loss)
        doubled = None
        for dim in (d for d in range(outputs.ndim) if outputs.shape[d] == targets.shape[0]):
            try:
                value = loss_fn(*duplicated(outputs, targets, dim))
            except (RuntimeError, ValueError, IndexError):  # not the samples' axis (shapes do not match)
                continue
            if isinstance(value, Tensor) and value.numel() == 1:
                doubled = float(value)
                break
    if doubled is None:
        return
    eps = torch.finfo(outputs.dtype).eps
    tol = min(0.25, max(1e-4, 64 * eps))
    ratio = doubled / loss
    if abs(ratio - 1) <= tol:
        return
    if abs(ratio - 2) <= tol:
        raise ValueError(
            "loss_fn sums over the batch (its value doubles when every sample is repeated): over several batches the "
            "operator is the sample-weighted mean Σ n_b A_b / N of the batch curvatures, which for a sum is no "
            "curvature of the data. Use a mean, e.g. reduction='mean' (then the operator is the curvature of the "
            "mean loss over all samples; multiply by N for the summed loss), or pass one batch, whose sum loss is "
            "a function like any other."
        )
    if math.isfinite(ratio):
        warnings.warn(
            f"loss_fn is neither a mean nor a sum over the batch (repeating every sample changes it by {ratio:.4g}x, "
            "not 1x or 2x): the operator over batches is Σ n_b A_b / N of the batch losses' curvatures, which need "
            "not be the curvature of the loss on all the data at once.",
            UserWarning, stacklevel=4,
        )
