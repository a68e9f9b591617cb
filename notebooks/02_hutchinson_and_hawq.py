# %% [markdown]
# # Hutchinson's trace estimator, and HAWQ-V2's Hessian-aware mixed precision
#
# **Paper:** Dong et al. (NeurIPS 2020), *HAWQ-V2: Hessian Aware trace-Weighted Quantization of Neural Networks*;
# Hutchinson (1989); Meyer et al. (2021), *Hutch++*
#
# **Phenomenon:** Hutchinson's variance is $2\sum_{i\ne j}A_{ij}^2/m$ and Hutch++ beats it; per-layer Hessian traces
# rank bit configurations by their loss increase, and the Pareto frontier picks mixed precision that beats uniform.
#
# **Hutchinson (1989)**, *A stochastic estimator of the trace of the influence matrix for Laplacian smoothing
# splines*: the trace of a matrix known only through products $v \mapsto Av$ is the mean of $z^\top A z$ over random
# sign vectors $z$. **Meyer, Musco, Musco & Woodruff (2021)**, *Hutch++: Optimal Stochastic Trace Estimation*, spend
# a third of the products on the top of the spectrum and estimate only the rest.
#
# **Dong, Yao, Arfeen, Gholami, Mahoney & Keutzer (NeurIPS 2020)**, *HAWQ-V2: Hessian Aware trace-Weighted
# Quantization of Neural Networks*, use exactly these traces to decide how many bits each layer of a network may be
# quantised to: a layer whose Hessian has a small trace per weight tolerates a coarse grid. They score a bit
# configuration by $\sum_i \Omega_i$ and choose it on the Pareto frontier of model size against that score, with no
# manual choice (e.g. Inception-V3 at 7.57 MB with 75.98% ImageNet accuracy, fine-tuned after quantisation).
#
# This notebook
# 1. measures Hutchinson's variance against its formula, and Hutch++ against Hutchinson, on a Hessian block;
# 2. estimates the per-layer Hessian traces of an MLP trained on scikit-learn's digits and checks them against the
#    exact ones;
# 3. scores all 64 bit configurations $\{2,3,4,8\}^3$ of its three weight matrices by $\sum_i\Omega_i$, quantises each
#    one to measure the true loss increase, and compares the frontier's choice with uniform precision.

# %%
import functools

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

import hesslab as hl
from hesslab.experiments import hutchinson_and_hawq as hawq
from hesslab.widgets import panel

generator = hl.seed(0)
MODEL = (64, 64, 32, 10)  # the net of the issue: weight matrices of 4096, 2048 and 320 entries
WIDE_MODEL = (64, 32, 256, 10)  # a wide last hidden layer: 2048, 8192 and 2560 entries
STEPS, LR = 300, 1.0  # full-batch gradient descent on the 1797 digits
CALIBRATION = hl.sized(quick=512, full=1797)  # training points the Hessian is computed on
PROBES = 200  # Hutchinson probes per layer
REPEATS = hl.sized(quick=64, full=400)  # independent estimates per point of the Hutchinson figures
PROBE_COUNTS = hl.sized(quick=[2, 4, 8, 16, 32, 64, 128], full=[2, 4, 8, 16, 32, 64, 128, 256, 512, 1024])
MATVECS = hl.sized(quick=[6, 12, 24, 48, 96, 192, 384], full=[6, 12, 24, 48, 96, 192, 384, 768])
STUDIED_LAYERS = hl.sized(quick=[2], full=[0, 1, 2])  # Hessian blocks of the Hutchinson figures (by layer)
print(f"scale: {hl.scale()}, device: {hl.device()}, Hessian on {CALIBRATION} points")

