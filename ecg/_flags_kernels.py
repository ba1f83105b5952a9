"""Compiled kernels of the quality and rhythm measures (numba, through ``ecg._jit``).

Design notes
------------
- Each kernel computes what a numpy expression of ``ecg.flags`` computed, with the
  same floating-point operations in the same order, so the flags and their measures
  are bit for bit those of the numpy form (``tests/ecg/test_flags.py`` compares them).
  They exist for speed only (issue 2: 10 M samples/s per lead for the whole batch path;
  issue 4: 1000 live steps per second).
- One pass where numpy made several: the noise residual (moving average, difference,
  absolute value) and its count above the threshold per window. Where numpy's own
  loops are vectorised (the maximum and minimum of each window) numpy keeps them: a
  scalar compiled loop is slower.
- Finite input only where a comment says so; the callers keep numpy for the rest.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ecg._jit import jit

__all__ = [
    "extreme_counts",
    "insertion_median",
    "irregularity",
    "noise_residual",
    "running_median",
]


@jit
def extreme_counts(
    x: NDArray[np.float64],
    window: int,
    high: NDArray[np.float64],
    low: NDArray[np.float64],
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Per row of ``x`` (n_rows, n_samples): how many samples equal its highest and its
    lowest value, given the extremes ``high``, ``low`` (n_rows, n_windows) of each
    window of ``window`` samples (NaN-free ``x``).

    Only the windows whose own extreme is the row's are looked at: most rows reach
    their extreme in one window or two.
    """
    n_rows, n_samples = x.shape
    at_top = np.zeros(n_rows, dtype=np.int64)
    at_bottom = np.zeros(n_rows, dtype=np.int64)
    for row in range(n_rows):
        top = high[row].max()
        bottom = low[row].min()
        for index in range(high.shape[1]):
            begin = index * window
            end = min(n_samples, begin + window)
            if high[row, index] == top:
                for i in range(begin, end):
                    at_top[row] += x[row, i] == top
            if low[row, index] == bottom:
                for i in range(begin, end):
                    at_bottom[row] += x[row, i] == bottom
    return at_top, at_bottom


@jit
def noise_residual(
    x: NDArray[np.float32],
    width: int,
    threshold: float,
    window: int,
    residual: NDArray[np.float32],
    above: NDArray[np.int64],
) -> None:
    """``|x - uniform_filter1d(x, width, mode="nearest")|`` per row, and its count
    above ``threshold`` per window of ``window`` samples.

    ``x`` (n_rows, n_samples) float32, NaN-free; ``residual`` receives the absolute
    residual (float32), ``above`` (n_rows, n_windows) the counts. The moving average is
    scipy.ndimage's: a running sum in float64 over the input extended by its edge
    values, divided by ``width`` at each sample, rounded to float32. The running sum is
    a chain of dependent additions: two rows go through the loop together, so that
    the processor overlaps their chains.
    """
    n_rows, n_samples = x.shape
    before = width // 2
    after = width - before - 1
    last = n_samples - 1
    limit = np.float32(threshold)
    for first in range(0, n_rows, 2):
        a = first
        b = min(first + 1, n_rows - 1)  # the same row twice when n_rows is odd
        total_a = 0.0
        total_b = 0.0
        for k in range(-before, width - before):
            total_a += np.float64(x[a, min(max(k, 0), last)])
            total_b += np.float64(x[b, min(max(k, 0), last)])
        for index in range(above.shape[1]):
            begin = index * window
            end = min(n_samples, begin + window)
            count_a = 0
            count_b = 0
            for i in range(begin, end):
                if i > 0:
                    enter = min(i + after, last)
                    leave = max(i - 1 - before, 0)
                    total_a += np.float64(x[a, enter]) - np.float64(x[a, leave])
                    total_b += np.float64(x[b, enter]) - np.float64(x[b, leave])
                value_a = abs(x[a, i] - np.float32(total_a / width))
                value_b = abs(x[b, i] - np.float32(total_b / width))
                residual[a, i] = value_a
                residual[b, i] = value_b
                count_a += value_a > limit
                count_b += value_b > limit
            above[a, index] = count_a
            above[b, index] = count_b


@jit
def insertion_median(values: NDArray[np.float64], buffer: NDArray[np.float64]) -> float:
    """Median of a handful of NaN-free ``values``, sorted into ``buffer`` (at least as
    long): the middle value, or ``(a + b) / 2`` of the two middle ones, as ``np.median``
    computes it."""
    size = values.size
    for k in range(size):
        value = values[k]
        j = k
        while j > 0 and buffer[j - 1] > value:
            buffer[j] = buffer[j - 1]
            j -= 1
        buffer[j] = value
    return _middle(buffer[:size])


@jit
def running_median(values: NDArray[np.float64], width: int) -> NDArray[np.float64]:
    """Centred running median over ``width`` values, the window shrinking at both ends.

    NaN-free ``values``, ``width >= 1``; medians as :func:`insertion_median`.
    """
    n = values.size
    half = width // 2
    result = np.empty(n)
    buffer = np.empty(width)
    for index in range(n):
        begin = max(0, index - half)
        end = min(n, index + width - half)
        result[index] = insertion_median(values[begin:end], buffer)
    return result


@jit
def _replace_sorted(ordered: NDArray[np.float64], old: float, new: float) -> None:
    """Replace one occurrence of ``old`` by ``new`` in the sorted ``ordered``, in place."""
    size = ordered.size
    k = 0
    while ordered[k] != old:
        k += 1
    # Shift the neighbours over the hole until ``new`` fits.
    while k + 1 < size and ordered[k + 1] < new:
        ordered[k] = ordered[k + 1]
        k += 1
    while k > 0 and ordered[k - 1] > new:
        ordered[k] = ordered[k - 1]
        k -= 1
    ordered[k] = new


@jit
def _middle(ordered: NDArray[np.float64]) -> float:
    """Median of sorted values: the middle one, or ``(a + b) / 2`` of the two middle."""
    middle = ordered.size // 2
    if ordered.size % 2:
        return float(ordered[middle])
    return float((ordered[middle - 1] + ordered[middle]) / 2)


@jit
def irregularity(
    rr: NDArray[np.float64], window: int
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Per sliding window of ``window`` RR intervals: the median absolute successive
    difference over the median interval, and the number of turning points.

    NaN-free ``rr`` of at least ``window`` values. The two windows are kept sorted as
    they slide (one value out, one in), so a step costs a few comparisons.
    """
    n_windows = rr.size - window + 1
    ratio = np.empty(n_windows)
    turning = np.empty(n_windows, dtype=np.int64)
    differences = np.abs(rr[1:] - rr[:-1])
    intervals = np.sort(rr[:window])
    steps = np.sort(differences[: window - 1])
    for start in range(n_windows):
        if start > 0:
            _replace_sorted(intervals, rr[start - 1], rr[start + window - 1])
            _replace_sorted(steps, differences[start - 1], differences[start + window - 2])
        ratio[start] = _middle(steps) / _middle(intervals)
        count = 0
        for k in range(start + 1, start + window - 1):
            before, middle, after = rr[k - 1], rr[k], rr[k + 1]
            count += (middle > before and middle > after) or (middle < before and middle < after)
        turning[start] = count
    return ratio, turning
