"""Validation at the public boundary (private: the library's own checks, not its API).

Every check raises a ValueError/TypeError that names the argument, what was expected, what was given, and what to do
about it; each returns the value it accepted (as a float, an int or a bool where it reads a number or a flag).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor


def check_flat_vector(name: str, x, *, floating: bool = True) -> Tensor:
    """``x`` must be a finite 1-D floating-point tensor.

    Args:
        name: the argument's name, for the message.
        x: the value given.
        floating: require a floating-point dtype (False: any dtype).

    Returns:
        ``x``, unchanged.

    Raises:
        TypeError: when ``x`` is not a tensor, or not floating-point when ``floating``.
        ValueError: when ``x`` is not 1-D, is empty or has a NaN or inf.

    Example:
        >>> check_flat_vector("x0", torch.ones(2, dtype=torch.float64)).tolist()
        [1.0, 1.0]
        >>> check_flat_vector("x0", torch.ones(2, 2))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: x0 must be a flat 1-D vector, got shape (2, 2); flatten it with x0.reshape(-1) ...
    """
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
    """Raise if ``t`` has a NaN or inf.

    One reduction: a finite sum proves every entry finite (NaN and inf propagate); only when the sum is not finite
    (or overflowed) are the entries looked at one by one.

    Args:
        name: the tensor's name, for the message.
        t: the tensor, any shape.

    Example:
        >>> check_finite("v", torch.tensor([1.0, float("nan")]))
        Traceback (most recent call last):
            ...
        ValueError: v has 1 non-finite entries (NaN or inf); curvature is undefined there.
    """
    if bool(torch.isfinite(t.sum())):
        return
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} has {bad} non-finite entries (NaN or inf); curvature is undefined there.")


def check_like(name: str, v: Tensor, n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``v`` must be (n,) or (n, k) with the operator's dtype and device, and finite.

    Args:
        name: the argument's name, for the message.
        v: the vector or block of vectors given.
        n: the operator's size.
        dtype: the operator's dtype.
        device: the operator's device.

    Returns:
        ``v``, unchanged.

    Raises:
        TypeError: when ``v`` is not a tensor or has another dtype.
        ValueError: when its shape or device differs, or it has a NaN or inf.

    Example:
        >>> check_like("v", torch.ones(3, 2), 3, torch.float32, torch.device("cpu")).shape
        torch.Size([3, 2])
        >>> check_like("v", torch.ones(4), 3, torch.float32, torch.device("cpu"))
        Traceback (most recent call last):
            ...
        ValueError: v must have shape (3,) or (3, k), got (4,).
    """
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


def check_scalar_output(name: str, value, *, finite: bool = True) -> Tensor:
    """What a function such as a loss returned must be a real scalar tensor (0-d, or one element).

    Args:
        name: the function's name, for the message.
        value: what it returned.
        finite: refuse NaN and inf as well (False: a line search judges a non-finite value itself).

    Returns:
        ``value`` as a 0-d tensor.

    Example:
        >>> check_scalar_output("f", torch.ones(1))
        tensor(1.)
        >>> check_scalar_output("f", torch.ones(3))
        Traceback (most recent call last):
            ...
        ValueError: f must return a scalar, got shape (3,); reduce it (e.g. .mean() or reduction='mean' in the loss).
    """
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must return a torch.Tensor, got {type(value).__name__}.")
    if value.numel() != 1:
        raise ValueError(
            f"{name} must return a scalar, got shape {tuple(value.shape)}; reduce it (e.g. .mean() or "
            "reduction='mean' in the loss)."
        )
    if not value.is_floating_point():
        raise TypeError(f"{name} must return a real floating-point tensor, got dtype {value.dtype}; compute it in "
                        "float32 or float64.")
    if finite and not torch.isfinite(value).all():
        raise ValueError(f"{name} is not finite ({value.item()}) at this point; curvature is undefined there.")
    return value.reshape(())


def _hint(hint: str) -> str:
    return f" {hint}" if hint else ""


