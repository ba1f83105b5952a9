"""Plain HTTP on the signaling port: the routes ``process_request`` answers.

Pure functions from a request path to a websockets ``Response`` (or ``None`` to go on
with the WebSocket handshake), so that the routes are tested without a socket.

- ``/healthz``: JSON status and counts.
- ``/metrics``: Prometheus text from the server's own registry.
- ``/join``: the browser client's ``index.html``; the query string (``token``,
  ``autojoin``) is for the page's script, not for the server.
- ``/ecg``: the live ECG viewer page ``ecg.html`` (its query, ``token``, is for the page).
- ``/static/<path>``: files under the web folder. The path is resolved and must stay
  inside the folder (no ``..``, no symlink out, no hidden files); anything else is 404.
- ``/ws`` and ``/device``: the WebSocket endpoints (``None``: go on with the handshake).
"""

from __future__ import annotations

import email.utils
import http
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Response

WEBSOCKET_PATHS: Final = frozenset({"/ws", "/device"})
CONTENT_TYPES: Final[Mapping[str, str]] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
}
MAX_STATIC_BYTES: Final = 16 * 1024 * 1024


def response(status: int, body: bytes, content_type: str, *, cache: str = "no-cache") -> Response:
    """A complete HTTP response that closes the connection afterwards."""
    code = http.HTTPStatus(status)
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            ("Cache-Control", cache),
            ("X-Content-Type-Options", "nosniff"),
        ]
    )
    return Response(code.value, code.phrase, headers, body)


def text(status: int, message: str) -> Response:
    """A plain-text response."""
    return response(status, message.encode() + b"\n", "text/plain; charset=utf-8")


def json_response(document: object) -> Response:
    """A JSON response (200)."""
    return response(200, json.dumps(document).encode(), "application/json")


def static_file(web_dir: Path, relative: str) -> Response:
    """Serve ``relative`` from ``web_dir``, or 404 if it is not a plain file inside it."""
    parts = relative.split("/")
    if any(part in ("", ".", "..") or part.startswith(".") or "\\" in part for part in parts):
        return text(404, "not found")
    root = web_dir.resolve()
    try:
        path = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return text(404, "not found")
    if not path.is_relative_to(root) or not path.is_file():
        return text(404, "not found")
    content_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    try:
        if path.stat().st_size > MAX_STATIC_BYTES:
            return text(404, "not found")
        body = path.read_bytes()
    except OSError:
        return text(404, "not found")
    return response(200, body, content_type)


def route(
    target: str,
    *,
    web_dir: Path,
    health: Callable[[], Mapping[str, object]],
    metrics: Callable[[], tuple[bytes, str]],
) -> Response | None:
    """Answer a GET for ``target`` (path and query), or ``None`` for a WebSocket path."""
    path = unquote(urlsplit(target).path)
    if path in WEBSOCKET_PATHS:
        return None
    if path == "/healthz":
        return json_response(dict(health()))
    if path == "/metrics":
        body, content_type = metrics()
        return response(200, body, content_type)
    if path == "/join":
        page = web_dir / "index.html"
        if not page.is_file():
            return text(404, "the browser client is not installed (web/index.html)")
        return static_file(web_dir, "index.html")
    if path == "/ecg":
        return static_file(web_dir, "ecg.html")
    if path == "/":
        return text(200, "teleconsult: open /join?token=... (mint one with `teleconsult token`)")
    if path.startswith("/static/"):
        return static_file(web_dir, path.removeprefix("/static/"))
    return text(404, "not found")
