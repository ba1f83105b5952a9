"""signaling.chat: stamped, broadcast to everyone joined, audited; refused while waiting."""

from __future__ import annotations

from datetime import UTC, datetime

from sessions.store import AuditEntry
from signaling import messages as m
from signaling.core import Persist
from tests.signaling.test_core import Harness, admitted, error_of, only, sent


def test_chat_is_stamped_and_broadcast() -> None:
    """Chat reaches everyone, sender included, with sender and a UTC Z timestamp."""
    h = Harness()
    room = admitted(h)
    mod, app, _, app_pid = room
    h.wall = datetime(2026, 11, 23, 1, 2, 3, 456000, tzinfo=UTC)
    effects = h.send(app, m.Chat(text="血压 120/80"))
    for conn in (mod, app):
        (chat,) = sent(effects, conn)
        assert isinstance(chat, m.ChatEvent)
        assert (chat.participant_id, chat.name, chat.text) == (app_pid, "Dr-Wang", "血压 120/80")
        assert chat.time == "2026-11-23T01:02:03.456Z"
    (audit,) = [e.record for e in only(effects, Persist) if isinstance(e.record, AuditEntry)]  # type: ignore[attr-defined]
    assert (audit.action, audit.actor, audit.detail) == ("chat", "dr-wang", {"text": "血压 120/80"})


def test_chat_from_the_waiting_room_is_refused_and_reaches_nobody() -> None:
    """A waiting participant's chat gets bad_state and nobody receives it."""
    h = Harness()
    mod, _ = h.join("dr-li", role="expert", moderator=True)
    app, _ = h.join("dr-wang")
    effects = h.send(app, m.Chat(text="let me in", ref="c1"))
    error = error_of(effects, app)
    assert (error.code, error.ref) == ("bad_state", "c1")
    assert sent(effects, mod) == []


def test_a_viewer_cannot_chat() -> None:
    """A watch connection is not in the room: chat gets not_joined."""
    h = Harness()
    viewer, _ = h.watch("dr-zhou")
    assert error_of(h.send(viewer, m.Chat(text="hello")), viewer).code == "not_joined"
