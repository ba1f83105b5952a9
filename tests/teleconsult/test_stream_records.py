"""The catalogue rows of streams are written again after a failure of the store."""

from __future__ import annotations

import logging

import pytest

from consults.errors import InvalidInput, RepositoryError
from teleconsult.app import with_retries


def test_a_store_failure_is_tried_again_until_the_row_is_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tries: list[int] = []

    def write() -> None:
        tries.append(len(tries))
        if len(tries) < 3:
            raise RepositoryError("storage is unavailable; try again")

    with caplog.at_level(logging.WARNING, logger="teleconsult.app"):
        with_retries("a stream's start", write, pauses_s=(0.0, 0.0, 0.0))
    assert tries == [0, 1, 2]
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]


def test_a_store_that_stays_down_is_an_error_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    tries: list[int] = []

    def write() -> None:
        tries.append(1)
        raise RepositoryError("storage is unavailable; try again")

    with caplog.at_level(logging.WARNING, logger="teleconsult.app"):
        with_retries("a stream's end", write, pauses_s=(0.0,))
    assert len(tries) == 2
    assert caplog.records[-1].levelname == "ERROR"
    assert "a stream's end not recorded" in caplog.records[-1].getMessage()


def test_any_other_failure_is_logged_with_its_traceback_and_not_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tries: list[int] = []

    def write() -> None:
        tries.append(1)
        raise InvalidInput("consult", "is not a consult of this clinic")

    with caplog.at_level(logging.WARNING, logger="teleconsult.app"):
        with_retries("a stream's start", write, pauses_s=(0.0, 0.0))
    assert tries == [1]
    (record,) = caplog.records
    assert record.levelname == "ERROR"
    assert record.exc_info is not None
