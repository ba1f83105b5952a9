"""The server side of WebRTC: one pair of aiortc peer connections per participant.

Model (LiveKit's, stated in ``signaling/ports.py``): a participant *publishes* on a
connection where the client offers and the server answers, and *subscribes* on a
second one where only the server offers, so there is never glare. Every track
received on a publish connection is forwarded, through a :class:`Forwarder`, to the
subscribe connection of every other participant in the room.

Design notes
------------
- Subscriptions are desired state: each session keeps ``wanted`` (the sources it
  should receive). Tracks arriving or leaving only edit ``wanted`` and feed a
  ``CHANGE`` into the offer state machine of :mod:`media.negotiation`; the
  transceivers are reconciled with ``wanted`` right before each offer. So any number
  of changes while an offer is in flight collapse into one next offer, and a
  transceiver is never added while aiortc matches an answer to its offer.
- A transceiver whose track went away is set ``inactive`` and reused (same kind) once
  the client has answered that, so that a consult with people coming and going does
  not grow its SDP without bound.
- Each subscribed sender offers ``a=msid:<publisher stream id> <track id>``: the
  publisher's stream id is announced through
  :meth:`MediaListener.track_published`, so that the client can tell whose video a
  received stream is.
- Published tracks are derived from the publish connection after each client offer
  (a transceiver receiving is a published track; one that stopped receiving is an
  unpublished one), so publish and unpublish need no message of their own.
- aiortc does not trickle: it gathers before it answers or offers, so server
  candidates travel inside the SDP. Client candidates that arrive before the
  description they belong to are held and applied after it.
- ``media/`` imports nothing of ours outside ``media/`` (DESIGN.md):
  :class:`MediaListener` restates, structurally, the listener Protocol of
  ``signaling/ports.py``, and :class:`Sfu` satisfies its ``MediaBackend``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from aiortc import (
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError

from media.aiortc_compat import IcePolicy, IceServerDict, is_closed, rtc_configuration, set_msid
from media.exceptions import (
    InvalidSdpError,
    ParticipantExistsError,
    RecordingError,
    UnknownParticipantError,
    UnknownTransceiverError,
    WrongPeerError,
)
from media.forwarder import Forwarder
from media.negotiation import OfferEvent, OfferState, step
from media.passthrough import Packet, PassthroughForwarder
from media.recorder import Recorder
from media.sdp import MAX_SDP_BYTES, check_description, parse_candidate

logger = logging.getLogger(__name__)

PeerRole = Literal["publish", "subscribe"]
TrackKind = Literal["audio", "video"]

# What aiortc raises for a description it refuses.
_APPLY_ERRORS = (ValueError, InvalidStateError, InvalidAccessError, OperationError, InternalError)
# An msid-id token (RFC 8830); anything else from a client is replaced by our own id.
_MSID_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~]{1,64}")
_RECEIVING = ("recvonly", "sendrecv")


class MediaListener(Protocol):
    """Calls the SFU makes for one participant (``signaling.ports.MediaListener``)."""

    async def send_offer(self, pc: PeerRole, sdp: str) -> None:
        """Send a server-initiated offer (always on ``"subscribe"``) to the client."""

    async def track_published(self, track_id: str, kind: TrackKind, stream_id: str) -> None:
        """The participant's publish connection now carries a track."""

    async def track_ended(self, track_id: str) -> None:
        """The participant stopped publishing the track."""

    async def connection_state(self, pc: PeerRole, state: str) -> None:
        """An RTCPeerConnection state change (``connected``, ``failed``, ...)."""


@dataclass(eq=False)
class _Source:
    """A track received on a publish connection."""

    source_id: str
    participant_id: str
    track_id: str
    kind: TrackKind
    stream_id: str


