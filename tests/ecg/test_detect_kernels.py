"""Tests of the detector's compiled kernels: each equals a plain numpy/Python form.

Kernels of ecg._detect_kernels, ecg._detect_decide and ecg._detect_vf_kernels.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal as sps
from scipy.ndimage import minimum_filter1d

from ecg import _detect_decide as decide
from ecg import _detect_kernels as kernels
from ecg import _detect_vf_kernels as vf_kernels

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

SEEDS = range(4)


def _envelope_like(rng: np.random.Generator, n_leads: int, n: int) -> FloatArray:
    """Non-negative, smooth-ish values with ties, like a detector envelope."""
    x = np.abs(np.cumsum(rng.standard_normal((n_leads, n)), axis=1)) * 0.05
    x[:, rng.integers(0, n, n // 10)] = 0.0
    return np.round(x, 3)


def _cumsum0(x: FloatArray | BoolArray) -> FloatArray:
    """Cumulative sum along columns with a leading 0."""
    out = np.zeros((x.shape[0], x.shape[1] + 1))
    np.cumsum(x, axis=1, out=out[:, 1:])
    return out


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("factor", [1, 2, 3, 5])
def test_block_average(seed: int, factor: int) -> None:
    """Block means over carried plus new samples equal strided numpy sums."""
    rng = np.random.default_rng(seed)
    pending = rng.standard_normal((3, int(rng.integers(0, factor))))
    x = rng.standard_normal((int(rng.integers(0, 50)), 3))
    xt = np.concatenate([pending, x.T], axis=1)
    n_full = xt.shape[1] // factor * factor
    expected = xt[:, 0:n_full:factor].copy()
    if factor > 1:
        for j in range(1, factor):
            expected += xt[:, j:n_full:factor]
        expected *= 1.0 / factor
    means, rest = kernels.block_average(pending, x, factor)
    np.testing.assert_array_equal(means, expected)
    np.testing.assert_array_equal(rest, xt[:, n_full:])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("factor", [1, 2, 3])
def test_vf_average(seed: int, factor: int) -> None:
    """VF-rate block means and "any bad" equal strided numpy forms."""
    rng = np.random.default_rng(seed)
    p = int(rng.integers(0, factor))
    pending, pending_bad = rng.standard_normal((2, p)), rng.uniform(size=(2, p)) < 0.3
    d, bad = rng.standard_normal((2, 40)), rng.uniform(size=(2, 40)) < 0.1
    x, b = np.concatenate([pending, d], axis=1), np.concatenate([pending_bad, bad], axis=1)
    n_full = x.shape[1] // factor * factor
    expected, expected_bad = x[:, 0:n_full:factor].copy(), b[:, 0:n_full:factor].copy()
    for j in range(1, factor):
        expected += x[:, j:n_full:factor]
        expected_bad |= b[:, j:n_full:factor]
    expected *= 1.0 / factor
    means, means_bad, rest, rest_bad = vf_kernels.vf_average(pending, pending_bad, d, bad, factor)
    np.testing.assert_array_equal(means, expected)
    np.testing.assert_array_equal(means_bad, expected_bad)
    np.testing.assert_array_equal(rest, x[:, n_full:])
    np.testing.assert_array_equal(rest_bad, b[:, n_full:])


@pytest.mark.parametrize("n_sections", [1, 2, 3])
def test_sos_filter_is_scipys(n_sections: int) -> None:
    """The compiled sosfilt equals scipy's bit for bit, chunk after chunk."""
    rng = np.random.default_rng(n_sections)
    sos = np.ascontiguousarray(
        sps.butter(2 * n_sections, 0.2, output="sos") if n_sections != 2
        else sps.butter(2, [1.0, 20.0], "bandpass", fs=60.0, output="sos")
    )  # fmt: skip
    x = rng.standard_normal((3, 90))
    zi = np.ascontiguousarray(rng.standard_normal((3, n_sections, 2)))
    zi_ref = zi.transpose(1, 0, 2).copy()
    for chunk in np.split(x, [10, 11], axis=1):
        expected, zi_ref = sps.sosfilt(sos, chunk, axis=1, zi=zi_ref)
        out = kernels.sos_filter(np.ascontiguousarray(chunk), sos, zi)
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(zi, zi_ref.transpose(1, 0, 2))


