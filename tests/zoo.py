"""The shared test zoo: structured matrices and models that users bring, with their dense float64 answers.

Random inputs hide the failures that matter (a ±1 start orthogonal to a ±1-structured eigenvector, an eigenvalue
repeated, a loss summed instead of averaged, a sequence-first batch). Every operator and estimator is run over this
zoo in ``tests/test_zoo.py`` and compared with the exact answer computed here independently of hesslab:
``torch.autograd.functional.hessian`` / ``jacobian`` on the flat parameter vector, in float64.

Matrices: ``MATRICES[name]`` is a symmetric float64 (n, n) tensor; ``eigenvalues(A)`` its exact spectrum.
Models: ``MODELS[name]`` builds a ``ModelCase`` (model, loss, three batches of data); ``as_data(case, kind)`` gives
the data as one batch, a list of three batches or a DataLoader; ``reference_hessian(case, kind)`` and
``reference_ggn(case, kind)`` the curvature of the sample-weighted mean loss over that data.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import scipy.linalg
import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import DataLoader, Dataset, TensorDataset

DTYPE = torch.float64


# ----------------------------------------------------------------------------------------------------------------------
# structured symmetric matrices
# ----------------------------------------------------------------------------------------------------------------------
def random_orthogonal(n: int, seed: int) -> Tensor:
    """A Haar-random orthogonal (n, n) matrix (QR of a Gaussian matrix, signs fixed)."""
    g = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=DTYPE))
    return Q * torch.sign(torch.diagonal(R))


def with_spectrum(values, Q: Tensor) -> Tensor:
    """Q diag(values) Qᵀ, symmetrised exactly."""
    A = Q @ torch.diag(torch.as_tensor(values, dtype=DTYPE)) @ Q.T
    return (A + A.T) / 2


def _hadamard_eigenvectors(values) -> Tensor:
    """Eigenvectors ±1/√n (a Hadamard matrix): every Rademacher start has an O(1/√n)-or-zero overlap with them."""
    n = len(values)
    H = torch.as_tensor(scipy.linalg.hadamard(n), dtype=DTYPE) / math.sqrt(n)
    return with_spectrum(values, H)


def _softmax_regression_at_zero(num_features: int = 4, num_classes: int = 3, num_samples: int = 20) -> Tensor:
    """Hessian of mean cross-entropy of a linear softmax model at θ = 0: (I/K − 11ᵀ/K²) ⊗ XᵀX/N.

    The first factor has eigenvalue 1/K (K − 1 times) and 0 (once, on 1): every eigenvalue of XᵀX/N appears
    K − 1 times (scaled by 1/K), plus d zeros.
    """
    g = torch.Generator().manual_seed(3)
    X = torch.randn(num_samples, num_features, generator=g, dtype=DTYPE)
    K = num_classes
    P = torch.eye(K, dtype=DTYPE) / K - torch.ones(K, K, dtype=DTYPE) / K**2
    return torch.kron(P, X.T @ X / num_samples)


MATRICES: dict[str, Tensor] = {
    "2x2 [[2,1],[1,2]]": torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=DTYPE),
    "I + 11ᵀ (n=100)": torch.eye(100, dtype=DTYPE) + torch.ones(100, 100, dtype=DTYPE),
    "hadamard eigenvectors": _hadamard_eigenvectors([8.0, 5.0, 3.0, 2.0, 1.0, 0.5, 0.25, 0.125]),
    "repeated [50,20,10,10,5,...]": with_spectrum([50.0, 20.0, 10.0, 10.0] + [5.0 - 0.1 * i for i in range(26)],
                                                  random_orthogonal(30, 0)),
    "triple top": with_spectrum([7.0, 7.0, 7.0] + [1.0 + 0.1 * i for i in range(17)], random_orthogonal(20, 1)),
    "clustered": with_spectrum([10.0, 10.0 - 1e-6, 10.0 - 2e-6, 3.0] + [1.0 - 0.05 * i for i in range(16)],
                               random_orthogonal(20, 2)),
    "negative dominant": with_spectrum([-30.0, 10.0, 4.0] + [0.5 * i - 3.0 for i in range(13)],
                                       random_orthogonal(16, 3)),
    "softmax regression at 0": _softmax_regression_at_zero(),
    "zero": torch.zeros(5, 5, dtype=DTYPE),
    "zero block": torch.block_diag(with_spectrum([4.0, 2.0, 1.0], random_orthogonal(3, 4)),
                                   torch.zeros(4, 4, dtype=DTYPE)),
    "rank one": (lambda u: torch.outer(u, u))(torch.arange(1.0, 13.0, dtype=DTYPE) / 10),
    "n=1": torch.tensor([[3.0]], dtype=DTYPE),
    "n=2 indefinite": torch.tensor([[1.0, 2.0], [2.0, -2.0]], dtype=DTYPE),  # eigenvalues 2, −3
    "random": with_spectrum(torch.linspace(-2.0, 5.0, 25, dtype=DTYPE), random_orthogonal(25, 5)),
}


def eigenvalues(A: Tensor) -> Tensor:
    """The exact spectrum, ascending (LAPACK in float64)."""
    return torch.linalg.eigvalsh(A)


# ----------------------------------------------------------------------------------------------------------------------
# models people bring
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class ModelCase:
    """A model in float64, its loss, and three batches (inputs, targets) of unequal sizes.

    ``batch_dim`` is the samples' dimension of the inputs (1 for sequence-first recurrent nets); the targets always
    have the samples first. ``mean_loss`` says whether the loss averages over the batch.
    """

    model: nn.Module
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    batches: list[tuple]
    batch_dim: int = 0
    mean_loss: bool = True


BATCH_SIZES = (4, 3, 5)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _classification_batches(shape: tuple[int, ...], num_classes: int, seed: int, batch_dim: int = 0):
    g = _generator(seed)
    batches = []
    for size in BATCH_SIZES:
        full_shape = list(shape)
        full_shape.insert(batch_dim, size)
        inputs = torch.randn(*full_shape, generator=g, dtype=DTYPE)
        targets = torch.randint(0, num_classes, (size,), generator=g)
        batches.append((inputs, targets))
    return batches


def _regression_batches(num_features: int, num_outputs: int, seed: int):
    g = _generator(seed)
    return [(torch.randn(size, num_features, generator=g, dtype=DTYPE),
             torch.randn(size, num_outputs, generator=g, dtype=DTYPE)) for size in BATCH_SIZES]


def _init(model: nn.Module, seed: int) -> nn.Module:
    """Deterministic float64 parameters of a moderate scale (so curvature is far from zero)."""
    torch.manual_seed(seed)
    model = model.to(DTYPE)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=_generator(seed + p.numel()), dtype=DTYPE) * 0.5)
    return model


def mlp(activation: type[nn.Module]) -> Callable[[], ModelCase]:
    def build() -> ModelCase:
        model = _init(nn.Sequential(nn.Linear(4, 5), activation(), nn.Linear(5, 3)), 0)
        return ModelCase(model, nn.functional.cross_entropy, _classification_batches((4,), 3, 10))
    return build


def cnn_batchnorm_eval() -> ModelCase:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 3 * 3, 3))
    model = _init(model, 1)
    bn = model[1]
    bn.running_mean.copy_(torch.tensor([0.3, -0.2], dtype=DTYPE))
    bn.running_var.copy_(torch.tensor([1.5, 0.7], dtype=DTYPE))
    model.eval()
    return ModelCase(model, nn.functional.cross_entropy, _classification_batches((1, 5, 5), 3, 11))


class LastStep(nn.Module):
    """A recurrent net (sequence-first unless ``batch_first``) whose last time step feeds a linear classifier."""

    def __init__(self, rnn: nn.Module, hidden: int, num_classes: int, batch_first: bool):
        super().__init__()
        self.rnn, self.head, self.batch_first = rnn, nn.Linear(hidden, num_classes), batch_first

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1] if self.batch_first else out[-1])


def lstm_sequence_first() -> ModelCase:
    """LSTM with inputs (T = 6, B, F): len(inputs) is T, not the batch size."""
    model = _init(LastStep(nn.LSTM(3, 3), 3, 2, batch_first=False), 2)
    return ModelCase(model, nn.functional.cross_entropy, _classification_batches((6, 3), 2, 12, batch_dim=1),
                     batch_dim=1)


def gru_batch_first() -> ModelCase:
    model = _init(LastStep(nn.GRU(3, 3, batch_first=True), 3, 2, batch_first=True), 3)
    return ModelCase(model, nn.functional.cross_entropy, _classification_batches((5, 3), 2, 13))


class Encoder(nn.Module):
    """One ``nn.TransformerEncoderLayer`` (scaled_dot_product_attention inside), mean-pooled, then linear."""

    def __init__(self, d_model: int = 4, num_classes: int = 3):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d_model, nhead=2, dim_feedforward=6, dropout=0.0, batch_first=True)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layer(x).mean(dim=1))


def transformer_encoder() -> ModelCase:
    model = _init(Encoder(), 4).eval()
    return ModelCase(model, nn.functional.cross_entropy, _classification_batches((5, 4), 3, 14))


class TiedEmbedding(nn.Module):
    """A language-model style tie: the output layer's weight *is* the embedding's (one parameter, used twice)."""

    def __init__(self, vocabulary: int = 5, width: int = 3):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, width)
        self.output = nn.Linear(width, vocabulary)
        self.output.weight = self.embedding.weight

    def forward(self, tokens: Tensor) -> Tensor:
        return self.output(torch.tanh(self.embedding(tokens).mean(dim=1)))


def weight_tying() -> ModelCase:
    model = _init(TiedEmbedding(), 5)
    g = _generator(15)
    batches = [(torch.randint(0, 5, (size, 4), generator=g), torch.randint(0, 5, (size,), generator=g))
               for size in BATCH_SIZES]
    return ModelCase(model, nn.functional.cross_entropy, batches)


class TwoHeads(nn.Module):
    """A body and two heads; the loss reads only ``head`` — ``unused_head`` has zero curvature."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(3, 4)
        self.head = nn.Linear(4, 2)
        self.unused_head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.tanh(self.body(x)))


