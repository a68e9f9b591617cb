"""Entropic optimal transport: log-domain Sinkhorn and Sinkhorn-Newton-Sparse (Tang et al., ICLR 2024).

The problem, in POT's convention, for marginals a (n,), b (m,) of equal mass and a cost matrix C (n, m):

    minimise  ⟨C, P⟩ − reg·H(P)   over P >= 0 with P1 = a, Pᵀ1 = b,      H(P) = −Σ_ij P_ij (log P_ij − 1).

Its dual is the concave Lyapunov potential of Tang, Shavlovsky, Rahmanian, Tardini, Thekumparampil, Xiao & Ying,
"Accelerating Sinkhorn algorithm with sparse Newton iterations" (ICLR 2024), in their notation with η = 1/reg:

    L(f, g) = ⟨f, a⟩ + ⟨g, b⟩ − reg Σ_ij P_ij,        P_ij = exp((f_i + g_j − C_ij) / reg),
    ∇L = (a − P1, b − Pᵀ1),        ∇²L = −(1/reg) [[diag(P1), P], [Pᵀ, diag(Pᵀ1)]].

The gradient is the marginal residual, so the error of every method here is one number, the marginal error
‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁ = ‖∇L‖₁. The Hessian is negative semidefinite with null vector (1, −1): adding c to f and
subtracting it from g changes nothing.

* Sinkhorn (Cuturi 2013) is exact block-coordinate ascent on L: f = reg·log a − reg·log Σ_j exp((g_j − C_ij)/reg),
  then g likewise. It converges linearly, and the rate degrades as reg shrinks.
* Sinkhorn-Newton-Sparse (SNS) warms up with a few Sinkhorn steps, then takes Newton steps on L. Near the optimum
  P is approximately sparse — most of its mass sits on a few entries per row — so the Hessian is replaced by one
  that keeps only the largest entries of P (and the exact diagonal), the Newton system is solved by conjugate
  gradient, and a backtracking line search on L keeps every step an ascent step.

Internally the potentials are kept in units of reg, α = f/reg and β = g/reg, so that P_ij = exp(α_i + β_j − C_ij/reg)
and the Newton system needs no factor of reg.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .checks import check_count, check_real_number

# |Σa − Σb| above this fraction of the mass is a modelling error (the problem has no feasible plan), not rounding.
MASS_RTOL = 1e-6
ARMIJO = 1e-4  # sufficient ascent: L(z + sΔ) − L(z) >= ARMIJO · s · ⟨∇L, Δ⟩
ABSORB = 1e20  # Sinkhorn's scalings are absorbed into the potentials once they leave [1/ABSORB, ABSORB]
MAX_HALVINGS = 40  # after this many halvings the Newton direction is given up for a Sinkhorn step
CG_FLOOR = {torch.float64: 1e-10, torch.float32: 1e-5}  # relative CG residual below which rounding stalls CG
DENSE_FRACTION = 0.15  # kept fraction above which sparsity saves nothing (CSR/dense crossover ≈ 20% on a CPU)


@dataclass(frozen=True)
class SinkhornResult:
    """The outcome of an entropic OT solver; arrays are of the kind (torch or numpy) and device of the cost ``C``.

    Attributes:
        plan: P (n, m), P_ij = exp((f_i + g_j − C_ij)/reg); rows/columns of zero mass are zero.
        f, g: dual potentials (n,), (m,), defined up to (f + c, g − c); −inf where a (or b) has zero mass.
        cost: the transport cost ⟨C, P⟩ (without the entropy term), as POT's ``sinkhorn2`` reports it.
        iterations: iterations taken (for SNS: warm-start Sinkhorn iterations plus Newton iterations).
        converged: whether the marginal error reached ``tol`` within ``max_iter``.
        history: marginal error ‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁ after 0, 1, ..., ``iterations`` iterations.
        times: seconds since the start after each of those iterations (same length as ``history``): the cost of
            each iteration, to compare methods whose iterations cost differently.
    """

    plan: Tensor | np.ndarray
    f: Tensor | np.ndarray
    g: Tensor | np.ndarray
    cost: float
    iterations: int
    converged: bool
    history: tuple[float, ...]
    times: tuple[float, ...]


# ----------------------------------------------------------------------------------------------------------------------
# Validation and the problem on the support of the marginals
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Problem:
    """a, b restricted to their positive entries, −C/reg on that block, and what is needed to give results back."""

    a: Tensor
    b: Tensor
    neg_k: Tensor  # −C_ij / reg on the support, (n', m')
    reg: float
    C: Tensor  # the full cost (n, m)
    rows: Tensor  # indices of the positive entries of a
    cols: Tensor
    as_numpy: bool
    tol: float = 1e-9  # the validated tolerance (a float, whatever number type was passed)


def _to_tensor(name: str, x, dtype: torch.dtype | None, device: torch.device | None) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    elif not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(x).__name__}; wrap it with "
                        f"numpy.asarray({name}) or torch.as_tensor({name}).")
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}; costs and masses are real "
                        f"(convert with {name}.double(), or take the real part / modulus first).")
    if dtype is None:  # C decides: float32 stays float32, everything else is computed in float64
        dtype = torch.float32 if x.dtype == torch.float32 else torch.float64
    if device is not None and x.device != device:
        if x.device.type != "cpu":
            raise ValueError(f"{name} is on {x.device} but C is on {device}; move it with {name}.to('{device}').")
        x = x.to(device)
    return x.to(dtype)


def _all_finite(x: Tensor) -> bool:
    """Whether x has no NaN and no ±inf: its minimum and maximum are finite (one pass, no n × m temporary)."""
    smallest, largest = x.aminmax()
    return math.isfinite(smallest.item()) and math.isfinite(largest.item())


def _check_marginal(name: str, x: Tensor, length: int, side: str) -> None:
    if x.ndim != 1 or x.shape[0] != length:
        raise ValueError(f"{name} must be a 1-D vector of length {length} (C has {length} {side}), got shape "
                         f"{tuple(x.shape)}; pass weights of shape ({length},).")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} has non-finite entries (NaN or inf); marginals must be finite weights.")
    if (x < 0).any():
        raise ValueError(f"{name} must be non-negative, got a minimum of {x.min().item():.3g}; marginals are "
                         "masses (e.g. uniform: torch.full((n,), 1 / n)).")
    if not (x.sum() > 0):
        raise ValueError(f"{name} has zero total mass; give it positive weights.")


def _prepare(a, b, C, reg, tol, max_iter) -> _Problem:
    """Validate the inputs (ValueError/TypeError naming the argument and the fix) and restrict to the support."""
    as_numpy = isinstance(C, np.ndarray)
    C = _to_tensor("C", C, None, None)
    if C.ndim != 2 or C.shape[0] == 0 or C.shape[1] == 0:
        raise ValueError(f"C must be a non-empty 2-D cost matrix (n, m), got shape {tuple(C.shape)}.")
    if not _all_finite(C):
        raise ValueError("C has non-finite entries (NaN or inf); give every pair a finite cost (a large finite "
                         "cost forbids a pair just as well).")
    a = _to_tensor("a", a, C.dtype, C.device)
    b = _to_tensor("b", b, C.dtype, C.device)
    _check_marginal("a", a, C.shape[0], "rows")
    _check_marginal("b", b, C.shape[1], "columns")
    mass_a, mass_b = a.sum().item(), b.sum().item()
    if abs(mass_a - mass_b) > MASS_RTOL * max(mass_a, mass_b):
        raise ValueError(f"a and b must have the same total mass, got {mass_a:.10g} and {mass_b:.10g}; normalise "
                         "both (a / a.sum(), b / b.sum()) — balanced OT has no plan between unequal masses.")
    reg = check_real_number("reg", reg, 0.0, open="low", hint="reg is the entropic regularisation, e.g. 1e-2.")
    tol = check_real_number("tol", tol, 0.0, open="low", hint="tol is the marginal error to reach, e.g. 1e-9.")
    check_count("max_iter", max_iter, 1)
    rows, cols = torch.nonzero(a > 0).reshape(-1), torch.nonzero(b > 0).reshape(-1)
    support = C if (len(rows), len(cols)) == C.shape else C[rows][:, cols]  # no copy when every mass is positive
    neg_k = support / -reg
    if not _all_finite(neg_k):
        raise ValueError(f"C / reg overflows {C.dtype} (max |C| = {C.abs().max().item():.3g}, reg = {reg:.3g}); "
                         "rescale C (e.g. C / C.max()) or use float64.")
    return _Problem(a[rows], b[cols], neg_k, float(reg), C, rows, cols, as_numpy, tol)


# ----------------------------------------------------------------------------------------------------------------------
# The dual: its value, the plan, the sparsified Hessian
# ----------------------------------------------------------------------------------------------------------------------
def lyapunov(f: Tensor, g: Tensor, a: Tensor, b: Tensor, C: Tensor, reg: float) -> Tensor:
    """The dual objective L(f, g) = ⟨f, a⟩ + ⟨g, b⟩ − reg Σ_ij exp((f_i + g_j − C_ij)/reg) (a 0-d tensor).

    Concave; its gradient is the marginal residual (a − P1, b − Pᵀ1), its maximum the optimal value of the primal.
    The sum is taken as exp(logsumexp), so it cannot overflow while the result is finite. Cost: one n × m pass.
    """
    log_mass = torch.logsumexp(((f[:, None] + g[None, :] - C) / reg).reshape(-1), dim=0)
    return f @ a + g @ b - reg * log_mass.exp()


def dual_hessian(plan: Tensor, reg: float) -> Tensor:
    """The dense Hessian of L, −(1/reg) [[diag(P1), P], [Pᵀ, diag(Pᵀ1)]], shape (n + m, n + m).

    For small problems and pictures: it is negative semidefinite with null vector (1_n, −1_m).
    """
    top = torch.cat([torch.diag(plan.sum(1)), plan], dim=1)
    bottom = torch.cat([plan.T, torch.diag(plan.sum(0))], dim=1)
    return -torch.cat([top, bottom], dim=0) / reg


def sparsify(plan: Tensor, threshold: float) -> Tensor:
    """SNS's Sparsify step: the entries of P kept in the Hessian, as a sparse CSR matrix S (n, m).

    An entry is kept when it carries at least a fraction ``threshold`` of its row's or of its column's mass,
    P_ij >= threshold · min((P1)_i, (Pᵀ1)_j); the rest are dropped. A row then loses at most threshold · m of its
    mass and a column at most threshold · n, so in the norm scaled by the diagonal the sparsified Hessian is within
    threshold · max(n, m) of the exact one (Schur's test). The diagonal blocks diag(P1), diag(Pᵀ1) are kept exactly.
    The number kept adapts to the plan: few per row when reg is small and P is nearly a permutation, many when it
    is large. Cost: one pass over P.
    """
    keep = _kept(plan, *_margins(plan), threshold)
    rows, cols = keep.nonzero(as_tuple=True)  # row by row: CSR order
    return _csr(rows, cols, plan[rows, cols], plan.shape)


def _kept(plan: Tensor, row_sums: Tensor, col_sums: Tensor, threshold: float) -> Tensor:
    """The boolean mask of ``sparsify``'s rule, P_ij >= threshold · min((P1)_i, (Pᵀ1)_j), given P1 and Pᵀ1
    (as two comparisons, which need no n × m floating-point temporary)."""
    return (plan >= threshold * row_sums[:, None]) | (plan >= threshold * col_sums[None, :])


def _csr(rows: Tensor, cols: Tensor, values: Tensor, shape) -> Tensor:
    """A CSR tensor from entries listed row by row."""
    crow = torch.zeros(shape[0] + 1, dtype=torch.int64, device=values.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=shape[0]), 0)
    with warnings.catch_warnings():  # torch's "sparse CSR support is in beta" notice
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols, values, tuple(shape), check_invariants=False)


def _sparse_products(S: Tensor) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """x ↦ S x and y ↦ Sᵀ y for a CSR tensor S. On the CPU by scipy, single-threaded (torch's multithreaded CSR
    product was measured to stall for tens of milliseconds per call when other processes share the cores); on a GPU
    by torch, with Sᵀ put in CSR form once by sorting the entries by column."""
    if S.device.type == "cpu":
        matrix = scipy.sparse.csr_matrix((S.values().numpy(), S.col_indices().numpy(), S.crow_indices().numpy()),
                                         shape=S.shape)
        transposed = matrix.T.tocsr()
        return (lambda x: torch.from_numpy(matrix @ x.numpy())), (lambda y: torch.from_numpy(transposed @ y.numpy()))
    rows = torch.repeat_interleave(torch.arange(S.shape[0], device=S.device), S.crow_indices().diff())
    order = torch.argsort(S.col_indices(), stable=True)
    St = _csr(S.col_indices()[order], rows[order], S.values()[order], S.shape[::-1])
    return (lambda x: S @ x), (lambda y: St @ y)


def _margins(plan: Tensor) -> tuple[Tensor, Tensor]:
    """P1 and Pᵀ1, as matrix-vector products: a BLAS call that, unlike torch's multithreaded reductions, does not
    stall when other processes share the cores."""
    return plan @ plan.new_ones(plan.shape[1]), plan.T @ plan.new_ones(plan.shape[0])


def _plan(alpha: Tensor, beta: Tensor, neg_k: Tensor) -> Tensor:
    """P = exp(α_i + β_j − C_ij/reg). Cost: one n × m pass."""
    return (alpha[:, None] + beta[None, :] + neg_k).exp_()


# ----------------------------------------------------------------------------------------------------------------------
# Bookkeeping shared by both solvers
# ----------------------------------------------------------------------------------------------------------------------
class _Log:
    """history, times, and an optional progress bar."""

    def __init__(self, max_iter: int, progress: bool, desc: str):
        self.start = time.perf_counter()
        self.history: list[float] = []
        self.times: list[float] = []
        self.bar = tqdm(total=max_iter, desc=desc, disable=not progress, leave=False)

    def record(self, error: Tensor) -> float:
        value = float(error)  # synchronises with the device, so the clock below is honest
        self.history.append(value)
        self.times.append(time.perf_counter() - self.start)
        if len(self.history) > 1 and not self.bar.disable:
            self.bar.update(1)
            self.bar.set_postfix(error=f"{value:.2e}", refresh=False)
        return value

    @property
    def iterations(self) -> int:
        return len(self.history) - 1


def _finish(problem: _Problem, alpha: Tensor, beta: Tensor, plan: Tensor, log: _Log, tol: float,
            name: str, note: str = "") -> SinkhornResult:
    """Embed the support's solution (the potentials and the plan at them) into full-size outputs of the input's
    kind; warn when not converged."""
    log.bar.close()
    converged = log.history[-1] <= tol
    if not converged:
        n, m = problem.neg_k.shape
        # the rounding of the n + m row and column sums, each of m (n) terms: below this no error can be certified
        floor = (n + m) * torch.finfo(problem.neg_k.dtype).eps * float(problem.a.sum())
        advice = (f"; the error is at the rounding level of the plan's row and column sums (about {floor:.1e} in "
                  f"{problem.neg_k.dtype}), so a tol below it cannot be reached: loosen tol."
                  if log.history[-1] <= floor else
                  ". Raise max_iter, loosen tol, or increase reg"
                  + ("; sinkhorn_newton_sparse needs far fewer iterations at small reg." if name == "sinkhorn"
                     else "."))
        warnings.warn(f"{name} did not reach the marginal error tol={tol:.1e} within max_iter={log.iterations} "
                      f"iterations (reached {log.history[-1]:.2e}); the plan is approximate{advice}" + note,
                      RuntimeWarning, stacklevel=3)
    C = problem.C
    if plan.shape != C.shape:  # zero masses were left out: their rows and columns of the plan are zero
        plan = torch.zeros_like(C).index_put_((problem.rows[:, None], problem.cols[None, :]), plan)
    f = torch.full((C.shape[0],), -math.inf, dtype=C.dtype, device=C.device)
    g = torch.full((C.shape[1],), -math.inf, dtype=C.dtype, device=C.device)
    f[problem.rows], g[problem.cols] = problem.reg * alpha, problem.reg * beta
    cost = float(torch.dot(C.reshape(-1), plan.reshape(-1)))
    if problem.as_numpy:
        plan, f, g = plan.cpu().numpy(), f.cpu().numpy(), g.cpu().numpy()
    return SinkhornResult(plan, f, g, cost, log.iterations, converged, tuple(log.history), tuple(log.times))


# ----------------------------------------------------------------------------------------------------------------------
# Sinkhorn
# ----------------------------------------------------------------------------------------------------------------------
def _representable(sums: Tensor) -> bool:
    """Whether every row/column sum is a normal positive float (no underflow to 0 or below, no overflow)."""
    return bool(((sums >= torch.finfo(sums.dtype).tiny) & (sums < math.inf)).all())


def _sinkhorn_iterations(problem: _Problem, alpha: Tensor, beta: Tensor, plan: Tensor, log: _Log, tol: float,
                         max_iter: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sinkhorn iterations from the potentials (α, β), with ``plan`` the plan there (overwritten), until the marginal
    error is at most ``tol`` or ``max_iter`` iterations are logged; returns the new potentials and the plan there,
    diag(u) K diag(v) (no further pass of exp). An empty log first gets the error of the starting point.

    In the log domain an iteration is α ← log a − log Σ_j exp(β_j − C_ij/reg), then β likewise. It runs here in the
    stabilised scaling form (Schmitzer 2019, "Stabilized sparse scaling algorithms for entropy regularized transport
    problems"): with the kernel K = exp(α_i + β_j − C_ij/reg) frozen at the current potentials, the same iteration
    is u ← a / (K v), v ← b / (Kᵀ u), with potentials α + log u, β + log v — two matrix-vector products instead
    of two passes of exp over the n × m matrix. Once a scaling leaves [1/ABSORB, ABSORB] it is absorbed into the
    potentials and K rebuilt, so nothing overflows; should a row or column sum still under- or overflow (the first
    steps at a tiny reg), that half-step is taken exactly, by a max-shifted logsumexp. After a v-update the columns
    match b (up to rounding), so the logged error is that of the rows, u ⊙ (K v) − a, whose K v the next
    u-update needs anyway.
    """
    a, b, neg_k = problem.a, problem.b, problem.neg_k
    kernel, u, v = plan, torch.ones_like(a), torch.ones_like(b)
    rows = kernel @ v
    if not log.history:
        log.record((rows - a).abs().sum())
    while log.history[-1] > tol and log.iterations < max_iter:
        if _representable(rows):
            u = a / rows
        else:  # exact log-domain row update, then a fresh kernel
            beta = beta + v.log()
            alpha = a.log() - torch.logsumexp(beta[None, :] + neg_k, dim=1)
            kernel, u, v = _plan(alpha, beta, neg_k), torch.ones_like(a), torch.ones_like(b)
        columns = kernel.T @ u
        if _representable(columns):
            v = b / columns
        else:  # exact log-domain column update, then a fresh kernel
            alpha = alpha + u.log()
            beta = b.log() - torch.logsumexp(alpha[:, None] + neg_k, dim=0)
            kernel, u, v = _plan(alpha, beta, neg_k), torch.ones_like(a), torch.ones_like(b)
        smallest, largest = torch.cat([u, v]).aminmax()
        if largest.item() > ABSORB or smallest.item() < 1 / ABSORB:
            alpha, beta = alpha + u.log(), beta + v.log()
            kernel, u, v = _plan(alpha, beta, neg_k), torch.ones_like(a), torch.ones_like(b)
        rows = kernel @ v
        log.record((u * rows - a).abs().sum())
    return alpha + u.log(), beta + v.log(), kernel.mul_(u[:, None]).mul_(v[None, :])


def _start(problem: _Problem) -> tuple[Tensor, Tensor, Tensor]:
    """Iteration 0: α = 0 and β = log b − log Σ_i exp(−C_ij/reg), so that the columns match b; returns α, β and the
    plan there. Each column's largest exponent m_j = max_i(−C_ij/reg) is factored out, so nothing underflows:
    K_ij = exp(−C_ij/reg − m_j) has a 1 in every column, β = log b − m − log(Kᵀ1), and the plan is K diag(b / Kᵀ1).
    Cost: one pass of exp over the n × m matrix.
    """
    a, b, neg_k = problem.a, problem.b, problem.neg_k
    shift = neg_k.amax(dim=0)
    kernel = (neg_k - shift).exp_()
    col_sums = kernel.T @ torch.ones_like(a)
    return torch.zeros_like(a), b.log() - shift - col_sums.log(), kernel.mul_((b / col_sums)[None, :])


def sinkhorn(a, b, C, reg: float, tol: float = 1e-9, max_iter: int = 10_000,
             progress: bool = False) -> SinkhornResult:
    """Entropic optimal transport by Sinkhorn's algorithm in the log domain (stable at small ``reg``).

    Solves min_P ⟨C, P⟩ − reg·H(P) s.t. P1 = a, Pᵀ1 = b (POT's convention) by alternating the exact maximisations
    of the dual L over f and g:
        f_i = reg·log a_i − reg·log Σ_j exp((g_j − C_ij)/reg),    g_j = reg·log b_j − reg·log Σ_i exp((f_i − C_ij)/reg).
    The potentials are kept in the log domain; the iterations run as matrix-vector products with the kernel
    exp((f_i + g_j − C_ij)/reg) frozen at the last absorption (Schmitzer's stabilised scaling), so no number
    over- or underflows at any reg, and an exact logsumexp half-step is taken where a sum would.

    Args:
        a: source marginal (n,), non-negative; b: target marginal (m,), non-negative, with the same total mass.
        C: cost matrix (n, m), finite. Torch tensors or numpy arrays; results come back as C's kind, on C's device.
            float32 C is computed in float32, anything else in float64.
        reg: the entropic regularisation, > 0. Iterations grow roughly like 1/reg.
        tol: stop when ‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁ <= tol.
        max_iter: iterations at most; if ``tol`` is not reached the result says ``converged=False`` and a
            RuntimeWarning is issued.
        progress: show a tqdm progress bar.
    Returns:
        ``SinkhornResult(plan, f, g, cost, iterations, converged, history, times)``.
    Cost: two matrix-vector products with the n × m kernel per iteration, and an exp pass over it at each absorption
    (rare near convergence); O(nm) memory.
    Reference: Cuturi, "Sinkhorn distances", NeurIPS 2013; the log-domain form as in Peyré & Cuturi, "Computational
    Optimal Transport" (2019), §4.4; the stabilisation from B. Schmitzer, SIAM J. Sci. Comput. 41(3), 2019.
    """
    problem = _prepare(a, b, C, reg, tol, max_iter)
    tol = problem.tol
    log = _Log(max_iter, progress, "sinkhorn")
    alpha, beta, plan = _sinkhorn_iterations(problem, *_start(problem), log, tol, max_iter)
    return _finish(problem, alpha, beta, plan, log, tol, "sinkhorn")


# ----------------------------------------------------------------------------------------------------------------------
# Sinkhorn-Newton-Sparse
# ----------------------------------------------------------------------------------------------------------------------
def _kept_products(plan: Tensor, row_sums: Tensor, col_sums: Tensor,
                   threshold: float) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """x ↦ S x and y ↦ Sᵀ y for the Hessian block S of a Newton step.

    S is the CSR matrix of the entries of P that ``sparsify`` keeps when they are at most DENSE_FRACTION of all.
    When more are kept (at reg = 1e-2 about 40% are), S is not sparse: a product with it costs what a dense product
    with all of P does, so S = P, and the step is the exact Newton step (the threshold 0) at no extra cost.
    Cost: two comparisons and a count over P, plus building the CSR matrix when sparse; then 2·nnz (or 2nm) per pair
    of products.
    """
    keep = _kept(plan, row_sums, col_sums, threshold)
    if keep.sum() > DENSE_FRACTION * keep.numel():
        return (lambda x: plan @ x), (lambda y: plan.T @ y)
    rows, cols = keep.nonzero(as_tuple=True)  # row by row: CSR order
    return _sparse_products(_csr(rows, cols, plan[rows, cols], plan.shape))


def _newton_direction(S_times: Callable[[Tensor], Tensor], St_times: Callable[[Tensor], Tensor], row_sums: Tensor,
                      col_sums: Tensor, p: Tensor, q: Tensor, rtol: float, max_iter: int) -> tuple[Tensor, Tensor]:
    """Solve the sparsified Newton system [[diag(r), S], [Sᵀ, diag(c)]] (x, y) = (p, q), r = P1, c = Pᵀ1, through
    its Schur complement, by preconditioned conjugate gradient.

    The first block row gives x = (p − S y) / r; the second then leaves the m × m system
        T y = q − Sᵀ (p / r),        T = diag(c) − Sᵀ diag(1/r) S,
    solved by CG preconditioned with diag(c). T is positive semidefinite: without sparsification T1 = c − Pᵀ1 = 0
    and the right-hand side sums to Σq − Σp = 0, the null direction (1, −1) of the full system. With sparsification
    T1 is only the dropped mass, so T is nearly singular along 1; a change of y along 1 (and of x along −1) does
    not change the plan, so CG works orthogonal to 1: the right-hand side, every residual and every preconditioned
    residual are centred (projected PCG). The eigenvalues of diag(c)⁻¹T are 1 − σ_k², σ_k the singular values of
    diag(r)^−½ S diag(c)^−½; σ_1 = 1 (for S = P), and σ_2² is the linear rate of Sinkhorn itself. With
    κ = 1/(1 − σ_2²), Sinkhorn needs about κ iterations per digit and CG about √κ, and a CG iteration costs what a
    Sinkhorn iteration does (one product with S, one with Sᵀ).
    Stops at ``max_iter`` iterations, once ‖residual‖ <= rtol ‖rhs‖, or at a breakdown (a non-positive or
    non-finite step size). Cost: per iteration one S and one Sᵀ product and O(n + m).
    """
    inverse_rows = 1 / row_sums  # inf where a row underflowed: the direction is then non-finite and rejected

    def centre(y: Tensor) -> Tensor:
        return y - y.mean()

    def schur(y: Tensor) -> Tensor:
        return centre(col_sums * y - St_times(inverse_rows * S_times(y)))

    residual = centre(q - St_times(inverse_rows * p))
    y = torch.zeros_like(residual)
    z = centre(residual / col_sums)
    direction, rz = z, residual @ z
    threshold = rtol * residual.norm()
    for _ in range(max_iter):
        if residual.norm() <= threshold:
            break
        product = schur(direction)
        size = rz / (direction @ product)
        if not 0 < float(size) < math.inf:  # breakdown (rounding, or masses spanning ~300 orders of magnitude):
            break  # keep the last iterate, an ascent direction like every CG iterate
        y = y + size * direction
        residual = residual - size * product
        z = centre(residual / col_sums)
        rz, rz_old = residual @ z, rz
        direction = z + (rz / rz_old) * direction
    return inverse_rows * (p - S_times(y)), y


def _phi(z: Tensor) -> Tensor:
    """φ(z) = e^z − 1 − z >= 0, to a few ulps for every z: by its Taylor series z²/2! + z³/3! + ... + z¹⁴/14! where
    |z| < 1/2 (there expm1(z) − z would lose the digits of z²/2 to the rounding of z), by expm1(z) − z elsewhere."""
    small = z.abs() < 0.5
    t = torch.where(small, z, torch.zeros_like(z))
    series = torch.full_like(z, 1 / math.factorial(14))
    for k in range(13, 1, -1):
        series = series * t + 1 / math.factorial(k)
    return torch.where(small, series * t * t, torch.expm1(z) - z)


@dataclass(frozen=True)
class _Trial:
    """A trial step z + (x, y) of the line search: the decrease of ℓ's linear model, penalty = s⟨∇ℓ, Δ⟩ − (ℓ(z + sΔ)
    − ℓ(z)) = Σ_ij P_ij φ(x_i + y_j) >= 0, the marginal error at the trial point, and bounds on the rounding errors
    of both, so that a step is accepted only when the increase and the error bound are true, not artefacts."""

    penalty: float
    penalty_rounding: float
    error: float
    error_rounding: float

    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.penalty, self.penalty_rounding, self.error, self.error_rounding))

    def surely_passes(self, margin: float, error_cap: float) -> bool:
        return self.penalty + self.penalty_rounding <= margin and self.error + self.error_rounding <= error_cap

    def surely_fails(self, margin: float, error_cap: float) -> bool:
        return self.penalty - self.penalty_rounding > margin or self.error - self.error_rounding > error_cap


