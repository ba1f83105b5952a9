"""A task's record annotated ahead: the reader's first ECG window does not wait for the
engine (api.readings.annotate_ahead, called by the server when a stream's record is
written and when a record is uploaded)."""

from __future__ import annotations

import logging
import uuid

import pytest

import api.readings
from api.readings import annotate_ahead, reading_ecg
from ecg.annotate import AnnotateConfig
from ecg.measure import MeasureConfig, QtcFormula
from ecg.record import Record
from fixtures.make_fixtures import STANDARD_LEADS, regular_beats, synthetic_ecg

FS_HZ = 500.0


def twelve_leads(seconds: float = 10.0) -> Record:
    signal = synthetic_ecg(FS_HZ, seconds, regular_beats(seconds, 70.0), n_leads=12)
    return Record(name="ahead", fs_hz=FS_HZ, signal_mv=signal, lead_names=STANDARD_LEADS)


def counting_annotations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the engine's annotations made for the reading API."""
    made: list[int] = []
    annotate = api.readings._annotate

    def counted(measured: Record, config: AnnotateConfig) -> api.readings._Engine:
        made.append(1)
        return annotate(measured, config)

    monkeypatch.setattr(api.readings, "_annotate", counted)
    return made


def test_the_first_window_of_a_task_annotated_ahead_is_not_annotated_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = counting_annotations(monkeypatch)
    record = twelve_leads()
    task = uuid.uuid4().hex
    annotate_ahead(task, lambda: record).result(timeout=60)
    assert len(made) == 1
    window = reading_ecg(task, record, 0.0, 10.0, "diagnostic")
    assert len(made) == 1  # the kept reading
    assert window.beats
    assert window.measurements is not None
    assert window.measurements.hr_bpm == pytest.approx(70.0, abs=2.0)
    # Another task of the same record is annotated when its window is asked for.
    reading_ecg(uuid.uuid4().hex, record, 0.0, 10.0, "diagnostic")
    assert len(made) == 2


def test_a_record_not_there_or_unreadable_leaves_the_first_window_to_annotate(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    made = counting_annotations(monkeypatch)
    annotate_ahead(uuid.uuid4().hex, lambda: None).result(timeout=60)

    def unreadable() -> Record:
        raise OSError("gone")

    task = uuid.uuid4().hex
    with caplog.at_level(logging.WARNING, logger="api.readings"):
        annotate_ahead(task, unreadable).result(timeout=60)
    assert made == []
    assert "not annotated ahead: OSError" in caplog.text
    reading_ecg(task, twelve_leads(), 0.0, 10.0, "diagnostic")
    assert len(made) == 1


def test_a_window_is_read_with_the_server_s_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The window's engine reading is made with the settings given (the server's
    ``[ecg]``): QTc by the formula it puts first; other settings are another reading."""
    made = counting_annotations(monkeypatch)
    record = twelve_leads()
    task = uuid.uuid4().hex
    fridericia = AnnotateConfig(
        mains_hz=60.0, measure=MeasureConfig(qtc_first=QtcFormula.FRIDERICIA)
    )
    annotate_ahead(task, lambda: record, fridericia).result(timeout=60)
    window = reading_ecg(task, record, 0.0, 10.0, "diagnostic", config=fridericia)
    assert len(made) == 1
    assert window.measurements is not None
    assert window.measurements.qtc_formula == "fridericia"
    default = reading_ecg(task, record, 0.0, 10.0, "diagnostic")
    assert len(made) == 2
    assert default.measurements is not None
    assert default.measurements.qtc_formula == "bazett"
    assert default.measurements.qtc_ms != window.measurements.qtc_ms
