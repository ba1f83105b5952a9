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
- :func:`spike_score` is the pacing-spike measure of :func:`ecg.rhythm.pacing_spikes`
  in one pass: each lead's threshold (the percentile of its absolute sample-to-sample
  changes, interpolated as ``numpy.percentile``'s default does), then each sample's
  reversal over it in the leads, and the ``m``-th largest of those.
- :func:`detrend_segment` removes a beat's atrial segment's mean and linear trend and
  sums its energy per lead with the operations, in the order, of the numpy expressions
  it replaced: along the sample axis of a C-ordered ``(samples, leads)`` array of two
  or more leads numpy sums sample after sample, so the segments and energies are bit
  for bit numpy's (seven array calls per beat and their temporaries were half of
  adding it). A single lead's column is contiguous and numpy sums it pairwise: the
  caller keeps numpy there. :func:`window_coherence` is the window's coherence per
  lead on the same terms (the window's sum, then its mean's energy over the mean
  energy, eight array calls a window before).
- Kernels call only kernels of this module (numba's cache is per file, see
  :mod:`ecg._jit`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ecg._jit import jit

__all__ = [
    "correlate_previous",
    "detrend_segment",
    "dominant_rows",
    "irregularity",
    "spike_score",
    "window_coherence",
    "window_sum",
]


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
def detrend_segment(
    segment: NDArray[np.float64],
    trend: NDArray[np.float64],
    trend_norm: float,
    energy: NDArray[np.float64],
) -> None:
    """In place, per lead (column) of ``segment`` (samples, leads): ``segment -=
    segment.sum(0) / n``, then ``segment -= (segment * trend).sum(0) / trend_norm *
    trend``; ``energy`` = ``(segment * segment).sum(0)``. ``trend`` is (samples, 1).
    Bit for bit numpy's for two or more leads only (see the module's notes)."""
    n, n_leads = segment.shape
    for lead in range(n_leads):
        total = 0.0
        for i in range(n):
            total += segment[i, lead]
        mean = total / n
        for i in range(n):
            segment[i, lead] -= mean
        dot = 0.0
        for i in range(n):
            dot += segment[i, lead] * trend[i, 0]
        slope = dot / trend_norm
        square = 0.0
        for i in range(n):
            segment[i, lead] -= slope * trend[i, 0]
            square += segment[i, lead] * segment[i, lead]
        energy[lead] = square


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
def _select(values: NDArray[np.float64], rank: int) -> float:
    """The value of ``rank`` (0-based) in the order of ``values``, which are reordered
    so that none before it is larger and none after it smaller (Hoare's selection)."""
    lo, hi = 0, values.shape[0] - 1
    while lo < hi:
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
        if rank <= j:
            hi = j
        elif rank >= i:
            lo = i
        else:
            break
    return float(values[rank])


@jit
def _sorted_median(values: NDArray[np.float64]) -> float:
    """The median of finite ``values`` as ``numpy.median`` gives it (the middle value,
    or the mean of the two middle ones); reorders them in place (a selection, as
    ``numpy.partition`` does: only the middle of the order is needed)."""
    n = values.shape[0]
    half = n // 2
    upper = _select(values, half)
    if n % 2:
        return float(upper)
    lower = values[0]  # the largest value of rank below ``half``
    for k in range(1, half):
        lower = max(lower, values[k])
    return float((lower + upper) / 2.0)


@jit
def _percentile(values: NDArray[np.float64], q: float) -> float:
    """``numpy.percentile(values, q)`` (linear interpolation) of 1 or more values;
    reorders them."""
    n = values.shape[0]
    index = q / 100.0 * (n - 1)
    below = int(np.floor(index))
    a = _select(values, below)
    if below + 1 >= n:
        return a
    b = values[below + 1]
    for k in range(below + 2, n):
        b = min(b, values[k])
    g = index - below
    if g >= 0.5:
        return float(b - (b - a) * (1.0 - g))
    return float(a + (b - a) * g)


@jit
def spike_score(x: NDArray[np.float64], q: float, min_mv: float, m: int) -> NDArray[np.float64]:
    """Per sample of ``x`` (n_samples, n_leads), the ``m``-th largest (1 <= m <=
    n_leads) over the leads of its one-sample reversal (the smaller of its steps from
    both neighbours, when both go the same way; else 0, and 0 next to a NaN) over the
    lead's threshold: the ``q``-th percentile of the lead's finite absolute steps, at
    least ``min_mv``. 0 at both ends."""
    n, n_leads = x.shape
    score = np.zeros(n)
    if n < 3:
        return score
    threshold = np.empty(n_leads)
    steps = np.empty(n - 1)
    for lead in range(n_leads):
        count = 0
        for k in range(n - 1):
            step = abs(x[k + 1, lead] - x[k, lead])
            if np.isfinite(step):
                steps[count] = step
                count += 1
        level = _percentile(steps[:count], q) if count else min_mv
        threshold[lead] = max(level, min_mv)
    top = np.empty(m)
    for k in range(1, n - 1):
        top[:] = 0.0
        for lead in range(n_leads):
            up = x[k, lead] - x[k - 1, lead]
            down = x[k, lead] - x[k + 1, lead]
            if not up * down > 0:  # opposite ways, flat, or NaN
                continue
            value = min(abs(up), abs(down)) / threshold[lead]
            # Keep the m largest, in decreasing order (m is a few leads).
            j = m - 1
            if value <= top[j]:
                continue
            while j > 0 and top[j - 1] < value:
                top[j] = top[j - 1]
                j -= 1
            top[j] = value
        score[k] = top[m - 1]
    return score


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


@jit
def window_coherence(
    segments: NDArray[np.float64],
    energies: NDArray[np.float64],
    rows: NDArray[np.int64],
    per_lead: NDArray[np.float64],
) -> None:
    """Per lead, the energy of the mean of ``segments[rows]`` (rows, samples, leads) over
    their mean energy (``energies[rows]``), into ``per_lead`` where that is above 1e-12
    (left as it is elsewhere): ``ecg.rhythm._features``' numpy form bit for bit for two
    or more leads (see the module's notes)."""
    n_samples, n_leads = segments.shape[1], segments.shape[2]
    total = np.empty((n_samples, n_leads))
    window_sum(segments, rows, total)
    k = rows.shape[0]
    for lead in range(n_leads):
        energy = energies[rows[0], lead]
        for m in range(1, k):
            energy += energies[rows[m], lead]
        energy = energy / k
        mean = total[0, lead] / k
        power = mean * mean
        for i in range(1, n_samples):
            mean = total[i, lead] / k
            power += mean * mean
        if energy > 1e-12:
            per_lead[lead] = power / energy
