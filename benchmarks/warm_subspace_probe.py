"""Probe (issue 14): the HVPs of warm starts from a subspace, against cold and single-vector warm top_eigen.

Notebook 07's net, as benchmarks/training.py (its gd_step, seeds and sizes); over the window's steps (after
``--warmup`` uncounted steps that fill every variant's memory), per variant the HVPs to reach the relative residual
tol (the true residual ‖Ay − θy‖ <= tol·|θ| + eps·max|θ|, every column of every product counted) and the value's
relative error against top_eigen at tol 1e-8. Also printed per step: |P v_t|, the norm of the exact top
eigenvector's projection on the span of the previous step's top 1, 3, 6 eigenvectors and of the last 2, 3, 4
steps' top eigenvectors.

Variants (Rayleigh–Ritz on span(U), one (n, m) product, then expansion by the top Ritz pair's residual, one HVP
each, in ``subspace_top``; "lib" are hesslab's own top_eigen(v0=warm_subspace(...))):
    cold        top_eigen(op, tol)
    warm        top_eigen(op, tol, v0=v_{t−1}) (Lanczos from the previous vector)
    sub-m       U = the previous measurement's top m Ritz vectors
    hist-w      U = the top vectors of the last w measurements; hist-wd: those adding a new part >= 1e-2
                (hist3d3: >= 3e-2)
    sub2+h, sub3+h, sub2+h2   the previous top 2 or 3 Ritz vectors and the top vectors of 1 or 2 steps before
    extrap      one vector 2 v_{t−1} − v_{t−2}
    lib-w       hl.top_eigen(op, tol, v0=warm_subspace(last w top vectors)): track_curvature(warm_vectors=w)

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD .venv/bin/python benchmarks/warm_subspace_probe.py [--ms 1 2 3 4 5 6]
"""

from __future__ import annotations

import argparse
import sys
import warnings

import torch

sys.path.insert(0, "benchmarks")
from training import gd_step  # noqa: E402

import hesslab as hl  # noqa: E402
from hesslab.experiments.edge_of_stability import digits_subset, squared_error  # noqa: E402
from hesslab.models import mlp  # noqa: E402
from hesslab.training import warm_subspace  # noqa: E402

warnings.filterwarnings("ignore")


def orthonormal(U, against=None, drop=1e-8):
    """Orthonormal basis of span(U) (minus span(against)): columns whose new part is < drop (relative) dropped."""
    if against is not None:
        for _ in range(2):
            U = U - against @ (against.T @ U)
    Q, R = torch.linalg.qr(U)
    keep = R.diagonal().abs() > drop * U.norm(dim=0)
    keep[0] = keep[0] or against is None
    return Q[:, keep]


def subspace_top(op, U, tol, keep, max_dim=300, drop=1e-8):
    """Top eigenpair by Rayleigh–Ritz on span(U) expanded by residuals; (θ, y, ritz (n, keep), HVPs, rel res)."""
    V = orthonormal(U, drop=drop)
    AV = op @ V
    hvps = V.shape[1]
    eps = torch.finfo(V.dtype).eps
    while True:
        H = V.T @ AV
        H = (H + H.T) / 2
        theta, S = torch.linalg.eigh(H)
        s = S[:, -1]
        y, Ay = V @ s, AV @ s
        r = Ay - theta[-1] * y
        if r.norm() <= tol * theta[-1].abs() + eps * theta.abs().max() or V.shape[1] >= max_dim:
            ritz = V @ S[:, -keep:].flip(1)
            return theta[-1].item(), y, ritz, hvps, (r.norm() / theta[-1].abs()).item()
        w = orthonormal(r[:, None], V)
        V = torch.cat([V, w], 1)
        AV = torch.cat([AV, op @ w], 1)
        hvps += 1


