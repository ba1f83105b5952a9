"""Statistics as CSV: what a health commission's clerk opens in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

import msgspec
from litestar import Response

from api.schemas import NO_STORE

__all__ = ["csv_response"]


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
