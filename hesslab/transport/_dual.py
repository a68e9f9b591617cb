"""The dual of entropic OT: its value, the plan, and the sparsified Hessian."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import scipy.sparse
import torch
from torch import Tensor


# ----------------------------------------------------------------------------------------------------------------------
# The dual: its value, the plan, the sparsified Hessian
# ----------------------------------------------------------------------------------------------------------------------
def lyapunov(f: Tensor, g: Tensor, a: Tensor, b: Tensor, C: Tensor, reg: float) -> Tensor:
    """The dual objective L(f, g) = ⟨f, a⟩ + ⟨g, b⟩ − reg Σ_ij exp((f_i + g_j − C_ij)/reg) (a 0-d tensor).

    Concave; its gradient is the marginal residual (a − P1, b − Pᵀ1), its maximum the optimal value of the primal.
    The sum is taken as exp(logsumexp), so it cannot overflow while the result is finite. Cost: one n × m pass.

    Example:
        For C = 0, reg = 1 and a = b = (½, ½) the optimal plan is abᵀ = ¼ everywhere, at f = g = (log ½, log ½);
        there L equals the primal value Σ_ij P_ij (log P_ij − 1) = −2 log 2 − 1 (strong duality):

        >>> import math, torch
        >>> from hesslab.transport import lyapunov
        >>> a = b = torch.full((2,), 0.5, dtype=torch.float64)
        >>> f = g = torch.full((2,), math.log(0.5), dtype=torch.float64)
        >>> L = lyapunov(f, g, a, b, torch.zeros(2, 2, dtype=torch.float64), reg=1.0)
        >>> round(L.item(), 12) == round(-2 * math.log(2) - 1, 12)
        True
    """
    log_mass = torch.logsumexp(((f[:, None] + g[None, :] - C) / reg).reshape(-1), dim=0)
    return f @ a + g @ b - reg * log_mass.exp()


def dual_hessian(plan: Tensor, reg: float) -> Tensor:
    """The dense Hessian of L, −(1/reg) [[diag(P1), P], [Pᵀ, diag(Pᵀ1)]], shape (n + m, n + m).

    For small problems and pictures: it is negative semidefinite with null vector (1_n, −1_m).

    Example:
        >>> import torch
        >>> from hesslab.transport import dual_hessian
        >>> H = dual_hessian(torch.full((2, 2), 0.25, dtype=torch.float64), reg=0.5)
        >>> (-0.5 * H).tolist()  # −reg·H = [[diag(P1), P], [Pᵀ, diag(Pᵀ1)]]
        [[0.5, 0.0, 0.25, 0.25], [0.0, 0.5, 0.25, 0.25], [0.25, 0.25, 0.5, 0.0], [0.25, 0.25, 0.0, 0.5]]
        >>> (H @ torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64)).tolist()  # the null vector (1, −1)
        [0.0, 0.0, 0.0, 0.0]
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

    Example:
        A nearly diagonal plan keeps its diagonal; the entries 10⁻⁹ carry less than 10⁻⁶ of their row's mass:

        >>> import torch
        >>> from hesslab.transport import sparsify
        >>> P = torch.tensor([[0.5, 1e-9], [1e-9, 0.5]], dtype=torch.float64)
        >>> S = sparsify(P, threshold=1e-6)
        >>> S.layout, S.to_dense().tolist()
        (torch.sparse_csr, [[0.5, 0.0], [0.0, 0.5]])
    """
    keep = _kept(plan, *_margins(plan), threshold)
    rows, cols = keep.nonzero(as_tuple=True)  # row by row: CSR order
    return _csr(rows, cols, plan[rows, cols], plan.shape)


def _kept(plan: Tensor, row_sums: Tensor, col_sums: Tensor, threshold: float) -> Tensor:
    """The boolean mask of ``sparsify``'s rule, P_ij >= threshold · min((P1)_i, (Pᵀ1)_j), given P1 and Pᵀ1.

    It is taken as two comparisons, which need no n × m floating-point temporary.
    """
    return (plan >= threshold * row_sums[:, None]) | (plan >= threshold * col_sums[None, :])


def _csr(rows: Tensor, cols: Tensor, values: Tensor, shape) -> Tensor:
    """A CSR tensor from entries listed row by row."""
    crow = torch.zeros(shape[0] + 1, dtype=torch.int64, device=values.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=shape[0]), 0)
    with warnings.catch_warnings():  # torch's "sparse CSR support is in beta" notice
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols, values, tuple(shape), check_invariants=False)


def _sparse_products(S: Tensor) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """x ↦ S x and y ↦ Sᵀ y for a CSR tensor S.

    On the CPU by scipy, single-threaded (torch's multithreaded CSR product was measured to stall for tens of
    milliseconds per call when other processes share the cores); on a GPU by torch, with Sᵀ put in CSR form once by
    sorting the entries by column.
    """
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
    """P1 and Pᵀ1, as matrix-vector products.

    A matrix-vector product is a BLAS call that, unlike torch's multithreaded reductions, does not stall when other
    processes share the cores.
    """
    return plan @ plan.new_ones(plan.shape[1]), plan.T @ plan.new_ones(plan.shape[0])


def _plan(alpha: Tensor, beta: Tensor, neg_k: Tensor) -> Tensor:
    """P = exp(α_i + β_j − C_ij/reg). Cost: one n × m pass."""
    return (alpha[:, None] + beta[None, :] + neg_k).exp_()


# ----------------------------------------------------------------------------------------------------------------------
