"""Matrix-free operators against their dense matrices (float64)."""

import numpy as np
import pytest
import torch
from helpers import classification_data, random_symmetric, seeds, small_mlp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import eigsh
from torch import nn
from torch.nn import functional as F

import hesslab as hl

TOL = 1e-12


def test_hessian_operator_matches_dense(mlp_problem):
    _, _, _, f, theta = mlp_problem
    H = torch.func.hessian(f)(theta)
    op = hl.HessianOperator(f, theta)
    V = torch.randn(theta.numel(), 9)
    torch.testing.assert_close(op @ V, H @ V, atol=TOL, rtol=0)
    torch.testing.assert_close(op @ V[:, 0], H @ V[:, 0], atol=TOL, rtol=0)
    torch.testing.assert_close(op.to_dense(), H, atol=TOL, rtol=0)
    assert op.shape == (theta.numel(), theta.numel()) and op.dtype == torch.float64 and op.device.type == "cpu"


def test_repeated_products_at_a_fixed_point_stay_exact(mlp_problem):
    """The operator keeps the gradient's graph; products must not consume or alter it."""
    _, _, _, f, theta = mlp_problem
    op = hl.HessianOperator(f, theta)
    v = torch.randn(theta.numel())
    first = op @ v
    for _ in range(3):
        assert torch.equal(op @ v, first)


def test_from_model_single_batch_matches_loss_function(mlp_problem):
    model, X, y, f, theta = mlp_problem
    op = hl.HessianOperator.from_model(model, F.cross_entropy, (X, y))
    torch.testing.assert_close(op.to_dense(), hl.hessian(f, theta), atol=TOL, rtol=0)


def test_iterable_of_batches_gives_the_batch_size_weighted_mean(mlp_problem):
    """Unequal batches (7, 13, 10): the mean loss over all 30 samples has the Hessian Σ n_b H_b / N."""
    model, X, y, f, theta = mlp_problem
    batches = [(X[:7], y[:7]), (X[7:20], y[7:20]), (X[20:], y[20:])]
    H_full = hl.hessian(f, theta)
    torch.testing.assert_close(hl.HessianOperator.from_model(model, F.cross_entropy, batches).to_dense(), H_full,
                               atol=TOL, rtol=0)
    g, _ = hl.output_function(model, X)
    G_full = hl.ggn(g, lambda z: F.cross_entropy(z, y), theta)
    torch.testing.assert_close(hl.GGNOperator.from_model(model, F.cross_entropy, batches).to_dense(), G_full,
                               atol=TOL, rtol=0)


def test_data_loader_is_accepted(mlp_problem):
    model, X, y, f, theta = mlp_problem
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=8)
    op = hl.HessianOperator.from_model(model, F.cross_entropy, loader)
    v = torch.randn(theta.numel())
    torch.testing.assert_close(op @ v, hl.hvp(f, theta, v), atol=TOL, rtol=0)


def test_ggn_operator_matches_dense_ggn(mlp_problem):
    model, X, y, _, theta = mlp_problem
    g, _ = hl.output_function(model, X)
    loss_of_output = lambda z: F.cross_entropy(z, y)  # noqa: E731
    op = hl.GGNOperator(g, loss_of_output, theta)
    V = torch.randn(theta.numel(), 5)
    torch.testing.assert_close(op @ V, hl.ggn(g, loss_of_output, theta) @ V, atol=TOL, rtol=0)


def test_per_layer_operator_block(mlp_problem):
    model, X, y, f, theta = mlp_problem
    H = hl.hessian(f, theta)
    n0 = model[0].weight.numel() + model[0].bias.numel()
    op = hl.HessianOperator.from_model(model, F.cross_entropy, (X, y), params=["0.weight", "0.bias"])
    torch.testing.assert_close(op.to_dense(), H[:n0, :n0], atol=TOL, rtol=0)
    assert hl.hutchinson_trace(op, 4, generator=hl.seed(0, "cpu")).num_matvecs == 4


def test_to_scipy_works_with_eigsh(mlp_problem):
    _, _, _, f, theta = mlp_problem
    op = hl.HessianOperator(f, theta)
    linear_operator = op.to_scipy()
    assert linear_operator.shape == op.shape and linear_operator.dtype == np.float64
    v = np.random.default_rng(0).standard_normal(theta.numel())
    np.testing.assert_allclose(linear_operator @ v, (op @ torch.from_numpy(v)).numpy(), atol=TOL)
    top = eigsh(linear_operator, k=5, which="LA", return_eigenvectors=False)
    exact = torch.linalg.eigvalsh(op.to_dense()).numpy()[-5:]
    np.testing.assert_allclose(np.sort(top), exact, atol=1e-10)


