"""GateTrack, SlotTrack and RelayForwarder with in-process tracks (no network)."""

from __future__ import annotations

import asyncio
import fractions
import itertools

import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

from media.forwarder import GateTrack, RelayForwarder, SlotTrack, Timeline, restamp, with_pts
from tests.media.peers import NO_ICE_SERVERS, falls_silent, wait_for


class Counter(MediaStreamTrack):
    """Yields its name and a sequence number every 10 ms; ends after ``limit`` frames."""

    kind = "video"

    def __init__(self, name: str, limit: int = 10_000) -> None:
        super().__init__()
        self.name, self.limit, self.sent = name, limit, 0

    async def recv(self) -> tuple[str, int]:
        await asyncio.sleep(0.01)
        if self.sent >= self.limit:
            self.stop()
            raise MediaStreamError
        self.sent += 1
        return self.name, self.sent


async def test_gate_drops_frames_while_paused() -> None:
    """A paused gate keeps reading its source but passes nothing on."""
    source = Counter("a")
    gate = GateTrack(source)
    first = await gate.recv()
    gate.paused = True
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(gate.recv(), 0.1)
    gate.paused = False
    name, number = await gate.recv()
    assert name == "a"
    assert number > first[1] + 3  # frames of the pause were read and dropped


async def test_slot_switches_sources_and_outlives_them() -> None:
    """A slot reads its current source, waits while empty and survives a source ending."""
    slot = SlotTrack("video")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(slot.recv(), 0.05)
    slot.switch(Counter("a"))
    assert (await slot.recv())[0] == "a"
    b = Counter("b", limit=2)
    slot.switch(b)
    assert (await slot.recv())[0] == "b"
    assert (await slot.recv())[0] == "b"
    pending = asyncio.ensure_future(slot.recv())  # "b" ends: the slot waits
    await wait_for(lambda: b.readyState == "ended")  # the slot has read b's end
    assert not pending.done()
    slot.switch(Counter("c"))
    assert (await pending)[0] == "c"
    slot.stop()


async def test_relay_forwarder_connects_pauses_and_removes() -> None:
    """Frames of a source reach a connected sender's track until the source is removed."""
    pc = RTCPeerConnection(NO_ICE_SERVERS)
    sender = pc.addTransceiver("video", direction="sendonly").sender
    forwarder = RelayForwarder()
    forwarder.add_source("s1", Counter("a"))
    forwarder.connect("s1", sender)
    slot = sender.track
    assert isinstance(slot, SlotTrack)
    assert (await asyncio.wait_for(slot.recv(), 1))[0] == "a"
    forwarder.set_paused("s1", True)
    assert await falls_silent(slot, quiet_s=0.1)
    forwarder.set_paused("s1", False)
    assert (await asyncio.wait_for(slot.recv(), 1))[0] == "a"
    forwarder.remove_source("s1")
    assert await falls_silent(slot, quiet_s=0.1)
    with pytest.raises(ValueError, match="unknown source"):
        forwarder.connect("s1", sender)
    await forwarder.close()
    await pc.close()


def test_restamp_never_goes_back_across_sources() -> None:
    """Sources that each start at pts 0 come out as one strictly increasing timeline."""
    state = Timeline()
    out = []
    for source, pts_list in ((1, [0, 3000, 6000]), (2, [0, 3000]), (3, [90000, 93000])):
        for pts in pts_list:
            stamped, state = restamp(pts, 3000, source, state)
            out.append(stamped)
    assert all(b > a for a, b in itertools.pairwise(out))
    # Within a source the spacing is the source's own; a later source is not pulled back.
    assert out[1] - out[0] == 3000
    assert out[5] == 90000


def test_with_pts_copies_shared_frames() -> None:
    """A frame whose pts must change is copied (the original, shared, is untouched)."""
    video = VideoFrame.from_ndarray(np.full((48, 64, 3), 90, np.uint8), format="rgb24")
    video = video.reformat(format="yuv420p")
    video.pts, video.time_base = 10, fractions.Fraction(1, 90000)
    moved = with_pts(video, 20)
    assert (video.pts, moved.pts, moved.time_base) == (10, 20, video.time_base)
    assert np.array_equal(moved.to_ndarray(), video.to_ndarray())
    assert with_pts(video, 10) is video
    audio = AudioFrame.from_ndarray(np.arange(1920, dtype=np.int16).reshape(1, -1), layout="stereo")
    audio.sample_rate, audio.pts, audio.time_base = 48000, 0, fractions.Fraction(1, 48000)
    moved_audio = with_pts(audio, 960)
    assert (audio.pts, moved_audio.pts, moved_audio.samples) == (0, 960, audio.samples)
    assert np.array_equal(moved_audio.to_ndarray(), audio.to_ndarray())
