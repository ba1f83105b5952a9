"""The lean parts of the edge's WebSocket protocol (api.edge_protocol) behave as the
asyncio objects they replace, for the way uvicorn uses them."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from websockets.asyncio.client import connect

from api.edge_protocol import READ_AHEAD_BYTES, LeanWebSocketProtocol, _Flag, _Inbox


async def test_inbox_keeps_order_and_wakes_its_consumer() -> None:
    inbox: _Inbox[int] = _Inbox()
    assert inbox.empty()
    loop = asyncio.get_running_loop()
    # Put once get() is already waiting: the loop runs these after get() suspends.
    loop.call_soon(inbox.put_nowait, 1)
    loop.call_soon(inbox.put_nowait, 2)
    assert await inbox.get() == 1
    assert not inbox.empty()
    assert await inbox.get() == 2
    assert inbox.empty()


async def test_inbox_get_cancelled_loses_nothing() -> None:
    inbox: _Inbox[str] = _Inbox()
    getting = asyncio.ensure_future(inbox.get())
    asyncio.get_running_loop().call_soon(getting.cancel)
    await asyncio.gather(getting, return_exceptions=True)
    assert getting.cancelled()
    inbox.put_nowait("after")
    assert await inbox.get() == "after"


async def test_flag_waits_while_clear_and_wakes_every_waiter() -> None:
    flag = _Flag(is_set=True)
    assert await flag.wait()
    flag.clear()
    assert not flag.is_set()
    waiters = [asyncio.ensure_future(flag.wait()) for _ in range(3)]
    asyncio.get_running_loop().call_soon(flag.set)
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert flag.is_set()


async def test_flag_cancelled_waiter_is_forgotten() -> None:
    flag = _Flag(is_set=False)
    waiter = asyncio.ensure_future(flag.wait())
    asyncio.get_running_loop().call_soon(waiter.cancel)
    await asyncio.gather(waiter, return_exceptions=True)
    assert waiter.cancelled()
    flag.set()  # must not touch the cancelled future
    assert await flag.wait()


class _Observed(LeanWebSocketProtocol):
    """The edge's protocol, telling the test when it pauses reading."""

    paused: asyncio.Event
    backlog_at_pause_bytes: list[int]

    def send_receive_event_to_app(self) -> None:
        super().send_receive_event_to_app()
        if self.read_paused and not _Observed.paused.is_set():
            _Observed.backlog_at_pause_bytes.append(self.inbox.size_bytes)
            _Observed.paused.set()


async def test_reading_pauses_only_past_the_read_ahead_and_loses_nothing() -> None:
    """A peer that sends faster than the app reads: the socket is paused once more than
    READ_AHEAD_BYTES wait (not after every message), and every message still arrives, in
    order, once the app reads."""
    _Observed.paused = asyncio.Event()
    _Observed.backlog_at_pause_bytes = []
    message_bytes, count = 8 * 1024, 100  # 800 KiB, three times the read-ahead

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await _Observed.paused.wait()  # read nothing until the socket was paused
        seen = [(await receive())["bytes"][0] for _ in range(count)]
        await send({"type": "websocket.send", "text": ",".join(map(str, seen))})

    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(app, ws=_Observed, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        port = sock.getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
            for n in range(count):
                await ws.send(bytes([n % 256]) * message_bytes)
            reply = await ws.recv()
        assert reply == ",".join(str(n % 256) for n in range(count))
        [backlog_bytes] = _Observed.backlog_at_pause_bytes
        assert READ_AHEAD_BYTES < backlog_bytes <= READ_AHEAD_BYTES + message_bytes
    finally:
        server.should_exit = True
        await serving
