"""The protocol core as a whole, fed frames with no event loop: decoding, routing, limits,
internal errors and the write acks.

Each concern has its own test module, as in the source (test_core_access, _rooms, _chat,
_viewing, _notifications, _connections; _conformance against real components); the
harness and helpers here are shared by them.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import pytest

from sessions.store import Ban
from sessions.tokens import TokenClaims, mint_token, verify_token
from sessions.turn import IceConfig
from signaling import messages as m
from signaling.core import Close, Core, CoreConfig, Effect, Persist, Send
from signaling.messages import CloseCode, ErrorCode

SECRET = "k" * 40
ICE = IceConfig(
    stun_urls=["stun:127.0.0.1:3478"], turn_urls=["turn:127.0.0.1:3478"], turn_secret="t"
)


def token(identity: str, *, role: str = "applicant", moderator: bool = False, **kw: object) -> str:
    """A token for room r1 (or ``room=``), issued now by the real clock."""
    permissions = {"publish", "subscribe"} | ({"moderate"} if moderator else set())
    return mint_token(
        SECRET,
        identity=identity,
        name=identity.title(),
        role=role,
        room=str(kw.pop("room", "r1")),
        permissions=frozenset(permissions),
        **kw,  # type: ignore[arg-type]
    )


class Harness:
    """A core with a fake monotonic clock and a settable wall clock; feed and read helpers."""

    def __init__(
        self,
        *,
        bans: list[Ban] | None = None,
        banned_identities: list[tuple[str, str]] | None = None,
        **config: object,
    ) -> None:
        self.now = 1000.0
        # Tokens are verified by the real clock, so the wall clock starts there too.
        self.wall = datetime.fromtimestamp(int(time.time()), UTC)
        self.core = Core(
            config=CoreConfig(**{"grace_s": 5.0, **config}),  # type: ignore[arg-type]
            verify=functools.partial(verify_token, SECRET),
            ice_servers=lambda identity: ICE.ice_servers(identity, now_s=time.time()),
            wall_clock=lambda: self.wall,
            bans=bans or [],
            banned_identities=banned_identities or [],
        )
        self._next = 0

    def open(self) -> int:
        self._next += 1
        assert self.core.open(self._next, self.now) == []
        return self._next

    def send(self, conn: int, message: m.ClientMessage | str | bytes) -> list[Effect]:
        data = message if isinstance(message, str | bytes) else m.encode(message).decode()
        return self.core.receive(conn, data, self.now)

    def join(self, identity: str, **kw: object) -> tuple[int, list[Effect]]:
        conn = self.open()
        return conn, self.send(conn, m.Join(token=token(identity, **kw)))

    def watch(self, identity: str, **kw: object) -> tuple[int, list[Effect]]:
        conn = self.open()
        return conn, self.send(conn, m.Watch(token=token(identity, **kw)))

    def ack_all(self, effects: list[Effect], ok: bool = True) -> list[Effect]:
        """Report every acknowledged write of ``effects`` done (``ok``), as the I/O layer."""
        out: list[Effect] = []
        for effect in effects:
            if isinstance(effect, Persist) and effect.ack is not None:
                out += self.core.persisted(effect.ack, ok, self.now)
        return out


def sent(effects: list[Effect], conn: int) -> list[m.ServerMessage]:
    """Messages sent to ``conn``, encoded and decoded as a client would see them."""
    return [
        m.decode_server(m.encode(e.message))
        for e in effects
        if isinstance(e, Send) and e.conn == conn
    ]


def types(effects: list[Effect], conn: int) -> list[str]:
    return [str(type(x).__struct_config__.tag) for x in sent(effects, conn)]


def only(effects: list[Effect], kind: type[Effect]) -> list[Effect]:
    return [e for e in effects if isinstance(e, kind)]


def error_of(effects: list[Effect], conn: int) -> m.Error:
    errors = [x for x in sent(effects, conn) if isinstance(x, m.Error)]
    assert len(errors) == 1, effects
    return errors[0]


def closes(effects: list[Effect], conn: int) -> list[CloseCode]:
    return [e.code for e in effects if isinstance(e, Close) and e.conn == conn]


def bans(effects: list[Effect]) -> list[Ban]:
    return [e.record for e in effects if isinstance(e, Persist) and isinstance(e.record, Ban)]


@pytest.fixture
def h() -> Harness:
    return Harness()


@pytest.fixture
def room(h: Harness) -> tuple[int, int, str, str]:
    """The room of :func:`admitted`."""
    return admitted(h)


def admitted(h: Harness) -> tuple[int, int, str, str]:
    """A moderator and an admitted applicant in room r1: (mod conn, app conn, mod pid, app pid)."""
    mod, effects = h.join("dr-li", role="expert", moderator=True)
    mod_pid = sent(effects, mod)[0].participant_id  # type: ignore[union-attr]
    app, effects = h.join("dr-wang")
    app_pid = sent(effects, app)[0].participant_id  # type: ignore[union-attr]
    h.send(mod, m.Admit(participant_id=app_pid))
    return mod, app, mod_pid, app_pid


# ----------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_json"),
        ("0:", "bad_json"),
        (b"\x00\x01", "bad_json"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"no": "type"}', "unknown_type"),
        ('{"type": "chat", "text": 5}', "bad_message"),
        ('{"type": "chat", "text": "hi"}', "not_joined"),
    ],
)
def test_bad_input_before_join(h: Harness, frame: str | bytes, code: str) -> None:
    """Garbage before join gets its code and close 4400; a valid message gets not_joined."""
    conn = h.open()
    effects = h.send(conn, frame)
    assert error_of(effects, conn).code == code
    assert closes(effects, conn) == ([] if code == "not_joined" else [CloseCode.BAD_REQUEST])


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_json"),
        ('{"type": "dance", "ref": "x1"}', "unknown_type"),
        ('{"type": "chat", "text": "", "ref": "x2"}', "bad_message"),
        ('{"type": "offer", "pc": "subscribe", "sdp": "v=0"}', "bad_state"),
        ('{"type": "answer", "pc": "publish", "sdp": "v=0"}', "bad_state"),
        ('{"type": "join", "token": "x"}', "already_joined"),
        ("x" * 70_000, "too_large"),
    ],
)
def test_bad_input_after_join_keeps_the_connection(
    h: Harness, room: tuple[int, int, str, str], frame: str, code: str
) -> None:
    """After join, each bad input gets its code (with the ref) and nobody else notices."""
    mod, app, _, _ = room
    effects = h.send(app, frame)
    error = error_of(effects, app)
    assert error.code == code
    if '"ref"' in frame:
        assert error.ref is not None
    assert closes(effects, app) == []
    assert sent(effects, mod) == []
    assert types(h.send(app, m.Ping(ref="p")), app) == ["pong"]


def test_too_large_echoes_the_ref(h: Harness, room: tuple[int, int, str, str]) -> None:
    """Conformance: too_large carries the ref of an oversized JSON object, as every error."""
    _, app, _, _ = room
    frame = json.dumps({"type": "chat", "text": "x" * 70_000, "ref": "big-1"})
    error = error_of(h.send(app, frame), app)
    assert (error.code, error.ref) == ("too_large", "big-1")
    # Not an object, or no string ref: nothing to echo, the error still comes.
    error = error_of(h.send(app, json.dumps(["x" * 70_000])), app)
    assert (error.code, error.ref) == ("too_large", None)


def test_bad_json_has_no_ref_to_echo(h: Harness, room: tuple[int, int, str, str]) -> None:
    """Conformance: a frame that is not JSON gets bad_json with ref null (none can be read)."""
    _, app, _, _ = room
    error = error_of(h.send(app, '{"type": "ping", "ref": "r-1"'), app)
    assert (error.code, error.ref) == ("bad_json", None)


@pytest.mark.parametrize("where", ["field", "ref", "type", "top"])
def test_deep_nesting_is_bad_json_not_a_traceback(
    h: Harness, room: tuple[int, int, str, str], where: str, caplog: pytest.LogCaptureFixture
) -> None:
    """JSON nested 10,000 levels gets bad_json, nothing at ERROR, the connection carries on."""
    _, app, _, _ = room
    deep = "[" * 10_000 + "]" * 10_000
    frame = {
        "field": '{"type": "chat", "text": "hi", "x": ' + deep + "}",
        "ref": '{"type": "chat", "text": "hi", "ref": ' + deep + "}",
        "type": '{"type": ' + deep + "}",
        "top": deep,
    }[where]
    with caplog.at_level(logging.INFO):
        effects = h.send(app, frame)
    assert error_of(effects, app).code in ("bad_json", "bad_message")
    assert closes(effects, app) == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert types(h.send(app, m.Ping()), app) == ["pong"]


# ----------------------------------------------------------------------------- tokens at connect


def test_unsupported_version(h: Harness) -> None:
    """A join with another protocol version is refused and closed."""
    conn = h.open()
    effects = h.send(conn, m.Join(token=token("a"), version=99))
    assert error_of(effects, conn).code == "unsupported_version"
    assert closes(effects, conn) == [CloseCode.BAD_REQUEST]


# ----------------------------------------------------------------------------- limits


def test_flood_is_rate_limited_then_closed() -> None:
    """Past the burst, messages are refused; a sustained flood is closed with 4429."""
    h = Harness(burst=5, rate_per_s=1, flood_close_after=3)
    conn = h.open()
    codes = []
    for _ in range(8):
        effects = h.send(conn, m.Ping())
        codes.append(types(effects, conn)[0])
    assert codes[:5] == ["pong"] * 5
    assert codes[5:] == ["error"] * 3
    assert closes(effects, conn) == [CloseCode.RATE_LIMITED]


def test_join_timeout(h: Harness) -> None:
    """A connection that does not join in time is closed with 4408."""
    conn = h.open()
    h.now += 10.0
    effects = h.core.tick(h.now)
    assert error_of(effects, conn).code == "join_timeout"
    assert closes(effects, conn) == [CloseCode.JOIN_TIMEOUT]
    assert h.core.tick(h.now + 1) == []


def test_internal_error_is_generic_and_keeps_the_connection() -> None:
    """A bug while handling a message becomes error internal, with no detail, connection kept."""

    def broken(token: str) -> TokenClaims:
        raise RuntimeError("database password is hunter2")

    core = Core(config=CoreConfig(), verify=broken, ice_servers=lambda identity: [])
    core.open(1, 0.0)
    effects = core.receive(1, m.encode(m.Join(token="t", ref="j")).decode(), 0.0)
    error = error_of(effects, 1)
    assert (error.code, error.ref) == ("internal", "j")
    assert "hunter2" not in error.reason
    assert closes(effects, 1) == []
    assert core.stats.errors["internal"] == 1


# ----------------------------------------------------------------------------- live expiry


# ----------------------------------------------------------------------------- revocation


# ----------------------------------------------------------------------------- acks


def test_unknown_and_repeated_acks_change_nothing(
    h: Harness, room: tuple[int, int, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """persisted() for an ack never issued, or twice, is logged as a warning and ignored."""
    mod, _, _, app_pid = room
    effects = h.send(mod, m.Remove(participant_id=app_pid))
    (ban,) = [e for e in effects if isinstance(e, Persist) and e.ack is not None]
    assert ban.ack is not None
    with caplog.at_level(logging.WARNING):
        assert h.core.persisted(ban.ack + 1000, True, h.now) == []
    assert "unknown or repeated ack" in caplog.text
    assert h.core.persisted(ban.ack, True, h.now)
    assert h.core.persisted(ban.ack, True, h.now) == []


def test_message_types_and_error_codes_are_documented() -> None:
    """Every client and server type and every error code appears in docs/signaling.md."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "signaling.md").read_text()
    server_types = {str(t.__struct_config__.tag) for t in get_args(m.ServerMessage)}
    for name in sorted(m.CLIENT_TYPES | server_types):
        assert f"`{name}`" in text, name
    for code in ErrorCode:
        assert f"`{code.value}`" in text, code
