"""What AdaHessian and Sophia share.

The closure's contract, hyperparameter checks, and flagging a curvature estimate that is not finite (it is counted
and warned about, never applied).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_real_number


def check_betas(betas) -> tuple[float, float]:
    """Check the EMA coefficients ``betas = (β1, β2)``: a pair of numbers in [0, 1).

    Args:
        betas: a tuple or list of two numbers.

    Returns:
        ``(β1, β2)`` as floats.

    Raises:
        TypeError: when it is not a pair of numbers.
        ValueError: when one is outside [0, 1).

    Example:
        >>> from hesslab.optim.common import check_betas
        >>> check_betas([0.9, 0.999])
        (0.9, 0.999)
    """
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}.")
    return tuple(check_real_number(f"betas[{i}]", beta, 0.0, 1.0, open="high", hint="Typical: betas=(0.9, 0.999).")
                 for i, beta in enumerate(betas))


def trainable(optimizer: torch.optim.Optimizer) -> list[tuple[dict, Tensor]]:
    """(group, parameter) for every parameter that requires grad, in param_groups order.

    Args:
        optimizer: a ``torch.optim.Optimizer``.

    Returns:
        The ``(param_group dict, parameter)`` pairs.

    Example:
        >>> import torch
        >>> from hesslab.optim.common import trainable
        >>> w, frozen = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2), requires_grad=False)
        >>> [p is w for _, p in trainable(torch.optim.SGD([w, frozen], lr=0.1))]
        [True]
    """
    return [(group, p) for group in optimizer.param_groups for p in group["params"] if p.requires_grad]


def evaluate_closure(closure: Callable | None, owner: str, *, with_logits: bool) -> tuple[Tensor, Tensor | None]:
    """Call ``closure()`` with gradients enabled; return (loss, logits or None), both checked.

    The closure computes the loss (and, for the Gauss-Newton-Bartlett estimator, returns ``(loss, logits)``) but
    does not call ``backward``: the optimizer takes the gradient graph it needs itself.

    Args:
        closure: ``() -> loss`` or ``() -> (loss, logits)``.
        owner: the optimizer's name, for error messages.
        with_logits: whether the logits are required (the Gauss-Newton-Bartlett estimator).

    Returns:
        ``(loss, logits)``: the 0-d loss with its graph, and the logits (None when the closure gave none).

    Raises:
        TypeError: without a callable closure, or when it returns no tensor.
        ValueError: for a loss that is not a finite scalar with a graph, or logits that do not fit.

    Example:
        >>> import torch
        >>> from hesslab.optim.common import evaluate_closure
        >>> w = torch.nn.Parameter(torch.ones(2))
        >>> loss, logits = evaluate_closure(lambda: (w**2).sum(), "AdaHessian", with_logits=False)
        >>> loss.item(), loss.requires_grad, logits
        (2.0, True, None)
    """
    if closure is None or not callable(closure):
        raise TypeError(
            f"{owner}.step needs a closure that returns the loss, e.g. "
            f"optimizer.step(lambda: loss_fn(model(x), y)); it differentiates the loss itself (a second-order "
            f"method needs the gradient's graph), so the closure must not call loss.backward().")
    with torch.enable_grad():
        output = closure()
    logits = None
    if isinstance(output, (tuple, list)):
        if len(output) != 2:
            raise ValueError(f"{owner}: the closure must return the loss or (loss, logits), got a sequence of "
                             f"{len(output)} items.")
        output, logits = output
    if with_logits and logits is None:
        raise ValueError(
            f"{owner} with the Gauss-Newton-Bartlett estimator samples labels from the model's own outputs: the "
            "closure must return (loss, logits), e.g. `logits = model(x); return cross_entropy(logits, y), logits`.")
    if not isinstance(output, Tensor):
        raise TypeError(f"{owner}: the closure must return a torch.Tensor loss, got {type(output).__name__}.")
    if output.numel() != 1:
        raise ValueError(f"{owner}: the closure must return a scalar loss, got shape {tuple(output.shape)}; reduce "
                         "it (e.g. .mean(), or reduction='mean' in the loss).")
    if not output.requires_grad:
        raise ValueError(f"{owner}: the closure's loss has no gradient graph; compute it inside the closure from "
                         "the model's parameters, outside torch.no_grad().")
    if not math.isfinite(output.item()):
        raise ValueError(f"{owner}: the loss is not finite ({output.item()}); the step was not taken. Lower lr "
                         "or check the data.")
    if logits is not None:
        if not isinstance(logits, Tensor) or logits.ndim < 1 or logits.shape[-1] < 2:
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ValueError(f"{owner}: logits must be a tensor (..., C) with C >= 2 classes, got {shape}.")
        if with_logits and not logits.requires_grad:
            raise ValueError(f"{owner}: the logits have no gradient graph; return the model's output itself.")
    with torch.enable_grad():  # step() runs under no_grad: keep the graph of the reshaped loss
        return output.reshape(()), logits


def gradients_of(loss: Tensor, params: list[Tensor], owner: str, *, create_graph: bool,
                 retain_graph: bool = False) -> list[Tensor | None]:
    """∇L per parameter (None where L does not depend on it); a non-finite gradient is refused.

    Args:
        loss: the 0-d loss with its graph.
        params: the parameters.
        owner: the optimizer's name, for error messages.
        create_graph: keep the gradient's own graph (for a Hessian-vector product through it).
        retain_graph: keep the loss's graph (implied by ``create_graph``).

    Returns:
        One gradient per parameter, or None for a parameter the loss does not use.

    Raises:
        RuntimeError: when the closure already called ``loss.backward()``.
        ValueError: when the gradient is not finite.

    Example:
        >>> import torch
        >>> from hesslab.optim.common import gradients_of
        >>> w, unused = torch.nn.Parameter(torch.tensor([1.0, 2.0])), torch.nn.Parameter(torch.ones(1))
        >>> gradient, nothing = gradients_of((w**2).sum(), [w, unused], "AdaHessian", create_graph=False)
        >>> gradient.tolist(), nothing
        ([2.0, 4.0], None)
    """
    try:
        grads = torch.autograd.grad(loss, params, create_graph=create_graph,
                                    retain_graph=retain_graph or create_graph, allow_unused=True)
    except RuntimeError as error:
        if "backward through the graph a second time" in str(error):
            raise RuntimeError(f"{owner}: the closure called loss.backward(), which freed the graph; return the "
                               "loss without calling backward (the optimizer differentiates it).") from error
        raise
    if not all_finite([g for g in grads if g is not None]):
        raise ValueError(f"{owner}: the gradient has non-finite entries (the loss is {loss.item()}); the step "
                         "was not taken. Lower lr or check the model.")
    return list(grads)


def all_finite(tensors: list[Tensor]) -> bool:
    """False when any entry of any tensor is NaN or inf.

    One synchronisation: a finite sum of the tensors' sums proves every entry finite (NaN and inf propagate); only
    when it is not (or overflowed) are they looked at.

    Args:
        tensors: the tensors (an empty list is finite).

    Returns:
        Whether every entry is finite.

    Example:
        >>> import torch
        >>> from hesslab.optim.common import all_finite
        >>> all_finite([torch.ones(2), torch.zeros(3)]), all_finite([torch.ones(2), torch.tensor([float("nan")])])
        (True, False)
        >>> all_finite([torch.tensor([3e38, 3e38])])  # the sum overflows, the entries are finite
        True
    """
    if not tensors:
        return True
    if math.isfinite(torch.stack([t.sum() for t in tensors]).sum().item()):
        return True
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def warn_nonfinite(owner: str, what: str) -> None:
    """Warn (``RuntimeWarning``) that a curvature estimate had non-finite entries, and what was done instead.

    Args:
        owner: the optimizer's name.
        what: what happened instead (e.g. "this step was skipped").

    Example:
        >>> import warnings
        >>> from hesslab.optim.common import warn_nonfinite
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_nonfinite("AdaHessian", "this step was skipped")
        >>> caught[0].category.__name__
        'RuntimeWarning'
    """
    warnings.warn(f"{owner}: the curvature estimate has non-finite entries; {what}. "
                  "optimizer.nonfinite_curvature counts these events.", RuntimeWarning, stacklevel=3)


def user_diagonal(estimator: Callable, loss: Tensor, params: list[Tensor], owner: str) -> list[Tensor]:
    """A user-supplied diagonal estimate ``estimator(loss, params)``: one tensor per parameter, shaped like it.

    Args:
        estimator: ``(loss, params) -> diagonals``.
        loss: the loss, its graph still alive.
        params: the parameters.
        owner: the optimizer's name, for the error message.

    Returns:
        The diagonals, detached.

    Raises:
        ValueError: unless there is one tensor per parameter, shaped like it.

    Example:
        >>> import torch
        >>> from hesslab.optim.common import user_diagonal
        >>> w = torch.nn.Parameter(torch.ones(2))
        >>> user_diagonal(lambda loss, params: [2 * torch.ones(2)], (w**2).sum(), [w], "Sophia")[0].tolist()
        [2.0, 2.0]
    """
    diagonals = list(estimator(loss, params))
    if len(diagonals) != len(params) or any(d.shape != p.shape for d, p in zip(diagonals, params)):
        raise ValueError(f"{owner}: the estimator must return one tensor per parameter, shaped like it.")
    return [d.detach() for d in diagonals]