def _factored_trial(plan: Tensor, row_sums: Tensor, col_sums: Tensor, a: Tensor, b: Tensor, x: Tensor, y: Tensor,
                    gamma: float) -> _Trial:
    """The trial from three matrix-vector products, with u = expm1(x), v = expm1(y) (rows scaled by 1 + u, columns
    by 1 + v), from e^(x+y) − 1 − x − y = (e^x − 1)(e^y − 1) + φ(x) + φ(y):

        penalty = uᵀ P v + ⟨P1, φ(x)⟩ + ⟨Pᵀ1, φ(y)⟩,  new P1 = (1 + u) ⊙ (P1 + P v),  new Pᵀ1 = (1 + v) ⊙ (Pᵀ1 + Pᵀu).

    Rounding: γ = (n + m + 16)·ε times the same sums with |u|, |v| (one more product, P|v|). Tight near the
    optimum, where the step is small — there it keeps every digit of the increase that a difference of two values of
    L would lose. Along a near-null direction with large |x| ≈ |y| (x_i ≈ −y_j where P has its mass) uᵀPv cancels
    φ(x) + φ(y), each ~e^{|x|} while the penalty is ~0: the bound then says so, and ``_direct_trial`` decides."""
    u, v = torch.expm1(x), torch.expm1(y)
    Pv, P_abs_v, Ptu = plan @ v, plan @ v.abs(), plan.T @ u
    phi_x, phi_y = row_sums @ _phi(x), col_sums @ _phi(y)
    penalty = u @ Pv + phi_x + phi_y
    penalty_rounding = gamma * (u.abs() @ P_abs_v + phi_x + phi_y)
    rows, cols = (1 + u) * (row_sums + Pv), (1 + v) * (col_sums + Ptu)
    error = (rows - a).abs().sum() + (cols - b).abs().sum()
    # |rows − exact| <= γ (1 + |u|)ᵀ(P1 + P|v|);
    # |cols − exact| <= γ (1 + |v|)ᵀ(Pᵀ1 + Pᵀ|u|) = γ ((1 + |v|)ᵀPᵀ1 + |u|ᵀ(P1 + P|v|)), with no product Pᵀ|u|
    row_bound = (1 + u.abs()) @ (row_sums + P_abs_v)
    col_bound = (1 + v.abs()) @ col_sums + u.abs() @ (row_sums + P_abs_v)
    error_rounding = gamma * (row_bound + col_bound + error)
    return _Trial(float(penalty), float(penalty_rounding), float(error), float(error_rounding))


