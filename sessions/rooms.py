"""Rooms and participants, and the one table of participant transitions.

Rule (after h11): everything that changes a participant's state goes through
:meth:`Participant.apply`, which looks the event up in :data:`TRANSITIONS`; a missing
entry raises :class:`~sessions.errors.TransitionError` naming the participant's role,
state and event. Every change is logged.

::

    NEW ──WAIT──► WAITING ──ADMIT──► ADMITTED ──MEDIA_READY──► JOINED
     ╰────ADMIT (moderators)─────────╯  ▲   │                   │
                                        │   DISCONNECT          DISCONNECT
                                 RESUME │   ▼                   ▼
                                        ╰── DISCONNECTED ◄──────╯
                                              │ EXPIRE (grace period over)
                                              ▼
    LEAVE from any live state ──► LEFT      REMOVE ──► REMOVED

- ``WAITING``: in the waiting room; a dropped connection ends it (``DISCONNECT`` →
  ``LEFT``) because a waiting participant has nothing to keep.
- ``ADMITTED``: in the room, its media session being (re)opened; ``MEDIA_READY``
  makes it ``JOINED``. Resuming (or a newer connection taking over) goes back through
  ``ADMITTED`` because media is renegotiated from scratch.
- ``DISCONNECTED``: the connection dropped; identity, place, mutes and track metadata
  are kept for the grace period.
- ``LEFT`` and ``REMOVED`` are final; a removal bans the identity from the room (the
  signaling core enforces the ban, once durable, on every token of that identity).

No I/O here: the signaling core drives these objects and turns their changes into
messages and effects.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, Literal

from sessions.errors import TransitionError
from sessions.tokens import Permission, Role, TokenClaims

logger = logging.getLogger(__name__)


class State(enum.Enum):
    """A participant's state."""

    NEW = "new"
    WAITING = "waiting"
    ADMITTED = "admitted"
    JOINED = "joined"
    DISCONNECTED = "disconnected"
    LEFT = "left"
    REMOVED = "removed"


class Event(enum.Enum):
    """What can happen to a participant."""

    WAIT = "wait"
    ADMIT = "admit"
    MEDIA_READY = "media_ready"
    DISCONNECT = "disconnect"
    RESUME = "resume"
    LEAVE = "leave"
    REMOVE = "remove"
    EXPIRE = "expire"


_S, _E = State, Event
TRANSITIONS: Final[dict[State, dict[Event, State]]] = {
    _S.NEW: {_E.WAIT: _S.WAITING, _E.ADMIT: _S.ADMITTED},
    _S.WAITING: {
        _E.ADMIT: _S.ADMITTED,
        _E.RESUME: _S.WAITING,
        _E.DISCONNECT: _S.LEFT,
        _E.LEAVE: _S.LEFT,
        _E.REMOVE: _S.REMOVED,
    },
    _S.ADMITTED: {
        _E.MEDIA_READY: _S.JOINED,
        _E.RESUME: _S.ADMITTED,
        _E.DISCONNECT: _S.DISCONNECTED,
        _E.LEAVE: _S.LEFT,
        _E.REMOVE: _S.REMOVED,
    },
    _S.JOINED: {
        _E.RESUME: _S.ADMITTED,
        _E.DISCONNECT: _S.DISCONNECTED,
        _E.LEAVE: _S.LEFT,
        _E.REMOVE: _S.REMOVED,
    },
    _S.DISCONNECTED: {
        _E.RESUME: _S.ADMITTED,
        _E.EXPIRE: _S.LEFT,
        _E.LEAVE: _S.LEFT,
        _E.REMOVE: _S.REMOVED,
    },
    _S.LEFT: {},
    _S.REMOVED: {},
}

FINAL: Final = frozenset({State.LEFT, State.REMOVED})
# In the room proper (not waiting, not gone): these see and are seen by the others.
PRESENT: Final = frozenset({State.ADMITTED, State.JOINED, State.DISCONNECTED})
# With a media session open (or being opened) on the server.
IN_MEDIA: Final = frozenset({State.ADMITTED, State.JOINED})

