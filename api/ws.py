"""WebSocket connections of the edge: raw ASGI, one bounded outgoing queue each.

``/ws`` and ``/device`` are mounted in the Litestar application as raw ASGI handlers
(:func:`api.app.create_app`, ``websockets=``): per message nothing of the framework
runs, only uvicorn's ``receive``/``send`` and the pump of a core.

Design notes
------------
- **Sending never waits.** A pump sends through :class:`Channel` (the
  :class:`signaling.ports.Outlet` of the connection): the text is appended to the
  connection's queue and a writer task, one per connection, drains it with uvicorn's
  ``send`` (which only waits while the socket's write buffer is over its high-water
  mark). A slow client holds up nobody but itself; once more than
  :attr:`ChannelLimits.max_queued_bytes` wait for it, its queue is dropped and it is
  closed (1008, "too slow"). Before that, a *skippable* message (a live ECG chunk that
  makes no flag final) is dropped while more than
  :attr:`ChannelLimits.max_live_backlog_bytes` wait: a viewer on a slow link sees gaps
  in its live trace, bounded in lag, instead of being closed and starting again.
- **Writes in the turn they are made.** When nothing is queued and the socket is
  writable, :meth:`Channel.send_text` writes at once (uvicorn's ``send`` then completes
  without suspending): most messages never wake the writer task, and a broadcast to a
  room costs one write per member, as ``websockets.broadcast`` did.
- **Over-size messages**: uvicorn refuses messages over its ``ws_max_size`` with close
  1009; the endpoint's own limit is lower (:func:`message_limit_bytes`), so a message
  between the two is answered with the protocol's ``error`` before the close.
- Keep-alive pings (uvicorn's ``ws_ping_interval``/``ws_ping_timeout``) find dead
  peers: their connection ends with ``websocket.disconnect`` like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, Protocol

from signaling import messages as m
from signaling.messages import CloseCode, ErrorCode

__all__ = [
    "TOO_SLOW",
    "Channel",
    "ChannelLimits",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "SignalingPump",
    "accept",
    "message_limit_bytes",
    "refuse",
    "signaling_endpoint",
]

logger = logging.getLogger(__name__)

# Plain ASGI types: uvicorn's send is a coroutine function, and the messages are the
# dictionaries of the ASGI specification.
Message = dict[str, Any]
Scope = dict[str, Any]
Send = Callable[[Message], Coroutine[Any, Any, None]]
Receive = Callable[[], Coroutine[Any, Any, Message]]

TOO_SLOW: Final = (1008, "too slow: outgoing queue full")


@dataclass(frozen=True, kw_only=True)
class ChannelLimits:
    """Limits of one WebSocket connection.

    Attributes
    ----------
    max_message_bytes : int
        Largest message the endpoint reads; a larger one is answered with ``error``
        and close 1009.
    max_queued_bytes : int
        Outgoing text waiting for a slow client before it is closed (characters).
    max_live_backlog_bytes : int
        Outgoing text waiting beyond which skippable messages are dropped (characters;
        at most ``max_queued_bytes``).
    """

    max_message_bytes: int = 256 * 1024
    max_queued_bytes: int = 4 * 1024 * 1024
    max_live_backlog_bytes: int = 512 * 1024

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1024 or self.max_queued_bytes < self.max_message_bytes:
            raise ValueError("max_message_bytes >= 1024 and max_queued_bytes >= it required")
        if not 0 <= self.max_live_backlog_bytes <= self.max_queued_bytes:
            raise ValueError("0 <= max_live_backlog_bytes <= max_queued_bytes required")


def message_limit_bytes(limit_bytes: int) -> int:
    """The transport's ``ws_max_size`` for an endpoint limit: room for an ``error``.

    Messages up to twice the limit reach the endpoint, which answers them with the
    protocol's ``error`` and closes; beyond, the transport closes with 1009 alone.
    """
    return 2 * limit_bytes


class Channel:
    """One accepted WebSocket: a bounded outgoing queue, drained by a writer when needed.

    The writer task exists only while something waits to be written (a send that
    suspended, or queued messages behind it): an idle connection costs no task.

    Parameters
    ----------
    send : Send
        uvicorn's ``send`` of the connection (after ``websocket.accept``).
    limits : ChannelLimits
        Queue and message limits.
    """

    __slots__ = ("_closing", "_gone", "_limits", "_queue", "_queued_chars", "_send", "_writer")

    def __init__(self, send: Send, limits: ChannelLimits) -> None:
        self._send = send
        self._limits = limits
        # Made when something must wait behind a suspended send: most connections never
        # queue, and an empty deque costs ~0.7 KiB per idle connection.
        self._queue: deque[Message] | None = None
        self._queued_chars = 0
        self._closing = False
        self._gone = False
        self._writer: asyncio.Task[None] | None = None

    @property
    def closing(self) -> bool:
        """Whether a close was queued (or the peer is gone): nothing more is sent."""
        return self._closing or self._gone

    def send_text(self, text: str, *, skippable: bool = False) -> bool:
        """Queue ``text`` (see the module notes); never waits.

        False when ``text`` was ``skippable`` and skipped: more than the live backlog
        waits. True otherwise (written, queued, or dropped because the connection closes).
        """
        if self._closing or self._gone:
            return True
        if self._writer is None:
            self._write_now({"type": "websocket.send", "text": text})
            return True
        if skippable and self._queued_chars + len(text) > self._limits.max_live_backlog_bytes:
            return False
        self._queued_chars += len(text)
        if self._queued_chars > self._limits.max_queued_bytes:
            logger.info("closing a WebSocket whose outgoing queue is full")
            self._queue = None
            self._queued_chars = 0
            self.close(*TOO_SLOW)
            return True
        self._queued().append({"type": "websocket.send", "text": text})
        return True

    def close(self, code: int, reason: str) -> None:
        """Close after what is queued (idempotent)."""
        if self._closing or self._gone:
            return
        self._closing = True
        message: Message = {"type": "websocket.close", "code": code, "reason": reason[:120]}
        if self._writer is None:
            self._write_now(message)
        else:
            self._queued().append(message)

    def _write_now(self, message: Message) -> None:
        """Start uvicorn's ``send`` here; if it suspends, a writer task finishes it.

        uvicorn's ``send`` only suspends while the socket's buffer is over its
        high-water mark; otherwise it writes and returns in this very call.
        """
        coroutine = self._send(message)
        try:
            awaited = coroutine.send(None)
        except StopIteration:
            if message["type"] == "websocket.close":
                self._gone = True
            return
        except Exception:  # the peer is gone (uvicorn's ClientDisconnected, OSError)
            self._gone = True
            return
        self._writer = asyncio.create_task(self._write(coroutine, awaited))

    async def _write(self, coroutine: Coroutine[Any, Any, None], awaited: Any) -> None:
        """Finish the suspended send, then drain the queue; end when it is empty."""
        try:
            await _resume(coroutine, awaited)
            while self._queue and not self._gone:
                message = self._queue.popleft()
                if message["type"] == "websocket.send":
                    self._queued_chars -= len(message["text"])
                await self._send(message)
                if message["type"] == "websocket.close":
                    self._gone = True
        except asyncio.CancelledError:
            coroutine.close()
            raise
        except Exception:  # the peer is gone: nothing more can be sent
            self._gone = True
        finally:
            self._writer = None

    def _queued(self) -> deque[Message]:
        if self._queue is None:
            self._queue = deque()
        return self._queue

    def disconnected(self) -> None:
        """The peer is gone: drop what is queued (the writer then ends)."""
        self._gone = True
        self._queue = None
        self._queued_chars = 0

    async def drain(self) -> None:
        """Wait until nothing is being written (after a close, or the peer's going)."""
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer


async def _resume(coroutine: Coroutine[Any, Any, None], awaited: Any) -> None:
    """Run to its end a coroutine that suspended on ``awaited`` when started by hand."""
    while True:
        if awaited is None:  # a bare yield (asyncio.sleep(0))
            await asyncio.sleep(0)
        else:
            await asyncio.wait([awaited])
        try:
            awaited = coroutine.send(None)
        except StopIteration:
            return


async def accept(receive: Receive, send: Send) -> bool:
    """Take ``websocket.connect`` and accept; False if the peer left first."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return False
    await send({"type": "websocket.accept"})
    return True


async def refuse(receive: Receive, send: Send, status: int, reason: str) -> None:
    """Answer the upgrade with an HTTP ``status`` and ``reason`` as the body (no accept)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    body = reason.encode() + b"\n"
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})


