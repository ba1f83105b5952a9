"""The signaling messages on ``/ws``, defined once; ``docs/signaling.md`` documents them.

Every message is a JSON object whose ``"type"`` field names it (a msgspec tagged
union). The two directions are two separate unions, so a name may mean one thing
from the client and another from the server (``chat``, ``offer``, ``answer``): the
client sends ``{"type": "chat", "text": ...}`` and receives chat events that carry the
sender and a server timestamp as well.

Design notes:

- The protocol version travels once, in ``join`` and ``joined``. A server that does
  not speak the client's version refuses the join with ``unsupported_version``.
- Unknown fields are ignored (a newer client may add optional fields without breaking
  an older server); unknown *types* are refused with ``unknown_type``.
- Every client message may carry ``ref``, an opaque string of the client's choosing;
  an ``error`` caused by that message echoes it, so a client can tell which request
  failed.
- Limits are part of the schema (``msgspec.Meta``), so an over-long chat text or an
  SDP over 60 000 characters fails decoding with ``bad_message`` before any logic
  sees it.
"""

from __future__ import annotations

import enum
from typing import Annotated, Final, Literal

import msgspec

PROTOCOL_VERSION: Final = 1

PeerRole = Literal["publish", "subscribe"]
TrackKind = Literal["audio", "video"]
TrackSource = Literal["camera", "microphone", "screen", "other"]
Permission = Literal["publish", "subscribe", "moderate"]
Role = Literal["applicant", "expert", "coordinator", "observer", "device"]
ParticipantStateName = Literal["waiting", "joined", "disconnected"]
LeaveReason = Literal["left", "removed", "timeout", "replaced", "disconnected", "denied", "ended"]
# The server's recording policy: ``required`` records every consult from its start and
# refuses a stop; ``allowed`` leaves it to moderators (consent); ``off`` refuses a start.
RecordingPolicy = Literal["required", "allowed", "off"]


class ErrorCode(enum.StrEnum):
    """``error.code`` values; docs/signaling.md says when each is sent."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_TYPE = "unknown_type"
    TOO_LARGE = "too_large"
    NOT_JOINED = "not_joined"
    ALREADY_JOINED = "already_joined"
    UNSUPPORTED_VERSION = "unsupported_version"
    INVALID_TOKEN = "invalid_token"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_NOT_YET_VALID = "token_not_yet_valid"
    BANNED = "banned"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    BAD_STATE = "bad_state"
    INVALID_SDP = "invalid_sdp"
    UNKNOWN_TRANSCEIVER = "unknown_transceiver"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    REPLACED = "replaced"
    REMOVED = "removed"
    JOIN_TIMEOUT = "join_timeout"
    MEDIA_FAILED = "media_failed"
    RECORDING_FAILED = "recording_failed"
    STORE_FAILED = "store_failed"
    REVOKED = "revoked"
    DENIED = "denied"
    RECORDING_REQUIRED = "recording_required"
    RECORDING_OFF = "recording_off"
    INTERNAL = "internal"


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server uses (4000-4999 are the application's)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    BAD_REQUEST = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    JOIN_TIMEOUT = 4408
    REPLACED = 4409
    RATE_LIMITED = 4429


# Limits (characters of the decoded strings).
MAX_TOKEN_CHARS: Final = 8_192
MAX_SDP_CHARS: Final = 60_000
MAX_CANDIDATE_CHARS: Final = 1_024
MAX_CHAT_CHARS: Final = 2_000
MAX_ID_CHARS: Final = 128
MAX_REF_CHARS: Final = 64
MAX_REASON_CHARS: Final = 200

Token = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TOKEN_CHARS)]
Sdp = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SDP_CHARS)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
Ref = Annotated[str, msgspec.Meta(max_length=MAX_REF_CHARS)]
ChatText = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CHAT_CHARS)]
Reason = Annotated[str, msgspec.Meta(max_length=MAX_REASON_CHARS)]
CandidateLine = Annotated[str, msgspec.Meta(max_length=MAX_CANDIDATE_CHARS)]
MlineIndex = Annotated[int, msgspec.Meta(ge=0, le=1_000)]
# An ECG stream id exactly as ``ecg_streams`` gives it: a UUID in its canonical form
# (lower case, hyphenated). Other spellings of the same UUID are refused, not
# normalised, so that a subscription is always keyed as the stream's data is sent.
StreamId = Annotated[
    str, msgspec.Meta(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]


class _Message(msgspec.Struct, tag_field="type", kw_only=True):
    """Base of every message: tagged on ``"type"``, keyword-only."""


class _ClientMessage(_Message):
    ref: Ref | None = None


# --------------------------------------------------------------------- client -> server


class Join(_ClientMessage, tag="join", kw_only=True):
    """First message of a connection: authenticate and enter the token's room."""

    token: Token
    version: int = PROTOCOL_VERSION
    resume: Id | None = None


