"""K-FAC and EKFAC factors of ``nn.Linear`` and ``nn.Conv2d`` layers: a layer's GGN block as a Kronecker product G ⊗ A.

For a layer s = W a + b, with ā = [a; 1] (the bias as a homogeneous coordinate) and W̄ = [W b] (out × in+1), one
sample's gradient is ∇_W̄ ℓ_i = g_i āᵀ with g_i = ∂ℓ_i/∂s. The curvature block of the loss f = w Σ_i ℓ_i in W̄
(row-major) is w Σ_i B_i ⊗ ā_i ā_iᵀ; K-FAC (Martens & Grosse 2015) replaces that mean of products by the product
of means, G ⊗ A with

    A = (1/N) Σ_i ā_i ā_iᵀ,    G = w N (1/N) Σ_i B_i,

so it is exact for one sample. B_i, the "G flavour": ``"ggn"`` B_i = Σ_c u_c u_cᵀ from the columns of a square
root of the loss's output Hessian H_i = L Lᵀ, backpropagated to s (the exact GGN block's B_i); ``"monte-carlo"``
from gradients at targets drawn from the model (``hesslab.exact.sample_targets``); ``"empirical"`` from the data's
targets. EKFAC (George, Laurent, Bouthillier, Ballas & Vincent 2018) keeps the eigenbasis Q_G ⊗ Q_A of G ⊗ A and
refits the diagonal to the second moment of the per-sample gradients there, s_jk = w Σ_i,c (Q_Gᵀ ∇_ic Q_A)_jk².

``nn.Conv2d`` (KFC, Grosse & Martens 2016): W̄ = [W.reshape(out, -1) b] acts on each of the T output positions'
input patch ā_it (``torch.nn.functional.unfold``, channel-major like the weight), so ∇_W̄ ℓ_i = Σ_t g_it ā_itᵀ.
Assuming the patches independent of the output gradients, spatially homogeneous and the gradients spatially
uncorrelated (KFC's assumptions), the block is |T| Ω ⊗ Γ with position means Ω, Γ; here, as in the "expand"
reduction (Eschenhagen, Immer, Turner, Schneider & Hennig 2023; curvlinops' ``KFACType.EXPAND``),

    A = (1/(N T)) Σ_i,t ā_it ā_itᵀ   (a mean over samples and positions),
    G = w Σ_i,t B_it                 (a sum over positions),

so that it is exact for one sample and one output position, and a Linear layer is the case T = 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import torch
from torch import Tensor, nn

from ._checks import check_choice, check_count, check_generator
from .exact import _repeat, _sample_weight, loss_likelihood, sample_targets
from .functional import check_inputs

FLAVOURS = ("ggn", "monte-carlo", "empirical")


@dataclass
class KroneckerFactors:
    """One layer's factors: its curvature block ≈ G ⊗ A in W̄ = [W.reshape(out, -1) b] row-major.

    The eigendecompositions are computed on first use (``KFACOperator`` products need G and A only).

    Attributes:
        name: the layer's name in the model.
        A: (width, width), width = in+1 with a bias (in = in_features, or C_in·k_h·k_w for a convolution): the
            inputs' (patches') second moment.
        G: (out, out): the output-gradient factor.
        corrected: (out, width) EKFAC's refitted diagonal in the basis Q_G ⊗ Q_A (None unless asked for).
        bias: whether the layer has a bias (the last column of W̄).
        eigen_G, basis_G, eigen_A, basis_A: the factors' eigendecompositions (ascending eigenvalues).
    """

    name: str
    A: Tensor
    G: Tensor
    corrected: Tensor | None
    bias: bool

    @cached_property
    def _eigen_G(self) -> tuple[Tensor, Tensor]:
        return torch.linalg.eigh(self.G)

    @cached_property
    def _eigen_A(self) -> tuple[Tensor, Tensor]:
        return torch.linalg.eigh(self.A)

    eigen_G = property(lambda self: self._eigen_G[0])
    basis_G = property(lambda self: self._eigen_G[1])
    eigen_A = property(lambda self: self._eigen_A[0])
    basis_A = property(lambda self: self._eigen_A[1])


def kfac_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's ``nn.Linear`` and ``nn.Conv2d`` layers, and a ValueError if any other parameter requires grad.

    Args:
        model: the model.

    Returns:
        ``[(name, layer)]`` in the model's order.

    Example:
        >>> import torch
        >>> from hesslab.kronecker import kfac_layers
        >>> [name for name, _ in kfac_layers(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1)))]
        ['0', '1']
    """
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    covered = {id(p) for _, m in layers for p in m.parameters()}
    others = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in covered]
    if others:
        raise ValueError(f"K-FAC here covers nn.Linear and nn.Conv2d layers only, but the parameters {others[:5]} "
                         "require grad; freeze them (requires_grad_(False)) or use hl.GGNOperator / hl.FisherOperator.")
    if not layers:
        raise ValueError("the model has no nn.Linear or nn.Conv2d layer: K-FAC has no factors to compute.")
    for name, m in layers:
        if isinstance(m, nn.Conv2d) and (m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str)):
            raise ValueError(f"K-FAC here covers nn.Conv2d with groups=1, padding_mode='zeros' and integer padding "
                             f"only; layer {name!r} has groups={m.groups}, padding_mode={m.padding_mode!r}, "
                             f"padding={m.padding!r}.")
    return layers


