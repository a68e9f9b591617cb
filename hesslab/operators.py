"""Matrix-free curvature: a symmetric n×n matrix known only through its products ``A V``.

``HessianOperator`` (A = ∇²f(x)) and ``GGNOperator`` (A = Jᵀ H_L J) fix the point x once and then answer
``op @ v`` for v (n,) or V (n, k) — the only thing Hutchinson, Lanczos and SciPy's ``eigsh`` need. Over an iterable
of batches the operator is the batch-size-weighted mean ``A = Σ_b n_b A_b / Σ_b n_b``, applied one batch at a time
(memory of one batch). Idea after curvlinops (scipy linear operators for curvature), with a much smaller surface.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import Tensor, nn

from .checks import check_count, check_flat_vector, check_like
from .exact import default_chunk_size, dense_matrix
from .functional import ggnvp_at, hvp_at, loss_function, output_function, select_parameters, flatten_parameters

Batch = tuple[Tensor, Tensor]


class CurvatureOperator:
    """A symmetric (n, n) matrix A given by ``product(V) = A V``.

    ``op @ v`` accepts v (n,) or V (n, k) in the operator's dtype and device; the k columns go through the product
    ``chunk_size`` at a time (batched). ``to_dense()`` builds the matrix (n products, memory guard included) and
    ``to_scipy()`` wraps the operator for ``scipy.sparse.linalg`` (``eigsh(op.to_scipy(), k=5)``).
    """

    def __init__(self, product: Callable[[Tensor], Tensor], n: int, dtype: torch.dtype, device: torch.device,
                 chunk_size: int | None = None):
        self._product = product
        self.shape = (n, n)
        self.dtype = dtype
        self.device = torch.device(device)
        self.chunk_size = (default_chunk_size(n, dtype, device) if chunk_size is None
                           else check_count("chunk_size", chunk_size, 1))

    def __matmul__(self, v: Tensor) -> Tensor:
        """A v for v (n,), or A V for V (n, k)."""
        v = check_like("v", v, self.shape[0], self.dtype, self.device)
        if v.ndim == 1:
            return self._product(v)
        if v.shape[1] == 1:
            return self._product(v[:, 0].contiguous()).unsqueeze(1)
        if self.chunk_size == 1:  # one contiguous column at a time (fastest on a CPU)
            return torch.stack([self._product(v[:, i].contiguous()) for i in range(v.shape[1])], dim=1)
        return torch.cat([self._product(block) for block in v.split(self.chunk_size, dim=1)], dim=1)

    matvec = matmat = __matmul__

    def to_dense(self, *, max_memory: int | None = None, progress: bool | None = None) -> Tensor:
        """The dense (n, n) matrix, built from n products; refused (ValueError) when it would not fit in memory."""
        return dense_matrix(self._product, self.shape[0], self.dtype, self.device, chunk_size=self.chunk_size,
                            max_memory=max_memory, progress=progress, what=type(self).__name__ + ".to_dense")

    def to_scipy(self) -> LinearOperator:
        """A ``scipy.sparse.linalg.LinearOperator`` doing the same products (numpy in, numpy out, on the CPU)."""
        numpy_dtype = torch.empty((), dtype=self.dtype).numpy().dtype

        def matmat(V):
            V = torch.as_tensor(np.asarray(V), dtype=self.dtype).to(self.device)
            return (self @ V).cpu().numpy()

        def matvec(v):
            return matmat(np.asarray(v).reshape(-1)).reshape(np.shape(v))

        return LinearOperator(self.shape, matvec=matvec, matmat=matmat, rmatvec=matvec, rmatmat=matmat,
                              dtype=numpy_dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, device={self.device})"

    @classmethod
    def _from_product(cls, product, x: Tensor):
        """Build an instance of a subclass directly from a product function (used by ``from_model``)."""
        op = object.__new__(cls)
        CurvatureOperator.__init__(op, product, x.numel(), x.dtype, x.device)
        op.x = x
        return op


def as_operator(A) -> CurvatureOperator:
    """A ``CurvatureOperator`` as it is, or a dense symmetric (n, n) tensor wrapped as one."""
    if isinstance(A, CurvatureOperator):
        return A
    if isinstance(A, Tensor):
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"a dense operator must be a square (n, n) tensor, got shape {tuple(A.shape)}.")
        if not A.is_floating_point():
            raise TypeError(f"a dense operator must have a floating dtype, got {A.dtype}.")
        return CurvatureOperator(lambda V: A @ V, A.shape[0], A.dtype, A.device)
    raise TypeError(
        f"expected a hesslab CurvatureOperator (e.g. hl.HessianOperator) or a square torch.Tensor, "
        f"got {type(A).__name__}."
    )


class HessianOperator(CurvatureOperator):
    """H = ∇²f(x) as an operator: ``HessianOperator(f, x) @ v == hl.hvp(f, x, v)``.

    The gradient's graph is built once at x; each product is then one backward pass (~1.5 gradients).
    Memory: the graph of ∇f(x). For a model and data use ``HessianOperator.from_model``.
    """

    def __init__(self, f: Callable[[Tensor], Tensor], x: Tensor):
        x = check_flat_vector("x", x).detach()
        super().__init__(hvp_at(f, x), x.numel(), x.dtype, x.device)
        self.x = x

    @classmethod
    def from_model(cls, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], data,
                   params: str | Sequence[str] | None = None) -> "HessianOperator":
        """The Hessian of ``loss_fn(model(inputs), targets)`` in the model's (chosen) parameters.

        Args:
            data: one ``(inputs, targets)`` batch, or a re-iterable of batches (a list, a DataLoader); the loss must
                be a mean over its batch, and the operator is then the batch-size-weighted mean over batches.
            params: parameter names for a per-layer block (default: all that require grad).
        """
        single, batches = _as_batches(data)
        if single is not None:
            return cls(*loss_function(model, loss_fn, *single, params=params))
        x = flatten_parameters(select_parameters(model, params))
        return cls._from_product(
            _batch_mean(lambda batch: hvp_at(loss_function(model, loss_fn, *batch, params=params)[0], x), batches),
            x)


class GGNOperator(CurvatureOperator):
    """The generalised Gauss-Newton matrix G = Jᵀ H_L J as an operator (see ``hl.ggn``)."""

    def __init__(self, g: Callable[[Tensor], Tensor], loss_of_output: Callable[[Tensor], Tensor], x: Tensor):
        x = check_flat_vector("x", x).detach()
        super().__init__(ggnvp_at(g, loss_of_output, x), x.numel(), x.dtype, x.device)
        self.x = x

    @classmethod
    def from_model(cls, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], data,
                   params: str | Sequence[str] | None = None) -> "GGNOperator":
        """The GGN of ``loss_fn(model(inputs), targets)``; ``data`` and ``params`` as in
        ``HessianOperator.from_model``."""
        single, batches = _as_batches(data)
        if single is not None:
            inputs, targets = single
            g, x = output_function(model, inputs, params=params)
            return cls(g, lambda z: loss_fn(z, targets), x)
        x = flatten_parameters(select_parameters(model, params))

        def product_on(batch: Batch):
            inputs, targets = batch
            return ggnvp_at(output_function(model, inputs, params=params)[0], lambda z: loss_fn(z, targets), x)

        return cls._from_product(_batch_mean(product_on, batches), x)


def _as_batches(data) -> tuple[Batch | None, Iterable[Batch] | None]:
    """``(batch, None)`` for one (inputs, targets) pair, ``(None, batches)`` for a re-iterable of pairs."""
    def is_pair(item) -> bool:
        return isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(t, Tensor) for t in item)

    if is_pair(data):
        if len(data[0]) == 0:
            raise ValueError("data holds an empty batch (0 samples); the mean loss of no samples is undefined.")
        return tuple(data), None
    if isinstance(data, Tensor) or not isinstance(data, Iterable):
        raise TypeError(
            "data must be an (inputs, targets) pair of tensors or an iterable of such pairs, "
            f"got {type(data).__name__}."
        )
    if iter(data) is data:
        raise TypeError(
            "data is a one-shot iterator (e.g. a generator); every product reads all batches again, so pass a list of "
            "batches or a DataLoader."
        )
    count = 0
    for batch in data:
        if not is_pair(batch):
            raise TypeError(f"every batch must be an (inputs, targets) pair of tensors, got {type(batch).__name__}.")
        if len(batch[0]) == 0:
            raise ValueError("data holds an empty batch (0 samples); drop it.")
        count += 1
    if count == 0:
        raise ValueError("data has no batches; give at least one (inputs, targets) pair.")
    return None, data


def _batch_mean(product_on: Callable[[Batch], Callable[[Tensor], Tensor]], batches: Iterable[Batch]):
    """``V -> Σ_b n_b A_b V / Σ_b n_b``, where ``product_on(batch)`` gives A_b's product; one batch lives at a time."""

    def product(V: Tensor) -> Tensor:
        total, weight = None, 0
        for batch in batches:
            n_b = len(batch[0])
            part = product_on(batch)(V) * n_b
            total = part if total is None else total + part
            weight += n_b
        return total / weight

    return product
