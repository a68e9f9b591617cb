"""A model and its data become a scalar function of one flat vector; its Hessian-vector products.

    f(θ) = loss_fn(model(inputs; θ), targets)          θ ∈ R^n, all chosen parameters flattened and concatenated

Hessian-vector products are computed **reverse-over-reverse** (double backward, Pearlmutter 1994):

    g(x) = ∇f(x)  (built once, with its graph kept),     H(x) v = ∇_x ⟨g(x), v⟩   (one more backward per product)

Why not forward-over-reverse (``torch.func.jvp(grad(f))``)? On torch 2.13 it fails through ``functional_call`` for
common activation/loss pairs ("ZeroTensors are immutable"), while double backward works for all of them; and keeping
the gradient's graph makes a repeated product at a fixed point cost ~1.5 gradients instead of ~4 (benchmarks/: 14
matrix products against a gradient's 8 for an MLP, the same as PyHessian).
Several vectors at once, ``V`` of shape (n, k), go through one batched backward (``is_grads_batched``, i.e. ``vmap``).

Every product is checked: a NaN or inf in ``H v`` (inputs finite) means ∇²f is not finite at x, and is a ValueError.
Models are differentiated with the math kernel of ``scaled_dot_product_attention`` (the fused kernels have no double
backward), with parameters that the loss does not use giving zero curvature, and without changing the model's
buffers (batch-norm running statistics).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from ._checks import (
    check_count,
    check_finite,
    check_finite_product,
    check_flat_vector,
    check_instance,
    check_like,
    check_scalar_output,
)

_STOCHASTIC_LAYERS = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


# ----------------------------------------------------------------------------------------------------------------------
# model + data  ->  f(θ)
# ----------------------------------------------------------------------------------------------------------------------
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


def _num_samples(inputs, targets: Tensor) -> int:
    """N, the leading dimension shared by the inputs (every tensor of a dict) and the targets; else ValueError."""
    check_instance("targets", targets, Tensor)
    sizes = [t.shape[0] if t.ndim else None for t in ([inputs] if isinstance(inputs, Tensor) else inputs.values())]
    sizes.append(targets.shape[0] if targets.ndim else None)
    if None in sizes or len(set(sizes)) != 1:
        raise ValueError(f"inputs and targets must share their first (sample) dimension, got the sizes {sizes} "
                         "(None: a 0-d tensor); pass one batch with the samples along dim 0.")
    return sizes[0]


def per_sample_gradients(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    params: str | Sequence[str] | None = None,
    *,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """The gradient of each sample's loss, ``g_i = ∇_θ ℓ(model(x_i; θ), y_i)``, as the rows of G (N, n).

    ℓ_i is ``loss_fn`` on the batch of one sample i, so for a mean loss f(θ) = (1/N) Σ_i ℓ_i and ∇f = mean of the
    rows; for a sum loss ∇f = their sum. The rows make the empirical Fisher F = (1/N) Gᵀ G and M-FAC's gradients.
    Computed by ``torch.func.vmap`` of ``torch.func.grad`` over the samples (one batched backward, not N).
    Cost: about one backward of the whole batch; memory N·n entries (plus vmap's intermediates for
    ``chunk_size`` samples at a time, default all).

    Args:
        model: any ``nn.Module`` that takes a batch along dim 0 (left unchanged; buffers are copied).
        loss_fn: ``(outputs, targets) -> scalar``, called on one sample's batch of size 1.
        inputs: (N, ...) inputs, a tensor or a dict of tensors sharing N.
        targets: (N, ...) targets.
        params: parameter names that make up θ, default all that require grad.
        chunk_size: samples per vmapped call (lower it when memory is short), default all N.

    Returns:
        ``(G, theta)``: G (N, n) in θ's dtype, checked finite; theta (n,), the detached flat parameters.

    Example:
        Least squares ℓ_i = (θ·x_i − y_i)² has g_i = 2 (θ·x_i − y_i) x_i; at θ = 0 that is −2 y_i x_i:

        >>> import torch, hesslab as hl
        >>> model = torch.nn.Linear(2, 1, bias=False).double()
        >>> torch.nn.init.zeros_(model.weight)  # doctest: +ELLIPSIS
        Parameter containing:...
        >>> X, y = torch.eye(2, dtype=torch.float64), torch.tensor([[1.0], [3.0]], dtype=torch.float64)
        >>> G, theta = hl.per_sample_gradients(model, torch.nn.functional.mse_loss, X, y)
        >>> G.tolist()
        [[-2.0, 0.0], [0.0, -6.0]]
    """
    named = select_parameters(model, params)
    check_inputs(inputs)
    num_samples = _num_samples(inputs, targets)
    if num_samples == 0:
        raise ValueError("per_sample_gradients needs at least one sample, got an empty batch (N = 0).")
    if chunk_size is not None:
        chunk_size = check_count("chunk_size", chunk_size, 1)
    warn_if_stochastic(model)
    theta = flatten_parameters(named)

    def loss_of_one(theta: Tensor, x, y: Tensor) -> Tensor:
        batch_of_one = x.unsqueeze(0) if isinstance(x, Tensor) else {k: t.unsqueeze(0) for k, t in x.items()}
        outputs = call_model(model, named, theta, batch_of_one)
        return check_scalar_output("loss_fn(model(x_i), y_i)", loss_fn(outputs, y.unsqueeze(0)), finite=False)

    with differentiable_attention():
        G = vmap(grad(loss_of_one), in_dims=(None, 0, 0), chunk_size=chunk_size)(theta, inputs, targets)
    G = G.detach()
    check_finite("the per-sample gradients", G)  # a finite loss can still have a NaN gradient (‖x‖ at 0)
    return G, theta


# ----------------------------------------------------------------------------------------------------------------------
# Hessian-vector products
# ----------------------------------------------------------------------------------------------------------------------
def _backward(outputs: Tensor, inputs: Tensor, v: Tensor) -> Tensor:
    """``∂⟨outputs, v⟩/∂inputs``; v (*outputs.shape) or, batched, (k, *outputs.shape) -> (k, *inputs.shape)."""
    batched = v.ndim == outputs.ndim + 1
    if batched and v.shape[0] == 0:  # no vectors: no products
        return torch.zeros((0, *inputs.shape), dtype=inputs.dtype, device=inputs.device)
    if batched and v.shape[0] == 1:  # a batch of one: the plain backward, without vmap's overhead
        return _backward(outputs, inputs, v[0]).unsqueeze(0)
    if not outputs.requires_grad:  # outputs do not depend on inputs: the derivative is zero
        return torch.zeros((*v.shape[:1], *inputs.shape) if batched else inputs.shape, dtype=inputs.dtype,
                           device=inputs.device)
    (result,) = torch.autograd.grad(outputs, inputs, v, retain_graph=True, is_grads_batched=batched,
                                    allow_unused=True)
    if result is None:
        return torch.zeros((*v.shape[:1], *inputs.shape) if batched else inputs.shape, dtype=inputs.dtype,
                           device=inputs.device)
    return result


def hvp_at(f: Callable[[Tensor], Tensor], x: Tensor) -> Callable[[Tensor], Tensor]:
    """Fix the point x and return ``v -> H(x) v``, ``H = ∇²f(x)``.

    The gradient's graph is built once and each product is one more backward pass through it (~1.5 gradients for
    an MLP, see benchmarks/).
    Cost: one forward+backward (with graph) now; per product one backward, batched over the k columns.
    Memory: the graph of ∇f(x) stays alive as long as the returned function does.

    Args:
        f: scalar function of a 1-D tensor.
        x: (n,) point.

    Returns:
        A function taking v (n,) or V (n, k) and returning H v (n,) or H V (n, k). It does not validate v: the
        public entry points ``hl.hvp`` and ``hl.HessianOperator`` do, once. It checks every product: a NaN/inf
        entry raises ValueError (∇²f is not finite at x, e.g. ‖x‖ at 0).

    Example:
        >>> import torch
        >>> from hesslab.functional import hvp_at
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> product = hvp_at(lambda x: 0.5 * x @ A @ x, torch.zeros(2, dtype=torch.float64))
        >>> product(torch.eye(2, dtype=torch.float64)).tolist()  # H I = A
        [[2.0, 1.0], [1.0, 3.0]]
    """
    x = check_flat_vector("x", x)
    point = x.detach().requires_grad_(True)
    with torch.enable_grad(), differentiable_attention():
        value = check_scalar_output("f(x)", f(point))
        check_finite("f(x)", value)
        if not value.requires_grad:
            raise ValueError("f(x) does not depend on x (no gradient graph); check that f uses its argument.")
        # allow_unused: f may depend on other tensors that require grad but not on x (a block of parameters the
        # loss does not use); its gradient and Hessian are then zero.
        (gradient,) = torch.autograd.grad(value, point, create_graph=True, allow_unused=True)
    if gradient is None:
        gradient = torch.zeros_like(point)
    check_finite("the gradient of f at x", gradient)

    def product(v: Tensor) -> Tensor:
        hv = _backward(gradient, point, v) if v.ndim == 1 else _backward(gradient, point, v.T.contiguous()).T
        return check_finite_product(hv.detach(), "∇²f", "f is not twice differentiable there, or overflowed")

    return product


def hvp(f: Callable[[Tensor], Tensor], x: Tensor, v: Tensor) -> Tensor:
    """The Hessian-vector product ``H(x) v = ∇²f(x) v`` (Pearlmutter 1994), exact up to rounding.

    Cost: one gradient with graph plus one batched backward; for many products at the same point use
    ``hl.HessianOperator(f, x)``, which keeps the gradient's graph (~1.5 gradients per product).

    Args:
        f: scalar function of a 1-D tensor, e.g. from ``hl.loss_function``.
        x: (n,) point.
        v: (n,) vector, or (n, k) for k products at once.

    Returns:
        H v with the shape of v.

    Example:
        For f(x) = ½ xᵀAx the Hessian is A at every x, so ``hvp`` returns A v:

        >>> import torch, hesslab as hl
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> f = lambda x: 0.5 * x @ A @ x
        >>> x, v = torch.ones(2, dtype=torch.float64), torch.tensor([1.0, -1.0], dtype=torch.float64)
        >>> hl.hvp(f, x, v).tolist()
        [1.0, -2.0]
    """
    x = check_flat_vector("x", x)
    v = check_like("v", v, x.numel(), x.dtype, x.device)
    return hvp_at(f, x)(v)


def ggnvp_at(
    g: Callable[[Tensor], Tensor], loss_of_output: Callable[[Tensor], Tensor], x: Tensor
) -> Callable[[Tensor], Tensor]:
    """Fix x and return ``v -> G v`` with the generalised Gauss-Newton matrix (Schraudolph 2002).

        G = Jᵀ H_L J,    J = ∂g/∂x (m × n),    H_L = ∇²_z loss_of_output(z) at z = g(x) (m × m).

    Each product is three backward passes through graphs built once here: J v by the double-vjp trick
    (J v = ∂⟨Jᵀu, v⟩/∂u), then H_L (J v), then Jᵀ (H_L J v).

    Args:
        g: the model's outputs as a function of x (``hl.output_function``).
        loss_of_output: scalar loss of those outputs, e.g. ``lambda z: cross_entropy(z, targets)``.
        x: (n,) point.

    Returns:
        A function taking v (n,) or V (n, k), returning G v of the same shape (v is not validated here;
        ``hl.GGNOperator`` does that).

    Example:
        Outputs g(x) = B x and the loss ½‖z‖² (H_L = I) give G = BᵀB:

        >>> import torch
        >>> from hesslab.functional import ggnvp_at
        >>> B = torch.tensor([[1.0, 2.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
        >>> product = ggnvp_at(lambda x: B @ x, lambda z: 0.5 * (z**2).sum(), torch.ones(2, dtype=torch.float64))
        >>> product(torch.eye(2, dtype=torch.float64)).tolist()  # BᵀB
        [[2.0, 2.0], [2.0, 5.0]]
    """
    x = check_flat_vector("x", x)
    point = x.detach().requires_grad_(True)
    with torch.enable_grad(), differentiable_attention():
        outputs = g(point)
        if not isinstance(outputs, Tensor):
            raise TypeError(f"g must return a torch.Tensor, got {type(outputs).__name__}.")
        check_finite("g(x)", outputs)
        if not outputs.requires_grad:
            raise ValueError("g(x) does not depend on x (no graph); check that g uses its argument.")
        z = outputs.detach().requires_grad_(True)
        value = check_scalar_output("loss_of_output(g(x))", loss_of_output(z))
        check_finite("loss_of_output(g(x))", value)
        # allow_unused: a loss that ignores some outputs, or outputs that do not depend on x (parameters the model
        # does not use, while others require grad), contribute zero curvature.
        (loss_gradient,) = torch.autograd.grad(value, z, create_graph=True, allow_unused=True)
        if loss_gradient is None:
            loss_gradient = torch.zeros_like(z)
        u = torch.zeros_like(outputs, requires_grad=True)
        (transpose_jacobian_u,) = torch.autograd.grad(outputs, point, u, create_graph=True, allow_unused=True)
        if transpose_jacobian_u is None:
            transpose_jacobian_u = torch.zeros_like(point)

    def product(v: Tensor) -> Tensor:
        V = v if v.ndim == 1 else v.T.contiguous()  # batched: (k, n)
        jv = _backward(transpose_jacobian_u, u, V)  # (k, *outputs.shape)
        hjv = _backward(loss_gradient, z, jv)
        gv = _backward(outputs, point, hjv)
        return check_finite_product((gv if v.ndim == 1 else gv.T).detach(), "the GGN Jᵀ H_L J",
                                    "the loss is not twice differentiable in the outputs there, or overflowed")

    return product
