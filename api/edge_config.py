"""The edge's settings: plain frozen dataclasses, cheap to import.

The configuration tree of ``teleconsult`` (``teleconsult.config.Config``) holds these as
its ``[server]``, ``[api]`` and ``[uploads]`` sections as they are; this module imports neither
Litestar nor uvicorn, so that reading a configuration (``teleconsult token``) stays
quick.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ApiConfig", "EdgeConfig", "RecordUploadConfig"]


@dataclass(frozen=True, kw_only=True)
class EdgeConfig:
    """Where and how the edge listens.

    Attributes
    ----------
    host : str
        Interface to bind (loopback by default).
    port : int
        TCP port; 0 picks a free one (see :attr:`Edge.port`).
    ping_interval_s, ping_timeout_s : float
        WebSocket keep-alive pings, seconds.
    close_timeout_s : float
        How long closing the connections may take at shutdown, seconds.
    max_frame_bytes : int
        Largest ``/ws`` message read; a larger one is answered with ``error too_large``
        and close 1009 (the core answers messages between its own, smaller limit and
        this one with ``too_large`` and keeps the connection).
    max_queued_bytes : int
        Outgoing text queued for one slow client before it is closed.
    max_live_backlog_bytes : int
        Outgoing text queued for one client beyond which live ECG chunks that make no
        flag final are skipped for it, not queued: a viewer on a slow link sees gaps
        (in ``first_index``) a bounded time behind, and is not closed.
    device_ingest_speed : float
        A cart's connection is read at most this many times faster than real time (in
        seconds of signal per second, over all its streams) once its burst is spent: a
        cart catching up after a drop sends its backlog at this pace; a faster one is
        slowed (its next message is read later: TCP pushes back), never refused.
    device_ingest_burst_s : float
        Seconds of signal a connection may send at once before the pacing starts.
    max_connections_per_address : int
        Open WebSocket connections (``/ws`` and ``/device`` together) from one client
        address (an IPv6 client: its /64); one more is refused in the upgrade with HTTP
        429. Generous by default: a hospital's NAT carries many people behind one
        address, and loopback counts too (a reverse proxy on the same host is one
        address for everyone behind it).
    max_http_connections_per_address : int
        Open HTTP connections (keep-alive ones included; not the WebSockets, counted
        above) from one client address; one more is answered 429 ``too_many_connections``
        and closed before it is read. A browser opens up to six at a time.
    heap_trim_every_s : float
        ``teleconsult serve`` returns the C heap's free pages to the system this often
        (glibc's ``malloc_trim``, :mod:`teleconsult.heap`); 0: never.
    heap_mmap_threshold_bytes : int
        ``teleconsult serve`` gives every C heap block at least this large a mapping
        of its own (glibc's ``M_MMAP_THRESHOLD``, fixed: it no longer rises); 0:
        glibc's own rising threshold.
    """

    host: str = "127.0.0.1"
    port: int = 8443
    # Keep-alive
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    close_timeout_s: float = 5.0
    # Limits
    max_frame_bytes: int = 256 * 1024
    max_queued_bytes: int = 4 * 1024 * 1024
    max_live_backlog_bytes: int = 512 * 1024
    device_ingest_speed: float = 10.0
    device_ingest_burst_s: float = 30.0
    max_connections_per_address: int = 200
    max_http_connections_per_address: int = 200
    heap_trim_every_s: float = 60.0
    heap_mmap_threshold_bytes: int = 256 * 1024

    def __post_init__(self) -> None:
        if self.heap_trim_every_s != 0 and not 1 <= self.heap_trim_every_s <= 86_400:
            raise ValueError("server.heap_trim_every_s must be 0 (never) or 1-86400 s")
        if self.heap_mmap_threshold_bytes != 0 and not (
            4096 <= self.heap_mmap_threshold_bytes <= 32 * 1024 * 1024
        ):
            raise ValueError(
                "server.heap_mmap_threshold_bytes must be 0 (glibc's own) or 4096-33554432"
            )
        if not 1 <= self.max_connections_per_address <= 1_000_000:
            raise ValueError("server.max_connections_per_address must be in 1-1000000")
        if not 1 <= self.max_http_connections_per_address <= 1_000_000:
            raise ValueError("server.max_http_connections_per_address must be in 1-1000000")
        if not 1 <= self.device_ingest_speed <= 10_000:
            raise ValueError("server.device_ingest_speed must be in 1-10000 (times real time)")
        if not 1 <= self.device_ingest_burst_s <= 3600:
            raise ValueError("server.device_ingest_burst_s must be in 1-3600 s")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"server.port must be 0-65535, not {self.port}")
        if self.ping_interval_s <= 0 or self.ping_timeout_s <= 0 or self.close_timeout_s <= 0:
            raise ValueError("ping_interval_s, ping_timeout_s and close_timeout_s must be > 0")
        if self.max_frame_bytes < 1024 or self.max_queued_bytes < self.max_frame_bytes:
            raise ValueError("max_frame_bytes >= 1024 and max_queued_bytes >= it required")
        if not 0 <= self.max_live_backlog_bytes <= self.max_queued_bytes:
            raise ValueError("0 <= max_live_backlog_bytes <= max_queued_bytes required")


@dataclass(frozen=True, kw_only=True)
class ApiConfig:
    """How the edge answers HTTP.

    Attributes
    ----------
    max_body_bytes : int
        A request body over this answers 413 ``too_large`` (uploads excepted: their
        handlers set their own limit).
    health_timeout_s : float
        A health check that has not answered after this is counted as failed, seconds.
    tls : bool
        The edge serves TLS itself: add ``Strict-Transport-Security``.
    title, version : str
        Of the OpenAPI document.
    """

    # Limits
    max_body_bytes: int = 1024 * 1024
    # Timeouts
    health_timeout_s: float = 2.0
    # Transport
    tls: bool = False
    # OpenAPI
    title: str = "teleconsult"
    version: str = "1.0.0"

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1024:
            raise ValueError(f"api.max_body_bytes must be >= 1024, not {self.max_body_bytes}")
        if self.health_timeout_s <= 0:
            raise ValueError("api.health_timeout_s must be positive")


@dataclass(frozen=True, kw_only=True)
class RecordUploadConfig:
    """Limits of an uploaded record (``POST /api/v1/ecg/records``; the ``[uploads]``
    section of the configuration).

    Attributes
    ----------
    max_header_bytes : int
        The ``.hea`` file.
    max_signal_bytes : int
        The ``.dat`` file (the request may be this plus the header and 64 KiB of form).
        Default 512 MiB: a 24-hour Holter of up to 6 leads at 500 Hz in format 16 (3
        leads: 259 MB), or 12 leads at 250 Hz; received and checked a chunk at a time.
    max_leads : int
        Signals per record (at most ``ecg.record.MAX_LEADS``, 15).
    max_samples_per_lead : int
        Samples of each lead (default: 24 h at 500 Hz).
    """

    # Limits
    max_header_bytes: int = 64 * 1024
    max_signal_bytes: int = 512 * 1024 * 1024
    max_leads: int = 15
    max_samples_per_lead: int = 43_200_000

    def __post_init__(self) -> None:
        if not 1024 <= self.max_header_bytes <= 1024 * 1024:
            raise ValueError("max_header_bytes must be in 1 KiB-1 MiB")
        if not 1024 <= self.max_signal_bytes <= 2**31:
            raise ValueError("max_signal_bytes must be in 1 KiB-2 GiB")
        if not 1 <= self.max_leads <= 15:
            raise ValueError("max_leads must be in 1-15")
        if self.max_samples_per_lead < 1:
            raise ValueError("max_samples_per_lead must be positive")

    @property
    def max_request_bytes(self) -> int:
        """The whole multipart request: both files and the form's other fields."""
        return self.max_header_bytes + self.max_signal_bytes + 64 * 1024
