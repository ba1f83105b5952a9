"""The protocol core, fed messages with no event loop: flows, effects and every bad input."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime

import pytest

from sessions.store import AuditEntry, Ban
from sessions.tokens import TokenClaims, mint_token, verify_token
from sessions.turn import IceConfig
from signaling import messages as m
from signaling.core import (
    Close,
    Core,
    CoreConfig,
    Effect,
    MediaJoin,
    MediaLeave,
    MediaOffer,
    MediaPause,
    MediaRecord,
    Persist,
    Send,
)
from signaling.messages import CloseCode, ErrorCode

SECRET = "k" * 40
ICE = IceConfig(
    stun_urls=["stun:127.0.0.1:3478"], turn_urls=["turn:127.0.0.1:3478"], turn_secret="t"
)


def token(identity: str, *, role: str = "applicant", moderator: bool = False, **kw: object) -> str:
    """A token for room r1."""
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
    """A core with a fake clock; helpers to feed messages and read effects."""

    def __init__(self, **config: object) -> None:
        self.now = 1000.0
        self.core = Core(
            config=CoreConfig(**{"grace_s": 5.0, **config}),  # type: ignore[arg-type]
            verify=functools.partial(verify_token, SECRET),
            ice_servers=lambda identity: ICE.ice_servers(identity, now_s=time.time()),
            wall_clock=lambda: datetime(2026, 11, 23, 1, 2, 3, 456000, tzinfo=UTC),
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


@pytest.fixture
def h() -> Harness:
    return Harness()


@pytest.fixture
def room(h: Harness) -> tuple[int, int, str, str]:
    """A moderator and an admitted applicant in room r1: (mod conn, app conn, mod pid, app pid)."""
    mod, effects = h.join("dr-li", role="expert", moderator=True)
    mod_pid = sent(effects, mod)[0].participant_id  # type: ignore[union-attr]
    app, effects = h.join("dr-wang")
    app_pid = sent(effects, app)[0].participant_id  # type: ignore[union-attr]
    h.send(mod, m.Admit(participant_id=app_pid))
    return mod, app, mod_pid, app_pid


def test_moderator_joins_at_once_with_ice_servers(h: Harness) -> None:
    """A moderator gets joined (version, TURN credentials) and its media session opens."""
    conn, effects = h.join("dr-li", role="expert", moderator=True)
    (joined,) = sent(effects, conn)
    assert isinstance(joined, m.Joined)
    assert joined.version == m.PROTOCOL_VERSION
    assert joined.permissions == ["moderate", "publish", "subscribe"]
    assert joined.ice_servers[1].username is not None
    assert joined.ice_servers[1].username.endswith(":dr-li")
    assert joined.participants == []
    (media,) = only(effects, MediaJoin)
    assert isinstance(media, MediaJoin)
    assert (media.participant_id, media.room_id) == (joined.participant_id, "r1")
    (audit,) = [e.record for e in only(effects, Persist) if isinstance(e.record, AuditEntry)]  # type: ignore[attr-defined]
    assert (audit.action, audit.actor) == ("join", "dr-li")
    assert audit.detail["participant_id"] == joined.participant_id
    assert audit.detail["name"] == "Dr-Li"


def test_waiting_room_and_admission(h: Harness) -> None:
    """An applicant waits; the moderator is told; admission sends admitted+joined to it."""
    mod, _ = h.join("dr-li", role="expert", moderator=True)
    app, effects = h.join("dr-wang")
    assert types(effects, app) == ["waiting"]
    assert types(effects, mod) == ["participant_waiting"]
    assert not only(effects, MediaJoin)
    waiting = sent(effects, app)[0]
    assert isinstance(waiting, m.Waiting)
    assert types(h.send(app, m.Chat(text="hi")), app) == ["error"]
    effects = h.send(mod, m.Admit(participant_id=waiting.participant_id))
    assert types(effects, app) == ["admitted", "joined"]
    assert types(effects, mod) == ["participant_joined"]
    joined = sent(effects, app)[1]
    assert isinstance(joined, m.Joined)
    assert [p.identity for p in joined.participants] == ["dr-li"]
    assert len(only(effects, MediaJoin)) == 1


def test_moderator_arriving_late_sees_who_waits(h: Harness) -> None:
    """A moderator joining after an applicant gets participant_waiting for it."""
    h.join("dr-wang")
    mod, effects = h.join("dr-li", role="expert", moderator=True)
    assert types(effects, mod) == ["joined", "participant_waiting"]


def test_admit_needs_moderate_and_a_waiting_target(
    h: Harness, room: tuple[int, int, str, str]
) -> None:
    """Admit: forbidden without moderate, bad_state if not waiting, not_found if unknown."""
    mod, app, mod_pid, app_pid = room
    assert error_of(h.send(app, m.Admit(participant_id=mod_pid)), app).code == "forbidden"
    assert error_of(h.send(mod, m.Admit(participant_id=app_pid)), mod).code == "bad_state"
    assert error_of(h.send(mod, m.Admit(participant_id="p_nobody")), mod).code == "not_found"


def test_remove_bans_the_token(h: Harness) -> None:
    """Removal closes the target with 4403, tells the others, persists a ban; rejoin is banned."""
    mod, _ = h.join("dr-li", role="expert", moderator=True)
    applicant_token = token("dr-wang")
    app = h.open()
    pid = sent(h.send(app, m.Join(token=applicant_token)), app)[0].participant_id  # type: ignore[union-attr]
    h.send(mod, m.Admit(participant_id=pid))
    effects = h.send(mod, m.Remove(participant_id=pid, reason="wrong room"))
    assert error_of(effects, app).code == "removed"
    assert closes(effects, app) == [CloseCode.FORBIDDEN]
    left = sent(effects, mod)
    assert isinstance(left[0], m.ParticipantLeft)
    assert left[0].reason == "removed"
    bans = [e.record for e in effects if isinstance(e, Persist) and isinstance(e.record, Ban)]
    assert [(b.identity, b.by, b.reason) for b in bans] == [("dr-wang", "dr-li", "wrong room")]
    assert only(effects, MediaLeave)
    again = h.open()
    effects = h.send(again, m.Join(token=applicant_token))
    assert error_of(effects, again).code == "banned"
    assert closes(effects, again) == [CloseCode.FORBIDDEN]


def test_mute_by_moderator_and_self_unmute(h: Harness, room: tuple[int, int, str, str]) -> None:
    """A moderator mutes another (media paused, everyone told); only the participant unmutes."""
    mod, app, mod_pid, app_pid = room
    effects = h.send(mod, m.Mute(kind="audio", participant_id=app_pid))
    assert [(e.participant_id, e.kind, e.paused) for e in only(effects, MediaPause)] == [  # type: ignore[union-attr]
        (app_pid, "audio", True)
    ]
    for conn in (mod, app):
        (muted,) = sent(effects, conn)
        assert isinstance(muted, m.Muted)
        assert (muted.participant_id, muted.muted, muted.by) == (app_pid, True, mod_pid)
    assert (
        error_of(h.send(app, m.Mute(kind="video", participant_id=mod_pid)), app).code == "forbidden"
    )
    effects = h.send(app, m.Unmute(kind="audio"))
    (unmuted,) = sent(effects, mod)
    assert isinstance(unmuted, m.Muted)
    assert (unmuted.muted, unmuted.by) == (False, app_pid)


def test_chat_is_stamped_and_broadcast(h: Harness, room: tuple[int, int, str, str]) -> None:
    """Chat reaches everyone, sender included, with sender and a UTC Z timestamp."""
    mod, app, _, app_pid = room
    effects = h.send(app, m.Chat(text="血压 120/80"))
    for conn in (mod, app):
        (chat,) = sent(effects, conn)
        assert isinstance(chat, m.ChatEvent)
        assert (chat.participant_id, chat.name, chat.text) == (app_pid, "Dr-Wang", "血压 120/80")
        assert chat.time == "2026-11-23T01:02:03.456Z"


def test_leave_closes_normally_and_tells_others(
    h: Harness, room: tuple[int, int, str, str]
) -> None:
    """Leave: close 1000, media left, participant_left reason left to the others."""
    mod, app, _, app_pid = room
    effects = h.send(app, m.Leave())
    assert closes(effects, app) == [CloseCode.NORMAL]
    assert only(effects, MediaLeave)
    (left,) = sent(effects, mod)
    assert isinstance(left, m.ParticipantLeft)
    assert (left.participant_id, left.reason) == (app_pid, "left")
    assert h.core.participant(app_pid) is None


def test_resume_within_grace_keeps_the_participant(
    h: Harness, room: tuple[int, int, str, str]
) -> None:
    """A dropped participant is kept for the grace period and resumes with its id and mutes."""
    mod, app, _, app_pid = room
    h.core.media_joined(app_pid, h.core.participant(app_pid).media_generation)  # type: ignore[union-attr]
    h.send(mod, m.Mute(kind="video", participant_id=app_pid))
    effects = h.core.closed(app, h.now)
    assert only(effects, MediaLeave)
    (state,) = sent(effects, mod)
    assert isinstance(state, m.ParticipantState)
    assert state.state == "disconnected"
    h.now += 4.0
    assert h.core.tick(h.now) == []
    back, effects = h.join("dr-wang")
    (joined,) = sent(effects, back)
    assert isinstance(joined, m.Joined)
    assert (joined.participant_id, joined.resumed) == (app_pid, True)
    assert types(effects, mod) == ["participant_state"]
    media = [e for e in effects if isinstance(e, MediaJoin | MediaPause)]
    assert [type(e) for e in media] == [MediaJoin, MediaPause]
    assert joined.participant_id == app_pid


def test_removed_after_grace_and_others_told(h: Harness, room: tuple[int, int, str, str]) -> None:
    """After the grace period the participant is gone with reason timeout."""
    mod, app, _, app_pid = room
    h.core.closed(app, h.now)
    h.now += 5.0
    effects = h.core.tick(h.now)
    (left,) = sent(effects, mod)
    assert isinstance(left, m.ParticipantLeft)
    assert (left.participant_id, left.reason) == (app_pid, "timeout")
    again, effects = h.join("dr-wang")
    assert types(effects, again) == ["waiting"]


def test_second_connection_replaces_the_first(h: Harness, room: tuple[int, int, str, str]) -> None:
    """A second join with the same identity takes over; the older gets replaced and 4409."""
    mod, app, _, app_pid = room
    newer, effects = h.join("dr-wang")
    assert error_of(effects, app).code == "replaced"
    assert closes(effects, app) == [CloseCode.REPLACED]
    (joined,) = sent(effects, newer)
    assert isinstance(joined, m.Joined)
    assert joined.participant_id == app_pid
    assert sent(effects, mod) == []
    assert h.core.closed(app, h.now) == []
    assert types(h.send(newer, m.Chat(text="still here")), mod) == ["chat"]


def test_media_offer_answer_and_stale_callbacks(
    h: Harness, room: tuple[int, int, str, str]
) -> None:
    """An offer becomes a media effect, its answer carries the ref; stale sessions are ignored."""
    mod, app, _, app_pid = room
    (offer,) = only(h.send(app, m.Offer(pc="publish", sdp="v=0", ref="o1")), MediaOffer)
    assert isinstance(offer, MediaOffer)
    section = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
    sdp = section + "a=candidate:1 1 udp 1 h 9 typ host\r\n"
    answer = sent(h.core.media_answer(app, app_pid, sdp, offer.ref), app)
    assert answer == [
        m.ServerAnswer(
            pc="publish", sdp="v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n", ref="o1"
        ),
        m.ServerCandidate(
            pc="publish",
            candidate="candidate:1 1 udp 1 h 9 typ host",
            sdp_mid="0",
            sdp_mline_index=0,
        ),
        m.ServerCandidate(pc="publish"),
    ]
    generation = h.core.participant(app_pid).media_generation  # type: ignore[union-attr]
    effects = h.core.media_track_published(app_pid, generation, "t1", "video", "s1")
    (published,) = sent(effects, mod)
    assert isinstance(published, m.TrackPublished)
    assert (published.track.track_id, published.track.source) == ("t1", "camera")
    assert h.core.media_track_published(app_pid, generation - 1, "t2", "audio", "s1") == []
    err = error_of(h.core.media_error(app, ErrorCode.INVALID_SDP, "bad sdp", "o1"), app)
    assert (err.code, err.ref) == ("invalid_sdp", "o1")


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
def test_refused_tokens_close_the_connection(
    h: Harness, make: object, code: str, close: int
) -> None:
    """Expired, not yet valid, forged and device tokens are refused with their code and close."""
    conn = h.open()
    effects = h.send(conn, m.Join(token=make()))  # type: ignore[operator]
    assert error_of(effects, conn).code == code
    assert closes(effects, conn) == [close]
    assert h.core.participant_count == 0


def test_unsupported_version(h: Harness) -> None:
    """A join with another protocol version is refused and closed."""
    conn = h.open()
    effects = h.send(conn, m.Join(token=token("a"), version=99))
    assert error_of(effects, conn).code == "unsupported_version"
    assert closes(effects, conn) == [CloseCode.BAD_REQUEST]


def test_permissions_are_enforced() -> None:
    """An observer (subscribe only) in a room without waiting room cannot publish."""
    core = Harness(waiting_room=False)
    observer_token = mint_token(SECRET, identity="o", name="O", role="observer", room="r1")
    conn2 = core.open()
    core.send(conn2, m.Join(token=observer_token))
    effects = core.send(conn2, m.Offer(pc="publish", sdp="v=0"))
    assert error_of(effects, conn2).code == "forbidden"
    assert not only(effects, MediaOffer)


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


def test_waiting_participant_refused_or_leaving_is_told_to_moderators_only(h: Harness) -> None:
    """Removing a waiting participant, or its leaving, reaches moderators only, never the room."""
    mod, _ = h.join("dr-li", role="expert", moderator=True)
    other, effects = h.join("dr-zhou", role="expert", moderator=False)
    h.send(mod, m.Admit(participant_id=sent(effects, other)[0].participant_id))  # type: ignore[union-attr]
    first, effects = h.join("dr-wang")
    assert types(effects, other) == []
    pid = sent(effects, first)[0].participant_id  # type: ignore[union-attr]
    effects = h.send(mod, m.Remove(participant_id=pid))
    assert closes(effects, first) == [CloseCode.FORBIDDEN]
    assert types(effects, mod) == ["participant_left"]
    assert types(effects, other) == []
    second, _ = h.join("dr-ma")
    effects = h.send(second, m.Leave())
    assert closes(effects, second) == [CloseCode.NORMAL]
    (left,) = sent(effects, mod)
    assert isinstance(left, m.ParticipantLeft)
    assert left.reason == "left"
    assert not only(effects, MediaLeave)


def test_recording_consent_is_a_moderator_decision(
    h: Harness, room: tuple[int, int, str, str]
) -> None:
    """Only a moderator turns recording on; the media backend is asked, nothing else yet."""
    mod, app, _, _ = room
    refused = h.send(app, m.SetRecording(on=True))
    assert error_of(refused, app).code == "forbidden"
    assert only(refused, MediaRecord) == []
    effects = h.send(mod, m.SetRecording(on=True))
    assert [(e.room_id, e.on) for e in only(effects, MediaRecord)] == [("r1", True)]  # type: ignore[attr-defined]


def test_recording_change_reaches_everyone_and_failures_reach_moderators(
    h: Harness, room: tuple[int, int, str, str]
) -> None:
    """Everyone in the room is told recording is on or off; only moderators get the failure."""
    mod, app, _, _ = room
    effects = h.core.recording_changed("r1", True, None)
    for conn in (mod, app):
        assert [(x.on, x.error) for x in sent(effects, conn)] == [(True, None)]  # type: ignore[union-attr]
    late, effects = h.join("dr-zhao", role="expert", moderator=True)
    (joined,) = [x for x in sent(effects, late) if isinstance(x, m.Joined)]
    assert joined.recording is True
    effects = h.core.recording_changed("r1", False, "ENOSPC: No space left on device")
    assert types(effects, app) == ["recording"]
    assert types(effects, mod) == ["recording", "error"]
    assert error_of(effects, mod).code == ErrorCode.RECORDING_FAILED.value
    assert types(effects, late) == ["recording", "error"]
