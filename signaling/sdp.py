"""Trickle ICE from the server: split the candidates out of a server SDP.

aiortc gathers every candidate before it returns a description, so its SDP carries
them inline. The protocol trickles candidates both ways (docs/signaling.md): the
server sends its description without candidates, then each candidate as a
``candidate`` message, then an end-of-candidates marker. A client therefore handles
the server's candidates the same way whatever the media backend does, and a backend
that gathers slowly (a TURN allocation over a poor link) would not hold up the
description.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SdpCandidate", "split_candidates"]


@dataclass(frozen=True, slots=True)
class SdpCandidate:
    """One ``a=candidate`` line, with the media section it belongs to."""

    candidate: str  # "candidate:..." without the "a=" prefix, as RTCIceCandidateInit has it
    sdp_mid: str | None
    sdp_mline_index: int


def split_candidates(sdp: str) -> tuple[str, list[SdpCandidate]]:
    """Return ``sdp`` without candidate and end-of-candidates lines, and the candidates.

    The line ending of the input (CRLF as SDP requires, or LF) is kept.
    """
    newline = "\r\n" if "\r\n" in sdp else "\n"
    kept: list[str] = []
    found: list[tuple[str, int]] = []
    mids: dict[int, str] = {}
    section = -1
    for line in sdp.split(newline):
        if line.startswith("m="):
            section += 1
        elif line.startswith("a=mid:") and section >= 0:
            mids[section] = line[len("a=mid:") :]
        if line.startswith("a=candidate:") and section >= 0:
            found.append((line[len("a=") :], section))
            continue
        if line == "a=end-of-candidates":
            continue
        kept.append(line)
    candidates = [SdpCandidate(text, mids.get(index), index) for text, index in found]
    return newline.join(kept), candidates
