"""Compiled kernels of the QRS detector (:mod:`ecg.detect`): its per-sample stages and
its decision loop, one numba function each.

Design notes
------------
- **Why compiled.** The detector's stages are sequential (filters, running minima,
  flat-run counters, the adaptive thresholds of the decision) or several numpy passes
  over the same samples; in numpy they cost a pass and a temporary array per operation,
  and the decision loop ran in Python at about 12 µs a candidate. Each kernel here is
  one loop over the samples (or candidates) that does the work of those passes.
- **Same arithmetic as the numpy form.** Each kernel performs the floating-point
  operations of the numpy code it replaced in the same order (sequential sums where
  numpy's were sequential: cumulative sums, reductions across leads, Python's ``sum``;
  ``x * (1.0 / k)`` where numpy multiplied by a reciprocal), so that the detector's
  beats did not move. ``tests/ecg/test_detect_kernels.py`` checks each kernel against a
  plain numpy/Python form.
  Where numpy summed pairwise (``ndarray.sum`` along a contiguous axis, in the VF
  leakage) :func:`_pairwise_sum` repeats numpy's order; medians are exact selections
  (:func:`_select`, insertion sort for a few values), as ``np.median``'s.
- **Branch-free where the data decide.** Comparisons of envelope values mispredict
  half the time: the trailing minimum is van Herk / Gil-Werman rather than a deque,
  the median's partition (Lomuto) swaps every value and advances by the comparison.
- **Few signatures.** Arrays are float64 (or bool / int64), 2-D C-contiguous, lead by
  lead ``(n_leads, n)``; scalars are Python ints and floats. The caller casts, so each
  kernel compiles once. ``cache=True`` keeps the machine code in ``__pycache__``:
  compiling all of them costs about 13 s of CPU the first time (a fresh clone, or after
  this file changed), loading them about 0.4 s per process.
- The kernels take and return plain arrays and numbers: state lives in
  :class:`ecg.detect.DetectorState`, and the kernels update its arrays in place where
  stated.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ecg._jit import jit

__all__ = [
    "band_rms",
    "block_average",
    "block_max_median",
    "decide_candidates",
    "find_candidates",
    "floor_cumsum",
    "history_median",
    "hold_and_flag",
    "lead_weights",
    "locate_peaks",
    "sos_filter",
    "vf_average",
    "vf_leakage",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@jit
def block_average(pending: FloatArray, x: FloatArray, factor: int) -> tuple[FloatArray, FloatArray]:
    """Block means of the carried samples followed by the new ones, lead by lead.

    Parameters
    ----------
    pending : ndarray, shape (n_leads, p)
        Samples carried from the previous chunk (``p < factor``).
    x : ndarray, shape (n_samples, n_leads)
        The new samples, in the caller's layout (one row per sample).
    factor : int
        Block length in samples.

    Returns
    -------
    means : ndarray, shape (n_leads, (p + n_samples) // factor)
        ``(x0 + x1 + ... ) * (1 / factor)`` per block; the samples themselves when
        ``factor`` is 1.
    rest : ndarray, shape (n_leads, (p + n_samples) % factor)
        The samples after the last whole block, to carry.
    """
    n_leads, p = pending.shape
    total = p + x.shape[0]
    m = total // factor
    means = np.empty((n_leads, m))
    rest = np.empty((n_leads, total - m * factor))
    scale = 1.0 / factor
    # A block that starts with carried samples, then blocks of new samples only.
    first = 1 if p and m else 0
    for j in range(first):
        for lead in range(n_leads):
            s = pending[lead, 0]
            for i in range(1, factor):
                s += pending[lead, i] if i < p else x[i - p, lead]
            means[lead, j] = s * scale
    for j in range(first, m):
        i0 = j * factor - p
        for lead in range(n_leads):
            s = x[i0, lead]
            if factor > 1:
                for i in range(i0 + 1, i0 + factor):
                    s += x[i, lead]
                s *= scale
            means[lead, j] = s
    for q in range(total - m * factor):
        i = m * factor + q
        for lead in range(n_leads):
            rest[lead, q] = pending[lead, i] if i < p else x[i - p, lead]
    return means, rest


@jit
def hold_and_flag(
    d: FloatArray,
    last_value: FloatArray,
    unchanged_n: IntArray,
    flat_n: int,
    first_i: int,
) -> tuple[BoolArray, IntArray]:
    """Replace NaN by the last valid value; flag NaN and flat stretches as unusable.

    A sample is flat when it and the ``flat_n - 1`` samples before it equal their
    predecessors (no change over ``flat_n`` samples). ``d`` (``(n_leads, n)``),
    ``last_value`` (last sample of the previous chunk, NaN before the first) and
    ``unchanged_n`` (length of the current run without change) are updated in place.

    Returns
    -------
    bad : ndarray of bool, shape (n_leads, n)
        NaN or flat samples.
    onsets : ndarray of int64, shape (k, 3)
        ``(lead, run_start_i, onset_i)`` for each run that became flat at absolute
        index ``onset_i`` (``first_i`` is the absolute index of ``d[:, 0]``); the run
        started ``flat_n`` samples before, in leads' order then time.
    """
    n_leads, n = d.shape
    bad = np.zeros((n_leads, n), np.bool_)
    onsets = np.empty((n_leads * (n // flat_n + 1), 3), np.int64)
    n_onsets = 0
    for lead in range(n_leads):
        # The value a NaN at the start of the chunk holds (0 before any valid one), and
        # the one the first sample is compared with (NaN compares unequal).
        held = last_value[lead]
        previous = held
        if math.isnan(held):
            held = 0.0
        run = unchanged_n[lead]
        for j in range(n):
            v = d[lead, j]
            is_nan = math.isnan(v)
            if is_nan:
                v = held
                d[lead, j] = v
            else:
                held = v
            if v != previous:
                run = 0
            elif run <= flat_n:
                run += 1
                if run == flat_n:
                    i = first_i + j
                    onsets[n_onsets, 0] = lead
                    onsets[n_onsets, 1] = i - flat_n
                    onsets[n_onsets, 2] = i
                    n_onsets += 1
            previous = v
            bad[lead, j] = is_nan or run >= flat_n
        unchanged_n[lead] = run
        if n:
            last_value[lead] = d[lead, n - 1]
    return bad, onsets[:n_onsets].copy()


@jit
def _sos_row(x: FloatArray, sos: FloatArray, zi: FloatArray, y: FloatArray) -> None:
    """``y = scipy.signal.sosfilt(sos, x, zi=zi)`` for one row, ``zi`` updated in place.

    scipy's transposed direct form II with its operations in the same order, so the
    output is bit-identical; ``y`` may be ``x``. The usual two sections keep their
    memory in local variables (in the arrays, every sample waits for a store and a load
    of each).
    """
    if sos.shape[0] != 2:
        for j in range(x.shape[0]):
            x_cur = x[j]
            for s in range(sos.shape[0]):
                x_new = sos[s, 0] * x_cur + zi[s, 0]
                zi[s, 0] = sos[s, 1] * x_cur - sos[s, 4] * x_new + zi[s, 1]
                zi[s, 1] = sos[s, 2] * x_cur - sos[s, 5] * x_new
                x_cur = x_new
            y[j] = x_cur
        return
    b0, b1, b2, a1, a2 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 4], sos[0, 5]
    c0, c1, c2, e1, e2 = sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 4], sos[1, 5]
    z0, z1, w0, w1 = zi[0, 0], zi[0, 1], zi[1, 0], zi[1, 1]
    for j in range(x.shape[0]):
        x_cur = x[j]
        x_new = b0 * x_cur + z0
        z0 = b1 * x_cur - a1 * x_new + z1
        z1 = b2 * x_cur - a2 * x_new
        x_cur = x_new
        x_new = c0 * x_cur + w0
        w0 = c1 * x_cur - e1 * x_new + w1
        w1 = c2 * x_cur - e2 * x_new
        y[j] = x_new
    zi[0, 0], zi[0, 1], zi[1, 0], zi[1, 1] = z0, z1, w0, w1


@jit
def sos_filter(x: FloatArray, sos: FloatArray, zi: FloatArray) -> FloatArray:
    """``scipy.signal.sosfilt`` along the rows of ``x``, in place (``x`` is returned).

    ``zi`` is ``(n_rows, n_sections, 2)`` (as ``ecg.filters.sosfilt_rows_zi`` makes it),
    updated in place. Bit-identical to scipy (see :func:`_sos_row`).
    """
    for row in range(x.shape[0]):
        _sos_row(x[row], sos, zi[row], x[row])
    return x


@jit
def band_rms(
    d: FloatArray, sos: FloatArray, zi: FloatArray, sq_tail: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Causal band-pass (second-order sections) then moving RMS, lead by lead.

    The filter is ``scipy.signal.sosfilt``'s transposed direct form II with its
    operations in the same order; ``zi`` (``(n_leads, n_sections, 2)``) is updated in
    place. The RMS window is ``sq_tail.shape[1] + 1`` samples; ``sq_tail`` holds the
    squared filter output of the previous chunk's last ``window - 1`` samples. As in
    the numpy form, window sums are differences of one cumulative sum per chunk.

    Returns
    -------
    env : ndarray, shape (n_leads, n)
        Moving RMS of the band-passed signal.
    sq_tail : ndarray, shape (n_leads, window - 1)
        The squared output to carry to the next chunk.
    """
    n_leads, n = d.shape
    tail = sq_tail.shape[1]
    win = tail + 1
    inv_win = 1.0 / win
    env = np.empty((n_leads, n))
    new_tail = np.empty((n_leads, tail))
    sq = np.empty(tail + n)
    c = np.empty(tail + n)
    for lead in range(n_leads):
        sq[:tail] = sq_tail[lead]
        _sos_row(d[lead], sos, zi[lead], sq[tail:])
        for t in range(tail, tail + n):
            sq[t] *= sq[t]
        acc = 0.0
        for t in range(tail + n):
            acc += sq[t]
            c[t] = acc
        for j in range(n):
            e = c[win - 1] if j == 0 else c[j + win - 1] - c[j - 1]
            if e < 0.0:
                e = 0.0
            env[lead, j] = math.sqrt(e * inv_win)
        new_tail[lead] = sq[n:]
    return env, new_tail


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
    suffix = np.empty(n)
    for start in range(0, n, size):
        stop = min(start + size, n)
        m = x[stop - 1]
        for t in range(stop - 1, start - 1, -1):
            m = min(m, x[t])
            suffix[t] = m
    acc = 0.0
    out[0] = 0.0
    for start in range(0, n, size):
        stop = min(start + size, n)
        m = x[start]
        for t in range(start, stop):
            m = min(m, x[t])
            acc += m if t < size else min(m, suffix[t - size + 1])
            out[t + 1] = acc


@jit
def _select(a: FloatArray, k: int) -> float:
    """The ``k``-th smallest value of ``a`` (0-based), partitioning ``a`` in place.

    Afterwards ``a[:k] <= a[k] <= a[k + 1:]``. Quickselect with a median-of-three pivot
    and a branch-free Lomuto partition (on envelope values a comparison mispredicts
    half the time, which made a branching partition four times slower); many equal
    values shrink such a partition by one element a round, so after a few rounds
    Hoare's partition, which splits runs of equal values in the middle, finishes.
    """
    lo, hi = 0, a.shape[0] - 1
    rounds = 0
    while hi > lo:
        mid = (lo + hi) // 2
        # Median of three to a[mid] <= a[hi] <= a[lo]: a[hi] is the pivot.
        if a[hi] > a[lo]:
            a[hi], a[lo] = a[lo], a[hi]
        if a[mid] > a[hi]:
            a[hi], a[mid] = a[mid], a[hi]
        if a[mid] > a[lo]:
            a[lo], a[mid] = a[mid], a[lo]
        if a[hi] > a[lo]:
            a[hi], a[lo] = a[lo], a[hi]
        pivot = a[hi]
        rounds += 1
        if rounds <= 16:
            i = lo
            for j in range(lo, hi):
                v = a[j]
                a[j] = a[i]
                a[i] = v
                i += v < pivot
        else:
            i, j = lo - 1, hi
            while True:
                i += 1
                while a[i] < pivot:
                    i += 1
                j -= 1
                while j > lo and a[j] > pivot:
                    j -= 1
                if i >= j:
                    break
                a[i], a[j] = a[j], a[i]
        # The pivot to its place: smaller values before it, the others after.
        a[hi] = a[i]
        a[i] = pivot
        if i == k:
            break
        if i < k:
            lo = i + 1
        else:
            hi = i - 1
    return float(a[k])


@jit
def block_max_median(env: FloatArray, n_blocks: int, block_n: int) -> tuple[FloatArray, FloatArray]:
    """Maximum and median of each lead's first ``n_blocks`` blocks of ``block_n`` columns.

    The median is ``np.median``'s: the middle value, or the mean of the two middle
    values ``(a + b) / 2`` for an even ``block_n``.
    """
    n_leads = env.shape[0]
    block_max = np.empty((n_leads, n_blocks))
    block_median = np.empty((n_leads, n_blocks))
    tmp = np.empty(block_n)
    k = block_n // 2
    for lead in range(n_leads):
        for b in range(n_blocks):
            tmp[:] = env[lead, b * block_n : (b + 1) * block_n]
            block_max[lead, b] = tmp.max()
            upper = _select(tmp, k)
            if block_n % 2:
                block_median[lead, b] = upper
            else:
                block_median[lead, b] = (tmp[:k].max() + upper) / 2
    return block_max, block_median


@jit
def history_median(hist: FloatArray, first_b: int, blocks: IntArray, depth: int) -> FloatArray:
    """``np.median`` of ``hist[:, max(0, b - depth) : b]`` (shifted by ``first_b``) per ``b``.

    ``hist`` holds one column per block from absolute block ``first_b``; for each
    absolute block ``b`` in ``blocks`` the median over the (at most ``depth``) blocks
    before it, each of which must have at least one. A few values: insertion sort.
    (Not ``ecg._flags_kernels.insertion_median``: numba's cache does not notice a change
    in a kernel of another file, and would keep running the old one inlined here.)
    """
    n_leads = hist.shape[0]
    out = np.empty((n_leads, blocks.shape[0]))
    values = np.empty(depth)
    for q in range(blocks.shape[0]):
        stop = blocks[q] - first_b
        start = max(0, stop - depth)
        m = stop - start
        for lead in range(n_leads):
            for i in range(m):
                v = hist[lead, start + i]
                j = i
                while j > 0 and values[j - 1] > v:
                    values[j] = values[j - 1]
                    j -= 1
                values[j] = v
            half = m // 2
            out[lead, q] = values[half] if m % 2 else (values[half - 1] + values[half]) / 2
    return out


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
def find_candidates(
    weight: FloatArray, env: FloatArray, lo: int, a: int, b: int, suppress_n: int, floor: float
) -> IntArray:
    """Columns ``a <= j < b`` where the fused detection function has a candidate peak.

    ``weight`` is ``(n_leads, m)``, for columns ``lo : lo + m`` of the buffer ``env``;
    returned columns count from ``lo``. The detection function is the weighted mean of
    the leads' envelopes; a candidate is a local
    maximum (strictly above its left neighbour) that is the largest value within
    ``suppress_n`` columns either side and at least ``floor``.
    """
    n_leads, m = weight.shape
    g = np.empty(m)
    for j in range(m):
        num = 0.0
        den = 0.0
        for lead in range(n_leads):
            num += weight[lead, j] * env[lead, lo + j]
            den += weight[lead, j]
        g[j] = num / max(den, 1e-12)
    cands = np.empty(max(b - a, 0), np.int64)
    n_cands = 0
    for j in range(a, b):
        v = g[j]
        if not (v > g[j - 1] and v >= floor and (j + 1 >= m or v >= g[j + 1])):
            continue
        dominant = True
        for k in range(max(0, j - suppress_n), min(m, j + suppress_n + 1)):
            if g[k] > v:
                dominant = False
                break
        if dominant:
            cands[n_cands] = j
            n_cands += 1
    return cands[:n_cands].copy()


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
    ``premature_factor`` times the rate ``fs``, to be multiplied by the mean RR in s).
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
        elif elapsed < prem_n * rr_s and rr_count >= rr_learnt:
            # Premature, once the mean RR is learnt: as high as premature_threshold of
            # the signal level.
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


