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
# # 05 · Sinkhorn-Newton-Sparse: entropic optimal transport in tens of iterations
#
# **Paper:** Xun Tang, Michael Shavlovsky, Holakou Rahmanian, Elisa Tardini, Kiran Koshy Thekumparampil, Tesi Xiao
# and Lexing Ying, *Accelerating Sinkhorn algorithm with sparse Newton iterations*, ICLR 2024.
#
# **Phenomenon:** at a small regularisation Sinkhorn needs thousands of iterations, Sinkhorn-Newton-Sparse tens; the
# dual's Hessian is nearly sparse.
#
# **Claim.** To solve entropic optimal transport to high accuracy at a small regularisation, Sinkhorn's algorithm
# needs thousands of iterations. A few Sinkhorn steps followed by Newton steps on the dual — with the dual's Hessian
# replaced by a *sparse* one, so that a Newton step costs $O(n^2)$ like a Sinkhorn step — need tens.
#
# **The math.** Between marginals $a \in \mathbb{R}^n$, $b \in \mathbb{R}^m$ of equal mass with cost $C$, entropic OT
# (in POT's convention, $\varepsilon$ = `reg`) is
# $$\min_{P \ge 0,\; P\mathbf 1 = a,\; P^\top \mathbf 1 = b} \langle C, P\rangle - \varepsilon H(P), \qquad
#   H(P) = -\textstyle\sum_{ij} P_{ij}(\log P_{ij} - 1).$$
# Its dual is the concave *Lyapunov potential*
# $$L(f, g) = \langle f, a\rangle + \langle g, b\rangle - \varepsilon \textstyle\sum_{ij} P_{ij}, \qquad
#   P_{ij} = e^{(f_i + g_j - C_{ij})/\varepsilon},$$
# $$\nabla L = (a - P\mathbf 1,\; b - P^\top \mathbf 1), \qquad
#   \nabla^2 L = -\frac1\varepsilon \begin{pmatrix} \mathrm{diag}(P\mathbf 1) & P \\ P^\top &
#   \mathrm{diag}(P^\top\mathbf 1)\end{pmatrix}.$$
# The gradient is the marginal residual, so both methods are measured by one number, the **marginal error**
# $\|P\mathbf 1 - a\|_1 + \|P^\top \mathbf 1 - b\|_1$.
#
# * **Sinkhorn** maximises $L$ exactly over $f$, then over $g$, and again: linear convergence, with a rate that
#   degrades as $\varepsilon \to 0$.
# * **Sinkhorn-Newton-Sparse (SNS)** takes $N_1$ Sinkhorn steps, then Newton steps
#   $\Delta = -(\nabla^2 L)^{-1}\nabla L$. Near the optimum most of $P$'s mass sits on a few entries per row, so
#   the Hessian is nearly sparse: SNS keeps only the large entries (here: those carrying at least a fraction
#   $\rho = 10^{-6}$ of their row's or column's mass), solves the sparse system by conjugate gradient, and
#   backtracks on $L$. (Here the $f$-part of the step is eliminated through the first block row, and CG runs on the
#   $m \times m$ Schur complement $\mathrm{diag}(P^\top\mathbf 1) - S^\top \mathrm{diag}(P\mathbf 1)^{-1} S$,
#   orthogonal to its null vector $\mathbf 1$. When more than 15% of $P$ passes the threshold, as at
#   $\varepsilon = 10^{-2}$, a product with the "sparse" part costs what a dense one does, and the step uses all of
#   $P$: exact Newton.)
#
# **What to look at.** Sinkhorn's error shrinks by a roughly constant factor per iteration, a factor close to 1 at
# small $\varepsilon$ (here about 200 iterations per digit); SNS's error falls off a cliff right after its warm
# start. A single Newton step may raise the marginal error — the line search asks for an increase of $L$, certified
# against rounding, not a decrease of the error; measured on the slider's 200 random points, single steps raise it
# by at most 8% at reg $10^{-3}$ and up to 7× at reg $10^{-4}$ — yet never above the error
# at the end of the warm start, which caps every step (at reg $10^{-4}$, 200 points, SNS then does not reach
# $10^{-9}$ within 5000 iterations; 400 points do, in 83). The slider below goes down to $10^{-4}$ to show it.
# Then: how the iteration counts move as $\varepsilon$ shrinks, and how sparse the Hessian really is.

