"""K-FAC and EKFAC factors of ``nn.Linear`` layers: the GGN block of a layer as a Kronecker product G ⊗ A.

For a layer s = W a + b, with ā = [a; 1] (the bias as a homogeneous coordinate) and W̄ = [W b] (out × in+1), one
sample's gradient is ∇_W̄ ℓ_i = g_i āᵀ with g_i = ∂ℓ_i/∂s. The curvature block of the loss f = w Σ_i ℓ_i in W̄
(row-major) is w Σ_i B_i ⊗ ā_i ā_iᵀ; K-FAC (Martens & Grosse 2015) replaces that mean of products by the product
of means, G ⊗ A with

    A = (1/N) Σ_i ā_i ā_iᵀ,    G = w N (1/N) Σ_i B_i,

so it is exact for one sample. B_i, the "G flavour": ``"ggn"`` B_i = Σ_c u_c u_cᵀ from the columns of a square
root of the loss's output Hessian H_i = L Lᵀ, backpropagated to s (the exact GGN block's B_i); ``"monte-carlo"``
from gradients at targets drawn from the model (``hesslab.exact.sample_targets``); ``"empirical"`` from the data's
targets. EKFAC (George, Laurent, Bouthillier, Ballas & Vincent 2018) keeps the eigenbasis Q_G ⊗ Q_A of G ⊗ A and
refits the diagonal to the second moment of the per-sample gradients there, s_jk = w Σ_i,c (Q_Gᵀ u_ic)_j² (Q_Aᵀ ā_i)_k².
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from ._checks import check_choice, check_count, check_generator
from .exact import _repeat, _sample_weight, loss_likelihood, sample_targets
from .functional import check_inputs

FLAVOURS = ("ggn", "monte-carlo", "empirical")


@dataclass
class KroneckerFactors:
    """One ``nn.Linear`` layer's factors: its curvature block ≈ G ⊗ A in W̄ = [W b] row-major.

    Attributes:
        name: the layer's name in the model.
        A: (in+1, in+1) with a bias, (in, in) without: the inputs' second moment (1/N) Σ ā āᵀ.
        G: (out, out): the output-gradient factor.
        eigen_G, basis_G, eigen_A, basis_A: the factors' eigendecompositions (ascending eigenvalues).
        corrected: (out, in+1) EKFAC's refitted diagonal in the basis Q_G ⊗ Q_A.
        bias: whether the layer has a bias (the last column of W̄).
    """

    name: str
    A: Tensor
    G: Tensor
    eigen_G: Tensor
    basis_G: Tensor
    eigen_A: Tensor
    basis_A: Tensor
    corrected: Tensor
    bias: bool


def linear_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The model's ``nn.Linear`` layers, and a ValueError if any other parameter requires grad.

    Args:
        model: the model.

    Returns:
        ``[(name, layer)]`` in the model's order.

    Example:
        >>> import torch
        >>> from hesslab.kronecker import linear_layers
        >>> [name for name, _ in linear_layers(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1)))]
        ['0', '1']
    """
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    covered = {id(p) for _, m in layers for p in m.parameters()}
    others = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in covered]
    if others:
        raise ValueError(f"K-FAC here covers nn.Linear layers only, but the parameters {others[:5]} require grad; "
                         "freeze them (requires_grad_(False)) or use hl.GGNOperator / hl.FisherOperator.")
    if not layers:
        raise ValueError("the model has no nn.Linear layer: K-FAC has no factors to compute.")
    return layers


def _output_vectors(loss_fn, outputs: Tensor, targets: Tensor, flavour: str, num_samples: int,
                    generator) -> Tensor:
    """Vectors u (N, k, C) whose Σ_c u_ic u_icᵀ is sample i's B_i before backpropagation (w left out)."""
    def loss_of_one(z, y):
        return loss_fn(z.unsqueeze(0), y.unsqueeze(0))

    if flavour == "ggn":  # a square root L of the output Hessian: H_i = L Lᵀ, L = Q √Λ
        hessians = torch.func.vmap(torch.func.hessian(loss_of_one))(outputs, targets)
        values, vectors = torch.linalg.eigh(hessians)
        return (vectors * values.clamp_min(0).sqrt().unsqueeze(1)).transpose(1, 2)
    if flavour == "empirical":
        return torch.func.vmap(torch.func.grad(loss_of_one))(outputs, targets).unsqueeze(1)
    likelihood, reduction = loss_likelihood(loss_fn)
    drawn = sample_targets(outputs, likelihood, reduction, num_samples, generator)
    grads = torch.func.vmap(torch.func.grad(loss_of_one))(_repeat(outputs, num_samples), drawn)
    return grads.reshape(outputs.shape[0], num_samples, -1) / math.sqrt(num_samples)


