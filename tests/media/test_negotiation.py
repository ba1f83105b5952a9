"""Tests of the subscribe offer state machine (no event loop)."""

from __future__ import annotations

import pytest

from media.exceptions import NegotiationError
from media.negotiation import TRANSITIONS, OfferEvent, OfferState, step


def test_change_when_stable_sends_an_offer() -> None:
    """A change with no offer in flight sends one at once."""
    assert step(OfferState.STABLE, OfferEvent.CHANGE) == (OfferState.OFFERING, True)


def test_changes_during_an_offer_collapse_into_one_next_offer() -> None:
    """Any number of changes while an offer is in flight produce exactly one next offer."""
    state, sent = step(OfferState.STABLE, OfferEvent.CHANGE)
    offers = int(sent)
    for _ in range(5):
        state, sent = step(state, OfferEvent.CHANGE)
        offers += sent
    state, sent = step(state, OfferEvent.ANSWER)
    offers += sent
    state, sent = step(state, OfferEvent.ANSWER)
    offers += sent
    assert (state, offers) == (OfferState.STABLE, 2)


def test_changes_before_the_offer_is_built_ride_in_it() -> None:
    """Changes queued before the offer is built need no second offer; later ones do."""
    state, _ = step(OfferState.STABLE, OfferEvent.CHANGE)
    state, _ = step(state, OfferEvent.CHANGE)  # the second track of the same publisher
    state, _ = step(state, OfferEvent.BUILD)
    assert step(state, OfferEvent.ANSWER) == (OfferState.STABLE, False)
    state, _ = step(state, OfferEvent.CHANGE)  # after the build: queued for the next
    assert step(state, OfferEvent.ANSWER) == (OfferState.OFFERING, True)


@pytest.mark.parametrize("event", [OfferEvent.ANSWER, OfferEvent.BUILD])
def test_answer_or_build_without_offer_is_refused(event: OfferEvent) -> None:
    """An answer or a build when nothing is offered is a named error, not a silent change."""
    with pytest.raises(NegotiationError, match=f"'{event.value}' not expected in state 'stable'"):
        step(OfferState.STABLE, event)


def test_at_most_one_offer_in_flight() -> None:
    """No transition sends an offer out of a state that already has one in flight."""
    for state, row in TRANSITIONS.items():
        for event, (_, send_offer) in row.items():
            if send_offer and state is not OfferState.STABLE:
                assert event is OfferEvent.ANSWER
