"""Two-way referral: the table entry by entry, slots, and who may act."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consults.errors import Forbidden, InvalidInput
from consults.referrals import (
    HOLDS_SLOT,
    REFERRAL_TRANSITIONS,
    Referral,
    ReferralEvent,
    ReferralParty,
    ReferralState,
    Slot,
    apply_referral,
    new_referral,
)
from consults.transitions import TransitionNotAllowed

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
SLOT = Slot(
    id="s1",
    institution="CH01",
    department="cardiology",
    start=T0 + timedelta(days=1),
    end=T0 + timedelta(days=1, minutes=30),
)
SENDER = ("TS01", frozenset({"doctor"}))
RECEIVER = ("CH01", frozenset({"coordinator"}))


def referral(state: ReferralState) -> Referral:
    r = new_referral(id="f1", from_institution="TS01", slot=SLOT, reason="PCI", now=T0)
    return Referral(**{**r.__dict__, "state": state})


@pytest.mark.parametrize(
    ("state", "event"), [(s, e) for s, rules in REFERRAL_TRANSITIONS.items() for e in rules]
)
def test_every_referral_entry(state: ReferralState, event: ReferralEvent) -> None:
    """Each entry, by a party it allows, reaches its next state and keeps its text."""
    rule = REFERRAL_TRANSITIONS[state][event]
    institution, roles = SENDER if ReferralParty.SENDER in rule.parties else RECEIVER
    after = apply_referral(referral(state), event, institution, roles, T0, text=" stable ")
    assert after.state is rule.to
    if rule.needs == "summary":
        assert after.discharge_summary == "stable"


@pytest.mark.parametrize(
    ("state", "event"),
    [(s, e) for s in ReferralState for e in ReferralEvent if e not in REFERRAL_TRANSITIONS[s]],
)
def test_every_missing_referral_entry(state: ReferralState, event: ReferralEvent) -> None:
    """A step the table lacks is refused with state and event named."""
    with pytest.raises(TransitionNotAllowed, match=state.value):
        apply_referral(referral(state), event, *RECEIVER, T0, text="x")


def test_the_sender_cannot_accept_its_own_referral() -> None:
    """Accepting is the receiving side's; an unrelated institution may do nothing."""
    with pytest.raises(Forbidden):
        apply_referral(referral(ReferralState.REQUESTED), ReferralEvent.ACCEPT, *SENDER, T0)
    with pytest.raises(Forbidden):
        apply_referral(
            referral(ReferralState.REQUESTED), ReferralEvent.ACCEPT, "X9", frozenset({"doctor"}), T0
        )


def test_decline_needs_a_reason_and_frees_the_slot() -> None:
    """A decline without a reason is refused; with one, the slot is no longer held."""
    requested = referral(ReferralState.REQUESTED)
    assert requested.state in HOLDS_SLOT
    with pytest.raises(InvalidInput):
        apply_referral(requested, ReferralEvent.DECLINE, *RECEIVER, T0, text="")
    declined = apply_referral(requested, ReferralEvent.DECLINE, *RECEIVER, T0, text="full")
    assert declined.decline_reason == "full"
    assert declined.state not in HOLDS_SLOT


def test_new_referral_checks_its_slot() -> None:
    """A slot already begun, at the sender itself, or a blank reason is refused."""
    with pytest.raises(InvalidInput, match="begun"):
        new_referral(id="f", from_institution="TS01", slot=SLOT, reason="x", now=SLOT.start)
    with pytest.raises(InvalidInput, match="itself"):
        new_referral(id="f", from_institution="CH01", slot=SLOT, reason="x", now=T0)
    with pytest.raises(InvalidInput, match="reason"):
        new_referral(id="f", from_institution="TS01", slot=SLOT, reason=" ", now=T0)
    with pytest.raises(InvalidInput):
        Slot(id="s", institution="CH01", department="d", start=SLOT.end, end=SLOT.start)