class Offer(_ClientMessage, tag="offer", kw_only=True):
    """A client offer; only on the ``publish`` connection."""

    pc: PeerRole
    sdp: Sdp


class Answer(_ClientMessage, tag="answer", kw_only=True):
    """The client's answer to a server offer; only on the ``subscribe`` connection."""

    pc: PeerRole
    sdp: Sdp


class Candidate(_ClientMessage, tag="candidate", kw_only=True):
    """A trickled client ICE candidate (RTCIceCandidateInit); null/empty ends them."""

    pc: PeerRole
    candidate: CandidateLine | None = None
    sdp_mid: Id | None = None
    sdp_mline_index: MlineIndex | None = None


class Publish(_ClientMessage, tag="publish", kw_only=True):
    """Describe a track the client publishes (or is about to) on ``publish``."""

    track_id: Id
    kind: TrackKind
    source: TrackSource = "other"


class Unpublish(_ClientMessage, tag="unpublish", kw_only=True):
    """The client stopped publishing a track."""

    track_id: Id


class Mute(_ClientMessage, tag="mute", kw_only=True):
    """Mute own ``kind`` tracks, or (moderators) another participant's."""

    kind: TrackKind
    participant_id: Id | None = None


class Unmute(_ClientMessage, tag="unmute", kw_only=True):
    """Unmute own ``kind`` tracks (nobody can unmute someone else)."""

    kind: TrackKind


class Receive(_ClientMessage, tag="receive", kw_only=True):
    """Receive others' video (``video: true``, the default) or not (audio only): the
    server renegotiates the subscribe connection at once, without a reconnect."""

    video: bool


class Chat(_ClientMessage, tag="chat", kw_only=True):
    """Send a chat message to everyone joined in the room."""

    text: ChatText


class Leave(_ClientMessage, tag="leave", kw_only=True):
    """Leave the room for good; the server then closes the connection (1000)."""


class Admit(_ClientMessage, tag="admit", kw_only=True):
    """Moderators: let a waiting participant in."""

    participant_id: Id


class Remove(_ClientMessage, tag="remove", kw_only=True):
    """Moderators: remove a participant.

    ``ban`` (the default) bans the identity from the room for good, once the ban is
    durable; ``ban: false`` only ends the participant's presence: the same person may
    join again with a valid token.
    """

    participant_id: Id
    reason: Reason | None = None
    ban: bool = True


class Deny(_ClientMessage, tag="deny", kw_only=True):
    """Moderators: refuse a waiting participant, with a message shown to them (no ban)."""

    participant_id: Id
    message: Reason | None = None


class AdmitAll(_ClientMessage, tag="admit_all", kw_only=True):
    """Moderators: let every waiting participant in."""


class EndRoom(_ClientMessage, tag="end_room", kw_only=True):
    """Moderators: end the consult for everyone (each connection gets ``room_ended``)."""


class RaiseHand(_ClientMessage, tag="raise_hand", kw_only=True):
    """Raise (``raised: true``) or lower your hand; everyone in the room gets ``hand``."""

    raised: bool


