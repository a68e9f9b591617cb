"""hesslab.distributed: 2 ranks over gloo (spawned processes, a rendezvous file), each with a shard of the data,
against one process with all of it (float64): the same products, traces, eigenvalues and SLQ moments to 1e-12, the
same answer on both ranks to the last bit, and clear errors instead of hangs.

Each test spawns the two ranks once and runs several cases in them (starting a rank costs a few seconds); a rank
reports each case's numbers or error through a queue, and the test fails instead of hanging when a rank does not
finish within ``TIMEOUT``.
"""

from __future__ import annotations

import datetime
import os
import tempfile
import time
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F

import hesslab as hl
from hesslab.distributed import DistributedOperator

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with the gloo backend is not available on this platform")

TIMEOUT = 120  # seconds for a whole spawn (both ranks, every case)
COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=20)  # what a rank waits for a peer that is gone
N, D, C = 40, 5, 3


def make_problem():
    """The same model and data in every process (seeded): an MLP 5-6-3 with tanh, 40 samples, float64.

    The parameters are drawn from the generator, not by nn.Linear's init, whose draws depend on the default dtype
    (which the test session and the spawned ranks may set differently).
    """
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(D, 6), nn.Tanh(), nn.Linear(6, C)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) / 2)
    X = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (N,), generator=g)
    return model, X, y


def measures(op, V):
    """Everything compared: a product, Hutchinson, the top eigenvalues, SLQ moments (all seeded identically)."""
    eigen = hl.top_eigen(op, 3, tol=1e-12, generator=torch.Generator().manual_seed(1))
    density = hl.spectral_density(op, 12, 3, generator=torch.Generator().manual_seed(2))
    trace = hl.hutchinson_trace(op, 30, generator=torch.Generator().manual_seed(3)).value
    moments = [density.moment(p) for p in (1, 2, 3)]
    return {"AV": op @ V, "trace": torch.tensor(trace, dtype=torch.float64), "eigenvalues": eigen.values,
            "moments": torch.tensor(moments, dtype=torch.float64)}


def shards(X, y, rank):
    """Case "even": 20 + 20; "uneven": 7 on rank 0, 33 in two batches on rank 1; "empty": everything on rank 0;
    "empty slice": the same, rank 1 holding the 0-sample slice X[N:] (a rank past the end of the data)."""
    return {"even": (X[:20], y[:20]) if rank == 0 else (X[20:], y[20:]),
            "uneven": (X[:7], y[:7]) if rank == 0 else [(X[7:20], y[7:20]), (X[20:], y[20:])],
            "empty": (X, y) if rank == 0 else None,
            "empty slice": (X, y) if rank == 0 else (X[N:], y[N:])}