def test_to_scipy_keeps_float32():
    op = hl.as_operator(random_symmetric(8).float())
    assert op.to_scipy().dtype == np.float32
    assert (op.to_scipy() @ np.ones(8, dtype=np.float32)).dtype == np.float32


def test_chunked_products_equal_unchunked():
    A = random_symmetric(12)
    op = hl.CurvatureOperator(lambda V: A @ V, 12, A.dtype, A.device, chunk_size=5)
    V = torch.randn(12, 13)
    torch.testing.assert_close(op @ V, A @ V, atol=TOL, rtol=0)


def test_to_dense_is_memory_guarded(mlp_problem):
    _, _, _, f, theta = mlp_problem
    with pytest.raises(ValueError, match="GiB"):
        hl.HessianOperator(f, theta).to_dense(max_memory=100)


# --- operators over batches (issue 12, item 4) ---
class SequenceFirst(nn.Module):
    """(T, B, F) inputs -> (B, C) outputs, or (T, B, C) per step with ``per_step=True``: batch on dim 1."""

    def __init__(self, features=3, hidden=4, classes=3, per_step=False):
        super().__init__()
        self.encode, self.decode, self.per_step = nn.Linear(features, hidden), nn.Linear(hidden, classes), per_step

    def forward(self, x):
        h = torch.tanh(self.encode(x))
        return self.decode(h if self.per_step else h.mean(0))


def sequence_data(T=5, B=10, features=3, classes=3, per_step=False, seed=4):
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(T, B, features, generator=generator)
    y = torch.randint(0, classes, (T, B) if per_step else (B,), generator=generator)
    return X, y


def tokens_cross_entropy(z, t):
    return F.cross_entropy(z.reshape(-1, z.shape[-1]), t.reshape(-1))


@pytest.mark.parametrize("per_step", [False, True], ids=["targets (B,)", "targets (T, B)"])
def test_sequence_first_batches_are_weighted_by_their_targets(per_step):
    """Inputs (T, B, F) split along B into batches of 3 and 7: the weights are the targets' entries (3 : 7, or
    3T : 7T), not len(inputs) = T for both (which was 32-60% off)."""
    torch.manual_seed(0)
    model = SequenceFirst(per_step=per_step).double()
    X, y = sequence_data(per_step=per_step)
    loss = tokens_cross_entropy if per_step else F.cross_entropy
    split = (lambda t, a, b: t[:, a:b]) if per_step else (lambda t, a, b: t[a:b])
    batches = [(X[:, :3], split(y, 0, 3)), (X[:, 3:], split(y, 3, 10))]
    f, theta = hl.loss_function(model, loss, X, y)
    H = hl.hessian(f, theta)
    torch.testing.assert_close(hl.HessianOperator.from_model(model, loss, batches).to_dense(), H, atol=TOL, rtol=0)
    g, _ = hl.output_function(model, X)
    G = hl.ggn(g, lambda z: loss(z, y), theta)
    torch.testing.assert_close(hl.GGNOperator.from_model(model, loss, batches).to_dense(), G, atol=TOL, rtol=0)


