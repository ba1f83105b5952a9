"""Filters: band edges and notch depth, chunked equals batch, NaN handling, the cache."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import signal as sps

from ecg.errors import ConfigError, SignalError
from ecg.filters import (
    FilterMode,
    design_filter,
    filter_causal,
    filter_leads_causal,
    filter_start,
    filter_step,
    filter_zero_phase,
    highpass_zero_phase,
    sosfiltfilt_columns,
)

SAMPLING_RATES_HZ = [100.0, 128.0, 250.0, 360.0, 500.0, 1000.0, 2000.0]


def _gain_db(sos: NDArray[np.float64], f_hz: list[float], fs_hz: float) -> NDArray[np.float64]:
    _, response = sps.sosfreqz(sos, worN=np.asarray(f_hz), fs=fs_hz)
    return np.asarray(20.0 * np.log10(np.abs(response)), dtype=np.float64)


@pytest.mark.parametrize("fs_hz", SAMPLING_RATES_HZ)
@pytest.mark.parametrize("mode", list(FilterMode))
def test_band_edges_are_minus_3_db(fs_hz: float, mode: FilterMode) -> None:
    """Causal and zero-phase (squared) responses are -3 dB at both designed edges."""
    design = design_filter(fs_hz, mode, mains_hz=None)
    nominal = (0.05, 150.0) if mode is FilterMode.DIAGNOSTIC else (0.5, 40.0)
    assert design.low_hz == nominal[0]
    assert design.high_hz == min(nominal[1], 0.4 * fs_hz)
    edges = [design.low_hz, design.high_hz]
    causal = _gain_db(design.sos_causal, edges, fs_hz)
    zero_phase = 2.0 * _gain_db(design.sos_zero_phase, edges, fs_hz)
    np.testing.assert_allclose(causal, -3.01, atol=0.02)
    np.testing.assert_allclose(zero_phase, -3.01, atol=0.02)


@pytest.mark.parametrize("mode", list(FilterMode))
def test_passband_flat_and_stopband_attenuated(mode: FilterMode) -> None:
    """Mid-band within 0.5 dB; a decade outside each edge at least 20 dB down."""
    fs_hz = 500.0
    design = design_filter(fs_hz, mode, mains_hz=None)
    mid = float(np.sqrt(design.low_hz * design.high_hz))
    outside = [design.low_hz / 10.0, min(design.high_hz * 1.6, 0.49 * fs_hz)]
    assert abs(_gain_db(design.sos_causal, [mid], fs_hz)[0]) < 0.5
    assert np.all(_gain_db(design.sos_causal, outside, fs_hz) < -15.0)
    assert _gain_db(design.sos_causal, [outside[0]], fs_hz)[0] < -35.0


@pytest.mark.parametrize(("mains_hz", "fs_hz"), [(50.0, 360.0), (60.0, 360.0), (50.0, 500.0)])
def test_notch_depth_at_mains(mains_hz: float, fs_hz: float) -> None:
    """The notch takes the mains frequency down by more than 40 dB and leaves ±5 Hz alone."""
    design = design_filter(fs_hz, FilterMode.DIAGNOSTIC, mains_hz=mains_hz)
    assert design.mains_hz == mains_hz
    without = design_filter(fs_hz, FilterMode.DIAGNOSTIC, mains_hz=None)
    gain = _gain_db(design.sos_causal, [mains_hz], fs_hz)[0]
    assert gain < -40.0
    near = [mains_hz - 5.0, mains_hz + 5.0]
    difference = _gain_db(design.sos_causal, near, fs_hz) - _gain_db(
        without.sos_causal, near, fs_hz
    )
    assert np.all(np.abs(difference) < 0.5)


def test_notch_removes_mains_from_a_signal() -> None:
    """A 50 Hz sine added to an ECG-band sine is removed by the zero-phase filter."""
    fs_hz = 500.0
    t = np.arange(int(20 * fs_hz)) / fs_hz
    wanted = np.sin(2 * np.pi * 10.0 * t)
    y = filter_zero_phase(wanted + 0.5 * np.sin(2 * np.pi * 50.0 * t), fs_hz, mains_hz=50.0)
    middle = slice(int(2 * fs_hz), int(18 * fs_hz))
    assert np.max(np.abs(y[middle] - wanted[middle])) < 0.02


@pytest.mark.parametrize("fs_hz", [100.0, 120.0])
def test_notch_skipped_at_or_above_nyquist(fs_hz: float) -> None:
    """50 or 60 Hz mains at or above fs/2 gets no notch."""
    assert design_filter(fs_hz, "diagnostic", mains_hz=fs_hz / 2).mains_hz is None


def test_designs_are_cached() -> None:
    """The same (fs, mode, mains) returns the very same design object."""
    assert design_filter(360.0, "monitoring", 60.0) is design_filter(360, FilterMode.MONITORING, 60)
    assert design_filter(360.0, "monitoring", 60.0) is not design_filter(360.0, "monitoring", 50.0)


@pytest.mark.parametrize(
    ("fs_hz", "mode", "mains_hz"),
    [(0.0, "diagnostic", 50.0), (float("nan"), "diagnostic", 50.0), (360.0, "holter", 50.0)],
)
def test_bad_configuration(fs_hz: float, mode: str, mains_hz: float) -> None:
    """Non-positive rates and unknown modes are ConfigErrors (also ValueErrors)."""
    with pytest.raises(ConfigError):
        design_filter(fs_hz, mode, mains_hz)
    with pytest.raises(ValueError, match=r"fs_hz|mode"):
        design_filter(fs_hz, mode, mains_hz)


def _ecg_like(n_samples: int, n_leads: int, seed: int) -> NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    drift = np.cumsum(rng.normal(0, 0.01, (n_samples, n_leads)), axis=0)
    return drift + rng.normal(0, 0.2, (n_samples, n_leads)) + 2.0


@settings(max_examples=40, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=8),
    mode=st.sampled_from(list(FilterMode)),
    with_gaps=st.booleans(),
)
def test_chunked_equals_one_shot(cuts: list[int], mode: FilterMode, with_gaps: bool) -> None:
    """Stopping and continuing the causal filter at any cuts equals filtering in one go."""
    x = _ecg_like(3000, 3, seed=1)
    if with_gaps:
        x[0:7, 1] = np.nan
        x[1000:1400, 0] = np.nan
        x[2999, 2] = np.nan
        x[1500, 2] = np.nan
    expected = filter_causal(x, 360.0, mode)
    state = filter_start(3, 360.0, mode)
    pieces = []
    for chunk in np.split(x, sorted(cuts)):
        y, state = filter_step(chunk, state)
        pieces.append(y)
    got = np.concatenate(pieces)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(x))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert state.n_samples == 3000


@pytest.mark.parametrize("n_leads", [1, 12])
def test_running_step_is_scipy_sosfilt_bit_for_bit(n_leads: int) -> None:
    """A step of a running stream equals scipy's sosfilt with its state, and keeps the old state."""
    x = _ecg_like(600, n_leads, seed=3)
    _, state = filter_step(x[:100], filter_start(n_leads, 500.0, FilterMode.MONITORING))
    zi_before = state.zi.copy()
    y, after = filter_step(x[100:], state)
    expected, zf = sps.sosfilt(state.design.sos_causal, x[100:], axis=0, zi=state.zi)
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(after.zi, zf)
    np.testing.assert_array_equal(state.zi, zi_before)


