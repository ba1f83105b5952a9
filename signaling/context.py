"""What the concerns of the core share: connections, rooms, the outbox and its helpers.

The core is split by concern (:mod:`signaling.rooms` rooms and media negotiation,
:mod:`signaling.chat`, :mod:`signaling.viewing` live ECG, :mod:`signaling.notifications`,
:mod:`signaling.access` tokens, bans and revocations); :class:`signaling.core.Core` only
decodes, routes and exposes the entry points. Each concern holds a :class:`Context`
and writes its effects into the one outbox, so the effects of one entry point keep the
order in which they were decided, whichever concern decided them.

Indexes kept here because several concerns read them: the connections by id and by the
identity of their token (notifications, revocation, expiry, removal), and the
connection of each participant.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sessions.rooms import IN_MEDIA, Participant, Room
from sessions.store import AuditEntry, Record
from sessions.tokens import TokenClaims
from signaling import messages as m
from signaling.config import CoreConfig
from signaling.connections import AUTHENTICATED, Conn, ConnEvent
from signaling.effects import Close, ConnId, Effect, Persist, Send
from signaling.errors import ClientError
from signaling.messages import CloseCode
from signaling.ports import IceServerDict


def utc_now() -> datetime:
    """The wall clock, UTC."""
    return datetime.now(UTC)


def iso_z(moment: datetime) -> str:
    """``moment`` as UTC ISO 8601 with milliseconds and ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def new_id(prefix: str) -> str:
    """A random id: ``p_`` for participants, ``r_`` for resume secrets."""
    return f"{prefix}_{secrets.token_urlsafe(18 if prefix == 'r' else 9)}"


@dataclass
class CoreStats:
    """Counters the metrics endpoint reads."""

    received: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    notified: Counter[str] = field(default_factory=Counter)  # notify messages sent, by topic


class Context:
    """The state every concern reads and the outbox every concern writes.

    Parameters
    ----------
    config : CoreConfig
        Timeouts and limits.
    ice_servers : callable
        ``ice_servers(identity) -> list of RTCIceServer dicts``.
    wall_clock : callable
        The current UTC time (stamps and token expiry).
    make_id : callable
        ``make_id(prefix) -> str`` for participant and resume ids.
    """

    def __init__(
        self,
        *,
        config: CoreConfig,
        ice_servers: Callable[[str], list[IceServerDict]],
        wall_clock: Callable[[], datetime],
        make_id: Callable[[str], str],
    ) -> None:
        self.config = config
        self.ice_servers = ice_servers
        self.wall_clock = wall_clock
        self.make_id = make_id
        self.stats = CoreStats()
        self.conns: dict[ConnId, Conn] = {}
        self.conn_of: dict[str, Conn] = {}  # participant id -> its connection
        self.rooms: dict[str, Room] = {}
        self.participants: dict[str, Participant] = {}
        self._by_identity: dict[str, dict[ConnId, Conn]] = {}
        self._out: list[Effect] = []
        self._next_ack = 0
        self._on_persisted: dict[int, Callable[[bool], None]] = {}

    # ------------------------------------------------------------------ connections

    def authenticate(self, c: Conn, claims: TokenClaims, event: ConnEvent) -> None:
        """``c`` sent a valid ``join`` or ``watch`` with ``claims``."""
        c.apply(event)
        c.claims = claims
        self._by_identity.setdefault(claims.identity, {})[c.conn_id] = c

    def forget(self, c: Conn) -> None:
        """``c`` is gone: drop it from every index."""
        c.apply(ConnEvent.DROP)
        self.conns.pop(c.conn_id, None)
        if c.claims is not None:
            mine = self._by_identity.get(c.claims.identity)
            if mine is not None:
                mine.pop(c.conn_id, None)
                if not mine:
                    del self._by_identity[c.claims.identity]

    def connections_of(self, identity: str) -> Iterator[Conn]:
        """The authenticated, open connections of ``identity`` (any room, any kind)."""
        for c in list(self._by_identity.get(identity, {}).values()):
            if c.state in AUTHENTICATED:
                yield c

    def attach(self, c: Conn, p: Participant) -> None:
        """``c`` now speaks for ``p``."""
        c.participant = p
        self.conn_of[p.participant_id] = c

    def detach(self, c: Conn) -> None:
        """``c`` no longer speaks for its participant (the participant stays)."""
        if c.participant is not None and self.conn_of.get(c.participant.participant_id) is c:
            del self.conn_of[c.participant.participant_id]
        c.participant = None

    # ------------------------------------------------------------------ the outbox

    def emit(self, effect: Effect) -> None:
        """Queue an effect."""
        self._out.append(effect)

    def send(self, c: Conn, message: m.ServerMessage) -> None:
        """Send ``message`` on ``c``."""
        self._out.append(Send(c.conn_id, message))

    def send_to(self, p: Participant, message: m.ServerMessage) -> None:
        """Send ``message`` to ``p``'s connection, if it has one."""
        c = self.conn_of.get(p.participant_id)
        if c is not None:
            self.send(c, message)

    def broadcast(
        self, about: Participant, message: m.ServerMessage, *, skip: Participant | None = None
    ) -> None:
        """Send to everyone in ``about``'s room with a media session (``skip`` excepted)."""
        room = self.rooms.get(about.room_id)
        if room is None:
            return
        for p in room.participants.values():
            if p is not skip and p.state in IN_MEDIA:
                self.send_to(p, message)

    def refuse(self, c: Conn, error: ClientError, ref: str | None = None) -> None:
        """Send ``error`` to ``c``; close it too when the error says so (once)."""
        self.stats.errors[error.code.value] += 1
        self.send(c, m.Error(code=error.code.value, reason=error.reason, ref=ref))
        if error.close is not None and c.allows(ConnEvent.CLOSE):
            self.close(c, error.close, error.code.value)

    def close(self, c: Conn, code: CloseCode, reason: str) -> None:
        """Close ``c`` (after what was sent on it)."""
        c.apply(ConnEvent.CLOSE)
        self._out.append(Close(c.conn_id, code, reason))

    def audit(
        self,
        room: str,
        actor: str,
        action: str,
        *,
        target: str = "",
        detail: dict[str, str] | None = None,
    ) -> None:
        """Append an audit entry (fire and forget)."""
        entry = AuditEntry(
            time=self.now_iso(),
            room=room,
            actor=actor,
            action=action,
            target=target,
            detail=detail,
        )
        self._out.append(Persist(entry))

    def keep(self, record: Record) -> None:
        """Write ``record`` to the store (fire and forget, like :meth:`audit`)."""
        self._out.append(Persist(record))

    def persist_then(self, record: Record, done: Callable[[bool], None]) -> None:
        """Write ``record`` and call ``done(ok)`` when the I/O layer reports the write."""
        self._next_ack += 1
        self._on_persisted[self._next_ack] = done
        self._out.append(Persist(record, ack=self._next_ack))

    def persisted(self, ack: int, ok: bool) -> bool:
        """Run what waited for write ``ack``; False for an unknown (or repeated) ack."""
        done = self._on_persisted.pop(ack, None)
        if done is None:
            return False
        done(ok)
        return True

    def now_iso(self) -> str:
        """The wall clock as an ISO 8601 ``Z`` stamp."""
        return iso_z(self.wall_clock())

    def flush(self) -> list[Effect]:
        """The effects queued so far, in order; the outbox is empty afterwards."""
        out, self._out = self._out, []
        return out
