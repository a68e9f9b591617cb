"""Benchmark hesslab's curvature tools against PyHessian, curvlinops and torch.func, in one run.

What is measured (float32, ``torch.set_num_threads(2)``), for an MLP 64-W-W-10 (tanh) with mean cross-entropy on 512
synthetic samples (Gaussian class clusters), briefly trained with full-batch SGD so that its Hessian is not that of a
random init; W = 128 (26,122 parameters) and W = 256 (85,002 parameters):

    workload                  hesslab                          baselines
    one HVP at a fixed point  HessianOperator(f, θ) @ v        a gradient (forward + backward), PyHessian's
                                                               hessian_vector_product, torch.func jvp(grad(f)),
                                                               curvlinops HessianLinearOperator @ v
    Hutchinson trace          hutchinson_trace(op, 100)        PyHessian trace(maxIter=100) forced to use all 100
                                                               probes, curvlinops hutchinson_trace(op, 100)
    top eigenvalue            top_eigen(op, 1)                 PyHessian eigenvalues() (power iteration), scipy
                                                               eigsh on curvlinops' operator; relative errors
                                                               against a float64 reference (Lanczos, checked by eigsh)
    SLQ density               spectral_density(op, 100, 1)     100 repeated HVPs; PyHessian density() (it crashes on
                                                               current torch: the exception is printed)
    exact Hessian (W = 128)   hessian(f, θ) in a fresh process n × one repeated HVP; peak memory against the n²
                                                               matrix; optionally a 256-chunked vmap of fwd-over-rev
                                                               HVPs (--slow-baselines)
    exact Hessian (W = 256)   hessian(f, θ) must refuse (the ~27 GiB matrix does not fit) with a ValueError

Every timed workload is measured after a warm-up, interleaving the competitors round-robin over several rounds (the
order rotates every round). Times are medians over the rounds and a ratio is the ratio of two medians; the brackets
after it give the interquartile range of the per-round ratios (the two competitors run back to back in each round),
i.e. how much the comparison moved with the machine's noise and the methods' random starts. Estimators
are timed on operators built beforehand (building one costs about one gradient). The exact Hessian runs once, in a
fresh process whose peak memory is measured around the call. All baselines are measured in the same run.

Run it with (``make bench`` does the first):

    .venv/bin/python benchmarks/curvature.py                   # full run, ~3 minutes on a 2-core CPU
    .venv/bin/python benchmarks/curvature.py --quick           # width 128 only, no exact Hessian (~30 s)
    .venv/bin/python benchmarks/curvature.py --slow-baselines  # adds the torch.func exact Hessian (~1.5 more min)
    .venv/bin/python benchmarks/curvature.py --device cpu      # default: hesslab.device(), i.e. CUDA when available
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from harness import header, race, ratio_text, sync, table  # benchmarks/harness.py: this folder is on sys.path
from torch import Tensor, nn

import hesslab as hl

INPUT_DIM, CLASSES, SAMPLES = 64, 10, 512
PACKAGES = ("torch", "hesslab", "pyhessian", "curvlinops-for-pytorch", "scipy", "numpy")  # in the header
WIDTHS = (128, 256)
TRAIN_STEPS, TRAIN_LR = 200, 0.1
THREADS = 2

# Rounds of the interleaved timing races (medians are taken over the rounds).
HVP_ROUNDS, HVP_REPEATS = 21, 20  # one measurement = 20 back-to-back products, 21 measurements each
ESTIMATOR_ROUNDS = 11  # trace, top eigenvalue, density: one call per measurement

# Targets, as stated for hesslab.
HVP_TARGET = 1.2  # one HVP <= 1.2 gradients
TRACE_TARGET = 1.0  # Hutchinson time <= PyHessian's
EIGEN_ERROR_TARGET, EIGEN_TIME_TARGET = 1e-6, 2.0  # rel. error, and time <= 2x PyHessian's power iteration
DENSITY_TARGET = 1.3  # SLQ(100 steps) <= 1.3x 100 repeated HVPs
EXACT_TIME_TARGET, EXACT_MEMORY_TARGET = 1.5, 2.0  # <= 1.5 x (n x one HVP); peak <= 2x the matrix's bytes

warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")  # PyHessian's own call


# ----------------------------------------------------------------------------------------------------------------------
# The problem: data, model, training
# ----------------------------------------------------------------------------------------------------------------------
def make_data(device: torch.device) -> tuple[Tensor, Tensor]:
    """512 samples from 10 overlapping Gaussian clusters in 64 dimensions (seeded)."""
    generator = torch.Generator().manual_seed(0)
    centers = 0.3 * torch.randn(CLASSES, INPUT_DIM, generator=generator)
    targets = torch.randint(0, CLASSES, (SAMPLES,), generator=generator)
    inputs = centers[targets] + torch.randn(SAMPLES, INPUT_DIM, generator=generator)
    return inputs.to(device), targets.to(device)


def make_model(width: int) -> nn.Module:
    """MLP 64-width-width-10 with tanh, float32, seeded initialisation (on the CPU)."""
    torch.manual_seed(width)
    return nn.Sequential(nn.Linear(INPUT_DIM, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                         nn.Linear(width, CLASSES))


def train(model: nn.Module, inputs: Tensor, targets: Tensor) -> float:
    """A couple hundred full-batch SGD steps, so that the loss (and its Hessian) is that of a trained network."""
    optimizer = torch.optim.SGD(model.parameters(), lr=TRAIN_LR)
    for _ in range(TRAIN_STEPS):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    model.eval()
    return F.cross_entropy(model(inputs), targets).item()


@dataclass
class Problem:
    width: int
    model: nn.Module
    inputs: Tensor
    targets: Tensor
    loss: float

    @property
    def params(self) -> list[Tensor]:
        return list(self.model.parameters())

    @property
    def n(self) -> int:
        return sum(p.numel() for p in self.params)

    def split(self, v: Tensor) -> list[Tensor]:
        """A flat vector as a list of parameter-shaped tensors (PyHessian's format)."""
        return [piece.view_as(p) for piece, p in zip(v.split([p.numel() for p in self.params]), self.params)]

    def operator(self) -> hl.HessianOperator:
        return hl.HessianOperator.from_model(self.model, F.cross_entropy, (self.inputs, self.targets))


def make_problem(width: int, device: torch.device) -> Problem:
    inputs, targets = make_data(device)
    model = make_model(width).to(device)
    loss = train(model, inputs, targets)
    return Problem(width, model, inputs, targets, loss)


# ----------------------------------------------------------------------------------------------------------------------
# The baselines' objects
# ----------------------------------------------------------------------------------------------------------------------
def pyhessian_for(problem: Problem):
    """PyHessian's ``hessian`` object (it runs a backward with create_graph=True and caches ``gradsH``)."""
    from pyhessian import hessian

    problem.model.zero_grad(set_to_none=True)  # PyHessian accumulates into .grad: start from none
    ph = hessian(problem.model, nn.CrossEntropyLoss(), data=(problem.inputs, problem.targets),
                 cuda=problem.inputs.device.type == "cuda")
    problem.model.zero_grad(set_to_none=True)  # gradsH keeps its own copy; break the .grad reference cycle
    return ph


def curvlinops_for(problem: Problem):
    """curvlinops' ``HessianLinearOperator`` on the one batch."""
    from curvlinops import HessianLinearOperator

    return HessianLinearOperator(problem.model, nn.CrossEntropyLoss(), problem.params,
                                 [(problem.inputs, problem.targets)], check_deterministic=False)


def fwd_over_rev_hvp(f: Callable[[Tensor], Tensor], theta: Tensor) -> Callable[[Tensor], Tensor]:
    """torch.func's forward-over-reverse HVP, ``v -> jvp(grad(f), θ, v)``, f built on functional_call."""
    gradient = torch.func.grad(f)
    return lambda v: torch.func.jvp(gradient, (theta,), (v,))[1]


# ----------------------------------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class Row:
    workload: str
    hesslab: str
    baselines: str
    ratio: str
    target: str
    met: bool | None  # None: no target on this row

    def cells(self) -> list[str]:
        met = "-" if self.met is None else ("yes" if self.met else "NO")
        return [self.workload, self.hesslab, self.baselines, self.ratio, self.target, met]


HEADER = ["workload", "hesslab", "baselines (same run)", "ratio", "target", "met"]


def first_sentence(text: str) -> str:
    """The first sentence of a (possibly long, multi-line) message, for a table cell."""
    return text.splitlines()[0].split(". ")[0].rstrip(".") + "."


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


# ----------------------------------------------------------------------------------------------------------------------
# Workloads
# ----------------------------------------------------------------------------------------------------------------------
def bench_hvp(problem: Problem, device: torch.device) -> tuple[Row, float]:
    """One HVP at a fixed point, repeated, against one gradient. Returns the row and hesslab's seconds per HVP."""
    model, inputs, targets, params = problem.model, problem.inputs, problem.targets, problem.params
    op = problem.operator()
    ph = pyhessian_for(problem)
    cl = curvlinops_for(problem)
    f, theta = hl.loss_function(model, F.cross_entropy, inputs, targets)
    fwd_rev = fwd_over_rev_hvp(f, theta)
    v = torch.randn(problem.n, generator=torch.Generator().manual_seed(1)).to(device)
    v_list = problem.split(v)

    from pyhessian.utils import hessian_vector_product

    competitors = {
        "gradient": lambda: torch.autograd.grad(F.cross_entropy(model(inputs), targets), params),
        "hesslab": lambda: op @ v,
        "PyHessian": lambda: hessian_vector_product(ph.gradsH, ph.params, v_list),
        "torch.func fwd-over-rev": lambda: fwd_rev(v),
        "curvlinops": lambda: cl @ v,
    }
    reference = op @ v
    for name in ("PyHessian", "torch.func fwd-over-rev", "curvlinops"):
        out = competitors[name]()
        out = torch.cat([t.reshape(-1) for t in out]) if isinstance(out, (list, tuple)) else out
        print(f"  check: {name} HVP vs hesslab, relative difference "
              f"{((out - reference).norm() / reference.norm()).item():.1e}")
    timed = race(competitors, device, HVP_ROUNDS, repeats=HVP_REPEATS, warmup=3)
    for name in competitors:
        print(f"  {name:<24} {ms(timed.median(name)):>10} per call   "
              f"{ratio_text(timed.ratio(name, 'gradient'), 'a gradient')}")
    ratio = timed.ratio("hesslab", "gradient")
    baselines = "; ".join(f"{name} {timed.ratio(name, 'gradient')[0]:.2f}x" for name in
                          ("PyHessian", "torch.func fwd-over-rev", "curvlinops"))
    row = Row(f"one HVP, repeated (W={problem.width})", ms(timed.median("hesslab")),
              f"gradient {ms(timed.median('gradient'))}; {baselines}", ratio_text(ratio, "grad"),
              f"<= {HVP_TARGET}x grad", ratio[0] <= HVP_TARGET)
    return row, timed.median("hesslab")


def bench_trace(problem: Problem, device: torch.device) -> tuple[Row, float]:
    """Hutchinson's trace estimate from 100 Rademacher probes. Returns the row and hesslab's estimate."""
    from curvlinops import hutchinson_trace as curvlinops_trace

    op, ph, cl = problem.operator(), pyhessian_for(problem), curvlinops_for(problem)
    generator = torch.Generator(device=device).manual_seed(2)
    # PyHessian stops once the running mean changes by less than tol (relative); tol=-inf never stops early.
    competitors = {
        "hesslab": lambda: hl.hutchinson_trace(op, 100, generator=generator),
        "PyHessian": lambda: ph.trace(maxIter=100, tol=-math.inf),
        "curvlinops": lambda: curvlinops_trace(cl, 100),
    }
    timed = race(competitors, device, ESTIMATOR_ROUNDS)
    estimate = timed.results["hesslab"][-1]
    probes_used = sorted({len(r) for r in timed.results["PyHessian"]})
    print(f"  hesslab     {ms(timed.median('hesslab')):>10}   tr ≈ {estimate}")
    print(f"  PyHessian   {ms(timed.median('PyHessian')):>10}   tr ≈ {np.mean(timed.results['PyHessian'][-1]):.6g}"
          f"   (probes used per call: {probes_used})")
    print(f"  curvlinops  {ms(timed.median('curvlinops')):>10}   tr ≈ {float(timed.results['curvlinops'][-1]):.6g}")
    ratio = timed.ratio("hesslab", "PyHessian")
    row = Row(f"Hutchinson trace, 100 probes (W={problem.width})", ms(timed.median("hesslab")),
              f"PyHessian {ms(timed.median('PyHessian'))} ({'/'.join(map(str, probes_used))} probes); "
              f"curvlinops {ms(timed.median('curvlinops'))}",
              ratio_text(ratio, "PyHessian"), f"<= {TRACE_TARGET}x PyHessian", ratio[0] <= TRACE_TARGET)
    return row, estimate.value


def reference_top_eigenvalue(problem: Problem) -> float:
    """λ_max of the same model's Hessian in float64: Lanczos to tol 1e-10, cross-checked with scipy's eigsh."""
    from scipy.sparse.linalg import eigsh

    model64 = copy.deepcopy(problem.model).double()
    op64 = hl.HessianOperator.from_model(model64, F.cross_entropy, (problem.inputs.double(), problem.targets))
    lanczos = hl.top_eigen(op64, 1, tol=1e-10, generator=torch.Generator(device=op64.device).manual_seed(3))[0]
    arpack = eigsh(op64.to_scipy(), k=1, which="LA", tol=1e-10, return_eigenvectors=False)[0]
    lanczos = float(lanczos[0])
    print(f"  float64 reference: Lanczos {lanczos:.10g}, scipy eigsh {arpack:.10g} "
          f"(relative difference {abs(lanczos - arpack) / abs(arpack):.1e})")
    return lanczos


def bench_top_eigen(problem: Problem, device: torch.device) -> Row:
    """The largest eigenvalue: time and relative error against the float64 reference."""
    from scipy.sparse.linalg import eigsh

    reference = reference_top_eigenvalue(problem)
    op, ph, cl = problem.operator(), pyhessian_for(problem), curvlinops_for(problem)
    generator = torch.Generator(device=device).manual_seed(4)
    scipy_cl = cl.to_scipy()
    competitors = {
        "hesslab": lambda: float(hl.top_eigen(op, 1, generator=generator)[0][0]),
        "PyHessian": lambda: float(ph.eigenvalues()[0][0]),
        "eigsh(curvlinops)": lambda: float(eigsh(scipy_cl, k=1, which="LA", return_eigenvectors=False)[0]),
    }
    timed = race(competitors, device, ESTIMATOR_ROUNDS)
    errors = {name: [abs(value - reference) / abs(reference) for value in values]
              for name, values in timed.results.items()}
    for name in competitors:
        print(f"  {name:<18} {ms(timed.median(name)):>10}   relative error median "
              f"{statistics.median(errors[name]):.1e}, worst {max(errors[name]):.1e} over {len(errors[name])} runs")
    ratio = timed.ratio("hesslab", "PyHessian")
    worst = max(errors["hesslab"])
    return Row(f"top eigenvalue (W={problem.width})", f"{ms(timed.median('hesslab'))}, err {worst:.1e}",
               f"PyHessian {ms(timed.median('PyHessian'))}, err {statistics.median(errors['PyHessian']):.1e}; "
               f"eigsh(curvlinops) {ms(timed.median('eigsh(curvlinops)'))}, "
               f"err {statistics.median(errors['eigsh(curvlinops)']):.1e}",
               ratio_text(ratio, "PyHessian"), f"err <= {EIGEN_ERROR_TARGET:.0e} (worst run), "
               f"<= {EIGEN_TIME_TARGET}x PyHessian",
               worst <= EIGEN_ERROR_TARGET and ratio[0] <= EIGEN_TIME_TARGET)


def bench_density(problem: Problem, device: torch.device) -> Row:
    """Stochastic Lanczos quadrature with 100 steps and one probe, against 100 repeated HVPs."""
    op = problem.operator()
    generator = torch.Generator(device=device).manual_seed(5)
    v = torch.randn(problem.n, generator=torch.Generator().manual_seed(6)).to(device)

    def hundred_hvps():
        for _ in range(100):
            out = op @ v
        return out

    competitors = {
        "hesslab": lambda: hl.spectral_density(op, 100, 1, generator=generator),
        "100 HVPs": hundred_hvps,
    }
    timed = race(competitors, device, ESTIMATOR_ROUNDS)
    crash = pyhessian_density_crash(problem)
    ratio = timed.ratio("hesslab", "100 HVPs")
    print(f"  hesslab spectral_density {ms(timed.median('hesslab'))}, 100 repeated HVPs "
          f"{ms(timed.median('100 HVPs'))}: {ratio_text(ratio, '100 HVPs')}")
    print("  PyHessian density(): " + crash.replace("\n", "\n    "))
    return Row(f"SLQ density, 100 steps (W={problem.width})", ms(timed.median("hesslab")),
               f"100 HVPs {ms(timed.median('100 HVPs'))}; PyHessian density() crashed: {first_sentence(crash)}",
               ratio_text(ratio, "100 HVPs"), f"<= {DENSITY_TARGET}x 100 HVPs", ratio[0] <= DENSITY_TARGET)


def pyhessian_density_crash(problem: Problem) -> str:
    """Call PyHessian's density(); return the exception it raises (or say that it did not)."""
    ph = pyhessian_for(problem)
    try:
        ph.density(iter=100, n_v=1)
    except Exception as error:  # noqa: BLE001 — the point is to show whatever it raises
        return f"{type(error).__name__}: {error}"
    return "no exception (it ran)"


# ----------------------------------------------------------------------------------------------------------------------
# Exact Hessian, in a fresh process (honest peak memory)
# ----------------------------------------------------------------------------------------------------------------------
def spawn_worker(problem: Problem, task: str, device: torch.device, timeout: float) -> dict:
    """Run ``task`` on the problem in a fresh Python process; return the JSON it reports (or the failure)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "problem.pt")
        torch.save({"width": problem.width, "state": {k: t.cpu() for k, t in problem.model.state_dict().items()},
                    "inputs": problem.inputs.cpu(), "targets": problem.targets.cpu()}, path)
        command = [sys.executable, os.path.abspath(__file__), "--worker", task, path, "--device", str(device)]
        try:
            done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"no answer within {timeout:.0f} s"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"error": f"worker exited with code {done.returncode}: {done.stderr.strip()[-500:]}"}


def bench_exact(problem: Problem, device: torch.device, hvp_seconds: float, slow_baselines: bool,
                trace_estimate: float) -> list[Row]:
    """hl.hessian at 26k parameters: time against n x one repeated HVP, peak memory against the matrix.

    The machine's speed drifts over minutes, so "one repeated HVP" is timed again in the worker process, just
    before and just after the build; the target uses the mean of those two (``hvp_seconds``, from the HVP workload
    earlier in the run, is printed for comparison)."""
    n = problem.n
    matrix_bytes = n * n * 4
    result = spawn_worker(problem, "hesslab", device, timeout=1200)
    if "error" in result:
        print(f"  hesslab hessian FAILED: {result['error']}")
        return [Row(f"exact Hessian (W={problem.width}, n={n})", "failed: " + result["error"][:80], "", "", "", False)]
    hvp_before, hvp_after = result["hvp_seconds"]
    budget = n * (hvp_before + hvp_after) / 2
    print(f"  hesslab hessian: {result['seconds']:.1f} s = {result['seconds'] / n * 1e3:.2f} ms per column; one "
          f"repeated HVP in the same process: {hvp_before * 1e3:.2f} ms before, {hvp_after * 1e3:.2f} ms after "
          f"(in the HVP workload above: {hvp_seconds * 1e3:.2f} ms)")
    print(f"  peak memory +{result['peak_bytes'] / 2**30:.2f} GiB ({result['memory_method']}) for a "
          f"{matrix_bytes / 2**30:.2f} GiB matrix")
    print(f"  checks: exact trace {result['trace']:.6g} (Hutchinson estimate above: {trace_estimate:.6g}); "
          f"H @ v vs HVP relative difference {result['matvec_error']:.1e}")
    slow = "not run (--slow-baselines)"
    if slow_baselines:
        baseline = spawn_worker(problem, "fwd-over-rev", device, timeout=1200)
        if "error" in baseline:
            slow = f"torch.func vmap(fwd-over-rev) failed: {baseline['error'][:80]}"
        else:
            slow = (f"torch.func vmap(fwd-over-rev, 256 cols) {baseline['seconds']:.1f} s, "
                    f"peak {baseline['peak_bytes'] / matrix_bytes:.2f}x matrix")
        print(f"  {slow}")
    time_ratio = result["seconds"] / budget
    memory_ratio = result["peak_bytes"] / matrix_bytes
    return [
        Row(f"exact Hessian time (W={problem.width}, n={n})", f"{result['seconds']:.1f} s",
            f"n x one HVP = {budget:.1f} s; {slow}; torch.func.hessian: not run (out of memory)",
            f"{time_ratio:.2f}x (n x HVP)", f"<= {EXACT_TIME_TARGET}x (n x HVP)", time_ratio <= EXACT_TIME_TARGET),
        Row(f"exact Hessian peak memory (W={problem.width})", f"+{result['peak_bytes'] / 2**30:.2f} GiB",
            f"n² float32 = {matrix_bytes / 2**30:.2f} GiB", f"{memory_ratio:.2f}x matrix",
            f"<= {EXACT_MEMORY_TARGET}x matrix", memory_ratio <= EXACT_MEMORY_TARGET),
    ]


def bench_refusal(problem: Problem, device: torch.device) -> Row:
    """At 85k parameters the dense matrix does not fit: hl.hessian must refuse with a ValueError."""
    n = problem.n
    need, available = n * n * 4, available_bytes(device)
    workload = f"exact Hessian (W={problem.width}, n={n}, {need / 2**30:.1f} GiB)"
    if need <= available:
        note = f"fits here ({available / 2**30:.1f} GiB available); not built"
        print(f"  {note}")
        return Row(workload, note, "", "", "refuses when it does not fit", None)
    result = spawn_worker(problem, "refuse", device, timeout=300)
    message = result.get("error") or result["message"]
    print(f"  hl.hessian -> {message}")
    refused = result.get("refused", False)
    return Row(workload, ("refused: " if refused else "did NOT refuse: ") + first_sentence(message),
               "torch.func.hessian: not run",
               "", "ValueError, no allocation", refused)


def available_bytes(device: torch.device) -> int:
    """Free memory on the device: the GPU's free bytes, or the kernel's MemAvailable."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


# The worker side ------------------------------------------------------------------------------------------------------
def status_bytes(field: str) -> int:
    """A field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_memory(device: torch.device) -> tuple[int, str]:
    """Reset the peak-memory counter; return the memory in use now and how the peak is measured."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device), "torch.cuda.max_memory_allocated"
    try:  # writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        method = "VmHWM after clear_refs, minus VmRSS before"
    except OSError:
        method = "VmHWM (not resettable), minus VmRSS before: an upper bound"
    return status_bytes("VmRSS"), method


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    return status_bytes("VmHWM")


def dense_fwd_over_rev(f: Callable[[Tensor], Tensor], theta: Tensor, chunk: int = 256) -> Tensor:
    """The Hessian from torch.func: vmap of forward-over-reverse HVPs over the identity, 256 columns at a time."""
    n = theta.numel()
    batched = torch.func.vmap(fwd_over_rev_hvp(f, theta))
    matrix = torch.empty((n, n), dtype=theta.dtype, device=theta.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        basis = torch.zeros((stop - start, n), dtype=theta.dtype, device=theta.device)
        basis[torch.arange(stop - start, device=theta.device), torch.arange(start, stop, device=theta.device)] = 1
        matrix[start:stop] = batched(basis)
    return matrix


def worker(task: str, path: str, device: torch.device) -> dict:
    """The fresh process: load the trained problem, build the exact Hessian (or watch it refuse), report."""
    saved = torch.load(path)
    model = make_model(saved["width"])
    model.load_state_dict(saved["state"])
    model = model.to(device).eval()
    inputs, targets = saved["inputs"].to(device), saved["targets"].to(device)
    f, theta = hl.loss_function(model, F.cross_entropy, inputs, targets)
    if task == "refuse":
        start = time.perf_counter()
        try:
            hl.hessian(f, theta)
        except ValueError as error:
            return {"refused": True, "message": f"ValueError: {error}", "seconds": time.perf_counter() - start}
        return {"refused": False, "message": "returned a matrix"}
    hvp_before = repeated_hvp_seconds(f, theta)
    gc.collect()
    before, method = reset_peak_memory(device)
    start = time.perf_counter()
    matrix = hl.hessian(f, theta, progress=False) if task == "hesslab" else dense_fwd_over_rev(f, theta)
    sync(device)
    seconds = time.perf_counter() - start
    peak = peak_memory(device) - before
    hvp_after = repeated_hvp_seconds(f, theta)
    v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(7)).to(device)
    product = hl.hvp(f, theta, v)
    return {"seconds": seconds, "peak_bytes": peak, "memory_method": method, "hvp_seconds": [hvp_before, hvp_after],
            "trace": float(matrix.diagonal().double().sum()),
            "matvec_error": float((matrix @ v - product).norm() / product.norm())}


def repeated_hvp_seconds(f: Callable[[Tensor], Tensor], theta: Tensor, blocks: int = 5, per_block: int = 40) -> float:
    """Seconds of one hesslab HVP repeated at θ (median over blocks), timed in this process next to the build."""
    op = hl.HessianOperator(f, theta)
    v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(8)).to(theta.device)
    timed = race({"hvp": lambda: op @ v}, theta.device, blocks, repeats=per_block, warmup=5)
    return timed.median("hvp")


