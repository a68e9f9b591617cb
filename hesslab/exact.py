"""Dense curvature matrices of small problems: the exact Hessian and the generalised Gauss-Newton matrix.

Both are built column block by column block from matrix-free products, ``H[:, i:i+c] = H E_{i:i+c}`` with E the
identity, so the peak memory is the n×n matrix plus one block, never ``torch.func.hessian``'s Jacobian-of-Jacobian
intermediates. Cost: n Hessian-vector products (batched c at a time). A matrix that would not fit in memory is refused
with a ``ValueError`` that says how much it needs; use the matrix-free ``hl.HessianOperator`` instead.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .checks import check_count, check_flat_vector
from .functional import ggnvp_at, hvp_at

# Columns per batched product. On a GPU a wide batch (vmap over the backward) fills the device. On a CPU the
# batched backward's intermediates fall out of cache, and one contiguous column at a time is fastest (measured on
# a 2-core CPU with the MLPs of benchmarks/curvature.py: a single column costs ~1.2-1.4 gradients, a block of 4
# ~1.3 each, of 64 ~1.8 each). The block never exceeds ~64 MiB, small next to the matrix.
DEFAULT_BLOCK_BYTES = 64 * 2**20
MAX_CHUNK = {"cuda": 256, "cpu": 1}


def available_memory(device: torch.device) -> int:
    """Bytes that can still be allocated on ``device`` (GPU: free memory; CPU: the kernel's MemAvailable)."""
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
    """Columns per batched product: up to 256 on a GPU, 1 on a CPU, and one (n × chunk) block <= ~64 MiB."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    cap = MAX_CHUNK["cuda" if torch.device(device).type == "cuda" else "cpu"]
    return max(1, min(n, cap, DEFAULT_BLOCK_BYTES // (n * itemsize)))


def check_dense_fits(n: int, dtype: torch.dtype, device: torch.device, max_memory: int | None, what: str) -> None:
    """Refuse (ValueError) to build an n×n matrix that would not fit into ``max_memory`` bytes (default: 90% of
    what ``device`` has available)."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    need = n * n * itemsize
    budget = int(0.9 * available_memory(device)) if max_memory is None else int(max_memory)
    if need > budget:
        raise ValueError(
            f"{what}: the dense {n} x {n} {str(dtype).replace('torch.', '')} matrix needs {need / 2**30:.2f} GiB but "
            f"only {budget / 2**30:.2f} GiB is available on {device}. Use the matrix-free hl.HessianOperator / "
            "hl.GGNOperator (with hl.top_eigen, hl.hutchinson_trace, hl.spectral_density), or restrict the "
            "parameters to a block with params=[...]."
        )


def dense_matrix(
    product: Callable[[Tensor], Tensor],
    n: int,
    dtype: torch.dtype,
    device: torch.device,
    *,
    chunk_size: int | None = None,
    max_memory: int | None = None,
    progress: bool | None = None,
    what: str = "dense matrix",
) -> Tensor:
    """The n×n matrix A whose products ``product(V) = A V`` are given, built ``chunk_size`` columns at a time.

    A is assumed symmetric (Hessians, GGNs), so each block ``A E_{i:i+c}`` fills rows i:i+c.
    Cost: n products in ⌈n/c⌉ batched calls; memory n² + n·c entries.
    """
    check_dense_fits(n, dtype, device, max_memory, what)
    chunk = default_chunk_size(n, dtype, device) if chunk_size is None else check_count("chunk_size", chunk_size, 1)
    matrix = torch.empty((n, n), dtype=dtype, device=device)
    starts = range(0, n, chunk)
    show = (n >= 4096) if progress is None else progress
    for start in tqdm(starts, desc=what, disable=not show, leave=False):
        stop = min(start + chunk, n)
        basis = torch.zeros((n, stop - start), dtype=dtype, device=device)
        basis[torch.arange(start, stop, device=device), torch.arange(stop - start, device=device)] = 1
        matrix[start:stop] = product(basis).T
    return matrix


def hessian(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    chunk_size: int | None = None,
    max_memory: int | None = None,
    progress: bool | None = None,
) -> Tensor:
    """The exact Hessian ``H_ij = ∂²f/∂x_i∂x_j (x)``, dense (n, n), in x's dtype and device.

    Args:
        f: scalar function of a 1-D tensor (``hl.loss_function`` gives one for a model; pass ``params=[...]`` there
            for a per-layer block).
        x: (n,) point.
        chunk_size: columns per batched Hessian-vector product (default: 1 on a CPU, 256 on a GPU, <= ~64 MiB).
        max_memory: bytes the matrix may take (default 90% of available memory); a larger one raises ValueError.
    Cost: one gradient with graph, then n Hessian-vector products (one backward each, batched).
    Memory: n² entries plus one n × chunk block.
    """
    x = check_flat_vector("x", x)
    check_dense_fits(x.numel(), x.dtype, x.device, max_memory, "hessian")  # before the gradient graph is built
    return dense_matrix(hvp_at(f, x), x.numel(), x.dtype, x.device, chunk_size=chunk_size,
                        max_memory=max_memory, progress=progress, what="hessian")


def ggn(
    g: Callable[[Tensor], Tensor],
    loss_of_output: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    chunk_size: int | None = None,
    max_memory: int | None = None,
    progress: bool | None = None,
) -> Tensor:
    """The generalised Gauss-Newton matrix ``G = Jᵀ H_L J`` (Schraudolph 2002), dense (n, n).

    J = ∂g/∂x is the Jacobian of the model's outputs, H_L the Hessian of the loss in those outputs. G is the Hessian
    with the outputs' own curvature dropped (``H = G + Σ_k ∂L/∂z_k ∇²z_k``); it is positive semi-definite when the
    loss is convex in the outputs, and its rank is at most rank(H_L) (e.g. N(C−1) for softmax cross-entropy).

    Args:
        g: outputs as a function of x (``hl.output_function``); loss_of_output: scalar loss of the outputs.
        x: (n,) point. Other arguments as in ``hessian``.
    Cost: n GGN-vector products, each three backward passes.
    """
    x = check_flat_vector("x", x)
    check_dense_fits(x.numel(), x.dtype, x.device, max_memory, "ggn")  # before the graphs are built
    return dense_matrix(ggnvp_at(g, loss_of_output, x), x.numel(), x.dtype, x.device, chunk_size=chunk_size,
                        max_memory=max_memory, progress=progress, what="ggn")
