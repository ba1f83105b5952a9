"""Forwarding of encoded media with no decode and no encode (the SFU's default).

aiortc internals
----------------
Written for **aiortc 1.16** (``aiortc~=1.16.0`` in pyproject). This is the one module
of ``media/`` that reaches into aiortc's receiver and sender beyond their public API;
``tests/media/test_aiortc_internals.py`` checks every assumption below, so that an
upgrade that moves one fails loudly there rather than silently decoding again.

- ``RTCRtpReceiver._RTCRtpReceiver__decoder_queue``: a ``queue.Queue`` of
  ``(codec, JitterFrame)`` that ``_handle_rtp_packet`` fills (on the event loop) with
  each depayloaded, reassembled encoded frame, and that a decoder thread
  (``decoder_worker``) reads with ``get()``; ``None`` stops the thread, which then
  ends the receiver's track. :class:`DecoderTap` replaces that queue: an encoded
  frame goes to our fan-out instead of the decoder, ``None`` and ``get()`` go to the
  original queue, so the (idle) thread and the end of the track work as before.
  Frames reach the decoder only while a transcoding fallback needs them.
- ``JitterFrame.data`` is the codec bitstream (VP8 frame, H.264 Annex B, Opus
  packet); ``JitterFrame.timestamp`` the RTP timestamp mapped to start at 0.
- ``RTCRtpReceiver._send_rtcp_pli(media_ssrc)`` sends a PLI to the publisher.
- ``RTCRtpSender._next_encoded_frame`` calls ``encoder.pack(packet)`` (no encode)
  when the track yields an ``av.Packet``; ``pack`` takes the RTP timestamp from
  ``packet.pts`` in ``packet.time_base``.
- ``RTCRtpSender._handle_rtcp_packet`` calls ``self._send_keyframe()`` for a PLI or
  FIR from the subscriber: we wrap it on the instance to route the request to the
  publisher (encoding only honours it for decoded frames).
- ``RTCRtpSender.send(parameters)`` starts the RTP loop with ``parameters.codecs[0]``:
  we wrap it on the instance to learn the codec the subscriber negotiated.
- ``RTCRtpSender._handle_rtcp_packet(packet)`` gets each RTCP packet routed to the
  sender, REMB included (aiortc routes a REMB to every sender whose SSRC it lists); we
  wrap it on the instance to read the subscriber's estimate. ``RTCRtpSender._ssrc`` is
  the sender's SSRC.
- ``RTCDtlsTransport._send_rtp(data)`` takes every plaintext RTP and RTCP packet a
  connection sends (before SRTP): we wrap it on a subscriber connection's transport to
  pace its video (:class:`media.bitrate.Pacer`), telling video by its SSRCs.
- ``RTCRtpReceiver._send_rtcp(packet)`` sends every RTCP packet of the receiver, the
  REMB of its bitrate estimator (``goog-remb`` with ``abs-send-time``) included: we wrap
  it on the instance to cap that REMB by the subscribers' (:mod:`media.bitrate`).

Design notes
------------
- One :class:`_Source` per published track fans each encoded frame out to the
  :class:`_Sink` of every subscriber's sender; a sink is a never-ending track (like
  :class:`media.forwarder.SlotTrack`) whose source can be switched, so a transceiver
  freed by a departed publisher can carry another.
- A video sink holds frames back until a keyframe (a decoder cannot start
  elsewhere) and asks the publisher for one at once; keyframe requests are
  throttled per source (``keyframe_interval_s``) because N subscribers joining or
  losing packets together must not make the publisher send N keyframes.
- A sink's RTP timestamps never go back across source switches (the
  :func:`media.forwarder.restamp` timeline, in the codec clock).
- A sink whose negotiated codec differs from what the source sends (a VP8-only
  subscriber, an H.264 publisher) falls back to aiortc's ``MediaRelay`` for that
  subscriber only: the tap then also feeds the decoder, and the sink reads decoded
  frames that its sender encodes. Counted in ``stats()["transcoding_fallbacks"]``.
- Queues are bounded: a sink that falls behind drops (video: until the next
  keyframe) instead of growing memory.
- A subscriber connection's video is paced at 1.5 times its REMB (audio and RTCP are
  not): a keyframe's burst would queue in a slow line's router and delay the voice.
- A subscriber's poor link slows the publisher: each sink keeps its subscriber's REMB
  share (the estimate over the number of SSRCs it covers); the REMB the server's
  receiver sends the publisher is capped by the lowest fresh share of the source's
  sinks (:class:`media.bitrate.SourceBitrate`), and a cap that falls well under what
  the publisher was last told is sent at once. The publisher's encoder (a browser's)
  keeps under the REMB it receives.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fractions
import logging
import queue
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import av
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, is_rtcp, pack_remb_fci, unpack_remb_fci
from av.packet import Packet as AnyPacket

from media.bitrate import BitrateConfig, Pacer, RetransmitBudget, SourceBitrate
from media.forwarder import GateTrack, Timeline, restamp

logger = logging.getLogger(__name__)

# An encoded frame, not yet muxed into any stream (av's stubs make Packet generic;
# at run time it is not subscriptable).
if TYPE_CHECKING:
    Packet: TypeAlias = AnyPacket[Any]
else:
    Packet = AnyPacket

AIORTC_VERSION = "1.16"
VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
AUDIO_TIME_BASE = fractions.Fraction(1, 48000)
# An Opus frame of 20 ms in the 48 kHz clock: the step of the audio timeline.
_OPUS_FRAME_TICKS = 960
# Name-mangled private attribute of RTCRtpReceiver (see the module notes).
_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
# Our own attribute on a receiver whose REMB we cap (set once per receiver).
_REMB_CAP = "_teleconsult_remb_cap"
_PACED = "_teleconsult_paced"  # ... and on a transport whose video we pace


# Pure helpers (no aiortc state)


def is_keyframe(mime_type: str, data: bytes) -> bool:
    """Whether an encoded frame can start decoding.

    Parameters
    ----------
    mime_type : str
        ``video/VP8``, ``video/H264`` or an audio type (always ``True``).
    data : bytes
        The frame's bitstream: a VP8 frame (RFC 6386 9.1: bit 0 of the first byte is
        0 for a key frame) or H.264 Annex B (an IDR slice, NAL type 5).
    """
    name = mime_type.lower()
    if name == "video/vp8":
        return len(data) > 0 and data[0] & 0x01 == 0
    if name == "video/h264":
        return any(nal_type == 5 for nal_type in h264_nal_types(data))
    return True


def h264_nal_types(data: bytes) -> list[int]:
    """The NAL unit types of an Annex B bitstream, in order."""
    types = []
    start = data.find(b"\x00\x00\x01")
    while start != -1 and start + 3 < len(data):
        types.append(data[start + 3] & 0x1F)
        start = data.find(b"\x00\x00\x01", start + 3)
    return types


def time_base_of(kind: str) -> fractions.Fraction:
    """RTP clock of ``kind`` as a time base: 1/90000 s video, 1/48000 s audio (Opus)."""
    return VIDEO_TIME_BASE if kind == "video" else AUDIO_TIME_BASE


@dataclass
class Throttle:
    """At most one event per ``interval_s``: ``allow(now_s)`` says whether this one goes."""

    interval_s: float
    last_s: float | None = None

    def allow(self, now_s: float) -> bool:
        if self.last_s is not None and now_s - self.last_s < self.interval_s:
            return False
        self.last_s = now_s
        return True


@dataclass
class ForwardStats:
    """Counters of one forwarder (exported as metrics)."""

    forwarded_packets: int = 0  # encoded frames handed to subscribers' senders
    forwarded_bytes: int = 0
    keyframe_requests: int = 0  # PLIs sent to publishers (after throttling)
    keyframe_throttled: int = 0  # keyframe requests the throttle held back
    transcoding_fallbacks: int = 0  # sinks that had to decode and encode
    decoded_frames: int = 0  # encoded frames handed to aiortc's decoder
    remb_capped: int = 0  # REMBs to publishers lowered to a subscriber's share
    remb_sent: int = 0  # REMBs of our own sent to publishers (a subscriber's link fell)
    rtx_refused: int = 0  # NACKed packets not retransmitted (repeat or over the budget)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


# The aiortc adapter


class DecoderTap:
    """Stands in for a receiver's decoder queue (see the module notes).

    ``on_frame(mime_type, data, timestamp)`` gets each encoded frame on the event
    loop; while ``decode`` is true, frames also go to aiortc's decoder thread.
    """

    def __init__(
        self,
        inner: queue.Queue[Any],
        on_frame: Callable[[str, bytes, int], None],
        stats: ForwardStats,
    ) -> None:
        self.inner = inner
        self.on_frame = on_frame
        self.decode = False
        self._stats = stats

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.get(*args, **kwargs)

    def put(self, item: Any, *args: Any, **kwargs: Any) -> None:
        if item is None:
            self.inner.put(None)
            return
        codec, encoded_frame = item
        if self.decode:
            self._stats.decoded_frames += 1
            self.inner.put(item)
        self.on_frame(codec.mimeType, bytes(encoded_frame.data), int(encoded_frame.timestamp))


def tap_receiver(
    receiver: RTCRtpReceiver, on_frame: Callable[[str, bytes, int], None], stats: ForwardStats
) -> DecoderTap:
    """Route ``receiver``'s encoded frames to ``on_frame`` instead of its decoder.

    A receiver tapped before (a track unpublished, then published again on the same
    transceiver) keeps its tap, which now feeds ``on_frame``.
    """
    inner = getattr(receiver, _DECODER_QUEUE)
    if isinstance(inner, DecoderTap):
        inner.on_frame = on_frame
        inner.decode = False
        return inner
    tap = DecoderTap(inner, on_frame, stats)
    setattr(receiver, _DECODER_QUEUE, tap)
    return tap


def send_pli(receiver: RTCRtpReceiver) -> bool:
    """Ask the publisher behind ``receiver`` for a keyframe; ``False`` if no SSRC yet."""
    sources = receiver.getSynchronizationSources()
    if not sources:
        return False
    ssrc = max(sources, key=lambda s: s.timestamp).source
    task = asyncio.ensure_future(receiver._send_rtcp_pli(ssrc))
    task.add_done_callback(_log_failure)
    return True


def remb_of(packet: Any) -> tuple[int, list[int]] | None:
    """``(bitrate_bps, ssrcs)`` of a REMB packet; None for any other RTCP packet."""
    if not isinstance(packet, RtcpPsfbPacket) or packet.fmt != RTCP_PSFB_APP:
        return None
    try:
        return unpack_remb_fci(packet.fci)
    except ValueError:
        return None


def remb_packet(sender_ssrc: int, bitrate_bps: int, ssrcs: list[int]) -> RtcpPsfbPacket:
    """A REMB packet from ``sender_ssrc`` for the media ``ssrcs``."""
    return RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=sender_ssrc, media_ssrc=0, fci=pack_remb_fci(bitrate_bps, ssrcs)
    )


def hook_sender(
    sender: RTCRtpSender,
    on_keyframe_request: Callable[[], None],
    on_codec: Callable[[str], None],
    on_remb: Callable[[int, int], None] | None = None,
    allow_retransmit: Callable[[int], bool] | None = None,
) -> None:
    """Route ``sender``'s PLI/FIR to ``on_keyframe_request``; report its codec to
    ``on_codec`` and its subscriber's REMB to ``on_remb(bitrate_bps, ssrc_count)``; retransmit a
    NACKed packet only if ``allow_retransmit(sequence_number)``."""
    original_keyframe = sender._send_keyframe
    original_send = sender.send
    original_rtcp = sender._handle_rtcp_packet

    async def handle_rtcp(packet: Any) -> None:
        await original_rtcp(packet)
        remb = remb_of(packet)
        if on_remb is not None and remb is not None and sender._ssrc in remb[1]:
            on_remb(remb[0], len(remb[1]))

    if allow_retransmit is not None:
        original_retransmit = sender._retransmit

        async def retransmit(sequence_number: int) -> None:
            if allow_retransmit(sequence_number):
                await original_retransmit(sequence_number)

        sender._retransmit = retransmit  # type: ignore[method-assign]

    def send_keyframe() -> None:
        original_keyframe()  # still honoured when the sink falls back to encoding
        on_keyframe_request()

    async def send(parameters: Any) -> None:
        if parameters.codecs:
            on_codec(str(parameters.codecs[0].mimeType))
        await original_send(parameters)

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]
    sender.send = send  # type: ignore[method-assign]
    sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]


def pace_transport(transport: Any, config: BitrateConfig) -> _Paced:
    """The pacer of a subscriber connection's transport, installed on first use."""
    paced: _Paced | None = getattr(transport, _PACED, None)
    if paced is not None:
        return paced
    paced = _Paced(Pacer(config), set(), transport._send_rtp)
    loop = asyncio.get_running_loop()

    async def send_rtp(data: bytes) -> None:
        if len(data) >= 12 and not is_rtcp(data):
            ssrc = int.from_bytes(data[8:12], "big")
            if ssrc in paced.video_ssrcs:
                wait_s = paced.pacer.wait(len(data), loop.time())
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
        await paced.original(data)

    setattr(transport, _PACED, paced)
    transport._send_rtp = send_rtp
    return paced


