"""Small data sets: synthetic Gaussian clusters and scikit-learn's bundled sets (no download at run time).

Every loader returns ``(inputs, targets)`` as tensors on the requested device and dtype; random ones take a
``generator``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_count, check_generator, check_positive


def gaussian_clusters(num_points: int, dim: int, num_classes: int, spread: float = 10.0, std: float = 1.0,
                      generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
                      device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """``num_classes`` Gaussian clusters in ``dim`` dimensions, one class each.

    Centres are uniform in ``[-spread, spread]^dim``; each point is its class centre plus ``std`` · N(0, I).
    Classes are assigned round-robin, so every class has ``num_points // num_classes`` or one more points.
    This is the set-up of Sagun et al. (2017), *Empirical Analysis of the Hessian of Over-Parametrized Neural
    Networks*, Section 3.

    Args:
        num_points: N, >= num_classes.
        dim: the input dimension d.
        num_classes: C, >= 1.
        spread: half the side of the cube the centres are drawn in, > 0.
        std: the clusters' standard deviation, >= 0.
        generator: for the centres and the noise (drawn on its device).
        dtype: the inputs' dtype.
        device: where the tensors go (default: the generator's device, else the CPU).

    Returns:
        ``inputs`` (num_points, dim) and integer ``targets`` (num_points,).

    Example:
        >>> import torch
        >>> from hesslab.data import gaussian_clusters
        >>> X, y = gaussian_clusters(10, 2, 3, generator=torch.Generator().manual_seed(0))
        >>> X.shape, X.dtype, y.tolist()  # classes round-robin
        (torch.Size([10, 2]), torch.float64, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    """
    check_count("num_points", num_points, 1)
    check_count("dim", dim, 1)
    check_count("num_classes", num_classes, 1)
    if num_classes > num_points:
        raise ValueError(f"num_classes ({num_classes}) must not exceed num_points ({num_points}).")
    spread = check_positive("spread", spread)
    std = check_positive("std", std, allow_zero=True)
    check_generator("generator", generator)
    draw_on = generator.device if generator is not None else torch.device("cpu")
    centres = (2 * torch.rand(num_classes, dim, generator=generator, device=draw_on, dtype=torch.float64) - 1) * spread
    targets = torch.arange(num_points, device=draw_on) % num_classes
    noise = torch.randn(num_points, dim, generator=generator, device=draw_on, dtype=torch.float64)
    inputs = centres[targets] + std * noise
    return inputs.to(device=device or draw_on, dtype=dtype), targets.to(device=device or draw_on)


def _standardised(inputs) -> Tensor:
    inputs = torch.as_tensor(inputs, dtype=torch.float64)
    scale = inputs.std(dim=0)
    return (inputs - inputs.mean(dim=0)) / torch.where(scale > 0, scale, torch.ones_like(scale))


def digits(dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled handwritten digits: 1797 images of 8×8 pixels, 10 classes.

    Args:
        dtype: the inputs' dtype.
        device: where the tensors go (default: the CPU).

    Returns:
        Standardised ``inputs`` (1797, 64) (zero mean, unit variance per pixel; constant pixels stay 0) and
        ``targets`` (1797,) in 0..9.

    Example:
        >>> from hesslab.data import digits
        >>> X, y = digits()
        >>> X.shape, y.shape, sorted(set(y.tolist())) == list(range(10))
        (torch.Size([1797, 64]), torch.Size([1797]), True)
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    inputs = _standardised(bunch.data)
    return inputs.to(device=device, dtype=dtype), torch.as_tensor(bunch.target, dtype=torch.long, device=device)


def pixel_digits(dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled digits with pixels scaled to [0, 1] (the raw 0..16 grey levels divided by 16).

    Unlike ``digits`` (standardised pixels) the inputs keep their mean image. After training a linear softmax on them
    (notebook 03), the Hessian has C − 1 = 9 outliers well above its bulk — the spiked regime of Granziol, Zohren &
    Roberts' (2022) random-matrix model — with λ_max 0.554 for the full batch.
    With standardised pixels the top eigenvalues do not stand out from the rest, and the mean λ_max of a batch
    approaches the full-batch one much more slowly.

    Args:
        dtype: the inputs' dtype.
        device: where the tensors go (default: the CPU).

    Returns:
        ``inputs`` (1797, 64) in [0, 1] and ``targets`` (1797,) in 0..9.

    Example:
        >>> from hesslab.data import pixel_digits
        >>> X, y = pixel_digits()
        >>> X.shape, y.shape, float(X.min()), float(X.max()), int(y.max())
        (torch.Size([1797, 64]), torch.Size([1797]), 0.0, 1.0, 9)
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    inputs = torch.as_tensor(bunch.data, dtype=torch.float64) / 16
    return inputs.to(device=device, dtype=dtype), torch.as_tensor(bunch.target, dtype=torch.long, device=device)


def breast_cancer(dtype: torch.dtype = torch.float64,
                  device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled Wisconsin breast-cancer set: 569 samples, 30 features, binary labels.

    Args:
        dtype: the inputs' dtype.
        device: where the tensors go (default: the CPU).

    Returns:
        Standardised ``inputs`` (569, 30) and ``targets`` (569,) in {0, 1}.

    Example:
        >>> from hesslab.data import breast_cancer
        >>> X, y = breast_cancer()
        >>> X.shape, y.shape, round(float(X.mean()), 8) == 0.0
        (torch.Size([569, 30]), torch.Size([569]), True)
    """
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    inputs = _standardised(bunch.data)
    return inputs.to(device=device, dtype=dtype), torch.as_tensor(bunch.target, dtype=torch.long, device=device)
