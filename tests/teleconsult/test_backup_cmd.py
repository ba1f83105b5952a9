"""``teleconsult backup`` and ``restore``: the drill, on SQLite and PostgreSQL."""

from __future__ import annotations

import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from consults.directory import Credentials, Institution, Level, Person, Role
from sessions.store import AuditEntry, Ban, RoomRecord
from store.engine import open_engine
from store.migrate import upgrade
from store.schema import metadata
from store.sessions import SqlSessionStore
from store.stores import open_store
from teleconsult.cli import main
from tests.pg import Database, database, make_database

__all__ = ["database"]

T = "2026-12-02T09:00:00.000Z"


def target_args(db: Database) -> list[str]:
    if db.kind == "sqlite":
        return ["--data-dir", str(db.data_dir)]
    return ["--database-url", db.url]


def contents(url: str) -> dict[str, list[Any]]:
    engine = open_engine(url=url)
    with engine.connect() as conn:
        found = {
            table.name: [
                tuple(row) for row in conn.execute(select(table).order_by(*table.primary_key))
            ]
            for table in metadata.sorted_tables
        }
    engine.dispose()
    return found


def test_backup_restore_verify_gives_the_same_rows(
    database: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Backup, restore into an empty store, verify: the same rows and an intact chain."""
    stores = open_store(data_dir=database.data_dir, database_url=database.url)
    stores.directory.add_institution(Institution("county", "某县医院", Level.COUNTY))
    stores.directory.add_person(
        Person("p1", "doc", "李医生", "county", frozenset({Role.DOCTOR})),
        Credentials("p1", "$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA"),
    )
    store = stores.signaling
    store.write(
        [RoomRecord(room="c-1", time=T)]
        + [AuditEntry(time=T, room="c-1", actor=f"a{i}", action="join") for i in range(50)]
        + [Ban(jti="j", room="c-1", identity="a1", by="m", reason="说明", time=T)]
    )
    stores.close()
    out = tmp_path / "backups" / "store.backup"
    assert main(["backup", "--out", str(out), *target_args(database)]) == 0
    assert "audit head seq 50" in capsys.readouterr().out
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert main(["backup", "--out", str(out), *target_args(database)]) == 2  # never overwrites

    fresh = make_database(database.kind, tmp_path / "restored")
    assert main(["restore", str(out), *target_args(fresh)]) == 0
    assert "audit chain holds, 50 rows" in capsys.readouterr().out
    before = contents(database.url)
    assert all(before[name] for name in ("people", "credentials", "institutions", "audit"))
    assert contents(fresh.url) == before
    # The restored store takes writes and keeps chaining.
    restored = open_engine(url=fresh.url)
    SqlSessionStore(restored).write([AuditEntry(time=T, room="c-1", actor="b", action="leave")])
    restored.dispose()
    assert main(["audit", "verify", *target_args(fresh)]) == 0
    assert "51 rows" in capsys.readouterr().out

    # Restore refuses a store that is not empty.
    assert main(["restore", str(out), *target_args(fresh)]) == 2
    assert "restore only into an empty" in capsys.readouterr().err
    if fresh.server is not None:
        fresh.server.drop_database(fresh.name)


def test_backup_while_the_server_writes(
    database: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A backup taken during a stream of appends restores to an intact chain."""
    engine = open_engine(url=database.url)
    upgrade(engine)
    store = SqlSessionStore(engine)
    store.write([AuditEntry(time=T, room="r", actor=f"a{i}", action="join") for i in range(500)])
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            store.write([AuditEntry(time=T, room="r", actor="w", action="join")])

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        out = tmp_path / "hot.backup"
        assert main(["backup", "--out", str(out), *target_args(database)]) == 0
    finally:
        stop.set()
        thread.join()
        engine.dispose()
    fresh = make_database(database.kind, tmp_path / "restored")
    assert main(["restore", str(out), *target_args(fresh)]) == 0
    assert "audit chain holds" in capsys.readouterr().out
    if fresh.server is not None:
        fresh.server.drop_database(fresh.name)


def test_restore_refuses_what_is_not_a_backup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that is neither a SQLite file nor a pg_dump archive: exit 2, nothing made."""
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a backup at all")
    assert main(["restore", str(junk), "--data-dir", str(tmp_path / "d")]) == 2
    assert "not a backup" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_restore_refuses_a_backup_of_the_other_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pg_dump archive cannot be restored into SQLite: exit 2, no database made."""
    dump = tmp_path / "dump"
    dump.write_bytes(b"PGDMP\x01\x0e\x00")
    assert main(["restore", str(dump), "--data-dir", str(tmp_path / "d")]) == 2
    assert "cannot be restored into this database" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
