"""REMB through the SFU with real aiortc peers: a subscriber's low estimate reaches the
publisher (its encoder's target follows), and lapses when the subscriber stops saying it."""

from __future__ import annotations

import asyncio
import fractions
from typing import Any

import numpy as np
from aiortc import MediaStreamTrack, RTCRtpSender, RTCSessionDescription
from aiortc.codecs import vpx
from av import VideoFrame

from media.bitrate import BitrateConfig
from media.passthrough import PassthroughForwarder, remb_of, remb_packet
from media.sfu import Sfu
from tests.media.peers import Client, Clock, wait_for

RED, GREEN = (220, 30, 30), (30, 200, 30)
POOR_BPS = 120_000


class NoiseTrack(MediaStreamTrack):
    """320x240 noise at 15 fps: the encoder needs all the bitrate it is allowed."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._rng = np.random.default_rng(7)
        self._pts = 0

    async def recv(self) -> VideoFrame:
        await asyncio.sleep(1 / 15)
        image = self._rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, 15)
        self._pts += 1
        return frame


def rembs_received(sender: RTCRtpSender) -> list[int]:
    """The bitrates of the REMBs ``sender`` gets from now on (wraps its RTCP handler)."""
    got: list[int] = []
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        remb = remb_of(packet)
        if remb is not None and sender._ssrc in remb[1]:
            got.append(remb[0])
        await original(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]
    return got


async def test_a_poor_subscriber_lowers_the_publishers_bitrate(clients: list[Client]) -> None:
    """b says it can take 120 kbit/s of a's video: a is told so at once and its encoder
    aims under it; once b stops saying so, a's own uplink estimate applies again."""
    clock = Clock()
    forwarder = PassthroughForwarder(
        bitrate=BitrateConfig(floor_bps=50_000, ttl_s=1.5), clock=clock
    )
    sfu = Sfu(forwarder=forwarder)
    a, b = Client(sfu, "a", RED), Client(sfu, "b", GREEN)
    clients += [a, b]
    await sfu.join("room", "a", a, [])
    a.publish.addTrack(NoiseTrack())
    await a.publish.setLocalDescription(await a.publish.createOffer())
    answer = await sfu.offer("a", "publish", a.publish.localDescription.sdp)
    await a.publish.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    await b.join("room", video=False)
    await wait_for(lambda: len(b.live("video")) == 1)
    await asyncio.wait_for(b.live("video")[0].recv(), 10)
    (publisher,) = [s for s in a.publish.getSenders() if s.kind == "video"]
    told = rembs_received(publisher)
    # The server's own estimate of a's uplink comes first (abs-send-time is negotiated).
    await wait_for(lambda: len(told) > 0 and told[-1] > 2 * POOR_BPS, timeout_s=20)
    (receiver,) = [t.receiver for t in b.subscribe.getTransceivers() if t.kind == "video"]
    media_ssrc = receiver.getSynchronizationSources()[0].source
    # b's link is poor: what b's own estimator says is replaced by the figures below,
    # sent as a browser on a poor downlink sends them (real REMBs over b's connection).
    send_rtcp = receiver._send_rtcp

    async def poor_link(packet: Any) -> None:
        if remb_of(packet) is None:
            await send_rtcp(packet)

    receiver._send_rtcp = poor_link  # type: ignore[method-assign]
    before = len(told)
    await send_rtcp(remb_packet(0x1234, POOR_BPS, [media_ssrc]))
    await wait_for(lambda: len(told) > before and told[-1] <= POOR_BPS, timeout_s=3)
    assert forwarder.stats()["remb_sent"] >= 1
    (video,) = [i for i, source in forwarder._sources.items() if source.kind == "video"]
    assert forwarder.bitrate_cap(video) == POOR_BPS
    # aiortc's VP8 encoder keeps to its own minimum (a browser's goes lower).
    encoder = publisher._RTCRtpSender__encoder  # type: ignore[attr-defined]
    assert encoder.target_bitrate == max(POOR_BPS, vpx.MIN_BITRATE)
    # Every later REMB of the server's own is capped while b keeps saying it (the
    # forwarder's clock stopped: b's figure stays fresh however slowly REMBs come)...
    clock.freeze()
    for _ in range(3):
        count = len(told)
        await wait_for(lambda n=count: len(told) > n, timeout_s=10)  # the server's next REMB
        await send_rtcp(remb_packet(0x1234, POOR_BPS, [media_ssrc]))
    assert max(told[before:]) <= POOR_BPS
    # ...and lapses after b stops (its figure older than ttl_s on the forwarder's clock).
    clock.thaw()
    clock.skip(10.0)
    await wait_for(lambda: told[-1] > POOR_BPS, timeout_s=15)
    await sfu.close()