def unused_head() -> ModelCase:
    model = _init(TwoHeads(), 6)
    return ModelCase(model, nn.functional.cross_entropy, _classification_batches((3,), 2, 16))


def mse_sum() -> ModelCase:
    """A summed (not averaged) loss: over several batches the mean-of-batches convention is wrong for it."""
    model = _init(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)), 7)
    return ModelCase(model, lambda z, y: nn.functional.mse_loss(z, y, reduction="sum"), _regression_batches(3, 2, 17),
                     mean_loss=False)


class DictInputs(nn.Module):
    """A model whose inputs are a dict of tensors (as tokenised batches are)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 3)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.linear(torch.tanh(batch["x"]) * batch["scale"])


def dict_inputs() -> ModelCase:
    model = _init(DictInputs(), 8)
    g = _generator(18)
    batches = [({"x": torch.randn(size, 3, generator=g, dtype=DTYPE), "scale": torch.rand(size, 1, generator=g,
                                                                                          dtype=DTYPE) + 0.5},
                torch.randint(0, 3, (size,), generator=g)) for size in BATCH_SIZES]
    return ModelCase(model, nn.functional.cross_entropy, batches)


MODELS: dict[str, Callable[[], ModelCase]] = {
    "mlp tanh": mlp(nn.Tanh),
    "mlp relu": mlp(nn.ReLU),
    "mlp gelu": mlp(nn.GELU),
    "cnn batchnorm eval": cnn_batchnorm_eval,
    "lstm sequence-first": lstm_sequence_first,
    "gru": gru_batch_first,
    "transformer encoder layer": transformer_encoder,
    "weight tying": weight_tying,
    "unused head": unused_head,
    "mse sum": mse_sum,
    "dict inputs": dict_inputs,
}

DATA_KINDS = ("one batch", "three batches", "loader")


# ----------------------------------------------------------------------------------------------------------------------
# the data in the forms users pass it
# ----------------------------------------------------------------------------------------------------------------------
def _concatenate(case: ModelCase) -> tuple:
    inputs = [b[0] for b in case.batches]
    if isinstance(inputs[0], dict):
        joined = {key: torch.cat([x[key] for x in inputs]) for key in inputs[0]}
    else:
        joined = torch.cat(inputs, dim=case.batch_dim)
    return joined, torch.cat([b[1] for b in case.batches])


class _Samples(Dataset):
    """Sample i of the concatenated data (inputs' sample dimension may be 1)."""

    def __init__(self, case: ModelCase):
        self.inputs, self.targets = _concatenate(case)
        self.batch_dim = case.batch_dim

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        return self.inputs.select(self.batch_dim, i), self.targets[i]


def loader(case: ModelCase, shuffle: bool = False, batch_size: int = 4) -> DataLoader:
    """A DataLoader over all samples; sequence-first inputs are collated along dim 1."""
    if case.batch_dim == 0 and not isinstance(case.batches[0][0], dict):
        dataset = TensorDataset(*_concatenate(case))
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                          generator=torch.Generator().manual_seed(0) if shuffle else None)

    def collate(items):
        xs, ys = zip(*items)
        if isinstance(xs[0], dict):
            return {key: torch.stack([x[key] for x in xs]) for key in xs[0]}, torch.stack(ys)
        return torch.stack(xs, dim=case.batch_dim), torch.stack(ys)

    if isinstance(case.batches[0][0], dict):
        inputs, targets = _concatenate(case)
        samples = [({key: value[i] for key, value in inputs.items()}, targets[i]) for i in range(len(targets))]
        return DataLoader(samples, batch_size=batch_size, shuffle=shuffle, collate_fn=collate,
                          generator=torch.Generator().manual_seed(0) if shuffle else None)
    return DataLoader(_Samples(case), batch_size=batch_size, shuffle=shuffle, collate_fn=collate,
                      generator=torch.Generator().manual_seed(0) if shuffle else None)


