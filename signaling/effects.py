"""What the protocol core asks the I/O layer to do: the effects, one frozen dataclass each.

Every entry point of :class:`signaling.core.Core` returns a list of these, in the order
they must be carried out. The I/O layer matches on the class and does nothing else:

- :class:`Send`, :class:`Close`: write on or close one ``/ws`` connection.
- :class:`Persist`: write a record to the Store (group commit allowed). When ``ack`` is
  set the write must be reported back with ``Core.persisted(ack, ok, now_s)`` once it is
  durable (or has failed): the core announces what depends on it only then.
- :class:`MediaJoin` ... :class:`MediaLeave`: calls on the media backend, run in order
  per participant (one lane each); :class:`MediaRecord` switches a room's recording.
- :class:`EcgRequest`: a viewer's ECG request, answered by the ECG side.
"""

from __future__ import annotations

from dataclasses import dataclass

from sessions.store import Record
from signaling import messages as m
from signaling.messages import CloseCode
from signaling.ports import IceServerDict, PeerRole, TrackKind

ConnId = int


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
class MediaReceive:
    """Send a participant others' tracks of one kind, or none of them (audio only)."""

    participant_id: str
    kind: TrackKind
    receiving: bool


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
class Waiting:
    """Someone entered a room's waiting room: those who may admit them and are not in
    the room yet should hear of it (the server's listener decides who they are)."""

    room_id: str
    identity: str
    name: str


@dataclass(frozen=True, slots=True)
class EcgRequest:
    """A viewer's ECG request, from a connection whose token enters ``room``.

    The I/O layer answers it (``ecg_streams``, ``ecg_subscribed``, ``forbidden``...).
    What decides which streams the viewer sees travels with it: the token's
    ``institution`` and ``person_roles`` (tokens the server minted for a logged-in
    person carry them; command-line tokens do not), and ``in_room``: the identity is
    admitted to ``room`` (a participant of the consult a stream is attached to).
    """

    conn: ConnId
    identity: str
    room: str
    message: m.EcgList | m.EcgSubscribe | m.EcgUnsubscribe
    institution: str | None = None
    person_roles: frozenset[str] = frozenset()
    in_room: bool = False


@dataclass(frozen=True, slots=True)
class Persist:
    """Write to the Store (and publish on the Bus): a ban, an audit entry or a room.

    Attributes
    ----------
    record : Record
        What to write.
    ack : int or None
        None: fire and forget (a failure is the I/O layer's to log). An int: the core
        waits for this write; call ``Core.persisted(ack, ok, now_s)`` once the record is
        durable (``ok=True``) or the write failed (``ok=False``). Exactly once per ack.
    """

    record: Record
    ack: int | None = None


Effect = (
    Send
    | Close
    | MediaJoin
    | MediaOffer
    | MediaAnswer
    | MediaCandidate
    | MediaPause
    | MediaReceive
    | MediaLeave
    | MediaRecord
    | Persist
    | EcgRequest
    | Waiting
)
MEDIA_EFFECTS = (
    MediaJoin,
    MediaOffer,
    MediaAnswer,
    MediaCandidate,
    MediaPause,
    MediaReceive,
    MediaLeave,
)
