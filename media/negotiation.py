"""The subscribe connection's offer state machine, with no I/O.

Only the server offers on a participant's ``"subscribe"`` connection. Tracks come
and go at any time, but WebRTC allows one offer in flight: a change that arrives
while an offer awaits its answer is queued, and one new offer (covering every
change queued meanwhile) goes out when the answer arrives. So the machine has three
states and the whole policy is the table :data:`TRANSITIONS`; :func:`step` returns
the next state and whether the caller must send an offer now.

The offer is built from the current subscriptions when its task runs, not when it is
requested: ``BUILD`` marks that moment, so changes queued before it (two tracks of a
new publisher arrive together) ride in that offer instead of causing a second one.
"""

from __future__ import annotations

import enum
import logging

from media.exceptions import NegotiationError

logger = logging.getLogger(__name__)


class OfferState(enum.Enum):
    """Where the subscribe connection's offer/answer exchange stands."""

    STABLE = "stable"  # no offer in flight, nothing queued
    OFFERING = "offering"  # one offer in flight
    OFFERING_QUEUED = "offering-queued"  # one offer in flight, changes queued behind it


class OfferEvent(enum.Enum):
    """What can happen to the subscribe connection."""

    CHANGE = "change"  # a track to send was added or removed
    ANSWER = "answer"  # the client's answer to our offer was applied
    BUILD = "build"  # the offer in flight is being built from the current subscriptions


# state -> event -> (next state, send an offer now)
TRANSITIONS: dict[OfferState, dict[OfferEvent, tuple[OfferState, bool]]] = {
    OfferState.STABLE: {
        OfferEvent.CHANGE: (OfferState.OFFERING, True),
    },
    OfferState.OFFERING: {
        OfferEvent.CHANGE: (OfferState.OFFERING_QUEUED, False),
        OfferEvent.ANSWER: (OfferState.STABLE, False),
        OfferEvent.BUILD: (OfferState.OFFERING, False),
    },
    OfferState.OFFERING_QUEUED: {
        OfferEvent.CHANGE: (OfferState.OFFERING_QUEUED, False),
        OfferEvent.ANSWER: (OfferState.OFFERING, True),
        OfferEvent.BUILD: (OfferState.OFFERING, False),
    },
}


def step(state: OfferState, event: OfferEvent) -> tuple[OfferState, bool]:
    """Apply ``event`` in ``state``.

    Returns
    -------
    tuple of (OfferState, bool)
        The next state, and whether the caller must create and send an offer now.

    Raises
    ------
    NegotiationError
        For an event the state does not accept (an answer with no offer in flight).
    """
    try:
        next_state, send_offer = TRANSITIONS[state][event]
    except KeyError:
        raise NegotiationError(f"{event.value!r} not expected in state {state.value!r}") from None
    if next_state is not state:
        logger.debug(
            "subscribe offer state %s -> %s on %s", state.value, next_state.value, event.value
        )
    return next_state, send_offer
