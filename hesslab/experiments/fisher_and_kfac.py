"""Notebook 11: the empirical Fisher is no Fisher; K-FAC and EKFAC are (block by block) approximations of one.

Kunstner, Balles & Hennig (2019), *Limitations of the Empirical Fisher Approximation for Natural Gradient Descent*:
the Fisher F = (1/N) Σ_i E_{ỹ ~ p(·|x_i, θ)}[∇ℓ(ỹ) ∇ℓ(ỹ)ᵀ] takes its targets from the model, the empirical Fisher
EF = (1/N) Σ_i ∇ℓ(y_i) ∇ℓ(y_i)ᵀ from the data. For the likelihoods of deep learning (Gaussian, categorical) F is the
generalised Gauss-Newton matrix (GGN); EF equals it only at a minimum of a well-specified model with many samples.
Preconditioning the gradient by (EF + λI)⁻¹ can bend the step far from the natural gradient (F + λI)⁻¹ ∇L.

(a) A 2-D linear regression y = θᵀx + σε with the unit-variance Gaussian likelihood, L(θ) = (1/N) Σ ½ (θᵀx_i − y_i)²:
F = XᵀX/N for every θ, EF(θ) = (1/N) Σ r_i² x_i x_iᵀ with residuals r_i = θᵀx_i − y_i. At the optimum E r² = σ², so
EF → σ² F: equal to the Fisher only for σ = 1 (the model's own noise level).

(b) A small MLP on digits: per layer, the exact GGN block against EF, the Monte-Carlo Fisher (targets drawn from the
model, ``hl.FisherOperator`` kind ``"monte-carlo"``), K-FAC (Martens & Grosse 2015) and EKFAC (George et al. 2018),
``hl.KFACOperator``; and a few damped natural-gradient steps with each.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_count, check_positive
from ..data import digits
from ..fisher_operator import FisherOperator, KFACOperator
from ..models import mlp
from ..operators import GGNOperator

DTYPE = torch.float64


# ----------------------------------------------------------------------------------------------------------------------
# (a) the 2-D linear-regression toy
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Regression:
    """Data of a line y = θ₁u + θ₂ + σε, as inputs x = (u, 1), and its least-squares solution θ̂.

    Attributes:
        inputs: X (N, 2), rows (u_i, 1).
        targets: y (N,).
        noise: σ, the noise level the data were drawn with (the model assumes σ = 1).
        optimum: θ̂ (2,), the minimiser of L on these data.
    """

    inputs: Tensor
    targets: Tensor
    noise: float
    optimum: Tensor


def regression_data(num_samples: int = 100, noise: float = 1.0, seed: int = 0,
                    teacher: tuple[float, float] = (1.0, -0.5)) -> Regression:
    """Inputs x = (u, 1), u ~ N(1, 1), targets y = θ*ᵀx + σ ε, ε ~ N(0, 1), float64: a line through noisy points.

    Args:
        num_samples: N >= 2.
        noise: σ >= 0; σ = 1 is the model's own noise level (well specified).
        seed: seeds u and ε.
        teacher: θ* (slope, intercept).

    Returns:
        The ``Regression``.

    Example:
        >>> data = regression_data(num_samples=50, noise=0.0)
        >>> torch.allclose(data.optimum, torch.tensor([1.0, -0.5], dtype=torch.float64))
        True
    """
    num_samples = check_count("num_samples", num_samples, 2)
    noise = check_positive("noise", noise, allow_zero=True)
    generator = torch.Generator().manual_seed(seed)
    u = 1.0 + torch.randn(num_samples, generator=generator, dtype=DTYPE)
    X = torch.stack([u, torch.ones_like(u)], dim=1)
    y = X @ torch.tensor(teacher, dtype=DTYPE) + noise * torch.randn(num_samples, generator=generator, dtype=DTYPE)
    return Regression(X, y, float(noise), torch.linalg.lstsq(X, y.unsqueeze(1)).solution.squeeze(1))


def half_squared_error(outputs: Tensor, targets: Tensor) -> Tensor:
    """L = (1/N) Σ_i ½ (z_i − y_i)²: the negative log-likelihood of N(y; z, 1) per sample, up to a constant.

    Args:
        outputs: z (N,) or (N, 1).
        targets: y, shaped like z.

    Returns:
        The 0-d loss.

    Example:
        >>> half_squared_error(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0])).item()
        1.25
    """
    return 0.5 * ((outputs - targets) ** 2).mean()


def residuals(data: Regression, thetas: Tensor) -> Tensor:
    """r_i(θ) = θᵀx_i − y_i for every θ of a batch ``thetas`` (..., 2): (..., N).

    Example:
        >>> data = regression_data(num_samples=10, noise=0.0)
        >>> float(residuals(data, data.optimum).abs().max()) < 1e-12
        True
    """
    return thetas @ data.inputs.T - data.targets


def gradient(data: Regression, thetas: Tensor) -> Tensor:
    """∇L(θ) = (1/N) Σ_i r_i x_i for every θ of ``thetas`` (..., 2): (..., 2).

    Example:
        >>> data = regression_data(num_samples=10)
        >>> float(gradient(data, data.optimum).norm()) < 1e-12
        True
    """
    return residuals(data, thetas) @ data.inputs / len(data.targets)


def fisher_matrix(data: Regression) -> Tensor:
    """F = (1/N) Σ_i x_i x_iᵀ = XᵀX/N: the Fisher of N(y; θᵀx, 1), its GGN and its Hessian; the same for every θ.

    Example:
        >>> data = regression_data(num_samples=4)
        >>> torch.allclose(fisher_matrix(data), data.inputs.T @ data.inputs / 4)
        True
    """
    return data.inputs.T @ data.inputs / len(data.targets)


def empirical_fisher_matrix(data: Regression, thetas: Tensor) -> Tensor:
    """EF(θ) = (1/N) Σ_i g_i g_iᵀ = (1/N) Σ_i r_i(θ)² x_i x_iᵀ, for every θ of ``thetas`` (..., 2): (..., 2, 2).

    Example:
        >>> data = regression_data(num_samples=5)
        >>> EF = empirical_fisher_matrix(data, torch.zeros(2, dtype=torch.float64))
        >>> torch.allclose(EF, (data.targets[:, None] * data.inputs).T @ (data.targets[:, None] * data.inputs) / 5)
        True
    """
    weights = residuals(data, thetas) ** 2 / len(data.targets)  # (..., N)
    return torch.einsum("...i,ip,iq->...pq", weights, data.inputs, data.inputs)


def relative_difference(A: Tensor, B: Tensor) -> Tensor:
    """‖A − B‖_F / ‖B‖_F over the last two dimensions.

    Example:
        >>> relative_difference(2 * torch.eye(2), torch.eye(2)).item()
        1.0
    """
    return torch.linalg.matrix_norm(A - B) / torch.linalg.matrix_norm(B)


TOY_METHODS = ("GD", "NGD (Fisher)", "EF")


def preconditioned_directions(data: Regression, thetas: Tensor, damping: float = 1e-4) -> dict[str, Tensor]:
    """The step directions −∇L, −(F + λI)⁻¹ ∇L and −(EF(θ) + λI)⁻¹ ∇L at every θ of ``thetas`` (..., 2).

    Args:
        data: the regression.
        thetas: (..., 2) points.
        damping: λ >= 0.

    Returns:
        ``{"GD": ..., "NGD (Fisher)": ..., "EF": ...}``, each (..., 2).

    Example:
        >>> data = regression_data(num_samples=20)
        >>> d = preconditioned_directions(data, torch.zeros(2, dtype=torch.float64), damping=0.0)
        >>> torch.allclose(d["NGD (Fisher)"], data.optimum)  # for a quadratic, one Newton step reaches θ̂
        True
    """
    damping = check_positive("damping", damping, allow_zero=True)
    g = gradient(data, thetas)
    eye = damping * torch.eye(2, dtype=DTYPE)
    return {"GD": -g,
            "NGD (Fisher)": -torch.linalg.solve(fisher_matrix(data) + eye, g.unsqueeze(-1)).squeeze(-1),
            "EF": -torch.linalg.solve(empirical_fisher_matrix(data, thetas) + eye, g.unsqueeze(-1)).squeeze(-1)}


@dataclass(frozen=True)
class VectorField:
    """The three step directions on a square grid of θ, for ``plt.quiver``.

    Attributes:
        theta1, theta2: the grid's coordinates, (G,) each.
        directions: per method, (G, G, 2) with [j, i] at (theta1[i], theta2[j]) (``meshgrid``'s "xy" order).
        optimum: θ̂ (2,).
    """

    theta1: np.ndarray
    theta2: np.ndarray
    directions: dict[str, np.ndarray]
    optimum: np.ndarray


def vector_field(data: Regression, radius: float = 2.0, points: int = 15, damping: float = 1e-4) -> VectorField:
    """The directions of ``preconditioned_directions`` on a points × points grid of half-width ``radius`` around θ̂.

    Example:
        >>> field = vector_field(regression_data(num_samples=20), points=5)
        >>> field.directions["EF"].shape
        (5, 5, 2)
    """
    points = check_count("points", points, 2)
    center = data.optimum
    t1 = torch.linspace(-radius, radius, points, dtype=DTYPE) + center[0]
    t2 = torch.linspace(-radius, radius, points, dtype=DTYPE) + center[1]
    grid = torch.stack(torch.meshgrid(t1, t2, indexing="xy"), dim=-1)
    directions = preconditioned_directions(data, grid, damping)
    return VectorField(t1.numpy(), t2.numpy(), {k: v.numpy() for k, v in directions.items()}, center.numpy())


def preconditioned_path(data: Regression, method: str, start: tuple[float, float], lr: float = 0.1,
                        steps: int = 30, damping: float = 1e-4) -> np.ndarray:
    """θ_{t+1} = θ_t + lr · d(θ_t), d the ``method``'s direction from ``preconditioned_directions``.

    Returns:
        The iterates (steps + 1, 2).

    Example:
        >>> data = regression_data(num_samples=20)
        >>> path = preconditioned_path(data, "NGD (Fisher)", (0.0, 0.0), lr=1.0, steps=1, damping=0.0)
        >>> bool(np.allclose(path[-1], data.optimum.numpy()))
        True
    """
    if method not in TOY_METHODS:
        raise ValueError(f"method must be one of {TOY_METHODS}, got {method!r}.")
    theta = torch.tensor(start, dtype=DTYPE)
    path = [theta]
    for _ in range(check_count("steps", steps, 0)):
        theta = theta + lr * preconditioned_directions(data, theta, damping)[method]
        path.append(theta)
    return torch.stack(path).numpy()


def angle_to_natural_gradient(field: VectorField, method: str = "EF") -> np.ndarray:
    """The angle (degrees) between ``method``'s direction and the natural gradient's at every grid point, (G, G).

    Example:
        >>> field = vector_field(regression_data(num_samples=20), points=3)
        >>> float(angle_to_natural_gradient(field, "NGD (Fisher)").max()) < 1e-5
        True
    """
    a, b = field.directions[method], field.directions["NGD (Fisher)"]
    cosine = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def empirical_fisher_gap(num_samples: int, noise: float = 1.0, seed: int = 0,
                         offset: tuple[float, float] = (0.0, 0.0)) -> float:
    """‖EF(θ) − F‖_F / ‖F‖_F at θ = θ̂ + ``offset`` on ``regression_data(num_samples, noise, seed)``.

    At θ̂ of a well-specified model (σ = 1) it falls like 1/√N; for σ ≠ 1 it tends to |σ² − 1|; away from θ̂
    the residuals r_i = (θ − θ̂)ᵀx_i + r̂_i grow and so does the gap.

    Example:
        >>> empirical_fisher_gap(10_000) < 0.1 < empirical_fisher_gap(10_000, offset=(1.0, 1.0))
        True
    """
    data = regression_data(num_samples, noise, seed)
    theta = data.optimum + torch.tensor(offset, dtype=DTYPE)
    return float(relative_difference(empirical_fisher_matrix(data, theta), fisher_matrix(data)))


# ----------------------------------------------------------------------------------------------------------------------
# (b) a small MLP on digits: per-layer blocks of EF, MC-Fisher, K-FAC, EKFAC against the exact GGN
# ----------------------------------------------------------------------------------------------------------------------
METHODS = ("empirical Fisher", "Monte-Carlo Fisher", "K-FAC", "EKFAC")


@lru_cache(maxsize=8)
def digits_mlp(seed: int = 0, width: int = 16, num_samples: int = 300, steps: int = 30, lr: float = 0.01,
               device: str | None = None):
    """An MLP 64-width-width-10 (tanh) after ``steps`` full-batch Adam steps on ``num_samples`` digits (not yet fit).

    Returns:
        ``(model, (inputs, targets))``, float64, on ``device``.

    Example:
        >>> model, (X, y) = digits_mlp(steps=0, num_samples=20, width=4)
        >>> tuple(X.shape), sum(p.numel() for p in model.parameters())
        ((20, 64), 330)
    """
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = digits()
    chosen = torch.randperm(len(targets), generator=generator)[:check_count("num_samples", num_samples, 1)]
    model = mlp([64, width, width, 10], generator=generator).to(device)
    X, y = inputs[chosen].to(device), targets[chosen].to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        optimiser.step()
    model.requires_grad_(True)
    return model, (X, y)


def layer_blocks(model: nn.Module) -> list[tuple[str, slice]]:
    """Each ``nn.Linear`` layer's name and its slice [weight, bias] of the flat parameters (``model.parameters()``).

    Example:
        >>> layer_blocks(mlp([3, 4, 2]))
        [('0', slice(0, 16, None)), ('2', slice(16, 26, None))]
    """
    blocks, offset = [], 0
    for name, layer in model.named_modules():
        if isinstance(layer, nn.Linear):
            size = sum(p.numel() for p in layer.parameters())
            blocks.append((name, slice(offset, offset + size)))
            offset += size
    return blocks


@dataclass(frozen=True)
class Curvatures:
    """The exact GGN and the four approximations of one model and batch, dense (n, n), and the layers' blocks.

    Attributes:
        ggn: the exact GGN Σ_i w J_iᵀ H_i J_i (= the Fisher for cross-entropy).
        approximations: per method of ``METHODS``, its dense matrix (K-FAC and EKFAC are block-diagonal).
        blocks: ``layer_blocks(model)``.
    """

    ggn: Tensor
    approximations: dict[str, Tensor]
    blocks: list[tuple[str, slice]]


def curvatures(model: nn.Module, data, mc_samples: int = 1, generator: torch.Generator | None = None) -> Curvatures:
    """The GGN (``hl.GGNOperator``), EF and MC-Fisher (``hl.FisherOperator``), K-FAC and EKFAC (``hl.KFACOperator``).

    Cost: n GGN-vector products for the exact GGN, N·S per-sample gradients for each Fisher, one K-FAC pass.

    Args:
        model: an MLP of ``nn.Linear`` layers.
        data: one ``(inputs, targets)`` batch, cross-entropy.
        mc_samples: S, targets drawn per sample for the Monte-Carlo Fisher.
        generator: the draws' random source.

    Returns:
        The ``Curvatures``.

    Example:
        >>> model, data = digits_mlp(steps=0, num_samples=20, width=4)
        >>> c = curvatures(model, data, generator=torch.Generator().manual_seed(0))
        >>> c.ggn.shape, sorted(c.approximations) == sorted(METHODS)
        (torch.Size([330, 330]), True)
    """
    loss = nn.functional.cross_entropy
    approximations = {
        "empirical Fisher": FisherOperator.from_model(model, loss, data, "empirical").to_dense(),
        "Monte-Carlo Fisher": FisherOperator.from_model(model, loss, data, "monte-carlo", num_samples=mc_samples,
                                                        generator=generator).to_dense(),
        "K-FAC": KFACOperator.from_model(model, loss, data).to_dense(),
        "EKFAC": KFACOperator.from_model(model, loss, data, eigenvalue_corrected=True).to_dense(),
    }
    return Curvatures(GGNOperator.from_model(model, loss, data).to_dense(), approximations, layer_blocks(model))


@dataclass(frozen=True)
class BlockErrors:
    """Per method and layer, the errors of the approximation's diagonal block against the GGN's.

    Attributes:
        layers: the layers' names.
        frobenius: per method, (layers,) relative errors ‖Â − A‖_F / ‖A‖_F.
        top_eigenvalue: per method, (layers,) relative errors |λ₁(Â) − λ₁(A)| / λ₁(A).
        spectra: per layer, per method and ``"GGN"``, the block's eigenvalues in descending order.
    """

    layers: list[str]
    frobenius: dict[str, np.ndarray]
    top_eigenvalue: dict[str, np.ndarray]
    spectra: list[dict[str, np.ndarray]]


def block_errors(c: Curvatures) -> BlockErrors:
    """The ``BlockErrors`` of every approximation of ``c``, block by block (dense symmetric eigensolves).

    Example:
        >>> model, data = digits_mlp(steps=0, num_samples=1, width=4)
        >>> errors = block_errors(curvatures(model, data))
        >>> float(errors.frobenius["K-FAC"][-1]) < 1e-10  # one sample: K-FAC's last block is exact
        True
    """
    frobenius = {m: [] for m in c.approximations}
    top = {m: [] for m in c.approximations}
    spectra = []
    for _, where in c.blocks:
        exact = c.ggn[where, where]
        exact_values = torch.linalg.eigvalsh(exact).flip(0)
        spectrum = {"GGN": exact_values.cpu().numpy()}
        for method, matrix in c.approximations.items():
            block = matrix[where, where]
            values = torch.linalg.eigvalsh(block).flip(0)
            frobenius[method].append(float(relative_difference(block, exact)))
            top[method].append(float(abs(values[0] - exact_values[0]) / exact_values[0]))
            spectrum[method] = values.cpu().numpy()
        spectra.append(spectrum)
    return BlockErrors([name for name, _ in c.blocks], {m: np.array(v) for m, v in frobenius.items()},
                       {m: np.array(v) for m, v in top.items()}, spectra)


def monte_carlo_errors(model: nn.Module, data, samples=(1, 4, 16, 64), repeats: int = 3, seed: int = 0,
                       layer: str | None = None, ggn: Tensor | None = None) -> np.ndarray:
    """‖F̂_S − GGN‖_F / ‖GGN‖_F of the Monte-Carlo Fisher with S targets per sample, averaged over ``repeats`` draws.

    F̂_S is a mean of N·S independent terms whose mean is the GGN, so its error falls like 1/√S.

    Args:
        model: the MLP.
        data: one ``(inputs, targets)`` batch, cross-entropy.
        samples: the values of S.
        repeats: independent draws per S.
        seed: seeds the draws.
        layer: a ``nn.Linear`` layer's name for its block only (cheaper), or None for all the parameters.
        ggn: the exact GGN (of the whole model, or of the layer's block) if known.

    Returns:
        (len(samples),) mean relative errors.

    Example:
        >>> model, data = digits_mlp(steps=0, num_samples=10, width=4)
        >>> errors = monte_carlo_errors(model, data, samples=(1, 100), repeats=1, layer="4")
        >>> bool(errors[1] < errors[0])
        True
    """
    loss = nn.functional.cross_entropy
    params = None if layer is None else [f"{layer}.weight", f"{layer}.bias"]
    if ggn is None:
        ggn = GGNOperator.from_model(model, loss, data, params=params).to_dense()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    errors = []
    for S in samples:
        draws = [FisherOperator.from_model(model, loss, data, "monte-carlo", num_samples=S, generator=generator,
                                           params=params).to_dense() for _ in range(check_count("repeats", repeats, 1))]
        errors.append(np.mean([float(relative_difference(F, ggn)) for F in draws]))
    return np.array(errors)


def log_log_slope(x, y) -> float:
    """The least-squares slope of log y against log x.

    Example:
        >>> round(log_log_slope([1, 4, 16], [1.0, 0.5, 0.25]), 6)
        -0.5
    """
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def one_sample_kfac_gap(seed: int = 0, inputs: int = 5, outputs: int = 3) -> float:
    """max |K − GGN| / max |GGN| of K-FAC on one ``nn.Linear`` layer and one sample (cross-entropy): 0 up to rounding.

    One sample's GGN block is (B ⊗ ā āᵀ), a single Kronecker product, which is exactly K-FAC's G ⊗ A.

    Example:
        >>> one_sample_kfac_gap() < 1e-12
        True
    """
    generator = torch.Generator().manual_seed(seed)
    layer = mlp([inputs, outputs], generator=generator)
    X = torch.randn(1, inputs, generator=generator, dtype=DTYPE)
    y = torch.randint(outputs, (1,), generator=generator)
    loss = nn.functional.cross_entropy
    K = KFACOperator.from_model(layer, loss, (X, y)).to_dense()
    G = GGNOperator.from_model(layer, loss, (X, y)).to_dense()
    return float((K - G).abs().max() / G.abs().max())


NG_METHODS = ("GD", "GGN", "empirical Fisher", "Monte-Carlo Fisher", "K-FAC", "EKFAC")


def _direction(method: str, model: nn.Module, data, g: Tensor, damping: float, generator) -> Tensor:
    """(C + λI)⁻¹ g for the ``method``'s curvature C at the model's current parameters."""
    loss = nn.functional.cross_entropy
    if method == "GD":
        return g
    if method in ("K-FAC", "EKFAC"):
        op = KFACOperator.from_model(model, loss, data, eigenvalue_corrected=method == "EKFAC")
        return op.inverse_product(g, damping)
    if method == "GGN":
        C = GGNOperator.from_model(model, loss, data).to_dense()
    else:
        kind = "empirical" if method == "empirical Fisher" else "monte-carlo"
        C = FisherOperator.from_model(model, loss, data, kind, generator=generator if kind != "empirical" else None
                                      ).to_dense()
    return torch.linalg.solve(C + damping * torch.eye(len(g), dtype=g.dtype, device=g.device), g)


def natural_gradient_losses(method: str, model: nn.Module, data, steps: int = 5, lr: float = 1.0,
                            damping: float = 1e-3, seed: int = 0) -> np.ndarray:
    """The training loss along θ ← θ − lr (C(θ) + λI)⁻¹ ∇L(θ), C the ``method``'s curvature (I for GD).

    C is recomputed at every step (the Monte-Carlo Fisher with one fresh draw per sample); the model is copied.

    Args:
        method: one of ``NG_METHODS``.
        model: the MLP.
        data: one ``(inputs, targets)`` batch, cross-entropy.
        steps: the number of steps.
        lr: the step size.
        damping: λ > 0.
        seed: the Monte-Carlo draws.

    Returns:
        (steps + 1,) losses, the first at the start.

    Example:
        >>> model, data = digits_mlp(steps=0, num_samples=30, width=4)
        >>> losses = natural_gradient_losses("K-FAC", model, data, steps=2, damping=0.1)
        >>> bool(losses[-1] < losses[0])
        True
    """
    if method not in NG_METHODS:
        raise ValueError(f"method must be one of {NG_METHODS}, got {method!r}.")
    damping = check_positive("damping", damping)
    model = copy.deepcopy(model)
    params = list(model.parameters())
    generator = torch.Generator(device=params[0].device).manual_seed(seed)
    X, y = data
    losses = []
    for step in range(check_count("steps", steps, 0) + 1):
        loss = nn.functional.cross_entropy(model(X), y)
        losses.append(float(loss.detach()))
        if step == steps or not math.isfinite(losses[-1]):
            break
        g = torch.cat([p.reshape(-1) for p in torch.autograd.grad(loss, params)]).detach()
        d = _direction(method, model, data, g, damping, generator)
        with torch.no_grad():
            theta = nn.utils.parameters_to_vector(params) - lr * d
            nn.utils.vector_to_parameters(theta, params)
    return np.array(losses)

