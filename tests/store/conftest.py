"""Every store test runs on SQLite and on a real PostgreSQL server (tests/pg.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from store.engine import open_engine
from store.migrate import upgrade
from tests.pg import Database, database

__all__ = ["database", "engine"]


@pytest.fixture
def engine(database: Database) -> Iterator[Engine]:
    """An engine on an empty database brought to the newest schema."""
    engine = open_engine(url=database.url)
    upgrade(engine)
    yield engine
    engine.dispose()
