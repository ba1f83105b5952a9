"""Compiled kernels of the live pipeline (numba, through ``ecg._jit``).

Design notes
------------
- The activity blocks (is any lead carrying signal?) need each lead's lowest and
  highest finite sample and its count of finite samples per block of the stream. One
  pass over the chunk's samples does it; numpy took a dozen array calls per step
  (cuts, ``reduceat`` for minimum, maximum and count, their merge with the partial
  block), a tenth of a live worker's CPU at 200 streams. Minimum and maximum are exact,
  so the blocks are the ones numpy gave.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ecg._jit import jit

__all__ = ["activity_blocks"]


@jit
def activity_blocks(
    mv: NDArray[np.float64],
    start: int,
    block: int,
    flat_ptp_mv: float,
    low: NDArray[np.float64],
    high: NDArray[np.float64],
    valid: NDArray[np.int64],
    filled: int,
    last_active_end: int,
) -> tuple[int, int]:
    """Fold samples ``mv`` (n, leads), the stream's ``[start, start + n)``, into blocks of
    ``block`` samples.

    ``low``, ``high`` and ``valid`` (per lead: lowest and highest finite sample, count of
    finite samples) hold the partial block of ``filled`` samples and are updated in
    place. A block that completes is active when a lead has at least half its samples
    finite and a peak-to-peak of ``flat_ptp_mv`` or more; returns the new ``filled`` and
    the end (stream sample) of the last active block, ``last_active_end`` if none.
    """
    n, n_leads = mv.shape
    for i in range(n):
        for lead in range(n_leads):
            x = mv[i, lead]
            if np.isfinite(x):
                if x < low[lead]:
                    low[lead] = x
                if x > high[lead]:
                    high[lead] = x
                valid[lead] += 1
        filled += 1
        if filled == block:
            for lead in range(n_leads):
                if valid[lead] * 2 >= block and high[lead] - low[lead] >= flat_ptp_mv:
                    last_active_end = start + i + 1
                    break
            low[:] = np.inf
            high[:] = -np.inf
            valid[:] = 0
            filled = 0
    return filled, last_active_end
