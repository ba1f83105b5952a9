"""signaling.chat: stamped, broadcast to everyone joined, kept as the consult's chat (not in
the audit trail); refused while waiting."""

from __future__ import annotations

from datetime import UTC, datetime

from sessions.store import AuditEntry, ChatLine
from signaling import messages as m
from signaling.core import Persist
from tests.signaling.test_core import Harness, admitted, error_of, only, sent, token


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
    records = [e.record for e in only(effects, Persist)]  # type: ignore[attr-defined]
    assert records == [
        ChatLine(
            time="2026-11-23T01:02:03.456Z",
            room="r1",
            identity="dr-wang",
            name="Dr-Wang",
            text="血压 120/80",
        )
    ]
    assert not any(isinstance(r, AuditEntry) for r in records)


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


def test_chat_budget_refuses_text_past_it_and_stores_nothing() -> None:
    """Issue 13: chatting under the message rate grew the database by MBs. Up to
    chat_burst_chars at once pass; the next line is rate_limited (connection kept,
    nothing sent to anyone, nothing stored); chat_chars_per_s refills it."""
    h = Harness(chat_chars_per_s=50.0, chat_burst_chars=4_000)
    mod, app, _, _ = admitted(h)
    line = "x" * 2_000
    for _ in range(2):
        assert len(only(h.send(app, m.Chat(text=line)), Persist)) == 1
    effects = h.send(app, m.Chat(text="one more", ref="c3"))
    error = error_of(effects, app)
    assert (error.code, error.ref) == ("rate_limited", "c3")
    assert only(effects, Persist) == []
    assert sent(effects, mod) == []
    assert h.core.connection_state(app) is not None  # kept
    h.now += 0.2  # 10 characters back: a 10-character line passes, an 11th does not
    assert len(only(h.send(app, m.Chat(text="y" * 10)), Persist)) == 1
    assert error_of(h.send(app, m.Chat(text="z")), app).code == "rate_limited"
    # Another person's budget is their own.
    assert len(only(h.send(mod, m.Chat(text=line)), Persist)) == 1


def test_chat_budget_outlives_a_reconnect() -> None:
    """The budget is the person's in the room: a new connection (resume) does not refill it."""
    h = Harness(chat_chars_per_s=1.0, chat_burst_chars=2_000)
    _, app, _, app_pid = admitted(h)
    assert len(only(h.send(app, m.Chat(text="x" * 2_000)), Persist)) == 1
    h.core.closed(app, h.now)
    back = h.open()
    joined = sent(h.send(back, m.Join(token=token("dr-wang"), resume=app_pid)), back)[0]
    assert isinstance(joined, m.Joined)
    assert joined.resumed
    assert error_of(h.send(back, m.Chat(text="again")), back).code == "rate_limited"
