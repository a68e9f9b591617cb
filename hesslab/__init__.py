"""hesslab: readable reference implementations of the Hessian of a loss — exact, matrix-free, estimated.

The top level holds the curvature core; the domain tools are subpackages: ``hl.optimize`` (the Newton family),
``hl.transport`` (Sinkhorn, Sinkhorn-Newton-Sparse), ``hl.pde`` (elliptic problems, their solvers, Deep Ritz),
``hl.optim`` (AdaHessian, Sophia), ``hl.landscape`` (loss landscapes along Hessian directions).
"""

from . import landscape, optim, optimize, pde, transport
from .exact import ggn, hessian
from .functional import hvp, loss_function, output_function
from .hutchinson import Estimate, hutchinson_diagonal, hutchinson_trace, hutchinson_variance
from .operators import CurvatureOperator, GGNOperator, HessianOperator, as_operator
from .runtime import device, scale, seed, sized
from .spectrum import (
    EigenResult,
    LanczosResult,
    SpectralDensity,
    lanczos,
    spectral_density,
    top_eigen,
)

__all__ = [
    # where and how big
    "device", "seed", "scale", "sized",
    # f(θ) and its exact derivatives
    "loss_function", "output_function", "hvp", "hessian", "ggn",
    # matrix-free curvature operators
    "CurvatureOperator", "HessianOperator", "GGNOperator", "as_operator",
    # trace and diagonal estimation
    "Estimate", "hutchinson_trace", "hutchinson_diagonal", "hutchinson_variance",
    # the spectrum
    "LanczosResult", "EigenResult", "SpectralDensity", "lanczos", "top_eigen", "spectral_density",
    # domain tools (subpackages)
    "optimize", "transport", "pde", "optim", "landscape",
]

__version__ = "0.1.0"
