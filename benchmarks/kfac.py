"""Benchmark hesslab's K-FAC (hesslab.kronecker, hl.KFACOperator), ratios against baselines timed in the same run.

An MLP 64-128-128-10 (tanh, 26,122 parameters) with mean cross-entropy on N = 512 synthetic digits-sized samples,
float32, ``torch.set_num_threads(2)``, at its random init (K-FAC's cost does not depend on the point):

    workload                             hesslab                                 baseline            target
    K-FAC factors, MC (1 sample)         KFACOperator.from_model(.., "monte-     one gradient        <= 1.5x
                                         carlo")                                 (forward + backward)
    K-FAC factors, MC (1 sample)         the same                                curvlinops           <= 1.0x
                                                                                 KFACLinearOperator
                                                                                 (built + factors)
    K-FAC factors, type-2 (C = 10)       KFACOperator.from_model(.., "ggn")      curvlinops type-2   <= 1.0x
    K-FAC factors, empirical             KFACOperator.from_model(.., "empirical") one gradient       (<= 1.5x)
    K-FAC product, one vector            KFACOperator @ v                        one HVP             <= 0.2x
                                                                                 (HessianOperator @ v)
    K-FAC product, one vector            the same                                curvlinops @ v      <= 1.0x

Operators are built before their products are timed; the factors' times include building the operator (for
curvlinops, ``KFACLinearOperator(...)`` and ``compute_kronecker_factors()``). The two K-FACs are checked to be the
same matrix on the type-2 flavour before timing (their Monte-Carlo draws differ). Timing: benchmarks/harness.py;
"fastest rounds" is min / min, the check of the medians' ratio on a loaded machine.

    .venv/bin/python benchmarks/kfac.py [--rounds 21]        (make bench-kfac)
"""

from __future__ import annotations

import argparse

import torch
from harness import header, race, ratio_text, table  # benchmarks/harness.py: this folder is on sys.path
from torch import nn

import hesslab as hl


def problem(num_samples: int = 512, dtype=torch.float32):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 128), nn.Tanh(), nn.Linear(128, 10)).to(dtype)
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(10, 64, generator=g, dtype=dtype)
    y = torch.randint(0, 10, (num_samples,), generator=g)
    X = centres[y] + torch.randn(num_samples, 64, generator=g, dtype=dtype)
    return model, X, y


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    torch.set_num_threads(2)
    import curvlinops

    print(header(torch.device("cpu"), ["torch", "hesslab", "curvlinops-for-pytorch"]))
    model, X, y = problem()
    loss_fn = nn.CrossEntropyLoss()
    params = list(model.parameters())
    n = sum(p.numel() for p in params)
    print(f"MLP 64-128-128-10 (tanh), n = {n:,} parameters, N = {X.shape[0]} samples, float32, mean cross-entropy")

    def gradient():
        return torch.autograd.grad(loss_fn(model(X), y), params)

    def ours(flavour):
        return lambda: hl.KFACOperator.from_model(model, loss_fn, (X, y), flavour,
                                                  generator=torch.Generator().manual_seed(0))

    def theirs(fisher_type):
        def build():
            op = curvlinops.KFACLinearOperator(model, loss_fn, params, [(X, y)], fisher_type=fisher_type,
                                               separate_weight_and_bias=False, check_deterministic=False)
            op.compute_kronecker_factors()
            return op
        return build

    check = torch.randn(n, 3, generator=torch.Generator().manual_seed(2))
    a, b = ours("ggn")() @ check, theirs("type-2")() @ check
    error = float((a - b).norm() / b.norm())
    print(f"hesslab's and curvlinops' type-2 K-FAC on 3 random vectors: relative difference {error:.1e}")
    assert error < 1e-4, "the two K-FACs are not the same matrix"

    factors = race({"gradient": gradient, "hesslab mc": ours("monte-carlo"), "curvlinops mc": theirs("mc"),
                    "hesslab ggn": ours("ggn"), "curvlinops type-2": theirs("type-2"),
                    "hesslab empirical": ours("empirical")}, rounds=args.rounds,
                   repeats=3)
    kfac, reference = ours("monte-carlo")(), theirs("mc")()
    hessian = hl.HessianOperator.from_model(model, loss_fn, (X, y))
    v = torch.randn(n, generator=torch.Generator().manual_seed(3))
    products = race({"hesslab": lambda: kfac @ v, "hvp": lambda: hessian @ v, "curvlinops": lambda: reference @ v},
                    rounds=args.rounds, repeats=10)

    def ms(seconds):
        return f"{1e3 * seconds:.2f} ms"

    def compare(timed, name, baseline, unit):
        return [ratio_text(timed.ratio(name, baseline), unit), f"{timed.fastest_ratio(name, baseline):.2f}x"]

    rows = [["one gradient (forward + backward)", ms(factors.median("gradient")), "", "", ""],
            ["K-FAC factors, MC (1 sample)", ms(factors.median("hesslab mc")),
             *compare(factors, "hesslab mc", "gradient", "gradient"), "<= 1.5x"],
            ["", "", *compare(factors, "hesslab mc", "curvlinops mc", "curvlinops"), "<= 1.0x"],
            ["K-FAC factors, type-2 (C = 10)", ms(factors.median("hesslab ggn")),
             *compare(factors, "hesslab ggn", "curvlinops type-2", "curvlinops"), "<= 1.0x"],
            ["", "", *compare(factors, "hesslab ggn", "gradient", "gradient"), ""],
            ["K-FAC factors, empirical (data's targets)", ms(factors.median("hesslab empirical")),
             *compare(factors, "hesslab empirical", "gradient", "gradient"), "(<= 1.5x)"],
            ["K-FAC product, one vector", ms(products.median("hesslab")),
             *compare(products, "hesslab", "hvp", "HVP"), "<= 0.2x"],
            ["", "", *compare(products, "hesslab", "curvlinops", "curvlinops"), "<= 1.0x"],
            ["one HVP (HessianOperator @ v)", ms(products.median("hvp")), "", "", ""]]
    print("\n".join(table(["workload", "time", "ratio [IQR of per-round ratios]", "fastest rounds", "target"], rows)))


if __name__ == "__main__":
    main()
