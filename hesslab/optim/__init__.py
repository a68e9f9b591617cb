"""Diagonal second-order optimizers as ``torch.optim`` optimizers: AdaHessian and Sophia.

AdaHessian (Yao et al. 2021) and Sophia (Liu et al. 2024), and the diagonal curvature estimates they use
(Hutchinson, Gauss-Newton-Bartlett, spatial averaging). ``optimizer.step(closure)`` with a closure that returns
the loss; the optimizer differentiates it.
"""

from .adahessian import AdaHessian
from .estimators import (
    gauss_newton_bartlett_estimate,
    hessian_probe_products,
    hutchinson_diagonal_estimate,
    rademacher_like,
    spatial_average,
)
from .sophia import Sophia

__all__ = ["AdaHessian", "Sophia", "hutchinson_diagonal_estimate", "gauss_newton_bartlett_estimate",
           "spatial_average", "hessian_probe_products", "rademacher_like"]