def _patches(layer: nn.Module, a: Tensor) -> Tensor:
    """ā (N, T, width): a Linear layer's (N, in) inputs as T = 1 position, a Conv2d's unfolded patches; [.., 1]."""
    if isinstance(layer, nn.Conv2d):
        a = nn.functional.unfold(a, layer.kernel_size, layer.dilation, layer.padding, layer.stride).transpose(1, 2)
    else:
        a = a.unsqueeze(1)
    if layer.bias is not None:
        a = torch.cat([a, torch.ones_like(a[..., :1])], dim=2)
    return a


def _output_vectors(loss_fn, outputs: Tensor, targets: Tensor, flavour: str, num_samples: int, generator,
                    weight: float) -> Tensor:
    """Vectors u (N, k, C) whose Σ_c u_ic u_icᵀ is sample i's B_i before backpropagation (w left out).

    The batch's loss is w Σ_i ℓ_i(z_i) (checked by the caller), so one gradient (one Hessian-vector product per
    output) of it in z, divided by w, gives every sample's ∇ℓ_i (∇²ℓ_i) at once.
    """
    def gradient_in_z(z, y, create_graph=False):
        with torch.enable_grad():
            z = z.detach().requires_grad_()
            return z, torch.autograd.grad(loss_fn(z, y), z, create_graph=create_graph)[0]

    if flavour == "ggn":  # a square root L of the output Hessian: H_i = L Lᵀ, L = Q √Λ
        z, grad = gradient_in_z(outputs, targets, create_graph=True)
        units = torch.eye(z.shape[1], dtype=z.dtype, device=z.device).unsqueeze(1).expand(-1, *z.shape)
        rows = torch.autograd.grad(grad, z, units, is_grads_batched=True, allow_unused=True)[0]  # (C, N, C)
        hessians = torch.zeros_like(units) if rows is None else rows.transpose(0, 1) / weight  # H_i (N, C, C)
        values, vectors = torch.linalg.eigh(hessians)
        return (vectors * values.clamp_min(0).sqrt().unsqueeze(1)).transpose(1, 2)
    if flavour == "empirical":
        return (gradient_in_z(outputs, targets)[1] / weight).unsqueeze(1)
    likelihood, reduction = loss_likelihood(loss_fn)
    drawn = sample_targets(outputs, likelihood, reduction, num_samples, generator)
    grads = gradient_in_z(_repeat(outputs, num_samples), drawn)[1] / (weight / num_samples if reduction == "mean"
                                                                         else weight)
    return grads.reshape(outputs.shape[0], num_samples, -1) / math.sqrt(num_samples)


