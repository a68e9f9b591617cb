"""Benchmark hesslab.inverse and hesslab.compress, ratios against baselines timed in the same run (issue 17).

    Woodbury (M-FAC) inverse product, m = 64 gradients, d = 26,122, float64, against CG on the same damped empirical
    Fisher λI + GᵀG/m to the same accuracy (CG's rtol = the Woodbury product's residual, at least 1e-10). Target
    <= 0.1x. Two sets of gradients: the per-sample gradients of an MLP 64-128-128-10 (tanh, PyTorch's
    initialisation) on 64 digits (the target's setting: a real empirical Fisher, whose spectrum decays, so that CG
    needs many steps), and random Gaussian ones (a well-conditioned Fisher: CG's easiest case).
    GPTQ on a 256 x 256 layer (512 inputs, 3 bits) against round-to-nearest. Target <= 10x and well under a second.

    .venv/bin/python benchmarks/inverse.py [--rounds 5]
"""

from __future__ import annotations

import argparse

import torch
from harness import header, race, ratio_text, table  # benchmarks/harness.py: this folder is on sys.path

from hesslab import compress
from hesslab.data import digits
from hesslab.functional import per_sample_gradients
from hesslab.inverse import solve, woodbury_fisher
from hesslab.models import mlp
from hesslab.operators import CurvatureOperator


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(header(torch.device("cpu"), ["torch"]))
    g = torch.Generator().manual_seed(0)
    m, d, damping = 64, 26_122, 1e-2
    inputs, targets = digits()
    model = mlp([64, 128, 128, 10], activation="tanh", generator=g)
    mlp_gradients = per_sample_gradients(model, torch.nn.functional.cross_entropy, inputs[:m], targets[:m])[0]
    gradient_sets = {"MLP per-sample gradients": mlp_gradients,
                     "random Gaussian gradients": torch.randn(m, d, generator=g, dtype=torch.float64) / d**0.5}
    rows = []
    for name, G in gradient_sets.items():
        b = torch.randn(d, generator=g, dtype=torch.float64)
        woodbury = woodbury_fisher(G, damping)
        x = woodbury.inverse_product(b)
        residual = float((woodbury.product(x) - b).norm() / b.norm())
        fisher = CurvatureOperator(lambda V, G=G: G.T @ (G @ V) / m, d, torch.float64, "cpu")
        rtol = max(residual, 1e-10)
        iterations = solve(fisher, b, damping, rtol=rtol).iterations
        result = race({"woodbury": lambda: woodbury.inverse_product(b),
                       "cg": lambda: solve(fisher, b, damping, rtol=rtol).x}, rounds=args.rounds)
        rows.append([f"Woodbury product, {name} (m = {m}, d = {d:,})", f"{result.median('woodbury'):.4f} s",
                     "{:.3f}x CG ({} steps, rtol {:.1e}) [{:.3f}-{:.3f}]".format(
                         result.ratio("woodbury", "cg")[0], iterations, rtol, *result.ratio("woodbury", "cg")[1:]),
                     "<= 0.1x"])
    W = torch.randn(256, 256, generator=g, dtype=torch.float32)
    X = torch.randn(512, 256, generator=g, dtype=torch.float32)
    H = compress.layer_hessian(X)
    quant = race({"gptq": lambda: compress.gptq(W, H, 3), "rtn": lambda: compress.round_to_nearest(W, 3)},
                 rounds=args.rounds)
    rows += [["GPTQ 256 x 256, 3 bits", f"{quant.median('gptq'):.4f} s", ratio_text(quant.ratio("gptq", "rtn"), "RTN"),
              "<= 10x, < 1 s"]]
    print("\n".join(table(["workload", "time", "ratio", "target"], rows)))


if __name__ == "__main__":
    main()
