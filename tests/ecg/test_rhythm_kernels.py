"""Compiled atrial-measure kernels and the cached per-beat quantities: the numpy forms
they replace (the window's stacked segments and correlation matrix), bit for bit where
the summation order is the same, within a few ulp for the correlations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecg import _rhythm_kernels
from ecg.rhythm import AtrialState, _features, _rows, _window, atrial_start, atrial_step
from tests.ecg.test_rhythm import af_times, sinus_times, synth

FloatArray = npt.NDArray[np.float64]


# Values with ties: the selection's hard cases.
VALUES = st.lists(
    st.one_of(st.floats(-1.0, 1.0), st.sampled_from([0.0, 0.5, 1.0])), min_size=1, max_size=70
)


@settings(max_examples=200, deadline=None)
@given(VALUES)
def test_median_is_numpys(values: list[float]) -> None:
    """The selection median equals np.median, ties and even counts included."""
    x = np.asarray(values)
    assert _rhythm_kernels._sorted_median(x.copy()) == np.median(x)


@settings(max_examples=200, deadline=None)
@given(VALUES, st.sampled_from([0.0, 1.0, 50.0, 98.7, 99.0, 100.0]))
def test_percentile_is_numpys(values: list[float], q: float) -> None:
    """The selection percentile equals np.percentile (linear interpolation)."""
    x = np.asarray(values)
    assert _rhythm_kernels._percentile(x.copy(), q) == np.percentile(x, q)


def _spike_score_numpy(x: FloatArray, q: float, min_mv: float, m: int) -> FloatArray:
    step = np.diff(x, axis=0)
    up, down = step[:-1], -step[1:]
    with np.errstate(invalid="ignore"):
        same_way = up * down > 0  # NaN: False
    reversal = np.where(same_way, np.minimum(np.abs(up), np.abs(down)), 0.0)
    threshold = np.maximum(np.nanpercentile(np.abs(step), q, axis=0), min_mv)
    relative = reversal / threshold
    score = np.partition(relative, x.shape[1] - m, axis=1)[:, x.shape[1] - m]
    return np.concatenate([[0.0], score, [0.0]])


@pytest.mark.parametrize(("n_leads", "m"), [(1, 1), (2, 2), (12, 3), (12, 1)])
def test_spike_score_is_the_numpy_form(n_leads: int, m: int) -> None:
    """The pacing-spike score equals its numpy form (reversals, per-lead percentile,
    m-th largest lead), on a synthetic ECG with spikes, quantised samples and NaN."""
    signal, beats = synth(sinus_times(6.0, 0.7), n_leads=n_leads)
    signal[beats - 5] += 0.2
    signal = np.round(signal, 3)  # 1 µV steps: ties and flat runs
    signal[700, 0] = np.nan  # a lost sample
    signal[1500:1600, -1] = np.nan  # a lead off for 0.2 s
    got = _rhythm_kernels.spike_score(signal, 99.0, 0.02, m)
    np.testing.assert_allclose(got, _spike_score_numpy(signal, 99.0, 0.02, m), rtol=1e-12, atol=0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(100, 600), min_size=5, max_size=45))
def test_irregularity_is_the_numpy_expression(intervals: list[int]) -> None:
    """RR irregularity equals np.median(np.abs(np.diff(rr))) / np.median(rr)."""
    rr = np.asarray(intervals, dtype=np.float64)
    expected = float(np.median(np.abs(np.diff(rr))) / np.median(rr))
    assert _rhythm_kernels.irregularity(rr) == expected


def _band(shapes: FloatArray, width: int) -> FloatArray:
    band = np.zeros((shapes.shape[0], width))
    for row in range(shapes.shape[0]):
        _rhythm_kernels.correlate_previous(shapes, row, min(row, width - 1), band)
    return band


def test_correlations_and_dominant_beats_are_the_matrix_ones() -> None:
    """The band of correlations is shapes @ shapes.T within 1e-12, and the dominant
    beats those of the numpy medoid (median per row, argmax) of the matrix."""
    rng = np.random.default_rng(5)
    for n, size, ectopic in itertools.product((4, 7, 40), (12, 50, 603), (0.0, 0.3)):
        shapes = rng.standard_normal(size) + 0.2 * rng.standard_normal((n, size))
        odd = rng.random(n) < ectopic
        shapes[odd] = rng.standard_normal((int(odd.sum()), size))
        shapes /= np.linalg.norm(shapes, axis=1, keepdims=True)
        corr = shapes @ shapes.T
        band = _band(shapes, n)
        for i, j in itertools.product(range(n), repeat=2):
            value = band[max(i, j), abs(i - j)]
            assert value == band[max(i, j), abs(i - j)]
            assert math.isclose(value, corr[i, j], rel_tol=1e-12, abs_tol=1e-12)
        rows = np.arange(n, dtype=np.int64)
        medoid = int(np.argmax(np.median(corr, axis=1)))
        expected = corr[medoid] >= 0.9
        np.testing.assert_array_equal(_rhythm_kernels.dominant_rows(band, rows, 0.9), expected)


def test_window_sum_is_numpys_sum_of_the_stack() -> None:
    """Summing buffer rows in window order is np.stack(...).sum(axis=0) bit for bit."""
    rng = np.random.default_rng(6)
    for n_leads in (1, 2, 12):
        segments = rng.standard_normal((30, 135, n_leads)) * 10.0 ** rng.integers(-3, 3)
        for rows in ([3], [29, 0, 1, 2], list(range(5, 30)) + list(range(5))):
            chosen = np.asarray(rows, dtype=np.int64)
            out = np.empty(segments.shape[1:])
            _rhythm_kernels.window_sum(segments, chosen, out)
            expected = np.stack([segments[r] for r in rows]).sum(axis=0)
            np.testing.assert_array_equal(out, expected)


def test_detrend_segment_is_the_numpy_expressions() -> None:
    """A segment's mean and trend removed and its energy per lead are the numpy
    expressions' bit for bit (sums along the sample axis of a C-ordered array of two
    or more leads; one lead stays with numpy)."""
    rng = np.random.default_rng(7)
    for n_samples, n_leads in ((2, 2), (135, 2), (135, 12), (95, 3)):
        segment = rng.standard_normal((n_samples, n_leads)) * 10.0 ** rng.integers(-3, 3)
        segment += rng.standard_normal(n_leads) * 5.0
        trend = np.linspace(-1.0, 1.0, n_samples)[:, None]
        norm = float((trend * trend).sum())
        expected = segment.copy()
        expected -= np.add.reduce(expected, axis=0, keepdims=True) / n_samples
        expected -= np.add.reduce(expected * trend, axis=0, keepdims=True) / norm * trend
        energy = np.empty(n_leads)
        _rhythm_kernels.detrend_segment(segment, trend, norm, energy)
        np.testing.assert_array_equal(segment, expected)
        np.testing.assert_array_equal(energy, np.add.reduce(expected * expected, axis=0))


def test_window_coherence_is_the_numpy_form() -> None:
    """The window's coherence per lead is the numpy form's bit for bit (two or more
    leads), and left as it was where the mean energy is 1e-12 or less."""
    rng = np.random.default_rng(8)
    for n_leads in (2, 3, 12):
        segments = rng.standard_normal((30, 135, n_leads)) * 10.0 ** rng.integers(-3, 3)
        segments[:, :, 1] = 1e-9  # a lead with no energy to speak of
        energies = np.add.reduce(segments * segments, axis=1)
        for rows in ([3, 4, 5], [29, 0, 1, 2], list(range(5, 30)) + list(range(5))):
            chosen = np.asarray(rows, dtype=np.int64)
            total = np.empty(segments.shape[1:])
            _rhythm_kernels.window_sum(segments, chosen, total)
            average = total / len(chosen)
            energy = np.add.reduce(energies[chosen], axis=0) / len(chosen)
            expected = np.full(n_leads, np.nan)
            np.divide(
                np.add.reduce(average * average, axis=0), energy, expected, where=energy > 1e-12
            )
            per_lead = np.full(n_leads, np.nan)
            _rhythm_kernels.window_coherence(segments, energies, chosen, per_lead)
            np.testing.assert_array_equal(per_lead, expected)
            assert np.isnan(per_lead[1])


def _stacked_features(state: AtrialState, index: int, n_beats: int) -> tuple[float, FloatArray]:
    """(irregularity, coherence per lead) of a window as the measure was first written:
    the window's segments and shapes stacked, the correlation matrix by matrix product."""
    lo, hi = _window(state, index, n_beats)
    base = state.first_beat
    rows = _rows(state, lo, hi)
    shapes = state.shapes[rows]
    corr = shapes @ shapes.T
    medoid = int(np.argmax(np.median(corr, axis=1)))
    dominant = corr[medoid] >= state.config.dominant_corr
    plain = np.asarray([bool(state.normal[k - base]) for k in range(lo, hi)])
    ok = plain & dominant
    if 2 * ok.sum() < plain.sum():
        ok = plain
    per_lead = np.full(state.zi.shape[2], np.nan)
    if ok.sum() >= 3:
        stack = np.stack([state.segments[r] for r in rows[ok]])
        energy = (stack**2).sum(axis=1).mean(axis=0)
        average = stack.mean(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_lead = np.where(energy > 1e-12, (average**2).sum(axis=0) / energy, np.nan)
    samples = [state.samples[k - base] for k in range(lo, hi)]
    rr = [samples[k] - samples[k - 1] for k in range(1, hi - lo) if ok[k] and ok[k - 1]]
    irregularity = math.nan
    if len(rr) >= 4:
        values = np.asarray(rr, dtype=np.float64)
        irregularity = float(np.median(np.abs(np.diff(values))) / np.median(values))
    return irregularity, per_lead


@pytest.mark.parametrize("n_leads", [1, 2, 12])
def test_features_from_the_cached_beats_equal_the_stacked_computation(n_leads: int) -> None:
    """Each window's irregularity and per-lead coherence, from the ring buffers and the
    band of correlations, equal the stacked computation bit for bit (every lead count:
    numpy sums one lead pairwise, several in sequence); with ectopic beats of another
    shape, so that the dominant morphology decides."""
    times = np.concatenate([sinus_times(40.0, 0.8), 40.6 + af_times(40.0)])
    signal, beats = synth(times, p_wave=True, f_waves_mv=0.03, n_leads=n_leads)
    ectopic, _ = synth(times[::7] + 0.003, p_wave=False, n_leads=n_leads, noise_mv=0.0)
    signal[: ectopic.shape[0]] -= 0.8 * ectopic[: signal.shape[0]]
    state = atrial_start(n_leads, 500.0)
    checked = 0
    for lo in range(0, signal.shape[0], 1700):
        hi = lo + 1700
        atrial_step(signal[lo:hi], beats[(beats >= lo - 150) & (beats < hi - 150)], state)
        n = state.first_beat + len(state.samples)
        last = n - 1  # a window whose every beat's prematurity is known
        first = max(state.first_beat + state.config.window_beats // 2, state.n_features - 5)
        for index in range(first, min(last - state.config.window_beats // 2, n)):
            irregularity, coherence, per_lead = _features(state, index, last)
            expected_irr, expected_per_lead = _stacked_features(state, index, last)
            assert irregularity == expected_irr or math.isnan(irregularity) == math.isnan(
                expected_irr
            )
            np.testing.assert_array_equal(per_lead, expected_per_lead)
            finite = expected_per_lead[np.isfinite(expected_per_lead)]
            if finite.size:
                assert coherence == finite.max()
            else:
                assert math.isnan(coherence)
            checked += 1
    assert checked > 50