class SetRecording(_ClientMessage, tag="set_recording", kw_only=True):
    """Moderators: record the room from now on (consent given) or stop recording."""

    on: bool


class Ping(_ClientMessage, tag="ping", kw_only=True):
    """Application-level keep-alive; answered with ``pong``."""


# Live ECG viewing (docs/signaling.md, "Live ECG").


class Watch(_ClientMessage, tag="watch", kw_only=True):
    """First message of a viewer connection: authenticate without entering the room's media."""

    token: Token
    version: int = PROTOCOL_VERSION


class EcgList(_ClientMessage, tag="ecg_list", kw_only=True):
    """Ask for the ECG streams the token grants (answered with ``ecg_streams``)."""


class EcgSubscribe(_ClientMessage, tag="ecg_subscribe", kw_only=True):
    """Receive a stream's live samples and annotations (``ecg_subscribed``, ``ecg_data``)."""

    stream: StreamId


class EcgUnsubscribe(_ClientMessage, tag="ecg_unsubscribe", kw_only=True):
    """Stop receiving a stream (answered with ``ecg_unsubscribed``)."""

    stream: StreamId


ClientMessage = (
    Join
    | Offer
    | Answer
    | Candidate
    | Publish
    | Unpublish
    | Mute
    | Unmute
    | Receive
    | Chat
    | Leave
    | Admit
    | Remove
    | Deny
    | AdmitAll
    | EndRoom
    | RaiseHand
    | SetRecording
    | Ping
    | Watch
    | EcgList
    | EcgSubscribe
    | EcgUnsubscribe
)

CLIENT_TYPES: Final = frozenset(
    str(cls.__struct_config__.tag)
    for cls in (
        Join,
        Offer,
        Answer,
        Candidate,
        Publish,
        Unpublish,
        Mute,
        Unmute,
        Receive,
        Chat,
        Leave,
        Admit,
        Remove,
        Deny,
        AdmitAll,
        EndRoom,
        RaiseHand,
        SetRecording,
        Ping,
        Watch,
        EcgList,
        EcgSubscribe,
        EcgUnsubscribe,
    )
)


# --------------------------------------------------------------------- shared structures


