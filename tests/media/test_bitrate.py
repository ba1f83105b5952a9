"""media.bitrate: subscribers' REMB shares capping what a publisher is told, no I/O."""

from __future__ import annotations

import pytest

from media.bitrate import BitrateConfig, Pacer, RetransmitBudget, SourceBitrate


def test_the_lowest_fresh_share_caps_the_publishers_own_estimate() -> None:
    """The publisher is told the lowest of its uplink and its subscribers' shares."""
    source = SourceBitrate(BitrateConfig(floor_bps=50_000))
    assert source.limit(900_000, now_s=0.0) == 900_000  # nobody has said anything
    source.subscriber("b", 400_000, now_s=0.0)
    source.subscriber("c", 200_000, now_s=0.1)
    assert source.cap(now_s=0.2) == 200_000
    assert source.limit(900_000, now_s=0.2) == 200_000
    assert source.limit(150_000, now_s=0.3) == 150_000  # the uplink is poorer still
    assert source.limit(20_000, now_s=0.3) == 50_000  # but not under the floor
    source.forget("c")
    assert source.limit(900_000, now_s=0.4) == 400_000


def test_a_cap_never_falls_under_the_floor_and_stale_shares_are_forgotten() -> None:
    """One subscriber on a dead link cannot freeze the others: floor, then time-out."""
    source = SourceBitrate(BitrateConfig(floor_bps=80_000, ttl_s=2.0))
    source.subscriber("b", 10_000, now_s=0.0)
    assert source.cap(now_s=1.0) == 80_000
    assert source.cap(now_s=2.5) is None
    assert source.limit(700_000, now_s=2.5) == 700_000


def test_a_sharp_fall_is_sent_at_once_a_small_one_waits() -> None:
    """Only a share well under what the publisher was last told asks for a REMB now."""
    source = SourceBitrate(BitrateConfig(floor_bps=50_000, resend_ratio=0.85))
    assert source.subscriber("b", 600_000, now_s=0.0)  # first figure: tell it
    assert source.limit(800_000, now_s=0.0) == 600_000
    assert not source.subscriber("b", 560_000, now_s=0.5)  # 93 %: wait for the next one
    assert source.subscriber("b", 300_000, now_s=1.0)  # 50 %: at once
    assert source.limit(None, now_s=1.0) == 300_000


def test_config_is_validated() -> None:
    """Nonsense settings are refused with the rule they break."""
    with pytest.raises(ValueError, match="floor_bps"):
        BitrateConfig(floor_bps=0)
    with pytest.raises(ValueError, match="ttl_s"):
        BitrateConfig(ttl_s=0)
    with pytest.raises(ValueError, match="resend_ratio"):
        BitrateConfig(resend_ratio=1.5)


def test_a_packet_is_retransmitted_once_per_repeat_interval() -> None:
    """A NACK repeated within rtx_repeat_s is not answered again; after it, it is."""
    budget = RetransmitBudget(BitrateConfig(rtx_repeat_s=1.0))
    assert budget.allow(7, now_s=0.0)
    assert not budget.allow(7, now_s=0.4)
    assert budget.allow(8, now_s=0.4)
    assert budget.allow(7, now_s=1.1)


def test_retransmissions_keep_to_their_share_of_the_subscribers_link() -> None:
    """At a 200 kbit/s share and 20 %, about 40 kbit/s of retransmissions go: ~4 packets
    of 1200 bytes a second, after a one-second burst."""
    budget = RetransmitBudget(BitrateConfig(rtx_share=0.2, rtx_packet_bytes=1200))
    budget.share_bps = 200_000
    allowed = sum(budget.allow(n, now_s=n * 0.01) for n in range(1000))  # 100 NACKs/s, 10 s
    assert 40 <= allowed <= 50, allowed
    unknown = RetransmitBudget()  # no REMB yet: nothing to keep to but the repeat rule
    assert all(unknown.allow(n, now_s=0.0) for n in range(100))


def test_pacer_spreads_a_burst_at_its_rate_and_lets_slack_through() -> None:
    """A 15-packet keyframe at a 100 kbit/s REMB (150 kbit/s paced): 1200-byte packets
    leave 64 ms apart after the first; unpaced before any REMB."""
    pacer = Pacer(BitrateConfig(floor_bps=50_000, pace_factor=1.5, pace_burst_s=0.02))
    assert pacer.wait(1200, now_s=0.0) == 0.0  # nothing said yet
    pacer.set_estimate(100_000)
    waits = [pacer.wait(1200, now_s=10.0) for _ in range(15)]
    assert waits[0] == 0.0
    assert waits[-1] == pytest.approx(14 * 0.064 - 0.02)
    assert pacer.wait(1200, now_s=20.0) == 0.0  # idle since: the line is free again
