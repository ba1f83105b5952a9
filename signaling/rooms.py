"""Rooms and media negotiation: join, waiting room, admission, removal, mutes, media.

Participants, rooms and their one transition table are :mod:`sessions.rooms`; this
module checks what a client may ask before applying an event, so a
:class:`~sessions.errors.TransitionError` here means a bug (reported to the client as
``internal`` and logged).

Design notes:

- Media calls are effects. Their results come back through ``Core.media_joined``,
  ``Core.media_answer``, ``Core.media_error``, and the backend's listener calls through
  ``Core.media_offer`` and friends. Each media session has a *generation*: reopening
  media (resume, takeover) increments it, and callbacks from an older generation are
  ignored, so a late ``track_ended`` from a closed session cannot touch the new one.
  The I/O layer runs the media effects of one participant in order.
- **A removal is durable before it is announced.** ``remove`` emits the
  :class:`~sessions.store.Ban` as a ``Persist`` with an ``ack`` and changes nothing
  else; when the I/O layer reports the write durable (``Core.persisted(ack, True)``),
  the ban is enforced: the identity's room connection and every viewer connection of
  it for that room are closed (``removed``, 4403), every later token of that identity
  for that room is refused (``banned``), and the others are told. If the write failed,
  the moderator gets ``store_failed`` and nothing is announced or enforced. While a
  removal is being recorded, a second ``remove`` of the same person gets ``bad_state``.
  ``remove`` with ``ban: false`` is not a ban: nothing needs to be durable first, so
  it is enforced at once (the person may come back with a valid token); ``deny`` is
  the same for someone in the waiting room, with the moderator's message.
- ``end_room`` ends every participant (``LEAVE``) with ``room_ended`` and a normal
  close; the room is forgotten when its last participant is.
- The recording policy is the server's: under ``required`` a new room is recorded at
  once and ``set_recording`` off is refused (``recording_required``); under ``off`` a
  start is refused (``recording_off``). ``joined`` and ``waiting`` carry the policy so
  that the client can say the consult is recorded before anyone speaks.
- Raised hands are presence, not history: kept here per participant id, forgotten
  when the participant is.
- A connection dropped or ended by the server (token expired, revoked) leaves its
  participant ``DISCONNECTED`` for the grace period, as any drop, so that the person
  may come back with a valid token; a waiting participant leaves the waiting room.
"""

from __future__ import annotations

from typing import Final

import msgspec

from sessions.rooms import FINAL, IN_MEDIA, PRESENT, Event, Participant, Room, State, Track
from sessions.store import Ban, RoomRecord
from sessions.tokens import TokenClaims
from signaling import messages as m
from signaling.access import Access
from signaling.connections import Conn, ConnEvent
from signaling.context import Context
from signaling.effects import (
    MediaAnswer,
    MediaCandidate,
    MediaJoin,
    MediaLeave,
    MediaOffer,
    MediaPause,
    MediaReceive,
    MediaRecord,
    Persist,
    Waiting,
)
from signaling.errors import ClientError
from signaling.messages import CloseCode, ErrorCode
from signaling.ports import PeerRole, TrackKind
from signaling.sdp import SdpCandidate, split_candidates
from signaling.viewing import Viewing, waiting_error

MAX_TRACKS_PER_PARTICIPANT: Final = 16

# The messages of an admitted participant that this module handles.
RoomMessage = (
    m.Offer
    | m.Answer
    | m.Candidate
    | m.Publish
    | m.Unpublish
    | m.Mute
    | m.Unmute
    | m.Receive
    | m.Admit
    | m.Remove
    | m.Deny
    | m.AdmitAll
    | m.EndRoom
    | m.RaiseHand
    | m.SetRecording
)


def track_info(track: Track) -> m.TrackInfo:
    """A track as others see it."""
    return m.TrackInfo(
        track_id=track.track_id,
        kind=track.kind,
        stream_id=track.stream_id,
        source=track.source,
        muted=track.muted,
    )


