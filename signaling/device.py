"""The ``/device`` endpoint (ECG carts) and the fan-out of live ECG to viewers.

Both are thin asyncio layers: the device protocol, storage and annotation live on the
ECG side, reached through :class:`~signaling.ports.DeviceStreams` and
:class:`~signaling.ports.EcgCatalog`; this module moves bytes and JSON.

Design notes
------------
- **Authentication happens in the upgrade** (:meth:`DeviceEndpoint.check`): the token
  comes from ``Authorization: Bearer <jwt>`` or, for carts and browsers that cannot set
  headers, from the query ``?token=<jwt>`` (it then appears in access logs: prefer the
  header). No or a bad token: HTTP 401; a valid token whose role is not ``device``:
  HTTP 403. The reason is in the response body. The device id is the token's ``sub``.
- **Group commit.** Frames are written as they arrive but acked only after a commit:
  every ``commit_interval_s`` the endpoint takes every written stream
  (``begin_commit``, on the loop), fsyncs them in a worker thread (``run``) and sends
  the acks (``end_commit``). One commit is in flight at a time; a device never waits
  more than about two intervals plus the fsync for its ack.
- **Acks are written at once** (:func:`_write_now`), not by a task per ack: with 200
  streams a commit acks ~100 of them, ten times a second, and a task, a send lock and
  an await per ack cost more than the write. An ack is small and a device's link is
  paced by its own frames, so the write buffer cannot grow without bound; a connection
  that is closing gets none (the device resumes from the last ack it read, which the
  server never contradicts: a stale ack is ignored by the device).
- **Takeover**: a device that resumes a stream on a new connection while the old one
  still looks alive; the old connection gets ``error superseded`` and is closed.
- **Keep-alive**: the server's WebSocket pings (``ServerConfig.ping_interval_s``) find a
  dead cart; its streams are then released and stay resumable.
- **Viewers** (:class:`ViewerHub`): a stream is granted to a token whose room is the
  stream's ``room`` or ``consult``, or to every token of the ECG centre room
  (``centre_room``, when configured). Each live chunk is encoded once and broadcast to
  the stream's subscribers (``websockets.broadcast``: a slow viewer never holds up the
  device or the others).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from sessions.errors import TokenError
from sessions.tokens import TokenClaims
from signaling import http
from signaling import messages as m
from signaling.ports import DeviceLink, DeviceOutput, DeviceStreams, EcgCatalog

__all__ = ["DEVICE_ROLE", "DeviceEndpoint", "ViewerHub", "bearer_token", "grants"]

logger = logging.getLogger(__name__)

DEVICE_ROLE: Final = "device"
Sender = Callable[[int, str], None]  # (connection id, encoded JSON text)


def bearer_token(request: Request) -> str | None:
    """The token of an upgrade request: ``Authorization: Bearer``, else ``?token=``."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip() or None
    values = parse_qs(urlsplit(request.path).query).get("token")
    return values[0] if values else None


