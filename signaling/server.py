"""The pump of the protocol core: its effects carried out, with no transport of its own.

The WebSocket transport is the edge's (``api/``: one ASGI application served by
uvicorn on one port, see :mod:`api.ws`). It hands each ``/ws`` connection to
:meth:`SignalingServer.open` with an :class:`~signaling.ports.Outlet` (how to send on
and close that connection), feeds each message to :meth:`SignalingServer.receive` and
reports the end with :meth:`SignalingServer.closed`. Every message goes to
:meth:`Core.receive`; the effects that come back are carried out here and nowhere else.

Design notes:

- Sending never waits: an :class:`~signaling.ports.Outlet` queues the text (bounded,
  per connection; a client whose queue overflows is closed) and a writer task of the
  transport drains it, so a slow client cannot hold up a room. A message broadcast to
  many is encoded once (per run of effects).
- The media effects of one participant run in order, in one *lane* (each awaits the
  previous), because an offer must not reach the backend before the session it
  belongs to is open; different participants' media calls run concurrently.
- Store writes (SQLite, fsync) run in one worker thread, in order, so that the event
  loop never waits on the disk. They are group-committed: while one batch is being
  written, new records queue up and go together in the next (one fsync for many
  joins). Audit entries are also published on the Bus. A failed write is logged and
  makes :meth:`SignalingServer.store_health` fail (``/healthz`` says ``degraded``).
- Internal errors are logged with their traceback and never reach a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgspec

from sessions.store import AuditEntry, Ban, Bus, Record, Store
from signaling import messages as m
from signaling.core import Core
from signaling.device import ViewerHub
from signaling.effects import (
    Close,
    ConnId,
    EcgRequest,
    Effect,
    MediaAnswer,
    MediaCandidate,
    MediaJoin,
    MediaLeave,
    MediaOffer,
    MediaPause,
    MediaReceive,
    MediaRecord,
    Persist,
    Send,
    Waiting,
)
from signaling.messages import ErrorCode
from signaling.metrics import Metrics
from signaling.ports import MediaBackend, Outlet, PeerRole, TrackKind

logger = logging.getLogger(__name__)

# The effects that are calls of the media backend, run in their participant's lane.
MediaCall = (
    MediaJoin | MediaOffer | MediaAnswer | MediaCandidate | MediaPause | MediaReceive | MediaLeave
)

__version__ = "0.1.0"


class StoreFailed(Exception):
    """The last Store write failed (raised by :meth:`SignalingServer.store_health`)."""


BANS_CHANNEL = "bans"


class SharedBan(msgspec.Struct, frozen=True):
    """A ban one node wrote, as the Bus carries it to the others."""

    node: str
    ban: Ban


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How the pump runs.

    Attributes
    ----------
    tick_interval_s : float
        How often grace periods and join timeouts are checked, seconds.
    write_linger_s : float
        How long a Store write that nobody waits for (an audit entry of a join, a
        leave) may wait for others to share its transaction, seconds (PostgreSQL's
        ``commit_delay``). A write the core waits for (a ban before its removal is
        announced) never waits. 0 writes each at once.
    """

    # Timers
    tick_interval_s: float = 0.5
    write_linger_s: float = 0.01

    def __post_init__(self) -> None:
        if self.tick_interval_s <= 0:
            raise ValueError(f"tick_interval_s must be positive, not {self.tick_interval_s}")
        if not 0 <= self.write_linger_s <= 1:
            raise ValueError(f"write_linger_s must be within [0, 1], not {self.write_linger_s}")


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
    """The signaling pump: the core, the media backend, the Store and Bus.

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
        Timers.
    """

    def __init__(
        self,
        *,
        core: Core,
        media: MediaBackend,
        store: Store,
        bus: Bus | None = None,
        config: ServerConfig | None = None,
    ) -> None:
        self.core = core
        self.media = media
        self.store = store
        self.bus = bus
        self.config = config or ServerConfig()
        # Live ECG viewers (``watch``, ``ecg_*``); None: answered with ``not_found``.
        self.viewers: ViewerHub | None = None
        # Told (on the loop) when someone enters a waiting room; must not block.
        self.on_waiting: Callable[[Waiting], None] | None = None
        # Awaited by close() after the pump has settled (the device endpoint's last
        # group commit).
        self.closers: list[Callable[[], Awaitable[None]]] = []
        self.metrics = Metrics(core)
        self._ids = itertools.count(1)
        self._outlets: dict[ConnId, Outlet] = {}
        self._join_started: dict[ConnId, float] = {}
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._pending_writes: list[Record] = []
        self._pending_acks: list[int] = []  # of the writes the core waits for
        self._flushing: asyncio.Future[None] | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._closing = False
        self._write_failed = False
        self._ticker: asyncio.Task[None] | None = None
        self._ban_listener: asyncio.Task[None] | None = None
        self.node = uuid.uuid4().hex  # tells this node's bans from the others' on the Bus
        self._started_s = time.monotonic()
        media.on_recording = self._recording_changed

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the timers (from the running event loop)."""
        self._started_s = time.monotonic()
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick_forever())
        if self._ban_listener is None and self.bus is not None:
            bans = await self.bus.subscribe(BANS_CHANNEL)
            self._ban_listener = asyncio.create_task(self._apply_bans(bans))

    async def close(self) -> None:
        """Wait for media calls and Store writes (after the transport closed), release all."""
        self._closing = True  # from now on every write goes at once
        if self._linger is not None:
            self._flush_writes()
        for task in (self._ticker, self._ban_listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._ticker = self._ban_listener = None
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

    # ------------------------------------------------------------------ connections

    def open(self, outlet: Outlet) -> ConnId:
        """A new ``/ws`` connection, sent to through ``outlet``; its id."""
        conn = next(self._ids)
        self._outlets[conn] = outlet
        self.run(self.core.open(conn, time.monotonic()))
        return conn

    def receive(self, conn: ConnId, data: str | bytes) -> None:
        """A message from connection ``conn``."""
        if conn not in self._join_started and self.core.connection_participant(conn) is None:
            self._join_started[conn] = time.perf_counter()
        self.run(self.core.receive(conn, data, time.monotonic()))

    def closed(self, conn: ConnId) -> None:
        """Connection ``conn`` is gone (either side closed it, or it broke)."""
        if self._outlets.pop(conn, None) is None:
            return
        self._join_started.pop(conn, None)
        if self.viewers is not None:
            self.viewers.closed(conn)
        self.run(self.core.closed(conn, time.monotonic()))

    def outlets(self) -> list[Outlet]:
        """Every open connection's outlet (the transport closes them at shutdown)."""
        return list(self._outlets.values())

    def health(self) -> dict[str, object]:
        """The counts of the ``/healthz`` document."""
        return {
            "version": __version__,
            "protocol": m.PROTOCOL_VERSION,
            "rooms": self.core.room_count,
            "participants": self.core.participant_count,
            "connections": self.core.connection_count,
            "uptime_s": round(time.monotonic() - self._started_s, 3),
        }

    def store_health(self) -> None:
        """A health check: raises :class:`StoreFailed` while the last Store write failed."""
        if self._write_failed:
            raise StoreFailed("the last store write failed")

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
                outlet = self._outlets.get(conn)
                if outlet is not None:
                    outlet.close(code, reason)
            case Persist(record=record, ack=ack):
                self._persist(record, ack)
            case EcgRequest(conn=conn, message=message):
                if self.viewers is None:
                    error = m.Error(
                        code=ErrorCode.NOT_FOUND, reason="live ECG is not served", ref=message.ref
                    )
                    self._send(conn, error, encoded)
                else:
                    self.viewers.request(effect)
            case MediaRecord(room_id=room, on=on):
                self._record(room, on)
            case Waiting():
                if self.on_waiting is not None:
                    self.on_waiting(effect)
            case _:
                self._media(effect)

    async def _apply_bans(self, bans: AsyncIterator[bytes]) -> None:
        """Enforce the bans other nodes wrote (the Bus carries them once durable)."""
        async for data in bans:
            try:
                shared = msgspec.json.decode(data, type=SharedBan)
            except msgspec.DecodeError:
                logger.warning("ignored a malformed ban from the bus")
                continue
            if shared.node != self.node:
                self.run(self.core.apply_ban(shared.ban, time.monotonic()))

    def _record(self, room_id: str, on: bool) -> None:
        """Switch the room's recording; a backend that cannot record says why (ValueError)."""
        try:
            self.media.set_recording(room_id, on)
        except ValueError as exc:  # the backend's reasons name no internal state
            logger.warning("recording of a room not switched: %s", exc)
            self.run(self.core.recording_changed(room_id, False, str(exc)))
        except Exception:
            logger.exception("media backend failed to switch a recording")
            self.run(self.core.recording_changed(room_id, False, "the recording failed"))

    def _recording_changed(self, room_id: str, on: bool, error: str | None) -> None:
        """From the media backend: a room's recording started, stopped or failed."""
        self.run(self.core.recording_changed(room_id, on, error))

    def _send(self, conn: ConnId, message: m.ServerMessage, encoded: dict[int, str]) -> None:
        outlet = self._outlets.get(conn)
        if outlet is None:
            return
        key = id(message)
        if key not in encoded:
            encoded[key] = m.encode(message).decode()
        outlet.send_text(encoded[key])
        tag = str(type(message).__struct_config__.tag)
        self.metrics.sent[tag] += 1
        if tag in ("joined", "waiting"):
            started = self._join_started.pop(conn, None)
            if started is not None:
                self.metrics.join_seconds.observe(time.perf_counter() - started)

    def send_text(self, conn: ConnId, text: str, skippable: bool = False) -> None:
        """Send already encoded JSON on a ``/ws`` connection (never waits; gone: dropped).

        ``skippable``: a live ECG chunk the connection may be spared while it lags
        (counted in ``teleconsult_ecg_chunks_skipped``).
        """
        outlet = self._outlets.get(conn)
        if outlet is not None and not outlet.send_text(text, skippable=skippable):
            self.metrics.chunks_skipped.inc()

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def audit(self, entry: AuditEntry) -> None:
        """Append ``entry`` to the audit trail (with the core's writes, off the loop)."""
        self._persist(entry, None)

    def _persist(self, record: Record, ack: int | None) -> None:
        """Queue a Store write; writes queued while one is in flight go in the next batch.

        With an ``ack``, the core is told once the batch is durable or has failed
        (``Core.persisted``): a removal is announced only after its ban is written, and
        goes at once. Without one, the write lingers up to ``write_linger_s`` for others
        to share its transaction: one commit for a burst of joins instead of one each
        (the commit, not the row, is what a write costs).
        """
        self._pending_writes.append(record)
        if ack is not None:
            self._pending_acks.append(ack)
        if isinstance(record, AuditEntry) and self.bus is not None:
            self._spawn(self.bus.publish("audit", msgspec.json.encode(record)))
        if self._flushing is not None:
            return  # _written flushes what queued meanwhile
        linger_s = self.config.write_linger_s
        if ack is not None or linger_s == 0 or self._closing:
            self._flush_writes()
        elif self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(linger_s, self._flush_writes)

    def _flush_writes(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        batch, self._pending_writes = self._pending_writes, []
        acks, self._pending_acks = self._pending_acks, []
        future = asyncio.get_running_loop().run_in_executor(self._writer, self.store.write, batch)
        self._flushing = future
        future.add_done_callback(functools.partial(self._written, acks, batch))

    def _written(self, acks: list[int], batch: list[Record], future: asyncio.Future[None]) -> None:
        exc = future.exception()
        if exc is not None:
            logger.error("store write failed: %s", type(exc).__name__)
        self._write_failed = exc is not None
        if exc is None and self.bus is not None:
            for record in batch:
                if isinstance(record, Ban):  # durable: the other nodes enforce it too
                    shared = SharedBan(node=self.node, ban=record)
                    self._spawn(self.bus.publish(BANS_CHANNEL, msgspec.json.encode(shared)))
        self._flushing = None
        for ack in acks:
            self.run(self.core.persisted(ack, exc is None, time.monotonic()))
        if self._pending_writes:
            self._flush_writes()

    def _media(self, effect: Effect) -> None:
        """Queue a media call in its participant's lane."""
        assert isinstance(effect, MediaCall)
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
        effect: MediaCall,
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
                case MediaReceive(participant_id=pid, kind=kind, receiving=receiving):
                    await media.set_receiving(pid, kind, receiving)
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
