"""The consult transition table: every entry allowed and every missing one refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consults.lifecycle import (
    AWAITING_ACCEPTANCE,
    FINAL,
    TRANSITIONS,
    Actor,
    Consult,
    ConsultEvent,
    ConsultState,
    DeadlinePolicy,
    InvalidField,
    MissingField,
    Mode,
    Party,
    Priority,
    acceptance_due,
    allowed_events,
    apply,
    expires_at,
    is_overdue,
    parties,
)
from consults.transitions import NotPermitted, TransitionNotAllowed

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)

DOCTOR = Actor(username="dr-wang", roles=frozenset({"doctor"}), institution="TS01")
COLLEAGUE = Actor(username="dr-zhao", roles=frozenset({"doctor"}), institution="TS01")
COORD = Actor(username="co-li", roles=frozenset({"coordinator"}), institution="CH01")
LEAD = Actor(username="ex-chen", roles=frozenset({"expert"}), institution="CH01")
SECOND = Actor(username="ex-sun", roles=frozenset({"expert"}), institution="CH01")
OUTSIDER = Actor(username="dr-far", roles=frozenset({"doctor", "coordinator"}), institution="X9")
SYSTEM = Actor.system()


def consult(state: ConsultState, mode: Mode = Mode.REALTIME, **kw: object) -> Consult:
    fields: dict[str, object] = {
        "id": "c1",
        "state": state,
        "priority": Priority.URGENT,
        "mode": mode,
        "requester": DOCTOR.username,
        "clinic": DOCTOR.institution,
        "centre": COORD.institution,
        "experts": (LEAD.username, SECOND.username),
        "lead_expert": LEAD.username,
        "created_at": T0,
        "submitted_at": T0,
    }
    fields.update(kw)
    return Consult(**fields)  # type: ignore[arg-type]


def payload(event: ConsultEvent) -> dict[str, object]:
    """What each event needs to succeed."""
    needs: dict[ConsultEvent, dict[str, object]] = {
        ConsultEvent.ASSIGN: {"experts": (LEAD.username, SECOND.username)},
        ConsultEvent.DECLINE: {"reason": "not my specialty"},
        ConsultEvent.CANCEL: {"reason": "patient transferred"},
        ConsultEvent.SCHEDULE: {"start": T0 + timedelta(hours=1)},
        ConsultEvent.SIGN: {"signed": True},
    }
    return needs.get(event, {})


def actor_for(rule_parties: frozenset[Party]) -> Actor:
    """Someone who holds one of the parties a rule allows."""
    for party, actor in (
        (Party.LEAD_EXPERT, LEAD),
        (Party.REQUESTER, DOCTOR),
        (Party.COORDINATOR, COORD),
        (Party.EXPERT, SECOND),
        (Party.CLINIC_DOCTOR, COLLEAGUE),
        (Party.SYSTEM, SYSTEM),
    ):
        if party in rule_parties:
            return actor
    raise AssertionError(rule_parties)


ENTRIES = [
    (state, event, mode)
    for state, rules in TRANSITIONS.items()
    for event, rule in rules.items()
    for mode in sorted(rule.modes, key=lambda mode: mode.value)
]
MISSING = [
    (state, event, mode)
    for state in ConsultState
    for event in ConsultEvent
    for mode in Mode
    if event not in TRANSITIONS[state] or mode not in TRANSITIONS[state][event].modes
]


@pytest.mark.parametrize(("state", "event", "mode"), ENTRIES)
def test_every_entry_goes_where_the_table_says(
    state: ConsultState, event: ConsultEvent, mode: Mode
) -> None:
    """An allowed party taking an allowed event reaches the table's next state."""
    rule = TRANSITIONS[state][event]
    before = consult(state, mode)
    after = apply(before, event, actor_for(rule.parties), T0, **payload(event))  # type: ignore[arg-type]
    assert after.state is rule.to
    assert before.state is state  # the input is not changed


@pytest.mark.parametrize(("state", "event", "mode"), MISSING)
def test_every_missing_entry_is_refused_naming_party_state_and_event(
    state: ConsultState, event: ConsultEvent, mode: Mode
) -> None:
    """A step the table lacks raises TransitionNotAllowed with state and event."""
    with pytest.raises(TransitionNotAllowed) as caught:
        apply(consult(state, mode), event, LEAD, T0, **payload(event))  # type: ignore[arg-type]
    assert caught.value.state is state
    assert caught.value.event is event
    assert state.value in str(caught.value)
    assert event.value in str(caught.value)


