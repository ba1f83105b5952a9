"""SQL pieces the statistics share (:mod:`store.consult_stats`, :mod:`store.reading_stats`),
the same on SQLite and PostgreSQL.

- Durations: ``EXTRACT(EPOCH FROM b - a)`` on PostgreSQL, ``(julianday(b) -
  julianday(a)) * 86400`` on SQLite (times are stored as UTC text there).
- Periods: the UTC month (``YYYY-MM``) or day (``YYYY-MM-DD``) of a time.
- Percentiles are nearest-rank (the ⌈p·n⌉-th smallest), which both databases compute
  the same way with window functions: ``ROW_NUMBER() OVER (PARTITION BY key ORDER BY
  seconds)`` beside ``COUNT(*) OVER (PARTITION BY key)``, and the ranks ⌈n/2⌉ =
  ``(n + 1) / 2`` and ⌈0.9·n⌉ = ``(9n + 9) / 10`` in integer arithmetic (SQLite has no
  ``percentile_cont`` and, before 3.44, no ``ceil``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select

__all__ = ["count_if", "median_and_p90", "seconds_between", "utc_period"]


def seconds_between(postgres: bool, later: Any, earlier: Any) -> Any:
    """``later - earlier`` in seconds, as a SQL expression."""
    if postgres:
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def utc_period(postgres: bool, moment: Any, *, month: bool) -> Any:
    """The UTC month (``YYYY-MM``) or day (``YYYY-MM-DD``) of ``moment``."""
    if postgres:
        return func.to_char(func.timezone("UTC", moment), "YYYY-MM" if month else "YYYY-MM-DD")
    return func.substr(moment, 1, 7 if month else 10)


def count_if(condition: Any) -> Any:
    """``SUM(CASE WHEN condition THEN 1 ELSE 0 END)``."""
    return func.sum(case((condition, 1), else_=0))


def median_and_p90(key: Any, seconds: Any, source: Any, where: Any) -> Any:
    """A subquery of ``(key, p50, p90)``: the nearest-rank median and 90th percentile of
    ``seconds`` per ``key`` over the rows of ``source`` where ``where``."""
    ranked = (
        select(
            key.label("key"),
            seconds.label("s"),
            func.row_number().over(partition_by=key, order_by=seconds).label("rn"),
            func.count().over(partition_by=key).label("n"),
        )
        .select_from(source)
        .where(where)
        .subquery()
    )
    rn, n = ranked.c.rn, ranked.c.n
    return (
        select(
            ranked.c.key,
            func.max(case((rn == (n + 1) // 2, ranked.c.s))).label("p50"),
            func.max(case((rn == (9 * n + 9) // 10, ranked.c.s))).label("p90"),
        )
        .group_by(ranked.c.key)
        .subquery()
    )