def kfac_factors(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], inputs: Tensor, targets: Tensor,
                 flavour: str = "ggn", *, num_samples: int = 1, generator: torch.Generator | None = None,
                 eigenvalue_corrected: bool = False) -> list[KroneckerFactors]:
    """K-FAC factors A, G (and EKFAC's refitted diagonal) of every ``nn.Linear`` and ``nn.Conv2d`` layer, on one batch.

    The model must map (N, ...) inputs to (N, C) outputs, every Linear layer seeing (N, in) inputs and every Conv2d
    (N, C_in, H, W). Cost: one forward, k backward passes of the batch (k = C for ``ggn``, S for ``monte-carlo``,
    1 for ``empirical``; batched in one ``is_grads_batched`` call), and per layer O(N T k out² + N T width²) for the
    factors; EKFAC adds the factors' eigendecompositions and, for a convolution, the per-sample gradients
    in the eigenbasis, O(N k T out width).

    Args:
        model: the model (left unchanged).
        loss_fn: ``(outputs, targets) -> scalar``, a mean or a sum over the samples.
        inputs: (N, ...) inputs.
        targets: (N, ...) targets.
        flavour: ``"ggn"``, ``"monte-carlo"`` or ``"empirical"``.
        num_samples: S, targets drawn per sample (``monte-carlo``).
        generator: the random source of the draws.
        eigenvalue_corrected: also compute EKFAC's refitted diagonal (``corrected``).

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
    layers = kfac_layers(model)
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
    if outputs.ndim != 2 or any(seen_inputs[name].ndim != (4 if isinstance(m, nn.Conv2d) else 2) for name, m in layers):
        raise ValueError("kfac_factors needs (N, in) inputs to every nn.Linear, (N, C_in, H, W) to every nn.Conv2d "
                         f"and (N, C) outputs; got outputs of shape {tuple(outputs.shape)}.")
    try:
        likelihood_reduction = loss_likelihood(loss_fn)[1]
    except ValueError:
        likelihood_reduction = None
    count = outputs.shape[0]
    weight = ((1 / count if likelihood_reduction == "mean" else 1.0) if likelihood_reduction
              else _sample_weight(loss_fn, outputs.detach(), targets))
    vectors = _output_vectors(loss_fn, outputs.detach(), targets, flavour, num_samples, generator, weight)  # (N,k,C)
    pre_activations = [seen_outputs[name] for name, _ in layers]
    # all k backward passes at once: grads[l] is (k, N, out, ...) for layer l
    if vectors.shape[1] == 1:
        grads = [g if g is None else g.unsqueeze(0) for g in
                 torch.autograd.grad(outputs, pre_activations, vectors[:, 0], allow_unused=True)]
    else:
        grads = torch.autograd.grad(outputs, pre_activations, vectors.transpose(0, 1), is_grads_batched=True,
                                    allow_unused=True)
    factors = []
    for (name, layer), grad, s in zip(layers, grads, pre_activations):
        a = _patches(layer, seen_inputs[name])  # (N, T, width)
        if grad is None:
            grad = s.new_zeros((vectors.shape[1],) + s.shape)
        u = grad.detach().flatten(3).transpose(2, 3) if grad.ndim == 5 else grad.detach().unsqueeze(2)  # (k,N,T,out)
        a_rows, u_rows = a.reshape(-1, a.shape[2]), u.reshape(-1, u.shape[3])  # (N T, width), (k N T, out)
        A = a_rows.T @ a_rows / a_rows.shape[0]
        G = weight * (u_rows.T @ u_rows)
        factor = KroneckerFactors(name, A, G, None, layer.bias is not None)
        if eigenvalue_corrected:
            u_rotated, a_rotated = u @ factor.basis_G, a @ factor.basis_A
            if a.shape[1] == 1:  # one position: (Q_Gᵀ u āᵀ Q_A)² = (Q_Gᵀ u)² (Q_Aᵀ ā)²ᵀ
                factor.corrected = weight * torch.einsum("kip,iq->pq", u_rotated[:, :, 0] ** 2, a_rotated[:, 0] ** 2)
            else:  # the per-sample gradients Σ_t (Q_Gᵀ u_t)(Q_Aᵀ ā_t)ᵀ in the eigenbasis, squared
                per_sample = torch.einsum("kitp,itq->kipq", u_rotated, a_rotated)
                factor.corrected = weight * (per_sample ** 2).sum(dim=(0, 1))
        factors.append(factor)
    return factors
