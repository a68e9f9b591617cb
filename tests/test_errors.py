"""Bad input gets a clear ValueError/TypeError naming the argument and the fix — never a silent NaN."""

import numpy as np
import pytest
import torch
from helpers import classification_data, random_symmetric, small_mlp
from torch.nn import functional as F

import hesslab as hl

quadratic = lambda x: (x**2).sum()  # noqa: E731


# --- the point x and the vector v ---
@pytest.mark.parametrize("x, error, message", [
    (torch.ones(2, 3), ValueError, "flat 1-D vector"),
    (torch.ones(3, dtype=torch.int64), TypeError, "floating dtype"),
    ([1.0, 2.0], TypeError, "torch.Tensor"),
    (torch.ones(0), ValueError, "empty"),
    (torch.tensor([1.0, float("nan")]), ValueError, "non-finite"),
    (torch.tensor([1.0, float("inf")]), ValueError, "non-finite"),
])
def test_bad_point(x, error, message):
    with pytest.raises(error, match=message):
        hl.hvp(quadratic, x, torch.ones(2))
    with pytest.raises(error, match=message):
        hl.hessian(quadratic, x)


@pytest.mark.parametrize("v, error, message", [
    (torch.ones(4), ValueError, r"shape \(3,\) or \(3, k\)"),
    (torch.ones(3, 2, 1), ValueError, "shape"),
    (torch.ones(3, dtype=torch.float32), TypeError, "dtype"),
    (torch.ones(3, dtype=torch.float64, device="meta"), ValueError, "is on meta"),
    (torch.tensor([0.0, float("nan"), 1.0], dtype=torch.float64), ValueError, "non-finite"),
    ("v", TypeError, "torch.Tensor"),
])
def test_bad_vector(v, error, message):
    with pytest.raises(error, match=message):
        hl.hvp(quadratic, torch.ones(3), v)
    with pytest.raises(error, match=message):
        hl.HessianOperator(quadratic, torch.ones(3)) @ v


def test_huge_but_finite_vector_is_accepted():
    """The fast finiteness check sums the entries; an overflowing sum of finite entries must not be an error."""
    v = torch.full((3,), 3e38, dtype=torch.float32)
    assert torch.isfinite(hl.hvp(quadratic, torch.ones(3, dtype=torch.float32), v * 0 + 1)).all()
    hl._checks.check_finite("v", v)  # raises nothing


def test_non_scalar_loss():
    with pytest.raises(ValueError, match="must return a scalar.*reduction='mean'"):
        hl.hvp(lambda x: x**2, torch.ones(3), torch.ones(3))
    model = small_mlp()
    X, y = classification_data()
    f, theta = hl.loss_function(model, lambda z, t: F.cross_entropy(z, t, reduction="none"), X, y)
    with pytest.raises(ValueError, match="must return a scalar"):
        hl.hessian(f, theta)


def test_non_finite_loss_at_the_point():
    with pytest.raises(ValueError, match="not finite"):
        hl.hvp(lambda x: torch.log(x).sum(), torch.tensor([1.0, 0.0]), torch.ones(2))


def test_function_that_ignores_its_argument():
    with pytest.raises(ValueError, match="does not depend on x"):
        hl.hvp(lambda x: torch.tensor(1.0), torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="does not depend on x"):
        hl.ggn(lambda x: torch.ones(2), lambda z: z.sum(), torch.ones(3))


def test_ggn_loss_must_be_scalar():
    with pytest.raises(ValueError, match="must return a scalar"):
        hl.ggn(lambda x: x * 2, lambda z: z**2, torch.ones(3))


# --- parameters and data ---
def test_parameter_selection_errors():
    model = small_mlp()
    X, y = classification_data()
    with pytest.raises(ValueError, match=r"not parameters of the model; available: \['0.weight'"):
        hl.loss_function(model, F.cross_entropy, X, y, params=["fc.weight"])
    with pytest.raises(ValueError, match="params is empty"):
        hl.loss_function(model, F.cross_entropy, X, y, params=[])
    model[0].weight.requires_grad_(False)
    with pytest.raises(ValueError, match=r"\['0.weight'\] do not require grad.*requires_grad_\(True\)"):
        hl.loss_function(model, F.cross_entropy, X, y, params=["0.weight"])
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no parameters that require grad"):
        hl.output_function(model, X)
    with pytest.raises(TypeError, match="nn.Module"):
        hl.loss_function(lambda x: x, F.cross_entropy, X, y)


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