def as_data(case: ModelCase, kind: str):
    """The data as ``"one batch"`` (the first batch), ``"three batches"`` (a list) or ``"loader"`` (a DataLoader)."""
    if kind == "one batch":
        return case.batches[0]
    if kind == "three batches":
        return list(case.batches)
    if kind == "loader":
        return loader(case)
    raise ValueError(f"unknown data kind {kind!r}; choose from {DATA_KINDS}.")


def batches_of(case: ModelCase, kind: str) -> list[tuple]:
    """The batches that ``as_data(case, kind)`` yields, as a list."""
    data = as_data(case, kind)
    return [data] if kind == "one batch" else list(data)


# ----------------------------------------------------------------------------------------------------------------------
# the dense float64 answers, independent of hesslab
# ----------------------------------------------------------------------------------------------------------------------
def flat_parameters(model: nn.Module) -> tuple[Tensor, list[tuple[str, Tensor]]]:
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    return torch.cat([p.detach().reshape(-1) for _, p in named]), named


def _unflatten(theta: Tensor, named) -> dict[str, Tensor]:
    pieces = torch.split(theta, [p.numel() for _, p in named])
    return {name: piece.view(p.shape) for (name, p), piece in zip(named, pieces)}


def _outputs(model: nn.Module, named, theta: Tensor, inputs) -> Tensor:
    return functional_call(model, _unflatten(theta, named), (inputs,))


