"""What the signaling server persists (``Store``) and shares live between nodes (``Bus``).

What must persist: bans (a removed identity never joins the room again, even after a
restart), rooms (which exist and when they were first used) and the audit trail of
every action ("every step leaves a trace"). The one implementation is the SQL store's
(:class:`store.sessions.SqlSessionStore`, SQLite or PostgreSQL, hash-chained audit);
the Protocol is here so that the signaling package depends on no database. Its
methods are synchronous; the signaling server calls them from one worker thread so
that the event loop never waits on the disk.

``Bus`` carries events between processes (bans and audit rows to the other nodes,
through Redis: :class:`sessions.redis_backend.RedisBus`); the embedded one delivers
within the process. Messages are bytes on named channels.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

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


@dataclass(frozen=True, kw_only=True)
class ChatLine:
    """What someone said in a room's chat: part of the consult's record (a consult's
    room is ``consult-<id>``), never of the audit trail.

    Attributes
    ----------
    time : str
        UTC, ISO 8601 with ``Z``, as the server stamped it.
    room, identity, name, text : str
        Where, who (the token's identity and display name) and what.
    """

    time: str
    room: str
    identity: str
    name: str
    text: str


Record = Ban | AuditEntry | RoomRecord | ChatLine


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

    def chat_history(self, room: str, limit: int = 1000) -> list[ChatLine]:
        """The room's last ``limit`` chat lines, oldest first."""

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
