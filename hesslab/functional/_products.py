"""Hessian-vector products by double backward (Pearlmutter 1994), and GGN-vector products ``Jᵀ H_L J v``.

    g(x) = ∇f(x)  (built once, with its graph kept),     H(x) v = ∇_x ⟨g(x), v⟩   (one more backward per product)

Every product is checked: a NaN or inf in ``H v`` (inputs finite) means ∇²f is not finite at x, and is a ValueError.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .._checks import (
    check_finite,
    check_finite_product,
    check_flat_vector,
    check_like,
    check_scalar_output,
)
from ._model import differentiable_attention


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
