"""The reading repository on SQLite and PostgreSQL: the tables at head, a task per
stream, compare-and-set steps, signed versions kept as the bytes signed, one finding per
task, and the sweep's query."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, inspect, select

from consults.errors import Conflict
from consults.reading_repositories import (
    CriticalRecord,
    ReadingFilter,
    ReadingRecord,
    StaleReading,
)
from consults.readings import (
    CriticalState,
    CriticalValue,
    ReadingEvent,
    ReadingState,
    ReadingTask,
)
from consults.repositories import AuditEvent, PageRequest
from consults.signatures import canonical_json
from store.reading_schema import reading_versions
from store.readings import SqlReadingRepository
from store.schema import metadata
from tests.consults.test_reading_service_world import ReadingWorld, rw

__all__ = ["rw"]

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
EVENT = AuditEvent(at_s=T0.timestamp(), action="reading.created")


def test_the_reading_tables_are_in_the_schema_and_at_head(engine: Engine) -> None:
    """store.schema's MetaData holds the reading tables, and head creates them."""
    names = {"reading_tasks", "reading_reports", "reading_versions", "critical_values"}
    assert names <= set(metadata.tables)
    assert names <= set(inspect(engine).get_table_names())
    assert SqlReadingRepository(engine).get("nothing") is None


def _task(task_id: str, stream: str, **kw: object) -> ReadingRecord:
    task = ReadingTask(
        id=task_id,
        state=ReadingState.NEW,
        clinic="village-1",
        centre="county-1",
        received_at=T0,
        **kw,  # type: ignore[arg-type]
    )
    return ReadingRecord(task=task, stream=stream, patient="p1", top_statements=("SR",))


def test_one_task_per_stream_and_compare_and_set(rw: ReadingWorld) -> None:
    """A second task for a stream is a conflict; a step from a stale revision changes
    nothing; the worklist orders by urgency."""
    repo = rw.repository
    repo.create(_task("t1", "s1"), [], [EVENT])
    with pytest.raises(Conflict):
        repo.create(_task("t2", "s1"), [], [EVENT])
    repo.create(_task("t3", "s3", critical=("VF",)), [], [EVENT])
    before = repo.get("t1")
    assert before is not None
    assert before.revision == 0
    claimed = replace(before, task=replace(before.task, state=ReadingState.CLAIMED, claimant="a"))
    repo.transition(before, claimed, EVENT)
    with pytest.raises(StaleReading):
        repo.transition(before, claimed, EVENT)
    after = repo.get("t1")
    assert after is not None
    assert after.revision == 1
    assert after.task.claimant == "a"
    assert repo.by_stream("s1") == after
    page = repo.list(ReadingFilter(clinics=frozenset({"village-1"})), PageRequest())
    assert [r.task.id for r in page.items] == ["t3", "t1"]


def test_a_signed_version_is_kept_as_the_bytes_signed(rw: ReadingWorld) -> None:
    """The stored document is the canonical JSON of what was signed."""
    made = rw.stream_task("s1")
    reader = rw.world["liu.reader"]
    rw.service.step(reader, made.task.id, ReadingEvent.CLAIM)
    rw.service.save_report(reader, made.task.id, ["SR"], "正常心电图")
    rw.world.clock.advance(30)
    rw.service.sign(reader, made.task.id, rw.world.totp("liu.reader"))
    [version] = rw.repository.versions(made.task.id)
    with rw.world.stores.engine.connect() as conn:
        stored = conn.execute(select(reading_versions.c.document)).scalar_one()
    assert stored.encode() == canonical_json(version.document)


def test_one_finding_per_task_and_the_sweeps_query(rw: ReadingWorld) -> None:
    """The same code twice on a task is a conflict; due_criticals answers the open values
    past their escalation time only."""
    repo = rw.repository
    repo.create(_task("t1", "s1"), [], [EVENT])

    def value(cid: str, code: str, state: CriticalState, due: datetime | None) -> CriticalRecord:
        return CriticalRecord(
            value=CriticalValue(
                id=cid, code=code, reading="t1", state=state, detected_at=T0, notified=("a",)
            ),
            clinic="village-1",
            centre="county-1",
            escalate_at=due,
        )

    repo.add_critical(value("c1", "VF", CriticalState.NOTIFIED, T0), EVENT)
    with pytest.raises(Conflict):
        repo.add_critical(value("c2", "VF", CriticalState.NOTIFIED, T0), EVENT)
    repo.add_critical(value("c3", "VT", CriticalState.NOTIFIED, T0 + timedelta(hours=1)), EVENT)
    repo.add_critical(value("c4", "PAUSE", CriticalState.ACKNOWLEDGED, T0), EVENT)
    due = repo.due_criticals(T0 + timedelta(minutes=1), 10)
    assert [c.value.id for c in due] == ["c1"]
    assert [c.value.id for c in repo.criticals_of("t1")] == ["c1", "c3", "c4"]
