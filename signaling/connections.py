"""A ``/ws`` connection's states and their one transition table.

Rule (after h11): everything that changes a connection's state goes through
:meth:`Conn.apply`, which looks the event up in :data:`TRANSITIONS`; a missing entry
raises :class:`~signaling.errors.ConnectionStateError` naming the connection's role
(the token's role once authenticated, ``unauthenticated`` before), its state and the
event. Every change is logged at DEBUG.

::

    OPEN ──JOIN──► JOINED ───┐
     │ ╰──WATCH──► WATCHING ─┼──CLOSE──► CLOSING ──DROP──► CLOSED
     ╰───────────────────────┘                ▲
    DROP from any state but CLOSED ───────────┴──────────► CLOSED

- ``OPEN``: connected, not yet authenticated; only ``join``, ``watch`` and ``ping``
  mean anything, and the join timeout runs.
- ``JOINED``: speaks for a participant (waiting or in the room; the participant's own
  states are :mod:`sessions.rooms`).
- ``WATCHING``: a live-ECG viewer, authenticated but outside the room.
- ``CLOSING``: the core has emitted a :class:`~signaling.effects.Close`; input is
  ignored until the I/O layer reports the connection gone.
- ``CLOSED``: gone (``Core.closed``); the connection is forgotten.

A participant's connection is closed only through ``CLOSE`` (leave, removal, takeover,
expiry, revocation), so a connection never goes back to ``OPEN`` and never speaks for
two participants.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Final

from sessions.rooms import Participant
from sessions.tokens import TokenClaims
from signaling.effects import ConnId
from signaling.errors import ConnectionStateError

logger = logging.getLogger(__name__)


class ConnState(enum.IntEnum):
    """A connection's state in the core."""

    OPEN = 0
    JOINED = 1
    CLOSING = 2
    WATCHING = 3
    CLOSED = 4


class ConnEvent(enum.Enum):
    """What can happen to a connection."""

    JOIN = "join"  # a valid join: it now speaks for a participant
    WATCH = "watch"  # a valid watch: it is a viewer
    CLOSE = "close"  # the core closes it (a Close effect is emitted)
    DROP = "drop"  # the I/O layer reports it gone


_S, _E = ConnState, ConnEvent
TRANSITIONS: Final[dict[ConnState, dict[ConnEvent, ConnState]]] = {
    _S.OPEN: {_E.JOIN: _S.JOINED, _E.WATCH: _S.WATCHING, _E.CLOSE: _S.CLOSING, _E.DROP: _S.CLOSED},
    _S.JOINED: {_E.CLOSE: _S.CLOSING, _E.DROP: _S.CLOSED},
    _S.WATCHING: {_E.CLOSE: _S.CLOSING, _E.DROP: _S.CLOSED},
    _S.CLOSING: {_E.DROP: _S.CLOSED},
    _S.CLOSED: {},
}
# Authenticated and open: these receive what their identity is sent (notify, expiry).
AUTHENTICATED: Final = frozenset({ConnState.JOINED, ConnState.WATCHING})


@dataclass(slots=True)
class TokenBucket:
    """``burst`` tokens, refilled at ``rate_per_s``; each message takes one (or what it
    weighs: ``take(now_s, amount)``)."""

    rate_per_s: float
    burst: float
    tokens: float
    last_s: float

    def take(self, now_s: float, amount: float = 1.0) -> bool:
        """Take ``amount`` tokens at ``now_s``; False (and nothing taken) when the bucket
        holds fewer."""
        self.tokens = self.level(now_s)
        self.last_s = now_s
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True

    def level(self, now_s: float) -> float:
        """The tokens the bucket would hold at ``now_s``."""
        return min(self.burst, self.tokens + (now_s - self.last_s) * self.rate_per_s)


@dataclass(slots=True, eq=False)
class Conn:
    """One ``/ws`` connection as the core sees it.

    Attributes
    ----------
    opened_s : float
        Monotonic time it opened, seconds (for the join timeout).
    claims : TokenClaims or None
        The verified token of its ``join`` or ``watch`` (None while ``OPEN``); a
        takeover or resume replaces the participant's claims, not this connection's.
    participant : Participant or None
        Whom it speaks for, while ``JOINED``.
    refused_in_a_row : int
        Messages refused by the rate limit since the last accepted one.
    """

    conn_id: ConnId
    opened_s: float
    bucket: TokenBucket
    state: ConnState = ConnState.OPEN
    claims: TokenClaims | None = None
    participant: Participant | None = None
    refused_in_a_row: int = 0

    @property
    def role(self) -> str:
        """The token's role once authenticated, ``unauthenticated`` before."""
        return "unauthenticated" if self.claims is None else self.claims.role

    def apply(self, event: ConnEvent) -> ConnState:
        """Apply ``event`` through :data:`TRANSITIONS` and return the new state.

        Raises
        ------
        ConnectionStateError
            If the table has no entry for the current state and ``event``.
        """
        try:
            new = TRANSITIONS[self.state][event]
        except KeyError:
            raise ConnectionStateError(self.role, self.state.name, event.name) from None
        logger.debug(
            "connection %d (%s): %s -> %s on %s",
            self.conn_id,
            self.role,
            self.state.name,
            new.name,
            event.name,
        )
        self.state = new
        return new

    def allows(self, event: ConnEvent) -> bool:
        """Whether :meth:`apply` would accept ``event`` now."""
        return event in TRANSITIONS[self.state]
