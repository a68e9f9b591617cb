"""The cost model of the Newton family, what a run returns, and f, ∇f, ∇²f counted as they are evaluated."""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .._checks import (
    check_callable,
    check_count,
    check_flat_vector,
    check_instance,
    check_positive,
    check_real_number,
    check_scalar_output,
)
from .._results import history as make_history
from ..exact import hessian


# ----------------------------------------------------------------------------------------------------------------------
# the cost model and what a run returns
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CostModel:
    """Arithmetic cost in gradient-equivalents (one evaluation of f and ∇f = ``gradient``).

    Args:
        gradient: cost of one evaluation of f with its gradient (the unit, 1).
        hessian: cost of one dense Hessian; ``None`` means d (d Hessian-vector products, each about a gradient).
        flops_per_gradient: arithmetic operations F of one gradient; a factorisation of a d × d matrix is charged
            d³ / F and one solve with it d² / F. ``None`` means d² (a gradient as cheap as a d × d matrix-vector
            product). For a linear model on N samples F ≈ 4Nd (two passes over the N × d data).

    Example:
        >>> import hesslab as hl
        >>> # d = 10, F = d² = 100: 3 gradients + 1 Hessian (d = 10) + 1 factorisation (d³/F = 10) + 1 solve (d²/F = 1)
        >>> hl.optimize.CostModel().total(10, gradients=3, hessians=1, factorizations=1, solves=1)
        24.0
    """

    gradient: float = 1.0
    hessian: float | None = None
    flops_per_gradient: float | None = None

    def __post_init__(self):
        for name in ("gradient", "hessian", "flops_per_gradient"):
            value = getattr(self, name)
            if value is None and name != "gradient":
                continue
            object.__setattr__(self, name, check_positive(f"CostModel.{name}", value))

    def total(self, d: int, gradients: int, hessians: int, factorizations: int, solves: int) -> float:
        """gradients·gradient + hessians·(hessian or d) + factorizations·d³/F + solves·d²/F."""
        per_hessian = d * self.gradient if self.hessian is None else self.hessian
        flops = d * d if self.flops_per_gradient is None else self.flops_per_gradient
        linear_algebra = (factorizations * d**3 + solves * d**2) / flops * self.gradient
        return gradients * self.gradient + hessians * per_hessian + linear_algebra


@dataclass(frozen=True)
class NewtonResult:
    """What a Newton-family run returns: the last iterate and its history (DESIGN.md, "Results").

    Attributes:
        x: the last accepted iterate (d,).
        converged: whether ‖∇f(x)‖ <= tol was reached; ``reason``: why the run stopped.
        history: one entry per accepted iterate x_0, x_1, ..., x_K (K = ``iterations``), each a float array (K + 1,):
            ``error`` ‖∇f(x_k)‖ (the convergence measure), ``f`` f(x_k), ``step`` ‖x_k − x_{k−1}‖ (0 at k = 0),
            ``stepsize`` α of that step (1 at k = 0 and for lazy steps), ``regularization`` (λ of Newton's shift,
            L of damped Newton, M of lazy Newton), the cumulative counts ``gradients``, ``hessians``,
            ``factorizations``, ``solves``, their ``cost`` (``CostModel``) and ``seconds`` since the start, all up to
            and including x_k.
        shifted: iterations at which the Hessian was not positive definite and was shifted (``newton`` only).

    Example:
        >>> import torch, hesslab as hl
        >>> result = hl.optimize.newton(lambda x: 0.5 * (x**2).sum(), torch.ones(3, dtype=torch.float64))
        >>> result.iterations, result.f, len(result.history["error"])  # one exact step to x* = 0: K + 1 = 2 entries
        (1, 0.0, 2)
        >>> result.cost  # 2 gradients + 1 Hessian (d = 3) + 1 factorisation (d³/F = 3) + 1 solve (d²/F = 1)
        9.0
    """

    x: Tensor
    converged: bool
    reason: str
    history: dict[str, np.ndarray]
    shifted: int = 0

    @property
    def iterations(self) -> int:
        """Accepted steps K (the history has K + 1 entries)."""
        return len(self.history["error"]) - 1

    @property
    def f(self) -> float:
        """f at the last iterate."""
        return float(self.history["f"][-1])

    @property
    def cost(self) -> float:
        """The ``CostModel`` cost of the whole run, in gradient-equivalents."""
        return float(self.history["cost"][-1])


