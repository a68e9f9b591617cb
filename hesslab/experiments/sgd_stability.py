"""Notebook 08: SGD's stable minima are flatter than GD's, in trace, on a diagonal linear net.

Wu & Su (2023), *The Implicit Regularization of Dynamical Stability in Stochastic Gradient Descent*: a minimum is
linearly stable for gradient descent with step η when λ_max(H) <= 2/η, but for SGD with small batches it needs
(roughly) tr(H) <= 2/η, since each one-sample Hessian H_i = ∇f_i ∇f_iᵀ at a global minimum has λ_max(H_i) = ‖∇f_i‖²
and the mean of those is tr(H). Here f(x) = ⟨u⊙u − v⊙v, x⟩ on a 3-sparse regression problem: GD keeps its initial trace,
SGD (batch 1) ends at a minimum several times flatter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_count, check_positive
from ..exact import hessian as dense_hessian
from ..functional import loss_function


class DiagonalLinearNet(nn.Module):
    """f(x) = ⟨u⊙u − v⊙v, x⟩, a linear model w = u² − v² written as a two-layer diagonal net, float64.

    Both layers start at α·1, so w = 0 at initialisation and a small α is the "rich" (sparse) regime.

    Args:
        dim: the input dimension d (the net has 2d parameters).
        alpha: the initial scale α > 0 of u and v.

    Example:
        >>> import torch
        >>> net = DiagonalLinearNet(3, alpha=2.0)
        >>> net(torch.ones(2, 3, dtype=torch.float64)).tolist(), net.u.tolist()
        ([0.0, 0.0], [2.0, 2.0, 2.0])
    """

    def __init__(self, dim: int, alpha: float = 1.0):
        super().__init__()
        dim = check_count("dim", dim, 1)
        alpha = check_positive("alpha", alpha, hint="u = v = 0 is a saddle that gradient descent never leaves.")
        self.u = nn.Parameter(torch.full((dim,), alpha, dtype=torch.float64))
        self.v = nn.Parameter(torch.full((dim,), alpha, dtype=torch.float64))

    def forward(self, inputs: Tensor) -> Tensor:
        """The outputs (N,) for inputs (N, d)."""
        return inputs @ (self.u**2 - self.v**2)


def half_mse(outputs: Tensor, targets: Tensor) -> Tensor:
    """L = (1/N) Σᵢ ½ (fᵢ − yᵢ)², the mean squared error with the ½ (its Hessian at a minimum is JᵀJ/N).

    Args:
        outputs: (N,) predictions.
        targets: (N,) targets.

    Returns:
        The 0-d loss.

    Example:
        >>> import torch
        >>> half_mse(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0])).item()
        1.25
    """
    return 0.5 * ((outputs - targets) ** 2).mean()


def sparse_regression(n: int = 20, dim: int = 40, sparsity: int = 3, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Gaussian inputs X (n, d) and targets y = X w* with w* = (1, …, 1, 0, …, 0), ``sparsity`` ones, float64.

    With n < d there is a whole (d − n)-dimensional family of interpolating w: which one (and how flat) is the
    optimiser's choice.

    Args:
        n: samples.
        dim: the input dimension d.
        sparsity: nonzero entries of the teacher w*, at most d.
        seed: seeds X.

    Returns:
        ``(X, y)``: (n, d) and (n,).

    Example:
        >>> X, y = sparse_regression(n=5, dim=8)
        >>> tuple(X.shape), bool(torch.allclose(y, X[:, :3].sum(1)))
        ((5, 8), True)
    """
    n, dim = check_count("n", n, 1), check_count("dim", dim, 1)
    sparsity = check_count("sparsity", sparsity, 0, dim, hint="the teacher has at most d nonzero entries.")
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    teacher = torch.zeros(dim, dtype=torch.float64)
    teacher[:sparsity] = 1.0
    return X, X @ teacher


def hessian(model: DiagonalLinearNet, X: Tensor, y: Tensor) -> Tensor:
    """The exact Hessian (2d, 2d) of the full-batch loss ``half_mse`` in θ = (u, v), by ``hl.hessian``.

    Cost: 2d Hessian-vector products, batched in one block.

    Args:
        model: the net.
        X: (n, d) inputs.
        y: (n,) targets.

    Returns:
        H (2d, 2d), float64.

    Example:
        >>> X, y = sparse_regression(n=5, dim=4)
        >>> torch.allclose(hessian(DiagonalLinearNet(4), X, y), closed_form_hessian(DiagonalLinearNet(4), X, y))
        True
    """
    f, theta = loss_function(model, half_mse, X, y)
    return dense_hessian(f, theta, chunk_size=theta.numel())


