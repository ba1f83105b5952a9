"""A data directory of the first SQLite store is adopted by the initial migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import inspect

from sessions.store import AuditEntry, Ban, RoomRecord
from store.audit import verify
from store.engine import DB_FILE
from store.migrate import differences
from store.stores import open_store

T = "2026-11-30T08:00:00.000Z"

# The first store's schema, as sessions.store.SqliteStore created it.
OLD_SCHEMA = """
CREATE TABLE bans (jti TEXT PRIMARY KEY, room TEXT NOT NULL, identity TEXT NOT NULL,
    by_identity TEXT NOT NULL, reason TEXT NOT NULL, time TEXT NOT NULL);
CREATE TABLE rooms (room TEXT PRIMARY KEY, created TEXT NOT NULL);
CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL,
    room TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,
    detail TEXT);
CREATE INDEX audit_room ON audit (room, id);
"""


def make_old_store(data_dir: Path) -> None:
    data_dir.mkdir()
    db = sqlite3.connect(data_dir / DB_FILE)
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO bans VALUES ('j1', 'r', 'mallory', 'mod', 'rude', ?)", (T,))
    db.execute("INSERT INTO rooms VALUES ('r', ?)", (T,))
    rows = [
        (T, "r", "alice", "join", "", None),
        ("garbled", "r", "mod", "remove", "mallory", '{"reason": "rude"}'),
    ]
    db.executemany(
        "INSERT INTO audit (time, room, actor, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    db.commit()
    db.close()


def test_old_bans_rooms_and_audit_are_adopted(tmp_path: Path) -> None:
    """Bans, rooms and audit rows of the first store survive the move, chained in order."""
    data_dir = tmp_path / "var"
    make_old_store(data_dir)
    stores = open_store(data_dir=data_dir)
    signaling = stores.signaling
    assert signaling.is_banned("j1")
    assert signaling.is_identity_banned("r", "mallory")
    assert signaling.rooms() == [("r", "2026-11-30T08:00:00.000000Z")]
    log = signaling.audit_log("r")
    assert [(e.actor, e.action) for e in log] == [("alice", "join"), ("mod", "remove")]
    assert log[1].detail == {"reason": "rude", "legacy_time": "garbled"}
    assert verify(stores.engine).ok
    tables = set(inspect(stores.engine).get_table_names())
    assert not {t for t in tables if t.startswith("legacy_")}
    assert differences(stores.engine) == []
    # The adopted store keeps working as the new one.
    signaling.write(
        [
            RoomRecord(room="s", time=T),
            AuditEntry(time=T, room="s", actor="bob", action="join"),
            Ban(jti="j2", room="s", identity="eve", by="mod", reason="", time=T),
        ]
    )
    assert verify(stores.engine).rows == 3
    stores.close()
