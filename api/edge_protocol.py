"""uvicorn's sans-I/O WebSocket protocol with less held per idle connection.

A consult server keeps hundreds of WebSockets open that say nothing for minutes
(participants in a room, open worklists). uvicorn's
``WebSocketsSansIOProtocol`` holds, per connection and for its whole life, an
``asyncio.Queue`` (three deques and its events), an ``asyncio.Event`` with its
deque of waiters, and the handshake's request and response objects with their
headers (which the ASGI scope holds again). tracemalloc of 300 idle participants
put about 22 KiB per connection in the heap, most of it there; the websockets
server this edge replaced held 17 KiB in all.

:class:`LeanWebSocketProtocol` keeps uvicorn's protocol as it is and replaces
those three things:

- the receive queue with :class:`_Inbox`, which has the one consumer that ASGI
  gives it (the app's ``receive``) and holds a deque only while messages wait;
- the ``writable`` event with :class:`_Flag`, which makes a future only when a
  sender actually waits for the transport to drain;
- the handshake's request and response are dropped once the handshake is done
  (uvicorn never reads them after);
- reading is paused only when more than :data:`READ_AHEAD_BYTES` of received
  messages wait for the app, not after every message: uvicorn pauses the socket
  after each message and resumes it when the app has read it, two ``epoll_ctl``
  calls and the selector's bookkeeping per message, a sixth of the event loop's
  time with 200 carts sending five frames a second each (py-spy). The websockets
  server before ASGI buffered up to 16 messages the same way.

It relies on uvicorn's attribute names ``queue``, ``writable``, ``request``,
``response``, which is why ``pyproject.toml`` pins uvicorn's minor version; the
tests of the edge run on it (``api.edge`` selects it).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Final, Generic, TypeVar

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["LeanWebSocketProtocol"]

T = TypeVar("T")

# Received bytes that may wait for the app before the socket stops being read (the
# backpressure bound per connection, on top of one message of at most ws_max_size).
READ_AHEAD_BYTES: Final = 256 * 1024


class _Inbox(Generic[T]):
    """``put_nowait``/``get``/``empty`` of an unbounded queue with one consumer."""

    __slots__ = ("_items", "_waiter", "size_bytes")

    def __init__(self) -> None:
        self._items: deque[tuple[T, int]] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.size_bytes = 0  # the sizes given to put_nowait of what waits

    def put_nowait(self, item: T, size_bytes: int = 0) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append((item, size_bytes))
        self.size_bytes += size_bytes
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> T:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item, size_bytes = self._items.popleft()
        self.size_bytes -= size_bytes
        if not self._items:
            self._items = None  # an idle connection holds no deque
        return item


class _Flag:
    """``set``/``clear``/``is_set``/``wait`` of an event, with no waiter list until one waits."""

    __slots__ = ("_is_set", "_waiters")

    def __init__(self, *, is_set: bool) -> None:
        self._is_set = is_set
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._is_set

    def set(self) -> None:
        self._is_set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._is_set = False

    async def wait(self) -> bool:
        if self._is_set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol holding less per connection (module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbox: _Inbox[Any] = _Inbox()
        self.queue = self.inbox  # type: ignore[assignment]
        self.writable = _Flag(is_set=True)  # type: ignore[assignment]

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        self.request = None  # type: ignore[assignment]  # the scope has what the app needs; uvicorn never reads it again

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            self.response = None  # type: ignore[assignment]  # read only to send the accept

    def send_receive_event_to_app(self) -> None:
        # uvicorn's, but for when reading pauses (module docstring).
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return  # past websocket.close: dropped, reads stay on for the close reply
        if self.curr_msg_data_type == "text":
            try:
                self.inbox.put_nowait(
                    {"type": "websocket.receive", "text": data.decode()}, len(data)
                )
            except UnicodeDecodeError:
                self.logger.info("invalid UTF-8 in a text message: closing 1007")
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
        else:
            self.inbox.put_nowait({"type": "websocket.receive", "bytes": data}, len(data))
        if not self.read_paused and self.inbox.size_bytes > READ_AHEAD_BYTES:
            self.read_paused = True
            self.transport.pause_reading()
