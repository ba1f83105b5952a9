"""``/api/v1/stats``: the supervision statistics of consults and referrals (counts,
turnaround median and p90, rates), as JSON and CSV."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Final

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromQuery
from msgspec import Meta

from api.schemas import AUTH_ERRORS, documented
from api.session import consults_error
from api.stats_common import Since, Until, csv_response, period
from consults.accounts import Principal
from consults.consult_repositories import (
    StatsGroup,
    StatsRow,
)
from consults.errors import ConsultsError
from consults.service import ConsultService

__all__ = ["StatsController"]


class StatsGroupOut(msgspec.Struct):
    """One group's counts and turnaround (seconds from submission)."""

    key: Annotated[str, Meta(examples=["village-1"])]
    total: int
    accepted: int
    signed: int
    declined: int
    cancelled: int
    expired: int
    overdue: int
    accept_median_s: float | None
    accept_p90_s: float | None
    sign_median_s: float | None
    sign_p90_s: float | None
    accepted_rate: float
    declined_rate: float
    cancelled_rate: float
    expired_rate: float


class ReferralStatsOut(msgspec.Struct):
    institution: str
    sent: int
    received: int
    referred_back: int


class StatsAnswer(msgspec.Struct):
    """Supervision statistics of the consults submitted in ``[since, until)``."""

    since: dt.datetime
    until: dt.datetime
    by: StatsGroup
    groups: list[StatsGroupOut]
    referrals: list[ReferralStatsOut]


_CSV_COLUMNS: Final = (
    "key",
    "total",
    "accepted",
    "signed",
    "declined",
    "cancelled",
    "expired",
    "overdue",
    "accept_median_s",
    "accept_p90_s",
    "sign_median_s",
    "sign_p90_s",
    "accepted_rate",
    "declined_rate",
    "cancelled_rate",
    "expired_rate",
)


def _group(row: StatsRow) -> StatsGroupOut:
    def rate(count: int) -> float:
        return round(count / row.total, 4) if row.total else 0.0

    return StatsGroupOut(
        **dataclasses.asdict(row),
        accepted_rate=rate(row.accepted),
        declined_rate=rate(row.declined),
        cancelled_rate=rate(row.cancelled),
        expired_rate=rate(row.expired),
    )


def _stats(
    service: ConsultService,
    principal: Principal,
    since: dt.datetime | None,
    until: dt.datetime | None,
    by: StatsGroup,
) -> StatsAnswer:
    start, end = period(since, until, service.now())
    groups, referrals = service.statistics(principal.person, since=start, until=end, by=by)
    return StatsAnswer(
        since=start,
        until=end,
        by=by,
        groups=[_group(g) for g in groups],
        referrals=[ReferralStatsOut(**dataclasses.asdict(r)) for r in referrals],
    )


class StatsController(Controller):
    """Supervision statistics for the health commission and the alliance."""

    path = "/stats/consults"
    tags = ["statistics"]  # noqa: RUF012
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @get(
        "/",
        sync_to_thread=True,
        summary="Consult statistics (computed in SQL)",
        responses=documented(
            200,
            StatsAnswer,
            None,
            *AUTH_ERRORS,
            (400, "invalid_input", "until: a period is at most 366 days"),
            (403, "forbidden", "statistics are for auditors, admins and coordinators"),
        ),
    )
    def stats(
        self,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
        since: Since = None,
        until: Until = None,
        by: FromQuery[StatsGroup] = StatsGroup.CLINIC,
    ) -> StatsAnswer:
        """Counts by outcome, rates, and the median and 90th percentile of the time from
        submission to acceptance and to signature, per ``by`` (clinic, centre, level,
        specialty, month, day); referrals sent, received and referred back per
        institution. Over the institutions the caller oversees."""
        return _stats(consult_service, principal, since, until, by)

    @get(
        "/csv",
        sync_to_thread=True,
        summary="Consult statistics as CSV",
        media_type="text/csv",
        responses=documented(200, None, None, *AUTH_ERRORS),
    )
    def stats_csv(
        self,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
        since: Since = None,
        until: Until = None,
        by: FromQuery[StatsGroup] = StatsGroup.CLINIC,
    ) -> Response[bytes]:
        """The groups of ``GET /stats/consults`` as CSV (UTF-8 with a BOM, so that
        spreadsheet programs read the Chinese right), one row per group."""
        answer = _stats(consult_service, principal, since, until, by)
        name = f"consults-{answer.by.value}-{answer.since:%Y%m%d}-{answer.until:%Y%m%d}.csv"
        return csv_response(name, _CSV_COLUMNS, answer.groups)
