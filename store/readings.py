"""The ECG centre on the SQL store: :class:`consults.reading_repositories.ReadingRepository`.

Design notes
------------
- The tables are :mod:`store.reading_schema`'s (migration ``0200_readings``).
- Each change and its audit row are one transaction (:func:`store.audit.append` on the
  same connection). A step is a compare-and-set on ``revision``: the update names the
  revision the service read, and no row updated means someone else moved the task first
  (:class:`~consults.reading_repositories.StaleReading`, nothing written). Of two
  readers claiming the same task at once, exactly one update matches.
- Signing keys are not here: the service uses the consult store's
  (:class:`store.consults.SqlConsultRepository` is a
  :class:`~consults.reading_repositories.SignerKeys`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from consults.errors import Conflict, RepositoryError
from consults.opinions import SignedVersion
from consults.reading_repositories import (
    CriticalFilter,
    CriticalRecord,
    ReadingBeatLabels,
    ReadingFiducials,
    ReadingFilter,
    ReadingRecord,
    ReadingReport,
    StaleReading,
    urgency,
)
from consults.readings import (
    BeatLabel,
    CriticalState,
    CriticalValue,
    ReadingState,
    ReadingTask,
)
from consults.repositories import AuditEvent, Page, PageRequest
from consults.signatures import Signature, canonical_json
from store import audit as chain
from store.accounts import audit_record
from store.directory import unit_of_work
from store.reading_schema import (
    critical_values,
    reading_beat_labels,
    reading_fiducials,
    reading_reports,
    reading_tasks,
    reading_versions,
)

__all__ = ["SqlReadingRepository"]

_OPEN_CRITICAL = (CriticalState.NOTIFIED.value, CriticalState.ESCALATED.value)


def _append(conn: Connection, event: AuditEvent) -> None:
    try:
        record = audit_record(event)
    except ValueError as exc:
        raise RepositoryError("the audit event cannot be stored") from exc
    chain.append(conn, [record])


def _task_values(record: ReadingRecord) -> dict[str, Any]:
    t = record.task
    return {
        "state": t.state.value,
        "clinic": t.clinic,
        "centre": t.centre,
        "stream": record.stream,
        "record": record.record,
        "patient": record.patient,
        "received_at": t.received_at,
        "stat": t.stat,
        "urgency": urgency(t),
        "critical": json.dumps(list(t.critical)),
        "top_statements": json.dumps(list(record.top_statements)),
        "claimant": t.claimant,
        "signer": t.signer,
        "version": t.version,
        "signed_at": t.signed_at,
        "reason": t.reason,
        "revision": record.revision,
    }


def _task(row: Any) -> ReadingRecord:
    return ReadingRecord(
        task=ReadingTask(
            id=row.id,
            state=ReadingState(row.state),
            clinic=row.clinic,
            centre=row.centre,
            received_at=row.received_at,
            stat=bool(row.stat),
            critical=tuple(json.loads(row.critical)),
            claimant=row.claimant,
            signer=row.signer,
            version=row.version,
            signed_at=row.signed_at,
            reason=row.reason,
        ),
        stream=row.stream,
        record=row.record,
        patient=row.patient,
        top_statements=tuple(json.loads(row.top_statements)),
        revision=row.revision,
    )


def _critical_values(found: CriticalRecord) -> dict[str, Any]:
    v = found.value
    return {
        "reading": v.reading,
        "code": v.code,
        "state": v.state.value,
        "clinic": found.clinic,
        "centre": found.centre,
        "patient": found.patient,
        "raised_by": found.raised_by,
        "detected_at": v.detected_at,
        "notified": json.dumps(list(v.notified)),
        "level": v.level,
        "notified_at": v.notified_at,
        "acknowledged_by": v.acknowledged_by,
        "acknowledged_at": v.acknowledged_at,
        "read_back": v.read_back,
        "escalate_at": found.escalate_at,
        "revision": found.revision,
    }


def _critical(row: Any) -> CriticalRecord:
    return CriticalRecord(
        value=CriticalValue(
            id=row.id,
            code=row.code,
            reading=row.reading,
            state=CriticalState(row.state),
            detected_at=row.detected_at,
            notified=tuple(json.loads(row.notified)),
            level=row.level,
            notified_at=row.notified_at,
            acknowledged_by=row.acknowledged_by,
            acknowledged_at=row.acknowledged_at,
            read_back=row.read_back,
        ),
        clinic=row.clinic,
        centre=row.centre,
        patient=row.patient,
        raised_by=row.raised_by,
        escalate_at=row.escalate_at,
        revision=row.revision,
    )


class SqlReadingRepository:
    """:class:`consults.reading_repositories.ReadingRepository` on SQLite or PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # Tasks
    def create(
        self,
        record: ReadingRecord,
        criticals: Sequence[CriticalRecord],
        events: Sequence[AuditEvent],
    ) -> None:
        with unit_of_work(self.engine) as conn:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(reading_tasks).values(id=record.task.id, **_task_values(record))
                    )
            except IntegrityError as exc:
                raise Conflict("reading", record.stream or record.record or record.task.id) from exc
            for found in criticals:
                conn.execute(
                    insert(critical_values).values(id=found.value.id, **_critical_values(found))
                )
            for event in events:
                _append(conn, event)

    def get(self, reading_id: str) -> ReadingRecord | None:
        return self._one(reading_tasks.c.id == reading_id)

    def by_stream(self, stream_id: str) -> ReadingRecord | None:
        return self._one(reading_tasks.c.stream == stream_id)

    def _one(self, condition: Any) -> ReadingRecord | None:
        with unit_of_work(self.engine, read=True) as conn:
            row = conn.execute(select(reading_tasks).where(condition)).first()
        return None if row is None else _task(row)

    @staticmethod
    def _compare_and_set(conn: Connection, before: ReadingRecord, after: ReadingRecord) -> None:
        values = _task_values(after)
        values["revision"] = before.revision + 1
        done = conn.execute(
            update(reading_tasks)
            .where(
                (reading_tasks.c.id == before.task.id)
                & (reading_tasks.c.revision == before.revision)
            )
            .values(**values)
        )
        if done.rowcount != 1:
            raise StaleReading(before.task.id)

    def transition(
        self,
        before: ReadingRecord,
        after: ReadingRecord,
        event: AuditEvent,
        report: ReadingReport | None = None,
        fiducials: ReadingFiducials | None = None,
        beat_labels: ReadingBeatLabels | None = None,
    ) -> None:
        with unit_of_work(self.engine) as conn:
            self._compare_and_set(conn, before, after)
            if beat_labels is not None:
                self._upsert(
                    conn,
                    reading_beat_labels,
                    before.task.id,
                    {
                        "labels": json.dumps(
                            {str(i): v.value for i, v in beat_labels.labels.items()},
                            sort_keys=True,
                        ),
                        "updated_by": beat_labels.updated_by,
                        "updated_at": beat_labels.updated_at,
                    },
                )
            if fiducials is not None:
                self._upsert(
                    conn,
                    reading_fiducials,
                    before.task.id,
                    {
                        "fiducials_ms": json.dumps(dict(fiducials.fiducials_ms), sort_keys=True),
                        "updated_by": fiducials.updated_by,
                        "updated_at": fiducials.updated_at,
                    },
                )
            if report is not None:
                values = {
                    "statements": json.dumps(list(report.statements)),
                    "text": report.text,
                    "updated_by": report.updated_by,
                    "updated_at": report.updated_at,
                }
                done = conn.execute(
                    update(reading_reports)
                    .where(reading_reports.c.reading == before.task.id)
                    .values(**values)
                )
                if done.rowcount == 0:
                    conn.execute(insert(reading_reports).values(reading=before.task.id, **values))
            _append(conn, event)

    def list(self, where: ReadingFilter, page: PageRequest) -> Page[ReadingRecord]:
        t = reading_tasks.c
        condition: Any = t.clinic.in_(sorted(where.clinics))
        if where.states is not None:
            condition = condition & t.state.in_(sorted(s.value for s in where.states))
        if where.reader is not None:
            condition = condition & ((t.claimant == where.reader) | (t.signer == where.reader))
        if where.patient is not None:
            condition = condition & (t.patient == where.patient)
        if where.received_before is not None:
            condition = condition & (t.received_at < where.received_before)
        order = (
            (t.received_at.desc(), t.id) if where.newest_first else (t.urgency, t.received_at, t.id)
        )
        rows, total = self._page(reading_tasks, condition, page, *order)
        return Page(items=tuple(_task(r) for r in rows), total=total)

    def _page(
        self, table: Table, condition: Any, page: PageRequest, *order: Any
    ) -> tuple[Sequence[Any], int]:
        """One page of ``table``'s rows meeting ``condition`` in ``order``, and how many
        meet it."""
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(
                select(table)
                .where(condition)
                .order_by(*order)
                .limit(page.limit)
                .offset(page.offset)
            ).all()
            total = conn.execute(select(func.count()).select_from(table).where(condition))
            return rows, int(total.scalar_one())

    @staticmethod
    def _upsert(conn: Connection, table: Table, reading_id: str, values: dict[str, Any]) -> None:
        done = conn.execute(update(table).where(table.c.reading == reading_id).values(**values))
        if done.rowcount == 0:
            conn.execute(insert(table).values(reading=reading_id, **values))

    # Reports
    def _of_reading(self, table: Table, reading_id: str) -> Any:
        """The row of ``table`` (one per task) kept for task ``reading_id``, or None."""
        with unit_of_work(self.engine, read=True) as conn:
            return conn.execute(select(table).where(table.c.reading == reading_id)).first()

    def fiducials(self, reading_id: str) -> ReadingFiducials | None:
        row = self._of_reading(reading_fiducials, reading_id)
        if row is None:
            return None
        return ReadingFiducials(
            fiducials_ms={str(k): float(v) for k, v in json.loads(row.fiducials_ms).items()},
            updated_by=row.updated_by,
            updated_at=row.updated_at,
        )

    def beat_labels(self, reading_id: str) -> ReadingBeatLabels | None:
        row = self._of_reading(reading_beat_labels, reading_id)
        if row is None:
            return None
        return ReadingBeatLabels(
            labels={int(k): BeatLabel(v) for k, v in json.loads(row.labels).items()},
            updated_by=row.updated_by,
            updated_at=row.updated_at,
        )

    def report(self, reading_id: str) -> ReadingReport | None:
        row = self._of_reading(reading_reports, reading_id)
        if row is None:
            return None
        return ReadingReport(
            statements=tuple(json.loads(row.statements)),
            text=row.text,
            updated_by=row.updated_by,
            updated_at=row.updated_at,
        )

    def versions(self, reading_id: str) -> Sequence[SignedVersion]:
        v = reading_versions.c
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(
                select(reading_versions).where(v.reading == reading_id).order_by(v.version)
            ).all()
        return [
            SignedVersion(
                document=json.loads(row.document),
                signature=Signature(
                    algorithm=row.algorithm,
                    key_fingerprint=row.key_fingerprint,
                    value=row.signature,
                ),
                public_key=bytes.fromhex(row.public_key),
            )
            for row in rows
        ]

    def add_version(
        self,
        version: SignedVersion,
        event: AuditEvent,
        transition: tuple[ReadingRecord, ReadingRecord],
    ) -> None:
        doc = version.document
        with unit_of_work(self.engine) as conn:
            self._compare_and_set(conn, *transition)
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(reading_versions).values(
                            reading=str(doc["reading"]),
                            version=int(str(doc["version"])),
                            document=canonical_json(doc).decode(),
                            algorithm=version.signature.algorithm,
                            signature=version.signature.value,
                            key_fingerprint=version.signature.key_fingerprint,
                            public_key=version.public_key.hex(),
                            signer=str(doc["signer"]),
                            signed_at=chain.parse_time(str(doc["signed_at"])),
                        )
                    )
            except IntegrityError as exc:
                raise Conflict("report version", str(doc["version"])) from exc
            _append(conn, event)

    # Critical values
    def add_critical(
        self,
        critical: CriticalRecord,
        event: AuditEvent,
        transition: tuple[ReadingRecord, ReadingRecord] | None = None,
    ) -> None:
        with unit_of_work(self.engine) as conn:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(critical_values).values(
                            id=critical.value.id, **_critical_values(critical)
                        )
                    )
            except IntegrityError as exc:
                raise Conflict("critical value", critical.value.code) from exc
            if transition is not None:
                self._compare_and_set(conn, *transition)
            _append(conn, event)

    def critical(self, critical_id: str) -> CriticalRecord | None:
        with unit_of_work(self.engine, read=True) as conn:
            row = conn.execute(
                select(critical_values).where(critical_values.c.id == critical_id)
            ).first()
        return None if row is None else _critical(row)

    def criticals_of(self, reading_id: str) -> Sequence[CriticalRecord]:
        c = critical_values.c
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(
                select(critical_values).where(c.reading == reading_id).order_by(c.detected_at, c.id)
            ).all()
        return [_critical(r) for r in rows]

    def update_critical(
        self, before: CriticalRecord, after: CriticalRecord, event: AuditEvent
    ) -> None:
        values = _critical_values(after)
        values["revision"] = before.revision + 1
        with unit_of_work(self.engine) as conn:
            done = conn.execute(
                update(critical_values)
                .where(
                    (critical_values.c.id == before.value.id)
                    & (critical_values.c.revision == before.revision)
                )
                .values(**values)
            )
            if done.rowcount != 1:
                raise StaleReading(before.value.id)
            _append(conn, event)

    def list_criticals(self, where: CriticalFilter, page: PageRequest) -> Page[CriticalRecord]:
        c = critical_values.c
        condition: Any = c.clinic.in_(sorted(where.clinics))
        if where.states is not None:
            condition = condition & c.state.in_(sorted(s.value for s in where.states))
        rows, total = self._page(critical_values, condition, page, c.detected_at.desc(), c.id)
        return Page(items=tuple(_critical(r) for r in rows), total=total)

    def due_criticals(self, now: datetime, limit: int) -> Sequence[CriticalRecord]:
        c = critical_values.c
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(
                select(critical_values)
                .where(c.state.in_(_OPEN_CRITICAL) & (c.escalate_at <= now))
                .order_by(c.escalate_at, c.id)
                .limit(limit)
            ).all()
        return [_critical(r) for r in rows]

    def audit(self, event: AuditEvent) -> None:
        with unit_of_work(self.engine) as conn:
            _append(conn, event)
