"""Notebook 12: one-shot pruning and quantization of a digits MLP, by the Hessian and without it.

Optimal Brain Surgeon (Hassibi & Stork 1993) layer by layer on H = 2XᵀX/N (Frantar & Alistarh 2022), globally on
M-FAC's inverse empirical Fisher (Frantar, Kurtic & Alistarh 2021), against magnitude pruning; GPTQ (Frantar,
Ashkboos, Hoefler & Alistarh 2023) against round-to-nearest. No retraining anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor, nn

from .. import compress
from ..data import digits
from ..functional import per_sample_gradients
from ..inverse import woodbury_fisher
from ..models import mlp

PRUNERS = ("magnitude", "layer-wise OBS", "global M-FAC OBS")
QUANTIZERS = ("round-to-nearest", "GPTQ")


@lru_cache(maxsize=8)
def trained(seed: int = 0, width: int = 64, steps: int = 400, lr: float = 0.01):
    """An MLP 64-width-width-10 (ReLU) trained by full-batch Adam on 1200 digits; the other 597 are held out.

    Returns ``(model, (train inputs, train targets), (test inputs, test targets))``.
    """
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = digits()
    order = torch.randperm(len(targets), generator=generator)
    train, test = order[:1200], order[1200:]
    model = mlp([64, width, width, 10], activation="relu", generator=generator)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(inputs[train]), targets[train]).backward()
        optimiser.step()
    return model, (inputs[train], targets[train]), (inputs[test], targets[test])


def linear_layers(model: nn.Sequential) -> list[nn.Linear]:
    """The model's linear layers in order."""
    return [layer for layer in model if isinstance(layer, nn.Linear)]


def layer_inputs(model: nn.Sequential, inputs: Tensor) -> list[Tensor]:
    """The inputs X (N, c) of each linear layer of the (dense) model on ``inputs``."""
    found, x = [], inputs
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                found.append(x)
            x = layer(x)
    return found


def _with_weights(model: nn.Sequential, weights: list[Tensor]) -> nn.Sequential:
    """A copy of the model whose linear layers carry ``weights`` (the biases kept)."""
    copy = mlp([linear_layers(model)[0].in_features] + [layer.out_features for layer in linear_layers(model)],
               activation="relu")
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        for layer, weight in zip(linear_layers(copy), weights):
            layer.weight.copy_(weight)
    return copy


@dataclass(frozen=True)
class Evaluation:
    """Loss on the training (calibration) set and accuracy on the held-out digits."""

    train_loss: float
    test_accuracy: float


def evaluate(model: nn.Module, train, test) -> Evaluation:
    """``Evaluation`` of the model."""
    with torch.no_grad():
        loss = float(nn.functional.cross_entropy(model(train[0]), train[1]))
        accuracy = float((model(test[0]).argmax(1) == test[1]).double().mean())
    return Evaluation(loss, accuracy)


def prune(method: str, sparsity: float, seed: int = 0, damping: float = 0.01, num_gradients: int = 256) -> Evaluation:
    """Prune the fraction ``sparsity`` of the weights (not biases) of ``trained(seed)`` by ``method``, one shot.

    magnitude and layer-wise OBS prune every layer to ``sparsity`` (OBS row by row on the dense net's layer
    inputs, H damped by ``damping`` · mean diagonal); global M-FAC OBS ranks all weights together on the inverse of
    λI + (1/m) Σ g_i gᵢᵀ from m = ``num_gradients`` per-sample gradients, λ = ``damping`` · mean diagonal of the
    empirical Fisher.
    """
    model, train, test = trained(seed)
    layers = linear_layers(model)
    if method == "magnitude":
        weights = [compress.magnitude_prune(layer.weight.detach(), sparsity).weight for layer in layers]
    elif method == "layer-wise OBS":
        weights = [compress.obs_prune_layer(layer.weight.detach(), compress.layer_hessian(X), sparsity,
                                            damping=damping).weight
                   for layer, X in zip(layers, layer_inputs(model, train[0]))]
    elif method == "global M-FAC OBS":
        weights = _global_obs(model, train, sparsity, damping, num_gradients)
    else:
        raise ValueError(f"method must be one of {PRUNERS}, got {method!r}.")
    return evaluate(_with_weights(model, weights), train, test)


def _global_obs(model, train, sparsity: float, damping: float, num_gradients: int) -> list[Tensor]:
    """The weights after global OBS on the M-FAC inverse Fisher (biases are parameters of F but never pruned)."""
    G, theta = per_sample_gradients(model, nn.functional.cross_entropy, train[0][:num_gradients],
                                    train[1][:num_gradients])
    lam = damping * float((G**2).sum(0).mean()) / G.shape[0]
    candidates = torch.cat([torch.full((p.numel(),), p.ndim == 2) for p in model.parameters()])
    pruned = compress.global_obs_prune(theta, woodbury_fisher(G, lam), sparsity, candidates=candidates).weight
    pieces = torch.split(pruned, [p.numel() for p in model.parameters()])
    return [piece.reshape(p.shape) for piece, p in zip(pieces, model.parameters()) if p.ndim == 2]


@dataclass(frozen=True)
class Quantized:
    """A quantized net: its evaluation and the summed layer reconstruction error Σ ‖(W − Ŵ)Xᵀ‖²/N."""

    evaluation: Evaluation
    reconstruction_error: float


def quantize(method: str, bits: int, seed: int = 0, damping: float = 0.01, group_size: int | None = None) -> Quantized:
    """Quantize every weight of ``trained(seed)`` to ``bits`` by ``method`` (per-row or per-group grids)."""
    model, train, test = trained(seed)
    weights, error = [], 0.0
    for layer, X in zip(linear_layers(model), layer_inputs(model, train[0])):
        W, H = layer.weight.detach(), compress.layer_hessian(X)
        if method == "GPTQ":
            Q = compress.gptq(W, H, bits, group_size=group_size, damping=damping)
        elif method == "round-to-nearest":
            Q = compress.round_to_nearest(W, bits, group_size=group_size)
        else:
            raise ValueError(f"method must be one of {QUANTIZERS}, got {method!r}.")
        weights.append(Q)
        error += float(compress.reconstruction_error(W, Q, H))
    return Quantized(evaluate(_with_weights(model, weights), train, test), error)
