"""Every operator and estimator over the shared zoo (tests/zoo.py), against the dense float64 answer.

Tolerances: exact computations (operators, dense Hessians/GGNs) agree with the reference to rounding, 1e-10
relative to the matrix's norm. Lanczos with ``tol=1e-10`` has residuals r_i <= 1e-10·|θ_i| + O(ε‖A‖), so each Ritz value
is within r_i of an eigenvalue: 1e-8·‖A‖ leaves a margin of 100 for the ε‖A‖ term. Monte-Carlo estimators must
land within 5 exact standard deviations (probability of a false alarm below 1e-6 per check, under the CLT).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import zoo

import hesslab as hl

SEEDS = range(5)


def scale(A: torch.Tensor) -> float:
    """max(1, ‖A‖₂): the yardstick of rounding errors in products with A."""
    return max(1.0, float(torch.linalg.matrix_norm(A, ord=2)))


def assert_orthonormal(Q: torch.Tensor, tol: float = 1e-10) -> None:
    gram = Q.T @ Q
    assert float((gram - torch.eye(gram.shape[0], dtype=gram.dtype)).abs().max()) <= tol, gram


# ----------------------------------------------------------------------------------------------------------------------
# structured matrices: Lanczos, top_eigen, Hutchinson, SLQ
# ----------------------------------------------------------------------------------------------------------------------
MATRIX_NAMES = list(zoo.MATRICES)


@pytest.mark.parametrize("name", MATRIX_NAMES)
@pytest.mark.parametrize("seed", SEEDS)
def test_top_eigen_finds_every_top_eigenvalue(name, seed):
    A = zoo.MATRICES[name]
    n = A.shape[0]
    exact = zoo.eigenvalues(A).flip(0)  # descending
    for k in sorted({1, min(4, n)}):
        result = hl.top_eigen(A, k=k, tol=1e-10, generator=torch.Generator().manual_seed(seed))
        values, vectors = result  # still unpacks as a pair
        assert result.converged
        torch.testing.assert_close(values.sort(descending=True).values, exact[:k], rtol=0, atol=1e-8 * scale(A))
        assert_orthonormal(vectors, 1e-8)
        true_residuals = torch.linalg.vector_norm(A @ vectors - vectors * values, dim=0)
        assert float(true_residuals.max()) <= 1e-8 * scale(A)
        torch.testing.assert_close(result.residuals.double(), true_residuals, rtol=0, atol=1e-8 * scale(A))


@pytest.mark.parametrize("name", MATRIX_NAMES)
def test_top_eigen_smallest_algebraic(name):
    A = zoo.MATRICES[name]
    k = min(2, A.shape[0])
    result = hl.top_eigen(A, k=k, tol=1e-10, which="SA", generator=torch.Generator().manual_seed(0))
    exact = zoo.eigenvalues(A)[:k]  # the most negative first
    assert result.converged, result.reason
    torch.testing.assert_close(result.values.sort().values, exact, rtol=0, atol=1e-8 * scale(A))


@pytest.mark.parametrize("name", MATRIX_NAMES)
@pytest.mark.parametrize("seed", SEEDS)
def test_lanczos_basis_orthonormal_and_tridiagonalises(name, seed):
    A = zoo.MATRICES[name]
    n = A.shape[0]
    result = hl.lanczos(A, n, generator=torch.Generator().manual_seed(seed))
    Q, alphas, betas = result.basis, result.alphas, result.betas
    assert torch.isfinite(Q).all() and torch.isfinite(alphas).all() and torch.isfinite(betas).all()
    assert_orthonormal(Q, 1e-10)
    T = torch.diag(alphas) + torch.diag(betas, 1) + torch.diag(betas, -1)
    torch.testing.assert_close(Q.T @ A @ Q, T, rtol=0, atol=1e-10 * scale(A))
    if Q.shape[1] == n:  # the whole space: T is A in another basis
        torch.testing.assert_close(torch.linalg.eigvalsh(T), zoo.eigenvalues(A), rtol=0, atol=1e-9 * scale(A))


@pytest.mark.parametrize("name", MATRIX_NAMES)
def test_hutchinson_trace_within_five_sigma(name):
    A = zoo.MATRICES[name]
    num_probes = 64
    off_diagonal = A - torch.diag(torch.diagonal(A))
    sigma = math.sqrt(2 * float((off_diagonal**2).sum()) / num_probes)  # Rademacher: Var zᵀAz = 2 Σ_{i≠j} A_ij²
    estimate = hl.hutchinson_trace(A, num_probes, generator=torch.Generator().manual_seed(0))
    assert math.isfinite(estimate.value) and math.isfinite(estimate.stderr)
    assert abs(estimate.value - float(torch.trace(A))) <= 5 * sigma + 1e-12 * scale(A) * A.shape[0]


@pytest.mark.parametrize("name", MATRIX_NAMES)
def test_hutchinson_diagonal_within_five_sigma(name):
    A = zoo.MATRICES[name]
    num_probes = 256
    off_diagonal = A - torch.diag(torch.diagonal(A))
    sigma = torch.sqrt((off_diagonal**2).sum(1) / num_probes)  # Var (z ⊙ Az)_i = Σ_{j≠i} A_ij²
    estimate = hl.hutchinson_diagonal(A, num_probes, generator=torch.Generator().manual_seed(0))
    error = (estimate - torch.diagonal(A)).abs()
    assert bool((error <= 5 * sigma + 1e-12 * scale(A)).all()), (error / sigma).max()


@pytest.mark.parametrize("name", MATRIX_NAMES)
def test_slq_moments_within_five_sigma(name):
    """Σ w_i θ_i^p estimates tr(A^p)/n, exactly per probe for p <= 2m − 1; its spread is at most that of the
    Gaussian-probe estimator, sqrt(2‖A^p‖_F² / (probes · n²))."""
    A = zoo.MATRICES[name]
    n = A.shape[0]
    num_probes, num_steps = 64, min(n, 4)
    density = hl.spectral_density(A, num_steps, num_probes, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(density.nodes).all() and torch.isfinite(density.weights).all()
    assert abs(float(density.weights.sum()) - 1) <= 1e-12
    for power in (1, 2):
        if power > 2 * num_steps - 1:
            continue
        Ap = torch.linalg.matrix_power(A, power)
        sigma = math.sqrt(2 * float((Ap**2).sum()) / (num_probes * n**2))
        exact = float(torch.trace(Ap)) / n
        assert abs(density.moment(power) - exact) <= 5 * sigma + 1e-12 * scale(A) ** power


# ----------------------------------------------------------------------------------------------------------------------
# models people bring: operators and dense matrices over one batch, three batches and a DataLoader
# ----------------------------------------------------------------------------------------------------------------------
MODEL_NAMES = list(zoo.MODELS)
MEAN_LOSS_MODELS = [name for name in MODEL_NAMES if zoo.case(name).mean_loss]


def _operator_or_refusal(cls, name, kind, samples_per_graph=1024):
    """The operator; for a summed loss over several batches, the refusal that says "sum" (then None)."""
    c = zoo.case(name)
    data = zoo.as_data(c, kind)
    if not c.mean_loss and kind != "one batch":
        with pytest.raises(ValueError, match="sum"):
            cls.from_model(c.model, c.loss_fn, data, samples_per_graph=samples_per_graph)
        return None
    return cls.from_model(c.model, c.loss_fn, data, samples_per_graph=samples_per_graph)


# Over batches each operator runs both ways: small batches merged into one graph (the default) and every batch its
# own graph (samples_per_graph=1).
DATA = [pytest.param(kind, merge, id=kind + ("" if kind == "one batch" else ", " + label))
        for kind in zoo.DATA_KINDS for merge, label in [(1024, "merged"), (1, "unmerged")]
        if kind != "one batch" or merge == 1024]


@pytest.mark.parametrize("kind, samples_per_graph", DATA)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_hessian_operator_matches_reference(name, kind, samples_per_graph):
    op = _operator_or_refusal(hl.HessianOperator, name, kind, samples_per_graph)
    if op is None:
        return
    H = zoo.reference_hessian(name, kind)
    tol = 1e-10 * scale(H)
    torch.testing.assert_close(op.to_dense(), H, rtol=0, atol=tol)
    V = torch.randn(H.shape[0], 3, generator=torch.Generator().manual_seed(1), dtype=H.dtype)
    first = op @ V
    torch.testing.assert_close(first, H @ V, rtol=0, atol=tol * 10)
    torch.testing.assert_close(op @ V[:, 0], H @ V[:, 0], rtol=0, atol=tol * 10)
    assert torch.equal(op @ V, first), "the operator changed between two products"


@pytest.mark.parametrize("kind, samples_per_graph", DATA)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_ggn_operator_matches_reference(name, kind, samples_per_graph):
    op = _operator_or_refusal(hl.GGNOperator, name, kind, samples_per_graph)
    if op is None:
        return
    G = zoo.reference_ggn(name, kind)
    torch.testing.assert_close(op.to_dense(), G, rtol=0, atol=1e-10 * scale(G))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_dense_hessian_and_ggn_match_reference(name):
    c = zoo.case(name)
    inputs, targets = c.batches[0]
    f, theta = hl.loss_function(c.model, c.loss_fn, inputs, targets)
    H = zoo.reference_hessian(name, "one batch")
    torch.testing.assert_close(hl.hessian(f, theta), H, rtol=0, atol=1e-10 * scale(H))
    g, theta = hl.output_function(c.model, inputs)
    G = zoo.reference_ggn(name, "one batch")
    torch.testing.assert_close(hl.ggn(g, lambda z: c.loss_fn(z, targets), theta), G, rtol=0, atol=1e-10 * scale(G))


@pytest.mark.parametrize("name", MEAN_LOSS_MODELS)
def test_estimators_on_model_operators(name):
    c = zoo.case(name)
    op = hl.HessianOperator.from_model(c.model, c.loss_fn, zoo.as_data(c, "three batches"))
    H = zoo.reference_hessian(name, "three batches")
    result = hl.top_eigen(op, k=2, tol=1e-10, generator=torch.Generator().manual_seed(0))
    exact = zoo.eigenvalues(H).flip(0)[:2]
    torch.testing.assert_close(result.values.sort(descending=True).values, exact, rtol=0, atol=1e-8 * scale(H))
    num_probes = 32
    off_diagonal = H - torch.diag(torch.diagonal(H))
    sigma = math.sqrt(2 * float((off_diagonal**2).sum()) / num_probes)
    estimate = hl.hutchinson_trace(op, num_probes, generator=torch.Generator().manual_seed(0))
    assert abs(estimate.value - float(torch.trace(H))) <= 5 * sigma + 1e-10 * scale(H)


@pytest.mark.parametrize("cls", [hl.HessianOperator, hl.GGNOperator])
@pytest.mark.parametrize("loader_options", [dict(shuffle=True), dict(shuffle=True, batch_size=5)])
def test_data_that_changes_between_passes_is_refused(cls, loader_options):
    """A shuffling DataLoader (with or without a short last batch) would give a different matrix every product."""
    c = zoo.case("mlp tanh")
    with pytest.raises(ValueError, match="same"):
        cls.from_model(c.model, c.loss_fn, zoo.loader(c, **loader_options))


def test_drop_last_shuffling_loader_is_refused():
    c = zoo.case("mlp tanh")
    inputs, targets = zoo._concatenate(c)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs, targets), batch_size=5, shuffle=True,
                                       drop_last=True, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="same"):
        hl.HessianOperator.from_model(c.model, c.loss_fn, data)


@pytest.mark.parametrize("cls", [hl.HessianOperator, hl.GGNOperator])
def test_unused_parameter_block_has_zero_curvature(cls):
    c = zoo.case("unused head")
    block = ["unused_head.weight", "unused_head.bias"]
    op = cls.from_model(c.model, c.loss_fn, zoo.as_data(c, "three batches"), params=block)
    assert torch.equal(op.to_dense(), torch.zeros(op.shape, dtype=op.dtype))
    f, theta = hl.loss_function(c.model, c.loss_fn, *c.batches[0], params=block)
    assert torch.equal(hl.hessian(f, theta), torch.zeros(op.shape, dtype=op.dtype))


def test_hessian_in_training_mode_keeps_batchnorm_statistics():
    model = copy.deepcopy(zoo.case("cnn batchnorm eval").model).train()
    inputs, targets = zoo.case("cnn batchnorm eval").batches[0]
    before = {name: b.clone() for name, b in model.named_buffers()}
    with pytest.warns(UserWarning, match="training mode"):
        f, theta = hl.loss_function(model, torch.nn.functional.cross_entropy, inputs, targets)
    hl.hessian(f, theta)
    with pytest.warns(UserWarning, match="training mode"):
        op = hl.HessianOperator.from_model(model, torch.nn.functional.cross_entropy, [(inputs, targets)] * 2)
    op @ torch.ones(op.shape[0], dtype=op.dtype)
    for name, b in model.named_buffers():
        assert torch.equal(b, before[name]), f"{name} changed"


# ----------------------------------------------------------------------------------------------------------------------
# merging small batches into one graph (hesslab._merging): only where the loss is provably unchanged
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MEAN_LOSS_MODELS)
def test_small_batches_merge_unless_the_first_dimension_is_not_the_samples(name):
    """Every mean-loss zoo model merges its three small batches into one graph, except the sequence-first LSTM:
    its inputs (T, B, F) and targets (B,) share no first dimension, so they are never concatenated."""
    c = zoo.case(name)
    for kind in ("three batches", "loader"):
        op = hl.HessianOperator.from_model(c.model, c.loss_fn, zoo.as_data(c, kind))
        assert (op.num_batches, op.num_graphs) == (3, 3 if name == "lstm sequence-first" else 1)


def _batch_hessians_mean(model, loss_fn, batches) -> torch.Tensor:
    """Σ_b n_b H_b / N, each H_b the dense Hessian of one batch's loss (hl.hessian)."""
    parts = []
    for inputs, targets in batches:
        f, theta = hl.loss_function(model, loss_fn, inputs, targets)
        parts.append((targets.numel(), hl.hessian(f, theta)))
    return sum(n * H for n, H in parts) / sum(n for n, _ in parts)


