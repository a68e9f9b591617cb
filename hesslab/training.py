"""Curvature along a training run: the sharpness λ_max and the trace of the Hessian (or GGN) at every few steps.

At the measured steps t = 0, every, 2·every, … (and the last) the run is paused at θ_t and

    λ_max(θ_t)  by ``top_eigen`` warm-started from the subspace of the last few measurements' top eigenvectors
                v_{t−every}, v_{t−2·every}, …, and
    tr(H(θ_t))  by Hutchinson's estimator, with its standard error,

are measured, with |⟨v_t, v_{t−every}⟩| (how far the top direction turned). Between measurements the optimizer
takes its steps on the whole data set (gradient descent) or on random batches (SGD). Successive Hessians along a
run are close, so the previous top eigenvectors span a start that nearly holds the new one, and the eigenvalue
converges in a few products instead of a few tens (Cohen, Kaur, Li, Kolter & Talwalkar 2021 measure the sharpness
of every step this way, with power iteration). One previous vector is not enough at the edge of stability: there
the iterate oscillates along the top direction, which turns back and forth from step to step, and v_t lies (to
~1e-4) in the span of v_{t−1} and v_{t−2} while |⟨v_t, v_{t−1}⟩| is only 0.8-0.99 (benchmarks/README.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._checks import check_choice, check_count, check_generator, check_instance, check_positive
from ._results import history as make_history
from .hutchinson import hutchinson_trace
from .operators import GGNOperator, HessianOperator
from .spectrum import top_eigen
from .spectrum._eigen import _start_basis

MEASURES = ("sharpness", "trace")
CURVATURES = {"hessian": HessianOperator, "ggn": GGNOperator}
WARM_NOVELTY = 1e-2  # a previous eigenvector within this of the newer ones' span is not worth its product
ON = ("full", "batch")


@dataclass(frozen=True)
class CurvatureTrace:
    """The curvature measured along a training run: one entry per measured step.

    ``history`` (DESIGN.md, "Results") holds read-only float arrays of one length, one entry per measurement:
    ``step`` (optimizer steps taken before it), ``loss`` (on the data the curvature is measured on), ``seconds``
    (since the start, measurements included), and, when measured, ``sharpness`` (λ_max), ``overlap``
    (|⟨v_t, v_prev⟩| of the unit top eigenvectors; NaN at the first measurement, which has no previous one),
    ``matvecs`` (products the eigenvalue took), ``error`` (its relative residual ‖Hv − λv‖/|λ|; 0 when the
    sharpness is not measured), ``trace`` and ``trace_stderr`` (Hutchinson's estimate and its standard error).

    ``iterations`` is the number of optimizer steps; ``converged`` is whether every eigenvalue run converged
    (``reason`` says which did not); ``vector`` is the last top eigenvector (n,), or None.

    Example:
        >>> import numpy as np
        >>> from hesslab.training import CurvatureTrace
        >>> trace = CurvatureTrace({"step": np.array([0.0, 1.0]), "error": np.zeros(2), "seconds": np.zeros(2)},
        ...                        iterations=1, converged=True, reason="done", vector=None)
        >>> trace.step.tolist(), trace.iterations
        ([0.0, 1.0], 1)
    """

    history: dict[str, np.ndarray]
    iterations: int
    converged: bool
    reason: str
    vector: Tensor | None

    def __getattr__(self, name: str) -> np.ndarray:
        """``trace.sharpness`` is ``trace.history["sharpness"]`` (any column)."""
        history = self.__dict__.get("history", {})
        if name in history:
            return history[name]
        raise AttributeError(f"CurvatureTrace has no column {name!r}; it has {sorted(history)}.")


def _batches(inputs: Tensor, targets: Tensor, batch_size: int | None, generator):
    """Endless (inputs, targets) batches: the whole set each time, or ``batch_size`` samples drawn per epoch.

    Each epoch is one random permutation (from ``generator``) cut into batches; a last short batch is dropped.
    """
    if batch_size is None:
        while True:
            yield inputs, targets
    n = targets.shape[0]
    while True:
        order = torch.randperm(n, generator=generator, device=generator.device if generator else "cpu")
        order = order.to(targets.device)
        for first in range(0, n - batch_size + 1, batch_size):
            index = order[first: first + batch_size]
            yield inputs[index], targets[index]


def _check_data(data, batch_size):
    """(inputs, targets) tensors with one sample per row, and batch_size <= the number of samples."""
    if not (isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data)):
        raise TypeError(f"data must be one (inputs, targets) pair of tensors (the whole training set), got "
                        f"{type(data).__name__}; pass (X, y) and batch_size= for SGD.")
    inputs, targets = data
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"data's inputs and targets must have one row per sample, got {inputs.shape[0]} inputs "
                         f"and {targets.shape[0]} targets.")
    if batch_size is not None:
        check_count("batch_size", batch_size, 1, targets.shape[0], hint="a batch is at most the whole data set.")
    return inputs, targets


def warm_subspace(previous: list[Tensor], novelty: float = WARM_NOVELTY) -> Tensor:
    """The start subspace of a warm measurement: the previous top eigenvectors that add a direction, newest first.

    Walking from the newest vector back, v is kept when its part orthogonal to the kept ones, ‖(I − P) v‖ for the
    projector P on their span, is more than ``novelty`` (unit vectors; Gram-Schmidt twice, as for any start
    subspace of ``top_eigen``): a vector that nearly repeats the newer ones
    (a run that is only sharpening) would cost a product and add nothing the Rayleigh–Ritz expansion does not find
    anyway.

    Args:
        previous: unit top eigenvectors (n,) of the last measurements, oldest first (at least one).
        novelty: the smallest new part worth keeping, in [0, 1).

    Returns:
        (n, m) orthonormal columns, 1 <= m <= len(previous): the newest vector, then the new parts of the kept
        older ones (Gram-Schmidt, newest first).

    Example:
        >>> import torch
        >>> from hesslab.training import warm_subspace
        >>> e = torch.eye(3, dtype=torch.float64)
        >>> warm_subspace([e[1], e[0], e[0] + 1e-3 * e[1]]).shape  # e₀ repeats the newest: dropped
        torch.Size([3, 2])
    """
    newest_first = torch.stack(previous[::-1], dim=1)
    return _start_basis(newest_first, newest_first.dtype, drop_below=novelty)


def track_curvature(model: nn.Module, loss_fn, data, optimizer: torch.optim.Optimizer, steps: int, every: int = 1,
                    measure=MEASURES, curvature: str = "hessian", on: str = "full", batch_size: int | None = None,
                    num_probes: int = 20, tol: float = 1e-4, warm_start: bool = True, warm_vectors: int = 4,
                    progress: bool = False, generator: torch.Generator | None = None) -> CurvatureTrace:
    """Train ``model`` for ``steps`` optimizer steps and measure λ_max and tr of its curvature every ``every`` steps.

    At each measured θ_t: λ_max = ``top_eigen(A_t, tol=tol, v0=U)`` and tr(A_t) ≈ the mean of
    zᵀ A_t z over ``num_probes`` Rademacher z (``hutchinson_trace``), with A_t = ∇²L(θ_t) (``"hessian"``) or the
    Gauss-Newton matrix Jᵀ H_L J (``"ggn"``), of the loss on the whole data set (``on="full"``) or on the batch the
    next step uses (``on="batch"``). A step: ``optimizer.zero_grad()``, the loss on a batch, ``backward()``,
    ``optimizer.step()``. The optimizer must update the model's parameters (any torch.optim optimizer).

    The warm start U (n, m) = ``warm_subspace([v_{t−w·every}, …, v_{t−every}])`` spans the top eigenvectors of the
    last w = ``warm_vectors`` measurements (those that add a direction), and ``top_eigen`` does a Rayleigh–Ritz on
    span(U) expanded by residuals: v_t is found in span(U) up to what changed since.

    Cost per measurement: m products for the start (one (n, m) product), then one per expansion — a few in all
    (a few tens cold) — plus ``num_probes`` products; O(max_steps · n) memory for the basis. Per step: one forward
    and backward on a batch.

    Args:
        model: the net, trained in place; the curvature is in all its parameters that require grad.
        loss_fn: ``(outputs, targets) -> scalar``, a mean over the batch.
        data: ``(inputs, targets)``: the whole training set (one sample per row).
        optimizer: a ``torch.optim.Optimizer`` over the model's parameters.
        steps: optimizer steps, >= 0.
        every: measure at steps 0, every, 2·every, … and after the last step; >= 1.
        measure: a subset of ``("sharpness", "trace")``.
        curvature: ``"hessian"`` or ``"ggn"``.
        on: ``"full"`` (the whole data set) or ``"batch"`` (the batch of the next step).
        batch_size: samples per step, drawn without replacement within each epoch; None is full-batch descent.
        num_probes: Hutchinson probes per trace, >= 2.
        tol: ``top_eigen``'s relative residual tolerance.
        warm_start: start each eigenvalue run from the previous top eigenvectors (False: from a random vector).
        warm_vectors: w >= 1, how many previous top eigenvectors span the start (1: the previous one only; 2 or
            more follow the back-and-forth turning at the edge of stability).
        progress: show a tqdm bar over the steps.
        generator: for the batches, the Lanczos starts and the probes.

    Returns:
        ``CurvatureTrace(history, iterations, converged, reason, vector)``; see ``CurvatureTrace``.

    Raises:
        ValueError: when the loss or a curvature product becomes non-finite (the run diverged: lower the lr).

    Paper: Cohen, Kaur, Li, Kolter & Talwalkar (2021), *Gradient Descent on Neural Networks Typically Occurs at the
    Edge of Stability* (λ_max along GD); Wu & Su (2023) (the trace along SGD).

    Example:
        On L(w) = w₁² + 3w₂² (a linear net, MSE on two points) the Hessian is diag(2, 6) at every step:

        >>> import torch, hesslab as hl
        >>> model = torch.nn.Linear(2, 1, bias=False).double()
        >>> X, y = torch.diag(torch.tensor([1.0, 3.0 ** 0.5], dtype=torch.float64)) * 2 ** 0.5, torch.zeros(2, 1)
        >>> trace = hl.track_curvature(model, torch.nn.functional.mse_loss, (X, y.double()),
        ...                            torch.optim.SGD(model.parameters(), lr=0.1), steps=3, generator=hl.seed(0))
        >>> trace.step.tolist(), trace.sharpness.round(8).tolist(), trace.trace.round(8).tolist()
        ([0.0, 1.0, 2.0, 3.0], [6.0, 6.0, 6.0, 6.0], [8.0, 8.0, 8.0, 8.0])
    """
    check_instance("model", model, nn.Module)
    check_instance("optimizer", optimizer, torch.optim.Optimizer, hint="e.g. torch.optim.SGD(model.parameters()).")
    steps = check_count("steps", steps, 0)
    every = check_count("every", every, 1)
    measure = (measure,) if isinstance(measure, str) else tuple(measure)
    for name in measure:
        check_choice("every entry of measure", name, MEASURES)
    if not measure:
        raise ValueError(f"measure must name at least one of {MEASURES}, got an empty {measure}.")
    check_choice("curvature", curvature, sorted(CURVATURES))
    check_choice("on", on, ON)
    num_probes = check_count("num_probes", num_probes, 2, hint="Hutchinson needs 2 probes for a standard error.")
    tol = check_positive("tol", tol)
    warm_vectors = check_count("warm_vectors", warm_vectors, 1)
    check_generator("generator", generator)
    inputs, targets = _check_data(data, batch_size)
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if not any(id(p) in trained for p in model.parameters()):
        raise ValueError("optimizer updates none of model's parameters; build it from model.parameters().")

    columns: dict[str, list[float]] = {"step": [], "loss": [], "seconds": [], "error": []}
    if "sharpness" in measure:
        columns.update(sharpness=[], overlap=[], matvecs=[])
    if "trace" in measure:
        columns.update(trace=[], trace_stderr=[])
    previous: list[Tensor] = []  # the top eigenvectors of the last warm_vectors measurements, oldest first
    unconverged: list[int] = []
    start_time = time.perf_counter()
    batches = _batches(inputs, targets, batch_size, generator)
    batch = next(batches)

    def record(step: int) -> None:
        nonlocal previous
        on_data = (inputs, targets) if on == "full" else batch
        operator = CURVATURES[curvature].from_model(model, loss_fn, on_data)
        with torch.no_grad():
            columns["loss"].append(float(loss_fn(model(on_data[0]), on_data[1])))
        columns["step"].append(step)
        columns["error"].append(0.0)
        if "sharpness" in measure:
            start = warm_subspace(previous) if warm_start and previous else None
            eigen = top_eigen(operator, tol=tol, generator=generator, v0=start)
            vector = eigen.vectors[:, 0]
            columns["sharpness"].append(eigen.values[0].item())
            columns["overlap"].append(abs(float(vector @ previous[-1])) if previous else math.nan)
            columns["matvecs"].append(eigen.num_matvecs)
            columns["error"][-1] = eigen.residuals[0].item() / max(abs(eigen.values[0].item()), 1e-300)
            if not eigen.converged:
                unconverged.append(step)
            previous = (previous + [vector])[-warm_vectors:]
        if "trace" in measure:
            estimate = hutchinson_trace(operator, num_probes, generator=generator)
            columns["trace"].append(estimate.value)
            columns["trace_stderr"].append(estimate.stderr)
        columns["seconds"].append(time.perf_counter() - start_time)

    record(0)
    for step in tqdm(range(1, steps + 1), desc="training", disable=not progress, leave=False):
        optimizer.zero_grad()
        loss = loss_fn(model(batch[0]), batch[1])
        if not torch.isfinite(loss):
            raise ValueError(f"training diverged: the loss became {loss.item()} at step {step - 1}; lower the lr.")
        loss.backward()
        optimizer.step()
        batch = next(batches)
        if step % every == 0 or step == steps:
            record(step)
    reason = ("every eigenvalue run converged" if not unconverged else
              f"top_eigen did not reach tol={tol} at steps {unconverged}; raise tol or see EigenResult.history")
    return CurvatureTrace(make_history(columns), steps, not unconverged, reason, previous[-1] if previous else None)