class IceServer(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An RTCIceServer as ``new RTCPeerConnection({iceServers})`` takes it."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


class TrackInfo(msgspec.Struct, kw_only=True):
    """A published track as others see it."""

    track_id: str
    kind: TrackKind
    stream_id: str
    source: TrackSource = "other"
    muted: bool = False


class ParticipantInfo(msgspec.Struct, kw_only=True):
    """A participant as others see it."""

    participant_id: str
    identity: str
    name: str
    role: Role
    state: ParticipantStateName
    moderator: bool
    audio_muted: bool = False
    video_muted: bool = False
    tracks: list[TrackInfo] = msgspec.field(default_factory=list)
    hand_raised: bool = False


# --------------------------------------------------------------------- server -> client


class Joined(_Message, tag="joined", kw_only=True):
    """You are in the room: your identity, rights, ICE servers and who is there."""

    version: int
    participant_id: str
    identity: str
    name: str
    room: str
    role: Role
    permissions: list[Permission]
    ice_servers: list[IceServer]
    participants: list[ParticipantInfo]
    resume_id: str
    grace_s: float
    resumed: bool = False
    recording: bool = False  # the room is being recorded
    recording_policy: RecordingPolicy = "allowed"


class Waiting(_Message, tag="waiting", kw_only=True):
    """You are in the waiting room until a moderator admits you."""

    version: int
    participant_id: str
    room: str
    resume_id: str
    grace_s: float
    recording_policy: RecordingPolicy = "allowed"  # so the waiting screen can say so


class Admitted(_Message, tag="admitted", kw_only=True):
    """A moderator admitted you; ``joined`` follows."""

    by: str


class ServerOffer(_Message, tag="offer", kw_only=True):
    """A server offer on ``subscribe`` (first one, and each renegotiation)."""

    pc: PeerRole
    sdp: str


class ServerAnswer(_Message, tag="answer", kw_only=True):
    """The server's answer to your ``publish`` offer."""

    pc: PeerRole
    sdp: str
    ref: str | None = None


class ServerCandidate(_Message, tag="candidate", kw_only=True):
    """A server ICE candidate for ``pc``, after its offer or answer; null ends them."""

    pc: PeerRole
    candidate: str | None = None
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None


class ParticipantJoined(_Message, tag="participant_joined", kw_only=True):
    """Someone entered the room (or was admitted)."""

    participant: ParticipantInfo


class ParticipantLeft(_Message, tag="participant_left", kw_only=True):
    """Someone left the room for good."""

    participant_id: str
    identity: str
    reason: LeaveReason


class ParticipantWaiting(_Message, tag="participant_waiting", kw_only=True):
    """Moderators only: someone is in the waiting room."""

    participant: ParticipantInfo


class ParticipantState(_Message, tag="participant_state", kw_only=True):
    """A participant's connection dropped (``disconnected``) or came back (``joined``)."""

    participant_id: str
    state: ParticipantStateName


class TrackPublished(_Message, tag="track_published", kw_only=True):
    """A participant's track is now forwarded to subscribers."""

    participant_id: str
    track: TrackInfo


class TrackEnded(_Message, tag="track_ended", kw_only=True):
    """A participant's track is gone."""

    participant_id: str
    track_id: str


class Muted(_Message, tag="muted", kw_only=True):
    """A participant's ``kind`` tracks were muted or unmuted, by itself or a moderator."""

    participant_id: str
    kind: TrackKind
    muted: bool
    by: str


class ChatEvent(_Message, tag="chat", kw_only=True):
    """A chat message, stamped by the server (UTC, ISO 8601 with ``Z``)."""

    participant_id: str
    identity: str
    name: str
    text: str
    time: str


class MediaState(_Message, tag="media_state", kw_only=True):
    """The server's view of one of your peer connections (``connected``, ``failed``...)."""

    pc: PeerRole
    state: str


class RecordingEvent(_Message, tag="recording", kw_only=True):
    """The room's recording started (``on``) or stopped; ``error`` says why it failed."""

    on: bool
    error: str | None = None


class RoomEnded(_Message, tag="room_ended", kw_only=True):
    """A moderator (``by``, a participant id; ``name``) ended the consult for everyone;
    the server then closes the connection (1000)."""

    by: str
    name: str


class Hand(_Message, tag="hand", kw_only=True):
    """A participant raised or lowered their hand."""

    participant_id: str
    raised: bool


class Pong(_Message, tag="pong", kw_only=True):
    """Answer to ``ping``."""

    ref: str | None = None
    time: str


class Error(_Message, tag="error", kw_only=True):
    """A request failed; ``ref`` echoes the failing message's ``ref``."""

    code: str
    reason: str
    ref: str | None = None


class Watching(_Message, tag="watching", kw_only=True):
    """Answer to ``watch``: the connection may list and subscribe to ECG streams."""

    identity: str
    role: Role
    room: str
    version: int = PROTOCOL_VERSION


NotifyValue = str | int | float | bool | None


class Notify(_Message, tag="notify", kw_only=True):
    """A server-pushed notification for the person (any of its connections).

    ``topic`` names what happened (dotted lower case, e.g. ``consult.assigned``);
    ``data`` is a small flat object whose keys the topic defines; ``time`` is UTC.
    """

    topic: str
    data: dict[str, NotifyValue] = msgspec.field(default_factory=dict)
    time: str


EcgStreamStateName = Literal["live", "ended", "finalised"]


class EcgStreamInfo(msgspec.Struct, kw_only=True):
    """One ECG stream as a viewer sees it.

    ``state``: ``live`` (not ended: samples may still come), ``ended`` (complete,
    batch annotation running) or ``finalised`` (record and annotations written).
    ``samples`` counts samples per lead received so far; ``start_time`` is UTC.
    ``institution`` is the code of the institution the stream belongs to (its cart's
    registration), None for a cart that authenticated with a bare token.
    """

    stream: str
    device: str
    patient: str
    consult: str | None = None
    room: str | None = None
    institution: str | None = None
    start_time: str
    fs_hz: float
    leads: list[str]
    samples: int
    duration_s: float
    state: EcgStreamStateName


class EcgStreams(_Message, tag="ecg_streams", kw_only=True):
    """Answer to ``ecg_list``: the granted streams, newest first."""

    streams: list[EcgStreamInfo]
    ref: str | None = None


class EcgSubscribed(_Message, tag="ecg_subscribed", kw_only=True):
    """Answer to ``ecg_subscribe``; ``ecg_data`` follows from the next live chunk."""

    info: EcgStreamInfo
    display_fs_hz: float
    ref: str | None = None


class EcgUnsubscribed(_Message, tag="ecg_unsubscribed", kw_only=True):
    """Answer to ``ecg_unsubscribe``."""

    stream: str
    ref: str | None = None


class EcgBeat(msgspec.Struct, array_like=True):
    """A beat as ``[index, time, rr_s]``: R-peak sample index (input rate, from the
    stream's start), its UTC time, and the RR interval ending at it in s (null first)."""

    index: int
    time: str
    rr_s: float | None


class EcgFlag(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A rhythm or quality flag over samples ``[onset, offset)`` (input rate).

    ``lead`` is the lead's column for quality flags, absent for rhythm flags;
    ``measure`` is in the flag kind's unit (docs/ecg-annotations.md).
    """

    kind: str
    onset: int
    offset: int
    lead: int | None = None
    measure: float | None = None


class EcgData(_Message, tag="ecg_data", kw_only=True):
    """A live chunk of a subscribed stream.

    ``samples_uv[lead][i]`` is display sample ``first_index + i`` of that lead in µV
    (int16 range; ``null`` for each sample without a valid value: lead off or the
    device's invalid sample; a lead is never ``null`` as a whole), filtered (0.5–40 Hz)
    and decimated to ``display_fs_hz``. ``flags`` became final with this chunk (each once
    per stream); ``provisional`` replaces the previous chunk's provisional flags.
    """

    stream: str
    first_index: int
    display_fs_hz: float
    samples_uv: list[list[int | None]]
    beats: list[EcgBeat]
    heart_rate_bpm: float | None
    flags: list[EcgFlag]
    provisional: list[EcgFlag]
    samples: int


class EcgEnded(_Message, tag="ecg_ended", kw_only=True):
    """A subscribed stream ended (``state`` ``ended``) or was finalised (``finalised``)."""

    stream: str
    samples: int
    state: EcgStreamStateName


ServerMessage = (
    Joined
    | Waiting
    | Admitted
    | ServerOffer
    | ServerAnswer
    | ServerCandidate
    | ParticipantJoined
    | ParticipantLeft
    | ParticipantWaiting
    | ParticipantState
    | TrackPublished
    | TrackEnded
    | Muted
    | ChatEvent
    | MediaState
    | RecordingEvent
    | RoomEnded
    | Hand
    | Pong
    | Error
    | Notify
    | Watching
    | EcgStreams
    | EcgSubscribed
    | EcgUnsubscribed
    | EcgData
    | EcgEnded
)

_client_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
_server_decoder: msgspec.json.Decoder[ServerMessage] = msgspec.json.Decoder(ServerMessage)
_encoder: Final = msgspec.json.Encoder()


def decode_client(data: bytes | str) -> ClientMessage:
    """Decode one client message; raises ``msgspec.DecodeError`` / ``ValidationError``."""
    return _client_decoder.decode(data)


def decode_server(data: bytes | str) -> ServerMessage:
    """Decode one server message (clients, tests and the load benchmark use it)."""
    return _server_decoder.decode(data)


def encode(message: ClientMessage | ServerMessage) -> bytes:
    """Encode a message as compact UTF-8 JSON."""
    return _encoder.encode(message)
