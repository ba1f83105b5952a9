"""The QRS detector's decision rules, compiled: lead weights and the decision loop.

Design notes
------------
- These are the parts that accuracy work changes (threshold rules, lead weights), kept
  apart from the per-sample kernels of :mod:`ecg._detect_kernels`: numba's cache is per
  file, so editing a rule here recompiles these three functions (a second or two), not
  every kernel of the detector. Kernels call only kernels of their own file: the cache
  does not notice a change in another file's kernel that it has inlined.
- The same floating-point operations in the same order as the numpy/Python code they
  replaced (see :mod:`ecg._detect_kernels`); ``tests/ecg/test_detect_kernels.py``
  checks them against that form.
"""

from __future__ import annotations

import math

import numpy as np

from ecg._detect_kernels import BoolArray, FloatArray, IntArray
from ecg._jit import jit

__all__ = [
    "decide_candidates",
    "floor_cumsum",
    "lead_weights",
]


@jit
def floor_cumsum(x: FloatArray, size: int, out: FloatArray) -> None:
    """Cumulative sum of the trailing minimum: ``out[t + 1] = out[t] + floor[t]``.

    ``floor[t] = min(x[max(0, t - size + 1) : t + 1])``, the same as
    ``scipy.ndimage.minimum_filter1d(x, size, mode="nearest", origin=(size - 1) // 2)``;
    ``out[0] = 0`` and the sum is sequential, as ``np.cumsum``'s. Van Herk /
    Gil-Werman: within blocks of ``size`` samples, minima from each block's start and
    to each block's end; a window spans at most the end of one block and the start of
    the next. No data-dependent branch, unlike a deque of candidates.
    """
    n = x.shape[0]
    # Minima to the end of the previous block, for the windows that reach into it
    # (O(size) memory: no array as long as x, whose fresh pages would cost more).
    suffix = np.empty(size)
    acc = 0.0
    out[0] = 0.0
    for start in range(0, n, size):
        stop = min(start + size, n)
        if start:
            m = x[start - 1]
            for t in range(start - 1, start - size - 1, -1):
                m = min(m, x[t])
                suffix[t - start + size] = m
        m = x[start]
        for t in range(start, stop):
            m = min(m, x[t])
            # The window's part in the previous block starts at suffix[k] (none when
            # the window is this block from its start).
            k = t - start + 1
            acc += m if start == 0 or k == size else min(m, suffix[k])
            out[t + 1] = acc


@jit
def lead_weights(
    env: FloatArray,
    block_weight: FloatArray,
    bad: BoolArray,
    lo: int,
    hi: int,
    floor_n: int,
    noise_n: int,
    settle_n: int,
    reach_n: int,
    recent_bad_n: IntArray,
    calm: float,
) -> FloatArray:
    """Weight of each lead on buffer columns ``lo:hi`` (see ``ecg.detect._lead_weights``).

    ``env``, ``block_weight`` and ``bad`` are the detector's buffers ``(n_leads,
    n_buf)``. ``recent_bad_n[lead]`` is how many samples before the buffer's first
    column the lead was last unusable (large when never). Window sums are differences
    of cumulative sums over the whole buffer, as in the numpy form.
    """
    n_leads, n_buf = env.shape
    weight = np.empty((n_leads, hi - lo))
    c_floor = np.empty(n_buf + 1)
    c_bad = np.empty(n_buf + 1, np.int64)
    for lead in range(n_leads):
        # The floor under the beats: the minimum of the envelope over the last FLOOR_S.
        floor_cumsum(env[lead], floor_n, c_floor)
        for j in range(hi - lo):
            col = lo + j
            ahead = min(col + reach_n + 1, n_buf)
            behind = max(col - noise_n, 0)
            activity = (c_floor[ahead] - c_floor[behind]) / max(ahead - behind, 1)
            if activity < calm:
                activity = calm
            activity = calm / activity
            activity *= activity
            weight[lead, j] = block_weight[lead, col] * activity
        # Nothing within settle_n after or reach_n before an unusable sample.
        count = 0
        c_bad[0] = 0
        for t in range(n_buf):
            count += bad[lead, t]
            c_bad[t + 1] = count
        if count == 0 and lo + recent_bad_n[lead] > settle_n:
            continue
        for j in range(hi - lo):
            col = lo + j
            ahead = min(col + reach_n + 1, n_buf)
            near_bad = c_bad[ahead] - c_bad[max(col - settle_n, 0)] > 0
            if near_bad or col + recent_bad_n[lead] <= settle_n:
                weight[lead, j] = 0.0
    return weight