def case_agreement(rank):
    model, X, y = make_problem()
    V = torch.randn(model_size(model), 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    results = {}
    for name, data in shards(X, y, rank).items():
        results[name] = measures(DistributedOperator.from_model(model, F.cross_entropy, data), V)
    wrapped = nn.parallel.DistributedDataParallel(model)
    results["ggn, DDP"] = {"AV": DistributedOperator.from_model(wrapped, F.cross_entropy, shards(X, y, rank)["even"],
                                                                kind="ggn") @ V}
    return results


def case_errors(rank):
    model, X, y = make_problem()
    data = shards(X, y, rank)["even"]
    errors = {}

    def caught(name, call):
        try:
            call()
            errors[name] = "no error"
        except (ValueError, RuntimeError) as error:
            errors[name] = f"{type(error).__name__}: {error}"

    other = make_problem()[0]
    if rank == 1:
        with torch.no_grad():
            other[0].bias.add_(1e-9)
    caught("parameters", lambda: DistributedOperator.from_model(other, F.cross_entropy, data))
    # rank 1's data is refused while its operator is built (a loss summed over the batch, over two batches): rank 0,
    # already in the constructor's collectives, must get an error at once, not wait for COLLECTIVE_TIMEOUT
    summed = (lambda z, t: F.cross_entropy(z, t, reduction="sum")) if rank == 1 else F.cross_entropy  # noqa: E731
    start = time.perf_counter()
    caught("failing build", lambda: DistributedOperator.from_model(model, summed, [data, data]))
    errors["failing build seconds"] = time.perf_counter() - start
    A = hl.as_operator(torch.eye(3, dtype=torch.float64))
    caught("refused argument", lambda: DistributedOperator(A, num_samples=-1 if rank == 1 else 5))
    op = DistributedOperator.from_model(model, F.cross_entropy, data)
    caught("vectors", lambda: hl.hutchinson_trace(op, 4, generator=torch.Generator().manual_seed(rank)))
    kinked = (lambda z, t: F.cross_entropy(z, t) + (z - z.detach()).norm()) if rank == 1 else F.cross_entropy  # noqa: E731
    bad = DistributedOperator.from_model(model, kinked, data)
    caught("failing rank", lambda: bad @ torch.ones(op.shape[0], dtype=torch.float64))
    caught("still usable", lambda: op @ torch.ones(op.shape[0], dtype=torch.float64))
    return errors


def case_dead_peer(rank):
    model, X, y = make_problem()
    op = DistributedOperator.from_model(model, F.cross_entropy, shards(X, y, rank)["even"])
    if rank == 1:
        os._exit(0)  # dies without a word
    try:
        op @ torch.ones(op.shape[0], dtype=torch.float64)
    except Exception as error:  # gloo's error type varies with the way the peer went
        return {"error": type(error).__name__}
    return {"error": "none"}


def model_size(model):
    return sum(p.numel() for p in model.parameters())


def as_numpy(results):
    """Tensors as numpy arrays (pickled by value: a torch tensor in a queue is shared memory, gone with its rank)."""
    if isinstance(results, dict):
        return {key: as_numpy(value) for key, value in results.items()}
    return results.numpy() if isinstance(results, torch.Tensor) else results


def _rank_main(case, rank, world, store, queue):
    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                                timeout=COLLECTIVE_TIMEOUT)
        queue.put((rank, "ok", as_numpy(globals()[case](rank))))
    except BaseException:
        queue.put((rank, "raised", traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_ranks(case: str, world: int = 2, expect: int | None = None) -> dict:
    """Run ``case(rank)`` on ``world`` spawned ranks; returns {rank: result}. Fails on a hang or a raised rank."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    store = tempfile.mktemp(prefix="hesslab_store_")
    ranks = [context.Process(target=_rank_main, args=(case, rank, world, store, queue)) for rank in range(world)]
    for process in ranks:
        process.start()
    results = {}
    try:
        for _ in range(world if expect is None else expect):
            rank, status, payload = queue.get(timeout=TIMEOUT)
            assert status == "ok", f"rank {rank} raised:\n{payload}"
            results[rank] = payload
    finally:
        for process in ranks:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        if os.path.exists(store):
            os.remove(store)
    return results


def reference():
    """One process, all the data: the same cases as batches over the shards."""
    model, X, y = make_problem()
    V = torch.randn(model_size(model), 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    zero, one = shards(X, y, 0), shards(X, y, 1)
    batches = {"even": [zero["even"], one["even"]], "uneven": [zero["uneven"], *one["uneven"]], "empty": (X, y),
               "empty slice": (X, y)}
    results = {name: measures(hl.HessianOperator.from_model(model, F.cross_entropy, data), V)
               for name, data in batches.items()}
    results["ggn, DDP"] = {"AV": hl.GGNOperator.from_model(model, F.cross_entropy, batches["even"]) @ V}
    return results


def relative(a, b):
    return float((a - b).norm() / b.norm())


def test_two_ranks_agree_with_one_process_and_with_each_other():
    ranks = run_ranks("case_agreement")
    expected = reference()
    for case, numbers in expected.items():
        for name, value in numbers.items():
            zero, one = torch.from_numpy(ranks[0][case][name]), torch.from_numpy(ranks[1][case][name])
            assert torch.equal(zero, one), f"{case}/{name}: the ranks differ"
            # float64 rounding of sums over 40 samples and two ranks: ~1e-15; 1e-12 leaves room for Lanczos
            assert relative(zero, value) <= 1e-12, f"{case}/{name}: {relative(zero, value):.1e} from one process"


def test_mismatched_parameters_different_probes_and_a_failing_rank_are_errors_on_every_rank():
    ranks = run_ranks("case_errors")
    for rank in (0, 1):
        errors = ranks[rank]
        assert "parameters differ between ranks" in errors["parameters"]
        assert "different vectors" in errors["vectors"] and "generator" in errors["vectors"]
        assert errors["still usable"] == "no error"
    assert "∇²f is not finite" in ranks[1]["failing rank"]
    assert "sums over the batch" in ranks[1]["failing build"]
    assert "1 other rank(s) failed to build" in ranks[0]["failing build"]
    assert "num_samples" in ranks[1]["refused argument"]
    assert "1 other rank(s) failed to build" in ranks[0]["refused argument"]
    assert ranks[0]["failing build seconds"] < COLLECTIVE_TIMEOUT.total_seconds() / 2, "rank 0 waited for the timeout"
    assert "1 other rank(s) failed" in ranks[0]["failing rank"]


def test_a_rank_that_dies_ends_the_other_with_an_error_not_a_hang():
    ranks = run_ranks("case_dead_peer", expect=1)  # rank 1 exits without reporting
    assert ranks[0]["error"] != "none"


def test_without_an_initialised_process_group_the_error_says_what_to_do():
    model, X, y = make_problem()
    with pytest.raises(ValueError, match="init_process_group"):
        DistributedOperator.from_model(model, F.cross_entropy, (X, y))
    with pytest.raises(ValueError, match="init_process_group"):
        DistributedOperator(hl.as_operator(torch.eye(2)), 1)


def test_the_example_runs_under_torchrun_and_matches_one_process():
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                             str(root / "examples" / "distributed_spectrum.py")], capture_output=True, text=True,
                            timeout=TIMEOUT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("rank ")]
    printed = {line.split("samples;", 1)[1] for line in lines if "samples;" in line}  # all but the shard sizes
    assert len(lines) == 3 and len(printed) == 1, f"the ranks printed different numbers: {lines}"
    (difference,) = re.findall(r"from one process: ([0-9.e+-]+)", result.stdout)
    assert float(difference) <= 1e-10


def test_the_vector_hash_tells_structured_vectors_apart_and_stays_exact_in_float32():
    from hesslab.distributed import _vector_hash

    g = torch.Generator().manual_seed(0)
    signs = [torch.randint(0, 2, (50,), generator=g).double() * 2 - 1 for _ in range(200)]  # ±1: equal low bits
    hashes = [_vector_hash(v, 2) for v in signs]
    assert len(set(hashes)) == len({tuple(v.tolist()) for v in signs})  # no collision among distinct vectors
    assert _vector_hash(signs[0].clone(), 2) == hashes[0]
    for world in (1, 2, 3, 16):
        h = _vector_hash(signs[1].float(), world)
        assert h == int(h) and 0 <= h < 2**24 // world
        assert float(torch.tensor(world * h, dtype=torch.float32)) == world * h  # the sum over ranks is exact
