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


# ---- parametrisations: standard (SP), neural tangent (NTK) and maximal update (μP) ----

PARAMETRISATIONS = ("sp", "ntk", "mup")
OPTIMIZERS = ("sgd", "adam")


class ParametrisedMLP(nn.Module):
    """An MLP ``d → N → … → N → C`` whose layer l computes h_l = m_l W_l h_{l−1} + b_l, with m_l, init and lr per layer.

    With fan_in the input size of a layer (d for the first, N for the hidden and the output layer), and
    ``param_groups(lr)`` giving each layer its own learning rate (Yang & Hu 2021, *Tensor Programs IV*, and
    Tensor Programs V, Table 3; all weights Gaussian, biases 0 at the start):

    ==========  ===================================  ======================  ==========================
    ``"sp"``    W ~ N(0, 1/fan_in), m = 1            lr for every layer      (the PyTorch habit)
    ``"ntk"``   W ~ N(0, 1), m = 1/√fan_in           lr for every layer      (Jacot et al. 2018)
    ``"mup"``   W ~ N(0, 1/fan_in), m = 1; the output W ~ N(0, 1/fan_in²);
                SGD: lr·fan_out for the input layer and the hidden biases, lr for the hidden weights and the output
                bias, lr/fan_in for the output weights; Adam: lr for the input layer and the biases, lr/fan_in for
                the hidden and the output weights
    ==========  ==========================================================================================

    Under μP every layer's features move by Θ(1) per coordinate in the first step whatever the width (the
    "coordinate check"); under SP the output blows up with N at a fixed lr, under NTK the features freeze as N grows.

    Args:
        sizes: ``[d, N, …, N, C]``, at least an input and an output size.
        parametrisation: ``"sp"``, ``"ntk"`` or ``"mup"``.
        activation: as in ``mlp``.
        generator: for the weights.
        dtype: the parameters' dtype.

    Example:
        >>> import torch
        >>> from hesslab.models import ParametrisedMLP
        >>> net = ParametrisedMLP([4, 64, 2], "mup", generator=torch.Generator().manual_seed(0))
        >>> [group["lr"] for group in net.param_groups(lr=0.1)]  # input W, b; output W, b
        [6.4, 6.4, 0.0015625, 0.1]
        >>> optimizer = torch.optim.SGD(net.param_groups(lr=0.1))
        >>> net(torch.ones(3, 4, dtype=torch.float64)).shape
        torch.Size([3, 2])
    """

    def __init__(self, sizes, parametrisation: str = "mup", activation: str = "tanh",
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64):
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least an input and an output size, got {list(sizes)}.")
        for size in sizes:
            check_count("every entry of sizes", size, 1)
        self.parametrisation = check_choice("parametrisation", parametrisation, PARAMETRISATIONS,
                                            hint="sp: standard, ntk: neural tangent, mup: maximal update.")
        check_choice("activation", activation, sorted(ACTIVATIONS))
        check_generator("generator", generator)
        self.sizes = list(sizes)
        self.activation = ACTIVATIONS[activation]()
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        draw_on = generator.device if generator is not None else torch.device("cpu")
        last = len(sizes) - 2
        for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            std = 1.0 if parametrisation == "ntk" else fan_in ** -0.5
            if parametrisation == "mup" and l == last and l > 0:
                std = 1.0 / fan_in
            w = torch.randn(fan_out, fan_in, generator=generator, device=draw_on, dtype=torch.float64) * std
            self.weights.append(nn.Parameter(w.to(dtype)))
            self.biases.append(nn.Parameter(torch.zeros(fan_out, dtype=dtype)))
        self.multipliers = [fan_in ** -0.5 if parametrisation == "ntk" else 1.0 for fan_in in sizes[:-1]]

    def features(self, x: Tensor) -> list[Tensor]:
        """The pre-activations h_1, …, h_L (the last is the output) of inputs x (batch, d)."""
        out = []
        for l, (w, b, m) in enumerate(zip(self.weights, self.biases, self.multipliers)):
            x = m * (x @ w.T) + b
            out.append(x)
            if l < len(self.weights) - 1:
                x = self.activation(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """The outputs (batch, C)."""
        return self.features(x)[-1]

    def param_groups(self, lr: float, optimizer: str = "sgd") -> list[dict]:
        """Parameter groups with each layer's learning rate, for ``torch.optim.SGD(...)`` or ``Adam(...)``.

        Args:
            lr: the base learning rate η, > 0.
            optimizer: ``"sgd"`` or ``"adam"`` (μP scales them differently; SP and NTK use η everywhere).

        Returns:
            ``[{"params": [W_l], "lr": ..., "name": ...}, {"params": [b_l], ...}, …]``, layer by layer.

        Example:
            >>> from hesslab.models import ParametrisedMLP
            >>> [g["lr"] for g in ParametrisedMLP([3, 8, 8, 1], "sp").param_groups(0.5)]
            [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
        """
        lr = check_positive("lr", lr)
        check_choice("optimizer", optimizer, OPTIMIZERS)
        last = len(self.weights) - 1
        groups = []
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            fan_in, fan_out = self.sizes[l], self.sizes[l + 1]
            kind = "input" if l == 0 else "output" if l == last else "hidden"
            weight_scale, bias_scale = 1.0, 1.0
            if self.parametrisation == "mup" and optimizer == "sgd":
                weight_scale = {"input": fan_out, "hidden": 1.0, "output": 1.0 / fan_in}[kind]
                bias_scale = 1.0 if l == last else fan_out
            elif self.parametrisation == "mup":
                weight_scale = 1.0 if kind == "input" else 1.0 / fan_in
            if l == 0 and l == last:  # one layer: no width, nothing to scale
                weight_scale = bias_scale = 1.0
            groups.append({"params": [w], "lr": lr * weight_scale, "name": f"{kind} weight {l}"})
            groups.append({"params": [b], "lr": lr * bias_scale, "name": f"{kind} bias {l}"})
        return groups
