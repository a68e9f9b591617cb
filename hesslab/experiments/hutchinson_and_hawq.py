"""Notebook 02: Hutchinson's trace estimator and HAWQ-V2's Hessian-aware mixed-precision quantisation.

Hutchinson (1989): for Rademacher probes z (entries ±1), zᵀAz is an unbiased estimate of tr(A) with variance
2 Σ_{i≠j} A_ij², so a mean over m probes has variance 2 Σ_{i≠j} A_ij² / m. Hutch++ (Meyer, Musco, Musco & Woodruff
2021) deflates the top eigenspace first; its error falls like 1/m instead of 1/√m when the spectrum decays.

HAWQ-V2 (Dong, Yao, Arfeen, Gholami, Mahoney & Keutzer, NeurIPS 2020, *HAWQ-V2: Hessian Aware trace-Weighted
Quantization of Neural Networks*) score the quantisation of layer i's weights W_i to b bits by

    Ω_i(b) = Tr(H_i) / n_i · ‖Q_b(W_i) − W_i‖²,        H_i = ∂²L/∂W_i² (the layer's diagonal Hessian block),

with Tr(H_i) estimated by Hutchinson: at a minimum, with the perturbation spread evenly over H_i's eigenvectors, the
loss rises by about ½ Ω_i(b). Summing Ω_i over the layers scores every bit configuration without quantising
anything; the configurations that no other beats in both model size and ΣΩ form the Pareto frontier, and the one
chosen for a size budget is the frontier point with the largest size within it.

Choices made here (the paper quantises convolutional nets and fine-tunes afterwards; this is post-training only):
    - Q_b is symmetric uniform per-tensor quantisation, scale s = max|W| / (2^{b−1} − 1) (no clipping).
    - Only the weight matrices are quantised; biases stay in floating point. They are few (106 of the 6570
      parameters of the 64-64-32-10 net) and add the same constant to every configuration's size.
    - The Hessian is taken on a calibration batch (the first ``calibration_size`` training points); the loss
      increase L(Q(W)) − L(W) is measured on the whole training set.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import Tensor, nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from .._checks import check_count, check_finite, check_instance
from ..data import digits
from ..exact import hessian
from ..functional import loss_function
from ..hutchinson import Estimate, hutchinson_trace, hutchinson_variance
from ..models import mlp, train_full_batch
from ..operators import CurvatureOperator, HessianOperator, as_operator
from ..sampling import rademacher

LOSS = nn.functional.cross_entropy
BIT_CHOICES = (2, 3, 4, 8)


# ----------------------------------------------------------------------------------------------------------------------
# the trained net
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainedNet:
    """An MLP trained on scikit-learn's digits, with the data its curvature and quantisation are measured on.

    ``model`` is not changed by any function of this module (quantised weights go in through ``functional_call``).
    """

    model: nn.Sequential
    inputs: Tensor  # (1797, 64) the whole training set
    targets: Tensor  # (1797,)
    calibration_size: int  # the Hessian is that of the loss on the first calibration_size points
    weight_names: tuple[str, ...]  # the quantised weight matrices, e.g. ("0.weight", "2.weight", "4.weight")
    losses: tuple[float, ...]  # training loss per gradient-descent step
    accuracy: float  # training accuracy at the end

    @property
    def calibration(self) -> tuple[Tensor, Tensor]:
        """The calibration set: the first ``calibration_size`` (inputs, targets)."""
        return self.inputs[: self.calibration_size], self.targets[: self.calibration_size]

    @property
    def weights(self) -> tuple[Tensor, ...]:
        """The quantised weight matrices (those named in ``weight_names``), detached."""
        named = dict(self.model.named_parameters())
        return tuple(named[name].detach() for name in self.weight_names)

    @property
    def layer_sizes(self) -> np.ndarray:
        """n_i, the number of entries of each weight matrix."""
        return np.array([w.numel() for w in self.weights])


def train_digits_mlp(sizes: Sequence[int] = (64, 64, 32, 10), steps: int = 300, lr: float = 1.0,
                     calibration_size: int = 512, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None, progress: bool = False) -> TrainedNet:
    """A tanh MLP ``sizes`` trained by full-batch gradient descent on the 1797 digits, in float64.

    Args:
        sizes: layer widths, from 64 inputs to 10 classes, e.g. (64, 64, 32, 10).
        steps: gradient-descent steps (300 steps at lr 1 reach a training loss of about 0.007).
        lr: the gradient-descent step size.
        calibration_size: how many of the training points (the first ones) the Hessian is computed on.
        generator: draws the initial weights.
        device: where the data and the model go (default: the CPU).
        progress: show a tqdm bar of the training.

    Returns:
        A ``TrainedNet``. Cost: ``steps`` forward and backward passes over the 1797 points.

    Raises:
        ValueError: if ``sizes`` does not run from 64 to 10, or ``calibration_size`` is not in [1, 1797].
    """
    sizes = tuple(sizes)
    if len(sizes) < 2 or sizes[0] != 64 or sizes[-1] != 10:
        raise ValueError(f"sizes must run from the digits' 64 pixels to their 10 classes, e.g. (64, 64, 32, 10); "
                         f"got {sizes}.")
    inputs, targets = digits(device=device)
    check_count("calibration_size", calibration_size, 1, len(inputs))
    model = mlp(sizes, "tanh", generator=generator, device=device)
    run = train_full_batch(model, LOSS, inputs, targets, lr=lr, max_steps=steps, progress=progress)
    with torch.no_grad():
        accuracy = (model(inputs).argmax(1) == targets).double().mean().item()
    names = tuple(name for name, _ in model.named_parameters() if name.endswith("weight"))
    return TrainedNet(model, inputs, targets, calibration_size, names, tuple(run.losses), accuracy)


# ----------------------------------------------------------------------------------------------------------------------
# quantisation
# ----------------------------------------------------------------------------------------------------------------------
def quantize(weight: Tensor, bits: int) -> Tensor:
    """Symmetric uniform quantisation to ``bits`` bits, one scale per tensor.

        Q_b(W) = s · clamp(round(W / s), −q, q),     q = 2^{b−1} − 1,     s = max|W| / q.

    The 2q + 1 = 2^b − 1 levels are symmetric about 0 (one code of the 2^b is left unused, so that 0 is a level and
    Q(−W) = −Q(W)); since |W| <= q s nothing is clipped and every entry moves by at most s/2. b = 2 is ternary.

    Args:
        weight: any floating tensor.
        bits: an int in [2, 32].

    Returns:
        Q_b(W), same shape, dtype and device. Cost: O(numel).

    Raises:
        TypeError: if ``weight`` is not a floating-point tensor.
        ValueError: if ``bits`` is not in [2, 32] or ``weight`` is not finite.
    """
    if not isinstance(weight, Tensor) or not weight.is_floating_point():
        raise TypeError(f"weight must be a floating-point torch.Tensor, got "
                        f"{weight.dtype if isinstance(weight, Tensor) else type(weight).__name__}.")
    check_count("bits", bits, 2, 32, hint="Symmetric quantisation needs at least 2 bits (levels −s, 0, s).")
    check_finite("weight", weight)
    levels = 2 ** (bits - 1) - 1
    scale = weight.abs().max() / levels
    if scale == 0:  # an all-zero tensor is its own quantisation
        return weight.clone()
    return torch.clamp(torch.round(weight / scale), -levels, levels) * scale


# ----------------------------------------------------------------------------------------------------------------------
# per-layer Hessian traces
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerTraces:
    """Tr(H_i) of each weight matrix's Hessian block: Monte-Carlo estimates, and the exact values when known."""

    names: tuple[str, ...]
    sizes: np.ndarray  # (L,) n_i
    estimates: tuple[Estimate, ...]  # one per layer
    exact: np.ndarray | None  # (L,) tr of the dense block, when the blocks were given

    @property
    def values(self) -> np.ndarray:
        """(L,) the trace estimates Tr(H_i)."""
        return np.array([e.value for e in self.estimates])

    @property
    def stderrs(self) -> np.ndarray:
        """(L,) the estimates' standard errors."""
        return np.array([e.stderr for e in self.estimates])

    @property
    def relative_errors(self) -> np.ndarray:
        """(estimate − exact) / exact per layer; needs the exact traces."""
        if self.exact is None:
            raise ValueError("these traces have no exact values; pass blocks=hessian_blocks(net) to layer_traces.")
        return self.values / self.exact - 1


