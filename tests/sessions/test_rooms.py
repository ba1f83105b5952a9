"""The participant transition table and rooms."""

from __future__ import annotations

import pytest

from sessions.errors import TransitionError
from sessions.rooms import TRANSITIONS, Event, Participant, Room, State


def _participant(permissions: frozenset[str] = frozenset({"publish"})) -> Participant:
    return Participant(
        participant_id="p1",
        resume_id="r1",
        identity="dr-wang",
        name="Dr Wang",
        role="applicant",
        room_id="room",
        permissions=permissions,  # type: ignore[arg-type]
        jti="j1",
    )


def test_full_lifecycle_follows_the_table() -> None:
    """Wait, admit, media ready, drop, resume, leave: each step lands where the table says."""
    p = _participant()
    for event, expected in [
        (Event.WAIT, State.WAITING),
        (Event.ADMIT, State.ADMITTED),
        (Event.MEDIA_READY, State.JOINED),
        (Event.DISCONNECT, State.DISCONNECTED),
        (Event.RESUME, State.ADMITTED),
        (Event.LEAVE, State.LEFT),
    ]:
        assert p.apply(event) is expected


def test_missing_entry_names_role_state_and_event() -> None:
    """An event with no table entry raises TransitionError naming role, state, event."""
    p = _participant()
    p.apply(Event.WAIT)
    with pytest.raises(TransitionError) as info:
        p.apply(Event.MEDIA_READY)
    assert (info.value.role, info.value.state, info.value.event) == (
        "applicant",
        "WAITING",
        "MEDIA_READY",
    )
    assert "applicant" in str(info.value)
    assert p.state is State.WAITING


def test_final_states_accept_nothing() -> None:
    """LEFT and REMOVED have no way out; every other state can be removed."""
    for state, events in TRANSITIONS.items():
        if state in (State.LEFT, State.REMOVED):
            assert events == {}
        elif state is not State.NEW:
            assert events[Event.REMOVE] is State.REMOVED


def test_room_admission_and_identity_lookup() -> None:
    """Non-moderators wait; a live identity is found; a final one is not."""
    room = Room(room_id="room")
    p = _participant()
    moderator = _participant(frozenset({"moderate"}))
    moderator.participant_id, moderator.identity = "p2", "dr-li"
    room.add(p)
    room.add(moderator)
    assert room.needs_admission(p)
    assert not room.needs_admission(moderator)
    assert room.by_identity("dr-wang") is p
    p.apply(Event.WAIT)
    assert list(room.waiting()) == [p]
    p.apply(Event.LEAVE)
    assert room.by_identity("dr-wang") is None
    assert not Room(room_id="open", waiting_room=False).needs_admission(p)
