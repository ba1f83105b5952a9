"""Supervision statistics of the consult service, computed in SQL on SQLite and
PostgreSQL: :class:`consults.consult_repositories.ConsultStatistics`.

Design notes
------------
- Counts are one ``GROUP BY`` over the consults submitted in the period, with
  ``SUM(CASE …)`` per outcome.
- Percentiles (nearest-rank), durations and periods: :mod:`store.stats_sql`.
- Months and days are of the submission time in UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, case, func, literal, or_, select, union_all

from consults.consult_repositories import (
    ReferralStatsRow,
    StatsGroup,
    StatsQuery,
    StatsRow,
)
from consults.lifecycle import AWAITING_ACCEPTANCE, ConsultState
from consults.referrals import ReferralState
from store.consult_schema import consults, referrals
from store.directory import unit_of_work
from store.schema import institutions
from store.stats_sql import count_if, median_and_p90, seconds_between, utc_period

__all__ = ["SqlConsultStatistics"]


class SqlConsultStatistics:
    """:class:`consults.consult_repositories.ConsultStatistics` on SQLite or PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    def _key(self, by: StatsGroup) -> Any:
        c = consults.c
        if by is StatsGroup.CLINIC:
            return c.clinic
        if by is StatsGroup.CENTRE:
            return c.centre
        if by is StatsGroup.SPECIALTY:
            return c.specialty
        if by is StatsGroup.LEVEL:
            return institutions.c.level
        return utc_period(self._postgres, c.submitted_at, month=by is StatsGroup.MONTH)

    def _where(self, query: StatsQuery) -> Any:
        c = consults.c
        condition = (c.submitted_at >= query.since) & (c.submitted_at < query.until)
        if query.scope is not None:
            scope = sorted(query.scope)
            condition = condition & or_(c.clinic.in_(scope), c.centre.in_(scope))
        return condition

    def _from(self, by: StatsGroup) -> Any:
        if by is StatsGroup.LEVEL:
            return consults.join(institutions, institutions.c.code == consults.c.clinic)
        return consults

    def _percentiles(self, query: StatsQuery, done: Any) -> Any:
        """(key, median, p90) of the seconds from submission to ``done``."""
        return median_and_p90(
            self._key(query.by),
            seconds_between(self._postgres, done, consults.c.submitted_at),
            self._from(query.by),
            self._where(query) & done.is_not(None),
        )

    def consult_stats(self, query: StatsQuery) -> Sequence[StatsRow]:
        c = consults.c
        key = self._key(query.by).label("key")
        awaiting = [s.value for s in AWAITING_ACCEPTANCE]

        counts = (
            select(
                key,
                func.count().label("total"),
                count_if(c.accepted_at.is_not(None)).label("accepted"),
                count_if(
                    c.state.in_([ConsultState.REPORTED.value, ConsultState.CLOSED.value])
                ).label("signed"),
                count_if(c.state == ConsultState.DECLINED.value).label("declined"),
                count_if(c.state == ConsultState.CANCELLED.value).label("cancelled"),
                count_if(c.state == ConsultState.EXPIRED.value).label("expired"),
                count_if(c.state.in_(awaiting) & (c.accept_due < query.now)).label("overdue"),
            )
            .select_from(self._from(query.by))
            .where(self._where(query))
            .group_by(key)
            .subquery()
        )
        accept = self._percentiles(query, c.accepted_at)
        sign = self._percentiles(query, c.signed_at)
        statement = (
            select(
                counts,
                accept.c.p50.label("accept_p50"),
                accept.c.p90.label("accept_p90"),
                sign.c.p50.label("sign_p50"),
                sign.c.p90.label("sign_p90"),
            )
            .select_from(
                counts.outerjoin(accept, accept.c.key == counts.c.key).outerjoin(
                    sign, sign.c.key == counts.c.key
                )
            )
            .order_by(counts.c.key)
        )
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(statement).all()

        def seconds(value: Any) -> float | None:
            return None if value is None else round(float(value), 3)

        return [
            StatsRow(
                key=str(row.key),
                total=int(row.total),
                accepted=int(row.accepted),
                signed=int(row.signed),
                declined=int(row.declined),
                cancelled=int(row.cancelled),
                expired=int(row.expired),
                overdue=int(row.overdue),
                accept_median_s=seconds(row.accept_p50),
                accept_p90_s=seconds(row.accept_p90),
                sign_median_s=seconds(row.sign_p50),
                sign_p90_s=seconds(row.sign_p90),
            )
            for row in rows
        ]

    def referral_stats(self, query: StatsQuery) -> Sequence[ReferralStatsRow]:
        r = referrals.c
        period = (r.created_at >= query.since) & (r.created_at < query.until)
        if query.scope is not None:
            scope = sorted(query.scope)
            period = period & or_(r.from_institution.in_(scope), r.to_institution.in_(scope))
        back = case((r.state == ReferralState.REFERRED_BACK.value, 1), else_=0)
        sides = union_all(
            select(
                r.from_institution.label("institution"),
                literal(1).label("sent"),
                literal(0).label("received"),
                literal(0).label("back"),
            ).where(period),
            select(
                r.to_institution.label("institution"),
                literal(0).label("sent"),
                literal(1).label("received"),
                back.label("back"),
            ).where(period),
        ).subquery()
        statement = (
            select(
                sides.c.institution,
                func.sum(sides.c.sent).label("sent"),
                func.sum(sides.c.received).label("received"),
                func.sum(sides.c.back).label("back"),
            )
            .group_by(sides.c.institution)
            .order_by(sides.c.institution)
        )
        if query.scope is not None:
            statement = statement.where(sides.c.institution.in_(sorted(query.scope)))
        with unit_of_work(self.engine, read=True) as conn:
            rows = conn.execute(statement).all()
        return [
            ReferralStatsRow(
                institution=str(row.institution),
                sent=int(row.sent),
                received=int(row.received),
                referred_back=int(row.back),
            )
            for row in rows
        ]