def _dense(A: Tensor) -> CurvatureOperator:
    """``as_operator(A)`` for the dense (n, n) tensor these measurements need (traces, entries), or a TypeError."""
    if not isinstance(A, Tensor):
        raise TypeError(f"A must be a dense symmetric (n, n) torch.Tensor (e.g. a block from hessian_blocks), got "
                        f"{type(A).__name__}; for an operator pass op.to_dense().")
    return as_operator(A)


def layer_operators(net: TrainedNet) -> tuple[HessianOperator, ...]:
    """The matrix-free Hessian block of each weight matrix, H_i = ∂²L/∂W_i² on the calibration batch (n_i × n_i).

    Cost: one gradient with graph per layer now; ~1.5 gradients per product later.
    """
    return tuple(HessianOperator.from_model(net.model, LOSS, net.calibration, params=[name])
                 for name in net.weight_names)


def hessian_blocks(net: TrainedNet, progress: bool | None = None) -> tuple[Tensor, ...]:
    """The dense per-layer Hessian blocks H_i (n_i × n_i) on the calibration batch, built by ``hl.hessian``.

    Cost: Σ n_i Hessian-vector products (6464 for the 64-64-32-10 net); memory Σ n_i² entries (166 MB there).
    """
    blocks = []
    for name in net.weight_names:
        f, theta = loss_function(net.model, LOSS, *net.calibration, params=[name])
        blocks.append(hessian(f, theta, progress=progress))
    return tuple(blocks)