@dataclass
class _Paced:
    """A transport's pacer, the SSRCs it paces, its unwrapped send."""

    pacer: Pacer
    video_ssrcs: set[int]
    original: Callable[[bytes], Awaitable[None]]


def cap_receiver_remb(
    receiver: RTCRtpReceiver, limit: Callable[[int, list[int], int], int]
) -> Callable[[Any], Awaitable[None]]:
    """Pass every REMB ``receiver`` sends through ``limit(bitrate_bps, ssrcs, sender_ssrc)``
    (the figure to send instead); the unwrapped send, for REMBs of our own."""
    capped: _RembCap | None = getattr(receiver, _REMB_CAP, None)
    if capped is not None:  # tapped before: the transceiver carries a new track
        capped.limit = limit
        return capped.original
    capped = _RembCap(receiver._send_rtcp, limit)

    async def send_rtcp(packet: Any) -> None:
        remb = remb_of(packet)
        if remb is not None:
            bitrate, ssrcs = remb
            packet = remb_packet(packet.ssrc, capped.limit(bitrate, ssrcs, packet.ssrc), ssrcs)
        await capped.original(packet)

    setattr(receiver, _REMB_CAP, capped)
    receiver._send_rtcp = send_rtcp  # type: ignore[method-assign]
    return capped.original


