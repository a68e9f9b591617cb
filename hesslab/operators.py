"""Matrix-free curvature: a symmetric n×n matrix known only through its products ``A V``.

``HessianOperator`` (A = ∇²f(x)) and ``GGNOperator`` (A = Jᵀ H_L J) fix the point x once and then answer
``op @ v`` for v (n,) or V (n, k) — the only thing Hutchinson, Lanczos and SciPy's ``eigsh`` need. Over an iterable
of batches the operator is the sample-weighted mean ``A = Σ_b n_b A_b / Σ_b n_b`` (``hesslab.batches``: n_b, and
the checks that the data is fixed and the loss a mean), applied one batch at a time: each product builds each
batch's gradient graph once and runs all k columns through it, so memory is that of one batch and the cost that of
the concatenated batch plus B − 1 graphs. Idea after curvlinops (scipy linear operators for curvature), with a
much smaller surface.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import Tensor, nn

from ._checks import (
    check_count,
    check_finite,
    check_finite_product,
    check_flat_vector,
    check_like,
)
from ._dense import Product, check_dense_fits, default_chunk_size, dense_matrix
from ._merging import SAMPLES_PER_GRAPH, merging_keeps_the_matrix, saved_bytes
from .batches import Batch, Batches, as_batches, check_mean_reduction
from .functional import (
    call_model,
    check_inputs,
    differentiable_attention,
    flatten_parameters,
    ggnvp_at,
    hvp_at,
    loss_function,
    output_function,
    select_parameters,
    warn_if_stochastic,
)


def by_columns(product: Product, V: Tensor, chunk_size: int) -> Tensor:
    """``A V`` for V (n, k), k >= 1, from ``product`` applied to ``chunk_size`` columns at a time.

    Args:
        product: ``V -> A V`` for a block of columns (n, c), or a vector (n,) when ``chunk_size`` is 1.
        V: (n, k) columns.
        chunk_size: columns per call of ``product``.

    Returns:
        A V, (n, k).

    Example:
        >>> import torch
        >>> from hesslab.operators import by_columns
        >>> by_columns(lambda v: 2 * v, torch.ones(3, 2), chunk_size=1).tolist()
        [[2.0, 2.0], [2.0, 2.0], [2.0, 2.0]]
    """
    if V.shape[1] == 1:
        return product(V[:, 0].contiguous()).unsqueeze(1)
    if chunk_size == 1:  # one contiguous column at a time (fastest on a CPU)
        return torch.stack([product(V[:, i].contiguous()) for i in range(V.shape[1])], dim=1)
    return torch.cat([product(block) for block in V.split(chunk_size, dim=1)], dim=1)


class CurvatureOperator:
    """A symmetric (n, n) matrix A given by ``product(V) = A V``.

    ``op @ v`` accepts v (n,) or V (n, k) in the operator's dtype and device; the k columns go through the product
    ``chunk_size`` at a time (batched). ``to_dense()`` builds the matrix (n products, memory guard included) and
    ``to_scipy()`` wraps the operator for ``scipy.sparse.linalg`` (``eigsh(op.to_scipy(), k=5)``).

    Args:
        product: ``V -> A V`` for V (n,) or (n, c), in ``dtype`` on ``device``.
        n: the dimension, >= 1.
        dtype: a floating dtype.
        device: where the products run.
        chunk_size: columns per call of ``product`` (default ``hesslab._dense.default_chunk_size``).

    Example:
        >>> import torch, hesslab as hl
        >>> op = hl.CurvatureOperator(lambda V: 2 * V, 3, torch.float64, "cpu")
        >>> op
        CurvatureOperator(shape=(3, 3), dtype=torch.float64, device=cpu)
        >>> (op @ torch.ones(3, dtype=torch.float64)).tolist(), bool(torch.equal(op.to_dense(), 2 * torch.eye(3)))
        ([2.0, 2.0, 2.0], True)
    """

    def __init__(self, product: Callable[[Tensor], Tensor], n: int, dtype: torch.dtype, device: torch.device,
                 chunk_size: int | None = None):
        n = check_count("n", n, 1, hint="An operator on zero variables has no curvature to compute.")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}; pass e.g. torch.float64.")
        self._product = product
        self.shape = (n, n)
        self.dtype = dtype
        self.device = torch.device(device)
        self.chunk_size = (default_chunk_size(n, dtype, device) if chunk_size is None
                           else check_count("chunk_size", chunk_size, 1))

    def _pieces(self) -> Iterable[tuple[float, Product]]:
        """A as a weighted sum ``Σ_i w_i A_i`` of pieces given by their products.

        Here the one piece (1, product); over batches one piece per batch, made (its graph built) when the loop
        reaches it.
        """
        return ((1.0, self._product),)

    def __matmul__(self, v: Tensor) -> Tensor:
        """A v for v (n,), or A V for V (n, k); V with k = 0 columns gives the (n, 0) product.

        Every product is checked: a NaN/inf entry (with v finite) raises ValueError, since then A is not finite at
        this point.
        """
        v = check_like("v", v, self.shape[0], self.dtype, self.device)
        if v.ndim == 2 and v.shape[1] == 0:
            return torch.zeros_like(v)
        total = None
        for weight, product in self._pieces():
            part = product(v) if v.ndim == 1 else by_columns(product, v, self.chunk_size)
            if total is None:
                total = part if weight == 1.0 else part * weight
            else:
                total.add_(part, alpha=weight)
            del product, part  # this piece's graph goes before the next one is built
        return check_finite_product(total, f"the matrix of {type(self).__name__}",
                                    "it is not defined at this point, or overflowed")

    matvec = matmat = __matmul__

    def to_dense(self, *, max_memory: int | None = None, progress: bool | None = None) -> Tensor:
        """The dense (n, n) matrix, built from n products (each piece, e.g. each batch, gone through once).

        Args:
            max_memory: bytes the matrix and its column blocks may take (default 90% of available memory); more is
                refused with a ValueError.
            progress: show a tqdm bar (default: when n >= 4096).

        Returns:
            A (n, n), in the operator's dtype and device.

        Example:
            >>> import torch, hesslab as hl
            >>> f = lambda x: x[0] ** 2 * x[1]
            >>> hl.HessianOperator(f, torch.tensor([1.0, 2.0], dtype=torch.float64)).to_dense().tolist()
            [[4.0, 2.0], [2.0, 0.0]]
        """
        return dense_matrix(self._pieces, self.shape[0], self.dtype, self.device, chunk_size=self.chunk_size,
                            max_memory=max_memory, progress=progress, what=type(self).__name__ + ".to_dense")

    def to_scipy(self) -> LinearOperator:
        """A ``scipy.sparse.linalg.LinearOperator`` doing the same products (numpy in, numpy out, on the CPU).

        Returns:
            The (n, n) ``LinearOperator`` (symmetric: its adjoint products are the same).

        Example:
            >>> import torch, hesslab as hl
            >>> from scipy.sparse.linalg import eigsh
            >>> op = hl.as_operator(torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]]).double())
            >>> [round(float(value), 6) for value in eigsh(op.to_scipy(), k=1)[0]]
            [3.0]
        """
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
    def _over_batches(cls, batches: Batches, product_on: Callable[[Batch], Product], x: Tensor,
                      samples_per_graph: int = 1):
        """An instance of a subclass whose matrix is ``Σ_b (n_b / N) A_b`` over ``batches``.

        ``product_on(batch)`` fixes the point on one batch (building its graphs) and returns A_b's product (used by
        ``from_model``). Batches are merged into groups of up to ``samples_per_graph`` samples (and 1 GiB of graph) if
        ``merging_keeps_the_matrix`` on the first group.
        """
        if samples_per_graph > 1:
            batches.merge(samples_per_graph, lambda batch: saved_bytes(lambda: product_on(batch))[1],
                          lambda merged, parts: merging_keeps_the_matrix(product_on, merged, parts, x))
        op = object.__new__(cls)
        CurvatureOperator.__init__(op, None, x.numel(), x.dtype, x.device)
        op._pieces = lambda: ((weight, product_on(batch)) for weight, batch in batches)
        op.x = x
        op.num_batches = len(batches)
        op.num_graphs = len(batches.groups)
        return op


def symmetry_tolerance(n: int, dtype: torch.dtype) -> float:
    """``10 √n ε``: the largest ‖A − Aᵀ‖_F / ‖A‖_F accepted as rounding of a symmetric matrix.

    Why: a product A v is itself computed with a relative error of about √n ε (the probabilistic rounding bound of
    Higham & Mary 2019, λ √n u, which holds for λ = 10 with probability 1 − 10⁻²¹). An asymmetry below that changes
    no product beyond its own rounding; a larger one means A and Aᵀ are different operators, and Lanczos, CG and
    Hutchinson, which assume A = Aᵀ, would answer for neither. Measured: XᵀX, XᵀDX and QΛQᵀ products are within 2 ε.

    Args:
        n: the dimension.
        dtype: a floating dtype (its machine epsilon ε).

    Returns:
        10 √n ε, a float.

    Example:
        >>> import torch
        >>> from hesslab.operators import symmetry_tolerance
        >>> f"{symmetry_tolerance(100, torch.float64):.3e}"  # 10 · 10 · 2.22e-16
        '2.220e-14'
    """
    return 10 * math.sqrt(n) * torch.finfo(dtype).eps


class DenseOperator(CurvatureOperator):
    """A dense symmetric (n, n) tensor as an operator: ``op @ V = A @ V``, ``op.to_dense()`` a copy of A.

    Made by ``as_operator``, which checks A first (finite, symmetric to rounding); all k columns go in one product.

    Args:
        A: the (n, n) matrix (not checked here).

    Example:
        >>> import torch
        >>> from hesslab.operators import DenseOperator
        >>> op = DenseOperator(torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64))
        >>> (op @ torch.tensor([1.0, 1.0], dtype=torch.float64)).tolist()
        [3.0, 3.0]
    """

    def __init__(self, A: Tensor):
        super().__init__(lambda V: A @ V, A.shape[0], A.dtype, A.device, chunk_size=A.shape[0])
        self.matrix = A

    def to_dense(self, *, max_memory: int | None = None, progress: bool | None = None) -> Tensor:
        """A itself (a copy), not rebuilt from products; ``max_memory`` guards the copy.

        Args:
            max_memory: bytes the copy may take (default 90% of available memory); more is a ValueError.
            progress: unused (nothing is rebuilt); accepted like ``CurvatureOperator.to_dense``.

        Returns:
            A copy of A, (n, n).

        Example:
            >>> import torch, hesslab as hl
            >>> A = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
            >>> dense = hl.as_operator(A).to_dense()
            >>> bool(torch.equal(dense, A)), dense is A
            (True, False)
        """
        check_dense_fits(self.shape[0], self.dtype, self.device, max_memory, "DenseOperator.to_dense", 0)
        return self.matrix.clone()


def as_operator(A) -> CurvatureOperator:
    """A ``CurvatureOperator`` as it is, or a dense symmetric (n, n) tensor wrapped as one (``DenseOperator``).

    A dense A must be finite and symmetric up to rounding: ‖A − Aᵀ‖_F <= 10 √n ε ‖A‖_F (``symmetry_tolerance``);
    otherwise ValueError, with the fix (A + Aᵀ) / 2. Cost of the check: O(n²), once.

    Args:
        A: a ``CurvatureOperator``, or a square floating tensor (n, n), n >= 1.

    Returns:
        A itself, or a ``DenseOperator`` of the tensor.

    Raises:
        TypeError: for anything else, or an integer tensor.
        ValueError: for a tensor that is not square, empty, not finite or not symmetric.

    Example:
        >>> import torch, hesslab as hl
        >>> hl.as_operator(torch.eye(2, dtype=torch.float64)).shape
        (2, 2)
        >>> hl.as_operator(torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: the dense operator A is not symmetric: ‖A − Aᵀ‖_F / ‖A‖_F = 1.15e+00, above the rounding ...
    """
    if isinstance(A, CurvatureOperator):
        return A
    if isinstance(A, Tensor):
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"a dense operator must be a square (n, n) tensor, got shape {tuple(A.shape)}.")
        if not A.is_floating_point():
            raise TypeError(f"a dense operator must have a floating dtype, got {A.dtype}.")
        if A.shape[0] == 0:
            raise ValueError("the dense operator is 0 x 0: a function of zero variables has no curvature to compute.")
        check_finite("the dense operator A", A)
        asymmetry, size = float(torch.linalg.matrix_norm(A - A.T)), float(torch.linalg.matrix_norm(A))
        tol = symmetry_tolerance(A.shape[0], A.dtype)
        if asymmetry > tol * size:
            raise ValueError(
                f"the dense operator A is not symmetric: ‖A − Aᵀ‖_F / ‖A‖_F = {asymmetry / size:.2e}, above the "
                f"rounding tolerance 10·√n·ε = {tol:.1e} for a {A.shape[0]} x {A.shape[0]} "
                f"{str(A.dtype).replace('torch.', '')} matrix. Curvature operators (Lanczos, CG, Hutchinson) assume "
                "A = Aᵀ; pass its symmetric part (A + A.T) / 2 if that is what you mean."
            )
        return DenseOperator(A)
    raise TypeError(
        f"expected a hesslab CurvatureOperator (e.g. hl.HessianOperator) or a square torch.Tensor, "
        f"got {type(A).__name__}."
    )


class HessianOperator(CurvatureOperator):
    """H = ∇²f(x) as an operator: ``HessianOperator(f, x) @ v == hl.hvp(f, x, v)``.

    The gradient's graph is built once at x; each product is then one backward pass (~1.5 gradients).
    Memory: the graph of ∇f(x). For a model and data use ``HessianOperator.from_model``.

    Args:
        f: scalar function of a 1-D tensor (e.g. from ``hl.loss_function``).
        x: (n,) point; ``op.x`` keeps a detached copy.

    Example:
        f(x) = ½ xᵀAx has the Hessian A:

        >>> import torch, hesslab as hl
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> op = hl.HessianOperator(lambda x: 0.5 * x @ A @ x, torch.zeros(2, dtype=torch.float64))
        >>> (op @ torch.tensor([1.0, 0.0], dtype=torch.float64)).tolist(), bool(torch.equal(op.to_dense(), A))
        ([2.0, 1.0], True)
    """

    def __init__(self, f: Callable[[Tensor], Tensor], x: Tensor):
        x = check_flat_vector("x", x).detach()
        super().__init__(hvp_at(f, x), x.numel(), x.dtype, x.device)
        self.x = x

    @classmethod
    def from_model(cls, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], data,
                   params: str | Sequence[str] | None = None,
                   samples_per_graph: int = SAMPLES_PER_GRAPH) -> "HessianOperator":
        """The Hessian of ``loss_fn(model(inputs), targets)`` in the model's (chosen) parameters.

        Args:
            model: any ``nn.Module``; it is left unchanged (batch-norm running statistics included).
            loss_fn: ``(outputs, targets) -> scalar``.
            data: one ``(inputs, targets)`` batch, or a re-iterable of batches (a list, a DataLoader without
                shuffling); inputs a tensor or a dict of tensors (``model(inputs)``). Over batches the loss must be
                a mean over its batch (a sum is refused), the data the same on every pass (checked by reading it
                twice), and the operator is the sample-weighted mean Σ_b n_b H_b / N, n_b = targets.numel()
                (``hesslab.batches``). For one batch the operator is the Hessian of whatever loss_fn computes.
            params: parameter names for a per-layer block (default: all that require grad).
            samples_per_graph: over batches, consecutive small batches are concatenated into one graph of up to this
                many samples when that is checked to leave the matrix unchanged (``hesslab._merging``: not for batch
                norm in training mode, sequence-first data, class weights), which makes products on small batches
                up to 2x faster; the memory is one graph on that many samples, at most 1 GiB (measured on the first
                batch: ``_merging.saved_bytes``). 1 keeps every batch its own graph.

        Returns:
            The ``HessianOperator``, with ``x`` the flat parameters (and ``num_batches``, ``num_graphs`` over
            batches).

        Cost: one batch: a gradient with graph now, one backward per column. Over B batches: two passes over the
        data and one forward now, and the check for merging (one product on the first group and on each of its
        batches); per product, each group's gradient graph once and one backward per column.

        Example:
            >>> import torch, hesslab as hl
            >>> model = torch.nn.Linear(3, 2).double()
            >>> X, y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
            >>> loss = torch.nn.functional.mse_loss
            >>> whole = hl.HessianOperator.from_model(model, loss, (X, y))
            >>> halves = hl.HessianOperator.from_model(model, loss, [(X[:4], y[:4]), (X[4:], y[4:])])
            >>> bool(torch.allclose(whole.to_dense(), halves.to_dense()))
            True
        """
        samples_per_graph = check_count("samples_per_graph", samples_per_graph, 1)
        single, batches = as_batches(data, _mean_reduction_check(model, loss_fn, params))
        if single is not None:
            return cls(*loss_function(model, loss_fn, *single, params=params))
        x = flatten_parameters(select_parameters(model, params))
        warn_if_stochastic(model)  # now, not only at the first product
        return cls._over_batches(
            batches, lambda batch: hvp_at(loss_function(model, loss_fn, *batch, params=params)[0], x), x,
            samples_per_graph)


class GGNOperator(CurvatureOperator):
    """The generalised Gauss-Newton matrix G = Jᵀ H_L J as an operator (see ``hl.ggn``).

    Each product is three backward passes through graphs built once at x (``hesslab.functional.ggnvp_at``).

    Args:
        g: the outputs as a function of x (``hl.output_function``).
        loss_of_output: scalar loss of the outputs.
        x: (n,) point; ``op.x`` keeps a detached copy.

    Example:
        One output z = x₀ x₁ and the loss ½ z²: G = ∇z ∇zᵀ, at x = (1, 2) ∇z = (2, 1):

        >>> import torch, hesslab as hl
        >>> op = hl.GGNOperator(lambda x: x[0] * x[1], lambda z: 0.5 * z**2, torch.tensor([1.0, 2.0]).double())
        >>> op.to_dense().tolist()
        [[4.0, 2.0], [2.0, 1.0]]
    """

    def __init__(self, g: Callable[[Tensor], Tensor], loss_of_output: Callable[[Tensor], Tensor], x: Tensor):
        x = check_flat_vector("x", x).detach()
        super().__init__(ggnvp_at(g, loss_of_output, x), x.numel(), x.dtype, x.device)
        self.x = x

    @classmethod
    def from_model(cls, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], data,
                   params: str | Sequence[str] | None = None,
                   samples_per_graph: int = SAMPLES_PER_GRAPH) -> "GGNOperator":
        """The GGN of ``loss_fn(model(inputs), targets)`` in the model's (chosen) parameters.

        Args:
            model: any ``nn.Module``; it is left unchanged.
            loss_fn: ``(outputs, targets) -> scalar``; its Hessian in the outputs is H_L.
            data: one ``(inputs, targets)`` batch or a re-iterable of batches, as in ``HessianOperator.from_model``.
            params: parameter names for a per-layer block (default: all that require grad).
            samples_per_graph: small batches merged into graphs of up to this many samples, as in
                ``HessianOperator.from_model``.

        Returns:
            The ``GGNOperator``, with ``x`` the flat parameters.

        Example:
            A linear model is linear in its parameters (∇²z = 0), so its GGN is its Hessian:

            >>> import torch, hesslab as hl
            >>> model = torch.nn.Linear(3, 2).double()
            >>> X, y = torch.eye(3, dtype=torch.float64), torch.zeros(3, 2, dtype=torch.float64)
            >>> loss = torch.nn.functional.mse_loss
            >>> G = hl.GGNOperator.from_model(model, loss, (X, y)).to_dense()
            >>> bool(torch.allclose(G, hl.HessianOperator.from_model(model, loss, (X, y)).to_dense()))
            True
        """
        samples_per_graph = check_count("samples_per_graph", samples_per_graph, 1)
        single, batches = as_batches(data, _mean_reduction_check(model, loss_fn, params))
        if single is not None:
            inputs, targets = single
            g, x = output_function(model, inputs, params=params)
            return cls(g, lambda z: loss_fn(z, targets), x)
        x = flatten_parameters(select_parameters(model, params))
        warn_if_stochastic(model)  # now, not only at the first product

        def product_on(batch: Batch) -> Product:
            inputs, targets = batch
            return ggnvp_at(output_function(model, inputs, params=params)[0], lambda z: loss_fn(z, targets), x)

        return cls._over_batches(batches, product_on, x, samples_per_graph)


def _mean_reduction_check(model: nn.Module, loss_fn, params) -> Callable[[Batch], None]:
    """The check, run on the first of several batches, that ``loss_fn`` is a mean over the batch (not a sum).

    The model's outputs on that batch (one forward, no graph) go to ``batches.check_mean_reduction``.
    """
    named = select_parameters(model, params)

    def check(batch: Batch) -> None:
        inputs, targets = batch
        check_inputs(inputs)
        with torch.no_grad(), differentiable_attention():
            outputs = call_model(model, named, flatten_parameters(named), inputs)
        check_mean_reduction(loss_fn, outputs, targets)

    return check
