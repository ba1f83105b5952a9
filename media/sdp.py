"""Checks on client SDP and ICE candidates, with no I/O.

aiortc's parser accepts almost anything (an empty string parses to a description
with no media) and some of its errors are bare ``AssertionError`` or ``IndexError``.
A client's offer, answer or candidate is therefore checked here first, so that bad
input is refused with a reason before it can touch a peer connection.
"""

from __future__ import annotations

from aiortc import RTCIceCandidate
from aiortc import sdp as aiortc_sdp

from media.exceptions import InvalidSdpError

MAX_SDP_BYTES = 64 * 1024
MEDIA_KINDS = frozenset({"audio", "video", "application"})


def check_description(text: str, *, max_sdp_bytes: int = MAX_SDP_BYTES) -> None:
    """Refuse SDP that aiortc could not apply cleanly.

    Raises
    ------
    InvalidSdpError
        With a reason: empty, too large, not starting with ``v=0``, unparsable, no
        m-section, an unknown media kind, or a section without ICE credentials or a
        DTLS fingerprint.
    """
    if not text or not text.strip():
        raise InvalidSdpError("empty SDP")
    if len(text.encode()) > max_sdp_bytes:
        raise InvalidSdpError(f"SDP larger than {max_sdp_bytes} bytes")
    if not text.lstrip().startswith("v=0"):
        raise InvalidSdpError("SDP must start with 'v=0'")
    try:
        description = aiortc_sdp.SessionDescription.parse(text)
    except Exception as exc:  # aiortc raises ValueError, IndexError, AssertionError...
        raise InvalidSdpError(f"unparsable SDP ({type(exc).__name__})") from None
    if not description.media:
        raise InvalidSdpError("SDP has no m-section")
    for index, media in enumerate(description.media):
        if media.kind not in MEDIA_KINDS:
            raise InvalidSdpError(f"m-section {index}: unsupported media kind {media.kind!r}")
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise InvalidSdpError(f"m-section {index}: missing ICE ufrag or password")
        if not media.dtls or not media.dtls.fingerprints:
            raise InvalidSdpError(f"m-section {index}: missing DTLS fingerprint")
        if media.rtp.muxId in (None, ""):
            raise InvalidSdpError(f"m-section {index}: missing a=mid")


def parse_candidate(
    candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
) -> RTCIceCandidate | None:
    """An aiortc candidate from RTCIceCandidateInit fields; ``None`` ends candidates.

    Raises
    ------
    InvalidSdpError
        For a candidate line that does not parse or names neither mid nor m-line.
    """
    if candidate is None or candidate == "":
        return None
    if sdp_mid is None and sdp_mline_index is None:
        raise InvalidSdpError("candidate names neither sdpMid nor sdpMLineIndex")
    line = candidate.removeprefix("a=").removeprefix("candidate:")
    try:
        parsed = aiortc_sdp.candidate_from_sdp(line)
    except Exception as exc:  # AssertionError for too few fields, ValueError for numbers
        raise InvalidSdpError(f"unparsable ICE candidate ({type(exc).__name__})") from None
    parsed.sdpMid = sdp_mid
    parsed.sdpMLineIndex = sdp_mline_index
    return parsed
