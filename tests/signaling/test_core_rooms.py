"""signaling.rooms: join, waiting room, admission, removal (durable first), mutes, leave,
resume, takeover, media negotiation and recording, through the core with no event loop."""

from __future__ import annotations

from datetime import UTC, datetime

from sessions.store import AuditEntry, Ban
from sessions.tokens import mint_token
from signaling import messages as m
from signaling.core import (
    MediaJoin,
    MediaLeave,
    MediaOffer,
    MediaPause,
    MediaReceive,
    MediaRecord,
    Persist,
)
from signaling.messages import CloseCode, ErrorCode
from tests.signaling.test_core import (
    SECRET,
    Harness,
    admitted,
    bans,
    closes,
    error_of,
    only,
    sent,
    token,
    types,
)


def test_moderator_joins_at_once_with_ice_servers() -> None:
    """A moderator gets joined (version, TURN credentials) and its media session opens."""
    h = Harness()
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


def test_waiting_room_and_admission() -> None:
    """An applicant waits; the moderator is told; admission sends admitted+joined to it."""
    h = Harness()
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


def test_moderator_arriving_late_sees_who_waits() -> None:
    """A moderator joining after an applicant gets participant_waiting for it."""
    h = Harness()
    h.join("dr-wang")
    mod, effects = h.join("dr-li", role="expert", moderator=True)
    assert types(effects, mod) == ["joined", "participant_waiting"]


def test_admit_needs_moderate_and_a_waiting_target() -> None:
    """Admit: forbidden without moderate, bad_state if not waiting, not_found if unknown."""
    h = Harness()
    room = admitted(h)
    mod, app, mod_pid, app_pid = room
    assert error_of(h.send(app, m.Admit(participant_id=mod_pid)), app).code == "forbidden"
    assert error_of(h.send(mod, m.Admit(participant_id=app_pid)), mod).code == "bad_state"
    assert error_of(h.send(mod, m.Admit(participant_id="p_nobody")), mod).code == "not_found"


# ----------------------------------------------------------------------------- removal


def test_removal_waits_for_the_durable_ban() -> None:
    """remove only emits the ban (with an ack); once it is durable the target is closed 4403,
    the others told, and neither that token nor another token of that person gets back in."""
    h = Harness()
    mod, _ = h.join("dr-li", role="expert", moderator=True)
    applicant_token = token("dr-wang")
    app = h.open()
    pid = sent(h.send(app, m.Join(token=applicant_token)), app)[0].participant_id  # type: ignore[union-attr]
    h.send(mod, m.Admit(participant_id=pid))
    effects = h.send(mod, m.Remove(participant_id=pid, reason="wrong room"))
    # Nothing enforced or announced yet: only the write.
    assert [type(e) for e in effects] == [Persist]
    assert [(b.identity, b.room, b.by, b.reason) for b in bans(effects)] == [
        ("dr-wang", "r1", "dr-li", "wrong room")
    ]
    assert types(h.send(app, m.Ping()), app) == ["pong"]
    effects = h.ack_all(effects)
    assert error_of(effects, app).code == "removed"
    assert closes(effects, app) == [CloseCode.FORBIDDEN]
    (left,) = sent(effects, mod)
    assert isinstance(left, m.ParticipantLeft)
    assert left.reason == "removed"
    assert only(effects, MediaLeave)
    for again_token in (applicant_token, token("dr-wang")):
        again = h.open()
        effects = h.send(again, m.Join(token=again_token))
        assert error_of(effects, again).code == "banned"
        assert closes(effects, again) == [CloseCode.FORBIDDEN]
    # The ban is of that room only.
    elsewhere, effects = h.join("dr-wang", room="r2")
    assert types(effects, elsewhere) == ["waiting"]