# %% [markdown]
# ## The network and its per-layer Hessian blocks
#
# A tanh MLP 64-64-32-10 trained by gradient descent on the 1797 standardised 8×8 digits. HAWQ works with the
# **diagonal blocks** of the Hessian, one per weight matrix: $H_i = \partial^2 L / \partial W_i^2$, of size
# $n_i \times n_i$ with $n_i$ the number of entries of $W_i$. The curvature is that of the loss on a calibration
# batch (the first points of the training set). The blocks are small enough here to build densely
# ($4096^2 + 2048^2 + 320^2$ entries, 6464 Hessian-vector products), which gives the exact traces to check against.

# %%
net = hawq.train_digits_mlp(MODEL, STEPS, LR, CALIBRATION, generator=generator, device=hl.device())
print(f"training loss {net.losses[0]:.3f} -> {net.losses[-1]:.4f} after {STEPS} steps; "
      f"training accuracy {net.accuracy:.3f}")
blocks = hawq.hessian_blocks(net)
for name, n, block in zip(net.weight_names, net.layer_sizes, blocks):
    print(f"{name}: n = {n:5d}, Tr(H) = {block.trace().item():.4f}, Tr(H)/n = {block.trace().item() / n:.2e}")

# %% [markdown]
# ## Hutchinson's estimator and its variance
#
# For a Rademacher vector $z$ (entries $\pm 1$), $z^\top A z = \sum_i A_{ii} + \sum_{i\neq j} A_{ij} z_i z_j$. The
# products $z_i z_j$ have mean zero and are pairwise uncorrelated, so
#
# $$\mathbb E\, z^\top A z = \operatorname{tr} A, \qquad \operatorname{Var} z^\top A z = 2\sum_{i\neq j} A_{ij}^2,$$
#
# and the mean of $m$ probes has variance $2\sum_{i\neq j}A_{ij}^2/m$ (`hl.hutchinson_variance(A)` is the numerator):
# the error falls like $1/\sqrt m$, and the diagonal costs nothing. **Hutch++** uses $m/3$ products to sketch
# $Q = \operatorname{orth}(AS)$, takes
# $\operatorname{tr}(Q^\top A Q)$ exactly with $m/3$ more, and runs Hutchinson on the deflated rest
# $(I-QQ^\top)A(I-QQ^\top)$, whose off-diagonal mass is small when the spectrum decays: its error falls like $1/m$.
#
# Left: the variance of $R$ independent $m$-probe estimates on a Hessian block (dots) against the formula (line; the
# band is ±2 standard deviations of a sample variance of $R$ values). Right: root-mean-square relative error of both
# estimators at equal numbers of products.

