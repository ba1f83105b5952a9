"""The thin asyncio layer: websockets in and out of the protocol core.

One port (``websockets.asyncio.server.serve``):

- ``/ws``: participants. Each frame goes to :meth:`Core.receive`; the effects that
  come back are carried out here and nowhere else.
- ``/device``: handed to a *device handler* when one is registered (issue 4 plugs the
  ECG cart endpoint in through :attr:`SignalingServer.device_handler`); until then the
  connection is closed with 1013 "not yet available".
- Plain GETs through ``process_request``: :mod:`signaling.http`.

Design notes:

- Sending never waits: ``websockets.broadcast`` writes to the transport at once, so a
  slow client cannot hold up a room (websockets closes it when its keep-alive pings go
  unanswered). A message broadcast to many is encoded once.
- The media effects of one participant run in order, in one *lane* (each awaits the
  previous), because an offer must not reach the backend before the session it
  belongs to is open; different participants' media calls run concurrently.
- Store writes (SQLite, fsync) run in one worker thread, in order, so that the event
  loop never waits on the disk. They are group-committed: while one batch is being
  written, new records queue up and go together in the next (one fsync for many
  joins). Audit entries are also published on the Bus.
- Internal errors are logged with their traceback and never reach a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from sessions.store import AuditEntry, Bus, Record, Store
from signaling import http
from signaling import messages as m
from signaling.core import (
    Close,
    ConnId,
    Core,
    EcgRequest,
    Effect,
    MediaAnswer,
    MediaCandidate,
    MediaJoin,
    MediaLeave,
    MediaOffer,
    MediaPause,
    MediaRecord,
    Persist,
    Send,
)
from signaling.device import ViewerHub
from signaling.errors import ServerError
from signaling.messages import ErrorCode
from signaling.metrics import Metrics
from signaling.ports import MediaBackend, PeerRole, TrackKind

logger = logging.getLogger(__name__)

__version__ = "0.1.0"


class DeviceHandler(Protocol):
    """Takes over a ``/device`` WebSocket connection until it ends."""

    async def __call__(self, connection: ServerConnection) -> None: ...


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Where and how the server listens.

    Attributes
    ----------
    host : str
        Interface to bind (loopback by default).
    port : int
        TCP port; 0 picks a free one (see :attr:`SignalingServer.port`).
    web_dir : Path
        The browser client's folder.
    ssl_context : ssl.SSLContext or None
        TLS for ``wss://``; plain ``ws://`` without it.
    ping_interval_s, ping_timeout_s : float
        WebSocket keep-alive pings, seconds.
    close_timeout_s : float
        How long a closing handshake may take, seconds.
    max_frame_bytes : int
        Frames larger than this are refused by websockets with close 1009 (the core
        answers messages between its own limit and this one with ``too_large``).
    tick_interval_s : float
        How often grace periods and join timeouts are checked, seconds.
    """

    host: str = "127.0.0.1"
    port: int = 8443
    web_dir: Path = Path("web")
    ssl_context: ssl.SSLContext | None = None
    # Keep-alive
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    close_timeout_s: float = 5.0
    # Limits
    max_frame_bytes: int = 256 * 1024
    # Timers
    tick_interval_s: float = 0.5


class _Listener:
    """The :class:`MediaListener` of one media session (participant and generation)."""

    def __init__(self, server: SignalingServer, participant_id: str, generation: int) -> None:
        self._server = server
        self._participant_id = participant_id
        self._generation = generation

    async def send_offer(self, pc: PeerRole, sdp: str) -> None:
        core = self._server.core
        self._server.run(core.media_offer(self._participant_id, self._generation, pc, sdp))

    async def track_published(self, track_id: str, kind: TrackKind, stream_id: str) -> None:
        core = self._server.core
        self._server.run(
            core.media_track_published(
                self._participant_id, self._generation, track_id, kind, stream_id
            )
        )

    async def track_ended(self, track_id: str) -> None:
        core = self._server.core
        self._server.run(core.media_track_ended(self._participant_id, self._generation, track_id))

    async def connection_state(self, pc: PeerRole, state: str) -> None:
        core = self._server.core
        self._server.run(
            core.media_connection_state(self._participant_id, self._generation, pc, state)
        )


