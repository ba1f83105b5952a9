"""The auditor's search of the trail (:class:`consults.audit_trail.AuditReader`) on the
``audit`` table: newest first, keyset pages by ``seq``, every filter an indexed column
where the table has one (actor, patient, consult, institution, time)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, and_, select

from consults.audit_trail import AuditFilter, AuditItem
from store.directory import unit_of_work
from store.schema import audit, from_epoch_s, to_epoch_s

__all__ = ["SqlAuditReader"]


class SqlAuditReader:
    """Reads the chained ``audit`` table; never writes it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def search(
        self, where: AuditFilter, *, limit: int, before_seq: int | None
    ) -> Sequence[AuditItem]:
        terms = [
            audit.c[name] == value
            for name, value in (
                ("actor", where.actor),
                ("action", where.action),
                ("patient", where.patient),
                ("consult", where.consult),
                ("room", where.room),
            )
            if value is not None
        ]
        if where.institutions is not None:
            terms.append(audit.c.institution.in_(sorted(where.institutions)))
        if where.since_s is not None:
            terms.append(audit.c.time >= from_epoch_s(where.since_s))
        if where.until_s is not None:
            terms.append(audit.c.time < from_epoch_s(where.until_s))
        if before_seq is not None:
            terms.append(audit.c.seq < before_seq)
        statement = select(audit).where(and_(True, *terms)).order_by(audit.c.seq.desc())
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(statement.limit(limit)).all()
        return [
            AuditItem(
                seq=row.seq,
                time_s=to_epoch_s(row.time),
                actor=row.actor,
                action=row.action,
                target=row.target,
                institution=row.institution,
                patient=row.patient,
                consult=row.consult,
                room=row.room,
                detail=row.detail,
            )
            for row in rows
        ]