# %%
variances = {i: hawq.probe_variance(blocks[i], PROBE_COUNTS, REPEATS, generator=generator) for i in STUDIED_LAYERS}
errors = {i: hawq.trace_errors(blocks[i], MATVECS, REPEATS // 2, generator=generator) for i in STUDIED_LAYERS}

fig, (ax_var, ax_err) = plt.subplots(1, 2, figsize=(12, 4.5))
for k, i in enumerate(STUDIED_LAYERS):
    v, e, colour = variances[i], errors[i], f"C{k}"
    scale = v.trace**2
    ax_var.fill_between(v.num_probes, (v.predicted - 2 * v.stderr) / scale, (v.predicted + 2 * v.stderr) / scale,
                        color=colour, alpha=0.15, lw=0)
    ax_var.loglog(v.num_probes, v.predicted / scale, "-", color=colour,
                  label=rf"{net.weight_names[i]}: $2\sum_{{i\neq j}}A_{{ij}}^2/m$")
    ax_var.loglog(v.num_probes, v.variance / scale, "o", color=colour, label=f"{net.weight_names[i]}: measured")
    ax_err.loglog(e.num_matvecs, e.hutchinson, "o-", color=colour, label=f"{net.weight_names[i]}: Hutchinson")
    ax_err.loglog(e.num_matvecs, e.hutch_plus_plus, "s--", color=colour, label=f"{net.weight_names[i]}: Hutch++")
m, start = np.array(MATVECS, dtype=float), errors[STUDIED_LAYERS[0]].hutchinson[0]
ax_err.loglog(m, start * np.sqrt(m[0] / m), ":", color="0.5", label=r"$\propto m^{-1/2}$")
ax_err.loglog(m, start * m[0] / m, "-.", color="0.5", label=r"$\propto m^{-1}$")
ax_var.set(xlabel="probes m", ylabel=r"Var(estimate) / tr(A)$^2$", title=f"Hutchinson's variance ({REPEATS} repeats)")
ax_err.set(xlabel="matrix-vector products m", ylabel="RMS relative error",
           title=f"Hutchinson vs Hutch++ ({REPEATS // 2} repeats)")
ax_var.legend(frameon=False, fontsize=8)
ax_err.legend(frameon=False, fontsize=8)
fig.tight_layout()
plt.show()
for i in STUDIED_LAYERS:
    v, e = variances[i], errors[i]
    print(f"{net.weight_names[i]}: hl.hutchinson_variance = {hl.hutchinson_variance(blocks[i]):.3g}, "
          f"measured/predicted variance {np.round(v.variance / v.predicted, 2)}; "
          f"at {e.num_matvecs[-1]} products Hutchinson {e.hutchinson[-1]:.2%}, Hutch++ {e.hutch_plus_plus[-1]:.3%}")

# %% [markdown]
# ## HAWQ-V2: per-layer traces
#
# Quantising $W_i$ moves it by $\Delta_i = Q(W_i) - W_i$. At a minimum the gradient vanishes, so the loss rises by
# about $\tfrac12\Delta^\top H\Delta$; keeping only the diagonal blocks and treating $\Delta_i$ as spread evenly over
# the eigenvectors of $H_i$, $\Delta_i^\top H_i\Delta_i \approx \frac{\operatorname{Tr}H_i}{n_i}\lVert\Delta_i\rVert^2$.
# HAWQ-V2's sensitivity is that **average-trace-weighted** perturbation (their Eq. 2.11, without the ½, which does
# not change rankings),
#
# $$\Omega_i(b) = \frac{\operatorname{Tr}(H_i)}{n_i}\,\lVert Q_b(W_i) - W_i\rVert^2 .$$
#
# Here $Q_b$ is symmetric uniform quantisation with one scale per matrix, $s = \max|W|/(2^{b-1}-1)$, levels
# $s\cdot\{-(2^{b-1}-1),\dots,2^{b-1}-1\}$ ($b=2$ is ternary). Only the weight matrices are quantised: the biases
# (106 numbers, 1.6% of the parameters) stay in floating point and add the same constant to every model size.
# The traces come from 200 Hutchinson probes per layer, matrix-free, as HAWQ-V2 computes them:

# %%
traces = hawq.layer_traces(net, PROBES, generator=hl.seed(1))  # Hessian-vector products, no dense matrix
exact = np.array([block.trace().item() for block in blocks])
relative_errors = traces.values / exact - 1
for name, estimate, value, error in zip(net.weight_names, traces.estimates, exact, relative_errors):
    print(f"{name}: Hutchinson {estimate} vs exact {value:.4f}: relative error {error:+.2%} "
          f"({(estimate.value - value) / estimate.stderr:+.1f} standard errors)")

# %% [markdown]
# ## All 64 bit configurations: $\sum_i\Omega_i$ against the measured loss increase
#
# Every configuration $(b_1,b_2,b_3)\in\{2,3,4,8\}^3$ gets a size $\sum_i n_i b_i$ bits and a score
# $\sum_i\Omega_i(b_i)$, computed without quantising anything. To check the score, each configuration is also
# quantised and its training loss measured. The **Pareto frontier** holds the configurations that no other beats in
# both size and score; for a size budget, HAWQ-V2 takes the frontier's point of largest size within it.

# %%
search = hawq.search_bits(net, traces.values)
comparison = hawq.compare_with_uniform(search)
print(f"Spearman rank correlation of ΣΩ with the measured loss increase over {len(search.configs)} "
      f"configurations: {search.spearman:.3f}")


def describe(search, comparison):
    """One line per uniform size: uniform precision, the frontier's pick and the measured best within that size."""
    for row in comparison:
        pick, best = (tuple(int(b) for b in search.configs[i]) for i in (row.pick, row.best))
        print(f"size of uniform {row.bits} bits ({row.budget / 8192:.2f} KiB): "
              f"uniform ΔL = {row.uniform_loss_increase:.2e} | frontier pick {pick}: "
              f"ΔL = {row.pick_loss_increase:.2e} | measured best {best}: ΔL = {row.best_loss_increase:.2e}")


describe(search, comparison)


def draw_frontier(ax, search, comparison, title, budget=None):
    """Size against ΣΩ for every configuration, the Pareto frontier, uniform precision, and the picks."""
    kib = search.model_bits / 8192
    ax.scatter(kib, search.total_omega, s=14, color="0.7", label="bit configurations")
    frontier = hawq.pareto_frontier(search.model_bits, search.total_omega)
    ax.step(kib[frontier], search.total_omega[frontier], where="post", color="C3", lw=1.5, label="Pareto frontier")
    for row in comparison:
        ax.plot(kib[row.uniform], search.total_omega[row.uniform], "s", ms=9, mfc="none", mec="k")
        ax.annotate(f"uniform {row.bits}", (kib[row.uniform], search.total_omega[row.uniform]),
                    textcoords="offset points", xytext=(6, 6), fontsize=8)
        if row.pick != row.uniform:
            ax.plot(kib[row.pick], search.total_omega[row.pick], "*", ms=13, color="C2")
            ax.annotate(f"pick {tuple(int(b) for b in search.configs[row.pick])}",
                        (kib[row.pick], search.total_omega[row.pick]), textcoords="offset points",
                        xytext=(6, -12), fontsize=8, color="C2")
    if comparison:
        ax.plot([], [], "s", mfc="none", mec="k", label="uniform precision")
    if any(row.pick != row.uniform for row in comparison):
        ax.plot([], [], "*", color="C2", ms=10, label="frontier pick at a uniform size")
    if budget is not None:
        ax.axvline(budget / 8192, color="C0", ls="--", lw=1, label="budget")
    ax.set(xscale="linear", yscale="log", xlabel="weights' size (KiB)", ylabel=r"$\sum_i \Omega_i$", title=title)
    ax.legend(fontsize=8, loc="upper right", framealpha=0.9)


def draw_correlation(ax, search, title):
    """ΣΩ against the measured loss increase, log-log; increases <= 0 (8-bit rounding noise) at the bottom."""
    positive = search.loss_increase > 0
    floor = search.loss_increase[positive].min() / 3
    ax.loglog(search.total_omega[positive], search.loss_increase[positive], "o", ms=4, label="configuration")
    ax.loglog(search.total_omega[~positive], np.full((~positive).sum(), floor), "v", ms=5, mfc="none",
              label="ΔL <= 0 (drawn at the bottom)")
    grid = np.geomspace(search.total_omega.min(), search.total_omega.max(), 50)
    ax.loglog(grid, grid / 2, "k--", lw=1, label=r"$\Delta L = \frac{1}{2}\sum_i\Omega_i$")
    ax.set(xlabel=r"$\sum_i \Omega_i$", ylabel=r"measured $\Delta L = L(Q(W)) - L(W)$",
           title=f"{title}: Spearman ρ = {search.spearman:.3f}")
    ax.legend(frameon=False, fontsize=8)


# %%
fig, (ax_front, ax_corr) = plt.subplots(1, 2, figsize=(12, 4.8))
draw_frontier(ax_front, search, comparison, "64-64-32-10: size vs HAWQ-V2 score")
draw_correlation(ax_corr, search, "64-64-32-10")
fig.tight_layout()
plt.show()

# %% [markdown]
# $\sum_i\Omega_i$ ranks the configurations well, and its magnitude is close to the second-order prediction
# $\Delta L\approx\frac12\sum_i\Omega_i$ until 2-bit layers push the loss out of the quadratic regime.
#
# For this network, though, **the frontier's pick at each uniform size is uniform precision itself**, and the
# measured losses agree that nothing of equal or smaller size does better. Mixed precision pays when the layers
# differ in sensitivity *per weight* and the big layers are the insensitive ones; here the per-weight sensitivities
# $\Omega_i(b)/n_i$ are within a small factor of each other and the largest matrix (the first, 63% of the weights)
# is not the least sensitive. With bit widths $\{2,3,4,8\}$ every trade below moves a whole bit of a big layer:

# %%
for name, n, row in zip(net.weight_names, net.layer_sizes, search.omega):
    print(f"{name}: n = {n:5d}, Ω(b)/n for b = {search.bit_choices}: " + ", ".join(f"{o / n:.1e}" for o in row))

# %% [markdown]
# ## When mixed precision pays: a wide last hidden layer
#
# The same experiment on a 64-32-256-10 tanh MLP: its middle matrix (32→256, 8192 of the 12800 weights) feeds 256
# redundant units whose quantisation noise the last layer averages out, so it is much less sensitive per weight
# (compare the printed $\Omega_i(b)/n_i$).
# Its blocks are too big to build densely at this scale, so only the 200-probe traces are used.

# %%
wide_net = hawq.train_digits_mlp(WIDE_MODEL, STEPS, LR, CALIBRATION, generator=hl.seed(0), device=hl.device())
wide_traces = hawq.layer_traces(wide_net, PROBES, generator=hl.seed(1))
wide_search = hawq.search_bits(wide_net, wide_traces.values)
wide_comparison = hawq.compare_with_uniform(wide_search)
print(f"training loss {wide_net.losses[-1]:.4f}, accuracy {wide_net.accuracy:.3f}; "
      f"Spearman ρ = {wide_search.spearman:.3f}")
for name, n, estimate, row in zip(wide_net.weight_names, wide_net.layer_sizes, wide_traces.estimates,
                                  wide_search.omega):
    print(f"{name}: n = {n:5d}, Tr(H) = {estimate}, Ω(b)/n: " + ", ".join(f"{o / n:.1e}" for o in row))
describe(wide_search, wide_comparison)

# %% tags=["thumbnail"]
fig, (ax_front, ax_corr) = plt.subplots(1, 2, figsize=(12, 4.8))
draw_frontier(ax_front, wide_search, wide_comparison, "64-32-256-10: size vs HAWQ-V2 score")
draw_correlation(ax_corr, wide_search, "64-32-256-10")
fig.tight_layout()
plt.show()

# %% [markdown]
# At the size of uniform 4 bits the frontier moves bits from the wide middle matrix to the small first one, and the
# quantised net loses less than half as much as with uniform 4 bits; that pick is also the measured best.
# At the 3-bit size the pick wins here too, but less robustly: it hinges on how much a ternary (2-bit) layer hurts,
# and with other seeds the frontier prefers a ternary last layer, (4, 3, 2), which the measured loss punishes. A
# ternary grid sets most weights of a layer to zero, a perturbation along the weights themselves rather than spread
# over the Hessian's eigenvectors, where the average-trace approximation is weakest: on the right, the
# configurations with a ternary layer sit in flat rows more than an order of magnitude above the line (the row near
# $\Delta L = 0.07$ has a ternary last layer, the rows above it a ternary first layer).
#
# ## Explore
#
# Fewer probes give noisier traces and may move the frontier; Hutch++ is the more accurate once the budget suffices
# to sketch the top of the spectrum (compare the first figure). The budget
# is the average number of bits per weight; the star is the frontier's pick within it, the square the best uniform
# precision that fits. (Traces of the 64-64-32-10 net use its dense blocks, those of the wide net Hessian-vector
# products; each setting is computed once.)

# %%
NETS = {"64-64-32-10": (net, blocks, search, traces), "64-32-256-10": (wide_net, None, wide_search, wide_traces)}


@functools.lru_cache(maxsize=64)
def traces_for(model, num_probes, method):
    model_net, model_blocks, _, _ = NETS[model]
    return hawq.layer_traces(model_net, num_probes, method, generator=hl.seed(1), blocks=model_blocks)


def draw(model, num_probes, method, bits_per_weight):
    model_net, model_blocks, model_search, reference = NETS[model]
    estimated = traces_for(model, num_probes, method)
    rescored = hawq.search_bits(model_net, estimated.values, loss_increase=model_search.loss_increase)
    budget = bits_per_weight * model_net.layer_sizes.sum()
    pick = hawq.frontier_pick(rescored.model_bits, rescored.total_omega, budget)
    fitting = [b for b in rescored.bit_choices if b * model_net.layer_sizes.sum() <= budget]
    uniform = rescored.index([max(fitting)] * len(rescored.names)) if fitting else None

    fig, (ax_tr, ax_front) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 1.6]})
    x = np.arange(len(model_net.weight_names))
    ax_tr.bar(x, estimated.values, yerr=2 * estimated.stderrs, capsize=4, color="C0", alpha=0.7,
              label=f"{method}, {num_probes} products (±2 s.e.)")
    if model_blocks is not None:
        ax_tr.plot(x, [block.trace().item() for block in model_blocks], "k_", ms=26, mew=2, label="exact")
    else:
        ax_tr.plot(x, reference.values, "k_", ms=26, mew=2, label=f"{PROBES}-probe Hutchinson")
    ax_tr.set_xticks(x, model_net.weight_names)
    ax_tr.set(ylabel=r"Tr$(H_i)$", title="per-layer Hessian traces")
    ax_tr.legend(frameon=False, fontsize=8, markerscale=0.5)

    draw_frontier(ax_front, rescored, (), f"{model}: ΣΩ from these traces", budget=budget)
    kib = rescored.model_bits / 8192
    ax_front.plot(kib[pick], rescored.total_omega[pick], "*", ms=16, color="C2", label="frontier pick within budget")
    text = f"pick {tuple(int(b) for b in rescored.configs[pick])}: ΔL = {rescored.loss_increase[pick]:.2e}"
    if uniform is not None:
        ax_front.plot(kib[uniform], rescored.total_omega[uniform], "s", ms=11, mfc="none", mec="C1", mew=2,
                      label="uniform precision within budget")
        text += f"\nuniform {max(fitting)} bits: ΔL = {rescored.loss_increase[uniform]:.2e}"
    ax_front.text(0.02, 0.04, text, transform=ax_front.transAxes, fontsize=9)
    ax_front.legend(fontsize=8, loc="upper right", framealpha=0.9)
    fig.tight_layout()