def _merged_hessian(model, loss_fn, batches) -> torch.Tensor:
    inputs = torch.cat([b[0] for b in batches], dim=0)
    targets = torch.cat([b[1] for b in batches], dim=0)
    f, theta = hl.loss_function(model, loss_fn, inputs, targets)
    return hl.hessian(f, theta)


def _refused_merge(model, loss_fn, batches):
    """The operator over ``batches`` must keep every batch its own graph, and be Σ n_b H_b / N, which differs from the
    merged batch's Hessian (so merging would have been a wrong matrix, not a rounding)."""
    op = hl.HessianOperator.from_model(model, loss_fn, batches)
    assert op.num_graphs == len(batches)
    expected = _batch_hessians_mean(model, loss_fn, batches)
    torch.testing.assert_close(op.to_dense(), expected, rtol=0, atol=1e-10 * scale(expected))
    merged = _merged_hessian(model, loss_fn, batches)
    assert float((merged - expected).norm() / expected.norm()) > 1e-3


def test_batch_norm_in_training_mode_is_not_merged():
    """Batch statistics make the loss of the merged batch differ from the mean of the batch losses."""
    model = copy.deepcopy(zoo.case("cnn batchnorm eval").model).train()
    batches = list(zoo.case("cnn batchnorm eval").batches)
    with pytest.warns(UserWarning, match="training mode"):
        _refused_merge(model, torch.nn.functional.cross_entropy, batches)