def _hold_and_flag_reference(
    chunks: list[FloatArray], flat_n: int
) -> tuple[FloatArray, BoolArray, list[tuple[int, int, int]]]:
    """Hold NaN/inf at the last valid value (0 before any); flat = no change in flat_n."""
    d = np.concatenate(chunks, axis=1)
    n_leads, n = d.shape
    held = np.where(np.isfinite(d), d, np.nan)
    bad = np.isnan(held)
    onsets = []
    for lead in range(n_leads):
        last = 0.0
        for j in range(n):
            if math.isnan(held[lead, j]):
                held[lead, j] = last
            last = held[lead, j]
        changed = np.concatenate([[True], held[lead, 1:] != held[lead, :-1]])
        for j in range(n):
            window = changed[max(0, j - flat_n + 1) : j + 1]
            if j >= flat_n - 1 and not window.any():
                bad[lead, j] = True
                if j == flat_n - 1 or changed[j - flat_n]:
                    onsets.append((lead, j - flat_n, j))
    return held, bad, sorted(onsets)


@pytest.mark.parametrize("seed", SEEDS)
def test_hold_and_flag_in_chunks(seed: int) -> None:
    """NaN/inf hold, flat flags and flat onsets equal a direct form, chunk by chunk."""
    rng = np.random.default_rng(seed)
    flat_n = 4
    d = np.round(rng.standard_normal((2, 120)), 0)  # many repeated values
    d[0, 30:45] = 1.5
    d[0, 60:120] = np.repeat(np.arange(10.0), 6)  # ten flat onsets in one chunk or so
    d[1, rng.integers(0, 120, 15)] = np.nan
    d[1, rng.integers(0, 120, 3)] = np.inf
    d[1, :3] = np.nan
    cuts = np.sort(rng.integers(0, 120, 5))
    chunks = np.split(d.copy(), cuts, axis=1)
    last_value = np.full(2, np.nan)
    unchanged_n = np.zeros(2, np.int64)
    held, bad, onsets = [], [], []
    first_i = 0
    for chunk in chunks:
        c = np.ascontiguousarray(chunk)
        b, o = kernels.hold_and_flag(c, last_value, unchanged_n, flat_n, first_i)
        held.append(c)
        bad.append(b)
        onsets.extend(tuple(row) for row in o.tolist())
        first_i += c.shape[1]
    ref_held, ref_bad, ref_onsets = _hold_and_flag_reference([d], flat_n)
    np.testing.assert_array_equal(np.concatenate(held, axis=1), ref_held)
    np.testing.assert_array_equal(np.concatenate(bad, axis=1), ref_bad)
    assert sorted(onsets) == ref_onsets


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("high_hz", [20.0, 45.0])
def test_band_rms_in_chunks(seed: int, high_hz: float) -> None:
    """Band-pass + moving RMS equals sosfilt and a per-chunk cumulative-sum RMS."""
    rng = np.random.default_rng(seed)
    win = 12
    sos = np.ascontiguousarray(sps.butter(2, [5.0, high_hz], "bandpass", fs=120.0, output="sos"))
    if high_hz > 40:  # three sections: the general path
        sos = np.ascontiguousarray(np.concatenate([sos, sos[:1]]))
    d = rng.standard_normal((3, 200))
    zi = np.zeros((3, sos.shape[0], 2))
    zi_ref = zi.copy()
    tail = np.zeros((3, win - 1))
    tail_ref = tail.copy()
    for chunk in np.split(d, [5, 7, 100], axis=1):
        c = np.ascontiguousarray(chunk)
        env, tail = kernels.band_rms(c, sos, zi, tail)
        y, zf = sps.sosfilt(sos, c, axis=1, zi=zi_ref.transpose(1, 0, 2))
        zi_ref = np.ascontiguousarray(zf.transpose(1, 0, 2))
        sq = np.concatenate([tail_ref, y * y], axis=1)
        cs = np.cumsum(sq, axis=1)
        expected = np.empty(y.shape)
        if y.shape[1]:
            expected[:, 0] = cs[:, win - 1]
            expected[:, 1:] = cs[:, win:] - cs[:, :-win]
        expected = np.sqrt(np.maximum(expected, 0.0) * (1.0 / win))
        tail_ref = sq[:, sq.shape[1] - (win - 1) :]
        np.testing.assert_array_equal(env, expected)
        np.testing.assert_array_equal(tail, tail_ref)
        np.testing.assert_array_equal(zi, zi_ref)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("size", [2, 5, 30])
