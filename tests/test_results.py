"""One result shape (DESIGN.md, "Results"): every iterative method's result has converged, reason, iterations and a
history of read-only float arrays of length iterations + 1 with at least "error" and "seconds"; and
plot.plot_convergence draws any of them."""

import importlib
import inspect
import math
import pkgutil
import warnings

import matplotlib
import numpy as np
import pytest
import torch

import hesslab as hl
from hesslab import _results, plot
from hesslab.experiments import adahessian_and_sophia, lazy_newton

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)


def _quadratic_plus_quartic(x):
    return 0.5 * (x * torch.arange(1.0, x.numel() + 1, dtype=x.dtype) * x).sum() + 0.25 * (x**4).sum()


def _transport_problem():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 2, generator=generator, dtype=torch.float64), torch.rand(9, 2, generator=generator,
                                                                                   dtype=torch.float64)
    C = torch.cdist(x, y) ** 2
    return torch.full((12,), 1 / 12, dtype=torch.float64), torch.full((9,), 1 / 9, dtype=torch.float64), C


def _ritz():
    return hl.pde.ritz_energy(hl.pde.elliptic_problem(7, 1, hl.pde.quartic(2.0)), 5, 12)


def _runs():
    """One real, small run of every iterative method: (name, result, the class it must be)."""
    x0 = torch.ones(4, dtype=torch.float64)
    a, b, C = _transport_problem()
    problem = hl.pde.elliptic_problem(15, 1)
    ritz = _ritz()
    theta0 = ritz.initial_parameters(torch.Generator().manual_seed(0))
    A = torch.diag(torch.arange(1.0, 31.0, dtype=torch.float64))
    return [
        ("newton", hl.optimize.newton(_quadratic_plus_quartic, x0), hl.optimize.NewtonResult),
        ("damped_newton", hl.optimize.damped_newton(_quadratic_plus_quartic, x0), hl.optimize.NewtonResult),
        ("lazy_newton", hl.optimize.lazy_newton(_quadratic_plus_quartic, x0, update_every=3), hl.optimize.NewtonResult),
        ("sinkhorn", hl.transport.sinkhorn(a, b, C, 0.1, tol=1e-9), hl.transport.SinkhornResult),
        ("sinkhorn_newton_sparse", hl.transport.sinkhorn_newton_sparse(a, b, C, 0.1, tol=1e-9),
         hl.transport.SinkhornResult),
        ("pde.gradient_descent", hl.pde.gradient_descent(problem), hl.pde.PDESolveResult),
        ("pde.preconditioned_gradient_descent", hl.pde.preconditioned_gradient_descent(problem),
         hl.pde.PDESolveResult),
        ("pde.newton", hl.pde.newton(problem), hl.pde.PDESolveResult),
        ("pde.newton cg", hl.pde.newton(problem, linear_solver="cg"), hl.pde.PDESolveResult),
        ("train_ritz_adam", hl.pde.train_ritz_adam(ritz, theta0, steps=20), hl.pde.RitzTrainingResult),
        ("train_ritz_gauss_newton", hl.pde.train_ritz_gauss_newton(ritz, theta0, steps=5), hl.pde.RitzTrainingResult),
        ("conjugate_gradient", hl.linalg.conjugate_gradient(lambda v: A @ v, torch.ones(30, dtype=torch.float64),
                                                              max_iter=60),
         hl.linalg.CGResult),
        ("inverse.solve cg", hl.inverse.solve(A, torch.ones(30, dtype=torch.float64), damping=1.0),
         hl.inverse.SolveResult),
        ("inverse.solve lissa", hl.inverse.solve(A / 30, torch.ones(30, dtype=torch.float64), damping=0.5,
                                                 method="lissa", rtol=1e-8, eigenvalue_bounds=(1 / 30, 1.0)),
         hl.inverse.SolveResult),
        ("top_eigen k=1", hl.top_eigen(A, generator=torch.Generator().manual_seed(0)), hl.EigenResult),
        ("top_eigen k=3", hl.top_eigen(A, k=3, generator=torch.Generator().manual_seed(0)), hl.EigenResult),
        ("toy_sophia", adahessian_and_sophia.toy_sophia(), adahessian_and_sophia.Run),
        ("toy_newton", adahessian_and_sophia.toy_newton(), adahessian_and_sophia.Run),
        ("train", adahessian_and_sophia.train("SophiaH", steps=20, eval_every=5), adahessian_and_sophia.Run),
    ]


@pytest.fixture(scope="module")
def runs():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # every one of these small runs converges
        return _runs()


def test_every_iterative_result_has_the_one_shape(runs):
    for name, result, cls in runs:
        assert isinstance(result, cls), name
        # unconverged by design: Newton on the toy stops at its saddle; 20 steps of training do not reach the target
        expected = name not in ("toy_newton", "train")
        assert isinstance(result.converged, bool) and result.converged == expected, (name, result.reason)
        assert isinstance(result.reason, str) and result.reason, name
        assert isinstance(result.iterations, int) and result.iterations >= 1, name
        history = result.history
        assert isinstance(history, dict) and {"error", "seconds"} <= set(history), (name, sorted(history))
        for column, values in history.items():
            assert isinstance(values, np.ndarray) and values.dtype == np.float64, (name, column)
            assert values.shape == (result.iterations + 1,), (name, column, values.shape, result.iterations)
            assert not values.flags.writeable, (name, column)
        seconds = history["seconds"]
        assert seconds[0] >= 0 and np.all(np.diff(seconds) >= 0), name
        error = history["error"]  # inf only where nothing is known yet (top_eigen before it has k Ritz values)
        assert not np.isnan(error).any() and np.isfinite(error[-1]) and error[-1] >= 0, name