def trickle(pc: PeerRole, candidates: list[SdpCandidate]) -> list[m.ServerCandidate]:
    """The ``candidate`` messages that follow a server description, end marker last."""
    messages = [
        m.ServerCandidate(
            pc=pc,
            candidate=c.candidate,
            sdp_mid=c.sdp_mid,
            sdp_mline_index=c.sdp_mline_index,
        )
        for c in candidates
    ]
    return [*messages, m.ServerCandidate(pc=pc)]


def removed_error() -> ClientError:
    """What a removed person's connections are told before they close."""
    return ClientError(ErrorCode.REMOVED, "removed by a moderator", CloseCode.FORBIDDEN)


class Rooms:
    """Rooms, participants and their media sessions."""

    def __init__(self, ctx: Context, access: Access, viewing: Viewing) -> None:
        self.ctx = ctx
        self.access = access
        self.viewing = viewing
        self._recording: dict[str, bool] = {}  # room id -> being recorded
        self._removing: set[tuple[str, str]] = set()  # (room, identity) being recorded
        self._hands: set[str] = set()  # participant ids with a raised hand
        self._audio_only: set[str] = set()  # participant ids receiving no video

    # ------------------------------------------------------------------ join and resume

    def join(self, c: Conn, claims: TokenClaims) -> None:
        """A verified ``join``: enter, wait, resume or take over."""
        ctx = self.ctx
        room = ctx.rooms.get(claims.room)
        if room is None:
            room = ctx.rooms[claims.room] = Room(
                room_id=claims.room, waiting_room=ctx.config.waiting_room
            )
            ctx.emit(Persist(RoomRecord(room=claims.room, time=ctx.now_iso())))
            if ctx.config.recording_policy == "required":
                ctx.emit(MediaRecord(claims.room, True))
                ctx.audit(claims.room, "server", "recording", detail={"on": "true"})
        ctx.authenticate(c, claims, ConnEvent.JOIN)
        existing = room.by_identity(claims.identity)
        if existing is not None:
            self._take_over(c, existing, claims, room)
            return
        p = Participant.from_claims(claims, ctx.make_id("p"), ctx.make_id("r"))
        room.add(p)
        ctx.participants[p.participant_id] = p
        ctx.attach(c, p)
        # The participant id names the person in media records (recording manifests).
        ctx.audit(
            room.room_id,
            p.identity,
            "join",
            detail={"role": p.role, "participant_id": p.participant_id, "name": p.name},
        )
        if room.needs_admission(p):
            p.apply(Event.WAIT)
            self._wait(c, p, room)
            for moderator in room.moderators():
                ctx.send_to(moderator, m.ParticipantWaiting(participant=self.info(p)))
        else:
            p.apply(Event.ADMIT)
            self._enter(p, room, resumed=False)

    def _wait(self, c: Conn, p: Participant, room: Room) -> None:
        """``p`` is in the waiting room: it sees nothing, moderators see it (and the
        server may tell those who are not in the room yet: :class:`Waiting`)."""
        self.viewing.end_watchers(p.identity, room.room_id, waiting_error())
        self.ctx.send(c, self._waiting(p))
        self.ctx.emit(Waiting(room.room_id, p.identity, p.name))

    def _take_over(self, c: Conn, p: Participant, claims: TokenClaims, room: Room) -> None:
        """A newer connection for a live identity: the newer wins (resume or takeover)."""
        ctx = self.ctx
        old = ctx.conn_of.get(p.participant_id)
        if old is not None:
            ctx.refuse(
                old,
                ClientError(
                    ErrorCode.REPLACED, "replaced by a newer connection", CloseCode.REPLACED
                ),
            )
            ctx.detach(old)
        was = p.state
        if was in IN_MEDIA:
            self._end_media(p)
        p.reclaim(claims)
        p.apply(Event.RESUME)
        p.disconnected_at_s = None
        ctx.attach(c, p)
        ctx.audit(
            room.room_id,
            p.identity,
            "resume",
            detail={"from": was.value, "participant_id": p.participant_id},
        )
        if p.state is State.WAITING:
            self._wait(c, p, room)
            return
        if was is State.DISCONNECTED:
            ctx.broadcast(
                p, m.ParticipantState(participant_id=p.participant_id, state="joined"), skip=p
            )
        self._enter(p, room, resumed=True, announce=False)

    def _enter(self, p: Participant, room: Room, *, resumed: bool, announce: bool = True) -> None:
        """Tell ``p`` it is in (joined), tell the others, open its media."""
        ctx = self.ctx
        c = ctx.conn_of[p.participant_id]
        ice_servers = ctx.ice_servers(p.identity)
        others = [self.info(o) for o in room.present() if o is not p]
        joined = m.Joined(
            version=m.PROTOCOL_VERSION,
            participant_id=p.participant_id,
            identity=p.identity,
            name=p.name,
            room=room.room_id,
            role=p.role,
            permissions=sorted(p.permissions),
            ice_servers=[msgspec.convert(s, m.IceServer) for s in ice_servers],
            participants=others,
            resume_id=p.resume_id,
            grace_s=ctx.config.grace_s,
            resumed=resumed,
            recording=self._recording.get(room.room_id, False),
            recording_policy=ctx.config.recording_policy,
        )
        ctx.send(c, joined)
        if announce:
            ctx.broadcast(p, m.ParticipantJoined(participant=self.info(p)), skip=p)
        if p.moderator:
            for waiting in room.waiting():
                ctx.send(c, m.ParticipantWaiting(participant=self.info(waiting)))
        p.media_generation += 1
        ctx.emit(
            MediaJoin(c.conn_id, p.participant_id, room.room_id, p.media_generation, ice_servers)
        )
        # A fresh media session forwards everything: mutes made before it (or while
        # disconnected) are applied again, after the join in the participant's lane.
        for kind in ("audio", "video"):
            if p.muted[kind]:
                ctx.emit(MediaPause(p.participant_id, kind, True))
        if p.participant_id in self._audio_only:
            ctx.emit(MediaReceive(p.participant_id, "video", False))

    # ------------------------------------------------------------------ messages

    def handle(self, c: Conn, p: Participant, message: RoomMessage) -> None:
        """A room message from an admitted participant."""
        ctx = self.ctx
        match message:
            case m.Offer(pc=pc, sdp=sdp, ref=ref):
                if pc != "publish":
                    raise ClientError(ErrorCode.BAD_STATE, "clients offer on publish only")
                self._require(p, "publish")
                ctx.emit(MediaOffer(c.conn_id, p.participant_id, pc, sdp, ref))
            case m.Answer(pc=pc, sdp=sdp, ref=ref):
                if pc != "subscribe":
                    raise ClientError(ErrorCode.BAD_STATE, "clients answer on subscribe only")
                ctx.emit(MediaAnswer(c.conn_id, p.participant_id, pc, sdp, ref))
            case m.Candidate():
                ctx.emit(
                    MediaCandidate(
                        c.conn_id,
                        p.participant_id,
                        message.pc,
                        message.candidate,
                        message.sdp_mid,
                        message.sdp_mline_index,
                        message.ref,
                    )
                )
            case m.Publish(track_id=track_id, source=source):
                self._require(p, "publish")
                if track_id not in p.sources and len(p.sources) >= MAX_TRACKS_PER_PARTICIPANT:
                    raise ClientError(ErrorCode.BAD_MESSAGE, "too many tracks")
                p.sources[track_id] = source
                if track_id in p.tracks:
                    p.tracks[track_id].source = source
            case m.Unpublish(track_id=track_id):
                p.sources.pop(track_id, None)
            case m.Mute(kind=kind, participant_id=target_id):
                self._mute(p, kind, target_id)
            case m.Unmute(kind=kind):
                self._set_muted(p, kind, muted=False, by=p)
            case m.Receive(video=video):
                if video:
                    self._audio_only.discard(p.participant_id)
                else:
                    self._audio_only.add(p.participant_id)
                ctx.emit(MediaReceive(p.participant_id, "video", video))
            case m.Admit(participant_id=target_id):
                self._admit(p, target_id)
            case m.Remove(participant_id=target_id, reason=reason, ref=ref, ban=True):
                self._request_removal(p, target_id, reason or "", ref)
            case m.Remove(participant_id=target_id, reason=reason):
                self._remove_now(p, target_id, reason or "")
            case m.Deny(participant_id=target_id, message=text):
                self._deny(p, target_id, text or "")
            case m.AdmitAll():
                self._require(p, "moderate")
                for waiting in list(ctx.rooms[p.room_id].waiting()):
                    self._admit(p, waiting.participant_id)
            case m.EndRoom():
                self._end_room(p)
            case m.RaiseHand(raised=raised):
                if raised:
                    self._hands.add(p.participant_id)
                else:
                    self._hands.discard(p.participant_id)
                ctx.broadcast(p, m.Hand(participant_id=p.participant_id, raised=raised))
            case m.SetRecording(on=on):
                self._require(p, "moderate")
                policy = ctx.config.recording_policy
                if policy == "required" and not on:
                    raise ClientError(
                        ErrorCode.RECORDING_REQUIRED,
                        "this server records every consult; recording cannot be stopped",
                    )
                if policy == "off" and on:
                    raise ClientError(ErrorCode.RECORDING_OFF, "recording is off on this server")
                ctx.emit(MediaRecord(p.room_id, on))
                ctx.audit(p.room_id, p.identity, "recording", detail={"on": str(on).lower()})

    def leave(self, c: Conn, p: Participant) -> None:
        """``leave``: gone for good, closed with 1000."""
        was = p.state
        p.apply(Event.LEAVE)
        if was in IN_MEDIA:
            self._end_media(p)
        self.ctx.detach(c)
        self.ctx.close(c, CloseCode.NORMAL, "left")
        self._gone(p, "left", actor=p.identity, waiting=was is State.WAITING)

    # ------------------------------------------------------------------ moderator actions

    def _target(self, actor: Participant, target_id: str) -> Participant:
        target = self.ctx.participants.get(target_id)
        if target is None or target.room_id != actor.room_id or target.state in FINAL:
            raise ClientError(ErrorCode.NOT_FOUND, "no such participant in this room")
        return target

    def _admit(self, actor: Participant, target_id: str) -> None:
        self._require(actor, "moderate")
        target = self._target(actor, target_id)
        if target.state is not State.WAITING:
            raise ClientError(ErrorCode.BAD_STATE, "that participant is not waiting")
        target.apply(Event.ADMIT)
        self.ctx.audit(actor.room_id, actor.identity, "admit", target=target.identity)
        self.ctx.send_to(target, m.Admitted(by=actor.participant_id))
        self._enter(target, self.ctx.rooms[actor.room_id], resumed=False)

    def _request_removal(
        self, actor: Participant, target_id: str, reason: str, ref: str | None
    ) -> None:
        """``remove``: write the ban; enforce and announce it once it is durable."""
        self._require(actor, "moderate")
        target = self._target(actor, target_id)
        if target is actor:
            raise ClientError(ErrorCode.BAD_STATE, "use leave to leave")
        key = (target.room_id, target.identity)
        if key in self._removing:
            raise ClientError(ErrorCode.BAD_STATE, "that participant's removal is being recorded")
        ban = Ban(
            jti=target.jti,
            room=target.room_id,
            identity=target.identity,
            by=actor.identity,
            reason=reason,
            time=self.ctx.now_iso(),
        )
        self._removing.add(key)
        actor_id = actor.participant_id

        def recorded(ok: bool) -> None:
            self._removing.discard(key)
            if ok:
                self.enforce_ban(ban)
                return
            moderator = self.ctx.participants.get(actor_id)
            if moderator is not None:
                self.ctx.stats.errors[ErrorCode.STORE_FAILED.value] += 1
                failed = m.Error(
                    code=ErrorCode.STORE_FAILED.value,
                    reason="the removal could not be recorded; nobody was removed",
                    ref=ref,
                )
                self.ctx.send_to(moderator, failed)

        self.ctx.persist_then(ban, recorded)

    def _remove_now(self, actor: Participant, target_id: str, reason: str) -> None:
        """``remove`` without a ban: end the participant's presence now, ban nobody."""
        self._require(actor, "moderate")
        target = self._target(actor, target_id)
        if target is actor:
            raise ClientError(ErrorCode.BAD_STATE, "use leave to leave")
        self._end_participant(
            target,
            removed_error(),
            "removed",
            actor=actor.identity,
            detail={"reason": reason, "ban": "false"},
        )

    def _deny(self, actor: Participant, target_id: str, text: str) -> None:
        """``deny``: refuse a waiting participant with the moderator's message."""
        self._require(actor, "moderate")
        target = self._target(actor, target_id)
        if target.state is not State.WAITING:
            raise ClientError(ErrorCode.BAD_STATE, "that participant is not waiting")
        error = ClientError(ErrorCode.DENIED, text or "not admitted", CloseCode.FORBIDDEN)
        self._end_participant(target, error, "denied", actor=actor.identity)

    def _end_participant(
        self,
        target: Participant,
        error: ClientError,
        reason: m.LeaveReason,
        *,
        actor: str,
        detail: dict[str, str] | None = None,
        audit: bool = True,
    ) -> None:
        """``target`` is removed by a moderator: close it with ``error``, tell the room."""
        was = target.state
        target.apply(Event.REMOVE)
        if was in IN_MEDIA:
            self._end_media(target)
        tc = self.ctx.conn_of.get(target.participant_id)
        if tc is not None:
            self.ctx.refuse(tc, error)
            self.ctx.detach(tc)
        waiting = was is State.WAITING
        self._gone(target, reason, actor=actor, waiting=waiting, detail=detail, audit=audit)

    def _end_room(self, actor: Participant) -> None:
        """``end_room``: every participant leaves, each told ``room_ended``."""
        self._require(actor, "moderate")
        ctx = self.ctx
        room = ctx.rooms[actor.room_id]
        ended = m.RoomEnded(by=actor.participant_id, name=actor.name)
        ctx.audit(room.room_id, actor.identity, "room_ended")
        if self._recording.get(room.room_id, False):
            ctx.emit(MediaRecord(room.room_id, False))
        everyone = [p for p in room.participants.values() if p.state not in FINAL]
        # Everyone hears that the consult ended before anyone's departure.
        for p in everyone:
            ctx.send_to(p, ended)
        for p in everyone:
            was = p.state
            p.apply(Event.LEAVE)
            if was in IN_MEDIA:
                self._end_media(p)
            c = ctx.conn_of.get(p.participant_id)
            if c is not None:
                ctx.detach(c)
                ctx.close(c, CloseCode.NORMAL, "ended")
            self._gone(p, "ended", actor=actor.identity, waiting=was is State.WAITING, audit=False)

    def enforce_ban(self, ban: Ban, *, audit: bool = True) -> None:
        """A durable ban: refuse its token and identity from now on, end every connection
        of that identity in that room, tell the room.

        ``audit=False`` for a ban another node wrote and audited already.
        """
        self.access.add_ban(ban)
        self.viewing.end_watchers(ban.identity, ban.room, removed_error())
        room = self.ctx.rooms.get(ban.room)
        target = None if room is None else room.by_identity(ban.identity)
        if target is None:  # gone meanwhile: the ban stands, there is nobody to tell
            if audit:
                self.ctx.audit(
                    ban.room, ban.by, "removed", target=ban.identity, detail={"reason": ban.reason}
                )
            return
        self._end_participant(
            target,
            removed_error(),
            "removed",
            actor=ban.by,
            detail={"reason": ban.reason},
            audit=audit,
        )

    def _mute(self, actor: Participant, kind: TrackKind, target_id: str | None) -> None:
        if target_id is None or target_id == actor.participant_id:
            self._set_muted(actor, kind, muted=True, by=actor)
            return
        self._require(actor, "moderate")
        target = self._target(actor, target_id)
        if target.state not in PRESENT:
            raise ClientError(ErrorCode.BAD_STATE, "that participant is not in the room")
        self._set_muted(target, kind, muted=True, by=actor)

    def _set_muted(self, p: Participant, kind: TrackKind, *, muted: bool, by: Participant) -> None:
        p.muted[kind] = muted
        for track in p.tracks.values():
            if track.kind == kind:
                track.muted = muted
        if p.state in IN_MEDIA:
            self.ctx.emit(MediaPause(p.participant_id, kind, muted))
        self.ctx.audit(
            p.room_id,
            by.identity,
            "mute" if muted else "unmute",
            target=p.identity,
            detail={"kind": kind},
        )
        self.ctx.broadcast(
            p,
            m.Muted(participant_id=p.participant_id, kind=kind, muted=muted, by=by.participant_id),
        )

    # ------------------------------------------------------------------ drops and time

    def drop(self, c: Conn, now_s: float) -> None:
        """``c`` no longer speaks for its participant (gone, expired, revoked).

        A waiting participant leaves the waiting room; one in the room is kept
        ``DISCONNECTED`` for the grace period.
        """
        p = c.participant
        if p is None:
            return
        ctx = self.ctx
        ctx.detach(c)
        if p.state is State.WAITING:
            p.apply(Event.DISCONNECT)
            self._gone(p, "disconnected", actor=p.identity, waiting=True)
        elif p.state in IN_MEDIA:
            p.apply(Event.DISCONNECT)
            p.disconnected_at_s = now_s
            self._end_media(p)
            ctx.broadcast(
                p, m.ParticipantState(participant_id=p.participant_id, state="disconnected")
            )
            ctx.audit(p.room_id, p.identity, "disconnect")

    def tick(self, now_s: float) -> None:
        """End the grace periods that are over."""
        for p in list(self.ctx.participants.values()):
            if (
                p.state is State.DISCONNECTED
                and p.disconnected_at_s is not None
                and now_s - p.disconnected_at_s >= self.ctx.config.grace_s
            ):
                p.apply(Event.EXPIRE)
                self._gone(p, "timeout", actor="server")

    def _gone(
        self,
        p: Participant,
        reason: m.LeaveReason,
        *,
        actor: str,
        waiting: bool = False,
        detail: dict[str, str] | None = None,
        audit: bool = True,
    ) -> None:
        """``p`` reached a final state: forget it and tell whoever knew of it.

        A participant that was still ``waiting`` was known to the moderators only.
        """
        ctx = self.ctx
        room = ctx.rooms[p.room_id]
        room.discard(p)
        ctx.participants.pop(p.participant_id, None)
        self._hands.discard(p.participant_id)
        self._audio_only.discard(p.participant_id)
        left = m.ParticipantLeft(
            participant_id=p.participant_id, identity=p.identity, reason=reason
        )
        if waiting:
            for moderator in room.moderators():
                ctx.send_to(moderator, left)
        else:
            ctx.broadcast(p, left, skip=p)
        if audit:
            ctx.audit(p.room_id, actor, reason, target=p.identity, detail=detail)
        if not room.participants:
            del ctx.rooms[room.room_id]

    def _end_media(self, p: Participant) -> None:
        """Close ``p``'s media session; its tracks end for everyone."""
        self.ctx.emit(MediaLeave(p.participant_id))
        for track_id in list(p.tracks):
            self.ctx.broadcast(
                p, m.TrackEnded(participant_id=p.participant_id, track_id=track_id), skip=p
            )
        p.tracks.clear()
        # Late callbacks from the closed session must not touch the next one.
        p.media_generation += 1

    # ------------------------------------------------------------------ media results

    def current(self, participant_id: str, generation: int) -> Participant | None:
        """The participant whose media session of ``generation`` is still open."""
        p = self.ctx.participants.get(participant_id)
        if p is None or p.media_generation != generation or p.state not in IN_MEDIA:
            return None
        return p

    def media_joined(self, participant_id: str, generation: int) -> None:
        """The media session of ``generation`` is open."""
        p = self.current(participant_id, generation)
        if p is not None and p.state is State.ADMITTED:
            p.apply(Event.MEDIA_READY)

    def media_answer(self, conn: int, participant_id: str, sdp: str, ref: str | None) -> None:
        """The backend answered the client's publish offer."""
        c = self.ctx.conn_of.get(participant_id)
        if c is not None and c.conn_id == conn:
            description, candidates = split_candidates(sdp)
            self.ctx.send(c, m.ServerAnswer(pc="publish", sdp=description, ref=ref))
            for message in trickle("publish", candidates):
                self.ctx.send(c, message)

    def media_offer(self, participant_id: str, generation: int, pc: PeerRole, sdp: str) -> None:
        """The backend offers to the client (subscribe)."""
        p = self.current(participant_id, generation)
        if p is not None:
            description, candidates = split_candidates(sdp)
            self.ctx.send_to(p, m.ServerOffer(pc=pc, sdp=description))
            for message in trickle(pc, candidates):
                self.ctx.send_to(p, message)

    def media_track_published(
        self, participant_id: str, generation: int, track_id: str, kind: TrackKind, stream_id: str
    ) -> None:
        """The participant's publish connection carries a new track."""
        p = self.current(participant_id, generation)
        if p is None:
            return
        source = p.sources.get(track_id, "microphone" if kind == "audio" else "camera")
        track = Track(
            track_id=track_id, kind=kind, stream_id=stream_id, source=source, muted=p.muted[kind]
        )
        p.tracks[track_id] = track
        self.ctx.broadcast(
            p, m.TrackPublished(participant_id=p.participant_id, track=track_info(track)), skip=p
        )

    def media_track_ended(self, participant_id: str, generation: int, track_id: str) -> None:
        """The participant's track is gone."""
        p = self.current(participant_id, generation)
        if p is not None and p.tracks.pop(track_id, None) is not None:
            self.ctx.broadcast(
                p, m.TrackEnded(participant_id=p.participant_id, track_id=track_id), skip=p
            )

    def media_connection_state(
        self, participant_id: str, generation: int, pc: PeerRole, state: str
    ) -> None:
        """A peer connection state change, passed on to the client."""
        p = self.current(participant_id, generation)
        if p is not None:
            self.ctx.send_to(p, m.MediaState(pc=pc, state=state))

    def recording_changed(self, room_id: str, on: bool, error: str | None) -> None:
        """The room's recording started or stopped: tell everyone, and moderators why."""
        self._recording[room_id] = on
        room = self.ctx.rooms.get(room_id)
        for p in room.participants.values() if room is not None else ():
            if p.state in IN_MEDIA:
                self.ctx.send_to(p, m.RecordingEvent(on=on, error=error))
                if error is not None and p.moderator:
                    failed = m.Error(code=ErrorCode.RECORDING_FAILED.value, reason=error)
                    self.ctx.send_to(p, failed)

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _require(p: Participant, permission: str) -> None:
        if permission not in p.permissions:
            raise ClientError(ErrorCode.FORBIDDEN, f"your token does not grant {permission}")

    def info(self, p: Participant) -> m.ParticipantInfo:
        """A participant as others see it."""
        state: m.ParticipantStateName = (
            "waiting"
            if p.state is State.WAITING
            else "disconnected"
            if p.state is State.DISCONNECTED
            else "joined"
        )
        return m.ParticipantInfo(
            participant_id=p.participant_id,
            identity=p.identity,
            name=p.name,
            role=p.role,
            state=state,
            moderator=p.moderator,
            audio_muted=p.muted["audio"],
            video_muted=p.muted["video"],
            tracks=[track_info(t) for t in p.tracks.values()],
            hand_raised=p.participant_id in self._hands,
        )

    def _waiting(self, p: Participant) -> m.Waiting:
        return m.Waiting(
            version=m.PROTOCOL_VERSION,
            participant_id=p.participant_id,
            room=p.room_id,
            resume_id=p.resume_id,
            grace_s=self.ctx.config.grace_s,
            recording_policy=self.ctx.config.recording_policy,
        )
