"""The validation helpers of hesslab._checks, and the public checks that became stricter when they moved there."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import hesslab as hl
from hesslab import _checks as checks
from hesslab import data, landscape, models
from hesslab.experiments import lazy_newton as lazy

NUMBERS = [3, 2.5, np.float64(2.5), np.float32(0.5), np.int64(3), torch.tensor(2.5), torch.tensor([4.0])]
NOT_NUMBERS = [True, False, np.bool_(True), "1.0", 1 + 2j, np.complex128(1), torch.tensor(True), torch.ones(2),
               None, [1.0]]
NOT_FINITE = [math.nan, math.inf, -math.inf, np.float64("nan"), torch.tensor(math.inf)]


# --- numbers ---
@pytest.mark.parametrize("value", NUMBERS)
def test_real_number_accepts_ints_floats_numpy_scalars_and_one_element_tensors(value):
    number = checks.check_real_number("x", value)
    assert type(number) is float and number == float(np.asarray(value).reshape(()))


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_real_number_refuses_bools_strings_complex_and_non_scalars(value):
    with pytest.raises(TypeError, match="x must be a real number"):
        checks.check_real_number("x", value)


@pytest.mark.parametrize("value", NOT_FINITE)
def test_real_number_refuses_nan_and_inf(value):
    with pytest.raises(ValueError, match=r"x must be a finite number in \(-inf, inf\)"):
        checks.check_real_number("x", value)


@pytest.mark.parametrize("open_, inside, outside", [
    ("neither", [0.0, 1.0], [-1e-12, 1 + 1e-12]),
    ("low", [1e-300, 1.0], [0.0]),
    ("high", [0.0, 1 - 1e-16], [1.0]),
    ("both", [0.5], [0.0, 1.0]),
])
def test_real_number_interval_ends(open_, inside, outside):
    for value in inside:
        assert checks.check_real_number("x", value, 0.0, 1.0, open=open_) == value
    for value in outside:
        with pytest.raises(ValueError, match="x must be a finite number in"):
            checks.check_real_number("x", value, 0.0, 1.0, open=open_)


@pytest.mark.parametrize("value", NUMBERS)
def test_positive_accepts_positive_numbers(value):
    assert checks.check_positive("tol", value) > 0


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_positive_refuses_non_numbers(value):
    with pytest.raises(TypeError, match="tol must be a real number"):
        checks.check_positive("tol", value)


@pytest.mark.parametrize("value", [*NOT_FINITE, 0, 0.0, -1e-300, -3])
def test_positive_refuses_zero_negative_and_non_finite(value):
    with pytest.raises(ValueError, match=r"tol must be a finite number in \(0, inf\), got .*Use 1e-6\."):
        checks.check_positive("tol", value, hint="Use 1e-6.")


def test_positive_allow_zero():
    assert checks.check_positive("damping", 0, allow_zero=True) == 0.0
    with pytest.raises(ValueError, match=r"damping must be a finite number in \[0, inf\)"):
        checks.check_positive("damping", -1e-300, allow_zero=True)


# --- counts ---
@pytest.mark.parametrize("value", [3, np.int64(3), np.int32(3)])
def test_count_accepts_python_and_numpy_ints(value):
    count = checks.check_count("k", value, 1)
    assert type(count) is int and count == 3


@pytest.mark.parametrize("value", [True, np.bool_(True), 3.0, "3", torch.tensor(3), None])
def test_count_refuses_bools_floats_strings_and_tensors(value):
    with pytest.raises(TypeError, match="k must be an int"):
        checks.check_count("k", value, 1)


def test_count_range_and_hint():
    with pytest.raises(ValueError, match=r"k must be in \[1, 4\], got 5\. there are only 4\."):
        checks.check_count("k", 5, 1, 4, hint="there are only 4.")
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        checks.check_count("k", 0, 1)


# --- choices ---
def test_choice_accepts_each_choice_and_returns_it():
    for choice in ("filter", "layer", None):
        assert checks.check_choice("normalization", choice, ("filter", "layer", None)) is choice


def test_choice_lists_the_choices():
    with pytest.raises(ValueError, match=r"method must be 'hutchinson' or 'hutch\+\+', got 'hutch'\."):
        checks.check_choice("method", "hutch", ("hutchinson", "hutch++"))
    with pytest.raises(ValueError, match=r"kind must be one of 'a', 'b', None, got 'c'\. Pick one\."):
        checks.check_choice("kind", "c", ("a", "b", None), hint="Pick one.")


@pytest.mark.parametrize("value", [True, 1.0, np.int64(1), "1", torch.tensor(1)])
def test_choice_compares_type_and_value(value):
    """True == 1 and 1.0 == 1 in Python; as a choice among (1, 2) neither is 1."""
    with pytest.raises(ValueError, match="dim must be 1 or 2"):
        checks.check_choice("dim", value, (1, 2))


def test_choice_accepts_a_str_subclass():
    assert checks.check_choice("method", np.str_("cg"), ("direct", "cg")) == "cg"


# --- generators, flags, callables, instances ---
def test_generator():
    g = torch.Generator().manual_seed(0)
    assert checks.check_generator("generator", g) is g
    assert checks.check_generator("generator", None) is None
    for bad in (0, "seed", np.random.default_rng(0)):
        with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None, got .*hl.seed\(0\)"):
            checks.check_generator("generator", bad)


def test_flag():
    assert checks.check_flag("progress", np.bool_(True)) is True
    assert checks.check_flag("progress", False) is False
    for bad in (1, 0, "no", None, torch.tensor(True)):
        with pytest.raises(TypeError, match="progress must be True or False"):
            checks.check_flag("progress", bad)


def test_callable():
    assert checks.check_callable("f", abs, "f(x) -> scalar") is abs
    with pytest.raises(TypeError, match=r"f must be a callable f\(x\) -> scalar, got Tensor"):
        checks.check_callable("f", torch.ones(2), "f(x) -> scalar")


def test_instance():
    model = nn.Linear(2, 1)
    assert checks.check_instance("model", model, nn.Module) is model
    with pytest.raises(TypeError, match=r"model must be a Module, got str\. Pass a torch.nn.Module\."):
        checks.check_instance("model", "mlp", nn.Module, hint="Pass a torch.nn.Module.")


# --- the public checks that became stricter (each accepted the bad value before) ---
A = torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64))
density = hl.spectral_density(A, 3, generator=torch.Generator().manual_seed(0))
a = b = torch.full((3,), 1 / 3, dtype=torch.float64)
C = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]], dtype=torch.float64)
quadratic = lambda x: (x**2).sum()  # noqa: E731
x3 = torch.ones(3, dtype=torch.float64)
net = nn.Linear(2, 2).double()
inputs, targets = torch.randn(4, 2, dtype=torch.float64), torch.tensor([0, 1, 0, 1])

STRICTER = [
    ("top_eigen tol=inf", lambda: hl.top_eigen(A, 1, tol=math.inf), ValueError, "tol must be a finite number"),
    ("top_eigen tol=True", lambda: hl.top_eigen(A, 1, tol=True), TypeError, "tol must be a real number"),
    ("density sigma=True", lambda: density.density(torch.zeros(3), True), TypeError, "sigma must be a real number"),
    ("density sigma=inf", lambda: density.density(torch.zeros(3), math.inf), ValueError, "sigma must be a finite"),
    ("sns threshold=nan", lambda: hl.transport.sinkhorn_newton_sparse(a, b, C, 0.1, threshold=math.nan),
     ValueError, "threshold must be a finite number"),
    ("sns threshold=np.bool_", lambda: hl.transport.sinkhorn_newton_sparse(a, b, C, 0.1, threshold=np.bool_(False)),
     TypeError, "threshold must be a real number"),
    ("second_difference step=inf", lambda: landscape.second_difference(quadratic, x3, x3, step=math.inf),
     ValueError, "step must be a finite number"),
    ("second_difference step=True", lambda: landscape.second_difference(quadratic, x3, x3, step=True),
     TypeError, "step must be a real number"),
    ("taylor_coefficients radius=inf", lambda: landscape.taylor_coefficients(torch.exp, 3, math.inf),
     ValueError, "radius must be a finite number"),
    ("taylor_coefficients radius=True", lambda: landscape.taylor_coefficients(torch.exp, 3, True),
     TypeError, "radius must be a real number"),
    ("train_full_batch lr=inf", lambda: models.train_full_batch(net, nn.functional.cross_entropy, inputs, targets,
                                                                lr=math.inf, max_steps=1),
     ValueError, "lr must be a finite number"),
    ("train_full_batch lr=True", lambda: models.train_full_batch(net, nn.functional.cross_entropy, inputs, targets,
                                                                 lr=True, max_steps=1),
     TypeError, "lr must be a real number"),
    ("gaussian_clusters spread=inf", lambda: data.gaussian_clusters(10, 2, 2, spread=math.inf),
     ValueError, "spread must be a finite number"),
    ("gaussian_clusters std=True", lambda: data.gaussian_clusters(10, 2, 2, std=True),
     TypeError, "std must be a real number"),
    ("gaussian_clusters generator=0", lambda: data.gaussian_clusters(10, 2, 2, generator=0),
     TypeError, "generator must be a torch.Generator"),
    ("mlp generator=0", lambda: models.mlp([2, 2], generator=0), TypeError, "generator must be a torch.Generator"),
    ("random_direction generator=0", lambda: landscape.random_direction(net, generator=0),
     TypeError, "generator must be a torch.Generator"),
    ("initial_parameters generator=0", lambda: hl.pde.ritz_energy(hl.pde.elliptic_problem(5), 4).initial_parameters(0),
     TypeError, "generator must be a torch.Generator"),
    ("AdaHessian spatial_averaging='no'", lambda: hl.optim.AdaHessian(net.parameters(), spatial_averaging="no"),
     TypeError, "spatial_averaging must be True or False"),
    ("Sophia update_every=2.0", lambda: hl.optim.Sophia(net.parameters(), update_every=2.0),
     TypeError, "update_every must be an int"),
    ("logistic_problem mu=inf", lambda: lazy.logistic_problem(mu=math.inf), ValueError, "mu must be a finite number"),
    ("CostModel hessian=True", lambda: hl.optimize.CostModel(hessian=True), TypeError,
     r"CostModel.hessian must be a real number"),
    ("seed 2**64", lambda: hl.seed(2**64), ValueError, r"seed value must be in \[-9223372036854775808"),
]


@pytest.mark.parametrize("call, error, message", [case[1:] for case in STRICTER], ids=[case[0] for case in STRICTER])
def test_stricter_public_checks(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_cost_model_stores_floats():
    cost = hl.optimize.CostModel(gradient=np.float32(2.0), hessian=torch.tensor(3.0))
    assert (cost.gradient, cost.hessian, cost.flops_per_gradient) == (2.0, 3.0, None)
    assert type(cost.gradient) is float and type(cost.hessian) is float


def test_seed_accepts_numpy_ints():
    first = torch.rand(1, generator=hl.seed(np.int64(3), "cpu"))
    assert torch.equal(first, torch.rand(1, generator=hl.seed(3, "cpu")))
