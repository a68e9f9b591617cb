"""Curvature operators over ``torch.distributed``: each rank holds a shard of the data, the products are global.

With R ranks, rank r holding batches of n_{r,b} samples (N = Σ_{r,b} n_{r,b}), the operator is the same
sample-weighted mean as on one process (``hesslab.batches``)::

    A v = Σ_r Σ_b (n_{r,b} / N) A_{r,b} v          (one all_reduce, a sum over ranks, per product)

Each rank applies its local operator (whose weights n_{r,b} / n_r are rescaled by n_r / N) and one ``all_reduce``
adds the ranks' parts, so every rank holds the same product, to the last bit. The estimators and solvers
(``hl.hutchinson_trace``, ``hl.lanczos``, ``hl.top_eigen``, ``hl.spectral_density``) then run unchanged on every
rank: given the same ``generator`` seed everywhere, every rank draws the same probes, gets the same products and so
returns the same answer, bit for bit. What must hold, and is checked:

* the parameters are the same on every rank (a checksum of θ, at construction);
* every product is asked with the same vectors on every rank (a hash of V travels with the product) — otherwise the
  ranks would be combining products of different vectors: seed the estimators identically, e.g. ``hl.seed(0)``.
  The check is exact, to the last bit: ranks whose arithmetic rounds differently (mixed CPU or GPU types) drift
  apart within a few Lanczos steps and are refused, loudly, rather than combined;
* a rank whose local product fails (e.g. a non-finite Hessian) ends the product on every rank with an error, instead
  of leaving the others waiting in the all_reduce: a status flag travels with the product.

A rank with no data (an empty shard) takes part with weight 0. Nothing here starts processes: run the script under
``torchrun`` and call ``torch.distributed.init_process_group`` first (gloo on CPUs; NCCL with one GPU per rank, the
data and model on ``cuda:<local rank>``). Set ``timeout=`` there so that a rank that dies ends the others.
"""

from __future__ import annotations

import struct
from typing import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ._checks import check_choice, check_count, check_instance, check_like
from .batches import as_batches, is_batch, num_samples
from .functional import flatten_parameters, select_parameters
from .operators import CurvatureOperator, GGNOperator, HessianOperator

KINDS = {"hessian": HessianOperator, "ggn": GGNOperator}


def _checksum(t: Tensor) -> Tensor:
    """Three float64 numbers that differ, with overwhelming probability, when two tensors of one shape differ."""
    flat = t.detach().reshape(-1).double()
    if flat.numel() == 0:
        return torch.zeros(3, dtype=torch.float64, device=t.device)
    ramp = torch.linspace(1.0, 2.0, flat.numel(), dtype=torch.float64, device=t.device)
    return torch.stack([flat.sum(), (flat * flat).sum(), (flat * ramp).sum()])


_HASH_WEIGHTS: dict[tuple[int, str], Tensor] = {}  # fixed random weights per (numel, device), drawn once


