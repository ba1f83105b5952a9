"""Migrations: an empty database upgraded to head equals store.schema, on both databases."""

from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy import Engine, inspect, select

from store.engine import DB_FILE, health, open_engine
from store.migrate import current_revision, differences, downgrade, head_revision, upgrade
from store.schema import GENESIS_HASH, audit_head, metadata
from tests.pg import Database


def test_upgrade_of_an_empty_database_equals_the_metadata(database: Database) -> None:
    """Upgrading an empty database to head leaves no difference Alembic can find."""
    engine = open_engine(url=database.url)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert differences(engine) == []
    assert set(inspect(engine).get_table_names()) >= set(metadata.tables)
    with engine.connect() as conn:
        assert conn.execute(select(audit_head.c.seq, audit_head.c.hash)).one() == (0, GENESIS_HASH)
    upgrade(engine)  # a second upgrade is a no-op
    assert differences(engine) == []
    engine.dispose()


def test_every_migration_goes_back_to_an_empty_database(engine: Engine) -> None:
    """Downgrading to base drops every table of the schema; upgrading again restores it."""
    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) & set(metadata.tables) == set()
    upgrade(engine)
    assert differences(engine) == []


def test_health_probe_answers_none_when_reachable(engine: Engine) -> None:
    """The /healthz probe finds a reachable database healthy."""
    assert health(engine) is None


def test_health_probe_names_an_unreachable_database(tmp_path: Path) -> None:
    """A PostgreSQL URL nobody listens on is reported, without the URL in the reason."""
    from tests.pg import _free_port

    engine = open_engine(url=f"postgresql://nobody:secret@127.0.0.1:{_free_port()}/x")
    reason = health(engine)
    assert reason is not None
    assert "unreachable" in reason
    assert "secret" not in reason
    assert "127.0.0.1" not in reason


def test_data_dir_and_database_file_are_private(tmp_path: Path) -> None:
    """The data directory is created 0700, the database and its WAL files 0600."""
    data_dir = tmp_path / "new" / "var"
    engine = open_engine(data_dir=data_dir)
    upgrade(engine)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    with engine.connect() as conn:
        conn.execute(select(1))
        for path in data_dir.iterdir():
            assert path.name.startswith(DB_FILE)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    engine.dispose()


def test_sqlite_connections_are_wal_synchronous_full_with_foreign_keys(tmp_path: Path) -> None:
    """Every SQLite connection is in WAL mode, synchronous=FULL, foreign keys on."""
    engine = open_engine(data_dir=tmp_path)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