# --- counts and options ---
@pytest.mark.parametrize("call, error, message", [
    (lambda A: hl.hutchinson_trace(A, 1), ValueError, "num_probes must be >= 2"),
    (lambda A: hl.hutchinson_trace(A, 3, "hutch++"), ValueError, "num_probes must be >= 4"),
    (lambda A: hl.hutchinson_trace(A, 10.0), TypeError, "num_probes must be an int"),
    (lambda A: hl.hutchinson_trace(A, 10, "exact"), ValueError, "'hutchinson' or 'hutch\\+\\+'"),
    (lambda A: hl.hutchinson_trace(A, 10, generator=0), TypeError, "torch.Generator"),
    (lambda A: hl.hutchinson_diagonal(A, 0), ValueError, "num_probes must be >= 1"),
    (lambda A: hl.lanczos(A, 0), ValueError, r"num_steps must be in \[1, 5\]"),
    (lambda A: hl.lanczos(A, 6), ValueError, r"num_steps must be in \[1, 5\].*more steps than the dimension"),
    (lambda A: hl.lanczos(A, 3, v0=torch.zeros(5)), ValueError, "zero column"),
    (lambda A: hl.lanczos(A, 3, v0=torch.ones(4)), ValueError, "v0 must have shape"),
    (lambda A: hl.top_eigen(A, 0), ValueError, r"k must be in \[1, 5\]"),
    (lambda A: hl.top_eigen(A, 6), ValueError, r"k must be in \[1, 5\]"),
    (lambda A: hl.top_eigen(A, 1, tol=0), ValueError, r"tol must be a finite number in \(0, inf\)"),
    (lambda A: hl.top_eigen(A, 1, which="BE"), ValueError, "which must be"),
    (lambda A: hl.top_eigen(A, 2, max_steps=1), ValueError, r"max_steps must be in \[2, 5\]"),
    (lambda A: hl.spectral_density(A, 6), ValueError, r"num_steps must be in \[1, 5\]"),
    (lambda A: hl.spectral_density(A, 2, num_probes=0), ValueError, "num_probes must be >= 1"),
    (lambda A: hl.spectral_density(A, 2).density(torch.zeros(3), sigma=0), ValueError,
     r"sigma must be a finite number in \(0, inf\)"),
])
def test_out_of_range_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call(random_symmetric(5))


def test_operator_like_arguments():
    with pytest.raises(ValueError, match="square"):
        hl.hutchinson_trace(torch.ones(3, 4), 4)
    with pytest.raises(TypeError, match="CurvatureOperator"):
        hl.top_eigen([[1.0]], 1)
    with pytest.raises(TypeError, match="floating dtype"):
        hl.lanczos(torch.eye(3, dtype=torch.int64), 2)


def test_seed_and_scale_errors(monkeypatch):
    with pytest.raises(TypeError, match="seed value must be an int"):
        hl.seed(1.5)
    monkeypatch.setenv("HESSLAB_SCALE", "huge")
    with pytest.raises(ValueError, match="HESSLAB_SCALE"):
        hl.scale()


# --- non-finite curvature (issue 12, item 2) ---
def kinked(x):
    """((x − 1)²).sum() + 0.1‖x‖: finite value and (sub)gradient at 0, Hessian 0/0 there (all NaN before)."""
    return ((x - 1) ** 2).sum() + 0.1 * x.norm()


@pytest.mark.parametrize("call", [
    lambda x: hl.hessian(kinked, x),
    lambda x: hl.hvp(kinked, x, torch.ones(3)),
    lambda x: hl.hvp(kinked, x, torch.ones(3, 2)),
    lambda x: hl.HessianOperator(kinked, x) @ torch.ones(3),
    lambda x: hl.HessianOperator(kinked, x) @ torch.ones(3, 4),
    lambda x: hl.HessianOperator(kinked, x).to_dense(),
    lambda x: hl.HessianOperator(kinked, x).to_scipy() @ np.ones(3),
    lambda x: hl.hutchinson_trace(hl.HessianOperator(kinked, x), 4),
    lambda x: hl.hutchinson_diagonal(hl.HessianOperator(kinked, x), 4),
    lambda x: hl.lanczos(hl.HessianOperator(kinked, x), 2),
    lambda x: hl.top_eigen(hl.HessianOperator(kinked, x), 1),
], ids=["hessian", "hvp", "hvp V", "op @ v", "op @ V", "to_dense", "to_scipy", "hutchinson_trace",
        "hutchinson_diagonal", "lanczos", "top_eigen"])
def test_non_finite_hessian_is_an_error_everywhere(call):
    with pytest.raises(ValueError, match=r"∇²f is not finite at this point \(f is not twice differentiable there"):
        call(torch.zeros(3))


def test_non_finite_ggn_is_an_error():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="the GGN Jᵀ H_L J is not finite at this point"):
        hl.ggn(lambda x: 2 * x, lambda z: z.norm(), x)
    with pytest.raises(ValueError, match="the GGN Jᵀ H_L J is not finite"):
        hl.GGNOperator(lambda x: 2 * x, lambda z: z.norm(), x) @ torch.ones(3)


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