def test_causal_starts_without_offset_step() -> None:
    """A stream with a 300 mV electrode offset does not open with a step transient."""
    x = np.full((2000, 1), 300.0) + 0.01 * np.sin(np.arange(2000) / 10.0)[:, None]
    y = filter_causal(x, 500.0, "monitoring")
    assert np.max(np.abs(y)) < 0.05


def test_nan_does_not_poison_the_stream() -> None:
    """After a NaN gap both forms produce finite output again, and other leads are untouched."""
    x = _ecg_like(5000, 2, seed=2)
    x[2000:2100, 0] = np.nan
    for y in (filter_causal(x, 500.0), filter_zero_phase(x, 500.0)):
        assert np.isnan(y[2000:2100, 0]).all()
        assert np.isfinite(y[2100:, 0]).all()
        assert np.isfinite(y[:, 1]).all()
        clean = filter_zero_phase(x[:, 1], 500.0)
    np.testing.assert_allclose(filter_zero_phase(x, 500.0)[:, 1], clean)


@pytest.mark.parametrize("gap", [False, True])
def test_zero_phase_lead_major_is_the_transpose(gap: bool) -> None:
    """lead_major gives the sample-major result transposed, bit for bit, with
    contiguous rows; with or without a NaN gap, in any band."""
    x = _ecg_like(5000, 3, seed=5)
    if gap:
        x[1000:1200, 1] = np.nan
    for mode in FilterMode:
        expected = filter_zero_phase(x, 500.0, mode)
        rows = filter_zero_phase(x, 500.0, mode, lead_major=True)
        np.testing.assert_array_equal(rows, expected.T)
        assert rows.strides[1] == 8
    one = x[:, 0]
    np.testing.assert_array_equal(
        filter_zero_phase(one, 500.0, lead_major=True), filter_zero_phase(one, 500.0)
    )


