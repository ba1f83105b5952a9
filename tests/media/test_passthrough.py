"""Passthrough forwarding through the SFU with real aiortc peers, and its pure helpers."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiortc import RTCRtpSender, RTCSessionDescription

from media.passthrough import PassthroughForwarder, Throttle, h264_nal_types, is_keyframe
from media.sfu import Sfu
from tests.media.peers import Client, Clock, ColourTrack, close_to, mean_colour, wait_for

RED, GREEN, BLUE = (220, 30, 30), (30, 200, 30), (30, 30, 220)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def forwarder(clock: Clock) -> PassthroughForwarder:
    return PassthroughForwarder(clock=clock)


async def joined_pair(
    forwarder: PassthroughForwarder, clients: list[Client]
) -> tuple[Sfu, Client, Client]:
    """An SFU on ``forwarder`` with "a" (red) and "b" (green) seeing each other's video."""
    sfu = Sfu(forwarder=forwarder)
    a, b = Client(sfu, "a", RED), Client(sfu, "b", GREEN)
    clients += [a, b]
    await a.join("room")
    await b.join("room")
    await wait_for(lambda: len(a.live("video")) == 1 and len(b.live("video")) == 1)
    return sfu, a, b


async def test_frames_arrive_and_nothing_is_decoded(
    forwarder: PassthroughForwarder, clients: list[Client]
) -> None:
    """Two peers see each other's colour while the server's decoder counter stays 0."""
    sfu, a, b = await joined_pair(forwarder, clients)
    assert close_to(await mean_colour(a.live("video")[0]), GREEN)
    assert close_to(await mean_colour(b.live("video")[0]), RED)
    await wait_for(lambda: len(b.live("audio")) == 1)
    assert (await asyncio.wait_for(b.live("audio")[0].recv(), 5)).sample_rate == 48000
    stats = sfu.stats()
    assert stats["forwarded_packets"] > 10
    assert stats["forwarded_bytes"] > stats["forwarded_packets"]
    assert stats["decoded_frames"] == 0
    assert stats["transcoding_fallbacks"] == 0
    await sfu.close()


async def test_late_joiner_gets_a_keyframe_within_a_second(
    forwarder: PassthroughForwarder, clock: Clock, clients: list[Client]
) -> None:
    """A third participant joining later asks for a keyframe and sees pictures within 1 s."""
    sfu, _, b = await joined_pair(forwarder, clients)
    await mean_colour(b.live("video")[0])
    clock.skip(10.0)  # past the throttle of the first keyframe requests
    requests_before = forwarder.stats()["keyframe_requests"]
    c = Client(sfu, "c", BLUE)
    clients.append(c)
    await c.join("room")
    await wait_for(lambda: len(c.live("video")) == 2)
    started = time.monotonic()
    colours = [await mean_colour(track, timeout_s=3) for track in c.live("video")]
    first_picture_s = time.monotonic() - started
    assert first_picture_s < 1.0
    assert any(close_to(x, RED) for x in colours)
    assert any(close_to(x, GREEN) for x in colours)
    assert forwarder.stats()["keyframe_requests"] > requests_before
    assert forwarder.stats()["decoded_frames"] == 0
    await sfu.close()


async def test_a_reconnected_publisher_is_seen_again_within_a_second(
    forwarder: PassthroughForwarder, clients: list[Client]
) -> None:
    """After a publisher's session drops and comes back, its video returns within 1 s."""
    sfu, a, b = await joined_pair(forwarder, clients)
    await mean_colour(a.live("video")[0])
    await sfu.leave("b")
    await b.close()
    await wait_for(lambda: not a.live("video"))
    back = Client(sfu, "b", BLUE)
    clients.append(back)
    await back.join("room")
    published = time.monotonic()
    await wait_for(lambda: len(a.live("video")) == 1)
    assert close_to(await mean_colour(a.live("video")[0], timeout_s=2), BLUE)
    assert time.monotonic() - published < 1.0
    assert forwarder.stats()["decoded_frames"] == 0
    await sfu.close()


async def test_subscriber_plis_reach_the_publisher_throttled(
    forwarder: PassthroughForwarder, clock: Clock, clients: list[Client]
) -> None:
    """Five PLIs from a subscriber in a burst become one keyframe request to the publisher."""
    sfu, a, b = await joined_pair(forwarder, clients)
    await mean_colour(b.live("video")[0])
    asked: list[float] = []
    (publisher_sender,) = [s for s in a.publish.getSenders() if s.kind == "video"]
    original = publisher_sender._send_keyframe

    def counted() -> None:
        asked.append(time.monotonic())
        original()

    publisher_sender._send_keyframe = counted  # type: ignore[method-assign]
    clock.skip(10.0)  # past the throttle of the join's own requests
    (receiver,) = [
        t.receiver for t in b.subscribe.getTransceivers() if t.receiver.track in b.live("video")
    ]
    ssrc = receiver.getSynchronizationSources()[0].source
    before = forwarder.stats()

    def handled() -> int:
        """Keyframe requests the forwarder has decided on since the burst."""
        now = forwarder.stats()
        return sum(now[k] - before[k] for k in ("keyframe_requests", "keyframe_throttled"))

    for _ in range(5):
        await receiver._send_rtcp_pli(ssrc)
    await wait_for(lambda: handled() >= 5 and len(asked) >= 1, timeout_s=5)
    stats = forwarder.stats()
    assert stats["keyframe_requests"] - before["keyframe_requests"] == 1
    assert stats["keyframe_throttled"] - before["keyframe_throttled"] >= 4
    assert len(asked) == 1
    await sfu.close()


