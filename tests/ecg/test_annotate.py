"""Pre-annotation of whole records: beats, RR, heart rate, flags and summary."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecg.annotate import (
    STAGES,
    AnnotateConfig,
    Annotation,
    Work,
    annotate,
    annotator_version,
    heart_rate,
)
from ecg.errors import ConfigError
from ecg.flags import FlagKind
from ecg.record import Record, read_record
from fixtures.make_fixtures import STANDARD_LEADS, regular_beats, synthetic_ecg

FS_HZ = 500.0


def _record(signal: np.ndarray, name: str = "synthetic") -> Record:
    leads = tuple(STANDARD_LEADS[: signal.shape[1]])
    return Record(name=name, fs_hz=FS_HZ, signal_mv=signal, lead_names=leads)


def _matched(found: np.ndarray, expected: np.ndarray, tolerance: int) -> int:
    return sum(int(np.min(np.abs(found - sample)) <= tolerance) for sample in expected)


def test_clean_regular_record() -> None:
    """Every synthetic beat is found; RR, HR and summary agree with the rhythm; no flag."""
    times = regular_beats(20.0, 72.0)
    result = annotate(_record(synthetic_ecg(FS_HZ, 20.0, times)))
    expected = np.round(times * FS_HZ).astype(np.int64)
    assert result.beats.size == expected.size
    assert _matched(result.beats, expected, tolerance=int(0.05 * FS_HZ)) == expected.size
    assert result.rr_ms.shape == result.hr_bpm.shape == (expected.size - 1,)
    np.testing.assert_allclose(np.median(result.rr_ms), 60000 / 72.0, atol=4.0)
    assert result.median_hr_bpm == pytest.approx(72.0, abs=0.5)
    assert result.summary.hr_min_bpm <= result.median_hr_bpm <= result.summary.hr_max_bpm
    assert result.flags == ()
    assert result.summary.beat_count == expected.size
    assert result.summary.duration_s == 20.0
    assert set(result.summary.flag_counts) == {kind.value for kind in FlagKind}
    assert sum(result.summary.flag_counts.values()) == 0
    assert result.summary.detector == "teleconsult.ecg.detect"
    assert result.summary.version == annotator_version()


def test_bradycardic_record_is_flagged() -> None:
    """A 40 bpm synthetic record carries a bradycardia flag and a median HR near 40."""
    result = annotate(_record(synthetic_ecg(FS_HZ, 20.0, regular_beats(20.0, 40.0))))
    assert result.summary.flag_counts["bradycardia"] == 1
    assert result.median_hr_bpm == pytest.approx(40.0, abs=0.5)


def test_flat_lead_does_not_hide_beats_and_is_flagged() -> None:
    """One lead stuck flat: beats still found on the others; that lead is lead-off."""
    times = regular_beats(20.0, 72.0)
    signal = synthetic_ecg(FS_HZ, 20.0, times)
    signal[:, 1] = 0.0
    result = annotate(_record(signal))
    assert result.beats.size == times.size
    off = [flag for flag in result.flags if flag.kind is FlagKind.LEAD_OFF]
    assert [(flag.lead, flag.onset, flag.offset) for flag in off] == [(1, 0, signal.shape[0])]


def test_nan_stretch_is_lead_off_and_beats_continue() -> None:
    """NaN on one lead for 4 s is lead-off there; the rhythm is still fully annotated."""
    times = regular_beats(20.0, 72.0)
    signal = synthetic_ecg(FS_HZ, 20.0, times)
    signal[int(6 * FS_HZ) : int(10 * FS_HZ), 0] = np.nan
    result = annotate(_record(signal))
    expected = np.round(times * FS_HZ).astype(np.int64)
    assert _matched(result.beats, expected, tolerance=int(0.05 * FS_HZ)) == expected.size
    assert {(flag.kind, flag.lead) for flag in result.flags} == {(FlagKind.LEAD_OFF, 0)}


def test_all_leads_off_is_not_asystole() -> None:
    """With every lead disconnected for 8 s, the missing beats are not called asystole."""
    times = regular_beats(30.0, 72.0)
    signal = synthetic_ecg(FS_HZ, 30.0, times, n_leads=3)
    signal[int(10 * FS_HZ) : int(18 * FS_HZ), :] = np.nan
    result = annotate(_record(signal))
    kinds = {flag.kind for flag in result.flags}
    assert FlagKind.LEAD_OFF in kinds
    assert FlagKind.ASYSTOLE not in kinds


def test_two_sample_record() -> None:
    """A 2-sample record annotates to no beat, no heart rate and no rhythm flag."""
    result = annotate(_record(np.zeros((2, 2))))
    assert result.beats.size == 0
    assert result.rr_ms.size == 0
    assert math.isnan(result.median_hr_bpm)
    assert math.isnan(result.summary.hr_max_bpm)
    assert all(not flag.kind.is_rhythm for flag in result.flags)


def test_mode_changes_quality_measures_only() -> None:
    """Slow wander is flagged in diagnostic mode and not in monitoring; beats identical."""
    times = regular_beats(20.0, 72.0)
    signal = synthetic_ecg(FS_HZ, 20.0, times, n_leads=2)
    signal[:, 0] += 0.8 * np.sin(2 * np.pi * 0.1 * np.arange(signal.shape[0]) / FS_HZ)
    diagnostic = annotate(_record(signal), AnnotateConfig(mode="diagnostic"))  # type: ignore[arg-type]
    monitoring = annotate(_record(signal), AnnotateConfig(mode="monitoring"))  # type: ignore[arg-type]
    np.testing.assert_array_equal(diagnostic.beats, monitoring.beats)
    assert diagnostic.summary.flag_counts["baseline_wander"] >= 1
    assert monitoring.summary.flag_counts["baseline_wander"] == 0
    assert monitoring.summary.filter_mode == "monitoring"


def test_stages_run_one_by_one_give_the_annotation() -> None:
    """STAGES run in order on a Work (as bench/ecg_speed.py times them) give annotate()'s result."""
    times = regular_beats(30.0, 130.0)
    signal = synthetic_ecg(FS_HZ, 30.0, times, n_leads=3)
    signal[int(10 * FS_HZ) : int(16 * FS_HZ), 1] = np.nan
    record = _record(signal)
    config = AnnotateConfig()
    work = Work(record, config)
    for _, stage in STAGES:
        stage(work)
    result = annotate(record, config)
    np.testing.assert_array_equal(work.beats, result.beats)
    assert tuple(sorted(work.rhythm + work.quality, key=lambda f: (f.onset, f.lead or 0))) == (
        tuple(sorted(result.flags, key=lambda f: (f.onset, f.lead or 0)))
    )
    assert work.summary == result.summary
    assert {flag.kind for flag in result.flags} == {FlagKind.TACHYCARDIA, FlagKind.LEAD_OFF}