def kfac_factors(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], inputs: Tensor, targets: Tensor,
                 flavour: str = "ggn", *, num_samples: int = 1,
                 generator: torch.Generator | None = None) -> list[KroneckerFactors]:
    """K-FAC factors A, G (and EKFAC's refitted diagonal) of every ``nn.Linear`` layer, on one batch.

    The model must map (N, C_in) to (N, C) with every Linear layer seeing (N, in) inputs (an MLP).
    Cost: one forward, k backward passes of the batch (k = C for ``ggn``, S for ``monte-carlo``, 1 for
    ``empirical``), and per layer O(N k (out² + in²)) for the factors and their eigendecompositions.

    Args:
        model: the model (left unchanged).
        loss_fn: ``(outputs, targets) -> scalar``, a mean or a sum over the samples.
        inputs: (N, ...) inputs.
        targets: (N, ...) targets.
        flavour: ``"ggn"``, ``"monte-carlo"`` or ``"empirical"``.
        num_samples: S, targets drawn per sample (``monte-carlo``).
        generator: the random source of the draws.

    Returns:
        One ``KroneckerFactors`` per layer, in the model's order.

    Example:
        >>> import torch
        >>> from hesslab.kronecker import kfac_factors
        >>> model = torch.nn.Linear(3, 2).double()
        >>> X, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
        >>> [tuple(f.A.shape) + tuple(f.G.shape) for f in kfac_factors(model, torch.nn.functional.mse_loss, X, y)]
        [(4, 4, 2, 2)]
    """
    flavour = check_choice("flavour", flavour, FLAVOURS, "the B_i of G: exact output Hessian, drawn or data targets.")
    num_samples = check_count("num_samples", num_samples, 1)
    generator = check_generator("generator", generator)
    check_inputs(inputs)
    layers = linear_layers(model)
    seen_inputs, seen_outputs = {}, {}

    def record(name):
        def hook(module, args, output):
            seen_inputs[name] = args[0].detach()
            seen_outputs[name] = output
        return hook

    handles = [layer.register_forward_hook(record(name)) for name, layer in layers]
    try:
        with torch.enable_grad():
            outputs = model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    if outputs.ndim != 2 or any(seen_inputs[name].ndim != 2 for name, _ in layers):
        raise ValueError("kfac_factors needs an MLP: (N, in) inputs to every nn.Linear and (N, C) outputs; got "
                         f"outputs of shape {tuple(outputs.shape)}.")
    try:
        likelihood_reduction = loss_likelihood(loss_fn)[1]
    except ValueError:
        likelihood_reduction = None
    count = outputs.shape[0]
    weight = ((1 / count if likelihood_reduction == "mean" else 1.0) if likelihood_reduction
              else _sample_weight(loss_fn, outputs.detach(), targets))
    vectors = _output_vectors(loss_fn, outputs.detach(), targets, flavour, num_samples, generator)  # (N, k, C)
    pre_activations = [seen_outputs[name] for name, _ in layers]
    backpropagated = [[] for _ in layers]
    for c in range(vectors.shape[1]):
        grads = torch.autograd.grad(outputs, pre_activations, vectors[:, c], retain_graph=True, allow_unused=True)
        for store, grad, s in zip(backpropagated, grads, pre_activations):
            store.append(torch.zeros_like(s) if grad is None else grad.detach())
    factors = []
    for (name, layer), store in zip(layers, backpropagated):
        a = seen_inputs[name]
        if layer.bias is not None:
            a = torch.cat([a, torch.ones_like(a[:, :1])], dim=1)
        u = torch.stack(store, dim=1)  # (N, k, out)
        A = a.T @ a / count
        G = weight * torch.einsum("ikp,ikq->pq", u, u)
        eigen_A, basis_A = torch.linalg.eigh(A)
        eigen_G, basis_G = torch.linalg.eigh(G)
        corrected = weight * torch.einsum("ikp,iq->pq", (u @ basis_G) ** 2, (a @ basis_A) ** 2)
        factors.append(KroneckerFactors(name, A, G, eigen_G, basis_G, eigen_A, basis_A, corrected,
                                        layer.bias is not None))
    return factors
