"""The reader's corrected fiducials in the reading service over the real store (SQLite
and PostgreSQL): merged over those kept, a null back to the engine's, kept with the
draft and carried by the signed version, refused (with the measurement's code) and
audited, only by the claimant, never on a signed task."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from consults.errors import InvalidInput
from consults.reading_repositories import ReadingRecord
from consults.reading_service import FiducialsRefused
from consults.readings import ClaimedByAnother, ReadingEvent, ReadingState
from consults.transitions import TransitionNotAllowed
from store.audit import AuditQuery, query
from tests.consults.test_reading_service_world import ReadingWorld, rw
from tests.pg import database

__all__ = ["database", "rw"]

ENGINE: Mapping[str, float] = {"p_on": 300.0, "p_off": 400.0, "qrs_on": 450.0, "qrs_off": 540.0}


def remeasure(
    record: ReadingRecord, previous: Mapping[str, float], merged: Mapping[str, float]
) -> tuple[Mapping[str, float | None], float]:
    """A measurement of QRS duration on the engine's fiducials with corrections over
    them, refusing a QRS offset past 700 ms (as the beat's end)."""
    del record
    if merged.get("qrs_off", 0.0) > 700.0:
        raise FiducialsRefused("fiducial_outside_beat", "qrs_off is outside the median beat")
    before = {**ENGINE, **previous}
    after = {**ENGINE, **merged}
    return before, after["qrs_off"] - after["qrs_on"]


def _details(rw: ReadingWorld, target: str) -> list[dict[str, str]]:
    with rw.world.stores.engine.connect() as conn:
        rows = query(conn, AuditQuery(target=target), limit=1000)
    return [row.detail_object() for row in rows if row.action == "reading.fiducials"]


def test_corrections_merge_reset_and_travel_with_the_signed_version(rw: ReadingWorld) -> None:
    """Two corrections merge; a null gives the engine's back; the task becomes a draft;
    the signed document carries the corrections as decimal strings."""
    made = rw.stream_task("f1")
    reader = rw.world["liu.reader"]
    rw.service.step(reader, made.task.id, ReadingEvent.CLAIM)
    kept, qrs = rw.service.correct_fiducials(reader, made.task.id, {"qrs_off": 560.0}, remeasure)
    assert qrs == 110.0
    assert kept.fiducials_ms == {"qrs_off": 560.0}
    assert kept.updated_by == "liu.reader"
    kept, qrs = rw.service.correct_fiducials(reader, made.task.id, {"qrs_on": 440.0}, remeasure)
    assert qrs == 120.0
    assert dict(kept.fiducials_ms) == {"qrs_off": 560.0, "qrs_on": 440.0}
    kept, qrs = rw.service.correct_fiducials(reader, made.task.id, {"qrs_on": None}, remeasure)
    assert dict(kept.fiducials_ms) == {"qrs_off": 560.0}
    assert rw.service.fiducials(reader, made.task.id) == kept
    assert rw.service.get(reader, made.task.id).record.task.state is ReadingState.DRAFT
    audited = _details(rw, f"reading:{made.task.id}")
    assert [(d["before"], d["after"]) for d in audited] == [
        ("qrs_off=540", "qrs_off=560"),
        ("qrs_on=450", "qrs_on=440"),
        ("qrs_on=440", "qrs_on=engine"),
    ]
    rw.service.save_report(reader, made.task.id, ["SR"], "")
    rw.service.sign(reader, made.task.id, rw.world.totp("liu.reader"))
    [version] = rw.service.versions(reader, made.task.id)
    assert version.document["fiducials_ms"] == {"qrs_off": "560.000"}
    with pytest.raises(TransitionNotAllowed):
        rw.service.correct_fiducials(reader, made.task.id, {"qrs_off": 550.0}, remeasure)
    assert _details(rw, f"reading:{made.task.id}")[-1]["code"] == "transition_not_allowed"


def test_refusals_change_nothing_and_are_audited(rw: ReadingWorld) -> None:
    """The measurement's refusal keeps its code; another reader is refused by the claim;
    nothing given is refused; none of them keeps anything."""
    made = rw.stream_task("f2")
    reader, other = rw.world["liu.reader"], rw.world["ma.reader"]
    rw.service.step(reader, made.task.id, ReadingEvent.CLAIM)
    with pytest.raises(FiducialsRefused) as refused:
        rw.service.correct_fiducials(reader, made.task.id, {"qrs_off": 900.0}, remeasure)
    assert refused.value.code == "fiducial_outside_beat"
    with pytest.raises(ClaimedByAnother):
        rw.service.correct_fiducials(other, made.task.id, {"qrs_off": 560.0}, remeasure)
    with pytest.raises(InvalidInput):
        rw.service.correct_fiducials(reader, made.task.id, {}, remeasure)
    assert rw.service.fiducials(reader, made.task.id) is None
    assert rw.service.get(reader, made.task.id).record.task.state is ReadingState.CLAIMED
    codes = [(d["outcome"], d["code"]) for d in _details(rw, f"reading:{made.task.id}")]
    assert codes == [
        ("denied", "fiducial_outside_beat"),
        ("denied", "claimed_by_another"),
        ("denied", "invalid_input"),
    ]
