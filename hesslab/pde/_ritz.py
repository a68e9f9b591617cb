"""A two-layer network that minimises the same variational energy (Deep Ritz), trained by Adam or second-order.

The second-order methods solve their steps on hesslab's curvature operators.

The ansatz (Barron-type, as in Marwah, Lipton, Lu & Risteski 2022) with the boundary condition built in:

    u_θ(x) = φ(x) · ( Σ_{j=1..m} a_j tanh(w_j·x + b_j) + c ),      φ(x) = Π_k x_k (1 − x_k)   (u_θ = 0 on ∂Ω)

    ∇u_θ = N ∇φ + φ ∇N,    ∇N = Σ_j a_j (1 − tanh²(w_j·x + b_j)) w_j        (in closed form: no autograd in x)

and the energy by Gauss-Legendre quadrature with nodes x_q and weights ω_q on [0, 1]^d (Deep Ritz: E, Yu 2018):

    E(θ) = Σ_q ω_q [ ½|∇u_θ(x_q)|² + F(u_θ(x_q)) − f(x_q) u_θ(x_q) ] = ℓ(z(θ)),   z = (u_θ(x_q), ∇u_θ(x_q))_q

θ = (w (m·d), b (m), a (m), c) is one flat vector, so ``ritz.energy`` is a scalar function of it like any loss.
ℓ is convex in z when F is, with Hessian H_ℓ = diag(ω_q F''(u_q)) ⊕ diag(ω_q) I: the generalised Gauss-Newton
matrix G = Jᵀ H_ℓ J (``hl.GGNOperator(ritz.outputs, ritz.energy_of_outputs, θ)``) is then positive semi-definite —
the "energy natural gradient" of Müller & Zeinhofer (2023) for the Deep Ritz energy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .._checks import (
    check_count,
    check_generator,
    check_instance,
)
from ._problems import EllipticProblem


@dataclass(frozen=True)
class RitzEnergy:
    """The Deep Ritz energy E(θ) of a width-m two-layer network for ``problem``'s F and f (see the module docstring).

    Build it with ``ritz_energy``. points (Q, d), weights (Q,), f (Q,), exact (Q,) or None: the quadrature rule, the
    source and the manufactured solution at its nodes.

    Example:
        θ = (w (m·d), b (m), a (m), c); θ = 0 is the network u = 0, of energy 0, and u vanishes on the boundary:

        >>> import torch, hesslab as hl
        >>> ritz = hl.pde.ritz_energy(hl.pde.elliptic_problem(7), width=4, points_per_axis=8)
        >>> ritz.num_parameters, ritz.energy(torch.zeros(13, dtype=torch.float64)).item()
        (13, 0.0)
        >>> theta = ritz.initial_parameters(hl.seed(0))
        >>> u, grad_u = ritz.network(theta, torch.tensor([[0.0], [1.0]], dtype=torch.float64))
        >>> [abs(x) for x in u.tolist()], tuple(grad_u.shape)
        ([0.0, 0.0], (2, 1))
    """

    problem: EllipticProblem
    width: int
    points: Tensor
    weights: Tensor
    f: Tensor
    exact: Tensor | None

    @property
    def dim(self) -> int:
        return self.problem.dim

    @property
    def num_parameters(self) -> int:
        return self.width * (self.dim + 2) + 1

    def network(self, theta: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """u_θ(x) (M,) and ∇u_θ(x) (M, d) at the points x (M, d), default the quadrature nodes. Cost O(M m d)."""
        x = self.points if x is None else x
        m, d = self.width, self.dim
        if theta.shape != (self.num_parameters,):
            raise ValueError(f"theta must have shape ({self.num_parameters},) for width {m} in {d}-D, got "
                             f"{tuple(theta.shape)}; start from ritz.initial_parameters(generator).")
        w, b, a, c = torch.split(theta, [m * d, m, m, 1])
        w = w.reshape(m, d)
        s = torch.tanh(x @ w.T + b)  # (M, m)
        N = s @ a + c
        grad_N = ((1 - s**2) * a) @ w  # (M, d)
        edge = x * (1 - x)  # (M, d): x_k (1 − x_k)
        phi = edge.prod(dim=1)
        # ∂φ/∂x_k = (1 − 2x_k) Π_{l≠k} x_l(1 − x_l); for d <= 2 the product over the others is the flipped column
        others = edge.flip(1) if d == 2 else torch.ones_like(edge)
        grad_phi = (1 - 2 * x) * others
        return phi * N, N[:, None] * grad_phi + phi[:, None] * grad_N

    def outputs(self, theta: Tensor) -> Tensor:
        """z(θ) = (u_θ(x_q), ∇u_θ(x_q)) as a (Q, 1 + d) tensor: the "model outputs" of the Gauss-Newton view."""
        u, grad = self.network(theta)
        return torch.cat([u[:, None], grad], dim=1)

    def energy_of_outputs(self, z: Tensor) -> Tensor:
        """ℓ(z) = Σ_q ω_q [½|z_q,1:|² + F(z_q,0) − f_q z_q,0], the energy as a function of the outputs."""
        u, grad = z[:, 0], z[:, 1:]
        density = 0.5 * (grad**2).sum(dim=1) + self.problem.nonlinearity.F(u) - self.f * u
        return (self.weights * density).sum()

    def energy(self, theta: Tensor) -> Tensor:
        """E(θ) = ℓ(z(θ)), a 0-d tensor: the loss, for ``hl.HessianOperator(ritz.energy, θ)`` and every hesslab tool."""
        return self.energy_of_outputs(self.outputs(theta))

    def l2_error(self, theta: Tensor) -> float:
        """‖u_θ − u*‖_{L²(Ω)} by the same quadrature (needs a manufactured solution)."""
        return self.l2_error_of_values(self.network(theta)[0])

    def l2_error_of_values(self, u: Tensor) -> float:
        """‖u − u*‖_{L²(Ω)} for values u (Q,) at the quadrature nodes."""
        if self.exact is None:
            raise ValueError("the problem has no exact solution; build it with elliptic_problem(..., solution=u_star).")
        return float(torch.sqrt((self.weights * (u.detach() - self.exact) ** 2).sum()))

    def initial_parameters(self, generator: torch.Generator | None = None) -> Tensor:
        """θ_0: Barron-type random features spread over the domain.

        Directions w_j ~ N(0, 3² I), biases placing each unit's centre uniformly in Ω (b_j = −w_j·ξ_j, ξ_j ~ U(Ω)),
        outer weights a_j ~ N(0, 1/m), c = 0.
        """
        check_generator("generator", generator)
        m, d = self.width, self.dim
        draw_on = generator.device if generator is not None else torch.device("cpu")
        options = dict(generator=generator, device=draw_on, dtype=torch.float64)
        w = 3.0 * torch.randn(m, d, **options)
        centres = torch.rand(m, d, **options)
        b = -(w * centres).sum(dim=1)
        a = torch.randn(m, **options) / math.sqrt(m)
        theta = torch.cat([w.reshape(-1), b, a, torch.zeros(1, dtype=torch.float64, device=draw_on)])
        return theta.to(device=self.points.device, dtype=self.points.dtype)


def gauss_legendre(points_per_axis: int, dim: int, dtype: torch.dtype = torch.float64,
                   device=None) -> tuple[Tensor, Tensor]:
    """The tensor Gauss-Legendre rule on [0, 1]^d: nodes (p^d, d) and weights (p^d,) summing to 1.

    It is exact for polynomials of degree <= 2p − 1 in each variable.

    Example:
        Three nodes per axis integrate x⁵ y⁴ exactly: ∫∫ x⁵ y⁴ dx dy = 1/6 · 1/5 = 1/30.

        >>> from hesslab.pde import gauss_legendre
        >>> points, weights = gauss_legendre(3, dim=2)
        >>> tuple(points.shape), round(weights.sum().item(), 14)
        ((9, 2), 1.0)
        >>> round((weights * points[:, 0] ** 5 * points[:, 1] ** 4).sum().item(), 14) == round(1 / 30, 14)
        True
    """
    nodes, weights = np.polynomial.legendre.leggauss(points_per_axis)
    nodes = torch.as_tensor((nodes + 1) / 2, dtype=dtype, device=device)
    weights = torch.as_tensor(weights / 2, dtype=dtype, device=device)
    points = torch.cartesian_prod(*([nodes] * dim)).reshape(-1, dim)
    weight = torch.cartesian_prod(*([weights] * dim)).reshape(-1, dim).prod(dim=1)
    return points, weight


def ritz_energy(problem: EllipticProblem, width: int, points_per_axis: int = 64,
                device: torch.device | str | None = None) -> RitzEnergy:
    """The Deep Ritz energy of a width-``width`` two-layer network for the PDE of ``problem``.

    It takes the problem's F, f and, when it has one, its manufactured solution (the finite-difference grid is not
    used), with ``points_per_axis``^d Gauss-Legendre nodes, on ``device`` (default CPU), in float64.

    Args:
        problem: the ``EllipticProblem`` whose PDE the network solves.
        width: m, the hidden units, >= 1; the network has m (d + 2) + 1 parameters.
        points_per_axis: p, Gauss-Legendre nodes per axis, >= 2 (exact for degree <= 2p − 1 in each variable).
        device: where the quadrature (and hence the training) lives; default the CPU.

    Returns:
        A ``RitzEnergy``; ``ritz.energy`` is E(θ), a scalar function of the flat parameter vector θ.

    Raises:
        ValueError: if width < 1, points_per_axis < 2, or the source is not finite at a quadrature node.
        TypeError: if ``problem`` is not an ``EllipticProblem``.

    Example:
        >>> import torch, hesslab as hl
        >>> ritz = hl.pde.ritz_energy(hl.pde.elliptic_problem(3, dim=2), width=2, points_per_axis=4)
        >>> tuple(ritz.points.shape), ritz.num_parameters  # 4² nodes; 2·(2 + 2) + 1 parameters
        ((16, 2), 9)
        >>> theta = ritz.initial_parameters(hl.seed(0))
        >>> tuple(ritz.outputs(theta).shape)  # (u, ∂u/∂x, ∂u/∂y) at each node
        (16, 3)
    """
    check_instance("problem", problem, EllipticProblem, hint="Make one with hl.pde.elliptic_problem(...).")
    check_count("width", width, 1)
    check_count("points_per_axis", points_per_axis, 2)
    points, weights = gauss_legendre(points_per_axis, problem.dim)
    f = problem.source(points).detach()
    if not torch.isfinite(f).all():
        raise ValueError("the source f is not finite at some quadrature nodes; check the source function.")
    exact = None if problem.solution is None else problem.solution(points).detach()
    device = torch.device(device) if device is not None else torch.device("cpu")
    move = (lambda t: None if t is None else t.to(device))  # noqa: E731
    return RitzEnergy(problem, width, move(points), move(weights), move(f), move(exact))
