"""The loss around a point: directions, slices, curvature along a line, and how far a softmax step may go.

Three ideas, one module each:

    _directions.py       the Hessian's top eigenvectors; filter-/layer-normalised random directions (Li et al. 2018)
    _slices.py           L(θ + α d_1 + β d_2) on a grid, the mean loss over batches, the second difference dᵀ H d
    _softmax_radius.py   softmax cross-entropy's radius of convergence along a step, ρ_a = π / Δ_a (Sao 2026)
"""

from ._directions import (
    NORMALIZATIONS,
    filter_norms,
    hessian_directions,
    random_direction,
)
from ._slices import (
    LossSlice,
    loss_over_batches,
    loss_slice,
    second_difference,
)
from ._softmax_radius import (
    ConvergenceRadius,
    binary_radius,
    binary_singularity,
    convergence_radius,
    cross_entropy_taylor_coefficients,
    linearised_cross_entropy,
    logit_derivatives,
    softmax_convergence_radius,
    taylor_coefficients,
)

__all__ = [
    # directions
    "NORMALIZATIONS", "hessian_directions", "random_direction", "filter_norms",
    # the loss along directions
    "loss_over_batches", "LossSlice", "loss_slice", "second_difference",
    # the radius of convergence of softmax cross-entropy along a step
    "logit_derivatives", "ConvergenceRadius", "convergence_radius", "softmax_convergence_radius", "binary_singularity",
    "binary_radius", "linearised_cross_entropy", "taylor_coefficients", "cross_entropy_taylor_coefficients",
]