@dataclass(eq=False)
class _Session:
    """One participant's two connections and what flows over them."""

    room_id: str
    participant_id: str
    listener: MediaListener
    stream_id: str
    publish: RTCPeerConnection
    subscribe: RTCPeerConnection
    published: dict[str, _Source] = field(default_factory=dict)  # by publish mid
    wanted: dict[str, _Source] = field(default_factory=dict)  # by source id
    sending: dict[str, RTCRtpTransceiver] = field(default_factory=dict)  # by source id
    offer_state: OfferState = OfferState.STABLE
    segment: int = 0  # how many earlier sessions the participant had in the room
    paused: set[TrackKind] = field(default_factory=set)
    refused: set[TrackKind] = field(default_factory=set)  # kinds it receives none of
    held_candidates: dict[PeerRole, list[tuple[str, str | None, int | None]]] = field(
        default_factory=lambda: {"publish": [], "subscribe": []}
    )
    # One per connection: the subscribe offer of a joiner is built while its publish
    # offer is answered.
    locks: dict[PeerRole, asyncio.Lock] = field(
        default_factory=lambda: {"publish": asyncio.Lock(), "subscribe": asyncio.Lock()}
    )

    def pc(self, role: PeerRole) -> RTCPeerConnection:
        return self.publish if role == "publish" else self.subscribe