class SignalingPump(Protocol):
    """What the ``/ws`` endpoint needs of :class:`signaling.server.SignalingServer`."""

    def open(self, outlet: Channel) -> int:
        """A new connection; its id."""

    def receive(self, conn: int, data: str | bytes) -> None:
        """A message of connection ``conn``."""

    def closed(self, conn: int) -> None:
        """Connection ``conn`` is gone."""


Registry = Callable[[Channel], Callable[[], None]]


def signaling_endpoint(
    pump: SignalingPump, limits: ChannelLimits, register: Registry
) -> Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]]:
    """The raw ASGI handler of ``/ws``: every message into ``pump``.

    ``register(channel)`` records an open connection (the edge closes them at
    shutdown) and returns the function that forgets it.
    """
    too_large = m.encode(
        m.Error(
            code=ErrorCode.TOO_LARGE,
            reason=f"message over {limits.max_message_bytes} bytes",
        )
    ).decode()

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        if not await accept(receive, send):
            return
        channel = Channel(send, limits)
        forget = register(channel)
        conn = pump.open(channel)
        try:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    break
                data: str | bytes | None = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                if len(data) > limits.max_message_bytes:
                    channel.send_text(too_large)
                    channel.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
                    continue
                pump.receive(conn, data)
        finally:
            channel.disconnected()
            forget()
            pump.closed(conn)

    return endpoint
