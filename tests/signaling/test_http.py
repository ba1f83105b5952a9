"""The plain GET routes on the edge: /healthz, /metrics, /join and static files."""

from __future__ import annotations

import asyncio
import json

from api.edge import EdgeServer
from tests.signaling.conftest import make_token, open_client


async def get(server: EdgeServer, target: str) -> tuple[int, dict[str, str], bytes]:
    """A raw HTTP/1.1 GET over a real socket (no client library normalising the path)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


async def test_healthz_counts(server: EdgeServer) -> None:
    """/healthz is JSON with status and live counts."""
    client = await open_client(server)
    await client.send(type="join", token=make_token("dr-li", moderator=True))
    await client.expect("joined")
    status, headers, body = await get(server, "/healthz")
    document = json.loads(body)
    assert (status, headers["content-type"]) == (200, "application/json")
    assert (document["status"], document["rooms"], document["participants"]) == ("ok", 1, 1)
    assert document["connections"] == 1


async def test_metrics_exposes_counts_and_histogram(server: EdgeServer) -> None:
    """/metrics has rooms, participants, connections, messages, join latency and errors."""
    client = await open_client(server)
    await client.send(type="join", token=make_token("dr-li", moderator=True))
    await client.expect("joined")
    await client.send(type="dance")
    await client.expect("error")
    status, headers, body = await get(server, "/metrics")
    text = body.decode()
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    assert "teleconsult_rooms 1.0" in text
    assert "teleconsult_participants 1.0" in text
    assert "teleconsult_connections 1.0" in text
    assert 'teleconsult_messages_total{direction="in",type="join"} 1.0' in text
    assert 'teleconsult_messages_total{direction="out",type="joined"} 1.0' in text
    assert 'teleconsult_errors_total{code="unknown_type"} 1.0' in text
    assert "teleconsult_join_seconds_count 1.0" in text


async def test_join_page_and_static_types(server: EdgeServer) -> None:
    """/join serves index.html whatever the query; static files get their content types."""
    status, headers, body = await get(server, "/join?token=abc&autojoin=1")
    assert (status, headers["content-type"]) == (200, "text/html; charset=utf-8")
    assert body.startswith(b"<!doctype html>")
    for name, content_type in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
        ("strings.json", "application/json"),
        ("index.html", "text/html; charset=utf-8"),
    ]:
        status, headers, _ = await get(server, f"/static/{name}")
        assert (status, headers["content-type"]) == (200, content_type)


async def test_no_directory_traversal(server: EdgeServer) -> None:
    """Paths leaving the web folder, hidden files, folders and unknown routes are 404."""
    for target in [
        "/static/../outside.txt",
        "/static/%2e%2e/outside.txt",
        "/static/..%2foutside.txt",
        "/static/",
        "/static/missing.js",
        "/static/.hidden",
        "/etc/passwd",
        "/static//etc/passwd",
        "/static/app.js%00.html",
        "/static/app.js\\..\\..\\outside.txt",
    ]:
        status, _, body = await get(server, target)
        assert status == 404, target
        assert b"secret" not in body
