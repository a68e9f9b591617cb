"""Make the README's figure: the Hessian spectrum of a small MLP trained on Gaussian clusters, exact and by SLQ.

Run: .venv/bin/python docs/make_figures.py   (a few seconds on a laptop CPU)
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import hesslab as hl  # noqa: E402
from hesslab.plot import plot_spectral_density  # noqa: E402


def trained_mlp(classes: int = 4, per_class: int = 50, dim: int = 10, width: int = 32, seed: int = 0):
    """An MLP dim-width-classes (tanh) trained by full-batch gradient descent on Gaussian clusters."""
    generator = torch.Generator().manual_seed(seed)
    centres = 6 * torch.rand(classes, dim, generator=generator, dtype=torch.float64) - 3
    targets = torch.arange(classes).repeat_interleave(per_class)
    inputs = centres[targets] + torch.randn(len(targets), dim, generator=generator, dtype=torch.float64)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(dim, width), nn.Tanh(), nn.Linear(width, classes)).double()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(300):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimiser.step()
    return model, inputs, targets


def main(out: Path = Path(__file__).parent / "hessian_spectrum.png") -> None:
    generator = hl.seed(0, "cpu")
    model, inputs, targets = trained_mlp()
    f, theta = hl.loss_function(model, nn.functional.cross_entropy, inputs, targets)
    eigenvalues = torch.linalg.eigvalsh(hl.hessian(f, theta))
    density = hl.spectral_density(hl.HessianOperator(f, theta), num_steps=60, num_probes=8, generator=generator)
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    plot_spectral_density(density, eigenvalues, ax=ax, label="SLQ, 60 Lanczos steps × 8 probes")
    ax.set_title(f"Hessian of an MLP 10-32-4 on 4 Gaussian clusters ({theta.numel()} parameters):\n"
                 "a bulk near zero and a few outliers", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    top = eigenvalues.flip(0)[:6].tolist()
    print(f"wrote {out}; top eigenvalues {[round(t, 4) for t in top]}")


if __name__ == "__main__":
    main()
