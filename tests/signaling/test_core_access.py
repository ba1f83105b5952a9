"""signaling.access: tokens checked at connect and for as long as a connection lives
(expiry), bans per identity and room loaded at start, revocation of a token or a person."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from sessions.store import Ban
from sessions.tokens import mint_token, verify_token
from signaling import messages as m
from signaling.core import MediaLeave
from signaling.messages import CloseCode
from tests.signaling.test_core import (
    SECRET,
    Harness,
    closes,
    error_of,
    only,
    sent,
    token,
    types,
)


@pytest.mark.parametrize(
    ("make", "code", "close"),
    [
        (lambda: token("a", now_s=time.time() - 7200, ttl_s=60), "token_expired", 4401),
        (lambda: token("a", not_before_s=time.time() + 600), "token_not_yet_valid", 4401),
        (
            lambda: mint_token("z" * 40, identity="a", name="A", role="expert", room="r1"),
            "invalid_token",
            4401,
        ),
        (lambda: token("cart-7", role="device"), "forbidden", 4403),
    ],
)
@pytest.mark.parametrize("kind", [m.Join, m.Watch])
def test_refused_tokens_close_the_connection(
    make: object, code: str, close: int, kind: type[m.Join | m.Watch]
) -> None:
    """Expired, not yet valid, forged and device tokens: refused with their code and close."""
    h = Harness()
    conn = h.open()
    effects = h.send(conn, kind(token=make()))  # type: ignore[operator]
    assert error_of(effects, conn).code == code
    assert closes(effects, conn) == [close]
    assert h.core.participant_count == 0


def test_expired_token_closes_live_room_and_watch_connections() -> None:
    """tick closes every connection, room or watch, whose token expired: error, then 4401."""
    h = Harness()
    mod, _ = h.join("dr-li", role="expert", moderator=True)
    short = h.open()
    effects = h.send(short, m.Join(token=token("dr-wang", role="expert", moderator=True, ttl_s=60)))
    pid = sent(effects, short)[0].participant_id  # type: ignore[union-attr]
    viewer, _ = h.watch("dr-zhou", ttl_s=60)
    h.wall += timedelta(seconds=60 + 4)  # within the leeway: nothing yet
    assert h.core.tick(h.now) == []
    h.wall += timedelta(seconds=2)
    effects = h.core.tick(h.now)
    for conn in (short, viewer):
        assert types(effects, conn) == ["error"]
        assert error_of(effects, conn).code == "token_expired"
        assert closes(effects, conn) == [CloseCode.UNAUTHORIZED]
    assert closes(effects, mod) == []
    # The participant dropped (others told, media closed) and may resume with a fresh token.
    assert [x.state for x in sent(effects, mod)] == ["disconnected"]  # type: ignore[union-attr]
    assert only(effects, MediaLeave)
    assert h.core.tick(h.now) == []
    back, effects = h.join("dr-wang", role="expert", moderator=True)
    joined = sent(effects, back)[0]
    assert isinstance(joined, m.Joined)
    assert (joined.participant_id, joined.resumed) == (pid, True)


def test_expired_waiting_participant_leaves_the_waiting_room() -> None:
    """A waiting participant whose token expires is closed and leaves the waiting room."""
    h = Harness()
    mod, _ = h.join("dr-li", role="expert", moderator=True)
    app, _ = h.join("dr-wang", ttl_s=30)
    h.wall += timedelta(seconds=40)
    effects = h.core.tick(h.now)
    assert error_of(effects, app).code == "token_expired"
    (left,) = sent(effects, mod)
    assert isinstance(left, m.ParticipantLeft)
    assert left.reason == "disconnected"
    assert h.core.participant_count == 1


def test_revoke_a_token_closes_it_and_refuses_it_later() -> None:
    """revoke(jti): its connection gets revoked and 4401; the same token cannot come back."""
    h = Harness()
    mod, _ = h.join("dr-li", role="expert", moderator=True)
    held = token("dr-zhou", role="expert", moderator=True)
    conn = h.open()
    h.send(conn, m.Join(token=held))
    other, _ = h.watch("dr-zhou")  # another token of the same person: not revoked
    jti = verify_token(SECRET, held).jti
    effects = h.core.revoke(h.now, jti=jti, reason="signed out")
    error = error_of(effects, conn)
    assert (error.code, error.reason) == ("revoked", "signed out")
    assert closes(effects, conn) == [CloseCode.UNAUTHORIZED]
    assert closes(effects, other) == []
    assert closes(effects, mod) == []
    again = h.open()
    effects = h.send(again, m.Watch(token=held))
    assert error_of(effects, again).code == "revoked"
    assert closes(effects, again) == [CloseCode.UNAUTHORIZED]


def test_revoke_a_person_closes_every_connection_and_every_earlier_token() -> None:
    """revoke(identity): all its connections in every room end; older tokens are refused,
    a token issued after the revocation is accepted."""
    h = Harness()
    first, _ = h.join("dr-zhou", role="expert", moderator=True)
    second, _ = h.join("dr-zhou", role="expert", moderator=True, room="r2")
    viewer, _ = h.watch("dr-zhou", room="r3")
    bystander, _ = h.watch("dr-li")
    old_token = token("dr-zhou", room="r4")
    effects = h.core.revoke(h.now, identity="dr-zhou", reason="account locked")
    for conn in (first, second, viewer):
        assert error_of(effects, conn).code == "revoked"
        assert closes(effects, conn) == [CloseCode.UNAUTHORIZED]
    assert closes(effects, bystander) == []
    refused = h.open()
    assert error_of(h.send(refused, m.Watch(token=old_token)), refused).code == "revoked"
    later = h.open()
    fresh = token("dr-zhou", now_s=h.wall.timestamp() + 1)
    assert types(h.send(later, m.Watch(token=fresh)), later) == ["watching"]


def test_revoke_takes_exactly_one_target() -> None:
    """revoke() with neither or both of identity and jti is a caller's bug: ValueError."""
    h = Harness()
    with pytest.raises(ValueError, match="exactly one"):
        h.core.revoke(h.now, reason="x")
    with pytest.raises(ValueError, match="exactly one"):
        h.core.revoke(h.now, identity="a", jti="b")


def test_bans_loaded_at_start_refuse_the_identity() -> None:
    """Core(bans=...) from the Store: any token of a banned identity for that room is banned."""
    ban = Ban(jti="old", room="r1", identity="dr-wang", by="dr-li", reason="", time="t")
    loaded = Harness(bans=[ban])
    conn, effects = loaded.join("dr-wang")
    assert error_of(effects, conn).code == "banned"
    conn, effects = loaded.watch("dr-wang")
    assert error_of(effects, conn).code == "banned"
    conn, effects = loaded.join("dr-wang", room="r2")
    assert types(effects, conn) == ["waiting"]


def test_banned_identities_loaded_at_start_refuse_any_token() -> None:
    """Core(banned_identities=store.banned_identities()): (room, identity) pairs refuse joins."""
    loaded = Harness(banned_identities=[("r1", "dr-wang")])
    conn, effects = loaded.join("dr-wang")
    assert error_of(effects, conn).code == "banned"
    conn, effects = loaded.join("dr-li", role="expert", moderator=True)
    assert types(effects, conn) == ["joined"]
