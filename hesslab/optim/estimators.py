"""Diagonal curvature estimates for the optimizers, from a loss and the gradient graph it already has.

    Hutchinson (Bekas, Kokiopoulou & Saad 2007):  diag(H) = E_z[z ⊙ H z],  z Rademacher (entries ±1),
                                                  Var((z ⊙ Hz)_i) = Σ_{j≠i} H_ij²  (one probe).
    Gauss-Newton-Bartlett (Liu et al. 2024, SophiaG): for the mean cross-entropy of B rows of logits,
                                                  L(θ) = (1/B) Σ_b ℓ(f_b(θ), y_b), draw ŷ_b ~ softmax(f_b(θ)) and
                                                  ĝ = ∇_θ (1/B) Σ_b ℓ(f_b(θ), ŷ_b);  then E[B ĝ ⊙ ĝ] = diag(GGN),
                                                  GGN = (1/B) Σ_b J_bᵀ (diag(p_b) − p_b p_bᵀ) J_b.
    Why the identity holds: ĝ = (1/B) Σ_b J_bᵀ u_b with u_b = p_b − e_{ŷ_b} independent over b, E[u_b] = 0 and
    E[u_b u_bᵀ] = diag(p_b) − p_b p_bᵀ (the softmax cross-entropy's Hessian in the logits), so
    E[ĝ ĝᵀ] = (1/B²) Σ_b J_bᵀ E[u_b u_bᵀ] J_b = GGN / B.
    Spatial averaging (Yao et al. 2021, AdaHessian): a convolution kernel's entries (weight of shape
    (out, in, k1, …)) share the mean of their diagonal entries over the kernel's spatial dimensions.

Everything works on lists of parameter-shaped tensors (what ``torch.optim`` hands over), not on one flat vector.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..sampling import rademacher


def rademacher_like(params: list[Tensor], generator: torch.Generator | None = None) -> list[Tensor]:
    """One Rademacher probe z (entries ±1), split into tensors shaped like ``params``.

    Drawn as one flat vector by ``hesslab.sampling.rademacher`` (on the generator's device): the same generator
    state gives the same probe whatever the parameters' device.

    Args:
        params: the parameters (their dtype and device are the first one's).
        generator: for the probe.

    Returns:
        One ±1 tensor per parameter, shaped like it.

    Example:
        >>> import torch
        >>> from hesslab.optim import rademacher_like
        >>> z = rademacher_like([torch.zeros(2, 3), torch.zeros(4)], torch.Generator().manual_seed(0))
        >>> [piece.shape for piece in z], all(bool((piece.abs() == 1).all()) for piece in z)
        ([torch.Size([2, 3]), torch.Size([4])], True)
    """
    n = sum(p.numel() for p in params)
    flat = rademacher(n, 1, params[0].dtype, params[0].device, generator)[:, 0]
    return [piece.view_as(p) for piece, p in zip(flat.split([p.numel() for p in params]), params, strict=True)]


def hessian_probe_products(gradients: list[Tensor], params: list[Tensor], probes: list[Tensor],
                           retain_graph: bool = False) -> list[Tensor]:
    """H z as parameter-shaped tensors, by one backward through the gradient graph: Hz = ∂⟨∇L, z⟩/∂θ.

    Cost: one backward pass of the gradient graph (about one to two gradients).

    Args:
        gradients: ∇L per parameter, built with ``create_graph=True``.
        params: the leaves.
        probes: z, shaped like params.
        retain_graph: keep the gradient graph for further products (several probes at one point).

    Returns:
        One tensor per parameter (zeros where the gradient does not depend on that parameter).

    Example:
        L(w) = ½ Σ_i a_i w_i² has H = diag(a):

        >>> import torch
        >>> from hesslab.optim import hessian_probe_products
        >>> a, w = torch.tensor([1.0, 4.0]), torch.nn.Parameter(torch.ones(2))
        >>> gradients = torch.autograd.grad(0.5 * (a * w**2).sum(), [w], create_graph=True)
        >>> hessian_probe_products(gradients, [w], [torch.tensor([1.0, -1.0])])[0].tolist()
        [1.0, -4.0]
    """
    with_graph = [(g, z) for g, z in zip(gradients, probes, strict=True) if g.requires_grad]
    if not with_graph:  # the loss is linear in θ: H = 0
        return [torch.zeros_like(p) for p in params]
    outputs, grad_outputs = zip(*with_graph)
    products = torch.autograd.grad(outputs, params, grad_outputs, retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if hz is None else hz.detach() for hz, p in zip(products, params, strict=True)]


def hutchinson_diagonal_estimate(gradients: list[Tensor], params: list[Tensor],
                                 generator: torch.Generator | None = None, retain_graph: bool = False) -> list[Tensor]:
    """One-probe Hutchinson estimate z ⊙ Hz of diag(H), per parameter tensor; its mean over probes → diag(H).

    Cost: one Hessian-vector product through the gradient graph (``gradients`` need ``create_graph=True``).

    Args:
        gradients: ∇L per parameter, built with ``create_graph=True``.
        params: the leaves.
        generator: for the probe z.
        retain_graph: keep the gradient graph for further products.

    Returns:
        z ⊙ Hz, one tensor per parameter.

    Example:
        For a diagonal H, z ⊙ Hz = z² ⊙ diag(H) = diag(H) for every ±1 probe:

        >>> import torch
        >>> from hesslab.optim import hutchinson_diagonal_estimate
        >>> a, w = torch.tensor([1.0, 4.0]), torch.nn.Parameter(torch.ones(2))
        >>> gradients = torch.autograd.grad(0.5 * (a * w**2).sum(), [w], create_graph=True)
        >>> hutchinson_diagonal_estimate(gradients, [w], torch.Generator().manual_seed(0))[0].tolist()
        [1.0, 4.0]
    """
    probes = rademacher_like(params, generator)
    products = hessian_probe_products(gradients, params, probes, retain_graph)
    return [z * hz for z, hz in zip(probes, products, strict=True)]


def gauss_newton_bartlett_estimate(logits: Tensor, params: list[Tensor],
                                   generator: torch.Generator | None = None) -> list[Tensor]:
    """SophiaG's estimate B · ĝ ⊙ ĝ of diag(GGN) of the mean cross-entropy over the rows of ``logits``.

    Args:
        logits: (..., C) outputs of the model with their graph to ``params``; the B = numel / C rows are the
            samples (tokens) whose mean cross-entropy the loss is.
        params: the parameters.
        generator: for the labels ŷ_b ~ softmax(logits_b) (drawn on the generator's device).

    Returns:
        One tensor per parameter, ĥ = B ĝ ⊙ ĝ with ĝ the gradient of the sampled-label mean cross-entropy;
        E[ĥ] = diag(Jᵀ H_out J / B summed over rows), the GGN diagonal (see the module docstring).

    Cost: one backward pass through the logits' graph (the forward is reused).

    Example:
        Logits that are the parameters themselves (J = I), at 0: p = (½, ½), so ĝ = p − e_ŷ = ±(½, −½) whatever
        label is drawn, and ĝ ⊙ ĝ = diag(diag(p) − ppᵀ) = (¼, ¼) exactly:

        >>> import torch
        >>> from hesslab.optim import gauss_newton_bartlett_estimate
        >>> logits = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
        >>> gauss_newton_bartlett_estimate(logits, [logits], torch.Generator().manual_seed(0))[0].tolist()
        [0.25, 0.25]
    """
    rows = logits.reshape(-1, logits.shape[-1])
    probabilities = torch.softmax(rows.detach().double(), dim=-1)
    source = generator.device if generator is not None else rows.device
    sampled = torch.multinomial(probabilities.to(source), 1, generator=generator)[:, 0].to(rows.device)
    sampled_loss = torch.nn.functional.cross_entropy(rows, sampled)  # mean over the B rows
    gradients = torch.autograd.grad(sampled_loss, params, retain_graph=True, allow_unused=True)
    batch = rows.shape[0]
    return [torch.zeros_like(p) if g is None else batch * g * g for g, p in zip(gradients, params, strict=True)]


def spatial_average(diagonal: Tensor) -> Tensor:
    """AdaHessian's spatial averaging of a diagonal over each convolution kernel's spatial positions.

    For a convolution kernel (out, in, k1, …) every entry gets the mean of the diagonal over its kernel's spatial
    dimensions; tensors of 1 or 2 dimensions (biases, linear weights) are returned as they are.

        D^(s)[o, i, s] = (1/|S|) Σ_{s' ∈ S} D[o, i, s'],   S the kernel's spatial positions (9 for a 3×3 kernel)

    Args:
        diagonal: a diagonal estimate shaped like its parameter.

    Returns:
        A tensor with ``diagonal``'s shape.

    Example:
        >>> import torch
        >>> from hesslab.optim import spatial_average
        >>> spatial_average(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])).tolist()  # one 2×2 kernel
        [[[[2.5, 2.5], [2.5, 2.5]]]]
        >>> spatial_average(torch.tensor([[1.0, 2.0]])).tolist()  # a linear layer's weight: unchanged
        [[1.0, 2.0]]
    """
    if diagonal.ndim <= 2:
        return diagonal
    spatial = tuple(range(2, diagonal.ndim))
    return diagonal.mean(dim=spatial, keepdim=True).expand_as(diagonal)