class SignalingServer:
    """The signaling server: the core, the media backend, the Store and Bus, one port.

    Parameters
    ----------
    core : Core
        The protocol core.
    media : MediaBackend
        The server side of WebRTC.
    store : Store
        Persistence for bans, rooms and the audit log.
    bus : Bus or None
        Where audit entries are published (channel ``audit``).
    config : ServerConfig
        Where and how to listen.
    device_handler : DeviceHandler or None
        Takes ``/device`` connections (issue 4); may also be set later. The attribute
        :attr:`device_check` may be set to a ``(connection, request) -> Response | None``
        that refuses a ``/device`` upgrade before it happens.
    """

    def __init__(
        self,
        *,
        core: Core,
        media: MediaBackend,
        store: Store,
        bus: Bus | None = None,
        config: ServerConfig | None = None,
        device_handler: DeviceHandler | None = None,
    ) -> None:
        self.core = core
        self.media = media
        self.store = store
        self.bus = bus
        self.config = config or ServerConfig()
        self.device_handler = device_handler
        # Optional check of /device upgrade requests: return a Response to refuse.
        self.device_check: Callable[[ServerConnection, Request], Response | None] | None = None
        # Live ECG viewers (``watch``, ``ecg_*``); None: answered with ``not_found``.
        self.viewers: ViewerHub | None = None
        # Awaited by close() after the connections are closed (the device endpoint's
        # last group commit).
        self.closers: list[Callable[[], Awaitable[None]]] = []
        self.metrics = Metrics(core)
        self._ids = itertools.count(1)
        self._sockets: dict[ConnId, ServerConnection] = {}
        self._join_started: dict[ConnId, float] = {}
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._pending_writes: list[Record] = []
        self._flushing: asyncio.Future[None] | None = None
        self._server: Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._started_s = time.monotonic()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind and start accepting connections.

        Raises
        ------
        ServerError
            If the address cannot be bound.
        """
        config = self.config
        try:
            self._server = await serve(
                self._handler,
                config.host,
                config.port,
                process_request=self._process_request,
                ssl=config.ssl_context,
                ping_interval=config.ping_interval_s,
                ping_timeout=config.ping_timeout_s,
                close_timeout=config.close_timeout_s,
                max_size=config.max_frame_bytes,
                # Signaling messages are small; per-connection zlib state would cost
                # far more memory than it saves bandwidth.
                compression=None,
                server_header=None,
            )
        except OSError as exc:
            raise ServerError(
                f"cannot listen on {config.host}:{config.port}: {exc.strerror}"
            ) from exc
        self._started_s = time.monotonic()
        self._ticker = asyncio.create_task(self._tick_forever())
        logger.info("listening on %s", self.url)

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        if self._server is None:
            raise ServerError("the server is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """``http://host:port`` (``https`` with TLS)."""
        scheme = "https" if self.config.ssl_context else "http"
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"{scheme}://{host}:{self.port}"

    async def close(self) -> None:
        """Close every connection (1001), wait for media and Store writes, release all."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        # Closing the connections queued media leaves; let them finish first.
        while self._lanes or self._tasks or self._flushing is not None:
            waiting: list[asyncio.Future[Any]] = [*self._lanes.values(), *self._tasks]
            if self._flushing is not None:
                waiting.append(self._flushing)
            await asyncio.gather(*waiting, return_exceptions=True)
        for closer in self.closers:
            try:
                await closer()
            except Exception:
                logger.exception("failed to close %s", closer)
        try:
            await self.media.close()
        except Exception:
            logger.exception("media backend failed to close")
        self._writer.shutdown(wait=True)
        self.store.close()

    async def __aenter__(self) -> SignalingServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ I/O

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.device_check is not None and request.path.split("?", 1)[0] == "/device":
            # The device endpoint may refuse before the upgrade (bad token: HTTP 401).
            refusal = self.device_check(connection, request)
            if refusal is not None:
                return refusal
        return http.route(
            request.path,
            web_dir=self.config.web_dir,
            health=self.health,
            metrics=self.metrics.render,
        )

    def health(self) -> dict[str, object]:
        """The ``/healthz`` document."""
        return {
            "status": "ok",
            "version": __version__,
            "protocol": m.PROTOCOL_VERSION,
            "rooms": self.core.room_count,
            "participants": self.core.participant_count,
            "connections": self.core.connection_count,
            "uptime_s": round(time.monotonic() - self._started_s, 3),
        }

    async def _handler(self, ws: ServerConnection) -> None:
        path = ws.request.path.split("?", 1)[0] if ws.request else ""
        if path == "/device":
            if self.device_handler is None:
                await ws.close(1013, "not yet available")
            else:
                await self.device_handler(ws)
            return
        conn = next(self._ids)
        self._sockets[conn] = ws
        self.run(self.core.open(conn, time.monotonic()))
        try:
            async for data in ws:
                if (
                    conn not in self._join_started
                    and self.core.connection_participant(conn) is None
                ):
                    self._join_started[conn] = time.perf_counter()
                self.run(self.core.receive(conn, data, time.monotonic()))
        except ConnectionClosed:
            pass
        finally:
            del self._sockets[conn]
            self._join_started.pop(conn, None)
            if self.viewers is not None:
                self.viewers.closed(conn)
            self.run(self.core.closed(conn, time.monotonic()))

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_interval_s)
            self.run(self.core.tick(time.monotonic()))

    # ------------------------------------------------------------------ effects

    def run(self, effects: list[Effect]) -> None:
        """Carry out the core's effects, in order."""
        encoded: dict[int, str] = {}
        for effect in effects:
            try:
                self._run_one(effect, encoded)
            except Exception:
                logger.exception("failed to carry out %s", type(effect).__name__)

    def _run_one(self, effect: Effect, encoded: dict[int, str]) -> None:
        match effect:
            case Send(conn=conn, message=message):
                self._send(conn, message, encoded)
            case Close(conn=conn, code=code, reason=reason):
                ws = self._sockets.get(conn)
                if ws is not None:
                    self._spawn(ws.close(code, reason))
            case Persist(record=record):
                self._persist(record)
            case EcgRequest(conn=conn, room=room, message=message):
                if self.viewers is None:
                    error = m.Error(
                        code=ErrorCode.NOT_FOUND, reason="live ECG is not served", ref=message.ref
                    )
                    self._send(conn, error, encoded)
                else:
                    self.viewers.request(conn, room, message)
            case MediaRecord(room_id=room, on=on):
                self._record(room, on)
            case _:
                self._media(effect)

    def _record(self, room_id: str, on: bool) -> None:
        """Switch the room's recording; a backend that cannot record reports why."""
        set_recording = getattr(self.media, "set_recording", None)
        try:
            if set_recording is None:
                raise ValueError("this server's media backend does not record")
            set_recording(room_id, on)
        except Exception as exc:  # the backend's errors name no internal state
            logger.warning("recording of room %s not switched: %s", room_id, exc)
            self.run(self.core.recording_changed(room_id, False, str(exc)))

    def _send(self, conn: ConnId, message: m.ServerMessage, encoded: dict[int, str]) -> None:
        ws = self._sockets.get(conn)
        if ws is None:
            return
        key = id(message)
        if key not in encoded:
            encoded[key] = m.encode(message).decode()
        broadcast([ws], encoded[key])
        tag = str(type(message).__struct_config__.tag)
        self.metrics.sent[tag] += 1
        if tag in ("joined", "waiting"):
            started = self._join_started.pop(conn, None)
            if started is not None:
                self.metrics.join_seconds.observe(time.perf_counter() - started)

    def send_text(self, conn: ConnId, text: str) -> None:
        """Send already encoded JSON on a ``/ws`` connection (never waits; gone: dropped)."""
        ws = self._sockets.get(conn)
        if ws is not None:
            broadcast([ws], text)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _persist(self, record: Record) -> None:
        """Queue a Store write; writes queued while one is in flight go in the next batch."""
        self._pending_writes.append(record)
        if isinstance(record, AuditEntry) and self.bus is not None:
            self._spawn(self.bus.publish("audit", msgspec.json.encode(asdict(record))))
        if self._flushing is None:
            self._flush_writes()

    def _flush_writes(self) -> None:
        batch, self._pending_writes = self._pending_writes, []
        future = asyncio.get_running_loop().run_in_executor(self._writer, self.store.write, batch)
        self._flushing = future
        future.add_done_callback(self._written)

    def _written(self, future: asyncio.Future[None]) -> None:
        exc = future.exception()
        if exc is not None:
            logger.error("store write failed: %s", exc)
        self._flushing = None
        if self._pending_writes:
            self._flush_writes()

    def _media(self, effect: Effect) -> None:
        """Queue a media call in its participant's lane."""
        assert isinstance(
            effect, MediaJoin | MediaOffer | MediaAnswer | MediaCandidate | MediaPause | MediaLeave
        )
        previous = self._lanes.get(effect.participant_id)
        task = asyncio.create_task(self._after(previous, lambda: self._call_media(effect)))
        self._lanes[effect.participant_id] = task
        task.add_done_callback(lambda done: self._lane_done(effect.participant_id, done))

    def _lane_done(self, participant_id: str, task: asyncio.Task[None]) -> None:
        if self._lanes.get(participant_id) is task:
            del self._lanes[participant_id]

    @staticmethod
    async def _after(
        previous: asyncio.Task[None] | None, call: Callable[[], Awaitable[None]]
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        await call()

    async def _call_media(
        self,
        effect: MediaJoin | MediaOffer | MediaAnswer | MediaCandidate | MediaPause | MediaLeave,
    ) -> None:
        media, core = self.media, self.core
        conn: ConnId | None = None
        ref: str | None = None
        # Which error code a ValueError from the backend means, per call.
        value_error = ErrorCode.MEDIA_FAILED
        try:
            match effect:
                case MediaJoin(conn=conn, participant_id=pid, room_id=room, generation=gen):
                    listener = _Listener(self, pid, gen)
                    await media.join(room, pid, listener, effect.ice_servers)
                    self.run(core.media_joined(pid, gen))
                case MediaOffer(conn=conn, participant_id=pid, pc=pc, sdp=sdp, ref=ref):
                    value_error = ErrorCode.INVALID_SDP
                    answer = await media.offer(pid, pc, sdp)
                    self.run(core.media_answer(conn, pid, answer, ref))
                case MediaAnswer(conn=conn, participant_id=pid, pc=pc, sdp=sdp, ref=ref):
                    value_error = ErrorCode.INVALID_SDP
                    await media.answer(pid, pc, sdp)
                case MediaCandidate(conn=conn, ref=ref):
                    value_error = ErrorCode.UNKNOWN_TRANSCEIVER
                    await media.candidate(
                        effect.participant_id,
                        effect.pc,
                        effect.candidate,
                        effect.sdp_mid,
                        effect.sdp_mline_index,
                    )
                case MediaPause(participant_id=pid, kind=kind, paused=paused):
                    await media.set_paused(pid, kind, paused)
                case MediaLeave(participant_id=pid):
                    await media.leave(pid)
        except ValueError as exc:
            logger.info("media refused %s: %s", type(effect).__name__, exc)
            if conn is not None:
                self.run(core.media_error(conn, value_error, _REASONS[value_error], ref))
        except Exception:
            logger.exception("media backend failed on %s", type(effect).__name__)
            if conn is not None:
                reason = _REASONS[ErrorCode.MEDIA_FAILED]
                self.run(core.media_error(conn, ErrorCode.MEDIA_FAILED, reason, ref))


# What a client is told; the backend's own words go to the log only.
_REASONS = {
    ErrorCode.INVALID_SDP: "the SDP could not be applied",
    ErrorCode.UNKNOWN_TRANSCEIVER: "the candidate names no known transceiver",
    ErrorCode.MEDIA_FAILED: "the media server failed for this request",
}
