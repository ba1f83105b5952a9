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

Retransmissions (NACK, answered with RTX) must not make a poor link poorer: on a line
whose queue is full, every packet lost is asked for again, its retransmission queues
behind the rest, is asked for again a round trip later, and the line carries the same
packets over and over. :class:`RetransmitBudget` lets a sender retransmit a packet at
most once per ``repeat_s`` and, while its subscriber has said what it can take, spend no
more than ``share`` of that on retransmissions.

A keyframe is many packets sent at once; on a slow line they queue in the subscriber's
router, and the audio packets behind them arrive late enough for the jitter buffer to
run dry (an audible gap). :class:`Pacer` spreads a subscriber connection's video over
time at ``pace_factor`` times what the subscriber said it can take, while audio and
RTCP go at once, so the router's queue stays short and the voice keeps flowing.

No I/O here: the aiortc adapter (:mod:`media.passthrough`) feeds what subscribers say
and asks what to tell the publisher.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

__all__ = ["BitrateConfig", "Pacer", "RetransmitBudget", "SourceBitrate"]


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
    # Retransmissions
    rtx_share: float = 0.2
    rtx_repeat_s: float = 1.0
    rtx_packet_bytes: int = 1200  # what one retransmission is reckoned to cost
    # Pacing
    pace_factor: float = 1.5
    pace_burst_s: float = 0.02

    def __post_init__(self) -> None:
        if self.floor_bps <= 0:
            raise ValueError("'floor_bps' must be positive")
        if self.ttl_s <= 0:
            raise ValueError("'ttl_s' must be positive")
        if not 0 < self.resend_ratio <= 1:
            raise ValueError("0 < 'resend_ratio' <= 1 must be True")
        if not 0 < self.rtx_share <= 1:
            raise ValueError("0 < 'rtx_share' <= 1 must be True")
        if self.pace_factor < 1:
            raise ValueError("'pace_factor' >= 1 must be True")


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
        (None: not known yet); remembered as sent.

        While subscribers cap the track, the figure is never under the floor either: the
        server's own estimate cannot exceed 1.5 times what arrives, so a publisher held
        low would otherwise stay low (a ratchet), and its video would come back at a few
        per cent a second when the subscriber's line recovers.
        """
        cap = self.cap(now_s)
        if cap is None:
            self.last_sent_bps = estimate_bps
            return estimate_bps
        figure = cap if estimate_bps is None else min(estimate_bps, cap)
        self.last_sent_bps = max(self.config.floor_bps, figure)
        return self.last_sent_bps


@dataclass
class RetransmitBudget:
    """Whether one sender may retransmit a packet now (a token bucket in bytes)."""

    config: BitrateConfig = field(default_factory=BitrateConfig)
    share_bps: int | None = None  # the subscriber's REMB share, when it has said one
    _last_s: dict[int, float] = field(default_factory=dict)  # sequence number -> sent at
    _tokens: float = 0.0
    _at_s: float | None = None

    def allow(self, sequence_number: int, now_s: float) -> bool:
        """Retransmit ``sequence_number`` now? (Counted as sent if so.)"""
        last = self._last_s.get(sequence_number)
        if last is not None and now_s - last < self.config.rtx_repeat_s:
            return False
        if self.share_bps is not None:
            rate_bytes = self.share_bps * self.config.rtx_share / 8
            burst = max(rate_bytes, 2 * self.config.rtx_packet_bytes)  # one second's worth
            elapsed = 0.0 if self._at_s is None else now_s - self._at_s
            self._tokens = min(
                burst, (burst if self._at_s is None else self._tokens) + elapsed * rate_bytes
            )
            self._at_s = now_s
            if self._tokens < self.config.rtx_packet_bytes:
                return False
            self._tokens -= self.config.rtx_packet_bytes
        self._last_s[sequence_number] = now_s
        if len(self._last_s) > 1024:  # 16-bit numbers wrap; keep the recent ones
            for old in [
                s for s, t in self._last_s.items() if now_s - t >= self.config.rtx_repeat_s
            ]:
                del self._last_s[old]
        return True


@dataclass
class Pacer:
    """When the next video packet of one subscriber connection may leave (a leaky
    bucket with ``pace_burst_s`` of slack); unpaced until the subscriber has said what
    it can take."""

    config: BitrateConfig = field(default_factory=BitrateConfig)
    rate_bps: float | None = None  # what the subscriber can take, times pace_factor
    _due_s: float = 0.0

    def set_estimate(self, estimate_bps: int) -> None:
        """The subscriber's REMB for the whole connection (bit/s)."""
        self.rate_bps = max(self.config.floor_bps, estimate_bps) * self.config.pace_factor

    def wait(self, size_bytes: int, now_s: float) -> float:
        """Seconds to hold a video packet of ``size_bytes`` (booked as sent then)."""
        if self.rate_bps is None:
            return 0.0
        due = max(self._due_s, now_s - self.config.pace_burst_s)
        self._due_s = due + size_bytes * 8 / self.rate_bps
        return max(0.0, due - now_s)
