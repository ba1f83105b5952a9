"""Measurements: intervals, QTc formulas, axes, amplitudes and their absences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ecg.measure import (
    Absent,
    AbsentReason,
    GlobalMeasurements,
    LeadMeasurements,
    MeasureConfig,
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
        MeasureConfig(qtc_first="nope")
    assert MeasureConfig(qtc_first="hodges").qtc_first is QtcFormula.HODGES
    assert math.isfinite(MeasureConfig().st_offset_ms)
