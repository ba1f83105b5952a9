"""signaling.notifications: notify reaches every connection of a person, and only theirs."""

from __future__ import annotations

import pytest

from signaling import messages as m
from signaling.core import Send
from signaling.notifications import MAX_NOTIFY_BYTES
from tests.signaling.test_core import Harness, admitted, sent


def test_notify_reaches_every_connection_of_the_person() -> None:
    """Room and viewer connections of the identity, in any room, get notify; others not."""
    h = Harness()
    room = admitted(h)
    mod, app, _, _ = room
    viewer, _ = h.watch("dr-wang", room="r2")
    stranger, _ = h.watch("dr-zhou")
    effects = h.core.notify("dr-wang", "consult.assigned", {"consult": "c-17", "priority": 1})
    assert {e.conn for e in effects if isinstance(e, Send)} == {app, viewer}
    (note,) = sent(effects, app)
    assert isinstance(note, m.Notify)
    assert (note.topic, note.data) == ("consult.assigned", {"consult": "c-17", "priority": 1})
    assert note.time.endswith("Z")
    assert sent(effects, mod) == []
    assert sent(effects, stranger) == []
    assert h.core.stats.notified["consult.assigned"] == 2


def test_notify_without_connections_sends_nothing() -> None:
    """A person with no open connection: no effect (the caller keeps what must not be lost)."""
    h = Harness()
    assert h.core.notify("nobody", "consult.assigned") == []


def test_notify_skips_unauthenticated_and_closing_connections() -> None:
    """An open connection that has not joined, or one being closed, is not notified."""
    h = Harness()
    h.open()
    viewer, _ = h.watch("dr-zhou")
    h.core.revoke(h.now, identity="dr-zhou", reason="signed out")
    assert h.core.notify("dr-zhou", "consult.assigned") == []
    assert viewer


@pytest.mark.parametrize(
    ("topic", "data"),
    [
        ("", {}),
        ("Consult.Assigned", {}),
        ("consult..assigned", {}),
        ("x" * 65, {}),
        ("consult.assigned", {"nested": {"no": 1}}),
        ("consult.assigned", {"big": "x" * MAX_NOTIFY_BYTES}),
    ],
)
def test_bad_notifications_are_the_caller_s_bug(topic: str, data: object) -> None:
    """A malformed topic, a nested value or an oversized message: ValueError, nothing sent."""
    h = Harness()
    h.watch("dr-zhou")
    with pytest.raises(ValueError, match=r"topic|data|bytes"):
        h.core.notify("dr-zhou", topic, data)  # type: ignore[arg-type]
    assert h.core.stats.notified == {}


def test_a_person_in_the_waiting_room_is_notified_too() -> None:
    """A notification is for the person, not the room: a waiting connection gets it."""
    h = Harness()
    h.join("dr-li", role="expert", moderator=True)
    waiting, effects = h.join("dr-wang")
    assert [type(x) for x in sent(effects, waiting)] == [m.Waiting]
    (note,) = sent(h.core.notify("dr-wang", "consult.accepted", {"by": "dr-li"}), waiting)
    assert isinstance(note, m.Notify)
    assert note.data == {"by": "dr-li"}