class CountingForward(nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module, self.calls = module, 0

    def forward(self, x):
        self.calls += 1
        return self.module(x)


@pytest.mark.parametrize("kind", ["hessian", "ggn"])
@pytest.mark.parametrize("samples_per_graph, graphs", [(1, 3), (20, 2), (1024, 1)])
def test_each_batch_graph_is_built_once_per_product(kind, samples_per_graph, graphs, mlp_problem):
    """V with 30 columns over 3 batches: one forward pass (one graph) per group of merged batches per product and
    per to_dense, not one per column block (90 before issue 12): 3 unmerged, 2 with groups of <= 20 samples, 1 when
    all merge."""
    model, X, y, f, theta = mlp_problem
    counted = CountingForward(model)
    batches = [(X[:10], y[:10]), (X[10:20], y[10:20]), (X[20:], y[20:])]
    Operator = hl.HessianOperator if kind == "hessian" else hl.GGNOperator
    op = Operator.from_model(counted, F.cross_entropy, batches, samples_per_graph=samples_per_graph)
    assert op.chunk_size == 1  # the CPU default: columns one at a time through each kept graph
    assert (op.num_batches, op.num_graphs) == (3, graphs)
    V = torch.randn(theta.numel(), 30, generator=torch.Generator().manual_seed(5))
    counted.calls = 0
    product = op @ V
    assert counted.calls == graphs
    counted.calls = 0
    dense = op.to_dense()
    assert counted.calls == graphs
    whole = Operator.from_model(model, F.cross_entropy, (X, y)).to_dense()
    torch.testing.assert_close(dense, whole, atol=TOL, rtol=0)
    torch.testing.assert_close(product, whole @ V, atol=TOL, rtol=0)


def test_a_shuffling_data_loader_is_refused(mlp_problem):
    """Shuffled batches make every product a different matrix (37-55% apart before issue 12)."""
    model, X, y, _, _ = mlp_problem
    dataset = torch.utils.data.TensorDataset(X, y)
    shuffling = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=True,
                                            generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"different batches on two passes.*same batches.*shuffle=False"):
        hl.HessianOperator.from_model(model, F.cross_entropy, shuffling)
    with pytest.raises(ValueError, match="different batches on two passes"):
        hl.GGNOperator.from_model(model, F.cross_entropy, shuffling)
    dropping = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=True, drop_last=True,
                                           generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="different batches on two passes"), pytest.warns(UserWarning, match="drops"):
        hl.HessianOperator.from_model(model, F.cross_entropy, dropping)


def test_random_augmentation_is_refused(mlp_problem):
    model, X, y, _, _ = mlp_problem

    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return len(X)

        def __getitem__(self, i):
            return X[i] + 0.01 * torch.randn(X.shape[1], dtype=X.dtype), y[i]

    loader = torch.utils.data.DataLoader(Noisy(), batch_size=10)
    with pytest.raises(ValueError, match=r"batch 0 differs"):
        hl.HessianOperator.from_model(model, F.cross_entropy, loader)


def test_drop_last_without_shuffling_is_one_matrix_and_warns(mlp_problem):
    model, X, y, _, theta = mlp_problem
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=8, drop_last=True)
    with pytest.warns(UserWarning, match="drops its last 6 samples"):
        op = hl.HessianOperator.from_model(model, F.cross_entropy, loader)
    f_kept, _ = hl.loss_function(model, F.cross_entropy, X[:24], y[:24])
    torch.testing.assert_close(op.to_dense(), hl.hessian(f_kept, theta), atol=TOL, rtol=0)


def test_data_that_changes_after_construction_is_an_error(mlp_problem):
    model, X, y, _, theta = mlp_problem
    batches = [(X[:10], y[:10]), (X[10:], y[10:])]
    op = hl.HessianOperator.from_model(model, F.cross_entropy, batches)
    batches.append((X[:5], y[:5]))
    with pytest.raises(ValueError, match="no longer gives the 2 batches"):
        op @ torch.ones(theta.numel())
    batches[:] = [(X[:12], y[:12]), (X[12:], y[12:])]
    with pytest.raises(ValueError, match="no longer gives"):
        op @ torch.ones(theta.numel())


@pytest.mark.parametrize("loss", [
    lambda z, t: F.cross_entropy(z, t, reduction="sum"),
    lambda z, t: F.mse_loss(z, F.one_hot(t, 3).double(), reduction="sum"),
    lambda z, t: F.cross_entropy(z, t, reduction="sum") / 30,  # a sum normalised by a fixed N is still a sum
], ids=["cross_entropy sum", "mse sum", "sum / N"])
def test_a_sum_over_the_batch_is_refused_over_several_batches(loss, mlp_problem):
    """Σ_b n_b H_b / N of batch *sums* is no curvature of the data (0.38x the truth before issue 12)."""
    model, X, y, _, _ = mlp_problem
    batches = [(X[:10], y[:10]), (X[10:], y[10:])]
    with pytest.raises(ValueError, match=r"sums over the batch.*reduction='mean'"):
        hl.HessianOperator.from_model(model, loss, batches)
    with pytest.raises(ValueError, match="sums over the batch"):
        hl.GGNOperator.from_model(model, loss, batches)


def test_a_sum_over_the_sequence_first_batch_is_refused():
    """The samples' axis of (T, B, C) outputs is found (dim 1) and a token sum is seen to double."""
    model = SequenceFirst(per_step=True).double()
    X, y = sequence_data(per_step=True)
    batches = [(X[:, :4], y[:, :4]), (X[:, 4:], y[:, 4:])]
    tokens_sum = lambda z, t: F.cross_entropy(z.reshape(-1, 3), t.reshape(-1), reduction="sum")  # noqa: E731
    with pytest.raises(ValueError, match="sums over the batch"):
        hl.HessianOperator.from_model(model, tokens_sum, batches)
    hl.HessianOperator.from_model(model, tokens_cross_entropy, batches)  # the mean is accepted


