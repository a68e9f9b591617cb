"""Dense matrices from matrix-free products, under a memory guard: how ``hessian``, ``ggn`` and ``to_dense`` build them.

A matrix known only by its products (A V for a block V of columns) is assembled column block by column block,
``A[:, i:i+c] = A E_{i:i+c}`` with E the identity, so the peak memory is the n×n result plus one block. Before
anything is built, the result and its blocks are checked against the memory available (``check_dense_fits``): a
matrix that would not fit is refused with a ``ValueError`` that says how much it needs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._checks import check_count, check_finite_product

Product = Callable[[Tensor], Tensor]
# A curvature matrix as a weighted sum A = Σ_i w_i A_i of pieces known by their products (one piece for a function,
# one per batch for a model over several batches); a fresh iterable each call, so that a piece (a batch's gradient
# graph) is built only when reached and dropped after it.
Pieces = Callable[[], Iterable[tuple[float, Product]]]

# Working memory of one column block, in units of n × chunk entries, counted by the memory guard next to the n×n
# result: the block of identity columns E, its product A E, and the transposed (weighted) copy written into the
# matrix. The batched backward's own intermediates scale with the model's activations, not with n, and are not
# counted.
BLOCK_COPIES = 3

# Columns per batched product. On a GPU a wide batch (vmap over the backward) fills the device. On a CPU the
# batched backward's intermediates fall out of cache, and one contiguous column at a time is fastest (measured on
# a 2-core CPU with the MLPs of benchmarks/curvature.py: a single column costs ~1.2-1.4 gradients, a block of 4
# ~1.3 each, of 64 ~1.8 each). The block never exceeds ~64 MiB, small next to the matrix.
DEFAULT_BLOCK_BYTES = 64 * 2**20
MAX_CHUNK = {"cuda": 256, "cpu": 1}


def available_memory(device: torch.device) -> int:
    """Bytes that can still be allocated on ``device`` (GPU: free memory; CPU: the kernel's MemAvailable).

    Args:
        device: the device to ask about.

    Returns:
        The number of bytes, an int.

    Example:
        >>> import torch
        >>> from hesslab._dense import available_memory
        >>> available_memory(torch.device("cpu")) > 0
        True
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if os.path.exists("/proc/meminfo"):  # Linux: what can be allocated without swapping, page cache included
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")  # elsewhere: free pages only


def default_chunk_size(n: int, dtype: torch.dtype, device: torch.device) -> int:
    """Columns per batched product: up to 256 on a GPU, 1 on a CPU, and one (n × chunk) block <= ~64 MiB.

    Args:
        n: the dimension.
        dtype: the entries' dtype.
        device: where the products run.

    Returns:
        The chunk size c, 1 <= c <= n.

    Example:
        >>> import torch
        >>> from hesslab._dense import default_chunk_size
        >>> default_chunk_size(1000, torch.float64, torch.device("cpu"))
        1
    """
    itemsize = torch.empty((), dtype=dtype).element_size()
    cap = MAX_CHUNK["cuda" if torch.device(device).type == "cuda" else "cpu"]
    return max(1, min(n, cap, DEFAULT_BLOCK_BYTES // (n * itemsize)))


def dense_bytes(n: int, dtype: torch.dtype, chunk_size: int) -> int:
    """Bytes to build an n×n matrix from column blocks.

    The matrix, n² entries, plus ``BLOCK_COPIES`` n × c blocks of working memory (c = min(chunk_size, n)).

    Args:
        n: the dimension.
        dtype: the entries' dtype.
        chunk_size: columns per block (0 counts the matrix alone).

    Returns:
        (n² + 3 n c) · itemsize, an int.

    Example:
        >>> import torch
        >>> from hesslab._dense import dense_bytes
        >>> dense_bytes(1000, torch.float64, 1)  # (10⁶ + 3·1000) entries of 8 bytes
        8024000
    """
    itemsize = torch.empty((), dtype=dtype).element_size()
    return (n * n + BLOCK_COPIES * n * min(chunk_size, n)) * itemsize


def check_dense_fits(n: int, dtype: torch.dtype, device: torch.device, max_memory: int | None, what: str,
                     chunk_size: int | None = None) -> None:
    """Refuse (ValueError) to build an n×n matrix that would not fit into ``max_memory`` bytes.

    The default budget is 90% of what ``device`` has available; the column blocks the matrix is built from
    (``chunk_size`` columns each, default ``default_chunk_size``) count as well as the matrix.

    Args:
        n: the dimension.
        dtype: the entries' dtype.
        device: where the matrix would live.
        max_memory: the budget in bytes, or None for 90% of ``available_memory(device)``.
        what: the caller's name, for the error message.
        chunk_size: columns per block (default ``default_chunk_size``).

    Raises:
        ValueError: when ``dense_bytes`` exceeds the budget; the message says how much is needed and what to use.

    Example:
        >>> import torch
        >>> from hesslab._dense import check_dense_fits
        >>> check_dense_fits(10, torch.float64, torch.device("cpu"), 10**6, "hessian")  # 1,040 bytes: fits
        >>> check_dense_fits(100, torch.float64, torch.device("cpu"), 10**4, "hessian")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: hessian: the dense 100 x 100 float64 matrix needs 0.00 GiB (82,400 bytes: ...
    """
    chunk = default_chunk_size(n, dtype, device) if chunk_size is None else chunk_size
    need = dense_bytes(n, dtype, chunk)
    budget = int(0.9 * available_memory(device)) if max_memory is None else int(max_memory)
    if need > budget:
        matrix = dense_bytes(n, dtype, 0)
        raise ValueError(
            f"{what}: the dense {n} x {n} {str(dtype).replace('torch.', '')} matrix needs {need / 2**30:.2f} GiB "
            f"({need:,} bytes: {matrix:,} for the matrix, {need - matrix:,} for blocks of {min(chunk, n)} columns) "
            f"but only {budget / 2**30:.2f} GiB ({budget:,} bytes) is available on {device}. Use the matrix-free "
            "hl.HessianOperator / hl.GGNOperator (with hl.top_eigen, hl.hutchinson_trace, "
            "hl.spectral_density), restrict the parameters to a block with params=[...], or lower chunk_size."
        )


def one_piece(product: Product) -> Pieces:
    """A matrix given by one product function, as ``Pieces``: ``A = 1 · A``.

    Args:
        product: ``V -> A V``.

    Returns:
        A function returning the one pair ``(1.0, product)`` on every call.

    Example:
        >>> import torch
        >>> from hesslab._dense import one_piece
        >>> [(weight, product(torch.ones(2)).tolist()) for weight, product in one_piece(lambda v: 2 * v)()]
        [(1.0, [2.0, 2.0])]
    """
    return lambda: ((1.0, product),)


def dense_matrix(
    pieces: Pieces,
    n: int,
    dtype: torch.dtype,
    device: torch.device,
    *,
    chunk_size: int | None = None,
    max_memory: int | None = None,
    progress: bool | None = None,
    what: str = "dense matrix",
) -> Tensor:
    """The n×n matrix ``A = Σ_i w_i A_i`` of the given pieces, built ``chunk_size`` columns at a time.

    The pieces are gone through once, each taking all n columns (a batch's gradient graph is built once for the
    whole matrix). A is assumed symmetric (Hessians, GGNs), so each block ``A_i E_{j:j+c}`` fills rows j:j+c.
    Cost: n products per piece in ⌈n/c⌉ batched calls; memory n² + 3·n·c entries (``dense_bytes``).

    Args:
        pieces: a function returning ``(w_i, product_i)`` pairs, product_i: (n,) -> (n,) and (n, c) -> (n, c).
        n: the dimension.
        dtype: the matrix's dtype.
        device: the matrix's device.
        chunk_size: columns per product (default ``default_chunk_size``).
        max_memory: bytes the matrix and its blocks may take (default 90% of available memory).
        progress: show a tqdm bar (default: when n >= 4096).
        what: the name used in the progress bar and in errors.

    Returns:
        The (n, n) matrix, checked finite.

    Example:
        >>> import torch
        >>> from hesslab._dense import dense_matrix
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> halves = lambda: [(0.5, lambda V: A @ V), (0.5, lambda V: A @ V)]  # A = ½ A + ½ A
        >>> dense_matrix(halves, 2, torch.float64, torch.device("cpu")).tolist()
        [[2.0, 1.0], [1.0, 3.0]]
    """
    chunk = default_chunk_size(n, dtype, device) if chunk_size is None else check_count("chunk_size", chunk_size, 1)
    chunk = min(chunk, n)
    check_dense_fits(n, dtype, device, max_memory, what, chunk)
    matrix = torch.empty((n, n), dtype=dtype, device=device)
    filled = False  # the first piece writes every row, the others add to them
    show = (n >= 4096) if progress is None else progress
    for weight, product in pieces():
        for start in tqdm(range(0, n, chunk), desc=what, disable=not show, leave=False):
            stop = min(start + chunk, n)
            if stop - start == 1:  # one column: the plain (unbatched) product A e_start
                basis = torch.zeros(n, dtype=dtype, device=device)
                basis[start] = 1
                block = product(basis).unsqueeze(0)
            else:
                basis = torch.zeros((n, stop - start), dtype=dtype, device=device)
                basis[torch.arange(start, stop, device=device), torch.arange(stop - start, device=device)] = 1
                block = product(basis).T
            if filled:
                matrix[start:stop].add_(block, alpha=weight)
            else:
                torch.mul(block, weight, out=matrix[start:stop])
        filled = True
        del product  # this piece's graph goes before the next one is built
    if not filled:  # no pieces: the zero matrix
        matrix.zero_()
    return check_finite_product(matrix, what, "the matrix is not finite at this point, or overflowed")