def test_class_weights_are_not_merged():
    """With class weights a batch's mean divides by its own Σ w_y, so batches do not combine by n_b."""
    c = zoo.case("mlp tanh")
    weight = torch.tensor([0.2, 1.0, 3.0], dtype=torch.float64)
    _refused_merge(c.model, lambda z, y: torch.nn.functional.cross_entropy(z, y, weight=weight), list(c.batches))


def test_a_sequence_first_time_axis_is_not_merged():
    """(T, B, F) inputs with (T, B) targets share the first dimension T: concatenating along it would make longer
    sequences, which an LSTM carries its state through. The check on the losses catches it."""
    class PerStep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.head = torch.nn.LSTM(3, 4).double(), torch.nn.Linear(4, 2).double()

        def forward(self, x):
            return self.head(self.lstm(x)[0])  # (T, B, 2)

    torch.manual_seed(0)
    model = PerStep()
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(5, 2, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (5, 2), generator=g))
               for _ in range(3)]

    def loss_fn(z, y):
        return torch.nn.functional.cross_entropy(z.reshape(-1, 2), y.reshape(-1))

    _refused_merge(model, loss_fn, batches)


def test_merged_groups_respect_samples_per_graph_and_weights():
    """Groups of at most samples_per_graph samples; a group's weight is Σ n_b / N; a bad limit is an error."""
    c = zoo.case("mlp tanh")
    batches = list(c.batches)  # 4, 3 and 5 samples (see zoo)
    sizes = [len(b[1]) for b in batches]
    for limit, graphs in [(1, 3), (sizes[0] + sizes[1], 2), (sum(sizes), 1)]:
        op = hl.GGNOperator.from_model(c.model, c.loss_fn, batches, samples_per_graph=limit)
        assert op.num_graphs == graphs
        torch.testing.assert_close(op.to_dense(), zoo.reference_ggn("mlp tanh", "three batches"), rtol=0,
                                   atol=1e-10)
    for bad in (0, -1, 2.5, True):
        with pytest.raises((ValueError, TypeError), match="samples_per_graph"):
            hl.HessianOperator.from_model(c.model, c.loss_fn, batches, samples_per_graph=bad)