panel(draw,
      model=widgets.Dropdown(options=list(NETS), value="64-32-256-10"),
      num_probes=widgets.SelectionSlider(options=[4, 8, 16, 32, 64, 128, 200], value=16),
      method=widgets.ToggleButtons(options=["hutchinson", "hutch++"], value="hutchinson"),
      bits_per_weight=widgets.FloatSlider(min=2.0, max=8.0, step=0.25, value=4.0))

# %% [markdown]
# ## Why the average trace, and why Rademacher probes
#
# On the two digits nets HAWQ-V1's score $\lambda_{\max}(H_i)\lVert\Delta_i\rVert^2$, and
# $\operatorname{Tr}(H_i)\lVert\Delta_i\rVert^2$ without the $1/n_i$, pass every assert of this notebook's nets
# (seed 0: Spearman ρ 0.975 and 0.970 on 64-64-32-10, 0.886 and 0.854 on the wide net, the same picks at the uniform
# sizes asserted); they part from V2 only at the wide net's 3-bit size, which is not asserted. They are not the same
# score. A loss that is exactly quadratic per
# layer, $L(W)=\frac12\sum_i(W_i-W_i^*)^\top H_i(W_i-W_i^*)$, with random eigenvectors and weights uniform on
# $[-1,1]$, separates them: a **spiked** block (64 weights, 4 eigenvalues 2, the rest 0.02), a **flat** one
# (64 weights, all eigenvalues 1) and a **wide** flat one (512 weights, all 0.1). Quantising one layer to 4 bits
# raises the loss by exactly $\frac12\Delta_i^\top H_i\Delta_i$; a perturbation spread over the eigenvectors
# barely meets the spike, so it is the trace per weight that counts.

