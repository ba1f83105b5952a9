"""Compiled wave finders of the delineation (numba, through :func:`ecg._jit.jit`).

Design notes
------------
- Each kernel is the numpy expression it replaces in :mod:`ecg.delineate`, computed
  in a loop over the samples: a 10 s 12-lead record calls the wave finders a few
  hundred times on segments of 10-200 samples, where numpy's per-call overhead (a
  dozen temporary arrays per call) was most of the delineation's time.
- The same operations in the same order, so the same results bit for bit: the
  cumulative sums are sequential (as ``numpy.cumsum``), the chord between a segment's
  ends is ``numpy.linspace``'s (``start + i * step``, the last sample ``stop``), and an
  arg-max is the first of the largest (as ``numpy.argmax``; the candidates in
  :func:`extremum` in the order of the numpy form: the maxima, then the minima).
- :func:`median_rows` takes each column's median as ``numpy.median`` does (the middle
  value, or the mean of the two middle ones), without the stacked copy of the beats:
  each column is insertion-sorted from the order of the beats in the column before
  (nearly the same: a fast rhythm's 25 beats cost a few moves a column, not the 150 of
  a sort from scratch); a column that needs many moves goes through the selection of
  ``_rhythm_kernels._sorted_median``, copied here rather than imported (numba's cache
  is per file, see :mod:`ecg._jit`). Any of them gives the same middle values.
- :func:`row_medians` is ``numpy.median`` along the rows (the noise of each lead's
  10 s): radix selection on the doubles' bits finds the same middle values in two
  histogram passes, where introselect moves them around several times.
- :func:`mean` is ``numpy.mean`` of a contiguous segment: numpy's pairwise summation
  (eight partial sums per block of 128), so the baseline a T wave is measured from is
  the same number.
- :func:`p_correlation` sums its dot products sequentially where numpy calls BLAS
  (whose order depends on the library): within a few ulp of the numpy form.
- Kernels call only kernels of this module (numba's cache is per file, see
  :mod:`ecg._jit`).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from ecg._jit import jit

__all__ = [
    "abs_gradient_rows",
    "corner_after",
    "corner_before",
    "extremum",
    "knee",
    "mean",
    "median_rows",
    "p_correlation",
    "p_wave",
    "peak_between",
    "qrs_bounds",
    "row_medians",
    "second_difference_peak",
    "t_wave",
]

FloatArray = NDArray[np.float64]


@jit
def _chord(first: float, last: float, n: int, i: int) -> float:
    """Sample ``i`` of ``numpy.linspace(first, last, n)`` (n >= 2)."""
    if i == n - 1:
        return last
    div = n - 1
    delta = last - first
    step = delta / div
    if step == 0.0:
        return (i / div) * delta + first
    return i * step + first


@jit
def extremum(y: FloatArray, lo: int, hi: int, offset: float, sign: int) -> int:
    """Index (from ``lo``) of the interior local extremum of largest ``|y - offset|`` in
    ``y[lo:hi]`` (a maximum above ``offset`` for ``sign`` > 0, a minimum below it for
    ``sign`` < 0, either for 0); -1 when none."""
    hi = min(hi, y.size)
    n = hi - lo
    if n < 3:
        return -1
    best = -1
    best_abs = -1.0
    if sign >= 0:
        for k in range(1, n - 1):
            here = y[lo + k] - offset
            before = here - (y[lo + k - 1] - offset)
            after = (y[lo + k + 1] - offset) - here
            if before > 0 and after <= 0 and (sign == 0 or here > 0) and abs(here) > best_abs:
                best, best_abs = k, abs(here)
    if sign <= 0:
        for k in range(1, n - 1):
            here = y[lo + k] - offset
            before = here - (y[lo + k - 1] - offset)
            after = (y[lo + k + 1] - offset) - here
            if before < 0 and after >= 0 and (sign == 0 or here < 0) and abs(here) > best_abs:
                best, best_abs = k, abs(here)
    return best


@jit
def corner_after(y: FloatArray, lo: int, hi: int, w: int, sign: float) -> int:
    """``t`` in [lo, hi) maximising ``sign * Σ_{k=t-w}^{t} (y[k] - y[t])``; -1 if empty."""
    hi = min(hi, y.size)
    if hi <= lo:
        return -1
    base = max(0, lo - w)
    c = np.empty(hi - base + 1)
    c[0] = 0.0
    for k in range(base, hi):
        c[k - base + 1] = c[k - base] + y[k]
    best = -1
    best_value = -math.inf
    for t in range(lo, hi):
        start = max(t - w, 0)
        area = (c[t + 1 - base] - c[start - base]) - (t + 1 - start) * y[t]
        value = sign * area
        if best == -1 or value > best_value:
            best, best_value = t, value
    return best


@jit
def corner_before(y: FloatArray, lo: int, hi: int, w: int, sign: float) -> int:
    """``t`` in [lo, hi) maximising ``sign * Σ_{k=t}^{t+w} (y[k] - y[t])``; -1 if empty."""
    hi = min(hi, y.size)
    if hi <= lo:
        return -1
    top = min(y.size, hi + w)
    c = np.empty(top - lo + 1)
    c[0] = 0.0
    for k in range(lo, top):
        c[k - lo + 1] = c[k - lo] + y[k]
    best = -1
    best_value = -math.inf
    for t in range(lo, hi):
        stop = min(t + w + 1, y.size)
        area = (c[stop - lo] - c[t - lo]) - (stop - t) * y[t]
        value = sign * area
        if best == -1 or value > best_value:
            best, best_value = t, value
    return best


@jit
def knee(y: FloatArray, lo: int, hi: int, sign: float) -> int:
    """The sample of [lo, hi] farthest from the chord between its ends on the ``sign``
    side (``sign * (chord - y)`` largest); -1 when hi - lo < 2."""
    if hi - lo < 2:
        return -1
    n = hi - lo + 1
    best = -1
    best_value = -math.inf
    for i in range(n):
        value = sign * (_chord(y[lo], y[hi], n, i) - y[lo + i])
        if best == -1 or value > best_value:
            best, best_value = i, value
    return lo + best


@jit
def peak_between(y: FloatArray, on: int, off: int, r_fraction: float) -> int:
    """Highest point of ``y[on:off + 1]`` above the chord between its ends, or its
    deepest below it when the highest is under ``r_fraction`` of the larger."""
    n = off - on + 1
    up = down = 0
    top = bottom = 0.0
    for i in range(n):
        value = y[on + i] - _chord(y[on], y[off], n, i)
        if i == 0 or value > top:
            up, top = i, value
        if i == 0 or value < bottom:
            down, bottom = i, value
    if top >= r_fraction * max(top, -bottom):
        return on + up
    return on + down


@jit
def p_correlation(lp: FloatArray, start: int, p_ref: FloatArray) -> float:
    """Correlation of ``lp[start:start + p_ref.size]`` (less the chord between its
    ends) with ``p_ref``; NaN when either is flat (it matches no threshold)."""
    n = p_ref.size
    first, last = lp[start], lp[start + n - 1]
    dot = seg_sq = ref_sq = 0.0
    for i in range(n):
        value = lp[start + i] - _chord(first, last, n, i)
        dot += value * p_ref[i]
        seg_sq += value * value
        ref_sq += p_ref[i] * p_ref[i]
    denom = math.sqrt(seg_sq) * math.sqrt(ref_sq)
    return dot / denom if denom > 0 else math.nan


# Up to this many values a median sorts them (insertion sort), above it selects.
SMALL_SORT = 16


@jit
def _insertion_sort(values: NDArray[np.float64] | NDArray[np.uint64], m: int) -> None:
    """Sort ``values[:m]`` in place: fewer steps than anything else for a few values."""
    for i in range(1, m):
        value = values[i]
        j = i - 1
        while j >= 0 and values[j] > value:
            values[j + 1] = values[j]
            j -= 1
        values[j + 1] = value


@jit
def _select_median(values: FloatArray) -> float:
    """The median of finite ``values`` as ``numpy.median`` gives it (the middle value,
    or the mean of the two middle ones); reorders them in place (a few are sorted, more
    go through Hoare's selection, as ``numpy.partition`` does)."""
    n = values.shape[0]
    half = n // 2
    if n <= SMALL_SORT:
        _insertion_sort(values, n)
        if n % 2:
            return float(values[half])
        return float((values[half - 1] + values[half]) / 2.0)
    lo, hi = 0, n - 1
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
def median_rows(y: FloatArray, rows: NDArray[np.int64]) -> FloatArray:
    """``numpy.median(y[rows], axis=0)`` for finite ``y``: the median beat of the beats
    whose samples are the rows of ``rows`` (at least one).

    The columns are sorted one after the other starting from the previous column's order
    of the beats: neighbouring samples of the beats are in nearly the same order, so the
    insertion sort has little to move. A column that needs more than ``8 * n_beats``
    moves (noise, many beats) is selected instead, as before.
    """
    n_beats, span = rows.shape
    out = np.empty(span)
    values = np.empty(n_beats)
    scratch = np.empty(n_beats)
    order = np.arange(n_beats)
    half = n_beats // 2
    budget = n_beats * n_beats if n_beats <= SMALL_SORT else 8 * n_beats
    for c in range(span):
        for k in range(n_beats):
            values[k] = y[rows[order[k], c]]
        moves = 0
        done = True
        for i in range(1, n_beats):
            value = values[i]
            beat = order[i]
            j = i - 1
            while j >= 0 and values[j] > value:
                values[j + 1] = values[j]
                order[j + 1] = order[j]
                j -= 1
                moves += 1
            values[j + 1] = value
            order[j + 1] = beat
            if moves > budget:
                done = False
                break
        if done:
            if n_beats % 2:
                out[c] = values[half]
            else:
                out[c] = (values[half - 1] + values[half]) / 2.0
        else:
            scratch[:] = values
            out[c] = _select_median(scratch)
    return out


@jit
def _quiet_from(slope: FloatArray, start: int, count: int, step: int, thr: float, hold: int) -> int:
    """Steps from ``start`` (by ``step``, ``count`` samples) to the first run of ``hold``
    samples below ``thr`` (or a shorter one that reaches the last sample); -1 if none."""
    run_start = -1
    for k in range(count):
        if slope[start + k * step] < thr:
            if run_start < 0:
                run_start = k
            if k - run_start + 1 >= hold:
                return run_start
        else:
            run_start = -1
    return run_start


@jit
def qrs_bounds(
    slope: FloatArray,
    pk: int,
    lo: int,
    hi: int,
    w6: int,
    search: int,
    gap: int,
    hold: int,
    sig_fraction: float,
    on_fraction: float,
    off_fraction: float,
    floor: float,
) -> tuple[int, int]:
    """(onset, offset) of the QRS around ``pk`` from a slope signal, within [lo, hi):
    the significant slope (``sig_fraction`` of the largest within ``w6`` of the peak)
    connected to the peak by gaps of at most ``gap``, then outwards to ``hold`` samples
    under ``on_fraction`` (``off_fraction``) of the largest or ``floor``; -1 where not
    found."""
    if pk < 0 or not lo <= pk < hi:
        return -1, -1
    big = -math.inf
    for k in range(max(lo, pk - w6), min(hi, pk + w6 + 1)):
        if slope[k] > big or slope[k] != slope[k]:  # a NaN stays, as in numpy's max
            big = slope[k]
    if not big > 0:
        return -1, -1
    level = sig_fraction * big
    a = max(lo, pk - search)
    first = pk
    found = False
    for k in range(pk, a - 1, -1):
        if slope[k] >= level:
            if not found:
                first, found = k, True
            elif first - k <= gap:
                first = k
            else:
                break
    run = _quiet_from(slope, first, first - a + 1, -1, max(on_fraction * big, floor), hold)
    on = first - run if run >= 0 else -1
    b = min(hi, pk + search + 1)
    last = pk
    found = False
    for k in range(pk, b):
        if slope[k] >= level:
            if not found:
                last, found = k, True
            elif k - last <= gap:
                last = k
            else:
                break
    run = _quiet_from(slope, last, b - last, 1, max(off_fraction * big, floor), hold)
    off = last + run if run >= 0 else -1
    return on, off


@jit
def p_wave(
    sm: FloatArray,
    qrs_on: int,
    lo: int,
    search_n: int,
    min_n: int,
    guard: int,
    near: int,
    radius: int,
    sign: int,
    w: int,
    tail: int,
) -> tuple[int, int, int, float]:
    """(onset, peak, offset, signed amplitude) of the P wave in the ``search_n`` samples
    before ``qrs_on`` (not before ``lo``; at least ``min_n``): the window less the line
    from its start to ``guard`` samples before the QRS, its largest extremum (of
    ``sign``, within ``radius`` of ``near`` unless that is -1) at least ``guard``
    before the QRS, and Zhang's corners either side (``w``; the offset ``tail`` before
    the QRS at the latest); -1 where not found."""
    start = max(lo, qrs_on - search_n)
    size = qrs_on - start + 1
    if size - 1 < min_n or size < 2:
        return -1, -1, -1, 0.0
    k = max(1, size - 1 - guard)
    first = sm[start]
    rise = sm[start + k] - first
    y = np.empty(size)
    for i in range(size):
        y[i] = sm[start + i] - (first + rise * i / k)
    n_search = min(size, max(3, size - guard))
    if near != -1:
        a = max(0, near - start - radius)
        b = min(n_search, near - start + radius + 1)
        if b - a < 3:
            return -1, -1, -1, 0.0
        pp = extremum(y, a, b, 0.0, sign)
        if pp != -1:
            pp += a
    else:
        pp = extremum(y, 0, n_search, 0.0, sign)
    if pp == -1:
        return -1, -1, -1, 0.0
    amp = y[pp]
    s = 1.0 if amp > 0 else -1.0
    p_on = corner_before(y, 0, pp, w, s)
    p_off = corner_after(y, pp + 1, max(pp + 2, size - tail), w, s)
    return start + p_on, start + pp, start + p_off, amp


@jit
def t_wave(
    sm: FloatArray,
    start: int,
    end: int,
    min_n: int,
    near: int,
    radius: int,
    iso: float,
    sign: int,
    t_min_mv: float,
    w: int,
    on_lo: int,
) -> tuple[int, int, int]:
    """(onset, peak, end) of the T wave searched in ``sm[start:end]`` (at least
    ``min_n`` samples; within ``radius`` of ``near`` unless that is -1): the largest
    extremum from ``iso`` (of ``sign``), at least ``t_min_mv``; Zhang's corner after it
    (``w``) and the knee under the chord from ``on_lo``; -1 where not found."""
    if end - start < min_n:
        return -1, -1, -1
    a, b = 0, end - start
    if near != -1:
        a, b = max(0, near - radius - start), min(end - start, near + radius + 1 - start)
        if b - a < 3:
            return -1, -1, -1
    tp = extremum(sm, start + a, start + b, iso, sign)
    if tp == -1 or abs(sm[start + a + tp] - iso) < t_min_mv:
        return -1, -1, -1
    tp += start + a
    s = 1.0 if sm[tp] - iso > 0 else -1.0
    return knee(sm, on_lo, tp, s), tp, corner_after(sm, tp + 1, end, w, s)


@jit
def _pairwise_sum(a: FloatArray, lo: int, n: int) -> float:
    """``numpy.add.reduce`` of ``a[lo:lo + n]`` (contiguous float64): its pairwise
    summation, eight partial sums in blocks of up to 128."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    if n <= 128:
        r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
        r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
        i = 8
        while i < n - (n % 8):
            r0 += a[lo + i]
            r1 += a[lo + i + 1]
            r2 += a[lo + i + 2]
            r3 += a[lo + i + 3]
            r4 += a[lo + i + 4]
            r5 += a[lo + i + 5]
            r6 += a[lo + i + 6]
            r7 += a[lo + i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += a[lo + i]
            i += 1
        return float(res)
    half = n // 2
    half -= half % 8
    return _pairwise_sum(a, lo, half) + _pairwise_sum(a, lo + half, n - half)


@jit
def mean(a: FloatArray, lo: int, hi: int) -> float:
    """``numpy.mean(a[lo:hi])`` bit for bit (NaN when empty)."""
    hi = min(hi, a.size)
    n = hi - lo
    if n <= 0:
        return math.nan
    return _pairwise_sum(a, lo, n) / n


@jit
def second_difference_peak(x: FloatArray) -> FloatArray:
    """``numpy.abs(x[2:] - 2.0 * x[1:-1] + x[:-2]).max(axis=1)`` of ``x`` (n_samples,
    n_leads) with non-finite samples taken as 0 (``numpy.nan_to_num``): the largest
    second difference over the leads at each sample, where pacing spikes stand out.

    One pass, without numpy's three temporaries of the whole record and its maximum
    along the short axis of the leads, which cost more than the arithmetic.
    """
    n_samples, n_leads = x.shape
    out = np.zeros(max(0, n_samples - 2))
    for i in range(n_samples - 2):
        peak = 0.0  # the values are |...| >= 0: their maximum, as numpy's
        for j in range(n_leads):
            a, b, c = x[i + 2, j], x[i + 1, j], x[i, j]
            a = a if math.isfinite(a) else 0.0
            b = b if math.isfinite(b) else 0.0
            c = c if math.isfinite(c) else 0.0
            d = abs(a - 2.0 * b + c)
            if d > peak:
                peak = d
        out[i] = peak
    return out


# Bits of a double that each level of the radix selection sorts by (4096 buckets).
_RADIX_BITS = 12
_RADIX_SMALL = 32


@jit
def _radix_kth(keys: NDArray[np.uint64], k: int, scratch: NDArray[np.uint64]) -> np.uint64:
    """The ``k``-th smallest (from 0) of ``keys`` (reordered; ``scratch`` as large):
    12 bits at a time from the top, keeping the keys of the bucket that holds rank
    ``k``, until a few are left to sort."""
    count = np.zeros(1 << _RADIX_BITS, dtype=np.int64)
    mask = np.uint64((1 << _RADIX_BITS) - 1)
    shift = 64 - _RADIX_BITS
    m = keys.shape[0]
    while m > _RADIX_SMALL:
        count[:] = 0
        s = np.uint64(shift)
        for i in range(m):
            count[(keys[i] >> s) & mask] += 1
        below = 0
        bucket = 0
        for b in range(1 << _RADIX_BITS):
            if below + count[b] > k:
                bucket = b
                break
            below += count[b]
        k -= below
        kept = 0
        for i in range(m):
            if (keys[i] >> s) & mask == bucket:
                scratch[kept] = keys[i]
                kept += 1
        keys[:kept] = scratch[:kept]
        m = kept
        if shift == 0:
            return np.uint64(keys[k])  # all equal
        shift = max(0, shift - _RADIX_BITS)
    _insertion_sort(keys, m)
    return np.uint64(keys[k])


@jit
def row_medians(a: FloatArray) -> FloatArray:
    """``numpy.median(a, axis=1)`` of a C-contiguous ``a`` with finite values, and no
    -0.0 where +0.0 is also present (the noise medians of the delineation: absolute
    values).

    Each row's middle value by radix selection on the bits of its doubles (mapped so
    that their order as unsigned integers is the order of the numbers): two passes of
    a 4096-bucket histogram over a row, where numpy's introselect moves the values
    around several times; then, for an even count, the largest value below it.
    """
    n_rows, n = a.shape
    out = np.full(n_rows, np.nan)  # numpy's median of nothing
    if n == 0:
        return out
    keys = np.empty(n, dtype=np.uint64)
    scratch = np.empty(n, dtype=np.uint64)
    sign = np.uint64(1) << np.uint64(63)
    half = n // 2
    bits = a.view(np.uint64)
    value = np.empty(1)
    value_bits = value.view(np.uint64)
    for r in range(n_rows):
        for i in range(n):
            b = bits[r, i]
            keys[i] = ~b if b & sign else b | sign
        key = _radix_kth(keys, half, scratch)
        value_bits[0] = key & ~sign if key & sign else ~key
        upper = value[0]
        if n % 2:
            out[r] = upper
            continue
        below = 0
        lower = upper
        for i in range(n):  # rank half - 1: the largest value under the middle one
            v = a[r, i]
            if v < upper:
                if below == 0 or v > lower:
                    lower = v
                below += 1
        if below < half:  # ties: the value of rank half - 1 is the middle one too
            lower = upper
        out[r] = (lower + upper) / 2.0
    return out


@jit
def abs_gradient_rows(a: FloatArray) -> FloatArray:
    """``numpy.abs(numpy.gradient(a, axis=1))`` for rows of at least two samples: the
    central difference halved inside, one-sided differences at the ends, as numpy
    computes them (unit spacing), without its temporaries: the slope of each lead
    and of each median beat."""
    n_rows, n = a.shape
    out = np.empty((n_rows, n))
    for r in range(n_rows):
        out[r, 0] = abs((a[r, 1] - a[r, 0]) / 1.0)
        for i in range(1, n - 1):
            out[r, i] = abs((a[r, i + 1] - a[r, i - 1]) / 2.0)
        out[r, n - 1] = abs((a[r, n - 1] - a[r, n - 2]) / 1.0)
    return out
