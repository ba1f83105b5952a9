"""Measurements: intervals, QTc formulas, axes, amplitudes and their absences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ecg.measure import (
    Absent,
    AbsentReason,
    GlobalMeasurements,
    LeadMeasurements,
    MeasureConfig,
    Measurements,
    QtcFormula,
    measure,
    qtc_ms,
    value_fields,
)
from fixtures.make_fixtures import STANDARD_LEADS, regular_beats, synthetic_ecg

FS_HZ = 500.0


def _synthetic(rate_bpm: float = 72.0, duration_s: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    times = regular_beats(duration_s, rate_bpm)
    signal = synthetic_ecg(FS_HZ, duration_s, times)
    return signal, np.round(times * FS_HZ).astype(np.int64)


def test_synthetic_record_has_every_global_figure() -> None:
    """A clean synthetic 12-lead record at 72 bpm has a number for every global figure."""
    signal, beats = _synthetic()
    m = measure(signal, FS_HZ, STANDARD_LEADS, beats)
    g = m.global_
    assert g.hr_bpm == pytest.approx(72.0, abs=0.5)
    for name in value_fields(GlobalMeasurements):
        assert not isinstance(getattr(g, name), Absent), name
    assert isinstance(g.qrs_ms, float)
    assert 30.0 <= g.qrs_ms <= 120.0
    assert isinstance(g.pr_ms, float)
    assert 100.0 <= g.pr_ms <= 250.0
    assert isinstance(g.qt_ms, float)
    assert 250.0 <= g.qt_ms <= 450.0
    assert set(g.qtc_ms) == set(QtcFormula)
    assert g.qtc_first is QtcFormula.BAZETT
    assert set(m.per_lead) == set(STANDARD_LEADS)


def test_no_beats_gives_absent_with_reason() -> None:
    """Without beats every global figure is absent with the too-few-beats reason."""
    signal, _ = _synthetic()
    m = measure(signal, FS_HZ, STANDARD_LEADS, np.zeros(0, dtype=np.int64))
    for name in value_fields(GlobalMeasurements):
        value = getattr(m.global_, name)
        assert isinstance(value, Absent), name
    assert isinstance(m.global_.hr_bpm, Absent)
    assert m.global_.hr_bpm.reason is AbsentReason.TOO_FEW_BEATS
    for lead in m.per_lead.values():
        for name in value_fields(LeadMeasurements):
            assert isinstance(getattr(lead, name), Absent)


def test_qtc_formulas_agree_at_60_bpm() -> None:
    """At RR = 1 s every formula gives QTc = QT; at other rates they differ as defined."""
    for formula in QtcFormula:
        assert qtc_ms(400.0, 1000.0, formula) == pytest.approx(400.0)
    assert qtc_ms(360.0, 640.0, QtcFormula.BAZETT) == pytest.approx(360.0 / 0.8)
    assert qtc_ms(360.0, 512.0, QtcFormula.FRIDERICIA) == pytest.approx(360.0 / 0.8)
    assert qtc_ms(360.0, 500.0, QtcFormula.FRAMINGHAM) == pytest.approx(360.0 + 77.0)
    assert qtc_ms(360.0, 500.0, QtcFormula.HODGES) == pytest.approx(360.0 + 105.0)


def test_missing_leads_make_axis_and_indices_absent() -> None:
    """With the limb leads only, Sokolow-Lyon and Cornell are absent (lead missing)."""
    signal, beats = _synthetic()
    m = measure(signal[:, :6], FS_HZ, STANDARD_LEADS[:6], beats)
    assert isinstance(m.global_.sokolow_lyon_mv, Absent)
    assert m.global_.sokolow_lyon_mv.reason is AbsentReason.LEAD_MISSING
    assert isinstance(m.global_.cornell_mv, Absent)
    assert isinstance(m.global_.qrs_axis_deg, float)


def test_config_rejects_unknown_formula() -> None:
    """An unknown QTc formula name is refused."""
    with pytest.raises(ValueError, match="qtc_first"):
        MeasureConfig(qtc_first="nope")  # type: ignore[arg-type]
    assert MeasureConfig(qtc_first="hodges").qtc_first is QtcFormula.HODGES  # type: ignore[arg-type]
    assert math.isfinite(MeasureConfig().st_offset_ms)


# ---------------------------------------------------------------- bad input, properties

_PLAUSIBLE_MS = {
    "rr_ms": (150.0, 6000.0),
    "pr_ms": (0.0, 600.0),
    "p_ms": (0.0, 400.0),
    "qrs_ms": (0.0, 400.0),
    "qt_ms": (0.0, 1000.0),
}


def _assert_values_sound(m: Measurements) -> None:
    """Every value is a finite float or an Absent with a reason code; intervals plausible."""
    g = m.global_
    for name in value_fields(GlobalMeasurements):
        value = getattr(g, name)
        if isinstance(value, Absent):
            assert isinstance(value.reason, AbsentReason)
        else:
            assert isinstance(value, float)
            assert math.isfinite(value), name
            low, high = _PLAUSIBLE_MS.get(name, (-math.inf, math.inf))
            assert low <= value <= high, (name, value)
    for value in g.qtc_ms.values():
        assert isinstance(value, Absent) or math.isfinite(value)
    for axis in (g.p_axis_deg, g.qrs_axis_deg, g.t_axis_deg):
        assert isinstance(axis, Absent) or -180.0 < axis <= 180.0
    for lead in m.per_lead.values():
        for name in value_fields(LeadMeasurements):
            value = getattr(lead, name)
            assert isinstance(value, Absent) or math.isfinite(value), (lead.lead, name)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fs_hz=st.sampled_from([100.0, 128.0, 250.0, 360.0, 500.0, 1000.0]),
    duration_s=st.floats(2.0, 12.0),
    rate_bpm=st.floats(35.0, 180.0),
    n_leads=st.integers(1, 12),
    nan_start=st.floats(0.0, 1.0),
    nan_s=st.floats(0.0, 3.0),
    clip_mv=st.one_of(st.none(), st.floats(0.2, 1.0)),
    spikes=st.booleans(),
    unknown_names=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_measure_never_raises_and_gives_sound_values(
    fs_hz: float,
    duration_s: float,
    rate_bpm: float,
    n_leads: int,
    nan_start: float,
    nan_s: float,
    clip_mv: float | None,
    spikes: bool,
    unknown_names: bool,
    seed: int,
) -> None:
    """Any length from 2 s, any rate from 100 Hz, any lead subset, unknown names, NaN
    runs, clipping, pacing-like spikes and noise: values are numbers or absent."""
    rng = np.random.default_rng(seed)
    times = regular_beats(duration_s, rate_bpm, first_s=0.3)
    signal = synthetic_ecg(fs_hz, duration_s, times, n_leads=12)
    signal += rng.normal(0, 0.02, signal.shape)
    leads = list(rng.choice(12, size=n_leads, replace=False))
    signal = signal[:, leads]
    names = [f"X{j}" if unknown_names else STANDARD_LEADS[j] for j in leads]
    n = signal.shape[0]
    a = int(nan_start * n)
    signal[a : a + int(nan_s * fs_hz), 0] = np.nan
    if clip_mv is not None:
        signal = np.clip(signal, -clip_mv, clip_mv)
    if spikes:
        for t in times:
            k = int((t - 0.05) * fs_hz)
            if 0 <= k < n:
                signal[k, :] += 5.0
    beats = np.round(times * fs_hz).astype(np.int64)
    beats = beats[beats < n]
    _assert_values_sound(measure(signal, fs_hz, names, beats))


@settings(max_examples=15, deadline=None)
@given(
    n_samples=st.integers(0, 400),
    n_beats=st.integers(0, 6),
    fill=st.sampled_from([0.0, np.nan, np.inf, 1e6]),
)
@example(n_samples=26, n_beats=6, fill=0.0)  # beats 100 ms apart: no RR (CI found it)
def test_degenerate_inputs_are_absent_not_errors(n_samples: int, n_beats: int, fill: float) -> None:
    """Empty, tiny, constant, infinite or huge records, and beats outside the record."""
    signal = np.full((n_samples, 2), fill)
    beats = np.linspace(-50, n_samples + 50, n_beats).astype(np.int64)
    _assert_values_sound(measure(signal, 250.0, ["I", "II"], beats))


@given(
    qt_ms=st.floats(100.0, 700.0),
    rr_ms=st.floats(250.0, 3000.0),
)
def test_qtc_is_monotonic_in_qt_and_equal_at_1_s(qt_ms: float, rr_ms: float) -> None:
    """Every QTc grows with QT, and Bazett and Fridericia shorten QT below 60 bpm."""
    for formula in QtcFormula:
        assert qtc_ms(qt_ms + 10.0, rr_ms, formula) > qtc_ms(qt_ms, rr_ms, formula)
    if rr_ms > 1000.0:
        assert qtc_ms(qt_ms, rr_ms, QtcFormula.BAZETT) < qt_ms
        assert qtc_ms(qt_ms, rr_ms, QtcFormula.FRIDERICIA) < qt_ms


def test_axis_follows_the_frontal_leads() -> None:
    """QRS positive in I and aVF gives an axis between 0 and 90 degrees; negative aVF
    (I positive) gives a negative axis."""
    signal, beats = _synthetic()
    names = STANDARD_LEADS
    m = measure(signal, FS_HZ, names, beats)
    assert isinstance(m.global_.qrs_axis_deg, float)
    assert 0.0 < m.global_.qrs_axis_deg < 90.0
    flipped = signal.copy()
    flipped[:, names.index("aVF")] *= -1
    m2 = measure(flipped, FS_HZ, names, beats)
    assert isinstance(m2.global_.qrs_axis_deg, float)
    assert -90.0 < m2.global_.qrs_axis_deg < 0.0
