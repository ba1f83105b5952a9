"""What the statistics endpoints share (:mod:`api.consult_stats`, :mod:`api.reading_stats`):
the period's query parameters and its default, and the CSV answer (what a health
commission's clerk opens in a spreadsheet)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from typing import Annotated, Final

import msgspec
from litestar import Response
from litestar.params import QueryParameter

from api.schemas import NO_STORE

__all__ = ["DEFAULT_PERIOD", "Since", "Until", "csv_response", "period"]

# The period when the caller names none: the 30 days before ``until``.
DEFAULT_PERIOD: Final = dt.timedelta(days=30)

Since = Annotated[
    dt.datetime | None,
    QueryParameter(description="from (inclusive, RFC 3339); default 30 days before until"),
]
Until = Annotated[
    dt.datetime | None, QueryParameter(description="to (exclusive, RFC 3339); default now")
]


def period(
    since: dt.datetime | None, until: dt.datetime | None, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """``[since, until)`` with the defaults filled in (until: now; since: 30 days before)."""
    end = until or now
    return since or end - DEFAULT_PERIOD, end


def csv_response(
    filename: str, columns: Sequence[str], rows: Iterable[msgspec.Struct]
) -> Response[bytes]:
    """``rows`` as a CSV attachment: a header of ``columns``, then each row's fields of
    those names (null as empty); UTF-8 with a byte-order mark (spreadsheet programs
    then read the Chinese right), CRLF, never cached."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        values = msgspec.structs.asdict(row)
        writer.writerow(["" if values[c] is None else values[c] for c in columns])
    return Response(
        ("\ufeff" + out.getvalue()).encode(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"', **NO_STORE},
    )
