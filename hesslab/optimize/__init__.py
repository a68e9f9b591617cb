"""Newton's method three ways, on any scalar f of a flat vector, with the arithmetic cost of every run counted.

    newton          x⁺ = x + α p,   (∇²f(x) + λI) p = −∇f(x),   α by Armijo backtracking, λ >= 0 (Levenberg–Marquardt;
                    raised automatically where the Hessian is not positive definite).
    damped_newton   x⁺ = x − α [∇²f(x)]⁻¹∇f(x), the stepsize from the Newton decrement G = ‖∇f(x)‖*_x (Hanzely et
                    al.): AICN α = (−1 + √(1 + 2LG)) / (LG), or the Hölder schedule α = 1 / (1 + (L G^{q−2})^{1/(q−1)});
                    L found by backtracking when it is not given.
    lazy_newton     Doikov, Chayti & Jaggi (ICML 2023): the Hessian is taken at a snapshot z = x_{m⌊t/m⌋} and reused for
                    m steps; each step minimises the model ⟨g, h⟩ + ½⟨∇²f(z)h, h⟩ + (M/6)‖h‖³ (cubic) or uses
                    (∇²f(z) + λ_t I) h = −g with λ_t = √(M‖g‖) (quadratic); M adapted by doubling and halving.

The cost model (``CostModel``), in gradient-equivalents: one evaluation of f with its gradient = 1 (every evaluation in
this module, line-search trials included, computes both); one dense Hessian = d (d Hessian-vector products); one
factorisation of a d × d matrix (Cholesky or eigendecomposition) = d³ / F and one solve with a factorised matrix =
d² / F, where F is the number of arithmetic operations of one gradient (a parameter: 4Nd for a linear model on N
samples; default d²). Every result carries a per-iteration ``history`` of cumulative counts and cost.
"""

from ._cost import CostModel, NewtonResult
from ._damped import damped_newton, newton_stepsize
from ._lazy import cubic_step, lazy_newton, regularized_step
from ._newton import newton

__all__ = ["newton", "damped_newton", "lazy_newton", "NewtonResult", "CostModel", "newton_stepsize",
           "cubic_step", "regularized_step"]