def _direct_trial(plan: Tensor, a: Tensor, b: Tensor, row_sums: Tensor, col_sums: Tensor, x: Tensor, y: Tensor,
                  gamma: float) -> _Trial:
    """The trial from the scaled plan Q_ij = P_ij e^(x_i + y_j) itself: its row and column sums are the new
    marginals (sums of positive terms), and penalty = ΣQ − ΣP − ⟨P1, x⟩ − ⟨Pᵀ1, y⟩, which is off by at most
    γ (ΣQ + ΣP + ⟨P1, |x|⟩ + ⟨Pᵀ1, |y|⟩) — relative to the size of the new plan, so no e^{|x|} appears where
    x_i + y_j ≈ 0. Cost: three passes over P (add, exp, multiply) and two matrix-vector products, in blocks of about
    2¹⁶ entries (little extra memory); used only where the factored form cannot decide (large steps far from the
    optimum), where the increase is far above this rounding."""
    n, m = plan.shape
    block = max(1, (1 << 16) // m)
    rows, cols = torch.empty_like(a), torch.zeros_like(b)
    ones_n, ones_m = torch.ones(min(block, n), dtype=plan.dtype, device=plan.device), torch.ones_like(b)
    for start in range(0, n, block):
        scaled = (x[start:start + block, None] + y[None, :]).exp_().mul_(plan[start:start + block])
        rows[start:start + block] = scaled @ ones_m
        cols += scaled.T @ ones_n[:scaled.shape[0]]
    mass, new_mass = row_sums.sum(), rows.sum()
    linear = row_sums @ x + col_sums @ y
    penalty = new_mass - mass - linear
    penalty_rounding = gamma * (new_mass + mass + row_sums @ x.abs() + col_sums @ y.abs())
    error = (rows - a).abs().sum() + (cols - b).abs().sum()
    error_rounding = gamma * (new_mass + cols.sum() + a.sum() + b.sum())
    return _Trial(float(penalty), float(penalty_rounding), float(error), float(error_rounding))


def _line_search(plan: Tensor, row_sums: Tensor, col_sums: Tensor, a: Tensor, b: Tensor, d_alpha: Tensor,
                 d_beta: Tensor, error_cap: float = math.inf) -> tuple[float | None, str]:
    """Backtracking: the largest s in {1, 1/2, 1/4, ...} (at most MAX_HALVINGS of them) at which, provably despite
    rounding,
        ℓ(z + sΔ) − ℓ(z) >= ARMIJO · s · ⟨∇ℓ, Δ⟩      (ℓ = L/reg = ⟨α, a⟩ + ⟨β, b⟩ − Σ_ij P_ij, ∇ℓ = (a − P1, b − Pᵀ1))
    and the marginal error at z + sΔ is at most ``error_cap`` (SNS passes its warm-start error: a Newton step on
    this very curved dual can raise the error many-fold while it raises ℓ; the cap keeps every iterate at least as
    good as the warm start).

    The increase is s⟨∇ℓ, Δ⟩ − Σ_ij P_ij φ(sΔα_i + sΔβ_j), φ(t) = e^t − 1 − t >= 0. The sum is taken from
    matrix-vector products (``_factored_trial``), exact to the last digits near the optimum; where its rounding bound
    cannot decide the test (large steps along near-null directions), from the scaled plan itself
    (``_direct_trial``). A trial passes only when it passes with the penalty and the new marginal error raised by
    their rounding bounds. (⟨∇ℓ, Δ⟩ is taken as computed: the rounding of the marginals it comes from is the
    error's own floor, and the Newton direction is computed from the same numbers.)
    Returns (s, "") or (None, why no step was accepted). Cost per trial: three matrix-vector products (rarely a few
    passes over P).
    """
    n, m = plan.shape
    gamma = (n + m + 16) * torch.finfo(plan.dtype).eps
    grad_alpha, grad_beta = a - row_sums, b - col_sums
    slope = float(grad_alpha @ d_alpha + grad_beta @ d_beta)
    if not slope > 0:  # ℓ is concave, ℓ(z + sΔ) − ℓ(z) <= s⟨∇ℓ, Δ⟩ <= 0: no step can ascend
        return None, (f"the Newton direction is not an ascent direction (⟨∇L, Δ⟩/reg = {slope:.2e} <= 0): the "
                      "marginal error is at the rounding level of the plan's sums, or the Newton solve failed")
    step, ascended = 1.0, False
    for _ in range(MAX_HALVINGS):
        x, y = step * d_alpha, step * d_beta
        margin = (1 - ARMIJO) * step * slope  # what the penalty and its rounding may use up
        trial = _factored_trial(plan, row_sums, col_sums, a, b, x, y, gamma)
        if not trial.finite() or not (trial.surely_passes(margin, error_cap) or trial.surely_fails(margin, error_cap)):
            trial = _direct_trial(plan, a, b, row_sums, col_sums, x, y, gamma)
        if trial.finite() and trial.surely_passes(margin, error_cap):
            return step, ""
        ascended = ascended or (trial.finite() and trial.penalty + trial.penalty_rounding <= margin)
        step /= 2
    last = f"s = 1, 1/2, ..., 2^-{MAX_HALVINGS - 1}"
    if ascended:
        return None, f"every step size {last} that increases the dual raises the marginal error above the warm start's"
    return None, f"no step size {last} gave an increase of the dual that rounding could not explain"


def _newton_step(problem: _Problem, plan: Tensor, row_sums: Tensor, col_sums: Tensor, error: float,
                 threshold: float, cg_max_iter: int, error_cap: float = math.inf) -> tuple[Tensor, Tensor] | str:
    """One SNS Newton step at the plan P: sparsify, solve, line search. Returns the step (s·Δα, s·Δβ) and rescales
    P in place to the plan there, diag(e^(sΔα)) P diag(e^(sΔβ)) (the n × m plan is the one big array a step would
    otherwise allocate anew); returns why not (a str), with P unchanged, when the line search finds no step.

    Inexact Newton (Dembo, Eisenstat & Steihaug 1982): CG stops at the relative residual min(0.1, relative marginal
    error), so far from the optimum a rough direction is enough, and near it the solve is as exact as the step
    needs; never below CG_FLOOR, where rounding stalls CG. The direction is defined only up to the null direction
    (1, −1) of the Hessian, which changes neither the plan nor L (Σa = Σb); its component along it is removed,
    so that the step's row and column factors stay as close to 1 as they can.
    """
    grad_alpha, grad_beta = problem.a - row_sums, problem.b - col_sums  # ∇ℓ = ∇L in the units of α, β
    S_times, St_times = _kept_products(plan, row_sums, col_sums, threshold)
    rtol = min(0.1, max(error / float(problem.a.sum()), CG_FLOOR[plan.dtype]))
    d_alpha, d_beta = _newton_direction(S_times, St_times, row_sums, col_sums, grad_alpha, grad_beta, rtol,
                                        cg_max_iter)
    if not (torch.isfinite(d_alpha).all() and torch.isfinite(d_beta).all()):  # a row or column sum underflowed
        return "a row or column of the plan underflowed to 0, so the Newton direction is not finite"
    null = (d_beta.sum() - d_alpha.sum()) / (d_alpha.numel() + d_beta.numel())
    d_alpha, d_beta = d_alpha + null, d_beta - null
    step, why = _line_search(plan, row_sums, col_sums, problem.a, problem.b, d_alpha, d_beta, error_cap)
    if step is None:
        return why
    d_alpha, d_beta = step * d_alpha, step * d_beta
    # the factors as exp, not 1 + expm1, which loses digits where a factor is near 0
    plan.mul_(d_alpha.exp()[:, None]).mul_(d_beta.exp()[None, :])
    return d_alpha, d_beta


def sinkhorn_newton_sparse(a, b, C, reg: float, tol: float = 1e-9, max_iter: int = 10_000, warm_start: int = 20,
                           threshold: float = 1e-6, cg_max_iter: int | None = None,
                           progress: bool = False) -> SinkhornResult:
    """Entropic optimal transport by Sinkhorn-Newton-Sparse (SNS; Tang et al., ICLR 2024, Algorithm 1).

    Same problem and convention as ``sinkhorn``. Stage 1: ``warm_start`` log-domain Sinkhorn iterations. Stage 2,
    repeated until the marginal error is at most ``tol``, with P the current plan:
      1. Sparsify (the paper's Sparsify(∇²L, ρ)): keep the entries S of P with
         P_ij >= threshold · min((P1)_i, (Pᵀ1)_j); the diagonal blocks diag(P1), diag(Pᵀ1) are kept exactly
         (if more than 15% of the entries pass, S is not sparse and S = P: see below);
      2. Newton direction: solve [[diag(P1), S], [Sᵀ, diag(Pᵀ1)]] (Δα, Δβ) = (a − P1, b − Pᵀ1) by eliminating
         Δα = (a − P1 − SΔβ)/P1 and running diagonally preconditioned conjugate gradient on the Schur complement
         for Δβ, orthogonal to the null direction 1; (Δf, Δg) = reg·(Δα, Δβ) is then the Newton step
         −(∇²L)⁻¹∇L with the sparsified Hessian;
      3. backtracking line search: the largest s in {1, 1/2, 1/4, ...} with L(z + sΔ) − L(z) >= 1e-4·s·⟨∇L, Δ⟩
         beyond every rounding error (the increase is computed without cancellation, see ``_line_search``) and a
         marginal error at most the warm start's (so that SNS is never worse than its warm start); if 40 halvings
         find no such step, a Sinkhorn iteration is taken instead (and counted: a run that does not converge says
         why in its warning).
    Each Newton iteration costs a few passes over the n × m plan (selecting its entries, one line-search trial of three
    matrix-vector products near the optimum, rescaling the plan, its row and column sums), plus one product with S and
    one with Sᵀ per CG step.
    When more than 15% of the entries pass the threshold (at reg = 1e-2 for random points, about 40% do), a product
    with them is no cheaper than a dense product with all of P (the CSR/dense crossover is near 20% on a CPU), so
    all of P is used: the exact Newton step, at the cost the sparsified one would have.

    Args:
        a, b, C, reg, tol, max_iter, progress: as in ``sinkhorn`` (``max_iter`` counts both stages).
        warm_start: N₁, the Sinkhorn iterations before the first Newton step, >= 1.
        threshold: ρ in [0, 1): the fraction of a row's or column's mass below which an entry is dropped from the
            Hessian (0 keeps every entry: exact Newton). The default 1e-6 keeps ~7% of the entries for 1000 random
            points in the unit square at reg = 1e-3 (a sparse Newton step); at reg = 1e-2 it would keep ~40%, and the
            step is then exact Newton.
        cg_max_iter: conjugate gradient iterations per Newton step at most (default m, the Schur system's size).
    Returns:
        ``SinkhornResult``; ``history`` holds the warm-start iterations first, then the Newton iterations.
    Reference: X. Tang, M. Shavlovsky, H. Rahmanian, E. Tardini, K. K. Thekumparampil, T. Xiao, L. Ying,
    "Accelerating Sinkhorn algorithm with sparse Newton iterations", ICLR 2024.
    """
    problem = _prepare(a, b, C, reg, tol, max_iter)
    tol = problem.tol
    check_count("warm_start", warm_start, 1, hint="SNS starts from a Sinkhorn-scaled plan; use warm_start >= 1.")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1) (the fraction of a row's mass below which an entry of the "
                         f"plan is dropped from the Hessian), got {threshold!r}.")
    m = problem.neg_k.shape[1]
    cg_max_iter = m if cg_max_iter is None else check_count("cg_max_iter", cg_max_iter, 1)
    log = _Log(max_iter, progress, "sinkhorn_newton_sparse")
    alpha, beta, plan = _sinkhorn_iterations(problem, *_start(problem), log, tol, min(warm_start, max_iter))
    row_sums, col_sums = _margins(plan)
    error_cap, refusals, why = log.history[-1], 0, ""
    while log.history[-1] > tol and log.iterations < max_iter:
        step = _newton_step(problem, plan, row_sums, col_sums, log.history[-1], threshold, cg_max_iter, error_cap)
        if isinstance(step, str):  # no acceptable step along the Newton direction: one Sinkhorn iteration instead
            refusals, why = refusals + 1, step
            alpha, beta, plan = _sinkhorn_iterations(problem, alpha, beta, plan, log, 0.0, log.iterations + 1)
            row_sums, col_sums = _margins(plan)
            continue
        d_alpha, d_beta = step  # and the plan is now the one at the new potentials
        alpha, beta = alpha + d_alpha, beta + d_beta
        row_sums, col_sums = _margins(plan)
        log.record((row_sums - problem.a).abs().sum() + (col_sums - problem.b).abs().sum())
    note = (f" {refusals} Newton steps were replaced by Sinkhorn iterations; the last because {why}."
            if refusals else "")
    return _finish(problem, alpha, beta, plan, log, tol, "sinkhorn_newton_sparse", note)