def extrapolate(h):
    """2 v_{t-1} − v_{t-2} (signs aligned), or v_{t-1}."""
    if len(h) < 2:
        return h[-1][:, :1]
    a, b = h[-1][:, 0], h[-2][:, 0]
    b = b * torch.sign(a @ b)
    return (2 * a - b)[:, None]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, nargs="+", default=[300, 700])
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--ms", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    args = parser.parse_args()
    torch.set_num_threads(1)
    inputs, targets = digits_subset(1000, 0)
    model = mlp([64, 64, 64, 64, 10], activation="tanh", generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    done = 0
    for step in sorted(args.steps):
        for _ in range(step - args.warmup - done):
            gd_step(model, inputs, targets, 0.25)
        op = hl.HessianOperator.from_model(model, squared_error, (inputs, targets))
        ref = hl.top_eigen(op, k=max(args.ms), tol=1e-8, generator=generator)
        prev_warm = ref.vectors[:, 0]
        # per variant: the history of Ritz blocks (newest last); a builder makes the start block from it
        variants = {f"sub{m}": (lambda h, m=m: h[-1][:, :m]) for m in args.ms}
        drops = {"hist3d": 1e-2, "hist4d": 1e-2, "hist3d3": 3e-2}
        variants.update({
            "hist3d": lambda h: torch.cat([b[:, :1] for b in h[-1:-4:-1]], 1),
            "hist4d": lambda h: torch.cat([b[:, :1] for b in h[-1:-5:-1]], 1),
            "hist3d3": lambda h: torch.cat([b[:, :1] for b in h[-1:-4:-1]], 1),
            "hist2": lambda h: torch.cat([b[:, :1] for b in h[-2:]], 1),
            "hist3": lambda h: torch.cat([b[:, :1] for b in h[-3:]], 1),
            "hist4": lambda h: torch.cat([b[:, :1] for b in h[-4:]], 1),
            "sub2+h": lambda h: torch.cat([h[-1][:, :2]] + [b[:, :1] for b in h[-2:-1]], 1),
            "sub3+h": lambda h: torch.cat([h[-1][:, :3]] + [b[:, :1] for b in h[-2:-1]], 1),
            "sub2+h2": lambda h: torch.cat([h[-1][:, :2]] + [b[:, :1] for b in h[-3:-1]], 1),
            "extrap": lambda h: extrapolate(h),
        })
        libs = {f"lib{w}": w for w in (2, 3, 4)}
        lib_history = {key: [ref.vectors[:, 0]] for key in libs}
        history = {key: [ref.vectors] for key in variants}
        prev_exact = [ref.vectors]
        totals = {}
        print(f"== steps {step}+: λ top 6 {[round(v, 3) for v in ref.values.tolist()]}")
        for t in range(-args.warmup, args.window):
            gd_step(model, inputs, targets, 0.25)
            op = hl.HessianOperator.from_model(model, squared_error, (inputs, targets))
            exact = hl.top_eigen(op, k=max(args.ms), tol=1e-8, generator=generator)
            lam = exact.values[0].item()
            v = exact.vectors[:, 0]
            capture = [(orthonormal(prev_exact[-1][:, :m]).T @ v).norm().item() for m in (1, 3, 6)]
            capture += [(orthonormal(torch.cat([b[:, :1] for b in prev_exact[-j:]], 1)).T @ v).norm().item()
                        for j in (2, 3, 4)]
            row = {}
            cold = hl.top_eigen(op, tol=args.tol, generator=generator)
            row["cold"] = (cold.num_matvecs, abs(cold.values[0].item() - lam) / lam)
            warm = hl.top_eigen(op, tol=args.tol, v0=prev_warm, generator=generator)
            row["warm"] = (warm.num_matvecs, abs(warm.values[0].item() - lam) / lam)
            prev_warm = warm.vectors[:, 0]
            for key, build in variants.items():
                theta, y, ritz, hvps, res = subspace_top(op, build(history[key]), args.tol, max(args.ms),
                                                         drop=drops.get(key, 1e-8))
                row[key] = (hvps, abs(theta - lam) / lam)
                history[key].append(ritz)
            for key, w in libs.items():
                result = hl.top_eigen(op, tol=args.tol, v0=warm_subspace(lib_history[key][-w:]), generator=generator)
                row[key] = (result.num_matvecs, abs(result.values[0].item() - lam) / lam)
                assert result.residuals[0] <= args.tol * result.values[0].abs() * (1 + 1e-6) and result.converged
                lib_history[key].append(result.vectors[:, 0])
            prev_exact.append(exact.vectors)
            for key, (h, _) in row.items():
                totals[key] = totals.get(key, 0) + h * (t >= 0)
            print(f"  t={step + t} λ={lam:.4f} top {[round(x, 3) for x in exact.values[:4].tolist()]} "
                  f"capture top1,3,6 / hist2,3,4 {[round(c, 4) for c in capture]}")
            print("     " + "  ".join(f"{k}:{h}({e:.0e})" for k, (h, e) in row.items()))
        print("  totals " + "  ".join(f"{k}:{h} ({h / totals['cold']:.2f}x)" for k, h in totals.items()))
        done = step + args.window


if __name__ == "__main__":
    main()
