"""Live ECG viewing on ``/ws``: ``watch``, ``ecg_list``, ``ecg_subscribe``, ``ecg_unsubscribe``.

A connection that sends ``watch`` instead of ``join`` is authenticated by its token
(device tokens refused) and may then list and subscribe to the ECG streams its room
grants, without entering the room's media; a participant admitted to its room may do
the same on its own connection. The core only checks who asks and emits
:class:`~signaling.effects.EcgRequest`; which streams a room grants, and the
subscriptions themselves, are the ECG side's (:class:`signaling.device.ViewerHub`).

Design notes:

- **Nobody in a waiting room sees anything.** While an identity waits in a room, a
  ``watch`` with a token for that room is refused (``forbidden``, close 4403), its
  ``ecg_*`` requests are refused, and when it enters the waiting room every viewer
  connection it already had for that room is closed the same way (the ECG side drops a
  closed connection's subscriptions, so no sample reaches it afterwards).
- A removal ends the removed identity's viewer connections of that room too
  (:meth:`Viewing.end_watchers`), with ``removed`` and 4403.
- **Viewers are capped** per identity and per token (``max_watchers_per_identity``,
  ``max_watchers_per_token``): a watcher holds no room slot and no join timeout
  applies to it, so without a cap one token could keep thousands of connections open.
  The count is a scan of the open connections, once per ``watch``.
"""

from __future__ import annotations

from sessions.rooms import IN_MEDIA, PRESENT, State
from sessions.tokens import TokenClaims
from signaling import messages as m
from signaling.connections import Conn, ConnEvent, ConnState
from signaling.context import Context
from signaling.effects import EcgRequest
from signaling.errors import ClientError
from signaling.messages import CloseCode, ErrorCode

EcgMessage = m.EcgList | m.EcgSubscribe | m.EcgUnsubscribe


def waiting_error() -> ClientError:
    """What a viewer in (or entering) the waiting room is told; its connection closes."""
    return ClientError(
        ErrorCode.FORBIDDEN,
        "nothing can be viewed from the waiting room: wait to be admitted",
        CloseCode.FORBIDDEN,
    )


class Viewing:
    """The viewer side of ``/ws``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def is_waiting(self, identity: str, room_id: str) -> bool:
        """Whether ``identity`` is in the waiting room of ``room_id``."""
        room = self.ctx.rooms.get(room_id)
        p = None if room is None else room.by_identity(identity)
        return p is not None and p.state is State.WAITING

    def watch(self, c: Conn, claims: TokenClaims) -> None:
        """A verified ``watch``: the connection becomes a viewer."""
        if self.is_waiting(claims.identity, claims.room):
            raise waiting_error()
        self._check_caps(claims)
        self.ctx.authenticate(c, claims, ConnEvent.WATCH)
        self.ctx.audit(claims.room, claims.identity, "watch", detail={"role": claims.role})
        self.ctx.send(c, m.Watching(identity=claims.identity, role=claims.role, room=claims.room))

    def _check_caps(self, claims: TokenClaims) -> None:
        """Refuse a ``watch`` over the identity's or the token's viewer connections."""
        config = self.ctx.config
        by_identity = by_token = 0
        for other in self.ctx.conns.values():
            if other.state is ConnState.WATCHING and other.claims is not None:
                by_identity += other.claims.identity == claims.identity
                by_token += other.claims.jti == claims.jti
        if by_identity >= config.max_watchers_per_identity:
            limit = f"{config.max_watchers_per_identity} viewer connections per person"
        elif by_token >= config.max_watchers_per_token:
            limit = f"{config.max_watchers_per_token} viewer connections per token"
        else:
            return
        raise ClientError(
            ErrorCode.TOO_MANY_CONNECTIONS,
            f"at most {limit}: close one first",
            CloseCode.RATE_LIMITED,
        )

    def is_present(self, identity: str, room_id: str) -> bool:
        """Whether ``identity`` is admitted to ``room_id`` (in it, or briefly dropped)."""
        room = self.ctx.rooms.get(room_id)
        p = None if room is None else room.by_identity(identity)
        return p is not None and p.state in PRESENT

    def request(self, c: Conn, message: EcgMessage) -> None:
        """An ``ecg_*`` request, from a viewer or an admitted participant."""
        if c.claims is None:
            raise ClientError(ErrorCode.NOT_JOINED, "send watch (or join) first")
        if c.state is ConnState.WATCHING:
            identity, room = c.claims.identity, c.claims.room
            if self.is_waiting(identity, room):
                raise waiting_error()
        elif c.participant is not None:
            if c.participant.state not in IN_MEDIA:
                raise ClientError(ErrorCode.BAD_STATE, "not allowed in the waiting room")
            identity, room = c.participant.identity, c.participant.room_id
        else:
            raise ClientError(ErrorCode.NOT_JOINED, "send watch (or join) first")
        self.ctx.emit(
            EcgRequest(
                c.conn_id,
                identity,
                room,
                message,
                institution=c.claims.institution,
                person_roles=c.claims.person_roles,
                in_room=self.is_present(identity, room),
            )
        )

    def end_watchers(self, identity: str, room_id: str, error: ClientError) -> int:
        """Close every viewer connection of ``identity`` for ``room_id``; how many."""
        ended = 0
        for c in self.ctx.connections_of(identity):
            if c.state is ConnState.WATCHING and c.claims is not None and c.claims.room == room_id:
                self.ctx.refuse(c, error)
                ended += 1
        return ended