async def h264_publisher(sfu: Sfu, clients: list[Client]) -> Client:
    """Participant "b" (audio only) subscribed to "a" (red), which publishes H.264 video."""
    a, b = Client(sfu, "a", RED), Client(sfu, "b", GREEN)
    clients += [a, b]
    await sfu.join("room", "a", a, [])
    a.publish.addTrack(ColourTrack(RED))
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    a.publish.getTransceivers()[0].setCodecPreferences(h264)
    await _publish(sfu, a)
    await b.join("room", video=False)
    await wait_for(lambda: len(b.live("video")) == 1)
    assert close_to(await mean_colour(b.live("video")[0]), RED)
    return b


async def test_h264_is_forwarded_untouched(
    forwarder: PassthroughForwarder, clients: list[Client]
) -> None:
    """H.264 from a publisher reaches an H.264 subscriber with nothing decoded."""
    sfu = Sfu(forwarder=forwarder, video_codecs=("video/H264",))
    await h264_publisher(sfu, clients)
    stats = forwarder.stats()
    assert stats["forwarded_packets"] > 0
    assert stats["decoded_frames"] == 0
    assert stats["transcoding_fallbacks"] == 0
    await sfu.close()


async def test_codec_mismatch_falls_back_to_transcoding_for_that_subscriber(
    forwarder: PassthroughForwarder, clients: list[Client]
) -> None:
    """An H.264 publisher reaches a VP8-only subscriber by transcoding, counted once."""
    sfu = Sfu(forwarder=forwarder, video_codecs=("video/VP8",))
    await h264_publisher(sfu, clients)
    stats = forwarder.stats()
    assert stats["transcoding_fallbacks"] == 1
    assert stats["transcoding_sinks"] == 1
    assert stats["decoded_frames"] > 0
    await sfu.close()


async def test_a_transcoded_subscription_switches_back_to_passthrough(
    forwarder: PassthroughForwarder, clients: list[Client]
) -> None:
    """A sender freed by a transcoded H.264 publisher carries a VP8 newcomer untouched."""
    sfu = Sfu(forwarder=forwarder, video_codecs=("video/VP8",))
    b = await h264_publisher(sfu, clients)
    await sfu.leave("a")
    await wait_for(lambda: not b.live("video"))
    decoded = forwarder.stats()["decoded_frames"]
    c = Client(sfu, "c", BLUE)
    clients.append(c)
    await c.join("room", audio=False)
    await wait_for(lambda: len(b.live("video")) == 1)
    assert close_to(await mean_colour(b.live("video")[0]), BLUE)
    assert forwarder.stats()["transcoding_sinks"] == 0
    assert forwarder.stats()["decoded_frames"] == decoded
    await sfu.close()


def test_vp8_keyframe_bit() -> None:
    """A VP8 frame is a key frame when bit 0 of its first byte is clear."""
    assert is_keyframe("video/VP8", bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]))
    assert not is_keyframe("video/VP8", bytes([0x31, 0x02, 0x00]))
    assert not is_keyframe("video/VP8", b"")
    assert is_keyframe("audio/opus", b"\x78")


def test_h264_idr_is_a_keyframe() -> None:
    """An Annex B access unit is a key frame when it holds an IDR slice (NAL type 5)."""
    idr = b"\x00\x00\x00\x01\x67\x42" + b"\x00\x00\x00\x01\x68\xce" + b"\x00\x00\x01\x65\x88"
    delta = b"\x00\x00\x00\x01\x41\x9a"
    assert h264_nal_types(idr) == [7, 8, 5]
    assert is_keyframe("video/H264", idr)
    assert not is_keyframe("video/H264", delta)


def test_throttle_lets_one_request_through_per_interval() -> None:
    """Requests inside the interval are dropped; the first one after it goes."""
    throttle = Throttle(0.5)
    assert [throttle.allow(t) for t in (0.0, 0.1, 0.49, 0.5, 0.6, 1.2)] == [
        True,
        False,
        False,
        True,
        False,
        True,
    ]


async def _publish(sfu: Sfu, client: Client) -> None:
    await client.publish.setLocalDescription(await client.publish.createOffer())
    answer = await sfu.offer(client.participant_id, "publish", client.publish.localDescription.sdp)
    await client.publish.setRemoteDescription(RTCSessionDescription(answer, "answer"))