def test_the_error_column_is_each_method_s_own_convergence_measure(runs):
    by_name = {name: result for name, result, _ in runs}
    newton = by_name["newton"]
    x = newton.x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(_quadratic_plus_quartic(x), x)
    assert newton.history["error"][-1] == pytest.approx(gradient.norm().item(), rel=1e-12)
    assert newton.history["error"][-1] <= 1e-8
    sinkhorn = by_name["sinkhorn"]
    a, b, _ = _transport_problem()
    marginal = ((sinkhorn.plan.sum(1) - a).abs().sum() + (sinkhorn.plan.sum(0) - b).abs().sum()).item()
    assert sinkhorn.history["error"][-1] == pytest.approx(marginal, rel=1e-6, abs=1e-15)
    pde = by_name["pde.newton"]
    assert pde.history["error"][-1] == pytest.approx(hl.pde.elliptic_problem(15, 1).residual_norm(pde.u), rel=1e-3)
    eig = by_name["top_eigen k=1"]
    assert eig.history["error"][0] == math.inf and eig.history["error"][-1] <= 1e-6  # the stopping test: r <= tol|θ|
    assert eig.history["matvecs"][-1] == eig.num_matvecs - 1  # the one residual check comes after the iterations
    counts = by_name["newton"].history
    assert np.all(np.diff(counts["cost"]) > 0) and counts["gradients"][0] == 1


def test_lazy_newton_trace_has_the_shape():
    trace = lazy_newton.lazy_run("breast_cancer", 2)
    assert trace.converged and trace.reason and trace.iterations == len(trace.history["gap"]) - 1
    assert {"error", "seconds", "cost", "gap"} <= set(trace.history)
    assert all(values.shape == (trace.iterations + 1,) for values in trace.history.values())


def test_every_result_class_in_hesslab_is_covered(runs):
    """A new *Result class must come with a run above (or say why it is not an iterative result)."""
    # LanczosResult: m steps asked for, m steps done, a decomposition, not a stopping method. LineSearchResult: one
    # step of an outer method (its trials are not iterates), reported by the method's own history. PruneResult: a
    # closed-form pruning (OBS, magnitude), no iterations.
    not_iterative = {"LanczosResult", "LineSearchResult", "PruneResult"}
    covered = {cls.__name__ for _, _, cls in _runs()}
    found = set()
    for module in pkgutil.walk_packages(hl.__path__, "hesslab."):
        if module.name.startswith("hesslab.experiments") or module.name.endswith("__main__"):
            continue
        for name, obj in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if name.endswith("Result") and obj.__module__.startswith("hesslab"):
                found.add(name)
    assert found - not_iterative <= covered, found - not_iterative - covered


# --- the helper -------------------------------------------------------------------------------------------------------
def test_history_checks_lengths_and_required_columns():
    history = _results.history({"error": [3, 2, 1], "seconds": [0, 0.1, 0.2]}, iterations=2)
    assert history["error"].dtype == np.float64 and not history["error"].flags.writeable
    with pytest.raises(ValueError, match="length 3"):
        _results.history({"error": [3, 2, 1], "seconds": [0, 0.1]})
    with pytest.raises(ValueError, match="iterations \\+ 1"):
        _results.history({"error": [3, 2, 1], "seconds": [0, 0.1, 0.2]}, iterations=3)
    with pytest.raises(ValueError, match="missing \\['seconds'\\]"):
        _results.history({"error": [3, 2, 1]})
    with pytest.raises(ValueError, match="read-only"):
        history["error"][0] = 0.0


# --- the one convergence plot -----------------------------------------------------------------------------------------
def test_plot_convergence_draws_one_line_per_result_with_its_history(runs):
    by_name = {name: result for name, result, _ in runs}
    chosen = {"sinkhorn": by_name["sinkhorn"], "SNS": by_name["sinkhorn_newton_sparse"]}
    figure, ax = plt.subplots()
    returned = plot.plot_convergence(chosen, ax=ax)
    assert returned is ax and len(ax.lines) == 2 and ax.get_yscale() == "log"
    for line, (label, result) in zip(ax.lines, chosen.items()):
        assert line.get_label() == label
        np.testing.assert_array_equal(line.get_xdata(), np.arange(result.iterations + 1))
        np.testing.assert_array_equal(line.get_ydata(), result.history["error"])
    ax.clear()
    plot.plot_convergence({"Newton": by_name["newton"]}, x="cost", y="f", ax=ax, log=False)
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), by_name["newton"].history["cost"])
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), by_name["newton"].history["f"])
    assert ax.get_xlabel() == "cost" and ax.get_yscale() == "linear"
    plt.close(figure)


def test_plot_convergence_refuses_a_missing_column_or_a_non_result(runs):
    by_name = {name: result for name, result, _ in runs}
    figure, ax = plt.subplots()
    with pytest.raises(ValueError, match="has no column 'cost'.*'error'"):
        plot.plot_convergence({"sinkhorn": by_name["sinkhorn"]}, x="cost", ax=ax)
    with pytest.raises(TypeError, match="mapping"):
        plot.plot_convergence([by_name["sinkhorn"]], ax=ax)
    with pytest.raises(TypeError, match="history dict"):
        plot.plot_convergence({"tensor": torch.zeros(3)}, ax=ax)
    plt.close(figure)
