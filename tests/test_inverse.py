"""hesslab.inverse against dense float64 solves: CG and LiSSA over the zoo, LiSSA's refusals, M-FAC's inverse."""

import warnings

import pytest
import torch
import zoo
from helpers import small_mlp

import hesslab as hl
from hesslab import inverse

DTYPE = torch.float64


def _rhs(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)


def _damping_for(A: torch.Tensor) -> float:
    """Enough damping for a positive definite A + λI with a condition number of at most a few hundred."""
    lam = zoo.eigenvalues(A)
    return float(max(-lam[0], 0.0) + 0.01 * max(float(lam.abs().max()), 1.0) + 0.01)


@pytest.mark.parametrize("name", list(zoo.MATRICES))
@pytest.mark.parametrize("method", ["cg", "lissa"])
def test_solve_matches_dense_solve_over_the_zoo(name, method):
    A = zoo.MATRICES[name]
    n, damping = A.shape[0], _damping_for(A)
    b = _rhs(n)
    result = inverse.solve(A, b, damping, method=method, rtol=1e-11, generator=torch.Generator().manual_seed(0))
    exact = torch.linalg.solve(A + damping * torch.eye(n, dtype=DTYPE), b)
    assert result.converged and result.reason == "converged"
    # ‖x − x*‖ <= κ‖r‖/‖A+λI‖... bounded by ‖(A+λI)⁻¹‖ ‖r‖ with ‖r‖ <= rtol‖b‖
    bound = 1e-11 * float(b.norm()) / float(zoo.eigenvalues(A)[0] + damping) * 1.01 + 1e-13
    assert float((result.x - exact).norm()) <= bound
    assert len(result.history["error"]) == result.iterations + 1 == len(result.history["matvecs"])
    assert result.history["error"][-1] <= 1e-11


def test_lissa_error_contracts_by_the_predicted_factor():
    A = torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=DTYPE))
    b = torch.ones(3, dtype=DTYPE)
    result = inverse.solve(A, b, 0.0, method="lissa", scale=0.2, eigenvalue_bounds=(1.0, 4.0), rtol=1e-12)
    # the residual of x_j along eigenvalue λ is (1 − sλ)^j b: factors 0.8, 0.6 and 0.2
    error = result.history["error"]
    assert result.converged
    for j in (1, 10, 20):
        exact = (0.8 ** (2 * j) + 0.6 ** (2 * j) + 0.2 ** (2 * j)) ** 0.5 / 3**0.5
        assert error[j] == pytest.approx(exact, rel=1e-10)


def test_lissa_refuses_a_scale_that_diverges():
    A = torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=DTYPE))
    with pytest.raises(ValueError, match=r"scale·\(λ_max \+ λ\).*>= 2.*Pass scale <"):
        inverse.solve(A, torch.ones(3, dtype=DTYPE), 1.0, method="lissa", scale=0.4)  # 0.4·5 = 2


@pytest.mark.parametrize("name", ["negative dominant", "n=2 indefinite", "zero", "rank one"])
def test_lissa_refuses_negative_or_zero_curvature_without_enough_damping(name):
    A = zoo.MATRICES[name]
    with pytest.raises(ValueError, match=r"λ_min \+ λ.*<= 0.*Add damping"):
        inverse.solve(A, _rhs(A.shape[0]), 0.0, method="lissa", generator=torch.Generator().manual_seed(0))


def test_cg_reports_negative_curvature_and_warns():
    A = zoo.MATRICES["n=2 indefinite"]
    with pytest.warns(UserWarning, match="did not converge: negative curvature"):
        result = inverse.solve(A, torch.tensor([1.0, 1.0], dtype=DTYPE), 0.0)
    assert not result.converged and result.reason == "negative curvature"


def test_lissa_max_iter_warns_and_keeps_the_history():
    A = torch.diag(torch.tensor([0.01, 1.0], dtype=DTYPE))
    with pytest.warns(UserWarning, match="max_iter"):
        result = inverse.solve(A, torch.ones(2, dtype=DTYPE), 0.0, method="lissa", max_iter=5,
                               eigenvalue_bounds=(0.01, 1.0))
    assert result.reason == "max_iter" and result.iterations == 5 and result.num_matvecs == 5