@dataclass
class _RembCap:
    """A receiver's REMB cap: its unwrapped RTCP send and the limit now in force."""

    original: Callable[[Any], Awaitable[None]]
    limit: Callable[[int, list[int], int], int]


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("RTCP to a publisher failed: %s", task.exception())


# The fan-out


@dataclass(eq=False)
class _Source:
    """One published track: its tap, its subscribers, its keyframe throttle."""

    source_id: str
    kind: str
    track: MediaStreamTrack
    receiver: RTCRtpReceiver | None
    throttle: Throttle
    sinks: set[_Sink] = field(default_factory=set)
    mime_type: str | None = None  # what the publisher sends, from the first frame
    paused: bool = False
    tap: DecoderTap | None = None
    # REMB: the subscribers' cap; the server's own estimate of the publisher's uplink and
    # the SSRCs of its last REMB (to send one of ours); the receiver's unwrapped send.
    bitrate: SourceBitrate = field(default_factory=SourceBitrate)
    uplink_bps: int | None = None
    remb_ssrcs: tuple[int, list[int]] | None = None
    send_rtcp: Callable[[Any], Awaitable[None]] | None = None
    gate: GateTrack | None = None  # decoded path, only while a sink transcodes
    transcoding: set[_Sink] = field(default_factory=set)


