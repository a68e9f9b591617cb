"""The loss along directions: 1-D/2-D slices, the mean loss over batches, and the second difference.

Slices ``L(θ + α d_1 + β d_2)`` are evaluated point by point under ``no_grad`` (memory: one point and one batch; the
loss over a data set is averaged batch by batch with ``loss_over_batches``). Along a direction d the second difference
(L(θ + h d) − 2 L(θ) + L(θ − h d)) / h² = dᵀ H d + O(h²): for a unit eigenvector, its eigenvalue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import check_flat_vector, check_positive
from ..functional import loss_function


def loss_over_batches(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], batches: Iterable,
                      params: str | Sequence[str] | None = None) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """``f(θ) = Σ_b N_b L_b(θ) / Σ_b N_b``, the mean loss over a re-iterable of ``(inputs, targets)`` batches.

    ``loss_fn`` must be a mean over its batch. Memory: one batch at a time. Cost of f: one forward pass over the
    data.

    Args:
        model: the net.
        loss_fn: ``(outputs, targets) -> scalar``, a mean over the batch.
        batches: ``(inputs, targets)`` pairs (an iterable is read into a list once).
        params: parameter names, default all that require grad.

    Returns:
        ``(f, theta)`` like ``hl.loss_function``.

    Example:
        >>> import torch, hesslab as hl
        >>> from hesslab.landscape import loss_over_batches
        >>> model, loss = torch.nn.Linear(2, 1).double(), torch.nn.functional.mse_loss
        >>> X, y = torch.arange(8.0).reshape(4, 2).double(), torch.arange(4.0).reshape(4, 1).double()
        >>> f, theta = loss_over_batches(model, loss, [(X[:1], y[:1]), (X[1:], y[1:])])
        >>> bool(torch.isclose(f(theta), hl.loss_function(model, loss, X, y)[0](theta)))  # the mean over all samples
        True
    """
    batches = list(batches) if not isinstance(batches, (list, tuple)) else batches
    if not batches:
        raise ValueError("batches is empty; give at least one (inputs, targets) pair.")
    functions = [(loss_function(model, loss_fn, inputs, targets, params=params)[0], len(targets))
                 for inputs, targets in batches]
    total = sum(size for _, size in functions)
    theta = loss_function(model, loss_fn, *batches[0], params=params)[1]

    def f(point: Tensor) -> Tensor:
        return sum(size * f_b(point) for f_b, size in functions) / total

    return f, theta


@dataclass(frozen=True)
class LossSlice:
    """L(θ + Σ_i c_i d_i) on a grid: ``coordinates`` one array per direction, ``losses`` of shape (m_1[, m_2]).

    Attributes:
        coordinates: one 1-D float64 array per direction (the grid).
        losses: the losses on the grid, NaN/inf where the loss was not finite.
        center_loss: L(θ).

    Example:
        >>> import torch
        >>> from hesslab.landscape import loss_slice
        >>> line = loss_slice(lambda x: (x**2).sum(), torch.zeros(2).double(), [torch.tensor([1.0, 0.0]).double()],
        ...                   [[-1.0, 0.0, 1.0]])
        >>> line.losses.tolist(), line.center_loss
        ([1.0, 0.0, 1.0], 0.0)
    """

    coordinates: tuple[np.ndarray, ...]
    losses: np.ndarray
    center_loss: float


def loss_slice(f: Callable[[Tensor], Tensor], theta: Tensor, directions: Sequence[Tensor],
               coordinates: Sequence, progress: bool = False) -> LossSlice:
    """The loss on a 1-D line or 2-D plane through θ: ``losses[i(, j)] = f(θ + α_i d_1 (+ β_j d_2))``.

    Cost: Π m_i forward passes; memory one point (n) and one forward pass, whatever the grid's size.

    Args:
        f: scalar function of the flat parameters (``hl.loss_function``, ``loss_over_batches``).
        theta: (n,) the centre.
        directions: one or two (n,) vectors, in theta's dtype.
        coordinates: one 1-D grid per direction.
        progress: show a tqdm bar over the points.

    Returns:
        ``LossSlice`` with numpy arrays. A non-finite loss is kept as NaN/inf in ``losses`` (a diverging
        landscape is a finding, not an error); the centre's loss must be finite.

    Example:
        f(x) = x₀² + 2 x₁² on the plane of the two axes:

        >>> import torch
        >>> from hesslab.landscape import loss_slice
        >>> f = lambda x: x[0] ** 2 + 2 * x[1] ** 2
        >>> axes = list(torch.eye(2, dtype=torch.float64))
        >>> loss_slice(f, torch.zeros(2, dtype=torch.float64), axes, [[-1.0, 0.0, 1.0], [0.0, 1.0]]).losses.tolist()
        [[1.0, 3.0], [0.0, 2.0], [1.0, 3.0]]
    """
    theta = check_flat_vector("theta", theta)
    if len(directions) not in (1, 2) or len(coordinates) != len(directions):
        raise ValueError(f"give one or two directions and as many coordinate grids, got {len(directions)} directions "
                         f"and {len(coordinates)} grids.")
    directions = [check_flat_vector(f"directions[{i}]", d) for i, d in enumerate(directions)]
    for i, d in enumerate(directions):
        if d.shape != theta.shape or d.dtype != theta.dtype:
            raise ValueError(f"directions[{i}] must have theta's shape {tuple(theta.shape)} and dtype {theta.dtype}, "
                             f"got {tuple(d.shape)} and {d.dtype}.")
    grids = [np.asarray(c, dtype=np.float64).reshape(-1) for c in coordinates]
    if any(g.size == 0 for g in grids):
        raise ValueError("every coordinate grid needs at least one point.")
    shape = tuple(g.size for g in grids)
    losses = np.empty(shape)
    with torch.no_grad():
        center = float(f(theta))
        for index in tqdm(np.ndindex(*shape), total=int(np.prod(shape)), desc="loss slice", disable=not progress,
                          leave=False):
            point = theta.clone()
            for d, g, i in zip(directions, grids, index):
                point.add_(d, alpha=float(g[i]))
            try:
                losses[index] = float(f(point))
            except ValueError as error:  # hesslab's losses refuse a non-finite value; here it is part of the picture
                if "not finite" not in str(error):
                    raise
                losses[index] = math.nan
    return LossSlice(tuple(grids), losses, center)


def second_difference(f: Callable[[Tensor], Tensor], theta: Tensor, direction: Tensor, step: float = 1e-3) -> Tensor:
    """dᵀ H d by the central second difference (f(θ + h d) − 2 f(θ) + f(θ − h d)) / h², h = step / ‖d‖.

    ``step`` is the displacement's length: the truncation error is about step² · f''''/12 and the rounding error
    about 4 ε |f| / step², so 1e-3 gives ~1e-7 relative accuracy in float64 for a smooth loss (none at a ReLU kink).
    Divide by ‖d‖² for the curvature per unit length, a Rayleigh quotient: λ_min <= dᵀHd/‖d‖² <= λ_max.
    Cost: three forward passes.

    Args:
        f: scalar function of the flat parameters.
        theta: (n,) the point.
        direction: (n,) d, nonzero.
        step: the length h‖d‖ of the displacement, > 0.

    Returns:
        dᵀ H d, a 0-d tensor.

    Example:
        >>> import torch
        >>> from hesslab.landscape import second_difference
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> d = torch.tensor([1.0, 1.0], dtype=torch.float64)
        >>> round(float(second_difference(lambda x: 0.5 * x @ A @ x, torch.zeros(2).double(), d)), 6)  # dᵀAd
        7.0
    """
    theta = check_flat_vector("theta", theta)
    direction = check_flat_vector("direction", direction)
    if direction.shape != theta.shape:
        raise ValueError(f"direction must have theta's shape {tuple(theta.shape)}, got {tuple(direction.shape)}.")
    norm = direction.norm()
    if not norm > 0:
        raise ValueError("direction is zero; a second difference needs a nonzero direction.")
    step = check_positive("step", step)
    h = step / norm
    with torch.no_grad():
        return (f(theta + h * direction) - 2 * f(theta) + f(theta - h * direction)) / h**2