def _weighted_mean(parts: list[tuple[int, Tensor]]) -> Tensor:
    total = sum(n for n, _ in parts)
    return sum(n * part for n, part in parts) / total


@functools.cache
def _cached_case(name: str) -> ModelCase:
    return MODELS[name]()


def case(name: str) -> ModelCase:
    """The model case ``name`` (built once per test session; do not modify it)."""
    return _cached_case(name)


@functools.cache
def reference_hessian(name: str, kind: str) -> Tensor:
    """Σ_b n_b ∇²L_b / Σ_b n_b over the batches of ``as_data(case, kind)``, n_b = number of targets (float64)."""
    c = case(name)
    theta, named = flat_parameters(c.model)
    parts = []
    with sdpa_kernel(SDPBackend.MATH):
        for inputs, targets in batches_of(c, kind):
            H = torch.autograd.functional.hessian(
                lambda t: c.loss_fn(_outputs(c.model, named, t, inputs), targets), theta, vectorize=True)
            parts.append((len(targets), H))
    return _weighted_mean(parts)


@functools.cache
def reference_ggn(name: str, kind: str) -> Tensor:
    """Σ_b n_b J_bᵀ H_L,b J_b / Σ_b n_b: Jacobians of the outputs and the loss Hessian in the outputs (float64)."""
    c = case(name)
    theta, named = flat_parameters(c.model)
    parts = []
    with sdpa_kernel(SDPBackend.MATH):
        for inputs, targets in batches_of(c, kind):
            z = _outputs(c.model, named, theta, inputs).detach()
            J = torch.autograd.functional.jacobian(lambda t: _outputs(c.model, named, t, inputs), theta,
                                                   vectorize=True).reshape(z.numel(), -1)
            H_L = torch.autograd.functional.hessian(lambda out: c.loss_fn(out.view(z.shape), targets),
                                                    z.reshape(-1)).reshape(z.numel(), z.numel())
            parts.append((len(targets), J.T @ H_L @ J))
    return _weighted_mean(parts)
