"""Notebook 09: the sharpness η·λ_max of a two-layer tanh net under μP and under the NTK parametrisation.

Noci, Meterez, Hofmann & Orvieto (2024), *Why do Learning Rates Transfer? Reconciling Optimization and Scaling
Limits for Deep Learning*: under μP (output scaled by 1/N, learning rate η0·N) the preconditioned sharpness
S = η·λ_max(GGN) climbs from its value at initialisation to the edge of stability S ≈ 2 along one trajectory,
whatever the width N; under the NTK parametrisation (output scaled by 1/√N, learning rate η0) the features freeze
as N grows, the GGN stays where it started, and S barely moves.

The net is f(x) = aᵀ tanh(Wx/√d) / s with W (N, d) and a (N,) drawn N(0, 1); s = √N (NTP) or s = N (μP). It is not
``hesslab.models.ParametrisedMLP``: that net has biases, initialises μP's output layer at 1/N and gives each layer its
own learning rate (Tensor Programs V), while this one keeps every weight N(0, 1) and puts the whole width dependence
in the output scale s and one global learning rate, the setting of Noci et al.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_choice, check_count, check_positive
from ..training import track_curvature

PARAMETRISATIONS = ("ntp", "mup")


class TwoLayerTanh(nn.Module):
    """f(x) = aᵀ tanh(Wx/√d) / s, with W (N, d), a (N,) drawn N(0, 1) and s = √N (``"ntp"``) or N (``"mup"``).

    Args:
        d: the input size.
        width: N, the hidden width.
        parametrisation: ``"ntp"`` (s = √N) or ``"mup"`` (s = N).
        generator: for the weights.
        dtype: the parameters' dtype.

    Example:
        >>> import torch
        >>> from hesslab.experiments.mup_sharpness import TwoLayerTanh
        >>> net = TwoLayerTanh(16, 64, "mup", generator=torch.Generator().manual_seed(0))
        >>> net.scale, net(torch.ones(5, 16, dtype=torch.float64)).shape
        (64.0, torch.Size([5, 1]))
    """

    def __init__(self, d: int, width: int, parametrisation: str = "mup", generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        self.d = check_count("d", d, 1)
        self.width = check_count("width", width, 1)
        self.parametrisation = check_choice("parametrisation", parametrisation, PARAMETRISATIONS,
                                            hint="ntp: output / √N, lr η0; mup: output / N, lr η0·N.")
        self.scale = float(width) ** 0.5 if parametrisation == "ntp" else float(width)
        self.W = nn.Parameter(torch.randn(width, d, generator=generator, dtype=torch.float64).to(dtype))
        self.a = nn.Parameter(torch.randn(width, 1, generator=generator, dtype=torch.float64).to(dtype))

    def forward(self, x: Tensor) -> Tensor:
        """The outputs (batch, 1) of inputs x (batch, d)."""
        return torch.tanh(x @ self.W.T / math.sqrt(self.d)) @ self.a / self.scale


def learning_rate(eta0: float, width: int, parametrisation: str) -> float:
    """The global learning rate: η = η0 under NTP, η = η0·N under μP (the scale that makes S width-independent).

    Args:
        eta0: the base learning rate η0, > 0.
        width: N.
        parametrisation: ``"ntp"`` or ``"mup"``.

    Returns:
        η, a float.

    Example:
        >>> from hesslab.experiments.mup_sharpness import learning_rate
        >>> learning_rate(5.0, 64, "ntp"), learning_rate(5.0, 64, "mup")
        (5.0, 320.0)
    """
    eta0 = check_positive("eta0", eta0)
    width = check_count("width", width, 1)
    check_choice("parametrisation", parametrisation, PARAMETRISATIONS)
    return eta0 if parametrisation == "ntp" else eta0 * width


def teacher_data(n: int = 128, d: int = 16, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Inputs x ~ N(0, I_d) and the targets y = βᵀx/√d of a random linear teacher β ~ N(0, I_d) (so Var y ≈ 1).

    Args:
        n: samples.
        d: input size.
        generator: for x and β.

    Returns:
        ``(X, y)``: (n, d) and (n, 1), float64.

    Example:
        >>> import torch
        >>> from hesslab.experiments.mup_sharpness import teacher_data
        >>> X, y = teacher_data(8, 4, torch.Generator().manual_seed(0))
        >>> X.shape, y.shape
        (torch.Size([8, 4]), torch.Size([8, 1]))
    """
    n, d = check_count("n", n, 1), check_count("d", d, 1)
    X = torch.randn(n, d, generator=generator, dtype=torch.float64)
    beta = torch.randn(d, 1, generator=generator, dtype=torch.float64)
    return X, X @ beta / math.sqrt(d)


