"""The period of a statistics query: the same rule for the consults' and the ECG centre's
figures."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from consults.errors import InvalidInput

__all__ = ["MAX_PERIOD", "check_period"]

MAX_PERIOD: Final = timedelta(days=366)


def check_period(since: datetime, until: datetime) -> None:
    """Refuse a time without a zone, ``until`` not after ``since``, over 366 days.

    Raises
    ------
    InvalidInput
        Naming ``since`` or ``until``.
    """
    if since.tzinfo is None or until.tzinfo is None:
        raise InvalidInput("since", "needs a time zone")
    if until <= since:
        raise InvalidInput("until", "must be after since")
    if until - since > MAX_PERIOD:
        raise InvalidInput("until", "a period is at most 366 days")