def layer_traces(net: TrainedNet, num_probes: int = 200, method: str = "hutchinson",
                 generator: torch.Generator | None = None, blocks: Sequence[Tensor] | None = None) -> LayerTraces:
    """Estimate Tr(H_i) for every weight matrix with ``num_probes`` products each (``hl.hutchinson_trace``).

    Without ``blocks`` the products are matrix-free (``layer_operators``), as HAWQ-V2 computes them. With the dense
    blocks from ``hessian_blocks`` the same probes are multiplied by the matrices instead — the same estimates up to
    rounding, much faster once the blocks exist — and the exact traces are filled in.

    Cost: L · num_probes Hessian-vector products (or dense products with the blocks).
    """
    if blocks is None:
        operators, exact = layer_operators(net), None
    else:
        if len(blocks) != len(net.weight_names):
            raise ValueError(f"blocks must hold one Hessian block per weight matrix ({len(net.weight_names)}), "
                             f"got {len(blocks)}; make them with hessian_blocks(net).")
        operators = tuple(as_operator(block) for block in blocks)  # dense products A @ Z, n probes at a time
        exact = np.array([block.trace().item() for block in blocks])
    estimates = tuple(hutchinson_trace(A, num_probes, method, generator=generator) for A in operators)
    return LayerTraces(net.weight_names, net.layer_sizes, estimates, exact)


# ----------------------------------------------------------------------------------------------------------------------
# Hutchinson's variance and Hutch++
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProbeVariance:
    """The variance of the m-probe Hutchinson estimate, measured over repeats and predicted by 2 Σ_{i≠j} A_ij² / m."""

    num_probes: np.ndarray  # (K,) m
    variance: np.ndarray  # (K,) sample variance of `repeats` independent m-probe estimates
    predicted: np.ndarray  # (K,) 2 Σ_{i≠j} A_ij² / m
    stderr: np.ndarray  # (K,) standard deviation of that sample variance when the prediction holds
    kurtosis: float  # excess kurtosis of one quadratic form zᵀAz, measured over all the probes
    trace: float  # tr(A)
    repeats: int