def test_failed_ban_write_reports_store_failed_and_changes_nothing() -> None:
    """A ban that cannot be written: the moderator gets store_failed (its ref), nobody is
    removed or told, and the person may still join with another token."""
    h = Harness()
    room = admitted(h)
    mod, app, _, app_pid = room
    effects = h.send(mod, m.Remove(participant_id=app_pid, ref="rm-1"))
    effects = h.ack_all(effects, ok=False)
    error = error_of(effects, mod)
    assert (error.code, error.ref) == (ErrorCode.STORE_FAILED.value, "rm-1")
    assert sent(effects, app) == []
    assert closes(effects, app) == []
    assert h.core.participant(app_pid) is not None
    assert types(h.send(app, m.Chat(text="still here")), mod) == ["chat"]
    # And it may be tried again.
    effects = h.ack_all(h.send(mod, m.Remove(participant_id=app_pid)))
    assert closes(effects, app) == [CloseCode.FORBIDDEN]


def test_second_remove_while_the_first_is_written_is_bad_state() -> None:
    """While a removal is being recorded, another remove of that person gets bad_state."""
    h = Harness()
    room = admitted(h)
    mod, _, _, app_pid = room
    first = h.send(mod, m.Remove(participant_id=app_pid))
    assert error_of(h.send(mod, m.Remove(participant_id=app_pid)), mod).code == "bad_state"
    assert len(bans(first)) == 1


def test_removal_of_someone_who_left_meanwhile_still_bans() -> None:
    """The target leaves before the ban is durable: nothing to announce, the ban holds."""
    h = Harness()
    room = admitted(h)
    mod, app, _, app_pid = room
    pending = h.send(mod, m.Remove(participant_id=app_pid))
    h.send(app, m.Leave())
    effects = h.ack_all(pending)
    assert sent(effects, mod) == []
    again, effects = h.join("dr-wang")
    assert error_of(effects, again).code == "banned"


def test_remove_ends_every_connection_of_that_identity_in_the_room() -> None:
    """Removal closes the room connection and each watch connection for that room of the
    removed identity (removed, 4403); its viewers of other rooms and other people stay."""
    h = Harness()
    room = admitted(h)
    mod, app, _, app_pid = room
    watch_here, _ = h.watch("dr-wang")
    watch_too, _ = h.watch("dr-wang")
    watch_elsewhere, _ = h.watch("dr-wang", room="r2")
    other_viewer, _ = h.watch("dr-zhou")
    effects = h.ack_all(h.send(mod, m.Remove(participant_id=app_pid)))
    for conn in (app, watch_here, watch_too):
        assert error_of(effects, conn).code == "removed"
        assert closes(effects, conn) == [CloseCode.FORBIDDEN]
    for conn in (watch_elsewhere, other_viewer):
        assert sent(effects, conn) == []
        assert closes(effects, conn) == []
    # A new watch of that room by that person is refused too.
    again, effects = h.watch("dr-wang")
    assert error_of(effects, again).code == "banned"


def test_a_ban_from_another_node_is_enforced_at_once() -> None:
    """apply_ban: a ban written elsewhere ends the identity's connections now and is kept."""
    h = Harness()
    room = admitted(h)
    mod, app, _, app_pid = room
    ban = Ban(jti="x", room="r1", identity="dr-wang", by="dr-zhao", reason="", time="t")
    effects = h.core.apply_ban(ban, h.now)
    assert closes(effects, app) == [CloseCode.FORBIDDEN]
    assert [x.participant_id for x in sent(effects, mod)] == [app_pid]  # type: ignore[union-attr]
    assert [e for e in effects if isinstance(e, Persist)] == []  # the other node audited it
    again, effects = h.join("dr-wang")
    assert error_of(effects, again).code == "banned"


def test_waiting_participant_removed_or_leaving_is_told_to_moderators_only() -> None:
    """Removing a waiting participant, or its leaving, reaches moderators only, never the room."""
    h = Harness()
    mod, _ = h.join("dr-li", role="expert", moderator=True)
    other, effects = h.join("dr-zhou", role="expert", moderator=False)
    h.send(mod, m.Admit(participant_id=sent(effects, other)[0].participant_id))  # type: ignore[union-attr]
    first, effects = h.join("dr-wang")
    assert types(effects, other) == []
    pid = sent(effects, first)[0].participant_id  # type: ignore[union-attr]
    effects = h.ack_all(h.send(mod, m.Remove(participant_id=pid)))
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


# ----------------------------------------------------------------------------- mutes, leave


def test_mute_by_moderator_and_self_unmute() -> None:
    """A moderator mutes another (media paused, everyone told); only the participant unmutes."""
    h = Harness()
    room = admitted(h)
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