# %%
import functools
import warnings

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

import hesslab as hl
from hesslab.experiments import sinkhorn_newton_sparse as ex
from hesslab.plot import plot_convergence
from hesslab.transport import DENSE_FRACTION
from hesslab.widgets import panel

generator = hl.seed(0)
device = hl.device()
N = hl.sized(quick=400, full=3000)  # points in each random cloud
GRID = hl.sized(quick=20, full=48)  # the densities live on a GRID × GRID grid
REG, TOL = 1e-3, 1e-9  # the regularisation, and the marginal error both solvers must reach
WARM_START, THRESHOLD = 20, 1e-6  # SNS: N₁ Sinkhorn steps, and the sparsification threshold ρ
print(f"device {device}, {N} points per cloud, a {GRID}×{GRID} grid, reg = {REG:g}, tol = {TOL:g}")

# %% [markdown]
# ## Random point clouds
#
# $n$ uniform points in the unit square on each side, uniform weights, squared distances divided by their maximum
# — the paper's first experiment. Both solvers run until the marginal error is below `TOL`.

# %%
clouds = ex.random_point_clouds(N, generator, device)
cloud_race = ex.race(clouds, REG, TOL, warm_start=WARM_START, threshold=THRESHOLD)
for name, result in [("Sinkhorn", cloud_race.sinkhorn), ("SNS", cloud_race.newton)]:
    print(f"{name:8s} {result.iterations:6d} iterations in {result.history['seconds'][-1]:6.2f} s, final error "
          f"{result.history['error'][-1]:.1e}")
sinkhorn_ms = 1e3 * cloud_race.sinkhorn.history["seconds"][-1] / cloud_race.sinkhorn.iterations
newton_ms = 1e3 * (cloud_race.newton.history["seconds"][-1] - cloud_race.newton.history["seconds"][WARM_START]) / (
    cloud_race.newton.iterations - WARM_START)
print(f"one Sinkhorn iteration: {sinkhorn_ms:.2f} ms; one Newton step: {newton_ms:.2f} ms")
print(f"SNS needs {cloud_race.iteration_ratio:.0f}x fewer iterations; ‖P_Sinkhorn − P_SNS‖₁ = "
      f"{cloud_race.plan_difference:.1e}")


# %% tags=["thumbnail"]
def convergence_axes(axes, race, title):
    """Marginal error against iterations (left) and seconds (right), log-log; iteration 0 is left out."""
    for result, label, color in [(race.sinkhorn, "Sinkhorn", "C0"), (race.newton, "Sinkhorn-Newton-Sparse", "C3")]:
        plot_convergence({f"{label} ({result.iterations})": result}, ax=axes[0], color=color)
        plot_convergence({label: result}, x="seconds", ax=axes[1], color=color)
    for ax in axes:
        ax.set_xscale("log")  # entry 0 (iteration 0, 0 s) falls off the log axis
        ax.axhline(race.tol, color="0.5", ls="--", lw=1)
        ax.set_ylabel(r"marginal error $\|P1-a\|_1+\|P^\top 1-b\|_1$")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].axvline(WARM_START, color="C3", ls=":", lw=1, label=f"end of SNS warm start ({WARM_START})")
    axes[0].set_xlabel("iteration")
    axes[1].set_xlabel("wall time (s)")
    axes[0].legend(frameon=False, fontsize=9)
    axes[0].set_title(f"{title}: error per iteration")
    axes[1].set_title("error against wall time")


fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
convergence_axes(axes, cloud_race, f"{N} random points, reg = {REG:g}")
fig.tight_layout()
plt.show()

