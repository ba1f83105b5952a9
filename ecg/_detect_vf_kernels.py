"""The VF/VFL measure's kernels (:mod:`ecg.detect_vf`): VF-rate averaging and the
VF-filter leakage of trailing windows.

Design notes
------------
- One file of their own, so that a change to the QRS detector's kernels does not
  recompile these (numba's cache is per file), nor the other way round.
- Sums over a window's samples follow numpy's pairwise order (:func:`_pairwise_sum`),
  so that the leakage has the value of the numpy form it replaced;
  ``tests/ecg/test_detect_kernels.py`` checks it.
"""

from __future__ import annotations

import math

import numpy as np

from ecg._detect_kernels import BoolArray, FloatArray, IntArray
from ecg._jit import jit

__all__ = [
    "vf_average",
    "vf_leakage",
]


@jit
def vf_average(
    pending: FloatArray, pending_bad: BoolArray, d: FloatArray, bad: BoolArray, factor: int
) -> tuple[FloatArray, BoolArray, FloatArray, BoolArray]:
    """Block means (and "any bad") of carried plus new samples, for the VF measure.

    ``pending``/``pending_bad`` (``(n_leads, p)``, ``p < factor``) were carried from
    the previous chunk, ``d``/``bad`` are the new ``(n_leads, n)`` samples. Means are
    ``(x0 + x1 + ...) * (1 / factor)``. Returns the means, their masks, and the
    samples and masks after the last whole block, to carry.
    """
    n_leads, p = pending.shape
    total = p + d.shape[1]
    m = total // factor
    means = np.empty((n_leads, m))
    means_bad = np.empty((n_leads, m), np.bool_)
    n_rest = total - m * factor
    rest = np.empty((n_leads, n_rest))
    rest_bad = np.empty((n_leads, n_rest), np.bool_)
    scale = 1.0 / factor
    # A block that starts with carried samples, then blocks of new samples only.
    first = 1 if p and m else 0
    for lead in range(n_leads):
        for j in range(first):
            s = pending[lead, 0]
            any_bad = pending_bad[lead, 0]
            for i in range(1, factor):
                s += pending[lead, i] if i < p else d[lead, i - p]
                any_bad |= pending_bad[lead, i] if i < p else bad[lead, i - p]
            means[lead, j] = s * scale
            means_bad[lead, j] = any_bad
        for j in range(first, m):
            i0 = j * factor - p
            s = d[lead, i0]
            any_bad = bad[lead, i0]
            for i in range(i0 + 1, i0 + factor):
                s += d[lead, i]
                any_bad |= bad[lead, i]
            means[lead, j] = s * scale
            means_bad[lead, j] = any_bad
        for q in range(n_rest):
            i = m * factor + q
            rest[lead, q] = pending[lead, i] if i < p else d[lead, i - p]
            rest_bad[lead, q] = pending_bad[lead, i] if i < p else bad[lead, i - p]
    return means, means_bad, rest, rest_bad