def probe_variance(A: Tensor, num_probes: Sequence[int], repeats: int,
                   generator: torch.Generator | None = None) -> ProbeVariance:
    """Measure Var(Hutchinson estimate with m probes) for each m, from ``repeats`` independent estimates.

    Each estimate is the mean of m quadratic forms zᵀAz over fresh Rademacher probes (drawn and multiplied in blocks,
    see ``quadratic_forms``). The prediction is σ²/m with σ² = ``hl.hutchinson_variance(A)`` = 2 Σ_{i≠j} A_ij².

    A sample variance of R values whose distribution has variance v and excess kurtosis κ has standard deviation
    v · sqrt(2/(R − 1) + κ/R); the mean of m forms has κ = κ₁/m, with κ₁ that of one form, measured here over all
    Σ m · R forms. (One form of a Hessian block is far from normal.)

    Args:
        A: dense symmetric (n, n) tensor, e.g. a block from ``hessian_blocks``.
        num_probes: the m to measure, each >= 1.
        repeats: R >= 4 independent estimates per m.
        generator: draws the probes.
    Cost: R · Σ m products with A (n² each).
    """
    _dense(A)  # a square floating symmetric tensor, or a clear error
    check_count("repeats", repeats, 4)
    for m in num_probes:
        check_count("every entry of num_probes", m, 1)
    m = np.array(list(num_probes))
    forms = [quadratic_forms(A, int(k) * repeats, generator) for k in m]
    variance = np.array([f.view(repeats, int(k)).mean(1).var().item() for f, k in zip(forms, m)])
    pooled = torch.cat(forms)
    centred = pooled - pooled.mean()
    spread = centred.pow(2).mean().item()
    # every form equals tr(A) when A is diagonal: no spread, and the kurtosis plays no part
    kurtosis = centred.pow(4).mean().item() / spread**2 - 3 if spread > 0 else 0.0
    predicted = hutchinson_variance(A) / m
    stderr = predicted * np.sqrt(2 / (repeats - 1) + kurtosis / (m * repeats))
    return ProbeVariance(m, variance, predicted, stderr, kurtosis, torch.trace(A).item(), repeats)


