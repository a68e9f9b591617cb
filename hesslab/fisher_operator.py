"""The Fisher as a matrix-free operator: ``F V = Rᵀ (R V)`` from per-sample gradient rows R.

``FisherOperator.from_model`` follows ``HessianOperator.from_model``: one batch or a fixed re-iterable of batches
(the sample-weighted mean Σ_b n_b F_b / N of the batch Fishers, a mean loss required), ``params=`` blocks, the
parameters' dtype and device, and the memory guard of ``to_dense``. The rows are those of ``hesslab.exact.fisher_rows``:
empirical (the data's targets) or Monte-Carlo (targets drawn from the model's predictive distribution, once, when
the operator is made, so that every product is the same matrix).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ._checks import check_choice, check_count, check_generator
from .batches import as_batches
from .exact import FISHER_KINDS, Product, fisher_rows
from .functional import flatten_parameters, select_parameters
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
