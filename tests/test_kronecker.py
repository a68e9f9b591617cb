"""K-FAC and EKFAC (hesslab.kronecker, hl.KFACOperator), float64, against the exact GGN and dense solves."""

import pytest
import torch
from torch import nn

import hesslab as hl
from hesslab.kronecker import kfac_factors

DTYPE = torch.float64


def data(num_samples, d_in=3, classes=2, seed=0, regression=False):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(num_samples, d_in, generator=g, dtype=DTYPE)
    if regression:
        return X, torch.randn(num_samples, classes, generator=g, dtype=DTYPE)
    return X, torch.randint(0, classes, (num_samples,), generator=g)


def mlp(*widths, activation=nn.Tanh, bias=True, seed=0):
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Linear(a, b, bias=bias)] + ([activation()] if activation and i < len(widths) - 2 else [])
    return nn.Sequential(*layers).double()


def layer_indices(op):
    """Per layer, the flat indices of W̄ = [W b] in row-major order, (out·width,)."""
    indices = []
    for f, (w_at, b_at) in zip(op.factors, op.slices):
        out, width = f.G.shape[0], f.A.shape[0]
        inputs = width - 1 if f.bias else width
        index = w_at + torch.arange(out * inputs).reshape(out, inputs)
        if f.bias:
            index = torch.cat([index, (b_at + torch.arange(out)).unsqueeze(1)], dim=1)
        indices.append(index.reshape(-1))
    return indices


def ggn_of(model, loss_fn, X, y):
    return hl.GGNOperator.from_model(model, loss_fn, (X, y)).to_dense()


@pytest.mark.parametrize("loss_fn, regression", [(nn.functional.cross_entropy, False),
                                                 (nn.functional.mse_loss, True),
                                                 (nn.MSELoss(reduction="sum"), True)])
@pytest.mark.parametrize("bias", [True, False])
def test_kfac_is_the_ggn_for_one_linear_layer_and_one_sample(loss_fn, regression, bias):
    model = mlp(3, 2, bias=bias)
    X, y = data(1, regression=regression)
    K = hl.KFACOperator.from_model(model, loss_fn, (X, y)).to_dense()
    torch.testing.assert_close(K, ggn_of(model, loss_fn, X, y), rtol=1e-12, atol=1e-14)


def test_kfac_is_each_ggn_block_of_a_deep_linear_net_for_one_sample():
    model = mlp(3, 4, 5, 2, activation=None)
    X, y = data(1)
    op = hl.KFACOperator.from_model(model, nn.functional.cross_entropy, (X, y))
    K, ggn = op.to_dense(), ggn_of(model, nn.functional.cross_entropy, X, y)
    for index in layer_indices(op):
        torch.testing.assert_close(K[index][:, index], ggn[index][:, index], rtol=1e-11, atol=1e-13)
    off = torch.ones_like(K, dtype=torch.bool)
    for index in layer_indices(op):
        off[index.unsqueeze(1), index] = False
    assert torch.count_nonzero(K[off]) == 0  # block-diagonal


def test_kfac_is_not_the_ggn_for_many_samples_but_ekfac_is_closer_on_every_block():
    model = mlp(3, 5, 3)
    X, y = data(20, classes=3)
    kfac = hl.KFACOperator.from_model(model, nn.functional.cross_entropy, (X, y))
    ekfac = hl.KFACOperator.from_model(model, nn.functional.cross_entropy, (X, y), eigenvalue_corrected=True)
    K, E, ggn = kfac.to_dense(), ekfac.to_dense(), ggn_of(model, nn.functional.cross_entropy, X, y)
    for index in layer_indices(kfac):
        block = ggn[index][:, index]
        kfac_error = torch.linalg.matrix_norm(K[index][:, index] - block)
        ekfac_error = torch.linalg.matrix_norm(E[index][:, index] - block)
        assert kfac_error > 1e-3 * torch.linalg.matrix_norm(block)  # K-FAC is an approximation here
        assert ekfac_error <= kfac_error  # the best diagonal in the same eigenbasis (George et al. 2018)


