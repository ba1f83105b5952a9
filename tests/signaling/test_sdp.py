"""The server's SDP is split into a description and trickled candidates."""

from __future__ import annotations

from signaling.sdp import SdpCandidate, split_candidates

# The shape aiortc produces: candidates inline, after a=mid, with end-of-candidates.
AIORTC_SDP = "\r\n".join(
    [
        "v=0",
        "o=- 3912 3912 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "m=audio 40000 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 127.0.0.1",
        "a=sendonly",
        "a=mid:0",
        "a=candidate:a1 1 udp 2130706431 127.0.0.1 40000 typ host",
        "a=candidate:a2 1 udp 16777215 127.0.0.1 50000 typ relay raddr 0.0.0.0 rport 0",
        "a=end-of-candidates",
        "a=ice-ufrag:abcd",
        "m=video 40000 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP4 127.0.0.1",
        "a=mid:1",
        "a=candidate:a1 1 udp 2130706431 127.0.0.1 40000 typ host",
        "a=end-of-candidates",
        "",
    ]
)


def test_candidates_leave_the_description_with_their_section() -> None:
    """Every candidate comes out with its mid and m-line index; nothing else changes."""
    description, candidates = split_candidates(AIORTC_SDP)
    assert "a=candidate" not in description
    assert "a=end-of-candidates" not in description
    kept = [line for line in AIORTC_SDP.split("\r\n") if "candidate" not in line]
    assert description.split("\r\n") == kept
    assert candidates == [
        SdpCandidate("candidate:a1 1 udp 2130706431 127.0.0.1 40000 typ host", "0", 0),
        SdpCandidate(
            "candidate:a2 1 udp 16777215 127.0.0.1 50000 typ relay raddr 0.0.0.0 rport 0", "0", 0
        ),
        SdpCandidate("candidate:a1 1 udp 2130706431 127.0.0.1 40000 typ host", "1", 1),
    ]


def test_mid_after_the_candidates_and_lf_line_endings() -> None:
    """A section's mid is found wherever it stands; LF-only SDP keeps LF."""
    sdp = "v=0\nm=audio 9 RTP/AVP 0\na=candidate:x 1 udp 1 h 9 typ host\na=mid:audio\n"
    description, candidates = split_candidates(sdp)
    assert description == "v=0\nm=audio 9 RTP/AVP 0\na=mid:audio\n"
    assert candidates == [SdpCandidate("candidate:x 1 udp 1 h 9 typ host", "audio", 0)]


def test_sdp_without_candidates_is_unchanged() -> None:
    """Nothing to trickle: the description is returned as it was."""
    sdp = "v=0\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n"
    assert split_candidates(sdp) == (sdp, [])
