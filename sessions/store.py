"""Persistence (``Store``) and cross-process messaging (``Bus``), with embedded defaults.

What must persist: bans (a removed participant's token can never join again, even
after a restart), rooms (which exist and when they were first used) and the audit log
of every action ("every step leaves a trace"). The embedded ``Store`` is SQLite from
the standard library, in WAL mode with ``synchronous=FULL`` so that a write returned
from is on disk. Its methods are synchronous and quick; the signaling server calls
them from one worker thread so that the event loop never waits on the disk.

``Bus`` carries events between processes (several nodes share rooms through Redis);
the embedded one delivers within the process. Messages are bytes on named channels.

Redis implementations live in :mod:`sessions.redis_backend`.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from sessions.errors import StoreError

DB_FILE: Final = "teleconsult.sqlite3"


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """One action in the audit log.

    Attributes
    ----------
    time : str
        UTC, ISO 8601 with ``Z``.
    room : str
        Room id ("" for server-wide actions).
    actor : str
        Identity that acted ("server" for the server itself).
    action : str
        What happened (``join``, ``admit``, ``remove``, ``leave``, ``timeout``, ...).
    target : str
        Identity acted upon ("" when none).
    detail : dict
        Anything else, JSON-serialisable; never chat text, a token or an address.
    institution, patient, consult : str
        What the action concerns, for the auditor's queries ("" when not known): the
        institution's code, the patient's id, the consult's id.
    """

    time: str
    room: str
    actor: str
    action: str
    target: str = ""
    detail: dict[str, Any] | None = None
    institution: str = ""
    patient: str = ""
    consult: str = ""


@dataclass(frozen=True, kw_only=True)
class Ban:
    """A banned token."""

    jti: str
    room: str
    identity: str
    by: str
    reason: str
    time: str


@dataclass(frozen=True, kw_only=True)
class RoomRecord:
    """A room's first use."""

    room: str
    time: str


Record = Ban | AuditEntry | RoomRecord


class Store(Protocol):
    """What must survive a restart."""

    def ban(self, ban: Ban) -> None:
        """Ban a token id for good."""

    def banned_jtis(self) -> set[str]:
        """Every banned token id."""

    def is_banned(self, jti: str) -> bool:
        """Whether a token id is banned."""

    def banned_identities(self) -> set[tuple[str, str]]:
        """``(room, identity)`` of every ban: a banned identity may not enter that room."""

    def is_identity_banned(self, room: str, identity: str) -> bool:
        """Whether ``identity`` was removed from ``room`` (with whatever token)."""

    def save_room(self, room: str, time: str) -> None:
        """Record that a room exists (first use wins)."""

    def rooms(self) -> list[tuple[str, str]]:
        """``(room, first-used time)`` for every room, oldest first."""

    def audit(self, entry: AuditEntry) -> None:
        """Append to the audit log."""

    def audit_log(self, room: str | None = None, limit: int = 1000) -> list[AuditEntry]:
        """The last ``limit`` entries, oldest first, optionally of one room."""

    def write(self, records: Sequence[Record]) -> None:
        """Write several records in one durable step (group commit)."""

    def health(self) -> str | None:
        """None while the store works, else why not (``/healthz`` says ``degraded``).

        Cheap (one round trip at most) and synchronous: call it off the event loop.
        A write that failed makes it unhealthy until a write succeeds.
        """

    def close(self) -> None:
        """Release resources."""


