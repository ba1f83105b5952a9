"""What signaling needs from the rest of the system, as small Protocols.

``signaling/`` imports nothing from ``media/`` or ``ecg/`` (see DESIGN.md): it states
here what it needs, and ``teleconsult/`` plugs the real implementations in.

Media model (LiveKit's): every participant has two peer connections with the server.

- ``"publish"``: the client offers, sending its camera and microphone; the server
  answers. Only the client ever offers on it.
- ``"subscribe"``: the server offers, sending every other participant's tracks; the
  client answers. Only the server ever offers on it, so there is never glare. When a
  track is added or removed the server renegotiates by sending a new offer.

Server-side candidates travel inside the SDP (aiortc gathers before it answers); the
client's trickled candidates reach the backend through :meth:`MediaBackend.candidate`.

Transport: the edge (``api/``) hands every connection to the pumps as an
:class:`Outlet`, which never waits.

ECG: the ``/device`` endpoint (``api.ws_device``) pumps bytes through
:class:`DeviceStreams` and never sees a sample; viewers are answered from an
:class:`EcgCatalog`. The live ECG service (``ecglive``) implements both on top of
``ecg/``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

from signaling.messages import EcgStreamInfo

PeerRole = Literal["publish", "subscribe"]
TrackKind = Literal["audio", "video"]


# Plain types only: media/ implements these Protocols structurally without importing
# signaling/, so no class of ours may appear in a signature.

# An RTCIceServer dictionary as the browser takes it: {"urls": [...], "username": ...,
# "credential": ...}.
IceServerDict = dict[str, str | list[str]]
# on_recording(room_id, on, error): a room's recording started (True), stopped (False)
# or failed (False and the reason, safe to show to the room's moderators).
RecordingListener = Callable[[str, bool, str | None], None]


class Outlet(Protocol):
    """How a pump sends on one connection; nothing here waits.

    The transport queues what is sent (bounded per connection; a connection whose
    queue overflows is closed) and writes it from a task of its own, in order.
    """

    def send_text(self, text: str, *, skippable: bool = False) -> bool:
        """Queue a text message (dropped once the connection is closing).

        ``skippable``: a message the peer may be spared while its connection lags (a
        live ECG chunk). False when it was skipped for that reason, True otherwise.
        """

    def close(self, code: int, reason: str) -> None:
        """Close after the messages already queued (idempotent)."""


class MediaListener(Protocol):
    """Calls the media backend makes into signaling, for one participant."""

    async def send_offer(self, pc: PeerRole, sdp: str) -> None:
        """Send a server-initiated offer (always on ``"subscribe"``) to the client."""

    async def track_published(self, track_id: str, kind: TrackKind, stream_id: str) -> None:
        """The participant's publish connection now carries a track.

        ``stream_id`` is the ``a=msid`` stream id under which subscribers receive it,
        so that a client can map a received MediaStream to the participant.
        """

    async def track_ended(self, track_id: str) -> None:
        """The participant stopped publishing the track."""

    async def connection_state(self, pc: PeerRole, state: str) -> None:
        """An RTCPeerConnection state change (``connected``, ``failed``, ...)."""


class MediaBackend(Protocol):
    """The server side of WebRTC, one session per admitted participant.

    The whole contract: sessions and negotiation, moderator pause, recording (switched
    per room, reported back through :attr:`on_recording`) and counters for ``/metrics``
    (:meth:`stats`). A backend that cannot record says so by raising ``ValueError``
    from :meth:`set_recording`.
    """

    # Set by the signaling server before the first call.
    on_recording: RecordingListener | None

    async def join(
        self,
        room_id: str,
        participant_id: str,
        listener: MediaListener,
        ice_servers: list[IceServerDict],
    ) -> None:
        """Open the participant's media session; subscribe it to the room's tracks."""

    async def offer(self, participant_id: str, pc: PeerRole, sdp: str) -> str:
        """Apply a client offer (``"publish"``) and return the server's answer SDP.

        Raises ``ValueError`` with a reason for SDP that cannot be applied.
        """

    async def answer(self, participant_id: str, pc: PeerRole, sdp: str) -> None:
        """Apply the client's answer to a server offer (``"subscribe"``)."""

    async def candidate(
        self,
        participant_id: str,
        pc: PeerRole,
        candidate: str | None,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        """Add a trickled client candidate (RTCIceCandidateInit fields).

        ``candidate=None`` or ``""`` marks the end of candidates.

        Raises ``ValueError`` for a candidate naming no known transceiver.
        """

    async def set_paused(self, participant_id: str, kind: TrackKind, paused: bool) -> None:
        """Stop or resume forwarding the participant's ``kind`` tracks (moderator mute)."""

    async def set_receiving(self, participant_id: str, kind: TrackKind, receiving: bool) -> None:
        """Send the participant others' ``kind`` tracks, or none (audio only): the
        subscribe connection is renegotiated, the publish one is untouched."""

    async def leave(self, participant_id: str) -> None:
        """Close the participant's session and remove its tracks from every subscriber."""

    def set_recording(self, room_id: str, on: bool) -> None:
        """Start or stop recording the room's tracks (the room's consent changed).

        Raises ``ValueError`` with a reason when the room cannot be recorded (no data
        folder, a backend that does not record); its start, stop or failure is reported
        through :attr:`on_recording`.
        """

    def stats(self) -> dict[str, int]:
        """Counters and gauges for ``/metrics`` by key (sessions, forwarded tracks, ...)."""

    async def close(self) -> None:
        """Close every session (server shutdown)."""


# ----------------------------------------------------------------------------- ECG

# What the /device handler sends on a device's socket: a text message, or a close as
# (WebSocket close code, reason).
DeviceOutput = str | tuple[int, str]


class DeviceLink(Protocol):
    """The ECG side of one ``/device`` connection (a device session)."""

    def receive_text(self, text: str) -> list[DeviceOutput]:
        """A text message from the device; what to send back (or close)."""

    def receive_bytes(self, data: bytes) -> list[DeviceOutput]:
        """A binary frame from the device: stored, acked only by a later commit."""

    @property
    def received_signal_s(self) -> float:
        """Seconds of signal taken on this connection so far, every stream (new samples
        only): the edge paces a connection that sends faster than real time by it."""

    def connection_lost(self) -> None:
        """The socket is gone: release the connection's streams (they stay resumable)."""

    def too_large(self, size_bytes: int, limit_bytes: int) -> list[DeviceOutput]:
        """A message over the transport's limit arrived: the error to send, and the close."""


class GroupCommit(Protocol):
    """The fsyncs of one group commit; :meth:`run` blocks, call it in a worker thread."""

    def run(self) -> None:
        """Make the written samples durable."""


class DeviceStreams(Protocol):
    """The ECG side of the ``/device`` endpoint: sessions, storage, group commit."""

    def connect(
        self, device_id: str, superseded: Callable[[list[DeviceOutput]], None]
    ) -> DeviceLink:
        """A new connection of ``device_id`` (the token's ``sub``).

        ``superseded`` is called with what to send on this connection when the device
        resumes one of its streams on another connection.
        """

    def begin_commit(self) -> GroupCommit:
        """Take every stream written since the last commit (quick, on the loop)."""

    def end_commit(self, commit: GroupCommit) -> Sequence[tuple[DeviceLink, list[DeviceOutput]]]:
        """After :meth:`GroupCommit.run`: the acks to send, per connection."""

    def close(self) -> None:
        """Stop background work (server shutdown)."""


class EcgCatalog(Protocol):
    """Which ECG streams exist, for viewers (``ecg_list``, ``ecg_subscribe``)."""

    def ecg_streams(self) -> list[EcgStreamInfo]:
        """Every known stream: live ones and those stored."""

    def ecg_stream(self, stream: str) -> EcgStreamInfo | None:
        """One stream by id, or None."""