# %%
quadratic_model = hawq.spiked_and_flat_layers(generator=hl.seed(2))
quadratic = hawq.rank_layers(quadratic_model, bits=4, num_probes=PROBES, generator=hl.seed(3))
for name, n, top, tr, delta, loss in zip(quadratic.names, quadratic.sizes, quadratic.top_eigenvalues,
                                         quadratic.exact_traces, quadratic.perturbations, quadratic.loss_increase):
    print(f"{name:6s}: n = {n:3d}, λ_max = {top:.2f}, Tr(H) = {tr:5.1f}, Tr(H)/n = {tr / n:.3f}, "
          f"‖Δ‖² = {delta:.3f}, ½ΔᵀHΔ = {loss:.4f}")
for label, values in (("λ_max(H)", quadratic.top_eigenvalues), ("Tr(H)/n", quadratic.exact_traces / quadratic.sizes),
                      ("Tr(H)", quadratic.exact_traces), ("measured ½ΔᵀHΔ", quadratic.loss_increase),
                      ("HAWQ-V2 Tr(H)/n·‖Δ‖²", quadratic.omega), ("HAWQ-V1 λ_max·‖Δ‖²", quadratic.hawq_v1),
                      ("no 1/n: Tr(H)·‖Δ‖²", quadratic.without_size)):
    print(f"ranked by {label:21s}: {' > '.join(quadratic.order(values))}")

