"""Every aiortc 1.16 internal that media/passthrough.py relies on is still where it was."""

from __future__ import annotations

import asyncio
import inspect
import queue

import aiortc
import pytest
from aiortc import RTCDtlsTransport, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import CODECS, get_encoder
from aiortc.exceptions import InvalidStateError
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import decoder_worker

from media import passthrough
from media.aiortc_compat import is_closed, rtc_configuration
from media.passthrough import ForwardStats, tap_receiver


def test_pinned_version() -> None:
    """The installed aiortc is the minor version the adapter was written for."""
    assert aiortc.__version__.startswith(passthrough.AIORTC_VERSION + "."), aiortc.__version__


async def test_receiver_decoder_queue_is_tappable() -> None:
    """A receiver has the private decoder queue; the tap replaces it and keeps get()."""
    pc = RTCPeerConnection(rtc_configuration([], "all"))
    receiver = pc.addTransceiver("video", direction="recvonly").receiver
    assert isinstance(getattr(receiver, "_RTCRtpReceiver__decoder_queue", None), queue.Queue)
    seen: list[tuple[str, bytes, int]] = []
    tap = tap_receiver(receiver, lambda m, d, t: seen.append((m, d, t)), ForwardStats())
    assert receiver._RTCRtpReceiver__decoder_queue is tap
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    tap.put((vp8, JitterFrame(data=b"\x10\x02", timestamp=3000)))
    tap.put(None)  # what the receiver sends to stop its decoder thread
    assert seen == [("video/VP8", b"\x10\x02", 3000)]
    assert tap.get(timeout=1) is None
    await pc.close()


def test_receiver_feeds_the_queue_and_the_thread_reads_it() -> None:
    """_handle_rtp_packet puts (codec, frame) into the queue; the worker only calls get()."""
    handle = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    assert "self.__decoder_queue.put((codec, encoded_frame))" in handle
    worker = inspect.getsource(decoder_worker)
    assert "input_q.get()" in worker
    assert "input_q.put" not in worker
    receive = inspect.getsource(RTCRtpReceiver.receive)
    assert "self.__decoder_queue" in receive
    assert callable(RTCRtpReceiver._send_rtcp_pli)
    assert list(inspect.signature(RTCRtpReceiver._send_rtcp_pli).parameters) == [
        "self",
        "media_ssrc",
    ]


def test_sender_packs_packets_and_routes_pli_to_send_keyframe() -> None:
    """The sender packs av.Packets without encoding and calls _send_keyframe on PLI/FIR."""
    next_frame = inspect.getsource(RTCRtpSender._next_encoded_frame)
    assert "self.__encoder.pack(data)" in next_frame
    assert "isinstance(data, Frame)" in next_frame
    rtcp = inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert "self._send_keyframe()" in rtcp
    send = inspect.getsource(RTCRtpSender.send)
    assert "self._run_rtp(parameters.codecs[0])" in send
    for mime, rate in (("video/VP8", 90000), ("video/H264", 90000), ("audio/opus", 48000)):
        codec = RTCRtpCodecParameters(mimeType=mime, clockRate=rate, payloadType=96)
        assert callable(get_encoder(codec).pack)


async def test_a_receiver_tapped_again_feeds_the_new_source() -> None:
    """Re-tapping (a track published again on its transceiver) retargets the one tap."""
    pc = RTCPeerConnection(rtc_configuration([], "all"))
    receiver = pc.addTransceiver("audio", direction="recvonly").receiver
    old: list[int] = []
    new: list[int] = []
    first = tap_receiver(receiver, lambda m, d, t: old.append(t), ForwardStats())
    second = tap_receiver(receiver, lambda m, d, t: new.append(t), ForwardStats())
    assert second is first
    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, payloadType=111)
    second.put((opus, JitterFrame(data=b"\x78", timestamp=960)))
    assert (old, new) == ([], [960])
    await pc.close()


def test_remb_goes_through_the_methods_the_adapter_wraps() -> None:
    """REMB: the receiver's estimator sends through ``_send_rtcp``, a sender reads REMBs in
    ``_handle_rtcp_packet`` (a coroutine, checked against its ``_ssrc``)."""
    assert "self._send_rtcp(rtcp_packet)" in inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    assert inspect.iscoroutinefunction(RTCRtpReceiver._send_rtcp)
    handler = inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert inspect.iscoroutinefunction(RTCRtpSender._handle_rtcp_packet)
    assert "unpack_remb_fci" in handler
    assert "self._ssrc in ssrcs" in handler
    # A NACK becomes _retransmit(sequence_number) calls, which the adapter may refuse.
    assert "await self._retransmit(seq)" in handler
    assert list(inspect.signature(RTCRtpSender._retransmit).parameters) == [
        "self",
        "sequence_number",
    ]
    video = [c for c in CODECS["video"] if c.mimeType != "video/rtx"]
    assert video
    assert all(any(f.type == "goog-remb" for f in c.rtcpFeedback) for c in video)


def test_a_transport_sends_plaintext_rtp_through_send_rtp() -> None:
    """Pacing wraps ``RTCDtlsTransport._send_rtp(data)``: every RTP and RTCP packet of a
    connection passes it before SRTP, and a sender's RTX packets carry ``_rtx_ssrc``."""
    source = inspect.getsource(RTCDtlsTransport._send_rtp)
    assert inspect.iscoroutinefunction(RTCDtlsTransport._send_rtp)
    assert "self._tx_srtp.protect(data)" in source
    assert "self.transport._send_rtp(packet_bytes)" in inspect.getsource(RTCRtpSender._retransmit)
    assert "ssrc=self._rtx_ssrc" in inspect.getsource(RTCRtpSender._retransmit)


async def test_a_connection_closed_while_an_answer_is_applied_is_still_closed() -> None:
    """close() during setRemoteDescription(answer): is_closed stays True and aiortc
    refuses addTransceiver, whatever signalingState says once the answer is applied
    (aiortc 1.16 sets it back to "stable")."""
    offerer = RTCPeerConnection(rtc_configuration([], "all"))
    answerer = RTCPeerConnection(rtc_configuration([], "all"))
    offerer.addTransceiver("audio", direction="sendonly")
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    assert not is_closed(offerer)
    await asyncio.gather(offerer.setRemoteDescription(answerer.localDescription), offerer.close())
    assert is_closed(offerer), offerer.signalingState
    with pytest.raises(InvalidStateError):
        offerer.addTransceiver("video")
    await answerer.close()