class _Sink(MediaStreamTrack):
    """What one subscriber's sender reads: packets of its current source (or frames)."""

    def __init__(self, kind: str, forwarder: PassthroughForwarder, max_queue: int) -> None:
        super().__init__()
        self.kind = kind
        self.mime_type: str | None = None  # negotiated by the subscriber
        self.source: _Source | None = None
        self._forwarder = forwarder
        self._queue: collections.deque[Packet] = collections.deque(maxlen=max_queue)
        self._ready = asyncio.Event()
        self._need_keyframe = kind == "video"
        self._timeline = Timeline()
        self._generation = 0
        self._decoded: MediaStreamTrack | None = None  # relay proxy in fallback
        self.retransmits = RetransmitBudget(forwarder._bitrate)  # NACKs of this subscriber
        # Resolved by every switch: a read pending on the old relay proxy is abandoned.
        self._switched: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def switch(self, source: _Source | None) -> None:
        self._queue.clear()
        self._generation += 1
        self._need_keyframe = self.kind == "video"
        if self._decoded is not None:
            self._decoded.stop()
            self._decoded = None
        self.source = source
        self._ready.set()
        if not self._switched.done():
            self._switched.set_result(None)
        self._switched = asyncio.get_running_loop().create_future()

    def push(self, packet: Packet, keyframe: bool) -> bool:
        """Queue ``packet``; ``False`` if dropped while waiting for a keyframe."""
        if self._need_keyframe:
            if not keyframe:
                return False
            self._need_keyframe = False
        if len(self._queue) == self._queue.maxlen and self.kind == "video":
            # Behind: a gap in video needs a fresh keyframe, not the next delta.
            self._queue.clear()
            self._need_keyframe = not keyframe
            if not keyframe:
                return False
        self._queue.append(packet)
        self._ready.set()
        return True

    @property
    def transcodes(self) -> bool:
        return self._decoded is not None

    def start_transcoding(self, decoded: MediaStreamTrack) -> None:
        self._queue.clear()
        self._decoded = decoded
        self._ready.set()

    async def recv(self) -> Any:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            self._forwarder._check_codec(self)
            decoded = self._decoded
            if decoded is not None:
                frame = await self._read_decoded(decoded)
                if frame is not None:
                    return frame
                continue
            if self._queue:
                return self._restamped(self._queue.popleft())
            self._ready.clear()
            await self._ready.wait()

    async def _read_decoded(self, decoded: MediaStreamTrack) -> Any:
        """A frame from the relay proxy; ``None`` if it ended or the sink switched."""
        switched = self._switched
        read: asyncio.Future[Any] = asyncio.ensure_future(decoded.recv())
        try:
            done, _ = await asyncio.wait({read, switched}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            read.cancel()  # the sender is stopping
            raise
        if read in done:
            try:
                return read.result()
            except MediaStreamError:
                if self._decoded is decoded:
                    self._decoded = None
                return None
        read.cancel()
        with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
            await read
        return None

    def _restamped(self, packet: Packet) -> Packet:
        step = _OPUS_FRAME_TICKS if self.kind == "audio" else 1
        pts, self._timeline = restamp(packet.pts or 0, step, self._generation, self._timeline)
        if pts == packet.pts:
            return packet
        copy: Packet = av.Packet(bytes(packet))
        copy.pts = pts
        copy.time_base = packet.time_base
        return copy

    def stop(self) -> None:
        super().stop()
        self._ready.set()
        if self._decoded is not None:
            self._decoded.stop()
            self._decoded = None


class PassthroughForwarder:
    """A :class:`media.forwarder.Forwarder` that forwards encoded frames untouched.

    Parameters
    ----------
    keyframe_interval_s
        At most one keyframe request per source in this interval.
    max_queue_frames
        Frames a subscriber may fall behind before it drops.
    on_frame
        Called with ``(source_id, kind, mime_type, packet)`` for every encoded frame of
        every source, before pausing applies (the recorder's hook).
    clock
        Monotonic seconds for the throttles and bitrate windows (tests move it on
        instead of sleeping).
    """

    def __init__(
        self,
        *,
        keyframe_interval_s: float = 0.5,
        max_queue_frames: int = 64,
        on_frame: Callable[[str, str, str, Packet], None] | None = None,
        bitrate: BitrateConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._bitrate = bitrate if bitrate is not None else BitrateConfig()
        self._keyframe_interval_s = keyframe_interval_s
        self._max_queue_frames = max_queue_frames
        self._sources: dict[str, _Source] = {}
        self._sinks: dict[RTCRtpSender, _Sink] = {}
        self._relay = MediaRelay()
        self.on_frame = on_frame
        self.counters = ForwardStats()

    # Forwarder

    def add_source(
        self, source_id: str, track: MediaStreamTrack, receiver: RTCRtpReceiver | None = None
    ) -> None:
        if source_id in self._sources:
            raise ValueError(f"source {source_id!r} already added")
        source = _Source(
            source_id,
            track.kind,
            track,
            receiver,
            Throttle(self._keyframe_interval_s),
            bitrate=SourceBitrate(self._bitrate),
        )
        if receiver is not None and track.kind == "video":
            source.send_rtcp = cap_receiver_remb(
                receiver, lambda bps, ssrcs, ours: self._limit(source, bps, ssrcs, ours)
            )
        if receiver is None:
            # No receiver to tap (a local track): only the decoded path can read it.
            source.gate = GateTrack(track)
        else:
            source.tap = tap_receiver(
                receiver, lambda m, d, t: self._on_frame(source, m, d, t), self.counters
            )
        self._sources[source_id] = source

    def remove_source(self, source_id: str) -> None:
        source = self._sources.pop(source_id, None)
        if source is None:
            return
        for sink in list(source.sinks):
            sink.switch(None)
        source.sinks.clear()
        source.transcoding.clear()
        if source.tap is not None:
            source.tap.on_frame = _ignore
            source.tap.decode = False
        if source.gate is not None:
            source.gate.stop()

    def connect(self, source_id: str, sender: RTCRtpSender) -> None:
        source = self._sources.get(source_id)
        if source is None:
            raise ValueError(f"unknown source {source_id!r}")
        sink = self._sinks.get(sender)
        if sink is None:
            sink = _Sink(source.kind, self, self._max_queue_frames)
            self._sinks[sender] = sink
            hook_sender(
                sender,
                lambda: self._keyframe_wanted(sink),
                lambda mime: setattr(sink, "mime_type", mime),
                lambda bps, count: self._subscriber_remb(sink, sender, bps, count),
                lambda sequence_number: self._may_retransmit(sink, sequence_number),
            )
            sender.replaceTrack(sink)
        self._detach(sink)
        sink.switch(source)
        source.sinks.add(sink)
        if source.tap is None:
            self._start_transcoding(source, sink)
        self._request_keyframe(source)

    def disconnect(self, sender: RTCRtpSender) -> None:
        sink = self._sinks.get(sender)
        if sink is not None:
            self._detach(sink)
            sink.switch(None)

    def release(self, sender: RTCRtpSender) -> None:
        sink = self._sinks.pop(sender, None)
        if sink is not None:
            self._detach(sink)
            sink.stop()

    def set_paused(self, source_id: str, paused: bool) -> None:
        source = self._sources.get(source_id)
        if source is None:
            raise ValueError(f"unknown source {source_id!r}")
        source.paused = paused
        if source.gate is not None:
            source.gate.paused = paused
        if not paused:
            self._request_keyframe(source)

    async def close(self) -> None:
        for source_id in list(self._sources):
            self.remove_source(source_id)
        for sender in list(self._sinks):
            self.release(sender)

    def request_keyframe(self, source_id: str) -> None:
        """Ask the source's publisher for a keyframe (throttled; e.g. a recording starts)."""
        source = self._sources.get(source_id)
        if source is not None:
            self._request_keyframe(source)

    # Introspection

    def stats(self) -> dict[str, int]:
        """Counters: forwarded packets/bytes, keyframe requests, fallbacks, decoded frames."""
        counts = self.counters.as_dict()
        counts["transcoding_sinks"] = sum(len(s.transcoding) for s in self._sources.values())
        return counts

    # Internals

    def _on_frame(self, source: _Source, mime_type: str, data: bytes, timestamp: int) -> None:
        source.mime_type = mime_type
        packet: Packet = av.Packet(data)
        packet.pts = timestamp
        packet.dts = timestamp
        packet.time_base = time_base_of(source.kind)
        keyframe = is_keyframe(mime_type, data)
        packet.is_keyframe = keyframe
        if self.on_frame is not None:
            self.on_frame(source.source_id, source.kind, mime_type, packet)
        if source.paused:
            return
        for sink in source.sinks:
            if sink.transcodes:
                continue
            if sink.push(packet, keyframe):
                self.counters.forwarded_packets += 1
                self.counters.forwarded_bytes += len(data)
            else:
                self._request_keyframe(source)

    def _check_codec(self, sink: _Sink) -> None:
        """Fall back to transcoding if ``sink``'s codec is not what its source sends."""
        source = sink.source
        if (
            source is None
            or sink.transcodes
            or sink.mime_type is None
            or source.mime_type is None
            or sink.mime_type.lower() == source.mime_type.lower()
        ):
            return
        logger.info(
            "subscriber negotiated %s, publisher sends %s: transcoding for it",
            sink.mime_type,
            source.mime_type,
        )
        self._start_transcoding(source, sink)

    def _start_transcoding(self, source: _Source, sink: _Sink) -> None:
        self.counters.transcoding_fallbacks += 1
        if source.gate is None:
            source.gate = GateTrack(source.track)
            source.gate.paused = source.paused
        if source.tap is not None:
            source.tap.decode = True
        source.transcoding.add(sink)
        sink.start_transcoding(self._relay.subscribe(source.gate, buffered=source.kind == "audio"))
        self._request_keyframe(source)

    def _detach(self, sink: _Sink) -> None:
        source = sink.source
        if source is None:
            return
        source.bitrate.forget(sink)
        source.sinks.discard(sink)
        source.transcoding.discard(sink)
        if not source.transcoding and source.tap is not None:
            source.tap.decode = False

    def bitrate_cap(self, source_id: str) -> int | None:
        """What the source's subscribers can take (bit/s), None if none has said."""
        source = self._sources.get(source_id)
        return None if source is None else source.bitrate.cap(self._clock())

    def _limit(self, source: _Source, estimate_bps: int, ssrcs: list[int], ours: int) -> int:
        """The server's receiver sends the publisher a REMB: cap it by the subscribers."""
        source.uplink_bps = estimate_bps
        source.remb_ssrcs = (ours, ssrcs)
        figure = source.bitrate.limit(estimate_bps, self._clock())
        if figure is None or figure >= estimate_bps:
            return estimate_bps
        self.counters.remb_capped += 1
        return figure

    def _may_retransmit(self, sink: _Sink, sequence_number: int) -> bool:
        if sink.retransmits.allow(sequence_number, self._clock()):
            return True
        self.counters.rtx_refused += 1
        return False

    def _subscriber_remb(
        self, sink: _Sink, sender: RTCRtpSender, bitrate_bps: int, ssrc_count: int
    ) -> None:
        share_bps = bitrate_bps // max(1, ssrc_count)
        sink.retransmits.share_bps = share_bps
        if sink.kind == "video":
            paced = pace_transport(sender.transport, self._bitrate)
            paced.video_ssrcs.update((sender._ssrc, sender._rtx_ssrc))
            paced.pacer.set_estimate(bitrate_bps)
        source = sink.source
        if source is None or source.kind != "video":
            return
        if source.bitrate.subscriber(sink, share_bps, self._clock()):
            self._send_remb(source)

    def _send_remb(self, source: _Source) -> None:
        """Tell the publisher the subscribers' cap now (a subscriber's link fell)."""
        if source.remb_ssrcs is None or source.send_rtcp is None:
            return  # the server has no estimate of its own yet: its first REMB is capped
        figure = source.bitrate.limit(source.uplink_bps, self._clock())
        if figure is None:
            return
        ours, ssrcs = source.remb_ssrcs
        self.counters.remb_sent += 1
        task = asyncio.ensure_future(source.send_rtcp(remb_packet(ours, figure, ssrcs)))
        task.add_done_callback(_log_failure)

    def _keyframe_wanted(self, sink: _Sink) -> None:
        if sink.source is not None:
            self._request_keyframe(sink.source)

    def _request_keyframe(self, source: _Source) -> None:
        if source.kind != "video" or source.receiver is None:
            return
        if not source.throttle.allow(self._clock()):
            self.counters.keyframe_throttled += 1
            return
        if send_pli(source.receiver):
            self.counters.keyframe_requests += 1
        else:
            source.throttle.last_s = None  # nothing sent: the next request may go


def _ignore(mime_type: str, data: bytes, timestamp: int) -> None:
    """A removed source's tap: frames still arriving are dropped."""