@jit
def _block_sum(a: FloatArray, start: int, n: int) -> float:
    """numpy's sum of a contiguous run of at most 128 values, in numpy's order."""
    if n < 8:
        res = 0.0
        for i in range(start, start + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[start], a[start + 1], a[start + 2], a[start + 3]
    r4, r5, r6, r7 = a[start + 4], a[start + 5], a[start + 6], a[start + 7]
    i = 8
    while i < n - n % 8:
        j = start + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for j in range(start + i, start + n):
        res += a[j]
    return float(res)


@jit
def _pairwise_sum(a: FloatArray, start: int, n: int) -> float:
    """``np.sum(a[start : start + n])`` with numpy's own pairwise summation order.

    numpy sums runs of up to 128 values with eight interleaved accumulators
    (:func:`_block_sum`) and splits longer runs in two (the first part a multiple of 8),
    adding the parts' sums. The same tree is walked here with explicit stacks: numba's
    cache does not reload recursive functions (the process crashed).
    """
    if n <= 128:
        return _block_sum(a, start, n)
    # Tasks: (start, length) to sum, or length -1: add the two sums on top of values.
    task_start = np.empty(128, np.int64)
    task_n = np.empty(128, np.int64)
    values = np.empty(64)
    n_tasks = 1
    n_values = 0
    task_start[0], task_n[0] = start, n
    while n_tasks:
        n_tasks -= 1
        s0, m = task_start[n_tasks], task_n[n_tasks]
        if m < 0:
            n_values -= 1
            values[n_values - 1] += values[n_values]
        elif m <= 128:
            values[n_values] = _block_sum(a, s0, m)
            n_values += 1
        else:
            m2 = m // 2
            m2 -= m2 % 8
            # Pushed in reverse: the first part is summed first, then the second, then
            # the two are added.
            task_start[n_tasks], task_n[n_tasks] = 0, -1
            task_start[n_tasks + 1], task_n[n_tasks + 1] = s0 + m2, m - m2
            task_start[n_tasks + 2], task_n[n_tasks + 2] = s0, m2
            n_tasks += 3
    return float(values[0])


@jit
def vf_leakage(
    buf: FloatArray,
    bad: BoolArray,
    ends: IntArray,
    window_n: int,
    hop_n: int,
    min_half_n: int,
    max_half_n: int,
    fill_min: float,
) -> FloatArray:
    """Mean over leads of the VF-filter leakage of the windows ending at ``ends``.

    See ``ecg.detect_vf._leakage``: ``buf`` (``(n_leads, n)``, the band-passed VF-rate
    signal) starts on a hop boundary, ``ends`` (indices into it) are hop boundaries and
    windows are ``window_n`` long, a whole number of hops. Windows of mean fill below
    ``fill_min`` count as 1 without their leakage computed; a lead that was unusable
    within the window, or whose half period is outside ``min_half_n..max_half_n``,
    counts as 1. Sums over samples use numpy's pairwise order (:func:`_pairwise_sum`).
    """
    n_leads, n = buf.shape
    w, hop = window_n, hop_n
    n_blocks = n // hop
    per = w // hop
    out = np.ones(ends.shape[0])
    # Window sums and maxima from those of hop-long blocks.
    c_abs = np.zeros((n_leads, n_blocks + 1))
    c_bad = np.zeros((n_leads, n_blocks + 1), np.int64)
    block_peak = np.empty((n_leads, n_blocks))
    tmp = np.empty(max(hop, w))
    shifted = np.empty(w)
    for lead in range(n_leads):
        for k in range(n_blocks):
            any_bad = False
            for t in range(hop):
                tmp[t] = abs(buf[lead, k * hop + t])
                any_bad = any_bad or bad[lead, k * hop + t]
            c_abs[lead, k + 1] = c_abs[lead, k] + _pairwise_sum(tmp, 0, hop)
            c_bad[lead, k + 1] = c_bad[lead, k] + any_bad
            block_peak[lead, k] = tmp[:hop].max()
    s_abs = np.empty(n_leads)
    for q in range(ends.shape[0]):
        e = ends[q]
        last = e // hop
        fill = 0.0
        for lead in range(n_leads):
            s_abs[lead] = c_abs[lead, last] - c_abs[lead, last - per]
            peak = block_peak[lead, last - per : last].max()
            fill += s_abs[lead] / (w * max(peak, 1e-12))
        if fill / n_leads < fill_min:
            continue
        total = 0.0
        for lead in range(n_leads):
            first = e - w
            for t in range(w - 1):
                tmp[t] = abs(buf[lead, first + t + 1] - buf[lead, first + t])
            s_diff = _pairwise_sum(tmp, 0, w - 1)
            half = math.floor(math.pi * s_abs[lead] / max(s_diff, 1e-12) + 0.5)
            in_band = min_half_n <= half <= max_half_n
            shift = int(min(max(half, min_half_n), max_half_n))
            # Pairs (x[i], x[i - N]) for every i in the window: the buffer keeps
            # max_half_n samples before the window (clipped at the start of the stream).
            for t in range(w):
                shifted[t] = buf[lead, max(first + t - shift, 0)]
            for t in range(w):
                tmp[t] = abs(buf[lead, first + t] + shifted[t])
            num = _pairwise_sum(tmp, 0, w)
            for t in range(w):
                tmp[t] = abs(shifted[t])
            den = s_abs[lead] + _pairwise_sum(tmp, 0, w)
            usable = c_bad[lead, last] == c_bad[lead, last - per] and in_band and s_abs[lead] > 0
            total += num / max(den, 1e-12) if usable else 1.0
        out[q] = total / n_leads
    return out