@pytest.mark.parametrize(("state", "event", "mode"), ENTRIES)
def test_outsiders_may_take_no_step(state: ConsultState, event: ConsultEvent, mode: Mode) -> None:
    """A doctor and coordinator of an unrelated institution is refused every entry."""
    with pytest.raises(NotPermitted):
        apply(consult(state, mode), event, OUTSIDER, T0, **payload(event))  # type: ignore[arg-type]


def test_only_the_lead_expert_signs() -> None:
    """The second expert of a multidisciplinary consult cannot sign; the lead can."""
    reporting = consult(ConsultState.REPORTING)
    with pytest.raises(NotPermitted):
        apply(reporting, ConsultEvent.SIGN, SECOND, T0, signed=True)
    assert apply(reporting, ConsultEvent.SIGN, LEAD, T0, signed=True).signed_at == T0


def test_the_clinic_cannot_accept_its_own_request() -> None:
    """The requesting doctor is not a party that may accept."""
    with pytest.raises(NotPermitted):
        apply(consult(ConsultState.ASSIGNED), ConsultEvent.ACCEPT, DOCTOR, T0)


@pytest.mark.parametrize(
    ("state", "event", "missing"),
    [
        (ConsultState.ASSIGNED, ConsultEvent.DECLINE, "reason"),
        (ConsultState.SUBMITTED, ConsultEvent.CANCEL, "reason"),
        (ConsultState.SUBMITTED, ConsultEvent.ASSIGN, "experts"),
        (ConsultState.ACCEPTED, ConsultEvent.SCHEDULE, "start"),
        (ConsultState.REPORTING, ConsultEvent.SIGN, "signature"),
    ],
)
def test_events_refuse_what_they_lack(
    state: ConsultState, event: ConsultEvent, missing: str
) -> None:
    """Decline and cancel need a reason, assign experts, schedule a start, sign a signature."""
    actor = actor_for(TRANSITIONS[state][event].parties)
    with pytest.raises(MissingField) as caught:
        apply(consult(state), event, actor, T0, reason="  ")
    assert caught.value.need.value == missing


def test_schedule_refuses_a_start_in_the_past() -> None:
    """A proposed start before now is an invalid field, and nothing changes."""
    before = consult(ConsultState.ACCEPTED)
    with pytest.raises(InvalidField):
        apply(before, ConsultEvent.SCHEDULE, LEAD, T0, start=T0 - timedelta(minutes=1))
    assert before.scheduled_start is None


def test_assign_refuses_an_expert_named_twice() -> None:
    """The same expert twice in one assignment is refused."""
    with pytest.raises(InvalidField):
        apply(consult(ConsultState.SUBMITTED), ConsultEvent.ASSIGN, COORD, T0, experts=("a", "a"))


def test_decline_goes_back_to_triage_and_keeps_the_reason() -> None:
    """Declined with a reason; the coordinator assigns another expert; the lead follows."""
    declined = apply(
        consult(ConsultState.ASSIGNED), ConsultEvent.DECLINE, LEAD, T0, reason=" busy "
    )
    assert declined.state is ConsultState.DECLINED
    assert declined.reason == "busy"
    again = apply(declined, ConsultEvent.ASSIGN, COORD, T0, experts=(SECOND.username,))
    assert again.state is ConsultState.ASSIGNED
    assert again.lead_expert == SECOND.username


def test_a_whole_realtime_consult() -> None:
    """Draft to closed through the room, stamping each time on the way."""
    c = consult(ConsultState.DRAFT, submitted_at=None, experts=(), lead_expert=None)
    steps: list[tuple[ConsultEvent, Actor, dict[str, object]]] = [
        (ConsultEvent.SUBMIT, DOCTOR, {}),
        (ConsultEvent.ASSIGN, COORD, {"experts": (LEAD.username,)}),
        (ConsultEvent.ACCEPT, LEAD, {}),
        (ConsultEvent.SCHEDULE, LEAD, {"start": T0 + timedelta(minutes=30)}),
        (ConsultEvent.START, LEAD, {}),
        (ConsultEvent.FINISH, LEAD, {}),
        (ConsultEvent.SIGN, LEAD, {"signed": True}),
        (ConsultEvent.CLOSE, DOCTOR, {}),
    ]
    for minute, (event, actor, extra) in enumerate(steps):
        c = apply(c, event, actor, T0 + timedelta(minutes=minute), **extra)  # type: ignore[arg-type]
    assert c.state is ConsultState.CLOSED
    assert c.submitted_at == T0
    assert c.accepted_at == T0 + timedelta(minutes=2)
    assert c.signed_at == T0 + timedelta(minutes=6)
    assert c.closed_at == T0 + timedelta(minutes=7)