def closed_form_hessian(model: DiagonalLinearNet, X: Tensor, y: Tensor) -> Tensor:
    """H of L = (1/2n)‖X(u² − v²) − y‖² in (u, v), by hand, with S = XᵀX/n and g = Xᵀr/n, r = X(u² − v²) − y.

        H = 4 [[diag u · S · diag u, −diag u · S · diag v], [−diag v · S · diag u, diag v · S · diag v]]
            + 2 diag(g, −g),

    so tr(H) = 4 Σⱼ (uⱼ² + vⱼ²) Sⱼⱼ: the residual terms cancel, and the trace is 8α²‖X‖²_F/n ≈ 8α²d at the start.

    Args:
        model: the net.
        X: (n, d) inputs.
        y: (n,) targets.

    Returns:
        H (2d, 2d), float64.

    Example:
        >>> X, y = sparse_regression(n=5, dim=4)
        >>> H = closed_form_hessian(DiagonalLinearNet(4, alpha=1.0), X, y)
        >>> bool(torch.isclose(H.trace(), 8 * (X**2).sum() / 5))
        True
    """
    u, v = model.u.detach(), model.v.detach()
    S, g = X.T @ X / X.shape[0], X.T @ (model(X).detach() - y) / X.shape[0]
    a = torch.cat([u, -v])  # ∂wⱼ/∂uⱼ = 2uⱼ, ∂wⱼ/∂vⱼ = −2vⱼ: the Gauss-Newton part is 4 aaᵀ ⊙ [[S, S], [S, S]]
    return 4 * a[:, None] * S.repeat(2, 2) * a[None, :] + 2 * torch.diag(torch.cat([g, -g]))


@dataclass(frozen=True)
class Run:
    """A training run: the curvature of the full-batch loss at the recorded steps (read-only arrays of one length).

    ``step``, ``loss``, ``trace`` (tr H) and ``sharpness`` (λ_max H); ``final_trace`` and ``final_sharpness`` are
    the last entries.
    """

    step: np.ndarray
    loss: np.ndarray
    trace: np.ndarray
    sharpness: np.ndarray

    @property
    def final_trace(self) -> float:
        """tr(H) after the last step."""
        return float(self.trace[-1])

    @property
    def final_sharpness(self) -> float:
        """λ_max(H) after the last step."""
        return float(self.sharpness[-1])


def train(alpha: float = 1.0, lr: float = 0.01, batch_size: int | None = None, steps: int = 2000, every: int = 20,
          seed: int = 0, n: int = 20, dim: int = 40) -> Run:
    """Train ``DiagonalLinearNet(dim, alpha)`` on ``sparse_regression(n, dim, seed=seed)`` by GD or SGD, step ``lr``.

    θ ← θ − η ∇L_B(θ) with B the whole set (``batch_size=None``, GD) or ``batch_size`` samples drawn without
    replacement, a fresh permutation each epoch (SGD, from a generator seeded by ``seed``). tr(H) and λ_max(H) of
    the full-batch Hessian are computed exactly (``hessian``) at steps 0, every, 2·every, … and after the last.

    Args:
        alpha: the initial scale α > 0.
        lr: the step η > 0.
        batch_size: samples per step, 1..n, or None for GD.
        steps: steps, >= 0.
        every: record every ``every`` steps, >= 1.
        seed: seeds the data and the batches.
        n: samples.
        dim: the input dimension d.

    Returns:
        ``Run(step, loss, trace, sharpness)``.

    Raises:
        ValueError: when the loss becomes non-finite (the run diverged: lower lr or alpha).

    Example:
        >>> run = train(alpha=1.0, lr=0.01, steps=10, every=5, n=5, dim=4)
        >>> run.step.tolist(), bool(run.loss[-1] < run.loss[0])
        ([0, 5, 10], True)
    """
    lr = check_positive("lr", lr)
    steps, every = check_count("steps", steps, 0), check_count("every", every, 1)
    n = check_count("n", n, 1)
    if batch_size is not None:
        batch_size = check_count("batch_size", batch_size, 1, n, hint="None is full-batch gradient descent.")
    X, y = sparse_regression(n, dim, seed=seed)
    model = DiagonalLinearNet(dim, alpha)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    columns: dict[str, list] = {"step": [], "loss": [], "trace": [], "sharpness": []}

    def record(step: int) -> None:
        H = hessian(model, X, y)
        with torch.no_grad():
            columns["loss"].append(float(half_mse(model(X), y)))
        columns["step"].append(step)
        columns["trace"].append(float(H.trace()))
        columns["sharpness"].append(float(torch.linalg.eigvalsh(H)[-1]))

    order = torch.arange(n)
    record(0)
    for step in range(steps):
        if batch_size is None:
            batch = order
        else:
            if step % (n // batch_size) == 0:
                order = torch.randperm(n, generator=generator)
            first = (step % (n // batch_size)) * batch_size
            batch = order[first: first + batch_size]
        optimizer.zero_grad()
        loss = half_mse(model(X[batch]), y[batch])
        if not torch.isfinite(loss):
            raise ValueError(f"training diverged: the loss became {loss.item()} at step {step} (alpha={alpha}, "
                             f"lr={lr}, batch_size={batch_size}); lower lr or alpha.")
        loss.backward()
        optimizer.step()
        if (step + 1) % every == 0 or step + 1 == steps:
            record(step + 1)
    arrays = [np.array(columns[key]) for key in ("step", "loss", "trace", "sharpness")]
    for array in arrays:
        array.flags.writeable = False
    return Run(*arrays)