@jit
def decide_candidates(
    cands: IntArray,
    env: FloatArray,
    weight: FloatArray,
    lo: int,
    lo_i: int,
    end_i: int,
    half: int,
    la: int,
    refr: int,
    twave: int,
    fs: float,
    fraction: float,
    t_ratio: float,
    prem_thr: float,
    gap_n: float,
    prem_n: float,
    qt_n: float,
    rr_learnt: int,
    visible: float,
    vf_episodes: IntArray,
    vis: FloatArray,
    noise: float,
    level: float,
    rr_s: float,
    rr_count: int,
    last_i: int,
    last_f: float,
) -> tuple[IntArray, FloatArray, float, float, float, int, int, float]:
    """The decision loop: accept or reject each candidate in turn.

    The same loop, rules and names as the Python loop it replaced (which
    ``tests/ecg/test_detect_kernels.py`` keeps as its reference); one comment per rule.

    ``cands`` are columns of ``weight`` (``(n_leads, m)``), which covers the columns
    ``lo : lo + m`` of the buffer ``env``, from absolute index ``lo_i``; ``end_i`` is
    the stream's end. Lengths in internal samples: ``half`` (``LOCATE_S``, where each
    lead's own peak is looked for), ``la`` (look-ahead), ``refr`` (refractory period),
    ``twave`` (``t_wave_s``), ``gap_n`` and ``prem_n`` (``gap_factor`` and
    ``premature_factor`` times the rate ``fs``, to be multiplied by the mean RR in s),
    ``qt_n`` (``qtc_s`` times the rate, to be multiplied by the square root of the mean
    RR in s: the longest normal QT interval at that RR, after Bazett).
    ``fraction``, ``t_ratio``, ``prem_thr``, ``rr_learnt`` and ``visible`` are
    ``threshold``, ``t_wave_ratio``, ``premature_threshold``, ``RR_LEARNT`` and
    ``VISIBLE``. ``vf_episodes`` holds ``(onset_i, offset_i)`` rows, the offset
    ``end_i + 1`` or more while the episode lasts. ``vis`` (each lead's visibility) is
    updated in place. The levels and the last beat are passed in and returned:
    ``noise, level`` (running noise and signal levels of the detection function),
    ``rr_s`` (mean RR interval, s), ``rr_count`` (RR intervals measured), ``last_i,
    last_f`` (last beat's absolute index and value).

    Returns
    -------
    peaks : ndarray of int64
        Absolute indices of the accepted candidates.
    peak_w : ndarray, shape (len(peaks), n_leads)
        The leads' weights each was accepted with.
    noise, level, rr_s, rr_count, last_i, last_f
        The updated levels.
    """
    n_leads, m = weight.shape
    peaks = np.empty(cands.shape[0], np.int64)
    peak_w = np.empty((cands.shape[0], n_leads))
    n_peaks = 0
    e_row = np.empty(n_leads)
    dyn = np.empty(n_leads)
    vis_factor = np.empty(n_leads)
    for lead in range(n_leads):
        f = min(1.0, vis[lead] * (1.0 / visible))
        vis_factor[lead] = f * f
    for col in cands:
        c = col + lo_i
        elapsed = c - last_i
        # Within the refractory period of the last beat nothing is a beat.
        if elapsed < refr:
            continue
        # During VF/VFL its waves are not beats; asked at the time the candidate is
        # decided, which does not depend on chunking.
        at = min(c + la, end_i)
        in_vf = False
        for e in range(vf_episodes.shape[0] - 1, -1, -1):
            if vf_episodes[e, 1] <= at:
                break
            if vf_episodes[e, 0] <= at:
                in_vf = True
                break
        if in_vf:
            continue
        # The candidate's value: the leads' own peaks near it (leads peak a little
        # apart), weighted by block weight, calm and visibility.
        total = 0.0
        for lead in range(n_leads):
            top = -np.inf
            for k in range(max(col - half, 0), min(col + half, m - 1) + 1):
                top = max(top, env[lead, lo + k])
            e_row[lead] = top
            dyn[lead] = weight[lead, col] * vis_factor[lead]
            total += dyn[lead]
        value = 0.0
        if total > 0:
            for lead in range(n_leads):
                value += dyn[lead] * e_row[lead]
            value /= total
        # Pan-Tompkins threshold between the running noise and signal levels.
        thr = noise + fraction * (level - noise)
        if elapsed > gap_n * rr_s:
            # Long without a beat: halve the threshold (in place of search-back).
            thr *= 0.5
        elif (
            elapsed < prem_n * rr_s and elapsed <= qt_n * math.sqrt(rr_s) and rr_count >= rr_learnt
        ):
            # Premature and still within the last beat's QT interval (where its T wave
            # is), once the mean RR is learnt: as high as premature_threshold of the
            # signal level. Later than the longest normal QT, a candidate cannot be
            # that T wave: a premature beat there faces the ordinary threshold.
            thr = max(thr, prem_thr * level)
        # Soon after a beat and much smaller than it: a T wave.
        t_wave = elapsed < twave and value < t_ratio * last_f
        if value >= thr and not t_wave:
            peaks[n_peaks] = c
            peak_w[n_peaks] = dyn
            n_peaks += 1
            # RR mean, from intervals short enough to be between consecutive beats.
            if elapsed < 3 * fs:
                rr_s = 0.875 * rr_s + 0.125 * elapsed / fs
                rr_count += 1
            last_i, last_f = c, value
            level = 0.875 * level + 0.125 * value
            # Visibility: how high each usable lead stood at the beat.
            for lead in range(n_leads):
                if weight[lead, col] > 0:
                    vis[lead] = 0.9 * vis[lead] + 0.1 * min(e_row[lead], 1.5)
                f = min(1.0, vis[lead] * (1.0 / visible))
                vis_factor[lead] = f * f
        else:
            noise = 0.875 * noise + 0.125 * value
    return (
        peaks[:n_peaks].copy(),
        peak_w[:n_peaks].copy(),
        noise,
        level,
        rr_s,
        rr_count,
        last_i,
        last_f,
    )