# %% [markdown]
# Only HAWQ-V2's score ranks the layers as the loss does: V1 puts the spiked layer first, the score without $1/n_i$
# the wide one.
#
# The traces are Hutchinson estimates, and the traces' assert below (within 4 standard errors of the exact trace)
# holds for Gaussian probes too: they are unbiased, only noisier, and the variance figure above draws its own
# probes. What tells the probes apart is the variance: Rademacher's $2\sum_{i\ne j}A_{ij}^2/m$ leaves out the
# diagonal, Gaussian's $2\lVert A\rVert_F^2/m$ does not. On the damped spiked block $H+I$, whose diagonal is large,
# the two differ several-fold; measured on `hl.hutchinson_trace` itself, 64 calls of 16 probes each:

# %%
damped_block = quadratic_model.blocks[0] + torch.eye(len(quadratic_model.blocks[0]), dtype=torch.float64)
damped = hawq.estimator_variance(damped_block, 16, 64, generator=hl.seed(4))
print(f"Var of 16-probe estimates on H + I: measured {damped.variance:.3f} ± {damped.stderr:.3f}; "
      f"Rademacher 2Σ_(i≠j)A_ij²/m = {damped.rademacher:.3f}, Gaussian 2‖A‖_F²/m = {damped.gaussian:.3f}")

