"""Adopting the tables of the signaling server's first SQLite store.

Before the SQL store, ``sessions.store.SqliteStore`` kept ``bans``, ``rooms`` and an
unchained ``audit`` in the same file, ``DATA_DIR/teleconsult.sqlite3``, with no
migrations. The initial migration renames them ``legacy_*`` (:func:`is_legacy` tells
it so) before it creates its tables, and calls :func:`adopt` after: bans and rooms are
copied, the old audit rows are appended to the new chain in their order (so the chain
starts with the deployment's history), and the ``legacy_*`` tables are dropped, all in
the migration's transaction. A time the old store wrote that does not parse is kept
in the row's detail (``legacy_time``) and the row dated at the epoch, never dropped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Connection, MetaData, Table, insert, inspect, select

from store import audit as chain
from store.schema import bans, rooms

LEGACY: Final = ("bans", "rooms", "audit")
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def is_legacy(conn: Connection) -> bool:
    """Whether the database holds the old store's tables (an ``audit`` without ``seq``)."""
    inspector = inspect(conn)
    if "audit" not in inspector.get_table_names():
        return False
    return "seq" not in {column["name"] for column in inspector.get_columns("audit")}


def _time(text: str) -> tuple[datetime, str | None]:
    try:
        return chain.parse_time(text), None
    except ValueError:
        return EPOCH, text


def adopt(conn: Connection) -> None:
    """Copy the ``legacy_*`` rows into the new tables and drop the old tables."""
    old = MetaData()
    legacy_bans = Table("legacy_bans", old, autoload_with=conn)
    legacy_rooms = Table("legacy_rooms", old, autoload_with=conn)
    legacy_audit = Table("legacy_audit", old, autoload_with=conn)
    ban_rows = []
    for row in conn.execute(select(legacy_bans)):
        created, _ = _time(row.time)
        ban_rows.append(
            {
                "jti": row.jti,
                "room": row.room,
                "identity": row.identity,
                "by_identity": row.by_identity,
                "reason": row.reason,
                "created_at": created,
            }
        )
    if ban_rows:
        conn.execute(insert(bans), ban_rows)
    room_rows = [
        {"room": row.room, "created_at": _time(row.created)[0]}
        for row in conn.execute(select(legacy_rooms))
    ]
    if room_rows:
        conn.execute(insert(rooms), room_rows)
    records = []
    for row in conn.execute(select(legacy_audit).order_by(legacy_audit.c.id)):
        moment, raw = _time(row.time)
        detail: dict[str, Any] | None = json.loads(row.detail) if row.detail else None
        if raw is not None:
            detail = {**(detail or {}), "legacy_time": raw}
        records.append(
            chain.AuditRecord(
                time=moment,
                actor=row.actor,
                action=row.action,
                target=row.target,
                room=row.room,
                detail=detail,
            )
        )
    chain.append(conn, records)
    for table in (legacy_bans, legacy_rooms, legacy_audit):
        table.drop(conn)