def test_async_consults_review_instead_of_scheduling() -> None:
    """An asynchronous consult cannot be scheduled; the lead reviews, then signs."""
    accepted = consult(ConsultState.ACCEPTED, Mode.ASYNC)
    with pytest.raises(TransitionNotAllowed):
        apply(accepted, ConsultEvent.SCHEDULE, LEAD, T0, start=T0 + timedelta(hours=1))
    reporting = apply(accepted, ConsultEvent.REVIEW, LEAD, T0)
    assert apply(reporting, ConsultEvent.SIGN, LEAD, T0, signed=True).state is (
        ConsultState.REPORTED
    )


def test_allowed_events_are_the_ones_apply_takes() -> None:
    """The buttons a page shows for each actor are exactly the steps apply accepts."""
    for state in ConsultState:
        for mode in Mode:
            for actor in (DOCTOR, COLLEAGUE, COORD, LEAD, SECOND, OUTSIDER):
                c = consult(state, mode)
                for event in ConsultEvent:
                    if event is ConsultEvent.EXPIRE:
                        continue
                    try:
                        apply(c, event, actor, T0, **payload(event))  # type: ignore[arg-type]
                        took = True
                    except (TransitionNotAllowed, NotPermitted):
                        took = False
                    assert took == (event in allowed_events(c, actor)), (state, mode, actor, event)


def test_parties_follow_relations_not_roles() -> None:
    """A coordinator of another centre is no coordinator of this consult."""
    c = consult(ConsultState.SUBMITTED)
    assert parties(c, COORD) == {Party.COORDINATOR}
    assert parties(c, OUTSIDER) == frozenset()
    assert parties(c, DOCTOR) == {Party.REQUESTER, Party.CLINIC_DOCTOR}
    assert parties(c, LEAD) == {Party.EXPERT, Party.LEAD_EXPERT}


def test_deadlines_by_priority() -> None:
    """Emergency is due in 10 minutes, overdue after, expires at its expiry time."""
    policy = DeadlinePolicy()
    c = consult(ConsultState.SUBMITTED, priority=Priority.EMERGENCY)
    assert acceptance_due(c, policy) == T0 + timedelta(minutes=10)
    assert not is_overdue(c, policy, T0 + timedelta(minutes=10))
    assert is_overdue(c, policy, T0 + timedelta(minutes=10, seconds=1))
    assert expires_at(c, policy) == T0 + timedelta(minutes=30)
    accepted = consult(ConsultState.ACCEPTED, priority=Priority.EMERGENCY)
    assert acceptance_due(accepted, policy) is None
    assert not is_overdue(accepted, policy, T0 + timedelta(days=1))


def test_deadline_policy_validates() -> None:
    """An expiry before the acceptance deadline, or a missing priority, is refused."""
    with pytest.raises(ValueError, match="accept_within_s"):
        DeadlinePolicy(
            accept_within_s={p: 100.0 for p in Priority},
            expire_after_s={p: 10.0 for p in Priority},
        )
    with pytest.raises(ValueError, match="no deadline"):
        DeadlinePolicy(accept_within_s={Priority.ROUTINE: 1.0})


@given(st.lists(st.tuples(st.sampled_from(ConsultEvent), st.integers(0, 5)), max_size=30))
def test_any_sequence_of_steps_stays_in_the_table(steps: list[tuple[ConsultEvent, int]]) -> None:
    """Whatever anyone tries, the consult only ever moves along table entries, and a final
    state takes no further step."""
    actors = (DOCTOR, COORD, LEAD, SECOND, OUTSIDER, SYSTEM)
    c = consult(ConsultState.DRAFT, submitted_at=None, experts=(), lead_expert=None)
    for event, who in steps:
        before = c.state
        try:
            c = apply(c, event, actors[who], T0, **payload(event))  # type: ignore[arg-type]
        except (TransitionNotAllowed, NotPermitted, MissingField, InvalidField):
            assert c.state is before
            continue
        assert before not in FINAL
        assert c.state is TRANSITIONS[before][event].to
    if c.state in AWAITING_ACCEPTANCE:
        assert c.submitted_at is not None