class DeviceEndpoint:
    """Serves ``/device``: token check in the upgrade, one session per connection.

    Parameters
    ----------
    streams : DeviceStreams
        The ECG side (sessions, storage, group commit).
    verify : callable
        ``verify(token) -> TokenClaims``; raises :class:`~sessions.errors.TokenError`.
    commit_interval_s : float
        Group-commit period in s (50–200 ms: the ack delay versus fsyncs per second).
    """

    def __init__(
        self,
        streams: DeviceStreams,
        verify: Callable[[str], TokenClaims],
        *,
        commit_interval_s: float = 0.1,
    ) -> None:
        self.streams = streams
        self.verify = verify
        self.commit_interval_s = commit_interval_s
        self._sockets: dict[DeviceLink, ServerConnection] = {}
        self._devices: dict[int, str] = {}  # id(connection) -> device id, set by check
        self._committer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self.connections = 0

    def check(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse an upgrade without a valid device token (401 / 403 with the reason)."""
        token = bearer_token(request)
        if token is None:
            return http.text(401, "missing token: send Authorization: Bearer <device token>")
        try:
            claims = self.verify(token)
        except TokenError as error:
            return http.text(401, str(error))
        if claims.role != DEVICE_ROLE:
            return http.text(403, f"a {claims.role} token cannot stream ECG: role device needed")
        self._devices[id(connection)] = claims.identity
        return None

    async def __call__(self, connection: ServerConnection) -> None:
        """Pump one device connection until it ends."""
        ws = connection
        device = self._devices.pop(id(ws), None)
        if device is None:  # no check ran (the endpoint was mounted without it)
            await ws.close(1008, "unauthenticated")
            return
        self.connections += 1
        self._ensure_committer()
        link = self.streams.connect(device, lambda out: self._spawn(_deliver(ws, out)))
        self._sockets[link] = ws
        try:
            async for message in ws:
                if isinstance(message, str):
                    out = link.receive_text(message)
                else:
                    out = link.receive_bytes(message)
                if out and await _deliver(ws, out):
                    break
        except ConnectionClosed:
            pass  # the device dropped: it resumes on its next connection
        finally:
            link.connection_lost()
            del self._sockets[link]

    async def close(self) -> None:
        """Stop the committer after a last commit (the connections are closed by then)."""
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
            self._committer = None
        await self._commit_once()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.streams.close()

    def _ensure_committer(self) -> None:
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_forever())

    async def _commit_forever(self) -> None:
        while True:
            await asyncio.sleep(self.commit_interval_s)
            try:
                await self._commit_once()
            except Exception:
                logger.exception("group commit failed")

    async def _commit_once(self) -> None:
        commit = self.streams.begin_commit()
        await asyncio.to_thread(commit.run)
        for link, out in self.streams.end_commit(commit):
            ws = self._sockets.get(link)
            if ws is not None and out and not _write_now(ws, out):
                self._spawn(_deliver(ws, out))

    def _spawn(self, coroutine: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _write_now(ws: ServerConnection, out: list[DeviceOutput]) -> bool:
    """Write text-only output on ``ws`` without waiting; False when it needs :func:`_deliver`.

    Text messages go straight to the transport, as ``websockets.broadcast`` writes them;
    a close, or a connection in the middle of sending a fragmented message, takes the
    ordinary path. Nothing is written once the connection is no longer open.
    """
    if not all(isinstance(item, str) for item in out) or ws.send_in_progress is not None:
        return False
    if ws.protocol.state is not State.OPEN:
        return True
    for item in out:
        assert isinstance(item, str)
        ws.protocol.send_text(item.encode())
    ws.send_data()
    return True


async def _deliver(ws: ServerConnection, out: list[DeviceOutput]) -> bool:
    """Send the ECG side's output on ``ws``; True when it closed (or ``ws`` is gone)."""
    try:
        for item in out:
            if isinstance(item, str):
                await ws.send(item)
            else:
                await ws.close(*item)
                return True
    except ConnectionClosed:
        return True
    return False


def grants(room: str, info: m.EcgStreamInfo, centre_room: str | None = None) -> bool:
    """Whether a token entering ``room`` may view the stream ``info``."""
    if centre_room is not None and room == centre_room:
        return True
    return room in (info.room, info.consult)


class ViewerHub:
    """Viewer subscriptions and the fan-out of live ECG chunks.

    Parameters
    ----------
    catalog : EcgCatalog
        The streams that exist.
    send : callable
        ``send(conn, text)``: send encoded JSON to a ``/ws`` connection (never waits).
    centre_room : str, optional
        Tokens of this room (the ECG centre) may view every stream.
    display_fs_hz : float
        Rate of the display samples announced in ``ecg_subscribed``.
    """

    def __init__(
        self,
        catalog: EcgCatalog,
        send: Sender,
        *,
        centre_room: str | None = None,
        display_fs_hz: float = 125.0,
    ) -> None:
        self.catalog = catalog
        self.send = send
        self.centre_room = centre_room
        self.display_fs_hz = display_fs_hz
        self._subscribers: dict[str, set[int]] = {}

    def subscribers(self, stream: str) -> int:
        """How many connections watch ``stream``."""
        return len(self._subscribers.get(stream, ()))

    def request(
        self, conn: int, room: str, message: m.EcgList | m.EcgSubscribe | m.EcgUnsubscribe
    ) -> None:
        """Answer a viewer's request (from :class:`signaling.core.EcgRequest`)."""
        reply: m.ServerMessage
        match message:
            case m.EcgList(ref=ref):
                streams = [
                    s for s in self.catalog.ecg_streams() if grants(room, s, self.centre_room)
                ]
                streams.sort(key=lambda s: s.start_time, reverse=True)
                reply = m.EcgStreams(streams=streams, ref=ref)
            case m.EcgSubscribe(stream=stream, ref=ref):
                info = self.catalog.ecg_stream(stream)
                if info is None:
                    reply = m.Error(code=m.ErrorCode.NOT_FOUND, reason="no such stream", ref=ref)
                elif not grants(room, info, self.centre_room):
                    reason = f"your token's room {room!r} does not grant this stream"
                    reply = m.Error(code=m.ErrorCode.FORBIDDEN, reason=reason, ref=ref)
                else:
                    self._subscribers.setdefault(stream, set()).add(conn)
                    reply = m.EcgSubscribed(info=info, display_fs_hz=self.display_fs_hz, ref=ref)
            case m.EcgUnsubscribe(stream=stream, ref=ref):
                self._discard(conn, [stream])
                reply = m.EcgUnsubscribed(stream=stream, ref=ref)
        self.send(conn, m.encode(reply).decode())

    def publish(self, message: m.EcgData | m.EcgEnded) -> None:
        """Send a live chunk or an end to the stream's subscribers (encoded once)."""
        if self._subscribers.get(message.stream):
            self.publish_text(message.stream, m.encode(message).decode())

    def publish_text(self, stream: str, text: str) -> None:
        """Send an already encoded ``ecg_data``/``ecg_ended`` to the stream's subscribers."""
        for conn in list(self._subscribers.get(stream, ())):
            self.send(conn, text)

    def closed(self, conn: int) -> None:
        """A ``/ws`` connection is gone: drop its subscriptions."""
        self._discard(conn, list(self._subscribers))

    def _discard(self, conn: int, streams: Iterable[str]) -> None:
        for stream in streams:
            subscribers = self._subscribers.get(stream)
            if subscribers is not None:
                subscribers.discard(conn)
                if not subscribers:
                    del self._subscribers[stream]
