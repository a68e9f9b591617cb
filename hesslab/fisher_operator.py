"""The Fisher as a matrix-free operator: ``F V = Rᵀ (R V)`` from per-sample gradient rows R.

``FisherOperator.from_model`` follows ``HessianOperator.from_model``: one batch or a fixed re-iterable of batches
(the sample-weighted mean Σ_b n_b F_b / N of the batch Fishers, a mean loss required), ``params=`` blocks, the
parameters' dtype and device, and the memory guard of ``to_dense``. The rows are those of ``hesslab.exact.fisher_rows``:
empirical (the data's targets) or Monte-Carlo (targets drawn from the model's predictive distribution, once, when
the operator is made, so that every product is the same matrix). ``KFACOperator`` is K-FAC / EKFAC of a model's
``nn.Linear`` and ``nn.Conv2d`` layers, from the factors of ``hesslab.kronecker`` (it lives here, at the operators'
layer, because it is a ``CurvatureOperator`` and ``hesslab.kronecker`` sits below the operators).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ._checks import check_choice, check_count, check_finite_product, check_generator, check_like, check_positive
from ._dense import Product
from .batches import as_batches
from .exact import FISHER_KINDS, fisher_rows
from .functional import flatten_parameters, select_parameters
from .kronecker import kfac_factors
from .operators import CurvatureOperator, _mean_reduction_check


def rows_product(rows: Tensor) -> Product:
    """``V -> Rᵀ (R V)``: the product of F = Rᵀ R in two matrix products, never forming F.

    Args:
        rows: R (m, n).

    Returns:
        The product for V (n,) or (n, k).

    Example:
        >>> import torch
        >>> from hesslab.fisher_operator import rows_product
        >>> rows_product(torch.tensor([[1.0, 2.0]]))(torch.tensor([1.0, 0.0])).tolist()
        [1.0, 2.0]
    """
    return lambda V: rows.T @ (rows @ V)


class FisherOperator(CurvatureOperator):
    """The Fisher F = Rᵀ R of per-sample gradient rows R (m, n) as an operator; made by ``from_model``.

    Each product is two matrix products with R, cost 2 m n per column (no backward pass).

    Args:
        rows: R (m, n), e.g. ``hesslab.exact.fisher_rows``; ``op.rows`` keeps it.

    Example:
        >>> import torch, hesslab as hl
        >>> op = hl.FisherOperator(torch.tensor([[1.0, 2.0]], dtype=torch.float64))
        >>> op.to_dense().tolist()
        [[1.0, 2.0], [2.0, 4.0]]
    """

    def __init__(self, rows: Tensor):
        if not isinstance(rows, Tensor) or rows.ndim != 2:
            raise ValueError(f"rows must be a (m, n) tensor of per-sample gradients, got "
                             f"{tuple(rows.shape) if isinstance(rows, Tensor) else type(rows).__name__}.")
        super().__init__(rows_product(rows), rows.shape[1], rows.dtype, rows.device, chunk_size=rows.shape[1])
        self.rows = rows

    @classmethod
    def from_model(cls, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], data,
                   kind: str = "empirical", *, num_samples: int = 1, generator: torch.Generator | None = None,
                   params: str | Sequence[str] | None = None) -> "FisherOperator":
        """The empirical or Monte-Carlo Fisher of ``loss_fn(model(inputs), targets)`` (see ``hl.fisher``).

        empirical: F = (1/N) Σ_i g_i g_iᵀ, g_i = ∇ℓ_i at the data's targets (Σ_i for one batch of a sum loss);
        monte-carlo: the same with S targets per sample drawn from the model's predictive distribution, averaged;
        its expectation is the GGN (Kunstner, Balles & Hennig 2019; Martens 2020).

        Args:
            model: any ``nn.Module`` taking a batch along dim 0 (left unchanged).
            loss_fn: ``(outputs, targets) -> scalar``; for ``monte-carlo`` cross-entropy or the squared error.
            data: one ``(inputs, targets)`` batch or a re-iterable of batches, as in ``HessianOperator.from_model``.
            kind: ``"empirical"`` or ``"monte-carlo"``.
            num_samples: S >= 1, targets drawn per sample (``monte-carlo``), drawn once here.
            generator: the random source of the draws.
            params: parameter names for a per-layer block (default: all that require grad).

        Returns:
            The ``FisherOperator``, with ``x`` the flat parameters (and ``num_batches`` over batches).

        Cost: one batch: its per-sample gradients now (memory N·S·n), two matrix products per column. Over B
        batches: the draws now, and each batch's per-sample gradients again in every product (memory of one batch).

        Example:
            >>> import torch, hesslab as hl
            >>> model = torch.nn.Linear(3, 2).double()
            >>> X, y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
            >>> loss = torch.nn.functional.mse_loss
            >>> whole = hl.FisherOperator.from_model(model, loss, (X, y))
            >>> halves = hl.FisherOperator.from_model(model, loss, [(X[:4], y[:4]), (X[4:], y[4:])])
            >>> bool(torch.allclose(whole.to_dense(), halves.to_dense()))
            True
        """
        kind = check_choice("kind", kind, FISHER_KINDS, "empirical: the data's targets; monte-carlo: sampled ones.")
        num_samples = check_count("num_samples", num_samples, 1)
        generator = check_generator("generator", generator)
        single, batches = as_batches(data, _mean_reduction_check(model, loss_fn, params))
        if single is not None:
            op = cls(fisher_rows(model, loss_fn, *single, kind, num_samples=num_samples, generator=generator,
                                 params=params))
            op.x = flatten_parameters(select_parameters(model, params))
            return op
        x = flatten_parameters(select_parameters(model, params))
        # One seed per batch, drawn now: every product redraws the same targets, so the operator is one matrix.
        seeds = torch.randint(2**62, (len(batches),), generator=generator).tolist() if kind == "monte-carlo" else []
        op = cls._over_batches(batches, None, x)

        def pieces():
            for index, (weight, batch) in enumerate(batches):
                replay = torch.Generator(device=x.device).manual_seed(seeds[index]) if seeds else None
                yield weight, rows_product(fisher_rows(model, loss_fn, *batch, kind, num_samples=num_samples,
                                                       generator=replay, params=params))

        op._pieces = pieces
        return op


class KFACOperator(CurvatureOperator):
    """K-FAC (or EKFAC) of ``nn.Linear``, ``nn.Conv2d`` layers: block-diagonal, block ≈ G ⊗ A (``hesslab.kronecker``).

    A product applies each block to its layer's slice of V as a matrix, V̄ ↦ G V̄ A (V̄ = [V_W V_b], out × width,
    V_W reshaped to (out, -1)), never forming G ⊗ A: O(out² width + out width²) per column and layer. EKFAC's block is
    Q diag(s) Qᵀ with Q = Q_G ⊗ Q_A: V̄ ↦ Q_G ((Q_Gᵀ V̄ Q_A) ⊙ S) Q_Aᵀ. ``inverse_product(V, damping)`` is
    (K + λ I)⁻¹ V through the same eigenbasis, with eigenvalues λ_G,p λ_A,q (K-FAC) or s_pq (EKFAC).

    Args:
        factors: the layers' ``KroneckerFactors`` (``hesslab.kronecker.kfac_factors``).
        slices: per layer, ``(weight offset, bias offset or None)`` in the flat parameters.
        n: the number of parameters.
        corrected: use EKFAC's refitted diagonal.

    Example:
        >>> import torch, hesslab as hl
        >>> model = torch.nn.Linear(3, 2).double()
        >>> X, y = torch.randn(1, 3, dtype=torch.float64), torch.randn(1, 2, dtype=torch.float64)
        >>> loss = torch.nn.functional.mse_loss
        >>> K = hl.KFACOperator.from_model(model, loss, (X, y)).to_dense()  # exact for one sample
        >>> bool(torch.allclose(K, hl.GGNOperator.from_model(model, loss, (X, y)).to_dense()))
        True
    """

    def __init__(self, factors, slices, n: int, corrected: bool = False):
        first = factors[0].A
        super().__init__(self._apply, n, first.dtype, first.device, chunk_size=n)
        self.factors, self.slices, self.corrected = factors, slices, corrected

    @classmethod
    def from_model(cls, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], data,
                   flavour: str = "ggn", *, eigenvalue_corrected: bool = False, num_samples: int = 1,
                   generator: torch.Generator | None = None) -> "KFACOperator":
        """K-FAC (``eigenvalue_corrected=False``) or EKFAC of the ``nn.Linear`` and ``nn.Conv2d`` layers, on one batch.

        Args:
            model: the model; every parameter that requires grad must belong to an ``nn.Linear`` or an ``nn.Conv2d``
                (groups=1; a convolution's block is KFC's, see ``hesslab.kronecker``).
            loss_fn: ``(outputs, targets) -> scalar``, a mean or a sum over the samples.
            data: one ``(inputs, targets)`` batch.
            flavour: G's ``"ggn"`` (exact output Hessian), ``"monte-carlo"`` or ``"empirical"``.
            eigenvalue_corrected: EKFAC's diagonal refitted in the Kronecker eigenbasis.
            num_samples: S, targets drawn per sample (``monte-carlo``).
            generator: the random source of the draws.

        Returns:
            The ``KFACOperator`` over all the model's parameters, in ``model.parameters()`` order.

        Example:
            >>> import torch, hesslab as hl
            >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
            >>> X, y = torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1, 1, 0, 1, 0])
            >>> hl.KFACOperator.from_model(model, torch.nn.functional.cross_entropy, (X, y)).shape
            (26, 26)
        """
        single, _ = as_batches(data)
        if single is None:
            raise ValueError("KFACOperator.from_model takes one (inputs, targets) batch; concatenate the batches "
                             "(torch.cat) for their K-FAC.")
        factors = kfac_factors(model, loss_fn, *single, flavour, num_samples=num_samples, generator=generator,
                               eigenvalue_corrected=eigenvalue_corrected)
        named = select_parameters(model)
        offsets, offset = {}, 0
        for _, p in named:
            offsets[id(p)] = offset
            offset += p.numel()
        modules = dict(model.named_modules())
        slices = [(offsets[id(modules[f.name].weight)],
                   offsets[id(modules[f.name].bias)] if f.bias else None) for f in factors]
        op = cls(factors, slices, offset, corrected=eigenvalue_corrected)
        op.x = flatten_parameters(named)
        return op

    def _blocks(self, V: Tensor, matrix_product: Callable[[object, Tensor], Tensor]) -> Tensor:
        """Apply ``matrix_product(factors, V̄)`` (V̄: (k, out, width)) to every layer's slice of V (n, k)."""
        columns = V.reshape(V.shape[0], -1)
        k = columns.shape[1]
        result = columns.new_empty(columns.shape)  # contiguous: its slices are viewed as (out, inputs, k)
        for f, (w_at, b_at) in zip(self.factors, self.slices):
            out, width = f.G.shape[0], f.A.shape[0]
            inputs = width - 1 if f.bias else width
            M = columns[w_at: w_at + out * inputs].reshape(out, inputs, k)  # V_W row-major, the k columns last
            if f.bias:
                M = torch.cat([M, columns[b_at: b_at + out].reshape(out, 1, k)], dim=1)
            block = matrix_product(f, M.permute(2, 0, 1)).permute(1, 2, 0)  # (out, width, k)
            result[w_at: w_at + out * inputs].view(out, inputs, k).copy_(block[:, :inputs])
            if f.bias:
                result[b_at: b_at + out].copy_(block[:, inputs])
        return result.reshape(V.shape)

    def _apply(self, V: Tensor) -> Tensor:
        if self.corrected:
            return self._blocks(V, lambda f, M: f.basis_G @ ((f.basis_G.T @ M @ f.basis_A) * f.corrected)
                                @ f.basis_A.T)
        return self._blocks(V, lambda f, M: f.G @ M @ f.A)

    def inverse_product(self, V: Tensor, damping: float) -> Tensor:
        """(K + λ I)⁻¹ V through each block's eigenbasis: Q_G ((Q_Gᵀ V̄ Q_A) / (Λ + λ)) Q_Aᵀ.

        Args:
            V: (n,) or (n, k).
            damping: λ > 0 (λ = 0 allowed when every block is positive definite).

        Returns:
            The solution, shaped like V.

        Example:
            >>> import torch, hesslab as hl
            >>> model = torch.nn.Linear(2, 1).double()
            >>> X, y = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 1, dtype=torch.float64)
            >>> op = hl.KFACOperator.from_model(model, torch.nn.functional.mse_loss, (X, y))
            >>> v = torch.ones(3, dtype=torch.float64)
            >>> bool(torch.allclose(op @ op.inverse_product(v, 0.1) + 0.1 * op.inverse_product(v, 0.1), v))
            True
        """
        damping = check_positive("damping", damping, allow_zero=True)
        V = check_like("V", V, self.shape[0], self.dtype, self.device)

        def solve(f, M):
            values = f.corrected if self.corrected else torch.outer(f.eigen_G, f.eigen_A)
            return f.basis_G @ ((f.basis_G.T @ M @ f.basis_A) / (values + damping)) @ f.basis_A.T

        return check_finite_product(self._blocks(V, solve), "(K + λI)⁻¹", "a block is singular: raise damping")