def check_count(name: str, value, low: int, high: int | None = None, hint: str = "") -> int:
    """An integer in [low, high]: a Python or numpy int, not a bool.

    Args:
        name: the argument's name, for the message.
        value: the value given.
        low: the smallest value allowed.
        high: the largest value allowed (None: no upper bound).
        hint: a sentence appended to the message (what the count means, how to fix it).

    Returns:
        ``value`` as an int.

    Example:
        >>> check_count("num_probes", 10, 1)
        10
        >>> check_count("num_probes", True, 1)
        Traceback (most recent call last):
            ...
        TypeError: num_probes must be an int, got bool True.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}.")
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {rng}, got {value}.{_hint(hint)}")
    return int(value)


def check_real_number(name: str, value, low: float | None = None, high: float | None = None, *,
                      open: str = "neither", hint: str = "") -> float:
    """A finite real number in the interval from ``low`` to ``high``, as a float.

    Accepts Python ints and floats, numpy real scalars and 0-d (or one-element) real tensors; refuses bools (True is
    not a number here), strings, complex values and NaN/inf.

    Args:
        name: the argument's name, for the message.
        value: the value given.
        low: the lower end of the interval (None: unbounded below).
        high: the upper end of the interval (None: unbounded above).
        open: which ends are excluded: "neither" ([low, high]), "low" ((low, high]), "high" ([low, high)), "both".
        hint: a sentence appended to the message (what the number means, a typical value).

    Returns:
        ``value`` as a Python float.

    Example:
        >>> check_real_number("beta", 0.9, 0.0, 1.0, open="high")
        0.9
        >>> check_real_number("beta", float("nan"), 0.0, 1.0, open="high")
        Traceback (most recent call last):
            ...
        ValueError: beta must be a finite number in [0, 1), got nan.
    """
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
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}.{_hint(hint)}")
    return number


def check_positive(name: str, value, *, allow_zero: bool = False, hint: str = "") -> float:
    """A finite real number > 0 (>= 0 with ``allow_zero``), as ``check_real_number`` reads numbers.

    Args:
        name: the argument's name, for the message.
        value: the value given.
        allow_zero: accept 0 as well.
        hint: a sentence appended to the message (what the number means, a typical value).

    Returns:
        ``value`` as a Python float.

    Example:
        >>> check_positive("tol", 1e-3)
        0.001
        >>> check_positive("tol", float("inf"))
        Traceback (most recent call last):
            ...
        ValueError: tol must be a finite number in (0, inf), got inf.
    """
    return check_real_number(name, value, 0.0, open="neither" if allow_zero else "low", hint=hint)


def check_choice(name: str, value, choices, hint: str = ""):
    """One of a few allowed values (strings, ints or None), compared by type and value (True is not 1, 1.0 is not 1).

    Args:
        name: the argument's name, for the message.
        value: the value given.
        choices: the allowed values.
        hint: a sentence appended to the message (what the choices mean).

    Returns:
        ``value``, unchanged.

    Example:
        >>> check_choice("method", "hutch++", ("hutchinson", "hutch++"))
        'hutch++'
        >>> check_choice("method", "hutch", ("hutchinson", "hutch++"))
        Traceback (most recent call last):
            ...
        ValueError: method must be 'hutchinson' or 'hutch++', got 'hutch'.
    """
    choices = tuple(choices)
    if not any(value is c or (not isinstance(value, bool) and isinstance(value, type(c)) and value == c)
               for c in choices):
        names = [repr(c) for c in choices]
        listed = " or ".join(names) if len(names) <= 2 else "one of " + ", ".join(names)
        raise ValueError(f"{name} must be {listed}, got {value!r}.{_hint(hint)}")
    return value


def check_generator(name: str, generator) -> torch.Generator | None:
    """None (torch's global generator) or a ``torch.Generator``.

    Args:
        name: the argument's name, for the message (usually "generator").
        generator: the value given.

    Returns:
        ``generator``, unchanged.

    Example:
        >>> check_generator("generator", None) is None
        True
        >>> check_generator("generator", 0)
        Traceback (most recent call last):
            ...
        TypeError: generator must be a torch.Generator or None, got int; make one with hl.seed(0).
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(generator).__name__}; "
                        "make one with hl.seed(0).")
    return generator


def check_flag(name: str, value) -> bool:
    """A bool (Python or numpy), not a number or a string ("no" would read as True).

    Args:
        name: the argument's name, for the message.
        value: the value given.

    Returns:
        ``value`` as a Python bool.

    Example:
        >>> check_flag("progress", False)
        False
        >>> check_flag("progress", "no")
        Traceback (most recent call last):
            ...
        TypeError: progress must be True or False, got str 'no'.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}.")
    return bool(value)


def check_callable(name: str, value, signature: str, hint: str = "") -> Callable:
    """A callable (a function, a lambda, an object with ``__call__``).

    Args:
        name: the argument's name, for the message.
        value: the value given.
        signature: what it is called with and returns, e.g. "f(x) -> scalar tensor".
        hint: a sentence appended to the message.

    Returns:
        ``value``, unchanged.

    Example:
        >>> check_callable("f", abs, "f(x) -> scalar tensor") is abs
        True
        >>> check_callable("f", 3.0, "f(x) -> scalar tensor")
        Traceback (most recent call last):
            ...
        TypeError: f must be a callable f(x) -> scalar tensor, got float.
    """
    if not callable(value):
        raise TypeError(f"{name} must be a callable {signature}, got {type(value).__name__}.{_hint(hint)}")
    return value


def check_instance(name: str, value, kind: type, hint: str = ""):
    """An instance of ``kind`` (a hesslab object such as an EllipticProblem, or a torch class).

    Args:
        name: the argument's name, for the message.
        value: the value given.
        kind: the class it must be an instance of.
        hint: how to make one, appended to the message.

    Returns:
        ``value``, unchanged.

    Example:
        >>> check_instance("model", torch.nn.Linear(2, 1), torch.nn.Module)
        Linear(in_features=2, out_features=1, bias=True)
        >>> check_instance("model", "mlp", torch.nn.Module, "Build one with hl.mlp(...).")
        Traceback (most recent call last):
            ...
        TypeError: model must be a Module, got str. Build one with hl.mlp(...).
    """
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be a {kind.__name__}, got {type(value).__name__}.{_hint(hint)}")
    return value


def check_finite_product(product: Tensor, matrix: str, cause: str) -> Tensor:
    """A curvature product ``A V`` must be finite; NaN or inf means A itself is not finite at this point.

    Called on every product (one reduction, as in ``check_finite``): the inputs were finite, so a non-finite
    product says the matrix is undefined or overflowed there, e.g. ``f = ‖x‖`` at 0 (its gradient is a finite
    subgradient, its Hessian 0/0).

    Args:
        product: the product A V, any shape.
        matrix: the matrix's name, for the message (e.g. "∇²f").
        cause: what makes it non-finite, for the message.

    Returns:
        ``product``, unchanged.

    Raises:
        ValueError: when ``product`` has a NaN or inf.

    Example:
        >>> check_finite_product(torch.ones(2), "∇²f", "f is not twice differentiable").tolist()
        [1.0, 1.0]
        >>> check_finite_product(torch.tensor([1.0, float("nan")]), "∇²f", "f is not twice differentiable")
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: ∇²f is not finite at this point (f is not twice differentiable): 1 of 2 entries of the product ...
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
