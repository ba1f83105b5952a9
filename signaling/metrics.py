"""Prometheus metrics of the signaling server, in its own ``CollectorRegistry``.

Counts that the core already keeps (rooms, participants, connections, messages
received by type, errors by code) are read at scrape time by a custom collector rather
than mirrored into prometheus objects on every message: the hot path only increments
a ``Counter``. Messages sent and the join latency histogram are recorded by the I/O
layer, which is where they happen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from signaling.core import Core

# Join round trip on loopback is around a millisecond; the tail matters up to seconds.
JOIN_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _CoreCollector(Collector):
    def __init__(self, core: Core, sent: Counter[str]) -> None:
        self._core = core
        self._sent = sent

    def collect(self) -> Iterator[Any]:
        core = self._core
        for name, doc, value in (
            ("teleconsult_rooms", "Rooms with at least one participant.", core.room_count),
            (
                "teleconsult_participants",
                "Participants waiting, in a room, or disconnected in their grace period.",
                core.participant_count,
            ),
            ("teleconsult_connections", "Open /ws connections.", core.connection_count),
        ):
            yield GaugeMetricFamily(name, doc, value=value)
        messages = CounterMetricFamily(
            "teleconsult_messages",
            "Signaling messages by direction and type.",
            labels=["direction", "type"],
        )
        for direction, counts in (("in", core.stats.received), ("out", self._sent)):
            for kind, count in sorted(counts.items()):
                messages.add_metric([direction, kind], count)
        yield messages
        errors = CounterMetricFamily(
            "teleconsult_errors", "Errors sent to clients, by code.", labels=["code"]
        )
        for code, count in sorted(core.stats.errors.items()):
            errors.add_metric([code], count)
        yield errors


class Metrics:
    """The server's registry: core counts, messages sent, join latency, chunks skipped."""

    def __init__(self, core: Core) -> None:
        self.registry = CollectorRegistry()
        self.sent: Counter[str] = Counter()
        self.registry.register(_CoreCollector(core, self.sent))
        self.join_seconds = Histogram(
            "teleconsult_join_seconds",
            "From receiving join to sending joined or waiting, seconds.",
            buckets=JOIN_BUCKETS_S,
            registry=self.registry,
        )
        self.chunks_skipped = PromCounter(
            "teleconsult_ecg_chunks_skipped",
            "Live ECG chunks not sent to a viewer whose connection lagged.",
            registry=self.registry,
        )

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
