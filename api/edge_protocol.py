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
  (uvicorn never reads them after).

It relies on uvicorn's attribute names ``queue``, ``writable``, ``request``,
``response``, which is why ``pyproject.toml`` pins uvicorn's minor version; the
tests of the edge run on it (``api.edge`` selects it).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Generic, TypeVar

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["LeanWebSocketProtocol"]

T = TypeVar("T")


class _Inbox(Generic[T]):
    """``put_nowait``/``get``/``empty`` of an unbounded queue with one consumer."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[T] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: T) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
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
        item = self._items.popleft()
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
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag(is_set=True)  # type: ignore[assignment]

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        self.request = None  # type: ignore[assignment]  # the scope has what the app needs; uvicorn never reads it again

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            self.response = None  # type: ignore[assignment]  # read only to send the accept
