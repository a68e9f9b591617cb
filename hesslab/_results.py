"""The one shape of an iterative method's history (private; DESIGN.md, "Results").

Every iterative result in hesslab has ``converged`` (bool), ``reason`` (str, why it stopped), ``iterations`` (int)
and ``history``: a dict of read-only float numpy arrays of one common length, **iterations + 1** — entry k is the
state after k iterations, entry 0 the start. Every history has at least

- ``"error"``: the method's own convergence measure (documented by each result class), and
- ``"seconds"``: wall-clock seconds since the start, at each entry (0 or about 0 at entry 0),

and ``"cost"`` or ``"matvecs"`` (cumulative) where the method counts its work. ``plot.plot_convergence`` draws any
column of any such history against any other.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

REQUIRED = ("error", "seconds")


def history(columns: Mapping[str, object], iterations: int | None = None) -> dict[str, np.ndarray]:
    """A read-only history from ``columns`` (name -> sequence of numbers, one per entry).

    Args:
        columns: at least ``"error"`` and ``"seconds"``; each a sequence of real numbers, all of one length.
        iterations: when given, the length every column must have is ``iterations + 1``.

    Returns:
        A dict name -> read-only float64 array (n,), ready for ``plt.plot`` (a plain dict, so results pickle).

    Raises:
        ValueError: (naming the columns) when a required column is missing or the lengths differ — a bug in the
            solver that built it, never the user's.

    Example:
        >>> h = history({"error": [1.0, 0.5, 0.25], "seconds": [0.0, 0.1, 0.2]}, iterations=2)
        >>> h["error"].tolist(), h["error"].dtype, h["error"].flags.writeable
        ([1.0, 0.5, 0.25], dtype('float64'), False)
    """
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        raise ValueError(f"a history needs the columns {REQUIRED}, got {tuple(columns)} (missing {missing}).")
    arrays = {}
    for name, values in columns.items():
        array = np.array(values, dtype=float).reshape(-1)  # a copy: the caller's lists stay theirs
        array.flags.writeable = False
        arrays[name] = array
    lengths = {name: len(array) for name, array in arrays.items()}
    expected = lengths["error"] if iterations is None else iterations + 1
    if any(length != expected for length in lengths.values()):
        raise ValueError(f"every history column must have length {expected} (iterations + 1), got {lengths}.")
    return arrays
