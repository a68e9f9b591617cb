"""The entropic OT problem: validation, the problem on the support of the marginals, and what both solvers share.

What they share is the bookkeeping of a run (``_Log``, ``_finish``) and its result (``SinkhornResult``).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import check_count, check_real_number
from .._results import history as make_history

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
        converged: whether the marginal error reached ``tol`` within ``max_iter``; ``reason``: why the run stopped.
        iterations: iterations taken (for SNS: warm-start Sinkhorn iterations plus Newton iterations).
        history: float arrays (``iterations`` + 1,), entry k after k iterations (DESIGN.md, "Results"): ``error``
            the marginal error ‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁, and ``seconds`` since the start — the cost of each iteration,
            to compare methods whose iterations cost differently.

    Example:
        >>> import torch, hesslab as hl
        >>> a = torch.tensor([0.2, 0.8], dtype=torch.float64)
        >>> b = torch.tensor([0.5, 0.5], dtype=torch.float64)
        >>> C = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
        >>> result = hl.transport.sinkhorn(a, b, C, reg=0.5)
        >>> result.converged, result.reason
        (True, 'marginal error 3.19e-10 <= tol = 1e-09')
        >>> result.iterations, len(result.history["error"]), sorted(result.history)  # entries 0, 1, ..., iterations
        (15, 16, ['error', 'seconds'])
        >>> [round(x, 6) for x in result.plan.sum(1).tolist()], [round(x, 6) for x in result.plan.sum(0).tolist()]
        ([0.2, 0.8], [0.5, 0.5])
    """

    plan: Tensor | np.ndarray
    f: Tensor | np.ndarray
    g: Tensor | np.ndarray
    cost: float
    converged: bool
    reason: str
    iterations: int
    history: dict[str, np.ndarray]


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




# Bookkeeping shared by both solvers
# ----------------------------------------------------------------------------------------------------------------------
class _Log:
    """The marginal errors (``history``) and seconds since the start (``times``) so far, and a progress bar.

    The bar is shown only when asked for; ``_finish`` turns the lists into the result's ``history``.
    """

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
    """Embed the support's solution (the potentials and the plan at them) into full-size outputs of the input's kind.

    Warns (RuntimeWarning) when the run did not converge, saying why and what to change.
    """
    log.bar.close()
    converged = log.history[-1] <= tol
    reason = (f"marginal error {log.history[-1]:.2e} <= tol = {tol:g}" if converged else
              f"max_iter = {log.iterations} reached at marginal error {log.history[-1]:.2e} > tol = {tol:g}")
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
    history = make_history({"error": log.history, "seconds": log.times}, log.iterations)
    return SinkhornResult(plan, f, g, cost, converged, reason, log.iterations, history)