def half_mse(outputs: Tensor, targets: Tensor) -> Tensor:
    """L = (1/2n) Σᵢ (f(xᵢ) − yᵢ)²; its GGN is JᵀJ/n, so λ_max(GGN) = λ_max(K)/n for the NTK Gram matrix K."""
    return 0.5 * ((outputs - targets) ** 2).mean()


@dataclass(frozen=True)
class SharpnessRun:
    """S = η·λ_max(GGN) and the loss at the measured steps of one full-batch GD run.

    ``step``, ``sharpness`` (S, already times η) and ``loss`` are float arrays of one length; ``lr`` is η.
    """

    width: int
    parametrisation: str
    lr: float
    step: np.ndarray
    sharpness: np.ndarray
    loss: np.ndarray

    def at(self, step: int) -> float:
        """S at a measured ``step`` (ValueError if it was not measured)."""
        hits = np.flatnonzero(self.step == step)
        if hits.size == 0:
            raise ValueError(f"step {step} was not measured; measured steps are {self.step.astype(int).tolist()}.")
        return float(self.sharpness[hits[0]])

    @property
    def growth(self) -> float:
        """S at the last measured step minus S at initialisation."""
        return float(self.sharpness[-1] - self.sharpness[0])


def run(width: int, parametrisation: str = "mup", steps: int = 200, eta0: float = 5.0, every: int = 5,
        seed: int = 0, n: int = 128, d: int = 16, device: torch.device | str | None = None) -> SharpnessRun:
    """Train ``TwoLayerTanh`` by full-batch GD (``torch.optim.SGD``) on ``teacher_data`` and track S = η·λ_max(GGN).

    λ_max(GGN) of ``half_mse`` on the whole data set is measured at steps 0, every, 2·every, … by
    ``hl.track_curvature(curvature="ggn", measure=("sharpness",))``, each run warm-started from the span of the last
    few top eigenvectors. The data come from ``seed`` (the same for every width), the weights from ``seed + 1``.

    Cost: ``steps`` forward/backward passes of O(n·N·d) and a few GGN products per measurement.

    Args:
        width: N, >= 1.
        parametrisation: ``"ntp"`` or ``"mup"``.
        steps: GD steps, >= 0.
        eta0: the base learning rate η0 (η = η0 under NTP, η0·N under μP).
        every: measure every this many steps.
        seed: for the data (``seed``) and the weights (``seed + 1``).
        n: samples.
        d: input size.
        device: where to train (default CPU).

    Returns:
        A ``SharpnessRun``.

    Example:
        >>> from hesslab.experiments.mup_sharpness import run
        >>> result = run(64, "mup", steps=20, every=10)
        >>> result.step.tolist(), bool(result.sharpness[-1] > result.sharpness[0])
        ([0.0, 10.0, 20.0], True)
    """
    width = check_count("width", width, 1)
    check_choice("parametrisation", parametrisation, PARAMETRISATIONS,
                 hint="ntp: output / √N, lr η0; mup: output / N, lr η0·N.")
    steps, every = check_count("steps", steps, 0), check_count("every", every, 1)
    lr = learning_rate(eta0, width, parametrisation)
    device = torch.device(device if device is not None else "cpu")
    X, y = teacher_data(n, d, torch.Generator().manual_seed(seed))
    model = TwoLayerTanh(d, width, parametrisation, torch.Generator().manual_seed(seed + 1)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    trace = track_curvature(model, half_mse, (X.to(device), y.to(device)), optimizer, steps, every=every,
                            measure=("sharpness",), curvature="ggn",
                            generator=torch.Generator(device=device).manual_seed(seed + 2))
    return SharpnessRun(width, parametrisation, lr, trace.step.copy(), lr * trace.sharpness, trace.loss.copy())


def spread(values) -> float:
    """(max − min) / mean of a few positive numbers: how far apart the widths' S are.

    Example:
        >>> from hesslab.experiments.mup_sharpness import spread
        >>> round(spread([1.9, 2.0, 2.1]), 6)
        0.1
    """
    values = np.asarray(values, dtype=float)
    return float((values.max() - values.min()) / values.mean())
