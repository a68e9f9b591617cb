"""Validation at the public boundary: every check raises a ValueError/TypeError that names the argument,
what was expected, what was given, and what to do about it."""

from __future__ import annotations

import torch
from torch import Tensor


def check_flat_vector(name: str, x, *, floating: bool = True) -> Tensor:
    """``x`` must be a finite 1-D floating-point tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}; wrap it with torch.as_tensor(...).")
    if x.ndim != 1:
        raise ValueError(
            f"{name} must be a flat 1-D vector, got shape {tuple(x.shape)}; flatten it with {name}.reshape(-1) "
            "(hl.loss_function does this for a model's parameters)."
        )
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}; convert with {name}.double() or .float().")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty; a function of zero variables has no Hessian.")
    check_finite(name, x)
    return x


def check_finite(name: str, t: Tensor) -> None:
    """Raise if ``t`` has a NaN or inf. One reduction: a finite sum proves every entry finite (NaN and inf
    propagate); only when the sum is not finite (or overflowed) are the entries looked at one by one."""
    if bool(torch.isfinite(t.sum())):
        return
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} has {bad} non-finite entries (NaN or inf); curvature is undefined there.")


def check_like(name: str, v: Tensor, n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``v`` must be (n,) or (n, k) with the operator's dtype and device, and finite."""
    if not isinstance(v, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}.")
    if v.ndim not in (1, 2) or v.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) or ({n}, k), got {tuple(v.shape)}.")
    if v.dtype != dtype:
        raise TypeError(f"{name} has dtype {v.dtype} but the point x has {dtype}; use {name}.to({dtype}).")
    if v.device != device:
        raise ValueError(f"{name} is on {v.device} but the point x is on {device}; use {name}.to('{device}').")
    check_finite(name, v)
    return v


def check_scalar_output(name: str, value) -> Tensor:
    """A loss must be a real scalar (0-d tensor, or one element)."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must return a torch.Tensor, got {type(value).__name__}.")
    if value.numel() != 1:
        raise ValueError(
            f"{name} must return a scalar, got shape {tuple(value.shape)}; reduce it (e.g. .mean() or "
            "reduction='mean' in the loss)."
        )
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} is not finite ({value.item()}) at this point; curvature is undefined there.")
    return value.reshape(())


def check_count(name: str, value, low: int, high: int | None = None, hint: str = "") -> int:
    """An integer in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}.")
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {rng}, got {value}.{(' ' + hint) if hint else ''}")
    return value


def check_real_number(name: str, value, low: float | None = None, high: float | None = None, *,
                      open: str = "neither", hint: str = "") -> float:
    """A finite real number in the interval from ``low`` to ``high`` (None: unbounded on that side), as a float.

    Accepts Python ints and floats, numpy real scalars and 0-d (or one-element) real tensors; refuses bools (True is
    not a number here), complex values and NaN/inf. ``open`` says which ends are excluded: "neither" ([low, high]),
    "low" ((low, high]), "high" ([low, high)) or "both" ((low, high))."""
    import math  # local imports: this helper is appended to a file that others edit

    import numpy as np

    if open not in ("neither", "low", "high", "both"):
        raise ValueError(f"open must be 'neither', 'low', 'high' or 'both', got {open!r}.")
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{name} must be a real number, got a tensor of shape {tuple(value.shape)} and dtype "
                            f"{value.dtype}; pass a float (e.g. {name}=1e-3).")
        number = value.item()
    elif isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number (int or float), got {type(value).__name__} {value!r}.")
    else:
        number = value.item() if isinstance(value, np.generic) else value
    number = float(number)
    below = low is not None and (number <= low if open in ("low", "both") else number < low)
    above = high is not None and (number >= high if open in ("high", "both") else number > high)
    if not math.isfinite(number) or below or above:
        left = "(" if low is None or open in ("low", "both") else "["
        right = ")" if high is None or open in ("high", "both") else "]"
        interval = f"{left}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{right}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}.{(' ' + hint) if hint else ''}")
    return number

def check_finite_product(product: Tensor, matrix: str, cause: str) -> Tensor:
    """A curvature product ``A V`` must be finite; NaN or inf means A itself is not finite at this point.

    Called on every product (one reduction, as in ``check_finite``): the inputs were finite, so a non-finite
    product says the matrix is undefined or overflowed there, e.g. ``f = ‖x‖`` at 0 (its gradient is a finite
    subgradient, its Hessian 0/0). Returns ``product`` unchanged.
    """
    if bool(torch.isfinite(product.sum())):
        return product
    bad = int((~torch.isfinite(product)).sum())
    if bad:
        raise ValueError(
            f"{matrix} is not finite at this point ({cause}): {bad} of {product.numel()} entries of the product are "
            "NaN/inf. Move the point (e.g. away from a kink such as ‖x‖ at 0), smooth f there, or "
            "compute in float64 if it overflowed."
        )
    return product
