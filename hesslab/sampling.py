"""Random probe vectors, drawn on a ``torch.Generator`` so that the same generator gives the same answer.

* Rademacher vectors (entries ±1 with probability ½): Hutchinson's probes, the least-variance choice for trace
  estimation (Hutchinson 1989).
* Gaussian vectors (entries N(0, 1)): Lanczos starts and restarts, nonzero along every fixed direction with
  probability 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_generator


def rademacher(n: int, num: int, dtype: torch.dtype, device: torch.device,
               generator: torch.Generator | None = None) -> Tensor:
    """``num`` Rademacher probes as the columns of an (n, num) tensor: entries ±1 with probability ½ each.

    The probes of Hutchinson's estimator (the least-variance choice: Var(zᵀAz) = 2 Σ_{i≠j} A_ij²). Not a good
    start for Lanczos: a ±1 vector can be exactly orthogonal to a structured eigenvector (1 ⟂ (1, −1)); use
    ``gaussian`` there. Drawn on the generator's device (so the same generator gives the same probes) and moved
    to ``device``.

    Args:
        n: the length of each probe.
        num: the number of probes (columns).
        dtype: the probes' floating dtype.
        device: where the probes are returned.
        generator: the source of randomness (default: torch's global generator on ``device``).

    Returns:
        An (n, num) tensor of ±1 entries.

    Example:
        >>> import torch
        >>> from hesslab.sampling import rademacher
        >>> Z = rademacher(4, 3, torch.float64, torch.device("cpu"), torch.Generator().manual_seed(0))
        >>> Z.shape, bool((Z.abs() == 1).all())
        (torch.Size([4, 3]), True)
    """
    check_generator("generator", generator)
    source = generator.device if generator is not None else device
    bits = torch.randint(0, 2, (n, num), generator=generator, device=source, dtype=dtype)
    return bits.mul_(2).sub_(1).to(device)


def gaussian(n: int, num: int, dtype: torch.dtype, device: torch.device,
             generator: torch.Generator | None = None) -> Tensor:
    """``num`` standard normal vectors as the columns of an (n, num) tensor (entries N(0, 1), independent).

    Lanczos starts and restarts: a Gaussian vector has a nonzero component along every fixed direction with
    probability 1, whatever the structure of A's eigenvectors. Drawn on the generator's device, moved to ``device``.

    Args:
        n: the length of each vector.
        num: the number of vectors (columns).
        dtype: their floating dtype.
        device: where they are returned.
        generator: the source of randomness (default: torch's global generator on ``device``).

    Returns:
        An (n, num) tensor of independent N(0, 1) entries.

    Example:
        >>> import torch
        >>> from hesslab.sampling import gaussian
        >>> first = gaussian(3, 2, torch.float64, torch.device("cpu"), torch.Generator().manual_seed(0))
        >>> again = gaussian(3, 2, torch.float64, torch.device("cpu"), torch.Generator().manual_seed(0))
        >>> first.shape, bool(torch.equal(first, again))  # same generator state, same vectors
        (torch.Size([3, 2]), True)
    """
    check_generator("generator", generator)
    source = generator.device if generator is not None else device
    return torch.randn((n, num), generator=generator, device=source, dtype=dtype).to(device)