def quadratic_forms(A: Tensor, count: int, generator: torch.Generator | None = None,
                    max_block: int = 2**25) -> Tensor:
    """``count`` values zᵀAz for independent Rademacher z (from ``generator``), as a float64 CPU tensor.

    The probes are drawn and multiplied in blocks of at most ``max_block`` entries (256 MiB in float64), so memory
    stays bounded.
    """
    n = A.shape[0]
    columns = max(1, max_block // n)
    sizes = [min(columns, count - start) for start in range(0, count, columns)]
    return torch.cat([(z * (A @ z)).sum(0).double().cpu()
                      for z in (rademacher(n, size, A.dtype, A.device, generator) for size in sizes)])


@dataclass(frozen=True)
class TraceErrors:
    """Root-mean-square relative error of Hutchinson and Hutch++ against the exact trace, per budget of products."""

    num_matvecs: np.ndarray  # (K,)
    hutchinson: np.ndarray  # (K,) sqrt(mean((estimate − tr A)²)) / |tr A|
    hutch_plus_plus: np.ndarray  # (K,)
    repeats: int


def trace_errors(A: Tensor, num_matvecs: Sequence[int], repeats: int, generator: torch.Generator | None = None,
                 progress: bool = False) -> TraceErrors:
    """Compare ``hl.hutchinson_trace(A, m, method)`` for both methods at equal numbers m of products with A.

    Args: A dense symmetric (n, n); num_matvecs each >= 4 (Hutch++ splits them in three); repeats >= 2.
    Returns: ``TraceErrors``. Cost: 2 · repeats · Σ m products, and repeats · K thin QR factorisations.
    """
    operator = _dense(A)
    check_count("repeats", repeats, 2)
    exact = torch.trace(A).item()
    if exact == 0:
        raise ValueError("A has trace 0, so a relative error is undefined; compare absolute errors instead.")
    errors = {"hutchinson": [], "hutch++": []}
    for m in tqdm(num_matvecs, desc="trace errors", disable=not progress, leave=False):
        check_count("every entry of num_matvecs", m, 4, hint="Hutch++ needs at least 4 products.")
        for method, rows in errors.items():
            values = np.array([hutchinson_trace(operator, m, method, generator=generator).value
                               for _ in range(repeats)])
            rows.append(math.sqrt(np.mean((values - exact) ** 2)) / abs(exact))
    return TraceErrors(np.array(list(num_matvecs)), np.array(errors["hutchinson"]), np.array(errors["hutch++"]),
                       repeats)


# ----------------------------------------------------------------------------------------------------------------------
# HAWQ-V2: sensitivities, all bit configurations, the Pareto frontier
# ----------------------------------------------------------------------------------------------------------------------
def sensitivities(weights: Sequence[Tensor], traces: Sequence[float], bit_choices: Sequence[int] = BIT_CHOICES
                  ) -> np.ndarray:
    """HAWQ-V2's Ω_i(b) = Tr(H_i) / n_i · ‖Q_b(W_i) − W_i‖² for every layer i and bit width b.

    Args: weights: the L weight matrices; traces: their L Hessian-block traces; bit_choices: the B bit widths.
    Returns: (L, B) array. Cost: L · B quantisations.
    """
    if len(weights) != len(traces):
        raise ValueError(f"weights and traces must have one entry per layer, got {len(weights)} and {len(traces)}.")
    return np.array([[trace / W.numel() * (quantize(W, b) - W).pow(2).sum().item() for b in bit_choices]
                     for W, trace in zip(weights, traces)])


def quantized_loss_increase(net: TrainedNet, configs: np.ndarray, chunk_size: int = 16) -> np.ndarray:
    """L(Q(W)) − L(W) on the whole training set for every bit configuration (a row of ``configs``: bits per layer).

    The quantised weights go in through ``functional_call``, ``chunk_size`` configurations per vectorised forward
    pass; ``net.model`` is not changed. Cost: one forward pass over the data per configuration.
    """
    configs = np.asarray(configs)
    if configs.ndim != 2 or configs.shape[1] != len(net.weight_names):
        raise ValueError(f"configs must be (C, {len(net.weight_names)}): bits per weight matrix, got shape "
                         f"{configs.shape}.")
    quantized = {(i, int(b)): quantize(W, int(b)) for i, W in enumerate(net.weights) for b in np.unique(configs[:, i])}
    stacked = {name: torch.stack([quantized[i, int(b)] for b in configs[:, i]])
               for i, name in enumerate(net.weight_names)}
    fixed = {name: p.detach() for name, p in net.model.named_parameters() if name not in net.weight_names}

    def loss_with(weights: dict[str, Tensor]) -> Tensor:
        return LOSS(functional_call(net.model, {**fixed, **weights}, (net.inputs,)), net.targets)

    with torch.no_grad():
        base = LOSS(net.model(net.inputs), net.targets)
        losses = vmap(loss_with, chunk_size=chunk_size)(stacked)
    return (losses - base).cpu().numpy()


@dataclass(frozen=True)
class BitSearch:
    """Every bit configuration of the weight matrices: its size, its HAWQ-V2 score ΣΩ and its measured loss increase."""

    names: tuple[str, ...]
    layer_sizes: np.ndarray  # (L,) n_i
    bit_choices: tuple[int, ...]  # (B,)
    omega: np.ndarray  # (L, B) Ω_i(b)
    configs: np.ndarray  # (C, L) bits per layer, C = B^L, lexicographic
    model_bits: np.ndarray  # (C,) Σ_i n_i b_i, the weights' storage in bits
    total_omega: np.ndarray  # (C,) Σ_i Ω_i(b_i)
    loss_increase: np.ndarray  # (C,) L(Q(W)) − L(W) on the training set
    spearman: float  # rank correlation of total_omega with loss_increase

    def index(self, config: Sequence[int]) -> int:
        """The row of ``configs`` equal to ``config`` (bits per layer)."""
        rows = np.flatnonzero((self.configs == np.asarray(config)).all(1))
        if len(rows) == 0:
            raise ValueError(f"config {tuple(config)} is not among the searched ones (bits from {self.bit_choices}).")
        return int(rows[0])


def search_bits(net: TrainedNet, traces: Sequence[float], bit_choices: Sequence[int] = BIT_CHOICES,
                loss_increase: np.ndarray | None = None) -> BitSearch:
    """Score all B^L bit configurations by HAWQ-V2's ΣΩ and measure each one's loss increase.

    Args:
        net: the trained net.
        traces: Tr(H_i) per weight matrix (``layer_traces(...).values``, or the exact ones).
        bit_choices: the B bit widths each layer may take.
        loss_increase: the measured increases of an earlier search of the same net and bit choices, to re-score
            with other traces without the forward passes.
    Returns: ``BitSearch``. Cost: B^L forward passes over the training set (64 for 3 layers and 4 widths).
    """
    bit_choices = tuple(bit_choices)
    if not bit_choices or len(set(bit_choices)) != len(bit_choices):
        raise ValueError(f"bit_choices must be distinct bit widths, e.g. (2, 3, 4, 8); got {bit_choices}.")
    for b in bit_choices:
        check_count("every entry of bit_choices", b, 2, 32)
    omega = sensitivities(net.weights, list(traces), bit_choices)
    choice = np.array(list(itertools.product(range(len(bit_choices)), repeat=len(net.weight_names))))
    configs = np.array(bit_choices)[choice]
    total_omega = omega[np.arange(len(net.weight_names)), choice].sum(1)
    if loss_increase is None:
        loss_increase = quantized_loss_increase(net, configs)
    elif np.shape(loss_increase) != (len(configs),):
        raise ValueError(f"loss_increase must hold one value per configuration ({len(configs)}), got shape "
                         f"{np.shape(loss_increase)}; pass the loss_increase of a search with the same bit_choices.")
    return BitSearch(net.weight_names, net.layer_sizes, bit_choices, omega, configs, configs @ net.layer_sizes,
                     total_omega, np.asarray(loss_increase), float(spearmanr(total_omega, loss_increase).statistic))


def pareto_frontier(sizes, costs) -> np.ndarray:
    """The points that no other point beats in both size and cost, in order of increasing size (decreasing cost).

    Point j dominates point i when size_j <= size_i and cost_j <= cost_i with one of them strict. Of points with
    identical (size, cost) only the first is kept. Cost: a sort, O(C log C).

    Args: sizes, costs: 1-D arrays of the same length C.
    Returns: indices into them.
    """
    sizes, costs = np.asarray(sizes, dtype=float), np.asarray(costs, dtype=float)
    if sizes.ndim != 1 or sizes.shape != costs.shape or sizes.size == 0:
        raise ValueError(f"sizes and costs must be non-empty 1-D arrays of one length, got shapes {sizes.shape} and "
                         f"{costs.shape}.")
    if not (np.isfinite(sizes).all() and np.isfinite(costs).all()):
        raise ValueError("sizes and costs must be finite.")
    frontier, best = [], math.inf
    for i in np.lexsort((costs, sizes)):  # by size, then cost; stable, so ties keep their order
        if costs[i] < best:
            frontier.append(i)
            best = costs[i]
    return np.array(frontier, dtype=int)


def frontier_pick(sizes, costs, budget: float) -> int:
    """The configuration of least cost among those of size <= ``budget``: the largest frontier point within it."""
    frontier = pareto_frontier(sizes, costs)
    fits = frontier[np.asarray(sizes, dtype=float)[frontier] <= budget]
    if len(fits) == 0:
        raise ValueError(f"budget {budget} is below the smallest size {np.min(sizes)}; raise the budget.")
    return int(fits[-1])


@dataclass(frozen=True)
class UniformComparison:
    """At the size of uniform b-bit precision: the HAWQ-V2 pick and the measured best, against uniform itself."""

    bits: int
    budget: int  # Σ n_i · bits
    uniform: int  # row of BitSearch.configs
    pick: int  # least ΣΩ within the budget
    best: int  # least measured loss increase within the budget
    uniform_loss_increase: float
    pick_loss_increase: float
    best_loss_increase: float


def compare_with_uniform(search: BitSearch) -> tuple[UniformComparison, ...]:
    """For every uniform configuration (b, …, b) of ``search``: the frontier's pick and the truly best configuration.

    Both among those of equal or smaller size, with their measured loss increases.
    """
    rows = []
    for b in search.bit_choices:
        uniform = search.index([b] * len(search.names))
        budget = int(search.model_bits[uniform])
        pick = frontier_pick(search.model_bits, search.total_omega, budget)
        best = frontier_pick(search.model_bits, search.loss_increase, budget)
        rows.append(UniformComparison(b, budget, uniform, pick, best, *(float(search.loss_increase[i])
                                                                         for i in (uniform, pick, best))))
    return tuple(rows)


# ----------------------------------------------------------------------------------------------------------------------
# why the average trace: layers ranked differently by λ_max, Tr(H)/n and Tr(H)
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuadraticLayers:
    """A loss exactly quadratic in each layer's weights, with its minimum at W*.

        L(W) = ½ Σ_i (W_i − W_i*)ᵀ H_i (W_i − W_i*),

    so quantising layer i alone raises it by exactly ½ Δ_iᵀ H_i Δ_i, Δ_i = Q_b(W_i*) − W_i*. The model of the loss
    that HAWQ's scores are derived from, with nothing left out (no cross-layer blocks, no higher-order terms).
    """

    names: tuple[str, ...]
    weights: tuple[Tensor, ...]  # W_i*, flat (n_i,)
    blocks: tuple[Tensor, ...]  # H_i, dense symmetric (n_i, n_i)

    @property
    def layer_sizes(self) -> np.ndarray:
        """n_i, the number of entries of each layer's weights."""
        return np.array([w.numel() for w in self.weights])


def spiked_and_flat_layers(generator: torch.Generator | None = None) -> QuadraticLayers:
    """Three layers whose Hessian blocks rank them three different ways (float64, CPU, milliseconds).

        "spiked": n = 64,  4 eigenvalues 2 and 60 eigenvalues 0.02:  λ_max 2,   Tr 9.2,  Tr/n 0.14
        "flat":   n = 64,  every eigenvalue 1:                        λ_max 1,   Tr 64,   Tr/n 1
        "wide":   n = 512, every eigenvalue 0.1:                      λ_max 0.1, Tr 51.2, Tr/n 0.1

    The eigenvectors are random (Q from the QR factorisation of a Gaussian matrix), so a quantisation error is
    spread over them as HAWQ-V2 assumes; the weights W* are uniform on [−1, 1], so every layer has the same
    quantisation step and ‖Δ_i‖² ≈ n_i s²/12. The loss increase ½ Δᵀ H Δ then ranks flat > wide > spiked, as Tr/n·‖Δ‖²
    does, while λ_max·‖Δ‖² (HAWQ-V1) puts the spiked layer first and Tr·‖Δ‖² (no 1/n) the wide one.
    (The spike is 4 eigenvalues, not 1, so that ½ Δᵀ H Δ of the spiked layer, a χ² with 4 degrees of freedom in
    the spike's share, stays below the others on every seed but with probability ~1e-4.)
    """
    spectra = {"spiked": torch.cat([torch.full((4,), 2.0), torch.full((60,), 0.02)]),
               "flat": torch.ones(64, dtype=torch.float64), "wide": torch.full((512,), 0.1)}
    weights, blocks = [], []
    for eigenvalues in spectra.values():
        eigenvalues = eigenvalues.double()
        n = len(eigenvalues)
        Q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
        H = (Q * eigenvalues) @ Q.T
        blocks.append((H + H.T) / 2)
        weights.append(2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1)
    return QuadraticLayers(tuple(spectra), tuple(weights), tuple(blocks))


@dataclass(frozen=True)
class LayerRanking:
    """How three scores rank the layers of a ``QuadraticLayers``, each quantised alone to ``bits``.

    Per layer: the curvature statistics, the three scores and the exact loss increase.
    """

    names: tuple[str, ...]
    sizes: np.ndarray  # (L,) n_i
    bits: int
    top_eigenvalues: np.ndarray  # (L,) λ_max(H_i), exact
    traces: np.ndarray  # (L,) Tr(H_i) by hl.hutchinson_trace
    exact_traces: np.ndarray  # (L,) Tr(H_i)
    perturbations: np.ndarray  # (L,) ‖Q_b(W_i) − W_i‖²
    omega: np.ndarray  # (L,) HAWQ-V2's Ω_i(b) = Tr(H_i)/n_i · ‖Δ_i‖², from ``sensitivities``
    hawq_v1: np.ndarray  # (L,) λ_max(H_i) · ‖Δ_i‖²
    without_size: np.ndarray  # (L,) Tr(H_i) · ‖Δ_i‖² (the 1/n_i dropped)
    loss_increase: np.ndarray  # (L,) ½ Δ_iᵀ H_i Δ_i, exact

    def order(self, values) -> tuple[str, ...]:
        """The layer names from the largest of ``values`` to the smallest."""
        return tuple(self.names[i] for i in np.argsort(-np.asarray(values), kind="stable"))


def rank_layers(model: QuadraticLayers, bits: int = 4, num_probes: int = 200,
                generator: torch.Generator | None = None) -> LayerRanking:
    """Score each layer of ``model`` quantised alone to ``bits`` bits three ways, and measure ½ ΔᵀHΔ.

    The scores: HAWQ-V2 (traces from ``num_probes`` Hutchinson products drawn from ``generator``, Ω from
    ``sensitivities``), HAWQ-V1, and HAWQ-V2 without the 1/n_i.

    Cost: L · num_probes dense products, L eigenvalue decompositions (n_i³).
    """
    check_instance("model", model, QuadraticLayers, hint="Make one with spiked_and_flat_layers().")
    check_count("bits", bits, 2, 32)
    estimates = [hutchinson_trace(as_operator(H), num_probes, generator=generator) for H in model.blocks]
    traces = np.array([e.value for e in estimates])
    omega = sensitivities(model.weights, list(traces), (bits,))[:, 0]
    deltas = [quantize(W, bits) - W for W in model.weights]
    perturbations = np.array([d.pow(2).sum().item() for d in deltas])
    top = np.array([torch.linalg.eigvalsh(H)[-1].item() for H in model.blocks])
    exact = np.array([H.trace().item() for H in model.blocks])
    loss = np.array([0.5 * (d @ (H @ d)).item() for d, H in zip(deltas, model.blocks)])
    return LayerRanking(model.names, model.layer_sizes, bits, top, traces, exact, perturbations, omega,
                        top * perturbations, exact * perturbations, loss)


# ----------------------------------------------------------------------------------------------------------------------
# the diagonal costs nothing: Rademacher, not Gaussian, probes
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EstimatorVariance:
    """The spread of ``hl.hutchinson_trace``'s m-probe estimates, with what Rademacher and Gaussian probes predict."""

    num_probes: int
    repeats: int
    variance: float  # sample variance of `repeats` estimates
    rademacher: float  # 2 Σ_{i≠j} A_ij² / m
    gaussian: float  # 2 ‖A‖_F² / m
    stderr: float  # standard deviation of that sample variance when the Rademacher prediction holds


def estimator_variance(A: Tensor, num_probes: int, repeats: int,
                       generator: torch.Generator | None = None) -> EstimatorVariance:
    """Var of ``hl.hutchinson_trace(A, m)`` over ``repeats`` calls, against what Rademacher and Gaussian probes predict.

    m = ``num_probes``. Rademacher probes predict 2 Σ_{i≠j} A_ij² / m (the diagonal costs nothing), Gaussian probes
    2 ‖A‖_F² / m (it does). On a matrix with a large diagonal the two differ by a large factor, so this tells the
    probes apart from the library's output alone.

    The standard deviation of the sample variance is v · sqrt(2/(R − 1) + κ/R), κ the excess kurtosis of one
    estimate, measured from the R estimates (and taken as 0 when negative).
    Cost: repeats · num_probes products with A.
    """
    operator = _dense(A)
    check_count("num_probes", num_probes, 2)
    check_count("repeats", repeats, 4)
    values = torch.tensor([hutchinson_trace(operator, num_probes, generator=generator).value
                           for _ in range(repeats)], dtype=torch.float64)
    centred = values - values.mean()
    spread = centred.pow(2).mean().item()
    kurtosis = max(centred.pow(4).mean().item() / spread**2 - 3, 0.0) if spread > 0 else 0.0
    rademacher_variance = hutchinson_variance(A) / num_probes
    gaussian_variance = hutchinson_variance(A, "gaussian") / num_probes
    stderr = rademacher_variance * math.sqrt(2 / (repeats - 1) + kurtosis / repeats)
    return EstimatorVariance(num_probes, repeats, values.var().item(), rademacher_variance, gaussian_variance, stderr)