def _vector_hash(V: Tensor, world_size: int) -> float:
    """An integer in [0, 2^24 / world_size) from V, so that its sum over the ranks is exact even in float32.

    h = (the bits of the float64 number Σ_i r_i V_i, with fixed random r) mod 2^24 / world_size: the same V gives
    the same h on every rank; two different vectors the same h with probability about world_size / 2^24.
    """
    flat = V.detach().reshape(-1).double()
    key = (flat.numel(), str(flat.device))
    if key not in _HASH_WEIGHTS:
        if len(_HASH_WEIGHTS) > 8:
            _HASH_WEIGHTS.clear()
        _HASH_WEIGHTS[key] = torch.randn(flat.numel(), generator=torch.Generator().manual_seed(0),
                                         dtype=torch.float64).to(flat.device)
    value = float(flat @ _HASH_WEIGHTS[key])
    bits = struct.unpack("<q", struct.pack("<d", value))[0]
    return float(bits % max(2**24 // world_size, 2))


def _same_on_every_rank(values: Tensor, group) -> bool:
    """Whether ``values`` (float64) is equal on every rank of ``group``: one all_reduce of MAX over (v, −v)."""
    both = torch.cat([values, -values])
    dist.all_reduce(both, op=dist.ReduceOp.MAX, group=group)
    k = values.numel()
    return bool(torch.equal(both[:k], -both[k:]))


def _group_checked(process_group):
    """The process group to use (the default one when None); a clear error when torch.distributed is not running."""
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError("torch.distributed is not initialised: call torch.distributed.init_process_group(...) on "
                         "every rank first (e.g. under torchrun), or use the one-process operators.")
    return process_group if process_group is not None else dist.group.WORLD


def _collective_device(group) -> torch.device:
    """Where a small control tensor of ``group`` must live: this rank's GPU for NCCL, the CPU otherwise."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _fail_together(error: Exception | None, group) -> None:
    """Raise on every rank of ``group`` when any rank failed a step: its own ``error`` there, a ValueError elsewhere.

    One all_reduce of the count of failed ranks. It follows a step that may fail on some ranks only (building the
    local operator from the local data), so that no rank is left waiting in a collective the failed one never reaches.
    """
    failed = torch.tensor([0.0 if error is None else 1.0], dtype=torch.float64, device=_collective_device(group))
    dist.all_reduce(failed, group=group)
    if error is not None:
        raise error
    if failed.item() != 0:
        raise ValueError(f"{int(failed.item())} other rank(s) failed to build their part of the operator; their "
                         "error says why.")


def _is_empty_shard(local_data) -> bool:
    """Whether a rank's data holds no samples: None, an empty list or tuple, or one batch of 0 samples."""
    if local_data is None:
        return True
    if is_batch(local_data):
        return num_samples(local_data) == 0  # e.g. the empty slice X[k:k] of a rank past the end of the data
    return isinstance(local_data, (list, tuple)) and len(local_data) == 0


class DistributedOperator(CurvatureOperator):
    """``A = Σ_r (n_r / N) A_r`` over the ranks of a process group; ``op @ v`` is one all_reduce per product.

    Args:
        local: this rank's operator A_r (e.g. ``hl.HessianOperator.from_model`` on the local batches), or None for a
            rank without data (then pass ``n``, ``dtype``, ``device``).
        num_samples: n_r, the samples (target entries) A_r averages over; 0 for an empty shard.
        process_group: the ranks that share the operator (default: all of them).
        n: the dimension, needed only when ``local`` is None.
        dtype: the dtype, needed only when ``local`` is None.
        device: the device, needed only when ``local`` is None.

    Raises:
        ValueError: torch.distributed not initialised; no samples on any rank; the ranks disagree on the dimension;
            on every rank when one rank's arguments are refused (that rank raises its own error).

    Example:
        On one process (a group of one rank, gloo) the operator is the local one:

        >>> import tempfile, torch, torch.distributed as dist, hesslab as hl
        >>> from hesslab.distributed import DistributedOperator
        >>> store = tempfile.NamedTemporaryFile(delete=False).name  # a rendezvous file instead of a port
        >>> dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
        >>> op = DistributedOperator(hl.as_operator(A), num_samples=5)
        >>> (op @ torch.ones(2, dtype=torch.float64)).tolist(), op.num_samples_total
        ([3.0, 3.0], 5)
        >>> dist.destroy_process_group()
    """

    def __init__(self, local: CurvatureOperator | None, num_samples: int, process_group=None, *,
                 n: int | None = None, dtype: torch.dtype | None = None, device=None):
        group = _group_checked(process_group)
        error = None
        try:  # a refused argument on one rank is told to every rank by _fail_together, not left to a hang
            num_samples = check_count("num_samples", num_samples, 0)
            if local is not None:
                check_instance("local", local, CurvatureOperator, hint="e.g. hl.HessianOperator.from_model(...).")
                n, dtype, device = local.shape[0], local.dtype, local.device
            elif n is None or dtype is None or device is None:
                raise ValueError("a rank without a local operator (local=None) must give n, dtype and device, so that "
                                 "it can take part in the products with zeros.")
            elif num_samples:
                raise ValueError(f"local is None but num_samples is {num_samples}; a rank with samples needs its "
                                 "operator.")
        except (ValueError, TypeError) as raised:
            error = raised
        _fail_together(error, group)
        super().__init__(self._global_product, n, dtype, device)
        self.local, self.process_group = local, group
        self.num_samples_local = num_samples
        totals = torch.tensor([float(num_samples), 1.0], dtype=torch.float64, device=self.device)
        dist.all_reduce(totals, group=group)
        self.num_samples_total, self.world_size = int(totals[0]), int(totals[1])
        if self.num_samples_total == 0:
            raise ValueError("no rank has any samples (num_samples is 0 on every rank); give at least one rank data.")
        if not _same_on_every_rank(torch.tensor([float(n)], dtype=torch.float64, device=self.device), group):
            raise ValueError(f"the ranks disagree on the operator's dimension (here n = {n}); build every rank's "
                             "operator from the same model and the same params=.")
        self.weight = num_samples / self.num_samples_total

    def __matmul__(self, v: Tensor) -> Tensor:
        """A v for v (n,), or A V for V (n, k): all k columns in one all_reduce (the local operator batches them)."""
        v = check_like("v", v, self.shape[0], self.dtype, self.device)
        if v.ndim == 2 and v.shape[1] == 0:
            return torch.zeros_like(v)
        return self._global_product(v)  # finite: the local operators check their products, and a failure travels

    matvec = matmat = __matmul__

    def _global_product(self, V: Tensor) -> Tensor:
        """Σ_r (n_r / N) A_r V by one all_reduce, which also carries a status flag and a hash of V.

        The buffer is [n_r/N · A_r V, failed_r, h(V)], summed over the ranks: the status sum counts the ranks that
        failed, and the hash sum equals R · h(V) only when every rank multiplied the same V (h is an integer below
        2^24 / R, exact in every float dtype hesslab uses).
        """
        error = None
        part = torch.zeros_like(V)
        if self.local is not None and self.weight > 0:
            try:
                part = (self.local @ V) * self.weight
            except (ValueError, RuntimeError) as raised:  # told to the other ranks, then raised here
                error = raised
        hashed = _vector_hash(V, self.world_size)
        wide = torch.float32 if part.dtype in (torch.float16, torch.bfloat16) else part.dtype  # the hash stays exact
        tail = torch.tensor([0.0 if error is None else 1.0, hashed], dtype=wide, device=part.device)
        buffer = torch.cat([part.reshape(-1).to(wide), tail])
        dist.all_reduce(buffer, group=self.process_group)
        if error is not None:
            raise error
        if buffer[-2] != 0:
            raise ValueError(f"{int(buffer[-2].item())} other rank(s) failed to compute their part of the product; "
                             "their error says why.")
        if buffer[-1] != self.world_size * hashed:
            raise ValueError("the ranks asked for products with different vectors; an estimator must draw the same "
                             "probes on every rank: pass the same generator seed on each (e.g. generator=hl.seed(0)).")
        return buffer[:-2].reshape(V.shape).to(part.dtype)

    @classmethod
    def from_model(cls, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], local_data,
                   kind: str = "hessian", params: str | Sequence[str] | None = None,
                   process_group=None) -> "DistributedOperator":
        """The Hessian (or GGN) of the mean loss over the data of all ranks, each rank passing its own shard.

        Args:
            model: the model, with the same parameters on every rank (checked); a ``DistributedDataParallel``
                wrapper is unwrapped.
            loss_fn: ``(outputs, targets) -> scalar``, a mean over the batch.
            local_data: this rank's data: one ``(inputs, targets)`` batch, a re-iterable of batches, or None, an
                empty list or a batch of 0 samples (an empty slice) for a rank without data.
            kind: "hessian" or "ggn".
            params: parameter names for a per-layer block (default: all that require grad).
            process_group: the ranks that share the operator (default: all of them).

        Returns:
            The ``DistributedOperator``; every rank must call this, and then every product, together.

        Raises:
            ValueError: the parameters differ between ranks (with the fix), or torch.distributed is not running;
                on every rank when one rank's data or arguments are refused (that rank raises its own error).

        Example:
            >>> import tempfile, torch, torch.distributed as dist, hesslab as hl
            >>> from hesslab.distributed import DistributedOperator
            >>> store = tempfile.NamedTemporaryFile(delete=False).name
            >>> dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
            >>> model = torch.nn.Linear(2, 1, bias=False).double()
            >>> X, y = torch.eye(2, dtype=torch.float64), torch.zeros(2, 1, dtype=torch.float64)
            >>> op = DistributedOperator.from_model(model, torch.nn.functional.mse_loss, (X, y))
            >>> op.to_dense().tolist()  # 2 XᵀX / N with X = I, N = 2
            [[1.0, 0.0], [0.0, 1.0]]
            >>> dist.destroy_process_group()
        """
        group = _group_checked(process_group)
        error, theta, local, count = None, None, None, 0
        try:  # what can fail on one rank only (its data, its arguments): told to every rank by _fail_together
            check_choice("kind", kind, tuple(KINDS))
            if isinstance(model, nn.parallel.DistributedDataParallel):
                model = model.module
            check_instance("model", model, nn.Module)
            theta = flatten_parameters(select_parameters(model, params))
            if not _is_empty_shard(local_data):
                single, batches = as_batches(local_data)
                count = num_samples(single) if single is not None else batches.total
                local = KINDS[kind].from_model(model, loss_fn, local_data, params=params)
        except (ValueError, TypeError, RuntimeError) as raised:
            error = raised
        _fail_together(error, group)
        if not _same_on_every_rank(_checksum(theta), group):
            raise ValueError("the model's parameters differ between ranks; a distributed operator needs the same θ on "
                             "every rank: load the same state_dict (or broadcast rank 0's parameters) first.")
        if local is None:
            return cls(None, 0, group, n=theta.numel(), dtype=theta.dtype, device=theta.device)
        return cls(local, count, group)
