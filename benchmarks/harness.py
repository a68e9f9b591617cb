"""The one timing and table harness of the benchmarks in this folder.

Every script times its competitors the same way: a warm-up, then ``rounds`` interleaved rounds in which every
competitor runs once (``repeats`` calls back to back), the starting competitor rotating every round so that a drift
of the machine's speed hits all of them alike. A time is the median over the rounds; a ratio is the ratio of two
medians, reported with the interquartile range of the per-round ratios (the two ran back to back in each round). The
baseline is always timed in the same run. On CUDA every timing is bracketed by ``torch.cuda.synchronize()``.

    from harness import header, race, ratio_text, table
    print(header(device, ("torch", "hesslab")))
    timed = race({"baseline": f, "hesslab": g}, device, rounds=11)
    print(ratio_text(timed.ratio("hesslab", "baseline"), "baseline"))
    print("\n".join(table(["workload", "time"], [["hesslab", f"{timed.median('hesslab'):.3f} s"]])))
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from machine import describe  # benchmarks/machine.py: this script's folder is on sys.path


def header(device: torch.device, packages: Sequence[str]) -> str:
    """The machine, the versions of ``packages`` and the date: the lines every benchmark prints first."""
    return describe(device, tuple(packages))


def sync(device: torch.device | None) -> None:
    """Wait for the device's queued work (CUDA), so that a clock reading covers it."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(call: Callable[[], object], device: torch.device | None = None) -> tuple[float, object]:
    """Seconds of one call (synchronised on CUDA), and what the call returned."""
    sync(device)
    start = time.perf_counter()
    output = call()
    sync(device)
    return time.perf_counter() - start, output


@dataclass
class Race:
    """Seconds per call of each competitor, one entry per round, and what each round's last call returned."""

    times: dict[str, list[float]]
    results: dict[str, list]

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])

    def ratio(self, name: str, baseline: str) -> tuple[float, float, float]:
        """median(name) / median(baseline), and the quartiles of the per-round ratios time(name) / time(baseline):
        how much the comparison moved from round to round."""
        ratios = [a / b for a, b in zip(self.times[name], self.times[baseline])]
        q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
        return self.median(name) / self.median(baseline), q1, q3

    def fastest_ratio(self, name: str, baseline: str) -> float:
        """min(name) / min(baseline): on a loaded machine other processes only ever add time, so the fastest round of
        each is the closest to its own cost (a check beside the ratio of the medians)."""
        return min(self.times[name]) / min(self.times[baseline])

    def spread(self, name: str, baseline: str) -> tuple[float, float]:
        """The fastest and the slowest round of ``name``, each over the baseline's median."""
        return min(self.times[name]) / self.median(baseline), max(self.times[name]) / self.median(baseline)


def race(competitors: dict[str, Callable[[], object]], device: torch.device | None = None, rounds: int = 11,
         repeats: int = 1, warmup: int = 1) -> Race:
    """Time the competitors interleaved: ``warmup`` untimed calls of each, then ``rounds`` rounds, each running every
    competitor once (``repeats`` calls back to back, the time per call recorded), starting from a different one each
    round. Cost: (warmup + rounds · repeats) calls of every competitor."""
    if rounds < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"rounds and repeats must be >= 1 and warmup >= 0, got {rounds}, {repeats}, {warmup}.")
    for call in competitors.values():
        for _ in range(warmup):
            call()
    sync(device)
    names = list(competitors)
    times: dict[str, list[float]] = {name: [] for name in names}
    results: dict[str, list] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            sync(device)
            start = time.perf_counter()
            for _ in range(repeats):
                output = competitors[name]()
            sync(device)
            times[name].append((time.perf_counter() - start) / repeats)
            results[name].append(output)
    return Race(times, results)


def ratio_text(ratio: tuple[float, float, float], unit: str) -> str:
    """``1.23x unit [1.20-1.27]``: the ratio of the medians, and the interquartile range of the per-round ratios."""
    median, q1, q3 = ratio
    return f"{median:.2f}x {unit} [{q1:.2f}-{q3:.2f}]"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table, columns padded to their widest cell, one string per line (header, rule, rows)."""
    cells = [list(map(str, header))] + [list(map(str, row)) for row in rows]
    if any(len(row) != len(header) for row in cells):
        raise ValueError(f"every row must have {len(header)} cells, like the header {list(header)}.")
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row):
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |"

    return [line(cells[0]), "|" + "|".join("-" * (width + 2) for width in widths) + "|"] + [line(r) for r in cells[1:]]
