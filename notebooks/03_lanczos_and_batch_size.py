# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Lanczos, spectral densities, and the Hessian of a mini-batch
#
# **Paper:** Granziol, Zohren & Roberts (2022), *Learning Rates as a Function of Batch Size: A Random Matrix Theory
# Approach to Neural Network Training*, JMLR 23(173). **Tools:** the Lanczos method (Lanczos 1950) and stochastic
# Lanczos quadrature (SLQ; Ubaru, Chen & Saad 2017), which see a Hessian through Hessian-vector products only.
#
# **Phenomenon:** the Hessian of a mini-batch of B samples has larger extremal eigenvalues than the full-batch
# Hessian, and they shrink towards the full-batch ones as B grows. Since gradient descent on a quadratic is stable only
# for a learning rate below $2/\lambda_{\max}$, this is what ties the usable learning rate to the batch size.
#
# **The math.** With per-sample Hessians $h_i$ and $H = \frac1N\sum_i h_i$, a batch $S$ of size B has
# $H_B = \frac1B \sum_{i\in S} h_i = H + \varepsilon_B$, a fluctuation with $\mathbb E\,\varepsilon_B = 0$ and size
# $\propto 1/\sqrt B$. Two facts, then a model:
#
# * **Convexity.** $\lambda_{\max}$ is convex, and over a partition of the data into batches $S$,
#   $H = \sum_S \frac{|S|}{N} H_S$, so $\lambda_{\max}(H) \le \sum_S \frac{|S|}{N}\lambda_{\max}(H_S)$: *on average a
#   batch is sharper than the whole*. If the partition into batches of 2B merges pairs of batches of B, the same
#   argument shows that the mean cannot grow from B to 2B.
# * **How much sharper** (the paper's random-matrix model): if $H$ has an outlier $\lambda_1$ (eigenvector $u_1$) above
#   a bulk near 0 and $\varepsilon_B$ behaves like a Wigner matrix with $s_B^2 = \mathbb E\|\varepsilon_B u\|^2$
#   $(= P\sigma^2/B$ in the paper$)$, the top eigenvalue of $H_B$ goes to (Baik–Ben Arous–Péché)
#   $$\lambda_{\max}(H_B) \approx \lambda_1 + \frac{s_B^2}{\lambda_1} \quad (\lambda_1 > s_B), \qquad
#     2 s_B \quad\text{otherwise}.$$
#   We *measure* $s_B^2 = \frac{N-B}{B(N-1)} \cdot \frac1N \sum_i \|(h_i - H)u_1\|^2$ (batches drawn without
#   replacement) — nothing is fitted. For $B$ large the excess falls like $1/B$: the maximal stable learning rate
#   $2/\lambda_{\max}(H_B)$ then grows about linearly in B until it saturates at $2/\lambda_1$.
#
# **Set-up.** scikit-learn's digits (1797 images, 8×8 pixels scaled to [0, 1]), a linear softmax classifier 64 → 10
# with bias (n = 650 parameters, cross-entropy), trained by full-batch gradient descent (lr 0.5, 400 steps). Its
# Hessian is exactly $\frac1N\sum_i (\operatorname{diag} p_i - p_i p_i^\top)\otimes \tilde x_i \tilde x_i^\top$,
# $\tilde x = (x, 1)$, so every batch Hessian is known exactly and the top eigenvalue of all batches of a partition
# comes from one batched eigensolve (`hesslab.experiments.lanczos_and_batch_size`).

# %%
import functools

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from torch import nn

import hesslab as hl
from hesslab.data import pixel_digits
from hesslab.experiments import lanczos_and_batch_size as bs
from hesslab.plot import plot_spectral_density
from hesslab.widgets import panel

