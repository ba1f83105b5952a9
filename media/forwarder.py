"""Forwarding of published tracks to subscribers, behind one small interface.

The SFU only says *what* to forward: a source (a track received on a publisher's
connection) into a sink (an ``RTCRtpSender`` on a subscriber's connection). How the
media gets there is the forwarder's business, so that forwarding without
transcoding (the passthrough of issue 5) can replace :class:`RelayForwarder` without
touching :mod:`media.sfu`.

:class:`RelayForwarder` uses aiortc's ``MediaRelay``: every source is decoded once
and every subscriber's sender encodes again (aiortc's default path). Two details
matter for correctness:

- A source is always read, even with no subscriber: aiortc's receiver pushes decoded
  frames into an unbounded queue, which would grow for as long as a participant sits
  alone in a room. A drain task per source keeps the relay reading.
- A sender holds one permanent :class:`SlotTrack` whose source can be switched. An
  aiortc sender's RTP loop ends for good when its track raises ``MediaStreamError``,
  so a transceiver freed by a departed publisher could never carry another track if
  the sender held the relay proxy directly. The slot never ends: it waits while
  empty, and a switch abandons the read pending on the old source.

- A slot's output timestamps never go back. aiortc's encoders take ``frame.pts`` as
  they come (libvpx refuses a pts lower than the previous one, and the RTP timestamp
  is derived from it), but every received track starts its pts at 0: a transceiver
  reused for a new source would otherwise kill its sender. :func:`restamp` carries
  the offset from frame to frame; a frame whose pts must change is copied first,
  because the relay hands the same frame object to every subscriber.

Pausing (moderator mute) happens at the source, in :class:`GateTrack`: frames are
read and dropped, so that the decoder and the queues keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

logger = logging.getLogger(__name__)


class Forwarder(Protocol):
    """Moves media from published tracks to subscribers' senders."""

    def add_source(
        self, source_id: str, track: MediaStreamTrack, receiver: RTCRtpReceiver | None = None
    ) -> None:
        """Start accepting subscriptions to ``track``, received by ``receiver``."""

    def remove_source(self, source_id: str) -> None:
        """Stop forwarding the source to every sink and forget it."""

    def connect(self, source_id: str, sender: RTCRtpSender) -> None:
        """Forward the source into ``sender`` (replacing what it carried before)."""

    def disconnect(self, sender: RTCRtpSender) -> None:
        """Stop forwarding anything into ``sender``; it stays usable for ``connect``."""

    def release(self, sender: RTCRtpSender) -> None:
        """Forget ``sender`` for good (its connection is closing)."""

    def set_paused(self, source_id: str, paused: bool) -> None:
        """Drop (``True``) or forward again (``False``) the source's media."""

    async def close(self) -> None:
        """Stop every source and sink."""


@dataclass(frozen=True)
class Timeline:
    """What :func:`restamp` carries from one frame to the next."""

    source: int | None = None  # which source the offset was set for
    offset: int = 0  # added to the source's pts, in its time base
    next_pts: int | None = None  # the lowest pts the encoder may see next


def restamp(pts: int, duration: int, source: int, state: Timeline) -> tuple[int, Timeline]:
    """Map a source's ``pts`` onto a timeline that never goes back across sources.

    Parameters
    ----------
    pts : int
        The frame's presentation time in its time base.
    duration : int
        The frame's duration in the same time base (samples for audio, >= 1).
    source : int
        Which source the frame came from (a slot counts its switches); a new value
        starts a new offset.
    state : Timeline
        The state returned with the previous frame (``Timeline()`` at first).

    Returns
    -------
    tuple of (int, Timeline)
        The output pts and the state for the next frame.
    """
    offset = state.offset
    if source != state.source:
        offset = 0 if state.next_pts is None else max(0, state.next_pts - pts)
    out = pts + offset
    return out, Timeline(source, offset, out + max(duration, 1))


def with_pts(frame: Any, pts: int) -> Any:
    """``frame`` with presentation time ``pts``: a copy if it must change (frames are shared)."""
    if frame.pts == pts:
        return frame
    copy: VideoFrame | AudioFrame
    if isinstance(frame, VideoFrame):
        copy = VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
    elif isinstance(frame, AudioFrame):
        copy = AudioFrame.from_ndarray(
            frame.to_ndarray(), format=frame.format.name, layout=frame.layout.name
        )
        copy.sample_rate = frame.sample_rate
    else:
        return frame
    copy.pts = pts
    if frame.time_base is not None:
        copy.time_base = frame.time_base
    return copy


