"""Dense curvature matrices of small problems: the exact Hessian, the generalised Gauss-Newton matrix and the Fisher.

The Hessian and the GGN are built column block by column block from matrix-free products (``hesslab._dense``),
``H[:, i:i+c] = H E_{i:i+c}`` with E the identity, so the peak memory is the n×n matrix plus one block, never
``torch.func.hessian``'s Jacobian-of-Jacobian intermediates. Cost: n Hessian-vector products (batched c at a time).
A matrix that would not fit in memory is refused with a ``ValueError`` that says how much it needs; use the
matrix-free ``hl.HessianOperator`` instead. The Fisher is (1/m) RᵀR from rows R of per-sample gradients, at the
data's targets (empirical) or at targets drawn from the model's predictive distribution (Monte-Carlo).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ._checks import check_choice, check_count, check_finite_product, check_flat_vector, check_generator
from ._dense import available_memory, check_dense_fits, dense_matrix, one_piece
from .functional import (
    call_model,
    check_inputs,
    differentiable_attention,
    flatten_parameters,
    ggnvp_at,
    hvp_at,
    per_sample_gradients,
    select_parameters,
)


def hessian(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    chunk_size: int | None = None,
    max_memory: int | None = None,
    progress: bool | None = None,
) -> Tensor:
    """The exact Hessian ``H_ij = ∂²f/∂x_i∂x_j (x)``, dense (n, n), in x's dtype and device.

    Args:
        f: scalar function of a 1-D tensor (``hl.loss_function`` gives one for a model; pass ``params=[...]`` there
            for a per-layer block).
        x: (n,) point.
        chunk_size: columns per batched Hessian-vector product (default: 1 on a CPU, 256 on a GPU, <= ~64 MiB).
        max_memory: bytes the matrix and its column blocks may take (default 90% of available memory); more
            raises ValueError (see ``dense_bytes``).
        progress: show a tqdm bar over the column blocks (default: when n >= 4096).

    Returns:
        H (n, n), in x's dtype and device.

    Cost: one gradient with graph, then n Hessian-vector products (one backward each, batched).
    Memory: n² entries plus three n × chunk blocks.

    Example:
        f(x) = x₀² x₁ has H = [[2x₁, 2x₀], [2x₀, 0]]; at x = (1, 2):

        >>> import torch, hesslab as hl
        >>> hl.hessian(lambda x: x[0] ** 2 * x[1], torch.tensor([1.0, 2.0], dtype=torch.float64)).tolist()
        [[4.0, 2.0], [2.0, 0.0]]
    """
    x = check_flat_vector("x", x)
    chunk_size = None if chunk_size is None else check_count("chunk_size", chunk_size, 1)
    check_dense_fits(x.numel(), x.dtype, x.device, max_memory, "hessian", chunk_size)  # before the graph is built
    return dense_matrix(one_piece(hvp_at(f, x)), x.numel(), x.dtype, x.device, chunk_size=chunk_size,
                        max_memory=max_memory, progress=progress, what="hessian")


def ggn(
    g: Callable[[Tensor], Tensor],
    loss_of_output: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    chunk_size: int | None = None,
    max_memory: int | None = None,
    progress: bool | None = None,
) -> Tensor:
    """The generalised Gauss-Newton matrix ``G = Jᵀ H_L J`` (Schraudolph 2002), dense (n, n).

    J = ∂g/∂x is the Jacobian of the model's outputs, H_L the Hessian of the loss in those outputs. G is the Hessian
    with the outputs' own curvature dropped (``H = G + Σ_k ∂L/∂z_k ∇²z_k``); it is positive semi-definite when the
    loss is convex in the outputs, and its rank is at most rank(H_L) (e.g. N(C−1) for softmax cross-entropy).

    Args:
        g: outputs as a function of x (``hl.output_function``).
        loss_of_output: scalar loss of the outputs.
        x: (n,) point.
        chunk_size: columns per batched GGN-vector product (as in ``hessian``).
        max_memory: bytes the matrix and its column blocks may take (as in ``hessian``).
        progress: show a tqdm bar over the column blocks (default: when n >= 4096).

    Returns:
        G (n, n), in x's dtype and device.

    Cost: n GGN-vector products, each three backward passes.

    Example:
        One output z = x₀ x₁ and the loss ½ z²: G = ∇z ∇zᵀ, while H adds z ∇²z = z [[0, 1], [1, 0]]. At x = (1, 2):

        >>> import torch, hesslab as hl
        >>> x = torch.tensor([1.0, 2.0], dtype=torch.float64)
        >>> g, loss = (lambda x: x[0] * x[1]), (lambda z: 0.5 * z**2)
        >>> hl.ggn(g, loss, x).tolist(), hl.hessian(lambda x: loss(g(x)), x).tolist()
        ([[4.0, 2.0], [2.0, 1.0]], [[4.0, 4.0], [4.0, 1.0]])
    """
    x = check_flat_vector("x", x)
    chunk_size = None if chunk_size is None else check_count("chunk_size", chunk_size, 1)
    check_dense_fits(x.numel(), x.dtype, x.device, max_memory, "ggn", chunk_size)  # before the graphs are built
    return dense_matrix(one_piece(ggnvp_at(g, loss_of_output, x)), x.numel(), x.dtype, x.device, chunk_size=chunk_size,
                        max_memory=max_memory, progress=progress, what="ggn")


# ----------------------------------------------------------------------------------------------------------------------
# the Fisher: empirical and Monte-Carlo, as rows R with F = Rᵀ R
# ----------------------------------------------------------------------------------------------------------------------
FISHER_KINDS = ("empirical", "monte-carlo")


def loss_likelihood(loss_fn) -> tuple[str, str]:
    """The likelihood a loss is the negative log of, and its reduction: ``("cross-entropy" | "mse", "mean" | "sum")``.

    Cross-entropy is −log softmax(z)_y (a categorical likelihood); the squared error ℓ = a ‖z − y‖² is −log of
    N(y; z, σ² I) up to a constant when σ² = 1 / (2a) (``mse_noise_variance``). Only these two, with no class
    weights and no label smoothing, define the Monte-Carlo Fisher here.

    Args:
        loss_fn: ``torch.nn.functional.cross_entropy`` / ``mse_loss`` or an ``nn.CrossEntropyLoss`` / ``nn.MSELoss``.

    Returns:
        ``(likelihood, reduction)``.

    Raises:
        ValueError: for any other loss, or one with class weights, label smoothing or ``reduction='none'``.

    Example:
        >>> import torch
        >>> from hesslab.exact import loss_likelihood
        >>> loss_likelihood(torch.nn.functional.cross_entropy), loss_likelihood(torch.nn.MSELoss(reduction="sum"))
        (('cross-entropy', 'mean'), ('mse', 'sum'))
    """
    functional = torch.nn.functional
    if loss_fn is functional.cross_entropy:
        return "cross-entropy", "mean"
    if loss_fn is functional.mse_loss:
        return "mse", "mean"
    if isinstance(loss_fn, (nn.CrossEntropyLoss, nn.MSELoss)):
        if isinstance(loss_fn, nn.CrossEntropyLoss) and (loss_fn.weight is not None or loss_fn.label_smoothing):
            raise ValueError("loss_fn: the Monte-Carlo Fisher needs a plain nn.CrossEntropyLoss (no class weight, no "
                             "label_smoothing): those are no negative log-likelihood of softmax(z).")
        if loss_fn.reduction not in ("mean", "sum"):
            raise ValueError(f"loss_fn must reduce to a scalar (reduction 'mean' or 'sum'), got reduction="
                             f"{loss_fn.reduction!r}.")
        return ("cross-entropy" if isinstance(loss_fn, nn.CrossEntropyLoss) else "mse"), loss_fn.reduction
    raise ValueError(
        f"kind='monte-carlo' samples targets from the model's predictive distribution, which it knows for "
        f"cross-entropy (categorical of softmax) and the squared error (Gaussian) only; got loss_fn={loss_fn!r}. Pass "
        "torch.nn.functional.cross_entropy, torch.nn.functional.mse_loss, nn.CrossEntropyLoss() or nn.MSELoss(), or "
        "use kind='empirical', which takes any loss."
    )


def mse_noise_variance(reduction: str, outputs_per_sample: int) -> float:
    """σ² of the Gaussian N(y; z, σ² I) whose negative log-likelihood is one sample's squared error, ½ or D / 2.

    One sample's loss (a batch of one) is ℓ = a ‖z − y‖², a = 1 / D for ``reduction='mean'`` over its D outputs
    and 1 for ``'sum'``; −log N(y; z, σ² I) = ‖z − y‖² / (2σ²) + const equals ℓ for σ² = 1 / (2a). With targets
    drawn from it, E[∇_z ℓ ∇_z ℓᵀ] = 4a² σ² I = 2a I = ∇²_z ℓ, so the Monte-Carlo Fisher's mean is the GGN.

    Args:
        reduction: ``"mean"`` or ``"sum"``.
        outputs_per_sample: D, the entries of one sample's output.

    Returns:
        σ², a float.

    Example:
        >>> from hesslab.exact import mse_noise_variance
        >>> mse_noise_variance("mean", 4), mse_noise_variance("sum", 4)
        (2.0, 0.5)
    """
    return outputs_per_sample / 2 if reduction == "mean" else 0.5


def _sample_weight(loss_fn, outputs: Tensor, targets: Tensor) -> float:
    """w in ``loss_fn(batch) = w Σ_i ℓ_i``: 1/N for a mean of the samples' losses, 1 for their sum.

    ℓ_i is ``loss_fn`` on the batch of sample i alone (a vmap over the outputs, no model call); the batch's loss
    must equal their mean or their sum to √ε relative, else ValueError.
    """
    with torch.no_grad():
        loss = loss_fn(outputs, targets)
        each = torch.func.vmap(lambda z, y: loss_fn(z.unsqueeze(0), y.unsqueeze(0)))(outputs, targets)
    loss, total, count = float(loss), float(each.sum()), each.numel()
    tol = math.sqrt(torch.finfo(outputs.dtype).eps) * max(abs(loss), abs(total))
    if loss != 0 and abs(loss - total / count) <= tol:
        return 1 / count
    if loss != 0 and abs(loss - total) <= tol:
        return 1.0
    raise ValueError(
        f"loss_fn must be a mean or a sum of the samples' losses (the Fisher weighs each sample's g gᵀ by 1/N or 1), "
        f"but on this batch it is {loss:.6g} while the {count} samples' losses sum to {total:.6g}. Pass a mean loss "
        "such as torch.nn.functional.cross_entropy (or a sum), with samples along dimension 0; at a loss of 0 pass "
        "one of the losses whose reduction is known (cross_entropy, mse_loss, nn.CrossEntropyLoss, nn.MSELoss)."
    )


def _repeat(inputs, times: int):
    """Every sample of ``inputs`` (a tensor or a dict of tensors) ``times`` times in a row, along dimension 0."""
    if isinstance(inputs, Tensor):
        return inputs.repeat_interleave(times, dim=0)
    return {key: value.repeat_interleave(times, dim=0) for key, value in inputs.items()}


def sample_targets(outputs: Tensor, likelihood: str, reduction: str, num_samples: int,
                   generator: torch.Generator | None) -> Tensor:
    """``num_samples`` targets per sample from the model's predictive distribution, sample i's draws in a row.

    Cross-entropy: ỹ ~ Categorical(softmax(z_i)); squared error: ỹ = z_i + σ ε, ε ~ N(0, I), σ² from
    ``mse_noise_variance``.

    Args:
        outputs: the model's outputs z (N, C) for cross-entropy, (N, ...) for the squared error.
        likelihood: ``"cross-entropy"`` or ``"mse"`` (``loss_likelihood``).
        reduction: ``"mean"`` or ``"sum"``.
        num_samples: S >= 1 draws per sample.
        generator: the random source (on the outputs' device), or None for torch's global one.

    Returns:
        Targets (N·S,) class indices, or (N·S, ...) in the outputs' dtype; rows i·S .. i·S + S − 1 are sample i's.

    Example:
        >>> import torch, hesslab as hl
        >>> from hesslab.exact import sample_targets
        >>> z = torch.tensor([[0.0, 50.0], [50.0, 0.0]], dtype=torch.float64)  # all but certain
        >>> sample_targets(z, "cross-entropy", "mean", 3, hl.seed(0)).tolist()
        [1, 1, 1, 0, 0, 0]
    """
    outputs = outputs.detach()
    if likelihood == "cross-entropy":
        if outputs.ndim != 2:
            raise ValueError(f"the Monte-Carlo Fisher of cross-entropy needs outputs (N, C) of class scores, got shape "
                             f"{tuple(outputs.shape)}; reshape sequence outputs to (N·T, C).")
        probabilities = torch.softmax(outputs, dim=1)
        return torch.multinomial(probabilities, num_samples, replacement=True, generator=generator).reshape(-1)
    sigma = math.sqrt(mse_noise_variance(reduction, outputs[0].numel()))
    noise = torch.randn((outputs.shape[0], num_samples, *outputs.shape[1:]), dtype=outputs.dtype,
                        device=outputs.device, generator=generator)
    return (outputs.unsqueeze(1) + sigma * noise).reshape(-1, *outputs.shape[1:])


def fisher_rows(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], inputs, targets: Tensor,
                kind: str = "empirical", *, num_samples: int = 1, generator: torch.Generator | None = None,
                params: str | Sequence[str] | None = None, max_memory: int | None = None) -> Tensor:
    """Rows R with the Fisher ``F = Rᵀ R`` of ``loss_fn(model(inputs), targets) = w Σ_i ℓ_i`` (w = 1/N or 1).

    empirical: F = w Σ_i g_i g_iᵀ with g_i = ∇ℓ_i at the data's targets (rows √w g_i).
    monte-carlo: F = w Σ_i (1/S) Σ_s g̃_is g̃_isᵀ with g̃_is = ∇ℓ(model(x_i), ỹ_is) at S targets ỹ_is drawn from the
    model's predictive distribution (``sample_targets``); its mean over the draws is the GGN Σ_i w J_iᵀ H_i J_i
    (Martens 2020, "New insights and perspectives on the natural gradient method", §9.2).
    Cost: one vmapped per-sample backward of N (or N·S) samples (``hl.per_sample_gradients``); memory N·S·n entries.

    Args:
        model: any ``nn.Module`` taking a batch along dim 0 (left unchanged).
        loss_fn: ``(outputs, targets) -> scalar``, a mean or a sum over the samples; for ``monte-carlo`` a
            cross-entropy or squared error (``loss_likelihood``).
        inputs: (N, ...) inputs, a tensor or a dict of tensors.
        targets: (N, ...) targets (read by ``empirical``; ``monte-carlo`` only checks the reduction with them).
        kind: ``"empirical"`` or ``"monte-carlo"``.
        num_samples: S >= 1, drawn targets per sample (``monte-carlo``).
        generator: the random source of the draws (``monte-carlo``).
        params: parameter names for a per-layer block (default: all that require grad).
        max_memory: bytes the rows may take (default 90% of available memory); more is a ValueError.

    Returns:
        R (N·S, n) in the parameters' dtype (S = 1 for ``empirical``).

    Example:
        >>> import torch, hesslab as hl
        >>> from hesslab.exact import fisher_rows
        >>> model = torch.nn.Linear(2, 1, bias=False).double()
        >>> X, y = torch.eye(2, dtype=torch.float64), torch.ones(2, 1, dtype=torch.float64)
        >>> fisher_rows(model, torch.nn.functional.mse_loss, X, y).shape
        torch.Size([2, 2])
    """
    kind = check_choice("kind", kind, FISHER_KINDS, "empirical: the data's targets; monte-carlo: sampled ones.")
    num_samples = check_count("num_samples", num_samples, 1)
    generator = check_generator("generator", generator)
    check_inputs(inputs)
    if kind == "empirical" and num_samples != 1:
        raise ValueError(f"num_samples is for kind='monte-carlo' (targets drawn per sample), got {num_samples} with "
                         "kind='empirical', which uses the data's one target per sample; leave num_samples=1.")
    if kind == "monte-carlo":
        likelihood, reduction = loss_likelihood(loss_fn)
    else:  # a known loss's reduction, or (any other loss) the one detected on the batch
        try:
            likelihood, reduction = loss_likelihood(loss_fn)
        except ValueError:
            likelihood, reduction = None, None
    named = select_parameters(model, params)
    theta = flatten_parameters(named)
    with torch.no_grad(), differentiable_attention():
        outputs = call_model(model, named, theta, inputs)
    if not isinstance(outputs, Tensor) or outputs.ndim == 0:
        raise ValueError("the Fisher needs model(inputs) to be a tensor with the samples along dimension 0.")
    count = outputs.shape[0]
    weight = (1 / count if reduction == "mean" else 1.0) if reduction else _sample_weight(loss_fn, outputs, targets)
    rows = count * num_samples
    itemsize = torch.empty((), dtype=theta.dtype).element_size()
    need, budget = rows * theta.numel() * itemsize, max_memory
    budget = int(0.9 * available_memory(theta.device)) if budget is None else int(budget)
    if need > budget:
        raise ValueError(f"the Fisher's {rows:,} x {theta.numel():,} per-sample gradients need {need:,} bytes, but "
                         f"only {budget:,} are available; pass fewer samples per batch (a list of batches), fewer "
                         "num_samples, or a block params=[...].")
    if kind == "monte-carlo":
        inputs, targets = _repeat(inputs, num_samples), sample_targets(outputs, likelihood, reduction, num_samples,
                                                                       generator)
    gradients, _ = per_sample_gradients(model, loss_fn, inputs, targets, params=params)
    return gradients * math.sqrt(weight / num_samples)


def fisher(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], inputs, targets: Tensor,
           kind: str = "empirical", *, num_samples: int = 1, generator: torch.Generator | None = None,
           params: str | Sequence[str] | None = None, max_memory: int | None = None) -> Tensor:
    """The dense Fisher, empirical ``F = w Σ_i g_i g_iᵀ`` or Monte-Carlo (targets drawn from the model), (n, n).

    w = 1/N for a loss that is a mean over the N samples, 1 for a sum; g_i = ∇ℓ_i the gradient of sample i's loss
    (``hl.per_sample_gradients``). The Monte-Carlo Fisher (``fisher_rows``) equals the GGN ``hl.ggn`` in
    expectation; the empirical one does not, except where the model fits well-specified data (Kunstner, Balles &
    Hennig 2019, "Limitations of the Empirical Fisher Approximation for Natural Gradient Descent").
    Cost: the per-sample gradients plus one (n × N·S) @ (N·S × n) product; memory n² + N·S·n entries.

    Args:
        model: any ``nn.Module`` taking a batch along dim 0 (left unchanged).
        loss_fn: ``(outputs, targets) -> scalar``, a mean or a sum over the samples.
        inputs: (N, ...) inputs, a tensor or a dict of tensors.
        targets: (N, ...) targets.
        kind: ``"empirical"`` or ``"monte-carlo"``.
        num_samples: S >= 1, targets drawn per sample (``monte-carlo``).
        generator: the random source of the draws (``monte-carlo``).
        params: parameter names for a per-layer block (default: all that require grad).
        max_memory: bytes the matrix and the rows may take (default 90% of available memory).

    Returns:
        F (n, n), in the parameters' dtype and device.

    Example:
        One sample of least squares, ℓ = (θ·x − y)², at θ = 0: g = −2 y x, F = 4 y² x xᵀ:

        >>> import torch, hesslab as hl
        >>> model = torch.nn.Linear(2, 1, bias=False).double()
        >>> torch.nn.init.zeros_(model.weight)  # doctest: +ELLIPSIS
        Parameter containing:...
        >>> X, y = torch.tensor([[1.0, 2.0]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64)
        >>> hl.fisher(model, torch.nn.functional.mse_loss, X, y).tolist()
        [[4.0, 8.0], [8.0, 16.0]]
    """
    theta = flatten_parameters(select_parameters(model, params))
    check_dense_fits(theta.numel(), theta.dtype, theta.device, max_memory, "fisher", 0)
    rows = fisher_rows(model, loss_fn, inputs, targets, kind, num_samples=num_samples, generator=generator,
                       params=params, max_memory=max_memory)
    return check_finite_product(rows.T @ rows, "the Fisher", "the per-sample gradients overflowed")