# ----------------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default=None, help="default: hesslab.device() (CUDA when available)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: width 128 only, no exact Hessian")
    parser.add_argument("--slow-baselines", action="store_true",
                        help="also build the exact Hessian with a 256-chunked vmap of torch.func HVPs (~1.5 min)")
    parser.add_argument("--worker", nargs=2, metavar=("TASK", "FILE"), help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(THREADS)
    device = torch.device(args.device) if args.device else hl.device()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker[0], args.worker[1], device)), flush=True)
        return
    print(header(device, PACKAGES))
    print(f"float32; MLP {INPUT_DIM}-W-W-{CLASSES} tanh, mean cross-entropy, {SAMPLES} samples; "
          f"medians of interleaved rounds\n")
    started = time.perf_counter()
    rows: list[Row] = []
    for width in WIDTHS[:1] if args.quick else WIDTHS:
        problem = make_problem(width, device)
        print(f"== width {width}: n = {problem.n:,} parameters, training loss {problem.loss:.3f}")
        print("- one HVP at a fixed point")
        hvp_row, hvp_seconds = bench_hvp(problem, device)
        print("- Hutchinson trace, 100 probes")
        trace_row, trace_estimate = bench_trace(problem, device)
        print("- top eigenvalue")
        eigen_row = bench_top_eigen(problem, device)
        print("- SLQ density, 100 Lanczos steps")
        density_row = bench_density(problem, device)
        rows += [hvp_row, trace_row, eigen_row, density_row]
        if not args.quick:
            print("- exact Hessian (fresh process)")
            if width == WIDTHS[0]:
                rows += bench_exact(problem, device, hvp_seconds, args.slow_baselines, trace_estimate)
            else:
                rows.append(bench_refusal(problem, device))
        print()
    print("\n".join(table(HEADER, [row.cells() for row in rows])))
    met = [row.met for row in rows if row.met is not None]
    print(f"\ntargets met: {sum(met)}/{len(met)}; total time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