@jit
def locate_peaks(
    d: FloatArray,
    inv_scale: FloatArray,
    bad: BoolArray,
    centre: IntArray,
    weights: FloatArray,
    half: int,
    edge: int,
) -> IntArray:
    """Buffer column of each beat's R peak (see ``ecg.detect._locate``).

    For beat ``b`` the column within ``centre[b] +- half`` (clamped to the buffer) of
    largest ``sum over leads of |d - baseline| * inv_scale * (weights[b] + 1e-6)``,
    the baseline being the mean of ``d`` at ``centre[b] +- edge`` and unusable samples
    weighing 0; the first such column on ties.
    """
    n_leads, n_buf = d.shape
    out = np.empty(centre.shape[0], np.int64)
    for b in range(centre.shape[0]):
        c = centre[b]
        before = min(max(c - edge, 0), n_buf - 1)
        after = min(max(c + edge, 0), n_buf - 1)
        best_score = -np.inf
        best = 0
        for k in range(-half, half + 1):
            col = min(max(c + k, 0), n_buf - 1)
            score = 0.0
            for lead in range(n_leads):
                base = 0.5 * (d[lead, before] + d[lead, after])
                w = 0.0 if bad[lead, col] else weights[b, lead] + 1e-6
                score += abs(d[lead, col] - base) * inv_scale[lead, col] * w
            if k == -half or score > best_score:
                best_score = score
                best = col
        out[b] = best
    return out


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