class Sfu:
    """Selective forwarding over aiortc, satisfying ``signaling.ports.MediaBackend``.

    Parameters
    ----------
    ice_transport_policy
        ``"relay"`` restricts the server's own ICE candidates to TURN relays (for
        deployments where only the TURN server is reachable, and for tests).
    video_codecs
        MIME types offered to subscribers, in order of preference.
    forwarder
        How media moves from publishers to subscribers; default
        :class:`media.passthrough.PassthroughForwarder` (no decode, no encode).
    max_sdp_bytes
        Larger client SDP is refused.
    record
        Record every room (a hospital's policy, ``teleconsult serve --record``);
        otherwise rooms are recorded while :meth:`set_recording` says so.
    data_dir
        Where recordings go (``<data_dir>/recordings/``); without it, nothing is
        recorded and :meth:`set_recording` raises.
    on_recording
        ``on_recording(room_id, on, error)`` whenever a room's recording starts
        (``True``), stops (``False``) or fails (``False`` and the reason): what
        signaling announces to the room and reports to moderators.
    """

    def __init__(
        self,
        *,
        ice_transport_policy: IcePolicy = "all",
        video_codecs: Sequence[str] = ("video/VP8", "video/H264"),
        forwarder: Forwarder | None = None,
        max_sdp_bytes: int = MAX_SDP_BYTES,
        record: bool = False,
        data_dir: Path | str | None = None,
        on_recording: Callable[[str, bool, str | None], None] | None = None,
    ) -> None:
        self._policy: IcePolicy = ice_transport_policy
        self._video_codecs = tuple(video_codecs)
        self._forwarder: Forwarder = forwarder if forwarder is not None else PassthroughForwarder()
        self._max_sdp_bytes = max_sdp_bytes
        self._sessions: dict[str, _Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Recording
        self._record_all = record
        self._recording_rooms: set[str] = set()  # consent given (or record_all)
        self._segments: dict[tuple[str, str], int] = {}  # sessions so far per participant
        self.on_recording = on_recording
        self._recorder: Recorder | None = None
        if data_dir is not None:
            self._recorder = Recorder(data_dir, on_error=self._recording_failed)
        elif record:
            raise ValueError("record=True needs a data_dir")
        if isinstance(self._forwarder, PassthroughForwarder):
            self._forwarder.on_frame = self._on_frame

    # MediaBackend

    async def join(
        self,
        room_id: str,
        participant_id: str,
        listener: MediaListener,
        ice_servers: list[IceServerDict],
    ) -> None:
        """Open the participant's media session; subscribe it to the room's tracks.

        Raises
        ------
        ParticipantExistsError
            When the participant already has a session (``leave`` it first).
        InvalidIceServerError
            For an unusable entry of ``ice_servers``.
        """
        if participant_id in self._sessions:
            raise ParticipantExistsError(f"participant {participant_id!r} already joined")
        configuration = rtc_configuration(ice_servers, self._policy)
        segment = self._segments.get((room_id, participant_id), 0)
        self._segments[(room_id, participant_id)] = segment + 1
        session = _Session(
            room_id=room_id,
            participant_id=participant_id,
            listener=listener,
            stream_id=uuid.uuid4().hex,
            publish=RTCPeerConnection(configuration),
            subscribe=RTCPeerConnection(configuration),
            segment=segment,
        )
        for role in ("publish", "subscribe"):
            self._watch_state(session, role)
        self._sessions[participant_id] = session
        for other in self._room(room_id, but=session):
            for source in other.published.values():
                if source.kind not in session.refused:
                    session.wanted[source.source_id] = source
        if session.wanted:
            self._change(session)
        if self._record_all:
            self._recording_rooms.add(room_id)
        if room_id in self._recording_rooms:
            self._start_recording(room_id)
        logger.info("media session opened for %s in room %s", participant_id, room_id)

    async def offer(self, participant_id: str, pc: PeerRole, sdp: str) -> str:
        """Apply a client offer on ``"publish"`` and return the server's answer SDP.

        Raises
        ------
        WrongPeerError
            For an offer on ``"subscribe"`` (only the server offers there).
        InvalidSdpError
            For SDP that is malformed or cannot be applied.
        UnknownParticipantError
            When the participant has no session.
        """
        session = self._checked(participant_id, pc, "publish", sdp)
        connection = session.publish
        async with session.locks["publish"]:
            await self._apply(session, "publish", RTCSessionDescription(sdp, "offer"))
            await connection.setLocalDescription(await connection.createAnswer())
            answer = connection.localDescription.sdp
        await self._sync_published(session)
        return str(answer)

    async def answer(self, participant_id: str, pc: PeerRole, sdp: str) -> None:
        """Apply the client's answer to the server's offer on ``"subscribe"``.

        Raises
        ------
        WrongPeerError
            For an answer on ``"publish"`` (the server never offers there).
        InvalidSdpError
            For SDP that is malformed, cannot be applied, or answers no offer.
        UnknownParticipantError
            When the participant has no session.
        """
        session = self._checked(participant_id, pc, "subscribe", sdp)
        async with session.locks["subscribe"]:
            if session.subscribe.signalingState != "have-local-offer":
                raise InvalidSdpError("no server offer is awaiting an answer")
            await self._apply(session, "subscribe", RTCSessionDescription(sdp, "answer"))
            session.offer_state, send_offer = step(session.offer_state, OfferEvent.ANSWER)
        if send_offer:
            self._spawn(self._send_offer(session))

    async def candidate(
        self,
        participant_id: str,
        pc: PeerRole,
        candidate: str | None,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        """Add a trickled client candidate (``None`` or ``""`` ends candidates).

        Raises
        ------
        UnknownTransceiverError
            For a candidate naming no m-section of the current description.
        InvalidSdpError
            For a candidate line that does not parse.
        UnknownParticipantError
            When the participant has no session.
        """
        session = self._session(participant_id)
        parsed = parse_candidate(candidate, sdp_mid, sdp_mline_index)
        connection = session.pc(pc)
        # aiortc types remoteDescription as never None, but it is before the first one.
        remote: RTCSessionDescription | None = connection.remoteDescription
        if remote is None:
            # The client trickles as soon as it has a local description; ours may not
            # have been applied yet (publish) or its answer may still be in flight.
            # End-of-candidates is held too, and replayed in order.
            session.held_candidates[pc].append((candidate or "", sdp_mid, sdp_mline_index))
            return
        if parsed is not None:
            mids = [t.mid for t in connection.getTransceivers() if t.mid is not None]
            by_mid = sdp_mid is not None and sdp_mid in mids
            by_index = sdp_mid is None and sdp_mline_index is not None
            if not by_mid and not (by_index and 0 <= (sdp_mline_index or 0) < len(mids)):
                raise UnknownTransceiverError(
                    f"no transceiver for sdpMid={sdp_mid!r} sdpMLineIndex={sdp_mline_index!r}"
                )
        await connection.addIceCandidate(parsed)

    async def set_paused(self, participant_id: str, kind: TrackKind, paused: bool) -> None:
        """Stop (``True``) or resume forwarding the participant's ``kind`` tracks."""
        session = self._session(participant_id)
        if paused:
            session.paused.add(kind)
        else:
            session.paused.discard(kind)
        for source in session.published.values():
            if source.kind == kind:
                self._forwarder.set_paused(source.source_id, paused)
        if kind == "video" and self._recorder is not None:
            self._recorder.set_camera_off(session.room_id, participant_id, paused)

    async def set_receiving(self, participant_id: str, kind: TrackKind, receiving: bool) -> None:
        """Send the participant others' ``kind`` tracks again, or none of them (audio only).

        Only ``wanted`` changes: the next subscribe offer frees the transceivers of the
        tracks dropped (or fills them again), on the same connection, so sound goes on
        without a gap and nothing reconnects.
        """
        session = self._session(participant_id)
        before = set(session.wanted)
        if receiving:
            session.refused.discard(kind)
            for other in self._room(session.room_id, but=session):
                for source in other.published.values():
                    if source.kind == kind:
                        session.wanted[source.source_id] = source
        else:
            session.refused.add(kind)
            for source_id in [i for i, s in session.wanted.items() if s.kind == kind]:
                del session.wanted[source_id]
        if set(session.wanted) != before:
            self._change(session)

    async def leave(self, participant_id: str) -> None:
        """Close the participant's session and remove its tracks from every subscriber.

        Leaving twice, or without having joined, does nothing.
        """
        session = self._sessions.pop(participant_id, None)
        if session is None:
            return
        for source in session.published.values():
            self._unpublish_everywhere(session, source)
        for transceiver in session.subscribe.getTransceivers():
            self._forwarder.release(transceiver.sender)
        await session.publish.close()
        await session.subscribe.close()
        if self._recorder is not None and not self._room(session.room_id, but=session):
            # The consult is over: its recording is complete. A later one gets its own.
            self._stop_recording(session.room_id, error=None)
        logger.info("media session closed for %s", participant_id)

    async def close(self) -> None:
        """Close every session (server shutdown)."""
        for participant_id in list(self._sessions):
            await self.leave(participant_id)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._forwarder.close()
        if self._recorder is not None:
            await self._recorder.close()

    # Recording

    def set_recording(self, room_id: str, on: bool) -> None:
        """Record the room from now on (``True``: consent given) or stop (``False``).

        Raises
        ------
        RecordingError
            When this SFU has no ``data_dir`` to record into.
        """
        if self._recorder is None:
            raise RecordingError("recording is not configured on this server (no data dir)")
        if on:
            self._recording_rooms.add(room_id)
            if self._room(room_id, but=None):
                self._start_recording(room_id)
        else:
            self._recording_rooms.discard(room_id)
            self._stop_recording(room_id, error=None)

    def recording(self, room_id: str) -> str | None:
        """The id of the room's current recording (``None``: not recording)."""
        return None if self._recorder is None else self._recorder.recording_id(room_id)

    def _start_recording(self, room_id: str) -> None:
        recorder = self._recorder
        if recorder is None or recorder.recording_id(room_id) is not None:
            return
        recorder.start(room_id)
        for session in self._room(room_id, but=None):
            if "video" in session.paused:
                recorder.set_camera_off(room_id, session.participant_id, True)
            for source in session.published.values():
                self._record_source(session, source)
        if self.on_recording is not None:
            self.on_recording(room_id, True, None)

    def _stop_recording(self, room_id: str, error: str | None) -> None:
        if self._recorder is None or self._recorder.recording_id(room_id) is None:
            return
        self._recorder.stop(room_id)
        if self.on_recording is not None:
            self.on_recording(room_id, False, error)

    def _record_source(self, session: _Session, source: _Source) -> None:
        if self._recorder is None or self._recorder.recording_id(session.room_id) is None:
            return
        self._recorder.add_track(
            session.room_id, session.participant_id, session.segment, source.source_id, source.kind
        )
        request = getattr(self._forwarder, "request_keyframe", None)
        if callable(request):
            request(source.source_id)  # a file starts at a keyframe: do not wait for one

    def _recording_failed(self, room_id: str, recording_id: str, reason: str) -> None:
        # The recorder has stopped itself; consent stays, so a new consult records again.
        logger.error("recording %s of room %s failed: %s", recording_id, room_id, reason)
        if self.on_recording is not None:
            self.on_recording(room_id, False, reason)

    def _on_frame(self, source_id: str, kind: str, mime_type: str, packet: Packet) -> None:
        recorder = self._recorder
        if recorder is not None and recorder.recording(source_id):
            recorder.write(
                source_id, mime_type, bytes(packet), packet.pts or 0, bool(packet.is_keyframe)
            )

    # Introspection (metrics, tests)

    def stats(self) -> dict[str, int]:
        """Counts for metrics: sessions, published and forwarded (subscribed) tracks.

        Plus the forwarder's own counters when it keeps any (``stats()``: forwarded
        packets and bytes, keyframe requests, transcoding fallbacks, decoded frames).
        """
        counts = {
            "sessions": len(self._sessions),
            "recording_rooms": sum(self.recording(r) is not None for r in self._rooms()),
            "published_tracks": sum(len(s.published) for s in self._sessions.values()),
            "forwarded_tracks": sum(len(s.sending) for s in self._sessions.values()),
        }
        forwarder_stats = getattr(self._forwarder, "stats", None)
        if callable(forwarder_stats):
            counts.update(forwarder_stats())
        if self._recorder is not None:
            counts.update(self._recorder.stats.as_dict())
        return counts

    def stream_id(self, participant_id: str) -> str:
        """The ``a=msid`` stream id under which others receive the participant's tracks."""
        return self._session(participant_id).stream_id

    # Internals

    def _session(self, participant_id: str) -> _Session:
        try:
            return self._sessions[participant_id]
        except KeyError:
            raise UnknownParticipantError(f"no media session for {participant_id!r}") from None

    def _checked(self, participant_id: str, pc: PeerRole, expected: PeerRole, sdp: str) -> _Session:
        """The session, once the peer role and the SDP have been checked."""
        session = self._session(participant_id)
        if pc != expected:
            offerer = "server" if pc == "subscribe" else "client"
            raise WrongPeerError(f"only the {offerer} offers on the {pc!r} connection")
        check_description(sdp, max_sdp_bytes=self._max_sdp_bytes)
        return session

    async def _apply(
        self, session: _Session, role: PeerRole, description: RTCSessionDescription
    ) -> None:
        """Set a remote description, then the candidates that waited for it."""
        try:
            await session.pc(role).setRemoteDescription(description)
        except _APPLY_ERRORS as exc:
            raise InvalidSdpError(f"cannot apply {description.type}: {exc}") from None
        await self._apply_held_candidates(session, role)

    def _rooms(self) -> set[str]:
        return {s.room_id for s in self._sessions.values()}

    def _room(self, room_id: str, *, but: _Session | None) -> list[_Session]:
        return [s for s in self._sessions.values() if s.room_id == room_id and s is not but]

    def _alive(self, session: _Session) -> bool:
        return self._sessions.get(session.participant_id) is session

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("media task failed")

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _watch_state(self, session: _Session, role: PeerRole) -> None:
        connection = session.pc(role)

        @connection.on("connectionstatechange")
        def on_state() -> None:
            state = connection.connectionState
            logger.debug("%s %s connection %s", session.participant_id, role, state)
            if self._alive(session):
                self._spawn(session.listener.connection_state(role, state))

    def _change(self, session: _Session) -> None:
        """Feed a change of ``wanted`` into the offer state machine."""
        session.offer_state, send_offer = step(session.offer_state, OfferEvent.CHANGE)
        if send_offer:
            self._spawn(self._send_offer(session))

    async def _send_offer(self, session: _Session) -> None:
        async with session.locks["subscribe"]:
            connection = session.subscribe
            # Its peer connection can close (the client gone) before the session is
            # left: nothing to offer to (seen at the soak's end: "RTCPeerConnection is
            # closed", logged as a failed task). Not by its signalingState: an answer
            # being applied when it closed sets that back to "stable".
            if not self._alive(session) or is_closed(connection):
                return
            # Changes queued until now are in this offer.
            session.offer_state, _ = step(session.offer_state, OfferEvent.BUILD)
            self._reconcile(session)
            try:
                await connection.setLocalDescription(await connection.createOffer())
            except InvalidStateError:
                if not is_closed(connection):
                    raise
                return  # closed while the offer was made
            sdp = connection.localDescription.sdp
        await session.listener.send_offer("subscribe", sdp)

    def _reconcile(self, session: _Session) -> None:
        """Make the subscribe transceivers carry exactly ``session.wanted``."""
        for source_id in [s for s in session.sending if s not in session.wanted]:
            transceiver = session.sending.pop(source_id)
            self._forwarder.disconnect(transceiver.sender)
            transceiver.direction = "inactive"
        for source_id, source in session.wanted.items():
            if source_id in session.sending:
                continue
            transceiver = self._free_transceiver(session, source.kind) or self._new_transceiver(
                session, source.kind
            )
            transceiver.direction = "sendonly"
            self._forwarder.connect(source_id, transceiver.sender)
            set_msid(transceiver.sender, source.stream_id, source.track_id)
            session.sending[source_id] = transceiver

    def _free_transceiver(self, session: _Session, kind: str) -> RTCRtpTransceiver | None:
        busy = set(map(id, session.sending.values()))
        for transceiver in session.subscribe.getTransceivers():
            if (
                transceiver.kind == kind
                and id(transceiver) not in busy
                and transceiver.direction == "inactive"
                and transceiver.currentDirection == "inactive"
            ):
                return transceiver
        return None

    def _new_transceiver(self, session: _Session, kind: TrackKind) -> RTCRtpTransceiver:
        transceiver = session.subscribe.addTransceiver(kind, direction="sendonly")
        if kind == "video":
            transceiver.setCodecPreferences(self._codec_preferences())
        return transceiver

    def _codec_preferences(self) -> list[RTCRtpCodecCapability]:
        capabilities = RTCRtpSender.getCapabilities("video").codecs
        chosen = [c for m in self._video_codecs for c in capabilities if c.mimeType == m]
        # Retransmission rides along with whatever codec is chosen.
        return chosen + [c for c in capabilities if c.mimeType == "video/rtx"]

    async def _apply_held_candidates(self, session: _Session, role: PeerRole) -> None:
        held, session.held_candidates[role] = session.held_candidates[role], []
        connection = session.pc(role)
        mids = {t.mid for t in connection.getTransceivers()}
        for candidate, sdp_mid, sdp_mline_index in held:
            parsed = parse_candidate(candidate, sdp_mid, sdp_mline_index)
            if sdp_mid is not None and sdp_mid not in mids:
                logger.info("dropping held candidate for unknown mid %r", sdp_mid)
                continue
            await connection.addIceCandidate(parsed)

    async def _sync_published(self, session: _Session) -> None:
        """Derive published tracks from the publish connection after a client offer."""
        receiving = {}
        for transceiver in session.publish.getTransceivers():
            track = transceiver.receiver.track
            receiving_now = transceiver.currentDirection in _RECEIVING
            if transceiver.mid is not None and track is not None and receiving_now:
                receiving[transceiver.mid] = transceiver.receiver
        for mid in [m for m in session.published if m not in receiving]:
            source = session.published.pop(mid)
            self._unpublish_everywhere(session, source)
            await self._notify(session.listener.track_ended(source.track_id))
        for mid, receiver in receiving.items():
            if mid in session.published:
                continue
            track = receiver.track
            kind: TrackKind = "audio" if track.kind == "audio" else "video"
            track_id = track.id if _MSID_TOKEN.fullmatch(track.id) else uuid.uuid4().hex
            source = _Source(
                source_id=uuid.uuid4().hex,
                participant_id=session.participant_id,
                track_id=track_id,
                kind=kind,
                stream_id=session.stream_id,
            )
            self._forwarder.add_source(source.source_id, track, receiver)
            if kind in session.paused:
                self._forwarder.set_paused(source.source_id, True)
            session.published[mid] = source
            self._record_source(session, source)
            await self._notify(session.listener.track_published(track_id, kind, source.stream_id))
            for other in self._room(session.room_id, but=session):
                if kind not in other.refused:
                    other.wanted[source.source_id] = source
                    self._change(other)

    def _unpublish_everywhere(self, session: _Session, source: _Source) -> None:
        self._forwarder.remove_source(source.source_id)
        if self._recorder is not None:
            self._recorder.end_track(source.source_id)
        for other in self._room(session.room_id, but=session):
            if other.wanted.pop(source.source_id, None) is not None:
                self._change(other)

    async def _notify(self, call: Awaitable[None]) -> None:
        # A listener whose client went away must not break the publisher's answer.
        try:
            await call
        except Exception:
            logger.exception("media listener call failed")