# %% [markdown]
# ## What is asserted
#
# 1. Per-layer Hutchinson traces (200 probes, matrix-free) are within 4 of their own standard errors of the exact
#    traces of the dense per-layer Hessian blocks of the 64-64-32-10 net (and within 10%: the 320-weight last layer's
#    estimate is the noisiest, 5.0% off on seed 1 at 2.6 standard errors, so a fixed 5% would test the seed).
# 2. The Spearman rank correlation of $\sum_i\Omega_i$ with the measured loss increase over all 64 configurations in
#    $\{2,3,4,8\}^3$ is at least 0.8 (for both nets).
# 3. Where the layers' sensitivities differ the frontier's pick beats uniform precision: on the wide net at the
#    size of uniform 4 bits, by more than a factor 2 (seeds 0–3). On 64-64-32-10 the pick *is* uniform precision,
#    which the measured losses confirm is best. The pick is **not** always at least as good as uniform: on the wide
#    net at the 3-bit size it picked a configuration with ΔL = 0.044 against uniform's 0.015 on seed 1 (the ternary
#    layer, above), so nothing is asserted there.
# 4. Hutchinson's measured variance follows $2\sum_{i\neq j}A_{ij}^2/m$ within 4 of its standard deviations.
# 5. On the quadratic layers HAWQ-V2's score ranks the layers as the measured loss increase does, and HAWQ-V1's
#    $\lambda_{\max}\lVert\Delta\rVert^2$ and the score without $1/n_i$ do not (so neither passes for V2).
# 6. `hl.hutchinson_trace`'s variance on the damped block follows Rademacher's $2\sum_{i\neq j}A_{ij}^2/m$ within 4
#    of its standard deviations, and Gaussian's $2\lVert A\rVert_F^2/m$ lies more than 8 of them away.

