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

One idea per module: ``_model`` (a model and its data as f(θ) and g(θ)), ``_per_sample`` (per-sample gradients),
``_products`` (Hessian- and GGN-vector products).
"""

from ._model import (
    call_model,
    check_inputs,
    differentiable_attention,
    flatten_parameters,
    loss_function,
    output_function,
    select_parameters,
    unflatten,
    warn_if_stochastic,
)
from ._per_sample import per_sample_gradients
from ._products import ggnvp_at, hvp, hvp_at

__all__ = [
    "select_parameters",
    "warn_if_stochastic",
    "flatten_parameters",
    "unflatten",
    "differentiable_attention",
    "call_model",
    "check_inputs",
    "loss_function",
    "output_function",
    "per_sample_gradients",
    "hvp_at",
    "hvp",
    "ggnvp_at",
]
