"""Sophia (Liu, Li, Hall, Liang & Ma, ICLR 2024): a clipped diagonal-Newton step.

A diagonal-Newton step with a clip on every coordinate, the diagonal refreshed only every k steps:

    m_t = β1 m_{t−1} + (1 − β1) g_t
    every k steps (t = 1, k + 1, 2k + 1, …):  h_t = β2 h_{t−k} + (1 − β2) ĥ_t;   otherwise h_t = h_{t−1}
    θ_t ← θ_t − η λ θ_t                                   (decoupled weight decay)
    θ_{t+1} = θ_t − η · clip(m_t / max(ρ h_t, ε), 1),      clip(z, 1) = max(min(z, 1), −1) per coordinate

ĥ_t is a diagonal estimate: ``"gauss-newton-bartlett"`` (SophiaG: labels ŷ ~ softmax(logits), ĥ = B ĝ ⊙ ĝ with
ĝ the gradient of the sampled-label mean cross-entropy; E[ĥ] = diag(GGN)) or ``"hutchinson"`` (SophiaH:
ĥ = z ⊙ Hz). Where h is negative or tiny the denominator is ε and the clip makes the step η·sign(m): Sophia never
trusts negative curvature (it cannot be pulled to a saddle the way Newton's method is), and the clip bounds every
coordinate's step by η.

Defaults are those of the authors' released SophiaG (github.com/Liuhong99/Sophia): η = 1e-4,
(β1, β2) = (0.965, 0.99), ρ = 0.04 (the paper's γ), λ = 0.1, and the paper's k = 10, ε = 1e-12.
The paper's SophiaH draws Gaussian probes; here the probes are Rademacher (same expectation, lower variance).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_count, check_generator, check_positive
from .common import (
    all_finite,
    check_betas,
    evaluate_closure,
    gradients_of,
    trainable,
    user_diagonal,
    warn_nonfinite,
)
from .estimators import gauss_newton_bartlett_estimate, hutchinson_diagonal_estimate

ESTIMATORS = ("gauss-newton-bartlett", "hutchinson")
Estimator = Callable[[Tensor, list[Tensor]], list[Tensor]]


class Sophia(torch.optim.Optimizer):
    """Sophia as a ``torch.optim.Optimizer`` (SophiaG by default, SophiaH with ``estimator="hutchinson"``).

    Args:
        params: parameters or param groups.
        lr: η (default 1e-4); every coordinate moves by at most η per step (plus weight decay).
        betas: (β1, β2) for the EMAs of the gradient and of the diagonal estimate (default (0.965, 0.99)).
        rho: ρ, the scale of h in the denominator (default 0.04).
        weight_decay: λ, decoupled: θ ← θ − η λ θ (default 0.1).
        eps: ε, the floor of the denominator (default 1e-12).
        update_every: k, steps between diagonal refreshes (default 10); the first step refreshes.
        estimator: ``"gauss-newton-bartlett"`` (the closure returns ``(loss, logits)`` and the loss must be the
            mean cross-entropy over the logits' rows), ``"hutchinson"`` (the closure returns the loss), or a
            callable ``(loss, params) -> diagonals`` (e.g. the exact diagonal; the loss's graph is still alive).
        generator: ``torch.Generator`` for sampled labels / probes.
    Step: ``optimizer.step(closure)``; returns the loss (detached). ``clipped_fraction`` is the fraction of
    coordinates whose update was clipped in the last step; ``p.grad`` holds the gradient used.
    Cost per step: one gradient; every k steps one more backward (GNB: through the logits' graph, ~1 gradient;
    Hutchinson: the gradient is taken with its graph and one HVP follows, ~2-3 gradients).
    Non-finite curvature: the refresh is not applied (h keeps its last value), a ``RuntimeWarning`` is raised and
    ``nonfinite_curvature`` counts it; the step itself is taken with the old h.

    Example:
        >>> import torch, hesslab as hl
        >>> w = torch.nn.Parameter(torch.tensor([0.5, 3.0], dtype=torch.float64))
        >>> exact = lambda loss, params: [torch.tensor([1.0, 4.0], dtype=torch.float64)]
        >>> opt = hl.optim.Sophia([w], lr=1.0, betas=(0.0, 0.0), rho=1.0, weight_decay=0.0, estimator=exact)
        >>> loss = opt.step(lambda: 0.5 * (torch.tensor([1.0, 4.0], dtype=torch.float64) * w**2).sum())
        >>> w.detach().tolist()  # w1: the Newton step 0.5; w2: the Newton step 3 clipped to 1
        [0.0, 2.0]
    """

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.965, 0.99), rho: float = 0.04,
                 weight_decay: float = 0.1, eps: float = 1e-12, update_every: int = 10,
                 estimator: str | Estimator = "gauss-newton-bartlett", generator: torch.Generator | None = None):
        check_count("update_every", update_every, 1, hint="It is the number of steps between diagonal refreshes.")
        if not (estimator in ESTIMATORS or callable(estimator)):
            raise ValueError(f"estimator must be one of {ESTIMATORS} or a callable (loss, params) -> diagonals, got "
                             f"{estimator!r}.")
        defaults = dict(lr=check_positive("lr", lr), betas=check_betas(betas), rho=check_positive("rho", rho),
                        weight_decay=check_positive("weight_decay", weight_decay, allow_zero=True),
                        eps=check_positive("eps", eps))
        super().__init__(params, defaults)
        self.update_every = update_every
        self.estimator = estimator
        self.generator = check_generator("generator", generator)
        self.nonfinite_curvature = 0
        self.clipped_fraction = float("nan")

    def _steps_taken(self) -> int:
        return max((self.state[p].get("step", 0) for _, p in trainable(self)), default=0)

    def _diagonal(self, loss: Tensor, logits: Tensor | None, gradients: list[Tensor],
                  params: list[Tensor]) -> list[Tensor]:
        if self.estimator == "gauss-newton-bartlett":
            return gauss_newton_bartlett_estimate(logits, params, self.generator)
        if self.estimator == "hutchinson":
            return hutchinson_diagonal_estimate(gradients, params, self.generator)
        return user_diagonal(self.estimator, loss, params, "Sophia")

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor | tuple[Tensor, Tensor]] | None = None) -> Tensor:
        """One Sophia step (see the class docstring and its example).

        Args:
            closure: ``() -> loss`` (``() -> (loss, logits)`` for the Gauss-Newton-Bartlett estimator), computing
                the loss from the parameters without calling ``backward``.

        Returns:
            The closure's loss, detached.
        """
        loss, logits = evaluate_closure(closure, "Sophia", with_logits=self.estimator == "gauss-newton-bartlett")
        pairs = trainable(self)
        refresh = self._steps_taken() % self.update_every == 0
        with torch.enable_grad():
            grads = gradients_of(loss, [p for _, p in pairs], "Sophia",
                                 create_graph=refresh and self.estimator == "hutchinson",
                                 retain_graph=refresh and self.estimator != "hutchinson")  # GNB, a callable
            used = [(group, p, g) for (group, p), g in zip(pairs, grads) if g is not None]
            if not used:
                return loss.detach()
            diagonals = self._diagonal(loss, logits, [g for _, _, g in used], [p for _, p, _ in used]) \
                if refresh else None
        if diagonals is not None and not all_finite(diagonals):
            self.nonfinite_curvature += 1
            warn_nonfinite("Sophia", "this refresh was not applied (h keeps its last value)")
            diagonals = None
        clipped, total = 0, 0
        for i, (group, p, g) in enumerate(used):
            g = g.detach()
            p.grad = g
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["hessian"] = torch.zeros_like(p)
            state["step"] += 1
            beta1, beta2 = group["betas"]
            m, h = state["exp_avg"], state["hessian"]
            m.lerp_(g, 1 - beta1)  # m ← β1 m + (1 − β1) g
            if diagonals is not None:
                h.lerp_(diagonals[i], 1 - beta2)  # h ← β2 h + (1 − β2) ĥ
            if group["weight_decay"]:
                p.mul_(1 - group["lr"] * group["weight_decay"])
            ratio = m / (group["rho"] * h).clamp_(min=group["eps"])  # m / max(ρh, ε)
            clipped += ratio.abs().gt_(1).sum()
            total += ratio.numel()
            p.add_(ratio.clamp_(-1.0, 1.0), alpha=-group["lr"])  # θ ← θ − η clip(m / max(ρh, ε), 1)
        self.clipped_fraction = float(clipped) / total
        return loss.detach()