def test_zero_phase_has_no_delay() -> None:
    """The peak of a filtered pulse stays at its sample; the causal one is delayed."""
    fs_hz = 500.0
    x = np.zeros(5000)
    x[2500] = 1.0
    x = np.convolve(x, np.hanning(21), mode="same")
    assert int(np.argmax(filter_zero_phase(x, fs_hz, "monitoring"))) == 2500
    assert int(np.argmax(filter_causal(x, fs_hz, "monitoring"))) > 2500


def test_one_dimensional_input_keeps_its_shape() -> None:
    """A 1-D signal comes back 1-D from both forms."""
    x = _ecg_like(1000, 1, seed=3)[:, 0]
    assert filter_zero_phase(x, 250.0).shape == (1000,)
    assert filter_causal(x, 250.0).shape == (1000,)


@pytest.mark.parametrize("n_samples", [0, 1, 2])
def test_very_short_signals(n_samples: int) -> None:
    """Empty, 1-sample and 2-sample signals filter to finite arrays of their shape."""
    x = np.ones((n_samples, 2))
    for y in (filter_zero_phase(x, 250.0), filter_causal(x, 250.0)):
        assert y.shape == (n_samples, 2)
        assert np.isfinite(y).all()


def test_wrong_lead_count_in_a_chunk() -> None:
    """A chunk with a different number of leads than the stream is a SignalError."""
    state = filter_start(2, 250.0)
    with pytest.raises(SignalError, match="3 leads"):
        filter_step(np.zeros((10, 3)), state)
    with pytest.raises(SignalError):
        filter_zero_phase(np.zeros((2, 2, 2)), 250.0)
    with pytest.raises(ConfigError):
        filter_start(0, 250.0)


def test_zero_phase_short_segment_matches_long_record() -> None:
    """A 10 s excerpt starting on a QRS filters like the same stretch of a 60 s record."""
    from fixtures.make_fixtures import regular_beats, synthetic_ecg

    fs_hz = 360.0
    ecg = synthetic_ecg(fs_hz, 60.0, regular_beats(60.0, 70.0), n_leads=2) + 1.5
    long = filter_zero_phase(ecg, fs_hz)
    start = int(np.argmax(ecg[int(20 * fs_hz) : int(21 * fs_hz), 0])) + int(20 * fs_hz)
    excerpt = filter_zero_phase(ecg[start : start + int(10 * fs_hz)], fs_hz)
    assert np.max(np.abs(excerpt - long[start : start + int(10 * fs_hz)])) < 0.05


# --------------------------------------------------------------------------- annotation forms


def _spiky(fs_hz: float, duration_s: float, offset_mv: float) -> NDArray[np.float64]:
    t = np.arange(int(duration_s * fs_hz)) / fs_hz
    beats = np.exp(-(((t % 0.8) - 0.05) ** 2) / (2 * 0.01**2))  # 1 mV spikes at 75 bpm
    return np.stack([offset_mv + beats, -offset_mv - 0.5 * beats], axis=1)


def test_leads_causal_is_the_causal_filter_after_settling() -> None:
    """filter_leads_causal differs from filter_causal only in its start (same filter)."""
    fs_hz = 250.0
    x = _spiky(fs_hz, 60.0, offset_mv=1.5)
    ours = filter_leads_causal(np.ascontiguousarray(x.T), fs_hz).T
    stream = filter_causal(x, fs_hz)
    settled = slice(int(40 * fs_hz), None)
    np.testing.assert_allclose(ours[settled], stream[settled], atol=1e-4)


def test_leads_causal_starts_at_the_baseline_not_the_first_sample() -> None:
    """A record opening on a QRS peak has no start-up excursion of the peak's height."""
    fs_hz = 360.0
    x = _spiky(fs_hz, 10.0, offset_mv=2.0)[int(0.05 * fs_hz) :]  # first sample on a peak
    ours = filter_leads_causal(np.ascontiguousarray(x.T), fs_hz).T
    stream = filter_causal(x, fs_hz)
    between_beats = slice(int(0.3 * fs_hz), int(0.6 * fs_hz))
    assert np.abs(ours[between_beats]).max() < 0.1
    assert np.abs(stream[between_beats]).max() > 0.5


