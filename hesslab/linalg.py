"""Shared numerics of every iterative solver: conjugate gradient (and, next, one Armijo backtracking search)."""

from __future__ import annotations


def conjugate_gradient(matvec, b, max_steps: int, rtol: float = 1e-10, preconditioner=None):
    """Solve A x = b for symmetric A given by ``matvec`` with (preconditioned) conjugate gradients (Hestenes &
    Stiefel 1952), from x = 0, for numpy arrays or torch tensors alike.

    Stops at ‖b − A x‖ <= rtol ‖b‖, after ``max_steps`` steps, or at a direction p of non-positive curvature
    pᵀAp <= 0 (A is not positive definite): then the iterate so far is returned — a descent direction for the model
    ½xᵀAx − bᵀx — or, at the first step, the preconditioned right-hand side M⁻¹b.
    Returns (x, steps taken, whether non-positive curvature was met). Cost: one product (and one preconditioner
    solve) per step.
    """
    x = 0 * b
    r = 1 * b
    z = r if preconditioner is None else preconditioner(r)
    p = 1 * z
    rz = float(r @ z)
    stop = rtol**2 * float(b @ b)
    for step in range(max_steps):
        if float(r @ r) <= stop:
            return x, step, False
        Ap = matvec(p)
        curvature = float(p @ Ap)
        if curvature <= 0:
            return (x if step else 1 * z), step, True
        alpha = rz / curvature
        x = x + alpha * p
        r = r - alpha * Ap
        z = r if preconditioner is None else preconditioner(r)
        rz, rz_old = float(r @ z), rz
        p = z + (rz / rz_old) * p
    return x, max_steps, False
