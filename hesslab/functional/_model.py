"""A model and its data become a scalar function of one flat vector: ``f(θ) = loss_fn(model(inputs; θ), targets)``.

θ ∈ R^n is all chosen parameters flattened and concatenated; the model is called with ``torch.func.functional_call``
on views of θ and copies of its buffers, so the user's model is never changed (batch-norm running statistics
included). Models are differentiated with the math kernel of ``scaled_dot_product_attention`` (the fused kernels
have no double backward), and parameters that the loss does not use give zero derivatives.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from .._checks import (
    check_instance,
    check_scalar_output,
)

_STOCHASTIC_LAYERS = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


def select_parameters(model: nn.Module, params: str | Sequence[str] | None = None) -> list[tuple[str, Tensor]]:
    """The named parameters that θ consists of, in ``model.named_parameters()`` order.

    ``params=None`` takes every parameter with ``requires_grad``; a list of names (e.g. ``["0.weight", "0.bias"]``)
    restricts θ to that block, for per-layer Hessians (HAWQ). Unknown or frozen names raise ``ValueError``.

    Args:
        model: any ``nn.Module``.
        params: a parameter name, a sequence of names, or None for every parameter that requires grad.

    Returns:
        ``(name, parameter)`` pairs, in the model's order whatever the order of ``params``.

    Example:
        >>> import torch
        >>> from hesslab.functional import select_parameters
        >>> model = torch.nn.Linear(2, 1)
        >>> [name for name, _ in select_parameters(model)], [name for name, _ in select_parameters(model, "bias")]
        (['weight', 'bias'], ['bias'])
    """
    check_instance("model", model, nn.Module, hint="Pass a torch.nn.Module.")
    named = dict(model.named_parameters())
    if params is None:
        chosen = [(name, p) for name, p in named.items() if p.requires_grad]
        if not chosen:
            raise ValueError(
                "model has no parameters that require grad; unfreeze some with p.requires_grad_(True) "
                "or name them explicitly in params=[...]."
            )
        return chosen
    if isinstance(params, str):
        params = [params]
    params = list(params)
    if not params:
        raise ValueError("params is empty; give at least one parameter name, or None for all parameters.")
    unknown = [name for name in params if name not in named]
    if unknown:
        raise ValueError(f"params names {unknown} are not parameters of the model; available: {list(named)}.")
    frozen = [name for name in params if not named[name].requires_grad]
    if frozen:
        raise ValueError(
            f"parameters {frozen} do not require grad; call .requires_grad_(True) on them or leave them out of params."
        )
    order = {name: i for i, name in enumerate(named)}
    return [(name, named[name]) for name in sorted(set(params), key=order.__getitem__)]


def warn_if_stochastic(model: nn.Module) -> None:
    """Warn when the model is in training mode with dropout or batch-norm layers.

    f is then random or depends on the batch statistics, and its Hessian is ill-defined. Call ``model.eval()``
    first.

    Args:
        model: the model that f is made of.

    Example:
        >>> import torch, warnings
        >>> from hesslab.functional import warn_if_stochastic
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_if_stochastic(model)          # training mode: warned
        ...     warn_if_stochastic(model.eval())   # eval mode: silent
        >>> len(caught)
        1
    """
    if model.training and any(isinstance(m, _STOCHASTIC_LAYERS) for m in model.modules()):
        warnings.warn(
            "model is in training mode and has dropout or batch-norm layers: the loss is then a stochastic (or "
            "batch-statistics dependent) function of the parameters and its Hessian is ill-defined. "
            "Call model.eval() before computing curvature.",
            UserWarning,
            stacklevel=3,
        )


def flatten_parameters(named: list[tuple[str, Tensor]]) -> Tensor:
    """θ: a detached copy of the parameters, concatenated into one 1-D tensor.

    Args:
        named: ``(name, parameter)`` pairs, as ``select_parameters`` gives them.

    Returns:
        θ (n,), n the total number of entries, in the parameters' order (each flattened row-major).

    Example:
        >>> import torch
        >>> from hesslab.functional import flatten_parameters, select_parameters
        >>> theta = flatten_parameters(select_parameters(torch.nn.Linear(2, 1)))
        >>> theta.shape, theta.requires_grad
        (torch.Size([3]), False)
    """
    return torch.cat([p.detach().reshape(-1) for _, p in named]).clone()


def unflatten(theta: Tensor, named: list[tuple[str, Tensor]]) -> dict[str, Tensor]:
    """The inverse of ``flatten_parameters``: views of ``theta`` shaped like each named parameter.

    Args:
        theta: (n,) flat vector laid out like ``flatten_parameters(named)``.
        named: ``(name, parameter)`` pairs.

    Returns:
        ``{name: view of theta with that parameter's shape}`` (no copy: gradients flow back to ``theta``).

    Example:
        >>> import torch
        >>> from hesslab.functional import select_parameters, unflatten
        >>> pieces = unflatten(torch.arange(3.0), select_parameters(torch.nn.Linear(2, 1)))
        >>> pieces["weight"].tolist(), pieces["bias"].tolist()
        ([[0.0, 1.0]], [2.0])
    """
    pieces = torch.split(theta, [p.numel() for _, p in named])
    return {name: piece.view(p.shape) for (name, p), piece in zip(named, pieces, strict=True)}


def differentiable_attention():
    """A context in which ``scaled_dot_product_attention`` uses its math kernel (softmax(QKᵀ/√d) V in plain ops).

    The fused kernels (flash, memory-efficient, the CPU flash kernel) have a first backward but no derivative of
    it, so a Hessian-vector product through ``nn.TransformerEncoderLayer`` or ``nn.MultiheadAttention`` fails with
    "derivative for aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented". hesslab
    evaluates every function it differentiates twice inside this context; it changes nothing for models without
    attention.

    Returns:
        A context manager (``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``).

    Example:
        >>> import torch
        >>> from hesslab.functional import differentiable_attention
        >>> q = torch.ones(1, 2, 4, dtype=torch.float64)
        >>> with differentiable_attention():
        ...     out = torch.nn.functional.scaled_dot_product_attention(q, q, q)
        >>> bool(torch.equal(out, q))  # equal keys: uniform weights, the mean of the (equal) values
        True
    """
    return sdpa_kernel(SDPBackend.MATH)


def call_model(model: nn.Module, named: list[tuple[str, Tensor]], theta: Tensor, inputs) -> Tensor:
    """``model(inputs)`` with the chosen parameters replaced by views of θ and every buffer replaced by a copy.

    The copies keep the user's model unchanged: in training mode batch norm updates its running statistics (and
    ``num_batches_tracked``) in place, and evaluating f, once or per product, must not do that. ``inputs`` is passed
    as the one positional argument, a tensor or a dict of tensors alike.

    Args:
        model: the model (left unchanged).
        named: the ``(name, parameter)`` pairs that θ replaces.
        theta: (n,) flat parameters.
        inputs: the model's input, a tensor or a dict of tensors.

    Returns:
        ``model(inputs)`` evaluated at θ; a function of θ (zero derivative when θ is unused).

    Example:
        >>> import torch
        >>> from hesslab.functional import call_model, select_parameters
        >>> model = torch.nn.Linear(2, 1).double()
        >>> theta = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)  # weight [[1, 2]], bias [3]
        >>> call_model(model, select_parameters(model), theta, torch.ones(1, 2, dtype=torch.float64)).tolist()
        [[6.0]]
    """
    buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
    outputs = functional_call(model, {**buffers, **unflatten(theta, named)}, (inputs,))
    if isinstance(outputs, Tensor) and theta.requires_grad and not outputs.requires_grad and torch.is_grad_enabled():
        # The model does not use the chosen parameters (an unused head) and nothing else in it requires grad: the
        # outputs are constant in θ, and the zero term keeps them a function of θ so that every derivative is
        # zero instead of an error.
        outputs = outputs + 0 * theta.sum()
    return outputs


def check_inputs(inputs) -> None:
    """Check model inputs: a tensor, or a non-empty dict of tensors (passed to ``model(inputs)`` as one argument).

    Args:
        inputs: what the model is called with.

    Raises:
        TypeError: for anything else.

    Example:
        >>> import torch
        >>> from hesslab.functional import check_inputs
        >>> check_inputs({"x": torch.ones(2)})
        >>> check_inputs([1.0, 2.0])
        Traceback (most recent call last):
        ...
        TypeError: inputs must be a torch.Tensor or a non-empty dict of tensors (passed to model(inputs)), got list.
    """
    if isinstance(inputs, Tensor):
        return
    if isinstance(inputs, Mapping) and inputs and all(isinstance(v, Tensor) for v in inputs.values()):
        return
    raise TypeError(
        "inputs must be a torch.Tensor or a non-empty dict of tensors (passed to model(inputs)), got "
        f"{type(inputs).__name__}."
    )


def loss_function(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    params: str | Sequence[str] | None = None,
) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """``f(θ) = loss_fn(model(inputs; θ), targets)`` as a function of the flat parameter vector.

    Args:
        model: any ``nn.Module``; parameters not in θ (and buffers) keep their current values.
        loss_fn: ``(outputs, targets) -> scalar``, e.g. ``nn.functional.cross_entropy`` (mean over the batch).
        inputs: one batch's inputs, a tensor or a dict of tensors (``model(inputs)`` gets it as is).
        targets: that batch's targets, a tensor.
        params: parameter names that make up θ (a per-layer block), default all that require grad.

    Returns:
        ``(f, theta)``: ``f`` maps a 1-D tensor of length n to a 0-d tensor; ``theta`` (n,) is a detached copy of
        the current parameters. Cost of ``f``: one forward pass.

    Example:
        Least squares, f(θ) = mean((Xθ − y)²) = ‖Xθ − y‖² / N, has the Hessian 2 XᵀX / N; here X = I, N = 2:

        >>> import torch, hesslab as hl
        >>> model = torch.nn.Linear(2, 1, bias=False).double()
        >>> X, y = torch.eye(2, dtype=torch.float64), torch.zeros(2, 1, dtype=torch.float64)
        >>> f, theta = hl.loss_function(model, torch.nn.functional.mse_loss, X, y)
        >>> theta.shape, hl.hessian(f, theta).tolist()
        (torch.Size([2]), [[1.0, 0.0], [0.0, 1.0]])
    """
    named = select_parameters(model, params)
    check_inputs(inputs)
    warn_if_stochastic(model)

    def f(theta: Tensor) -> Tensor:
        outputs = call_model(model, named, theta, inputs)
        return check_scalar_output("loss_fn(model(inputs), targets)", loss_fn(outputs, targets))

    return f, flatten_parameters(named)


def output_function(
    model: nn.Module, inputs: Tensor, params: str | Sequence[str] | None = None
) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """``g(θ) = model(inputs; θ)``, the network's outputs as a function of the flat parameters (for ``ggn``).

    Args:
        model: any ``nn.Module``; parameters not in θ (and buffers) keep their current values.
        inputs: one batch's inputs, a tensor or a dict of tensors.
        params: parameter names that make up θ, default all that require grad.

    Returns:
        ``(g, theta)`` like ``loss_function``; ``g(theta)`` has the model's output shape, e.g. (N, C).
        Cost of ``g``: one forward pass.

    Example:
        >>> import torch, hesslab as hl
        >>> model = torch.nn.Linear(3, 2).double()
        >>> g, theta = hl.output_function(model, torch.ones(5, 3, dtype=torch.float64))
        >>> g(theta).shape, theta.shape
        (torch.Size([5, 2]), torch.Size([8]))
    """
    named = select_parameters(model, params)
    check_inputs(inputs)
    warn_if_stochastic(model)

    def g(theta: Tensor) -> Tensor:
        return call_model(model, named, theta, inputs)

    return g, flatten_parameters(named)
