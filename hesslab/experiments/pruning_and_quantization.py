"""Notebook 12: one-shot pruning and quantization of a digits MLP, by the Hessian and without it.

Optimal Brain Surgeon (Hassibi & Stork 1993) layer by layer on H = 2XᵀX/N (Frantar & Alistarh 2022), globally on
M-FAC's inverse empirical Fisher (Frantar, Kurtic & Alistarh 2021), against magnitude pruning; GPTQ (Frantar,
Ashkboos, Hoefler & Alistarh 2023) against round-to-nearest. No retraining anywhere. And the influence of one training
point on a test loss by an inverse-Hessian-vector product (Koh & Liang 2017), against leave-one-out retraining of a
convex softmax regression.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor, nn

from .. import compress
from ..data import digits
from ..functional import per_sample_gradients
from ..inverse import SolveResult, solve, woodbury_fisher
from ..models import mlp
from ..operators import HessianOperator
from ..optimize import newton
from ..spectrum import top_eigen

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


# ----------------------------------------------------------------------------------------------------------------------
# (c) Influence of one training point (Koh & Liang 2017) on a convex model
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SoftmaxRegression:
    """L(θ) = (1/n) Σ_i CE(W x̃_i, y_i) + (λ/2)‖θ‖² on digits, θ = vec(W), W (10, 65), x̃ = (x, 1): convex.

    ``inputs`` (n, 65) carry the constant 1 of the bias; ``test_input``/``test_target`` is the one test point whose
    loss the influence is measured on; ``optimum`` is θ̂ = argmin L (None until ``softmax_regression`` sets it).
    """

    inputs: Tensor
    targets: Tensor
    test_input: Tensor
    test_target: Tensor
    reg: float
    optimum: Tensor | None = None

    def loss(self, theta: Tensor, drop: int | None = None) -> Tensor:
        """L(θ), or with sample ``drop`` left out of the sum (still divided by n: an upweighting by ε = −1/n)."""
        per_sample = nn.functional.cross_entropy(self.inputs @ theta.reshape(10, -1).T, self.targets,
                                                 reduction="none")
        if drop is not None:
            per_sample = torch.cat([per_sample[:drop], per_sample[drop + 1:]])
        return per_sample.sum() / len(self.targets) + 0.5 * self.reg * theta @ theta

    def test_loss(self, theta: Tensor) -> Tensor:
        """The cross-entropy of the test point."""
        return nn.functional.cross_entropy(self.test_input @ theta.reshape(10, -1).T, self.test_target)

    def sample_gradients(self, theta: Tensor) -> Tensor:
        """∇_θ CE_i = (p_i − e_{y_i}) ⊗ x̃_i, the rows (n, 650)."""
        p = torch.softmax(self.inputs @ theta.reshape(10, -1).T, dim=1)
        residual = p - nn.functional.one_hot(self.targets, 10).to(p.dtype)
        return (residual[:, :, None] * self.inputs[:, None, :]).reshape(len(self.targets), -1)


def softmax_regression(num_train: int = 500, reg: float = 0.1, seed: int = 0) -> SoftmaxRegression:
    """Digits softmax regression on ``num_train`` random digits, its test point the held-out digit fitted worst.

    The worst-fitted test point (at the optimum) is where the influences are largest.
    """
    inputs, targets = digits()
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed))
    ones = torch.ones(len(targets), 1, dtype=inputs.dtype)
    inputs = torch.cat([inputs, ones], dim=1)
    train, held_out = order[:num_train], order[num_train:]
    problem = SoftmaxRegression(inputs[train], targets[train], inputs[held_out[:1]], targets[held_out[:1]], reg)
    theta = minimum(problem)
    losses = nn.functional.cross_entropy(inputs[held_out] @ theta.reshape(10, -1).T, targets[held_out],
                                         reduction="none")
    worst = held_out[losses.argmax()].reshape(1)
    return SoftmaxRegression(inputs[train], targets[train], inputs[worst], targets[worst], reg, theta)


def minimum(problem: SoftmaxRegression, drop: int | None = None, start: Tensor | None = None) -> Tensor:
    """argmin L (without sample ``drop``) by ``hl.optimize.newton`` from ``start`` (default 0), to ‖∇L‖ <= 1e-12."""
    start = torch.zeros(650, dtype=problem.inputs.dtype) if start is None else start
    result = newton(lambda theta: problem.loss(theta, drop), start, tol=1e-12)
    if not result.converged:
        raise ValueError(f"Newton did not reach ‖∇L‖ <= 1e-12: {result.reason}.")
    return result.x


@dataclass(frozen=True)
class Influence:
    """Predicted and actual change of the test loss when each of ``index``'s training points is left out."""

    index: Tensor
    predicted: Tensor
    actual: Tensor
    solve: SolveResult


def predicted_influences(problem: SoftmaxRegression, method: str = "cg", seed: int = 0) -> tuple[Tensor, SolveResult]:
    """Koh & Liang's first-order change of the test loss when each training point is left out, (n,).

    Leaving z_i out is upweighting it by ε = −1/n, so
        L_test(θ̂_{−i}) − L_test(θ̂) ≈ (1/n) ∇L_test(θ̂)ᵀ H⁻¹ ∇ℓ_i(θ̂),
    with s_test = H⁻¹ ∇L_test from one ``inverse.solve`` (CG, or LiSSA with the bounds (λ, 1.01 λ_max): L is
    λ-strongly convex) on the matrix-free Hessian, then one dot product per training point.
    """
    theta = problem.optimum
    point = theta.detach().requires_grad_(True)
    (test_gradient,) = torch.autograd.grad(problem.test_loss(point), point)
    H = HessianOperator(problem.loss, theta)
    bounds = None
    if method == "lissa":
        top = top_eigen(H, tol=1e-8, generator=torch.Generator().manual_seed(seed)).values[0].item()
        bounds = (problem.reg, 1.01 * top)
    result = solve(H, test_gradient, method=method, rtol=1e-10, eigenvalue_bounds=bounds)
    return problem.sample_gradients(theta) @ result.x / len(problem.targets), result


def influence(problem: SoftmaxRegression, method: str = "cg", num_points: int = 40, seed: int = 0) -> Influence:
    """``predicted_influences`` against leave-one-out retraining, on ``num_points`` training points.

    Half of them are those of largest predicted |influence|, the others random. Each actual change is a Newton
    retraining without z_i, from θ̂. Cost: one solve (a few tens of HVPs), then ``num_points`` Newton runs of 2-3
    steps.
    """
    predicted, result = predicted_influences(problem, method, seed)
    strongest = predicted.abs().argsort(descending=True)[: num_points // 2]
    others = torch.randperm(len(predicted), generator=torch.Generator().manual_seed(seed))
    others = others[~torch.isin(others, strongest)][: num_points - len(strongest)]
    index = torch.cat([strongest, others])
    theta = problem.optimum
    base = problem.test_loss(theta)
    actual = torch.stack([problem.test_loss(minimum(problem, int(i), theta)) - base for i in index])
    return Influence(index, predicted[index], actual, result)
