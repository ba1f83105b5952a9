"""A real aiortc client for the SFU tests: publishes colour frames, answers offers.

Each client publishes a solid colour of its own, so that a subscriber can tell by
the pixels whose video a received track carries.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack
from av import VideoFrame

from media.sfu import PeerRole, Sfu, TrackKind

# Loopback only: no ICE server (aiortc's default, iceServers=None, is Google's public STUN).
NO_ICE_SERVERS = RTCConfiguration(iceServers=[])
MAX_BUNDLE = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
FRAME_RATE_HZ = 15
WIDTH, HEIGHT = 64, 48


class ColourTrack(MediaStreamTrack):
    """Video frames of one solid RGB colour at ``FRAME_RATE_HZ``."""

    kind = "video"

    def __init__(self, rgb: tuple[int, int, int]) -> None:
        super().__init__()
        self._image = np.full((HEIGHT, WIDTH, 3), rgb, dtype=np.uint8)
        self._pts = 0

    async def recv(self) -> VideoFrame:
        await asyncio.sleep(1 / FRAME_RATE_HZ)
        frame = VideoFrame.from_ndarray(self._image, format="rgb24")
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, FRAME_RATE_HZ)
        self._pts += 1
        return frame


@dataclass
class Client:
    """One participant: a publish and a subscribe connection to the SFU."""

    sfu: Sfu
    participant_id: str
    rgb: tuple[int, int, int]
    publish: RTCPeerConnection = field(default_factory=lambda: RTCPeerConnection(MAX_BUNDLE))
    # Max-bundle also on the client: with aiortc's default ("balanced"), a second
    # m-section of a kind offered in the same description keeps a transport that
    # BUNDLE then stops, and never receives (aiortc 1.16).
    subscribe: RTCPeerConnection = field(default_factory=lambda: RTCPeerConnection(MAX_BUNDLE))
    received: list[MediaStreamTrack] = field(default_factory=list)
    published: list[tuple[str, TrackKind, str]] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    offers: int = 0
    states: list[tuple[PeerRole, str]] = field(default_factory=list)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def __post_init__(self) -> None:
        @self.subscribe.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.received.append(track)

    # MediaListener
    async def send_offer(self, pc: PeerRole, sdp: str) -> None:
        assert pc == "subscribe"
        self.offers += 1
        # Answer from a task of our own, as a remote client would.
        task = asyncio.ensure_future(self._answer(sdp))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def track_published(self, track_id: str, kind: TrackKind, stream_id: str) -> None:
        self.published.append((track_id, kind, stream_id))

    async def track_ended(self, track_id: str) -> None:
        self.ended.append(track_id)

    async def connection_state(self, pc: PeerRole, state: str) -> None:
        self.states.append((pc, state))

    async def _answer(self, sdp: str) -> None:
        await self.subscribe.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await self.subscribe.setLocalDescription(await self.subscribe.createAnswer())
        await self.sfu.answer(self.participant_id, "subscribe", self.subscribe.localDescription.sdp)

    async def join(self, room_id: str, *, audio: bool = True, video: bool = True) -> None:
        """Join the room and publish (candidates travel in the SDP both ways)."""
        await self.sfu.join(room_id, self.participant_id, self, [])
        if audio:
            self.publish.addTrack(AudioStreamTrack())
        if video:
            self.publish.addTrack(ColourTrack(self.rgb))
        await self.publish.setLocalDescription(await self.publish.createOffer())
        answer = await self.sfu.offer(
            self.participant_id, "publish", self.publish.localDescription.sdp
        )
        await self.publish.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    def live(self, kind: str) -> list[MediaStreamTrack]:
        """Received tracks of ``kind`` whose transceiver is still sending to us."""
        live = []
        for transceiver in self.subscribe.getTransceivers():
            track = transceiver.receiver.track
            if (
                track is not None
                and track.kind == kind
                and transceiver.currentDirection
                in (
                    "recvonly",
                    "sendrecv",
                )
            ):
                live.append(track)
        return live

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.publish.close()
        await self.subscribe.close()


class Clock:
    """Monotonic time that a test moves on (``skip``) or stops (``freeze``) instead of
    sleeping; given to the forwarder as its clock."""

    def __init__(self) -> None:
        self.skipped_s = 0.0
        self.frozen_s: float | None = None

    def __call__(self) -> float:
        if self.frozen_s is not None:
            return self.frozen_s
        return time.monotonic() + self.skipped_s

    def skip(self, seconds: float) -> None:
        self.skipped_s += seconds

    def freeze(self) -> None:
        self.frozen_s = self()

    def thaw(self) -> None:
        self.frozen_s = None


async def wait_for(predicate: Any, timeout_s: float = 10.0) -> None:
    """Poll ``predicate()`` until true, failing after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def mean_colour(track: MediaStreamTrack, timeout_s: float = 10.0) -> tuple[int, int, int]:
    """The mean RGB of a video frame received on ``track`` after the first few."""
    frame = None
    for _ in range(3):  # the first decoded frames may still converge
        frame = await asyncio.wait_for(track.recv(), timeout_s)
    assert frame is not None
    image = frame.to_ndarray(format="rgb24")
    r, g, b = (round(float(image[..., i].mean())) for i in range(3))
    return r, g, b


def close_to(actual: tuple[int, int, int], expected: tuple[int, int, int]) -> bool:
    """Colours equal within what VP8 and YUV 4:2:0 round-trips lose."""
    return all(abs(a - e) <= 24 for a, e in zip(actual, expected, strict=True))


async def falls_silent(track: MediaStreamTrack, quiet_s: float = 1.0) -> bool:
    """Whether ``track`` stops delivering frames (within 100 frames) for ``quiet_s``."""
    for _ in range(100):  # what was already in flight still arrives
        try:
            await asyncio.wait_for(track.recv(), quiet_s)
        except TimeoutError:
            return True
    return False