KINDS: Final = ("audio", "video")
TrackKind = Literal["audio", "video"]
TrackSource = Literal["camera", "microphone", "screen", "other"]


@dataclass(kw_only=True)
class Track:
    """A published track's metadata."""

    track_id: str
    kind: TrackKind
    stream_id: str
    source: TrackSource
    muted: bool = False


@dataclass(kw_only=True, eq=False)
class Participant:
    """One identity in one room.

    Attributes
    ----------
    participant_id : str
        Server-chosen id, stable across resumes.
    resume_id : str
        Secret the client presents to resume.
    media_generation : int
        Incremented each time the media session is (re)opened, so that late callbacks
        from a closed session are recognised and ignored.
    disconnected_at_s : float or None
        Monotonic time the connection dropped, while ``DISCONNECTED``.
    """

    participant_id: str
    resume_id: str
    identity: str
    name: str
    role: Role
    room_id: str
    permissions: frozenset[Permission]
    jti: str
    state: State = State.NEW
    muted: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(KINDS, False))
    tracks: dict[str, Track] = field(default_factory=dict)
    sources: dict[str, TrackSource] = field(default_factory=dict)
    media_generation: int = 0
    disconnected_at_s: float | None = None

    @classmethod
    def from_claims(cls, claims: TokenClaims, participant_id: str, resume_id: str) -> Participant:
        """A NEW participant for a verified token."""
        return cls(
            participant_id=participant_id,
            resume_id=resume_id,
            identity=claims.identity,
            name=claims.name,
            role=claims.role,
            room_id=claims.room,
            permissions=claims.permissions,
            jti=claims.jti,
        )

    @property
    def moderator(self) -> bool:
        """Whether it may admit, mute and remove others."""
        return "moderate" in self.permissions

    def can(self, permission: Permission) -> bool:
        """Whether the token granted ``permission``."""
        return permission in self.permissions

    def apply(self, event: Event) -> State:
        """Apply ``event`` through :data:`TRANSITIONS` and return the new state.

        Raises
        ------
        TransitionError
            If the table has no entry for the current state and ``event``.
        """
        try:
            new = TRANSITIONS[self.state][event]
        except KeyError:
            raise TransitionError(self.role, self.state.name, event.name) from None
        logger.info(
            "participant %s (%s, %s) in %s: %s -> %s on %s",
            self.participant_id,
            self.identity,
            self.role,
            self.room_id,
            self.state.name,
            new.name,
            event.name,
        )
        self.state = new
        return new

    def allows(self, event: Event) -> bool:
        """Whether :meth:`apply` would accept ``event`` now."""
        return event in TRANSITIONS[self.state]

    def reclaim(self, claims: TokenClaims) -> None:
        """Take the claims of a newer token for the same identity (resume, takeover)."""
        self.name = claims.name
        self.permissions = claims.permissions
        self.jti = claims.jti


@dataclass(kw_only=True, eq=False)
class Room:
    """A room: the participants who are not gone, in order of arrival."""

    room_id: str
    waiting_room: bool = True
    participants: dict[str, Participant] = field(default_factory=dict)

    def add(self, participant: Participant) -> None:
        """Add a participant (state NEW)."""
        self.participants[participant.participant_id] = participant

    def discard(self, participant: Participant) -> None:
        """Forget a participant whose state is final."""
        self.participants.pop(participant.participant_id, None)

    def by_identity(self, identity: str) -> Participant | None:
        """The live participant with ``identity``, if any."""
        for participant in self.participants.values():
            if participant.identity == identity and participant.state not in FINAL:
                return participant
        return None

    def present(self) -> Iterator[Participant]:
        """Participants in the room proper (admitted, joined or disconnected)."""
        return (p for p in self.participants.values() if p.state in PRESENT)

    def waiting(self) -> Iterator[Participant]:
        """Participants in the waiting room, first come first."""
        return (p for p in self.participants.values() if p.state is State.WAITING)

    def moderators(self) -> Iterator[Participant]:
        """Present moderators."""
        return (p for p in self.present() if p.moderator)

    def needs_admission(self, participant: Participant) -> bool:
        """Whether ``participant`` must wait for a moderator."""
        return self.waiting_room and not participant.moderator