class GateTrack(MediaStreamTrack):
    """Reads a source track and passes its frames on unless paused."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source
        self.paused = False

    async def recv(self) -> Any:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            frame = await self._source.recv()
            # Checked after the await: a gate stopped meanwhile must end the relay's
            # reader, so that a re-added source gets a single reader again.
            if self.readyState != "live":
                raise MediaStreamError
            if not self.paused:
                return frame


class SlotTrack(MediaStreamTrack):
    """A never-ending track whose source can be switched or emptied."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._source: MediaStreamTrack | None = None
        self._switched: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._timeline = Timeline()
        self._generation = 0  # counts switches: the "source" of restamp()

    @property
    def source(self) -> MediaStreamTrack | None:
        return self._source

    def switch(self, source: MediaStreamTrack | None) -> None:
        """Read from ``source`` from now on (``None``: send nothing)."""
        old = self._source
        self._source = source
        self._generation += 1
        if old is not None and old is not source:
            old.stop()
        if not self._switched.done():
            self._switched.set_result(None)
        self._switched = asyncio.get_running_loop().create_future()

    async def recv(self) -> Any:
        while True:
            switched = self._switched
            source = self._source
            if source is None:
                await asyncio.shield(switched)
                continue
            read: asyncio.Future[Any] = asyncio.ensure_future(source.recv())
            waits: set[asyncio.Future[Any]] = {read, switched}
            try:
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                # The sender is stopping: take the pending read down with us.
                read.cancel()
                raise
            if read in done:
                try:
                    return self._restamped(read.result())
                except MediaStreamError:
                    # The source ended (its publisher left): wait for the next one.
                    if self._source is source:
                        self._source = None
                    continue
            read.cancel()
            with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                await read

    def _restamped(self, frame: Any) -> Any:
        if getattr(frame, "pts", None) is None:
            return frame
        duration = frame.samples if isinstance(frame, AudioFrame) else 1
        pts, self._timeline = restamp(frame.pts, duration, self._generation, self._timeline)
        return with_pts(frame, pts)

    def stop(self) -> None:
        super().stop()
        if self._source is not None:
            self._source.stop()
            self._source = None


class RelayForwarder:
    """Forwarding through aiortc's ``MediaRelay`` (decodes and re-encodes)."""

    def __init__(self) -> None:
        self._relay = MediaRelay()
        self._gates: dict[str, GateTrack] = {}
        self._drains: dict[str, asyncio.Task[None]] = {}
        self._slots: dict[RTCRtpSender, SlotTrack] = {}
        self._slot_sources: dict[RTCRtpSender, str] = {}

    def add_source(
        self, source_id: str, track: MediaStreamTrack, receiver: RTCRtpReceiver | None = None
    ) -> None:
        if source_id in self._gates:
            raise ValueError(f"source {source_id!r} already added")
        gate = GateTrack(track)
        self._gates[source_id] = gate
        self._drains[source_id] = asyncio.ensure_future(self._drain(gate))

    def remove_source(self, source_id: str) -> None:
        gate = self._gates.pop(source_id, None)
        drain = self._drains.pop(source_id, None)
        if drain is not None:
            drain.cancel()
        for sender, connected in list(self._slot_sources.items()):
            if connected == source_id:
                self.disconnect(sender)
        if gate is not None:
            gate.stop()

    def connect(self, source_id: str, sender: RTCRtpSender) -> None:
        gate = self._gates.get(source_id)
        if gate is None:
            raise ValueError(f"unknown source {source_id!r}")
        slot = self._slots.get(sender)
        if slot is None:
            slot = SlotTrack(gate.kind)
            self._slots[sender] = slot
            sender.replaceTrack(slot)
        # Video unbuffered (a slow encoder skips frames rather than falling behind);
        # audio buffered (dropping 20 ms frames is audible, and Opus is cheap).
        slot.switch(self._relay.subscribe(gate, buffered=gate.kind == "audio"))
        self._slot_sources[sender] = source_id

    def disconnect(self, sender: RTCRtpSender) -> None:
        slot = self._slots.get(sender)
        if slot is not None:
            slot.switch(None)
        self._slot_sources.pop(sender, None)

    def set_paused(self, source_id: str, paused: bool) -> None:
        gate = self._gates.get(source_id)
        if gate is None:
            raise ValueError(f"unknown source {source_id!r}")
        gate.paused = paused

    def release(self, sender: RTCRtpSender) -> None:
        slot = self._slots.pop(sender, None)
        self._slot_sources.pop(sender, None)
        if slot is not None:
            slot.stop()

    async def close(self) -> None:
        for source_id in list(self._gates):
            self.remove_source(source_id)
        for sender in list(self._slots):
            self.release(sender)

    async def _drain(self, gate: GateTrack) -> None:
        proxy = self._relay.subscribe(gate, buffered=False)
        try:
            while True:
                await proxy.recv()
        except MediaStreamError:
            pass
        finally:
            proxy.stop()
