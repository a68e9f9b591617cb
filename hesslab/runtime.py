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
    """The device to compute on: ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed(value: int, device: torch.device | str | None = None) -> torch.Generator:
    """Seed Python's, NumPy's and torch's global generators and return a fresh ``torch.Generator``.

    Pass the returned generator to every stochastic hesslab routine (``generator=``): the same seed gives the same
    answer. The generator lives on ``device`` (default: ``hl.device()``), where the random probes are drawn.
    """
    value = check_count("seed value", value, -(2**63), 2**64 - 1, hint="Seeds are 64-bit integers, e.g. hl.seed(0).")
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)
    generator = torch.Generator(device=torch.device(device) if device is not None else globals()["device"]())
    generator.manual_seed(value)
    return generator


def scale() -> str:
    """``"full"`` (paper-like sizes) on a GPU, ``"quick"`` on a CPU; ``HESSLAB_SCALE=quick|full`` overrides."""
    chosen = os.environ.get("HESSLAB_SCALE", "").strip().lower()
    if chosen in ("quick", "full"):
        return chosen
    if chosen:
        raise ValueError(f"HESSLAB_SCALE must be 'quick' or 'full', got {chosen!r}.")
    return "full" if torch.cuda.is_available() else "quick"


def sized(quick, full):
    """``quick`` or ``full`` according to ``scale()``: ``n = hl.sized(quick=200, full=5000)``."""
    return full if scale() == "full" else quick
