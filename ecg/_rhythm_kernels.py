"""Compiled kernels of the atrial measures (numba, through :func:`ecg._jit.jit`).

Design notes
------------
- The streaming state keeps each beat's QRS shape, atrial segment and segment energy
  in ring buffers (rows addressed modulo the buffer's length) and, for each beat, its
  correlations with the ``width - 1`` beats before it (a band: ``band[p, d]`` is the
  dot product of the beat at row ``p`` with the beat ``d`` beats earlier). A window of
  at most ``width`` beats finds every pair it needs in the band, so each pair is
  computed once, when the later beat arrives, instead of once per window.
- :func:`correlate_previous` sums each dot product in four interleaved partial sums,
  always in the same order. It is not the
  BLAS matrix product the window used to compute (whose summation order depends on
  the library's kernel and thread count): values agree within a few ulp; the same
  beats give the same values however the stream is cut.
- :func:`dominant_rows` takes the median of each row of the window's correlation
  matrix as ``numpy.median`` does (the middle value, or the mean of the two middle
  ones; NaN if the row holds one) and the first row of the largest median as
  ``numpy.argmax`` does (a NaN median wins at once).
- :func:`irregularity` is the RR irregularity of a window, the medians taken as
  ``numpy.median`` takes them (so bit for bit): two numpy medians cost 30 us of
  call overhead per window, more than the rest of the measure.
- :func:`window_sum` adds the chosen segments in window order, element by element,
  starting from the first: the operations of ``numpy.add.reduce`` along the beat axis
  of the stacked segments, so the window's average is bit for bit the old one.
- Kernels call only kernels of this module (numba's cache is per file, see
  :mod:`ecg._jit`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ecg._jit import jit

__all__ = ["correlate_previous", "dominant_rows", "irregularity", "window_sum"]


@jit
def correlate_previous(
    shapes: NDArray[np.float64], row: int, n_previous: int, band: NDArray[np.float64]
) -> None:
    """``band[row, d]`` = shape at ``row`` dot shape ``d`` rows before it (modulo the
    buffer's length), for ``d`` in ``0 .. n_previous``."""
    n_rows, size = shapes.shape
    whole = size - size % 4
    for d in range(n_previous + 1):
        other = (row - d) % n_rows
        # Four partial sums (samples j, j + 1, j + 2, j + 3): four chains of additions
        # the processor runs side by side instead of one that waits on each result.
        a0 = a1 = a2 = a3 = 0.0
        for j in range(0, whole, 4):
            a0 += shapes[other, j] * shapes[row, j]
            a1 += shapes[other, j + 1] * shapes[row, j + 1]
            a2 += shapes[other, j + 2] * shapes[row, j + 2]
            a3 += shapes[other, j + 3] * shapes[row, j + 3]
        acc = (a0 + a1) + (a2 + a3)
        for j in range(whole, size):
            acc += shapes[other, j] * shapes[row, j]
        band[row, d] = acc


@jit
def dominant_rows(
    band: NDArray[np.float64], rows: NDArray[np.int64], threshold: float
) -> NDArray[np.bool_]:
    """Which beats of a window (buffer ``rows``, in beat order) correlate at
    ``threshold`` or more with the window's medoid (largest median correlation)."""
    n = rows.shape[0]
    medoid = 0
    best = -np.inf
    line = np.empty(n)
    for i in range(n):
        _correlations(band, rows, i, line)
        if np.isnan(line).any():
            medoid = i
            break
        median = _sorted_median(line)
        if i == 0 or median > best:
            best = median
            medoid = i
    _correlations(band, rows, medoid, line)
    return line >= threshold


@jit
def _correlations(
    band: NDArray[np.float64], rows: NDArray[np.int64], i: int, line: NDArray[np.float64]
) -> None:
    """Row ``i`` of the window's correlation matrix, from the band."""
    for j in range(rows.shape[0]):
        line[j] = band[rows[i], i - j] if j <= i else band[rows[j], j - i]


@jit
def _sorted_median(values: NDArray[np.float64]) -> float:
    """The median of finite ``values`` as ``numpy.median`` gives it (the middle value,
    or the mean of the two middle ones); reorders them in place (a selection, as
    ``numpy.partition`` does: only the middle of the order is needed)."""
    n = values.shape[0]
    half = n // 2
    lo, hi = 0, n - 1
    while lo < hi:  # Hoare's selection of the value of rank ``half``
        pivot = values[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if half <= j:
            hi = j
        elif half >= i:
            lo = i
        else:
            break
    upper = values[half]
    if n % 2:
        return float(upper)
    lower = values[0]  # the largest value of rank below ``half``
    for k in range(1, half):
        lower = max(lower, values[k])
    return float((lower + upper) / 2.0)


@jit
def irregularity(rr: NDArray[np.float64]) -> float:
    """Median absolute successive difference of ``rr`` over its median (4 or more
    finite values), as ``np.median(np.abs(np.diff(rr))) / np.median(rr)``."""
    n = rr.shape[0]
    steps = np.empty(n - 1)
    for k in range(n - 1):
        steps[k] = abs(rr[k + 1] - rr[k])
    return _sorted_median(steps) / _sorted_median(rr.copy())


@jit
def window_sum(
    segments: NDArray[np.float64], rows: NDArray[np.int64], out: NDArray[np.float64]
) -> None:
    """``out`` = the sum of ``segments[rows]`` along the first axis, in ``rows`` order."""
    n_rows = segments.shape[0]
    size = out.size
    flat = segments.reshape(n_rows, size)
    total = out.reshape(size)
    first = rows[0]
    for j in range(size):
        total[j] = flat[first, j]
    for k in range(1, rows.shape[0]):
        r = rows[k]
        for j in range(size):
            total[j] += flat[r, j]
