"""Open WebSocket connections per client address (``/ws`` and ``/device`` together) are
capped at the edge: one over ``[server] max_connections_per_address`` is refused in the
upgrade with HTTP 429 and the reason, logged without the address; other addresses
carry on. Open HTTP connections are capped apart (``max_http_connections_per_address``):
one more is answered 429 and closed before it is read."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from api.edge import TOO_MANY_CONNECTIONS, AddressCounts, EdgeServer, address_key
from api.edge_config import EdgeConfig
from tests.teleconsult.test_platform_server import assembled, server_config

LIMIT = 3


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[EdgeServer]:
    """The assembled server (``/ws`` and ``/device`` wired) with a cap of 3 per address."""
    config = dataclasses.replace(
        server_config(tmp_path),
        server=EdgeConfig(
            port=0, max_connections_per_address=LIMIT, max_http_connections_per_address=LIMIT
        ),
    )
    server = assembled(config).server
    await server.start()
    yield server
    await server.close()


def url(server: EdgeServer, path: str = "/ws") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def refused_status(server: EdgeServer, path: str) -> tuple[int, bytes]:
    """The HTTP status and body an upgrade to ``path`` is refused with."""
    with pytest.raises(InvalidStatus) as refused:
        await connect(url(server, path))
    return refused.value.response.status_code, bytes(refused.value.response.body or b"")


def second_loopback_works() -> bool:
    """Whether a client socket can be bound to 127.0.0.2 (all of 127/8 is loopback on Linux)."""
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.2", 0))
    except OSError:
        return False
    finally:
        probe.close()
    return True


async def test_the_connection_over_the_cap_is_refused_429_until_one_closes(
    edge: EdgeServer, caplog: pytest.LogCaptureFixture
) -> None:
    """3 open on /ws; a 4th on /ws and one on /device (before its token is read) get 429
    with the reason, logged at INFO without the address; one closed, a new one is accepted."""
    held: list[ClientConnection] = [await connect(url(edge)) for _ in range(LIMIT)]
    with caplog.at_level(logging.INFO, logger="api.edge"):
        status, body = await refused_status(edge, "/ws")
        assert status == TOO_MANY_CONNECTIONS
        assert body.startswith(b"too_many_connections: more than 3 open connections")
        status, body = await refused_status(edge, "/device")
        assert status == TOO_MANY_CONNECTIONS
        assert body.startswith(b"too_many_connections")
    refusals = [r for r in caplog.records if "refused a WebSocket upgrade" in r.getMessage()]
    assert len(refusals) == 2
    assert all(r.levelno == logging.INFO for r in refusals)
    assert not any("127.0.0.1" in r.getMessage() for r in caplog.records)
    assert edge.addresses.held("127.0.0.1") == LIMIT

    await held.pop().close()
    # /device is counted again from here: without a token it is now refused 401, not 429.
    status, _ = await refused_status(edge, "/device")
    assert status == 401
    held.append(await connect(url(edge)))
    await held[-1].send('{"type":"ping"}')
    assert '"pong"' in str(await held[-1].recv())
    for ws in held:
        await ws.close()


async def test_another_address_is_not_affected(edge: EdgeServer) -> None:
    """With 127.0.0.1 at its cap, a client bound to 127.0.0.2 is accepted."""
    if not second_loopback_works():
        pytest.skip("127.0.0.2 cannot be bound here (only Linux routes all of 127/8)")
    held = [await connect(url(edge)) for _ in range(LIMIT)]
    status, _ = await refused_status(edge, "/ws")
    assert status == TOO_MANY_CONNECTIONS
    async with connect(url(edge), local_addr=("127.0.0.2", 0)) as other:
        await other.send('{"type":"ping"}')
        assert '"pong"' in str(await other.recv())
        assert edge.addresses.held("127.0.0.2") == 1
    for ws in held:
        await ws.close()


def test_counts_are_bounded_and_forget_an_address_with_none_open() -> None:
    """take() refuses past the limit and counts nothing then; release() frees a slot."""
    counts = AddressCounts(2)
    assert counts.take("a")
    assert counts.take("a")
    assert not counts.take("a")
    assert counts.held("a") == 2
    assert counts.take("b")
    counts.release("a")
    assert counts.take("a")
    counts.release("b")
    assert counts.held("b") == 0
    assert "b" not in counts._open  # no address kept once it holds nothing


def test_an_ipv6_client_is_counted_by_its_64_and_a_mapped_one_as_ipv4() -> None:
    """Two addresses of one /64 share a count; ::ffff:a.b.c.d counts as a.b.c.d."""
    one = address_key(("2001:db8:1:2::10", 5000))
    assert one == address_key(("2001:db8:1:2:ffff::1", 5001)) == "2001:db8:1:2::/64"
    assert one != address_key(("2001:db8:1:3::10", 5000))
    assert address_key(("::ffff:192.0.2.7", 1)) == "192.0.2.7"
    assert address_key(("192.0.2.7", 1)) == "192.0.2.7"
    assert address_key(None) == ""


@pytest.mark.parametrize("value", [0, -1, 1_000_001])
def test_the_cap_is_validated(value: int) -> None:
    """max_connections_per_address outside 1-1000000 is a configuration error."""
    with pytest.raises(ValueError, match="max_connections_per_address"):
        EdgeConfig(max_connections_per_address=value)


async def http_get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str = "/healthz"
) -> bytes:
    """One keep-alive GET on an open connection: its status line."""
    writer.write(f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return head.split(b"\r\n", 1)[0]


async def test_an_http_connection_over_the_cap_is_answered_429_and_closed(
    edge: EdgeServer,
) -> None:
    """3 HTTP connections held open without a request (what uvicorn never times out); a
    4th is answered 429 ``too_many_connections`` and closed before it is read, and is not
    counted; the held ones still serve requests; WebSockets are counted apart, and an
    upgraded connection leaves the HTTP count."""
    port = edge.port
    # WebSockets first: upgraded, they leave the HTTP count (theirs is apart).
    sockets = [await connect(url(edge)) for _ in range(LIMIT)]
    assert edge.addresses.held("127.0.0.1") == LIMIT
    assert edge.edge.http_addresses.held("127.0.0.1") == 0
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(LIMIT)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
    refused = await reader.read()  # to the server's close
    writer.close()
    assert refused.startswith(b"HTTP/1.1 429 ")
    assert b"too_many_connections: more than 3 open HTTP connections" in refused
    assert edge.edge.http_addresses.held("127.0.0.1") == LIMIT
    for held_reader, held_writer in held:
        assert await http_get(held_reader, held_writer) == b"HTTP/1.1 200 OK"
    for ws in sockets:
        await ws.send('{"type":"ping"}')
        assert '"pong"' in str(await ws.recv())
        await ws.close()
    for _, held_writer in held:
        held_writer.close()
        await held_writer.wait_closed()


@pytest.mark.parametrize("value", [0, 1_000_001])
def test_the_http_cap_is_validated(value: int) -> None:
    with pytest.raises(ValueError, match="max_http_connections_per_address"):
        EdgeConfig(max_http_connections_per_address=value)
