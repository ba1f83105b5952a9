"""The contract tests of login, CSRF, lockout and the directory's branches, again on a
real PostgreSQL server (tests/pg.py) instead of SQLite: the API behaves the same on the
database of multi-node deployments."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from store.stores import Stores, open_store
from tests.api.test_auth import (
    test_cookie_requests_need_the_csrf_token,
    test_locked_account_and_unlock,
    test_login_answers_a_token_and_sets_the_session_cookie,
    test_totp_enrolment_then_login_takes_the_code,
)
from tests.api.test_auth_fixtures import policy, stack
from tests.api.test_directory import (
    test_another_branch_is_not_found,
    test_sql_metacharacters_in_every_field_are_refused,
)
from tests.pg import make_database

__all__ = [
    "policy",
    "stack",
    "test_another_branch_is_not_found",
    "test_cookie_requests_need_the_csrf_token",
    "test_locked_account_and_unlock",
    "test_login_answers_a_token_and_sets_the_session_cookie",
    "test_sql_metacharacters_in_every_field_are_refused",
    "test_totp_enrolment_then_login_takes_the_code",
]


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Stores]:
    """The SQL store on a fresh database of the shared PostgreSQL server."""
    database = make_database("postgresql", tmp_path)
    stores = open_store(data_dir=database.data_dir, database_url=database.url)
    try:
        yield stores
    finally:
        stores.close()
        if database.server is not None:
            database.server.drop_database(database.name)
