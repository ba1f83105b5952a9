"""Prometheus metrics of the media side, read from :meth:`media.sfu.Sfu.stats` at scrape time.

Like the signaling collector, nothing is mirrored on the hot path: the forwarder and
the recorder only bump integers, and :class:`MediaCollector` turns them into metric
families when ``/metrics`` is scraped. Register it in the server's registry::

    registry.register(MediaCollector(sfu.stats))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# stats() key -> (metric name, help, counter?)
METRICS: dict[str, tuple[str, str, bool]] = {
    "sessions": ("teleconsult_media_sessions", "Open media sessions (participants).", False),
    "published_tracks": ("teleconsult_media_published_tracks", "Tracks received.", False),
    "forwarded_tracks": ("teleconsult_media_forwarded_tracks", "Tracks sent.", False),
    "forwarded_packets": (
        "teleconsult_media_forwarded_frames",
        "Encoded frames forwarded to subscribers without decoding.",
        True,
    ),
    "forwarded_bytes": (
        "teleconsult_media_forwarded_bytes",
        "Bytes of encoded frames forwarded without decoding.",
        True,
    ),
    "keyframe_requests": (
        "teleconsult_media_keyframe_requests",
        "Keyframe requests (PLI) sent to publishers, after throttling.",
        True,
    ),
    "keyframe_throttled": (
        "teleconsult_media_keyframe_throttled",
        "Keyframe requests held back by the per-source throttle.",
        True,
    ),
    "transcoding_fallbacks": (
        "teleconsult_media_transcoding_fallbacks",
        "Subscribers that needed decoding and re-encoding (codec mismatch).",
        True,
    ),
    "transcoding_sinks": (
        "teleconsult_media_transcoding_subscriptions",
        "Subscriptions currently transcoded.",
        False,
    ),
    "decoded_frames": (
        "teleconsult_media_decoded_frames",
        "Frames handed to a decoder (only for transcoding fallbacks).",
        True,
    ),
    "remb_capped": (
        "teleconsult_media_remb_capped",
        "REMBs to publishers lowered to a subscriber's share (poor downlinks).",
        True,
    ),
    "remb_sent": (
        "teleconsult_media_remb_sent",
        "REMBs sent to publishers at once because a subscriber's link fell.",
        True,
    ),
    "rtx_refused": (
        "teleconsult_media_rtx_refused",
        "NACKed packets not retransmitted (asked again too soon, or over the link's budget).",
        True,
    ),
    "recording_rooms": ("teleconsult_recording_rooms", "Rooms being recorded.", False),
    "recording_bytes": ("teleconsult_recording_bytes", "Bytes of media recorded.", True),
    "recording_packets": ("teleconsult_recording_frames", "Encoded frames recorded.", True),
    "recording_errors": (
        "teleconsult_recording_errors",
        "Recordings stopped by an error (disk full...).",
        True,
    ),
    "recordings_started": ("teleconsult_recordings_started", "Recordings started.", True),
}


class MediaCollector(Collector):
    """Yields one metric family per known key of ``stats()`` (absent keys are skipped)."""

    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        values = self._stats()
        for key, (name, doc, counter) in METRICS.items():
            if key not in values:
                continue
            family = CounterMetricFamily if counter else GaugeMetricFamily
            yield family(name, doc, value=values[key])