class Bus(Protocol):
    """Publish/subscribe of bytes on named channels."""

    async def publish(self, channel: str, data: bytes) -> None:
        """Deliver ``data`` to every current subscriber of ``channel``."""

    async def subscribe(self, channel: str) -> AsyncIterator[bytes]:
        """Subscribe now; iterate for the messages published on ``channel`` from now on."""

    async def close(self) -> None:
        """Stop delivering; subscribers' iterators end."""


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS bans (
    jti TEXT PRIMARY KEY, room TEXT NOT NULL, identity TEXT NOT NULL,
    by_identity TEXT NOT NULL, reason TEXT NOT NULL, time TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rooms (room TEXT PRIMARY KEY, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, room TEXT NOT NULL,
    actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT);
CREATE INDEX IF NOT EXISTS audit_room ON audit (room, id);
"""


def _statement(record: Record) -> tuple[str, tuple[Any, ...]]:
    if isinstance(record, Ban):
        return (
            "INSERT OR IGNORE INTO bans VALUES (?, ?, ?, ?, ?, ?)",
            (record.jti, record.room, record.identity, record.by, record.reason, record.time),
        )
    if isinstance(record, RoomRecord):
        return "INSERT OR IGNORE INTO rooms VALUES (?, ?)", (record.room, record.time)
    detail = None if record.detail is None else json.dumps(record.detail, sort_keys=True)
    return (
        "INSERT INTO audit (time, room, actor, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (record.time, record.room, record.actor, record.action, record.target, detail),
    )


class SqliteStore:
    """The embedded :class:`Store`: one SQLite file in the data directory.

    Thread-safe (one lock), so it may be created in one thread and used from another.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / DB_FILE
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read {self.path}: {exc}") from exc

    def ban(self, ban: Ban) -> None:
        self.write([ban])

    def banned_jtis(self) -> set[str]:
        return {row[0] for row in self._read("SELECT jti FROM bans")}

    def is_banned(self, jti: str) -> bool:
        return bool(self._read("SELECT 1 FROM bans WHERE jti = ?", (jti,)))

    def banned_identities(self) -> set[tuple[str, str]]:
        return {(r, i) for r, i in self._read("SELECT DISTINCT room, identity FROM bans")}

    def is_identity_banned(self, room: str, identity: str) -> bool:
        sql = "SELECT 1 FROM bans WHERE room = ? AND identity = ?"
        return bool(self._read(sql, (room, identity)))

    def save_room(self, room: str, time: str) -> None:
        self.write([RoomRecord(room=room, time=time)])

    def rooms(self) -> list[tuple[str, str]]:
        return [(r, t) for r, t in self._read("SELECT room, created FROM rooms ORDER BY created")]

    def audit(self, entry: AuditEntry) -> None:
        self.write([entry])

    def write(self, records: Sequence[Record]) -> None:
        # One transaction, so one fsync for the whole batch.
        with self._lock:
            try:
                with self._db:
                    self._db.execute("BEGIN")
                    for record in records:
                        self._db.execute(*_statement(record))
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write to {self.path}: {exc}") from exc

    def audit_log(self, room: str | None = None, limit: int = 1000) -> list[AuditEntry]:
        where, params = ("WHERE room = ?", (room,)) if room is not None else ("", ())
        rows = self._read(
            f"SELECT time, room, actor, action, target, detail FROM audit {where}"
            " ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        return [
            AuditEntry(
                time=t, room=r, actor=a, action=act, target=tg, detail=json.loads(d) if d else None
            )
            for t, r, a, act, tg, d in reversed(rows)
        ]

    def health(self) -> str | None:
        try:
            self._read("SELECT 1")
        except StoreError:
            return "database unreachable"
        return None

    def close(self) -> None:
        with self._lock:
            self._db.close()


class LocalBus:
    """The embedded :class:`Bus`: delivery to subscribers in this process."""

    def __init__(self, *, max_queued: int = 1000) -> None:
        self._subscribers: defaultdict[str, set[asyncio.Queue[bytes | None]]] = defaultdict(set)
        self._max_queued = max_queued

    async def publish(self, channel: str, data: bytes) -> None:
        for queue in list(self._subscribers.get(channel, ())):
            # A subscriber that does not keep up loses its oldest messages rather than
            # holding the publisher or growing without bound.
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(data)

    async def subscribe(self, channel: str) -> AsyncIterator[bytes]:
        # Registered now, not at the first iteration, so nothing published between
        # subscribing and iterating is lost.
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(self._max_queued)
        self._subscribers[channel].add(queue)
        return self._drain(channel, queue)

    async def _drain(
        self, channel: str, queue: asyncio.Queue[bytes | None]
    ) -> AsyncIterator[bytes]:
        try:
            while (data := await queue.get()) is not None:
                yield data
        finally:
            self._subscribers[channel].discard(queue)

    async def close(self) -> None:
        for queues in self._subscribers.values():
            for queue in queues:
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(None)
