"""api.reading_statements.restate on a real PTB-XL record: on the engine's own
measurements it gives the engine's statements back; on corrected ones, the statements
resting on them follow, the rhythm stays, and the engine's interpretation is unchanged."""

from __future__ import annotations

import pytest

from api.reading_statements import restate
from ecg.annotate import annotate
from ecg.correct import fiducials_ms, remeasure
from ecg.record import read_record
from tests.api.test_readings import RECORD


def test_restate_follows_the_corrected_measurements_only() -> None:
    """Same measurements: same codes and evidence; PR 80 ms longer: 1AVB added with the
    corrected PR; the engine's interpretation keeps its own statements."""
    if not RECORD.with_suffix(".hea").exists():
        pytest.skip(f"PTB-XL sample not found at {RECORD}")
    found = read_record(RECORD)
    annotation = annotate(found)
    engine, measured = annotation.interpretation, annotation.measurements
    assert engine is not None
    assert measured is not None
    beats = [int(b) for b in annotation.beats]
    same = restate(engine, measured, beats, found.fs_hz)
    assert [(s.code, s.evidence) for s in same.statements] == [
        (s.code, s.evidence) for s in engine.statements
    ]
    before = [s.code for s in engine.statements]
    assert "1AVB" not in before
    p_on = fiducials_ms(measured.delineation)["p_on"]
    assert p_on is not None
    corrected = remeasure(measured.delineation, {"p_on": p_on - 80.0})
    again = restate(engine, corrected, beats, found.fs_hz)
    codes = [s.code for s in again.statements]
    assert codes[0] == before[0]  # the rhythm
    [avb] = [s for s in again.statements if s.code == "1AVB"]
    assert avb.evidence["pr_ms"] == corrected.global_.pr_ms
    assert [s.code for s in engine.statements] == before
