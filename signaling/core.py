"""The signaling protocol core: messages in, messages and effects out, no I/O.

After websockets' ``protocol.py``: the core is fed what happened (a connection opened,
a frame arrived, a connection closed, time passed, the media backend answered) and
returns a list of *effects* for the I/O layer to carry out (send this message, close
that connection, ask the media backend for this, persist that). It never awaits,
never reads the clock (every entry point takes ``now_s``, a monotonic time in
seconds; wall-clock stamps come from an injected function) and never touches a
socket, so it is tested by feeding it input and reading its output.

Design notes:

- Participants, rooms and their one transition table are :mod:`sessions.rooms`; this
  module checks what a client may ask before applying an event, so a
  :class:`~sessions.errors.TransitionError` here means a bug (reported to the client
  as ``internal`` and logged).
- Media calls are effects. Their results come back through :meth:`Core.media_joined`,
  :meth:`Core.media_answer`, :meth:`Core.media_error`, and the backend's listener
  calls through :meth:`Core.media_offer` and friends. Each media session has a
  *generation*: reopening media (resume, takeover) increments it, and callbacks from an
  older generation are ignored, so a late ``track_ended`` from a closed session cannot
  touch the new one. The I/O layer runs the media effects of one participant in order.
- Errors while joining close the connection (there is nothing to continue); errors
  after joining are reported and the connection carries on.
- Viewers: a connection that sends ``watch`` instead of ``join`` is authenticated by
  its token (device tokens refused) and may then list and subscribe to the ECG streams
  its room grants, without entering the room's media or waiting room; a joined
  participant may do the same. The core only checks who asks and emits
  :class:`EcgRequest`; which streams a room grants is the ECG side's business
  (:class:`signaling.device.ViewerHub`).
- Floods: a token bucket per connection; refused messages are dropped with
  ``rate_limited`` and a connection still flooding after ``flood_close_after`` refusals
  in a row is closed.
"""

from __future__ import annotations

import enum
import functools
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from sessions.errors import TokenError, TokenExpired, TokenNotYetValid
from sessions.rooms import FINAL, IN_MEDIA, PRESENT, Event, Participant, Room, State, Track
from sessions.store import AuditEntry, Ban, Record, RoomRecord
from sessions.tokens import TokenClaims
from signaling import messages as m
from signaling.errors import ClientError
from signaling.messages import CloseCode, ErrorCode
from signaling.ports import IceServerDict, PeerRole, TrackKind
from signaling.sdp import SdpCandidate, split_candidates

logger = logging.getLogger(__name__)

ConnId = int
MAX_TRACKS_PER_PARTICIPANT = 16


# ----------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` on connection ``conn``."""

    conn: ConnId
    message: m.ServerMessage


@dataclass(frozen=True, slots=True)
class Close:
    """Close connection ``conn`` (after the messages already sent)."""

    conn: ConnId
    code: CloseCode
    reason: str


@dataclass(frozen=True, slots=True)
class MediaJoin:
    """Open the participant's media session; report with ``media_joined``/``media_error``."""

    conn: ConnId
    participant_id: str
    room_id: str
    generation: int
    ice_servers: list[IceServerDict]


@dataclass(frozen=True, slots=True)
class MediaOffer:
    """Apply a client offer; report with ``media_answer`` or ``media_error``."""

    conn: ConnId
    participant_id: str
    pc: PeerRole
    sdp: str
    ref: str | None


@dataclass(frozen=True, slots=True)
class MediaAnswer:
    """Apply a client answer; report failures with ``media_error``."""

    conn: ConnId
    participant_id: str
    pc: PeerRole
    sdp: str
    ref: str | None


@dataclass(frozen=True, slots=True)
class MediaCandidate:
    """Add a client candidate; report failures with ``media_error``."""

    conn: ConnId
    participant_id: str
    pc: PeerRole
    candidate: str | None
    sdp_mid: str | None
    sdp_mline_index: int | None
    ref: str | None


@dataclass(frozen=True, slots=True)
class MediaPause:
    """Stop or resume forwarding a participant's tracks of one kind."""

    participant_id: str
    kind: TrackKind
    paused: bool


@dataclass(frozen=True, slots=True)
class MediaLeave:
    """Close a participant's media session."""

    participant_id: str


@dataclass(frozen=True, slots=True)
class MediaRecord:
    """Record the room from now on (a moderator's consent) or stop recording it."""

    room_id: str
    on: bool


@dataclass(frozen=True, slots=True)
class EcgRequest:
    """A viewer's ECG request, from a connection whose token enters ``room``.

    The I/O layer answers it (``ecg_streams``, ``ecg_subscribed``, ``forbidden``...).
    """

    conn: ConnId
    identity: str
    room: str
    message: m.EcgList | m.EcgSubscribe | m.EcgUnsubscribe


