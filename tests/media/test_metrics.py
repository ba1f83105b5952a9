"""The media collector exposes Sfu.stats() in Prometheus format."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from media.metrics import METRICS, MediaCollector
from media.passthrough import PassthroughForwarder
from media.sfu import Sfu


async def test_stats_become_metrics() -> None:
    """Every counter of a passthrough Sfu appears, with its value, in the exposition."""
    forwarder = PassthroughForwarder()
    forwarder.counters.forwarded_packets = 7
    forwarder.counters.transcoding_fallbacks = 1
    sfu = Sfu(forwarder=forwarder)
    registry = CollectorRegistry()
    registry.register(MediaCollector(sfu.stats))
    text = generate_latest(registry).decode()
    assert "teleconsult_media_forwarded_frames_total 7.0" in text
    assert "teleconsult_media_transcoding_fallbacks_total 1.0" in text
    assert "teleconsult_media_sessions 0.0" in text
    assert "teleconsult_recording_bytes" not in text  # no recorder: no recording metrics
    assert set(sfu.stats()) <= set(METRICS)
    await sfu.close()