# One CPU thread: these dense problems (650 × 650) gain little from a second one, and on a busy shared CPU two
# threads made the batched eigensolves 10-30 times slower (measured on a shared 2-core machine).
torch.set_num_threads(1)
generator = hl.seed(0)
device = hl.device()
BATCH_SIZES = hl.sized(quick=(4, 8, 16, 32, 64, 128, 256), full=(2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
NUM_PARTITIONS = hl.sized(quick=4, full=40)  # random partitions averaged over, for every B
SLQ_STEPS = hl.sized(quick=40, full=100)      # Lanczos steps per SLQ probe
SLQ_PROBES = hl.sized(quick=8, full=64)
DENSITY_BATCHES = (16, 64, 256)               # batch sizes whose spectra are drawn (and the full batch)
print(f"scale: {hl.scale()} on {device}; batch sizes {BATCH_SIZES}, {NUM_PARTITIONS} partition(s); "
      f"SLQ with {SLQ_PROBES} probes x {SLQ_STEPS} steps")

# %%
inputs, targets = pixel_digits(device=device)
softmax = bs.train_softmax(inputs, targets, lr=0.5, num_steps=400, generator=generator)
curvature = bs.softmax_curvature(softmax.model, inputs)
N, n = inputs.shape[0], curvature.num_params
print(f"N = {N} samples, n = {n} parameters; loss after {len(softmax.losses)} steps of GD: {softmax.losses[-1]:.4f}")

# The exact full Hessian the general way (n Hessian-vector products), against the closed form of the experiment module
f, theta = hl.loss_function(softmax.model, nn.functional.cross_entropy, inputs, targets)
H = hl.hessian(f, theta)
print(f"max |hl.hessian - closed form| = {(H - bs.batch_hessian(curvature)).abs().max():.1e}")
eigenvalues = torch.linalg.eigvalsh(H).flip(0)
zeros = int((eigenvalues.abs() <= n * torch.finfo(H.dtype).eps * eigenvalues[0]).sum())
print("top 12 eigenvalues of H:", [round(v, 4) for v in eigenvalues[:12].tolist()], f"; {zeros} are zero")

# %% [markdown]
# The spectrum: nine outliers (C − 1 for C = 10 classes) well above the bulk, and many exact zeros (the softmax is
# unchanged by adding one vector to every class's weights, and some pixels are blank in every image). The loss is
# convex in θ, so H and every H_B are positive semi-definite: only the top of the spectrum moves.
#
# ## λ_max of mini-batch Hessians against the batch size
#
# For every B: random partitions of the data into batches of B (one permutation serves all B, so the partitions are
# nested) and λ_max of every batch Hessian. Grey dots: single batches. Blue: the batch-size-weighted mean over a
# partition (averaged over the partitions). Dashed: the spiked-Wigner prediction with the measured $s_B$. Right: the
# excess over the full batch on log-log axes.

# %%
sweep = bs.batch_size_sweep(curvature, BATCH_SIZES, num_partitions=NUM_PARTITIONS, generator=generator,
                            progress=True)
for size, mean, predicted, noise in zip(sweep.batch_sizes, sweep.mean_top.tolist(), sweep.prediction.tolist(),
                                       sweep.noise.tolist()):
    regime = "λ_1 + s_B²/λ_1" if sweep.top_full**2 > noise else "2 s_B (below the threshold)"
    print(f"B = {size:5d}: mean λ_max(H_B) = {mean:.4f}   predicted {predicted:.4f} = {regime}, s_B = {noise**0.5:.3f}")
print(f"full batch: λ_max(H) = {sweep.top_full:.4f}")
ratio = (sweep.prediction - sweep.top_full) / (sweep.mean_top - sweep.top_full)
print("predicted / measured excess:", [round(r, 2) for r in ratio.tolist()])

# %% tags=["thumbnail"]
sizes = torch.tensor(sweep.batch_sizes, dtype=torch.float64)
fig, (ax, ax_excess) = plt.subplots(1, 2, figsize=(11.5, 4.2))
for size, tops in zip(sweep.batch_sizes, sweep.batch_tops):
    jitter = torch.exp(0.08 * torch.randn(tops.numel(), generator=torch.Generator().manual_seed(size)))
    ax.scatter((size * jitter).numpy(), tops.cpu().numpy(), s=4, color="0.6", alpha=0.3, lw=0)
ax.scatter([], [], s=8, color="0.6", label="single batches")
ax.plot(sizes, sweep.mean_top.cpu(), "o-", color="C0", lw=2, label="mean over a partition")
ax.plot(sizes, sweep.prediction.cpu(), "--", color="C3",
        label=r"spiked Wigner: $\lambda_1 + s_B^2/\lambda_1$ or $2s_B$")
ax.axhline(sweep.top_full, color="k", lw=1, label=f"full batch λ_max = {sweep.top_full:.3f}")
ax.set(xscale="log", yscale="log", xlabel="batch size B", ylabel=r"$\lambda_{\max}(H_B)$",
       title="mini-batch Hessians are sharper")
ax.legend(frameon=False, fontsize=8)
ax_excess.plot(sizes, (sweep.mean_top.cpu() - sweep.top_full), "o-", color="C0", lw=2, label="measured")
ax_excess.plot(sizes, (sweep.prediction.cpu() - sweep.top_full), "--", color="C3", label="spiked Wigner")
middle = len(sizes) // 2
ax_excess.plot(sizes, (sweep.mean_top[middle].item() - sweep.top_full) * sizes[middle] / sizes, ":", color="0.4",
               label=r"$\propto 1/B$")
ax_excess.set(xscale="log", yscale="log", xlabel="batch size B",
              ylabel=r"mean $\lambda_{\max}(H_B) - \lambda_{\max}(H)$", title="the excess falls about like 1/B")
ax_excess.legend(frameon=False, fontsize=8)
fig.suptitle(f"Linear softmax on digits (N = {N}, n = {n}), {NUM_PARTITIONS} random partition(s) per B")
fig.tight_layout()

# %% [markdown]
# Single batches scatter widely — at large B some are even *flatter* than the full batch — but their mean is always
# above it, and the mean follows the spiked-Wigner formula to within about 30 % (the smallest batches fall below the
# threshold $\lambda_1 > s_B$, where the prediction is the noise edge $2 s_B$), although neither of its assumptions
# holds exactly here ($H$ has nine outliers, not one, and $\varepsilon_B$ is an average of rank-9 matrices, not a
# Wigner matrix). On the log-log plot the excess falls like 1/B over most of the range; it is flatter for the
# smallest batches, where $s_B > \lambda_1$ and the top eigenvalue is the noise edge $2 s_B \propto B^{-1/2}$, and
# steeper near B = N, where sampling without replacement shrinks the fluctuation by $(N - B)/(N - 1)$. At large B
# the mean rests on a few batches per partition; the full scale averages more partitions.
#
# ## Spectral densities by stochastic Lanczos quadrature
#
# SLQ: for a random unit probe $v$, m Lanczos steps give $T_m = S\Theta S^\top$, and the nodes $\theta_i$ with
# weights $S_{1i}^2$ are the m-point Gauss quadrature of $v^\top f(H) v$: exact for polynomials of degree
# $\le 2m-1$. Averaged over p probes, $\sum_i w_i \theta_i^k$ is Hutchinson's estimate of $\operatorname{tr}(H^k)/n$,
# with standard error $\sqrt{2(\|H^k\|_F^2 - \|\operatorname{diag} H^k\|^2)/p}\,/\,n$ for Rademacher probes. Red: the
# SLQ density (Gaussian-smoothed quadrature) of one batch Hessian, from Hessian-vector products only; grey: the
# histogram of its exact eigenvalues. Each panel shows a typical batch: the one with the median λ_max among the
# batches of a random partition. The dotted line marks the full-batch λ_max.

# %%
permutation = torch.randperm(N, generator=generator, device=generator.device).to(device)


@functools.lru_cache(maxsize=None)
def batch(size):
    """The median batch of ``size`` samples of one fixed random partition: its index, operator and dense Hessian."""
    index = bs.median_batch(curvature, permutation, size)
    operator = hl.HessianOperator.from_model(softmax.model, nn.functional.cross_entropy,
                                             (inputs[index], targets[index]))
    return index, operator, bs.batch_hessian(curvature, index)


comparisons = {}
for size in (*DENSITY_BATCHES, N):
    _, operator, exact = batch(size)
    comparisons[size] = bs.compare_density(operator, exact, SLQ_STEPS, SLQ_PROBES, generator=generator)

fig, axes = plt.subplots(1, len(comparisons), figsize=(14, 3.6), sharex=True, sharey=True)
for ax, (size, comparison) in zip(axes, comparisons.items()):
    plot_spectral_density(comparison.density, comparison.eigenvalues, ax=ax, sigma=0.01)
    ax.axvline(sweep.top_full, color="k", ls=":", lw=1)
    ax.set_title(f"B = {size}" + (" (full batch)" if size == N else "") +
                 f": λ_max = {comparison.eigenvalues[-1]:.3f}")
    ax.legend().remove()
axes[0].set_ylim(1e-3, 1e3)
axes[0].legend(*axes[0].get_legend_handles_labels(), frameon=False, fontsize=8, loc="upper right")
fig.tight_layout()

print("moments tr(H_B^k)/n: exact vs SLQ (z = error / Hutchinson standard error)")
for size, c in comparisons.items():
    z = (c.slq_moments - c.exact_moments)[1:] / c.stderr[1:]
    print(f"B = {size:4d}: " + "  ".join(f"k={k}: {e:.3e} vs {s:.3e} (z = {zk:+.2f})" for k, e, s, zk in
                                        zip(c.powers[1:].tolist(), c.exact_moments[1:].tolist(),
                                            c.slq_moments[1:].tolist(), z.tolist())))

# %% [markdown]
# Smaller batches have fewer nonzero eigenvalues (rank ≤ 9B) and a longer right tail: the bulk spreads out and the
# top eigenvalues move right. A few tens of Lanczos steps per probe place the outliers and the bulk where the exact
# eigenvalues are; the mass at zero (most of the spectrum) is a few nodes of large weight.
#
# ## How fast does Lanczos find the top eigenvalues?
#
# The error of the top Ritz values of the full Hessian after each step; the a-posteriori estimate
# $\min(r, r^2/(\theta_1 - \theta_2))$ with the residual $r = \|H y_1 - \theta_1 y_1\| = \beta_j |e_j^\top s_1|$
# ($s_1$ the eigenvector of $T_j$ for $\theta_1$; no knowledge of $\lambda_1$ needed) — `hl.top_eigen` stops on the
# residual itself, $r \le \mathrm{tol}\,|\theta_1|$, which guarantees an eigenvalue within $r$ of $\theta_1$;
# and the a-priori Kaniel–Paige–Saad bound
# $\lambda_1 - \theta_1^{(j)} \le (\lambda_1 - \lambda_n)\,\big(\tan\varphi / T_{j-1}(1 + 2\gamma)\big)^2$,
# $\gamma = (\lambda_1 - \lambda_2)/(\lambda_2 - \lambda_n)$, $\varphi$ the angle between the start vector and $u_1$.

# %%
def draw_ritz(ax, convergence, title):
    floor = 1e-17  # errors at rounding level are drawn at this floor
    for i in range(convergence.ritz.shape[1]):
        error = (convergence.eigenvalues[i] - convergence.ritz[:, i]).abs().clamp_min(floor)
        ax.semilogy(convergence.steps, error, "o-", ms=3, label=f"|λ_{i + 1} − θ_{i + 1}|")
    ax.semilogy(convergence.steps, convergence.estimate.clamp_min(floor), "k:", label="estimate min(r, r²/gap) for θ_1")
    ax.semilogy(convergence.steps, convergence.bound.clamp_min(floor), "--", color="C3",
                label="Kaniel–Paige bound on λ_1 − θ_1")
    lowest = min((convergence.eigenvalues - convergence.ritz).abs().min().item(), 1.0)
    ax.set(xlabel="Lanczos step j", ylabel="error", ylim=(max(lowest, floor) / 3, 10), title=title)
    ax.legend(frameon=False, fontsize=8)


convergence = bs.ritz_convergence(H, 30, k=4, generator=generator)
fig, ax = plt.subplots(figsize=(6.5, 4))
draw_ritz(ax, convergence, "Ritz values of the full Hessian")
fig.tight_layout()
steps_to_converge = int(convergence.steps[(convergence.eigenvalues[0] - convergence.ritz[:, 0]).abs()
                                          < 1e-10 * convergence.eigenvalues[0]][0])
print(f"the top Ritz value is within 1e-10 relative of λ_1 after {steps_to_converge} steps (of n = {n})")

# %% [markdown]
# The outliers converge in a handful of steps, largest first, because they are well separated relative to the width
# of the spectrum; once the error reaches rounding (~1e-16) it stays there (full reorthogonalisation). The a-priori
# bound holds but is pessimistic; the a-posteriori estimate tracks the true error.
#
# ## Try it
#
# Pick a batch size, the number of Lanczos steps per probe and the number of probes. Left: the SLQ density of that
# batch's Hessian against its exact eigenvalues (few steps blur the outliers into the bulk; few probes give noisy
# weights). Right: the Ritz values' convergence on the same Hessian. With few steps the estimate can fall below the
# true error: it takes the gap from the Ritz values, and an eigenvalue not yet found can hide in it — which is why
# `top_eigen` stops on the residual $r$, a guaranteed bound, and restarts orthogonal to what it found to look for
# copies of a repeated eigenvalue.

# %%
def draw(batch_size, num_steps, num_probes):
    _, operator, exact = batch(batch_size)
    local = torch.Generator(device=generator.device).manual_seed(1)
    comparison = bs.compare_density(operator, exact, num_steps, num_probes, generator=local)
    fig, (ax_density, ax_ritz) = plt.subplots(1, 2, figsize=(12, 4))
    plot_spectral_density(comparison.density, comparison.eigenvalues, ax=ax_density, sigma=0.01)
    ax_density.axvline(sweep.top_full, color="k", ls=":", lw=1, label="full-batch λ_max")
    ax_density.set_ylim(1e-3, 1e3)
    ax_density.legend(frameon=False, fontsize=8)
    z = ((comparison.slq_moments - comparison.exact_moments) / comparison.stderr)[1:]
    ax_density.set_title(f"B = {batch_size}: SLQ, {num_probes} probes × {num_steps} steps; "
                         f"moments' z = {', '.join(f'{v:+.1f}' for v in z.tolist())}", fontsize=9)
    draw_ritz(ax_ritz, bs.ritz_convergence(exact, num_steps, k=3, generator=local),
              f"Ritz values of H_B, B = {batch_size}")
    fig.tight_layout()


panel(draw,
      batch_size=widgets.Dropdown(options=[8, 16, 32, 64, 128, 256, 512, N], value=64, description="batch size"),
      num_steps=widgets.IntSlider(value=30, min=3, max=120, description="Lanczos steps"),
      num_probes=widgets.IntSlider(value=8, min=1, max=64, description="probes"))

# %% [markdown]
# ## The phenomenon, as numbers
#
# Two theorems first — they hold whatever the data, so they check the eigensolver and the weighting, not the paper:
# 1. for every B, the batch-size-weighted mean of λ_max(H_B) over a partition is at least λ_max(H) (convexity);
# 2. the mean does not increase as B doubles (nested partitions).
#
# Their tolerance is only the eigensolver's rounding, $n\,\epsilon\,\|H_B\|$: a failure means wrong eigenvalues or
# a wrong weighting, not bad luck. Then the phenomenon, which need not have appeared:
# 3. batches of B = 4 are on average more than twice as sharp as the full batch;
# 4. for B ≥ 16 the excess mean λ_max(H_B) − λ_max(H) falls like 1/B: its least-squares log-log slope is within
#    0.3 of −1;
# 5. the spiked-Wigner prediction $\lambda_1 + s_B^2/\lambda_1$ (or $2 s_B$), with $s_B$ measured, not fitted, is
#    within a factor 1.5 of the measured excess at every B;
# 6. the closed-form Hessian the sweep rests on equals `hl.hessian` (autograd) to float64 rounding, $N\epsilon\max|H|$;
# 7. SLQ's moments $\sum_i w_i\theta_i^k$, k ≤ 4 (exact quadrature for $2m - 1 \ge 4$), match the exact
#    $\operatorname{tr}(H_B^k)/n$ within 4 Hutchinson standard errors for the probes used (plus float64 rounding);
#    On $D = \operatorname{diag}(\lambda(H))$ the Rademacher standard error is 0, so there SLQ must be exact to
#    rounding (Gaussian probes would miss by many rounding units);
# 8. after 30 Lanczos steps the top four Ritz values of H equal its top four eigenvalues to $10^{-10}$ relative
#    (it takes the basis kept orthogonal: without reorthogonalisation a converged λ_1 returns as a ghost copy).
#
# 3-5 hold on the seeds the notebook was not tuned on (seeds 1-3 in `tests/`: B = 4 is 2.2-2.3× sharper, slopes
# −1.0 to −1.1, predicted/measured excess 0.89-1.16).

# %%
rounding = n * torch.finfo(torch.float64).eps * sweep.batch_tops[0].max().item()
print(f"λ_max(H) = {sweep.top_full:.4f}; mean λ_max(H_B): "
      + ", ".join(f"B={b}: {m:.4f}" for b, m in zip(sweep.batch_sizes, sweep.mean_top.tolist())))
assert all(mean >= sweep.top_full - rounding for mean in sweep.mean_top.tolist()), sweep.mean_top
assert all(later <= earlier + rounding for earlier, later in zip(sweep.mean_top.tolist(), sweep.mean_top[1:].tolist()))

# %%
excess = sweep.mean_top - sweep.top_full
large = sizes >= 16
slope = torch.linalg.lstsq(torch.stack([sizes[large].log(), torch.ones(int(large.sum()), dtype=sizes.dtype)], 1),
                           excess[large].log()[:, None].cpu()).solution[0, 0].item()
ratio = ((sweep.prediction - sweep.top_full) / excess).cpu()
closed_form_error = (H - bs.batch_hessian(curvature)).abs().max().item()
print(f"B = {sweep.batch_sizes[0]}: {sweep.mean_top[0] / sweep.top_full:.2f}x sharper; log-log slope for B >= 16: "
      f"{slope:.3f}; predicted / measured excess in [{ratio.min():.2f}, {ratio.max():.2f}]; closed form vs "
      f"hl.hessian {closed_form_error:.1e} (tolerance {N * torch.finfo(H.dtype).eps * H.abs().max():.1e})")
assert sweep.batch_sizes[0] == 4 and sweep.mean_top[0] > 2 * sweep.top_full
assert -1.3 < slope < -0.7, slope
assert torch.all((ratio > 1 / 1.5) & (ratio < 1.5)), ratio
assert closed_form_error <= N * torch.finfo(H.dtype).eps * H.abs().max()

# %%
for size, c in comparisons.items():
    error = (c.slq_moments - c.exact_moments).abs()
    tolerance = 4 * c.stderr + SLQ_STEPS * SLQ_PROBES * torch.finfo(torch.float64).eps * c.eigenvalues[-1] ** c.powers
    print(f"B = {size:4d}: |error| / tolerance = {[round(v, 2) for v in (error / tolerance).tolist()]}")
    assert 2 * SLQ_STEPS - 1 >= c.powers[-1] and torch.all(error <= tolerance), (size, error, tolerance)
# Rademacher probes see a diagonal matrix exactly (zᵀDz = tr D when z_i² = 1: the standard error is 0), so SLQ on
# D = diag(eigenvalues of H) must give its moments to rounding; Gaussian probes would not.
D = torch.diag(eigenvalues)
diagonal = bs.compare_density(D, D, SLQ_STEPS, SLQ_PROBES, generator=generator)
diagonal_error = (diagonal.slq_moments - diagonal.exact_moments).abs()
diagonal_tolerance = SLQ_STEPS * SLQ_PROBES * torch.finfo(torch.float64).eps * eigenvalues[0] ** diagonal.powers
print("SLQ on diag(eig H): |error| / rounding =", [round(v, 2) for v in (diagonal_error / diagonal_tolerance).tolist()])
assert torch.all(diagonal_error <= diagonal_tolerance), diagonal_error
ritz_error = ((convergence.eigenvalues - convergence.ritz[-1]).abs() / convergence.eigenvalues[0]).tolist()
print(f"top four Ritz values after {int(convergence.steps[-1])} steps: relative errors",
      [f"{e:.0e}" for e in ritz_error])
assert max(ritz_error) <= 1e-10, ritz_error