def test_config_validation() -> None:
    """An unknown mode or a non-positive mains frequency is a ConfigError."""
    with pytest.raises(ConfigError):
        AnnotateConfig(mode="holter")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        AnnotateConfig(mains_hz=-50.0)


def test_heart_rate_units() -> None:
    """RR in ms and HR in bpm from sample indices and the sampling rate."""
    rr_ms, hr_bpm = heart_rate(np.array([0, 360, 900]), 360.0)
    np.testing.assert_allclose(rr_ms, [1000.0, 1500.0])
    np.testing.assert_allclose(hr_bpm, [60.0, 40.0])


def _assert_matches_reference(result: Annotation, reference: np.ndarray, fs_hz: float) -> None:
    tolerance = int(0.15 * fs_hz)
    found = _matched(result.beats, reference, tolerance)
    assert found >= 0.99 * reference.size
    assert result.beats.size <= 1.01 * reference.size + 1


def test_real_record_mitdb_100(ecg_dir: Path) -> None:
    """MIT-BIH 100 (normal sinus): beats match the reference; median HR from the .atr too."""
    path = ecg_dir / "mitdb" / "100"
    record = read_record(path)
    result = annotate(record)
    atr = wfdb.rdann(str(path), "atr")
    reference = np.array(
        [s for s, sym in zip(atr.sample, atr.symbol, strict=True) if sym in "NLRBAaJSVrFejnE/fQ?"]
    )
    _assert_matches_reference(result, reference, record.fs_hz)
    reference_hr = 60.0 / np.median(np.diff(reference) / record.fs_hz)
    assert result.median_hr_bpm == pytest.approx(reference_hr, rel=0.02)
    kinds = {flag.kind for flag in result.flags}
    assert not kinds & {FlagKind.BRADYCARDIA, FlagKind.TACHYCARDIA, FlagKind.ASYSTOLE}


def test_twelve_lead_record_is_measured_and_interpreted() -> None:
    """A 10 s synthetic 12-lead record at 72 bpm: measurements of the window, the
    interpretation's statements in JSON form, and a measure window of 0 turns both off."""
    times = regular_beats(10.0, 72.0)
    record = _record(synthetic_ecg(FS_HZ, 10.0, times))
    result = annotate(record)
    assert result.measurements is not None
    assert result.measurements.global_.hr_bpm == pytest.approx(72.0, abs=0.5)
    assert result.measurements.delineation.beats.size == result.beats.size
    assert result.statements is not None
    assert all("code" in s and "text_zh" in s for s in result.statements)
    assert result.critical == ()
    bare = annotate(record, AnnotateConfig(measure_window_s=0))
    assert bare.measurements is None
    assert bare.statements is None
    np.testing.assert_array_equal(bare.beats, result.beats)
