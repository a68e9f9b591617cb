"""hesslab: readable reference implementations of the Hessian of a loss — exact, matrix-free, estimated.

The top level holds the curvature core, grouped in ``__all__`` by topic: where and how big (``device``, ``seed``,
``scale``, ``sized``); f(θ) and its exact derivatives (``loss_function``, ``output_function``, ``hvp``,
``hessian``, ``ggn``); matrix-free operators (``HessianOperator``, ``GGNOperator``, ``as_operator``); trace and
diagonal estimation (``hutchinson_trace``, ``hutchinson_diagonal``); the spectrum (``lanczos``, ``top_eigen``,
``spectral_density``). The domain tools are subpackages: ``hl.optimize`` (the Newton family), ``hl.transport``
(Sinkhorn, Sinkhorn-Newton-Sparse), ``hl.pde`` (elliptic problems, their solvers, Deep Ritz), ``hl.optim``
(AdaHessian, Sophia), ``hl.landscape`` (loss landscapes along Hessian directions); ``hl.distributed`` holds the
operators over ``torch.distributed`` ranks.

Example:
    Everything is a scalar function of one flat vector; f(x) = ½ xᵀAx has the Hessian A = [[2, 1], [1, 2]]:

    >>> import torch, hesslab as hl
    >>> A = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    >>> f, x = (lambda x: 0.5 * x @ A @ x), torch.zeros(2, dtype=torch.float64)
    >>> H = hl.HessianOperator(f, x)
    >>> hl.hvp(f, x, torch.tensor([1.0, 0.0], dtype=torch.float64)).tolist()  # A e₁
    [2.0, 1.0]
    >>> round(hl.top_eigen(H, generator=hl.seed(0)).values.item(), 8)
    3.0
    >>> round(hl.hutchinson_trace(H, 6, method="hutch++", generator=hl.seed(0)).value, 8)  # the sketch spans R²
    4.0
"""

from . import compress, distributed, inverse, landscape, optim, optimize, pde, transport
from .exact import fisher, ggn, hessian
from .fisher_operator import FisherOperator, KFACOperator
from .functional import hvp, loss_function, output_function, per_sample_gradients
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
from .training import CurvatureTrace, track_curvature

__all__ = [
    # where and how big
    "device", "seed", "scale", "sized",
    # f(θ) and its exact derivatives
    "loss_function", "output_function", "per_sample_gradients", "hvp", "hessian", "ggn",
    # matrix-free curvature operators
    "CurvatureOperator", "HessianOperator", "GGNOperator", "as_operator",
    # trace and diagonal estimation
    "Estimate", "hutchinson_trace", "hutchinson_diagonal", "hutchinson_variance",
    # the spectrum
    "LanczosResult", "EigenResult", "SpectralDensity", "lanczos", "top_eigen", "spectral_density",
    # the Fisher family
    "fisher", "FisherOperator", "KFACOperator",
    # curvature along training
    "CurvatureTrace", "track_curvature",
    # the same operators over torch.distributed ranks
    "distributed",
    # domain tools (subpackages)
    "optimize", "transport", "pde", "optim", "landscape",
    # inverse curvature (CG, LiSSA, M-FAC's Woodbury inverse) and compression (OBS, GPTQ)
    "inverse", "compress",
]

__version__ = "0.1.0"