def test_ekfac_diagonal_is_the_exact_ggn_projected_on_the_kronecker_eigenbasis():
    model = mlp(3, 5, 3)
    X, y = data(20, classes=3)
    op = hl.KFACOperator.from_model(model, nn.functional.cross_entropy, (X, y), eigenvalue_corrected=True)
    ggn = ggn_of(model, nn.functional.cross_entropy, X, y)
    for f, index in zip(op.factors, layer_indices(op)):
        Q = torch.kron(f.basis_G, f.basis_A)
        projected = torch.diagonal(Q.T @ ggn[index][:, index] @ Q).reshape(f.corrected.shape)
        torch.testing.assert_close(f.corrected, projected, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("corrected", [False, True])
@pytest.mark.parametrize("damping", [1e-3, 1.0])
def test_inverse_products_solve_the_damped_system(corrected, damping):
    model = mlp(3, 5, 3)
    X, y = data(20, classes=3)
    op = hl.KFACOperator.from_model(model, nn.functional.cross_entropy, (X, y), eigenvalue_corrected=corrected)
    V = torch.randn(op.shape[0], 3, generator=torch.Generator().manual_seed(4), dtype=DTYPE)
    dense = op.to_dense() + damping * torch.eye(op.shape[0], dtype=DTYPE)
    torch.testing.assert_close(op.inverse_product(V, damping), torch.linalg.solve(dense, V), rtol=1e-9, atol=1e-10)


def test_the_empirical_and_monte_carlo_flavours_are_those_fishers_for_one_sample():
    model = mlp(3, 2)
    X, y = data(1)
    loss_fn = nn.functional.cross_entropy
    empirical = hl.KFACOperator.from_model(model, loss_fn, (X, y), "empirical").to_dense()
    torch.testing.assert_close(empirical, hl.fisher(model, loss_fn, X, y), rtol=1e-12, atol=1e-14)
    mc = hl.KFACOperator.from_model(model, loss_fn, (X, y), "monte-carlo", num_samples=5, generator=hl.seed(3))
    expected = hl.fisher(model, loss_fn, X, y, "monte-carlo", num_samples=5, generator=hl.seed(3))
    torch.testing.assert_close(mc.to_dense(), expected, rtol=1e-12, atol=1e-14)


def cnn(bias=True, seed=0):
    """(N, 2, 6, 6) -> 3 channels 6 x 6 (padding 1) -> 4 channels 2 x 2 (stride 2, dilation 2) -> 2 outputs."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=bias), nn.Tanh(),
                         nn.Conv2d(3, 4, 2, stride=2, dilation=2, bias=bias), nn.ReLU(), nn.Flatten(),
                         nn.Linear(16, 2, bias=bias)).double()


def images(num_samples, size=6, classes=2, seed=0, regression=False):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(num_samples, 2, size, size, generator=g, dtype=DTYPE)
    if regression:
        return X, torch.randn(num_samples, classes, generator=g, dtype=DTYPE)
    return X, torch.randint(0, classes, (num_samples,), generator=g)


@pytest.mark.parametrize("loss_fn, regression", [(nn.functional.cross_entropy, False),
                                                 (nn.MSELoss(reduction="sum"), True)])
@pytest.mark.parametrize("bias", [True, False])
def test_kfac_is_each_ggn_block_of_a_cnn_with_one_output_position_for_one_sample(loss_fn, regression, bias):
    torch.manual_seed(1)  # kernel = input size: each convolution has one output position, like a Linear layer
    model = nn.Sequential(nn.Conv2d(2, 3, 4, bias=bias), nn.Tanh(), nn.Conv2d(3, 4, 1, bias=bias),
                          nn.Flatten(), nn.Linear(4, 2, bias=bias)).double()
    X, y = images(1, size=4, regression=regression)
    op = hl.KFACOperator.from_model(model, loss_fn, (X, y))
    K, ggn = op.to_dense(), ggn_of(model, loss_fn, X, y)
    for index in layer_indices(op):
        torch.testing.assert_close(K[index][:, index], ggn[index][:, index], rtol=1e-11, atol=1e-13)
    single = nn.Sequential(nn.Conv2d(2, 3, 4, padding=1, stride=3, bias=bias), nn.Flatten()).double()  # 1 x 1 out
    ys = torch.randn(1, 3, dtype=DTYPE) if regression else y
    K = hl.KFACOperator.from_model(single, loss_fn, (X, ys)).to_dense()
    torch.testing.assert_close(K, ggn_of(single, loss_fn, X, ys), rtol=1e-11, atol=1e-13)  # the whole GGN


def test_kfac_of_a_convolution_with_many_positions_is_an_approximation_and_ekfac_its_exact_projection():
    model = cnn()
    X, y = images(1)  # one sample: the error is KFC's, from the sum over 36 and 4 positions
    op = hl.KFACOperator.from_model(model, nn.functional.cross_entropy, (X, y), eigenvalue_corrected=True)
    K = hl.KFACOperator.from_model(model, nn.functional.cross_entropy, (X, y)).to_dense()
    ggn = ggn_of(model, nn.functional.cross_entropy, X, y)
    for f, index in zip(op.factors[:2], layer_indices(op)[:2]):
        block = ggn[index][:, index]
        assert torch.linalg.matrix_norm(K[index][:, index] - block) > 1e-2 * torch.linalg.matrix_norm(block)
        Q = torch.kron(f.basis_G, f.basis_A)
        projected = torch.diagonal(Q.T @ block @ Q).reshape(f.corrected.shape)
        torch.testing.assert_close(f.corrected, projected, rtol=1e-10, atol=1e-13)


CURVLINOPS_FLAVOURS = {"ggn": "type-2", "empirical": "empirical"}


@pytest.mark.parametrize("flavour", ["ggn", "empirical"])
@pytest.mark.parametrize("loss_fn, regression", [(nn.CrossEntropyLoss(), False), (nn.MSELoss(), True),
                                                 (nn.CrossEntropyLoss(reduction="sum"), False)])
@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_kfac_matches_curvlinops(architecture, loss_fn, regression, flavour):
    """curvlinops' KFACLinearOperator (Dangel et al.; KFAC-expand for Conv2d) is the same matrix, to 1e-6."""
    curvlinops = pytest.importorskip("curvlinops")
    if architecture == "mlp":
        model, (X, y) = mlp(3, 5, 4, 2), data(16, regression=regression)
    else:
        model, (X, y) = cnn(), images(8, regression=regression)
    ours = hl.KFACOperator.from_model(model, loss_fn, (X, y), flavour).to_dense()
    params = [p for p in model.parameters()]
    theirs = curvlinops.KFACLinearOperator(model, loss_fn, params, [(X, y)], fisher_type=CURVLINOPS_FLAVOURS[flavour],
                                           kfac_approx="expand", separate_weight_and_bias=False,
                                           check_deterministic=False)
    dense = theirs @ torch.eye(ours.shape[0], dtype=DTYPE)
    if flavour == "empirical" and isinstance(loss_fn, nn.MSELoss):
        # curvlinops' empirical Fisher of a mean squared error takes sample i's loss as the sum over its C outputs
        # (with 1/(N C) in front), hesslab (hl.fisher) as loss_fn of that sample alone, the mean: a factor C apart.
        dense = dense / y.shape[1]
    torch.testing.assert_close(ours, dense, rtol=1e-6, atol=1e-9)
    assert torch.linalg.matrix_norm(ours) > 1e-3


def test_ekfac_of_a_cnn_matches_curvlinops():
    curvlinops = pytest.importorskip("curvlinops")
    model, (X, y) = cnn(), images(8)
    loss_fn = nn.CrossEntropyLoss()
    ours = hl.KFACOperator.from_model(model, loss_fn, (X, y), eigenvalue_corrected=True).to_dense()
    theirs = curvlinops.EKFACLinearOperator(model, loss_fn, list(model.parameters()), [(X, y)],
                                            fisher_type="type-2", separate_weight_and_bias=False,
                                            check_deterministic=False)
    torch.testing.assert_close(ours, theirs @ torch.eye(ours.shape[0], dtype=DTYPE), rtol=1e-6, atol=1e-9)


def test_refusals_name_the_problem():
    X, y = data(4)
    conv = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2)).double()
    with pytest.raises(ValueError, match="nn.Linear and nn.Conv2d layers only"):
        hl.KFACOperator.from_model(conv, nn.functional.cross_entropy, (X, y))
    grouped = nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Flatten(), nn.Linear(2, 2)).double()
    with pytest.raises(ValueError, match="groups=1"):
        hl.KFACOperator.from_model(grouped, nn.functional.cross_entropy, (torch.randn(4, 2, 3, 3, dtype=DTYPE), y))
    with pytest.raises(ValueError, match="flavour must be"):
        hl.KFACOperator.from_model(mlp(3, 2), nn.functional.cross_entropy, (X, y), "fisher")
    with pytest.raises(ValueError, match="one \\(inputs, targets\\) batch"):
        hl.KFACOperator.from_model(mlp(3, 2), nn.functional.cross_entropy, [(X, y), (X, y)])
    with pytest.raises(ValueError, match="damping"):
        hl.KFACOperator.from_model(mlp(3, 2), nn.functional.cross_entropy, (X, y)).inverse_product(
            torch.ones(8, dtype=DTYPE), -1.0)
    assert len(kfac_factors(mlp(3, 4, 2), nn.functional.cross_entropy, X, y)) == 2
