"""What a publisher may send when its subscribers' links are poorer than its own.

The SFU forwards each published video track as it is (no simulcast, no transcoding), so
a subscriber on a poor link (ADSL, 4G at a clinic) can only receive less if the
publisher sends less. Subscribers' browsers estimate their downlink and say so in REMB
messages (Receiver Estimated Maximum Bitrate, draft-alvestrand-rmcat-remb: RTCP PSFB,
FMT 15, a bitrate for a list of SSRCs); the server's receiver of the track estimates
the publisher's uplink the same way and sends REMB to the publisher, whose encoder keeps
under it. :class:`SourceBitrate` caps what the server tells the publisher by the lowest
fresh share among the track's subscribers, never below a floor (an encoder needs a
minimum to send a picture at all, and one subscriber must not freeze the others'
video for good).

No I/O here: the aiortc adapter (:mod:`media.passthrough`) feeds what subscribers say
and asks what to tell the publisher.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

__all__ = ["BitrateConfig", "SourceBitrate"]


@dataclass(frozen=True, kw_only=True)
class BitrateConfig:
    """How subscribers' estimates cap a publisher.

    Parameters
    ----------
    floor_bps
        Never ask a publisher for less (bit/s).
    ttl_s
        A subscriber's estimate older than this is forgotten (browsers repeat theirs at
        least every second or so while media flows).
    resend_ratio
        A cap this much lower than the last figure sent to the publisher is sent at
        once, without waiting for the server's own next estimate.
    """

    floor_bps: int = 80_000
    ttl_s: float = 5.0
    resend_ratio: float = 0.85

    def __post_init__(self) -> None:
        if self.floor_bps <= 0:
            raise ValueError("'floor_bps' must be positive")
        if self.ttl_s <= 0:
            raise ValueError("'ttl_s' must be positive")
        if not 0 < self.resend_ratio <= 1:
            raise ValueError("0 < 'resend_ratio' <= 1 must be True")


@dataclass
class SourceBitrate:
    """The bitrate one published track may use, from its subscribers' estimates."""

    config: BitrateConfig = field(default_factory=BitrateConfig)
    _estimates: dict[Hashable, tuple[int, float]] = field(default_factory=dict)
    last_sent_bps: int | None = None  # the last figure told to the publisher

    def subscriber(self, key: Hashable, share_bps: int, now_s: float) -> bool:
        """Subscriber ``key`` can take ``share_bps`` of this track; whether to tell the
        publisher now (the cap fell well under what it was last told)."""
        self._estimates[key] = (share_bps, now_s)
        cap = self.cap(now_s)
        if cap is None or self.last_sent_bps is None:
            return cap is not None
        return cap < self.last_sent_bps * self.config.resend_ratio

    def forget(self, key: Hashable) -> None:
        """The subscriber stopped receiving this track."""
        self._estimates.pop(key, None)

    def cap(self, now_s: float) -> int | None:
        """The lowest fresh subscriber share (at least the floor), or None if none."""
        fresh = [bps for bps, at_s in self._estimates.values() if now_s - at_s <= self.config.ttl_s]
        if not fresh:
            return None
        return max(self.config.floor_bps, min(fresh))

    def limit(self, estimate_bps: int | None, now_s: float) -> int | None:
        """What to tell the publisher, given the server's own estimate of its uplink
        (None: not known yet); remembered as sent."""
        cap = self.cap(now_s)
        figures = [b for b in (estimate_bps, cap) if b is not None]
        if not figures:
            return None
        self.last_sent_bps = min(figures)
        return self.last_sent_bps