# %% [markdown]
# The dotted line marks the end of the warm start: up to there the two curves coincide (SNS *is* Sinkhorn for
# $N_1$ steps). After it, each Newton step multiplies the digits gained, while Sinkhorn gains a fixed fraction of a
# digit per iteration. Against wall time the gap is smaller than in iterations. Both kinds of iteration cost
# $O(n^2)$, as the paper says, but with different constants: a Sinkhorn iteration here is two matrix-vector
# products with the kernel, while a Newton step selects the plan's large entries (passes over the whole $n \times n$
# plan), runs conjugate gradient on them (two sparse products per CG iteration), and rescales the plan by the step
# the line search accepts — the printout above gives the milliseconds of each. (On a CPU shared with other
# processes, the wall-time panel moves from run to run; the iteration counts do not.)
#
# ## W2 between two densities on a grid
#
# The paper's second experiment: two mixtures of Gaussians discretised on a grid, the squared-Euclidean cost
# (entropic $W_2$). The support is the whole grid, the masses of its cells span tens of orders of magnitude (the
# Gaussians' tails), and many pairs of cells have equal costs.

# %%
densities = ex.gaussian_mixture_densities(GRID, device)
grid_race = ex.race(densities, REG, TOL, warm_start=WARM_START, threshold=THRESHOLD)
print(f"{densities.name}: Sinkhorn {grid_race.sinkhorn.iterations} iterations, SNS {grid_race.newton.iterations} "
      f"({grid_race.iteration_ratio:.0f}x fewer); W2² ≈ ⟨C, P⟩ = {grid_race.newton.cost:.4f} (C scaled to max 1)")

fig, axes = plt.subplot_mosaic([["a", "b"], ["iterations", "time"]], figsize=(12, 8.4),
                                gridspec_kw={"height_ratios": [1, 1]})
for key, weights, title in [("a", densities.a, "source density a"), ("b", densities.b, "target density b")]:
    image = axes[key].imshow(weights.reshape(GRID, GRID).T.cpu().numpy(), origin="lower", extent=(0, 1, 0, 1),
                             cmap="viridis")
    axes[key].set_title(f"{title} ({GRID}×{GRID} cells)")
    axes[key].set_xlabel("x")
    axes[key].set_ylabel("y")
    fig.colorbar(image, ax=axes[key], label="mass per cell")
convergence_axes([axes["iterations"], axes["time"]], grid_race, f"{GRID}×{GRID} grid, reg = {REG:g}")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Iterations to tolerance as reg shrinks
#
# Sinkhorn's linear rate degrades as $\varepsilon$ shrinks: its iteration count grows roughly like $1/\varepsilon$.
# SNS's count barely moves — the warm start plus a handful of Newton steps.

# %%
REGS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3)
sweep = ex.iterations_vs_reg(clouds, REGS, TOL, done=(cloud_race,))
for reg, slow, fast in zip(sweep.regs, sweep.sinkhorn_iterations, sweep.newton_iterations):
    print(f"reg = {reg:6g}: Sinkhorn {slow:5d}, SNS {fast:3d} iterations ({slow / fast:5.1f}x)")

