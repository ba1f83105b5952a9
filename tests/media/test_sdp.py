"""Tests of the SDP and candidate checks applied before anything touches a peer."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection

from media.exceptions import InvalidSdpError
from media.sdp import check_description, parse_candidate
from tests.media.peers import NO_ICE_SERVERS


async def _valid_offer() -> str:
    pc = RTCPeerConnection(NO_ICE_SERVERS)
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


async def test_a_real_offer_passes() -> None:
    """An offer made by a real aiortc peer is accepted."""
    check_description(await _valid_offer())


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty SDP"),
        ("hello", "must start with 'v=0'"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no m-section"),
        ("v=0\r\nm=audio x\r\n", "unparsable SDP"),
    ],
)
def test_bad_sdp_is_refused_with_a_reason(text: str, reason: str) -> None:
    """Malformed SDP raises InvalidSdpError naming what is wrong."""
    with pytest.raises(InvalidSdpError, match=reason):
        check_description(text)


async def test_missing_fingerprint_and_oversize_are_refused() -> None:
    """A section without DTLS fingerprint, and SDP over the size limit, are refused."""
    offer = await _valid_offer()
    stripped = "\r\n".join(x for x in offer.split("\r\n") if not x.startswith("a=fingerprint"))
    with pytest.raises(InvalidSdpError, match="fingerprint"):
        check_description(stripped)
    with pytest.raises(InvalidSdpError, match="larger than"):
        check_description(offer, max_sdp_bytes=len(offer) - 1)


def test_candidates_parse_or_are_refused() -> None:
    """A browser candidate line parses; garbage and mid-less candidates are refused."""
    line = "candidate:1 1 udp 2122260223 192.0.2.2 54321 typ host generation 0"
    parsed = parse_candidate(line, "0", 0)
    assert parsed is not None
    assert (parsed.ip, parsed.port, parsed.type, parsed.sdpMid) == ("192.0.2.2", 54321, "host", "0")
    assert parse_candidate("", "0", 0) is None
    assert parse_candidate(None, None, None) is None
    with pytest.raises(InvalidSdpError, match="unparsable ICE candidate"):
        parse_candidate("candidate:garbage", "0", 0)
    with pytest.raises(InvalidSdpError, match="neither sdpMid nor sdpMLineIndex"):
        parse_candidate(line, None, None)