def test_a_sum_loss_on_one_batch_is_the_hessian_of_that_sum(mlp_problem):
    model, X, y, _, theta = mlp_problem
    loss = lambda z, t: F.cross_entropy(z, t, reduction="sum")  # noqa: E731
    f, _ = hl.loss_function(model, loss, X, y)
    torch.testing.assert_close(hl.HessianOperator.from_model(model, loss, (X, y)).to_dense(), hl.hessian(f, theta),
                               atol=TOL, rtol=0)


def test_a_loss_neither_mean_nor_sum_warns(mlp_problem):
    model, X, y, f, theta = mlp_problem
    loss = lambda z, t: torch.log(F.cross_entropy(z, t, reduction="sum"))  # noqa: E731
    with pytest.warns(UserWarning, match="neither a mean nor a sum"):
        hl.HessianOperator.from_model(model, loss, [(X[:10], y[:10]), (X[10:], y[10:])])


def test_endless_data_is_an_error_not_a_hang(mlp_problem, monkeypatch):
    model, X, y, _, _ = mlp_problem
    monkeypatch.setattr(hl.batches, "MAX_BATCHES", 5)

    class Endless:
        def __iter__(self):
            while True:
                yield X, y

    with pytest.raises(ValueError, match="more than 5 batches.*endless"):
        hl.HessianOperator.from_model(model, F.cross_entropy, Endless())


def test_dict_inputs_work_for_one_batch_and_for_batches():
    """``model(inputs)`` with inputs a dict of tensors, as loss_function accepts it; n_b from the targets."""

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(2, 3)

        def forward(self, inputs):
            return torch.tanh(self.a(inputs["x"])) + self.b(inputs["side"])

    torch.manual_seed(0)
    model = TwoInputs().double()
    X, y = classification_data()
    side = torch.randn(30, 2, generator=torch.Generator().manual_seed(9))
    inputs = {"x": X, "side": side}
    f, theta = hl.loss_function(model, F.cross_entropy, inputs, y)
    H = hl.hessian(f, theta)
    torch.testing.assert_close(hl.HessianOperator.from_model(model, F.cross_entropy, (inputs, y)).to_dense(), H,
                               atol=TOL, rtol=0)
    batches = [({"x": X[:13], "side": side[:13]}, y[:13]), ({"x": X[13:], "side": side[13:]}, y[13:])]
    torch.testing.assert_close(hl.HessianOperator.from_model(model, F.cross_entropy, batches).to_dense(), H,
                               atol=TOL, rtol=0)
    g, _ = hl.output_function(model, inputs)
    torch.testing.assert_close(hl.GGNOperator.from_model(model, F.cross_entropy, batches).to_dense(),
                               hl.ggn(g, lambda z: F.cross_entropy(z, y), theta), atol=TOL, rtol=0)


# --- dense matrices (issue 12, item 6) and empty shapes (item 7) ---
def test_as_operator_refuses_a_non_symmetric_matrix_with_the_fix():
    A = random_symmetric(8)
    A[0, 1] += 1e-10  # relative asymmetry ~1e-10, far above 10·√8·ε = 6.3e-15
    with pytest.raises(ValueError, match=r"not symmetric.*\(A \+ A.T\) / 2"):
        hl.as_operator(A)
    with pytest.raises(ValueError, match="not symmetric"):
        hl.hutchinson_trace(A, 4)
    with pytest.raises(ValueError, match="not symmetric"):
        hl.as_operator(torch.triu(torch.ones(5, 5)))
    hl.as_operator((A + A.T) / 2)


def test_symmetry_tolerance_accepts_rounding_of_symmetric_constructions():
    """XᵀX and QΛQᵀ, in float32 and float64: their rounding asymmetry (measured <= 2 ε) is accepted."""
    generator = torch.Generator().manual_seed(3)
    for dtype in (torch.float32, torch.float64):
        X = torch.randn(500, 40, generator=generator, dtype=dtype)
        hl.as_operator(X.T @ X / 500)
        hl.as_operator(random_symmetric(40).to(dtype))