# %%
z_scores = np.array([(e.value - x) / e.stderr for e, x in zip(traces.estimates, exact)])
print("relative errors of the 200-probe traces:", np.round(relative_errors, 4),
      "in standard errors:", np.round(z_scores, 2))
assert np.all(np.abs(z_scores) <= 4) and np.all(np.abs(relative_errors) <= 0.1)

# %%
print(f"Spearman ρ: 64-64-32-10 {search.spearman:.3f}, 64-32-256-10 {wide_search.spearman:.3f}")
assert search.spearman >= 0.8 and wide_search.spearman >= 0.8

# %%
for label, rows in (("64-64-32-10", comparison), ("64-32-256-10", wide_comparison)):
    for row in rows:
        print(f"{label}, size of uniform {row.bits}: pick ΔL {row.pick_loss_increase:.2e}, "
              f"uniform ΔL {row.uniform_loss_increase:.2e}, best ΔL {row.best_loss_increase:.2e}")
assert all(row.pick == row.uniform == row.best for row in comparison)  # uniform is best there, and picked
wide_4 = next(row for row in wide_comparison if row.bits == 4)
assert wide_search.model_bits[wide_4.pick] <= wide_4.budget
assert wide_4.pick_loss_increase < wide_4.uniform_loss_increase / 2

# %%
for i, v in variances.items():
    z = (v.variance - v.predicted) / v.stderr
    print(f"{net.weight_names[i]}: (measured − predicted variance) / its standard deviation = {np.round(z, 2)}")
assert all(np.all(np.abs(v.variance - v.predicted) <= 4 * v.stderr) for v in variances.values())

# %%
print(f"loss {quadratic.order(quadratic.loss_increase)}, V2 {quadratic.order(quadratic.omega)}, "
      f"V1 {quadratic.order(quadratic.hawq_v1)}, no 1/n {quadratic.order(quadratic.without_size)}")
assert quadratic.order(quadratic.omega) == quadratic.order(quadratic.loss_increase)
assert quadratic.order(quadratic.hawq_v1) != quadratic.order(quadratic.loss_increase)
assert quadratic.order(quadratic.without_size) != quadratic.order(quadratic.loss_increase)

# %%
print(f"(measured − Rademacher) / s.d. = {(damped.variance - damped.rademacher) / damped.stderr:+.2f}, "
      f"(Gaussian − Rademacher) / s.d. = {(damped.gaussian - damped.rademacher) / damped.stderr:+.1f}")
assert abs(damped.variance - damped.rademacher) <= 4 * damped.stderr
assert damped.gaussian - damped.rademacher > 8 * damped.stderr