def test_floor_cumsum(seed: int, size: int) -> None:
    """The cumulative trailing minimum equals scipy's minimum_filter1d, then np.cumsum."""
    x = _envelope_like(np.random.default_rng(seed), 1, 97)
    out = np.empty(x.shape[1] + 1)
    decide.floor_cumsum(x[0], size, out)
    expected = _cumsum0(minimum_filter1d(x, size, axis=1, mode="nearest", origin=(size - 1) // 2))
    np.testing.assert_array_equal(out, expected[0])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("block_n", [1, 2, 7, 240])
def test_block_max_median(seed: int, block_n: int) -> None:
    """Block maxima and medians equal numpy's, ties and constant blocks included."""
    rng = np.random.default_rng(seed)
    env = _envelope_like(rng, 2, block_n * 9)
    env[1, :block_n] = 0.25
    bmax, bmedian = kernels.block_max_median(env, 9, block_n)
    blocks = env.reshape(2, 9, block_n)
    np.testing.assert_array_equal(bmax, blocks.max(axis=2))
    np.testing.assert_array_equal(bmedian, np.median(blocks, axis=2))


@pytest.mark.parametrize("seed", SEEDS)
def test_history_median(seed: int) -> None:
    """Medians over the last blocks (fewer at the start) equal np.median's."""
    rng = np.random.default_rng(seed)
    hist = np.round(rng.uniform(0.0, 2.0, (3, 20)), 1)
    first_b, depth = 5, 8
    blocks = np.arange(first_b + 1, first_b + 21, dtype=np.int64)
    out = kernels.history_median(hist, first_b, blocks, depth)
    for q, b in enumerate(blocks.tolist()):
        stop = b - first_b
        expected = np.median(hist[:, max(0, stop - depth) : stop], axis=1)
        np.testing.assert_array_equal(out[:, q], expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_lead_weights(seed: int) -> None:
    """Lead weights equal the numpy form: floor activity, bad samples, settling."""
    rng = np.random.default_rng(seed)
    n_leads, n = 3, 300
    env = _envelope_like(rng, n_leads, n)
    block_weight = rng.uniform(0.0, 1.0, (n_leads, n))
    bad = np.zeros((n_leads, n), bool)
    bad[1, 100:120] = True
    recent = np.array([10**9, 10**9, 3], np.int64)
    lo, hi, floor_n, noise_n, settle_n, reach_n, calm = 40, n, 30, 120, 36, 4, 0.08
    weight = decide.lead_weights(
        env, block_weight, bad, lo, hi, floor_n, noise_n, settle_n, reach_n, recent, calm
    )
    floor = minimum_filter1d(env, floor_n, axis=1, mode="nearest", origin=(floor_n - 1) // 2)
    cols = np.arange(lo, hi)
    ahead = np.minimum(cols + reach_n + 1, n)
    cf, cb = _cumsum0(floor), _cumsum0(bad)
    activity = (cf[:, ahead] - cf[:, np.maximum(cols - noise_n, 0)]) / np.maximum(
        ahead - np.maximum(cols - noise_n, 0), 1
    )
    activity = calm / np.maximum(activity, calm)
    expected = block_weight[:, lo:hi] * (activity * activity)
    near = cb[:, ahead] - cb[:, np.maximum(cols - settle_n, 0)] > 0
    near |= cols[None, :] + recent[:, None] <= settle_n
    np.testing.assert_array_equal(weight, np.where(near, 0.0, expected))


@pytest.mark.parametrize("seed", SEEDS)
def test_find_candidates(seed: int) -> None:
    """Candidates are the local maxima of the weighted mean of envelopes that dominate it
    from ``sup`` columns before to ``ahead`` after."""
    rng = np.random.default_rng(seed)
    n_leads, lo, m, sup, ahead = 12, 7, 400, 12, 14
    env = _envelope_like(rng, n_leads, lo + m)
    weight = rng.uniform(0.0, 1.0, (n_leads, m))
    weight[:, 50:60] = 0.0
    a, b = 5, m - 3
    cands = kernels.find_candidates(weight, env, lo, a, b, sup, ahead, 0.05)
    g = np.einsum("ij,ij->j", weight, env[:, lo:]) / np.maximum(weight.sum(axis=0), 1e-12)
    padded = np.concatenate([np.full(sup, -np.inf), g, np.full(ahead, -np.inf)])
    dominant = sliding_window_view(padded, sup + ahead + 1).max(axis=1)
    j = np.arange(a, b)
    right = np.append(g[a + 1 : b + 1], -np.inf)[: j.shape[0]]
    is_cand = (g[j] > g[j - 1]) & (g[j] >= right) & (g[j] >= dominant[j]) & (g[j] >= 0.05)
    np.testing.assert_array_equal(cands, j[is_cand])


def _decide_reference(
    cands: IntArray,
    env: FloatArray,
    weight: FloatArray,
    vis: list[float],
    vf_on: tuple[int, int],
    p: dict[str, float],
) -> tuple[list[int], list[list[float]], list[float], list[float]]:
    """The detector's decision loop in plain Python (its form before compilation)."""
    noise, level, rr_s, rr_count, last_i, last_f = 0.1, 1.0, 0.8, 0, -(10**9), 0.0
    peaks, peak_w = [], []
    half, fs = int(p["half"]), p["fs"]
    m = weight.shape[1]
    for c in cands.tolist():
        elapsed = c - last_i
        at = min(c + int(p["la"]), int(p["end_i"]))
        if elapsed < p["refr"] or vf_on[0] <= at < vf_on[1]:
            continue
        cols = np.clip(np.arange(c - half, c + half + 1), 0, m - 1)
        e_row = env[:, cols].max(axis=1).tolist()
        w_row = weight[:, c].tolist()
        vis_factor = [min(1.0, v * (1.0 / p["visible"])) ** 2 for v in vis]
        dyn = [w * f for w, f in zip(w_row, vis_factor, strict=True)]
        total = sum(dyn)
        value = sum(d * e for d, e in zip(dyn, e_row, strict=True)) / total if total > 0 else 0.0
        thr = noise + p["fraction"] * (level - noise)
        if elapsed > p["gap_n"] * rr_s:
            thr *= 0.5
        elif (
            elapsed < p["prem_n"] * rr_s
            and elapsed <= p["qt_n"] * rr_s**0.5
            and rr_count >= p["rr_learnt"]
        ):
            thr = max(thr, p["prem_thr"] * level)
        if value >= thr and not (elapsed < p["twave"] and value < p["t_ratio"] * last_f):
            peaks.append(c)
            peak_w.append(dyn)
            if elapsed < 3 * fs:
                rr_s = 0.875 * rr_s + 0.125 * elapsed / fs
                rr_count += 1
            last_i, last_f = c, value
            level = 0.875 * level + 0.125 * value
            vis = [
                0.9 * v + 0.1 * min(e, 1.5) if w > 0 else v
                for v, e, w in zip(vis, e_row, w_row, strict=True)
            ]
        else:
            noise = 0.875 * noise + 0.125 * value
    return peaks, peak_w, vis, [noise, level, rr_s, rr_count, last_i, last_f]


@pytest.mark.parametrize("seed", SEEDS)
def test_decide_candidates(seed: int) -> None:
    """The compiled decision loop accepts the same beats with the same levels as Python."""
    rng = np.random.default_rng(seed)
    n_leads, m = 3, 3000
    env = np.minimum(_envelope_like(rng, n_leads, m) * 8.0, 3.0)
    weight = rng.uniform(0.0, 1.0, (n_leads, m))
    weight[2, 1000:1500] = 0.0
    cands = np.sort(rng.choice(np.arange(10, m - 10), 400, replace=False)).astype(np.int64)
    p = {
        "half": 7, "la": 19, "end_i": m, "refr": 24, "twave": 43, "fs": 120.0,
        "fraction": 0.3, "t_ratio": 0.6, "prem_thr": 0.8, "gap_n": 180.0, "prem_n": 60.0,
        "qt_n": 52.8, "rr_learnt": 8, "visible": 1.0,
    }  # fmt: skip
    vf_on = (2000, 2300)
    vis = rng.uniform(0.2, 1.2, n_leads)
    peaks, peak_w, vis_ref, levels = _decide_reference(cands, env, weight, vis.tolist(), vf_on, p)
    out = decide.decide_candidates(
        cands, env, weight, 0, 0, m, 7, 19, 24, 43, 120.0, 0.3, 0.6, 0.8, 180.0, 60.0, 52.8, 8,
        1.0,
        np.array([vf_on], np.int64), vis, 0.1, 1.0, 0.8, 0, -(10**9), 0.0,
    )  # fmt: skip
    assert len(peaks) > 10
    np.testing.assert_array_equal(out[0], peaks)
    np.testing.assert_array_equal(out[1], np.asarray(peak_w).reshape(-1, n_leads))
    np.testing.assert_array_equal(vis, vis_ref)
    assert list(out[2:]) == levels


@pytest.mark.parametrize("seed", SEEDS)
def test_locate_peaks(seed: int) -> None:
    """R-peak columns equal the numpy form (baseline-corrected, weighted, clamped)."""
    rng = np.random.default_rng(seed)
    n_leads, n, half, edge = 2, 200, 7, 12
    d = rng.standard_normal((n_leads, n))
    inv_scale = rng.uniform(0.5, 2.0, (n_leads, n))
    bad = rng.uniform(size=(n_leads, n)) < 0.1
    centre = np.array([0, 3, 50, 120, 195, 199], np.int64)
    weights = rng.uniform(0.0, 1.0, (centre.shape[0], n_leads))
    best = kernels.locate_peaks(d, inv_scale, bad, centre, weights, half, edge)
    cols = np.clip(centre[:, None] + np.arange(-half, half + 1), 0, n - 1)
    base = 0.5 * (d[:, np.clip(centre - edge, 0, n - 1)] + d[:, np.clip(centre + edge, 0, n - 1)])
    w = np.where(bad[:, cols], 0.0, weights.T[:, :, None] + 1e-6)
    mag = np.abs(d[:, cols] - base[:, :, None]) * inv_scale[:, cols]
    expected = cols[np.arange(cols.shape[0]), np.argmax((mag * w).sum(axis=0), axis=1)]
    np.testing.assert_array_equal(best, expected)


@pytest.mark.parametrize("n", [1, 7, 8, 9, 127, 128, 129, 179, 180, 300, 1000, 2049])
def test_pairwise_sum_is_numpys(n: int) -> None:
    """The summation used for VF leakage gives numpy's sum bit for bit."""
    a = np.random.default_rng(n).standard_normal(n + 5) * 1e3
    assert vf_kernels._pairwise_sum(a, 3, n) == np.sum(a[3 : 3 + n])


def _leakage_reference(
    buf: FloatArray, bad: BoolArray, ends: IntArray, w: int, hop: int, lo_n: int, hi_n: int
) -> FloatArray:
    """VF-filter leakage per window in numpy (the detector's form before compilation)."""
    n_leads = buf.shape[0]
    out = np.ones(ends.shape[0])
    n_blocks, per = buf.shape[1] // hop, w // hop
    blocks = np.abs(buf[:, : n_blocks * hop]).reshape(n_leads, n_blocks, hop)
    c_abs = _cumsum0(blocks.sum(axis=2))
    c_bad = _cumsum0(bad[:, : n_blocks * hop].reshape(n_leads, n_blocks, hop).any(axis=2))
    peak = np.lib.stride_tricks.sliding_window_view(blocks.max(axis=2), per, axis=1).max(axis=2)
    last = ends // hop
    s_abs = c_abs[:, last] - c_abs[:, last - per]
    fill = (s_abs / (w * np.maximum(peak[:, last - per], 1e-12))).mean(axis=0)
    pick = np.flatnonzero(fill >= 0.2)
    e, last, s_abs = ends[pick], last[pick], s_abs[:, pick]
    idx = e[:, None] - w + np.arange(w)[None, :]
    leak = np.empty(s_abs.shape)
    in_band = np.empty(s_abs.shape, bool)
    for lead in range(n_leads):
        win = buf[lead, idx]
        s_diff = np.abs(win[:, 1:] - win[:, :-1]).sum(axis=1)
        half = np.floor(math.pi * s_abs[lead] / np.maximum(s_diff, 1e-12) + 0.5)
        in_band[lead] = (half >= lo_n) & (half <= hi_n)
        shifted = buf[lead, np.maximum(idx - np.clip(half, lo_n, hi_n).astype(int)[:, None], 0)]
        num = np.abs(win + shifted).sum(axis=1)
        leak[lead] = num / np.maximum(s_abs[lead] + np.abs(shifted).sum(axis=1), 1e-12)
    usable = (c_bad[:, last] == c_bad[:, last - per]) & in_band & (s_abs > 0)
    out[pick] = np.where(usable, leak, 1.0).mean(axis=0)
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_vf_leakage(seed: int) -> None:
    """VF leakage per window equals the numpy form on sinusoids, beats and noise."""
    rng = np.random.default_rng(seed)
    hop, w, n = 30, 180, 1500
    t = np.arange(n) / 60.0
    buf = np.stack(
        [
            np.sin(2 * np.pi * rng.uniform(3, 6) * t),
            np.where(np.sin(2 * np.pi * 1.2 * t) > 0.95, 1.0, 0.0) + 0.01 * rng.standard_normal(n),
            rng.standard_normal(n),
        ]
    )
    bad = np.zeros(buf.shape, bool)
    bad[2, 700:720] = True
    ends = np.arange(w + 60, n + 1, hop, dtype=np.int64)
    leak = vf_kernels.vf_leakage(buf, bad, ends, w, hop, 3, 15, 0.2)
    np.testing.assert_array_equal(leak, _leakage_reference(buf, bad, ends, w, hop, 3, 15))
