"""Benchmark hesslab.inverse and hesslab.compress, ratios against baselines timed in the same run (issue 17).

    Woodbury (M-FAC) inverse product, m = 64 gradients, d = 26,122 (an MLP 64-128-128-10), float64, against CG on
    the same damped empirical Fisher λI + GᵀG/m to the same accuracy (CG's rtol = the Woodbury product's residual,
    at least 1e-10). Target <= 0.1x.
    GPTQ on a 256 x 256 layer (512 inputs, 3 bits) against round-to-nearest. Target <= 10x and well under a second.

    .venv/bin/python benchmarks/inverse.py [--rounds 5]
"""

from __future__ import annotations

import argparse

import torch
from harness import header, race, ratio_text, table  # benchmarks/harness.py: this folder is on sys.path

from hesslab import compress
from hesslab.inverse import solve, woodbury_fisher
from hesslab.operators import CurvatureOperator


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(header(torch.device("cpu"), ["torch"]))
    g = torch.Generator().manual_seed(0)
    m, d, damping = 64, 26_122, 1e-2
    G = torch.randn(m, d, generator=g, dtype=torch.float64) / d**0.5
    b = torch.randn(d, generator=g, dtype=torch.float64)
    woodbury = woodbury_fisher(G, damping)
    x = woodbury.inverse_product(b)
    residual = float((woodbury.product(x) - b).norm() / b.norm())
    fisher = CurvatureOperator(lambda V: G.T @ (G @ V) / m, d, torch.float64, "cpu")
    rtol = max(residual, 1e-10)
    result = race({"woodbury": lambda: woodbury.inverse_product(b),
                   "cg": lambda: solve(fisher, b, damping, rtol=rtol).x}, rounds=args.rounds)
    W = torch.randn(256, 256, generator=g, dtype=torch.float32)
    X = torch.randn(512, 256, generator=g, dtype=torch.float32)
    H = compress.layer_hessian(X)
    quant = race({"gptq": lambda: compress.gptq(W, H, 3), "rtn": lambda: compress.round_to_nearest(W, 3)},
                 rounds=args.rounds)
    rows = [["Woodbury product (m = 64, d = 26,122)", f"{result.median('woodbury'):.4f} s",
             ratio_text(result.ratio("woodbury", "cg"), f"CG (rtol {rtol:.1e})"), "<= 0.1x"],
            ["GPTQ 256 x 256, 3 bits", f"{quant.median('gptq'):.4f} s", ratio_text(quant.ratio("gptq", "rtn"), "RTN"),
             "<= 10x, < 1 s"]]
    print("\n".join(table(["workload", "time", "ratio", "target"], rows)))


if __name__ == "__main__":
    main()
