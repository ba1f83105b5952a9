"""signaling.connections: one transition table; a missing entry names role, state, event;
every change logged at DEBUG; the core drives connections only through it."""

from __future__ import annotations

import logging

import pytest

from sessions.tokens import verify_token
from signaling import messages as m
from signaling.connections import TRANSITIONS, Conn, ConnEvent, ConnState, TokenBucket
from signaling.errors import ConnectionStateError
from tests.signaling.test_core import SECRET, Harness, token


def _conn(state: ConnState, role_token: str | None = None) -> Conn:
    c = Conn(7, 0.0, TokenBucket(1.0, 1.0, 1.0, 0.0), state=state)
    if role_token is not None:
        c.claims = verify_token(SECRET, role_token)
    return c


@pytest.mark.parametrize(
    ("state", "event"),
    [(s, e) for s in ConnState for e in ConnEvent if e not in TRANSITIONS[s]],
)
def test_every_missing_entry_raises_a_named_error(state: ConnState, event: ConnEvent) -> None:
    """Each (state, event) the table lacks raises ConnectionStateError naming all three."""
    c = _conn(state, token("dr-li", role="expert"))
    assert not c.allows(event)
    with pytest.raises(ConnectionStateError) as caught:
        c.apply(event)
    assert (caught.value.role, caught.value.state, caught.value.event) == (
        "expert",
        state.name,
        event.name,
    )
    assert f"expert connection in state {state.name} cannot handle event {event.name}" in str(
        caught.value
    )
    assert c.state is state


def test_unauthenticated_role_is_named_so() -> None:
    """Before join or watch the role in the error is 'unauthenticated'."""
    with pytest.raises(ConnectionStateError, match="unauthenticated connection in state CLOSED"):
        _conn(ConnState.CLOSED).apply(ConnEvent.JOIN)


def test_every_state_is_in_the_table_and_closed_is_final() -> None:
    """The table has a row per state; CLOSED has no way out; every state can be dropped."""
    assert set(TRANSITIONS) == set(ConnState)
    assert TRANSITIONS[ConnState.CLOSED] == {}
    for state in ConnState:
        if state is not ConnState.CLOSED:
            assert TRANSITIONS[state][ConnEvent.DROP] is ConnState.CLOSED


def test_changes_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """A join, a leave and the drop are three logged changes, OPEN to CLOSED."""
    h = Harness()
    with caplog.at_level(logging.DEBUG, logger="signaling.connections"):
        conn, _ = h.join("dr-li", role="expert", moderator=True)
        assert h.core.connection_state(conn) is ConnState.JOINED
        h.send(conn, m.Leave())
        assert h.core.connection_state(conn) is ConnState.CLOSING
        h.core.closed(conn, h.now)
    assert h.core.connection_state(conn) is None
    changes = [r.getMessage() for r in caplog.records if r.name == "signaling.connections"]
    assert changes == [
        f"connection {conn} (unauthenticated): OPEN -> JOINED on JOIN",
        f"connection {conn} (expert): JOINED -> CLOSING on CLOSE",
        f"connection {conn} (expert): CLOSING -> CLOSED on DROP",
    ]
    assert all(
        r.levelno == logging.DEBUG for r in caplog.records if r.name == "signaling.connections"
    )


def test_a_closing_connection_ignores_input() -> None:
    """After the core closed a connection, frames on it produce nothing."""
    h = Harness()
    conn = h.open()
    h.send(conn, "{not json")  # bad_json before join: closed 4400
    assert h.core.connection_state(conn) is ConnState.CLOSING
    assert h.send(conn, m.Ping()) == []


def test_watch_state() -> None:
    """A valid watch moves the connection to WATCHING."""
    h = Harness()
    viewer, _ = h.watch("dr-zhou")
    assert h.core.connection_state(viewer) is ConnState.WATCHING
