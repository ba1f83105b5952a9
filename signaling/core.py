"""The signaling protocol core: messages in, messages and effects out, no I/O.

After websockets' ``protocol.py``: the core is fed what happened (a connection opened,
a frame arrived, a connection closed, time passed, the media backend answered, a write
became durable) and returns a list of *effects* (:mod:`signaling.effects`) for the I/O
layer to carry out. It never awaits, never reads the clock (every entry point takes
``now_s``, a monotonic time in seconds; wall-clock stamps and token expiry come from an
injected function) and never touches a socket, so it is tested by feeding it input and
reading its output.

The concerns live in their own modules, and :class:`Core` only decodes, routes and
exposes the entry points:

================================  ===================================================
:mod:`signaling.connections`      a connection's states, in one transition table
:mod:`signaling.access`           tokens, bans (per identity and room), revocations
:mod:`signaling.rooms`            join, waiting room, admission, removal, mutes, media
:mod:`signaling.chat`             chat
:mod:`signaling.viewing`          live ECG: ``watch`` and the ``ecg_*`` requests
:mod:`signaling.notifications`    ``notify``: messages pushed to a person
:mod:`signaling.context`          what they share: indexes and the outbox
================================  ===================================================

What the I/O layer calls (each returns the effects to carry out, in order):

- ``open(conn, now_s)``, ``receive(conn, data, now_s)``, ``closed(conn, now_s)``: a
  connection's life. ``closed`` must be called once for every opened connection.
- ``tick(now_s)`` every ~0.5 s: grace periods, join timeouts, and **token expiry** on
  live connections (``error`` ``token_expired``, then close 4401; a participant so
  closed is ``DISCONNECTED`` and may resume with a fresh token).
- ``persisted(ack, ok, now_s)``: a ``Persist`` effect with ``ack`` set has been written
  durably (``ok=True``) or failed (``ok=False``). Removals wait for it: the ban is
  enforced and announced on success; on failure the moderator gets ``store_failed``.
- ``revoke(now_s, identity=... | jti=..., reason=...)``: a session, device or person
  is revoked: every matching connection gets ``error`` ``revoked`` and close 4401, and
  the token (or every token of the identity issued so far) is refused from then on.
- ``apply_ban(ban, now_s)``: a ban another node wrote (from the Bus): enforced at once.
- ``notify(identity, topic, data)``: push a ``notify`` message to every connection of
  a person (:mod:`signaling.notifications`).
- ``media_joined``, ``media_answer``, ``media_error`` (results of media effects),
  ``media_offer``, ``media_track_published``, ``media_track_ended``,
  ``media_connection_state`` (the backend's listener), ``recording_changed``.

Design notes:

- Errors while joining close the connection (there is nothing to continue); errors
  after joining are reported and the connection carries on.
- Floods: a token bucket per connection; refused messages are dropped with
  ``rate_limited`` and a connection still flooding after ``flood_close_after`` refusals
  in a row is closed.
- Frames that cannot be read (not JSON, nested deeper than the decoder allows) get
  ``bad_json`` with no ``ref``; a frame over the size limit gets ``too_large`` with the
  ``ref`` it carries when it is a JSON object (read on that error path only).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from sessions.rooms import IN_MEDIA, Participant
from sessions.store import Ban
from sessions.tokens import TokenClaims
from signaling import messages as m
from signaling.access import Access
from signaling.chat import Chat
from signaling.config import CoreConfig
from signaling.connections import AUTHENTICATED, Conn, ConnState, TokenBucket
from signaling.context import Context, CoreStats, iso_z, new_id, utc_now
from signaling.effects import (
    MEDIA_EFFECTS,
    Close,
    ConnId,
    EcgRequest,
    Effect,
    MediaAnswer,
    MediaCandidate,
    MediaJoin,
    MediaLeave,
    MediaOffer,
    MediaPause,
    MediaReceive,
    MediaRecord,
    Persist,
    Send,
)
from signaling.errors import ClientError
from signaling.messages import CloseCode, ErrorCode
from signaling.notifications import Notifications
from signaling.ports import IceServerDict, PeerRole, TrackKind
from signaling.rooms import MAX_TRACKS_PER_PARTICIPANT, Rooms
from signaling.viewing import Viewing

__all__ = [
    "MAX_TRACKS_PER_PARTICIPANT",
    "MEDIA_EFFECTS",
    "Close",
    "ConnId",
    "ConnState",
    "Core",
    "CoreConfig",
    "CoreStats",
    "EcgRequest",
    "Effect",
    "MediaAnswer",
    "MediaCandidate",
    "MediaJoin",
    "MediaLeave",
    "MediaOffer",
    "MediaPause",
    "MediaReceive",
    "MediaRecord",
    "Persist",
    "Send",
    "iso_z",
    "new_id",
    "utc_now",
]

logger = logging.getLogger(__name__)


class _Envelope(msgspec.Struct):
    """The two fields an error reply needs, read without building the rest."""

    type: msgspec.Raw = msgspec.Raw(b"null")
    ref: msgspec.Raw = msgspec.Raw(b"null")


_envelope = msgspec.json.Decoder(_Envelope)

_Method = TypeVar("_Method", bound=Callable[..., list[Effect]])


def _guarded(method: _Method) -> _Method:
    """Log an internal error in an entry point and return what was produced so far.

    A bug must not stop the I/O layer's timer or connection handler: the state changes
    made before the error stand, and their effects are carried out.
    """

    @functools.wraps(method)
    def wrapper(self: Core, *args: Any, **kwargs: Any) -> list[Effect]:
        try:
            result: list[Effect] = method(self, *args, **kwargs)
        except Exception:
            logger.exception("internal error in Core.%s", method.__name__)
            return self._ctx.flush()
        return result

    return wrapper  # type: ignore[return-value]


def _text(raw: msgspec.Raw) -> str | None:
    """A JSON string field read raw, or None when it is absent or not a string."""
    try:
        return msgspec.json.decode(raw, type=str)
    except (msgspec.DecodeError, RecursionError):
        return None


class Core:
    """Every room and connection of one server, as a state machine without I/O.

    Parameters
    ----------
    config : CoreConfig
        Timeouts and limits.
    verify : callable
        ``verify(token) -> TokenClaims``; raises :class:`~sessions.errors.TokenError`.
    ice_servers : callable
        ``ice_servers(identity) -> list of RTCIceServer dicts`` (fresh TURN credentials).
    banned : iterable of str
        Token ids banned before this process started (the old jti-only form).
    bans : iterable of Ban
        Bans written before this process started: each bans its token and its
        identity in its room.
    banned_identities : iterable of (room, identity)
        Identities banned from rooms before this process started
        (``Store.banned_identities()``).
    revoked : iterable of str
        Token ids revoked before this process started (the credentials a room token
        was minted with: ended sessions, revoked API tokens), refused with ``revoked``.
    wall_clock : callable
        Returns the current UTC time, for chat and audit stamps and token expiry.
    make_id : callable
        ``make_id(prefix) -> str`` for participant and resume ids.
    """

    def __init__(
        self,
        *,
        config: CoreConfig,
        verify: Callable[[str], TokenClaims],
        ice_servers: Callable[[str], list[IceServerDict]],
        banned: Iterable[str] = (),
        bans: Iterable[Ban] = (),
        banned_identities: Iterable[tuple[str, str]] = (),
        revoked: Iterable[str] = (),
        wall_clock: Callable[[], datetime] = utc_now,
        make_id: Callable[[str], str] = new_id,
    ) -> None:
        self.config = config
        self._ctx = Context(
            config=config, ice_servers=ice_servers, wall_clock=wall_clock, make_id=make_id
        )
        self._access = Access(
            verify=verify,
            banned=banned,
            bans=bans,
            banned_identities=banned_identities,
            leeway_s=config.token_leeway_s,
            revoked=revoked,
        )
        self._viewing = Viewing(self._ctx)
        self._rooms = Rooms(self._ctx, self._access, self._viewing)
        self._chat = Chat(self._ctx)
        self._notifications = Notifications(self._ctx)
        self.stats: CoreStats = self._ctx.stats

    # ------------------------------------------------------------------ read-only views

    @property
    def connection_count(self) -> int:
        """Open connections."""
        return len(self._ctx.conns)

    @property
    def room_count(self) -> int:
        """Rooms with at least one participant."""
        return len(self._ctx.rooms)

    @property
    def participant_count(self) -> int:
        """Participants not gone (waiting, in the room or disconnected)."""
        return len(self._ctx.participants)

    def participant(self, participant_id: str) -> Participant | None:
        """A live participant by id."""
        return self._ctx.participants.get(participant_id)

    def connection_participant(self, conn: ConnId) -> Participant | None:
        """The participant a connection speaks for, if joined."""
        c = self._ctx.conns.get(conn)
        return None if c is None else c.participant

    def connection_state(self, conn: ConnId) -> ConnState | None:
        """A connection's state (None once closed)."""
        c = self._ctx.conns.get(conn)
        return None if c is None else c.state

    # ------------------------------------------------------------------ connection events

    @_guarded
    def open(self, conn: ConnId, now_s: float) -> list[Effect]:
        """A connection opened at ``now_s``."""
        bucket = TokenBucket(self.config.rate_per_s, self.config.burst, self.config.burst, now_s)
        self._ctx.conns[conn] = Conn(conn, now_s, bucket)
        return []

    @_guarded
    def receive(self, conn: ConnId, data: str | bytes, now_s: float) -> list[Effect]:
        """A frame arrived: ``str`` for a text frame, ``bytes`` for a binary one."""
        ctx = self._ctx
        c = ctx.conns.get(conn)
        if c is None or c.state is ConnState.CLOSING:
            return []
        if not c.bucket.take(now_s):
            c.refused_in_a_row += 1
            close = (
                CloseCode.RATE_LIMITED
                if c.refused_in_a_row >= self.config.flood_close_after
                else None
            )
            ctx.refuse(c, ClientError(ErrorCode.RATE_LIMITED, "too many messages", close))
            return ctx.flush()
        c.refused_in_a_row = 0
        message = self._decode(c, data)
        if message is not None:
            self.stats.received[str(type(message).__struct_config__.tag)] += 1
            try:
                self._dispatch(c, message, now_s)
            except ClientError as error:
                ctx.refuse(c, error, message.ref)
            except Exception:
                logger.exception("internal error handling %s on connection %d", message.ref, conn)
                ctx.refuse(c, ClientError(ErrorCode.INTERNAL, "internal server error"), message.ref)
        return ctx.flush()

    @_guarded
    def closed(self, conn: ConnId, now_s: float) -> list[Effect]:
        """The connection is gone (closed by either side, or dropped)."""
        c = self._ctx.conns.get(conn)
        if c is None:
            return []
        self._rooms.drop(c, now_s)
        self._ctx.forget(c)
        return self._ctx.flush()

    @_guarded
    def tick(self, now_s: float) -> list[Effect]:
        """Time passed: grace periods, connections slow to join, expired tokens."""
        ctx = self._ctx
        self._rooms.tick(now_s)
        epoch_s = ctx.wall_clock().timestamp()
        for c in list(ctx.conns.values()):
            if c.state is ConnState.OPEN and now_s - c.opened_s >= self.config.join_timeout_s:
                error = ClientError(
                    ErrorCode.JOIN_TIMEOUT, "no join in time", CloseCode.JOIN_TIMEOUT
                )
                ctx.refuse(c, error)
            elif (
                c.state in AUTHENTICATED
                and c.claims is not None
                and self._access.expired(c.claims, epoch_s)
            ):
                expired = ClientError(
                    ErrorCode.TOKEN_EXPIRED, "your token expired", CloseCode.UNAUTHORIZED
                )
                self._end(c, expired, now_s)
        return ctx.flush()

    # ------------------------------------------------------------------ the platform's calls

    @_guarded
    def persisted(self, ack: int, ok: bool, now_s: float) -> list[Effect]:
        """The write of ``Persist(record, ack=ack)`` is durable (``ok``) or failed."""
        del now_s
        if not self._ctx.persisted(ack, ok):
            logger.warning("persisted: unknown or repeated ack %d", ack)
        return self._ctx.flush()

    @_guarded
    def apply_ban(self, ban: Ban, now_s: float) -> list[Effect]:
        """A ban already durable and audited elsewhere (another node): refuse its token
        and identity, and end that identity's connections in the room, now."""
        del now_s
        self._rooms.enforce_ban(ban, audit=False)
        return self._ctx.flush()

    def revoke(
        self,
        now_s: float,
        *,
        identity: str | None = None,
        jti: str | None = None,
        reason: str = "revoked",
    ) -> list[Effect]:
        """Revoke a token (``jti``) or every token of a person (``identity``) at once.

        Every matching connection, room or viewer, gets ``error`` ``revoked`` (``reason``
        is shown to the person, so say it for people: "signed out", "device revoked")
        and is closed with 4401; the token, or every token of the identity issued up to
        this second, is refused from now on. Call it again at start for revocations
        that must outlive a restart.

        Raises
        ------
        ValueError
            Unless exactly one of ``identity`` and ``jti`` is given (nothing is changed).
        """
        if (identity is None) == (jti is None):
            raise ValueError("revoke takes exactly one of identity and jti")
        return self._revoke(now_s, identity, jti, reason)

    @_guarded
    def _revoke(
        self, now_s: float, identity: str | None, jti: str | None, reason: str
    ) -> list[Effect]:
        ctx = self._ctx
        if jti is not None:
            self._access.revoke_jti(jti)
        else:
            assert identity is not None
            self._access.revoke_identity(identity, ctx.wall_clock().timestamp())
        error = ClientError(
            ErrorCode.REVOKED, reason[: m.MAX_REASON_CHARS] or "revoked", CloseCode.UNAUTHORIZED
        )
        for c in list(ctx.conns.values()):
            if (
                c.state in AUTHENTICATED
                and c.claims is not None
                and self._access.is_revoked(c.claims)
            ):
                self._end(c, error, now_s)
        ctx.audit(
            "",
            "server",
            "revoke",
            target=identity or "",
            detail={"by": "identity" if identity is not None else "token", "reason": reason},
        )
        return ctx.flush()

    def notify(
        self, identity: str, topic: str, data: Mapping[str, m.NotifyValue] | None = None
    ) -> list[Effect]:
        """Push ``notify {topic, data, time}`` to every connection of ``identity``.

        Returns the ``Send`` effects (none when the person is not connected).

        Raises
        ------
        ValueError
            For a malformed topic or data (see :mod:`signaling.notifications`).
        """
        self._notifications.notify(identity, topic, data or {})
        return self._ctx.flush()

    # ------------------------------------------------------------------ media results

    @_guarded
    def media_joined(self, participant_id: str, generation: int) -> list[Effect]:
        """The media session of ``generation`` is open."""
        self._rooms.media_joined(participant_id, generation)
        return self._ctx.flush()

    @_guarded
    def media_answer(
        self, conn: ConnId, participant_id: str, sdp: str, ref: str | None
    ) -> list[Effect]:
        """The backend answered the client's publish offer."""
        self._rooms.media_answer(conn, participant_id, sdp, ref)
        return self._ctx.flush()

    @_guarded
    def recording_changed(self, room_id: str, on: bool, error: str | None) -> list[Effect]:
        """The room's recording started or stopped: tell everyone, and moderators why."""
        self._rooms.recording_changed(room_id, on, error)
        return self._ctx.flush()

    @_guarded
    def media_error(
        self, conn: ConnId, code: ErrorCode, reason: str, ref: str | None
    ) -> list[Effect]:
        """A media call for ``conn`` failed; the client is told ``code``."""
        c = self._ctx.conns.get(conn)
        if c is not None:
            self._ctx.refuse(c, ClientError(code, reason), ref)
        return self._ctx.flush()

    # ------------------------------------------------------------------ media listener

    @_guarded
    def media_offer(
        self, participant_id: str, generation: int, pc: PeerRole, sdp: str
    ) -> list[Effect]:
        """The backend offers to the client (subscribe)."""
        self._rooms.media_offer(participant_id, generation, pc, sdp)
        return self._ctx.flush()

    @_guarded
    def media_track_published(
        self, participant_id: str, generation: int, track_id: str, kind: TrackKind, stream_id: str
    ) -> list[Effect]:
        """The participant's publish connection carries a new track."""
        self._rooms.media_track_published(participant_id, generation, track_id, kind, stream_id)
        return self._ctx.flush()

    @_guarded
    def media_track_ended(
        self, participant_id: str, generation: int, track_id: str
    ) -> list[Effect]:
        """The participant's track is gone."""
        self._rooms.media_track_ended(participant_id, generation, track_id)
        return self._ctx.flush()

    @_guarded
    def media_connection_state(
        self, participant_id: str, generation: int, pc: PeerRole, state: str
    ) -> list[Effect]:
        """A peer connection state change, passed on to the client."""
        self._rooms.media_connection_state(participant_id, generation, pc, state)
        return self._ctx.flush()

    # ------------------------------------------------------------------ internals

    def _end(self, c: Conn, error: ClientError, now_s: float) -> None:
        """The server ends ``c`` (expired, revoked): the error, the close, the drop."""
        self._ctx.refuse(c, error)
        self._rooms.drop(c, now_s)

    def _decode(self, c: Conn, data: str | bytes) -> m.ClientMessage | None:
        ctx = self._ctx
        limit = self.config.max_message_bytes
        # len(str) <= its UTF-8 size <= 4 * len(str): encode only when it could matter.
        size = (
            len(data) if isinstance(data, bytes) or 4 * len(data) <= limit else len(data.encode())
        )
        closing = None if c.state in AUTHENTICATED else CloseCode.BAD_REQUEST
        if size > limit:
            ref = None if isinstance(data, bytes) else self._envelope(data)[1]
            ctx.refuse(c, ClientError(ErrorCode.TOO_LARGE, f"message over {limit} bytes"), ref)
            return None
        if isinstance(data, bytes):
            ctx.refuse(
                c, ClientError(ErrorCode.BAD_JSON, "binary frames are not accepted", closing)
            )
            return None
        unreadable = ClientError(ErrorCode.BAD_JSON, "not a JSON message", closing)
        try:
            return m.decode_client(data)
        except RecursionError:
            ctx.refuse(c, ClientError(ErrorCode.BAD_JSON, "JSON nested too deeply", closing))
            return None
        except msgspec.ValidationError as exc:
            # Only on this error path is the frame read a second time, to tell an unknown
            # type from a bad field and to echo the client's ref.
            try:
                kind, ref = self._envelope(data, strict=True)
            except (msgspec.DecodeError, RecursionError):
                # msgspec validates the first value before it sees trailing garbage.
                ctx.refuse(c, unreadable)
                return None
            if kind is None or kind not in m.CLIENT_TYPES:
                error = ClientError(
                    ErrorCode.UNKNOWN_TYPE, f"unknown message type {str(kind)[:40]!r}", closing
                )
            else:
                error = ClientError(ErrorCode.BAD_MESSAGE, f"bad {kind} message: {exc}", closing)
            ctx.refuse(c, error, ref)
            return None
        except msgspec.DecodeError:  # after ValidationError, its subclass
            ctx.refuse(c, unreadable)
            return None

    @staticmethod
    def _envelope(data: str, *, strict: bool = False) -> tuple[str | None, str | None]:
        """``(type, ref)`` of a frame when it is a JSON object, else ``(None, None)``.

        With ``strict``, a frame that is not JSON at all raises ``DecodeError``.
        """
        try:
            envelope = _envelope.decode(data)
        except msgspec.ValidationError:  # not an object (or not JSON: checked below)
            if strict:
                msgspec.json.decode(data, type=msgspec.Raw)
            return None, None
        except (msgspec.DecodeError, RecursionError):
            if strict:
                raise
            return None, None
        ref = _text(envelope.ref)
        return _text(envelope.type), None if ref is None else ref[: m.MAX_REF_CHARS]

    def _check_first(self, c: Conn, version: int) -> None:
        """A connection's first ``join`` or ``watch``: once only, in our protocol version."""
        if c.state is not ConnState.OPEN:
            raise ClientError(ErrorCode.ALREADY_JOINED, "this connection has joined already")
        if version != m.PROTOCOL_VERSION:
            raise ClientError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"protocol version {m.PROTOCOL_VERSION} only",
                CloseCode.BAD_REQUEST,
            )

    def _dispatch(self, c: Conn, message: m.ClientMessage, now_s: float) -> None:
        match message:
            case m.Ping(ref=ref):
                self._ctx.send(c, m.Pong(ref=ref, time=self._ctx.now_iso()))
                return
            case m.Join(token=token, version=version):
                self._check_first(c, version)
                self._rooms.join(c, self._access.claims(token))
                return
            case m.Watch(token=token, version=version):
                self._check_first(c, version)
                self._viewing.watch(c, self._access.claims(token))
                return
            case m.EcgList() | m.EcgSubscribe() | m.EcgUnsubscribe():
                self._viewing.request(c, message)
                return
        p = c.participant
        if p is None:
            raise ClientError(ErrorCode.NOT_JOINED, "send join first")
        if isinstance(message, m.Leave):
            self._rooms.leave(c, p)
            return
        if p.state not in IN_MEDIA:
            raise ClientError(ErrorCode.BAD_STATE, "not allowed in the waiting room")
        if isinstance(message, m.Chat):
            self._chat.say(p, message.text, now_s)
            return
        self._rooms.handle(c, p, message)
