"""Where to compute, how to seed, and how big experiments are.

``device()`` picks CUDA when there is one; ``seed()`` makes a run reproducible; ``scale()`` is the one place that
decides problem sizes: quick on a CPU, paper-like on a GPU, overridable with ``HESSLAB_SCALE=quick|full``.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from ._checks import check_count


def device() -> torch.device:
    """The device to compute on: ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``.

    Returns:
        ``torch.device("cuda")`` on a machine with a GPU, ``torch.device("cpu")`` otherwise.

    Example:
        >>> import torch, hesslab as hl
        >>> hl.device().type == ("cuda" if torch.cuda.is_available() else "cpu")
        True
    """
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed(value: int, device: torch.device | str | None = None) -> torch.Generator:
    """Seed Python's, NumPy's and torch's global generators and return a fresh ``torch.Generator``.

    Pass the returned generator to every stochastic hesslab routine (``generator=``): the same seed gives the same
    answer. The generator lives on ``device`` (default: ``hl.device()``), where the random probes are drawn.

    Args:
        value: the seed, an int (NumPy gets ``value % 2**32``).
        device: where the returned generator draws (default ``hl.device()``).

    Returns:
        A ``torch.Generator`` on ``device``, seeded with ``value``.

    Example:
        >>> import torch, hesslab as hl
        >>> first = hl.hutchinson_trace(torch.eye(3, dtype=torch.float64), 4, generator=hl.seed(0))
        >>> again = hl.hutchinson_trace(torch.eye(3, dtype=torch.float64), 4, generator=hl.seed(0))
        >>> first == again, first.value  # same seed, same answer (and zᵀIz = 3 for every ±1 probe)
        (True, 3.0)
    """
    value = check_count("seed value", value, -(2**63), 2**64 - 1, hint="Seeds are 64-bit integers, e.g. hl.seed(0).")
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)
    generator = torch.Generator(device=torch.device(device) if device is not None else globals()["device"]())
    generator.manual_seed(value)
    return generator


def scale() -> str:
    """The size of experiments: ``"full"`` (paper-like sizes) on a GPU, ``"quick"`` on a CPU.

    The environment variable ``HESSLAB_SCALE=quick|full`` overrides the choice (any other value is a ValueError).

    Returns:
        ``"quick"`` or ``"full"``.

    Example:
        >>> import hesslab as hl
        >>> hl.scale() in ("quick", "full")
        True
    """
    chosen = os.environ.get("HESSLAB_SCALE", "").strip().lower()
    if chosen in ("quick", "full"):
        return chosen
    if chosen:
        raise ValueError(f"HESSLAB_SCALE must be 'quick' or 'full', got {chosen!r}.")
    return "full" if torch.cuda.is_available() else "quick"


def sized(quick, full):
    """``quick`` or ``full`` according to ``scale()``: ``n = hl.sized(quick=200, full=5000)``.

    Args:
        quick: the value for a quick run (CPU, CI).
        full: the value for a full, paper-like run (GPU).

    Returns:
        ``full`` if ``scale() == "full"``, else ``quick``.

    Example:
        >>> import hesslab as hl
        >>> hl.sized(quick=200, full=5000) == (5000 if hl.scale() == "full" else 200)
        True
    """
    return full if scale() == "full" else quick
