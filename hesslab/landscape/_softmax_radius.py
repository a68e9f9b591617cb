"""How far a step may go before softmax cross-entropy stops being analytic: its radius of convergence along a line.

Softmax cross-entropy along θ + t v (Sao 2026, *Ghosts of Softmax: Complex Singularities That Limit Safe Step Sizes
in Cross-Entropy*): with the logits linearised, z_k(t) = z_k + t a_k, a_k = ∇z_k · v (one Jacobian-vector product),

    ℓ(t) = log Σ_k exp(z_k + t a_k) − (z_y + t a_y)

is analytic except where the partition function Σ_k exp(z_k + t a_k) vanishes — only at complex t. For |Im t| <
π / Δ_a, Δ_a = max_k a_k − min_k a_k, the phases t a_k lie in an arc shorter than π, so the sum cannot vanish: the
Taylor series of ℓ at t = 0 converges at least for |t| < ρ_a = π / Δ_a. For two classes the zeros are exactly
t = (−δ + iπ(2m + 1)) / (a_1 − a_0), δ = z_1 − z_0, the nearest at |t| = √(δ² + π²) / Δ_a. A batch's mean loss
is bounded by its worst sample: ρ_a = π / max_i Δ_a,i.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from .._checks import check_count, check_flat_vector, check_positive
from ..functional import output_function


def logit_derivatives(model: nn.Module, inputs: Tensor, direction: Tensor,
                      params: str | Sequence[str] | None = None) -> tuple[Tensor, Tensor]:
    """The logits z = model(inputs; θ) and their derivatives a = J v along v, by one Jacobian-vector product.

    a_ik = ∇_θ z_ik · v: z_ik(θ + t v) = z_ik + t a_ik + O(t²).
    Cost: one forward-mode pass (about two forward passes).

    Args:
        model: a net whose outputs are logits (N, C).
        inputs: one batch's inputs.
        direction: (n,) v, laid out like θ, in its dtype.
        params: parameter names, default all that require grad.

    Returns:
        ``(z, a)``, both (N, C), detached.

    Example:
        For z = W x, moving W along V gives a = V x:

        >>> import torch
        >>> from hesslab.landscape import logit_derivatives
        >>> model = torch.nn.Linear(2, 2, bias=False).double()
        >>> V = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
        >>> z, a = logit_derivatives(model, torch.tensor([[1.0, 0.0]], dtype=torch.float64), V.reshape(-1))
        >>> a.tolist()
        [[1.0, 3.0]]
    """
    g, theta = output_function(model, inputs, params)
    direction = check_flat_vector("direction", direction)
    if direction.shape != theta.shape or direction.dtype != theta.dtype:
        raise ValueError(f"direction must have θ's shape {tuple(theta.shape)} and dtype {theta.dtype}, got "
                         f"{tuple(direction.shape)} and {direction.dtype}.")
    z, a = torch.func.jvp(g, (theta,), (direction,))
    if z.ndim != 2:
        raise ValueError(f"the model's outputs must be logits of shape (N, C), got {tuple(z.shape)}.")
    return z.detach(), a.detach()


@dataclass(frozen=True)
class ConvergenceRadius:
    """ρ_a = π / max_i Δ_a,i: the step t along v within which every sample's linearised cross-entropy is analytic.

    ``spreads`` (N,) are the Δ_a,i = max_k a_ik − min_k a_ik; ``critical_sample`` the i that sets the radius.

    Attributes:
        radius: ρ_a (inf when no logit difference moves).
        spreads: (N,) Δ_a,i.
        critical_sample: the index of the largest spread.

    Example:
        >>> import torch
        >>> from hesslab.landscape import convergence_radius
        >>> rho = convergence_radius(torch.tensor([[0.0, 1.0], [0.0, 2.0]]))
        >>> round(rho.radius, 6), rho.spreads.tolist(), rho.critical_sample  # π / 2
        (1.570796, [1.0, 2.0], 1)
    """

    radius: float
    spreads: Tensor
    critical_sample: int


def convergence_radius(a: Tensor) -> ConvergenceRadius:
    """ρ_a = π / Δ_a with Δ_a = max_i (max_k a_ik − min_k a_ik), from logit derivatives a (N, C) or (C,).

    A lower bound on the radius of convergence of the Taylor series of the mean cross-entropy along the step (exact
    radius for two classes: ``binary_radius``). Δ_a = 0 (the step does not move any logit difference) gives inf.

    Args:
        a: logit derivatives (N, C) or (C,), C >= 2, finite.

    Returns:
        ``ConvergenceRadius(radius, spreads, critical_sample)``.

    Example:
        >>> import torch
        >>> from hesslab.landscape import convergence_radius
        >>> round(convergence_radius(torch.tensor([0.0, 0.5, 1.0])).radius, 6)
        3.141593
        >>> convergence_radius(torch.zeros(3)).radius  # Δ_a = 0: no singularity
        inf
    """
    if not isinstance(a, Tensor) or a.ndim not in (1, 2) or a.shape[-1] < 2:
        raise ValueError(f"a must be a tensor of logit derivatives (N, C) or (C,) with C >= 2, got "
                         f"{getattr(a, 'shape', type(a).__name__)}.")
    a = a.reshape(-1, a.shape[-1])
    spreads = a.max(dim=1).values - a.min(dim=1).values
    critical = int(spreads.argmax())
    largest = float(spreads[critical])
    if not math.isfinite(largest):
        raise ValueError("a has non-finite entries; the step direction or the logits are not finite.")
    return ConvergenceRadius(math.pi / largest if largest > 0 else math.inf, spreads, critical)


def softmax_convergence_radius(model: nn.Module, inputs: Tensor, direction: Tensor,
                               params: str | Sequence[str] | None = None) -> ConvergenceRadius:
    """``convergence_radius(logit_derivatives(model, inputs, direction)[1])``: ρ_a for a step θ + t·direction.

    For a unit direction the radius is a length in parameter space: a step Δθ is inside it when ‖Δθ‖ < ρ_a.
    Cost: one Jacobian-vector product.

    Args:
        model: a net whose outputs are logits (N, C).
        inputs: one batch's inputs.
        direction: (n,) v, laid out like θ.
        params: parameter names, default all that require grad.

    Returns:
        ``ConvergenceRadius`` of the step θ + t v.

    Example:
        z = W x with x = (1, 0) moved along V: a = V x = (1, 3), Δ_a = 2, ρ_a = π / 2:

        >>> import torch
        >>> from hesslab.landscape import softmax_convergence_radius
        >>> model = torch.nn.Linear(2, 2, bias=False).double()
        >>> V = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
        >>> round(softmax_convergence_radius(model, torch.tensor([[1.0, 0.0]], dtype=torch.float64), V).radius, 6)
        1.570796
    """
    return convergence_radius(logit_derivatives(model, inputs, direction, params)[1])


def binary_singularity(z: Tensor, a: Tensor) -> Tensor:
    """The nearest complex zero t* = (−δ + iπ) / Δ of e^{z_0 + t a_0} + e^{z_1 + t a_1}, δ = z_1 − z_0, Δ = a_1 − a_0.

    Args:
        z: (N, 2) or (2,) logits.
        a: (N, 2) or (2,) logit derivatives.

    Returns:
        Complex t* (N,); |t*| = √(δ² + π²) / |Δ| (its conjugate is a zero too). Δ = 0: no zero, t* = inf.

    Example:
        With z = (0, 1) and a = (0, 1): t* = −1 + iπ, where e⁰ + e^{1 + t*} = 1 + e^{iπ} = 0:

        >>> import torch
        >>> from hesslab.landscape import binary_singularity
        >>> t = binary_singularity(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0]))
        >>> round(t.real.item(), 6), round(t.imag.item(), 6)
        (-1.0, 3.141593)
    """
    z, a = z.reshape(-1, 2).double(), a.reshape(-1, 2).double()
    delta, spread = z[:, 1] - z[:, 0], a[:, 1] - a[:, 0]
    numerator = torch.complex(-delta, torch.full_like(delta, math.pi))
    return torch.where(spread != 0, numerator / spread.to(numerator.dtype),
                       torch.full_like(numerator, complex(math.inf, 0)))


def binary_radius(z: Tensor, a: Tensor) -> Tensor:
    """The exact radius √(δ² + π²) / |a_1 − a_0| of the two-class linearised cross-entropy, per sample (N,).

    Args:
        z: (N, 2) or (2,) logits.
        a: (N, 2) or (2,) logit derivatives.

    Returns:
        (N,) float64 radii |t*| (``binary_singularity``); inf where a_1 = a_0.

    Example:
        >>> import math, torch
        >>> from hesslab.landscape import binary_radius
        >>> radius = binary_radius(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0]))
        >>> math.isclose(radius.item(), math.sqrt(1 + math.pi**2))
        True
    """
    return binary_singularity(z, a).abs()


def linearised_cross_entropy(z: Tensor, a: Tensor, targets: Tensor, t: Tensor) -> Tensor:
    """ℓ(t) = mean_i [log Σ_k exp(z_ik + t a_ik) − z_iy − t a_iy] at real or complex steps t (m,).

    ℓ is analytically continued to complex t.
    The log is taken of Σ_k exp(z_ik − m_i + t (a_ik − min_k a_ik)) (m_i = max_k z_ik), whose terms have phases in
    [0, Im t · Δ_a,i]: for |Im t| < π / Δ_a the sum stays off the negative real axis and the principal log is the
    analytic continuation.

    Args:
        z: (N, C) logits.
        a: (N, C) logit derivatives.
        targets: (N,) class indices y_i.
        t: (m,) steps, real or complex (a number is one step).

    Returns:
        (m,) complex for complex t, real (float64) otherwise.

    Example:
        At t = 0 it is the cross-entropy of the logits: two equal logits give log 2:

        >>> import torch
        >>> from hesslab.landscape import linearised_cross_entropy
        >>> z, a, y = torch.zeros(1, 2), torch.tensor([[0.0, 1.0]]), torch.tensor([0])
        >>> [round(value, 6) for value in linearised_cross_entropy(z, a, y, torch.tensor([0.0, 1.0])).tolist()]
        [0.693147, 1.313262]
    """
    t = torch.as_tensor(t)
    complex_t = t.is_complex()
    t = t.to(torch.complex128).reshape(-1, 1, 1)
    z, a = z.double(), a.double()
    low = a.min(dim=1, keepdim=True).values
    top = z.max(dim=1, keepdim=True).values
    shifted = (z - top) + t * (a - low)                                    # (m, N, C)
    log_partition = torch.log(torch.exp(shifted).sum(-1)) + top[:, 0] + t[..., 0] * low[:, 0]
    picked_z = z.gather(1, targets.reshape(-1, 1))[:, 0]
    picked_a = a.gather(1, targets.reshape(-1, 1))[:, 0]
    values = (log_partition - picked_z - t[..., 0] * picked_a).mean(-1)
    return values if complex_t else values.real


def taylor_coefficients(function: Callable[[Tensor], Tensor], order: int, radius: float,
                        num_points: int = 256) -> Tensor:
    """The Taylor coefficients c_0..c_order of an analytic function at 0 by Cauchy's formula on the circle |t| = r.

    c_n = (1 / 2π) ∫ f(r e^{iφ}) e^{−inφ} dφ / rⁿ, by the trapezoid rule on ``num_points`` points (an FFT): exact up
    to aliasing of order (r / R)^{num_points} for a radius of convergence R > r. Cost: num_points evaluations of
    ``function`` at complex t.

    Args:
        function: analytic in the disc |t| < R, taking a complex tensor (num_points,) to one of the same shape.
        order: the last coefficient's index, >= 0.
        radius: r, 0 < r < R.
        num_points: points on the circle, >= order + 1.

    Returns:
        Real coefficients (order+1,) float64 (the function is real on the real line).

    Example:
        >>> import torch
        >>> from hesslab.landscape import taylor_coefficients
        >>> [round(c, 8) for c in taylor_coefficients(torch.exp, 3, radius=1.0).tolist()]  # 1/k!
        [1.0, 1.0, 0.5, 0.16666667]
    """
    check_count("order", order, 0)
    check_count("num_points", num_points, order + 1)
    radius = check_positive("radius", radius, hint="It must also be below the radius of convergence.")
    phi = 2 * math.pi * torch.arange(num_points, dtype=torch.float64) / num_points
    values = function(radius * torch.exp(1j * phi))
    coefficients = torch.fft.fft(values) / num_points
    return coefficients[: order + 1].real / radius ** torch.arange(order + 1, dtype=torch.float64)


def cross_entropy_taylor_coefficients(z: Tensor, a: Tensor, targets: Tensor, order: int, radius: float,
                                      num_points: int = 512) -> Tensor:
    """Taylor coefficients c_0..c_order of the linearised cross-entropy ℓ(t) (``linearised_cross_entropy``) at t = 0.

    Cauchy's formula on |t| = radius, which may exceed ρ_a as long as it stays below the true radius of convergence
    (for two classes min_i ``binary_radius``): each sample's log partition function is evaluated on the circle and
    its phase unwrapped along it — continuous there because the partition function has no zero inside the disc —
    so the principal logarithm's 2π jumps do not enter. Cost: num_points · N · C.

    Args:
        z: (N, C) logits.
        a: (N, C) logit derivatives.
        targets: (N,) class indices.
        order: the last coefficient's index, >= 0.
        radius: the circle's radius, > 0 and below the true radius of convergence.
        num_points: points on the circle, >= 2·order + 2.

    Returns:
        (order+1,) float64 coefficients c_0..c_order.

    Raises:
        ValueError: when the circle encloses a zero of a partition function (radius too large).

    Example:
        z = (0, 0), a = (0, 1), y = 0: ℓ(t) = log(1 + eᵗ) = log 2 + t/2 + t²/8 + …, with radius π:

        >>> import torch
        >>> from hesslab.landscape import cross_entropy_taylor_coefficients
        >>> z, a, y = torch.zeros(1, 2), torch.tensor([[0.0, 1.0]]), torch.tensor([0])
        >>> [round(value, 6) for value in cross_entropy_taylor_coefficients(z, a, y, order=2, radius=1.0).tolist()]
        [0.693147, 0.5, 0.125]
    """
    check_count("order", order, 0)
    check_count("num_points", num_points, 2 * order + 2)
    radius = check_positive("radius", radius, hint="It must also be below the radius of convergence.")
    z, a = z.double(), a.double()
    phi = 2 * math.pi * torch.arange(num_points, dtype=torch.float64) / num_points
    t = (radius * torch.exp(1j * phi)).reshape(-1, 1, 1)
    top = z.max(dim=1, keepdim=True).values
    low = a.min(dim=1, keepdim=True).values
    partition = torch.exp((z - top) + t * (a - low)).sum(-1)            # (M, N), no zero inside the disc
    phase = partition.angle()
    jumps = torch.remainder(phase.diff(dim=0) + math.pi, 2 * math.pi) - math.pi
    unwrapped = torch.cat([phase[:1], phase[:1] + jumps.cumsum(0)])
    closing = torch.remainder(phase[0] - phase[-1] + math.pi, 2 * math.pi) - math.pi
    winding = (unwrapped[-1] - unwrapped[0] + closing) / (2 * math.pi)         # zeros of the sample's F inside
    if winding.abs().max() > 0.5:
        raise ValueError(f"radius {radius} encloses a zero of the partition function: take a smaller radius.")
    log_partition = torch.complex(partition.abs().log(), unwrapped) + top[:, 0] + t[..., 0] * low[:, 0]
    picked_z = z.gather(1, targets.reshape(-1, 1))[:, 0]
    picked_a = a.gather(1, targets.reshape(-1, 1))[:, 0]
    values = (log_partition - picked_z - t[..., 0] * picked_a).mean(-1)
    coefficients = torch.fft.fft(values) / num_points
    result = coefficients[: order + 1].real / radius ** torch.arange(order + 1, dtype=torch.float64)
    # the unwrapped phase is the analytic log up to 2πk per sample: a constant, imaginary, so only Im c_0 — dropped
    return result