def test_leads_causal_filters_each_valid_run_alone() -> None:
    """NaN stays NaN, and each run of valid samples is filtered as if it were alone."""
    fs_hz = 250.0
    x = np.ascontiguousarray(_spiky(fs_hz, 12.0, offset_mv=0.3).T)
    x[0, 1000:1400] = np.nan
    out = filter_leads_causal(x, fs_hz)
    assert np.isnan(out[0, 1000:1400]).all()
    assert np.isfinite(out[1]).all()
    np.testing.assert_array_equal(out[0, 1400:], filter_leads_causal(x[:1, 1400:], fs_hz)[0])
    np.testing.assert_array_equal(out[1], filter_leads_causal(x[1:], fs_hz)[0])


def test_leads_causal_refuses_other_shapes() -> None:
    """Only (n_leads, n_samples) arrays; zero samples give zero samples."""
    with pytest.raises(SignalError):
        filter_leads_causal(np.zeros(10), 250.0)
    assert filter_leads_causal(np.zeros((2, 0)), 250.0).shape == (2, 0)


@pytest.mark.parametrize("mode", list(FilterMode))
def test_highpass_zero_phase_edge_at_a_low_rate(mode: FilterMode) -> None:
    """At 2 Hz the high-pass alone passes its edge at -3 dB and a decade above intact."""
    fs_hz = 2.0
    edge_hz = 0.05 if mode is FilterMode.DIAGNOSTIC else 0.5
    t = np.arange(int(40 / edge_hz * fs_hz)) / fs_hz
    middle = slice(t.size // 4, 3 * t.size // 4)
    for f_hz, expected in ((edge_hz, 10 ** (-3.01 / 20)), (min(10 * edge_hz, 0.9), 1.0)):
        y = highpass_zero_phase(np.sin(2 * np.pi * f_hz * t), fs_hz, mode)
        assert np.abs(y[middle]).max() == pytest.approx(expected, abs=0.03)


def test_highpass_zero_phase_needs_its_edge_below_nyquist() -> None:
    """A rate at or below twice the high-pass edge is a ConfigError."""
    with pytest.raises(ConfigError):
        highpass_zero_phase(np.zeros(10), 1.0, FilterMode.MONITORING)


@pytest.mark.parametrize("mains_hz", [50.0, None])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_leads", [1, 2, 3])
def test_leads_causal_is_scipy_sosfilt_bit_for_bit(
    mains_hz: float | None, dtype: type[np.float32] | type[np.float64], n_leads: int
) -> None:
    """The compiled filter of a record is scipy's sosfilt from the same start, rounded once."""
    fs_hz = 360.0
    x = np.ascontiguousarray(_ecg_like(5000, n_leads, seed=n_leads).T)
    design = design_filter(fs_hz, FilterMode.DIAGNOSTIC, mains_hz)
    start = np.median(x[:, : int(fs_hz)], axis=1)
    zi = design.zi_unit[:, None, :] * start[None, :, None]
    expected, _ = sps.sosfilt(design.sos_causal, x, axis=1, zi=zi)
    got = filter_leads_causal(x, fs_hz, FilterMode.DIAGNOSTIC, mains_hz, dtype=dtype)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, expected.astype(dtype))


@pytest.mark.parametrize("n_leads", [1, 2, 12])
@pytest.mark.parametrize("band_hz", [(2.0, 20.0), (5.0, 30.0)])
def test_sosfiltfilt_columns_is_scipys_bit_for_bit(
    n_leads: int, band_hz: tuple[float, float]
) -> None:
    """sosfiltfilt_columns is scipy's sosfiltfilt along axis 0: values and layout."""
    x = _ecg_like(5000, n_leads, seed=n_leads)
    sos = np.asarray(sps.butter(2, band_hz, "bandpass", fs=500.0, output="sos"))
    expected = sps.sosfiltfilt(sos, x, axis=0)
    got = sosfiltfilt_columns(sos, x)
    np.testing.assert_array_equal(got, expected)
    assert got.strides == expected.strides
    rows = sosfiltfilt_columns(sos, x, lead_major=True)
    np.testing.assert_array_equal(rows, expected.T)
    assert rows.strides[1] == 8  # contiguous rows
    short = x[:10]  # not longer than the padding: scipy's error
    with pytest.raises(ValueError, match="padlen"):
        sosfiltfilt_columns(sos, short)