def test_to_dense_of_a_dense_operator_is_the_matrix_itself():
    """A within the symmetry tolerance but not exactly symmetric: to_dense gives A, bit for bit (it gave Aᵀ)."""
    A = random_symmetric(6)
    A[0, 1] += 4 * torch.finfo(A.dtype).eps * A.norm()
    assert not torch.equal(A, A.T)
    op = hl.as_operator(A)
    assert torch.equal(op.to_dense(), A)
    V = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(op @ V, A @ V)


def test_zero_columns_give_an_empty_product(mlp_problem):
    _, _, _, f, theta = mlp_problem
    n = theta.numel()
    empty = torch.zeros(n, 0)
    for result in (hl.HessianOperator(f, theta) @ empty, hl.hvp(f, theta, empty), hl.as_operator(torch.eye(n)) @ empty):
        assert result.shape == (n, 0) and result.dtype == theta.dtype


def test_an_operator_on_zero_variables_is_refused():
    with pytest.raises(ValueError, match="0 x 0"):
        hl.as_operator(torch.zeros(0, 0))
    with pytest.raises(ValueError, match="n must be >= 1"):
        hl.CurvatureOperator(lambda V: V, 0, torch.float64, "cpu")


# --- properties that hold for every small problem, drawn by hypothesis (float64) ---
@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=2, max_value=12), seed=seeds)
def test_hessian_vector_products_are_symmetric_and_linear(n, seed):
    generator = torch.Generator().manual_seed(seed)
    W = torch.randn(n, n, generator=generator, dtype=torch.float64)
    x, v, w = (torch.randn(n, generator=generator, dtype=torch.float64) for _ in range(3))
    f = lambda x: torch.logsumexp(W @ torch.tanh(x), dim=0)  # noqa: E731
    op = hl.HessianOperator(f, x)
    assert abs(w @ (op @ v) - v @ (op @ w)) <= 1e-12 * (1 + (op @ v).norm() * w.norm())
    torch.testing.assert_close(op @ (2 * v - 3 * w), 2 * (op @ v) - 3 * (op @ w), atol=1e-12, rtol=0)
    torch.testing.assert_close(op @ torch.stack([v, w], 1), torch.stack([op @ v, op @ w], 1), atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# bad data and non-finite products: a clear error
# ----------------------------------------------------------------------------------------------------------------------
def test_data_errors():
    model = small_mlp()
    X, y = classification_data()
    with pytest.raises(ValueError, match="no batches"):
        hl.HessianOperator.from_model(model, F.cross_entropy, [])
    with pytest.raises(TypeError, match="one-shot iterator"):
        hl.HessianOperator.from_model(model, F.cross_entropy, ((X, y) for _ in range(2)))
    with pytest.raises(TypeError, match=r"\(inputs, targets\) pair"):
        hl.GGNOperator.from_model(model, F.cross_entropy, [(X, y, y)])
    with pytest.raises(TypeError, match=r"\(inputs, targets\) pair"):
        hl.HessianOperator.from_model(model, F.cross_entropy, X)
    with pytest.raises(ValueError, match="empty batch"):
        hl.HessianOperator.from_model(model, F.cross_entropy, (X[:0], y[:0]))
    with pytest.raises(ValueError, match="empty batch"):
        hl.HessianOperator.from_model(model, F.cross_entropy, [(X, y), (X[:0], y[:0])])


def test_non_finite_entries_of_a_model_hessian_are_counted():
    """Over batches each batch's product is checked; the message counts the bad entries."""
    model = small_mlp()
    X, y = classification_data()
    norm_loss = lambda z, t: F.cross_entropy(z, t) + (z - z.detach()).norm()  # noqa: E731  kink at the point
    with pytest.raises(ValueError, match=r"∇²f is not finite.*of 51 entries"):
        hl.HessianOperator.from_model(model, norm_loss, [(X[:10], y[:10]), (X[10:], y[10:])]) @ torch.ones(51)


def test_dense_operator_with_nan_or_overflowing_products():
    A = torch.eye(3)
    A[1, 1] = float("nan")
    with pytest.raises(ValueError, match="the dense operator A has 1 non-finite"):
        hl.as_operator(A)
    with pytest.raises(ValueError, match="non-finite"):
        hl.hutchinson_trace(A, 4)
    huge = torch.full((3, 3), 1e308)
    with pytest.raises(ValueError, match=r"is not finite at this point \(it is not defined at this point, or overflow"):
        hl.as_operator(huge) @ torch.ones(3)