def test_leave_closes_normally_and_tells_others() -> None:
    """Leave: close 1000, media left, participant_left reason left to the others."""
    h = Harness()
    room = admitted(h)
    mod, app, _, app_pid = room
    effects = h.send(app, m.Leave())
    assert closes(effects, app) == [CloseCode.NORMAL]
    assert only(effects, MediaLeave)
    (left,) = sent(effects, mod)
    assert isinstance(left, m.ParticipantLeft)
    assert (left.participant_id, left.reason) == (app_pid, "left")
    assert h.core.participant(app_pid) is None


def test_permissions_are_enforced() -> None:
    """An observer (subscribe only) in a room without waiting room cannot publish."""
    core = Harness(waiting_room=False)
    observer_token = mint_token(SECRET, identity="o", name="O", role="observer", room="r1")
    conn2 = core.open()
    core.send(conn2, m.Join(token=observer_token))
    effects = core.send(conn2, m.Offer(pc="publish", sdp="v=0"))
    assert error_of(effects, conn2).code == "forbidden"
    assert not only(effects, MediaOffer)


# ----------------------------------------------------------------------------- resume, takeover


def test_resume_within_grace_keeps_the_participant() -> None:
    """A dropped participant is kept for the grace period and resumes with its id and mutes."""
    h = Harness()
    room = admitted(h)
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


def test_audio_only_is_asked_of_the_media_and_kept_across_a_resume() -> None:
    """``receive`` video false/true reaches the media backend; a participant receiving no
    video who drops and resumes gets the refusal again after the join."""
    h = Harness()
    mod, app, _, app_pid = admitted(h)
    h.core.media_joined(app_pid, h.core.participant(app_pid).media_generation)  # type: ignore[union-attr]
    effects = h.send(app, m.Receive(video=False))
    assert only(effects, MediaReceive) == [MediaReceive(app_pid, "video", False)]
    assert sent(effects, mod) == []  # nobody else is told
    h.core.closed(app, h.now)
    back, effects = h.join("dr-wang")
    media = [e for e in effects if isinstance(e, MediaJoin | MediaReceive)]
    assert media == [media[0], MediaReceive(app_pid, "video", False)]
    assert isinstance(media[0], MediaJoin)
    effects = h.send(back, m.Receive(video=True))
    assert only(effects, MediaReceive) == [MediaReceive(app_pid, "video", True)]


def test_removed_after_grace_and_others_told() -> None:
    """After the grace period the participant is gone with reason timeout."""
    h = Harness()
    room = admitted(h)
    mod, app, _, app_pid = room
    h.core.closed(app, h.now)
    h.now += 5.0
    effects = h.core.tick(h.now)
    (left,) = sent(effects, mod)
    assert isinstance(left, m.ParticipantLeft)
    assert (left.participant_id, left.reason) == (app_pid, "timeout")
    again, effects = h.join("dr-wang")
    assert types(effects, again) == ["waiting"]


def test_second_connection_replaces_the_first() -> None:
    """A second join with the same identity takes over; the older gets replaced and 4409."""
    h = Harness()
    room = admitted(h)
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


# ----------------------------------------------------------------------------- media