fig, ax = plt.subplots(figsize=(6, 4.2))
ax.loglog(sweep.regs, sweep.sinkhorn_iterations, "o-", color="C0", label="Sinkhorn")
ax.loglog(sweep.regs, sweep.newton_iterations, "s-", color="C3", label=f"SNS ({WARM_START} warm-start steps included)")
reference = np.asarray(sweep.regs)
ax.loglog(reference, sweep.sinkhorn_iterations[-1] * REGS[-1] / reference, ":", color="0.5", label=r"$\propto 1/$reg")
ax.set_xlabel("reg (ε)")
ax.set_ylabel(f"iterations to marginal error {TOL:g}")
ax.set_title(f"{N} random points")
ax.invert_xaxis()
ax.legend(frameon=False)
ax.grid(True, which="major", alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## How sparse is the Hessian?
#
# Left: the non-zero pattern of the sparsified Hessian $\begin{pmatrix}\mathrm{diag}(P\mathbf 1) & S \\ S^\top &
# \mathrm{diag}(P^\top \mathbf 1)\end{pmatrix}$ at the solution, with the points ordered along a serpentine path
# through the square so that nearby points get nearby indices: the kept entries form a narrow band. Right: keep
# the $k$ largest entries of $P$ — what fraction of its mass do they carry? At small $\varepsilon$ a percent of the
# entries carries all but a millionth of the mass; at large $\varepsilon$ the plan is blurred and far less sparse.

# %%
plan = cloud_race.newton.plan
source_order, target_order = ex.banded_order(clouds, plan)
pattern = ex.hessian_pattern(plan, THRESHOLD, source_order, target_order)
kept = ex.hessian_sparsity(plan, (THRESHOLD,))
print(f"threshold ρ = {THRESHOLD:g}: {100 * kept.density[0]:.2f}% of the plan's entries kept "
      f"({kept.density[0] * N:.1f} per row); the entries it drops carry {kept.mass_dropped[0]:.1e} of the mass")

fig, axes = plt.subplots(1, 2, figsize=(12, 5))
axes[0].spy(pattern.numpy(), markersize=0.3, color="k")
axes[0].axhline(N - 0.5, color="C0", lw=0.8)
axes[0].axvline(N - 0.5, color="C0", lw=0.8)
axes[0].set_title(f"sparsified Hessian, {2 * N}×{2 * N}: {int(pattern.sum())} non-zeros "
                  f"({100 * pattern.float().mean():.2f}%)", fontsize=10)
axes[0].set_xlabel("index: f (first n), then g")
axes[0].set_ylabel("index")
for reg, color in [(1e-1, "C2"), (1e-2, "C1"), (1e-3, "C3")]:
    result = (cloud_race.newton if reg == REG
              else hl.transport.sinkhorn_newton_sparse(clouds.a, clouds.b, clouds.C, reg, tol=TOL))
    fraction, dropped = ex.mass_curve(result.plan)
    axes[1].loglog(fraction.numpy(), dropped.numpy(), color=color, label=f"reg = {reg:g}")
    marker = ex.hessian_sparsity(result.plan, (THRESHOLD,))
    axes[1].plot(marker.density, max(marker.mass_dropped[0], 1e-16), "o", color=color, mfc="none", ms=8)
axes[1].set_xlabel("fraction of the entries of P kept (the largest first)")
axes[1].set_ylabel("fraction of the mass dropped")
axes[1].set_ylim(1e-16, 2)
axes[1].set_title(f"circles: what the threshold ρ = {THRESHOLD:g} keeps (at the floor: nothing dropped)",
                  fontsize=10)
axes[1].legend(frameon=False)
axes[1].grid(True, which="major", alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Try it
#
# Change the number of points, the regularisation, the sparsification threshold $\rho$ (a larger $\rho$ drops more
# of the Hessian: cheaper conjugate gradient, but Newton steps further from exact — the error then falls linearly,
# not super-linearly) and the number of warm-start Sinkhorn steps (too few, and the first Newton steps are damped by
# the line search). Sinkhorn stops after 5000 iterations here, so that a redraw takes seconds.

# %%
widget_generator_seed = 1


@functools.lru_cache(maxsize=16)
def small_problem(n):
    return ex.random_point_clouds(n, hl.seed(widget_generator_seed), device)


@functools.lru_cache(maxsize=32)
def sinkhorn_run(n, reg):
    problem = small_problem(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # not converging within the cap is shown in the legend
        return hl.transport.sinkhorn(problem.a, problem.b, problem.C, reg, tol=TOL, max_iter=5000)


@functools.lru_cache(maxsize=64)
def newton_run(n, reg, threshold, warm_start):
    problem = small_problem(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return hl.transport.sinkhorn_newton_sparse(problem.a, problem.b, problem.C, reg, tol=TOL, max_iter=5000,
                                         warm_start=warm_start, threshold=threshold)


def draw(n, reg, threshold, warm_start):
    slow, fast = sinkhorn_run(n, reg), newton_run(n, reg, threshold, warm_start)
    kept = ex.hessian_sparsity(fast.plan, (threshold,))
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for result, label, color in [(slow, "Sinkhorn", "C0"), (fast, "SNS", "C3")]:
        status = f"{result.iterations} iterations" if result.converged else f"not converged in {result.iterations}"
        plot_convergence({f"{label}: {status}, {result.history['seconds'][-1]:.2f} s": result}, ax=ax, color=color)
    ax.axhline(TOL, color="0.5", ls="--", lw=1)
    ax.axvline(warm_start, color="C3", ls=":", lw=1)
    ax.set_xscale("symlog", linthresh=10)  # linear up to the warm start, logarithmic after it
    ax.set_xlim(0, max(slow.iterations, fast.iterations) * 1.1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("marginal error")
    exact = kept.density[0] > DENSE_FRACTION  # then SNS's steps use all of P: exact Newton
    ax.set_title(f"n = {n}, reg = {reg:.1e}, ρ = {threshold:.0e}: the Hessian keeps {100 * kept.density[0]:.1f}% "
                 f"of P (dropping {kept.mass_dropped[0]:.1e} of its mass)"
                 + (" — not sparse: exact Newton steps" if exact else ""), fontsize=10)
    ax.legend(frameon=False)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()


panel(draw,
      n=widgets.IntSlider(value=200, min=50, max=400, step=50, description="n"),
      reg=widgets.FloatLogSlider(value=2e-3, base=10, min=-4, max=-1, step=0.1, description="reg"),
      threshold=widgets.FloatLogSlider(value=THRESHOLD, base=10, min=-12, max=-1, step=1, description="ρ"),
      warm_start=widgets.IntSlider(value=WARM_START, min=1, max=100, step=1, description="warm start"))

# %% [markdown]
# ## The phenomenon, as numbers
#
# At the notebook's setting ($n$ random points and the $W_2$ grid, reg $=10^{-3}$), asserted below:
# 1. both solvers reach the marginal error $10^{-9}$, and SNS needs **at least 10x fewer iterations** than Sinkhorn
#    on both problems;
# 2. both marginal errors, $\|P\mathbf 1 - a\|_1$ and $\|P^\top\mathbf 1 - b\|_1$, *recomputed from each plan* (not
#    taken from the solver's log), sum to at most $10^{-9}$ plus the rounding of the sums, $(n+m)\,\epsilon$;
# 3. on both problems the two plans agree to $10^{-6}$ in $\ell_1$, and both agree to $10^{-6}$ with the plan of
#    POT's `ot.sinkhorn` (an independent implementation, in the scaling form, stopped when its residual implies an
#    $\ell_1$ error below $10^{-9}$). The grid matters here: its marginals differ ($a \ne b$), so a Sinkhorn that
#    matched the columns to $a$ instead of $b$ — invisible on the clouds, where $a = b$ — fails 2 and 3 there.

# %%
pot = {"clouds": ex.pot_plan(clouds, REG, TOL), "grid": ex.pot_plan(densities, REG, TOL)}
races = {"clouds": (clouds, cloud_race), "grid": (densities, grid_race)}
differences = {}
for name, (problem, race) in races.items():
    differences[f"{name}: Sinkhorn vs SNS"] = race.plan_difference
    differences[f"{name}: SNS vs POT"] = float((race.newton.plan - pot[name]).abs().sum())
    differences[f"{name}: Sinkhorn vs POT"] = float((race.sinkhorn.plan - pot[name]).abs().sum())
marginals = {(name, solver): ex.marginal_errors(problem, getattr(race, solver).plan)
             for name, (problem, race) in races.items() for solver in ("sinkhorn", "newton")}
print(f"random points: Sinkhorn {cloud_race.sinkhorn.iterations} / SNS {cloud_race.newton.iterations} iterations "
      f"= {cloud_race.iteration_ratio:.1f}x")
print(f"grid:          Sinkhorn {grid_race.sinkhorn.iterations} / SNS {grid_race.newton.iterations} iterations "
      f"= {grid_race.iteration_ratio:.1f}x")
for name, value in differences.items():
    print(f"‖P − P‖₁, {name}: {value:.2e}")
for (name, solver), (rows, cols) in marginals.items():
    print(f"{name}, {solver}: ‖P1 − a‖₁ = {rows:.2e}, ‖Pᵀ1 − b‖₁ = {cols:.2e}")

# %%
for problem, race in races.values():
    assert race.sinkhorn.converged and race.newton.converged
    assert race.sinkhorn.history["error"][-1] <= TOL and race.newton.history["error"][-1] <= TOL
    assert race.newton.iterations * 10 <= race.sinkhorn.iterations, race.iteration_ratio
    for result in (race.sinkhorn, race.newton):
        assert sum(ex.marginal_errors(problem, result.plan)) <= TOL + ex.marginal_rounding(problem), marginals
assert all(value <= 1e-6 for value in differences.values()), differences
