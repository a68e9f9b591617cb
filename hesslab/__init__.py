"""hesslab: readable reference implementations of the Hessian of a loss — exact, matrix-free, estimated."""

from .device import device, scale, seed, sized
from .exact import ggn, hessian
from .functional import hvp, loss_function, output_function
from .hutchinson import Estimate, hutchinson_diagonal, hutchinson_trace
from .lanczos import EigenResult, LanczosResult, SpectralDensity, lanczos, spectral_density, top_eigen
from .newton import CostModel, NewtonResult, damped_newton, lazy_newton, newton
from .operators import CurvatureOperator, GGNOperator, HessianOperator, as_operator
from .pde import (EllipticProblem, Nonlinearity, PDESolveResult, double_well, elliptic_problem, laplacian_eigenvalues,
                  pde_gradient_descent, pde_newton, pde_preconditioned_gradient_descent, quartic)
from .pde_neural import RitzEnergy, RitzTrainingResult, ritz_energy, train_ritz_adam, train_ritz_gauss_newton
from .sinkhorn import SinkhornResult, sinkhorn, sinkhorn_newton_sparse
from . import landscape
from . import optim  # noqa: E402  hl.optim.AdaHessian, hl.optim.Sophia

__all__ = [
    "device", "seed", "scale", "sized",
    "loss_function", "output_function", "hvp", "hessian", "ggn",
    "CurvatureOperator", "HessianOperator", "GGNOperator", "as_operator",
    "Estimate", "hutchinson_trace", "hutchinson_diagonal",
    "LanczosResult", "EigenResult", "SpectralDensity", "lanczos", "top_eigen", "spectral_density",
    "newton", "damped_newton", "lazy_newton", "NewtonResult", "CostModel",
    "EllipticProblem", "Nonlinearity", "PDESolveResult", "elliptic_problem", "quartic", "double_well",
    "laplacian_eigenvalues", "pde_newton", "pde_gradient_descent", "pde_preconditioned_gradient_descent",
    "RitzEnergy", "RitzTrainingResult", "ritz_energy", "train_ritz_adam", "train_ritz_gauss_newton",
    "SinkhornResult", "sinkhorn", "sinkhorn_newton_sparse",
    "landscape", "optim",
]

__version__ = "0.1.0"