@dataclass(frozen=True, slots=True)
class Persist:
    """Write to the Store (and publish on the Bus): a ban, an audit entry or a room."""

    record: Record


Effect = (
    Send
    | Close
    | MediaJoin
    | MediaOffer
    | MediaAnswer
    | MediaCandidate
    | MediaPause
    | MediaLeave
    | MediaRecord
    | Persist
    | EcgRequest
)
MEDIA_EFFECTS = (MediaJoin, MediaOffer, MediaAnswer, MediaCandidate, MediaPause, MediaLeave)


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True, kw_only=True)
class CoreConfig:
    """Settings of the protocol core.

    Attributes
    ----------
    grace_s : float
        How long a dropped participant is kept for a resume, seconds.
    join_timeout_s : float
        How long a new connection may take to send ``join``, seconds.
    max_message_bytes : int
        Largest accepted message, bytes (larger ones get ``too_large``).
    rate_per_s, burst : float
        Token bucket per connection: sustained messages per second and bucket size.
    flood_close_after : int
        Refused messages in a row after which the connection is closed.
    waiting_room : bool
        Whether participants without ``moderate`` wait to be admitted.
    """

    # Timeouts
    grace_s: float = 30.0
    join_timeout_s: float = 10.0
    # Limits
    max_message_bytes: int = 64 * 1024
    rate_per_s: float = 20.0
    burst: float = 50.0
    flood_close_after: int = 20
    # Rooms
    waiting_room: bool = True

    def __post_init__(self) -> None:
        if self.grace_s < 0 or self.join_timeout_s <= 0:
            raise ValueError("grace_s must be >= 0 and join_timeout_s > 0")
        if self.max_message_bytes < 1024:
            raise ValueError("max_message_bytes must be at least 1024")
        if self.rate_per_s <= 0 or self.burst < 1 or self.flood_close_after < 1:
            raise ValueError("rate_per_s > 0, burst >= 1 and flood_close_after >= 1 are required")


# ----------------------------------------------------------------------------- state


class ConnState(enum.IntEnum):
    """A connection's state in the core."""

    OPEN, JOINED, CLOSING, WATCHING = range(4)


@dataclass(slots=True)
class TokenBucket:
    """``burst`` tokens, refilled at ``rate_per_s``; each message takes one."""

    rate_per_s: float
    burst: float
    tokens: float
    last_s: float

    def take(self, now_s: float) -> bool:
        """Take a token at ``now_s``; False when the bucket is empty."""
        self.tokens = min(self.burst, self.tokens + (now_s - self.last_s) * self.rate_per_s)
        self.last_s = now_s
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass(slots=True)
class _Conn:
    conn_id: ConnId
    opened_s: float
    bucket: TokenBucket
    state: ConnState = ConnState.OPEN
    participant: Participant | None = None
    viewer: TokenClaims | None = None  # set by ``watch``
    refused_in_a_row: int = 0


@dataclass
class CoreStats:
    """Counters the metrics endpoint reads."""

    received: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


def utc_now() -> datetime:
    """The wall clock, UTC."""
    return datetime.now(UTC)