def test_solve_on_a_hessian_operator_of_an_mlp():
    model = small_mlp()
    X, y = torch.randn(20, 4, dtype=DTYPE), torch.randint(0, 3, (20,))
    op = hl.GGNOperator.from_model(model, torch.nn.functional.cross_entropy, (X, y))
    b = _rhs(op.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = inverse.solve(op, b, 0.1, rtol=1e-10).x
    dense = op.to_dense() + 0.1 * torch.eye(op.shape[0], dtype=DTYPE)
    torch.testing.assert_close(x, torch.linalg.solve(dense, b), rtol=0, atol=1e-8)


@pytest.mark.parametrize("bad, match", [
    (dict(method="newton"), "method"), (dict(damping=-1.0), "damping"), (dict(max_iter=0), "max_iter"),
    (dict(method="lissa", scale=-1.0, eigenvalue_bounds=(1.0, 2.0)), "scale"),
    (dict(method="lissa", eigenvalue_bounds=(2.0,)), "eigenvalue_bounds"),
])
def test_solve_bad_arguments_are_named(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        inverse.solve(torch.eye(2, dtype=DTYPE), torch.ones(2, dtype=DTYPE), **{"damping": 0.0, **bad})


def test_solve_refuses_a_right_hand_side_of_another_size():
    with pytest.raises(ValueError, match=r"b must be a \(2,\) tensor"):
        inverse.solve(torch.eye(2, dtype=DTYPE), torch.ones(3, dtype=DTYPE))


# ----------------------------------------------------------------------------------------------------------------------
# M-FAC's Woodbury inverse
# ----------------------------------------------------------------------------------------------------------------------
def _mlp_gradients(num_samples: int = 16):
    model = small_mlp()
    X = torch.randn(num_samples, 4, generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    y = torch.randint(0, 3, (num_samples,), generator=torch.Generator().manual_seed(3))
    G, _ = hl.per_sample_gradients(model, torch.nn.functional.cross_entropy, X, y)
    return G


def _dense_fisher(G: torch.Tensor, damping: float) -> torch.Tensor:
    return damping * torch.eye(G.shape[1], dtype=DTYPE) + G.T @ G / G.shape[0]


@pytest.mark.parametrize("damping", [1e-2, 1.0])
@pytest.mark.parametrize("kind", ["mlp", "repeated", "zero rows", "m > d"])
def test_woodbury_inverse_matches_the_dense_inverse(kind, damping):
    G = {"mlp": _mlp_gradients(),
         "repeated": _mlp_gradients()[[0, 1, 0, 1, 2]],  # equal gradients: a rank-deficient sum
         "zero rows": torch.cat([_mlp_gradients()[:3], torch.zeros(2, 51, dtype=DTYPE)]),
         "m > d": torch.randn(12, 5, generator=torch.Generator().manual_seed(4), dtype=DTYPE)}[kind]
    F = _dense_fisher(G, damping)
    F_inv = torch.linalg.inv(F)
    woodbury = inverse.woodbury_fisher(G, damping)
    V = torch.randn(G.shape[1], 3, generator=torch.Generator().manual_seed(5), dtype=DTYPE)
    scale = float(torch.linalg.matrix_norm(F_inv, ord=2))
    assert float((woodbury.inverse_product(V) - F_inv @ V).abs().max()) <= 1e-10 * scale * float(V.abs().max())
    assert float((woodbury.inverse_product(V[:, 0]) - F_inv @ V[:, 0]).abs().max()) <= 1e-10 * scale
    assert float((woodbury.inverse_diagonal() - torch.diagonal(F_inv)).abs().max()) <= 1e-10 * scale
    index = torch.tensor([0, G.shape[1] - 1])
    assert float((woodbury.inverse_columns(index) - F_inv[:, index]).abs().max()) <= 1e-10 * scale
    torch.testing.assert_close(woodbury.product(V), F @ V, rtol=1e-12, atol=1e-12)


def test_woodbury_of_one_gradient_is_sherman_morrison():
    g = torch.tensor([3.0, 4.0], dtype=DTYPE)  # F = I + ggᵀ: F⁻¹g = g / (1 + ‖g‖²) = g/26
    x = inverse.woodbury_fisher(g[None], 1.0).inverse_product(g)
    torch.testing.assert_close(x, g / 26, rtol=1e-15, atol=0)


@pytest.mark.parametrize("gradients, damping, match", [
    (torch.ones(3, dtype=DTYPE), 1.0, "gradients must be a floating"),
    (torch.ones(0, 3, dtype=DTYPE), 1.0, r"gradients.shape\[0\]"),
    (torch.full((1, 3), float("nan"), dtype=DTYPE), 1.0, "finite"),
    (torch.ones(2, 3, dtype=DTYPE), 0.0, "damping"),
])
def test_woodbury_bad_arguments(gradients, damping, match):
    with pytest.raises(ValueError, match=match):
        inverse.woodbury_fisher(gradients, damping)
