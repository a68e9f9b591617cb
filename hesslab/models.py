"""Small nets and the plain full-batch gradient descent that trains them for the notebooks.

The nets are ``torch.nn.Sequential`` multilayer perceptrons in standard parametrisation (PyTorch's default
initialisation), small enough that their exact Hessian fits in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._checks import check_choice, check_count, check_generator, check_positive

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "softplus": nn.Softplus}


def mlp(sizes: list[int] | tuple[int, ...], activation: str = "tanh", generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> nn.Sequential:
    """A multilayer perceptron ``sizes[0] → sizes[1] → … → sizes[-1]`` with ``activation`` between the layers.

    ``mlp([20, 128, 10])`` is Linear(20, 128), tanh, Linear(128, 10): 20·128 + 128 + 128·10 + 10 parameters.
    The weights are initialised as PyTorch does (uniform in ±1/sqrt(fan_in)), drawn from ``generator`` so that the
    same generator gives the same net.

    Args:
        sizes: the layer widths, at least an input and an output size, each >= 1.
        activation: "tanh", "relu", "gelu" or "softplus".
        generator: for the weights and biases (drawn on its device).
        dtype: the parameters' dtype.
        device: the parameters' device.

    Returns:
        The ``nn.Sequential`` net.

    Example:
        >>> import torch
        >>> from hesslab.models import mlp
        >>> net = mlp([20, 128, 10], generator=torch.Generator().manual_seed(0))
        >>> sum(p.numel() for p in net.parameters())  # 20·128 + 128 + 128·10 + 10
        3978
        >>> again = mlp([20, 128, 10], generator=torch.Generator().manual_seed(0))
        >>> all(torch.equal(p, q) for p, q in zip(net.parameters(), again.parameters()))
        True
    """
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least an input and an output size, got {list(sizes)}.")
    for size in sizes:
        check_count("every entry of sizes", size, 1)
    check_choice("activation", activation, sorted(ACTIVATIONS))
    check_generator("generator", generator)
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i > 0:
            layers.append(ACTIVATIONS[activation]())
        layers.append(nn.Linear(fan_in, fan_out, dtype=dtype, device=device))
    bound_device = generator.device if generator is not None else torch.device("cpu")
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, nn.Linear):
                bound = layer.in_features ** -0.5
                for p in (layer.weight, layer.bias):
                    draw = torch.rand(p.shape, generator=generator, device=bound_device, dtype=torch.float64)
                    p.copy_((2 * draw - 1) * bound)
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class TrainingRun:
    """The losses of a full-batch gradient-descent run, one per step, and whether it reached ``target_loss``.

    Attributes:
        losses: L(θ_t) before each step t (the last one is the first below the target, if reached).
        reached_target: whether a loss fell below ``target_loss``.

    Example:
        >>> from hesslab.models import TrainingRun
        >>> TrainingRun(losses=[1.0, 0.25], reached_target=True).losses[-1]
        0.25
    """

    losses: list[float]
    reached_target: bool


def train_full_batch(model: nn.Module, loss_fn, inputs: Tensor, targets: Tensor, lr: float, max_steps: int,
                     target_loss: float = 0.0, progress: bool = False) -> TrainingRun:
    """Plain gradient descent θ ← θ − lr ∇L(θ) on the whole data set, until ``L < target_loss`` or ``max_steps``.

    Trains ``model`` in place. Cost: one forward and backward pass over the data per step.

    Args:
        model: the net, trained in place.
        loss_fn: ``(outputs, targets) -> scalar``.
        inputs: the whole data set's inputs.
        targets: its targets.
        lr: the step size, > 0.
        max_steps: the most steps, >= 1.
        target_loss: stop at the first loss below this.
        progress: show a tqdm bar.

    Returns:
        ``TrainingRun(losses, reached_target)``.

    Raises:
        ValueError: when the loss becomes non-finite (lower lr).

    Example:
        L(w) = (w − 0)² from w = 1 with lr = 1/4: each step halves w, so L falls by 4 per step:

        >>> import torch
        >>> from hesslab.models import train_full_batch
        >>> model = torch.nn.Linear(1, 1, bias=False).double()
        >>> _ = torch.nn.init.ones_(model.weight)
        >>> X, y = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
        >>> run = train_full_batch(model, torch.nn.functional.mse_loss, X, y, lr=0.25, max_steps=10, target_loss=0.01)
        >>> run.losses, run.reached_target
        ([1.0, 0.25, 0.0625, 0.015625, 0.00390625], True)
    """
    check_count("max_steps", max_steps, 1)
    lr = check_positive("lr", lr)
    optimiser = torch.optim.SGD(model.parameters(), lr=lr)
    losses: list[float] = []
    for _ in tqdm(range(max_steps), desc="gradient descent", disable=not progress, leave=False):
        optimiser.zero_grad()
        loss = loss_fn(model(inputs), targets)
        if not torch.isfinite(loss):
            raise ValueError(f"training diverged: the loss became {loss.item()} after {len(losses)} steps; "
                             f"lower lr (now {lr}).")
        losses.append(loss.item())
        if loss.item() < target_loss:
            return TrainingRun(losses, True)
        loss.backward()
        optimiser.step()
    return TrainingRun(losses, False)
