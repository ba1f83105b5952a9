"""The signaling server's :class:`sessions.store.Store` on the SQL store.

Bans, rooms and audit entries go to the tables of :mod:`store.schema`, the audit
entries into the hash chain (:mod:`store.audit`). ``write(records)`` is the group
commit: the server queues what happens while a write is in flight and hands the batch
over in one call, which becomes one transaction (one fsync on SQLite, one commit on
PostgreSQL) whatever its length. The chain's lock is taken first in that transaction
(audit rows are appended before the bans and rooms of the batch are inserted), so
several nodes writing to one PostgreSQL database extend one chain.

Every method is synchronous and short; the server calls them from its store thread,
never on the event loop. A database error becomes :class:`sessions.errors.StoreError`
(its message names the operation and the error class, never the URL); a record that
cannot be stored at all (a detail JSON cannot represent) raises ``TypeError`` or
``ValueError`` and nothing of its batch is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from sqlalchemy import Engine, Table, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.sql.dml import Insert

from sessions.errors import StoreError
from sessions.store import AuditEntry, Ban, ChatLine, Record, RoomRecord
from store import audit as chain
from store.engine import health, reader
from store.schema import bans, chat_lines, rooms

__all__ = ["SqlSessionStore"]

# audit_log() reads at most this many rows per call.
MAX_AUDIT_LOG_ROWS: Final = 10_000


def _error(what: str, exc: SQLAlchemyError) -> StoreError:
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    return StoreError(f"cannot {what}: {type(cause).__name__}")


def _audit_record(entry: AuditEntry) -> chain.AuditRecord:
    return chain.AuditRecord(
        time=chain.parse_time(entry.time),
        actor=entry.actor,
        action=entry.action,
        target=entry.target,
        institution=entry.institution,
        patient=entry.patient,
        consult=entry.consult,
        room=entry.room,
        detail=entry.detail,
    )


class SqlSessionStore:
    """:class:`sessions.store.Store` on SQLite or PostgreSQL.

    Parameters
    ----------
    engine
        The process's engine (:func:`store.engine.open_engine`), schema at head
        (:func:`store.migrate.upgrade`). Not disposed by :meth:`close`: the engine
        belongs to whoever made it.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._last_write_error: str | None = None

    def _insert_or_ignore(self, table: Table) -> Insert:
        # "First write wins" for bans and rooms: the same on both databases.
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        return sqlite.insert(table).on_conflict_do_nothing()

    def ban(self, ban: Ban) -> None:
        self.write([ban])

    def banned_jtis(self) -> set[str]:
        try:
            with reader(self.engine).connect() as conn:
                return set(conn.execute(select(bans.c.jti)).scalars())
        except SQLAlchemyError as exc:
            raise _error("read the bans", exc) from exc

    def is_banned(self, jti: str) -> bool:
        try:
            with reader(self.engine).connect() as conn:
                return bool(conn.execute(select(exists().where(bans.c.jti == jti))).scalar())
        except SQLAlchemyError as exc:
            raise _error("read the bans", exc) from exc

    def is_identity_banned(self, room: str, identity: str) -> bool:
        """Whether ``identity`` was removed from ``room`` (with whatever token)."""
        try:
            with reader(self.engine).connect() as conn:
                condition = (bans.c.room == room) & (bans.c.identity == identity)
                return bool(conn.execute(select(exists().where(condition))).scalar())
        except SQLAlchemyError as exc:
            raise _error("read the bans", exc) from exc

    def banned_identities(self) -> set[tuple[str, str]]:
        """``(room, identity)`` of every ban."""
        try:
            with reader(self.engine).connect() as conn:
                rows = conn.execute(select(bans.c.room, bans.c.identity).distinct())
                return {(room, identity) for room, identity in rows}
        except SQLAlchemyError as exc:
            raise _error("read the bans", exc) from exc

    def save_room(self, room: str, time: str) -> None:
        self.write([RoomRecord(room=room, time=time)])

    def rooms(self) -> list[tuple[str, str]]:
        try:
            with reader(self.engine).connect() as conn:
                rows = conn.execute(
                    select(rooms.c.room, rooms.c.created_at).order_by(
                        rooms.c.created_at, rooms.c.room
                    )
                )
                return [(room, chain.format_time(created)) for room, created in rows]
        except SQLAlchemyError as exc:
            raise _error("read the rooms", exc) from exc

    def audit(self, entry: AuditEntry) -> None:
        self.write([entry])

    def audit_log(self, room: str | None = None, limit: int = 1000) -> list[AuditEntry]:
        limit = max(0, min(limit, MAX_AUDIT_LOG_ROWS))
        try:
            with reader(self.engine).connect() as conn:
                rows = chain.query(
                    conn, chain.AuditQuery(room=room), limit=limit, newest_first=True
                )
        except SQLAlchemyError as exc:
            raise _error("read the audit trail", exc) from exc
        return [
            AuditEntry(
                time=chain.format_time(row.time),
                room=row.room,
                actor=row.actor,
                action=row.action,
                target=row.target,
                institution=row.institution,
                patient=row.patient,
                consult=row.consult,
                detail=row.detail_object(),
            )
            for row in reversed(rows)
        ]

    def chat_history(self, room: str, limit: int = 1000) -> list[ChatLine]:
        limit = max(0, min(limit, MAX_AUDIT_LOG_ROWS))
        c = chat_lines.c
        try:
            with reader(self.engine).connect() as conn:
                rows = conn.execute(
                    select(c.room, c.identity, c.name, c.text, c.created_at)
                    .where(c.room == room)
                    .order_by(c.id.desc())
                    .limit(limit)
                ).all()
        except SQLAlchemyError as exc:
            raise _error("read the chat", exc) from exc
        return [
            ChatLine(
                time=chain.format_time(row.created_at),
                room=row.room,
                identity=row.identity,
                name=row.name,
                text=row.text,
            )
            for row in reversed(rows)
        ]

    def write(self, records: Sequence[Record]) -> None:
        # A record that cannot be stored (bad time, detail not JSON) raises before or
        # inside the transaction: either way nothing of the batch is written.
        entries = [_audit_record(r) for r in records if isinstance(r, AuditEntry)]
        ban_rows = [
            {
                "jti": r.jti,
                "room": r.room,
                "identity": r.identity,
                "by_identity": r.by,
                "reason": r.reason,
                "created_at": _time(r.time),
            }
            for r in records
            if isinstance(r, Ban)
        ]
        room_rows = [
            {"room": r.room, "created_at": _time(r.time)}
            for r in records
            if isinstance(r, RoomRecord)
        ]
        chat_rows = [
            {
                "room": r.room,
                "identity": r.identity,
                "name": r.name,
                "text": r.text,
                "created_at": _time(r.time),
            }
            for r in records
            if isinstance(r, ChatLine)
        ]
        try:
            with self.engine.begin() as conn:
                chain.append(conn, entries)
                if chat_rows:
                    conn.execute(chat_lines.insert(), chat_rows)
                if ban_rows:
                    conn.execute(self._insert_or_ignore(bans), ban_rows)
                if room_rows:
                    # One row per room even when the batch names it twice (first wins).
                    firsts = list({row["room"]: row for row in reversed(room_rows)}.values())
                    conn.execute(self._insert_or_ignore(rooms), firsts)
        except SQLAlchemyError as exc:
            error = _error("write to the store", exc)
            self._last_write_error = str(error)
            raise error from exc
        self._last_write_error = None

    def health(self) -> str | None:
        """None when healthy, else why not: the last write failed, or a probe fails."""
        return self._last_write_error or health(self.engine)

    def close(self) -> None:
        """Nothing to release: the engine is its maker's to dispose."""


def _time(text: str) -> datetime:
    return chain.parse_time(text)