def test_batch_norm_with_zero_scale_in_training_mode_is_not_merged():
    """γ = 0 (the zero-initialised last batch norm of a residual block): the outputs, hence the loss, do not depend on
    the batch statistics, but the curvature in γ does. Merging must be decided on the curvature, not the loss."""
    model = copy.deepcopy(zoo.case("cnn batchnorm eval").model).train()
    with torch.no_grad():
        model[1].weight.zero_()
    batches = list(zoo.case("cnn batchnorm eval").batches)
    with pytest.warns(UserWarning, match="training mode"):
        _refused_merge(model, torch.nn.functional.cross_entropy, batches)


def test_merged_graphs_stay_within_the_memory_cap(monkeypatch):
    """Groups hold at most MERGED_GRAPH_BYTES of graph, at the first batch's bytes per sample (measured through
    autograd's saved tensors): a cap of one batch's graph merges nothing, a cap of two merges pairs."""
    from hesslab import batches as batches_module
    from hesslab._merging import saved_bytes

    c = zoo.case("mlp tanh")
    data = [(c.batches[0][0][:3], c.batches[0][1][:3]), (c.batches[1][0][:3], c.batches[1][1][:3]),
            (c.batches[2][0][:3], c.batches[2][1][:3])]  # three batches of 3 samples
    f, theta = hl.loss_function(c.model, c.loss_fn, *data[0])
    _, held = saved_bytes(lambda: hl.HessianOperator(f, theta))
    assert held > 0
    per_sample = held / 3
    for cap, graphs in [(held, 3), (2 * held, 2), (3 * held, 1)]:
        monkeypatch.setattr(batches_module, "MERGED_GRAPH_BYTES", cap + per_sample / 2)
        op = hl.HessianOperator.from_model(c.model, c.loss_fn, data)
        assert op.num_graphs == graphs, cap
        torch.testing.assert_close(op.to_dense(), _batch_hessians_mean(c.model, c.loss_fn, data), rtol=0,
                                   atol=1e-12)
