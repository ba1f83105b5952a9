"""Viewer connections capped per identity and per token (issue 13: 2,000 ``watch``
connections on one token stayed open), tested at the boundary."""

from __future__ import annotations

import pytest

from signaling import messages as m
from signaling.config import CoreConfig
from signaling.messages import CloseCode
from tests.signaling.test_core import Harness, closes, error_of, sent, token


def watched(h: Harness, conn: int, with_token: str) -> list[m.ServerMessage]:
    """What ``conn`` is sent after a watch with ``with_token``."""
    return sent(h.send(conn, m.Watch(token=with_token)), conn)


def test_an_identity_gets_its_cap_of_viewers_and_one_more_is_refused() -> None:
    """Up to max_watchers_per_identity (each with its own token) are watching; the next
    gets too_many_connections and 4429; another person is not affected; closing one
    makes room again."""
    h = Harness(max_watchers_per_identity=3, max_watchers_per_token=10)
    viewers = [h.watch("dr-zhou", role="expert")[0] for _ in range(3)]
    assert all(h.core.connection_state(v) is not None for v in viewers)
    extra = h.open()
    effects = h.send(extra, m.Watch(token=token("dr-zhou", role="expert")))
    error = error_of(effects, extra)
    assert (error.code, closes(effects, extra)) == (
        "too_many_connections",
        [CloseCode.RATE_LIMITED],
    )
    assert "3 viewer connections per person" in error.reason
    other = h.open()
    assert isinstance(watched(h, other, token("dr-wang", role="expert"))[0], m.Watching)
    h.core.closed(viewers[0], h.now)
    again = h.open()
    assert isinstance(watched(h, again, token("dr-zhou", role="expert"))[0], m.Watching)


def test_one_token_gets_its_cap_of_viewers() -> None:
    """The same token (its jti) opens at most max_watchers_per_token viewers; a fresh
    token of the same person still may, up to the identity's cap."""
    h = Harness(max_watchers_per_identity=10, max_watchers_per_token=2)
    shared = token("dr-zhou", role="expert")
    for _ in range(2):
        assert isinstance(watched(h, h.open(), shared)[0], m.Watching)
    extra = h.open()
    effects = h.send(extra, m.Watch(token=shared))
    assert error_of(effects, extra).code == "too_many_connections"
    assert "2 viewer connections per token" in error_of(effects, extra).reason
    assert closes(effects, extra) == [CloseCode.RATE_LIMITED]
    assert isinstance(watched(h, h.open(), token("dr-zhou", role="expert"))[0], m.Watching)


def test_participants_do_not_count_against_the_viewer_cap() -> None:
    """A joined connection of the same person is not a viewer: the cap counts watchers."""
    h = Harness(max_watchers_per_identity=1, waiting_room=False)
    h.join("dr-li", role="expert", moderator=True)
    assert isinstance(watched(h, h.open(), token("dr-li", role="expert"))[0], m.Watching)


def test_the_caps_are_validated() -> None:
    """A cap below one is a configuration error."""
    for field in ("max_watchers_per_identity", "max_watchers_per_token"):
        with pytest.raises(ValueError, match=field):
            CoreConfig(**{field: 0})  # type: ignore[arg-type]
