"""api.ws.Channel against an ASGI ``send`` that suspends like uvicorn's while the
socket's buffer is full: order kept, nothing waits, a slow peer's overflow closes it,
a lagging peer is spared skippable messages."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api.ws import TOO_SLOW, Channel, ChannelLimits


class Socket:
    """An ASGI send that records messages and suspends while ``full`` (as uvicorn does)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.gone = False
        self.suspensions = 0

    async def send(self, message: dict[str, Any]) -> None:
        if not self.writable.is_set():
            self.suspensions += 1
        await self.writable.wait()
        if self.gone:
            raise OSError("disconnected")
        self.sent.append(message)

    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]


LIMITS = ChannelLimits(max_message_bytes=1024, max_queued_bytes=10_000, max_live_backlog_bytes=2000)


async def test_writes_at_once_while_the_socket_is_writable() -> None:
    """With room in the socket, each send is written in the call itself, no task made."""
    socket = Socket()
    channel = Channel(socket.send, LIMITS)
    tasks_before = len(asyncio.all_tasks())
    for i in range(100):
        channel.send_text(str(i))
        assert socket.texts()[-1] == str(i)
    assert len(asyncio.all_tasks()) == tasks_before


async def test_a_full_socket_queues_in_order_and_never_blocks_the_sender() -> None:
    """While the socket is full sends return at once; everything arrives in order after."""
    socket = Socket()
    channel = Channel(socket.send, LIMITS)
    channel.send_text("first")
    socket.writable.clear()
    for i in range(50):
        channel.send_text(f"m{i}")  # returns at once
    channel.close(1000, "bye")
    channel.send_text("after close")  # dropped
    assert socket.texts() == ["first"]
    socket.writable.set()
    await channel.drain()
    assert socket.texts() == ["first", *(f"m{i}" for i in range(50))]
    assert socket.sent[-1] == {"type": "websocket.close", "code": 1000, "reason": "bye"}
    assert channel.closing


async def test_overflow_drops_the_queue_and_closes_too_slow() -> None:
    """Past max_queued_bytes the queue is dropped and the peer is closed 1008 'too slow'."""
    socket = Socket()
    channel = Channel(socket.send, LIMITS)
    socket.writable.clear()
    channel.send_text("x" * 900)  # in flight: suspended in the socket
    for _ in range(20):  # 20 x 900 > 10,000 queued
        channel.send_text("y" * 900)
    assert channel.closing
    socket.writable.set()
    await channel.drain()
    assert socket.texts() == ["x" * 900]
    code, reason = TOO_SLOW
    assert socket.sent[-1] == {"type": "websocket.close", "code": code, "reason": reason}


async def test_a_lagging_peer_is_spared_skippable_messages_and_stays_open() -> None:
    """Past the live backlog, skippable texts are dropped (False), the others still queue.

    The skippable ones alone would have overflowed max_queued_bytes and closed the peer.
    """
    socket = Socket()
    channel = Channel(socket.send, LIMITS)
    assert channel.send_text("live-0", skippable=True)  # written at once
    socket.writable.clear()
    assert channel.send_text("x" * 900, skippable=True)  # in flight: suspended
    kept = [channel.send_text(f"{i:03d}" + "y" * 897, skippable=True) for i in range(30)]
    assert kept == [True, True] + [False] * 28  # 2 x 900 queued <= 2000 < 3 x 900
    assert channel.send_text("final flags")  # not skippable: queued past the backlog
    assert not channel.closing
    socket.writable.set()
    await channel.drain()
    assert socket.texts() == [
        "live-0",
        "x" * 900,
        "000" + "y" * 897,
        "001" + "y" * 897,
        "final flags",
    ]
    assert channel.send_text("live-1", skippable=True)  # caught up: sent again
    assert socket.texts()[-1] == "live-1"


async def test_a_peer_gone_mid_write_stops_the_writer() -> None:
    """A send failing (peer gone) ends the writer; later sends are dropped quietly."""
    socket = Socket()
    channel = Channel(socket.send, LIMITS)
    socket.writable.clear()
    channel.send_text("a")
    channel.send_text("b")
    socket.gone = True
    socket.writable.set()
    await channel.drain()
    channel.send_text("c")
    assert channel.closing
    assert socket.texts() == []


async def test_disconnected_drops_what_is_queued() -> None:
    """After disconnected(), nothing queued is written."""
    socket = Socket()
    channel = Channel(socket.send, LIMITS)
    socket.writable.clear()
    channel.send_text("in flight")
    channel.send_text("queued")
    channel.disconnected()
    socket.writable.set()
    await channel.drain()
    assert socket.texts() == ["in flight"]


def test_limits_are_validated() -> None:
    """A queue smaller than one message, or a tiny message limit, is refused."""
    with pytest.raises(ValueError, match="max_message_bytes"):
        ChannelLimits(max_message_bytes=10)
    with pytest.raises(ValueError, match="max_queued_bytes"):
        ChannelLimits(max_message_bytes=4096, max_queued_bytes=1024)
    with pytest.raises(ValueError, match="max_live_backlog_bytes"):
        ChannelLimits(max_queued_bytes=1024 * 1024, max_live_backlog_bytes=2 * 1024 * 1024)