def iso_z(moment: datetime) -> str:
    """``moment`` as UTC ISO 8601 with milliseconds and ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


_Method = TypeVar("_Method", bound=Callable[..., list["Effect"]])


def _guarded(method: _Method) -> _Method:
    """Log an internal error in an entry point and return what was produced so far.

    A bug must not stop the I/O layer's timer or connection handler: the state changes
    made before the error stand, and their effects are carried out.
    """

    @functools.wraps(method)
    def wrapper(self: Core, *args: Any) -> list[Effect]:
        try:
            result: list[Effect] = method(self, *args)
        except Exception:
            logger.exception("internal error in Core.%s", method.__name__)
            return self._flush()
        return result

    return wrapper  # type: ignore[return-value]


def _track_info(track: Track) -> m.TrackInfo:
    return m.TrackInfo(
        track_id=track.track_id,
        kind=track.kind,
        stream_id=track.stream_id,
        source=track.source,
        muted=track.muted,
    )


def _trickle(pc: PeerRole, candidates: list[SdpCandidate]) -> list[m.ServerCandidate]:
    """The ``candidate`` messages that follow a server description, end marker last."""
    messages = [
        m.ServerCandidate(
            pc=pc,
            candidate=c.candidate,
            sdp_mid=c.sdp_mid,
            sdp_mline_index=c.sdp_mline_index,
        )
        for c in candidates
    ]
    return [*messages, m.ServerCandidate(pc=pc)]


def new_id(prefix: str) -> str:
    """A random id: ``p_`` for participants, ``r_`` for resume secrets."""
    return f"{prefix}_{secrets.token_urlsafe(18 if prefix == 'r' else 9)}"


# ----------------------------------------------------------------------------- the core


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
        Token ids banned before this process started (from the Store).
    wall_clock : callable
        Returns the current UTC time, for chat and audit stamps.
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
        wall_clock: Callable[[], datetime] = utc_now,
        make_id: Callable[[str], str] = new_id,
    ) -> None:
        self.config = config
        self._verify = verify
        self._ice_servers = ice_servers
        self._banned = set(banned)
        self._wall_clock = wall_clock
        self._make_id = make_id
        self._conns: dict[ConnId, _Conn] = {}
        self._conn_of: dict[str, _Conn] = {}
        self._rooms: dict[str, Room] = {}
        self._participants: dict[str, Participant] = {}
        self._out: list[Effect] = []
        self._recording: dict[str, bool] = {}  # room id -> being recorded
        self.stats = CoreStats()

    # ------------------------------------------------------------------ read-only views

    @property
    def connection_count(self) -> int:
        """Open connections."""
        return len(self._conns)

    @property
    def room_count(self) -> int:
        """Rooms with at least one participant."""
        return len(self._rooms)

    @property
    def participant_count(self) -> int:
        """Participants not gone (waiting, in the room or disconnected)."""
        return len(self._participants)

    def participant(self, participant_id: str) -> Participant | None:
        """A live participant by id."""
        return self._participants.get(participant_id)

    def connection_participant(self, conn: ConnId) -> Participant | None:
        """The participant a connection speaks for, if joined."""
        c = self._conns.get(conn)
        return None if c is None else c.participant

    # ------------------------------------------------------------------ connection events

    @_guarded
    def open(self, conn: ConnId, now_s: float) -> list[Effect]:
        """A connection opened at ``now_s``."""
        bucket = TokenBucket(self.config.rate_per_s, self.config.burst, self.config.burst, now_s)
        self._conns[conn] = _Conn(conn, now_s, bucket)
        return []

    @_guarded
    def receive(self, conn: ConnId, data: str | bytes, now_s: float) -> list[Effect]:
        """A frame arrived: ``str`` for a text frame, ``bytes`` for a binary one."""
        c = self._conns.get(conn)
        if c is None or c.state is ConnState.CLOSING:
            return []
        if not c.bucket.take(now_s):
            c.refused_in_a_row += 1
            close = (
                CloseCode.RATE_LIMITED
                if c.refused_in_a_row >= self.config.flood_close_after
                else None
            )
            self._refuse(c, ClientError(ErrorCode.RATE_LIMITED, "too many messages", close))
            return self._flush()
        c.refused_in_a_row = 0
        message, ref = self._decode(c, data)
        if message is not None:
            self.stats.received[str(type(message).__struct_config__.tag)] += 1
            ref = message.ref
            try:
                self._dispatch(c, message, now_s)
            except ClientError as error:
                self._refuse(c, error, ref)
            except Exception:
                logger.exception("internal error handling %s on connection %d", ref, conn)
                self._refuse(c, ClientError(ErrorCode.INTERNAL, "internal server error"), ref)
        return self._flush()

    @_guarded
    def closed(self, conn: ConnId, now_s: float) -> list[Effect]:
        """The connection is gone (closed by either side, or dropped)."""
        c = self._conns.pop(conn, None)
        if c is None or c.participant is None:
            return []
        p = c.participant
        self._detach(c)
        if p.state is State.WAITING:
            p.apply(Event.DISCONNECT)
            self._gone(p, "disconnected", actor=p.identity, waiting=True)
        elif p.state in IN_MEDIA:
            p.apply(Event.DISCONNECT)
            p.disconnected_at_s = now_s
            self._end_media(p)
            self._broadcast(
                p, m.ParticipantState(participant_id=p.participant_id, state="disconnected")
            )
            self._audit(p.room_id, p.identity, "disconnect")
        return self._flush()

    @_guarded
    def tick(self, now_s: float) -> list[Effect]:
        """Time passed: end grace periods and refuse connections slow to join."""
        for p in list(self._participants.values()):
            if (
                p.state is State.DISCONNECTED
                and p.disconnected_at_s is not None
                and now_s - p.disconnected_at_s >= self.config.grace_s
            ):
                p.apply(Event.EXPIRE)
                self._gone(p, "timeout", actor="server")
        for c in list(self._conns.values()):
            if c.state is ConnState.OPEN and now_s - c.opened_s >= self.config.join_timeout_s:
                error = ClientError(
                    ErrorCode.JOIN_TIMEOUT, "no join in time", CloseCode.JOIN_TIMEOUT
                )
                self._refuse(c, error)
        return self._flush()

    # ------------------------------------------------------------------ media results

    @_guarded
    def media_joined(self, participant_id: str, generation: int) -> list[Effect]:
        """The media session of ``generation`` is open."""
        p = self._current(participant_id, generation)
        if p is not None and p.state is State.ADMITTED:
            p.apply(Event.MEDIA_READY)
        return self._flush()

    @_guarded
    def media_answer(
        self, conn: ConnId, participant_id: str, sdp: str, ref: str | None
    ) -> list[Effect]:
        """The backend answered the client's publish offer."""
        c = self._conn_of.get(participant_id)
        if c is not None and c.conn_id == conn:
            description, candidates = split_candidates(sdp)
            self._send(c, m.ServerAnswer(pc="publish", sdp=description, ref=ref))
            for message in _trickle("publish", candidates):
                self._send(c, message)
        return self._flush()

    @_guarded
    def recording_changed(self, room_id: str, on: bool, error: str | None) -> list[Effect]:
        """The room's recording started or stopped: tell everyone, and moderators why."""
        self._recording[room_id] = on
        room = self._rooms.get(room_id)
        for p in room.participants.values() if room is not None else ():
            if p.state in IN_MEDIA:
                self._send_to(p, m.RecordingEvent(on=on, error=error))
                if error is not None and "moderate" in p.permissions:
                    failed = m.Error(code=ErrorCode.RECORDING_FAILED.value, reason=error)
                    self._send_to(p, failed)
        return self._flush()

    @_guarded
    def media_error(
        self, conn: ConnId, code: ErrorCode, reason: str, ref: str | None
    ) -> list[Effect]:
        """A media call for ``conn`` failed; the client is told ``code``."""
        c = self._conns.get(conn)
        if c is not None:
            self._refuse(c, ClientError(code, reason), ref)
        return self._flush()

    # ------------------------------------------------------------------ media listener

    @_guarded
    def media_offer(
        self, participant_id: str, generation: int, pc: PeerRole, sdp: str
    ) -> list[Effect]:
        """The backend offers to the client (subscribe)."""
        p = self._current(participant_id, generation)
        if p is not None:
            description, candidates = split_candidates(sdp)
            self._send_to(p, m.ServerOffer(pc=pc, sdp=description))
            for message in _trickle(pc, candidates):
                self._send_to(p, message)
        return self._flush()

    @_guarded
    def media_track_published(
        self, participant_id: str, generation: int, track_id: str, kind: TrackKind, stream_id: str
    ) -> list[Effect]:
        """The participant's publish connection carries a new track."""
        p = self._current(participant_id, generation)
        if p is not None:
            source = p.sources.get(track_id, "microphone" if kind == "audio" else "camera")
            track = Track(
                track_id=track_id,
                kind=kind,
                stream_id=stream_id,
                source=source,
                muted=p.muted[kind],
            )
            p.tracks[track_id] = track
            self._broadcast(
                p,
                m.TrackPublished(participant_id=p.participant_id, track=_track_info(track)),
                skip=p,
            )
        return self._flush()

    @_guarded
    def media_track_ended(
        self, participant_id: str, generation: int, track_id: str
    ) -> list[Effect]:
        """The participant's track is gone."""
        p = self._current(participant_id, generation)
        if p is not None and p.tracks.pop(track_id, None) is not None:
            self._broadcast(
                p, m.TrackEnded(participant_id=p.participant_id, track_id=track_id), skip=p
            )
        return self._flush()

    @_guarded
    def media_connection_state(
        self, participant_id: str, generation: int, pc: PeerRole, state: str
    ) -> list[Effect]:
        """A peer connection state change, passed on to the client."""
        p = self._current(participant_id, generation)
        if p is not None:
            self._send_to(p, m.MediaState(pc=pc, state=state))
        return self._flush()

    # ------------------------------------------------------------------ decoding

    def _decode(self, c: _Conn, data: str | bytes) -> tuple[m.ClientMessage | None, str | None]:
        limit = self.config.max_message_bytes
        # len(str) <= its UTF-8 size <= 4 * len(str): encode only when it could matter.
        size = (
            len(data) if isinstance(data, bytes) or 4 * len(data) <= limit else len(data.encode())
        )
        closing = (
            None if c.state in (ConnState.JOINED, ConnState.WATCHING) else CloseCode.BAD_REQUEST
        )
        if size > limit:
            self._refuse(c, ClientError(ErrorCode.TOO_LARGE, f"message over {limit} bytes"))
            return None, None
        if isinstance(data, bytes):
            self._refuse(
                c, ClientError(ErrorCode.BAD_JSON, "binary frames are not accepted", closing)
            )
            return None, None
        try:
            return m.decode_client(data), None
        except msgspec.ValidationError as exc:
            # Only on this error path is the frame parsed a second time, to tell an
            # unknown type from a bad field and to echo the client's ref.
            try:
                raw = msgspec.json.decode(data)
            except msgspec.DecodeError:
                # msgspec validates the first value before it sees trailing garbage.
                error = ClientError(ErrorCode.BAD_JSON, "not a JSON message", closing)
                self._refuse(c, error)
                return None, None
            ref = raw.get("ref") if isinstance(raw, dict) else None
            ref = ref[: m.MAX_REF_CHARS] if isinstance(ref, str) else None
            kind = raw.get("type") if isinstance(raw, dict) else None
            if not isinstance(kind, str) or kind not in m.CLIENT_TYPES:
                error = ClientError(
                    ErrorCode.UNKNOWN_TYPE, f"unknown message type {str(kind)[:40]!r}", closing
                )
            else:
                error = ClientError(ErrorCode.BAD_MESSAGE, f"bad {kind} message: {exc}", closing)
            self._refuse(c, error, ref)
            return None, None
        except msgspec.DecodeError:  # after ValidationError, its subclass
            self._refuse(c, ClientError(ErrorCode.BAD_JSON, "not a JSON message", closing))
            return None, None

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, c: _Conn, message: m.ClientMessage, now_s: float) -> None:
        if isinstance(message, m.Ping):
            self._send(c, m.Pong(ref=message.ref, time=iso_z(self._wall_clock())))
            return
        if isinstance(message, m.Join):
            self._join(c, message, now_s)
            return
        if isinstance(message, m.Watch):
            self._watch(c, message)
            return
        if isinstance(message, m.EcgList | m.EcgSubscribe | m.EcgUnsubscribe):
            self._ecg(c, message)
            return
        p = c.participant
        if p is None:
            raise ClientError(ErrorCode.NOT_JOINED, "send join first")
        if isinstance(message, m.Leave):
            self._leave(c, p)
            return
        if p.state not in IN_MEDIA:
            raise ClientError(ErrorCode.BAD_STATE, "not allowed in the waiting room")
        match message:
            case m.Offer(pc=pc, sdp=sdp, ref=ref):
                if pc != "publish":
                    raise ClientError(ErrorCode.BAD_STATE, "clients offer on publish only")
                self._require(p, "publish")
                self._out.append(MediaOffer(c.conn_id, p.participant_id, pc, sdp, ref))
            case m.Answer(pc=pc, sdp=sdp, ref=ref):
                if pc != "subscribe":
                    raise ClientError(ErrorCode.BAD_STATE, "clients answer on subscribe only")
                self._out.append(MediaAnswer(c.conn_id, p.participant_id, pc, sdp, ref))
            case m.Candidate():
                self._out.append(
                    MediaCandidate(
                        c.conn_id,
                        p.participant_id,
                        message.pc,
                        message.candidate,
                        message.sdp_mid,
                        message.sdp_mline_index,
                        message.ref,
                    )
                )
            case m.Publish(track_id=track_id, source=source):
                self._require(p, "publish")
                if track_id not in p.sources and len(p.sources) >= MAX_TRACKS_PER_PARTICIPANT:
                    raise ClientError(ErrorCode.BAD_MESSAGE, "too many tracks")
                p.sources[track_id] = source
                if track_id in p.tracks:
                    p.tracks[track_id].source = source
            case m.Unpublish(track_id=track_id):
                p.sources.pop(track_id, None)
            case m.Mute(kind=kind, participant_id=target_id):
                self._mute(p, kind, target_id)
            case m.Unmute(kind=kind):
                self._set_muted(p, kind, muted=False, by=p)
            case m.Chat(text=text):
                event = m.ChatEvent(
                    participant_id=p.participant_id,
                    identity=p.identity,
                    name=p.name,
                    text=text,
                    time=iso_z(self._wall_clock()),
                )
                self._broadcast(p, event)
                self._audit(p.room_id, p.identity, "chat", detail={"text": text})
            case m.Admit(participant_id=target_id):
                self._admit(p, target_id)
            case m.Remove(participant_id=target_id, reason=reason):
                self._remove(p, target_id, reason or "")
            case m.SetRecording(on=on):
                self._require(p, "moderate")
                self._out.append(MediaRecord(p.room_id, on))
                self._audit(p.room_id, p.identity, "recording", detail={"on": str(on).lower()})

    # ------------------------------------------------------------------ join and resume

    def _join(self, c: _Conn, message: m.Join, now_s: float) -> None:
        del now_s
        self._check_first(c, message.version)
        claims = self._claims(message.token)
        room = self._rooms.get(claims.room)
        if room is None:
            room = self._rooms[claims.room] = Room(
                room_id=claims.room, waiting_room=self.config.waiting_room
            )
            self._out.append(Persist(RoomRecord(room=claims.room, time=iso_z(self._wall_clock()))))
        existing = room.by_identity(claims.identity)
        if existing is not None:
            self._take_over(c, existing, claims, room)
            return
        p = Participant.from_claims(claims, self._make_id("p"), self._make_id("r"))
        room.add(p)
        self._participants[p.participant_id] = p
        self._attach(c, p)
        # The participant id names the person in media records (recording manifests).
        self._audit(
            room.room_id,
            p.identity,
            "join",
            detail={"role": p.role, "participant_id": p.participant_id, "name": p.name},
        )
        if room.needs_admission(p):
            p.apply(Event.WAIT)
            self._send(c, self._waiting(p))
            for moderator in room.moderators():
                self._send_to(moderator, m.ParticipantWaiting(participant=self._info(p)))
        else:
            p.apply(Event.ADMIT)
            self._enter(p, room, resumed=False)

    def _check_first(self, c: _Conn, version: int) -> None:
        """A connection's first ``join`` or ``watch``: once only, in our protocol version."""
        if c.participant is not None or c.viewer is not None:
            raise ClientError(ErrorCode.ALREADY_JOINED, "this connection has joined already")
        if version != m.PROTOCOL_VERSION:
            raise ClientError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"protocol version {m.PROTOCOL_VERSION} only",
                CloseCode.BAD_REQUEST,
            )

    def _watch(self, c: _Conn, message: m.Watch) -> None:
        """A viewer: authenticated by its token, outside the room's media."""
        self._check_first(c, message.version)
        claims = self._claims(message.token)
        c.viewer = claims
        c.state = ConnState.WATCHING
        self._audit(claims.room, claims.identity, "watch", detail={"role": claims.role})
        self._send(
            c,
            m.Watching(identity=claims.identity, role=claims.role, room=claims.room),
        )

    def _ecg(self, c: _Conn, message: m.EcgList | m.EcgSubscribe | m.EcgUnsubscribe) -> None:
        if c.viewer is not None:
            identity, room = c.viewer.identity, c.viewer.room
        elif c.participant is not None:
            if c.participant.state not in IN_MEDIA:
                raise ClientError(ErrorCode.BAD_STATE, "not allowed in the waiting room")
            identity, room = c.participant.identity, c.participant.room_id
        else:
            raise ClientError(ErrorCode.NOT_JOINED, "send watch (or join) first")
        self._out.append(EcgRequest(c.conn_id, identity, room, message))

    def _claims(self, token: str) -> TokenClaims:
        try:
            claims = self._verify(token)
        except TokenExpired:
            raise ClientError(
                ErrorCode.TOKEN_EXPIRED, "token expired", CloseCode.UNAUTHORIZED
            ) from None
        except TokenNotYetValid:
            raise ClientError(
                ErrorCode.TOKEN_NOT_YET_VALID, "token not yet valid", CloseCode.UNAUTHORIZED
            ) from None
        except TokenError:
            raise ClientError(
                ErrorCode.INVALID_TOKEN, "invalid token", CloseCode.UNAUTHORIZED
            ) from None
        if claims.role == "device":
            raise ClientError(
                ErrorCode.FORBIDDEN, "device tokens belong on /device", CloseCode.FORBIDDEN
            )
        if claims.jti in self._banned:
            raise ClientError(
                ErrorCode.BANNED, "this token was removed from the room", CloseCode.FORBIDDEN
            )
        return claims

    def _take_over(self, c: _Conn, p: Participant, claims: TokenClaims, room: Room) -> None:
        """A newer connection for a live identity: the newer wins (resume or takeover)."""
        old = self._conn_of.get(p.participant_id)
        if old is not None:
            self._refuse(
                old,
                ClientError(
                    ErrorCode.REPLACED, "replaced by a newer connection", CloseCode.REPLACED
                ),
            )
            self._detach(old)
        was = p.state
        if was in IN_MEDIA:
            self._end_media(p)
        p.reclaim(claims)
        p.apply(Event.RESUME)
        p.disconnected_at_s = None
        self._attach(c, p)
        self._audit(
            room.room_id,
            p.identity,
            "resume",
            detail={"from": was.value, "participant_id": p.participant_id},
        )
        if p.state is State.WAITING:
            self._send(c, self._waiting(p))
            return
        if was is State.DISCONNECTED:
            self._broadcast(
                p, m.ParticipantState(participant_id=p.participant_id, state="joined"), skip=p
            )
        self._enter(p, room, resumed=True, announce=False)

    def _enter(self, p: Participant, room: Room, *, resumed: bool, announce: bool = True) -> None:
        """Tell ``p`` it is in (joined), tell the others, open its media."""
        c = self._conn_of[p.participant_id]
        ice_servers = self._ice_servers(p.identity)
        others = [self._info(o) for o in room.present() if o is not p]
        joined = m.Joined(
            version=m.PROTOCOL_VERSION,
            participant_id=p.participant_id,
            identity=p.identity,
            name=p.name,
            room=room.room_id,
            role=p.role,
            permissions=sorted(p.permissions),
            ice_servers=[msgspec.convert(s, m.IceServer) for s in ice_servers],
            participants=others,
            resume_id=p.resume_id,
            grace_s=self.config.grace_s,
            resumed=resumed,
            recording=self._recording.get(room.room_id, False),
        )
        self._send(c, joined)
        if announce:
            self._broadcast(p, m.ParticipantJoined(participant=self._info(p)), skip=p)
        if p.moderator:
            for waiting in room.waiting():
                self._send(c, m.ParticipantWaiting(participant=self._info(waiting)))
        p.media_generation += 1
        self._out.append(
            MediaJoin(
                c.conn_id,
                p.participant_id,
                room.room_id,
                p.media_generation,
                ice_servers,
            )
        )
        # A fresh media session forwards everything: mutes made before it (or while
        # disconnected) are applied again, after the join in the participant's lane.
        for kind in ("audio", "video"):
            if p.muted[kind]:
                self._out.append(MediaPause(p.participant_id, kind, True))

    # ------------------------------------------------------------------ moderator actions

    def _target(self, actor: Participant, target_id: str) -> Participant:
        target = self._participants.get(target_id)
        if target is None or target.room_id != actor.room_id or target.state in FINAL:
            raise ClientError(ErrorCode.NOT_FOUND, "no such participant in this room")
        return target

    def _admit(self, actor: Participant, target_id: str) -> None:
        self._require(actor, "moderate")
        target = self._target(actor, target_id)
        if target.state is not State.WAITING:
            raise ClientError(ErrorCode.BAD_STATE, "that participant is not waiting")
        target.apply(Event.ADMIT)
        self._audit(actor.room_id, actor.identity, "admit", target=target.identity)
        self._send_to(target, m.Admitted(by=actor.participant_id))
        self._enter(target, self._rooms[actor.room_id], resumed=False)

    def _remove(self, actor: Participant, target_id: str, reason: str) -> None:
        self._require(actor, "moderate")
        target = self._target(actor, target_id)
        if target is actor:
            raise ClientError(ErrorCode.BAD_STATE, "use leave to leave")
        was = target.state
        target.apply(Event.REMOVE)
        self._banned.add(target.jti)
        ban = Ban(
            jti=target.jti,
            room=target.room_id,
            identity=target.identity,
            by=actor.identity,
            reason=reason,
            time=iso_z(self._wall_clock()),
        )
        self._out.append(Persist(ban))
        if was in IN_MEDIA:
            self._end_media(target)
        tc = self._conn_of.get(target.participant_id)
        if tc is not None:
            self._refuse(
                tc, ClientError(ErrorCode.REMOVED, "removed by a moderator", CloseCode.FORBIDDEN)
            )
            self._detach(tc)
        self._gone(
            target,
            "removed",
            actor=actor.identity,
            waiting=was is State.WAITING,
            detail={"reason": reason},
        )

    def _mute(self, actor: Participant, kind: TrackKind, target_id: str | None) -> None:
        if target_id is None or target_id == actor.participant_id:
            self._set_muted(actor, kind, muted=True, by=actor)
            return
        self._require(actor, "moderate")
        target = self._target(actor, target_id)
        if target.state not in PRESENT:
            raise ClientError(ErrorCode.BAD_STATE, "that participant is not in the room")
        self._set_muted(target, kind, muted=True, by=actor)

    def _set_muted(self, p: Participant, kind: TrackKind, *, muted: bool, by: Participant) -> None:
        p.muted[kind] = muted
        for track in p.tracks.values():
            if track.kind == kind:
                track.muted = muted
        if p.state in IN_MEDIA:
            self._out.append(MediaPause(p.participant_id, kind, muted))
        self._audit(
            p.room_id,
            by.identity,
            "mute" if muted else "unmute",
            target=p.identity,
            detail={"kind": kind},
        )
        self._broadcast(
            p,
            m.Muted(participant_id=p.participant_id, kind=kind, muted=muted, by=by.participant_id),
        )

    # ------------------------------------------------------------------ leaving

    def _leave(self, c: _Conn, p: Participant) -> None:
        was = p.state
        p.apply(Event.LEAVE)
        if was in IN_MEDIA:
            self._end_media(p)
        self._detach(c)
        c.state = ConnState.CLOSING
        self._out.append(Close(c.conn_id, CloseCode.NORMAL, "left"))
        self._gone(p, "left", actor=p.identity, waiting=was is State.WAITING)

    def _gone(
        self,
        p: Participant,
        reason: m.LeaveReason,
        *,
        actor: str,
        waiting: bool = False,
        detail: dict[str, str] | None = None,
    ) -> None:
        """``p`` reached a final state: forget it and tell whoever knew of it.

        A participant that was still ``waiting`` was known to the moderators only.
        """
        room = self._rooms[p.room_id]
        room.discard(p)
        self._participants.pop(p.participant_id, None)
        left = m.ParticipantLeft(
            participant_id=p.participant_id, identity=p.identity, reason=reason
        )
        if waiting:
            for moderator in room.moderators():
                self._send_to(moderator, left)
        else:
            self._broadcast(p, left, skip=p)
        self._audit(p.room_id, actor, reason, target=p.identity, detail=detail)
        if not room.participants:
            del self._rooms[room.room_id]

    def _end_media(self, p: Participant) -> None:
        """Close ``p``'s media session; its tracks end for everyone."""
        self._out.append(MediaLeave(p.participant_id))
        for track_id in list(p.tracks):
            self._broadcast(
                p, m.TrackEnded(participant_id=p.participant_id, track_id=track_id), skip=p
            )
        p.tracks.clear()
        # Late callbacks from the closed session must not touch the next one.
        p.media_generation += 1

    # ------------------------------------------------------------------ helpers

    def _require(self, p: Participant, permission: str) -> None:
        if permission not in p.permissions:
            raise ClientError(ErrorCode.FORBIDDEN, f"your token does not grant {permission}")

    def _current(self, participant_id: str, generation: int) -> Participant | None:
        p = self._participants.get(participant_id)
        if p is None or p.media_generation != generation or p.state not in IN_MEDIA:
            return None
        return p

    def _attach(self, c: _Conn, p: Participant) -> None:
        c.participant = p
        c.state = ConnState.JOINED
        self._conn_of[p.participant_id] = c

    def _detach(self, c: _Conn) -> None:
        if c.participant is not None and self._conn_of.get(c.participant.participant_id) is c:
            del self._conn_of[c.participant.participant_id]
        c.participant = None

    def _info(self, p: Participant) -> m.ParticipantInfo:
        state: m.ParticipantStateName = (
            "waiting"
            if p.state is State.WAITING
            else "disconnected"
            if p.state is State.DISCONNECTED
            else "joined"
        )
        return m.ParticipantInfo(
            participant_id=p.participant_id,
            identity=p.identity,
            name=p.name,
            role=p.role,
            state=state,
            moderator=p.moderator,
            audio_muted=p.muted["audio"],
            video_muted=p.muted["video"],
            tracks=[_track_info(t) for t in p.tracks.values()],
        )

    def _waiting(self, p: Participant) -> m.Waiting:
        return m.Waiting(
            version=m.PROTOCOL_VERSION,
            participant_id=p.participant_id,
            room=p.room_id,
            resume_id=p.resume_id,
            grace_s=self.config.grace_s,
        )

    def _send(self, c: _Conn, message: m.ServerMessage) -> None:
        self._out.append(Send(c.conn_id, message))

    def _send_to(self, p: Participant, message: m.ServerMessage) -> None:
        c = self._conn_of.get(p.participant_id)
        if c is not None:
            self._send(c, message)

    def _broadcast(
        self, about: Participant, message: m.ServerMessage, *, skip: Participant | None = None
    ) -> None:
        """Send to everyone in ``about``'s room with a media session (``skip`` excepted)."""
        room = self._rooms.get(about.room_id)
        if room is None:
            return
        for p in room.participants.values():
            if p is not skip and p.state in IN_MEDIA:
                self._send_to(p, message)

    def _refuse(self, c: _Conn, error: ClientError, ref: str | None = None) -> None:
        self.stats.errors[error.code.value] += 1
        self._send(c, m.Error(code=error.code.value, reason=error.reason, ref=ref))
        if error.close is not None and c.state is not ConnState.CLOSING:
            c.state = ConnState.CLOSING
            self._out.append(Close(c.conn_id, error.close, error.code.value))

    def _audit(
        self,
        room: str,
        actor: str,
        action: str,
        *,
        target: str = "",
        detail: dict[str, str] | None = None,
    ) -> None:
        entry = AuditEntry(
            time=iso_z(self._wall_clock()),
            room=room,
            actor=actor,
            action=action,
            target=target,
            detail=detail,
        )
        self._out.append(Persist(entry))

    def _flush(self) -> list[Effect]:
        out, self._out = self._out, []
        return out