# ----------------------------------------------------------------------------------------------------------------------
# f, ∇f and ∇²f, counted
# ----------------------------------------------------------------------------------------------------------------------
class _Oracle:
    """Evaluates f with its gradient and its dense Hessian, and counts what the cost model charges."""

    def __init__(self, f: Callable[[Tensor], Tensor], x0: Tensor, cost_model: CostModel):
        self.f, self.d, self.cost_model = f, x0.numel(), cost_model
        self.eps = torch.finfo(x0.dtype).eps
        self.gradients = self.hessians = self.factorizations = self.solves = 0
        self.start = time.perf_counter()

    def value_and_gradient(self, x: Tensor, where: str = "this point") -> tuple[float, Tensor]:
        """(f(x), ∇f(x)), with one gradient counted.

        A non-finite value is returned as it is (with a NaN gradient) for the caller to judge; a finite value with a
        non-finite gradient raises ValueError (f is not differentiable at x).
        """
        self.gradients += 1
        point = x.detach().requires_grad_(True)
        with torch.enable_grad():
            value = check_scalar_output("f", self.f(point), finite=False)
            if not bool(torch.isfinite(value)):
                return value.item(), torch.full_like(x, math.nan)
            if not value.requires_grad:
                raise ValueError("f(x) does not depend on x (no gradient graph); check that f uses its argument.")
            (gradient,) = torch.autograd.grad(value, point)
        if not bool(torch.isfinite(gradient).all()):
            raise ValueError(f"the gradient of f at {where} has non-finite entries although f is finite there: f is "
                             "not differentiable there (e.g. √|x| at 0). Start elsewhere or smooth f.")
        return value.item(), gradient.detach()

    def rounding(self, value: float) -> float:
        """The rounding bound of a change of f from ``value`` that the line searches judge with: 256 ulps of |f|.

        eps is the dtype's. With the benefit of the doubt (``linalg.sufficient_decrease``) a nearly converged run then
        takes the steps whose predicted decrease is below f's rounding error instead of rejecting every one of them.
        """
        return 256 * self.eps * abs(value)

    def hessian(self, x: Tensor) -> Tensor:
        """∇²f(x), dense (d, d); a NaN or inf entry (f is not twice differentiable at x, e.g. ‖x‖ at 0) raises."""
        self.hessians += 1
        H = hessian(self.f, x)
        if not bool(torch.isfinite(H).all()):
            bad = int((~torch.isfinite(H)).sum())
            raise ValueError(f"∇²f is not finite at this point ({bad} of its {H.numel()} entries are NaN or inf): f is "
                             "not twice differentiable there (e.g. ‖x‖ at x = 0). Start elsewhere "
                             "or smooth f (e.g. √(‖x‖² + ε²) for ‖x‖).")
        return H

    def record(self, f: float, gradient: Tensor, step: float, stepsize: float, regularization: float) -> dict:
        """One entry of ``NewtonResult.history`` for the iterate just accepted (the columns documented there)."""
        counts = dict(gradients=self.gradients, hessians=self.hessians, factorizations=self.factorizations,
                      solves=self.solves)
        return dict(error=gradient.norm().item(), f=f, step=step, stepsize=stepsize,
                    regularization=regularization, **counts, cost=self.cost_model.total(self.d, **counts),
                    seconds=time.perf_counter() - self.start)


def _start(f, x0: Tensor, tol, max_iter: int, cost_model: CostModel | None):
    """Validate the common arguments; evaluate f and ∇f at x0 (both must be finite)."""
    check_callable("f", f, "f(x) -> scalar tensor")
    x0 = check_flat_vector("x0", x0)
    tol = check_real_number("tol", tol, 0.0, hint="tol is the gradient norm to stop at.")
    check_count("max_iter", max_iter, 0)
    cost_model = CostModel() if cost_model is None else cost_model
    check_instance("cost_model", cost_model, CostModel, hint="Pass hl.optimize.CostModel(...) or None.")
    oracle = _Oracle(f, x0, cost_model)
    value, gradient = oracle.value_and_gradient(x0, "x0")
    if not math.isfinite(value):
        raise ValueError(f"f(x0) is not finite ({value}); start from a point where f is defined.")
    if not bool(torch.isfinite(gradient).all()):
        raise ValueError("the gradient of f at x0 has non-finite entries; start from a point where f is smooth.")
    return x0.detach().clone(), value, gradient, oracle, tol




def _finish(x, converged, reason, history, shifted=0) -> NewtonResult:
    """The result; warns when the Hessian had to be shifted (UserWarning) and when the run did not converge."""
    if shifted:
        warnings.warn(f"the Hessian was not positive definite at {shifted} iterations; Newton used ∇²f + τI there "
                      "(see history['regularization']).", UserWarning, stacklevel=3)
    if not converged:
        warnings.warn(f"Newton did not converge: {reason}.", RuntimeWarning, stacklevel=3)
    columns = {name: [entry[name] for entry in history] for name in history[0]}
    return NewtonResult(x=x, converged=converged, reason=reason, history=make_history(columns), shifted=shifted)
