"""AdaHessian (Yao, Gholami, Shen, Mustafa, Keutzer & Mahoney, AAAI 2021): Adam with a Hessian diagonal.

Adam with the squared gradient replaced by the squared Hutchinson estimate of the Hessian diagonal:

    g_t = ∇L(θ_t),   D_t = |z ⊙ H z| (z Rademacher, one HVP),   D_t^(s) = spatial average of D_t over each
                                                                         convolution kernel (identity elsewhere)
    m_t = β1 m_{t−1} + (1 − β1) g_t,           v_t = β2 v_{t−1} + (1 − β2) D_t^(s) ⊙ D_t^(s)
    θ_{t+1} = θ_t − η ( (m_t / (1 − β1^t)) / ( (v_t / (1 − β2^t))^{k/2} + ε )  +  λ θ_t )

with Hessian power k (k = 1: a diagonal Newton step; k = 0.5 is the paper's alternative), bias corrections as in
Adam, and the weight decay λ applied to θ as in the authors' code. Defaults are the paper's: η = 0.15,
(β1, β2) = (0.9, 0.999), ε = 1e-4, λ = 0, k = 1.

The absolute value is taken before the spatial average, as the authors' code does (the paper's formula averages
D_t and then squares it; the two agree when the entries of a kernel's diagonal share a sign).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_flag, check_generator, check_positive, check_real_number
from .common import (
    all_finite,
    check_betas,
    evaluate_closure,
    gradients_of,
    trainable,
    user_diagonal,
    warn_nonfinite,
)
from .estimators import hutchinson_diagonal_estimate, spatial_average

Estimator = Callable[[Tensor, list[Tensor]], list[Tensor]]


class AdaHessian(torch.optim.Optimizer):
    """AdaHessian as a ``torch.optim.Optimizer``: one Hutchinson Hessian-vector product per step.

    Args:
        params: parameters or param groups, as for any ``torch.optim`` optimizer.
        lr: η (default 0.15, the paper's).
        betas: (β1, β2) for the EMAs of the gradient and of the squared diagonal (default (0.9, 0.999)).
        eps: ε added to the denominator (default 1e-4).
        weight_decay: λ, applied as η λ θ (default 0).
        hessian_power: k in (0, 1] (default 1).
        spatial_averaging: average the diagonal over convolution kernels' spatial dimensions (default True).
        estimator: ``"hutchinson"`` (default: |z ⊙ Hz|, one HVP) or a callable ``(loss, params) -> diagonals``
            returning one tensor per parameter (e.g. the exact diagonal, for checks and teaching); the loss's graph is
            still alive when it is called.
        generator: ``torch.Generator`` for the probes (same state, same run).
    Step: ``optimizer.step(closure)`` with ``closure()`` returning the loss (not calling ``backward``); returns the
    loss (detached). After a step, ``p.grad`` holds the gradient used.
    Cost per step: one gradient with its graph (``create_graph=True``) and one HVP through it: 3.7 gradients, or
    2.05 Adam steps, on notebook 10's digits MLP (``benchmarks/optim.py``).
    Memory: two tensors per parameter (m, v), and the gradient's graph during the step.
    Non-finite curvature: the step is skipped (no parameter or state changes), a ``RuntimeWarning`` is raised
    and ``nonfinite_curvature`` counts it.

    Example:
        >>> import torch, hesslab as hl
        >>> w = torch.nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))
        >>> opt = hl.optim.AdaHessian([w], lr=1.0, betas=(0.0, 0.0), eps=0.0)
        >>> loss = opt.step(lambda: 0.5 * (torch.tensor([1.0, 4.0], dtype=torch.float64) * w**2).sum())
        >>> w.detach().tolist()  # a diagonal quadratic: one Newton step reaches the minimum
        [0.0, 0.0]
    """

    def __init__(self, params, lr: float = 0.15, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-4,
                 weight_decay: float = 0.0, hessian_power: float = 1.0, spatial_averaging: bool = True,
                 estimator: str | Estimator = "hutchinson", generator: torch.Generator | None = None):
        defaults = dict(lr=check_positive("lr", lr), betas=check_betas(betas),
                        eps=check_positive("eps", eps, allow_zero=True),
                        weight_decay=check_positive("weight_decay", weight_decay, allow_zero=True),
                        hessian_power=check_real_number("hessian_power", hessian_power, 0.0, 1.0, open="low"),
                        spatial_averaging=check_flag("spatial_averaging", spatial_averaging))
        if not (estimator == "hutchinson" or callable(estimator)):
            raise ValueError(f"estimator must be 'hutchinson' or a callable (loss, params) -> diagonals, got "
                             f"{estimator!r}.")
        super().__init__(params, defaults)
        self.estimator = estimator
        self.generator = check_generator("generator", generator)
        self.nonfinite_curvature = 0

    def _diagonal(self, loss: Tensor, gradients: list[Tensor], params: list[Tensor]) -> list[Tensor]:
        if self.estimator == "hutchinson":
            return hutchinson_diagonal_estimate(gradients, params, self.generator)
        return user_diagonal(self.estimator, loss, params, "AdaHessian")

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:
        """One AdaHessian step (see the class docstring and its example).

        Args:
            closure: ``() -> loss``, computing the loss from the parameters without calling ``backward``.

        Returns:
            The closure's loss, detached.
        """
        loss, _ = evaluate_closure(closure, "AdaHessian", with_logits=False)
        pairs = trainable(self)
        with torch.enable_grad():
            grads = gradients_of(loss, [p for _, p in pairs], "AdaHessian",
                                 create_graph=self.estimator == "hutchinson",
                                 retain_graph=True)  # a callable estimator may differentiate the loss again
            used = [(group, p, g) for (group, p), g in zip(pairs, grads) if g is not None]
            if not used:
                return loss.detach()
            diagonals = self._diagonal(loss, [g for _, _, g in used], [p for _, p, _ in used])
        if not all_finite(diagonals):
            self.nonfinite_curvature += 1
            warn_nonfinite("AdaHessian", "this step was skipped (parameters and moments unchanged)")
            return loss.detach()
        for (group, p, g), diagonal in zip(used, diagonals):
            g = g.detach()
            p.grad = g
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_hessian_diag_sq"] = torch.zeros_like(p)
            state["step"] += 1
            t = state["step"]
            beta1, beta2 = group["betas"]
            d = diagonal.abs()
            if group["spatial_averaging"]:
                d = spatial_average(d)
            m, v = state["exp_avg"], state["exp_hessian_diag_sq"]
            m.lerp_(g, 1 - beta1)  # m ← β1 m + (1 − β1) g
            v.mul_(beta2).addcmul_(d, d, value=1 - beta2)  # v ← β2 v + (1 − β2) D²
            denominator = (v / (1 - beta2**t)).pow_(group["hessian_power"] / 2).add_(group["eps"])
            if group["weight_decay"]:
                p.mul_(1 - group["lr"] * group["weight_decay"])  # the −η λ θ term (the update does not use θ)
            p.addcdiv_(m, denominator, value=-group["lr"] / (1 - beta1**t))  # θ ← θ − η m̂ / (v̂^{k/2} + ε)
        return loss.detach()