def test_media_offer_answer_and_stale_callbacks() -> None:
    """An offer becomes a media effect, its answer carries the ref; stale sessions are ignored."""
    h = Harness()
    room = admitted(h)
    mod, app, _, app_pid = room
    (offer,) = only(h.send(app, m.Offer(pc="publish", sdp="v=0", ref="o1")), MediaOffer)
    assert isinstance(offer, MediaOffer)
    section = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
    sdp = section + "a=candidate:1 1 udp 1 h 9 typ host\r\n"
    answer = sent(h.core.media_answer(app, app_pid, sdp, offer.ref), app)
    assert answer == [
        m.ServerAnswer(pc="publish", sdp=section, ref="o1"),
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


def test_the_core_itself_sends_no_subscribe_offer_on_join() -> None:
    """Conformance: joined is followed by no offer from the core; the subscribe offer is the
    media backend's (media_offer), sent when there is something to receive."""
    h = Harness()
    conn, effects = h.join("dr-li", role="expert", moderator=True)
    assert types(effects, conn) == ["joined"]
    (media,) = only(effects, MediaJoin)
    assert isinstance(media, MediaJoin)
    offer = h.core.media_offer(media.participant_id, media.generation, "subscribe", "v=0\r\n")
    assert types(offer, conn) == ["offer", "candidate"]


def test_recording_consent_is_a_moderator_decision() -> None:
    """Only a moderator turns recording on; the media backend is asked, nothing else yet."""
    h = Harness()
    room = admitted(h)
    mod, app, _, _ = room
    refused = h.send(app, m.SetRecording(on=True))
    assert error_of(refused, app).code == "forbidden"
    assert only(refused, MediaRecord) == []
    effects = h.send(mod, m.SetRecording(on=True))
    assert [(e.room_id, e.on) for e in only(effects, MediaRecord)] == [("r1", True)]  # type: ignore[attr-defined]


def test_recording_change_reaches_everyone_and_failures_reach_moderators() -> None:
    """Everyone in the room is told recording is on or off; only moderators get the failure."""
    h = Harness()
    room = admitted(h)
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


def test_audit_stamps_use_the_injected_wall_clock() -> None:
    """Audit entries carry the injected wall clock as UTC ISO 8601 with Z."""
    h = Harness()
    h.wall = datetime(2026, 11, 23, 1, 2, 3, 456000, tzinfo=UTC)
    _, effects = h.join("dr-li", role="expert", moderator=True)
    (audit,) = [e.record for e in only(effects, Persist) if isinstance(e.record, AuditEntry)]  # type: ignore[attr-defined]
    assert audit.time == "2026-11-23T01:02:03.456Z"


def test_remove_without_ban_is_enforced_at_once_and_the_person_may_return() -> None:
    """remove with ban false closes the target (removed, 4403) with no ban written, the others
    are told, and the same token joins again."""
    h = Harness()
    mod, app, _, app_pid = admitted(h)
    effects = h.send(mod, m.Remove(participant_id=app_pid, reason="wrong patient", ban=False))
    assert bans(effects) == []
    assert error_of(effects, app).code == "removed"
    assert closes(effects, app) == [CloseCode.FORBIDDEN]
    (left,) = sent(effects, mod)
    assert isinstance(left, m.ParticipantLeft)
    assert left.reason == "removed"
    assert only(effects, MediaLeave)
    audits = [e.record for e in only(effects, Persist) if isinstance(e.record, AuditEntry)]  # type: ignore[attr-defined]
    assert [(a.action, a.detail.get("ban")) for a in audits] == [("removed", "false")]
    again = h.open()
    assert types(h.send(again, m.Join(token=token("dr-wang"))), again) == ["waiting"]


def test_remove_with_ban_still_waits_for_the_durable_ban() -> None:
    """remove with ban true (explicit) writes the ban first, as the default does."""
    h = Harness()
    mod, _, _, app_pid = admitted(h)
    effects = h.send(mod, m.Remove(participant_id=app_pid, ban=True))
    assert [type(e) for e in effects] == [Persist]
    assert len(bans(effects)) == 1


def test_deny_refuses_a_waiting_participant_with_the_message() -> None:
    """deny closes a waiting participant with the moderator's message; only moderators are
    told; someone in the room cannot be denied; a non-moderator cannot deny."""
    h = Harness()
    mod, _ = h.join("dr-li", role="expert", moderator=True)
    app, effects = h.join("dr-wang")
    pid = sent(effects, app)[0].participant_id  # type: ignore[union-attr]
    other, effects = h.join("dr-zhao")
    other_pid = sent(effects, other)[0].participant_id  # type: ignore[union-attr]
    h.send(mod, m.Admit(participant_id=other_pid))
    refused = h.send(other, m.Deny(participant_id=pid))
    assert error_of(refused, other).code == "forbidden"
    effects = h.send(mod, m.Deny(participant_id=pid, message="Please call the ward first"))
    error = error_of(effects, app)
    assert (error.code, error.reason) == ("denied", "Please call the ward first")
    assert closes(effects, app) == [CloseCode.FORBIDDEN]
    assert [(x.reason) for x in sent(effects, mod)] == ["denied"]  # type: ignore[union-attr]
    assert sent(effects, other) == []
    assert bans(effects) == []
    assert error_of(h.send(mod, m.Deny(participant_id=other_pid)), mod).code == "bad_state"


def test_admit_all_lets_every_waiting_participant_in() -> None:
    """admit_all admits each waiting participant (admitted + joined to each)."""
    h = Harness()
    mod, _ = h.join("dr-li", role="expert", moderator=True)
    waiting = [h.join(identity)[0] for identity in ("dr-wang", "dr-zhao", "dr-sun")]
    effects = h.send(mod, m.AdmitAll())
    for conn in waiting:
        assert types(effects, conn)[:2] == ["admitted", "joined"]
    assert len(only(effects, MediaJoin)) == 3
    assert error_of(h.send(waiting[0], m.AdmitAll()), waiting[0]).code == "forbidden"


def test_end_room_ends_everyone_with_room_ended_and_a_normal_close() -> None:
    """end_room: every connection, waiting ones too, gets room_ended then a 1000 close."""
    h = Harness()
    mod, app, mod_pid, _ = admitted(h)
    waiting, _ = h.join("dr-zhao")
    refused = h.send(app, m.EndRoom())
    assert error_of(refused, app).code == "forbidden"
    effects = h.send(mod, m.EndRoom())
    for conn in (mod, app, waiting):
        (first, *_) = sent(effects, conn)
        assert isinstance(first, m.RoomEnded)
        assert (first.by, first.name) == (mod_pid, "Dr-Li")
        assert closes(effects, conn) == [CloseCode.NORMAL]
    assert len(only(effects, MediaLeave)) == 2
    # The room is gone: the next person starts a new one and is not banned.
    again, effects = h.join("dr-li", role="expert", moderator=True)
    joined = sent(effects, again)[0]
    assert isinstance(joined, m.Joined)
    assert joined.participants == []


def test_raise_hand_reaches_everyone_and_shows_in_participant_info() -> None:
    """raise_hand is broadcast as hand and carried in the participant info of a late joiner."""
    h = Harness()
    mod, app, _, app_pid = admitted(h)
    effects = h.send(app, m.RaiseHand(raised=True))
    for conn in (mod, app):
        assert [(x.participant_id, x.raised) for x in sent(effects, conn)] == [(app_pid, True)]  # type: ignore[union-attr]
    late, effects = h.join("dr-zhao", role="expert", moderator=True)
    joined = sent(effects, late)[0]
    assert isinstance(joined, m.Joined)
    assert {p.identity: p.hand_raised for p in joined.participants}["dr-wang"] is True
    h.send(app, m.RaiseHand(raised=False))
    late2, effects = h.join("dr-sun", role="expert", moderator=True)
    joined = sent(effects, late2)[0]
    assert isinstance(joined, m.Joined)
    assert {p.identity: p.hand_raised for p in joined.participants}["dr-wang"] is False


def test_recording_policy_required_records_at_once_and_refuses_a_stop() -> None:
    """Under required, a new room is recorded at once, joined says so, and a stop is refused."""
    h = Harness(recording_policy="required")
    mod, effects = h.join("dr-li", role="expert", moderator=True)
    assert [(e.room_id, e.on) for e in only(effects, MediaRecord)] == [("r1", True)]  # type: ignore[union-attr]
    joined = sent(effects, mod)[0]
    assert isinstance(joined, m.Joined)
    assert joined.recording_policy == "required"
    refused = h.send(mod, m.SetRecording(on=False))
    assert error_of(refused, mod).code == "recording_required"
    assert only(refused, MediaRecord) == []
    app, effects = h.join("dr-wang")
    waiting = sent(effects, app)[0]
    assert isinstance(waiting, m.Waiting)
    assert waiting.recording_policy == "required"


def test_recording_policy_off_refuses_a_start() -> None:
    """Under off, no room is recorded and a moderator's start is refused."""
    h = Harness(recording_policy="off")
    mod, effects = h.join("dr-li", role="expert", moderator=True)
    assert only(effects, MediaRecord) == []
    refused = h.send(mod, m.SetRecording(on=True))
    assert error_of(refused, mod).code == "recording_off"
    assert only(refused, MediaRecord) == []
