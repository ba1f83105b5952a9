"""The ECG centre's statistics in SQL on SQLite and PostgreSQL:
:class:`consults.reading_stats.ReadingStatistics`.

Two grouped queries, each one statement: the reading tasks received in the period
(counts by state, and the nearest-rank median and p90 of received → signed over the
signed ones), and the critical values detected in it (counts, and detected →
acknowledged). They are merged by key in Python. Percentiles, durations and periods are
:mod:`store.stats_sql`'s, as for the consult statistics. Grouped by reader, a critical
value counts for the task's signer ("" while unsigned).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, func, or_, select

from consults.reading_stats import ReadingStatsGroup, ReadingStatsQuery, ReadingStatsRow
from consults.readings import CriticalState, ReadingState
from store.directory import unit_of_work
from store.reading_schema import critical_values, reading_tasks
from store.stats_sql import count_if, median_and_p90, seconds_between, utc_period

__all__ = ["SqlReadingStatistics"]

_SIGNED = (ReadingState.SIGNED.value, ReadingState.AMENDED.value)


class SqlReadingStatistics:
    """:class:`consults.reading_stats.ReadingStatistics` on SQLite or PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    def _key(self, by: ReadingStatsGroup, moment: Any, table: Any) -> Any:
        if by is ReadingStatsGroup.CLINIC:
            return table.c.clinic
        if by is ReadingStatsGroup.CENTRE:
            return table.c.centre
        if by is ReadingStatsGroup.READER:
            return func.coalesce(reading_tasks.c.signer, "")
        return utc_period(self._postgres, moment, month=by is ReadingStatsGroup.MONTH)

    def _in_scope(self, table: Any, query: ReadingStatsQuery) -> Any:
        if query.scope is None:
            return True
        scope = sorted(query.scope)
        return or_(table.c.clinic.in_(scope), table.c.centre.in_(scope))

    def _readings(self, conn: Any, query: ReadingStatsQuery) -> dict[str, Any]:
        t = reading_tasks.c
        key = self._key(query.by, t.received_at, reading_tasks).label("key")
        where = (
            (t.received_at >= query.since)
            & (t.received_at < query.until)
            & self._in_scope(reading_tasks, query)
        )
        counts = (
            select(
                key,
                func.count().label("received"),
                count_if(t.state.in_(_SIGNED)).label("signed"),
                count_if(t.state == ReadingState.RETURNED.value).label("returned"),
            )
            .where(where)
            .group_by(key)
            .subquery()
        )
        turnaround = median_and_p90(
            key,
            seconds_between(self._postgres, t.signed_at, t.received_at),
            reading_tasks,
            where & t.state.in_(_SIGNED) & t.signed_at.is_not(None),
        )
        statement = select(counts, turnaround.c.p50, turnaround.c.p90).select_from(
            counts.outerjoin(turnaround, turnaround.c.key == counts.c.key)
        )
        return {str(row.key): row for row in conn.execute(statement)}

    def _criticals(self, conn: Any, query: ReadingStatsQuery) -> dict[str, Any]:
        c = critical_values.c
        source = critical_values.join(reading_tasks, reading_tasks.c.id == c.reading)
        key = self._key(query.by, c.detected_at, critical_values).label("key")
        where = (
            (c.detected_at >= query.since)
            & (c.detected_at < query.until)
            & self._in_scope(critical_values, query)
        )
        counts = (
            select(
                key,
                func.count().label("criticals"),
                count_if(c.state == CriticalState.ACKNOWLEDGED.value).label("acknowledged"),
                count_if(c.level >= 0).label("escalated"),
            )
            .select_from(source)
            .where(where)
            .group_by(key)
            .subquery()
        )
        turnaround = median_and_p90(
            key,
            seconds_between(self._postgres, c.acknowledged_at, c.detected_at),
            source,
            where & c.acknowledged_at.is_not(None),
        )
        statement = select(counts, turnaround.c.p50, turnaround.c.p90).select_from(
            counts.outerjoin(turnaround, turnaround.c.key == counts.c.key)
        )
        return {str(row.key): row for row in conn.execute(statement)}

    def reading_stats(self, query: ReadingStatsQuery) -> Sequence[ReadingStatsRow]:
        with unit_of_work(self.engine, read=True) as conn:
            readings = self._readings(conn, query)
            criticals = self._criticals(conn, query)

        def seconds(value: Any) -> float | None:
            return None if value is None else round(float(value), 3)

        rows: list[ReadingStatsRow] = []
        for key in sorted(readings.keys() | criticals.keys()):
            r, c = readings.get(key), criticals.get(key)
            received = int(r.received) if r is not None else 0
            signed = int(r.signed) if r is not None else 0
            returned = int(r.returned) if r is not None else 0
            rows.append(
                ReadingStatsRow(
                    key=key,
                    received=received,
                    signed=signed,
                    returned=returned,
                    pending=received - signed - returned,
                    sign_median_s=seconds(r.p50) if r is not None else None,
                    sign_p90_s=seconds(r.p90) if r is not None else None,
                    criticals=int(c.criticals) if c is not None else 0,
                    acknowledged=int(c.acknowledged) if c is not None else 0,
                    escalated=int(c.escalated) if c is not None else 0,
                    ack_median_s=seconds(c.p50) if c is not None else None,
                    ack_p90_s=seconds(c.p90) if c is not None else None,
                )
            )
        return rows
