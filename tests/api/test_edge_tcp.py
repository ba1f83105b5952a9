"""The edge's connections send small writes at once (TCP_NODELAY): a keep-alive
response written as headers then body does not wait for the client's delayed ACK
(40 ms per request on Linux loopback when it did)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from tests.teleconsult.test_platform_server import assembled, server_config


async def test_accepted_connections_have_nodelay(tmp_path: Path) -> None:
    """Every connection the server holds (a keep-alive HTTP client here) has TCP_NODELAY."""
    assembly = assembled(server_config(tmp_path))
    server = assembly.server
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        uvicorn_server = server.edge._server
        assert uvicorn_server is not None
        held = [c.transport for c in uvicorn_server.server_state.connections]
        assert held
        for transport in held:
            sock = transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        writer.close()
        await writer.wait_closed()
    finally:
        await server.close()
