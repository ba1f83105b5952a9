"""Compiled kernels of the QRS detector (:mod:`ecg.detect`): its per-sample stages,
one numba function each.

Design notes
------------
- **Why compiled.** The detector's stages are sequential (filters, running minima,
  flat-run counters, the adaptive thresholds of the decision) or several numpy passes
  over the same samples; in numpy they cost a pass and a temporary array per operation,
  and the decision loop ran in Python at about 12 µs a candidate. Each kernel is one
  loop over the samples (or candidates) that does the work of those passes.
- **Three files.** Here the per-sample stages (averaging, NaN/inf hold and flat runs,
  filters and envelope, block statistics, candidates, R-peak location); the decision
  rules that accuracy work changes (lead weights, the decision loop) in
  :mod:`ecg._detect_decide`; the VF measure in :mod:`ecg._detect_vf_kernels`. numba's
  cache is per file: editing a decision rule recompiles two kernels, not all. A kernel
  calls only kernels of its own file, because the cache does not notice a change in
  another file's kernel that it has inlined.
- **Same arithmetic as the numpy form.** Each kernel performs the floating-point
  operations of the numpy code it replaced in the same order (sequential sums where
  numpy's were sequential: cumulative sums, reductions across leads, Python's ``sum``;
  ``x * (1.0 / k)`` where numpy multiplied by a reciprocal), so that the detector's
  beats did not move. Where numpy summed pairwise (``ndarray.sum`` along a contiguous
  axis, in the VF leakage) ``_pairwise_sum`` repeats numpy's order; medians are exact
  selections (:func:`_select`, insertion sort for a few values), as ``np.median``'s.
  ``tests/ecg/test_detect_kernels.py`` checks each kernel against a plain numpy/Python
  form.
- **Branch-free where the data decide.** Comparisons of envelope values mispredict
  half the time: the trailing minimum is van Herk / Gil-Werman rather than a deque,
  the median's partition (Lomuto) swaps every value and advances by the comparison.
- **Few signatures.** Arrays are float64 (or bool / int64), 2-D C-contiguous, lead by
  lead ``(n_leads, n)``; scalars are Python ints and floats. The caller casts, so each
  kernel compiles once. ``cache=True`` keeps the machine code in ``__pycache__``:
  compiling all the detector's kernels costs about 13 s of CPU the first time (a fresh
  clone, or after these files changed), loading them about 0.4 s per process.
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
    "find_candidates",
    "history_median",
    "hold_and_flag",
    "locate_peaks",
    "sos_filter",
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
    """Replace NaN and ±inf by the last valid value; flag them and flat stretches as unusable.

    A sample is flat when it and the ``flat_n - 1`` samples before it equal their
    predecessors (no change over ``flat_n`` samples). ``d`` (``(n_leads, n)``),
    ``last_value`` (last sample of the previous chunk, NaN before the first) and
    ``unchanged_n`` (length of the current run without change) are updated in place.

    Returns
    -------
    bad : ndarray of bool, shape (n_leads, n)
        Missing (NaN, ±inf) or flat samples.
    onsets : ndarray of int64, shape (k, 3)
        ``(lead, run_start_i, onset_i)`` for each run that became flat at absolute
        index ``onset_i`` (``first_i`` is the absolute index of ``d[:, 0]``); the run
        started ``flat_n`` samples before, in leads' order then time.
    """
    n_leads, n = d.shape
    bad = np.zeros((n_leads, n), np.bool_)
    # Flat runs are rare: room for a few onsets, doubled when full.
    onsets = np.empty((8, 3), np.int64)
    n_onsets = 0
    for lead in range(n_leads):
        # The value a missing sample at the start of the chunk holds (0 before any valid
        # one), and the one the first sample is compared with (NaN compares unequal).
        held = last_value[lead]
        previous = held
        if math.isnan(held):
            held = 0.0
        run = unchanged_n[lead]
        for j in range(n):
            v = d[lead, j]
            # An infinite sample is as unusable as NaN: filtered, it would turn the
            # lead's filter memory to NaN for the rest of the stream.
            missing = not math.isfinite(v)
            if missing:
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
                    if n_onsets == onsets.shape[0]:
                        grown = np.empty((2 * n_onsets, 3), np.int64)
                        grown[:n_onsets] = onsets
                        onsets = grown
                    onsets[n_onsets, 0] = lead
                    onsets[n_onsets, 1] = i - flat_n
                    onsets[n_onsets, 2] = i
                    n_onsets += 1
            previous = v
            bad[lead, j] = missing or run >= flat_n
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
    the numpy form, window sums are differences of one cumulative sum per chunk
    (starting with the carried squares).

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
    # The last win values of the cumulative sum and of the squares, by index modulo
    # win: no chunk-long temporaries (fresh pages cost more than the arithmetic).
    ring_c = np.empty(win)
    ring_sq = np.empty(win)
    for lead in range(n_leads):
        acc = 0.0
        for t in range(tail):
            acc += sq_tail[lead, t]
            ring_c[t] = acc
            ring_sq[t] = sq_tail[lead, t]
        # The filter's output goes to env's row, then each value becomes its RMS.
        _sos_row(d[lead], sos, zi[lead], env[lead])
        for j in range(n):
            t = tail + j
            y = env[lead, j]
            square = y * y
            acc += square
            # c[t - win] (sample j - 1's sum) is about to be overwritten by c[t].
            e = acc if j == 0 else acc - ring_c[t % win]
            ring_c[t % win] = acc
            ring_sq[t % win] = square
            if e < 0.0:
                e = 0.0
            env[lead, j] = math.sqrt(e * inv_win)
        for k in range(tail):
            new_tail[lead, k] = ring_sq[(n + k) % win]
    return env, new_tail


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
def find_candidates(
    weight: FloatArray,
    env: FloatArray,
    lo: int,
    a: int,
    b: int,
    before_n: int,
    after_n: int,
    floor: float,
) -> IntArray:
    """Columns ``a <= j < b`` where the fused detection function has a candidate peak.

    ``weight`` is ``(n_leads, m)``, for columns ``lo : lo + m`` of the buffer ``env``;
    returned columns count from ``lo``. The detection function is the weighted mean of
    the leads' envelopes; a candidate is a local
    maximum (strictly above its left neighbour) that is the largest value from
    ``before_n`` columns before it to ``after_n`` columns after it, and at least
    ``floor``.
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
        for k in range(max(0, j - before_n), min(m, j + after_n + 1)):
            if g[k] > v:
                dominant = False
                break
        if dominant:
            cands[n_cands] = j
            n_cands += 1
    return cands[:n_cands].copy()


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
