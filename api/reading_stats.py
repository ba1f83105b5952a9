"""``/api/v1/stats/readings``: the ECG centre's statistics (volume, received → signed,
critical → acknowledged; median and p90) for the supervision dashboard, as JSON and CSV.

Who may ask, and over which institutions, is the consult statistics' rule
(:meth:`consults.service.ConsultService.statistics_scope`); the numbers are computed in
SQL (:mod:`store.reading_stats`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Final

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery
from litestar.types import ControllerRouterHandler, Middleware
from msgspec import Meta

from api.schemas import AUTH_ERRORS, documented
from api.session import consults_error
from api.stats_common import Since, Until, csv_response, period
from consults.accounts import Principal
from consults.errors import ConsultsError
from consults.reading_stats import ReadingStatistics, ReadingStatsGroup, reading_statistics
from consults.service import ConsultService

__all__ = ["ReadingStatsApi", "ReadingStatsController", "reading_stats_api"]


class ReadingStatsOut(msgspec.Struct):
    """One group's volume and turnaround, seconds (null: nothing got that far)."""

    key: Annotated[str, Meta(examples=["village-1"])]
    received: int
    signed: int
    returned: int
    pending: int
    sign_median_s: float | None
    sign_p90_s: float | None
    criticals: int
    acknowledged: int
    escalated: int
    ack_median_s: float | None
    ack_p90_s: float | None


class ReadingStatsAnswer(msgspec.Struct):
    """ECGs received (critical values detected) in ``[since, until)``, by ``by``."""

    since: dt.datetime
    until: dt.datetime
    by: ReadingStatsGroup
    groups: list[ReadingStatsOut]


_EXAMPLE: Final = ReadingStatsAnswer(
    since=dt.datetime(2026, 11, 2, tzinfo=dt.UTC),
    until=dt.datetime(2026, 12, 2, tzinfo=dt.UTC),
    by=ReadingStatsGroup.CLINIC,
    groups=[
        ReadingStatsOut(
            key="village-1",
            received=412,
            signed=398,
            returned=6,
            pending=8,
            sign_median_s=840.0,
            sign_p90_s=3120.0,
            criticals=5,
            acknowledged=5,
            escalated=1,
            ack_median_s=95.0,
            ack_p90_s=410.0,
        )
    ],
)
_CSV_COLUMNS: Final = tuple(f.name for f in msgspec.structs.fields(ReadingStatsOut))


def _answer(
    stats: ReadingStatistics,
    service: ConsultService,
    principal: Principal,
    since: dt.datetime | None,
    until: dt.datetime | None,
    by: ReadingStatsGroup,
) -> ReadingStatsAnswer:
    start, end = period(since, until, service.now())
    rows = reading_statistics(
        stats, service.statistics_scope, principal.person, since=start, until=end, by=by
    )
    return ReadingStatsAnswer(
        since=start,
        until=end,
        by=by,
        groups=[ReadingStatsOut(**dataclasses.asdict(row)) for row in rows],
    )


class ReadingStatsController(Controller):
    """The ECG centre's statistics for the health commission and the alliance."""

    path = "/stats/readings"
    tags = ["statistics"]  # noqa: RUF012
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @get(
        "/",
        sync_to_thread=True,
        summary="ECG reading statistics (computed in SQL)",
        responses=documented(
            200,
            ReadingStatsAnswer,
            _EXAMPLE,
            *AUTH_ERRORS,
            (400, "invalid_input", "until: a period is at most 366 days"),
            (403, "forbidden", "statistics are for auditors, admins and coordinators"),
        ),
    )
    def stats(
        self,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
        reading_stats: NamedDependency[ReadingStatistics],
        since: Since = None,
        until: Until = None,
        by: FromQuery[ReadingStatsGroup] = ReadingStatsGroup.CLINIC,
    ) -> ReadingStatsAnswer:
        """Per ``by`` (clinic, centre, reader, month, day): ECGs received, signed,
        returned and waiting, with the median and 90th percentile of received → signed;
        critical values detected, acknowledged and escalated, with detected →
        acknowledged. Over the institutions the caller oversees."""
        return _answer(reading_stats, consult_service, principal, since, until, by)

    @get(
        "/csv",
        sync_to_thread=True,
        summary="ECG reading statistics as CSV",
        media_type="text/csv",
        responses=documented(200, None, None, *AUTH_ERRORS),
    )
    def stats_csv(
        self,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
        reading_stats: NamedDependency[ReadingStatistics],
        since: Since = None,
        until: Until = None,
        by: FromQuery[ReadingStatsGroup] = ReadingStatsGroup.CLINIC,
    ) -> Response[bytes]:
        """The groups of ``GET /stats/readings`` as CSV (UTF-8 with a BOM for
        spreadsheet programs), one row per group."""
        answer = _answer(reading_stats, consult_service, principal, since, until, by)
        name = f"readings-{answer.by.value}-{answer.since:%Y%m%d}-{answer.until:%Y%m%d}.csv"
        return csv_response(name, _CSV_COLUMNS, answer.groups)


@dataclass(frozen=True)
class ReadingStatsApi:
    """What the server mounts beside the consult API (whose ``consult_service``
    dependency these handlers use too)."""

    route_handlers: Sequence[ControllerRouterHandler]
    dependencies: dict[str, Provide]
    middleware: Sequence[Middleware]


def reading_stats_api(stats: ReadingStatistics) -> ReadingStatsApi:
    """The statistics controller and its ``reading_stats`` dependency."""
    return ReadingStatsApi(
        route_handlers=[ReadingStatsController],
        dependencies={
            "reading_stats": Provide(lambda: stats, use_cache=True, sync_to_thread=False)
        },
        middleware=[],
    )
