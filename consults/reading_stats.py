"""Supervision statistics of the ECG centre: volume and turnaround of readings (received
→ signed) and of critical values (detected → acknowledged), by clinic, centre, reader
and period. No I/O: the SQL is :mod:`store.reading_stats`.

The period is of the ECG's receipt (``received_at``) for readings and of detection
(``detected_at``) for critical values, both UTC. Percentiles are nearest-rank (the
⌈p·n⌉-th smallest), as the consult statistics (:mod:`store.consult_stats`). Who sees
what is the consult service's supervision rule
(:meth:`consults.service.ConsultService.statistics_scope`): a deployment admin all; an
auditor, an institution admin or a coordinator their institution and those below it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from consults.directory import Person
from consults.periods import check_period

__all__ = [
    "ReadingStatistics",
    "ReadingStatsGroup",
    "ReadingStatsQuery",
    "ReadingStatsRow",
    "reading_statistics",
]


class ReadingStatsGroup(enum.Enum):
    """What the ECG centre's statistics are grouped by."""

    CLINIC = "clinic"  # where the ECG was recorded
    CENTRE = "centre"  # the ECG centre that reads it
    READER = "reader"  # who signed it (readings not yet signed: "")
    MONTH = "month"  # of receipt (criticals: of detection), UTC, YYYY-MM
    DAY = "day"  # the same, YYYY-MM-DD


@dataclass(frozen=True, kw_only=True)
class ReadingStatsQuery:
    """ECGs received (critical values detected) in ``[since, until)`` whose clinic or
    centre is within ``scope`` (None: all), grouped by ``by``."""

    since: datetime
    until: datetime
    by: ReadingStatsGroup
    scope: frozenset[str] | None = None


@dataclass(frozen=True, kw_only=True)
class ReadingStatsRow:
    """One group's volume and turnaround, seconds (None when nothing got that far)."""

    key: str
    received: int  # reading tasks received in the period
    signed: int  # of them, signed now (signed or amended)
    returned: int  # of them, returned to the clinic to re-record
    pending: int  # of them, not yet signed nor returned
    sign_median_s: float | None  # received -> (last) signed
    sign_p90_s: float | None
    criticals: int  # critical values detected in the period
    acknowledged: int  # of them, acknowledged by read-back
    escalated: int  # of them, escalated at least once
    ack_median_s: float | None  # detected -> acknowledged
    ack_p90_s: float | None


@runtime_checkable  # the API's dependency is checked against it
class ReadingStatistics(Protocol):
    """The statistics the store computes (in SQL)."""

    def reading_stats(self, query: ReadingStatsQuery) -> Sequence[ReadingStatsRow]:
        """One row per group with anything in the period, ordered by key."""
        ...


def reading_statistics(
    stats: ReadingStatistics,
    scope_of: Callable[[Person], frozenset[str] | None],
    person: Person,
    *,
    since: datetime,
    until: datetime,
    by: ReadingStatsGroup,
) -> Sequence[ReadingStatsRow]:
    """The rows ``person`` may see: ``scope_of`` decides over which institutions (and
    raises :class:`consults.errors.Forbidden` for anyone who oversees nothing).

    Raises
    ------
    Forbidden
        From ``scope_of``.
    InvalidInput
        A time without a zone, ``until`` not after ``since``, a period over 366 days.
    """
    scope = scope_of(person)
    check_period(since, until)
    return stats.reading_stats(ReadingStatsQuery(since=since, until=until, by=by, scope=scope))
