"""Notebook 07: full-batch gradient descent sharpens the loss until λ_max reaches 2/η, then stays at the edge.

Cohen, Kaur, Li, Kolter & Talwalkar (ICLR 2021), *Gradient Descent on Neural Networks Typically Occurs at the Edge
of Stability*. On a quadratic with curvature λ, gradient descent with step η is stable only while λ < 2/η. Along
training of a neural net the sharpness λ_max(∇²L(θ_t)) first grows ("progressive sharpening"); once it reaches 2/η
it hovers there, and the loss keeps falling, though not monotonically. Here: an MLP 64-64-64-10 (tanh) on N digits,
the squared error ½‖f(x) − e_y‖² against one-hot targets, averaged over the samples; λ_max by ``track_curvature``
(warm-started from the span of the last few top eigenvectors).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_count, check_positive
from ..data import digits
from ..models import mlp
from ..runtime import device as default_device
from ..training import track_curvature


def squared_error(outputs: Tensor, targets: Tensor) -> Tensor:
    """L = (1/N) Σ_i ½‖f(x_i) − e_{y_i}‖², the squared error against one-hot targets (the paper's MSE)."""
    one_hot = nn.functional.one_hot(targets, outputs.shape[-1]).to(outputs.dtype)
    return 0.5 * ((outputs - one_hot) ** 2).sum(dim=-1).mean()


@lru_cache(maxsize=4)
def digits_subset(num_samples: int = 1000, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``num_samples`` standardised digits (inputs (N, 64), labels (N,)), drawn without replacement by ``seed``."""
    num_samples = check_count("num_samples", num_samples, 10, 1797, hint="scikit-learn ships 1797 digits.")
    inputs, targets = digits()
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed))[:num_samples]
    return inputs[order], targets[order]


@dataclass(frozen=True)
class EdgeRun:
    """One gradient-descent run: ``step``, ``loss`` and ``sharpness`` (λ_max) at the measured steps, and η."""

    lr: float
    step: np.ndarray
    loss: np.ndarray
    sharpness: np.ndarray
    matvecs: np.ndarray

    @property
    def edge(self) -> float:
        """The stability threshold 2/η of gradient descent on a quadratic."""
        return 2.0 / self.lr

    def late_ratio(self, fraction: float = 0.5) -> float:
        """The median of λ_max/(2/η) over the last ``fraction`` of the measurements."""
        late = self.sharpness[int(len(self.sharpness) * (1 - fraction)):]
        return float(np.median(late) / self.edge)


def gradient_descent(lr: float, steps: int, every: int = 10, num_samples: int = 1000, width: int = 64,
                     seed: int = 0, tol: float = 1e-3, device: torch.device | str | None = None) -> EdgeRun:
    """Full-batch GD with step ``lr`` on the digits MLP; λ_max of the training loss every ``every`` steps.

    Cost: ``steps`` gradients on N samples, plus a warm-started Lanczos run (a few Hessian-vector products) per
    measurement.

    Args:
        lr: the step size η, > 0.
        steps: gradient-descent steps.
        every: measure λ_max at steps 0, every, 2·every, … and the last.
        num_samples: digits in the training set (10..1797).
        width: the three hidden widths.
        seed: for the digits drawn and the initial weights.
        tol: ``top_eigen``'s relative residual tolerance.
        device: where to train (default ``hl.device()``).

    Returns:
        An ``EdgeRun``.

    Example:
        >>> from hesslab.experiments.edge_of_stability import gradient_descent
        >>> run = gradient_descent(lr=0.4, steps=20, every=10, num_samples=100, width=16)
        >>> run.step.tolist(), bool(run.sharpness[0] < run.edge)
        ([0.0, 10.0, 20.0], True)
    """
    lr = check_positive("lr", lr)
    device = torch.device(device) if device is not None else default_device()
    inputs, targets = (t.to(device) for t in digits_subset(num_samples, seed))
    model = mlp([64, width, width, width, 10], activation="tanh",
                generator=torch.Generator().manual_seed(seed)).to(device)
    trace = track_curvature(model, squared_error, (inputs, targets), torch.optim.SGD(model.parameters(), lr=lr),
                            steps=steps, every=every, measure=("sharpness",), tol=tol,
                            generator=torch.Generator(device).manual_seed(seed))
    return EdgeRun(lr, trace.step, trace.loss, trace.sharpness, trace.matvecs)
